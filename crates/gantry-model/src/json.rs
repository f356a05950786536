//! The JSON protocols' answer, written straight from a shape: the bytes `serde_json::to_vec`
//! writes for the same value, without serde's call per member.
//!
//! `tools/gen-model.py` writes a [`WriteJson`] implementation beside each structure of the
//! services whose answers are on the hot path (ECS). Every member name is a constant the
//! generator spelled out with its quotes, colon and leading comma, so a member costs one copy of
//! its name and the writing of its value; a string is copied whole unless it holds a character
//! JSON escapes. A test in this module checks, over random documents of every ECS structure, that
//! the bytes are serde_json's.

use std::collections::BTreeMap;

/// A value that writes itself as compact JSON, byte for byte as `serde_json::to_vec` would.
pub trait WriteJson {
    fn write_json(&self, out: &mut Vec<u8>);
}

/// `value` as compact JSON.
pub fn to_vec<T: WriteJson + ?Sized>(value: &T) -> Vec<u8> {
    // Most answers are a few hundred bytes: one allocation instead of growing from nothing.
    let mut out = Vec::with_capacity(1024);
    value.write_json(&mut out);
    out
}

/// Ends an object whose members were each written as `,"name":value` from `start`: the first
/// member's comma becomes the opening brace (or the object is `{}`).
#[inline]
pub fn close_object(out: &mut Vec<u8>, start: usize) {
    match out.get_mut(start) {
        Some(first) => {
            *first = b'{';
            out.push(b'}');
        }
        None => out.extend_from_slice(b"{}"),
    }
}

/// What serde_json writes after a backslash for each byte below 0x20 and for `"` and `\`
/// (`u`: a `\u00XX` escape); 0 for a byte written as it is.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = b'u';
        i += 1;
    }
    t[0x08] = b'b';
    t[0x09] = b't';
    t[0x0a] = b'n';
    t[0x0c] = b'f';
    t[0x0d] = b'r';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// `s` as a JSON string, escaped as serde_json escapes.
#[inline]
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Nearly every string Gantry answers (names, ARNs, statuses) needs no escape: one check the
    // compiler vectorizes, then one copy.
    let plain = !bytes.iter().fold(false, |bad, &b| bad | (b < 0x20) | (b == b'"') | (b == b'\\'));
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if plain {
        out.extend_from_slice(bytes);
    } else {
        write_escaped(out, bytes);
    }
    out.push(b'"');
}

#[cold]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut from = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape = ESCAPE[b as usize];
        if escape == 0 {
            continue;
        }
        out.extend_from_slice(&bytes[from..i]);
        match escape {
            b'u' => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 0xf) as usize],
            ]),
            other => out.extend_from_slice(&[b'\\', other]),
        }
        from = i + 1;
    }
    out.extend_from_slice(&bytes[from..]);
}

/// An integer in decimal, by `itoa` (as serde_json writes it).
#[inline]
fn write_int(out: &mut Vec<u8>, value: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

impl WriteJson for str {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self);
    }
}

impl WriteJson for String {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_str(out, self);
    }
}

impl WriteJson for i32 {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_int(out, *self);
    }
}

impl WriteJson for i64 {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        write_int(out, *self);
    }
}

impl WriteJson for bool {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(if *self { b"true" } else { b"false" });
    }
}

impl WriteJson for f64 {
    /// Timestamps and doubles: serde_json's own formatting (its shortest round-trip digits, and
    /// `null` for a value that is not finite), so the two can never disagree.
    fn write_json(&self, out: &mut Vec<u8>) {
        if serde_json::to_writer(&mut *out, self).is_err() {
            // Writing into a Vec cannot fail; were it to, the value is absent rather than torn.
            out.extend_from_slice(b"null");
        }
    }
}

impl<T: WriteJson> WriteJson for Option<T> {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(v) => v.write_json(out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

impl<T: WriteJson> WriteJson for Vec<T> {
    #[inline]
    fn write_json(&self, out: &mut Vec<u8>) {
        self.as_slice().write_json(out);
    }
}

impl<T: WriteJson> WriteJson for [T] {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, v) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            v.write_json(out);
        }
        out.push(b']');
    }
}

impl<T: WriteJson> WriteJson for BTreeMap<String, T> {
    fn write_json(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (k, v)) in self.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_str(out, k);
            out.push(b':');
            v.write_json(out);
        }
        out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Value};

    fn json<T: WriteJson + serde::Serialize>(v: &T) -> (String, String) {
        (String::from_utf8(to_vec(v)).unwrap(), serde_json::to_string(v).unwrap())
    }

    #[test]
    fn primitives_are_written_as_serde_json_writes_them() {
        for s in
            ["", "plain", "a\"b", "back\\slash", "\u{0}\u{1f}\u{7f}", "\u{8}\t\n\u{c}\r", "é€😀", "</script>"]
        {
            let (ours, theirs) = json(&s.to_string());
            assert_eq!(ours, theirs, "{s:?}");
        }
        for n in [0i64, 7, -7, 10, 99, 100, i64::from(i32::MAX), i64::from(i32::MIN), i64::MAX, i64::MIN] {
            assert_eq!(json(&n).0, json(&n).1);
            if let Ok(small) = i32::try_from(n) {
                assert_eq!(json(&small).0, json(&small).1);
            }
        }
        for f in
            [0.0, -0.0, 1.0, 1.5, 1e21, 1e-7, 1_733_400_000.123, f64::NAN, f64::INFINITY, f64::MIN_POSITIVE]
        {
            assert_eq!(json(&f).0, json(&f).1, "{f}");
        }
        assert_eq!(json(&true), ("true".to_string(), "true".to_string()));
        let m: BTreeMap<String, Vec<i32>> =
            [("b\n".to_string(), vec![1, -2]), ("a".to_string(), vec![])].into();
        assert_eq!(json(&m).0, json(&m).1);
        assert_eq!(json(&Some(3)).0, "3");
        assert_eq!(json(&None::<i32>).0, "null");
    }

    #[test]
    fn an_object_without_members_is_empty() {
        let mut out = b"[".to_vec();
        let start = out.len();
        close_object(&mut out, start);
        out.push(b',');
        let start = out.len();
        out.extend_from_slice(b",\"a\":1");
        close_object(&mut out, start);
        assert_eq!(out, b"[{},{\"a\":1}");
    }

    /// A tiny deterministic generator (xorshift64*), so a failing document can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_string(rng: &mut Rng) -> String {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "0",
            "-",
            "/",
            ":",
            " ",
            "\"",
            "\\",
            "\n",
            "\t",
            "\r",
            "\u{8}",
            "\u{c}",
            "\u{1}",
            "\u{1f}",
            "\u{7f}",
            "é",
            "€",
            "😀",
            "arn:aws:ecs",
        ];
        (0..rng.below(12)).map(|_| PIECES[rng.below(PIECES.len() as u64) as usize]).collect()
    }

    /// A random document of botocore shape `name`, with every member present or absent at
    /// random (required ones always present); depth-limited for recursive shapes.
    fn random_value(model: &Value, name: &str, rng: &mut Rng, depth: u32) -> Value {
        let shape = &model["shapes"][name];
        match shape["type"].as_str().unwrap() {
            "string" | "blob" => Value::String(random_string(rng)),
            "integer" => Value::from(rng.next() as i32),
            "long" => Value::from(rng.next() as i64),
            "boolean" => Value::Bool(rng.below(2) == 0),
            "double" | "float" | "timestamp" => {
                let choices =
                    [0.0, 1.0, -2.5, 1e300, 1e-300, 1_733_400_000.0 + rng.below(1000) as f64 / 1000.0];
                let f = if rng.below(2) == 0 {
                    f64::from_bits(rng.next() >> 2)
                } else {
                    choices[rng.below(choices.len() as u64) as usize]
                };
                Value::from(f)
            }
            "list" => {
                let n = if depth > 3 { 0 } else { rng.below(3) };
                let member = shape["member"]["shape"].as_str().unwrap();
                Value::Array((0..n).map(|_| random_value(model, member, rng, depth + 1)).collect())
            }
            "map" => {
                let n = if depth > 3 { 0 } else { rng.below(3) };
                let value = shape["value"]["shape"].as_str().unwrap();
                Value::Object(
                    (0..n)
                        .map(|_| (random_string(rng), random_value(model, value, rng, depth + 1)))
                        .collect(),
                )
            }
            "structure" => {
                let required: Vec<&str> = shape["required"]
                    .as_array()
                    .map_or(vec![], |r| r.iter().filter_map(Value::as_str).collect());
                let mut m = Map::new();
                for (member, spec) in shape["members"].as_object().unwrap() {
                    let present = required.contains(&member.as_str()) || (depth <= 3 && rng.below(3) != 0);
                    if present {
                        m.insert(
                            member.clone(),
                            random_value(model, spec["shape"].as_str().unwrap(), rng, depth + 1),
                        );
                    }
                }
                Value::Object(m)
            }
            other => panic!("{name}: shape type {other}"),
        }
    }

    #[test]
    fn every_ecs_structure_is_written_as_serde_json_writes_it() {
        let model: Value = serde_json::from_str(crate::ecs::MODEL).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut checked = 0;
        for (name, shape) in model["shapes"].as_object().unwrap() {
            if shape["type"] != "structure" || shape["exception"] == true {
                continue;
            }
            for _ in 0..20 {
                let doc = random_value(&model, name, &mut rng, 0).to_string();
                let (ours, theirs) = crate::ecs::write_both(name, &doc)
                    .unwrap_or_else(|| panic!("{name}: no writer, or the document did not parse: {doc}"));
                assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{name}: {doc}");
                checked += 1;
            }
        }
        assert!(checked > 5000, "only {checked} documents");
    }
}
