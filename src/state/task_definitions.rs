//! Task definition families and revisions: registration, deregistration and queries.
//!
//! Keys: `taskdef/<family>\0<revision, 10 digits>` holds a revision; `tdfamily/<family>` holds
//! the last revision number ever given, so numbers are never reused. The NUL separator makes
//! key order equal (family, revision) order.

use serde::{Deserialize, Serialize};

use super::{decode, encode, KvError, KvRead, Outcome, Rejection, Space, Txn};
use crate::model::{Tag, TaskDefinition, TaskDefinitionStatus};

const PREFIX: &str = "taskdef/";

fn revision_key(family: &str, revision: u32) -> Vec<u8> {
    format!("{PREFIX}{family}\0{revision:010}").into_bytes()
}

fn family_key(family: &str) -> Vec<u8> {
    format!("tdfamily/{family}").into_bytes()
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct FamilyMeta {
    last_revision: u32,
}

pub(super) fn register(
    txn: &mut Txn<'_>,
    now_ms: u64,
    family: &str,
    arn_base: &str,
    body: &serde_json::Value,
    tags: &[Tag],
) -> Result<Outcome, KvError> {
    let mut meta: FamilyMeta = match txn.get(Space::Data, &family_key(family))? {
        Some(bytes) => decode(&bytes)?,
        None => FamilyMeta::default(),
    };
    meta.last_revision += 1;
    let revision = meta.last_revision;
    let definition = TaskDefinition {
        family: family.to_string(),
        revision,
        arn: format!("{arn_base}:{revision}"),
        status: TaskDefinitionStatus::Active,
        body: body.clone(),
        tags: tags.to_vec(),
        registered_at_ms: now_ms,
        deregistered_at_ms: None,
    };
    txn.put(Space::Data, family_key(family), encode(&meta));
    txn.put(Space::Data, revision_key(family, revision), encode(&definition));
    Ok(Outcome::TaskDefinition(definition))
}

pub(super) fn deregister(txn: &mut Txn<'_>, now_ms: u64, family: &str, revision: u32) -> Result<Outcome, KvError> {
    let Some(mut definition) = get(txn, family, revision)? else {
        return Ok(Outcome::Rejected(Rejection::TaskDefinitionNotFound));
    };
    if definition.status == TaskDefinitionStatus::Active {
        definition.status = TaskDefinitionStatus::Inactive;
        definition.deregistered_at_ms = Some(now_ms);
        txn.put(Space::Data, revision_key(family, revision), encode(&definition));
    }
    Ok(Outcome::TaskDefinition(definition))
}

/// DeleteTaskDefinitions of one revision: it must be INACTIVE first; then DELETE_IN_PROGRESS
/// (its tasks keep running; nothing new uses it; the family's revision counter is kept).
pub(super) fn delete(txn: &mut Txn<'_>, family: &str, revision: u32) -> Result<Outcome, KvError> {
    let Some(mut definition) = get(txn, family, revision)? else {
        return Ok(Outcome::Rejected(Rejection::TaskDefinitionNotFound));
    };
    match definition.status {
        TaskDefinitionStatus::Active => Ok(Outcome::Rejected(Rejection::TaskDefinitionStillActive)),
        TaskDefinitionStatus::DeleteInProgress => Ok(Outcome::TaskDefinition(definition)),
        TaskDefinitionStatus::Inactive => {
            definition.status = TaskDefinitionStatus::DeleteInProgress;
            txn.put(Space::Data, revision_key(family, revision), encode(&definition));
            Ok(Outcome::TaskDefinition(definition))
        }
    }
}

pub(super) fn update_tags(
    txn: &mut Txn<'_>,
    family: &str,
    revision: u32,
    change: impl FnOnce(&mut Vec<Tag>),
) -> Result<Outcome, KvError> {
    let Some(mut definition) = get(txn, family, revision)? else {
        return Ok(Outcome::Rejected(Rejection::ResourceNotFound));
    };
    if !super::retag(&mut definition.tags, change) {
        return Ok(Outcome::Rejected(Rejection::TooManyTags));
    }
    txn.put(Space::Data, revision_key(family, revision), encode(&definition));
    Ok(Outcome::Tags(definition.tags))
}

/// One revision, ACTIVE or INACTIVE.
pub fn get(kv: &dyn KvRead, family: &str, revision: u32) -> Result<Option<TaskDefinition>, KvError> {
    kv.get(Space::Data, &revision_key(family, revision))?
        .map(|b| decode(&b))
        .transpose()
}

fn scan_all(kv: &dyn KvRead, from: &[u8], to: &[u8]) -> Result<Vec<TaskDefinition>, KvError> {
    super::scan_values(kv, from, to)
}

/// Every revision of `family`, oldest first.
pub fn revisions(kv: &dyn KvRead, family: &str) -> Result<Vec<TaskDefinition>, KvError> {
    let from = format!("{PREFIX}{family}\0").into_bytes();
    let to = format!("{PREFIX}{family}\u{1}").into_bytes();
    scan_all(kv, &from, &to)
}

/// The latest ACTIVE revision of `family`: read from the newest down, stopping at it.
pub fn latest_active(kv: &dyn KvRead, family: &str) -> Result<Option<TaskDefinition>, KvError> {
    let active = |d: &TaskDefinition| d.status == TaskDefinitionStatus::Active;
    Ok(page(kv, Some(family), true, None, 1, active)?.pop())
}

/// Up to `want` revisions that `keep` accepts, of `family` (or of every family), in (family,
/// revision) order or, `descending`, the reverse, starting after `after` in that order. It reads
/// from the page's position and stops when the page is full.
pub fn page(
    kv: &dyn KvRead,
    family: Option<&str>,
    descending: bool,
    after: Option<(&str, u32)>,
    want: usize,
    mut keep: impl FnMut(&TaskDefinition) -> bool,
) -> Result<Vec<TaskDefinition>, KvError> {
    let (mut from, mut to) = match family {
        Some(f) => (
            format!("{PREFIX}{f}\0").into_bytes(),
            format!("{PREFIX}{f}\u{1}").into_bytes(),
        ),
        None => (PREFIX.as_bytes().to_vec(), b"taskdef0".to_vec()),
    };
    if let Some((f, revision)) = after {
        let position = revision_key(f, revision);
        if descending {
            to = to.min(position);
        } else {
            let mut past = position;
            past.push(0);
            from = from.max(past);
        }
    }
    let mut out = Vec::new();
    if want == 0 || from >= to {
        return Ok(out);
    }
    let each = |_: Vec<u8>, value: Vec<u8>| {
        let definition: TaskDefinition = decode(&value)?;
        if keep(&definition) {
            out.push(definition);
        }
        Ok(out.len() < want)
    };
    super::scan_rows_ordered(kv, &from, &to, descending, each)?;
    Ok(out)
}

/// Up to `want` families whose name starts with `prefix` and comes after `after`, in name
/// order, that `keep` accepts given whether the family has an ACTIVE revision. It walks the
/// family keys from the page's position and reads only those families' revisions, and stops
/// when the page is full.
pub fn families_page(
    kv: &dyn KvRead,
    prefix: &str,
    after: Option<&str>,
    want: usize,
    mut keep: impl FnMut(&str, bool) -> bool,
) -> Result<Vec<String>, KvError> {
    let mut from = family_key(prefix);
    if let Some(after) = after {
        let mut past = family_key(after);
        past.push(0);
        from = from.max(past);
    }
    let within = family_key(prefix);
    let mut out = Vec::new();
    if want == 0 {
        return Ok(out);
    }
    super::scan_rows(kv, &from, b"tdfamily0", |key, _| {
        if !key.starts_with(&within) {
            return Ok(false);
        }
        let family = String::from_utf8_lossy(&key[b"tdfamily/".len()..]).into_owned();
        let active = latest_active(kv, &family)?.is_some();
        if keep(&family, active) {
            out.push(family);
        }
        Ok(out.len() < want)
    })?;
    Ok(out)
}

/// Every revision of every family, in (family, revision) order.
pub fn all(kv: &dyn KvRead) -> Result<Vec<TaskDefinition>, KvError> {
    scan_all(kv, PREFIX.as_bytes(), b"taskdef0")
}
