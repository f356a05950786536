//! A botocore service model (`service-2.json`), loaded once into typed shapes.
//!
//! Only what the wire protocols need is kept: metadata, each operation's input, output and
//! errors, and the shapes with their serialization traits (`locationName`, `flattened`,
//! `xmlNamespace`, `timestampFormat`). Documentation and validation traits are dropped.

use serde::Deserialize;
use serde::de::{MapAccess, Visitor};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A service model: the metadata, operations and shapes of one AWS API version.
#[derive(Debug, Clone)]
pub struct Model {
    pub metadata: Metadata,
    pub operations: BTreeMap<String, Operation>,
    pub shapes: HashMap<String, Shape>,
}

/// The model's `metadata` block.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    /// The legacy single protocol (`json`, `query`, `smithy-rpc-v2-cbor`, ...).
    pub protocol: String,
    /// Every protocol the service speaks, in the model's order (falls back to `[protocol]`).
    pub protocols: Vec<String>,
    pub target_prefix: Option<String>,
    pub json_version: Option<String>,
    pub api_version: String,
    pub signing_name: Option<String>,
    pub endpoint_prefix: Option<String>,
    pub service_id: Option<String>,
    /// The XML namespace of awsQuery responses, when the model names one.
    pub xml_namespace: Option<String>,
    /// The `awsQueryCompatible` trait: JSON and CBOR errors also carry `x-amzn-query-error`.
    pub query_compatible: bool,
}

/// One operation: the shapes of its input and output, and the errors it declares.
#[derive(Debug, Clone, Default)]
pub struct Operation {
    pub name: String,
    pub input: Option<String>,
    pub output: Option<String>,
    /// The awsQuery `<...Result>` element's name, when it is not `<Op>Result`.
    pub result_wrapper: Option<String>,
    pub errors: Vec<String>,
    /// The `http` trait of REST protocols: method, URI template and success status.
    pub http: Option<Http>,
}

/// An operation's `http` trait (restJson1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Http {
    #[serde(default)]
    pub method: String,
    /// `/schedules/{Name}`, possibly with a literal query (`/x?list`) and greedy labels (`{Key+}`).
    #[serde(default)]
    pub request_uri: String,
    pub response_code: Option<u16>,
}

/// How a timestamp is written where the model overrides the protocol's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampFormat {
    /// RFC 3339 / ISO-8601 with `Z` (`2014-04-29T18:30:38Z`).
    Iso8601,
    /// Seconds since the epoch, possibly with a fraction.
    UnixTimestamp,
    /// RFC 7231 (`Tue, 29 Apr 2014 18:30:38 GMT`).
    Rfc822,
}

/// An `xmlNamespace` trait: `xmlns` (or `xmlns:prefix`) on the element. Models write it as
/// `{"uri": ..., "prefix": ...}` or as the bare URI.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(from = "RawXmlNamespace")]
pub struct XmlNamespace {
    pub uri: String,
    pub prefix: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawXmlNamespace {
    Uri(String),
    Full {
        uri: String,
        #[serde(default)]
        prefix: Option<String>,
    },
}

impl From<RawXmlNamespace> for XmlNamespace {
    fn from(raw: RawXmlNamespace) -> XmlNamespace {
        match raw {
            RawXmlNamespace::Uri(uri) => XmlNamespace { uri, prefix: None },
            RawXmlNamespace::Full { uri, prefix } => XmlNamespace { uri, prefix },
        }
    }
}

/// A reference to a shape from a structure member, a list member or a map key/value, with the
/// serialization traits that sit on the reference.
#[derive(Debug, Clone, Default)]
pub struct Member {
    pub shape: String,
    pub location_name: Option<String>,
    pub flattened: bool,
    pub xml_namespace: Option<XmlNamespace>,
    pub xml_attribute: bool,
    pub timestamp_format: Option<TimestampFormat>,
    /// Where a REST protocol carries the member: `uri`, `querystring`, `header`, `headers`,
    /// `statusCode`; `None` is the body.
    pub location: Option<String>,
}

/// A structure (or union, or error) shape.
#[derive(Debug, Clone, Default)]
pub struct Structure {
    /// Members in the model's order, which is the order awsQuery XML elements are written in.
    pub members: Vec<(String, Member)>,
    pub required: Vec<String>,
    pub union: bool,
    /// An error shape's `error` trait.
    pub error: Option<ErrorTrait>,
    pub exception: bool,
    pub document: bool,
    /// REST protocols: the member that is the whole body.
    pub payload: Option<String>,
}

impl Structure {
    /// The member named `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|(n, _)| n == name).map(|(_, m)| m)
    }
}

/// An error shape's `error` trait: the awsQuery code, HTTP status and fault.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorTrait {
    pub code: Option<String>,
    pub http_status_code: Option<u16>,
    pub sender_fault: bool,
}

/// A shape, by type.
#[derive(Debug, Clone)]
pub enum Shape {
    Structure(Structure),
    List {
        member: Member,
        flattened: bool,
    },
    Map {
        key: Member,
        value: Member,
        flattened: bool,
    },
    String,
    /// `byte`, `short`, `integer` and `long`.
    Integer,
    /// `float` and `double`.
    Float,
    Boolean,
    Blob,
    Timestamp {
        format: Option<TimestampFormat>,
    },
    /// A document (any JSON value), passed through.
    Document,
}

/// Why a model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("service model is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("shape {shape:?} has unknown type {type_name:?}")]
    UnknownType { shape: String, type_name: String },
    #[error("shape {shape:?} of type {type_name} has no {field}")]
    Missing { shape: String, type_name: String, field: &'static str },
    #[error("{from} refers to undefined shape {shape:?}")]
    Undefined { from: String, shape: String },
}

impl Model {
    /// Loads a botocore `service-2.json`.
    pub fn from_json(bytes: &[u8]) -> Result<Model, ModelError> {
        let raw: RawModel = serde_json::from_slice(bytes)?;
        let metadata = raw.metadata.into_metadata();
        let mut shapes = HashMap::with_capacity(raw.shapes.0.len());
        for (name, shape) in raw.shapes.0 {
            let shape = shape.into_shape(&name)?;
            shapes.insert(name, shape);
        }
        let mut operations = BTreeMap::new();
        for (name, op) in raw.operations {
            let operation = Operation {
                name: op.name.unwrap_or_else(|| name.clone()),
                input: op.input.as_ref().map(|r| r.shape.clone()),
                output: op.output.as_ref().map(|r| r.shape.clone()),
                result_wrapper: op.output.and_then(|r| r.result_wrapper),
                errors: op.errors.into_iter().map(|r| r.shape).collect(),
                http: op.http,
            };
            operations.insert(name, operation);
        }
        let model = Model { metadata, operations, shapes };
        model.check()?;
        Ok(model)
    }

    /// Every shape reference resolves, so the protocols may index shapes without checking.
    fn check(&self) -> Result<(), ModelError> {
        let want = |from: &str, shape: &str| {
            if self.shapes.contains_key(shape) {
                Ok(())
            } else {
                Err(ModelError::Undefined { from: from.to_string(), shape: shape.to_string() })
            }
        };
        for (name, shape) in &self.shapes {
            match shape {
                Shape::Structure(s) => {
                    for (_, m) in &s.members {
                        want(name, &m.shape)?;
                    }
                }
                Shape::List { member, .. } => want(name, &member.shape)?,
                Shape::Map { key, value, .. } => {
                    want(name, &key.shape)?;
                    want(name, &value.shape)?;
                }
                _ => {}
            }
        }
        for (name, op) in &self.operations {
            for shape in op.input.iter().chain(&op.output).chain(&op.errors) {
                want(name, shape)?;
            }
        }
        Ok(())
    }

    /// The shape named `name`. Every reference inside the model resolves (checked on load).
    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }

    /// The operation named `name`.
    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.get(name)
    }

    /// The structure named `name`, if it is one.
    pub fn structure(&self, name: &str) -> Option<&Structure> {
        match self.shapes.get(name) {
            Some(Shape::Structure(s)) => Some(s),
            _ => None,
        }
    }

    /// The timestamp format a member or its shape asks for, if any.
    pub fn timestamp_format(&self, member: &Member) -> Option<TimestampFormat> {
        member.timestamp_format.or(match self.shapes.get(&member.shape) {
            Some(Shape::Timestamp { format }) => *format,
            _ => None,
        })
    }

    /// The error shape an error code names: a shape of that name, or one whose `error.code`
    /// (its awsQuery code) is that code.
    pub fn error_shape(&self, code: &str) -> Option<(&str, &Structure)> {
        if let Some((name, Shape::Structure(s))) = self.shapes.get_key_value(code) {
            return Some((name, s));
        }
        self.shapes.iter().find_map(|(name, shape)| match shape {
            Shape::Structure(s) if s.error.as_ref().and_then(|e| e.code.as_deref()) == Some(code) => {
                Some((name.as_str(), s))
            }
            _ => None,
        })
    }
}

#[derive(Deserialize)]
struct RawModel {
    #[serde(default)]
    metadata: RawMetadata,
    #[serde(default)]
    operations: BTreeMap<String, RawOperation>,
    #[serde(default)]
    shapes: Ordered<RawShape>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawMetadata {
    #[serde(default)]
    protocol: String,
    #[serde(default)]
    protocols: Vec<String>,
    target_prefix: Option<String>,
    json_version: Option<String>,
    #[serde(default)]
    api_version: String,
    signing_name: Option<String>,
    endpoint_prefix: Option<String>,
    service_id: Option<String>,
    xml_namespace: Option<String>,
    aws_query_compatible: Option<serde_json::Value>,
}

impl RawMetadata {
    fn into_metadata(self) -> Metadata {
        let protocols = if self.protocols.is_empty() && !self.protocol.is_empty() {
            vec![self.protocol.clone()]
        } else {
            self.protocols
        };
        Metadata {
            protocol: self.protocol,
            protocols,
            target_prefix: self.target_prefix,
            json_version: self.json_version,
            api_version: self.api_version,
            signing_name: self.signing_name,
            endpoint_prefix: self.endpoint_prefix,
            service_id: self.service_id,
            xml_namespace: self.xml_namespace,
            query_compatible: self.aws_query_compatible.is_some(),
        }
    }
}

#[derive(Deserialize)]
struct RawOperation {
    name: Option<String>,
    input: Option<RawRef>,
    output: Option<RawRef>,
    #[serde(default)]
    errors: Vec<RawRef>,
    http: Option<Http>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRef {
    shape: String,
    result_wrapper: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawMember {
    #[serde(default)]
    shape: String,
    location_name: Option<String>,
    #[serde(default)]
    flattened: bool,
    xml_namespace: Option<XmlNamespace>,
    #[serde(default)]
    xml_attribute: bool,
    timestamp_format: Option<String>,
    location: Option<String>,
}

impl RawMember {
    fn into_member(self) -> Member {
        Member {
            shape: self.shape,
            location_name: self.location_name,
            flattened: self.flattened,
            xml_namespace: self.xml_namespace,
            xml_attribute: self.xml_attribute,
            timestamp_format: self.timestamp_format.as_deref().and_then(timestamp_format),
            location: self.location,
        }
    }
}

#[derive(Deserialize)]
struct RawErrorTrait {
    code: Option<String>,
    #[serde(rename = "httpStatusCode")]
    http_status_code: Option<u16>,
    #[serde(default, rename = "senderFault")]
    sender_fault: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawShape {
    #[serde(rename = "type")]
    type_name: String,
    #[serde(default)]
    members: Ordered<RawMember>,
    #[serde(default)]
    required: Vec<String>,
    member: Option<RawMember>,
    key: Option<RawMember>,
    value: Option<RawMember>,
    #[serde(default)]
    flattened: bool,
    #[serde(default)]
    union: bool,
    #[serde(default)]
    exception: bool,
    #[serde(default)]
    document: bool,
    error: Option<RawErrorTrait>,
    timestamp_format: Option<String>,
    payload: Option<String>,
}

impl RawShape {
    fn into_shape(self, name: &str) -> Result<Shape, ModelError> {
        let missing =
            |field| ModelError::Missing { shape: name.to_string(), type_name: self.type_name.clone(), field };
        Ok(match self.type_name.as_str() {
            "structure" if self.document => Shape::Document,
            "structure" => Shape::Structure(Structure {
                members: self.members.0.into_iter().map(|(n, m)| (n, m.into_member())).collect(),
                required: self.required,
                union: self.union,
                error: self.error.map(|e| ErrorTrait {
                    code: e.code,
                    http_status_code: e.http_status_code,
                    sender_fault: e.sender_fault,
                }),
                exception: self.exception,
                document: false,
                payload: self.payload,
            }),
            "list" => Shape::List {
                member: self.member.ok_or_else(|| missing("member"))?.into_member(),
                flattened: self.flattened,
            },
            "map" => {
                let key = self.key.ok_or_else(|| missing("key"))?.into_member();
                let value = self.value.ok_or_else(|| missing("value"))?.into_member();
                Shape::Map { key, value, flattened: self.flattened }
            }
            "string" => Shape::String,
            "byte" | "short" | "integer" | "long" | "bigInteger" => Shape::Integer,
            "float" | "double" | "bigDecimal" => Shape::Float,
            "boolean" => Shape::Boolean,
            "blob" => Shape::Blob,
            "timestamp" => {
                Shape::Timestamp { format: self.timestamp_format.as_deref().and_then(timestamp_format) }
            }
            "document" => Shape::Document,
            other => {
                return Err(ModelError::UnknownType {
                    shape: name.to_string(),
                    type_name: other.to_string(),
                });
            }
        })
    }
}

fn timestamp_format(name: &str) -> Option<TimestampFormat> {
    match name {
        "iso8601" => Some(TimestampFormat::Iso8601),
        "unixTimestamp" => Some(TimestampFormat::UnixTimestamp),
        "rfc822" => Some(TimestampFormat::Rfc822),
        _ => None,
    }
}

/// A JSON object read with its keys in document order (serde_json's map sorts them).
struct Ordered<T>(Vec<(String, T)>);

impl<T> Default for Ordered<T> {
    fn default() -> Self {
        Ordered(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Ordered<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Ordered<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, v)) = map.next_entry()? {
                    entries.push((k, v));
                }
                Ok(Ordered(entries))
            }
        }
        deserializer.deserialize_map(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_shapes_members_in_order_and_traits() {
        let model = Model::from_json(
            br#"{
              "metadata": {"protocol": "query", "apiVersion": "2010-05-08", "awsQueryCompatible": {}},
              "operations": {"Op": {"name": "Op", "input": {"shape": "In"},
                              "output": {"shape": "Out", "resultWrapper": "OpResult"}, "errors": [{"shape": "Bad"}]}},
              "shapes": {
                "In": {"type": "structure", "members": {"Z": {"shape": "L"}, "A": {"shape": "T", "locationName": "a"}}},
                "Out": {"type": "structure", "members": {}},
                "Bad": {"type": "structure", "members": {}, "error": {"code": "BadThing", "httpStatusCode": 409, "senderFault": true}, "exception": true},
                "L": {"type": "list", "member": {"shape": "T", "locationName": "item"}, "flattened": true},
                "T": {"type": "timestamp", "timestampFormat": "iso8601"}
              }
            }"#,
        )
        .unwrap();
        assert_eq!(model.metadata.protocols, ["query"]);
        assert!(model.metadata.query_compatible);
        let input = model.structure("In").unwrap();
        let names: Vec<_> = input.members.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["Z", "A"]);
        assert_eq!(model.operation("Op").unwrap().result_wrapper.as_deref(), Some("OpResult"));
        assert_eq!(model.error_shape("BadThing").unwrap().0, "Bad");
        assert_eq!(model.timestamp_format(input.member("A").unwrap()), Some(TimestampFormat::Iso8601));
    }

    #[test]
    fn rejects_dangling_references_naming_them() {
        let err = Model::from_json(br#"{"shapes": {"In": {"type": "list", "member": {"shape": "Nope"}}}}"#)
            .unwrap_err();
        assert!(err.to_string().contains("Nope"), "{err}");
    }
}
