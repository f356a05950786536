//! Account settings: PutAccountSetting, PutAccountSettingDefault, ListAccountSettings,
//! DeleteAccountSetting.
//!
//! Settings are kept per principal; the root user's settings are the account defaults. The
//! effective value for a principal is its own, else the account default, else AWS's default.

use crate::records::{encode, load};
use crate::{ControlPlane, Ctx, keys};
use gantry_core::page::{PageRequest, encode_token};
use gantry_core::{EcsError, Result};
use gantry_model::*;
use gantry_store::Txn;

/// Every setting: name, allowed values, AWS's default.
const SETTINGS: &[(&str, &[&str], &str)] = &[
    ("awsvpcTrunking", &["enabled", "disabled"], "disabled"),
    ("containerInsights", &["enabled", "disabled", "enhanced"], "disabled"),
    ("containerInstanceLongArnFormat", &["enabled", "disabled"], "enabled"),
    ("defaultLogDriverMode", &["blocking", "non-blocking"], "non-blocking"),
    ("fargateEventWindows", &["enabled", "disabled"], "disabled"),
    ("fargateFIPSMode", &["enabled", "disabled"], "disabled"),
    ("fargateTaskRetirementWaitPeriod", &["0", "7", "14"], "7"),
    ("guardDutyActivate", &["enabled", "disabled"], "disabled"),
    ("serviceLongArnFormat", &["enabled", "disabled"], "enabled"),
    ("tagResourceAuthorization", &["on", "off"], "on"),
    ("taskLongArnFormat", &["enabled", "disabled"], "enabled"),
];

fn spec(name: &str) -> Result<&'static (&'static str, &'static [&'static str], &'static str)> {
    SETTINGS.iter().find(|s| s.0 == name).ok_or_else(|| {
        EcsError::invalid(format!(
            "Invalid setting 'name': '{name}' should be one of [{}].",
            SETTINGS.iter().map(|s| s.0).collect::<Vec<_>>().join(",")
        ))
    })
}

fn check_value(name: &str, value: &str) -> Result<()> {
    let (_, allowed, _) = spec(name)?;
    if !allowed.contains(&value) {
        // ECS's exact wording; the allowed values are in the API reference.
        return Err(EcsError::invalid("Invalid setting 'value'"));
    }
    Ok(())
}

impl ControlPlane {
    /// The value of a setting for the caller.
    pub(crate) fn effective_setting(&self, ctx: &Ctx, name: &str) -> Result<String> {
        Ok(self.effective(ctx, &ctx.principal, name)?.value.unwrap_or_default())
    }

    fn effective(&self, ctx: &Ctx, principal: &str, name: &str) -> Result<Setting> {
        let (_, _, default) = spec(name)?;
        let root = ctx.scope.root_principal();
        for p in [principal, root.as_str()] {
            if let Some(s) = load::<Setting>(&*self.store, &keys::account_setting(&ctx.scope, p, name))? {
                let mut s = s.value;
                s.principal_arn = Some(principal.to_string());
                return Ok(s);
            }
        }
        Ok(Setting {
            name: Some(name.to_string()),
            value: Some(default.to_string()),
            principal_arn: Some(principal.to_string()),
            r#type: Some("aws_managed".into()),
        })
    }

    async fn put_setting(&self, ctx: &Ctx, principal: &str, name: &str, value: &str) -> Result<Setting> {
        check_value(name, value)?;
        if name == "guardDutyActivate" {
            return Err(EcsError::invalid(
                "Invalid setting 'name': guardDutyActivate is read-only and is managed by Amazon GuardDuty.",
            ));
        }
        let setting = Setting {
            name: Some(name.to_string()),
            value: Some(value.to_string()),
            principal_arn: Some(principal.to_string()),
            r#type: Some("user".into()),
        };
        let key = keys::account_setting(&ctx.scope, principal, name);
        self.commit(Txn::new().put(&key, encode(&setting))).await?;
        Ok(setting)
    }

    pub async fn put_account_setting(
        &self,
        ctx: &Ctx,
        req: PutAccountSettingRequest,
    ) -> Result<PutAccountSettingResponse> {
        let principal = req.principal_arn.clone().unwrap_or_else(|| ctx.principal.clone());
        check_principal(&principal)?;
        let s = self.put_setting(ctx, &principal, &req.name, &req.value).await?;
        Ok(PutAccountSettingResponse { setting: Some(s) })
    }

    pub async fn put_account_setting_default(
        &self,
        ctx: &Ctx,
        req: PutAccountSettingDefaultRequest,
    ) -> Result<PutAccountSettingDefaultResponse> {
        let root = ctx.scope.root_principal();
        let s = self.put_setting(ctx, &root, &req.name, &req.value).await?;
        Ok(PutAccountSettingDefaultResponse { setting: Some(s) })
    }

    pub async fn delete_account_setting(
        &self,
        ctx: &Ctx,
        req: DeleteAccountSettingRequest,
    ) -> Result<DeleteAccountSettingResponse> {
        spec(&req.name)?;
        let principal = req.principal_arn.clone().unwrap_or_else(|| ctx.principal.clone());
        check_principal(&principal)?;
        let key = keys::account_setting(&ctx.scope, &principal, &req.name);
        let existing = load::<Setting>(&*self.store, &key)?;
        self.commit(Txn::new().delete(&key)).await?;
        let setting = match existing {
            Some(s) => s.value,
            None => self.effective(ctx, &principal, &req.name)?,
        };
        Ok(DeleteAccountSettingResponse { setting: Some(setting) })
    }

    pub fn list_account_settings(
        &self,
        ctx: &Ctx,
        req: ListAccountSettingsRequest,
    ) -> Result<ListAccountSettingsResponse> {
        let page =
            PageRequest::new(Some(req.max_results).filter(|m| *m != 0), req.next_token.as_deref(), 10, 10)?;
        if let Some(n) = &req.name {
            spec(n)?;
        }
        if req.value.is_some() && req.name.is_none() {
            return Err(EcsError::invalid("value can only be specified together with name."));
        }
        let principal = req.principal_arn.clone().unwrap_or_else(|| ctx.principal.clone());
        check_principal(&principal)?;
        let mut out = Vec::new();
        for (name, _, _) in SETTINGS {
            if req.name.as_deref().is_some_and(|n| n != *name) {
                continue;
            }
            if page.after.as_deref().is_some_and(|a| *name <= a) {
                continue;
            }
            let s = if req.effective_settings {
                Some(self.effective(ctx, &principal, name)?)
            } else {
                load::<Setting>(&*self.store, &keys::account_setting(&ctx.scope, &principal, name))?
                    .map(|s| s.value)
            };
            if let Some(s) = s
                && (req.value.is_none() || req.value == s.value)
            {
                out.push(s);
            }
        }
        let next = (out.len() > page.limit)
            .then(|| encode_token(out[page.limit - 1].name.as_deref().unwrap_or_default()));
        out.truncate(page.limit);
        Ok(ListAccountSettingsResponse { settings: Some(out), next_token: next })
    }
}

fn check_principal(p: &str) -> Result<()> {
    if p.starts_with("arn:") && p.contains(":iam::") {
        Ok(())
    } else {
        Err(EcsError::invalid(format!(
            "Invalid principalArn '{p}': it must be the ARN of an IAM user, role or the root user."
        )))
    }
}
