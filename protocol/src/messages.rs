//! The agent protocol's message bodies (JSON inside `proto/agent.proto`'s envelopes).
//!
//! These are wire types: ecsd converts them to and from its replicated commands at one boundary
//! (`src/agents/boundary.rs` in the server), so the agent protocol and the Raft log evolve apart.
//! Their JSON is the protocol: fields are only ever added, with `#[serde(default)]`.

use serde::{Deserialize, Serialize};

/// Names one container instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRef {
    pub cluster: String,
    pub instance_id: String,
}

/// What an agent asks for on its assignment stream. `deltas`: after the first assignment, send
/// only what changed (an agent that does not say gets every assignment in full).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentsRequest {
    #[serde(flatten)]
    pub instance: InstanceRef,
    #[serde(default)]
    pub deltas: bool,
}

/// Everything an instance should be doing: its tasks that are not STOPPED, in task ID order.
///
/// On a stream of deltas, the first assignment is whole and each later one (`delta`) holds in
/// `tasks` only the tasks new or changed since the one before, and in `removed` the IDs no longer
/// listed; [`Assignment::merge`] rebuilds the whole one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The instance's change counter in the replicated state when this was read: it only grows,
    /// so an agent ignores an older assignment (from a node that lags) and, in a newer one,
    /// stops any task it runs that is no longer listed (marked STOPPED while it was away, by
    /// forced deregistration or the lost-instance policy).
    #[serde(default)]
    pub generation: u64,
    /// The instance was deregistered: its tasks are orphaned, not stopped (they keep running on
    /// the host, as with ECS), so the agent does not stop what is no longer listed.
    #[serde(default)]
    pub deregistered: bool,
    pub tasks: Vec<AssignedTask>,
    /// The instance's agent update status (UpdateContainerAgent): PENDING asks for an update.
    #[serde(default)]
    pub agent_update: Option<String>,
    /// `tasks` and `removed` are changes to the assignment before this one on the stream.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delta: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl Assignment {
    /// Takes in the next assignment of the same stream: a whole one replaces this one, a delta
    /// changes it. The tasks stay in ID order.
    pub fn merge(&mut self, next: Assignment) {
        if !next.delta {
            *self = next;
            return;
        }
        self.generation = next.generation;
        self.deregistered = next.deregistered;
        self.agent_update = next.agent_update;
        if !next.removed.is_empty() {
            let removed: std::collections::BTreeSet<&str> = next.removed.iter().map(String::as_str).collect();
            self.tasks.retain(|t| !removed.contains(t.id.as_str()));
        }
        for task in next.tasks {
            match self.tasks.binary_search_by(|t| t.id.cmp(&task.id)) {
                Ok(i) => self.tasks[i] = task,
                Err(i) => self.tasks.insert(i, task),
            }
        }
    }
}

/// An agent's progress through an update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateProgress {
    pub instance: InstanceRef,
    /// STAGING, STAGED, UPDATING, UPDATED or FAILED.
    pub status: String,
    /// The new `versionInfo`, with UPDATED.
    #[serde(default)]
    pub version_info: Option<serde_json::Value>,
}

/// One task, with what the agent needs to run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AssignedTask {
    pub id: String,
    pub arn: String,
    /// RUNNING or STOPPED.
    pub desired_status: String,
    /// As of when the task was last sent. It is the agent's own report, so a change of it alone
    /// sends nothing on a stream (the server's assignment tracker).
    pub last_status: String,
    /// The task definition as registered (ECS JSON: containerDefinitions, …).
    pub definition: serde_json::Value,
    /// The task's overrides (ECS JSON: containerOverrides, …).
    pub overrides: serde_json::Value,
    /// An awsvpc task's own network: its address in a `/30` whose other usable address is the
    /// instance's side (servers before awsvpc tasks send none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<TaskNetwork>,
}

/// The network namespace an awsvpc task runs in: `address/30`, reached from the instance
/// through `gateway`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNetwork {
    pub address: String,
    pub gateway: String,
    pub prefix: u8,
}

/// A task's (or container's) status as an agent reports it. Ordered: status only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskStatus {
    Pending,
    Running,
    Stopped,
}

/// A port a container is reachable on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkBinding {
    pub bind_ip: String,
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: String,
}

/// A container's change, as the agent reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerChange {
    pub name: String,
    pub status: Option<TaskStatus>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub network_bindings: Option<Vec<NetworkBinding>>,
    pub runtime_id: Option<String>,
}

/// A change of one task and its containers, with SubmitTaskStateChange's meaning.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StateChange {
    pub cluster: String,
    pub task_id: String,
    pub status: Option<TaskStatus>,
    pub reason: Option<String>,
    pub containers: Vec<ContainerChange>,
    pub pull_started_at_ms: Option<u64>,
    pub pull_stopped_at_ms: Option<u64>,
    pub execution_stopped_at_ms: Option<u64>,
}

/// State changes of one instance's tasks, applied like SubmitTaskStateChange.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub changes: Vec<StateChange>,
}

/// How many changes were applied (a change for an unknown task is acknowledged and dropped).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportReply {
    pub acknowledged: usize,
}
