//! PutAccountSetting, PutAccountSettingDefault, DeleteAccountSetting and ListAccountSettings.
//!
//! Omitting `principalArn` changes the caller's own value: the access key's principal, or the
//! account's root user (the bootstrap key, or every request with authentication off). The root
//! user's value (PutAccountSettingDefault sets it) is the default of every other principal that
//! has none of its own; below it is the system default (`model::account_setting_default`: long
//! ARNs are on, as in today's ECS, unless the config's `long_arns_by_default` is false).
//! Values are matched without regard to case and echoed as they were sent.

use serde::Deserialize;
use serde_json::{json, Value};

use super::wire;
use super::{ApiError, Ctx};
use crate::model::{account_setting_default, AccountSetting, ACCOUNT_SETTINGS};
use crate::state::{account_settings, Command, Outcome};

const LIST_MAX: usize = 10;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSettingRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    principal_arn: Option<String>,
    #[serde(default)]
    effective_settings: Option<bool>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
}

/// The one setting AWS manages: it can be read, not set.
const MANAGED: &str = "guardDutyActivate";

fn setting_to_wire(s: &AccountSetting) -> Value {
    let kind = if s.name == MANAGED { "aws_managed" } else { "user" };
    json!({ "name": s.name, "value": s.value, "principalArn": s.principal_arn, "type": kind })
}

fn check_name(name: Option<&str>) -> Result<Option<String>, ApiError> {
    match name {
        None => Ok(None),
        Some(n) if ACCOUNT_SETTINGS.iter().any(|(known, _, _)| *known == n) => Ok(Some(n.to_string())),
        Some(n) => Err(ApiError::InvalidParameter(format!(
            "name: {n} is not one of {}",
            ACCOUNT_SETTINGS.map(|(known, _, _)| known).join(", ")
        ))),
    }
}

/// A value `name` takes, as it was sent.
fn check_value(name: &str, value: Option<&str>) -> Result<Option<String>, ApiError> {
    let allowed = ACCOUNT_SETTINGS
        .iter()
        .find(|(known, _, _)| *known == name)
        .map_or(&[][..], |(_, values, _)| *values);
    match value {
        None => Ok(None),
        Some(v) if allowed.iter().any(|a| a.eq_ignore_ascii_case(v)) => Ok(Some(v.to_string())),
        Some(v) => Err(ApiError::InvalidParameter(format!(
            "value: {v} is not a value of {name}; use one of {}",
            allowed.join(", ")
        ))),
    }
}

/// The name and value of a Put: both required, the value one the setting takes, and not the
/// setting AWS manages.
fn name_and_value(req: &AccountSettingRequest) -> Result<(String, String), ApiError> {
    let name =
        check_name(req.name.as_deref())?.ok_or_else(|| ApiError::InvalidParameter("name: is required".into()))?;
    if name == MANAGED {
        return Err(ApiError::InvalidParameter(format!(
            "name: {MANAGED} is managed by AWS and cannot be changed"
        )));
    }
    let value = check_value(&name, req.value.as_deref())?
        .ok_or_else(|| ApiError::InvalidParameter("value: is required".into()))?;
    Ok((name, value))
}

/// The principal a request is about: `principalArn`, or the caller. Only an admin key names
/// another principal (in ECS, only the root user does).
fn principal(ctx: &Ctx<'_>, principal_arn: Option<&str>) -> Result<String, ApiError> {
    match principal_arn {
        None | Some("") => Ok(ctx.caller.principal_arn.clone()),
        Some(arn) if arn != ctx.caller.principal_arn && ctx.caller.role != crate::model::Role::Admin => {
            Err(ApiError::AccessDenied(format!(
                "principalArn: {} may read and change only its own settings; {arn} needs an admin key",
                ctx.caller.principal_arn
            )))
        }
        Some(arn) => {
            let prefix = ctx.state.scope.iam_prefix();
            let valid = arn
                .strip_prefix(&prefix)
                .is_some_and(|rest| rest == "root" || rest.starts_with("user/") || rest.starts_with("role/"));
            if valid {
                Ok(arn.to_string())
            } else {
                Err(ApiError::InvalidParameter(format!(
                    "principalArn: {arn} is not the root user, an IAM user or an IAM role of account {}",
                    ctx.state.scope.account_id
                )))
            }
        }
    }
}

fn setting_outcome(outcome: Outcome) -> Result<Value, ApiError> {
    match outcome {
        Outcome::Setting(s) => Ok(json!({ "setting": setting_to_wire(&s) })),
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server(
            "unexpected outcome for an account setting command".into(),
        )),
    }
}

/// The value to store: as sent, or, before every member compares without regard to case
/// (cluster version 1), a long-ARN setting's in the upper case earlier builds compare.
fn stored(ctx: &Ctx<'_>, name: &str, value: String) -> String {
    if !ctx.modern() && crate::model::LONG_ARN_SETTINGS.contains(&name) {
        value.to_ascii_uppercase()
    } else {
        value
    }
}

pub async fn put_account_setting(ctx: &Ctx<'_>, req: AccountSettingRequest) -> Result<Value, ApiError> {
    let (name, value) = name_and_value(&req)?;
    let value = stored(ctx, &name, value);
    let principal = principal(ctx, req.principal_arn.as_deref())?;
    setting_outcome(
        ctx.propose(Command::PutAccountSetting { principal, name, value })
            .await?,
    )
}

/// Sets the account default: the root user's value. Like naming the root user as another
/// principal, only an admin key may.
pub async fn put_account_setting_default(ctx: &Ctx<'_>, req: AccountSettingRequest) -> Result<Value, ApiError> {
    let (name, value) = name_and_value(&req)?;
    let value = stored(ctx, &name, value);
    let principal = principal(ctx, Some(&ctx.state.scope.root_principal()))?;
    setting_outcome(
        ctx.propose(Command::PutAccountSetting { principal, name, value })
            .await?,
    )
}

pub async fn delete_account_setting(ctx: &Ctx<'_>, req: AccountSettingRequest) -> Result<Value, ApiError> {
    let name =
        check_name(req.name.as_deref())?.ok_or_else(|| ApiError::InvalidParameter("name: is required".into()))?;
    let principal = principal(ctx, req.principal_arn.as_deref())?;
    let root = ctx.state.scope.root_principal();
    // Earlier builds fall back to DISABLED and read no fallback: it is sent only when all apply it.
    let fallback = ctx
        .modern()
        .then(|| account_setting_default(&name, ctx.state.scope.long_arns_by_default).to_string());
    let command = Command::DeleteAccountSetting {
        principal,
        root,
        name,
        fallback,
    };
    setting_outcome(ctx.propose(command).await?)
}

pub async fn list_account_settings(ctx: &Ctx<'_>, req: AccountSettingRequest) -> Result<Value, ApiError> {
    let limit = wire::max_results(req.max_results, LIST_MAX, LIST_MAX)?;
    let name = check_name(req.name.as_deref())?;
    let value = match &name {
        Some(n) => check_value(n, req.value.as_deref())?,
        None if req.value.is_some() => {
            return Err(ApiError::InvalidParameter(
                "value: can be given only together with name".into(),
            ))
        }
        None => None,
    };
    let principal = principal(ctx, req.principal_arn.as_deref())?;
    let effective_settings = req.effective_settings.unwrap_or(false);
    let params = format!("{:?}", (&principal, &name, &value, effective_settings));
    let after = match req.next_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Some(wire::decode_token("settings", &params, token)?),
        None => None,
    };
    let root = ctx.state.scope.root_principal();
    let view = ctx.read_view().await?;
    let mut settings = Vec::new();
    let long_by_default = ctx.state.scope.long_arns_by_default && ctx.modern();
    for (candidate, _, _) in ACCOUNT_SETTINGS {
        if name.as_deref().is_some_and(|n| n != candidate) {
            continue;
        }
        let found = if effective_settings {
            let fallback = account_setting_default(candidate, long_by_default);
            Some(account_settings::effective(
                view, &principal, &root, candidate, fallback,
            )?)
        } else {
            account_settings::explicit(view, &principal, candidate)?
        };
        if let Some(v) = found.filter(|v| value.as_ref().is_none_or(|want| want.eq_ignore_ascii_case(v))) {
            settings.push(AccountSetting {
                name: candidate.to_string(),
                value: v,
                principal_arn: principal.clone(),
            });
        }
    }
    settings.retain(|s| after.as_ref().is_none_or(|a| s.name > *a));
    let page: Vec<&AccountSetting> = settings.iter().take(limit).collect();
    let mut out = json!({ "settings": page.iter().map(|s| setting_to_wire(s)).collect::<Vec<_>>() });
    if settings.len() > page.len() {
        if let Some(last) = page.last() {
            out["nextToken"] = json!(wire::encode_token("settings", &params, &last.name));
        }
    }
    Ok(out)
}
