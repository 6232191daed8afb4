//! The replicated commands and what applying them answers: the log's payload. Variants and
//! fields are only ever added, so a newer node applies any older log.

use serde::{Deserialize, Serialize};

use super::*;
use crate::model::*;

/// One client request, stamped by the node that received it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    /// Unique per client request; a retried or forwarded request keeps its id and applies once.
    pub request_id: String,
    /// Wall-clock time at the receiving node, epoch milliseconds.
    pub ts_ms: u64,
    pub command: Command,
    /// A digest of the client request behind the proposal (its action and body), when there is
    /// one: a request id seen before with another digest is refused, not answered with the
    /// first request's outcome (a reused id is a forged forward, never a retry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_digest: Option<u64>,
}

/// Every mutation that goes through Raft. Variants are only ever added, never changed, so old log
/// entries keep decoding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Does nothing; used as a write barrier and in tests.
    Noop,
    /// Creates a cluster, or returns the existing ACTIVE one of that name.
    CreateCluster {
        name: String,
        arn: String,
        tags: Vec<Tag>,
        #[serde(default)]
        options: ClusterOptions,
    },
    /// Changes an ACTIVE cluster's settings (by name: others are kept), configuration and
    /// Service Connect defaults; `None` keeps what it has.
    UpdateCluster {
        name: String,
        settings: Option<Vec<ClusterSetting>>,
        configuration: Option<serde_json::Value>,
        service_connect_defaults: Option<serde_json::Value>,
    },
    /// Replaces an ACTIVE cluster's capacity providers and default strategy. A provider that an
    /// ACTIVE service's strategy names cannot be removed.
    PutClusterCapacityProviders {
        name: String,
        providers: Vec<String>,
        strategy: Vec<StrategyItem>,
    },
    /// Marks an empty cluster INACTIVE.
    DeleteCluster { name: String },
    /// Registers the next revision of `family`; its ARN is `arn_base:<revision>`.
    RegisterTaskDefinition {
        family: String,
        arn_base: String,
        body: serde_json::Value,
        tags: Vec<Tag>,
    },
    /// Marks one revision INACTIVE (idempotent).
    DeregisterTaskDefinition { family: String, revision: u32 },
    /// Sets a principal's account setting.
    PutAccountSetting {
        principal: String,
        name: String,
        value: String,
    },
    /// Removes a principal's own value; `root` is the account default it falls back to, and
    /// `fallback` the value where the root user has none either (entries without it: the 2018
    /// default, `DISABLED`).
    DeleteAccountSetting {
        principal: String,
        root: String,
        name: String,
        #[serde(default)]
        fallback: Option<String>,
    },
    /// Adds tags to a resource, replacing the values of keys it already has.
    TagResource { target: TagTarget, tags: Vec<Tag> },
    /// Removes the tags with these keys from a resource.
    UntagResource { target: TagTarget, keys: Vec<String> },
    /// Registers a container instance, or refreshes an existing one.
    RegisterContainerInstance(Box<container_instances::Registration>),
    /// Deregisters an instance (INACTIVE); with `force` even if it has tasks.
    DeregisterContainerInstance { cluster: String, id: String, force: bool },
    /// Sets ACTIVE or DRAINING on instances of a cluster.
    UpdateContainerInstancesState {
        cluster: String,
        ids: Vec<String>,
        status: InstanceStatus,
    },
    /// Sets attributes on container instances (instance ID, attribute), all or nothing.
    PutAttributes {
        cluster: String,
        items: Vec<(String, crate::model::Attribute)>,
    },
    /// Removes attributes by name from container instances, all or nothing.
    DeleteAttributes {
        cluster: String,
        items: Vec<(String, crate::model::Attribute)>,
    },
    /// Asks for an agent update on an instance whose agent is older than `latest`.
    UpdateContainerAgent {
        cluster: String,
        id: String,
        latest: String,
    },
    /// Starts tasks where the proposer placed them; each placement is re-checked.
    LaunchTasks(Box<tasks::Launch>),
    /// Sets a task's desired status to STOPPED.
    StopTask {
        cluster: String,
        id: String,
        reason: Option<String>,
    },
    /// An agent's report of task and container status.
    TaskStateChange(Box<tasks::StateChange>),
    /// Creates a service (or returns it, for an identical retry with the same client token).
    CreateService(Box<services::Creation>),
    /// Changes a service's count, task definition or deployment settings.
    UpdateService(Box<services::Update>),
    /// Deletes a service: DRAINING until its tasks are stopped, then INACTIVE.
    DeleteService { cluster: String, name: String, force: bool },
    /// The lost-instance policy: every task of an instance whose agent has been gone too long is
    /// marked STOPPED with `reason`, releasing its resources.
    StopInstanceTasks {
        cluster: String,
        id: String,
        reason: String,
    },
    /// Forgets up to `limit` tasks of `cluster` that reached STOPPED before `before_ms` (ECS keeps
    /// stopped tasks visible for at least an hour).
    ForgetStoppedTasks {
        cluster: String,
        before_ms: u64,
        limit: usize,
    },
    /// The same, the oldest stopped first, through the index of stop times: it reads only the
    /// tasks it forgets (the variant above decodes every task of the cluster, gigabytes with a
    /// million). Each one also indexes up to a bounded number of tasks stopped before the index
    /// existed, until it has been through them all.
    ForgetStoppedTasksByTime {
        cluster: String,
        before_ms: u64,
        limit: usize,
    },
    /// An agent's progress through an update asked for by UpdateContainerAgent.
    SetAgentUpdateStatus {
        cluster: String,
        id: String,
        status: String,
        version_info: Option<serde_json::Value>,
    },
    /// Records that an instance's agent connected or disconnected (liveness transitions only).
    SetAgentConnected {
        cluster: String,
        id: String,
        connected: bool,
    },
    /// The service scheduler stops these tasks of a service (each re-checked: still the service's,
    /// still desired RUNNING) with `reason`, and records one event naming those it stopped.
    StopServiceTasks {
        cluster: String,
        name: String,
        ids: Vec<String>,
        reason: String,
        event_id: String,
        /// The PRIMARY deployment and desired count the stop was planned for; apply does
        /// nothing if the service has changed since.
        #[serde(default)]
        planned: Option<(String, i64)>,
    },
    /// Records a service event, unless the newest event says the same and is under six hours old.
    ServiceEvent {
        cluster: String,
        name: String,
        id: String,
        message: String,
    },
    /// A DAEMON service's desired count follows its eligible instances.
    SetServiceDesiredCount {
        cluster: String,
        name: String,
        desired: i64,
    },
    /// A decision of a leader-only loop of `term`: applied only if the log entry carrying it was
    /// appended in that same term, so a deposed leader's decisions never take effect.
    AsLeader { term: u64, command: Box<Command> },
    /// Adds an access key (its id and secret made by the node that took the request).
    CreateAccessKey(Box<AccessKey>),
    /// Deletes the access key with this name or access key id.
    RevokeAccessKey { name: String },
    /// Names the cluster (its first leader proposes it; the first applied wins).
    SetClusterId { id: String },
    /// Records the incarnation of member `node`'s data directory.
    SetIncarnation { node: u64, incarnation: String },
    /// Raises the cluster version (`identity.rs`): proposed by the leader once every member
    /// supports `version`.
    SetClusterVersion { version: u32 },
    /// The service scheduler found the service steady on its PRIMARY `deployment`.
    CompleteDeployment {
        cluster: String,
        name: String,
        deployment: String,
    },
    /// DeleteTaskDefinitions: an INACTIVE revision becomes DELETE_IN_PROGRESS.
    DeleteTaskDefinition { family: String, revision: u32 },
    /// UpdateTaskProtection: protects these service tasks for `minutes` from the time it is
    /// applied, or unprotects them (`None`). Tasks that are not found, stopped or not a
    /// service's are failures.
    UpdateTaskProtection {
        cluster: String,
        ids: Vec<String>,
        minutes: Option<u64>,
    },
}

/// What applying one proposal produced. Recorded in the dedupe table, so a retry gets the same.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Outcome {
    Done,
    Cluster(Cluster),
    TaskDefinition(TaskDefinition),
    ContainerInstance(Box<ContainerInstance>),
    /// Instances changed by UpdateContainerInstancesState, and the IDs that were not found.
    ContainerInstances {
        updated: Vec<ContainerInstance>,
        missing: Vec<String>,
    },
    Setting(AccountSetting),
    Tags(Vec<Tag>),
    /// Tasks started, and `(instance ARN, reason)` for placements that failed.
    Tasks {
        tasks: Vec<Task>,
        failures: Vec<(String, String)>,
    },
    Task(Box<Task>),
    Service(Box<Service>),
    /// How many records were forgotten.
    Forgotten(usize),
    Rejected(Rejection),
}

/// A domain rejection: the command was valid but the state did not allow it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    ClusterNotFound,
    ClusterContainsContainerInstances,
    ClusterContainsServices,
    ClusterContainsTasks,
    TaskDefinitionNotFound,
    ResourceNotFound,
    TooManyTags,
    InstanceNotRegistered,
    InstanceHasRunningTasks,
    TargetNotFound,
    AttributeLimitExceeded,
    MissingVersion,
    NoUpdateAvailable,
    UpdateInProgress,
    TaskDefinitionInactive,
    TaskNotFound,
    ServiceNotFound,
    ServiceNotActive,
    ServiceNotIdempotent,
    ServiceScaledAboveZero,
    DaemonMaximumPercent,
    /// A leader-only decision reached the log in another term than the one it was made in.
    StaleLeader,
    /// A launch's `memberOf` expression does not parse (its proposer checks every one, so
    /// only a log entry of an earlier version can hold one); the launch is refused whole.
    InvalidPlacementConstraint,
    /// The request id was already used, within the dedupe window, by a different request.
    RequestIdReused,
    /// An access key of that name (or id) exists.
    KeyNameInUse,
    /// No access key has that name or id.
    KeyNotFound,
    /// An agent re-registered an instance bound to another agent.
    InstanceOfAnotherAgent,
    /// A capacity provider left out of PutClusterCapacityProviders is in an ACTIVE service's
    /// strategy.
    CapacityProviderInUse(String),
    /// A strategy names a capacity provider the cluster does not have.
    CapacityProviderNotAssociated,
    /// DeleteTaskDefinitions of a revision that is still ACTIVE.
    TaskDefinitionStillActive,
}

/// The log entry payload: many proposals share one entry and one fsync.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Batch(pub Vec<Proposal>);

/// One outcome per proposal of a [`Batch`], in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchOutcome(pub Vec<Outcome>);
