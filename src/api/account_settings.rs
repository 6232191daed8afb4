//! PutAccountSetting, DeleteAccountSetting and ListAccountSettings.
//!
//! Omitting `principalArn` changes the caller's own value: the access key's principal, or the
//! account's root user (the bootstrap key, or every request with authentication off). The root
//! user's value is the default of every other principal that has none of its own.

use serde::Deserialize;
use serde_json::{json, Value};

use super::wire;
use super::{ApiError, Ctx};
use crate::model::{AccountSetting, ACCOUNT_SETTING_NAMES};
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

fn setting_to_wire(s: &AccountSetting) -> Value {
    json!({ "name": s.name, "value": s.value, "principalArn": s.principal_arn })
}

fn check_name(name: Option<&str>) -> Result<Option<String>, ApiError> {
    match name {
        None => Ok(None),
        Some(n) if ACCOUNT_SETTING_NAMES.contains(&n) => Ok(Some(n.to_string())),
        Some(n) => Err(ApiError::InvalidParameter(format!(
            "name: {n} is not one of {}",
            ACCOUNT_SETTING_NAMES.join(", ")
        ))),
    }
}

fn check_value(value: Option<&str>) -> Result<Option<String>, ApiError> {
    match value {
        None => Ok(None),
        // Modern clients send lower case (`enabled`); values are stored upper case.
        Some(v) if v.eq_ignore_ascii_case("ENABLED") || v.eq_ignore_ascii_case("DISABLED") => {
            Ok(Some(v.to_ascii_uppercase()))
        }
        Some(v) => Err(ApiError::InvalidParameter(format!(
            "value: {v} is not one of ENABLED, DISABLED"
        ))),
    }
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

pub async fn put_account_setting(ctx: &Ctx<'_>, req: AccountSettingRequest) -> Result<Value, ApiError> {
    let name =
        check_name(req.name.as_deref())?.ok_or_else(|| ApiError::InvalidParameter("name: is required".into()))?;
    let value =
        check_value(req.value.as_deref())?.ok_or_else(|| ApiError::InvalidParameter("value: is required".into()))?;
    let principal = principal(ctx, req.principal_arn.as_deref())?;
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
    setting_outcome(
        ctx.propose(Command::DeleteAccountSetting { principal, root, name })
            .await?,
    )
}

pub async fn list_account_settings(ctx: &Ctx<'_>, req: AccountSettingRequest) -> Result<Value, ApiError> {
    let limit = wire::max_results(req.max_results, LIST_MAX, LIST_MAX)?;
    let name = check_name(req.name.as_deref())?;
    let value = check_value(req.value.as_deref())?;
    if value.is_some() && name.is_none() {
        return Err(ApiError::InvalidParameter(
            "value: can be given only together with name".into(),
        ));
    }
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
    for candidate in ACCOUNT_SETTING_NAMES {
        if name.as_deref().is_some_and(|n| n != candidate) {
            continue;
        }
        let found = if effective_settings {
            Some(account_settings::effective(view, &principal, &root, candidate)?)
        } else {
            account_settings::explicit(view, &principal, candidate)?
        };
        if let Some(v) = found.filter(|v| value.as_ref().is_none_or(|want| want == v)) {
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
