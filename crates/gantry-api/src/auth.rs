//! Request authentication, kept apart from everything else so that signature verification and
//! IAM can replace it later without touching dispatch.
//!
//! For now any well-formed SigV4 `Authorization` header is accepted: the access key, date,
//! region and service are parsed from its credential scope. Unsigned or malformed requests get
//! the errors AWS's front end gives.

use axum::http::HeaderMap;
use gantry_core::{EcsError, ErrorKind};

/// Who signed the request, from the SigV4 credential scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
}

fn incomplete(msg: String) -> EcsError {
    EcsError::new(ErrorKind::IncompleteSignatureException, msg)
}

/// Parses and checks the `Authorization` header.
pub fn authenticate(headers: &HeaderMap) -> Result<Caller, EcsError> {
    let Some(raw) = headers.get("authorization") else {
        return Err(EcsError::new(
            ErrorKind::MissingAuthenticationTokenException,
            "Missing Authentication Token",
        ));
    };
    let header =
        raw.to_str().map_err(|_| incomplete("The Authorization header is not valid text.".into()))?;
    let has_date = headers.contains_key("x-amz-date") || headers.contains_key("date");
    parse(header, has_date)
}

/// Parses an `Authorization` header value.
pub fn parse(header: &str, has_date: bool) -> Result<Caller, EcsError> {
    let header = header.trim();
    let (algorithm, rest) = header.split_once(' ').unwrap_or((header, ""));
    if !algorithm.starts_with("AWS4-") {
        return Err(EcsError::new(
            ErrorKind::MissingAuthenticationTokenException,
            "Missing Authentication Token",
        ));
    }
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}' (only AWS4-HMAC-SHA256 for now). "
        )));
    }
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((k, v)) = part.split_once('=') else {
            return Err(incomplete(format!(
                "'{part}' not a valid key=value pair (missing equal-sign) in Authorization header: '{header}'."
            )));
        };
        match k.trim() {
            "Credential" => credential = Some(v.trim()),
            "SignedHeaders" => signed_headers = Some(v.trim()),
            "Signature" => signature = Some(v.trim()),
            _ => {}
        }
    }
    let mut problems = String::new();
    if credential.is_none() {
        problems.push_str("Authorization header requires 'Credential' parameter. ");
    }
    if signature.is_none() {
        problems.push_str("Authorization header requires 'Signature' parameter. ");
    }
    if signed_headers.is_none() {
        problems.push_str("Authorization header requires 'SignedHeaders' parameter. ");
    }
    if !has_date {
        problems.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        );
    }
    if !problems.is_empty() {
        return Err(incomplete(format!("{problems}Authorization={header}")));
    }
    let credential = credential.unwrap_or_default();
    let parts: Vec<&str> = credential.split('/').collect();
    if parts.len() != 5 || parts.iter().any(|p| p.is_empty()) || parts[4] != "aws4_request" {
        return Err(incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '{credential}'"
        )));
    }
    if parts[1].len() != 8 || !parts[1].bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
            parts[1]
        )));
    }
    Ok(Caller {
        access_key: parts[0].to_string(),
        date: parts[1].to_string(),
        region: parts[2].to_string(),
        service: parts[3].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/eu-west-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc123";

    #[test]
    fn parses_credential_scope() {
        let c = parse(GOOD, true).unwrap();
        assert_eq!(c.access_key, "AKIDEXAMPLE");
        assert_eq!(c.date, "20240101");
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.service, "ecs");
    }

    #[test]
    fn rejects_malformed_headers() {
        let cases: &[(&str, bool, ErrorKind, &str)] = &[
            (
                "Basic abc",
                true,
                ErrorKind::MissingAuthenticationTokenException,
                "Missing Authentication Token",
            ),
            (
                "AWS4-HMAC-SHA1 Credential=a/b/c/d/e",
                true,
                ErrorKind::IncompleteSignatureException,
                "Unsupported AWS 'algorithm'",
            ),
            (
                "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=x",
                true,
                ErrorKind::IncompleteSignatureException,
                "Authorization header requires 'Credential' parameter.",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/ecs/aws4_request, SignedHeaders=host",
                true,
                ErrorKind::IncompleteSignatureException,
                "requires 'Signature' parameter",
            ),
            (GOOD, false, ErrorKind::IncompleteSignatureException, "'X-Amz-Date' or a 'Date' header"),
            (
                "AWS4-HMAC-SHA256 Credential=AK/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=x",
                true,
                ErrorKind::IncompleteSignatureException,
                "exactly 5 slash-delimited elements",
            ),
            (
                "AWS4-HMAC-SHA256 Credential=AK/2024-01-01/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=x",
                true,
                ErrorKind::IncompleteSignatureException,
                "ISO-8601",
            ),
            (
                "AWS4-HMAC-SHA256 Credential",
                true,
                ErrorKind::IncompleteSignatureException,
                "missing equal-sign",
            ),
        ];
        for (header, has_date, kind, msg) in cases {
            let e = parse(header, *has_date).unwrap_err();
            assert_eq!(e.kind, *kind, "{header}");
            assert!(e.message.contains(msg), "{header}: {}", e.message);
        }
    }
}
