//! AWS Signature Version 4 for Gantry: [`parse`] finds a request's signature (an `Authorization`
//! header or a presigned query string), [`verify`] checks it the way AWS's non-S3 services do
//! (the body hashed here, the path URI-encoded twice, ±15 minutes of skew, presigned expiry), and
//! [`sign`]/[`presign`] sign requests for Gantry's own clients with the very same canonical form.
//! Errors carry AWS's messages and, per protocol family, AWS's codes. It is pure: it must not know
//! an HTTP library (a request is a borrowed [`Request`] view), read the clock (callers pass `now`
//! in epoch seconds), draw randomness, look up keys (the caller does, and may cache a
//! [`SigningKey`] per access key, date, region and service), or let a secret reach a log.

mod canonical;
mod error;
mod time;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::borrow::Cow;
use subtle::ConstantTimeEq;

pub use error::{Family, INVALID_TOKEN, Mismatch, SIGNATURE_DOES_NOT_MATCH, SigError};
pub use time::{format_amz_date, parse_amz_date};

/// The skew AWS allows between a request's time and the server's, either way.
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// The longest `X-Amz-Expires` a presigned URL may ask for: a week.
pub const MAX_EXPIRES_SECS: u32 = 604_800;
/// The headers besides `Authorization` that parsing a header signature reads (the first value
/// of each): a caller that has already found them may pass only these to [`parse`].
pub const SIGNATURE_HEADERS: [&str; 3] = ["x-amz-date", "date", "x-amz-security-token"];
/// The payload hash of an empty body.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
const ALGORITHM: &str = "AWS4-HMAC-SHA256";

/// A request as received, borrowed from whatever HTTP library the caller uses.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// The path as received: still percent-encoded, without the query.
    pub path: &'a str,
    /// The raw query string, without `?` (empty if none).
    pub query: &'a str,
    /// Every header, names in any case, repeated names allowed (their values are joined with
    /// `,` in request order). Over HTTP/2, pass the `:authority` as `host`.
    pub headers: &'a [(&'a str, &'a [u8])],
    pub body: &'a [u8],
}

impl<'a> Request<'a> {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }

    /// The first value of each of `names` (lowercase), in one pass over the headers.
    fn headers_named<const N: usize>(&self, names: [&str; N]) -> [Option<&'a [u8]>; N] {
        let mut found = [None; N];
        for (n, v) in self.headers {
            for (name, slot) in names.iter().zip(found.iter_mut()) {
                if slot.is_none() && n.eq_ignore_ascii_case(name) {
                    *slot = Some(*v);
                }
            }
        }
        found
    }

    /// The first query parameter named `name` (exact case), percent-decoded.
    fn query_param(&self, name: &str) -> Option<String> {
        if self.query.is_empty() {
            return None;
        }
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == name || (k.contains('%') && canonical::decode(k) == name.as_bytes()))
                .then(|| canonical::decode_str(v))
        })
    }
}

/// Where the signature was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`.
    Header,
    /// `X-Amz-Algorithm=...&X-Amz-Credential=...&...&X-Amz-Signature=...` in the query string.
    Presigned,
}

/// A request's signature, as parsed; not yet verified. Its text is borrowed from the request
/// where it can be (a header's), so that parsing allocates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth<'a> {
    pub form: Form,
    pub access_key: Cow<'a, str>,
    /// The credential scope's date, `YYYYMMDD`.
    pub date: Cow<'a, str>,
    /// The request's time as signed, `YYYYMMDDTHHMMSSZ` (from `X-Amz-Date`, or `Date`).
    pub amz_date: Cow<'a, str>,
    /// `amz_date` in epoch seconds.
    pub timestamp: i64,
    pub region: Cow<'a, str>,
    pub service: Cow<'a, str>,
    /// The `;`-separated lowercase names, as the client listed them.
    pub signed_headers: Cow<'a, str>,
    /// Hex, as the client sent it.
    pub signature: Cow<'a, str>,
    /// `X-Amz-Security-Token`, from the header or (presigned) the query.
    pub security_token: Option<Cow<'a, str>>,
    /// `X-Amz-Expires` of a presigned URL.
    pub expires: Option<u32>,
}

impl Auth<'_> {
    /// The same signature, owning its text (to keep it past the request).
    pub fn into_owned(self) -> Auth<'static> {
        let own = |c: Cow<'_, str>| Cow::Owned(c.into_owned());
        Auth {
            form: self.form,
            access_key: own(self.access_key),
            date: own(self.date),
            amz_date: own(self.amz_date),
            timestamp: self.timestamp,
            region: own(self.region),
            service: own(self.service),
            signed_headers: own(self.signed_headers),
            signature: own(self.signature),
            security_token: self.security_token.map(own),
            expires: self.expires,
        }
    }

    /// `date/region/service/aws4_request`.
    pub fn scope(&self) -> String {
        format!("{}/{}/{}/aws4_request", self.date, self.region, self.service)
    }

    pub fn signed_header_names(&self) -> impl Iterator<Item = &str> {
        self.signed_headers.split(';')
    }

    /// Refuses a scope for another service than the endpoint's, in AWS's words.
    pub fn check_service(&self, expected: &str) -> Result<(), SigError> {
        if self.service == expected {
            return Ok(());
        }
        Err(SigError::Invalid(format!("Credential should be scoped to correct service: '{expected}'. ")))
    }

    /// Refuses a scope whose region the endpoint does not serve, in AWS's words.
    pub fn check_region(&self, valid: impl Fn(&str) -> bool) -> Result<(), SigError> {
        if valid(&self.region) {
            return Ok(());
        }
        Err(SigError::Invalid(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            self.region
        )))
    }
}

fn incomplete(msg: String) -> SigError {
    SigError::Incomplete(msg)
}

/// Finds and parses the signature of a request: the `Authorization` header, or a presigned
/// query string. Nothing is verified yet: the caller looks the access key up, then calls
/// [`verify`] or [`verify_with_key`].
pub fn parse<'a>(req: &Request<'a>) -> Result<Auth<'a>, SigError> {
    let header = req.header("authorization");
    let presigned = req.query_param("X-Amz-Algorithm");
    match (header, presigned) {
        (Some(_), Some(_)) => Err(incomplete(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string \
             parameter or the Authorization header should be specified"
                .into(),
        )),
        (Some(h), None) => parse_header(req, h),
        (None, Some(alg)) => parse_presigned(req, &alg),
        (None, None) => Err(SigError::Missing),
    }
}

struct Credential<'c> {
    access_key: &'c str,
    date: &'c str,
    region: &'c str,
    service: &'c str,
}

/// The five `sep`-separated parts of a credential scope (`AKID/DATE/REGION/SERVICE/aws4_request`;
/// in a query string the separator may be `%2F`), some possibly empty; `None` unless there are
/// exactly five. One pass over the bytes: cheaper than `str::split`'s searchers for a string
/// this short, and the front door calls it on every request to route by the scope's service.
pub fn five_parts<'a>(s: &'a str, sep: &str) -> Option<[&'a str; 5]> {
    let (bytes, sep) = (s.as_bytes(), sep.as_bytes());
    let mut cut = [0usize; 4];
    let (mut found, mut i) = (0, 0);
    if let [only] = sep {
        // The usual `/`: one comparison a byte.
        for (at, &b) in bytes.iter().enumerate() {
            if b == *only {
                if found == 4 {
                    return None;
                }
                cut[found] = at;
                found += 1;
            }
        }
        i = bytes.len();
    }
    while i + sep.len() <= bytes.len() {
        if bytes[i] == sep[0] && bytes[i..].starts_with(sep) {
            if found == 4 {
                return None;
            }
            cut[found] = i;
            found += 1;
            i += sep.len();
        } else {
            i += 1;
        }
    }
    (found == 4).then(|| {
        std::array::from_fn(|n| {
            let start = if n == 0 { 0 } else { cut[n - 1] + sep.len() };
            let end = if n == 4 { s.len() } else { cut[n] };
            &s[start..end]
        })
    })
}

fn parse_credential(credential: &str) -> Result<Credential<'_>, SigError> {
    let parts = five_parts(credential, "/").filter(|p| p.iter().all(|part| !part.is_empty()));
    let Some([access_key, date, region, service, terminator]) = parts else {
        return Err(incomplete(format!(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got \
             '{credential}'"
        )));
    };
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err(incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        )));
    }
    if terminator != "aws4_request" {
        return Err(SigError::Invalid(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{terminator}'. "
        )));
    }
    Ok(Credential { access_key, date, region, service })
}

fn bad_date(value: &str) -> SigError {
    incomplete(format!(
        "Date must be in ISO-8601 'basic format'. Got '{value}'. See http://en.wikipedia.org/wiki/ISO_8601"
    ))
}

fn require_host(signed_headers: &str) -> Result<(), SigError> {
    // SDKs list the names in lowercase and sorted, so `host` is usually found as written.
    let lowercase = signed_headers == "host"
        || signed_headers.starts_with("host;")
        || signed_headers.ends_with(";host")
        || signed_headers.contains(";host;");
    if lowercase || signed_headers.split(';').any(|h| h.eq_ignore_ascii_case("host")) {
        return Ok(());
    }
    Err(incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into()))
}

/// `s` split around the first `byte` (ASCII), by a plain scan: for strings this short, cheaper
/// than `str::split_once`'s searcher.
fn split_at_byte(s: &str, byte: u8) -> Option<(&str, &str)> {
    let at = s.bytes().position(|b| b == byte)?;
    Some((&s[..at], &s[at + 1..]))
}

/// The fields of an `Authorization` header written as every SDK writes it,
/// `Credential=C, SignedHeaders=S, Signature=X`: found without splitting and trimming each part.
/// Anything else (other order, other spacing, more fields) returns `None` and is parsed the
/// general way, with the same result.
fn sdk_layout(rest: &str) -> Option<(&str, &str, &str)> {
    let rest = rest.strip_prefix("Credential=")?;
    let (credential, rest) = split_at_byte(rest, b',')?;
    let rest = rest.strip_prefix(" SignedHeaders=")?;
    let (signed_headers, rest) = split_at_byte(rest, b',')?;
    let signature = rest.strip_prefix(" Signature=")?;
    // No separator and no whitespace (nor any other byte up to the space, which a header value
    // never holds but a tab): a fold without an early exit, which the compiler vectorizes. A
    // value it refuses is parsed the general way.
    let clean = |v: &str| {
        !v.is_empty() && !v.bytes().fold(false, |bad, b| bad | (b == b',') | (b == b'=') | (b <= b' '))
    };
    (clean(credential) && clean(signed_headers) && clean(signature)).then_some((
        credential,
        signed_headers,
        signature,
    ))
}

fn parse_header<'a>(req: &Request<'a>, raw: &'a [u8]) -> Result<Auth<'a>, SigError> {
    let header = std::str::from_utf8(raw)
        .map_err(|_| incomplete("The Authorization header is not valid text.".into()))?;
    let header = header.trim();
    let (algorithm, rest) = split_at_byte(header, b' ').unwrap_or((header, ""));
    if !algorithm.starts_with("AWS4-") {
        return Err(SigError::Missing);
    }
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}' (only AWS4-HMAC-SHA256 for now). "
        )));
    }
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    if let Some((c, h, s)) = sdk_layout(rest) {
        (credential, signed_headers, signature) = (Some(c), Some(h), Some(s));
    } else {
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
    }
    let found = req.headers_named(SIGNATURE_HEADERS);
    let date_header = found[0].map(|v| (v, true)).or(found[1].map(|v| (v, false)));
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
    if date_header.is_none() {
        problems.push_str(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        );
    }
    let (Some(credential), Some(signed_headers), Some(signature), Some((date_raw, amz))) =
        (credential, signed_headers, signature, date_header)
    else {
        return Err(incomplete(format!("{problems}Authorization={header}")));
    };
    let cred = parse_credential(credential)?;
    let date_text: Cow<'a, str> = match std::str::from_utf8(date_raw) {
        Ok(text) => Cow::Borrowed(text.trim()),
        Err(_) => Cow::Owned(String::from_utf8_lossy(date_raw).trim().to_string()),
    };
    // An ISO-8601 basic date is kept as sent (it is what was signed; parsing checked its form).
    let (timestamp, amz_date) = match time::parse_amz_date(&date_text) {
        Some(t) => (t, date_text),
        None if !amz => {
            let t = time::parse_http_date(&date_text).ok_or_else(|| bad_date(&date_text))?;
            (t, Cow::Owned(time::format_amz_date(t)))
        }
        None => return Err(bad_date(&date_text)),
    };
    require_host(signed_headers)?;
    let security_token = found[2].map(String::from_utf8_lossy);
    Ok(Auth {
        form: Form::Header,
        access_key: Cow::Borrowed(cred.access_key),
        date: Cow::Borrowed(cred.date),
        amz_date,
        timestamp,
        region: Cow::Borrowed(cred.region),
        service: Cow::Borrowed(cred.service),
        signed_headers: Cow::Borrowed(signed_headers),
        signature: Cow::Borrowed(signature),
        security_token,
        expires: None,
    })
}

fn parse_presigned<'a>(req: &Request<'a>, algorithm: &str) -> Result<Auth<'a>, SigError> {
    if algorithm != ALGORITHM {
        return Err(incomplete(format!(
            "Unsupported AWS 'algorithm': '{algorithm}' (only AWS4-HMAC-SHA256 for now). "
        )));
    }
    let credential = req.query_param("X-Amz-Credential");
    let signature = req.query_param("X-Amz-Signature");
    let date = req.query_param("X-Amz-Date");
    let signed_headers = req.query_param("X-Amz-SignedHeaders");
    let missing: Vec<&str> = [
        ("X-Amz-Credential", credential.is_none()),
        ("X-Amz-Signature", signature.is_none()),
        ("X-Amz-Date", date.is_none()),
        ("X-Amz-SignedHeaders", signed_headers.is_none()),
    ]
    .iter()
    .filter(|(_, m)| *m)
    .map(|(n, _)| *n)
    .collect();
    let (Some(credential), Some(signature), Some(date), Some(signed_headers)) =
        (credential, signature, date, signed_headers)
    else {
        let names: Vec<String> = missing.iter().map(|n| format!("'{n}'")).collect();
        return Err(incomplete(format!(
            "AWS query-string parameters must include {}. Re-examine the query-string parameters.",
            names.join(", ")
        )));
    };
    let cred = parse_credential(&credential)?;
    let timestamp = time::parse_amz_date(&date).ok_or_else(|| bad_date(&date))?;
    let expires = match req.query_param("X-Amz-Expires") {
        None => None,
        Some(e) => {
            let n: i64 = e.parse().map_err(|_| incomplete("X-Amz-Expires should be a number".into()))?;
            if n < 1 {
                return Err(incomplete("X-Amz-Expires must be non-negative".into()));
            }
            if n > i64::from(MAX_EXPIRES_SECS) {
                return Err(incomplete(
                    "X-Amz-Expires must be less than a week (in seconds) that is 604800".into(),
                ));
            }
            Some(n as u32)
        }
    };
    require_host(&signed_headers)?;
    Ok(Auth {
        form: Form::Presigned,
        access_key: Cow::Owned(cred.access_key.to_string()),
        date: Cow::Owned(cred.date.to_string()),
        amz_date: Cow::Owned(time::format_amz_date(timestamp)),
        timestamp,
        region: Cow::Owned(cred.region.to_string()),
        service: Cow::Owned(cred.service.to_string()),
        signed_headers: Cow::Owned(signed_headers),
        signature: Cow::Owned(signature),
        security_token: req.query_param("X-Amz-Security-Token").map(Cow::Owned),
        expires,
    })
}

type HmacSha256 = Hmac<Sha256>;

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The key derived from a secret for one date, region and service. Cache it per
/// (access key, date, region, service): it is valid for that whole day and scope. It keeps the
/// HMAC state already keyed, so a signature costs the hashing of the string to sign alone.
#[derive(Clone)]
pub struct SigningKey(HmacSha256);

impl SigningKey {
    /// `HMAC(HMAC(HMAC(HMAC("AWS4" + secret, date), region), service), "aws4_request")`.
    pub fn derive(secret: &str, date: &str, region: &str, service: &str) -> SigningKey {
        let mut k = Vec::with_capacity(4 + secret.len());
        k.extend_from_slice(b"AWS4");
        k.extend_from_slice(secret.as_bytes());
        let k = hmac(&k, date.as_bytes());
        let k = hmac(&k, region.as_bytes());
        let k = hmac(&k, service.as_bytes());
        let key = hmac(&k, b"aws4_request");
        SigningKey(<HmacSha256 as KeyInit>::new_from_slice(&key).expect("HMAC takes keys of any length"))
    }

    /// The hex signature of a string to sign.
    pub fn sign(&self, string_to_sign: &str) -> String {
        let mut mac = self.0.clone();
        mac.update(string_to_sign.as_bytes());
        canonical::hex(&mac.finalize().into_bytes())
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(..)")
    }
}

/// Verifies `auth` (from [`parse`]) against the request with the access key's secret.
pub fn verify(auth: &Auth<'_>, req: &Request<'_>, secret: &str, now_epoch_secs: i64) -> Result<(), SigError> {
    check_time(auth, now_epoch_secs)?;
    let key = SigningKey::derive(secret, &auth.date, &auth.region, &auth.service);
    verify_signature(auth, req, &key)
}

/// [`verify`] with a signing key the caller derived (and cached) for `auth`'s access key, date,
/// region and service.
pub fn verify_with_key(
    auth: &Auth<'_>,
    req: &Request<'_>,
    key: &SigningKey,
    now_epoch_secs: i64,
) -> Result<(), SigError> {
    check_time(auth, now_epoch_secs)?;
    verify_signature(auth, req, key)
}

/// The checks on time: the scope's date is the request's, the request is within 15 minutes of
/// `now`, and a presigned URL has not expired.
pub fn check_time(auth: &Auth<'_>, now: i64) -> Result<(), SigError> {
    let day = &auth.amz_date[..8];
    if auth.date != day {
        return Err(SigError::Invalid(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != \
             '{day}', from '{}'.",
            auth.date, auth.amz_date
        )));
    }
    let f = time::format_amz_date;
    if auth.timestamp > now + MAX_SKEW_SECS {
        return Err(SigError::NotYetCurrent(format!(
            "Signature not yet current: {} is still later than {} ({} + 15 min.)",
            auth.amz_date,
            f(now + MAX_SKEW_SECS),
            f(now)
        )));
    }
    match auth.expires {
        Some(expires) if auth.timestamp + i64::from(expires) < now => {
            Err(SigError::Expired("Request has expired".into()))
        }
        Some(_) => Ok(()),
        None if auth.timestamp < now - MAX_SKEW_SECS => Err(SigError::Expired(format!(
            "Signature expired: {} is now earlier than {} ({} - 15 min.)",
            auth.amz_date,
            f(now - MAX_SKEW_SECS),
            f(now)
        ))),
        None => Ok(()),
    }
}

/// The cryptographic check alone (no time checks).
fn verify_signature(auth: &Auth<'_>, req: &Request<'_>, key: &SigningKey) -> Result<(), SigError> {
    let body_hash = canonical::sha256_hex(req.body);
    let parts = canonical::Parts {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: req.headers,
        skip_signature_param: auth.form == Form::Presigned,
    };
    let mut creq = Vec::with_capacity(256 + req.query.len() + req.path.len());
    canonical::canonical_request_into(&mut creq, &parts, &auth.signed_headers, &body_hash);
    let sts = canonical::string_to_sign(&auth.amz_date, &auth.scope(), &creq);
    let computed = key.sign(&sts);
    if bool::from(computed.as_bytes().ct_eq(auth.signature.as_bytes())) {
        return Ok(());
    }
    Err(SigError::SignatureDoesNotMatch(Box::new(Mismatch {
        canonical_request: String::from_utf8_lossy(&creq).into_owned(),
        string_to_sign: sts,
    })))
}

/// Who signs, for [`sign`] and [`presign`].
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub access_key: &'a str,
    pub secret: &'a str,
    pub session_token: Option<&'a str>,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("access_key", &self.access_key).finish_non_exhaustive()
    }
}

/// Headers a signer never signs (botocore's list, plus the ones the signer sets itself).
fn signable(name: &str) -> bool {
    !["expect", "transfer-encoding", "user-agent", "x-amzn-trace-id", "authorization", "x-amz-date"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n))
        && !(name.eq_ignore_ascii_case("x-amz-security-token"))
}

fn signed_header_list(headers: &[(&str, &[u8])]) -> String {
    let mut names: Vec<String> = headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    names.sort_unstable();
    names.dedup();
    names.join(";")
}

/// Signs a request in the header form. `req.headers` must hold `host`; `req.path` and
/// `req.query` are as they will be sent (percent-encoded). Returns the headers to add:
/// `authorization`, `x-amz-date` and, with a session token, `x-amz-security-token`.
pub fn sign(
    req: &Request<'_>,
    creds: &Credentials<'_>,
    region: &str,
    service: &str,
    now_epoch_secs: i64,
) -> Vec<(&'static str, String)> {
    let amz_date = time::format_amz_date(now_epoch_secs);
    let date = &amz_date[..8];
    let mut headers: Vec<(&str, &[u8])> = req.headers.iter().copied().filter(|(n, _)| signable(n)).collect();
    headers.push(("x-amz-date", amz_date.as_bytes()));
    if let Some(token) = creds.session_token {
        headers.push(("x-amz-security-token", token.as_bytes()));
    }
    let signed_headers = signed_header_list(&headers);
    let parts = canonical::Parts {
        method: req.method,
        path: req.path,
        query: req.query,
        headers: &headers,
        skip_signature_param: false,
    };
    let mut creq = Vec::with_capacity(512);
    canonical::canonical_request_into(&mut creq, &parts, &signed_headers, &canonical::sha256_hex(req.body));
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let sts = canonical::string_to_sign(&amz_date, &scope, &creq);
    let signature = SigningKey::derive(creds.secret, date, region, service).sign(&sts);
    let mut out = vec![
        (
            "authorization",
            format!(
                "{ALGORITHM} Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                creds.access_key
            ),
        ),
        ("x-amz-date", amz_date.clone()),
    ];
    if let Some(token) = creds.session_token {
        out.push(("x-amz-security-token", token.to_string()));
    }
    out
}

/// Signs a request as a presigned URL valid for `expires_secs`. Returns the whole query string
/// to send (the request's own parameters, then the `X-Amz-*` ones, `X-Amz-Signature` last).
/// The headers of `req` (which must hold `host`) are signed and must be sent as they are.
pub fn presign(
    req: &Request<'_>,
    creds: &Credentials<'_>,
    region: &str,
    service: &str,
    now_epoch_secs: i64,
    expires_secs: u32,
) -> String {
    let amz_date = time::format_amz_date(now_epoch_secs);
    let date = &amz_date[..8];
    let headers: Vec<(&str, &[u8])> = req.headers.iter().copied().filter(|(n, _)| signable(n)).collect();
    let signed_headers = signed_header_list(&headers);
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let mut query = String::new();
    for pair in req.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (mut ek, mut ev) = (Vec::new(), Vec::new());
        canonical::encode_into(&mut ek, &canonical::decode(k), false);
        canonical::encode_into(&mut ev, &canonical::decode(v), false);
        query.push_str(&String::from_utf8_lossy(&ek));
        query.push('=');
        query.push_str(&String::from_utf8_lossy(&ev));
        query.push('&');
    }
    let e = canonical::encode;
    query.push_str(&format!(
        "X-Amz-Algorithm={ALGORITHM}&X-Amz-Credential={}&X-Amz-Date={amz_date}&X-Amz-Expires={expires_secs}\
         &X-Amz-SignedHeaders={}",
        e(&format!("{}/{scope}", creds.access_key)),
        e(&signed_headers)
    ));
    if let Some(token) = creds.session_token {
        query.push_str("&X-Amz-Security-Token=");
        query.push_str(&e(token));
    }
    let parts = canonical::Parts {
        method: req.method,
        path: req.path,
        query: &query,
        headers: &headers,
        skip_signature_param: true,
    };
    let mut creq = Vec::with_capacity(512);
    canonical::canonical_request_into(&mut creq, &parts, &signed_headers, &canonical::sha256_hex(req.body));
    let sts = canonical::string_to_sign(&amz_date, &scope, &creq);
    let signature = SigningKey::derive(creds.secret, date, region, service).sign(&sts);
    query.push_str("&X-Amz-Signature=");
    query.push_str(&signature);
    query
}

/// Compares two secrets (signatures, session tokens) in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(authorization: &str) -> Result<Auth<'static>, SigError> {
        let headers =
            [("Authorization", authorization.as_bytes()), ("X-Amz-Date", b"20240101T000000Z".as_slice())];
        parse(&Request { method: "POST", path: "/", query: "", headers: &headers, body: b"" })
            .map(Auth::into_owned)
    }

    #[test]
    fn the_sdk_layout_and_the_general_parse_agree() {
        let sdk = "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/ecs/aws4_request, \
                   SignedHeaders=host;x-amz-date, Signature=abcd";
        let want = parsed(sdk).unwrap();
        assert_eq!((&*want.access_key, &*want.region, &*want.service), ("AKID", "us-east-1", "ecs"));
        assert_eq!((&*want.signed_headers, &*want.signature), ("host;x-amz-date", "abcd"));
        for variant in [
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/ecs/aws4_request,SignedHeaders=host;x-amz-date,Signature=abcd",
            "AWS4-HMAC-SHA256 Signature=abcd, Credential=AKID/20240101/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date",
            "AWS4-HMAC-SHA256 Credential = AKID/20240101/us-east-1/ecs/aws4_request ,  SignedHeaders=host;x-amz-date, Signature=abcd",
        ] {
            assert_eq!(parsed(variant).unwrap(), want, "{variant}");
        }
        // A layout that looks like the SDK's but is not (a value with a space) is refused as
        // the general parse refuses it.
        let err = parsed(
            "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/ecs/aws4_request, SignedHeaders=x-amz-date, Signature=abcd",
        );
        assert!(matches!(err, Err(SigError::Incomplete(m)) if m.contains("'Host'")));
    }

    #[test]
    fn credentials_need_exactly_five_parts() {
        for bad in [
            "AKID/20240101/us-east-1/ecs",
            "AKID/20240101/us-east-1/ecs/aws4_request/x",
            "AKID//us-east-1/ecs/aws4_request",
        ] {
            let h = format!("AWS4-HMAC-SHA256 Credential={bad}, SignedHeaders=host, Signature=abcd");
            assert!(matches!(parsed(&h), Err(SigError::Incomplete(m)) if m.contains("exactly 5")), "{bad}");
        }
        let h = "AWS4-HMAC-SHA256 Credential=AKID/2024010/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=abcd";
        assert!(matches!(parsed(h), Err(SigError::Incomplete(m)) if m.contains("'2024010'")));
        let h = "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/ecs/aws5_request, SignedHeaders=host, Signature=abcd";
        assert!(matches!(parsed(h), Err(SigError::Invalid(m)) if m.contains("'aws5_request'")));
    }
}
