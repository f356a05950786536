//! The evaluator, table-driven: each row is a policy (or policies), a request and IAM's decision.

use gantry_policy::{Context, Decision, Kind, Policy, PolicySet, PrincipalId, Request, evaluate};

const CLUSTER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/prod";
const OTHER: &str = "arn:aws:ecs:us-east-1:123456789012:cluster/dev";
const NOW: &str = "1767225600"; // 2026-01-01T00:00:00Z

fn stmt(effect: &str, action: &str, resource: &str, condition: &str) -> String {
    let cond = if condition.is_empty() { String::new() } else { format!(r#","Condition":{condition}"#) };
    format!(r#"{{"Effect":"{effect}","Action":{action},"Resource":{resource}{cond}}}"#)
}

fn allow_if(condition: &str) -> Vec<String> {
    vec![stmt("Allow", r#""ecs:*""#, r#""*""#, condition)]
}

fn ctx() -> Context {
    let mut c = Context::new();
    c.set1("aws:SourceIp", "10.1.2.3");
    c.set1("aws:RequestedRegion", "us-east-1");
    c.set1("aws:PrincipalArn", "arn:aws:iam::123456789012:user/alice");
    c.set1("aws:username", "alice");
    c.set1("aws:PrincipalTag/team", "blue");
    c.set1("aws:ResourceTag/env", "prod");
    c.set1("aws:RequestTag/owner", "alice");
    c.set("aws:TagKeys", vec!["owner".into(), "cost".into()]);
    c.set1("aws:CurrentTime", "2026-01-01T00:00:00Z");
    c.set1("aws:EpochTime", NOW);
    c.set1("aws:SecureTransport", "false");
    c.set1("ecs:cluster", CLUSTER);
    c.set1("aws:MultiFactorAuthAge", "300");
    c
}

struct Row {
    name: &'static str,
    statements: Vec<String>,
    action: &'static str,
    resource: &'static str,
    want: Decision,
}

fn row(
    name: &'static str,
    statements: Vec<String>,
    action: &'static str,
    resource: &'static str,
    want: Decision,
) -> Row {
    Row { name, statements, action, resource, want }
}

fn check(rows: Vec<Row>) {
    let who = PrincipalId { account: "123456789012".into(), arns: vec![], service: None };
    let c = ctx();
    let mut failures = Vec::new();
    for r in rows {
        let doc = format!(r#"{{"Version":"2012-10-17","Statement":[{}]}}"#, r.statements.join(","));
        let policy = Policy::parse(&doc, Kind::Identity).unwrap_or_else(|e| panic!("{}: {e}: {doc}", r.name));
        let set = PolicySet { identity: &[&policy], session: None, resource: None };
        let got =
            evaluate(&set, &Request { action: r.action, resource: r.resource, principal: &who, context: &c });
        if got != r.want {
            failures.push(format!("{}: got {got:?}, want {:?}", r.name, r.want));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

use Decision::{Allow, ExplicitDeny as Deny, ImplicitDeny as Implicit};

#[test]
fn actions_resources_and_deny() {
    let s = |e, a, r| stmt(e, a, r, "");
    check(vec![
        row(
            "exact action",
            vec![s("Allow", r#""ecs:CreateCluster""#, r#""*""#)],
            "ecs:CreateCluster",
            CLUSTER,
            Allow,
        ),
        row(
            "nothing allows",
            vec![s("Allow", r#""ecs:ListClusters""#, r#""*""#)],
            "ecs:CreateCluster",
            CLUSTER,
            Implicit,
        ),
        row(
            "action case-insensitive",
            vec![s("Allow", r#""ECS:createcluster""#, r#""*""#)],
            "ecs:CreateCluster",
            CLUSTER,
            Allow,
        ),
        row(
            "star in action",
            vec![s("Allow", r#""ecs:Describe*""#, r#""*""#)],
            "ecs:DescribeClusters",
            CLUSTER,
            Allow,
        ),
        row(
            "star does not cover others",
            vec![s("Allow", r#""ecs:Describe*""#, r#""*""#)],
            "ecs:CreateCluster",
            CLUSTER,
            Implicit,
        ),
        row(
            "question mark",
            vec![s("Allow", r#""ecs:?istClusters""#, r#""*""#)],
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "question mark is one char",
            vec![s("Allow", r#""ecs:?Clusters""#, r#""*""#)],
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row("other service", vec![s("Allow", r#""ecs:*""#, r#""*""#)], "iam:CreateUser", "*", Implicit),
        row("all actions", vec![s("Allow", r#""*""#, r#""*""#)], "iam:CreateUser", "*", Allow),
        row(
            "action list",
            vec![s("Allow", r#"["ecs:ListClusters","ecs:CreateCluster"]"#, r#""*""#)],
            "ecs:CreateCluster",
            CLUSTER,
            Allow,
        ),
        row(
            "resource exact",
            vec![s("Allow", r#""ecs:*""#, &format!("\"{CLUSTER}\""))],
            "ecs:DeleteCluster",
            CLUSTER,
            Allow,
        ),
        row(
            "resource other",
            vec![s("Allow", r#""ecs:*""#, &format!("\"{CLUSTER}\""))],
            "ecs:DeleteCluster",
            OTHER,
            Implicit,
        ),
        row(
            "resource case-sensitive",
            vec![s("Allow", r#""ecs:*""#, r#""arn:aws:ecs:us-east-1:123456789012:cluster/PROD""#)],
            "ecs:DeleteCluster",
            CLUSTER,
            Implicit,
        ),
        row(
            "resource wildcard",
            vec![s("Allow", r#""ecs:*""#, r#""arn:aws:ecs:*:123456789012:cluster/*""#)],
            "ecs:DeleteCluster",
            CLUSTER,
            Allow,
        ),
        row(
            "resource question mark",
            vec![s("Allow", r#""ecs:*""#, r#""arn:aws:ecs:*:*:cluster/pro?""#)],
            "ecs:DeleteCluster",
            CLUSTER,
            Allow,
        ),
        row(
            "resource wildcard stays in its part",
            vec![s("Allow", r#""ecs:*""#, r#""arn:aws:ecs:*:cluster/prod""#)],
            "ecs:DeleteCluster",
            CLUSTER,
            Implicit,
        ),
        row(
            "explicit deny wins",
            vec![s("Allow", r#""*""#, r#""*""#), s("Deny", r#""ecs:*""#, &format!("\"{CLUSTER}\""))],
            "ecs:DeleteCluster",
            CLUSTER,
            Deny,
        ),
        row(
            "deny elsewhere leaves allow",
            vec![s("Allow", r#""*""#, r#""*""#), s("Deny", r#""ecs:*""#, &format!("\"{CLUSTER}\""))],
            "ecs:DeleteCluster",
            OTHER,
            Allow,
        ),
        row("deny alone", vec![s("Deny", r#""ecs:*""#, r#""*""#)], "ecs:ListClusters", "*", Deny),
        row(
            "NotAction allow",
            vec![
                stmt("Allow", "[]", "[]", "")
                    .replace(r#""Action":[]"#, r#""NotAction":"iam:*""#)
                    .replace(r#""Resource":[]"#, r#""Resource":"*""#),
            ],
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "NotAction excludes",
            vec![r#"{"Effect":"Allow","NotAction":"iam:*","Resource":"*"}"#.into()],
            "iam:CreateUser",
            "*",
            Implicit,
        ),
        row(
            "NotAction case-insensitive",
            vec![r#"{"Effect":"Allow","NotAction":"IAM:*","Resource":"*"}"#.into()],
            "iam:CreateUser",
            "*",
            Implicit,
        ),
        row(
            "NotAction deny",
            vec![
                s("Allow", r#""*""#, r#""*""#),
                r#"{"Effect":"Deny","NotAction":"ecs:Describe*","Resource":"*"}"#.into(),
            ],
            "ecs:CreateCluster",
            "*",
            Deny,
        ),
        row(
            "NotResource allow",
            vec![format!(r#"{{"Effect":"Allow","Action":"ecs:*","NotResource":"{CLUSTER}"}}"#)],
            "ecs:DeleteCluster",
            OTHER,
            Allow,
        ),
        row(
            "NotResource excludes",
            vec![format!(r#"{{"Effect":"Allow","Action":"ecs:*","NotResource":"{CLUSTER}"}}"#)],
            "ecs:DeleteCluster",
            CLUSTER,
            Implicit,
        ),
        row(
            "policy variable",
            vec![s("Allow", r#""iam:*AccessKey*""#, r#""arn:aws:iam::123456789012:user/${aws:username}""#)],
            "iam:CreateAccessKey",
            "arn:aws:iam::123456789012:user/alice",
            Allow,
        ),
        row(
            "policy variable other user",
            vec![s("Allow", r#""iam:*AccessKey*""#, r#""arn:aws:iam::123456789012:user/${aws:username}""#)],
            "iam:CreateAccessKey",
            "arn:aws:iam::123456789012:user/bob",
            Implicit,
        ),
        row(
            "policy variable missing",
            vec![s("Allow", r#""ecs:*""#, r#""arn:aws:ecs:*:*:cluster/${aws:nope}""#)],
            "ecs:DeleteCluster",
            CLUSTER,
            Implicit,
        ),
    ]);
}

#[test]
fn string_operators() {
    check(vec![
        row(
            "StringEquals",
            allow_if(r#"{"StringEquals":{"aws:PrincipalTag/team":"blue"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "StringEquals no",
            allow_if(r#"{"StringEquals":{"aws:PrincipalTag/team":"red"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "StringEquals values are OR",
            allow_if(r#"{"StringEquals":{"aws:PrincipalTag/team":["red","blue"]}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "StringEquals case-sensitive",
            allow_if(r#"{"StringEquals":{"aws:PrincipalTag/team":"BLUE"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "condition key case-insensitive",
            allow_if(r#"{"StringEquals":{"AWS:PRINCIPALTAG/TEAM":"blue"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "StringEquals missing key",
            allow_if(r#"{"StringEquals":{"aws:PrincipalTag/none":"blue"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "StringNotEquals",
            allow_if(r#"{"StringNotEquals":{"aws:PrincipalTag/team":"red"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "StringNotEquals values are NOR",
            allow_if(r#"{"StringNotEquals":{"aws:PrincipalTag/team":["red","blue"]}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "StringNotEquals missing key is true",
            allow_if(r#"{"StringNotEquals":{"aws:PrincipalTag/none":"x"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "StringEqualsIgnoreCase",
            allow_if(r#"{"StringEqualsIgnoreCase":{"aws:PrincipalTag/team":"BLUE"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "StringNotEqualsIgnoreCase",
            allow_if(r#"{"StringNotEqualsIgnoreCase":{"aws:PrincipalTag/team":"BLUE"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "StringLike",
            allow_if(r#"{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/a*"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "StringLike no",
            allow_if(r#"{"StringLike":{"aws:PrincipalArn":"arn:aws:iam::*:user/b*"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "StringNotLike",
            allow_if(r#"{"StringNotLike":{"aws:PrincipalArn":"*:user/b*"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "StringEquals with variable",
            allow_if(r#"{"StringEquals":{"aws:RequestTag/owner":"${aws:username}"}}"#),
            "ecs:TagResource",
            "*",
            Allow,
        ),
        row(
            "StringEqualsIfExists missing",
            allow_if(r#"{"StringEqualsIfExists":{"aws:PrincipalTag/none":"x"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "StringEqualsIfExists present",
            allow_if(r#"{"StringEqualsIfExists":{"aws:PrincipalTag/team":"red"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "two keys are AND",
            allow_if(r#"{"StringEquals":{"aws:PrincipalTag/team":"blue","aws:ResourceTag/env":"dev"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "two operators are AND",
            allow_if(
                r#"{"StringEquals":{"aws:PrincipalTag/team":"blue"},"Bool":{"aws:SecureTransport":"true"}}"#,
            ),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "aws:RequestedRegion",
            allow_if(r#"{"StringEquals":{"aws:RequestedRegion":["us-east-1","eu-west-1"]}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "aws:RequestedRegion other",
            allow_if(r#"{"StringEquals":{"aws:RequestedRegion":"eu-west-1"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "aws:ResourceTag",
            allow_if(r#"{"StringEquals":{"aws:ResourceTag/env":"prod"}}"#),
            "ecs:DeleteCluster",
            CLUSTER,
            Allow,
        ),
        row(
            "deny by aws:ResourceTag",
            vec![
                stmt("Allow", r#""*""#, r#""*""#, ""),
                stmt("Deny", r#""ecs:*""#, r#""*""#, r#"{"StringEquals":{"aws:ResourceTag/env":"prod"}}"#),
            ],
            "ecs:DeleteCluster",
            CLUSTER,
            Deny,
        ),
    ]);
}

#[test]
fn set_operators() {
    check(vec![
        row(
            "ForAllValues subset",
            allow_if(r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["owner","cost","env"]}}"#),
            "ecs:TagResource",
            "*",
            Allow,
        ),
        row(
            "ForAllValues not subset",
            allow_if(r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["owner"]}}"#),
            "ecs:TagResource",
            "*",
            Implicit,
        ),
        row(
            "ForAllValues missing key is true",
            allow_if(r#"{"ForAllValues:StringEquals":{"aws:Nope":["owner"]}}"#),
            "ecs:TagResource",
            "*",
            Allow,
        ),
        row(
            "ForAnyValue one",
            allow_if(r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["cost"]}}"#),
            "ecs:TagResource",
            "*",
            Allow,
        ),
        row(
            "ForAnyValue none",
            allow_if(r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["env"]}}"#),
            "ecs:TagResource",
            "*",
            Implicit,
        ),
        row(
            "ForAnyValue missing key is false",
            allow_if(r#"{"ForAnyValue:StringEquals":{"aws:Nope":["env"]}}"#),
            "ecs:TagResource",
            "*",
            Implicit,
        ),
        row(
            "ForAnyValue StringLike",
            allow_if(r#"{"ForAnyValue:StringLike":{"aws:TagKeys":["co*"]}}"#),
            "ecs:TagResource",
            "*",
            Allow,
        ),
        row(
            "ForAllValues StringNotEquals",
            allow_if(r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":["env"]}}"#),
            "ecs:TagResource",
            "*",
            Allow,
        ),
        row(
            "ForAnyValue StringNotEquals",
            allow_if(r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["owner","cost"]}}"#),
            "ecs:TagResource",
            "*",
            Implicit,
        ),
    ]);
}

#[test]
fn numeric_date_bool_ip_arn_null() {
    check(vec![
        row(
            "NumericLessThan",
            allow_if(r#"{"NumericLessThan":{"aws:MultiFactorAuthAge":"3600"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "NumericLessThan no",
            allow_if(r#"{"NumericLessThan":{"aws:MultiFactorAuthAge":"300"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "NumericLessThanEquals",
            allow_if(r#"{"NumericLessThanEquals":{"aws:MultiFactorAuthAge":"300"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "NumericEquals",
            allow_if(r#"{"NumericEquals":{"aws:MultiFactorAuthAge":"300"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "NumericNotEquals",
            allow_if(r#"{"NumericNotEquals":{"aws:MultiFactorAuthAge":"300"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "NumericGreaterThan",
            allow_if(r#"{"NumericGreaterThan":{"aws:MultiFactorAuthAge":"299.5"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "NumericGreaterThanEquals",
            allow_if(r#"{"NumericGreaterThanEquals":{"aws:MultiFactorAuthAge":"301"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "Numeric not a number",
            allow_if(r#"{"NumericEquals":{"aws:PrincipalTag/team":"1"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "DateLessThan",
            allow_if(r#"{"DateLessThan":{"aws:CurrentTime":"2026-06-30T00:00:00Z"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "DateLessThan past",
            allow_if(r#"{"DateLessThan":{"aws:CurrentTime":"2025-12-31T23:59:59Z"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "DateGreaterThan",
            allow_if(r#"{"DateGreaterThan":{"aws:CurrentTime":"2025-12-31"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "DateGreaterThanEquals",
            allow_if(r#"{"DateGreaterThanEquals":{"aws:CurrentTime":"2026-01-01T01:00:00+01:00"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "DateLessThanEquals epoch",
            allow_if(r#"{"DateLessThanEquals":{"aws:EpochTime":"1767225600"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "DateEquals",
            allow_if(r#"{"DateEquals":{"aws:CurrentTime":"2026-01-01T00:00:00.000Z"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "DateNotEquals",
            allow_if(r#"{"DateNotEquals":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row("Bool", allow_if(r#"{"Bool":{"aws:SecureTransport":"false"}}"#), "ecs:ListClusters", "*", Allow),
        row(
            "Bool requires TLS",
            allow_if(r#"{"Bool":{"aws:SecureTransport":"true"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "deny without TLS",
            vec![
                stmt("Allow", r#""*""#, r#""*""#, ""),
                stmt("Deny", r#""*""#, r#""*""#, r#"{"Bool":{"aws:SecureTransport":"false"}}"#),
            ],
            "ecs:ListClusters",
            "*",
            Deny,
        ),
        row(
            "BoolIfExists missing",
            allow_if(r#"{"BoolIfExists":{"aws:MultiFactorAuthPresent":"true"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "IpAddress",
            allow_if(r#"{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "IpAddress list",
            allow_if(r#"{"IpAddress":{"aws:SourceIp":["192.168.0.0/16","10.1.2.3"]}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "IpAddress out",
            allow_if(r#"{"IpAddress":{"aws:SourceIp":"192.168.0.0/16"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "NotIpAddress",
            allow_if(r#"{"NotIpAddress":{"aws:SourceIp":"192.168.0.0/16"}}"#),
            "ecs:ListClusters",
            "*",
            Allow,
        ),
        row(
            "IpAddress v6 vs v4",
            allow_if(r#"{"IpAddress":{"aws:SourceIp":"::/0"}}"#),
            "ecs:ListClusters",
            "*",
            Implicit,
        ),
        row(
            "ArnEquals",
            allow_if(&format!(r#"{{"ArnEquals":{{"ecs:cluster":"{CLUSTER}"}}}}"#)),
            "ecs:RunTask",
            "*",
            Allow,
        ),
        row(
            "ArnLike",
            allow_if(r#"{"ArnLike":{"ecs:cluster":"arn:aws:ecs:*:*:cluster/p*"}}"#),
            "ecs:RunTask",
            "*",
            Allow,
        ),
        row(
            "ArnLike parts",
            allow_if(r#"{"ArnLike":{"ecs:cluster":"arn:aws:ecs:*:cluster/prod"}}"#),
            "ecs:RunTask",
            "*",
            Implicit,
        ),
        row(
            "ArnNotLike",
            allow_if(r#"{"ArnNotLike":{"ecs:cluster":"arn:aws:ecs:*:*:cluster/dev"}}"#),
            "ecs:RunTask",
            "*",
            Allow,
        ),
        row(
            "ArnNotEquals",
            allow_if(&format!(r#"{{"ArnNotEquals":{{"ecs:cluster":"{CLUSTER}"}}}}"#)),
            "ecs:RunTask",
            "*",
            Implicit,
        ),
        row(
            "ArnLike PrincipalArn",
            allow_if(r#"{"ArnLike":{"aws:PrincipalArn":"arn:aws:iam::123456789012:user/*"}}"#),
            "ecs:RunTask",
            "*",
            Allow,
        ),
        row(
            "Null true (absent)",
            allow_if(r#"{"Null":{"aws:RequestTag/cost":"true"}}"#),
            "ecs:TagResource",
            "*",
            Allow,
        ),
        row(
            "Null true (present)",
            allow_if(r#"{"Null":{"aws:RequestTag/owner":"true"}}"#),
            "ecs:TagResource",
            "*",
            Implicit,
        ),
        row(
            "Null false (present)",
            allow_if(r#"{"Null":{"aws:RequestTag/owner":"false"}}"#),
            "ecs:TagResource",
            "*",
            Allow,
        ),
    ]);
}

#[test]
fn session_policies_intersect_and_resource_policies_add() {
    let who = PrincipalId {
        account: "123456789012".into(),
        arns: vec!["arn:aws:iam::123456789012:user/alice".into()],
        service: None,
    };
    let c = ctx();
    let p = |s: &str, k| Policy::parse(s, k).unwrap();
    let all = p(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#,
        Kind::Identity,
    );
    let list = p(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"ecs:List*","Resource":"*"}}"#,
        Kind::Identity,
    );
    let deny = p(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Action":"ecs:ListTasks","Resource":"*"}}"#,
        Kind::Identity,
    );
    let req = |a: &'static str| Request { action: a, resource: "*", principal: &who, context: &c };
    let set = PolicySet { identity: &[&all], session: Some(&[&list]), resource: None };
    assert_eq!(evaluate(&set, &req("ecs:ListClusters")), Allow);
    assert_eq!(evaluate(&set, &req("ecs:CreateCluster")), Implicit);
    let set = PolicySet { identity: &[&list], session: Some(&[&all]), resource: None };
    assert_eq!(evaluate(&set, &req("ecs:CreateCluster")), Implicit);
    let set = PolicySet { identity: &[&all], session: Some(&[&all, &deny]), resource: None };
    assert_eq!(evaluate(&set, &req("ecs:ListTasks")), Deny);
    // A resource policy naming the principal allows on its own; its Deny wins over identity.
    let rp = p(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/alice"},"Action":"secretsmanager:GetSecretValue","Resource":"*"}}"#,
        Kind::Resource,
    );
    let set = PolicySet { identity: &[], session: None, resource: Some(&rp) };
    assert_eq!(evaluate(&set, &req("secretsmanager:GetSecretValue")), Allow);
    let bob = PrincipalId {
        account: "123456789012".into(),
        arns: vec!["arn:aws:iam::123456789012:user/bob".into()],
        service: None,
    };
    let r = Request { action: "secretsmanager:GetSecretValue", resource: "*", principal: &bob, context: &c };
    assert_eq!(evaluate(&set, &r), Implicit);
    let rd = p(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Deny","Principal":"*","Action":"secretsmanager:*","Resource":"*"}}"#,
        Kind::Resource,
    );
    let set = PolicySet { identity: &[&all], session: None, resource: Some(&rd) };
    assert_eq!(evaluate(&set, &req("secretsmanager:GetSecretValue")), Deny);
}

#[test]
fn trust_policies_name_principals() {
    let trust = Policy::parse(
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ecs-tasks.amazonaws.com"},"Action":"sts:AssumeRole"},
            {"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:user/alice"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:ExternalId":"x1"}}}]}"#,
        Kind::Trust,
    )
    .unwrap();
    let c = Context::new().with("sts:ExternalId", "x1");
    let ask = |who: &PrincipalId, c: &Context| {
        evaluate(
            &PolicySet { identity: &[], session: None, resource: Some(&trust) },
            &Request {
                action: "sts:AssumeRole",
                resource: "arn:aws:iam::123456789012:role/r",
                principal: who,
                context: c,
            },
        )
    };
    let alice = PrincipalId {
        account: "123456789012".into(),
        arns: vec!["arn:aws:iam::123456789012:user/alice".into()],
        service: None,
    };
    let bob = PrincipalId {
        account: "123456789012".into(),
        arns: vec!["arn:aws:iam::123456789012:user/bob".into()],
        service: None,
    };
    let ecs =
        PrincipalId { account: String::new(), arns: vec![], service: Some("ecs-tasks.amazonaws.com".into()) };
    assert_eq!(ask(&alice, &c), Allow);
    assert_eq!(ask(&alice, &Context::new()), Implicit);
    assert_eq!(ask(&bob, &c), Implicit);
    assert_eq!(ask(&ecs, &Context::new()), Allow);
}

#[test]
fn malformed_documents_get_iam_messages() {
    let bad = |doc: &str, kind, want: &str| {
        let e = Policy::parse(doc, kind).unwrap_err();
        assert!(e.0.contains(want), "{doc}: {e}");
    };
    bad("{", Kind::Identity, "Syntax errors in policy.");
    bad(
        r#"{"Version":"2012-10-17","Statement":{"Action":"*","Resource":"*"}}"#,
        Kind::Identity,
        "Missing required field Effect",
    );
    bad(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Resource":"*"}}"#,
        Kind::Identity,
        "Policy statement must contain actions.",
    );
    bad(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*"}}"#,
        Kind::Identity,
        "Policy statement must contain resources.",
    );
    bad(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"CreateCluster","Resource":"*"}}"#,
        Kind::Identity,
        "prefaced by a vendor",
    );
    bad(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Principal":"*"}}"#,
        Kind::Identity,
        "should not specify a principal",
    );
    bad(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"sts:AssumeRole","Resource":"*","Principal":"*"}}"#,
        Kind::Trust,
        "Has prohibited field Resource",
    );
    bad(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringFoo":{"a:b":"c"}}}}"#,
        Kind::Identity,
        "Invalid Condition type : StringFoo",
    );
    bad(
        r#"{"Version":"2012-10-17","Statement":{"Effect":"Permit","Action":"*","Resource":"*"}}"#,
        Kind::Identity,
        "Invalid effect",
    );
}
