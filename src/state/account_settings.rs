//! Account settings (long ARN formats) per principal, with the root user's value as the account
//! default and DISABLED as the system default (the 2018 behaviour).
//!
//! Keys: `acct/<principal ARN>\0<setting name>` → `ENABLED` or `DISABLED`.

use super::{KvError, KvRead, Outcome, Space, Txn};
use crate::model::{AccountSetting, ACCOUNT_SETTING_NAMES};

/// The value of a setting nobody has set.
pub const SYSTEM_DEFAULT: &str = "DISABLED";

fn key(principal: &str, name: &str) -> Vec<u8> {
    format!("acct/{principal}\0{name}").into_bytes()
}

pub(super) fn put(txn: &mut Txn<'_>, principal: &str, name: &str, value: &str) -> Outcome {
    txn.put(Space::Data, key(principal, name), value.as_bytes().to_vec());
    Outcome::Setting(AccountSetting {
        name: name.into(),
        value: value.into(),
        principal_arn: principal.into(),
    })
}

pub(super) fn delete(txn: &mut Txn<'_>, principal: &str, root: &str, name: &str) -> Result<Outcome, KvError> {
    txn.delete(Space::Data, key(principal, name));
    let value = effective(txn, principal, root, name)?;
    Ok(Outcome::Setting(AccountSetting {
        name: name.into(),
        value,
        principal_arn: principal.into(),
    }))
}

/// The principal's own value of `name`, if it set one.
pub fn explicit(kv: &dyn KvRead, principal: &str, name: &str) -> Result<Option<String>, KvError> {
    Ok(kv
        .get(Space::Data, &key(principal, name))?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// The value that applies to `principal`: its own, else the root user's, else the system default.
pub fn effective(kv: &dyn KvRead, principal: &str, root: &str, name: &str) -> Result<String, KvError> {
    if let Some(v) = explicit(kv, principal, name)? {
        return Ok(v);
    }
    Ok(explicit(kv, root, name)?.unwrap_or_else(|| SYSTEM_DEFAULT.to_string()))
}

/// Whether new resources of the setting's kind get long ARNs for `principal`.
pub fn long_arns(kv: &dyn KvRead, principal: &str, root: &str, name: &str) -> Result<bool, KvError> {
    debug_assert!(ACCOUNT_SETTING_NAMES.contains(&name));
    Ok(effective(kv, principal, root, name)? == "ENABLED")
}
