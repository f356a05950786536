//! Smithy RPC v2 CBOR: CBOR maps keyed by member name, byte strings for blobs, tag 1 (epoch
//! seconds) for timestamps, `NaN`/`Infinity` as CBOR floats. Requests are decoded into JSON terms
//! and then checked by the same model walk as JSON (`json.rs`); responses are encoded from the
//! in-memory form by a walk of the model.

use crate::error::ProtocolError;
use crate::json::{self, Wire};
use crate::model::{Member, Model, Shape, Structure};
use base64::Engine;
use ciborium::value::Value as Cbor;
use serde_json::{Map, Number, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Decodes a request body into the in-memory form of `shape` (an empty body is an empty input).
pub(crate) fn read_request(
    model: &Model,
    shape: Option<&Structure>,
    body: &[u8],
) -> Result<Value, ProtocolError> {
    if body.is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    let cbor: Cbor = ciborium::de::from_reader(body)
        .map_err(|e| ProtocolError::Malformed(format!("request body is not valid CBOR: {e}")))?;
    let v = to_json(cbor, "")?;
    match shape {
        Some(s) => Ok(Value::Object(json::read_structure(model, Wire::Cbor, s, v, "")?)),
        None => match v {
            Value::Object(_) => Ok(Value::Object(Map::new())),
            other => Err(ProtocolError::invalid("", format!("expected a CBOR map, found {other}"))),
        },
    }
}

/// Decodes any CBOR value into JSON terms: byte strings become base64, tag 1 becomes epoch
/// seconds, non-finite floats become `"NaN"`, `"Infinity"` and `"-Infinity"`.
pub fn to_json(v: Cbor, path: &str) -> Result<Value, ProtocolError> {
    Ok(match v {
        Cbor::Null => Value::Null,
        Cbor::Bool(b) => Value::Bool(b),
        Cbor::Integer(i) => {
            let i = i128::from(i);
            if let Ok(n) = i64::try_from(i) {
                Value::Number(n.into())
            } else if let Ok(n) = u64::try_from(i) {
                Value::Number(n.into())
            } else {
                return Err(ProtocolError::invalid(path, format!("integer {i} is out of range")));
            }
        }
        Cbor::Float(f) => float(f),
        Cbor::Text(s) => Value::String(s),
        Cbor::Bytes(b) => Value::String(B64.encode(b)),
        Cbor::Tag(1, inner) => match *inner {
            Cbor::Integer(i) => Value::Number(Number::from(i64::try_from(i128::from(i)).unwrap_or(0))),
            Cbor::Float(f) if f.is_finite() => crate::time::epoch_value(f),
            other => {
                return Err(ProtocolError::invalid(
                    path,
                    format!("tag 1 holds {other:?}, not epoch seconds"),
                ));
            }
        },
        Cbor::Tag(_, inner) => to_json(*inner, path)?,
        Cbor::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Cbor::Map(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let Cbor::Text(k) = k else {
                    return Err(ProtocolError::invalid(path, format!("map key {k:?} is not a text string")));
                };
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                let v = to_json(v, &p)?;
                out.insert(k, v);
            }
            Value::Object(out)
        }
        _ => Value::Null,
    })
}

fn float(f: f64) -> Value {
    if f.is_nan() {
        Value::String("NaN".into())
    } else if f.is_infinite() {
        Value::String(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else {
        Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
    }
}

/// Encodes an in-memory structure as a CBOR body.
pub(crate) fn write_structure(model: &Model, shape: Option<&Structure>, v: &Value) -> Vec<u8> {
    let cbor = match (shape, v) {
        (Some(s), Value::Object(object)) => structure(model, s, object),
        (None, _) => Cbor::Map(Vec::new()),
        (Some(_), other) => generic(other),
    };
    encode(&cbor)
}

/// Encodes a CBOR value (writing to a Vec cannot fail).
pub(crate) fn encode(cbor: &Cbor) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::ser::into_writer(cbor, &mut out).expect("CBOR encoding into a Vec cannot fail");
    out
}

pub(crate) fn structure(model: &Model, shape: &Structure, object: &Map<String, Value>) -> Cbor {
    Cbor::Map(
        object
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| {
                let value = match shape.member(k) {
                    Some(member) => value(model, member, v),
                    None => generic(v),
                };
                (Cbor::Text(k.clone()), value)
            })
            .collect(),
    )
}

fn value(model: &Model, member: &Member, v: &Value) -> Cbor {
    let Some(shape) = model.shape(&member.shape) else {
        return generic(v);
    };
    match (shape, v) {
        (Shape::Structure(s), Value::Object(object)) => structure(model, s, object),
        (Shape::List { member: item, .. }, Value::Array(items)) => {
            Cbor::Array(items.iter().map(|i| value(model, item, i)).collect())
        }
        (Shape::Map { value: value_member, .. }, Value::Object(entries)) => Cbor::Map(
            entries
                .iter()
                .filter(|(_, e)| !e.is_null())
                .map(|(k, e)| (Cbor::Text(k.clone()), value(model, value_member, e)))
                .collect(),
        ),
        (Shape::Float, Value::String(s)) => match s.as_str() {
            "NaN" => Cbor::Float(f64::NAN),
            "Infinity" => Cbor::Float(f64::INFINITY),
            "-Infinity" => Cbor::Float(f64::NEG_INFINITY),
            _ => generic(v),
        },
        (Shape::Float, Value::Number(n)) => Cbor::Float(n.as_f64().unwrap_or(0.0)),
        (Shape::Blob, Value::String(s)) => match B64.decode(s) {
            Ok(bytes) => Cbor::Bytes(bytes),
            Err(_) => Cbor::Bytes(s.as_bytes().to_vec()),
        },
        (Shape::Timestamp { .. }, _) => match json::epoch_of(v) {
            Some(epoch) => Cbor::Tag(1, Box::new(Cbor::Float(epoch))),
            None => generic(v),
        },
        _ => generic(v),
    }
}

/// A JSON value as CBOR, without a model.
pub(crate) fn generic(v: &Value) -> Cbor {
    match v {
        Value::Null => Cbor::Null,
        Value::Bool(b) => Cbor::Bool(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Cbor::Integer(i.into())
            } else if let Some(u) = n.as_u64() {
                Cbor::Integer(u.into())
            } else {
                Cbor::Float(n.as_f64().unwrap_or(0.0))
            }
        }
        Value::String(s) => Cbor::Text(s.clone()),
        Value::Array(items) => Cbor::Array(items.iter().map(generic).collect()),
        Value::Object(entries) => {
            Cbor::Map(entries.iter().map(|(k, v)| (Cbor::Text(k.clone()), generic(v))).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_indefinite_lengths_bytes_and_tag_1() {
        // {_ "a": [_ h'6869'], "t": 1(1398796238.0), "s": (_ "ab", "c") }
        let mut body = vec![0xbf, 0x61, b'a', 0x9f, 0x42, b'h', b'i', 0xff, 0x61, b't', 0xc1, 0xfb];
        body.extend_from_slice(&1398796238.0f64.to_be_bytes());
        body.extend_from_slice(&[0x61, b's', 0x7f, 0x62, b'a', b'b', 0x61, b'c', 0xff, 0xff]);
        let v = to_json(ciborium::de::from_reader(&body[..]).unwrap(), "").unwrap();
        assert_eq!(v, serde_json::json!({"a": ["aGk="], "t": 1398796238, "s": "abc"}));
    }

    #[test]
    fn malformed_cbor_is_a_malformed_error() {
        let model = Model::from_json(br#"{"shapes": {"In": {"type": "structure", "members": {}}}}"#).unwrap();
        let err = read_request(&model, model.structure("In"), &[0xbf, 0x61]).unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed(_)), "{err:?}");
        let err = read_request(&model, model.structure("In"), &[0xa1, 0x01, 0x02]).unwrap_err();
        assert!(err.to_string().contains("not a text string"), "{err}");
    }
}
