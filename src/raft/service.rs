//! Inbound node-to-node RPC: the tonic service that feeds peers' messages to openraft.
//!
//! Requests name their target node id; a request meant for another node is refused, so a
//! misconfigured address can never make a node accept another's log.

use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::{AdminOp, RaftHandle, TypeConfig};
use crate::rpc::pb;
use crate::rpc::pb::raft_service_server::{RaftService, RaftServiceServer};
use crate::state::Batch;

/// The gRPC service of one node.
pub struct RaftGrpc {
    handle: RaftHandle,
}

impl RaftGrpc {
    /// The tonic server for `handle`, with raised message limits.
    pub fn server(handle: RaftHandle) -> RaftServiceServer<RaftGrpc> {
        RaftServiceServer::new(RaftGrpc { handle })
            .max_decoding_message_size(super::network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(super::network::MAX_MESSAGE_BYTES)
    }

    fn decode<T: DeserializeOwned>(&self, request: Request<pb::RaftRequest>) -> Result<T, Status> {
        self.decode_with_data(request).map(|(value, _)| value)
    }

    /// [`RaftGrpc::decode`], with the raw bytes carried beside the JSON.
    fn decode_with_data<T: DeserializeOwned>(&self, request: Request<pb::RaftRequest>) -> Result<(T, Vec<u8>), Status> {
        let request = request.into_inner();
        if request.target != self.handle.id {
            return Err(Status::failed_precondition(format!(
                "request for node {} reached node {}",
                request.target, self.handle.id
            )));
        }
        let value = serde_json::from_slice(&request.payload)
            .map_err(|e| Status::invalid_argument(crate::model::clip(&format!("decode payload: {e}"))))?;
        Ok((value, request.data))
    }
}

fn reply<T: Serialize>(value: &T) -> Result<Response<pb::RaftReply>, Status> {
    let payload = serde_json::to_vec(value).map_err(|e| Status::internal(format!("encode reply: {e}")))?;
    Ok(Response::new(pb::RaftReply { payload }))
}

#[tonic::async_trait]
impl RaftService for RaftGrpc {
    async fn append_entries(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        let rpc: openraft::raft::AppendEntriesRequest<TypeConfig> = self.decode(request)?;
        reply(&self.handle.raft().append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        let rpc = self.decode(request)?;
        reply(&self.handle.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        let (mut rpc, data): (openraft::raft::InstallSnapshotRequest<TypeConfig>, _) =
            self.decode_with_data(request)?;
        // A sender that put the chunk in the JSON sends no raw bytes: keep the JSON's.
        if !data.is_empty() {
            rpc.data = data;
        }
        reply(&self.handle.raft().install_snapshot(rpc).await)
    }

    async fn forward(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        let batch: Batch = self.decode(request)?;
        reply(&self.handle.serve_forwarded(batch).await)
    }

    async fn read_index(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        let () = self.decode(request)?;
        reply(&self.handle.serve_read_index().await)
    }

    async fn admin(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        let op: AdminOp = self.decode(request)?;
        reply(&self.handle.serve_admin(op).await)
    }

    async fn node_status(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        let () = self.decode(request)?;
        reply(&self.handle.local_report())
    }

    async fn forward_request(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        let (forwarded, body) = self.decode_with_data(request)?;
        reply(&self.handle.serve_request(forwarded, body).await)
    }

    async fn heartbeat(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        // Named for what it first carried: any message for the leader's inbox.
        let message: serde_json::Value = self.decode(request)?;
        reply(&self.handle.serve_leader_message(message))
    }
}
