//! CBOR for the Smithy RPC v2 CBOR protocol (docs/aws-behaviour.md §6.2): requests are decoded with
//! ciborium into JSON values; responses are encoded here, so that doubles always travel as
//! 64-bit floats and timestamps as tag 1 (epoch seconds), which the SDK decoders require.

use crate::error::SimError;

use serde_json::Value;

/// Response members that are timestamps in the CloudWatch model.
const TIMESTAMP_MEMBERS: &[&str] = &[
    "StateUpdatedTimestamp",
    "StateTransitionedTimestamp",
    "AlarmConfigurationUpdatedTimestamp",
    "Timestamp",
    "CreationTime",
    "StartTime",
    "EndTime",
];

pub fn decode(bytes: &[u8]) -> Result<Value, SimError> {
    if bytes.is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    let value: ciborium::Value = ciborium::from_reader(bytes)
        .map_err(|e| SimError::Cbor(format!("invalid CBOR body: {e}")))?;
    Ok(to_json(value))
}

fn to_json(value: ciborium::Value) -> Value {
    use ciborium::Value as C;
    match value {
        C::Integer(i) => {
            let n: i128 = i.into();
            i64::try_from(n)
                .map(Value::from)
                .unwrap_or_else(|_| Value::from(n as f64))
        }
        C::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        C::Text(s) => Value::String(s),
        C::Bool(b) => Value::Bool(b),
        C::Null => Value::Null,
        C::Tag(_, inner) => to_json(*inner),
        C::Array(items) => Value::Array(items.into_iter().map(to_json).collect()),
        C::Map(entries) => Value::Object(
            entries
                .into_iter()
                .filter_map(|(k, v)| match k {
                    C::Text(k) => Some((k, to_json(v))),
                    _ => None,
                })
                .collect(),
        ),
        C::Bytes(b) => Value::Array(b.into_iter().map(Value::from).collect()),
        _ => Value::Null,
    }
}

pub fn encode(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, value, false);
    out
}

fn write_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

fn write_f64(out: &mut Vec<u8>, f: f64) {
    out.push(0xfb);
    out.extend(f.to_be_bytes());
}

fn write_value(out: &mut Vec<u8>, value: &Value, timestamp: bool) {
    match value {
        Value::Null => out.push(0xf6),
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Number(n) if timestamp => {
            write_head(out, 6, 1);
            write_f64(out, n.as_f64().unwrap_or(0.0));
        }
        Value::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(u), _) => write_head(out, 0, u),
            (None, Some(i)) => write_head(out, 1, (-1 - i) as u64),
            _ => write_f64(out, n.as_f64().unwrap_or(0.0)),
        },
        Value::String(s) => {
            write_head(out, 3, s.len() as u64);
            out.extend(s.as_bytes());
        }
        Value::Array(items) => {
            write_head(out, 4, items.len() as u64);
            for item in items {
                write_value(out, item, false);
            }
        }
        Value::Object(map) => {
            write_head(out, 5, map.len() as u64);
            for (k, v) in map {
                write_head(out, 3, k.len() as u64);
                out.extend(k.as_bytes());
                write_value(out, v, TIMESTAMP_MEMBERS.contains(&k.as_str()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_through_ciborium_and_keeps_doubles_wide() {
        let v = json!({"Threshold": 1.0, "Period": 60, "Neg": -5, "Names": ["a", "b"], "On": true, "Big": 70000});
        let bytes = encode(&v);
        assert_eq!(decode(&bytes).unwrap(), v);
        // 1.0 is a 64-bit float (0xfb), never a half or single float.
        let pos = bytes
            .windows(2)
            .position(|w| w == [0xfb, 0x3f])
            .expect("f64 encoding of 1.0");
        assert!(pos > 0);
    }

    #[test]
    fn timestamps_are_tag_1() {
        let bytes = encode(&json!({"StateUpdatedTimestamp": 1700000000.5}));
        assert!(
            bytes.windows(2).any(|w| w == [0xc1, 0xfb]),
            "tag 1 then an f64"
        );
    }
}
