//! botocore as the oracle: `tools/sigv4-vectors.py` signed these requests with botocore's
//! SigV4Auth / SigV4QueryAuth (fixed key and time) into `botocore-vectors.json`. Each must verify,
//! our canonical request must be botocore's, our signer must give botocore's signature, and each
//! kind of tampering must be refused with AWS's error.

use gantry_sigv4::{
    Auth, Credentials, Family, Form, Request, SigError, SigningKey, parse, presign, sign, verify,
    verify_with_key,
};
use serde_json::Value;

struct Vector {
    name: String,
    form: Form,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    region: String,
    service: String,
    token: Option<String>,
    now: i64,
    canonical: String,
}

const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

fn vectors() -> Vec<Vector> {
    let doc: Value = serde_json::from_str(include_str!("botocore-vectors.json")).unwrap();
    assert_eq!(doc["secret"], SECRET);
    let s = |v: &Value| v.as_str().unwrap().to_string();
    doc["vectors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            name: s(&v["name"]),
            form: if v["form"] == "Header" { Form::Header } else { Form::Presigned },
            method: s(&v["method"]),
            path: s(&v["path"]),
            query: s(&v["query"]),
            headers: v["headers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (s(&h[0]), s(&h[1]).into_bytes()))
                .collect(),
            body: s(&v["body"]).into_bytes(),
            region: s(&v["region"]),
            service: s(&v["service"]),
            token: v["token"].as_str().map(str::to_string),
            now: v["now"].as_i64().unwrap(),
            canonical: s(&v["botocore_canonical_request"]),
        })
        .collect()
}

impl Vector {
    fn with<T>(&self, edit: impl FnOnce(&mut Vector), f: impl FnOnce(&Request<'_>) -> T) -> T {
        let mut v = Vector { headers: self.headers.clone(), body: self.body.clone(), ..self.shallow() };
        edit(&mut v);
        let headers: Vec<(&str, &[u8])> = v.headers.iter().map(|(n, b)| (n.as_str(), b.as_slice())).collect();
        f(&Request { method: &v.method, path: &v.path, query: &v.query, headers: &headers, body: &v.body })
    }

    fn shallow(&self) -> Vector {
        Vector {
            name: self.name.clone(),
            form: self.form,
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: Vec::new(),
            body: Vec::new(),
            region: self.region.clone(),
            service: self.service.clone(),
            token: self.token.clone(),
            now: self.now,
            canonical: self.canonical.clone(),
        }
    }

    fn check(
        &self,
        edit: impl FnOnce(&mut Vector),
        secret: &str,
        now: i64,
    ) -> Result<Auth<'static>, SigError> {
        self.with(edit, |req| {
            let auth = parse(req)?;
            verify(&auth, req, secret, now)?;
            Ok(auth.into_owned())
        })
    }

    fn set_header(&mut self, name: &str, value: &str) {
        let h = self.headers.iter_mut().find(|(n, _)| n.eq_ignore_ascii_case(name)).unwrap();
        h.1 = value.as_bytes().to_vec();
    }

    fn header(&self, name: &str) -> String {
        let h = self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).unwrap();
        String::from_utf8(h.1.clone()).unwrap()
    }
}

fn by_name(name: &str) -> Vector {
    vectors().into_iter().find(|v| v.name == name).unwrap()
}

#[test]
fn every_vector_verifies_with_botocores_canonical_request() {
    let all = vectors();
    assert_eq!(all.len(), 7);
    for v in &all {
        let auth = v.check(|_| {}, SECRET, v.now).unwrap_or_else(|e| panic!("{}: {e:?}", v.name));
        assert_eq!(auth.form, v.form, "{}", v.name);
        assert_eq!((&*auth.region, &*auth.service), (v.region.as_str(), v.service.as_str()));
        assert_eq!(auth.security_token.as_deref(), v.token.as_deref(), "{}", v.name);
        assert_eq!(auth.amz_date, "20240101T000000Z");
        // A cached key verifies the same.
        let key = SigningKey::derive(SECRET, &auth.date, &auth.region, &auth.service);
        v.with(|_| {}, |req| verify_with_key(&auth, req, &key, v.now)).unwrap();
        // What we compute is what botocore signed.
        match v.check(|_| {}, "wrong secret", v.now) {
            Err(SigError::SignatureDoesNotMatch(m)) => {
                assert_eq!(m.canonical_request, v.canonical, "{}", v.name);
                assert!(!m.string_to_sign.contains("wrong secret"));
            }
            other => panic!("{}: {other:?}", v.name),
        }
    }
}

#[test]
fn our_signer_gives_botocores_signatures() {
    for v in vectors() {
        let creds =
            Credentials { access_key: "AKIDEXAMPLE", secret: SECRET, session_token: v.token.as_deref() };
        match v.form {
            Form::Header => {
                let added = v.with(
                    |w| {
                        w.headers.retain(|(n, _)| {
                            !["authorization", "x-amz-date", "x-amz-security-token"]
                                .contains(&n.to_ascii_lowercase().as_str())
                        })
                    },
                    |req| sign(req, &creds, &v.region, &v.service, v.now),
                );
                assert_eq!(added[0], ("authorization", v.header("authorization")), "{}", v.name);
                assert_eq!(added[1], ("x-amz-date", v.header("x-amz-date")));
                assert_eq!(added.get(2).map(|h| h.1.clone()), v.token, "{}", v.name);
            }
            Form::Presigned => {
                let own: Vec<&str> = v.query.split('&').filter(|p| !p.starts_with("X-Amz-")).collect();
                let own = own.join("&");
                let expires: u32 = v
                    .query
                    .split("X-Amz-Expires=")
                    .nth(1)
                    .unwrap()
                    .split('&')
                    .next()
                    .unwrap()
                    .parse()
                    .unwrap();
                let query = v.with(
                    |w| w.query = own.clone(),
                    |req| presign(req, &creds, &v.region, &v.service, v.now, expires),
                );
                assert_eq!(query, v.query, "{}", v.name);
            }
        }
    }
}

#[test]
fn round_trip_of_our_own_signatures() {
    let v = by_name("double-encoded-path");
    let creds = Credentials { access_key: "AKID", secret: "s3cr3t", session_token: Some("tok") };
    let now = 1_800_000_000;
    let added = v.with(
        |w| w.headers.retain(|(n, _)| n == "Host"),
        |req| sign(req, &creds, "eu-central-1", "ecs", now),
    );
    let auth = v
        .check(
            |w| {
                w.headers.retain(|(n, _)| n == "Host");
                w.headers.extend(added.iter().map(|(n, s)| (n.to_string(), s.clone().into_bytes())));
            },
            "s3cr3t",
            now + 899,
        )
        .unwrap();
    assert_eq!(auth.security_token.as_deref(), Some("tok"));
    assert_eq!(auth.region, "eu-central-1");
    let host_only = |w: &mut Vector| w.headers.retain(|(n, _)| n == "Host");
    let query = v.with(
        |w| {
            host_only(w);
            w.query = "b=a+c&a=%7E".into()
        },
        |req| presign(req, &creds, "eu-central-1", "sts", now, 30),
    );
    let auth = v
        .check(
            |w| {
                host_only(w);
                w.query = query.clone()
            },
            "s3cr3t",
            now + 30,
        )
        .unwrap();
    assert_eq!((auth.form, auth.expires), (Form::Presigned, Some(30)));
}

fn err(v: &Vector, edit: impl FnOnce(&mut Vector), secret: &str, now: i64) -> SigError {
    v.check(edit, secret, now).expect_err("must be refused")
}

#[test]
fn tampering_and_wrong_keys_do_not_match() {
    for v in vectors() {
        let mismatch = |e: SigError| matches!(e, SigError::SignatureDoesNotMatch(_));
        assert!(mismatch(err(&v, |_| {}, "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEz", v.now)), "{}", v.name);
        assert!(mismatch(err(&v, |w| w.body.push(b' '), SECRET, v.now)), "{}", v.name);
        assert!(mismatch(err(&v, |w| w.method = "PUT".into(), SECRET, v.now)), "{}", v.name);
        assert!(mismatch(err(&v, |w| w.path = "/other".into(), SECRET, v.now)), "{}", v.name);
        assert!(mismatch(err(&v, |w| w.set_header("host", "evil.example"), SECRET, v.now)), "{}", v.name);
    }
    // A signed header absent from the request.
    let v = by_name("ecs-json-1.1");
    let e = err(&v, |w| w.headers.retain(|(n, _)| n != "X-Amz-Target"), SECRET, v.now);
    assert!(matches!(e, SigError::SignatureDoesNotMatch(_)), "{e:?}");
    assert_eq!(e.code(Family::Json), "InvalidSignatureException");
    assert_eq!(e.code(Family::Query), "SignatureDoesNotMatch");
    assert_eq!(
        e.to_string(),
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret \
         Access Key and signing method. Consult the service documentation for details."
    );
    assert!(
        e.message_with_details(Family::Json)
            .contains("The Canonical String for this request should have been")
    );
    // An unsigned header may change freely.
    v.check(|w| w.set_header("user-agent", "other"), SECRET, v.now).unwrap();
}

#[test]
fn time_is_checked_both_ways() {
    let v = by_name("ecs-json-1.1");
    let e = err(&v, |_| {}, SECRET, v.now + 16 * 60);
    assert_eq!(
        e,
        SigError::Expired(
            "Signature expired: 20240101T000000Z is now earlier than 20240101T000100Z (20240101T001600Z - 15 min.)"
                .into()
        )
    );
    assert_eq!(e.code(Family::Json), "InvalidSignatureException");
    assert_eq!(e.code(Family::Ec2Query), "RequestExpired");
    let e = err(&v, |_| {}, SECRET, v.now - 16 * 60);
    assert_eq!(
        e,
        SigError::NotYetCurrent(
            "Signature not yet current: 20240101T000000Z is still later than 20231231T235900Z (20231231T234400Z + 15 min.)"
                .into()
        )
    );
    // 15 minutes exactly is still accepted.
    v.check(|_| {}, SECRET, v.now + 15 * 60).unwrap();
    v.check(|_| {}, SECRET, v.now - 15 * 60).unwrap();
    // The scope's date must be the request's.
    let e = err(&v, |w| w.set_header("x-amz-date", "20240102T000000Z"), SECRET, v.now);
    assert_eq!(
        e,
        SigError::Invalid(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '20240101' != \
             '20240102', from '20240102T000000Z'."
                .into()
        )
    );
}

#[test]
fn presigned_urls_expire() {
    let v = by_name("sts-presigned-get-caller-identity"); // X-Amz-Expires=900
    v.check(|_| {}, SECRET, v.now + 900).unwrap();
    let e = err(&v, |_| {}, SECRET, v.now + 901);
    assert_eq!(e, SigError::Expired("Request has expired".into()));
    let v = by_name("sts-presigned-with-token"); // X-Amz-Expires=60
    assert!(matches!(err(&v, |_| {}, SECRET, v.now + 61), SigError::Expired(_)));
    assert!(matches!(err(&v, |_| {}, SECRET, v.now - 16 * 60), SigError::NotYetCurrent(_)));
    let e = err(&v, |w| w.query = w.query.replace("X-Amz-Expires=60", "X-Amz-Expires=604801"), SECRET, v.now);
    assert!(matches!(e, SigError::Incomplete(ref m) if m.contains("604800")), "{e:?}");
    // Tampering with an operation parameter or the token.
    let e = err(&v, |w| w.query = w.query.replace("Version=2011-06-15", "Version=2011-06-16"), SECRET, v.now);
    assert!(matches!(e, SigError::SignatureDoesNotMatch(_)));
    let e = err(&v, |w| w.query = w.query.replace("session", "sessiom"), SECRET, v.now);
    assert!(matches!(e, SigError::SignatureDoesNotMatch(_)));
    // Both mechanisms at once.
    let e = err(
        &v,
        |w| w.headers.push(("Authorization".into(), b"AWS4-HMAC-SHA256 x=y".to_vec())),
        SECRET,
        v.now,
    );
    assert!(matches!(e, SigError::Incomplete(ref m) if m.starts_with("Only one auth mechanism allowed")));
    // A required parameter missing.
    let e = err(&v, |w| w.query = w.query.replace("X-Amz-Credential", "X-Amz-Credentia"), SECRET, v.now);
    assert!(matches!(e, SigError::Incomplete(ref m) if m.contains("'X-Amz-Credential'")), "{e:?}");
}

#[test]
fn host_must_be_signed() {
    let v = by_name("ecs-json-1.1");
    let e = err(
        &v,
        |w| {
            let a = w.header("authorization").replace("content-type;host;", "content-type;");
            w.set_header("authorization", &a)
        },
        SECRET,
        v.now,
    );
    assert_eq!(
        e,
        SigError::Incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".into()
        )
    );
    assert_eq!(e.code(Family::Json), "IncompleteSignatureException");
    assert_eq!(e.code(Family::Query), "IncompleteSignature");
    let v = by_name("sts-presigned-get-caller-identity");
    let e = err(
        &v,
        |w| w.query = w.query.replace("X-Amz-SignedHeaders=host", "X-Amz-SignedHeaders=x"),
        SECRET,
        v.now,
    );
    assert!(matches!(e, SigError::Incomplete(ref m) if m.starts_with("'Host' or ':authority'")));
}

#[test]
fn no_signature_at_all_is_missing() {
    let v = by_name("ecs-json-1.1");
    for edit in [(|w: &mut Vector| w.headers.retain(|(n, _)| n != "Authorization")) as fn(&mut Vector), |w| {
        w.set_header("authorization", "Basic dXNlcjpwYXNz")
    }] {
        let e = err(&v, edit, SECRET, v.now);
        assert_eq!(e, SigError::Missing);
        assert_eq!(e.code(Family::Json), "MissingAuthenticationTokenException");
        assert_eq!(e.message(Family::Json), "Missing Authentication Token");
        assert_eq!(e.code(Family::Query), "MissingAuthenticationToken");
    }
}

#[test]
fn malformed_authorization_headers() {
    let v = by_name("ecs-json-1.1");
    const GOOD: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/ecs/aws4_request, \
                        SignedHeaders=host;x-amz-date, Signature=abc123";
    let cases: &[(&str, bool, &str)] = &[
        ("AWS4-HMAC-SHA1 Credential=a/b/c/d/e", true, "Unsupported AWS 'algorithm': 'AWS4-HMAC-SHA1'"),
        (
            "AWS4-HMAC-SHA256 SignedHeaders=host, Signature=x",
            true,
            "Authorization header requires 'Credential' parameter. ",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AK/20240101/us-east-1/ecs/aws4_request, SignedHeaders=host",
            true,
            "Authorization header requires 'Signature' parameter. Authorization=AWS4-HMAC-SHA256",
        ),
        (
            GOOD,
            false,
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AK/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=x",
            true,
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got \
             'AK/us-east-1/ecs/aws4_request'",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AK/2024-01-01/us-east-1/ecs/aws4_request, SignedHeaders=host, Signature=x",
            true,
            "Date must be in ISO-8601 'basic format'. Got '2024-01-01'.",
        ),
        ("AWS4-HMAC-SHA256 Credential", true, "'Credential' not a valid key=value pair (missing equal-sign)"),
    ];
    for (header, has_date, msg) in cases {
        let e = err(
            &v,
            |w| {
                w.set_header("authorization", header);
                if !has_date {
                    w.headers.retain(|(n, _)| n != "X-Amz-Date");
                }
            },
            SECRET,
            v.now,
        );
        assert!(matches!(e, SigError::Incomplete(ref m) if m.contains(msg)), "{header}: {e:?}");
    }
    let e = err(&v, |w| w.set_header("x-amz-date", "2024-01-01T00:00:00Z"), SECRET, v.now);
    assert!(matches!(e, SigError::Incomplete(ref m) if m.contains("Got '2024-01-01T00:00:00Z'")), "{e:?}");
    let e = err(
        &v,
        |w| w.set_header("authorization", &w.header("authorization").replace("aws4_request", "aws5_request")),
        SECRET,
        v.now,
    );
    assert_eq!(
        e,
        SigError::Invalid(
            "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'. "
                .into()
        )
    );
}

#[test]
fn scope_helpers_give_aws_messages() {
    let v = by_name("monitoring-json-1.0");
    let auth = v.check(|_| {}, SECRET, v.now).unwrap();
    assert!(auth.check_service("monitoring").is_ok());
    let e = auth.check_service("ecs").unwrap_err();
    assert_eq!(e.to_string(), "Credential should be scoped to correct service: 'ecs'. ");
    assert_eq!(e.code(Family::Json), "InvalidSignatureException");
    assert!(auth.check_region(|r| r == "eu-west-1").is_ok());
    let e = auth.check_region(|r| r == "us-east-1").unwrap_err();
    assert_eq!(e.to_string(), "Credential should be scoped to a valid region, not 'eu-west-1'. ");
    let e = SigError::UnknownAccessKey;
    assert_eq!(
        (e.code(Family::Json), e.code(Family::Query)),
        ("UnrecognizedClientException", "InvalidClientTokenId")
    );
    assert_eq!(e.to_string(), "The security token included in the request is invalid.");
}

#[test]
fn date_header_stands_in_for_x_amz_date() {
    // A client that signs with `Date` (IMF-fixdate) and no X-Amz-Date: the string to sign carries
    // the ISO form of the same instant.
    let now = 1_704_067_200; // 20240101T000000Z
    let unsigned = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/ecs/aws4_request, \
                    SignedHeaders=date;host, Signature=00";
    let request = |authz: &str, f: &dyn Fn(&Request<'_>) -> Result<(), SigError>| {
        let headers = [
            ("Host", &b"ecs.us-east-1.amazonaws.com"[..]),
            ("Date", &b"Mon, 01 Jan 2024 00:00:00 GMT"[..]),
            ("Authorization", authz.as_bytes()),
        ];
        f(&Request { method: "POST", path: "/", query: "", headers: &headers, body: b"{}" })
    };
    let sts = std::cell::RefCell::new(String::new());
    let _ = request(unsigned, &|req| {
        let auth = parse(req)?;
        assert_eq!(auth.amz_date, "20240101T000000Z");
        if let Err(SigError::SignatureDoesNotMatch(m)) = verify(&auth, req, SECRET, now) {
            assert!(m.canonical_request.contains("\ndate:Mon, 01 Jan 2024 00:00:00 GMT\nhost:"));
            assert!(m.string_to_sign.starts_with("AWS4-HMAC-SHA256\n20240101T000000Z\n"));
            *sts.borrow_mut() = m.string_to_sign;
        }
        Ok(())
    });
    let signature = SigningKey::derive(SECRET, "20240101", "us-east-1", "ecs").sign(&sts.borrow());
    let signed = unsigned.replace("Signature=00", &format!("Signature={signature}"));
    request(&signed, &|req| verify(&parse(req)?, req, SECRET, now)).unwrap();
}
