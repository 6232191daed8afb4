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
    use tokio::sync::watch;

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 1), index)
    }

    /// Polls `task` a few times without letting time pass: it must still be waiting.
    async fn still_waiting<T>(task: &tokio::task::JoinHandle<T>) -> bool {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        !task.is_finished()
    }

    #[tokio::test]
    async fn a_purge_waits_until_the_state_machine_reaches_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let (applied, gate) = watch::channel(Applied {
            upto: Some(log_id(3)),
            failed: false,
        });
        let mut log = LogStore::new(store).with_purge_gate(gate);

        // Behind the state machine: purges at once.
        log.purge(log_id(2)).await.unwrap();
        assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, Some(log_id(2)));

        // Ahead of it (a snapshot still being installed): waits.
        let mut waiting = log.clone();
        let purge = tokio::spawn(async move { waiting.purge(log_id(10)).await });
        assert!(still_waiting(&purge).await, "purge ran ahead of the state machine");
        applied.send_modify(|a| a.upto = Some(log_id(9)));
        assert!(still_waiting(&purge).await, "purge ran ahead of the state machine");
        applied.send_modify(|a| a.upto = Some(log_id(10)));
        purge.await.unwrap().unwrap();
        assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, Some(log_id(10)));

        // A state machine that fails releases the waiter with an error, and purges nothing.
        let mut waiting = log.clone();
        let purge = tokio::spawn(async move { waiting.purge(log_id(20)).await });
        assert!(still_waiting(&purge).await);
        applied.send_modify(|a| a.failed = true);
        assert!(purge.await.unwrap().is_err());
        assert_eq!(log.get_log_state().await.unwrap().last_purged_log_id, Some(log_id(10)));
    }
}
