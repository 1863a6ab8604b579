//! Application Auto Scaling's schedule expressions, for scheduled actions: `at(...)` once,
//! `rate(value unit)`, and `cron(...)` with AWS's six fields (Application Auto Scaling User
//! Guide, "Scheduled scaling" and its cron reference, the same syntax as EventBridge's):
//!
//! | field | values | wildcards |
//! |---|---|---|
//! | Minutes | 0-59 | `, - * /` |
//! | Hours | 0-23 | `, - * /` |
//! | Day-of-month | 1-31 | `, - * ? / L W` |
//! | Month | 1-12 or JAN-DEC | `, - * /` |
//! | Day-of-week | 1-7 or SUN-SAT (1 is Sunday) | `, - * ? L #` |
//! | Year | 1970-2199 | `, - * /` |
//!
//! Day-of-month and day-of-week cannot both be given: one of them is `?`. Times are civil times
//! in the action's time zone (UTC when none is given); the caller converts.

use std::fmt;

use k8s_openapi::jiff::civil::{Date, DateTime, Time};

/// A parsed schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// `at(yyyy-mm-ddThh:mm:ss)`: once.
    At(DateTime),
    /// `rate(value unit)`: every `minutes` minutes from the action's start.
    Rate {
        minutes: u32,
    },
    Cron(Cron),
}

/// Why an expression is refused, in words that name the part at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleError(pub String);

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn error(message: impl Into<String>) -> ScheduleError {
    ScheduleError(message.into())
}

pub const FORMS: &str = "at(yyyy-mm-ddThh:mm:ss), rate(value unit) or cron(minutes hours day-of-month month day-of-week year)";

impl Schedule {
    pub fn parse(expression: &str) -> Result<Self, ScheduleError> {
        let inner = |prefix: &str| {
            expression
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_suffix(')'))
        };
        if let Some(at) = inner("at(") {
            return parse_at(at).map(Schedule::At);
        }
        if let Some(rate) = inner("rate(") {
            return parse_rate(rate);
        }
        if let Some(cron) = inner("cron(") {
            return Cron::parse(cron).map(Schedule::Cron);
        }
        Err(error(format!(
            "{expression:?} is not a schedule expression: use {FORMS}"
        )))
    }

    /// Why the expression names no time at all, whatever the day (`cron(0 8 31 2 ? *)`:
    /// "February has no 31st"); None when it names one. AWS takes such an expression and the
    /// action simply never runs.
    pub fn never_runs(&self) -> Option<String> {
        match self {
            Schedule::Cron(cron) => cron.never_runs(),
            Schedule::At(_) | Schedule::Rate { .. } => None,
        }
    }
}

fn parse_at(text: &str) -> Result<DateTime, ScheduleError> {
    let bad = || {
        error(format!(
            "at({text}): the time must be yyyy-mm-ddThh:mm:ss, e.g. at(2026-12-01T08:00:00)"
        ))
    };
    // Exactly the documented shape: jiff alone would also take other ISO 8601 forms.
    let shape_ok = text.len() == 19
        && text.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '-',
            10 => c == 'T',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        });
    if !shape_ok {
        return Err(bad());
    }
    text.parse::<DateTime>().map_err(|_| bad())
}

fn parse_rate(text: &str) -> Result<Schedule, ScheduleError> {
    let bad = |why: &str| {
        error(format!(
            "rate({text}): {why}; write rate(value unit) with a positive whole value and minute(s), hour(s) or day(s), e.g. rate(30 minutes)"
        ))
    };
    let mut words = text.split(' ');
    let (Some(value), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Err(bad("expected a value and a unit"));
    };
    // Digits only, no leading zero (`01`, `+1` are refused, as the CRD's pattern refuses them).
    let digits_only = value.bytes().all(|b| b.is_ascii_digit()) && !value.starts_with('0');
    let value: u32 = value
        .parse()
        .ok()
        .filter(|v| *v > 0 && digits_only)
        .ok_or_else(|| bad("the value is not a positive whole number"))?;
    let per_unit = match unit {
        "minute" | "minutes" => 1,
        "hour" | "hours" => 60,
        "day" | "days" => 24 * 60,
        _ => return Err(bad("the unit is not minute(s), hour(s) or day(s)")),
    };
    let minutes = value
        .checked_mul(per_unit)
        .ok_or_else(|| bad("the value is too large"))?;
    Ok(Schedule::Rate { minutes })
}

/// A cron expression's six fields, each as the set of values it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Vec<bool>,
    hours: Vec<bool>,
    days: DaysOfMonth,
    months: Vec<bool>,
    weekdays: DaysOfWeek,
    years: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DaysOfMonth {
    Any,
    Set(Vec<bool>),
    Last,
    /// `nW`: the weekday (Monday to Friday) nearest day n, within the month.
    NearestWeekday(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum DaysOfWeek {
    Any,
    /// Indexed 1 (Sunday) to 7 (Saturday).
    Set(Vec<bool>),
    /// `nL`: the last such weekday of the month.
    Last(u8),
    /// `d#n`: the n-th such weekday of the month.
    Nth(u8, u8),
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const FIRST_YEAR: u16 = 1970;
const LAST_YEAR: u16 = 2199;
const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
/// The most days each month has (February in a leap year).
const LONGEST_MONTHS: [usize; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

impl Cron {
    fn parse(text: &str) -> Result<Self, ScheduleError> {
        let fields: Vec<&str> = text.split(' ').filter(|f| !f.is_empty()).collect();
        let [minutes, hours, days, months, weekdays, years] = fields[..] else {
            return Err(error(format!(
                "cron({text}): AWS cron expressions have 6 fields (minutes hours day-of-month month day-of-week year), this one has {}; e.g. cron(0 8 ? * MON-FRI *)",
                fields.len()
            )));
        };
        let field_error = |name: &str, e: String| error(format!("cron({text}): {name}: {e}"));
        let day_any = days == "?";
        let weekday_any = weekdays == "?";
        if day_any == weekday_any {
            return Err(error(format!(
                "cron({text}): one of day-of-month and day-of-week must be ? (and only one): e.g. cron(0 8 ? * MON-FRI *) or cron(0 8 1 * ? *)"
            )));
        }
        Ok(Cron {
            minutes: values(minutes, 0, 59, &[]).map_err(|e| field_error("minutes", e))?,
            hours: values(hours, 0, 23, &[]).map_err(|e| field_error("hours", e))?,
            days: if day_any {
                DaysOfMonth::Any
            } else {
                days_of_month(days).map_err(|e| field_error("day-of-month", e))?
            },
            months: values(months, 1, 12, &MONTHS).map_err(|e| field_error("month", e))?,
            weekdays: if weekday_any {
                DaysOfWeek::Any
            } else {
                days_of_week(weekdays).map_err(|e| field_error("day-of-week", e))?
            },
            years: values(years, FIRST_YEAR, LAST_YEAR, &[]).map_err(|e| field_error("year", e))?,
        })
    }

    fn never_runs(&self) -> Option<String> {
        // The usual mistake, named: days of the month that none of the months has.
        if let DaysOfMonth::Set(days) = &self.days {
            let months: Vec<usize> = (0..12).filter(|&m| self.months[m]).collect();
            let days: Vec<usize> = (1..=31).filter(|&d| days[d - 1]).collect();
            if !months
                .iter()
                .any(|&m| days.iter().any(|&d| d <= LONGEST_MONTHS[m]))
            {
                let names: Vec<&str> = months.iter().map(|&m| MONTH_NAMES[m]).collect();
                let ordinals: Vec<String> = days.iter().map(|&d| ordinal(d)).collect();
                let has = if names.len() == 1 { "has" } else { "have" };
                return Some(format!(
                    "{} {has} no {}",
                    listed(&names, "and"),
                    listed(&ordinals, "or")
                ));
            }
        }
        // Anything else (February 29th in years none of which is a leap year, a fifth Monday in
        // February of one year): look for a first run, from the first year the expression allows.
        let first_year = self.years.iter().position(|&allowed| allowed)? as i16 + FIRST_YEAR as i16;
        let before = Date::new(first_year - 1, 12, 31).ok()?.at(23, 59, 59, 0);
        match self.next_after(before) {
            Some(_) => None,
            None => Some("no date in the years it allows matches its day and month fields".into()),
        }
    }

    /// The first time strictly after `after` (in the same civil time) that the expression
    /// names, if any before the last year cron allows.
    pub fn next_after(&self, after: DateTime) -> Option<DateTime> {
        let start = after.date();
        let mut date = start;
        while date.year() <= LAST_YEAR as i16 {
            if self.matches_date(date) {
                let from = if date == start {
                    Some(after.time())
                } else {
                    None
                };
                if let Some(time) = self.first_time(from) {
                    return Some(date.to_datetime(time));
                }
            }
            date = date.tomorrow().ok()?;
        }
        None
    }

    /// Whether the expression names this civil minute (seconds must be 0). The simulator runs
    /// actions minute by minute with it, a different walk from [`Self::next_after`]'s.
    pub fn matches(&self, at: DateTime) -> bool {
        at.second() == 0
            && at.subsec_nanosecond() == 0
            && self.minutes[at.minute() as usize]
            && self.hours[at.hour() as usize]
            && self.matches_date(at.date())
    }

    fn first_time(&self, strictly_after: Option<Time>) -> Option<Time> {
        for hour in 0..24u8 {
            if !self.hours[hour as usize] {
                continue;
            }
            for minute in 0..60u8 {
                if !self.minutes[minute as usize] {
                    continue;
                }
                let time = Time::constant(hour as i8, minute as i8, 0, 0);
                if strictly_after.is_none_or(|after| time > after) {
                    return Some(time);
                }
            }
        }
        None
    }

    fn matches_date(&self, date: Date) -> bool {
        let year_ok = (date.year() as u16)
            .checked_sub(FIRST_YEAR)
            .and_then(|i| self.years.get(i as usize))
            .copied()
            .unwrap_or(false);
        if !year_ok || !self.months[date.month() as usize - 1] {
            return false;
        }
        let day = date.day() as u8;
        let last_day = date.days_in_month() as u8;
        // 1 (Sunday) to 7 (Saturday).
        let weekday = date.weekday().to_sunday_one_offset() as u8;
        let day_ok = match &self.days {
            DaysOfMonth::Any => true,
            DaysOfMonth::Set(set) => set[day as usize - 1],
            DaysOfMonth::Last => day == last_day,
            DaysOfMonth::NearestWeekday(n) => day == nearest_weekday(date, *n),
        };
        let weekday_ok = match &self.weekdays {
            DaysOfWeek::Any => true,
            DaysOfWeek::Set(set) => set[weekday as usize - 1],
            DaysOfWeek::Last(d) => weekday == *d && day + 7 > last_day,
            DaysOfWeek::Nth(d, n) => weekday == *d && (day - 1) / 7 + 1 == *n,
        };
        day_ok && weekday_ok
    }
}

/// 1st, 2nd, 3rd, 4th, ... 21st, 22nd, 23rd, ... 31st.
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `a`, `a and b`, `a, b and c` (with `or` in place of `and` as asked).
fn listed<S: AsRef<str>>(items: &[S], and: &str) -> String {
    match items {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => {
            let init: Vec<&str> = init.iter().map(AsRef::as_ref).collect();
            format!("{} {and} {}", init.join(", "), last.as_ref())
        }
    }
}

/// The weekday nearest day `n` of `date`'s month, without leaving the month.
fn nearest_weekday(date: Date, n: u8) -> u8 {
    let last = date.days_in_month() as u8;
    let n = n.min(last);
    let target = Date::new(date.year(), date.month(), n as i8).expect("a day of the month");
    match target.weekday().to_sunday_one_offset() {
        // Saturday: Friday before, or Monday after on the 1st.
        7 if n == 1 => 3,
        7 => n - 1,
        // Sunday: Monday after, or Friday before on the last day.
        1 if n == last => n - 2,
        1 => n + 1,
        _ => n,
    }
}

fn days_of_month(text: &str) -> Result<DaysOfMonth, String> {
    if text == "L" {
        return Ok(DaysOfMonth::Last);
    }
    if let Some(day) = text.strip_suffix('W') {
        let day = number(day, 1, 31, &[])?;
        return Ok(DaysOfMonth::NearestWeekday(day as u8));
    }
    values(text, 1, 31, &[]).map(DaysOfMonth::Set)
}

fn days_of_week(text: &str) -> Result<DaysOfWeek, String> {
    if let Some((day, nth)) = text.split_once('#') {
        let day = number(day, 1, 7, &WEEKDAYS)?;
        let nth = number(nth, 1, 5, &[]).map_err(|_| format!("{text:?}: after # comes 1 to 5"))?;
        return Ok(DaysOfWeek::Nth(day as u8, nth as u8));
    }
    if let Some(day) = text.strip_suffix('L').filter(|d| !d.is_empty()) {
        return Ok(DaysOfWeek::Last(number(day, 1, 7, &WEEKDAYS)? as u8));
    }
    // `L` alone is the last day of the week, Saturday, every week (AWS's cron reference: "the
    // last day of the month or week"); `5L` is the last Thursday of the month.
    if text == "L" {
        return Ok(DaysOfWeek::Set((1..=7).map(|d| d == 7).collect()));
    }
    values(text, 1, 7, &WEEKDAYS).map(DaysOfWeek::Set)
}

/// `*`, `a`, `a-b`, `a/step`, `a-b/step`, `*/step`, and lists of them: the allowed values as a
/// table indexed from `low`.
fn values(text: &str, low: u16, high: u16, names: &[&str]) -> Result<Vec<bool>, String> {
    let mut allowed = vec![false; usize::from(high - low + 1)];
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step = step.parse::<u16>().ok().filter(|s| *s > 0).ok_or_else(|| {
                    format!("{part:?}: the step after / must be a positive number")
                })?;
                (range, step)
            }
            None => (part, 1),
        };
        let (first, last) = match range {
            "*" => (low, high),
            _ => match range.split_once('-') {
                Some((a, b)) => (number(a, low, high, names)?, number(b, low, high, names)?),
                // `a/step` runs from a to the end of the range.
                None if step > 1 => (number(range, low, high, names)?, high),
                None => {
                    let n = number(range, low, high, names)?;
                    (n, n)
                }
            },
        };
        if first > last {
            return Err(format!("{part:?}: the range runs backwards"));
        }
        for v in (first..=last).step_by(usize::from(step)) {
            allowed[usize::from(v - low)] = true;
        }
    }
    Ok(allowed)
}

fn number(text: &str, low: u16, high: u16, names: &[&str]) -> Result<u16, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(low + i as u16);
    }
    text.parse::<u16>()
        .ok()
        .filter(|n| (low..=high).contains(n))
        .ok_or_else(|| {
            let named = if names.is_empty() {
                String::new()
            } else {
                format!(" or {}-{}", names[0], names[names.len() - 1])
            };
            format!("{text:?} is not {low}-{high}{named}")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::civil::date;

    fn next(expression: &str, after: DateTime) -> Option<DateTime> {
        match Schedule::parse(expression).unwrap() {
            Schedule::Cron(cron) => cron.next_after(after),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_three_forms_parse() {
        assert_eq!(
            Schedule::parse("at(2026-12-01T08:00:00)"),
            Ok(Schedule::At(date(2026, 12, 1).at(8, 0, 0, 0)))
        );
        assert_eq!(
            Schedule::parse("rate(2 hours)"),
            Ok(Schedule::Rate { minutes: 120 })
        );
        assert_eq!(
            Schedule::parse("rate(1 day)"),
            Ok(Schedule::Rate { minutes: 1440 })
        );
        assert!(matches!(
            Schedule::parse("cron(50 7 ? * MON-FRI *)"),
            Ok(Schedule::Cron(_))
        ));
    }

    #[test]
    fn malformed_expressions_are_refused_naming_the_part_at_fault() {
        for (expression, names) in [
            ("every day at 8", "is not a schedule expression"),
            ("at(2026-12-01 08:00:00)", "yyyy-mm-ddThh:mm:ss"),
            ("at(2026-02-30T08:00:00)", "yyyy-mm-ddThh:mm:ss"),
            ("rate(0 minutes)", "positive whole"),
            ("rate(5 weeks)", "unit"),
            ("rate(01 day)", "positive whole"),
            ("cron(0 8 * * *)", "6 fields"),
            (
                "cron(0 8 * * MON *)",
                "one of day-of-month and day-of-week must be ?",
            ),
            (
                "cron(0 8 ? * ? *)",
                "one of day-of-month and day-of-week must be ?",
            ),
            ("cron(60 8 ? * MON *)", "minutes: \"60\" is not 0-59"),
            ("cron(0 24 ? * MON *)", "hours"),
            (
                "cron(0 8 ? FOO MON *)",
                "month: \"FOO\" is not 1-12 or JAN-DEC",
            ),
            ("cron(0 8 ? * MON#6 *)", "after # comes 1 to 5"),
            ("cron(0 8 ? * FRI-MON *)", "runs backwards"),
            ("cron(0 8 ? * MON 2300)", "year"),
            ("cron(*/0 8 ? * MON *)", "step"),
        ] {
            let refused = Schedule::parse(expression).expect_err(expression);
            assert!(refused.0.contains(names), "{expression}: {refused}");
        }
    }

    #[test]
    fn an_expression_that_names_no_date_says_why() {
        for (expression, why) in [
            ("cron(0 8 31 2 ? *)", "February has no 31st"),
            ("cron(0 8 30,31 FEB ? *)", "February has no 30th or 31st"),
            (
                "cron(0 8 31 4,6,9 ? *)",
                "April, June and September have no 31st",
            ),
            (
                "cron(0 8 29 2 ? 2027)",
                "no date in the years it allows matches its day and month fields",
            ),
        ] {
            let schedule = Schedule::parse(expression).unwrap();
            assert_eq!(schedule.never_runs().as_deref(), Some(why), "{expression}");
        }
        for runs in [
            "cron(0 8 29 2 ? *)",
            "cron(0 8 31 1-2 ? *)",
            "cron(0 8 L 2 ? *)",
            "cron(0 8 31W 2 ? *)",
            "cron(0 8 ? 2 MON#5 *)",
            // Past, but not never: that depends on the clock, which this does not read.
            "cron(0 8 1 1 ? 2020)",
            "cron(0 8 1 1 ? 2199)",
            "at(2020-01-01T00:00:00)",
            "rate(1 day)",
        ] {
            assert_eq!(Schedule::parse(runs).unwrap().never_runs(), None, "{runs}");
        }
    }

    #[test]
    fn cron_finds_the_next_run() {
        // 2026-11-28 is a Saturday.
        let saturday_noon = date(2026, 11, 28).at(12, 0, 0, 0);
        assert_eq!(
            next("cron(50 7 ? * MON-FRI *)", saturday_noon),
            Some(date(2026, 11, 30).at(7, 50, 0, 0))
        );
        assert_eq!(
            next("cron(0/15 * * * ? *)", saturday_noon),
            Some(date(2026, 11, 28).at(12, 15, 0, 0)),
            "strictly after"
        );
        assert_eq!(
            next("cron(0 0 L * ? *)", saturday_noon),
            Some(date(2026, 11, 30).at(0, 0, 0, 0))
        );
        assert_eq!(
            next("cron(0 9 ? * 2#1 *)", saturday_noon),
            Some(date(2026, 12, 7).at(9, 0, 0, 0)),
            "the first Monday of December"
        );
        assert_eq!(
            next("cron(0 8 ? * L *)", saturday_noon),
            Some(date(2026, 12, 5).at(8, 0, 0, 0)),
            "L alone is the last day of the week, Saturday, every week"
        );
        assert_eq!(
            next("cron(0 9 ? * 6L *)", saturday_noon),
            Some(date(2026, 12, 25).at(9, 0, 0, 0)),
            "the last Friday of December"
        );
        assert_eq!(
            next("cron(0 9 1W * ? *)", saturday_noon),
            Some(date(2026, 12, 1).at(9, 0, 0, 0)),
            "December 1st 2026 is a Tuesday"
        );
        assert_eq!(
            next("cron(0 9 1W * ? *)", date(2026, 12, 2).at(0, 0, 0, 0)),
            Some(date(2027, 1, 1).at(9, 0, 0, 0)),
            "January 1st 2027 is a Friday"
        );
        assert_eq!(
            next("cron(0 9 ? * MON 2025)", saturday_noon),
            None,
            "only in the past"
        );
        assert_eq!(
            next("cron(0 8 29 FEB ? *)", saturday_noon),
            Some(date(2028, 2, 29).at(8, 0, 0, 0))
        );
    }

    proptest::proptest! {
        /// The next run is the first minute after the start that the expression names, as
        /// walking minute by minute finds it.
        #[test]
        fn the_next_run_is_the_first_matching_minute(
            expression in proptest::sample::select(vec![
                "cron(50 7 ? * MON-FRI *)",
                "cron(0/20 9-17 ? * 2,4,6 *)",
                "cron(0 0 L * ? *)",
                "cron(15 3 1W * ? *)",
                "cron(0 12 ? * 3#2 *)",
                "cron(30 6 ? * 1L *)",
                "cron(5 */6 10-12 * ? *)",
            ]),
            day in 0i64..800,
            minute in 0i64..1440,
        ) {
            let Schedule::Cron(cron) = Schedule::parse(expression).unwrap() else { unreachable!() };
            let start = date(2026, 1, 1).at(0, 0, 0, 0)
                + k8s_openapi::jiff::Span::new().days(day).minutes(minute);
            let found = cron.next_after(start).expect("a next run");
            proptest::prop_assert!(found > start);
            let mut t = start + k8s_openapi::jiff::Span::new().minutes(1);
            t = t.with().second(0).build().unwrap();
            while t < found {
                proptest::prop_assert!(
                    !(cron.matches_date(t.date())
                        && cron.hours[t.hour() as usize] && cron.minutes[t.minute() as usize]),
                    "{} matches before {}", t, found
                );
                t += k8s_openapi::jiff::Span::new().minutes(1);
            }
            proptest::prop_assert!(cron.matches_date(found.date()));
            proptest::prop_assert!(cron.hours[found.hour() as usize] && cron.minutes[found.minute() as usize]);
        }
    }
}
