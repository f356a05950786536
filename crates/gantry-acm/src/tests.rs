//! ACM's operations against a real in-memory store, on a fixed clock.

use super::*;
use base64::Engine;
use gantry_core::{FixedClock, SeededIds, Timestamp};
use gantry_store::SqliteStore;
use serde_json::{Value, json};
use std::sync::Mutex;

const RSA_PEM: &str = include_str!("../tests/fixtures/rsa.pem");
const RSA_KEY: &str = include_str!("../tests/fixtures/rsa.key");
const EC_PEM: &str = include_str!("../tests/fixtures/ec.pem");
const EC_KEY: &str = include_str!("../tests/fixtures/ec.key");

/// Load balancers using certificates, as ELBv2 would report them.
#[derive(Default)]
struct Users(Mutex<Vec<String>>);

impl CertificateUse for Users {
    fn users(&self, _: &str) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

struct Fixture {
    acm: Acm,
    store: Arc<dyn Store>,
    users: Arc<Users>,
    clock: Arc<FixedClock>,
    scope: Scope,
}

fn fixture() -> Fixture {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    // 2027-01-01, after the fixtures were made.
    let clock = Arc::new(FixedClock::new(Timestamp(1_798_761_600_000)));
    let users = Arc::new(Users::default());
    let acm = Acm::new(store.clone(), clock.clone(), Arc::new(SeededIds::new(1)), users.clone());
    Fixture { acm, store, users, clock, scope: Scope::new("123456789012", "us-west-2") }
}

impl Fixture {
    async fn call(&self, op: &str, input: Value) -> Result<Value, ServiceError> {
        let out = self.acm.call(&self.scope, op, &serde_json::to_vec(&input).unwrap()).await?;
        Ok(serde_json::from_slice(&out).unwrap())
    }
}

#[tokio::test]
async fn an_imported_certificate_is_described_listed_served_and_deleted() {
    let f = fixture();
    let out = f
        .call(
            "ImportCertificate",
            json!({"Certificate": b64(RSA_PEM), "PrivateKey": b64(RSA_KEY), "Tags": [{"Key": "a", "Value": "1"}]}),
        )
        .await
        .unwrap();
    let arn = out["CertificateArn"].as_str().unwrap().to_string();
    assert!(arn.starts_with("arn:aws:acm:us-west-2:123456789012:certificate/"), "{arn}");
    let d =
        f.call("DescribeCertificate", json!({"CertificateArn": arn})).await.unwrap()["Certificate"].clone();
    assert_eq!(d["DomainName"], "www.example.com");
    assert_eq!(d["Status"], "ISSUED");
    assert_eq!(d["Type"], "IMPORTED");
    assert_eq!(d["KeyAlgorithm"], "RSA_2048");
    assert_eq!(d["ImportedAt"], json!(1_798_761_600.0));
    // ELBv2 reads it through the port.
    let served = AcmCertificates::new(f.store.clone()).certificate(&arn).unwrap();
    assert_eq!(served.domain_names, ["www.example.com", "example.com"]);
    assert_eq!(served.private_key_pem.expose(), RSA_KEY);
    assert!(format!("{served:?}").contains("www.example.com") && !format!("{served:?}").contains("PRIVATE"));
    assert!(AcmCertificates::new(f.store.clone()).certificate(&format!("{arn}0")).is_none());
    // Re-imported under the same ARN: the new certificate, the old tags.
    let again = f
        .call(
            "ImportCertificate",
            json!({"CertificateArn": arn, "Certificate": b64(EC_PEM), "PrivateKey": b64(EC_KEY)}),
        )
        .await
        .unwrap();
    assert_eq!(again["CertificateArn"], json!(arn));
    let d =
        f.call("DescribeCertificate", json!({"CertificateArn": arn})).await.unwrap()["Certificate"].clone();
    assert_eq!(
        (d["DomainName"].as_str(), d["KeyAlgorithm"].as_str()),
        (Some("api.example.com"), Some("EC_prime256v1"))
    );
    let tags = f.call("ListTagsForCertificate", json!({"CertificateArn": arn})).await.unwrap();
    assert_eq!(tags["Tags"], json!([{"Key": "a", "Value": "1"}]));
    // Past its end it is EXPIRED.
    f.clock.advance_ms(200 * 365 * 86_400_000);
    let d =
        f.call("DescribeCertificate", json!({"CertificateArn": arn})).await.unwrap()["Certificate"].clone();
    assert_eq!(d["Status"], "EXPIRED");
    let listed = f
        .call(
            "ListCertificates",
            json!({"CertificateStatuses": ["EXPIRED"], "Includes": {"keyTypes": ["EC_prime256v1"]}}),
        )
        .await
        .unwrap();
    assert_eq!(listed["CertificateSummaryList"].as_array().unwrap().len(), 1);
    // In use: not deleted.
    f.users
        .0
        .lock()
        .unwrap()
        .push("arn:aws:elasticloadbalancing:us-west-2:123456789012:loadbalancer/app/w/1".into());
    let e = f.call("DeleteCertificate", json!({"CertificateArn": arn})).await.unwrap_err();
    assert_eq!(e.code, "ResourceInUseException");
    f.users.0.lock().unwrap().clear();
    f.call("DeleteCertificate", json!({"CertificateArn": arn})).await.unwrap();
    let e = f.call("DescribeCertificate", json!({"CertificateArn": arn})).await.unwrap_err();
    assert_eq!(e.code, "ResourceNotFoundException");
    assert!(e.message.contains(&arn));
    let e = f.call("DescribeCertificate", json!({"CertificateArn": "nonsense"})).await.unwrap_err();
    assert_eq!(e.code, "InvalidArnException");
    assert!(f.store.range("/", None, 10).is_empty());
}

#[tokio::test]
async fn a_bad_import_is_a_validation_error_that_says_why() {
    let f = fixture();
    let e = f
        .call("ImportCertificate", json!({"Certificate": b64(RSA_PEM), "PrivateKey": b64(EC_KEY)}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "ValidationException");
    assert!(e.message.contains("does not match"), "{}", e.message);
    let e = f
        .call("ImportCertificate", json!({"Certificate": "%%%", "PrivateKey": b64(RSA_KEY)}))
        .await
        .unwrap_err();
    assert!(e.message.contains("base64"), "{}", e.message);
    let e = f.call("ListCertificates", json!({"MaxItems": 0})).await.unwrap_err();
    assert!(e.message.contains("'0'"), "{}", e.message);
    // A status filter names one of ACM's statuses, spelled as ACM spells it.
    let e = f.call("ListCertificates", json!({"CertificateStatuses": ["issued"]})).await.unwrap_err();
    assert_eq!(e.code, "ValidationException");
    assert!(e.message.contains("'issued'"), "{}", e.message);
    for status in CertificateStatus::ALL {
        let listed = f.call("ListCertificates", json!({"CertificateStatuses": [status.as_str()]})).await;
        assert!(listed.is_ok(), "{status}: {listed:?}");
    }
}
