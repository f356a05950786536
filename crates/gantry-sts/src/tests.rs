//! Sessions: AssumeRole's trust evaluation, durations, session policies and tags, expiry.

use super::*;
use gantry_core::{FixedClock, OsSecrets, Timestamp};
use gantry_ports::{AllowAll, RoleInfo};
use gantry_store::SqliteStore;

const ACCOUNT: &str = "123456789012";
const ROLE: &str = "arn:aws:iam::123456789012:role/app";

struct FakeRoles {
    trust: String,
}

impl Roles for FakeRoles {
    fn role(&self, _: &str, arn: &str) -> Option<RoleInfo> {
        (arn == ROLE).then(|| RoleInfo {
            name: "app".into(),
            arn: ROLE.into(),
            role_id: "AROAEXAMPLEEXAMPLE1".into(),
            trust_policy: self.trust.clone(),
            max_session_duration: 7200,
            tags: vec![],
        })
    }
    fn managed_policy(&self, _: &str, arn: &str) -> Option<String> {
        (arn == "arn:aws:iam::aws:policy/ReadOnly").then(|| {
            r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecs:List*","Resource":"*"}}"#.into()
        })
    }
    fn key_account(&self, _: &str) -> Option<String> {
        None
    }
}

/// Allows nothing: the caller's own policies grant no sts:AssumeRole.
struct DenyAll;
impl Authorizer for DenyAll {
    fn authorize(&self, _: &Principal, _: &str, _: &str, _: &AuthContext, _: Option<&str>) -> Decision {
        Decision::ImplicitDeny
    }
}

fn sts(trust: &str, authz: Arc<dyn Authorizer>) -> (Sts, Arc<FixedClock>) {
    let clock = Arc::new(FixedClock::new(Timestamp(1_700_000_000_000)));
    let s = Sts::with(StsDeps {
        store: Arc::new(SqliteStore::in_memory().unwrap()),
        clock: clock.clone(),
        secrets: Arc::new(OsSecrets),
        sealer: Sealer::new(&[3; 32], Arc::new(OsSecrets)),
        roles: Arc::new(FakeRoles { trust: trust.into() }),
        authorizer: authz,
    });
    (s, clock)
}

fn alice() -> Principal {
    Principal {
        kind: PrincipalKind::User { name: "alice".into() },
        session_policies: None,
        session_tags: vec![],
        account: ACCOUNT.into(),
        arn: "arn:aws:iam::123456789012:user/alice".into(),
        user_id: "AIDAALICE".into(),
    }
}

fn trust(principal: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"AWS":"{principal}"}},"Action":["sts:AssumeRole","sts:TagSession"]}}]}}"#
    )
}

async fn call(s: &Sts, p: &Principal, op: &str, input: Value) -> Result<Value, ServiceError> {
    let out = s.call(p, op, &serde_json::to_vec(&input).unwrap()).await?;
    Ok(serde_json::from_slice(&out).unwrap())
}

#[tokio::test]
async fn assume_role_makes_a_session_that_authenticates_and_expires() {
    let (s, clock) = sts(&trust("arn:aws:iam::123456789012:user/alice"), Arc::new(DenyAll));
    let out = call(
        &s,
        &alice(),
        "AssumeRole",
        json!({"RoleArn": ROLE, "RoleSessionName": "s1",
        "DurationSeconds": 900, "Tags": [{"Key": "project", "Value": "x"}],
        "PolicyArns": [{"arn": "arn:aws:iam::aws:policy/ReadOnly"}]}),
    )
    .await
    .unwrap();
    assert_eq!(out["AssumedRoleUser"]["Arn"], "arn:aws:sts::123456789012:assumed-role/app/s1");
    let id = out["Credentials"]["AccessKeyId"].as_str().unwrap();
    assert!(id.starts_with("ASIA"));
    let c = s.lookup(id).unwrap();
    assert_eq!(c.secret.expose(), out["Credentials"]["SecretAccessKey"].as_str().unwrap());
    assert_eq!(
        c.session_token.as_ref().unwrap().expose(),
        out["Credentials"]["SessionToken"].as_str().unwrap()
    );
    assert_eq!(c.expires_at, Some(1_700_000_000 + 900));
    assert_eq!(c.principal.arn, "arn:aws:sts::123456789012:assumed-role/app/s1");
    assert_eq!(c.principal.session_tags, vec![("project".to_string(), "x".to_string())]);
    assert_eq!(c.principal.session_policies.as_ref().unwrap().len(), 1);
    let who = call(&s, &c.principal, "GetCallerIdentity", json!({})).await.unwrap();
    assert_eq!(who["UserId"], "AROAEXAMPLEEXAMPLE1:s1");
    // Role chaining is limited to an hour; GetSessionToken refuses sessions.
    let e = call(
        &s,
        &c.principal,
        "AssumeRole",
        json!({"RoleArn": ROLE, "RoleSessionName": "s2", "DurationSeconds": 7200}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "ValidationError");
    let e = call(&s, &c.principal, "GetSessionToken", json!({})).await.unwrap_err();
    assert_eq!(e.code, "AccessDenied");
    clock.advance_ms(901_000);
    assert!(
        s.lookup(id).unwrap().expires_at.unwrap() <= clock.now().0 / 1000,
        "the session outlives its duration"
    );
}

#[tokio::test]
async fn trust_policies_decide_who_may_assume() {
    // Trust naming the user: allowed without any identity policy.
    let (s, _) = sts(&trust("arn:aws:iam::123456789012:user/bob"), Arc::new(AllowAll));
    let e = call(&s, &alice(), "AssumeRole", json!({"RoleArn": ROLE, "RoleSessionName": "s1"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "AccessDenied");
    assert_eq!(
        e.message,
        format!(
            "User: arn:aws:iam::123456789012:user/alice is not authorized to perform: sts:AssumeRole on resource: {ROLE}"
        )
    );
    // Trust naming the account: the caller's own policies must allow it.
    let (s, _) = sts(&trust(ACCOUNT), Arc::new(DenyAll));
    assert_eq!(
        call(&s, &alice(), "AssumeRole", json!({"RoleArn": ROLE, "RoleSessionName": "s1"}))
            .await
            .unwrap_err()
            .code,
        "AccessDenied"
    );
    let (s, _) = sts(&trust(ACCOUNT), Arc::new(AllowAll));
    call(&s, &alice(), "AssumeRole", json!({"RoleArn": ROLE, "RoleSessionName": "s1"})).await.unwrap();
    // Beyond the role's maximum, unknown roles, the root.
    let e = call(
        &s,
        &alice(),
        "AssumeRole",
        json!({"RoleArn": ROLE, "RoleSessionName": "s1", "DurationSeconds": 7201}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.message, "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.");
    let e = call(
        &s,
        &alice(),
        "AssumeRole",
        json!({"RoleArn": "arn:aws:iam::123456789012:role/nope", "RoleSessionName": "s1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, "AccessDenied");
    let e =
        call(&s, &Principal::root(ACCOUNT), "AssumeRole", json!({"RoleArn": ROLE, "RoleSessionName": "s1"}))
            .await
            .unwrap_err();
    assert_eq!(e.message, "Roles may not be assumed by root accounts.");
    let e = call(&s, &alice(), "AssumeRole", json!({"RoleArn": ROLE, "RoleSessionName": "a b"}))
        .await
        .unwrap_err();
    assert_eq!(e.code, "ValidationError");
}

#[tokio::test]
async fn session_tokens_are_users_sessions() {
    let (s, _) = sts(&trust(ACCOUNT), Arc::new(AllowAll));
    let out = call(&s, &alice(), "GetSessionToken", json!({"DurationSeconds": 900})).await.unwrap();
    let c = s.lookup(out["Credentials"]["AccessKeyId"].as_str().unwrap()).unwrap();
    assert_eq!(c.principal.arn, alice().arn);
    assert_eq!(c.principal.kind, alice().kind);
    let info = call(&s, &alice(), "GetAccessKeyInfo", json!({"AccessKeyId": c.access_key_id})).await.unwrap();
    assert_eq!(info["Account"], ACCOUNT);
    assert!(s.lookup("ASIAUNKNOWNUNKNOWN12").is_none());
}

fn service_trust(service: &str) -> String {
    format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"{service}"}},"Action":"sts:AssumeRole"}}]}}"#
    )
}

#[tokio::test]
async fn ecs_tasks_get_a_session_named_after_the_task() {
    let (s, _clock) = sts(&service_trust("ecs-tasks.amazonaws.com"), Arc::new(DenyAll));
    let got = s
        .assume_role_for_service(ACCOUNT, ROLE, "ecs-tasks.amazonaws.com", "0123456789abcdef", 3600)
        .await
        .unwrap();
    assert_eq!(got.role_arn, ROLE);
    assert!(got.access_key_id.starts_with("ASIA"));
    assert_eq!(got.expiration, 1_700_000_000 + 3600);
    // The session authenticates as the role, named after the task.
    let c = s.lookup(&got.access_key_id).unwrap();
    assert_eq!(c.secret.expose(), got.secret_access_key.expose());
    assert_eq!(c.session_token.as_ref().unwrap().expose(), got.session_token.expose());
    assert_eq!(c.principal.arn, "arn:aws:sts::123456789012:assumed-role/app/0123456789abcdef");
    assert_eq!(c.principal.user_id, "AROAEXAMPLEEXAMPLE1:0123456789abcdef");
    // Longer than the role allows is cut to its MaxSessionDuration.
    let long =
        s.assume_role_for_service(ACCOUNT, ROLE, "ecs-tasks.amazonaws.com", "t2", 6 * 3600).await.unwrap();
    assert_eq!(long.expiration, 1_700_000_000 + 7200);
    // A shorter life configured by the operator (`--task-credentials-duration`) is kept.
    let short = s.assume_role_for_service(ACCOUNT, ROLE, "ecs-tasks.amazonaws.com", "t3", 30).await.unwrap();
    assert_eq!(short.expiration, 1_700_000_000 + 30);
}

#[tokio::test]
async fn a_role_that_does_not_trust_ecs_tasks_is_refused() {
    for trust_doc in [service_trust("ec2.amazonaws.com"), trust("arn:aws:iam::123456789012:user/alice")] {
        let (s, _clock) = sts(&trust_doc, Arc::new(AllowAll));
        let e = s
            .assume_role_for_service(ACCOUNT, ROLE, "ecs-tasks.amazonaws.com", "t1", 3600)
            .await
            .unwrap_err();
        assert_eq!(e.code, "AccessDenied");
        assert!(e.message.contains("ecs-tasks.amazonaws.com is not authorized to perform: sts:AssumeRole"));
    }
    let (s, _clock) = sts(&service_trust("ecs-tasks.amazonaws.com"), Arc::new(AllowAll));
    let missing = "arn:aws:iam::123456789012:role/nope";
    let e = s.assume_role_for_service(ACCOUNT, missing, "ecs-tasks.amazonaws.com", "t1", 3600).await;
    assert!(e.is_err());
}
