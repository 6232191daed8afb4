//! The code generated from `proto/raft.proto` and `proto/agent.proto`, and nothing else.

#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

tonic::include_proto!("ecsd.raft.v1");

/// The agent protocol (`proto/agent.proto`).
pub mod agent {
    tonic::include_proto!("ecsd.agent.v1");
}
