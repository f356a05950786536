use super::*;
use gantry_core::{FixedClock, OsSecrets, SeededIds, Timestamp};
use gantry_ports::SecretResolver;
use gantry_store::SqliteStore;
use serde_json::{Value as J, json};

struct Fixture {
    sm: Arc<SecretsManager>,
    clock: Arc<FixedClock>,
    store: Arc<dyn Store>,
    scope: Scope,
}

fn fixture() -> Fixture {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_700_000_000_000)));
    let sealer = Sealer::new(&[7; 32], Arc::new(OsSecrets));
    let sm = Arc::new(SecretsManager::new(
        store.clone(),
        clock.clone(),
        Arc::new(SeededIds::new(1)),
        Arc::new(OsSecrets),
        sealer,
    ));
    Fixture { sm, clock, store, scope: Scope::new("123456789012", "us-east-1") }
}

impl Fixture {
    async fn call(&self, op: &str, input: J) -> Result<J, ServiceError> {
        let out = self.sm.call(&self.scope, op, &serde_json::to_vec(&input).unwrap()).await?;
        Ok(serde_json::from_slice(&out).unwrap())
    }
    async fn ok(&self, op: &str, input: J) -> J {
        self.call(op, input).await.unwrap_or_else(|e| panic!("{op}: {} {}", e.code, e.message))
    }
    async fn err(&self, op: &str, input: J) -> ServiceError {
        self.call(op, input).await.expect_err(op)
    }
}

#[tokio::test]
async fn create_get_and_the_value_is_sealed_in_the_store() {
    let f = fixture();
    let c = f
        .ok(
            "CreateSecret",
            json!({"Name": "db/pass", "SecretString": "s3cr3t-value-xyz", "KmsKeyId": "alias/mine"}),
        )
        .await;
    let arn = c["ARN"].as_str().unwrap();
    assert!(arn.starts_with("arn:aws:secretsmanager:us-east-1:123456789012:secret:db/pass-"), "{arn}");
    assert_eq!(arn.len(), "arn:aws:secretsmanager:us-east-1:123456789012:secret:db/pass-".len() + 6);
    for id in ["db/pass", arn, "arn:aws:secretsmanager:us-east-1:123456789012:secret:db/pass"] {
        let v = f.ok("GetSecretValue", json!({"SecretId": id})).await;
        assert_eq!(v["SecretString"], "s3cr3t-value-xyz");
        assert_eq!(v["VersionStages"], json!(["AWSCURRENT"]));
    }
    // Sealed at rest (the record's JSON, as it is before compression).
    for kv in f.store.range("/", None, usize::MAX) {
        let json = gantry_runtime::records::unpack(&kv.value).unwrap();
        let text = String::from_utf8_lossy(&json);
        assert!(!text.contains("s3cr3t"), "{text}");
    }
    let d = f.ok("DescribeSecret", json!({"SecretId": "db/pass"})).await;
    assert_eq!(d["KmsKeyId"], "alias/mine");
    let e = f.err("CreateSecret", json!({"Name": "db/pass", "SecretString": "x"})).await;
    assert_eq!(e.code, "ResourceExistsException");
    let e = f.err("GetSecretValue", json!({"SecretId": "nope"})).await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("ResourceNotFoundException", "Secrets Manager can't find the specified secret.")
    );
}

#[tokio::test]
async fn versions_move_current_to_previous_and_tokens_are_idempotent() {
    let f = fixture();
    let t1 = "11111111-1111-1111-1111-111111111111";
    let t2 = "22222222-2222-2222-2222-222222222222";
    f.ok("CreateSecret", json!({"Name": "s", "SecretString": "one", "ClientRequestToken": t1})).await;
    let p = f
        .ok("PutSecretValue", json!({"SecretId": "s", "SecretString": "two", "ClientRequestToken": t2}))
        .await;
    assert_eq!(p["VersionId"], t2);
    // The same token and value again: the same version.
    f.ok("PutSecretValue", json!({"SecretId": "s", "SecretString": "two", "ClientRequestToken": t2})).await;
    let e = f
        .err("PutSecretValue", json!({"SecretId": "s", "SecretString": "other", "ClientRequestToken": t2}))
        .await;
    assert_eq!(e.code, "ResourceExistsException");
    let prev = f.ok("GetSecretValue", json!({"SecretId": "s", "VersionStage": "AWSPREVIOUS"})).await;
    assert_eq!(prev["SecretString"], "one");
    assert_eq!(f.ok("GetSecretValue", json!({"SecretId": "s"})).await["SecretString"], "two");
    // AWSPENDING, then moved to current.
    let t3 = "33333333-3333-3333-3333-333333333333";
    f.ok("PutSecretValue", json!({"SecretId": "s", "SecretString": "three", "ClientRequestToken": t3, "VersionStages": ["AWSPENDING"]})).await;
    assert_eq!(f.ok("GetSecretValue", json!({"SecretId": "s"})).await["SecretString"], "two");
    let e = f
        .err(
            "UpdateSecretVersionStage",
            json!({"SecretId": "s", "VersionStage": "AWSCURRENT", "MoveToVersionId": t3}),
        )
        .await;
    assert_eq!(e.code, "InvalidParameterException");
    assert!(e.message.contains(t2), "{}", e.message);
    f.ok("UpdateSecretVersionStage", json!({"SecretId": "s", "VersionStage": "AWSCURRENT", "MoveToVersionId": t3, "RemoveFromVersionId": t2})).await;
    assert_eq!(f.ok("GetSecretValue", json!({"SecretId": "s"})).await["SecretString"], "three");
    assert_eq!(
        f.ok("GetSecretValue", json!({"SecretId": "s", "VersionStage": "AWSPREVIOUS"})).await["SecretString"],
        "two"
    );
    // The first version lost its last label: deprecated, listed only on request.
    let l = f.ok("ListSecretVersionIds", json!({"SecretId": "s"})).await;
    assert_eq!(l["Versions"].as_array().unwrap().len(), 2, "{l}");
    let l = f.ok("ListSecretVersionIds", json!({"SecretId": "s", "IncludeDeprecated": true})).await;
    assert_eq!(l["Versions"].as_array().unwrap().len(), 3, "{l}");
}

#[tokio::test]
async fn delete_schedules_refuses_values_restores_and_expires() {
    let f = fixture();
    f.ok("CreateSecret", json!({"Name": "gone", "SecretString": "v"})).await;
    let e = f.err("DeleteSecret", json!({"SecretId": "gone", "RecoveryWindowInDays": 3})).await;
    assert_eq!(e.code, "InvalidParameterException");
    let d = f.ok("DeleteSecret", json!({"SecretId": "gone", "RecoveryWindowInDays": 7})).await;
    assert_eq!(d["DeletionDate"].as_f64().unwrap(), 1_700_000_000.0 + 7.0 * 86400.0);
    let e = f.err("GetSecretValue", json!({"SecretId": "gone"})).await;
    assert_eq!(e.code, "InvalidRequestException");
    assert!(e.message.contains("marked for deletion"));
    assert_eq!(f.ok("ListSecrets", json!({})).await["SecretList"], json!([]));
    assert_eq!(
        f.ok("ListSecrets", json!({"IncludePlannedDeletion": true})).await["SecretList"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let e = f.err("CreateSecret", json!({"Name": "gone", "SecretString": "x"})).await;
    assert_eq!(e.code, "InvalidRequestException");
    f.ok("RestoreSecret", json!({"SecretId": "gone"})).await;
    assert_eq!(f.ok("GetSecretValue", json!({"SecretId": "gone"})).await["SecretString"], "v");
    f.ok("DeleteSecret", json!({"SecretId": "gone"})).await;
    f.clock.advance_ms(31 * 86400 * 1000);
    assert_eq!(f.err("DescribeSecret", json!({"SecretId": "gone"})).await.code, "ResourceNotFoundException");
    f.ok("CreateSecret", json!({"Name": "gone", "SecretString": "new"})).await;
    f.ok("DeleteSecret", json!({"SecretId": "gone", "ForceDeleteWithoutRecovery": true})).await;
    assert_eq!(f.err("DescribeSecret", json!({"SecretId": "gone"})).await.code, "ResourceNotFoundException");
}

#[tokio::test]
async fn list_filters_paginates_and_tags() {
    let f = fixture();
    for (i, n) in ["app/a", "app/b", "other"].iter().enumerate() {
        f.ok(
            "CreateSecret",
            json!({"Name": n, "SecretString": "v", "Tags": [{"Key": "team", "Value": format!("t{i}")}]}),
        )
        .await;
        f.clock.advance_ms(1000);
    }
    let l = f.ok("ListSecrets", json!({"Filters": [{"Key": "name", "Values": ["app/"]}]})).await;
    assert_eq!(l["SecretList"].as_array().unwrap().len(), 2);
    let l = f.ok("ListSecrets", json!({"Filters": [{"Key": "name", "Values": ["!app/"]}]})).await;
    assert_eq!(l["SecretList"][0]["Name"], "other");
    let l = f.ok("ListSecrets", json!({"Filters": [{"Key": "tag-value", "Values": ["t1"]}]})).await;
    assert_eq!(l["SecretList"][0]["Name"], "app/b");
    let p1 = f.ok("ListSecrets", json!({"MaxResults": 2})).await;
    assert_eq!(p1["SecretList"].as_array().unwrap().len(), 2);
    let p2 = f.ok("ListSecrets", json!({"MaxResults": 2, "NextToken": p1["NextToken"]})).await;
    assert_eq!(p2["SecretList"].as_array().unwrap().len(), 1);
    assert!(p2.get("NextToken").is_none());
    f.ok("UntagResource", json!({"SecretId": "other", "TagKeys": ["team"]})).await;
    assert!(f.ok("DescribeSecret", json!({"SecretId": "other"})).await.get("Tags").is_none());
    let e = f.err("ListSecrets", json!({"Filters": [{"Key": "bogus", "Values": ["x"]}]})).await;
    assert!(e.message.contains("bogus"));
    let b = f.ok("BatchGetSecretValue", json!({"SecretIdList": ["app/a", "missing"]})).await;
    assert_eq!(b["SecretValues"].as_array().unwrap().len(), 1);
    assert_eq!(b["Errors"][0]["ErrorCode"], "ResourceNotFoundException");
}

#[tokio::test]
async fn policies_passwords_and_rotation() {
    let f = fixture();
    f.ok("CreateSecret", json!({"Name": "p"})).await;
    let bad = f.ok("ValidateResourcePolicy", json!({"ResourcePolicy": "{not json"})).await;
    assert_eq!(bad["PolicyValidationPassed"], false);
    let e = f.err("PutResourcePolicy", json!({"SecretId": "p", "ResourcePolicy": "[]"})).await;
    assert_eq!(e.code, "MalformedPolicyDocumentException");
    let pol = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}]}"#;
    f.ok("PutResourcePolicy", json!({"SecretId": "p", "ResourcePolicy": pol})).await;
    assert_eq!(f.ok("GetResourcePolicy", json!({"SecretId": "p"})).await["ResourcePolicy"], pol);
    f.ok("DeleteResourcePolicy", json!({"SecretId": "p"})).await;
    assert!(f.ok("GetResourcePolicy", json!({"SecretId": "p"})).await.get("ResourcePolicy").is_none());
    // No value yet: AWSCURRENT is missing.
    let e = f.err("GetSecretValue", json!({"SecretId": "p"})).await;
    assert!(e.message.contains("staging label: AWSCURRENT"), "{}", e.message);

    let pw = f.ok("GetRandomPassword", json!({})).await["RandomPassword"].as_str().unwrap().to_string();
    assert_eq!(pw.len(), 32);
    assert!(pw.chars().any(|c| c.is_ascii_digit()) && pw.chars().any(|c| c.is_ascii_uppercase()));
    let pw = f
        .ok(
            "GetRandomPassword",
            json!({"PasswordLength": 50, "ExcludePunctuation": true, "ExcludeCharacters": "abc"}),
        )
        .await["RandomPassword"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(pw.len(), 50);
    assert!(pw.chars().all(|c| c.is_ascii_alphanumeric() && !"abc".contains(c)), "{pw}");
    let e = f.err("GetRandomPassword", json!({"PasswordLength": 5000})).await;
    assert!(e.message.contains("5000"));
    let e = f.err("RotateSecret", json!({"SecretId": "p"})).await;
    assert!(e.message.contains("Lambda"));
}

#[tokio::test]
async fn ecs_references_resolve_with_json_keys_and_stages() {
    let f = fixture();
    let c =
        f.ok("CreateSecret", json!({"Name": "db", "SecretString": r#"{"user":"admin","port":5432}"#})).await;
    let arn = c["ARN"].as_str().unwrap().to_string();
    let r = Resolver(f.sm.clone());
    let get = |v: &str| r.resolve("123456789012", "us-east-1", v).map(|s| s.expose().to_string());
    assert_eq!(get(&arn).unwrap(), r#"{"user":"admin","port":5432}"#);
    assert_eq!(get(&format!("{arn}:user::")).unwrap(), "admin");
    assert_eq!(get(&format!("{arn}:port:AWSCURRENT:")).unwrap(), "5432");
    let e = get(&format!("{arn}:nokey::")).unwrap_err();
    assert!(e.ends_with("did not contain json key nokey"), "{e}");
    let e = get(&format!("{arn}::AWSPREVIOUS:")).unwrap_err();
    assert!(e.contains("ResourceNotFoundException"), "{e}");
    let e = get("arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-abcdef").unwrap_err();
    assert!(e.contains("ResourceNotFoundException: Secrets Manager can't find the specified secret."), "{e}");
    assert_eq!(
        resolve::parse_reference("arn:aws:secretsmanager:r:1:secret:n-abcdef:k:S:V"),
        Some(resolve::Reference {
            secret: "arn:aws:secretsmanager:r:1:secret:n-abcdef",
            json_key: Some("k"),
            version_stage: Some("S"),
            version_id: Some("V")
        })
    );
}
