//! Account settings per principal, with the root user's value as the account default and the
//! system default below that. Apply reads only the three long-ARN settings; their system default
//! arrives in the command (`long_by_default`: entries written before it existed read `false`,
//! the 2018 default), so every node, old or new, formats the same ARN for the same entry.
//!
//! Keys: `acct/<principal ARN>\0<setting name>` → the value as it was sent (`enabled`; earlier
//! versions stored `ENABLED`: values compare without regard to case).

use super::{KvError, KvRead, Outcome, Space, Txn};
use crate::model::{long_arn_default, AccountSetting, LONG_ARN_SETTINGS};

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

pub(super) fn delete(
    txn: &mut Txn<'_>,
    principal: &str,
    root: &str,
    name: &str,
    system_default: &str,
) -> Result<Outcome, KvError> {
    txn.delete(Space::Data, key(principal, name));
    let value = effective(txn, principal, root, name, system_default)?;
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

/// The value that applies to `principal`: its own, else the root user's, else `system_default`.
pub fn effective(
    kv: &dyn KvRead,
    principal: &str,
    root: &str,
    name: &str,
    system_default: &str,
) -> Result<String, KvError> {
    if let Some(v) = explicit(kv, principal, name)? {
        return Ok(v);
    }
    Ok(explicit(kv, root, name)?.unwrap_or_else(|| system_default.to_string()))
}

/// Whether new resources of the setting's kind get long ARNs for `principal`, where
/// `long_by_default` says what a principal that nobody opted in or out gets.
pub fn long_arns(
    kv: &dyn KvRead,
    principal: &str,
    root: &str,
    name: &str,
    long_by_default: bool,
) -> Result<bool, KvError> {
    debug_assert!(LONG_ARN_SETTINGS.contains(&name));
    let value = effective(kv, principal, root, name, long_arn_default(long_by_default))?;
    Ok(value.eq_ignore_ascii_case("enabled"))
}
