//! ECS API requests that a follower sends to the leader (placement runs there), carried on the
//! node-to-node port rather than the public API: the request id a forward carries is honoured
//! only from there, so no API client can name the id its request is applied under.
//!
//! The Raft layer carries them without reading them; the API layer serves them through the
//! handler it sets at startup ([`RaftHandle::set_request_handler`]).

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::network::Method;
use super::{NodeError, RaftHandle};

/// A forwarded ECS API request; its body travels as raw bytes beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForwardedRequest {
    /// The ECS action (`RunTask`, …).
    pub action: String,
    /// The id the request got where it arrived: if the forward times out and that node
    /// proposes itself, the two proposals dedupe to one.
    pub request_id: String,
    /// Who made it, as verified where it arrived.
    #[serde(default)]
    pub caller: Option<crate::model::Caller>,
}

/// The leader's answer: HTTP status and ECS JSON body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ForwardedReply {
    pub status: u16,
    pub body: serde_json::Value,
}

/// Serves a forwarded request (the API layer's).
pub type RequestHandler = Arc<dyn Fn(ForwardedRequest, Vec<u8>) -> BoxFuture<'static, ForwardedReply> + Send + Sync>;

impl RaftHandle {
    /// Sets how this node serves requests other nodes forward to it (set once, before it serves).
    pub fn set_request_handler(&self, handler: RequestHandler) {
        let _ = self.request_handler.set(handler);
    }

    /// Sends an API request to the leader when another node leads, and returns its answer.
    /// `None`: no other node is known to lead, or it could not be reached or does not serve
    /// forwarded requests (an earlier version): the caller handles the request itself.
    pub async fn forward_request(&self, request: &ForwardedRequest, body: &[u8]) -> Option<ForwardedReply> {
        let leader = self.current_leader().filter(|l| *l != self.id)?;
        let addr = self.leader_addr(leader)?;
        let reply = self
            .pool
            .call_with_data::<_, Result<ForwardedReply, NodeError>>(
                &addr,
                leader,
                Method::ForwardRequest,
                request,
                body.to_vec(),
                self.attempt_timeout,
            )
            .await;
        match reply {
            Ok(Ok(reply)) => Some(reply),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the leader did not serve a forwarded request; handling here");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "forward to the leader failed; handling here");
                None
            }
        }
    }

    /// Serves a request another node forwarded here.
    pub async fn serve_request(&self, request: ForwardedRequest, body: Vec<u8>) -> Result<ForwardedReply, NodeError> {
        let handler = self
            .request_handler
            .get()
            .ok_or_else(|| NodeError::Unavailable("this node serves no forwarded requests yet".into()))?;
        Ok(handler(request, body).await)
    }
}
