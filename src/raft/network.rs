//! Outbound node-to-node RPC: openraft's network over tonic, and the peer channel pool.
//!
//! One long-lived HTTP/2 channel per peer address, created lazily and reused by every RPC. The
//! channel connects to the address the node's `[dial]` table gives for the peer's address (the
//! address itself unless rerouted), and stays keyed by the peer's address.
//! Each call honours openraft's deadline. A peer that cannot be connected to is reported as
//! `Unreachable`, so openraft backs off instead of hammering it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use super::{NodeId, NodeInfo, TypeConfig};
use crate::config::Dialer;
use crate::rpc::pb;
use crate::rpc::pb::raft_service_client::RaftServiceClient;

/// Largest gRPC message either side accepts: snapshot chunks and big AppendEntries fit.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// Why an RPC to a peer failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcFailure {
    /// No connection could be made; nothing was delivered.
    #[error("peer {addr} unreachable: {message}")]
    Unreachable { addr: String, message: String },
    /// The call failed after it may have been delivered (timeout, reset, server error).
    #[error("rpc to {addr} failed: {message}")]
    Failed { addr: String, message: String },
    /// The request encodes to more than the message limit; nothing was sent.
    #[error("request of {bytes} bytes to {addr} exceeds the {MAX_MESSAGE_BYTES}-byte message limit")]
    TooLarge { addr: String, bytes: usize },
}

/// Channels to peers, keyed by node and address, and the node's `[dial]` table. Cheap to clone.
#[derive(Clone, Default)]
pub struct PeerPool {
    channels: Arc<Mutex<HashMap<NodeId, HashMap<String, Channel>>>>,
    dialer: Dialer,
    /// Mutual TLS: this node's certificate and the cluster CA. A channel to node N expects
    /// the certificate of `node-N.ecsd`.
    tls: Option<ClientTlsConfig>,
    /// The cluster id every request carries, once known (`identity.rs`).
    cluster_id: Arc<std::sync::OnceLock<String>>,
}

impl PeerPool {
    /// An empty pool that connects to peers through `dialer`, over mutual TLS with `tls`.
    pub fn new(dialer: Dialer, tls: Option<&crate::tls::Material>) -> PeerPool {
        PeerPool {
            channels: Arc::default(),
            dialer,
            tls: tls.map(|m| {
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&m.ca))
                    .identity(Identity::from_pem(&m.cert, &m.key))
                    .timeout(Duration::from_secs(5))
            }),
            cluster_id: Arc::default(),
        }
    }

    /// Sets the cluster id requests carry (it never changes once set).
    pub fn set_cluster_id(&self, id: &str) {
        let _ = self.cluster_id.set(id.to_string());
    }

    /// The cluster id, once known.
    pub fn cluster_id(&self) -> Option<&str> {
        self.cluster_id.get().map(String::as_str)
    }

    /// The address to connect to for a peer at `addr` (its `[dial]` entry, or `addr`).
    pub fn dial<'a>(&'a self, addr: &'a str) -> &'a str {
        self.dialer.dial(addr)
    }

    fn client(&self, addr: &str, target: NodeId) -> Result<RaftServiceClient<Channel>, RpcFailure> {
        let mut channels = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        let channel = match channels.get(&target).and_then(|by_addr| by_addr.get(addr)) {
            Some(c) => c.clone(),
            None => {
                let unreachable = |e: tonic::transport::Error| RpcFailure::Unreachable {
                    addr: addr.to_string(),
                    message: e.to_string(),
                };
                let scheme = if self.tls.is_some() { "https" } else { "http" };
                let mut endpoint =
                    Endpoint::from_shared(format!("{scheme}://{}", self.dial(addr))).map_err(unreachable)?;
                if let Some(tls) = &self.tls {
                    let name = crate::tls::Identity::Node(target).dns_name();
                    endpoint = endpoint
                        .tls_config(tls.clone().domain_name(name))
                        .map_err(unreachable)?;
                }
                let endpoint = endpoint
                    .connect_timeout(Duration::from_millis(500))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5))
                    .keep_alive_timeout(Duration::from_secs(5))
                    .keep_alive_while_idle(true);
                let channel = endpoint.connect_lazy();
                channels
                    .entry(target)
                    .or_default()
                    .insert(addr.to_string(), channel.clone());
                channel
            }
        };
        Ok(RaftServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Calls `method` on the peer at `addr` with a JSON payload and decodes the JSON reply.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        target: NodeId,
        method: Method,
        request: &Req,
        timeout: Duration,
    ) -> Result<Resp, RpcFailure> {
        self.call_with_data(addr, target, method, request, Vec::new(), timeout)
            .await
    }

    /// [`PeerPool::call`] with raw `data` carried beside the JSON payload.
    pub async fn call_with_data<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        target: NodeId,
        method: Method,
        request: &Req,
        data: Vec<u8>,
        timeout: Duration,
    ) -> Result<Resp, RpcFailure> {
        let failed = |message: String| RpcFailure::Failed {
            addr: addr.to_string(),
            message,
        };
        let payload = serde_json::to_vec(request).map_err(|e| failed(format!("encode request: {e}")))?;
        // Leave room for the envelope; the receiver would refuse the message anyway.
        if payload.len() + data.len() > MAX_MESSAGE_BYTES - 1024 {
            return Err(RpcFailure::TooLarge {
                addr: addr.to_string(),
                bytes: payload.len() + data.len(),
            });
        }
        let mut client = self.client(addr, target)?;
        let request = pb::RaftRequest {
            target,
            payload,
            data,
            cluster_id: self.cluster_id().unwrap_or_default().to_string(),
        };
        let call = async {
            match method {
                Method::AppendEntries => client.append_entries(request).await,
                Method::Vote => client.vote(request).await,
                Method::InstallSnapshot => client.install_snapshot(request).await,
                Method::Forward => client.forward(request).await,
                Method::ReadIndex => client.read_index(request).await,
                Method::Admin => client.admin(request).await,
                Method::NodeStatus => client.node_status(request).await,
                Method::Heartbeat => client.heartbeat(request).await,
                Method::ForwardRequest => client.forward_request(request).await,
            }
        };
        let reply = match tokio::time::timeout(timeout, call).await {
            Err(_) => return Err(failed(format!("{method:?} timed out after {timeout:?}"))),
            Ok(Err(status)) => return Err(classify(addr, status)),
            Ok(Ok(reply)) => reply.into_inner(),
        };
        serde_json::from_slice(&reply.payload).map_err(|e| failed(format!("decode reply: {e}")))
    }
}

/// A transport error before the request was sent means the peer is unreachable.
fn classify(addr: &str, status: tonic::Status) -> RpcFailure {
    let message = format!("{}: {}", status.code(), status.message());
    if status.code() == tonic::Code::Unavailable {
        RpcFailure::Unreachable {
            addr: addr.to_string(),
            message,
        }
    } else {
        RpcFailure::Failed {
            addr: addr.to_string(),
            message,
        }
    }
}

/// The RPCs of `proto/raft.proto`.
#[derive(Debug, Clone, Copy)]
pub enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Forward,
    ReadIndex,
    Admin,
    NodeStatus,
    /// A message for the leader's inbox (`RaftHandle::tell_leader`).
    Heartbeat,
    /// An ECS API request for the leader (`requests.rs`).
    ForwardRequest,
}

/// openraft's factory of per-peer connections.
#[derive(Clone)]
pub struct Network {
    pub pool: PeerPool,
    /// Pause before retrying an unreachable peer. Shorter than openraft's 500 ms default, so a
    /// restarted node hears from the leader before its own election timer fires.
    pub unreachable_backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        PeerConnection {
            target,
            addr: node.rpc_addr.clone(),
            pool: self.pool.clone(),
            backoff: self.unreachable_backoff,
        }
    }
}

/// openraft's handle on one peer; it does not connect until the first call.
pub struct PeerConnection {
    target: NodeId,
    addr: String,
    pool: PeerPool,
    backoff: Duration,
}

impl PeerConnection {
    async fn raft_call<Req, Resp, E>(
        &self,
        method: Method,
        request: &Req,
        data: Vec<u8>,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let reply: Result<Resp, RaftError<NodeId, E>> = self
            .pool
            .call_with_data(&self.addr, self.target, method, request, data, option.hard_ttl())
            .await
            .map_err(|failure| match failure {
                RpcFailure::Unreachable { .. } => RPCError::Unreachable(Unreachable::new(&failure)),
                RpcFailure::Failed { .. } | RpcFailure::TooLarge { .. } => {
                    RPCError::Network(NetworkError::new(&failure))
                }
            })?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        let entries = rpc.entries.len();
        let reply: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = match self
            .pool
            .call(&self.addr, self.target, Method::AppendEntries, &rpc, option.hard_ttl())
            .await
        {
            Ok(reply) => reply,
            // Too many entries for one message: openraft retries at once with fewer. One
            // entry always fits, as the write batcher bounds an entry's size.
            Err(RpcFailure::TooLarge { bytes, .. }) if entries > 1 => {
                return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint(
                    entries_hint(entries, bytes),
                )))
            }
            Err(failure @ RpcFailure::Unreachable { .. }) => {
                return Err(RPCError::Unreachable(Unreachable::new(&failure)))
            }
            Err(failure) => return Err(RPCError::Network(NetworkError::new(&failure))),
        };
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        mut rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>>
    {
        // The chunk travels as raw bytes beside the JSON of the rest.
        let data = std::mem::take(&mut rpc.data);
        self.raft_call(Method::InstallSnapshot, &rpc, data, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.raft_call(Method::Vote, &rpc, Vec::new(), &option).await
    }
}

/// How many of `entries` entries (encoding to `bytes`) to send next: half of what would fit.
fn entries_hint(entries: usize, bytes: usize) -> u64 {
    let fit = (entries as u128 * MAX_MESSAGE_BYTES as u128 / bytes.max(1) as u128) as u64;
    (fit / 2).clamp(1, entries as u64 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_hint_shrinks_and_never_reaches_zero() {
        assert_eq!(entries_hint(300, 4 * MAX_MESSAGE_BYTES), 37);
        assert_eq!(entries_hint(2, 10 * MAX_MESSAGE_BYTES), 1);
        assert_eq!(entries_hint(10, MAX_MESSAGE_BYTES + 1), 4);
        assert!(entries_hint(1000, usize::MAX) >= 1);
    }
}
