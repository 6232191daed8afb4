//! Generated protobuf and gRPC code. Nothing outside `rpc` and the Raft adapter names `pb`.

pub mod incoming;
pub mod pb;
