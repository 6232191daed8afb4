//! ecsd: a highly available control plane that speaks the Amazon ECS API.
//!
//! Code map, in reading order (dependencies point up this list, never down):
//! - [`model`]: ECS nouns and identifiers; pure data.
//! - [`state`]: the replicated state machine; pure and deterministic.
//! - [`cql`]: the cluster query language (parse and evaluate); pure.
//! - [`storage`]: RocksDB; the only module that imports `rocksdb`.
//! - [`rpc`]: generated protobuf code; nothing else.
//! - [`raft`]: the openraft adapter; the only module that calls openraft.
//! - [`control`]: leader-only loops, started after a barrier, cancelled on leadership loss.
//! - [`placement`]: the placement engine; pure.
//! - [`reconcile`]: the service reconciler (rolling arithmetic); pure.
//! - [`taskdef`]: what a task definition asks of a task (containers, reservation); pure.
//! - [`api`]: the ECS HTTP front end; it translates and holds no state.
//! - [`agent`]: the agent protocol, ecsd's side of it, and the `ecs-agent` runtimes.
//! - [`config`], [`node`], [`telemetry`]: configuration, composition root, logging.
//! - [`bench`]: the `ecs-bench` tool's testable logic (histograms, load drivers, local clusters).

pub mod agents;
pub mod api;
pub mod config;
pub mod control;
pub mod cql;
pub mod model;
pub mod node;
pub mod placement;
// openraft's `StorageError` is large, and its storage traits dictate it as the error type.
#[allow(clippy::result_large_err)]
pub mod raft;
pub mod reconcile;
pub mod rpc;
pub mod stamp;
pub mod state;
pub mod storage;
pub mod taskdef;
pub mod telemetry;
