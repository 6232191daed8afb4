//! openraft's storage conformance suite against the RocksDB log and state machine.

use ecsd::raft::log_store::LogStore;
use ecsd::raft::state_machine::StateMachineStore;
use ecsd::raft::{NodeId, TypeConfig};
use ecsd::storage::Store;
use openraft::testing::{StoreBuilder, Suite};
use openraft::StorageError;

struct RocksBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for RocksBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("db")).expect("open rocksdb");
        let sm = StateMachineStore::open(store.clone(), &dir.path().join("snapshots")).expect("open snapshots");
        Ok((dir, LogStore::new(store), sm))
    }
}

#[test]
fn rocksdb_stores_pass_the_openraft_suite() {
    Suite::test_all(RocksBuilder).unwrap();
}

mod purge_gate {
    use ecsd::raft::log_store::{Applied, LogStore};
    use ecsd::raft::NodeId;
    use ecsd::storage::Store;
    use openraft::storage::RaftLogStorage;
    use openraft::{CommittedLeaderId, LogId};
    use std::time::Duration;
    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// How long a purge is given to finish. The log write behind a purge runs on a blocking
    /// thread and is synced: this is real time, not a few polls of the task.
    const WINDOW: Duration = Duration::from_secs(1);

    /// Whether `task` finishes within [`WINDOW`] (it keeps running if not).
    async fn finishes_within_window<T>(task: &mut JoinHandle<T>) -> Option<T> {
        tokio::time::timeout(WINDOW, task)
            .await
            .ok()
            .map(|joined| joined.unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_purge_waits_until_the_state_machine_reaches_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let (applied, gate) = watch::channel(Applied {
            upto: Some(log_id(3)),
            failed: false,
        });
        let log = LogStore::new(store).with_purge_gate(gate);
        let purged = |log: &LogStore| {
            let mut log = log.clone();
            async move { log.get_log_state().await.unwrap().last_purged_log_id }
        };
        let spawn_purge = |index: u64| {
            let mut waiting = log.clone();
            tokio::spawn(async move { waiting.purge(log_id(index)).await })
        };

        // Behind the state machine: purges at once. The positive control of the waits below:
        // a purge that has no reason to wait is seen to finish within the same window.
        let mut purge = spawn_purge(2);
        let done = finishes_within_window(&mut purge).await;
        assert!(
            matches!(done, Some(Ok(()))),
            "an ungated purge did not finish within {WINDOW:?}: {done:?}"
        );
        assert_eq!(purged(&log).await, Some(log_id(2)));

        // Ahead of it (a snapshot still being installed): waits, and purges nothing meanwhile.
        let mut purge = spawn_purge(10);
        assert!(
            finishes_within_window(&mut purge).await.is_none(),
            "purge ran ahead of the state machine (applied up to 3)"
        );
        assert_eq!(purged(&log).await, Some(log_id(2)));
        applied.send_modify(|a| a.upto = Some(log_id(9)));
        assert!(
            finishes_within_window(&mut purge).await.is_none(),
            "purge ran ahead of the state machine (applied up to 9)"
        );
        assert_eq!(purged(&log).await, Some(log_id(2)));
        // Reaching the index releases it: the same wait sees it finish.
        applied.send_modify(|a| a.upto = Some(log_id(10)));
        let done = finishes_within_window(&mut purge).await;
        assert!(
            matches!(done, Some(Ok(()))),
            "the purge did not finish within {WINDOW:?} of the state machine reaching its index: {done:?}"
        );
        assert_eq!(purged(&log).await, Some(log_id(10)));

        // A state machine that fails releases the waiter with an error, and purges nothing.
        let mut purge = spawn_purge(20);
        assert!(
            finishes_within_window(&mut purge).await.is_none(),
            "purge ran ahead of the state machine (applied up to 10)"
        );
        applied.send_modify(|a| a.failed = true);
        let done = finishes_within_window(&mut purge).await;
        assert!(
            matches!(done, Some(Err(_))),
            "a failed state machine did not release the purge with an error within {WINDOW:?}: {done:?}"
        );
        assert_eq!(purged(&log).await, Some(log_id(10)));
    }
}
