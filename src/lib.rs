//! ecsd: a highly available control plane that speaks the Amazon ECS API.
//!
//! The modules, domain first (ARCHITECTURE.md has the rules between them, which
//! `tests/it/tidy.rs` checks):
//! - [`model`]: ECS nouns, identifiers and ARNs; pure data.
//! - [`cql`]: the cluster query language (parse and evaluate); pure.
//! - [`state`]: the replicated state machine and its queries; pure and deterministic.
//! - [`taskdef`], [`placement`], [`reconcile`]: what a task definition asks of a task, the
//!   placement engine, the service reconciler; pure.
//! - [`storage`]: RocksDB, the only module that imports `rocksdb`.
//! - [`rpc`]: code generated from `proto/raft.proto`.
//! - [`raft`]: the openraft adapter, the only module that names openraft.
//! - [`stamp`]: the clock and the stamping of proposals.
//! - [`launch`]: the one launch path (template and plan) of RunTask, StartTask and services.
//! - [`control`]: the leader-only loops.
//! - [`agents`]: the agent service (the protocol itself is the `ecsd-protocol` crate).
//! - [`api`]: the ECS HTTP front end.
//! - [`tls`]: certificates, the identities they carry, and a node's TLS material.
//! - [`config`], [`node`], [`telemetry`]: configuration, the composition root, logging.

pub mod agents;
pub mod api;
pub mod config;
pub mod control;
pub mod cql;
pub mod launch;
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
pub mod tls;
