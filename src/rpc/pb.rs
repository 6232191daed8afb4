//! The code generated from `proto/raft.proto`, and nothing else.

#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

tonic::include_proto!("ecsd.raft.v1");
