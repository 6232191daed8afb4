//! Backups, as etcd's `etcdctl snapshot save | status | restore` and Nomad's `operator snapshot`:
//!
//! - **save**: the state machine, data and metadata from one point-in-time view, in the
//!   snapshot file format (`snapshot_file.rs`), then a footer: the SHA-256 of everything before
//!   it and the magic `ECSDSUM1`. A node makes it after a read barrier, so it holds every write
//!   acknowledged before the request (`GET /cluster/snapshot`, `ecsd snapshot save`).
//! - **inspect**: the checksum verified, then the index, term, membership and a census.
//! - **restore**: the data directory of one member of a *new* cluster. Its state is the
//!   backup's, at the backup's log position; its membership is the new cluster's (from the
//!   node's config); its cluster id is new (derived from the backup and the members, so every
//!   member restored from the same file gets the same one, and the old cluster's survivors are
//!   refused as from another cluster); the members' incarnations are dropped (each restored
//!   node records its own). Its log is empty and purged up to the snapshot, its vote is the
//!   snapshot's term: the first election is in a newer term than any entry.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use openraft::storage::RaftLogStorage;
use openraft::{Membership, StoredMembership, Vote};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::snapshot_file::{self, Meta};
use super::state_machine;
use super::{NodeId, NodeInfo};
use crate::storage::{Cf, Store};

const SUM_MAGIC: &[u8; 8] = b"ECSDSUM1";
/// The footer: a SHA-256 digest, then [`SUM_MAGIC`].
const SUM_LEN: u64 = 40;

/// A backup just written: an open file whose name is already gone (nothing is left on disk
/// however the caller ends), read from its start.
pub struct Saved {
    pub file: File,
    pub meta: Meta,
    pub sha256: String,
    pub bytes: u64,
}

/// Writes a backup of the state in `store` to a new file in `dir`, and unlinks it.
pub fn save(store: &Store, dir: &Path) -> std::io::Result<Saved> {
    fs::create_dir_all(dir)?;
    let path = dir.join(format!("backup-{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = (|| {
        let meta = state_machine::dump_to_file(store, &path)?;
        let mut file = fs::OpenOptions::new().read(true).append(true).open(&path)?;
        fs::remove_file(&path)?;
        let digest = digest_of(&mut file, u64::MAX)?;
        file.write_all(&digest)?;
        file.write_all(SUM_MAGIC)?;
        let bytes = file.metadata()?.len();
        file.seek(SeekFrom::Start(0))?;
        Ok(Saved {
            file,
            meta,
            sha256: hex(&digest),
            bytes,
        })
    })();
    if written.is_err() {
        let _ = fs::remove_file(&path);
    }
    written
}

/// The SHA-256 of the first `limit` bytes of `input` (all of it when shorter).
fn digest_of(input: &mut impl Read, limit: u64) -> std::io::Result<[u8; 32]> {
    let mut hasher = Sha256::new();
    let mut input = input.take(limit);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finalize().into());
        }
        hasher.update(&buf[..n]);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn invalid(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what)
}

/// Checks a backup's footer and checksum; returns its SHA-256 (hex).
pub fn verify(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let name = path.display();
    if len < SUM_LEN + 8 {
        return Err(invalid(format!("{name}: too short to be an ecsd backup")));
    }
    let mut footer = [0u8; SUM_LEN as usize];
    file.seek(SeekFrom::Start(len - SUM_LEN))?;
    file.read_exact(&mut footer)?;
    if &footer[32..] != SUM_MAGIC {
        return Err(invalid(format!(
            "{name}: no checksum footer (not an ecsd backup, or cut short)"
        )));
    }
    file.seek(SeekFrom::Start(0))?;
    let digest = digest_of(&mut BufReader::new(file), len - SUM_LEN)?;
    if digest[..] != footer[..32] {
        return Err(invalid(format!(
            "{name}: checksum mismatch (the file is corrupt): recorded {}, computed {}",
            hex(&footer[..32]),
            hex(&digest)
        )));
    }
    Ok(hex(&digest))
}

/// What a backup holds.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub sha256: String,
    pub bytes: u64,
    /// The log position the state is at.
    pub index: Option<u64>,
    pub term: Option<u64>,
    pub voters: BTreeSet<NodeId>,
    pub members: BTreeMap<NodeId, NodeInfo>,
    pub cluster_id: Option<String>,
    /// Resources by kind (clusters, services, tasks, container instances, ...).
    pub counts: BTreeMap<&'static str, u64>,
    pub rows: u64,
}

/// Verifies and summarises the backup at `path`.
pub fn inspect(path: &Path) -> std::io::Result<Summary> {
    let sha256 = verify(path)?;
    let bytes = fs::metadata(path)?.len();
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut rows = 0;
    let mut cluster_id = None;
    let meta = snapshot_file::read(path, |cf, key, value| {
        rows += 1;
        if cf == Cf::Data {
            if let Some(kind) = crate::state::census_kind(key) {
                *counts.entry(kind).or_default() += 1;
            }
        }
        if let Some(key) = state_machine::state_meta_key(cf, key) {
            if let Some(id) = crate::state::identity::cluster_id_of_row(key, value) {
                cluster_id = Some(id);
            }
        }
        Ok(())
    })?;
    let membership = meta.last_membership.membership();
    Ok(Summary {
        sha256,
        bytes,
        index: meta.last_log_id.map(|l| l.index),
        term: meta.last_log_id.map(|l| l.leader_id.term),
        voters: membership.voter_ids().collect(),
        members: membership.nodes().map(|(id, n)| (*id, n.clone())).collect(),
        cluster_id,
        counts,
        rows,
    })
}

/// Makes `data_dir` the data directory of member `node_id` of a new cluster of `members`
/// (all voters), from the backup at `backup`; `data_dir` must not hold a node's data.
pub async fn restore(
    backup: &Path,
    data_dir: &Path,
    node_id: NodeId,
    members: &BTreeMap<NodeId, NodeInfo>,
) -> Result<Summary, String> {
    if !members.contains_key(&node_id) {
        return Err(format!("node {node_id} is not one of the new cluster's members"));
    }
    // A snapshot left in the directory would be taken for this node's at its start.
    let snapshots_left = fs::read_dir(data_dir.join("snapshots")).is_ok_and(|mut d| d.next().is_some());
    if data_dir.join("db").exists() || snapshots_left {
        return Err(format!(
            "{} already holds a node's data: restore into a new data directory",
            data_dir.display()
        ));
    }
    let summary = inspect(backup).map_err(|e| e.to_string())?;
    let made_snapshots = !data_dir.join("snapshots").exists();
    let restored = make_member(backup, data_dir, node_id, members, summary).await;
    if restored.is_err() {
        // Nothing half made is left for a node to start on, or for a second try to refuse; and
        // nothing that was there before is touched.
        let _ = fs::remove_dir_all(data_dir.join("db"));
        if made_snapshots {
            let _ = fs::remove_dir_all(data_dir.join("snapshots"));
        }
    }
    restored
}

async fn make_member(
    backup: &Path,
    data_dir: &Path,
    node_id: NodeId,
    members: &BTreeMap<NodeId, NodeInfo>,
    summary: Summary,
) -> Result<Summary, String> {
    // One id for every member restored from this file into these members; not the old one.
    let mut hasher = Sha256::new();
    hasher.update(summary.sha256.as_bytes());
    hasher.update(serde_json::to_vec(members).map_err(|e| e.to_string())?);
    let seed: [u8; 32] = hasher.finalize().into();
    let cluster_id = uuid::Builder::from_random_bytes(seed[..16].try_into().expect("16 bytes"))
        .into_uuid()
        .to_string();

    let snapshots = data_dir.join("snapshots");
    fs::create_dir_all(&snapshots).map_err(|e| format!("create {}: {e}", snapshots.display()))?;
    let staged = snapshots.join(format!("restore-{}.tmp", uuid::Uuid::new_v4().simple()));
    let meta = rewrite(backup, &staged, members, &cluster_id).map_err(|e| format!("write the snapshot: {e}"))?;
    let store = Store::open(&data_dir.join("db")).map_err(|e| format!("open the data directory: {e}"))?;
    state_machine::install_into(&store, &snapshots, &meta, &staged).map_err(|e| format!("load the snapshot: {e}"))?;
    let last = meta.last_log_id.ok_or("the backup is of an empty state")?;
    let mut log = super::log_store::LogStore::new(store.clone());
    let storage = |e: openraft::StorageError<NodeId>| format!("write the Raft metadata: {e}");
    log.save_vote(&Vote::new(last.leader_id.term, node_id))
        .await
        .map_err(storage)?;
    log.save_committed(Some(last)).await.map_err(storage)?;
    log.purge(last).await.map_err(storage)?;
    // Its vote and log are the backup's: at each start it asks its peers whether they recorded
    // it already (a second restore of the same member must not rejoin: `identity::guard`).
    let mut marker = crate::storage::Batch::default();
    marker.put(Cf::RaftMeta, super::identity::RESTORED, b"1");
    store
        .write(marker, true)
        .map_err(|e| format!("write the Raft metadata: {e}"))?;
    Ok(Summary {
        voters: members.keys().copied().collect(),
        members: members.clone(),
        cluster_id: Some(cluster_id),
        ..summary
    })
}

/// Copies the backup's snapshot to `out` with the new membership and cluster id.
fn rewrite(backup: &Path, out: &Path, members: &BTreeMap<NodeId, NodeInfo>, cluster_id: &str) -> std::io::Result<Meta> {
    let mut writer = snapshot_file::Writer::new(BufWriter::new(File::create(out)?))?;
    let old = snapshot_file::read(backup, |cf, key, value| match state_machine::state_meta_key(cf, key) {
        Some(state_key) => match crate::state::identity::restored_row(state_key, value, cluster_id) {
            Some(value) => writer.record(cf, key, &value),
            None => Ok(()),
        },
        None => writer.record(cf, key, value),
    })?;
    let voters: BTreeSet<NodeId> = members.keys().copied().collect();
    let membership = Membership::new(vec![voters], members.clone());
    let meta = Meta {
        last_log_id: old.last_log_id,
        last_membership: StoredMembership::new(*old.last_membership.log_id(), membership),
        snapshot_id: format!(
            "restored-{}-{}",
            old.last_log_id.map_or(0, |l| l.index),
            uuid::Uuid::new_v4().simple()
        ),
    };
    let file = writer.finish(&meta)?.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(meta)
}
