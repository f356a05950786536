//! The operations on an in-memory store, and the authorizer and key store over them.

use super::*;
use gantry_core::{FixedClock, OsSecrets, SeededIds, Timestamp};
use gantry_policy::Decision;
use gantry_ports::Authorizer;
use gantry_store::SqliteStore;
use serde_json::{Value as J, json};

const ACCOUNT: &str = "123456789012";

struct Fixture {
    iam: Arc<Iam>,
    store: Arc<dyn Store>,
    root: Principal,
}

fn fixture() -> Fixture {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::in_memory().unwrap());
    let iam = Arc::new(Iam::new(
        store.clone(),
        Arc::new(FixedClock::new(Timestamp(1_700_000_000_000))),
        Arc::new(SeededIds::new(1)),
        Arc::new(OsSecrets),
        Sealer::new(&[7; 32], Arc::new(OsSecrets)),
    ));
    Fixture { iam, store, root: Principal::root(ACCOUNT) }
}

impl Fixture {
    async fn call(&self, op: &str, input: J) -> Result<J, ServiceError> {
        let out = self.iam.call(&self.root, op, &serde_json::to_vec(&input).unwrap()).await?;
        Ok(serde_json::from_slice(&out).unwrap())
    }
    async fn ok(&self, op: &str, input: J) -> J {
        self.call(op, input).await.unwrap_or_else(|e| panic!("{op}: {} {}", e.code, e.message))
    }
    async fn err(&self, op: &str, input: J) -> ServiceError {
        self.call(op, input).await.expect_err(op)
    }
}

const DESCRIBE_ONLY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ecs:Describe*","ecs:List*"],"Resource":"*"}]}"#;

#[tokio::test]
async fn users_keys_and_policies_decide_requests() {
    let f = fixture();
    let u =
        f.ok("CreateUser", json!({"UserName": "alice", "Tags": [{"Key": "team", "Value": "blue"}]})).await;
    assert_eq!(u["User"]["Arn"], "arn:aws:iam::123456789012:user/alice");
    assert!(u["User"]["UserId"].as_str().unwrap().starts_with("AIDA"));
    let e = f.err("CreateUser", json!({"UserName": "ALICE"})).await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("EntityAlreadyExists", "User with name ALICE already exists.")
    );
    let e = f.err("GetUser", json!({"UserName": "bob"})).await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("NoSuchEntity", "The user with name bob cannot be found.")
    );
    let e = f.err("CreateUser", json!({"UserName": "a b"})).await;
    assert_eq!(e.code, "ValidationError");
    assert!(e.message.contains("'a b'"), "{}", e.message);

    let key = f.ok("CreateAccessKey", json!({"UserName": "alice"})).await;
    let id = key["AccessKey"]["AccessKeyId"].as_str().unwrap().to_string();
    let secret = key["AccessKey"]["SecretAccessKey"].as_str().unwrap().to_string();
    assert!(id.starts_with("AKIA") && secret.len() == 40);
    // Sealed at rest: the secret is nowhere in the store.
    // (The records' JSON, as it is before compression.)
    let mut plain = false;
    let has = |kv: &gantry_store::KeyValue| {
        String::from_utf8_lossy(&gantry_runtime::records::unpack(&kv.value).unwrap()).contains(&secret)
    };
    f.store.visit("/", &mut |kv| plain |= has(kv));
    f.store.visit("/_iam/", &mut |kv| plain |= has(kv));
    assert!(!plain, "the secret is stored in plaintext");
    let listed = f.ok("ListAccessKeys", json!({"UserName": "alice"})).await;
    assert_eq!(listed["AccessKeyMetadata"][0]["AccessKeyId"], id.as_str());
    assert!(listed.to_string().find(&secret).is_none());

    // The key authenticates as alice.
    let cred = f.iam.lookup(&id).unwrap();
    assert_eq!(cred.secret.expose(), secret);
    assert_eq!(cred.principal.arn, "arn:aws:iam::123456789012:user/alice");
    assert!(f.iam.lookup("AKIAUNKNOWN").is_none());

    // No policy: denied; a policy: its actions allowed; a Deny on one cluster wins.
    let authz = IamAuthorizer::new(f.iam.clone());
    let p = cred.principal.clone();
    let ctx = gantry_policy::Context::new();
    let cluster = "arn:aws:ecs:us-east-1:123456789012:cluster/prod";
    assert_eq!(authz.authorize(&p, "ecs:ListClusters", "*", &ctx, None), Decision::ImplicitDeny);
    let pol = f.ok("CreatePolicy", json!({"PolicyName": "ro", "PolicyDocument": DESCRIBE_ONLY})).await;
    let arn = pol["Policy"]["Arn"].as_str().unwrap().to_string();
    f.ok("AttachUserPolicy", json!({"UserName": "alice", "PolicyArn": arn})).await;
    assert_eq!(authz.authorize(&p, "ecs:ListClusters", "*", &ctx, None), Decision::Allow);
    assert_eq!(authz.authorize(&p, "ecs:CreateCluster", cluster, &ctx, None), Decision::ImplicitDeny);
    f.ok("PutUserPolicy", json!({"UserName": "alice", "PolicyName": "no-prod", "PolicyDocument":
        format!(r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Deny","Action":"ecs:*","Resource":"{cluster}"}}}}"#)})).await;
    assert_eq!(authz.authorize(&p, "ecs:DescribeClusters", cluster, &ctx, None), Decision::ExplicitDeny);
    // Principal tags from the user's tags.
    f.ok("PutUserPolicy", json!({"UserName": "alice", "PolicyName": "team", "PolicyDocument":
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecs:CreateCluster","Resource":"*","Condition":{"StringEquals":{"aws:PrincipalTag/team":"blue"}}}}"#})).await;
    assert_eq!(
        authz.authorize(&p, "ecs:CreateCluster", "arn:aws:ecs:us-east-1:123456789012:cluster/x", &ctx, None),
        Decision::Allow
    );

    // Deleting needs the keys, policies and attachments gone first.
    let e = f.err("DeleteUser", json!({"UserName": "alice"})).await;
    assert_eq!(
        (e.code.as_str(), e.message.as_str()),
        ("DeleteConflict", "Cannot delete entity, must delete access keys first.")
    );
    let e = f.err("DeletePolicy", json!({"PolicyArn": arn})).await;
    assert_eq!(e.code, "DeleteConflict");
    f.ok("UpdateAccessKey", json!({"UserName": "alice", "AccessKeyId": id, "Status": "Inactive"})).await;
    assert!(f.iam.lookup(&id).is_none(), "an inactive key authenticates");
    f.ok("DeleteAccessKey", json!({"UserName": "alice", "AccessKeyId": id})).await;
    let e = f.err("DeleteUser", json!({"UserName": "alice"})).await;
    assert_eq!(e.message, "Cannot delete entity, must delete policies first.");
}

#[tokio::test]
async fn policy_versions_groups_roles_and_simulation() {
    let f = fixture();
    let e = f.err("CreatePolicy", json!({"PolicyName": "p", "PolicyDocument": "{\"Statement\":[]}"})).await;
    assert_eq!(e.code, "MalformedPolicyDocument");
    let pol = f.ok("CreatePolicy", json!({"PolicyName": "p", "PolicyDocument": DESCRIBE_ONLY})).await;
    let arn = pol["Policy"]["Arn"].as_str().unwrap().to_string();
    for n in 2..=5 {
        let v = f
            .ok(
                "CreatePolicyVersion",
                json!({"PolicyArn": arn, "PolicyDocument": DESCRIBE_ONLY, "SetAsDefault": n == 3}),
            )
            .await;
        assert_eq!(v["PolicyVersion"]["VersionId"], format!("v{n}"));
    }
    let e = f.err("CreatePolicyVersion", json!({"PolicyArn": arn, "PolicyDocument": DESCRIBE_ONLY})).await;
    assert_eq!(e.code, "LimitExceeded");
    assert_eq!(f.ok("GetPolicy", json!({"PolicyArn": arn})).await["Policy"]["DefaultVersionId"], "v3");
    let e = f.err("DeletePolicyVersion", json!({"PolicyArn": arn, "VersionId": "v3"})).await;
    assert_eq!(e.message, "Cannot delete the default version of a policy.");
    f.ok("DeletePolicyVersion", json!({"PolicyArn": arn, "VersionId": "v1"})).await;
    let vs = f.ok("ListPolicyVersions", json!({"PolicyArn": arn})).await;
    assert_eq!(vs["Versions"].as_array().unwrap().len(), 4);
    let doc = f.ok("GetPolicyVersion", json!({"PolicyArn": arn, "VersionId": "v2"})).await;
    assert!(doc["PolicyVersion"]["Document"].as_str().unwrap().starts_with("%7B%22Version%22"));

    // Group membership carries the group's policies.
    f.ok("CreateUser", json!({"UserName": "bob"})).await;
    f.ok("CreateGroup", json!({"GroupName": "ops"})).await;
    f.ok("AddUserToGroup", json!({"GroupName": "ops", "UserName": "bob"})).await;
    f.ok(
        "AttachGroupPolicy",
        json!({"GroupName": "ops", "PolicyArn": "arn:aws:iam::aws:policy/AdministratorAccess"}),
    )
    .await;
    assert_eq!(f.ok("GetGroup", json!({"GroupName": "ops"})).await["Users"][0]["UserName"], "bob");
    let sim = f
        .ok(
            "SimulatePrincipalPolicy",
            json!({"PolicySourceArn": "arn:aws:iam::123456789012:user/bob",
        "ActionNames": ["iam:CreateUser"]}),
        )
        .await;
    assert_eq!(sim["EvaluationResults"][0]["EvalDecision"], "allowed");
    let e = f.err("DeleteGroup", json!({"GroupName": "ops"})).await;
    assert_eq!(e.code, "DeleteConflict");

    // Roles: trust policies are validated; the ECS service-linked role.
    let e = f.err("CreateRole", json!({"RoleName": "r", "AssumeRolePolicyDocument": DESCRIBE_ONLY})).await;
    assert_eq!(e.code, "MalformedPolicyDocument");
    let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
    let r = f.ok("CreateRole", json!({"RoleName": "task", "AssumeRolePolicyDocument": trust})).await;
    assert!(r["Role"]["RoleId"].as_str().unwrap().starts_with("AROA"));
    let slr = f.ok("CreateServiceLinkedRole", json!({"AWSServiceName": "ecs.amazonaws.com"})).await;
    assert_eq!(
        slr["Role"]["Arn"],
        "arn:aws:iam::123456789012:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS"
    );
    let info = f.iam.role(ACCOUNT, "arn:aws:iam::123456789012:role/task").unwrap();
    assert_eq!(info.trust_policy, trust);
    f.ok("CreateInstanceProfile", json!({"InstanceProfileName": "ecsInstanceRole"})).await;
    f.ok("AddRoleToInstanceProfile", json!({"InstanceProfileName": "ecsInstanceRole", "RoleName": "task"}))
        .await;
    let e = f.err("DeleteRole", json!({"RoleName": "task"})).await;
    assert_eq!(e.code, "DeleteConflict");
    let ip = f.ok("GetInstanceProfile", json!({"InstanceProfileName": "ecsInstanceRole"})).await;
    assert_eq!(ip["InstanceProfile"]["Roles"][0]["RoleName"], "task");
}

#[tokio::test]
async fn an_unreadable_record_fails_the_listing_naming_its_key() {
    let f = fixture();
    f.ok("CreateUser", json!({"UserName": "alice"})).await;
    let bad = entity_key(ACCOUNT, Kind::User, "mallory");
    f.store.txn(Txn::new().put(&bad, b"{\"not\": \"an entity\"}".to_vec())).await.unwrap();
    for op in ["ListUsers", "ListPolicies"] {
        let e = f.err(op, json!({})).await;
        assert_eq!(e.code, "ServiceFailure", "{op}");
        assert!(e.message.contains(&bad), "{op}: {}", e.message);
    }
}
