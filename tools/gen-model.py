#!/usr/bin/env python3
"""Generate gantry-model's wire shapes, one module per AWS service Gantry serves, from botocore.

The wire contract is AWS's, so Gantry does not hand-write its shapes. SERVICES below is the one
list of services: for each, this script writes

* `crates/gantry-model/src/<module>.rs`: every structure reachable from the operations Gantry
  speaks, as a serde struct;
* `crates/gantry-model/models/<module>.json`: the trimmed botocore model (metadata, those
  operations, their shapes, errors included) that gantry-protocol reads to speak the service's
  non-JSON protocols (awsQuery, rpcv2Cbor) and to know its operations.

Rules for the structs:

* member names keep the model's spelling (`#[serde(rename = "...")]`), fields are snake_case;
* members listed in a structure's `required` are plain fields, so serde rejects a request without
  them; every other member is an `Option`, except unboxed primitives (the model's `Integer`,
  `Boolean`, ..., neither the shape nor the member marked `box`) of JSON services, which AWS always returns and which default to zero/false
  (query services' primitives are `Option`s too: their models have no `box`);
* enums stay `String`s: services validate enum values themselves, with their own messages, so the
  domain does it (and an unknown future value does not break deserialization of stored records);
* timestamps are `f64` epoch seconds and blobs base64 strings, the JSON protocols' forms (the
  protocol crate turns other protocols' forms into these);
* exceptions get no struct (see each service's error enum).

For the services in WRITERS (those whose answers are on the hot path), each struct also gets a
`json::WriteJson` implementation that writes serde_json's bytes without serde's call per member
(each member name a constant with its quotes, colon and leading comma), and the module a test-only
`write_both` that the model crate's test compares over random documents of every structure.

Usage (botocore pinned to BOTOCORE below):
    python3 -m venv /tmp/bc && /tmp/bc/bin/pip install botocore==1.44.5
    /tmp/bc/bin/python tools/gen-model.py
"""
import gzip
import json
import os
import re
import sys

BOTOCORE = "1.44.5"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ECS operations left out until an issue asks for them: none now (issue 19 serves the Daemon,
# Gateway and Express Gateway families).
ECS_SKIP_OPS = set()



class Only:
    """The operations a service's model keeps, where that is shorter than those it leaves out."""

    def __init__(self, ops):
        self.ops = set(ops)


# SSM's Parameter Store operations: the rest of SSM (154 operations) is left out of its model.
SSM_OPS = Only({
    "PutParameter", "GetParameter", "GetParameters", "GetParametersByPath", "DescribeParameters",
    "DeleteParameter", "DeleteParameters", "GetParameterHistory", "LabelParameterVersion",
    "UnlabelParameterVersion", "AddTagsToResource", "RemoveTagsFromResource", "ListTagsForResource",
})

# ELBv2: what ECS workflows (the AWS CLI, Terraform's aws_lb*, CDK's ecs-patterns) call; trust
# stores (mTLS), IP pools, capacity reservations' changes and resource policies are left out.
ELBV2_OPS = Only({
    "AddListenerCertificates", "AddTags", "CreateListener", "CreateLoadBalancer", "CreateRule",
    "CreateTargetGroup", "DeleteListener", "DeleteLoadBalancer", "DeleteRule", "DeleteTargetGroup",
    "DeregisterTargets", "DescribeCapacityReservation", "DescribeListenerAttributes",
    "DescribeListenerCertificates", "DescribeListeners", "DescribeLoadBalancerAttributes",
    "DescribeLoadBalancers", "DescribeRules", "DescribeTags", "DescribeTargetGroupAttributes",
    "DescribeTargetGroups", "DescribeTargetHealth", "ModifyListener", "ModifyListenerAttributes",
    "ModifyLoadBalancerAttributes", "ModifyRule", "ModifyTargetGroup", "ModifyTargetGroupAttributes",
    "RegisterTargets", "RemoveListenerCertificates", "RemoveTags", "SetRulePriorities",
    "SetSecurityGroups", "SetSubnets",
})

# ACM: imported certificates only (for HTTPS and TLS listeners); no issuing, no ACME.
ACM_OPS = Only({
    "AddTagsToCertificate", "DeleteCertificate", "DescribeCertificate", "GetCertificate",
    "ImportCertificate", "ListCertificates", "ListTagsForCertificate", "RemoveTagsFromCertificate",
})

# CloudWatch Logs: the operations ECS workflows call (issue 16); the other 100-odd come later.
LOGS_OPS = Only({
    "CreateLogGroup", "DeleteLogGroup", "DescribeLogGroups", "PutRetentionPolicy",
    "DeleteRetentionPolicy", "TagResource", "UntagResource", "ListTagsForResource",
    "TagLogGroup", "UntagLogGroup", "ListTagsLogGroup", "CreateLogStream", "DescribeLogStreams",
    "DeleteLogStream", "PutLogEvents", "GetLogEvents", "FilterLogEvents", "StartQuery",
    "GetQueryResults", "StopQuery",
})

# CloudWatch metrics and alarms (issue 16): metric data, metric alarms, their history and tags;
# dashboards, anomaly detectors, insight rules, metric streams and composite alarms come later.
CLOUDWATCH_OPS = Only({
    "PutMetricData", "GetMetricStatistics", "GetMetricData", "ListMetrics", "PutMetricAlarm",
    "DescribeAlarms", "DescribeAlarmsForMetric", "DeleteAlarms", "SetAlarmState",
    "DescribeAlarmHistory", "EnableAlarmActions", "DisableAlarmActions", "TagResource",
    "UntagResource", "ListTagsForResource",
})

# IAM: what ECS users touch (issue 14): users, groups, access keys, roles, managed and inline
# policies, instance profiles, tags and SimulatePrincipalPolicy.
IAM_OPS = Only({
    "CreateUser", "GetUser", "ListUsers", "UpdateUser", "DeleteUser",
    "CreateGroup", "GetGroup", "ListGroups", "DeleteGroup", "AddUserToGroup",
    "RemoveUserFromGroup", "ListGroupsForUser",
    "CreateAccessKey", "ListAccessKeys", "UpdateAccessKey", "DeleteAccessKey",
    "GetAccessKeyLastUsed",
    "CreateRole", "GetRole", "ListRoles", "UpdateRole", "DeleteRole", "UpdateAssumeRolePolicy",
    "CreateServiceLinkedRole",
    "CreatePolicy", "GetPolicy", "ListPolicies", "DeletePolicy", "CreatePolicyVersion",
    "GetPolicyVersion", "ListPolicyVersions", "DeletePolicyVersion", "SetDefaultPolicyVersion",
    "AttachUserPolicy", "DetachUserPolicy", "ListAttachedUserPolicies",
    "AttachGroupPolicy", "DetachGroupPolicy", "ListAttachedGroupPolicies",
    "AttachRolePolicy", "DetachRolePolicy", "ListAttachedRolePolicies",
    "PutUserPolicy", "GetUserPolicy", "ListUserPolicies", "DeleteUserPolicy",
    "PutGroupPolicy", "GetGroupPolicy", "ListGroupPolicies", "DeleteGroupPolicy",
    "PutRolePolicy", "GetRolePolicy", "ListRolePolicies", "DeleteRolePolicy",
    "CreateInstanceProfile", "GetInstanceProfile", "ListInstanceProfiles",
    "DeleteInstanceProfile", "AddRoleToInstanceProfile", "RemoveRoleFromInstanceProfile",
    "ListInstanceProfilesForRole",
    "TagUser", "UntagUser", "ListUserTags", "TagRole", "UntagRole", "ListRoleTags",
    "TagPolicy", "UntagPolicy", "ListPolicyTags",
    "SimulatePrincipalPolicy",
})

# Application Auto Scaling: ECS services' desiredCount (issue 17).
APPSCALING_OPS = Only({
    "RegisterScalableTarget", "DeregisterScalableTarget", "DescribeScalableTargets",
    "PutScalingPolicy", "DescribeScalingPolicies", "DeleteScalingPolicy",
    "PutScheduledAction", "DescribeScheduledActions", "DeleteScheduledAction",
    "DescribeScalingActivities", "TagResource", "UntagResource", "ListTagsForResource",
})

# EventBridge (issue 17): scheduled rules with ECS targets on the default event bus; event
# buses, archives, replays, connections, API destinations and partner sources come later.
EVENTS_OPS = Only({
    "PutRule", "DescribeRule", "DeleteRule", "EnableRule", "DisableRule", "ListRules",
    "PutTargets", "RemoveTargets", "ListTargetsByRule", "ListRuleNamesByTarget",
    "TagResource", "UntagResource", "ListTagsForResource",
})

# EC2 Auto Scaling (issue 17): what ECS capacity providers need of it: launch configurations,
# groups and their instances, scaling activities, lifecycle hooks (managed draining) and tags.
AUTOSCALING_OPS = Only({
    "CreateLaunchConfiguration", "DescribeLaunchConfigurations", "DeleteLaunchConfiguration",
    "CreateAutoScalingGroup", "UpdateAutoScalingGroup", "DescribeAutoScalingGroups",
    "DeleteAutoScalingGroup", "SetDesiredCapacity", "SetInstanceProtection",
    "TerminateInstanceInAutoScalingGroup", "DescribeAutoScalingInstances",
    "DescribeScalingActivities", "PutLifecycleHook", "DescribeLifecycleHooks",
    "DeleteLifecycleHook", "CompleteLifecycleAction", "RecordLifecycleActionHeartbeat",
    "CreateOrUpdateTags", "DeleteTags", "DescribeTags",
})

# The services whose structures also get a `json::WriteJson` writer: ECS, whose answers the
# front door renders on every request of a deploy loop and a dashboard.
WRITERS = {"ecs"}

# The one list of services Gantry serves: (module, botocore directory, API version, operations
# left out, or `Only` those kept).
SERVICES = [
    ("ecs", "ecs", "2014-11-13", ECS_SKIP_OPS),
    ("sts", "sts", "2011-06-15", set()),
    ("iam", "iam", "2010-05-08", IAM_OPS),
    ("secretsmanager", "secretsmanager", "2017-10-17", set()),
    ("ssm", "ssm", "2014-11-06", SSM_OPS),
    ("elbv2", "elbv2", "2015-12-01", ELBV2_OPS),
    ("acm", "acm", "2015-12-08", ACM_OPS),
    ("logs", "logs", "2014-03-28", LOGS_OPS),
    ("cloudwatch", "cloudwatch", "2010-08-01", CLOUDWATCH_OPS),
    ("appautoscaling", "application-autoscaling", "2016-02-06", APPSCALING_OPS),
    ("events", "events", "2015-10-07", EVENTS_OPS),
    ("scheduler", "scheduler", "2021-06-30", set()),
    ("autoscaling", "autoscaling", "2011-01-01", AUTOSCALING_OPS),
]

KEYWORDS = {"type", "override", "match", "ref", "mod", "use", "async", "await", "fn", "impl",
            "in", "loop", "move", "self", "static", "struct", "trait", "where", "yield", "box",
            "final", "macro", "priv", "virtual", "abstract", "become", "do", "try", "enum",
            "const", "crate", "dyn", "else", "extern", "false", "true", "for", "if", "let", "mut",
            "pub", "return", "super", "unsafe", "while", "break", "continue", "as", "gen"}
RESERVED_TYPES = {"Option", "Result", "Vec", "Box", "String", "Default"}


def snake(name):
    s = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", s)
    s = s.lower()
    return "r#" + s if s in KEYWORDS else s



def botocore_data():
    import botocore
    return os.path.join(os.path.dirname(botocore.__file__), "data")


def generate(module, directory, version, skip):
    path = os.path.join(botocore_data(), directory, version, "service-2.json.gz")
    model = json.load(gzip.open(path))
    shapes = model["shapes"]
    if isinstance(skip, Only):
        missing = skip.ops - set(model["operations"])
        assert not missing, f"{module}: no such operations {sorted(missing)}"
        ops = {n: o for n, o in model["operations"].items() if n in skip.ops}
    else:
        ops = {n: o for n, o in model["operations"].items() if n not in skip}
    # The query protocol has no unboxed members (its models predate `box`): an absent number or
    # flag is absent, not zero, and a service must tell the two apart (a weight of 0 is not an
    # unspecified weight).
    # A service that also speaks it (CloudWatch) is the same: a query client may leave any
    # member out, and Value 0 is not an absent Value.
    metadata = model["metadata"]
    query = "query" in metadata.get("protocols", [metadata.get("protocol")])

    reachable = []
    seen = set()
    model_shapes = {}

    def visit(name):
        if name in seen:
            return
        seen.add(name)
        s = shapes[name]
        model_shapes[name] = {k: v for k, v in s.items() if k != "documentation"}
        for m in model_shapes[name].get("members", {}).values():
            m.pop("documentation", None)
        t = s["type"]
        if t == "structure":
            for m in s["members"].values():
                visit(m["shape"])
            if not s.get("exception"):
                reachable.append(name)
        elif t == "list":
            visit(s["member"]["shape"])
        elif t == "map":
            visit(s["key"]["shape"])
            visit(s["value"]["shape"])

    for op in sorted(ops):
        for k in ("input", "output"):
            if k in ops[op]:
                visit(ops[op][k]["shape"])
        for e in ops[op].get("errors", []):
            visit(e["shape"])

    def rust_type(name):
        s = shapes[name]
        t = s["type"]
        if t == "string":
            return "String"
        if t == "integer":
            return "i32"
        if t == "long":
            return "i64"
        if t in ("double", "float"):
            return "f64"
        if t == "boolean":
            return "bool"
        if t == "timestamp":
            return "f64"
        if t == "blob":
            return "String"
        if t == "list":
            return f"Vec<{rust_type(s['member']['shape'])}>"
        if t == "map":
            return f"BTreeMap<String, {rust_type(s['value']['shape'])}>"
        if t == "structure":
            assert name not in RESERVED_TYPES, name
            return name
        raise ValueError(t)

    def writer(name, s, required):
        """The struct's `WriteJson`: each member as `,"name":value`, in serde's order (the
        model's), an absent optional member left out as serde's `skip_serializing_if` does."""
        w = [f"\nimpl WriteJson for {name} {{\n", "    fn write_json(&self, out: &mut Vec<u8>) {\n",
             "        let start = out.len();\n"]
        for mname, m in s["members"].items():
            assert re.fullmatch(r"[A-Za-z0-9_]+", mname), f"{name}.{mname} would need escaping"
            fname = snake(mname)
            key = f'b",\\"{mname}\\":"'
            optional = mname not in required and not (unboxed_primitive(m["shape"]) and not m.get("box"))
            if optional:
                w.append(f"        if let Some(v) = &self.{fname} {{\n")
                w.append(f"            out.extend_from_slice({key});\n")
                w.append("            v.write_json(out);\n")
                w.append("        }\n")
            else:
                w.append(f"        out.extend_from_slice({key});\n")
                w.append(f"        self.{fname}.write_json(out);\n")
        w.append("        close_object(out, start);\n")
        w.append("    }\n}\n")
        return "".join(w)

    def unboxed_primitive(name):
        s = shapes[name]
        return s["type"] in ("integer", "long", "double", "boolean") and not s.get("box") and not query

    sid = model["metadata"].get("serviceId", module)
    out = []
    out.append(f"// @generated by tools/gen-model.py from botocore {BOTOCORE}'s {sid} model. Do not edit.\n")
    out.append("#![allow(clippy::all, unused_imports)]\n")
    out.append("use serde::{Deserialize, Serialize};\nuse std::collections::BTreeMap;\n")
    writers = module in WRITERS
    if writers:
        out.append("use crate::json::{close_object, WriteJson};\n")
    out.append(f"\n/// Every operation of the {sid} API that this model covers.\n")
    out.append("pub const OPERATIONS: &[&str] = &[\n")
    for op in sorted(ops):
        out.append(f'    "{op}",\n')
    out.append("];\n")
    out.append(f"\n/// The trimmed botocore model of these operations (`models/{module}.json`).\n")
    out.append(f'pub const MODEL: &str = include_str!("../models/{module}.json");\n')

    for name in sorted(reachable):
        s = shapes[name]
        required = set(s.get("required", []))
        out.append("\n#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]\n")
        out.append(f"pub struct {name} {{\n")
        for mname, m in s["members"].items():
            fname = snake(mname)
            ty = rust_type(m["shape"])
            attrs = [f'rename = "{mname}"']
            if mname in required:
                pass
            elif unboxed_primitive(m["shape"]) and not m.get("box"):
                # A member marked `box` is optional even over a primitive shape: absent is not
                # zero (canaryBakeTimeInMinutes defaults to 10).
                attrs.append("default")
            else:
                ty = f"Option<{ty}>"
                attrs.append('default, skip_serializing_if = "Option::is_none"')
            out.append(f"    #[serde({', '.join(attrs)})]\n")
            out.append(f"    pub {fname}: {ty},\n")
        out.append("}\n")
        if writers:
            out.append(writer(name, s, required))
    if writers:
        out.append("\n/// Structure `name` read from `doc`, written by its `WriteJson` and by serde_json (for the\n")
        out.append("/// model crate's test); `None` for another name or a document that does not parse.\n")
        out.append("#[cfg(test)]\n")
        out.append("pub(crate) fn write_both(name: &str, doc: &str) -> Option<(Vec<u8>, Vec<u8>)> {\n")
        out.append("    fn both<T: WriteJson + Serialize + for<'de> Deserialize<'de>>(doc: &str) -> Option<(Vec<u8>, Vec<u8>)> {\n")
        out.append("        let v: T = serde_json::from_str(doc).ok()?;\n")
        out.append("        Some((crate::json::to_vec(&v), serde_json::to_vec(&v).ok()?))\n")
        out.append("    }\n")
        out.append("    match name {\n")
        for name in sorted(reachable):
            out.append(f'        "{name}" => both::<{name}>(doc),\n')
        out.append("        _ => None,\n")
        out.append("    }\n")
        out.append("}\n")
    crate = os.path.join(ROOT, "crates", "gantry-model")
    with open(os.path.join(crate, "src", f"{module}.rs"), "w") as f:
        f.write("".join(out))
    trimmed = {
        "version": model.get("version", "2.0"),
        "metadata": model["metadata"],
        "operations": {
            n: {k: v for k, v in o.items() if k != "documentation"} for n, o in sorted(ops.items())
        },
        "shapes": dict(sorted(model_shapes.items())),
    }
    os.makedirs(os.path.join(crate, "models"), exist_ok=True)
    with open(os.path.join(crate, "models", f"{module}.json"), "w") as f:
        json.dump(trimmed, f, separators=(",", ":"), sort_keys=True)
        f.write("\n")


def main():
    import botocore
    if botocore.__version__ != BOTOCORE:
        sys.exit(f"gen-model: botocore {BOTOCORE} is pinned, this is {botocore.__version__}")
    for module, directory, version, skip in SERVICES:
        generate(module, directory, version, skip)


if __name__ == "__main__":
    main()
