//! ecsd's side of the agent protocol: assignment streams served from this node's replica,
//! heartbeats forwarded to the leader, and batched state reports.

use std::pin::Pin;

use futures::Stream;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::protocol::{AssignedTask, Assignment, InstanceRef, Report, ReportReply};
use crate::raft::RaftNode;
use crate::rpc::pb::agent::agent_service_server::{AgentService, AgentServiceServer};
use crate::rpc::pb::agent::{AgentReply, AgentRequest};
use crate::state::{self, task_definitions, tasks, Command, KvRead, Outcome, Proposal};

pub struct AgentGrpc {
    node: RaftNode,
    /// Ends the assignment streams when the node shuts down (they never end on their own).
    shutdown: tokio_util::sync::CancellationToken,
}

impl AgentGrpc {
    pub fn server(node: RaftNode, shutdown: tokio_util::sync::CancellationToken) -> AgentServiceServer<AgentGrpc> {
        AgentServiceServer::new(AgentGrpc { node, shutdown })
    }
}

fn decode<T: DeserializeOwned>(request: Request<AgentRequest>) -> Result<T, Status> {
    serde_json::from_slice(&request.into_inner().payload)
        .map_err(|e| Status::invalid_argument(format!("decode payload: {e}")))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<AgentReply, Status> {
    let payload = serde_json::to_vec(value).map_err(|e| Status::internal(format!("encode reply: {e}")))?;
    Ok(AgentReply { payload })
}

/// The instance's current assignment, read from `view`.
pub fn assignment(view: &dyn KvRead, instance: &InstanceRef) -> Result<Assignment, state::KvError> {
    // The counter is read before the tasks: the tasks sent are then at least as new as the
    // generation they are labelled with, so an agent never drops a task on a stale read.
    let generation = match view.get(
        state::Space::Data,
        &tasks::work_key(&instance.cluster, &instance.instance_id),
    )? {
        Some(bytes) => serde_json::from_slice(&bytes).unwrap_or(0),
        None => 0,
    };
    let registered = state::container_instances::get(view, &instance.cluster, &instance.instance_id)?;
    let mut out = Assignment {
        generation,
        deregistered: registered
            .as_ref()
            .is_none_or(|i| i.status == crate::model::InstanceStatus::Inactive),
        agent_update: registered.and_then(|i| i.agent_update_status),
        ..Default::default()
    };
    // An instance's tasks mostly share a few definitions: each is read once.
    let mut definitions: std::collections::BTreeMap<(String, u32), serde_json::Value> = Default::default();
    for task in tasks::on_instance(view, &instance.cluster, &instance.instance_id)? {
        let revision = task
            .task_definition_arn
            .rsplit(':')
            .next()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let definition = match definitions.get(&(task.family.clone(), revision)) {
            Some(d) => d.clone(),
            None => {
                let d = task_definitions::get(view, &task.family, revision)?
                    .map(|d| d.body)
                    .unwrap_or_default();
                definitions.insert((task.family.clone(), revision), d.clone());
                d
            }
        };
        out.tasks.push(AssignedTask {
            id: task.id.clone(),
            arn: task.arn.clone(),
            desired_status: task.desired_status.as_str().to_string(),
            last_status: task.last_status.as_str().to_string(),
            definition,
            overrides: task.overrides.clone(),
        });
    }
    Ok(out)
}

type ReplyStream = Pin<Box<dyn Stream<Item = Result<AgentReply, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentGrpc {
    type AssignmentsStream = ReplyStream;

    async fn assignments(&self, request: Request<AgentRequest>) -> Result<Response<Self::AssignmentsStream>, Status> {
        let instance: InstanceRef = decode(request)?;
        let handle = self.node.handle().clone();
        // Subscribe before the first read, so no change between the two is missed.
        let mut changed = handle
            .feed()
            .subscribe(tasks::work_key(&instance.cluster, &instance.instance_id));
        let (tx, rx) = mpsc::channel(4);
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut last: Option<Assignment> = None;
            loop {
                changed.borrow_and_update();
                let current = match assignment(handle.view(), &instance) {
                    Ok(a) => a,
                    Err(e) => {
                        let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                        return;
                    }
                };
                if last.as_ref() != Some(&current) {
                    if tx.send(encode(&current)).await.is_err() {
                        return;
                    }
                    last = Some(current);
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
        let progress: super::protocol::UpdateProgress = decode(request)?;
        let proposal = Proposal {
            request_id: uuid::Uuid::new_v4().to_string(),
            ts_ms: crate::api::now_ms(),
            command: Command::SetAgentUpdateStatus {
                cluster: progress.instance.cluster,
                id: progress.instance.instance_id,
                status: progress.status,
                version_info: progress.version_info,
            },
        };
        self.node
            .write(proposal)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(encode(&())?))
    }

    async fn heartbeat(&self, request: Request<AgentRequest>) -> Result<Response<AgentReply>, Status> {
        let instance: InstanceRef = decode(request)?;
        self.node
            .handle()
            .heartbeat(instance.cluster, instance.instance_id)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(encode(&())?))
    }

    async fn report(&self, request: Request<AgentRequest>) -> Result<Response<AgentReply>, Status> {
        let report: Report = decode(request)?;
        // Changes of one task apply in order; different tasks' changes go together (and share
        // log entries through the write batcher).
        let mut by_task: Vec<(String, Vec<crate::state::tasks::StateChange>)> = Vec::new();
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
                    let proposal = Proposal {
                        request_id: uuid::Uuid::new_v4().to_string(),
                        ts_ms: crate::api::now_ms(),
                        command: Command::TaskStateChange(Box::new(change)),
                    };
                    if let Outcome::Done = node.write(proposal).await? {
                        acknowledged += 1;
                    }
                }
                Ok::<usize, crate::raft::NodeError>(acknowledged)
            }
        });
        let mut acknowledged = 0;
        for result in futures::future::join_all(writes).await {
            acknowledged += result.map_err(|e| Status::unavailable(e.to_string()))?;
        }
        Ok(Response::new(encode(&ReportReply { acknowledged })?))
    }
}
