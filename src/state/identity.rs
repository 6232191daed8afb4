//! The cluster's identity, replicated: its id (made by its first leader; the first one
//! applied wins) and each member's incarnation (made when the member's data directory was new;
//! a node that lost its data has another, and the start-up guard in `raft/identity.rs` refuses
//! to let it return as the same member).
//!
//! Keys (in the state's bookkeeping space): `cluster_id`; `incarnation/<node id>`;
//! `cluster_version`.
//!
//! The cluster version is the feature level every member can apply: a command or field that an
//! earlier version would apply differently (or could not read) is proposed only once the
//! version is at least the level that brought it, so nodes of two versions never build two
//! states from one log during a rolling upgrade. The leader raises it once every member reports
//! that it supports the new level (`control/version.rs`); it never goes down.

use super::{KvError, KvRead, Outcome, Space, Txn};

const CLUSTER_ID: &[u8] = b"cluster_id";
const CLUSTER_VERSION: &[u8] = b"cluster_version";

/// The feature level of this build. 1: every command of the 2018 API and before; 2: today's
/// ECS (long ARNs by default, settings as sent, cluster options and capacity providers, launch
/// kinds and task networks, rollout states and the circuit breaker, task protection,
/// DeleteTaskDefinitions). 3: the dedupe record of a request without a client token is kept
/// for [`super::BRIEF_DEDUPE_TTL_MS`] instead of a day, and a tagging command's record holds no
/// copy of the resource's tags (`state::apply_batch`).
pub const FEATURE_LEVEL: u32 = 3;

/// Raises the cluster version to `version` (never lowers it).
pub(super) fn set_cluster_version(txn: &mut Txn<'_>, version: u32) -> Result<Outcome, KvError> {
    if version > cluster_version(txn)? {
        txn.put(Space::Meta, CLUSTER_VERSION.to_vec(), version.to_be_bytes().to_vec());
    }
    Ok(Outcome::Done)
}

/// The cluster version: 1 until the leader raised it.
pub fn cluster_version(kv: &dyn KvRead) -> Result<u32, KvError> {
    Ok(kv
        .get(Space::Meta, CLUSTER_VERSION)?
        .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
        .map_or(1, u32::from_be_bytes))
}

fn incarnation_key(node: u64) -> Vec<u8> {
    format!("incarnation/{node:020}").into_bytes()
}

/// Sets the cluster id, unless it has one.
pub(super) fn set_cluster_id(txn: &mut Txn<'_>, id: &str) -> Result<Outcome, KvError> {
    if txn.get(Space::Meta, CLUSTER_ID)?.is_none() {
        txn.put(Space::Meta, CLUSTER_ID.to_vec(), id.as_bytes().to_vec());
    }
    Ok(Outcome::Done)
}

/// Records member `node`'s incarnation (a member re-added under its id after it lost its data
/// records its new one).
pub(super) fn set_incarnation(txn: &mut Txn<'_>, node: u64, incarnation: &str) -> Outcome {
    txn.put(Space::Meta, incarnation_key(node), incarnation.as_bytes().to_vec());
    Outcome::Done
}

/// The cluster id, once its first leader has made one.
pub fn cluster_id(kv: &dyn KvRead) -> Result<Option<String>, KvError> {
    Ok(kv
        .get(Space::Meta, CLUSTER_ID)?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// The incarnation member `node` recorded, if it has.
pub fn incarnation(kv: &dyn KvRead, node: u64) -> Result<Option<String>, KvError> {
    Ok(kv
        .get(Space::Meta, &incarnation_key(node))?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// A row of the state's meta space as a restored cluster keeps it (`ecsd snapshot restore`):
/// the cluster id becomes `new_cluster_id`, so the old cluster's survivors cannot talk to the
/// new one; members' incarnations go (each restored node records its own); the rest stays.
pub fn restored_row(key: &[u8], value: &[u8], new_cluster_id: &str) -> Option<Vec<u8>> {
    if key == CLUSTER_ID {
        Some(new_cluster_id.as_bytes().to_vec())
    } else if key.starts_with(b"incarnation/") {
        None
    } else {
        Some(value.to_vec())
    }
}

/// The cluster id, when a row of the state's meta space is the one that holds it.
pub fn cluster_id_of_row(key: &[u8], value: &[u8]) -> Option<String> {
    (key == CLUSTER_ID).then(|| String::from_utf8_lossy(value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restored_cluster_gets_the_new_id_and_forgets_incarnations() {
        assert_eq!(restored_row(CLUSTER_ID, b"old", "new").as_deref(), Some(&b"new"[..]));
        assert_eq!(restored_row(&incarnation_key(2), b"abc", "new"), None);
        assert_eq!(restored_row(b"applied_ts", b"5", "new").as_deref(), Some(&b"5"[..]));
    }
}
