//! The code generated from `proto/raft.proto`, and nothing else (the agent protocol's is in
//! `ecsd_protocol::pb`).

#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

tonic::include_proto!("ecsd.raft.v1");
