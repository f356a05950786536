//! IAM's operations: input and output in the JSON form of `gantry_model::iam`'s shapes.

use crate::{
    AccessKeyRecord, Entity, Iam, Kind, ManagedPolicy, access_key_key, entity_key, internal, managed,
    policy_key,
};
use gantry_core::ServiceError;
use gantry_policy::{Context, Decision, Kind as DocKind, Policy, PolicySet, PrincipalId, Request};
use gantry_runtime::records;
use gantry_store::Txn;
use serde_json::{Map, Value, json};

/// The request: its members by name.
struct Input(Map<String, Value>);

impl Input {
    fn opt(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(Value::as_str)
    }
    fn req(&self, k: &str) -> Result<&str, ServiceError> {
        self.opt(k).ok_or_else(|| {
            validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: Member must not be null",
                lower_first(k)
            ))
        })
    }
    fn name(&self, k: &str) -> Result<&str, ServiceError> {
        let v = self.req(k)?;
        check_name(k, v)?;
        Ok(v)
    }
    fn strings(&self, k: &str) -> Vec<String> {
        self.0
            .get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }
    fn tags(&self) -> Vec<(String, String)> {
        self.0
            .get("Tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|t| {
                        Some((t.get("Key")?.as_str()?.to_string(), t.get("Value")?.as_str()?.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    fn max_items(&self) -> usize {
        self.0.get("MaxItems").and_then(Value::as_i64).map_or(100, |n| n.clamp(1, 1000) as usize)
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_ascii_lowercase().to_string() + c.as_str()).unwrap_or_default()
}

fn validation(m: impl Into<String>) -> ServiceError {
    ServiceError::sender("ValidationError", m)
}
fn no_such(m: impl Into<String>) -> ServiceError {
    ServiceError::sender("NoSuchEntity", m).with_status(404)
}
fn exists(m: impl Into<String>) -> ServiceError {
    ServiceError::sender("EntityAlreadyExists", m).with_status(409)
}
fn conflict(m: impl Into<String>) -> ServiceError {
    ServiceError::sender("DeleteConflict", m).with_status(409)
}
fn limit(m: impl Into<String>) -> ServiceError {
    ServiceError::sender("LimitExceeded", m).with_status(409)
}
fn invalid_input(m: impl Into<String>) -> ServiceError {
    ServiceError::sender("InvalidInput", m)
}
fn malformed(e: gantry_policy::ParseError) -> ServiceError {
    ServiceError::sender("MalformedPolicyDocument", e.0)
}
fn not_found(kind: Kind, name: &str) -> ServiceError {
    match kind {
        Kind::InstanceProfile => no_such(format!("Instance Profile {name} cannot be found.")),
        _ => no_such(format!("The {} with name {name} cannot be found.", kind.noun())),
    }
}

/// IAM's names: 1-64 (roles 64, users 64, groups 128, policies 128) of `[\w+=,.@-]`.
fn check_name(member: &str, v: &str) -> Result<(), ServiceError> {
    let max = if member == "GroupName" || member == "PolicyName" { 128 } else { 64 };
    if v.is_empty()
        || v.len() > max
        || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b))
    {
        return Err(validation(format!(
            "1 validation error detected: Value '{v}' at '{}' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+",
            lower_first(member)
        )));
    }
    Ok(())
}

fn check_path(p: &str) -> Result<(), ServiceError> {
    if !(p.starts_with('/') && p.ends_with('/')) || p.len() > 512 || p.contains("//") {
        return Err(validation(format!(
            "The specified value for path is invalid. It must begin and end with / and contain only alphanumeric characters and/or / characters. (got {p})"
        )));
    }
    Ok(())
}

/// IAM returns policy documents URL-encoded (RFC 3986), as AWS does; SDKs decode them.
fn encode_doc(doc: &str) -> String {
    let mut out = String::with_capacity(doc.len() * 2);
    for b in doc.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn tags_json(tags: &[(String, String)]) -> Value {
    Value::Array(tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect())
}

fn merge_tags(into: &mut Vec<(String, String)>, new: Vec<(String, String)>) -> Result<(), ServiceError> {
    for (k, v) in new {
        if k.is_empty() || k.len() > 128 || v.len() > 256 {
            return Err(validation(format!(
                "Invalid tag: key {k:?} must have 1-128 characters, its value at most 256."
            )));
        }
        match into.iter_mut().find(|(x, _)| *x == k) {
            Some(t) => t.1 = v,
            None => into.push((k, v)),
        }
    }
    if into.len() > 50 {
        return Err(limit("The number of tags has reached the maximum limit."));
    }
    Ok(())
}

fn user_json(e: &Entity, with_tags: bool) -> Value {
    let mut v =
        json!({"Path": e.path, "UserName": e.name, "UserId": e.id, "Arn": e.arn, "CreateDate": e.created});
    if with_tags && !e.tags.is_empty() {
        v["Tags"] = tags_json(&e.tags);
    }
    v
}
fn group_json(e: &Entity) -> Value {
    json!({"Path": e.path, "GroupName": e.name, "GroupId": e.id, "Arn": e.arn, "CreateDate": e.created})
}
fn role_json(e: &Entity, full: bool) -> Value {
    let mut v = json!({"Path": e.path, "RoleName": e.name, "RoleId": e.id, "Arn": e.arn, "CreateDate": e.created,
        "AssumeRolePolicyDocument": encode_doc(e.trust.as_deref().unwrap_or_default()),
        "MaxSessionDuration": e.max_session.unwrap_or(3600)});
    if let Some(d) = &e.description {
        v["Description"] = json!(d);
    }
    if full {
        if !e.tags.is_empty() {
            v["Tags"] = tags_json(&e.tags);
        }
        v["RoleLastUsed"] = json!({});
    }
    v
}
fn policy_json(p: &ManagedPolicy, attachments: usize) -> Value {
    let mut v = json!({"PolicyName": p.name, "PolicyId": p.id, "Arn": p.arn, "Path": p.path,
        "DefaultVersionId": p.default_version, "AttachmentCount": attachments,
        "PermissionsBoundaryUsageCount": 0, "IsAttachable": true, "CreateDate": p.created, "UpdateDate": p.updated});
    if let Some(d) = &p.description {
        v["Description"] = json!(d);
    }
    if !p.tags.is_empty() {
        v["Tags"] = tags_json(&p.tags);
    }
    v
}

/// A page of `items` (sorted by `key`) after `Marker`, `MaxItems` long, under `member`.
fn page<T>(
    input: &Input,
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    render: impl Fn(&T) -> Value,
    member: &str,
) -> Value {
    items.sort_by_key(&key);
    let after = input.opt("Marker").map(str::to_string);
    let start = after.map_or(0, |m| items.iter().position(|i| key(i) > m).unwrap_or(items.len()));
    let max = input.max_items();
    let end = (start + max).min(items.len());
    let mut out = json!({ member: items[start..end].iter().map(&render).collect::<Vec<_>>(), "IsTruncated": end < items.len() });
    if end < items.len() {
        out["Marker"] = json!(key(&items[end - 1]));
    }
    out
}

impl Iam {
    /// Runs one operation for `caller`'s account: its input as JSON, its output as JSON.
    pub async fn call(
        &self,
        caller: &gantry_ports::Principal,
        op: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let input = if input.is_empty() { b"{}".as_slice() } else { input };
        let Value::Object(map) = serde_json::from_slice(input).map_err(|e| validation(e.to_string()))? else {
            return Err(validation("the request is not an object"));
        };
        let i = Input(map);
        let a = caller.account.as_str();
        let out = match Family::of(op) {
            Some(Family::Users) => self.user_op(caller, op, &i).await?,
            Some(Family::Groups) => self.group_op(a, op, &i).await?,
            Some(Family::AccessKeys) => self.access_key_op(caller, op, &i).await?,
            Some(Family::Roles) => self.role_op(a, op, &i).await?,
            Some(Family::InstanceProfiles) => self.instance_profile_op(a, op, &i).await?,
            Some(Family::Policies) => self.policy_op(a, op, &i).await?,
            None => unknown_op(op)?,
        };
        serde_json::to_vec(&out).map_err(internal)
    }

    /// Users: `CreateUser` ... `DeleteUser`, their attached and inline policies and their tags.
    async fn user_op(
        &self,
        caller: &gantry_ports::Principal,
        op: &str,
        i: &Input,
    ) -> Result<Value, ServiceError> {
        let a = caller.account.as_str();
        Ok(match op {
            "CreateUser" => self.create_entity(a, Kind::User, i).await?,
            "GetUser" => self.get_user(caller, i)?,
            "ListUsers" => self.list_entities(a, Kind::User, i, "Users", |e| user_json(e, false))?,
            "UpdateUser" => self.update_user(a, i).await?,
            "DeleteUser" => self.delete_entity(a, Kind::User, i).await?,
            "AttachUserPolicy" | "DetachUserPolicy" => {
                self.attach(a, Kind::User, i, op.starts_with("Attach")).await?
            }
            "ListAttachedUserPolicies" => self.list_attached(a, Kind::User, i)?,
            "PutUserPolicy" | "GetUserPolicy" | "ListUserPolicies" | "DeleteUserPolicy" => {
                self.inline(a, Kind::User, i, &op[..op.len() - "UserPolicy".len()]).await?
            }
            "TagUser" | "UntagUser" | "ListUserTags" => self.tags(a, Kind::User, i, op).await?,
            _ => unknown_op(op)?,
        })
    }

    /// Groups: `CreateGroup` ... `DeleteGroup`, their members and their policies.
    async fn group_op(&self, a: &str, op: &str, i: &Input) -> Result<Value, ServiceError> {
        Ok(match op {
            "CreateGroup" => self.create_entity(a, Kind::Group, i).await?,
            "GetGroup" => self.get_group(a, i)?,
            "ListGroups" => self.list_entities(a, Kind::Group, i, "Groups", group_json)?,
            "ListGroupsForUser" => self.list_groups_for_user(a, i)?,
            "DeleteGroup" => self.delete_entity(a, Kind::Group, i).await?,
            "AddUserToGroup" | "RemoveUserFromGroup" => self.membership(a, i, op == "AddUserToGroup").await?,
            "AttachGroupPolicy" | "DetachGroupPolicy" => {
                self.attach(a, Kind::Group, i, op.starts_with("Attach")).await?
            }
            "ListAttachedGroupPolicies" => self.list_attached(a, Kind::Group, i)?,
            "PutGroupPolicy" | "GetGroupPolicy" | "ListGroupPolicies" | "DeleteGroupPolicy" => {
                self.inline(a, Kind::Group, i, &op[..op.len() - "GroupPolicy".len()]).await?
            }
            _ => unknown_op(op)?,
        })
    }

    /// Access keys: `CreateAccessKey` ... `DeleteAccessKey` and `GetAccessKeyLastUsed`.
    async fn access_key_op(
        &self,
        caller: &gantry_ports::Principal,
        op: &str,
        i: &Input,
    ) -> Result<Value, ServiceError> {
        Ok(match op {
            "CreateAccessKey" => self.create_access_key(caller, i).await?,
            "ListAccessKeys" => self.list_access_keys(caller, i)?,
            "UpdateAccessKey" | "DeleteAccessKey" => {
                self.change_access_key(caller, i, op == "DeleteAccessKey").await?
            }
            "GetAccessKeyLastUsed" => self.access_key_last_used(caller, i)?,
            _ => unknown_op(op)?,
        })
    }

    /// Roles: `CreateRole` ... `DeleteRole`, service-linked roles, their policies and tags.
    async fn role_op(&self, a: &str, op: &str, i: &Input) -> Result<Value, ServiceError> {
        Ok(match op {
            "CreateRole" => self.create_entity(a, Kind::Role, i).await?,
            "GetRole" => {
                let name = i.name("RoleName")?;
                let (e, _) = self.entity(a, Kind::Role, name)?.ok_or_else(|| not_found(Kind::Role, name))?;
                json!({"Role": role_json(&e, true)})
            }
            "ListRoles" => self.list_entities(a, Kind::Role, i, "Roles", |e| role_json(e, false))?,
            "UpdateRole" | "UpdateAssumeRolePolicy" => self.update_role(a, i, op).await?,
            "DeleteRole" => self.delete_entity(a, Kind::Role, i).await?,
            "CreateServiceLinkedRole" => self.create_service_linked_role(a, i).await?,
            "AttachRolePolicy" | "DetachRolePolicy" => {
                self.attach(a, Kind::Role, i, op.starts_with("Attach")).await?
            }
            "ListAttachedRolePolicies" => self.list_attached(a, Kind::Role, i)?,
            "PutRolePolicy" | "GetRolePolicy" | "ListRolePolicies" | "DeleteRolePolicy" => {
                self.inline(a, Kind::Role, i, &op[..op.len() - "RolePolicy".len()]).await?
            }
            "TagRole" | "UntagRole" | "ListRoleTags" => self.tags(a, Kind::Role, i, op).await?,
            _ => unknown_op(op)?,
        })
    }

    /// Instance profiles: `CreateInstanceProfile` ... `DeleteInstanceProfile` and their role.
    async fn instance_profile_op(&self, a: &str, op: &str, i: &Input) -> Result<Value, ServiceError> {
        Ok(match op {
            "CreateInstanceProfile" => self.create_entity(a, Kind::InstanceProfile, i).await?,
            "GetInstanceProfile" => {
                let name = i.name("InstanceProfileName")?;
                let (e, _) = self
                    .entity(a, Kind::InstanceProfile, name)?
                    .ok_or_else(|| not_found(Kind::InstanceProfile, name))?;
                json!({"InstanceProfile": self.profile_json(a, &e)})
            }
            "ListInstanceProfiles" => {
                let all = self.entities(a, Kind::InstanceProfile)?;
                let prefix = i.opt("PathPrefix").unwrap_or("/").to_string();
                let all: Vec<Entity> = all.into_iter().filter(|e| e.path.starts_with(&prefix)).collect();
                page(i, all, |e| e.name.clone(), |e| self.profile_json(a, e), "InstanceProfiles")
            }
            "ListInstanceProfilesForRole" => {
                let name = i.name("RoleName")?;
                self.entity(a, Kind::Role, name)?.ok_or_else(|| not_found(Kind::Role, name))?;
                let all: Vec<Entity> = self
                    .entities(a, Kind::InstanceProfile)?
                    .into_iter()
                    .filter(|p| p.roles.iter().any(|r| r.eq_ignore_ascii_case(name)))
                    .collect();
                page(i, all, |e| e.name.clone(), |e| self.profile_json(a, e), "InstanceProfiles")
            }
            "DeleteInstanceProfile" => self.delete_entity(a, Kind::InstanceProfile, i).await?,
            "AddRoleToInstanceProfile" | "RemoveRoleFromInstanceProfile" => {
                self.profile_role(a, i, op == "AddRoleToInstanceProfile").await?
            }
            _ => unknown_op(op)?,
        })
    }

    /// Managed policies: `CreatePolicy` ... `DeletePolicy`, their versions and tags, and the
    /// policy simulator.
    async fn policy_op(&self, a: &str, op: &str, i: &Input) -> Result<Value, ServiceError> {
        Ok(match op {
            "CreatePolicy" => self.create_policy(a, i).await?,
            "GetPolicy" => {
                let arn = i.req("PolicyArn")?;
                if let Some((name, path, desc, _)) = managed::find(arn) {
                    json!({"Policy": self.aws_policy_json(a, name, path, desc)?})
                } else {
                    let (p, _) = self.policy(a, arn)?;
                    json!({"Policy": policy_json(&p, self.attachments(a, &p.arn)?)})
                }
            }
            "ListPolicies" => self.list_policies(a, i)?,
            "DeletePolicy" => self.delete_policy(a, i).await?,
            "CreatePolicyVersion" => self.create_policy_version(a, i).await?,
            "GetPolicyVersion" => self.get_policy_version(a, i)?,
            "ListPolicyVersions" => self.list_policy_versions(a, i)?,
            "DeletePolicyVersion" | "SetDefaultPolicyVersion" => self.policy_version_change(a, i, op).await?,
            "TagPolicy" | "UntagPolicy" | "ListPolicyTags" => self.policy_tags(a, i, op).await?,
            "SimulatePrincipalPolicy" => self.simulate(a, i)?,
            _ => unknown_op(op)?,
        })
    }

    fn get_user(&self, caller: &gantry_ports::Principal, i: &Input) -> Result<Value, ServiceError> {
        let name = match i.opt("UserName") {
            Some(n) => n.to_string(),
            None => match &caller.kind {
                gantry_ports::PrincipalKind::User { name } => name.clone(),
                _ => {
                    return Err(validation("Must specify userName when calling with non-User credentials"));
                }
            },
        };
        let (e, _) =
            self.entity(&caller.account, Kind::User, &name)?.ok_or_else(|| not_found(Kind::User, &name))?;
        Ok(json!({"User": user_json(&e, true)}))
    }

    /// `GetGroup`: the group and a page of its members.
    fn get_group(&self, a: &str, i: &Input) -> Result<Value, ServiceError> {
        let name = i.name("GroupName")?;
        let (g, _) = self.entity(a, Kind::Group, name)?.ok_or_else(|| not_found(Kind::Group, name))?;
        let members: Vec<Entity> = self
            .entities(a, Kind::User)?
            .into_iter()
            .filter(|u| u.groups.iter().any(|x| x.eq_ignore_ascii_case(&g.name)))
            .collect();
        let mut out = page(i, members, |u| u.name.clone(), |u| user_json(u, false), "Users");
        out["Group"] = group_json(&g);
        Ok(out)
    }

    fn list_groups_for_user(&self, a: &str, i: &Input) -> Result<Value, ServiceError> {
        let name = i.name("UserName")?;
        let (u, _) = self.entity(a, Kind::User, name)?.ok_or_else(|| not_found(Kind::User, name))?;
        let groups: Vec<Entity> = u
            .groups
            .iter()
            .filter_map(|g| self.entity(a, Kind::Group, g).ok().flatten().map(|x| x.0))
            .collect();
        Ok(page(i, groups, |g| g.name.clone(), group_json, "Groups"))
    }

    fn list_access_keys(&self, caller: &gantry_ports::Principal, i: &Input) -> Result<Value, ServiceError> {
        let name = self.user_of(caller, i)?;
        let (u, _) =
            self.entity(&caller.account, Kind::User, &name)?.ok_or_else(|| not_found(Kind::User, &name))?;
        let keys: Vec<(String, AccessKeyRecord)> = u
            .access_keys
            .iter()
            .filter_map(|id| {
                self.read::<AccessKeyRecord>(&access_key_key(id)).ok().flatten().map(|r| (id.clone(), r.0))
            })
            .collect();
        let user = u.name.clone();
        Ok(page(
            i,
            keys,
            |k| k.0.clone(),
            |(id, r)| json!({"UserName": user, "AccessKeyId": id, "Status": r.status, "CreateDate": r.created}),
            "AccessKeyMetadata",
        ))
    }

    fn access_key_last_used(
        &self,
        caller: &gantry_ports::Principal,
        i: &Input,
    ) -> Result<Value, ServiceError> {
        let id = i.req("AccessKeyId")?;
        let rec =
            self.read::<AccessKeyRecord>(&access_key_key(id))?.filter(|(r, _)| r.account == caller.account);
        let Some((rec, _)) = rec else {
            return Err(ServiceError::sender(
                "AccessDenied",
                format!(
                    "User: {} is not authorized to perform: iam:GetAccessKeyLastUsed on resource: access key {id}",
                    caller.arn
                ),
            )
            .with_status(403));
        };
        Ok(json!({"UserName": rec.user, "AccessKeyLastUsed": {"ServiceName": "N/A", "Region": "N/A"}}))
    }

    fn get_policy_version(&self, a: &str, i: &Input) -> Result<Value, ServiceError> {
        let arn = i.req("PolicyArn")?;
        let vid = i.req("VersionId")?;
        if let Some((_, _, _, doc)) = managed::find(arn) {
            if vid != "v1" {
                return Err(no_such(format!(
                    "Policy {arn} version {vid} does not exist or is not attachable."
                )));
            }
            return Ok(
                json!({"PolicyVersion": {"Document": encode_doc(doc), "VersionId": "v1", "IsDefaultVersion": true, "CreateDate": 0.0}}),
            );
        }
        let (p, _) = self.policy(a, arn)?;
        let (doc, at) = p.versions.get(vid).ok_or_else(|| {
            no_such(format!("Policy {arn} version {vid} does not exist or is not attachable."))
        })?;
        Ok(
            json!({"PolicyVersion": {"Document": encode_doc(doc), "VersionId": vid, "IsDefaultVersion": p.default_version == vid, "CreateDate": at}}),
        )
    }

    fn list_policy_versions(&self, a: &str, i: &Input) -> Result<Value, ServiceError> {
        let arn = i.req("PolicyArn")?;
        if managed::find(arn).is_some() {
            return Ok(
                json!({"Versions": [{"VersionId": "v1", "IsDefaultVersion": true, "CreateDate": 0.0}], "IsTruncated": false}),
            );
        }
        let (p, _) = self.policy(a, arn)?;
        let mut vs: Vec<(&String, &(String, f64))> = p.versions.iter().collect();
        vs.sort_by(|x, y| y.1.1.total_cmp(&x.1.1).then(y.0.cmp(x.0)));
        Ok(
            json!({"Versions": vs.iter().map(|(id, (_, at))| json!({"VersionId": id, "IsDefaultVersion": **id == p.default_version, "CreateDate": at})).collect::<Vec<_>>(), "IsTruncated": false}),
        )
    }

    fn user_of(&self, caller: &gantry_ports::Principal, i: &Input) -> Result<String, ServiceError> {
        match (i.opt("UserName"), &caller.kind) {
            (Some(n), _) => {
                check_name("UserName", n)?;
                Ok(n.to_string())
            }
            (None, gantry_ports::PrincipalKind::User { name }) => Ok(name.clone()),
            _ => Err(validation("Must specify userName when calling with non-User credentials")),
        }
    }

    fn list_entities(
        &self,
        a: &str,
        kind: Kind,
        i: &Input,
        member: &str,
        render: impl Fn(&Entity) -> Value,
    ) -> Result<Value, ServiceError> {
        let prefix = i.opt("PathPrefix").unwrap_or("/").to_string();
        let all: Vec<Entity> =
            self.entities(a, kind)?.into_iter().filter(|e| e.path.starts_with(&prefix)).collect();
        Ok(page(i, all, |e| e.name.to_ascii_lowercase(), render, member))
    }

    async fn create_entity(&self, a: &str, kind: Kind, i: &Input) -> Result<Value, ServiceError> {
        let member = match kind {
            Kind::User => "UserName",
            Kind::Group => "GroupName",
            Kind::Role => "RoleName",
            Kind::InstanceProfile => "InstanceProfileName",
        };
        let name = i.name(member)?;
        let path = i.opt("Path").unwrap_or("/");
        check_path(path)?;
        let mut e = Entity {
            name: name.to_string(),
            path: path.to_string(),
            id: self.unique_id(kind.id_prefix()),
            arn: format!("arn:aws:iam::{a}:{}{path}{name}", kind.dir()),
            created: self.now(),
            tags: Vec::new(),
            ..Default::default()
        };
        merge_tags(&mut e.tags, i.tags())?;
        if kind == Kind::Role {
            let trust = i.req("AssumeRolePolicyDocument")?;
            Policy::parse(trust, DocKind::Trust).map_err(malformed)?;
            e.trust = Some(trust.to_string());
            e.description = i.opt("Description").map(str::to_string);
            let max = i.0.get("MaxSessionDuration").and_then(Value::as_i64).unwrap_or(3600);
            if !(3600..=43200).contains(&max) {
                return Err(validation(format!(
                    "1 validation error detected: Value '{max}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value less than or equal to 43200"
                )));
            }
            e.max_session = Some(max);
        }
        let key = entity_key(a, kind, name);
        if !self.commit(Txn::new().when(&key, 0).put(&key, records::encode(&e))).await? {
            return Err(match kind {
                Kind::InstanceProfile => exists(format!("Instance Profile {name} already exists.")),
                Kind::User => exists(format!("User with name {name} already exists.")),
                Kind::Group => exists(format!("Group with name {name} already exists.")),
                Kind::Role => exists(format!("Role with name {name} already exists.")),
            });
        }
        Ok(match kind {
            Kind::User => json!({"User": user_json(&e, true)}),
            Kind::Group => json!({"Group": group_json(&e)}),
            Kind::Role => json!({"Role": role_json(&e, true)}),
            Kind::InstanceProfile => json!({"InstanceProfile": self.profile_json(a, &e)}),
        })
    }

    fn profile_json(&self, a: &str, e: &Entity) -> Value {
        let roles: Vec<Value> = e
            .roles
            .iter()
            .filter_map(|r| self.entity(a, Kind::Role, r).ok().flatten())
            .map(|(r, _)| role_json(&r, false))
            .collect();
        json!({"Path": e.path, "InstanceProfileName": e.name, "InstanceProfileId": e.id, "Arn": e.arn, "CreateDate": e.created, "Roles": roles})
    }

    /// Reads an entity, changes it and writes it back under compare-and-swap, retrying.
    async fn update<T>(
        &self,
        a: &str,
        kind: Kind,
        name: &str,
        mut change: impl FnMut(&mut Entity) -> Result<T, ServiceError>,
    ) -> Result<(Entity, T), ServiceError> {
        loop {
            let (mut e, rev) = self.entity(a, kind, name)?.ok_or_else(|| not_found(kind, name))?;
            let out = change(&mut e)?;
            let key = entity_key(a, kind, name);
            if self.commit(Txn::new().when(&key, rev).put(&key, records::encode(&e))).await? {
                return Ok((e, out));
            }
        }
    }

    async fn update_user(&self, a: &str, i: &Input) -> Result<Value, ServiceError> {
        let name = i.name("UserName")?;
        if let Some(p) = i.opt("NewPath") {
            check_path(p)?;
        }
        let new_name = i.opt("NewUserName");
        if let Some(n) = new_name {
            check_name("NewUserName", n)?;
        }
        loop {
            let (mut e, rev) =
                self.entity(a, Kind::User, name)?.ok_or_else(|| not_found(Kind::User, name))?;
            if let Some(p) = i.opt("NewPath") {
                e.path = p.to_string();
            }
            let old_key = entity_key(a, Kind::User, name);
            let mut txn = Txn::new().when(&old_key, rev);
            if let Some(n) = new_name.filter(|n| !n.eq_ignore_ascii_case(name)) {
                e.name = n.to_string();
                let new_key = entity_key(a, Kind::User, n);
                if self.store.get(&new_key).is_some() {
                    return Err(exists(format!("User with name {n} already exists.")));
                }
                // The access keys name their user.
                for id in &e.access_keys {
                    if let Some((mut k, krev)) = self.read::<AccessKeyRecord>(&access_key_key(id))? {
                        k.user = n.to_string();
                        txn = txn.when(access_key_key(id), krev).put(access_key_key(id), records::encode(&k));
                    }
                }
                txn = txn.delete(&old_key).when(&new_key, 0);
                e.arn = format!("arn:aws:iam::{a}:user{}{}", e.path, e.name);
                txn = txn.put(new_key, records::encode(&e));
            } else {
                if let Some(n) = new_name {
                    e.name = n.to_string();
                }
                e.arn = format!("arn:aws:iam::{a}:user{}{}", e.path, e.name);
                txn = txn.put(&old_key, records::encode(&e));
            }
            if self.commit(txn).await? {
                return Ok(json!({}));
            }
        }
    }

    async fn delete_entity(&self, a: &str, kind: Kind, i: &Input) -> Result<Value, ServiceError> {
        let member = match kind {
            Kind::User => "UserName",
            Kind::Group => "GroupName",
            Kind::Role => "RoleName",
            Kind::InstanceProfile => "InstanceProfileName",
        };
        let name = i.name(member)?;
        loop {
            let (e, rev) = self.entity(a, kind, name)?.ok_or_else(|| not_found(kind, name))?;
            if !e.access_keys.is_empty() {
                return Err(conflict("Cannot delete entity, must delete access keys first."));
            }
            if !e.inline.is_empty() {
                return Err(conflict("Cannot delete entity, must delete policies first."));
            }
            if !e.attached.is_empty() {
                return Err(conflict("Cannot delete entity, must detach all policies first."));
            }
            if !e.groups.is_empty() {
                return Err(conflict("Cannot delete entity, must remove user from all groups first."));
            }
            if !e.roles.is_empty() {
                return Err(conflict("Cannot delete entity, must remove roles from instance profile first."));
            }
            if kind == Kind::Group
                && self
                    .entities(a, Kind::User)?
                    .iter()
                    .any(|u| u.groups.iter().any(|g| g.eq_ignore_ascii_case(name)))
            {
                return Err(conflict("Cannot delete entity, must remove users from group first."));
            }
            if kind == Kind::Role
                && self
                    .entities(a, Kind::InstanceProfile)?
                    .iter()
                    .any(|p| p.roles.iter().any(|r| r.eq_ignore_ascii_case(name)))
            {
                return Err(conflict("Cannot delete entity, must remove roles from instance profile first."));
            }
            let key = entity_key(a, kind, name);
            if self.commit(Txn::new().when(&key, rev).delete(&key)).await? {
                return Ok(json!({}));
            }
        }
    }

    async fn membership(&self, a: &str, i: &Input, add: bool) -> Result<Value, ServiceError> {
        let group = i.name("GroupName")?;
        let user = i.name("UserName")?;
        let (g, _) = self.entity(a, Kind::Group, group)?.ok_or_else(|| not_found(Kind::Group, group))?;
        self.update(a, Kind::User, user, |u| {
            let had = u.groups.iter().any(|x| x.eq_ignore_ascii_case(&g.name));
            if add && !had {
                u.groups.push(g.name.clone());
            } else if !add {
                if !had {
                    return Err(no_such(format!(
                        "The user with name {user} cannot be found in group {group}."
                    )));
                }
                u.groups.retain(|x| !x.eq_ignore_ascii_case(&g.name));
            }
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }

    async fn create_access_key(
        &self,
        caller: &gantry_ports::Principal,
        i: &Input,
    ) -> Result<Value, ServiceError> {
        let a = caller.account.as_str();
        let name = self.user_of(caller, i)?;
        loop {
            let (mut u, rev) =
                self.entity(a, Kind::User, &name)?.ok_or_else(|| not_found(Kind::User, &name))?;
            if u.access_keys.len() >= 2 {
                return Err(limit("Cannot exceed quota for AccessKeysPerUser: 2"));
            }
            let id = self.secrets.access_key_id("AKIA");
            let secret = self.secrets.secret_access_key();
            let now = self.now();
            let rec = AccessKeyRecord {
                account: a.to_string(),
                user: u.name.clone(),
                sealed: self.sealer.seal(&access_key_key(&id), secret.expose().as_bytes()),
                status: "Active".into(),
                created: now,
            };
            u.access_keys.push(id.clone());
            let key = entity_key(a, Kind::User, &name);
            let txn = Txn::new()
                .when(&key, rev)
                .put(&key, records::encode(&u))
                .when(access_key_key(&id), 0)
                .put(access_key_key(&id), records::encode(&rec));
            if self.commit(txn).await? {
                return Ok(json!({"AccessKey": {"UserName": u.name, "AccessKeyId": id, "Status": "Active",
                    "SecretAccessKey": secret.expose(), "CreateDate": now}}));
            }
        }
    }

    async fn change_access_key(
        &self,
        caller: &gantry_ports::Principal,
        i: &Input,
        delete: bool,
    ) -> Result<Value, ServiceError> {
        let a = caller.account.as_str();
        let name = self.user_of(caller, i)?;
        let id = i.req("AccessKeyId")?;
        let status = if delete {
            None
        } else {
            let s = i.req("Status")?;
            if s != "Active" && s != "Inactive" {
                return Err(validation(format!(
                    "1 validation error detected: Value '{s}' at 'status' failed to satisfy constraint: Member must satisfy enum value set: [Active, Inactive]"
                )));
            }
            Some(s)
        };
        loop {
            let (mut u, urev) =
                self.entity(a, Kind::User, &name)?.ok_or_else(|| not_found(Kind::User, &name))?;
            let Some((mut k, krev)) = self
                .read::<AccessKeyRecord>(&access_key_key(id))?
                .filter(|(k, _)| k.account == a && k.user.eq_ignore_ascii_case(&u.name))
            else {
                return Err(no_such(format!("The Access Key with id {id} cannot be found.")));
            };
            let kkey = access_key_key(id);
            let txn = match status {
                Some(s) => {
                    k.status = s.to_string();
                    Txn::new().when(&kkey, krev).put(&kkey, records::encode(&k))
                }
                None => {
                    u.access_keys.retain(|x| x != id);
                    let ukey = entity_key(a, Kind::User, &name);
                    Txn::new()
                        .when(&kkey, krev)
                        .delete(&kkey)
                        .when(&ukey, urev)
                        .put(&ukey, records::encode(&u))
                }
            };
            if self.commit(txn).await? {
                return Ok(json!({}));
            }
        }
    }

    async fn update_role(&self, a: &str, i: &Input, op: &str) -> Result<Value, ServiceError> {
        let name = i.name("RoleName")?;
        let trust = if op == "UpdateAssumeRolePolicy" {
            let doc = i.req("PolicyDocument")?;
            Policy::parse(doc, DocKind::Trust).map_err(malformed)?;
            Some(doc.to_string())
        } else {
            None
        };
        let max = i.0.get("MaxSessionDuration").and_then(Value::as_i64);
        if let Some(m) = max
            && !(3600..=43200).contains(&m)
        {
            return Err(validation(format!(
                "1 validation error detected: Value '{m}' at 'maxSessionDuration' failed to satisfy constraint: Member must have value less than or equal to 43200"
            )));
        }
        self.update(a, Kind::Role, name, |r| {
            if let Some(t) = &trust {
                r.trust = Some(t.clone());
            }
            if let Some(d) = i.opt("Description") {
                r.description = Some(d.to_string());
            }
            if let Some(m) = max {
                r.max_session = Some(m);
            }
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }

    async fn create_service_linked_role(&self, a: &str, i: &Input) -> Result<Value, ServiceError> {
        let service = i.req("AWSServiceName")?;
        let (name, policy) = match service {
            "ecs.amazonaws.com" => ("AWSServiceRoleForECS", "AmazonECSServiceRolePolicy"),
            "elasticloadbalancing.amazonaws.com" => {
                ("AWSServiceRoleForElasticLoadBalancing", "AmazonECSServiceRolePolicy")
            }
            _ => {
                return Err(invalid_input(format!(
                    "Service role name {service} has not been defined for this service."
                )));
            }
        };
        let path = format!("/aws-service-role/{service}/");
        let trust = format!(
            r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"{service}"}},"Action":"sts:AssumeRole"}}]}}"#
        );
        let e = Entity {
            name: name.to_string(),
            path: path.clone(),
            id: self.unique_id("AROA"),
            arn: format!("arn:aws:iam::{a}:role{path}{name}"),
            created: self.now(),
            trust: Some(trust),
            description: i.opt("Description").map(str::to_string),
            max_session: Some(3600),
            attached: vec![managed::arn("/aws-service-role/", policy)],
            ..Default::default()
        };
        let key = entity_key(a, Kind::Role, name);
        if !self.commit(Txn::new().when(&key, 0).put(&key, records::encode(&e))).await? {
            return Err(invalid_input(format!(
                "Service role name {name} has been taken in this account, please try a different suffix."
            )));
        }
        Ok(json!({"Role": role_json(&e, false)}))
    }

    async fn profile_role(&self, a: &str, i: &Input, add: bool) -> Result<Value, ServiceError> {
        let profile = i.name("InstanceProfileName")?;
        let role = i.name("RoleName")?;
        let (r, _) = self.entity(a, Kind::Role, role)?.ok_or_else(|| not_found(Kind::Role, role))?;
        self.update(a, Kind::InstanceProfile, profile, |p| {
            if add {
                if !p.roles.is_empty() {
                    return Err(limit("Cannot exceed quota for InstanceSessionsPerInstanceProfile: 1"));
                }
                p.roles.push(r.name.clone());
            } else {
                if !p.roles.iter().any(|x| x.eq_ignore_ascii_case(role)) {
                    return Err(no_such(format!("The role with name {role} cannot be found.")));
                }
                p.roles.retain(|x| !x.eq_ignore_ascii_case(role));
            }
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }

    /// The account's policy `arn` names.
    fn policy(&self, a: &str, arn: &str) -> Result<(ManagedPolicy, i64), ServiceError> {
        let missing = || no_such(format!("Policy {arn} does not exist or is not attachable."));
        let name = arn
            .strip_prefix(&format!("arn:aws:iam::{a}:policy"))
            .and_then(|r| r.rsplit('/').next())
            .ok_or_else(|| {
            if arn.starts_with("arn:aws:iam::") {
                missing()
            } else {
                invalid_input(format!("ARN {arn} is not valid."))
            }
        })?;
        self.read::<ManagedPolicy>(&policy_key(a, name))?.filter(|(p, _)| p.arn == arn).ok_or_else(missing)
    }

    fn attachments(&self, a: &str, arn: &str) -> Result<usize, ServiceError> {
        let mut n = 0;
        for k in [Kind::User, Kind::Group, Kind::Role] {
            n += self.entities(a, k)?.iter().filter(|e| e.attached.iter().any(|x| x == arn)).count();
        }
        Ok(n)
    }

    fn aws_policy_json(&self, a: &str, name: &str, path: &str, desc: &str) -> Result<Value, ServiceError> {
        let arn = managed::arn(path, name);
        let id = {
            // A stable ID per AWS policy.
            let h =
                name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
            const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
            let tail: String =
                (0..17).map(|i| ALPHABET[((h >> ((i * 3) % 60)) & 31) as usize] as char).collect();
            format!("ANPA{tail}")
        };
        Ok(json!({"PolicyName": name, "PolicyId": id, "Arn": arn, "Path": path, "DefaultVersionId": "v1",
            "AttachmentCount": self.attachments(a, &arn)?, "PermissionsBoundaryUsageCount": 0, "IsAttachable": true,
            "Description": desc, "CreateDate": 0.0, "UpdateDate": 0.0}))
    }

    async fn create_policy(&self, a: &str, i: &Input) -> Result<Value, ServiceError> {
        let name = i.name("PolicyName")?;
        let path = i.opt("Path").unwrap_or("/");
        check_path(path)?;
        let doc = i.req("PolicyDocument")?;
        Policy::parse(doc, DocKind::Identity).map_err(malformed)?;
        let now = self.now();
        let mut p = ManagedPolicy {
            name: name.to_string(),
            path: path.to_string(),
            id: self.unique_id("ANPA"),
            arn: format!("arn:aws:iam::{a}:policy{path}{name}"),
            description: i.opt("Description").map(str::to_string),
            created: now,
            updated: now,
            default_version: "v1".into(),
            next_version: 2,
            versions: [("v1".to_string(), (doc.to_string(), now))].into_iter().collect(),
            tags: Vec::new(),
        };
        merge_tags(&mut p.tags, i.tags())?;
        let key = policy_key(a, name);
        if !self.commit(Txn::new().when(&key, 0).put(&key, records::encode(&p))).await? {
            return Err(exists(format!(
                "A policy called {name} already exists. Duplicate names are not allowed."
            )));
        }
        Ok(json!({"Policy": policy_json(&p, 0)}))
    }

    fn list_policies(&self, a: &str, i: &Input) -> Result<Value, ServiceError> {
        let scope = i.opt("Scope").unwrap_or("All");
        let only_attached = i.0.get("OnlyAttached").and_then(Value::as_bool).unwrap_or(false);
        let prefix = i.opt("PathPrefix").unwrap_or("/");
        let mut all: Vec<Value> = Vec::new();
        if scope != "Local" {
            for (name, path, desc, _) in managed::POLICIES {
                all.push(self.aws_policy_json(a, name, path, desc)?);
            }
        }
        if scope != "AWS" {
            for p in self.policies(a)? {
                all.push(policy_json(&p, self.attachments(a, &p.arn)?));
            }
        }
        let all: Vec<Value> = all
            .into_iter()
            .filter(|p| p["Path"].as_str().is_some_and(|x| x.starts_with(prefix)))
            .filter(|p| !only_attached || p["AttachmentCount"].as_u64().unwrap_or(0) > 0)
            .map(|mut p| {
                if let Some(o) = p.as_object_mut() {
                    o.remove("Description");
                    o.remove("Tags");
                }
                p
            })
            .collect();
        Ok(page(
            i,
            all,
            |p| p["PolicyName"].as_str().unwrap_or_default().to_string(),
            Clone::clone,
            "Policies",
        ))
    }

    async fn delete_policy(&self, a: &str, i: &Input) -> Result<Value, ServiceError> {
        let arn = i.req("PolicyArn")?;
        if managed::find(arn).is_some() {
            return Err(ServiceError::sender(
                "AccessDenied",
                format!("Cannot delete the AWS managed policy {arn}."),
            )
            .with_status(403));
        }
        let (p, rev) = self.policy(a, arn)?;
        if self.attachments(a, arn)? > 0 {
            return Err(conflict("Cannot delete a policy attached to entities."));
        }
        if p.versions.len() > 1 {
            return Err(conflict(
                "This policy has more than one version. Before you delete a policy, you must delete the policy's versions. The default version is deleted with the policy.",
            ));
        }
        let key = policy_key(a, &p.name);
        self.commit(Txn::new().when(&key, rev).delete(&key)).await?;
        Ok(json!({}))
    }

    async fn create_policy_version(&self, a: &str, i: &Input) -> Result<Value, ServiceError> {
        let arn = i.req("PolicyArn")?;
        let doc = i.req("PolicyDocument")?;
        Policy::parse(doc, DocKind::Identity).map_err(malformed)?;
        let default = i.0.get("SetAsDefault").and_then(Value::as_bool).unwrap_or(false);
        loop {
            let (mut p, rev) = self.policy(a, arn)?;
            if p.versions.len() >= 5 {
                return Err(limit(
                    "A managed policy can have up to 5 versions. Before you create a new version, you must delete an existing version.",
                ));
            }
            let vid = format!("v{}", p.next_version);
            let now = self.now();
            p.next_version += 1;
            p.versions.insert(vid.clone(), (doc.to_string(), now));
            p.updated = now;
            if default {
                p.default_version = vid.clone();
            }
            let key = policy_key(a, &p.name);
            if self.commit(Txn::new().when(&key, rev).put(&key, records::encode(&p))).await? {
                return Ok(
                    json!({"PolicyVersion": {"VersionId": vid, "IsDefaultVersion": default, "CreateDate": now}}),
                );
            }
        }
    }

    async fn policy_version_change(&self, a: &str, i: &Input, op: &str) -> Result<Value, ServiceError> {
        let arn = i.req("PolicyArn")?;
        let vid = i.req("VersionId")?;
        loop {
            let (mut p, rev) = self.policy(a, arn)?;
            if !p.versions.contains_key(vid) {
                return Err(no_such(format!(
                    "Policy {arn} version {vid} does not exist or is not attachable."
                )));
            }
            if op == "DeletePolicyVersion" {
                if p.default_version == vid {
                    return Err(conflict("Cannot delete the default version of a policy."));
                }
                p.versions.remove(vid);
            } else {
                p.default_version = vid.to_string();
            }
            p.updated = self.now();
            let key = policy_key(a, &p.name);
            if self.commit(Txn::new().when(&key, rev).put(&key, records::encode(&p))).await? {
                return Ok(json!({}));
            }
        }
    }

    async fn attach(&self, a: &str, kind: Kind, i: &Input, attach: bool) -> Result<Value, ServiceError> {
        let member = match kind {
            Kind::User => "UserName",
            Kind::Group => "GroupName",
            _ => "RoleName",
        };
        let name = i.name(member)?;
        let arn = i.req("PolicyArn")?.to_string();
        if attach && managed::find(&arn).is_none() {
            self.policy(a, &arn)?;
        }
        self.update(a, kind, name, |e| {
            let had = e.attached.contains(&arn);
            if attach {
                if !had {
                    if e.attached.len() >= 10 {
                        return Err(limit(format!(
                            "Cannot exceed quota for PoliciesPer{}: 10",
                            match kind {
                                Kind::User => "User",
                                Kind::Group => "Group",
                                _ => "Role",
                            }
                        )));
                    }
                    e.attached.push(arn.clone());
                }
            } else {
                if !had {
                    return Err(no_such(format!("Policy {arn} was not found.")));
                }
                e.attached.retain(|x| *x != arn);
            }
            Ok(())
        })
        .await?;
        Ok(json!({}))
    }

    fn list_attached(&self, a: &str, kind: Kind, i: &Input) -> Result<Value, ServiceError> {
        let member = match kind {
            Kind::User => "UserName",
            Kind::Group => "GroupName",
            _ => "RoleName",
        };
        let name = i.name(member)?;
        let (e, _) = self.entity(a, kind, name)?.ok_or_else(|| not_found(kind, name))?;
        let items: Vec<(String, String)> = e
            .attached
            .iter()
            .map(|arn| (arn.rsplit('/').next().unwrap_or_default().to_string(), arn.clone()))
            .collect();
        Ok(page(
            i,
            items,
            |x| x.0.clone(),
            |(n, arn)| json!({"PolicyName": n, "PolicyArn": arn}),
            "AttachedPolicies",
        ))
    }

    async fn inline(&self, a: &str, kind: Kind, i: &Input, verb: &str) -> Result<Value, ServiceError> {
        let (member, noun) = match kind {
            Kind::User => ("UserName", "user"),
            Kind::Group => ("GroupName", "group"),
            _ => ("RoleName", "role"),
        };
        let name = i.name(member)?;
        match verb {
            "Put" => {
                let pname = i.name("PolicyName")?.to_string();
                let doc = i.req("PolicyDocument")?.to_string();
                Policy::parse(&doc, DocKind::Identity).map_err(malformed)?;
                self.update(a, kind, name, |e| {
                    e.inline.insert(pname.clone(), doc.clone());
                    Ok(())
                })
                .await?;
                Ok(json!({}))
            }
            "Get" => {
                let pname = i.name("PolicyName")?;
                let (e, _) = self.entity(a, kind, name)?.ok_or_else(|| not_found(kind, name))?;
                let doc = e.inline.get(pname).ok_or_else(|| {
                    no_such(format!("The {noun} policy with name {pname} cannot be found."))
                })?;
                Ok(json!({member: e.name, "PolicyName": pname, "PolicyDocument": encode_doc(doc)}))
            }
            "List" => {
                let (e, _) = self.entity(a, kind, name)?.ok_or_else(|| not_found(kind, name))?;
                let names: Vec<String> = e.inline.keys().cloned().collect();
                Ok(page(i, names, Clone::clone, |n| json!(n), "PolicyNames"))
            }
            _ => {
                let pname = i.name("PolicyName")?.to_string();
                self.update(a, kind, name, |e| {
                    e.inline.remove(&pname).map(|_| ()).ok_or_else(|| {
                        no_such(format!("The {noun} policy with name {pname} cannot be found."))
                    })
                })
                .await?;
                Ok(json!({}))
            }
        }
    }

    async fn tags(&self, a: &str, kind: Kind, i: &Input, op: &str) -> Result<Value, ServiceError> {
        let name = i.name(if kind == Kind::User { "UserName" } else { "RoleName" })?;
        if op.starts_with("List") {
            let (e, _) = self.entity(a, kind, name)?.ok_or_else(|| not_found(kind, name))?;
            return Ok(json!({"Tags": tags_json(&e.tags), "IsTruncated": false}));
        }
        let new = i.tags();
        let remove = i.strings("TagKeys");
        self.update(a, kind, name, |e| {
            if op.starts_with("Tag") {
                merge_tags(&mut e.tags, new.clone())
            } else {
                e.tags.retain(|(k, _)| !remove.contains(k));
                Ok(())
            }
        })
        .await?;
        Ok(json!({}))
    }

    async fn policy_tags(&self, a: &str, i: &Input, op: &str) -> Result<Value, ServiceError> {
        let arn = i.req("PolicyArn")?;
        loop {
            let (mut p, rev) = self.policy(a, arn)?;
            match op {
                "ListPolicyTags" => return Ok(json!({"Tags": tags_json(&p.tags), "IsTruncated": false})),
                "TagPolicy" => merge_tags(&mut p.tags, i.tags())?,
                _ => {
                    let remove = i.strings("TagKeys");
                    p.tags.retain(|(k, _)| !remove.contains(k));
                }
            }
            let key = policy_key(a, &p.name);
            if self.commit(Txn::new().when(&key, rev).put(&key, records::encode(&p))).await? {
                return Ok(json!({}));
            }
        }
    }

    /// SimulatePrincipalPolicy: the principal's policies (and any given in PolicyInputList)
    /// evaluated for each action and resource, with the given context entries.
    fn simulate(&self, a: &str, i: &Input) -> Result<Value, ServiceError> {
        let source = i.req("PolicySourceArn")?;
        let docs = self.documents_of_arn(a, source)?;
        let mut policies: Vec<Policy> =
            docs.iter().filter_map(|d| Policy::parse(d, DocKind::Identity).ok()).collect();
        for extra in i.strings("PolicyInputList") {
            policies.push(Policy::parse(&extra, DocKind::Identity).map_err(malformed)?);
        }
        let refs: Vec<&Policy> = policies.iter().collect();
        let mut ctx = Context::new();
        if let Some(entries) = i.0.get("ContextEntries").and_then(Value::as_array) {
            for e in entries {
                let Some(k) = e.get("ContextKeyName").and_then(Value::as_str) else { continue };
                let vals = e
                    .get("ContextKeyValues")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
                    .unwrap_or_default();
                ctx.set(k, vals);
            }
        }
        let who = PrincipalId { account: a.to_string(), arns: vec![source.to_string()], service: None };
        let resources = {
            let r = i.strings("ResourceArns");
            if r.is_empty() { vec!["*".to_string()] } else { r }
        };
        let mut results = Vec::new();
        for action in i.strings("ActionNames") {
            for res in &resources {
                let d = gantry_policy::evaluate(
                    &PolicySet { identity: &refs, session: None, resource: None },
                    &Request { action: &action, resource: res, principal: &who, context: &ctx },
                );
                let decision = match d {
                    Decision::Allow => "allowed",
                    Decision::ExplicitDeny => "explicitDeny",
                    Decision::ImplicitDeny => "implicitDeny",
                };
                results.push(
                    json!({"EvalActionName": action, "EvalResourceName": res, "EvalDecision": decision,
                    "MatchedStatements": [], "MissingContextValues": []}),
                );
            }
        }
        Ok(json!({"EvaluationResults": results, "IsTruncated": false}))
    }

    /// The identity policies' documents of a user, group or role ARN.
    pub(crate) fn documents_of_arn(&self, a: &str, arn: &str) -> Result<Vec<String>, ServiceError> {
        let rest = arn
            .strip_prefix(&format!("arn:aws:iam::{a}:"))
            .ok_or_else(|| invalid_input(format!("Invalid ARN {arn}.")))?;
        let (kind, name) = match rest.split_once('/') {
            Some(("user", r)) => (Kind::User, r.rsplit('/').next().unwrap_or(r)),
            Some(("group", r)) => (Kind::Group, r.rsplit('/').next().unwrap_or(r)),
            Some(("role", r)) => (Kind::Role, r.rsplit('/').next().unwrap_or(r)),
            _ => return Err(invalid_input(format!("Invalid ARN {arn}."))),
        };
        let (e, _) = self.entity(a, kind, name)?.ok_or_else(|| not_found(kind, name))?;
        Ok(self.documents(a, &e))
    }

    /// An entity's policies: inline, attached, and for a user its groups'.
    pub(crate) fn documents(&self, a: &str, e: &Entity) -> Vec<String> {
        let mut docs: Vec<String> = e.inline.values().cloned().collect();
        docs.extend(e.attached.iter().filter_map(|arn| self.managed_document(a, arn)));
        for g in &e.groups {
            if let Ok(Some((g, _))) = self.entity(a, Kind::Group, g) {
                docs.extend(g.inline.values().cloned());
                docs.extend(g.attached.iter().filter_map(|arn| self.managed_document(a, arn)));
            }
        }
        docs
    }
}

impl Iam {
    /// The resource an IAM operation acts on, for authorization: the user, group, role,
    /// instance profile or policy its input names (its stored ARN, path included), the
    /// caller's own user for the access-key operations without `UserName`, else `*`.
    pub fn authz_resource(&self, caller: &gantry_ports::Principal, op: &str, input: &Value) -> String {
        let a = caller.account.as_str();
        let s = |k: &str| input.get(k).and_then(Value::as_str);
        let named = |kind: Kind, name: &str| {
            self.entity(a, kind, name)
                .ok()
                .flatten()
                .map(|(e, _)| e.arn)
                .unwrap_or_else(|| format!("arn:aws:iam::{a}:{}/{name}", kind.dir()))
        };
        if op.starts_with("List")
            && !op.contains("For")
            && !op.contains("Attached")
            && !op.ends_with("Policies")
            && !op.ends_with("Tags")
            && op != "ListAccessKeys"
            && op != "ListPolicyVersions"
        {
            return "*".into();
        }
        if let Some(arn) = s("PolicyArn") {
            return arn.to_string();
        }
        if let Some(n) = s("InstanceProfileName") {
            return named(Kind::InstanceProfile, n);
        }
        if let Some(n) = s("RoleName") {
            return named(Kind::Role, n);
        }
        if let Some(n) = s("GroupName") {
            return named(Kind::Group, n);
        }
        if let Some(n) = s("UserName") {
            return named(Kind::User, n);
        }
        if let Some(src) = s("PolicySourceArn") {
            return src.to_string();
        }
        match (&caller.kind, op) {
            (
                gantry_ports::PrincipalKind::User { .. },
                "CreateAccessKey" | "ListAccessKeys" | "UpdateAccessKey" | "DeleteAccessKey" | "GetUser",
            ) => caller.arn.clone(),
            (_, "CreatePolicy") => format!(
                "arn:aws:iam::{a}:policy{}{}",
                s("Path").unwrap_or("/"),
                s("PolicyName").unwrap_or_default()
            ),
            _ => "*".into(),
        }
    }
}

/// IAM's operations by the resource they act on, for `Iam::call`.
#[derive(Clone, Copy)]
enum Family {
    Users,
    Groups,
    AccessKeys,
    Roles,
    InstanceProfiles,
    Policies,
}

impl Family {
    /// The family by the noun in the operation's name, the more specific nouns first:
    /// `AddUserToGroup` is a group's, `AddRoleToInstanceProfile` an instance profile's,
    /// `AttachRolePolicy` and `UpdateAssumeRolePolicy` a role's, `SimulatePrincipalPolicy` a
    /// policy's. Each family's handler answers only its exact operation names.
    fn of(op: &str) -> Option<Family> {
        const NOUNS: &[(&str, Family)] = &[
            ("AccessKey", Family::AccessKeys),
            ("InstanceProfile", Family::InstanceProfiles),
            ("Group", Family::Groups),
            ("Role", Family::Roles),
            ("User", Family::Users),
            ("Polic", Family::Policies),
        ];
        NOUNS.iter().find(|(noun, _)| op.contains(noun)).map(|&(_, f)| f)
    }
}

/// An operation no family answers: one of IAM's that Gantry lacks, or no operation at all.
fn unknown_op(op: &str) -> Result<Value, ServiceError> {
    if gantry_model::iam::OPERATIONS.contains(&op) {
        return unreachable_op(op);
    }
    Err(ServiceError::sender(
        "InvalidAction",
        format!("Could not find operation {op} for version 2010-05-08"),
    ))
}

fn unreachable_op(op: &str) -> Result<Value, ServiceError> {
    Err(ServiceError::sender("InvalidAction", format!("The action {op} is not implemented by Gantry's IAM.")))
}
