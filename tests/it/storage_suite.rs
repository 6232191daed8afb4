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
