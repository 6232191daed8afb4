//! The agent protocol's message bodies (JSON inside `proto/agent.proto`'s envelopes).

use serde::{Deserialize, Serialize};

use crate::state::tasks::StateChange;

/// Names one container instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceRef {
    pub cluster: String,
    pub instance_id: String,
}

/// Everything an instance should be doing: its tasks that are not STOPPED.
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
    /// As of when the assignment was read. It is the agent's own report, so a change of it
    /// alone sends no new assignment (the instance's change counter moves only when a task is
    /// added, changes its desired status or stops).
    pub last_status: String,
    /// The task definition as registered (ECS JSON: containerDefinitions, …).
    pub definition: serde_json::Value,
    /// The task's overrides (ECS JSON: containerOverrides, …).
    pub overrides: serde_json::Value,
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
