//! The canonical request, built the same way for verifying and for signing, so the two cannot
//! disagree. The rules are botocore's `SigV4Auth` (non-S3 services):
//!
//! - URI: the path as received (still percent-encoded), dot segments and empty segments removed
//!   (a trailing `/` kept), then every byte outside RFC 3986's unreserved set and `/` encoded
//!   again: `%20` becomes `%2520` ("URI-encoded twice"). An empty path is `/`.
//! - Query: each `key=value` pair percent-decoded, then encoded with only the unreserved set left
//!   as is (`+` is a literal plus, encoded `%2B`); a key without `=` has an empty value; pairs
//!   sorted by encoded key, then encoded value.
//! - Headers: the signed ones, in the order `SignedHeaders` lists them, each as
//!   `name:value` with every value of that name (request order) trimmed, inner runs of
//!   whitespace collapsed to one space, and joined with `,`.

use sha2::{Digest, Sha256};

const HEX: &[u8; 16] = b"0123456789abcdef";
const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// Percent-encodes `bytes` into `out`, leaving the unreserved set (and `/` if `keep_slash`).
pub(crate) fn encode_into(out: &mut Vec<u8>, bytes: &[u8], keep_slash: bool) {
    for &b in bytes {
        if unreserved(b) || (keep_slash && b == b'/') {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'%', HEX_UPPER[usize::from(b >> 4)], HEX_UPPER[usize::from(b & 15)]]);
        }
    }
}

pub(crate) fn encode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    encode_into(&mut out, s.as_bytes(), false);
    String::from_utf8(out).unwrap_or_default()
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes; a `%` not followed by two hex digits stays as it is.
pub(crate) fn decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

/// Decodes a query parameter value to text (lossy for bytes that are not UTF-8).
pub(crate) fn decode_str(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    String::from_utf8_lossy(&decode(s)).into_owned()
}

/// The canonical URI of a raw (percent-encoded) path.
pub(crate) fn uri_into(out: &mut Vec<u8>, path: &str) {
    if path.is_empty() {
        out.push(b'/');
        return;
    }
    let absolute = path.starts_with('/');
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    if absolute {
        out.push(b'/');
    }
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        encode_into(out, seg.as_bytes(), false);
    }
    if path.ends_with('/') && !segments.is_empty() {
        out.push(b'/');
    }
}

/// The canonical query string of a raw query string; `skip_signature` leaves `X-Amz-Signature`
/// out (presigned URLs).
pub(crate) fn query_into(out: &mut Vec<u8>, query: &str, skip_signature: bool) {
    if query.is_empty() {
        return;
    }
    let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (mut ek, mut ev) = (Vec::with_capacity(k.len()), Vec::with_capacity(v.len()));
        encode_into(&mut ek, &decode(k), false);
        if skip_signature && ek == b"X-Amz-Signature" {
            continue;
        }
        encode_into(&mut ev, &decode(v), false);
        pairs.push((ek, ev));
    }
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push(b'&');
        }
        out.extend_from_slice(k);
        out.push(b'=');
        out.extend_from_slice(v);
    }
}

/// Appends a header value trimmed, with inner runs of whitespace collapsed to one space.
fn trimmed_value_into(out: &mut Vec<u8>, value: &[u8]) {
    let mut first = true;
    for word in value.split(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')).filter(|w| !w.is_empty()) {
        if !first {
            out.push(b' ');
        }
        out.extend_from_slice(word);
        first = false;
    }
}

/// The parts of a request that go into its canonical form.
pub(crate) struct Parts<'r> {
    pub method: &'r str,
    pub path: &'r str,
    pub query: &'r str,
    pub headers: &'r [(&'r str, &'r [u8])],
    pub skip_signature_param: bool,
}

/// Builds the canonical request into `out`. `signed_headers` is the `;`-separated list.
/// Returns false if a signed header is absent from the request (the canonical request then has
/// it with an empty value, as a server that computes regardless would).
pub(crate) fn canonical_request_into(
    out: &mut Vec<u8>,
    p: &Parts<'_>,
    signed_headers: &str,
    payload_hash: &str,
) -> bool {
    let mut all_present = true;
    out.extend_from_slice(p.method.as_bytes());
    out.push(b'\n');
    uri_into(out, p.path);
    out.push(b'\n');
    query_into(out, p.query, p.skip_signature_param);
    out.push(b'\n');
    for name in signed_headers.split(';') {
        out.extend_from_slice(name.as_bytes());
        out.push(b':');
        let mut found = false;
        for (n, v) in p.headers {
            if n.eq_ignore_ascii_case(name) {
                if found {
                    out.push(b',');
                }
                trimmed_value_into(out, v);
                found = true;
            }
        }
        all_present &= found;
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(signed_headers.as_bytes());
    out.push(b'\n');
    out.extend_from_slice(payload_hash.as_bytes());
    all_present
}

/// `AWS4-HMAC-SHA256\n<amz date>\n<scope>\n<hex sha256 of the canonical request>`.
pub(crate) fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &[u8]) -> String {
    let mut s = String::with_capacity(16 + 1 + amz_date.len() + 1 + scope.len() + 1 + 64);
    s.push_str("AWS4-HMAC-SHA256\n");
    s.push_str(amz_date);
    s.push('\n');
    s.push_str(scope);
    s.push('\n');
    s.push_str(&sha256_hex(canonical_request));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(p: &str) -> String {
        let mut v = Vec::new();
        uri_into(&mut v, p);
        String::from_utf8(v).unwrap()
    }

    fn query(q: &str) -> String {
        let mut v = Vec::new();
        query_into(&mut v, q, true);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn uris_are_normalized_and_encoded_again() {
        assert_eq!(uri(""), "/");
        assert_eq!(uri("/"), "/");
        assert_eq!(uri("//example//"), "/example/");
        assert_eq!(uri("/./"), "/");
        assert_eq!(uri("/example/.."), "/");
        assert_eq!(uri("/example1/example2/../.."), "/");
        assert_eq!(uri("/a%20b/%2F"), "/a%2520b/%252F");
        assert_eq!(uri("/example space/"), "/example%20space/");
        assert_eq!(uri("/-._~0-9A-Za-z"), "/-._~0-9A-Za-z");
    }

    #[test]
    fn queries_are_decoded_encoded_and_sorted() {
        assert_eq!(query("Param2=value2&Param1=value1"), "Param1=value1&Param2=value2");
        assert_eq!(query("b=2&a=3&a=1"), "a=1&a=3&b=2");
        assert_eq!(query("Param1"), "Param1=");
        assert_eq!(query("a=b%20c&x=y+z"), "a=b%20c&x=y%2Bz");
        assert_eq!(query("X-Amz-Signature=abc&q=%7e"), "q=~");
        assert_eq!(query("k=%zz"), "k=%25zz");
    }
}
