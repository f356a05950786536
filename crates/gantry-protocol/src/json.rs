//! awsJson1_0 and awsJson1_1: the wire form is the in-memory form, except for timestamps the
//! model asks to be strings, members renamed by `locationName`, and nulls (absent members).
//!
//! The same walk checks CBOR requests once they are decoded into JSON terms (`cbor.rs`), with
//! member names as they are (Smithy RPC v2 ignores `locationName`).

use crate::error::ProtocolError;
use crate::model::{Member, Model, Shape, Structure, TimestampFormat};
use crate::time;
use base64::Engine;
use serde_json::{Map, Value};

/// Which wire: JSON renames members by `locationName`, CBOR does not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    Json,
    Cbor,
}

fn wire_name<'a>(wire: Wire, name: &'a str, member: &'a Member) -> &'a str {
    match (wire, &member.location_name) {
        (Wire::Json, Some(n)) => n,
        _ => name,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(path: &str, expected: &str, v: &Value) -> ProtocolError {
    let shown = v.to_string();
    let shown =
        if shown.len() > 64 { format!("{}...", &shown[..shown.floor_char_boundary(64)]) } else { shown };
    ProtocolError::invalid(path, format!("expected {expected}, found {} {shown}", kind(v)))
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

/// Converts a request body's structure (already parsed) into the in-memory form, checking types.
pub(crate) fn read_structure(
    model: &Model,
    wire: Wire,
    shape: &Structure,
    v: Value,
    path: &str,
) -> Result<Map<String, Value>, ProtocolError> {
    let Value::Object(object) = v else {
        return Err(wrong(path, "an object", &v));
    };
    let mut out = Map::new();
    for (key, value) in object {
        if value.is_null() {
            continue;
        }
        let Some((name, member)) = shape.members.iter().find(|(n, m)| wire_name(wire, n, m) == key) else {
            // Unknown members are ignored, as AWS's services do (a newer SDK may send them).
            continue;
        };
        let p = join(path, &key);
        if let Some(value) = read(model, wire, member, value, &p)? {
            out.insert(name.clone(), value);
        }
    }
    Ok(out)
}

/// Converts one value into the in-memory form; `None` when it is a null to be dropped.
pub(crate) fn read(
    model: &Model,
    wire: Wire,
    member: &Member,
    v: Value,
    path: &str,
) -> Result<Option<Value>, ProtocolError> {
    if v.is_null() {
        return Ok(None);
    }
    let Some(shape) = model.shape(&member.shape) else {
        return Ok(Some(v));
    };
    Ok(Some(match shape {
        Shape::Structure(s) => Value::Object(read_structure(model, wire, s, v, path)?),
        Shape::List { member: item, .. } => {
            let Value::Array(items) = v else {
                return Err(wrong(path, "an array", &v));
            };
            let mut out = Vec::with_capacity(items.len());
            for (i, item_value) in items.into_iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push(read(model, wire, item, item_value, &p)?.unwrap_or(Value::Null));
            }
            Value::Array(out)
        }
        Shape::Map { value: value_member, .. } => {
            let Value::Object(entries) = v else {
                return Err(wrong(path, "an object", &v));
            };
            let mut out = Map::new();
            for (k, entry) in entries {
                let p = join(path, &k);
                if let Some(entry) = read(model, wire, value_member, entry, &p)? {
                    out.insert(k, entry);
                }
            }
            Value::Object(out)
        }
        Shape::String => match v {
            Value::String(_) => v,
            _ => return Err(wrong(path, "a string", &v)),
        },
        Shape::Boolean => match v {
            Value::Bool(_) => v,
            _ => return Err(wrong(path, "a boolean", &v)),
        },
        Shape::Integer => match &v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v,
            _ => return Err(wrong(path, "an integer", &v)),
        },
        Shape::Float => match &v {
            Value::Number(_) => v,
            Value::String(s) if matches!(s.as_str(), "NaN" | "Infinity" | "-Infinity") => v,
            _ => return Err(wrong(path, "a number", &v)),
        },
        Shape::Blob => match &v {
            Value::String(s) => {
                if base64::engine::general_purpose::STANDARD.decode(s).is_err() {
                    return Err(wrong(path, "base64-encoded bytes", &v));
                }
                v
            }
            _ => return Err(wrong(path, "base64-encoded bytes", &v)),
        },
        Shape::Timestamp { .. } => match &v {
            Value::Number(n) => match n.as_f64() {
                Some(f) => time::epoch_value(f),
                None => return Err(wrong(path, "a timestamp", &v)),
            },
            Value::String(s) => match time::parse_any(s) {
                Some(f) => time::epoch_value(f),
                None => return Err(wrong(path, "a timestamp", &v)),
            },
            _ => return Err(wrong(path, "a timestamp", &v)),
        },
        Shape::Document => v,
    }))
}

/// Converts an in-memory value into its JSON wire form.
pub(crate) fn write(model: &Model, member: &Member, v: &Value) -> Value {
    let Some(shape) = model.shape(&member.shape) else {
        return v.clone();
    };
    match (shape, v) {
        (Shape::Structure(s), Value::Object(object)) => Value::Object(write_structure(model, s, object)),
        (Shape::List { member: item, .. }, Value::Array(items)) => {
            Value::Array(items.iter().map(|i| write(model, item, i)).collect())
        }
        (Shape::Map { value, .. }, Value::Object(entries)) => Value::Object(
            entries
                .iter()
                .filter(|(_, e)| !e.is_null())
                .map(|(k, e)| (k.clone(), write(model, value, e)))
                .collect(),
        ),
        (Shape::Timestamp { .. }, _) => {
            let Some(epoch) = epoch_of(v) else { return v.clone() };
            match model.timestamp_format(member) {
                Some(TimestampFormat::Iso8601) => Value::String(time::format_iso8601(epoch)),
                Some(TimestampFormat::Rfc822) => Value::String(time::format_http_date(epoch)),
                _ => time::epoch_value(epoch),
            }
        }
        _ => v.clone(),
    }
}

/// Writes a structure's members, renamed by `locationName`, without nulls. Members the model does
/// not know are written as they are.
pub(crate) fn write_structure(
    model: &Model,
    shape: &Structure,
    object: &Map<String, Value>,
) -> Map<String, Value> {
    let mut out = Map::new();
    for (k, v) in object {
        if v.is_null() {
            continue;
        }
        match shape.member(k) {
            Some(member) => {
                out.insert(wire_name(Wire::Json, k, member).to_string(), write(model, member, v));
            }
            None => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// A timestamp of the in-memory form (or a string a service wrote instead) as epoch seconds.
pub(crate) fn epoch_of(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => time::parse_any(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model::from_json(
            br#"{"metadata": {"protocol": "json", "jsonVersion": "1.1", "targetPrefix": "T"},
                 "operations": {},
                 "shapes": {
                   "In": {"type": "structure", "members": {
                      "Tags": {"shape": "TagList"}, "When": {"shape": "Iso"}, "Renamed": {"shape": "S", "locationName": "wire"},
                      "Count": {"shape": "I"}}},
                   "TagList": {"type": "list", "member": {"shape": "Tag"}},
                   "Tag": {"type": "structure", "members": {"key": {"shape": "S"}, "value": {"shape": "S"}}},
                   "Iso": {"type": "timestamp", "timestampFormat": "iso8601"},
                   "I": {"type": "integer"},
                   "S": {"type": "string"}}}"#,
        )
        .unwrap()
    }

    #[test]
    fn wrong_types_name_the_member_and_value() {
        let model = model();
        let shape = model.structure("In").unwrap();
        let v = serde_json::json!({"Tags": [{"key": "a"}, {"key": 7}]});
        let err = read_structure(&model, Wire::Json, shape, v, "").unwrap_err();
        assert_eq!(err.to_string(), "Tags[1].key: expected a string, found a number 7");
        let err =
            read_structure(&model, Wire::Json, shape, serde_json::json!({"Count": 1.5}), "").unwrap_err();
        assert_eq!(err.to_string(), "Count: expected an integer, found a number 1.5");
        let err = read_structure(&model, Wire::Json, shape, serde_json::json!([]), "").unwrap_err();
        assert_eq!(err.to_string(), "request: expected an object, found an array []");
    }

    #[test]
    fn timestamps_and_renamed_members_convert_both_ways() {
        let model = model();
        let shape = model.structure("In").unwrap();
        let wire =
            serde_json::json!({"When": "2014-04-29T18:30:38Z", "wire": "x", "Other": 1, "Count": null});
        let read = read_structure(&model, Wire::Json, shape, wire, "").unwrap();
        assert_eq!(Value::Object(read.clone()), serde_json::json!({"When": 1398796238, "Renamed": "x"}));
        let back = write_structure(&model, shape, &read);
        assert_eq!(Value::Object(back), serde_json::json!({"When": "2014-04-29T18:30:38Z", "wire": "x"}));
    }
}
