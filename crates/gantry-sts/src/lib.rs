//! AWS Security Token Service (the query protocol's first service in Gantry), and the key ring
//! that signatures are verified against.
//!
//! Operations take their input and return their output in the JSON form of the generated shapes
//! (`gantry_model::sts`); the front door speaks the query protocol around them. This crate knows
//! no HTTP and no wire format, and depends on no other service: the front door reaches the keys
//! through [`gantry_ports::KeyStore`]. Today it answers GetCallerIdentity; AssumeRole,
//! GetSessionToken and GetAccessKeyInfo come with IAM.

pub mod keys;

use gantry_core::ServiceError;
use gantry_model::sts::GetCallerIdentityResponse;
use gantry_ports::Principal;

/// The STS service.
#[derive(Debug, Default)]
pub struct Sts;

impl Sts {
    pub fn new() -> Self {
        Sts
    }

    /// Runs one operation: its input as JSON, its output as JSON.
    pub fn call(&self, caller: &Principal, op: &str, _input: &[u8]) -> Result<Vec<u8>, ServiceError> {
        match op {
            "GetCallerIdentity" => render(&self.get_caller_identity(caller)),
            _ if gantry_model::sts::OPERATIONS.contains(&op) => Err(ServiceError::sender(
                "InvalidAction",
                format!("The action {op} is not implemented by Gantry's STS yet."),
            )),
            _ => Err(invalid_action(op)),
        }
    }

    /// Who signed the request. No permission is needed, as in AWS.
    pub fn get_caller_identity(&self, caller: &Principal) -> GetCallerIdentityResponse {
        GetCallerIdentityResponse {
            user_id: Some(caller.user_id.clone()),
            account: Some(caller.account.clone()),
            arn: Some(caller.arn.clone()),
        }
    }
}

/// The query protocol's answer to an action the service does not have.
pub fn invalid_action(op: &str) -> ServiceError {
    ServiceError::sender("InvalidAction", format!("Could not find operation {op} for version 2011-06-15"))
}

fn render<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ServiceError> {
    serde_json::to_vec(v).map_err(|e| ServiceError::receiver("InternalFailure", e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_identity_is_the_signer() {
        let p = Principal::root("123456789012");
        let out: serde_json::Value =
            serde_json::from_slice(&Sts::new().call(&p, "GetCallerIdentity", b"{}").unwrap()).unwrap();
        assert_eq!(
            out,
            serde_json::json!({"UserId": "123456789012", "Account": "123456789012",
                               "Arn": "arn:aws:iam::123456789012:root"})
        );
    }

    #[test]
    fn other_actions_are_refused_by_name() {
        let p = Principal::root("123456789012");
        let e = Sts::new().call(&p, "AssumeRole", b"{}").unwrap_err();
        assert_eq!(e.code, "InvalidAction");
        assert!(e.message.contains("AssumeRole"), "{}", e.message);
        let e = Sts::new().call(&p, "Frobnicate", b"{}").unwrap_err();
        assert_eq!(e.code, "InvalidAction");
        assert!(e.message.contains("Frobnicate"), "{}", e.message);
    }
}
