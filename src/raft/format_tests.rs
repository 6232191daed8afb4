//! The on-disk formats of the previous version are read by this one. `tests/fixtures/format-v1/`
//! is the data directory of a one-node cluster written by an earlier build
//! (`tests/fixtures/make_format_fixture.py` says how): its whole log, a snapshot taken in the
//! middle of it, and the state it applied. Opened with this build, the log and the snapshot
//! must both decode and rebuild exactly that state.

use std::path::Path;

use openraft::storage::{RaftLogReader, RaftStateMachine};
use openraft::{Entry, RaftSnapshotBuilder};

use super::log_store::LogStore;
use super::state_machine::StateMachineStore;
use super::TypeConfig;
use crate::storage::{Cf, Store, KEY_MAX};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/format-v1");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every row of the state-machine families, as text (for readable failures).
fn state_rows(store: &Store) -> Vec<Vec<(String, String)>> {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Cf::STATE_MACHINE
        .iter()
        .map(|cf| {
            let rows = store.scan(*cf, b"", &KEY_MAX, usize::MAX).unwrap();
            rows.iter().map(|(k, v)| (text(k), text(v))).collect()
        })
        .collect()
}

/// Fails naming the first row that differs, family by family.
fn assert_same(got: &[Vec<(String, String)>], expected: &[Vec<(String, String)>], what: &str) {
    for (family, (got, expected)) in got.iter().zip(expected).enumerate() {
        if let Some(i) = got.iter().zip(expected).position(|(g, e)| g != e) {
            panic!(
                "{what} built another state in family {family}: {:?}, expected {:?}",
                got[i], expected[i]
            );
        }
        assert_eq!(
            got.len(),
            expected.len(),
            "{what}: family {family} holds another number of rows"
        );
    }
}

/// An empty node's store and state machine in `dir`.
fn empty(dir: &Path) -> (Store, StateMachineStore) {
    let store = Store::open(&dir.join("db")).unwrap();
    let sm = StateMachineStore::open(store.clone(), &dir.join("snapshots")).unwrap();
    (store, sm)
}

#[tokio::test]
async fn a_log_and_a_snapshot_written_by_the_previous_version_rebuild_its_state() {
    let old_dir = tempfile::tempdir().unwrap();
    copy_dir(Path::new(FIXTURE), old_dir.path());
    let store = Store::open(&old_dir.path().join("db")).unwrap();
    let mut old = StateMachineStore::open(store.clone(), &old_dir.path().join("snapshots")).unwrap();
    let (applied, _) = old.applied_state().await.unwrap();
    let applied = applied.expect("the fixture applied entries").index;
    let expected = state_rows(&store);
    assert!(
        expected[2].len() > 20,
        "the fixture holds a real state: {:?}",
        expected[2]
    );

    let entries: Vec<Entry<TypeConfig>> = LogStore::new(store.clone())
        .try_get_log_entries(0..=applied)
        .await
        .expect("every entry of the earlier log decodes");
    assert_eq!(
        entries.len() as u64,
        applied + 1,
        "the fixture keeps its whole log, from the initial membership"
    );
    let snapshot = old
        .get_current_snapshot()
        .await
        .unwrap()
        .expect("the fixture has a snapshot");
    let at = snapshot.meta.last_log_id.expect("a snapshot of entries").index;
    assert!(
        at > 1 && at < applied,
        "the snapshot is in the middle of the log ({at} of {applied})"
    );

    // The whole log, replayed from the start on an empty node.
    let replay_dir = tempfile::tempdir().unwrap();
    let (replay_store, mut replay) = empty(replay_dir.path());
    replay.apply(entries.clone()).await.unwrap();
    assert_same(&state_rows(&replay_store), &expected, "the replayed log");

    // The snapshot installed on an empty node, then the entries after it.
    let install_dir = tempfile::tempdir().unwrap();
    let (install_store, mut install) = empty(install_dir.path());
    let mut file = install.begin_receiving_snapshot().await.unwrap();
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut bytes = Vec::new();
        let mut source = snapshot.snapshot;
        source.read_to_end(&mut bytes).await.unwrap();
        file.write_all(&bytes).await.unwrap();
        file.flush().await.unwrap();
    }
    install.install_snapshot(&snapshot.meta, file).await.unwrap();
    let after: Vec<_> = entries.into_iter().filter(|e| e.log_id.index > at).collect();
    install.apply(after).await.unwrap();
    assert_same(
        &state_rows(&install_store),
        &expected,
        "the snapshot and the rest of the log",
    );

    // And this build's own snapshot of that state holds the same rows.
    let rebuilt = install.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(rebuilt.meta.last_log_id.map(|l| l.index), Some(applied));
}
