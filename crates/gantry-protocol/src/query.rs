//! awsQuery: form-encoded requests flattened AWS's way, XML responses.
//!
//! A request such as `Tags.member.1.Key=a&Tags.member.1.Value=b` is read into a tree on the dots
//! and then walked with the model: lists are `Name.member.N` (`Name.N` when flattened, the list
//! member's `locationName` in place of `member`), maps `Name.entry.N.key`/`.value` (`Name.N.key`
//! when flattened), nested structures `A.B.C`. Scalars are typed by the model. Responses are
//! written by hand: the XML AWS's query services send is small and regular.

use crate::error::ProtocolError;
use crate::json;
use crate::model::{Member, Model, Operation, Shape, Structure, TimestampFormat, XmlNamespace};
use crate::time;
use base64::Engine;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The form's pairs as a tree on `.`.
#[derive(Debug, Default)]
struct Node {
    value: Option<String>,
    children: BTreeMap<String, Node>,
}

impl Node {
    fn insert(&mut self, key: &str, value: String) {
        let mut node = self;
        for part in key.split('.') {
            node = node.children.entry(part.to_string()).or_default();
        }
        node.value = Some(value);
    }

    /// The children whose names are list indices, in index order.
    fn indexed(&self, path: &str) -> Result<Vec<(usize, &Node)>, ProtocolError> {
        let mut items = Vec::with_capacity(self.children.len());
        for (k, child) in &self.children {
            match k.parse::<usize>() {
                Ok(i) if i >= 1 => items.push((i, child)),
                _ => {
                    return Err(ProtocolError::invalid(
                        &format!("{path}.{k}"),
                        format!("{k:?} is not a list index (1, 2, ...)"),
                    ));
                }
            }
        }
        items.sort_by_key(|(i, _)| *i);
        Ok(items)
    }

    /// True for `Name=` with nothing below it: an empty list or map.
    fn is_empty_marker(&self) -> bool {
        self.children.is_empty() && self.value.as_deref().is_none_or(str::is_empty)
    }
}

/// The `Action` and `Version` fields of a form body (or of a URL's query string).
pub fn action(form: &[u8]) -> (Option<String>, Option<String>) {
    let (mut action, mut version) = (None, None);
    for (k, v) in form_urlencoded::parse(form) {
        match &*k {
            "Action" => action = Some(v.into_owned()),
            "Version" => version = Some(v.into_owned()),
            _ => {}
        }
    }
    (action, version)
}

/// Reads a form body into the in-memory form of the operation's input.
pub(crate) fn read_request(
    model: &Model,
    input: Option<&Structure>,
    body: &[u8],
) -> Result<Value, ProtocolError> {
    if std::str::from_utf8(body).is_err() {
        return Err(ProtocolError::Malformed("request body is not UTF-8 form encoding".into()));
    }
    let mut root = Node::default();
    for (k, v) in form_urlencoded::parse(body) {
        if k == "Action" || k == "Version" {
            continue;
        }
        if k.is_empty() || k.split('.').any(str::is_empty) {
            return Err(ProtocolError::Malformed(format!("malformed query parameter name {k:?}")));
        }
        root.insert(&k, v.into_owned());
    }
    match input {
        Some(shape) => Ok(Value::Object(structure(model, shape, &root, "")?)),
        None => Ok(Value::Object(Map::new())),
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

/// The name a member's list is found under when it is flattened: botocore (unlike Smithy) uses
/// the list member's `locationName` there, so both are accepted.
fn flattened_list_alias<'a>(model: &'a Model, member: &Member) -> Option<&'a str> {
    match model.shape(&member.shape) {
        Some(Shape::List { member: item, flattened }) if *flattened || member.flattened => {
            item.location_name.as_deref()
        }
        _ => None,
    }
}

fn structure(
    model: &Model,
    shape: &Structure,
    node: &Node,
    path: &str,
) -> Result<Map<String, Value>, ProtocolError> {
    let mut out = Map::new();
    for (name, member) in &shape.members {
        let key = member.location_name.as_deref().unwrap_or(name);
        let found = node.children.get_key_value(key).or_else(|| {
            flattened_list_alias(model, member).and_then(|alias| node.children.get_key_value(alias))
        });
        if let Some((key, child)) = found {
            let p = join(path, key);
            if let Some(v) = value(model, member, child, &p)? {
                out.insert(name.clone(), v);
            }
        }
    }
    Ok(out)
}

fn value(model: &Model, member: &Member, node: &Node, path: &str) -> Result<Option<Value>, ProtocolError> {
    let Some(shape) = model.shape(&member.shape) else {
        return Ok(node.value.clone().map(Value::String));
    };
    let scalar = || {
        node.value.as_deref().ok_or_else(|| {
            let below: Vec<_> = node.children.keys().take(3).cloned().collect();
            ProtocolError::invalid(path, format!("expected a value, found nested parameters {below:?}"))
        })
    };
    let bad =
        |expected: &str, s: &str| ProtocolError::invalid(path, format!("expected {expected}, found {s:?}"));
    Ok(Some(match shape {
        Shape::Structure(s) => Value::Object(structure(model, s, node, path)?),
        Shape::List { member: item, flattened } => {
            if node.is_empty_marker() {
                return Ok(Some(Value::Array(Vec::new())));
            }
            let (container, p) = if *flattened || member.flattened {
                (node, path.to_string())
            } else {
                let name = item.location_name.as_deref().unwrap_or("member");
                match node.children.get(name) {
                    Some(c) => (c, join(path, name)),
                    None => (node, path.to_string()),
                }
            };
            let mut out = Vec::new();
            for (i, child) in container.indexed(&p)? {
                let ip = format!("{p}.{i}");
                out.push(value(model, item, child, &ip)?.unwrap_or(Value::Null));
            }
            Value::Array(out)
        }
        Shape::Map { key, value: value_member, flattened } => {
            if node.is_empty_marker() {
                return Ok(Some(Value::Object(Map::new())));
            }
            let (container, p) = if *flattened || member.flattened {
                (node, path.to_string())
            } else {
                match node.children.get("entry") {
                    Some(c) => (c, join(path, "entry")),
                    None => (node, path.to_string()),
                }
            };
            let key_name = key.location_name.as_deref().unwrap_or("key");
            let value_name = value_member.location_name.as_deref().unwrap_or("value");
            let mut out = Map::new();
            for (i, entry) in container.indexed(&p)? {
                let ep = format!("{p}.{i}");
                let Some(k) = entry.children.get(key_name).and_then(|k| k.value.clone()) else {
                    return Err(ProtocolError::invalid(&join(&ep, key_name), "map entry has no key"));
                };
                if let Some(v) = entry.children.get(value_name) {
                    let vp = join(&ep, value_name);
                    if let Some(v) = value(model, value_member, v, &vp)? {
                        out.insert(k, v);
                    }
                }
            }
            Value::Object(out)
        }
        Shape::String | Shape::Document => Value::String(scalar()?.to_string()),
        Shape::Boolean => match scalar()? {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            s => return Err(bad("true or false", s)),
        },
        Shape::Integer => {
            let s = scalar()?;
            match s.parse::<i64>() {
                Ok(i) => Value::Number(i.into()),
                Err(_) => return Err(bad("an integer", s)),
            }
        }
        Shape::Float => {
            let s = scalar()?;
            match s {
                "NaN" | "Infinity" | "-Infinity" => Value::String(s.to_string()),
                _ => match s.parse::<f64>().ok().and_then(serde_json::Number::from_f64) {
                    Some(n) => Value::Number(n),
                    None => return Err(bad("a number", s)),
                },
            }
        }
        Shape::Blob => {
            let s = scalar()?;
            if base64::engine::general_purpose::STANDARD.decode(s).is_err() {
                return Err(bad("base64-encoded bytes", s));
            }
            Value::String(s.to_string())
        }
        Shape::Timestamp { .. } => {
            let s = scalar()?;
            match time::parse_any(s) {
                Some(epoch) => time::epoch_value(epoch),
                None => return Err(bad("an ISO-8601 timestamp", s)),
            }
        }
    }))
}

/// The XML namespace of the service's responses.
pub(crate) fn namespace(model: &Model) -> String {
    if let Some(ns) = &model.metadata.xml_namespace {
        return ns.clone();
    }
    let host =
        model.metadata.endpoint_prefix.as_deref().or(model.metadata.signing_name.as_deref()).unwrap_or("aws");
    format!("https://{host}.amazonaws.com/doc/{}/", model.metadata.api_version)
}

/// Writes `<OpResponse><OpResult>...</OpResult><ResponseMetadata>...</ResponseMetadata></OpResponse>`.
pub(crate) fn write_response(
    model: &Model,
    op: &str,
    operation: Option<&Operation>,
    v: &Value,
    request_id: &str,
) -> String {
    let mut x = Xml::default();
    x.out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    x.open(&format!("{op}Response"), Some(&namespace(model)), None);
    if let Some(output) = operation.and_then(|o| o.output.as_deref()) {
        let wrapper =
            operation.and_then(|o| o.result_wrapper.clone()).unwrap_or_else(|| format!("{op}Result"));
        x.open(&wrapper, None, None);
        if let (Some(shape), Value::Object(object)) = (model.structure(output), v) {
            x.members(model, shape, object);
        }
        x.close(&wrapper);
    }
    x.open("ResponseMetadata", None, None);
    x.leaf("RequestId", request_id);
    x.close("ResponseMetadata");
    x.close(&format!("{op}Response"));
    x.out
}

/// Writes `<ErrorResponse><Error><Type/><Code/><Message/>...</Error><RequestId/></ErrorResponse>`.
pub(crate) fn write_error(
    model: &Model,
    code: &str,
    sender_fault: bool,
    message: &str,
    shape: Option<&Structure>,
    fields: &Map<String, Value>,
    request_id: &str,
) -> String {
    let mut x = Xml::default();
    x.out.push_str(r#"<?xml version="1.0" encoding="UTF-8"?>"#);
    x.open("ErrorResponse", Some(&namespace(model)), None);
    x.open("Error", None, None);
    x.leaf("Type", if sender_fault { "Sender" } else { "Receiver" });
    x.leaf("Code", code);
    if !message.is_empty() {
        x.leaf("Message", message);
    }
    match shape {
        Some(shape) => x.members(model, shape, fields),
        None => {
            for (k, v) in fields {
                x.generic(k, v);
            }
        }
    }
    x.close("Error");
    x.leaf("RequestId", request_id);
    x.close("ErrorResponse");
    x.out
}

/// A small XML writer: elements, escaped text, `xmlns` attributes.
#[derive(Default)]
struct Xml {
    out: String,
}

impl Xml {
    fn open(&mut self, name: &str, default_ns: Option<&str>, ns: Option<&XmlNamespace>) {
        self.out.push('<');
        self.out.push_str(name);
        if let Some(uri) = default_ns {
            self.attr("xmlns", uri);
        }
        if let Some(ns) = ns {
            match &ns.prefix {
                Some(prefix) => self.attr(&format!("xmlns:{prefix}"), &ns.uri),
                None => self.attr("xmlns", &ns.uri),
            }
        }
        self.out.push('>');
    }

    fn attr(&mut self, name: &str, value: &str) {
        self.out.push(' ');
        self.out.push_str(name);
        self.out.push_str("=\"");
        escape_into(&mut self.out, value);
        self.out.push('"');
    }

    fn close(&mut self, name: &str) {
        self.out.push_str("</");
        self.out.push_str(name);
        self.out.push('>');
    }

    fn leaf(&mut self, name: &str, text: &str) {
        self.open(name, None, None);
        escape_into(&mut self.out, text);
        self.close(name);
    }

    fn members(&mut self, model: &Model, shape: &Structure, object: &Map<String, Value>) {
        for (name, member) in &shape.members {
            let Some(v) = object.get(name).filter(|v| !v.is_null()) else { continue };
            let element = match model.shape(&member.shape) {
                Some(Shape::List { member: item, flattened }) if *flattened || member.flattened => {
                    item.location_name.as_deref().or(member.location_name.as_deref()).unwrap_or(name)
                }
                _ => member.location_name.as_deref().unwrap_or(name),
            };
            self.member(model, element, member, v);
        }
    }

    fn member(&mut self, model: &Model, name: &str, member: &Member, v: &Value) {
        let ns = member.xml_namespace.as_ref();
        let Some(shape) = model.shape(&member.shape) else {
            return self.generic(name, v);
        };
        match (shape, v) {
            (Shape::Structure(s), Value::Object(object)) => {
                self.open(name, None, ns);
                self.members(model, s, object);
                self.close(name);
            }
            (Shape::List { member: item, flattened }, Value::Array(items)) => {
                if *flattened || member.flattened {
                    for i in items.iter().filter(|i| !i.is_null()) {
                        let item_member =
                            Member { xml_namespace: member.xml_namespace.clone(), ..item.clone() };
                        self.member(model, name, &item_member, i);
                    }
                } else {
                    let item_name = item.location_name.as_deref().unwrap_or("member");
                    self.open(name, None, ns);
                    for i in items.iter().filter(|i| !i.is_null()) {
                        self.member(model, item_name, item, i);
                    }
                    self.close(name);
                }
            }
            (Shape::Map { key, value, flattened }, Value::Object(entries)) => {
                let key_name = key.location_name.as_deref().unwrap_or("key");
                let value_name = value.location_name.as_deref().unwrap_or("value");
                let flat = *flattened || member.flattened;
                if !flat {
                    self.open(name, None, ns);
                }
                for (k, e) in entries.iter().filter(|(_, e)| !e.is_null()) {
                    if flat {
                        self.open(name, None, ns);
                    } else {
                        self.open("entry", None, None);
                    }
                    self.member(model, key_name, key, &Value::String(k.clone()));
                    self.member(model, value_name, value, e);
                    self.close(if flat { name } else { "entry" });
                }
                if !flat {
                    self.close(name);
                }
            }
            (Shape::Timestamp { .. }, _) => {
                let text = match json::epoch_of(v) {
                    Some(epoch) => match model.timestamp_format(member) {
                        Some(TimestampFormat::UnixTimestamp) => time::epoch_value(epoch).to_string(),
                        Some(TimestampFormat::Rfc822) => time::format_http_date(epoch),
                        _ => time::format_iso8601(epoch),
                    },
                    None => scalar_text(v),
                };
                self.open(name, None, ns);
                escape_into(&mut self.out, &text);
                self.close(name);
            }
            _ => {
                self.open(name, None, ns);
                escape_into(&mut self.out, &scalar_text(v));
                self.close(name);
            }
        }
    }

    /// Writes a value the model does not describe: objects as elements, arrays as `<member>`s.
    fn generic(&mut self, name: &str, v: &Value) {
        self.open(name, None, None);
        match v {
            Value::Object(entries) => {
                for (k, e) in entries {
                    self.generic(k, e);
                }
            }
            Value::Array(items) => {
                for i in items {
                    self.generic("member", i);
                }
            }
            other => escape_into(&mut self.out, &scalar_text(other)),
        }
        self.close(name);
    }
}

fn scalar_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Escapes text for an element or a double-quoted attribute. Carriage returns are written as a
/// character reference so that XML parsers' line-ending normalization keeps them.
pub(crate) fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model::from_json(
            br#"{"metadata": {"protocol": "query", "apiVersion": "2010-05-08", "xmlNamespace": "https://iam.amazonaws.com/doc/2010-05-08/"},
                 "operations": {"Op": {"name": "Op", "input": {"shape": "In"}, "output": {"shape": "Out", "resultWrapper": "OpResult"}}},
                 "shapes": {
                   "In": {"type": "structure", "members": {
                      "Tags": {"shape": "TagList"}, "Flat": {"shape": "Strings", "flattened": true},
                      "Attrs": {"shape": "MapOfLists"}, "Max": {"shape": "I"}, "On": {"shape": "B"}}},
                   "Out": {"type": "structure", "members": {"Names": {"shape": "Strings"}, "Note": {"shape": "S"},
                      "Attrs": {"shape": "MapOfLists"}}},
                   "TagList": {"type": "list", "member": {"shape": "Tag"}},
                   "Tag": {"type": "structure", "members": {"Key": {"shape": "S"}, "Value": {"shape": "S"}}},
                   "Strings": {"type": "list", "member": {"shape": "S"}},
                   "MapOfLists": {"type": "map", "key": {"shape": "S"}, "value": {"shape": "Strings"}},
                   "I": {"type": "integer"}, "B": {"type": "boolean"}, "S": {"type": "string"}}}"#,
        )
        .unwrap()
    }

    fn read(body: &str) -> Result<Value, ProtocolError> {
        let model = model();
        read_request(&model, model.structure("In"), body.as_bytes())
    }

    #[test]
    fn reads_member_lists_flattened_lists_and_nested_maps_in_index_order() {
        let v = read(
            "Action=Op&Version=2010-05-08&Tags.member.10.Key=j&Tags.member.2.Key=b&Tags.member.2.Value=B%20b\
             &Flat.2=y&Flat.1=x&Attrs.entry.1.key=k&Attrs.entry.1.value.member.1=v1&Attrs.entry.1.value.member.2=v2\
             &Max=5&On=true",
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "Tags": [{"Key": "b", "Value": "B b"}, {"Key": "j"}],
                "Flat": ["x", "y"],
                "Attrs": {"k": ["v1", "v2"]},
                "Max": 5, "On": true
            })
        );
        assert_eq!(read("Tags=").unwrap(), serde_json::json!({"Tags": []}));
    }

    #[test]
    fn malformed_values_name_the_parameter_and_value() {
        let err = read("Max=ten").unwrap_err();
        assert_eq!(err.to_string(), r#"Max: expected an integer, found "ten""#);
        let err = read("On=yes").unwrap_err();
        assert_eq!(err.to_string(), r#"On: expected true or false, found "yes""#);
        let err = read("Tags.member.x.Key=a").unwrap_err();
        assert!(err.to_string().contains("Tags.member.x"), "{err}");
        let err = read("Tags..Key=a").unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn writes_wrapped_results_member_lists_maps_and_escapes_text() {
        let model = model();
        let v = serde_json::json!({"Names": ["a<b", "c&d"], "Note": "\"q\" 'r'\r\n", "Attrs": {"k": ["v"]}});
        let xml = write_response(&model, "Op", model.operation("Op"), &v, "rid-1");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <OpResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><OpResult>\
             <Names><member>a&lt;b</member><member>c&amp;d</member></Names>\
             <Note>&quot;q&quot; &apos;r&apos;&#xD;\n</Note>\
             <Attrs><entry><key>k</key><value><member>v</member></value></entry></Attrs>\
             </OpResult><ResponseMetadata><RequestId>rid-1</RequestId></ResponseMetadata></OpResponse>"
        );
    }

    #[test]
    fn finds_action_and_version() {
        assert_eq!(
            action(b"Version=2011-06-15&Action=GetCallerIdentity"),
            (Some("GetCallerIdentity".into()), Some("2011-06-15".into()))
        );
        assert_eq!(action(b"Foo=1"), (None, None));
    }
}
