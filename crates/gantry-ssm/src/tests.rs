use super::*;
use gantry_core::{FixedClock, OsSecrets, Timestamp};
use gantry_ports::SecretResolver;
use gantry_store::SqliteStore;
use serde_json::{Value as J, json};

struct Fixture {
    ssm: Arc<Ssm>,
    store: Arc<dyn Store>,
    scope: Scope,
}

fn fixture() -> Fixture {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let clock = Arc::new(FixedClock::new(Timestamp(1_700_000_000_000)));
    let ssm = Arc::new(Ssm::new(store.clone(), clock, Sealer::new(&[3; 32], Arc::new(OsSecrets))));
    Fixture { ssm, store, scope: Scope::new("123456789012", "us-east-1") }
}

impl Fixture {
    async fn call(&self, op: &str, input: J) -> Result<J, ServiceError> {
        let out = self
            .ssm
            .call(&self.scope, "arn:aws:iam::123456789012:root", op, &serde_json::to_vec(&input).unwrap())
            .await?;
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
async fn secure_strings_are_sealed_and_decrypted_on_request() {
    let f = fixture();
    let r = f.ok("PutParameter", json!({"Name": "/app/db/password", "Value": "pa55-word-zz", "Type": "SecureString", "KeyId": "alias/custom"})).await;
    assert_eq!(r, json!({"Version": 1, "Tier": "Standard"}));
    // Sealed at rest (the record's JSON, as it is before compression).
    for kv in f.store.range("/", None, usize::MAX) {
        let json = gantry_runtime::records::unpack(&kv.value).unwrap();
        assert!(!String::from_utf8_lossy(&json).contains("pa55"));
    }
    let g = f.ok("GetParameter", json!({"Name": "/app/db/password"})).await;
    assert_ne!(g["Parameter"]["Value"], "pa55-word-zz");
    let g = f.ok("GetParameter", json!({"Name": "/app/db/password", "WithDecryption": true})).await;
    assert_eq!(g["Parameter"]["Value"], "pa55-word-zz");
    assert_eq!(g["Parameter"]["ARN"], "arn:aws:ssm:us-east-1:123456789012:parameter/app/db/password");
    let d = f.ok("DescribeParameters", json!({})).await;
    assert_eq!(d["Parameters"][0]["KeyId"], "alias/custom");
    let e = f
        .err("PutParameter", json!({"Name": "/app/db/password", "Value": "x", "Type": "SecureString"}))
        .await;
    assert_eq!(e.code, "ParameterAlreadyExists");
    let e = f.err("GetParameter", json!({"Name": "/nope"})).await;
    assert_eq!(e.code, "ParameterNotFound");
}

#[tokio::test]
async fn versions_selectors_labels_and_history() {
    let f = fixture();
    f.ok("PutParameter", json!({"Name": "p", "Value": "v1", "Type": "String"})).await;
    let r = f.ok("PutParameter", json!({"Name": "p", "Value": "v2", "Overwrite": true})).await;
    assert_eq!(r["Version"], 2);
    assert_eq!(f.ok("GetParameter", json!({"Name": "p:1"})).await["Parameter"]["Value"], "v1");
    assert_eq!(f.ok("GetParameter", json!({"Name": "p:1"})).await["Parameter"]["Selector"], ":1");
    let e = f.err("GetParameter", json!({"Name": "p:9"})).await;
    assert_eq!(e.code, "ParameterVersionNotFound");
    let l = f
        .ok(
            "LabelParameterVersion",
            json!({"Name": "p", "ParameterVersion": 1, "Labels": ["stable", "1bad"]}),
        )
        .await;
    assert_eq!(l["InvalidLabels"], json!(["1bad"]));
    assert_eq!(f.ok("GetParameter", json!({"Name": "p:stable"})).await["Parameter"]["Value"], "v1");
    // Labelling another version moves the label.
    f.ok("LabelParameterVersion", json!({"Name": "p", "Labels": ["stable"]})).await;
    assert_eq!(f.ok("GetParameter", json!({"Name": "p:stable"})).await["Parameter"]["Value"], "v2");
    let u = f
        .ok(
            "UnlabelParameterVersion",
            json!({"Name": "p", "ParameterVersion": 2, "Labels": ["stable", "other"]}),
        )
        .await;
    assert_eq!(u, json!({"RemovedLabels": ["stable"], "InvalidLabels": ["other"]}));
    let h = f.ok("GetParameterHistory", json!({"Name": "p", "MaxResults": 1})).await;
    assert_eq!(h["Parameters"][0]["Value"], "v1");
    let h2 = f.ok("GetParameterHistory", json!({"Name": "p", "NextToken": h["NextToken"]})).await;
    assert_eq!(h2["Parameters"][0]["Value"], "v2");
    let g = f.ok("GetParameters", json!({"Names": ["p", "missing"]})).await;
    assert_eq!(g["InvalidParameters"], json!(["missing"]));
}

#[tokio::test]
async fn patterns_tiers_and_validation() {
    let f = fixture();
    let e = f
        .err(
            "PutParameter",
            json!({"Name": "n", "Value": "abc", "Type": "String", "AllowedPattern": "^\\d+$"}),
        )
        .await;
    assert_eq!(e.code, "ParameterPatternMismatchException");
    f.ok("PutParameter", json!({"Name": "n", "Value": "123", "Type": "String", "AllowedPattern": "^\\d+$"}))
        .await;
    let e = f
        .err(
            "PutParameter",
            json!({"Name": "big", "Value": "x".repeat(5000), "Type": "String", "Tier": "Standard"}),
        )
        .await;
    assert!(e.message.contains("4096"));
    let r = f
        .ok(
            "PutParameter",
            json!({"Name": "big", "Value": "x".repeat(5000), "Type": "String", "Tier": "Advanced"}),
        )
        .await;
    assert_eq!(r["Tier"], "Advanced");
    let e = f
        .err("PutParameter", json!({"Name": "big", "Value": "y", "Overwrite": true, "Tier": "Standard"}))
        .await;
    assert!(e.message.contains("downgrade"));
    let e = f.err("PutParameter", json!({"Name": "t", "Value": "y", "Type": "Bogus"})).await;
    assert!(e.message.contains("Bogus"));
    let e = f.err("PutParameter", json!({"Name": "t", "Value": "y"})).await;
    assert!(e.message.contains("type is required"));
    let e = f.err("PutParameter", json!({"Name": "/aws/x", "Value": "y", "Type": "String"})).await;
    assert_eq!(e.code, "ValidationException");
    let e = f.err("PutParameter", json!({"Name": "t", "Value": "y", "Type": "String", "Tags": [{"Key": "a", "Value": "b"}], "Overwrite": true})).await;
    assert!(e.message.contains("tags and overwrite"));
}

#[tokio::test]
async fn paths_filters_tags_and_deletes() {
    let f = fixture();
    for n in ["/a/x", "/a/y", "/a/b/z", "/c"] {
        f.ok(
            "PutParameter",
            json!({"Name": n, "Value": "v", "Type": "String", "Tags": [{"Key": "k", "Value": n}]}),
        )
        .await;
    }
    let names = |v: &J, k: &str| {
        v[k].as_array().unwrap().iter().map(|p| p["Name"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };
    let p = f.ok("GetParametersByPath", json!({"Path": "/a"})).await;
    assert_eq!(names(&p, "Parameters"), ["/a/x", "/a/y"]);
    let p = f.ok("GetParametersByPath", json!({"Path": "/a", "Recursive": true, "MaxResults": 2})).await;
    assert_eq!(names(&p, "Parameters"), ["/a/b/z", "/a/x"]);
    let p = f
        .ok("GetParametersByPath", json!({"Path": "/a", "Recursive": true, "NextToken": p["NextToken"]}))
        .await;
    assert_eq!(names(&p, "Parameters"), ["/a/y"]);
    let d = f.ok("DescribeParameters", json!({"ParameterFilters": [{"Key": "Path", "Option": "Recursive", "Values": ["/a"]}, {"Key": "Name", "Option": "Contains", "Values": ["z"]}]})).await;
    assert_eq!(names(&d, "Parameters"), ["/a/b/z"]);
    let d =
        f.ok("DescribeParameters", json!({"ParameterFilters": [{"Key": "tag:k", "Values": ["/c"]}]})).await;
    assert_eq!(names(&d, "Parameters"), ["/c"]);
    let e =
        f.err("DescribeParameters", json!({"ParameterFilters": [{"Key": "Bogus", "Values": ["x"]}]})).await;
    assert_eq!(e.code, "InvalidFilterKey");
    f.ok(
        "AddTagsToResource",
        json!({"ResourceType": "Parameter", "ResourceId": "/c", "Tags": [{"Key": "env", "Value": "prod"}]}),
    )
    .await;
    f.ok(
        "RemoveTagsFromResource",
        json!({"ResourceType": "Parameter", "ResourceId": "/c", "TagKeys": ["k"]}),
    )
    .await;
    let t = f.ok("ListTagsForResource", json!({"ResourceType": "Parameter", "ResourceId": "/c"})).await;
    assert_eq!(t["TagList"], json!([{"Key": "env", "Value": "prod"}]));
    let e = f.err("ListTagsForResource", json!({"ResourceType": "Parameter", "ResourceId": "/none"})).await;
    assert_eq!(e.code, "InvalidResourceId");
    let d = f.ok("DeleteParameters", json!({"Names": ["/a/x", "/nope"]})).await;
    assert_eq!(d, json!({"DeletedParameters": ["/a/x"], "InvalidParameters": ["/nope"]}));
    f.ok("DeleteParameter", json!({"Name": "/c"})).await;
    assert_eq!(f.err("DeleteParameter", json!({"Name": "/c"})).await.code, "ParameterNotFound");
}

#[tokio::test]
async fn ecs_references_by_name_and_arn() {
    let f = fixture();
    f.ok("PutParameter", json!({"Name": "/svc/token", "Value": "tok-123", "Type": "SecureString"})).await;
    f.ok("PutParameter", json!({"Name": "plain", "Value": "p", "Type": "String"})).await;
    let r = Resolver(f.ssm.clone());
    let get = |v: &str| r.resolve("123456789012", "us-east-1", v).map(|s| s.expose().to_string());
    assert_eq!(get("/svc/token").unwrap(), "tok-123");
    assert_eq!(get("arn:aws:ssm:us-east-1:123456789012:parameter/svc/token").unwrap(), "tok-123");
    assert_eq!(get("arn:aws:ssm:us-east-1:123456789012:parameter/plain").unwrap(), "p");
    let e = get("/svc/missing").unwrap_err();
    assert!(e.ends_with("invalid parameters: /svc/missing"), "{e}");
}

#[tokio::test]
async fn an_unreadable_record_fails_the_listing_naming_its_key() {
    let f = fixture();
    f.ok("PutParameter", json!({"Name": "/app/a", "Value": "1", "Type": "String"})).await;
    let bad = &param_key(&f.scope, "/app/b");
    f.store.txn(gantry_store::Txn::new().put(bad, b"[1, 2]".to_vec())).await.unwrap();
    for op in ["DescribeParameters", "GetParametersByPath"] {
        let e = f.err(op, json!({"Path": "/app"})).await;
        assert_eq!(e.code, "InternalServerError", "{op}");
        assert!(e.message.contains(bad), "{op}: {}", e.message);
    }
}
