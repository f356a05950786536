//! Why a request's signature was refused, in AWS's words, and the error code each protocol family
//! answers with.

use std::fmt;

/// The protocol family whose error codes a front door speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// AWS JSON 1.0/1.1 and REST-JSON (ECS, CloudWatch Logs, DynamoDB...): `__type` codes.
    Json,
    /// The awsQuery protocol (STS, IAM, SQS, ELB, CloudFormation...).
    Query,
    /// The ec2Query protocol (EC2), which has a code of its own for expired requests.
    Ec2Query,
}

/// The message of a signature that does not match: AWS's sentence, for every family.
pub const SIGNATURE_DOES_NOT_MATCH: &str = "The request signature we calculated does not match the signature you \
     provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for \
     details.";

/// AWS's message for an access key (or session token) it does not know, JSON and query alike.
pub const INVALID_TOKEN: &str = "The security token included in the request is invalid.";

/// A refused signature. `Display` gives the message AWS gives; [`SigError::code`] the code.
#[derive(Clone, PartialEq, Eq)]
pub enum SigError {
    /// No signature at all: no `Authorization` header (or one that is not SigV4) and no
    /// `X-Amz-Algorithm` query parameter.
    Missing,
    /// A signature that cannot be checked: a part missing or malformed (AWS's
    /// `IncompleteSignature`), with AWS's message.
    Incomplete(String),
    /// The signature was checked and is wrong. Holds what was signed, for debug logs (never the
    /// secret or the signing key).
    SignatureDoesNotMatch(Box<Mismatch>),
    /// Well-formed but refused before the cryptography: a credential scope whose date is not the
    /// request's, a region or service that is not the endpoint's, a wrong terminator. The message
    /// is AWS's; the code is the family's "invalid signature" code.
    Invalid(String),
    /// The request's time is more than 15 minutes behind `now`, or a presigned URL has expired.
    Expired(String),
    /// The request's time is more than 15 minutes ahead of `now`.
    NotYetCurrent(String),
    /// The access key is not known (decided by the caller's key lookup, not by this crate).
    UnknownAccessKey,
}

/// What the server computed for a signature that did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub canonical_request: String,
    pub string_to_sign: String,
}

impl SigError {
    /// The error code AWS answers with in `family`.
    pub fn code(&self, family: Family) -> &'static str {
        use Family::*;
        match (self, family) {
            (SigError::Missing, Json) => "MissingAuthenticationTokenException",
            (SigError::Missing, _) => "MissingAuthenticationToken",
            (SigError::Incomplete(_), Json) => "IncompleteSignatureException",
            (SigError::Incomplete(_), _) => "IncompleteSignature",
            (SigError::Expired(_), Ec2Query) => "RequestExpired",
            (
                SigError::SignatureDoesNotMatch(_)
                | SigError::Invalid(_)
                | SigError::Expired(_)
                | SigError::NotYetCurrent(_),
                Json,
            ) => "InvalidSignatureException",
            (
                SigError::SignatureDoesNotMatch(_)
                | SigError::Invalid(_)
                | SigError::Expired(_)
                | SigError::NotYetCurrent(_),
                _,
            ) => "SignatureDoesNotMatch",
            (SigError::UnknownAccessKey, Json) => "UnrecognizedClientException",
            (SigError::UnknownAccessKey, _) => "InvalidClientTokenId",
        }
    }

    /// The message AWS answers with in `family` (the same text as `Display`, except for
    /// `Missing`, which the query protocols word differently).
    pub fn message(&self, family: Family) -> String {
        match (self, family) {
            (SigError::Missing, Family::Json) => "Missing Authentication Token".into(),
            (SigError::Missing, _) => "Request is missing Authentication Token".into(),
            _ => self.to_string(),
        }
    }

    /// The mismatch message with the canonical request and string to sign appended, as AWS's
    /// services answer it (they tell the client what they computed, to debug its signer).
    pub fn message_with_details(&self, family: Family) -> String {
        match self {
            SigError::SignatureDoesNotMatch(m) => format!(
                "{SIGNATURE_DOES_NOT_MATCH}\n\nThe Canonical String for this request should have been\n'{}'\n\n\
                 The String-to-Sign should have been\n'{}'\n",
                m.canonical_request, m.string_to_sign
            ),
            _ => self.message(family),
        }
    }
}

impl fmt::Display for SigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigError::Missing => f.write_str("Missing Authentication Token"),
            SigError::Incomplete(m)
            | SigError::Invalid(m)
            | SigError::Expired(m)
            | SigError::NotYetCurrent(m) => f.write_str(m),
            SigError::SignatureDoesNotMatch(_) => f.write_str(SIGNATURE_DOES_NOT_MATCH),
            SigError::UnknownAccessKey => f.write_str(INVALID_TOKEN),
        }
    }
}

impl fmt::Debug for SigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigError::SignatureDoesNotMatch(m) => f
                .debug_struct("SignatureDoesNotMatch")
                .field("canonical_request", &m.canonical_request)
                .field("string_to_sign", &m.string_to_sign)
                .finish(),
            SigError::Missing => f.write_str("Missing"),
            SigError::UnknownAccessKey => f.write_str("UnknownAccessKey"),
            SigError::Incomplete(m) => write!(f, "Incomplete({m:?})"),
            SigError::Invalid(m) => write!(f, "Invalid({m:?})"),
            SigError::Expired(m) => write!(f, "Expired({m:?})"),
            SigError::NotYetCurrent(m) => write!(f, "NotYetCurrent({m:?})"),
        }
    }
}

impl std::error::Error for SigError {}
