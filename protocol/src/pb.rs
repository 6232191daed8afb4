//! The code generated from `proto/agent.proto`, and nothing else.

#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

tonic::include_proto!("ecsd.agent.v1");
