//! CloudWatch metric alarm evaluation (docs/aws-behaviour.md §4.4): M of N datapoints, an evaluation
//! range wider than N, the four TreatMissingData behaviours and the premature-alarm rule.

use std::collections::VecDeque;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlarmState {
    Ok,
    Alarm,
    InsufficientData,
}

impl AlarmState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Ok => "OK",
            AlarmState::Alarm => "ALARM",
            AlarmState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    GreaterThanOrEqual,
    GreaterThan,
    LessThan,
    LessThanOrEqual,
}

impl Comparison {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "GreaterThanOrEqualToThreshold" => Comparison::GreaterThanOrEqual,
            "GreaterThanThreshold" => Comparison::GreaterThan,
            "LessThanThreshold" => Comparison::LessThan,
            "LessThanOrEqualToThreshold" => Comparison::LessThanOrEqual,
            _ => return None,
        })
    }

    pub fn breaches(self, value: f64, threshold: f64) -> bool {
        match self {
            Comparison::GreaterThanOrEqual => value >= threshold,
            Comparison::GreaterThan => value > threshold,
            Comparison::LessThan => value < threshold,
            Comparison::LessThanOrEqual => value <= threshold,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingData {
    Breaching,
    NotBreaching,
    Ignore,
    Missing,
}

impl MissingData {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("breaching") => MissingData::Breaching,
            Some("notBreaching") => MissingData::NotBreaching,
            Some("ignore") => MissingData::Ignore,
            _ => MissingData::Missing, // §4.4: the default when omitted
        }
    }
}

/// The rule part of an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmRule {
    pub evaluation_periods: usize,
    pub datapoints_to_alarm: usize,
    pub threshold: f64,
    pub comparison: Comparison,
    pub missing: MissingData,
}

/// The next state from the datapoints of the evaluation range, oldest first (None: missing).
///
/// §4.4: with no missing point among the newest N, those N decide. With at least N real points in
/// the range, the newest N real points decide and TreatMissingData is ignored. With fewer, missing
/// points are filled per TreatMissingData; for `missing`, an all-missing range is
/// INSUFFICIENT_DATA and the premature-alarm rule applies: ALARM when the oldest breaching point
/// among the newest N is at least M periods old and every newer point breaches or is missing.
pub fn evaluate(
    rule: &AlarmRule,
    range: &VecDeque<Option<f64>>,
    current: AlarmState,
) -> AlarmState {
    let n = rule.evaluation_periods.max(1);
    let m = rule.datapoints_to_alarm.clamp(1, n);
    let breaches = |v: f64| rule.comparison.breaches(v, rule.threshold);
    let decide = |points: &[bool]| {
        if points.iter().filter(|b| **b).count() >= m {
            AlarmState::Alarm
        } else {
            AlarmState::Ok
        }
    };
    let newest_n: Vec<Option<f64>> = range.iter().rev().take(n).rev().copied().collect();
    if newest_n.len() == n && newest_n.iter().all(Option::is_some) {
        let points: Vec<bool> = newest_n.iter().map(|v| breaches(v.unwrap())).collect();
        return decide(&points);
    }
    let real: Vec<f64> = range.iter().flatten().copied().collect();
    if real.len() >= n {
        let points: Vec<bool> = real[real.len() - n..]
            .iter()
            .map(|v| breaches(*v))
            .collect();
        return decide(&points);
    }
    match rule.missing {
        MissingData::Ignore => current,
        MissingData::Breaching | MissingData::NotBreaching => {
            let fill = rule.missing == MissingData::Breaching;
            let mut points: Vec<bool> = newest_n.iter().map(|v| v.map_or(fill, breaches)).collect();
            while points.len() < n {
                points.insert(0, fill);
            }
            decide(&points)
        }
        MissingData::Missing => {
            if real.is_empty() {
                return AlarmState::InsufficientData;
            }
            // Ages: the newest point is 1 period old.
            let len = newest_n.len();
            let oldest_breaching = newest_n
                .iter()
                .enumerate()
                .find(|(_, v)| v.is_some_and(breaches))
                .map(|(i, _)| len - i);
            if let Some(age) = oldest_breaching {
                let newer_ok = newest_n[len - age + 1..]
                    .iter()
                    .all(|v| v.is_none_or(breaches));
                if age >= m && newer_ok {
                    return AlarmState::Alarm;
                }
            }
            if newest_n.iter().flatten().any(|v| !breaches(*v)) {
                AlarmState::Ok
            } else {
                current
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of the CloudWatch user guide's tables (§4.4), oldest first: X breaching, 0 not, - missing.
    fn range(text: &str) -> VecDeque<Option<f64>> {
        text.split_whitespace()
            .map(|c| match c {
                "X" => Some(5.0),
                "0" => Some(0.0),
                _ => None,
            })
            .collect()
    }

    fn rule(n: usize, m: usize, missing: MissingData) -> AlarmRule {
        AlarmRule {
            evaluation_periods: n,
            datapoints_to_alarm: m,
            threshold: 1.0,
            comparison: Comparison::GreaterThanOrEqual,
            missing,
        }
    }

    #[test]
    fn documented_three_of_three_rows_with_missing_data_treated_as_missing() {
        let r = rule(3, 3, MissingData::Missing);
        assert_eq!(
            evaluate(&r, &range("0 - X - X"), AlarmState::Ok),
            AlarmState::Ok
        );
        assert_eq!(
            evaluate(&r, &range("- - - - -"), AlarmState::Ok),
            AlarmState::InsufficientData
        );
        assert_eq!(
            evaluate(&r, &range("0 X X - X"), AlarmState::Ok),
            AlarmState::Alarm
        );
        assert_eq!(
            evaluate(&r, &range("- - X - -"), AlarmState::Ok),
            AlarmState::Alarm,
            "premature alarm"
        );
        assert_eq!(
            evaluate(&r, &range("- - - X -"), AlarmState::Ok),
            AlarmState::Ok,
            "too young to alarm"
        );
    }

    #[test]
    fn m_of_n_needs_m_breaching_points_within_the_last_n() {
        let r = rule(3, 2, MissingData::Missing);
        assert_eq!(
            evaluate(&r, &range("0 0 X 0 X"), AlarmState::Ok),
            AlarmState::Alarm
        );
        assert_eq!(
            evaluate(&r, &range("X X 0 0 X"), AlarmState::Alarm),
            AlarmState::Ok
        );
    }

    #[test]
    fn the_other_missing_data_treatments() {
        let gap = range("- - - - X");
        assert_eq!(
            evaluate(&rule(2, 2, MissingData::Breaching), &gap, AlarmState::Ok),
            AlarmState::Alarm
        );
        assert_eq!(
            evaluate(
                &rule(2, 2, MissingData::NotBreaching),
                &gap,
                AlarmState::Alarm
            ),
            AlarmState::Ok
        );
        assert_eq!(
            evaluate(&rule(2, 2, MissingData::Ignore), &gap, AlarmState::Alarm),
            AlarmState::Alarm
        );
        assert_eq!(
            evaluate(&rule(2, 2, MissingData::Ignore), &gap, AlarmState::Ok),
            AlarmState::Ok
        );
    }

    #[test]
    fn strict_comparison_never_breaches_at_the_threshold() {
        let mut r = rule(3, 3, MissingData::Missing);
        r.comparison = Comparison::GreaterThan;
        r.threshold = 5.0;
        assert_eq!(
            evaluate(&r, &range("X X X"), AlarmState::Ok),
            AlarmState::Ok,
            "5 is not > 5: trap 1"
        );
    }
}
