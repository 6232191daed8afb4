//! ecsd's side of the agent protocol (`proto/agent.proto`, bodies in `ecsd_protocol::messages`):
//! assignment streams served from this node's replica (`assignments.rs`), heartbeats sent to
//! the leader's liveness loop, and batched state reports. Wire types become commands only in
//! `boundary.rs`.

mod assignments;
pub mod boundary;

use std::pin::Pin;

use ecsd_protocol::messages::{AssignmentsRequest, InstanceRef, Report, ReportReply, StateChange, UpdateProgress};
use ecsd_protocol::pb::agent_service_server::{AgentService, AgentServiceServer};
use ecsd_protocol::pb::{AgentReply, AgentRequest};
use futures::Stream;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::model::clip;
use crate::raft::{NodeError, RaftNode};
use crate::stamp;
use crate::state::{tasks, Outcome};
pub use assignments::Tracker;

pub struct AgentGrpc {
    node: RaftNode,
    /// Ends the assignment streams when the node shuts down (they never end on their own).
    shutdown: tokio_util::sync::CancellationToken,
}

/// The agent a request came from, by its certificate (with mutual TLS on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentName(pub String);

/// Admits agents' certificates (`agent-<name>.ecsd`).
pub type AdmitAgents = crate::raft::service::Admit<AgentName>;

/// The agent service behind the interceptor that admits agents.
pub type AgentServer = tonic::service::interceptor::InterceptedService<AgentServiceServer<AgentGrpc>, AdmitAgents>;

impl AgentGrpc {
    /// The agent service; with `tls`, it admits only agents' certificates.
    pub fn server(node: RaftNode, shutdown: tokio_util::sync::CancellationToken, tls: bool) -> AgentServer {
        // An agent's reports are small: 4 MiB bounds what one message may make the node
        // decode. Assignments to an agent may be larger, up to the node-to-node limit.
        let server = AgentServiceServer::new(AgentGrpc { node, shutdown })
            .max_decoding_message_size(4 * 1024 * 1024)
            .max_encoding_message_size(crate::raft::network::MAX_MESSAGE_BYTES);
        let admit = AdmitAgents {
            tls,
            service: "the agent service",
            admits: "agents",
            accept: |identity| match identity {
                crate::tls::Identity::Agent(name) => Some(AgentName(name)),
                _ => None,
            },
        };
        tonic::service::interceptor::InterceptedService::new(server, admit)
    }
}

/// The agent a request came from (with mutual TLS on), and its decoded body.
fn decode_from<T: DeserializeOwned>(request: Request<AgentRequest>) -> Result<(Option<AgentName>, T), Status> {
    let agent = request.extensions().get::<AgentName>().cloned();
    Ok((agent, decode(request)?))
}

impl AgentGrpc {
    /// With an agent's certificate, that `instance` is bound to that agent: an agent speaks
    /// only for the instances it registered (with the key of the same name).
    fn owns(&self, agent: &Option<AgentName>, cluster: &str, instance: &str) -> Result<(), Status> {
        let Some(AgentName(name)) = agent else { return Ok(()) };
        let view = self.node.handle().view();
        match crate::state::container_instances::bound_to(view, cluster, instance, name) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Status::permission_denied(clip(&format!(
                "agent {name} may act only for the container instances it registered, not {cluster}/{instance}"
            )))),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }

    /// With an agent's certificate, that task `task` (if the cluster has it) runs on an
    /// instance bound to that agent.
    fn owns_task(&self, agent: &Option<AgentName>, cluster: &str, task: &str) -> Result<(), Status> {
        let Some(AgentName(name)) = agent else { return Ok(()) };
        let view = self.node.handle().view();
        match crate::state::container_instances::task_bound_to(view, cluster, task, name) {
            Ok(true) => Ok(()),
            Ok(false) => Err(Status::permission_denied(clip(&format!(
                "agent {name} may report only for tasks on the container instances it registered, not {cluster}/{task}"
            )))),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}

fn decode<T: DeserializeOwned>(request: Request<AgentRequest>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().payload)
        .map_err(|e| Status::invalid_argument(clip(&format!("decode payload: {e}"))))
}

/// A write's failure as the agent sees it: "unavailable" is worth a retry (elsewhere, later),
/// "rejected" is not. Messages are cut short: a status travels in an HTTP/2 header, and one
/// that echoes a large input would break the stream instead of answering.
fn status_of(e: NodeError) -> Status {
    match e {
        NodeError::Unavailable(m) => Status::unavailable(clip(&m)),
        NodeError::Rejected(m) => Status::invalid_argument(clip(&m)),
        NodeError::Internal(m) => Status::internal(clip(&m)),
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<AgentReply, Status> {
    let payload = serde_json::to_vec(value).map_err(|e| Status::internal(format!("encode reply: {e}")))?;
    Ok(AgentReply { payload })
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<AgentReply, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentGrpc {
    type AssignmentsStream = ReplyStream;

    async fn assignments(&self, request: Request<AgentRequest>) -> Result<Response<Self::AssignmentsStream>, Status> {
        let (agent, AssignmentsRequest { instance, deltas }) = decode_from(request)?;
        // A task definition's environment goes only to the agent of the instance that runs it.
        self.owns(&agent, &instance.cluster, &instance.instance_id)?;
        let handle = self.node.handle().clone();
        // Subscribe before the first read, so no change between the two is missed.
        let mut changed = handle
            .feed()
            .subscribe(tasks::work_key(&instance.cluster, &instance.instance_id));
        let (tx, rx) = mpsc::channel(4);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut tracker = Tracker::default();
            loop {
                changed.borrow_and_update();
                match tracker.next(handle.view(), &instance, deltas) {
                    Ok(None) => {}
                    Ok(Some(next)) => {
                        if tx.send(encode(&next)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                }
                tokio::select! {
                    result = changed.changed() => if result.is_err() { return },
                    _ = tx.closed() => return,
                    _ = shutdown.cancelled() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn update_status(&self, request: Request<AgentRequest>) -> Result<Response<AgentReply>, Status> {
        let (agent, progress): (_, UpdateProgress) = decode_from(request)?;
        self.owns(&agent, &progress.instance.cluster, &progress.instance.instance_id)?;
        let proposal = stamp::proposal(boundary::update_status(progress));
        self.node.write(proposal).await.map_err(status_of)?;
        Ok(Response::new(encode(&())?))
    }

    async fn heartbeat(&self, request: Request<AgentRequest>) -> Result<Response<AgentReply>, Status> {
        let (agent, instance): (_, InstanceRef) = decode_from(request)?;
        self.owns(&agent, &instance.cluster, &instance.instance_id)?;
        crate::control::liveness::heartbeat(self.node.handle(), instance.cluster, instance.instance_id)
            .await
            .map_err(status_of)?;
        Ok(Response::new(encode(&())?))
    }

    async fn report(&self, request: Request<AgentRequest>) -> Result<Response<AgentReply>, Status> {
        let (agent, report): (_, Report) = decode_from(request)?;
        // One report for a task of another agent's instance refuses the whole report.
        for change in &report.changes {
            self.owns_task(&agent, &change.cluster, &change.task_id)?;
        }
        // Changes of one task apply in order; different tasks' changes go together (and share
        // log entries through the write batcher).
        let mut by_task: Vec<(String, Vec<StateChange>)> = Vec::new();
        for change in report.changes {
            match by_task.iter_mut().find(|(id, _)| *id == change.task_id) {
                Some((_, changes)) => changes.push(change),
                None => by_task.push((change.task_id.clone(), vec![change])),
            }
        }
        let writes = by_task.into_iter().map(|(_, changes)| {
            let node = self.node.clone();
            async move {
                let mut acknowledged = 0;
                for change in changes {
                    let proposal = stamp::proposal(boundary::task_state_change(change));
                    if let Outcome::Done = node.write(proposal).await? {
                        acknowledged += 1;
                    }
                }
                Ok::<usize, NodeError>(acknowledged)
            }
        });
        let mut acknowledged = 0;
        for result in futures::future::join_all(writes).await {
            acknowledged += result.map_err(status_of)?;
        }
        Ok(Response::new(encode(&ReportReply { acknowledged })?))
    }
}
