//! Load profiles for `asyncscale simulate --load`: `burst:N@T` (N requests at time T) and
//! `rate:R/m@T1-T2` (R requests a minute from T1 to T2), comma-separated; times like `90s`,
//! `5m`, `2h` or plain seconds.

use crate::error::SimError;

#[derive(Debug, Clone, PartialEq)]
pub enum LoadPart {
    Burst {
        count: f64,
        at_s: f64,
    },
    Rate {
        per_minute: f64,
        from_s: f64,
        to_s: f64,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LoadProfile {
    pub parts: Vec<LoadPart>,
}

/// Seconds from `90s`, `5m`, `2h`, `1.5h` or `120`.
pub fn parse_time(text: &str) -> Result<f64, SimError> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .parse()
        .map_err(|_| SimError::Time(format!("{text:?} is not a time such as 90s, 5m or 2h")))?;
    if !value.is_finite() || value < 0.0 {
        return Err(SimError::Time(format!(
            "{text:?} must be a non-negative time"
        )));
    }
    Ok(value * scale)
}

impl LoadProfile {
    pub fn parse(text: &str) -> Result<Self, SimError> {
        let mut parts = Vec::new();
        for piece in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (kind, rest) = piece.split_once(':').ok_or_else(|| {
                SimError::Load(format!("{piece:?}: expected burst:N@T or rate:R/m@T1-T2"))
            })?;
            let (amount, when) = rest
                .split_once('@')
                .ok_or_else(|| SimError::Load(format!("{piece:?}: missing @TIME")))?;
            match kind {
                "burst" => {
                    let count: f64 = amount
                        .parse()
                        .ok()
                        .filter(|c: &f64| c.is_finite() && *c >= 0.0)
                        .ok_or_else(|| {
                            SimError::Load(format!("{piece:?}: N must be a non-negative number"))
                        })?;
                    parts.push(LoadPart::Burst {
                        count: count.floor(),
                        at_s: parse_time(when)?,
                    });
                }
                "rate" => {
                    let per_minute = amount
                        .strip_suffix("/m")
                        .ok_or_else(|| {
                            SimError::Load(format!(
                                "{piece:?}: the rate is requests a minute, e.g. rate:30/m@0-10m"
                            ))
                        })?
                        .parse::<f64>()
                        .ok()
                        .filter(|r| r.is_finite() && *r >= 0.0)
                        .ok_or_else(|| {
                            SimError::Load(format!("{piece:?}: R must be a non-negative number"))
                        })?;
                    let (from, to) = when
                        .split_once('-')
                        .ok_or_else(|| SimError::Load(format!("{piece:?}: expected T1-T2")))?;
                    let (from_s, to_s) = (parse_time(from)?, parse_time(to)?);
                    if to_s <= from_s {
                        return Err(SimError::Load(format!("{piece:?}: T2 must be after T1")));
                    }
                    parts.push(LoadPart::Rate {
                        per_minute,
                        from_s,
                        to_s,
                    });
                }
                other => {
                    return Err(SimError::Load(format!(
                        "{piece:?}: unknown load {other:?}; use burst or rate"
                    )));
                }
            }
        }
        if parts.is_empty() {
            return Err(SimError::Load(
                "empty load profile: give burst:N@T or rate:R/m@T1-T2".into(),
            ));
        }
        Ok(Self { parts })
    }

    /// Requests arriving in [from, to): bursts whole, rates pro rata (fractions carry over).
    pub fn arrivals(&self, from: f64, to: f64) -> f64 {
        self.parts
            .iter()
            .map(|part| match *part {
                LoadPart::Burst { count, at_s } if at_s >= from && at_s < to => count,
                LoadPart::Burst { .. } => 0.0,
                LoadPart::Rate {
                    per_minute,
                    from_s,
                    to_s,
                } => {
                    let overlap = (to.min(to_s) - from.max(from_s)).max(0.0);
                    per_minute * overlap / 60.0
                }
            })
            .sum()
    }

    /// When the last request arrives.
    pub fn last_arrival_s(&self) -> f64 {
        self.parts
            .iter()
            .map(|p| match *p {
                LoadPart::Burst { at_s, .. } => at_s,
                LoadPart::Rate { to_s, .. } => to_s,
            })
            .fold(0.0, f64::max)
    }

    pub fn first_arrival_s(&self) -> f64 {
        self.parts
            .iter()
            .map(|p| match *p {
                LoadPart::Burst { at_s, .. } => at_s,
                LoadPart::Rate { from_s, .. } => from_s,
            })
            .fold(f64::INFINITY, f64::min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_and_deliver_requests() {
        let load = LoadProfile::parse("burst:5@90s, rate:30/m@5m-10m").unwrap();
        assert_eq!(load.parts.len(), 2);
        assert_eq!(load.arrivals(80.0, 90.0), 0.0);
        assert_eq!(load.arrivals(90.0, 100.0), 5.0);
        assert_eq!(load.arrivals(300.0, 360.0), 30.0);
        assert_eq!(load.arrivals(290.0, 310.0), 5.0);
        assert_eq!(load.last_arrival_s(), 600.0);
        assert_eq!(parse_time("2h"), Ok(7200.0));
    }

    #[test]
    fn bad_profiles_say_what_is_wrong() {
        assert!(
            LoadProfile::parse("burst:5")
                .unwrap_err()
                .to_string()
                .contains("missing @TIME")
        );
        assert!(
            LoadProfile::parse("rate:30@0-5m")
                .unwrap_err()
                .to_string()
                .contains("requests a minute")
        );
        assert!(
            LoadProfile::parse("rate:30/m@5m-1m")
                .unwrap_err()
                .to_string()
                .contains("after T1")
        );
        assert!(
            LoadProfile::parse("wave:3@1m")
                .unwrap_err()
                .to_string()
                .contains("unknown load")
        );
        assert!(LoadProfile::parse("").is_err());
    }
}
