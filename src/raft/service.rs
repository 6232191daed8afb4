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

/// The member a request came from, by its certificate (with mutual TLS on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerNode(pub u64);

/// Admits the callers of one service by their certificate's identity, with mutual TLS on
/// (`tls`): `accept` turns an identity the service admits into what its handlers read from the
/// request's extensions; any other identity, or none, is refused.
#[derive(Clone, Copy)]
pub struct Admit<T> {
    pub tls: bool,
    /// "the node-to-node service"
    pub service: &'static str,
    /// "members", in "admits members only"
    pub admits: &'static str,
    pub accept: fn(crate::tls::Identity) -> Option<T>,
}

impl<T: Clone + Send + Sync + 'static> tonic::service::Interceptor for Admit<T> {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if !self.tls {
            return Ok(request);
        }
        let identity = request
            .peer_certs()
            .and_then(|certs| certs.first().and_then(|c| crate::tls::identity_of(c)));
        let Some(identity) = identity else {
            return Err(Status::unauthenticated(format!(
                "{} admits {} only: present a certificate from the cluster CA",
                self.service, self.admits
            )));
        };
        match (self.accept)(identity.clone()) {
            Some(found) => {
                request.extensions_mut().insert(found);
                Ok(request)
            }
            None => Err(Status::permission_denied(format!(
                "{} admits {} only, not {}",
                self.service,
                self.admits,
                identity.stem()
            ))),
        }
    }
}

/// Admits members' certificates (`node-<id>.ecsd`), whose id the handlers then hold the
/// message to.
pub type AdmitPeers = Admit<PeerNode>;

/// The Raft service behind the interceptor that admits peers.
pub type PeerServer = tonic::service::interceptor::InterceptedService<RaftServiceServer<RaftGrpc>, AdmitPeers>;

impl RaftGrpc {
    /// The tonic server for `handle`, with raised message limits; with `tls`, it admits only
    /// members' certificates.
    pub fn server(handle: RaftHandle, tls: bool) -> PeerServer {
        let server = RaftServiceServer::new(RaftGrpc { handle })
            .max_decoding_message_size(super::network::MAX_MESSAGE_BYTES)
            .max_encoding_message_size(super::network::MAX_MESSAGE_BYTES);
        let admit = AdmitPeers {
            tls,
            service: "the node-to-node service",
            admits: "members",
            accept: |identity| match identity {
                crate::tls::Identity::Node(id) => Some(PeerNode(id)),
                _ => None,
            },
        };
        tonic::service::interceptor::InterceptedService::new(server, admit)
    }

    /// Raft's own messages wait until the start-up guard has passed (`identity.rs`).
    fn admitted(&self) -> Result<(), Status> {
        match self.handle.admitted.load(std::sync::atomic::Ordering::SeqCst) {
            true => Ok(()),
            false => Err(Status::unavailable("this node is starting")),
        }
    }

    /// Refuses a message whose sender (the vote's node) is not the member whose certificate
    /// sent it: one member cannot speak for another.
    fn check_sender(peer: Option<PeerNode>, claimed: Option<u64>) -> Result<(), Status> {
        match (peer, claimed) {
            (Some(PeerNode(peer)), Some(claimed)) if peer != claimed => Err(Status::permission_denied(format!(
                "node {peer} sent a message on behalf of node {claimed}"
            ))),
            _ => Ok(()),
        }
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
        if let (Some(ours), false) = (self.handle.pool.cluster_id(), request.cluster_id.is_empty()) {
            if ours != request.cluster_id {
                return Err(Status::failed_precondition(crate::model::clip(&format!(
                    "cluster ID mismatch: node {} is in cluster {ours}, the request came from cluster {}",
                    self.handle.id, request.cluster_id
                ))));
            }
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
        self.admitted()?;
        let peer = request.extensions().get::<PeerNode>().copied();
        let rpc: openraft::raft::AppendEntriesRequest<TypeConfig> = self.decode(request)?;
        Self::check_sender(peer, rpc.vote.leader_id().voted_for())?;
        let answer = self.handle.raft().append_entries(rpc).await;
        if matches!(&answer, Ok(r) if !matches!(r, openraft::raft::AppendEntriesResponse::HigherVote(_))) {
            self.handle.heard_from_leader();
        }
        reply(&answer)
    }

    async fn vote(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        self.admitted()?;
        let peer = request.extensions().get::<PeerNode>().copied();
        let rpc: openraft::raft::VoteRequest<u64> = self.decode(request)?;
        Self::check_sender(peer, rpc.vote.leader_id().voted_for())?;
        reply(&self.handle.raft().vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<pb::RaftRequest>) -> Result<Response<pb::RaftReply>, Status> {
        self.admitted()?;
        let peer = request.extensions().get::<PeerNode>().copied();
        let (mut rpc, data): (openraft::raft::InstallSnapshotRequest<TypeConfig>, _) =
            self.decode_with_data(request)?;
        Self::check_sender(peer, rpc.vote.leader_id().voted_for())?;
        // A sender that put the chunk in the JSON sends no raw bytes: keep the JSON's.
        if !data.is_empty() {
            rpc.data = data;
        }
        let sent = rpc.vote;
        let answer = self.handle.raft().install_snapshot(rpc).await;
        if matches!(&answer, Ok(r) if r.vote <= sent) {
            self.handle.heard_from_leader();
        }
        reply(&answer)
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
        let peer = request.extensions().get::<PeerNode>().copied();
        let op: AdminOp = self.decode(request)?;
        match &op {
            AdminOp::Campaign { from, .. } => Self::check_sender(peer, Some(*from))?,
            AdminOp::PreVote(ask) => {
                Self::check_sender(peer, Some(ask.from))?;
                return reply(&super::LeaderReply::Ok(self.handle.serve_pre_vote(ask)));
            }
            _ => {}
        }
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
