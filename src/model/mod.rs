//! ECS nouns as the state machine stores them, and their identifiers (ARNs, names).
//!
//! Pure data: no I/O, no clock, no randomness. Wire (JSON) shapes live in `api::wire`; these
//! records are the persisted form and carry their own serde derive for that purpose only.

use serde::{Deserialize, Serialize};

pub mod service_spec;
pub use service_spec::{
    BinpackField, ConstraintKind, PlacementConstraint, PlacementStrategy, ServiceSpec, SpreadField, Strategy,
};

/// The AWS partition, account and region that every ARN of this deployment carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArnScope {
    pub region: String,
    pub account_id: String,
    /// Whether principals get long ARNs unless they (or the root user) opted out: today's ECS.
    /// `false` is the 2018 API's default (short ARNs until a principal opts in).
    #[serde(default)]
    pub long_arns_by_default: bool,
}

/// ARNs under a prefix `arn:aws:ecs:REGION:ACCOUNT:` ([`ArnScope::arn_prefix`]), in the long
/// format (`kind/CLUSTER/ID`) or the short one (`kind/ID`). The state formats a new resource's
/// ARN when it applies its creation, with the format the principal's account settings choose.
pub mod arn {
    fn member(prefix: &str, kind: &str, cluster: &str, id: &str, long: bool) -> String {
        if long {
            format!("{prefix}{kind}/{cluster}/{id}")
        } else {
            format!("{prefix}{kind}/{id}")
        }
    }

    pub fn task(prefix: &str, cluster: &str, id: &str, long: bool) -> String {
        member(prefix, "task", cluster, id, long)
    }

    pub fn service(prefix: &str, cluster: &str, name: &str, long: bool) -> String {
        member(prefix, "service", cluster, name, long)
    }

    pub fn container_instance(prefix: &str, cluster: &str, id: &str, long: bool) -> String {
        member(prefix, "container-instance", cluster, id, long)
    }

    pub fn container(prefix: &str, uuid: &str) -> String {
        format!("{prefix}container/{uuid}")
    }

    /// The cluster ARN beside a task's ARN (`…:task/…` → `…:cluster/NAME`).
    pub fn cluster_of_task(task_arn: &str, cluster: &str) -> Option<String> {
        task_arn
            .split_once(":task/")
            .map(|(prefix, _)| format!("{prefix}:cluster/{cluster}"))
    }

    /// The revision of a task definition ARN (`…:family:REVISION`).
    pub fn task_definition_revision(arn: &str) -> Option<u32> {
        arn.rsplit(':').next().and_then(|r| r.parse().ok())
    }
}

impl ArnScope {
    fn prefix(&self) -> String {
        self.arn_prefix()
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:`, the prefix of every ECS ARN of this deployment.
    pub fn arn_prefix(&self) -> String {
        format!("arn:aws:ecs:{}:{}:", self.region, self.account_id)
    }

    /// `arn:aws:iam::ACCOUNT:`, the prefix of the account's IAM principals.
    pub fn iam_prefix(&self) -> String {
        format!("arn:aws:iam::{}:", self.account_id)
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`.
    pub fn cluster_arn(&self, name: &str) -> String {
        format!("{}cluster/{}", self.prefix(), name)
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:task-definition/FAMILY` (the revision is appended when applied).
    pub fn task_definition_arn_base(&self, family: &str) -> String {
        format!("{}task-definition/{}", self.prefix(), family)
    }

    /// Resolves `family`, `family:revision` or a task definition ARN to (family, revision).
    /// Returns `None` when the text cannot name a task definition of this account and region.
    pub fn task_definition_ref<'a>(&self, id: &'a str) -> Option<(&'a str, Option<u32>)> {
        let rest = if id.starts_with("arn:") {
            id.strip_prefix(&self.prefix())?.strip_prefix("task-definition/")?
        } else {
            id
        };
        match rest.split_once(':') {
            None => valid_cluster_name(rest).then_some((rest, None)),
            Some((family, revision)) => {
                let revision: u32 = revision.parse().ok().filter(|r| *r >= 1)?;
                valid_cluster_name(family).then_some((family, Some(revision)))
            }
        }
    }

    /// A container instance ARN: `container-instance/CLUSTER/ID` (long) or `container-instance/ID`.
    pub fn container_instance_arn(&self, cluster: &str, id: &str, long: bool) -> String {
        arn::container_instance(&self.prefix(), cluster, id, long)
    }

    /// Resolves a container instance ID or ARN (either format) to its ID. An ARN naming another
    /// cluster, account or region resolves to `None`.
    pub fn container_instance_id<'a>(&self, cluster: &str, id: &'a str) -> Option<&'a str> {
        self.member_id("container-instance/", cluster, id)
    }

    /// Resolves a task ID or ARN (`task/ID` or `task/CLUSTER/ID`) to its ID.
    pub fn task_id<'a>(&self, cluster: &str, id: &'a str) -> Option<&'a str> {
        self.member_id("task/", cluster, id)
    }

    /// Resolves a service name or ARN (`service/NAME` or `service/CLUSTER/NAME`) to its name.
    pub fn service_name<'a>(&self, cluster: &str, id: &'a str) -> Option<&'a str> {
        self.member_id("service/", cluster, id)
    }

    /// An ID or ARN of a resource that belongs to a cluster, in the short or the long format.
    fn member_id<'a>(&self, kind: &str, cluster: &str, id: &'a str) -> Option<&'a str> {
        if !id.starts_with("arn:") {
            return (!id.is_empty() && !id.contains('/')).then_some(id);
        }
        let rest = id.strip_prefix(&self.prefix())?.strip_prefix(kind)?;
        match rest.split_once('/') {
            None => (!rest.is_empty()).then_some(rest),
            Some((c, i)) if c == cluster && !i.is_empty() && !i.contains('/') => Some(i),
            Some(_) => None,
        }
    }

    /// The account root user: the principal of unauthenticated requests, and the account default.
    pub fn root_principal(&self) -> String {
        format!("{}root", self.iam_prefix())
    }

    /// The principal of the access key named `name`: an IAM user of the account.
    pub fn user_principal(&self, name: &str) -> String {
        format!("{}user/{name}", self.iam_prefix())
    }

    /// Resolves "short name or full ARN" to a cluster name.
    ///
    /// Returns `None` for an ARN of another account, region or resource type: such an ARN names a
    /// cluster that does not exist here.
    pub fn cluster_name<'a>(&self, id: &'a str) -> Option<&'a str> {
        if !id.starts_with("arn:") {
            return Some(id);
        }
        let rest = id.strip_prefix(&self.prefix())?;
        let name = rest.strip_prefix("cluster/")?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
}

/// A resource tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Whether a cluster can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterStatus {
    Active,
    Inactive,
}

impl ClusterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Active => "ACTIVE",
            ClusterStatus::Inactive => "INACTIVE",
        }
    }
}

/// A cluster, as stored under `cluster/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub arn: String,
    pub status: ClusterStatus,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// ACTIVE and DRAINING container instances.
    #[serde(default)]
    pub registered_container_instances: u64,
    #[serde(default)]
    pub running_tasks: u64,
    #[serde(default)]
    pub pending_tasks: u64,
    #[serde(default)]
    pub active_services: u64,
    #[serde(default)]
    pub draining_services: u64,
    /// When the cluster was (re)created, in epoch milliseconds stamped by the proposer.
    #[serde(default)]
    pub created_at_ms: u64,
    /// Its settings, configuration and capacity providers (today's ECS).
    #[serde(default, skip_serializing_if = "ClusterOptions::is_empty")]
    pub options: ClusterOptions,
}

/// A cluster's setting (`containerInsights`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSetting {
    pub name: String,
    pub value: String,
}

/// One item of a capacity provider strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StrategyItem {
    pub capacity_provider: String,
    pub weight: i64,
    pub base: i64,
}

/// The capacity providers every cluster may use: Fargate's two, served by agents that offer
/// Fargate capacity (there is no EC2 Auto Scaling here, so no other provider can be made).
pub const BUILT_IN_CAPACITY_PROVIDERS: [&str; 2] = ["FARGATE", "FARGATE_SPOT"];

/// What a cluster is configured with beyond its name and tags; `configuration` and
/// `service_connect_defaults` are kept as given and echoed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterOptions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub settings: Vec<ClusterSetting>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect_defaults: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_providers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub default_capacity_provider_strategy: Vec<StrategyItem>,
}

impl ClusterOptions {
    /// Nothing set (a cluster made before these existed reads so, and is stored as it was).
    pub fn is_empty(&self) -> bool {
        self == &ClusterOptions::default()
    }
}

/// A container instance's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InstanceStatus {
    Active,
    Draining,
    Inactive,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Active => "ACTIVE",
            InstanceStatus::Draining => "DRAINING",
            InstanceStatus::Inactive => "INACTIVE",
        }
    }
}

/// A resource of a container instance (CPU, MEMORY, PORTS, PORTS_UDP, or a custom one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    /// INTEGER, LONG, DOUBLE or STRINGSET.
    pub kind: String,
    pub integer_value: i64,
    pub long_value: i64,
    pub double_value: f64,
    pub string_set_value: Vec<String>,
}

/// A name/value attribute of a container instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

/// A container instance, as stored under `ci/<cluster>\0<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerInstance {
    pub cluster: String,
    pub id: String,
    pub arn: String,
    pub ec2_instance_id: String,
    pub status: InstanceStatus,
    pub agent_connected: bool,
    pub registered_resources: Vec<Resource>,
    pub remaining_resources: Vec<Resource>,
    pub attributes: Vec<Attribute>,
    /// `versionInfo` as the agent sent it (ECS JSON).
    pub version_info: serde_json::Value,
    pub tags: Vec<Tag>,
    pub registered_at_ms: u64,
    /// Incremented on every change.
    pub version: u64,
    pub running_tasks: u64,
    pub pending_tasks: u64,
    /// PENDING, STAGING, STAGED, UPDATING, UPDATED or FAILED; absent until an update is asked for.
    #[serde(default)]
    pub agent_update_status: Option<String>,
    /// Groups of the tasks on this instance that are not STOPPED, with their counts
    /// (`task:group` in the query language, `distinctInstance`, spread by group).
    #[serde(default)]
    pub task_groups: std::collections::BTreeMap<String, u64>,
    /// Whether an agent has sent heartbeats for this instance: only then does liveness mark it
    /// disconnected when they stop. Instances driven through the ECS API alone are trusted.
    #[serde(default)]
    pub agent_heartbeats: bool,
    /// The agent bound to the instance: the name of the `agent` key that registered it (and of
    /// its certificate). Only that agent reports for it, keeps it connected and receives its
    /// tasks. `None`: registered by another role, or before agents had identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
}

/// The account settings of today's ECS, in name order, each with the values it takes (matched
/// without regard to case, stored and echoed as sent) and its value where nobody set one. The
/// three `…LongArnFormat` settings choose the ARN format of new resources; their default is
/// [`long_arn_default`]. `guardDutyActivate` is read-only (AWS manages it).
pub const ACCOUNT_SETTINGS: [(&str, &[&str], &str); 11] = [
    ("awsvpcTrunking", &["enabled", "disabled"], "disabled"),
    ("containerInsights", &["enhanced", "enabled", "disabled"], "disabled"),
    ("containerInstanceLongArnFormat", &["enabled", "disabled"], ""),
    ("defaultLogDriverMode", &["blocking", "non-blocking"], "non-blocking"),
    ("fargateEventWindows", &["enabled", "disabled"], "disabled"),
    ("fargateFIPSMode", &["enabled", "disabled"], "disabled"),
    ("fargateTaskRetirementWaitPeriod", &["0", "7", "14"], "7"),
    ("guardDutyActivate", &["on", "off"], "off"),
    ("serviceLongArnFormat", &["enabled", "disabled"], ""),
    ("tagResourceAuthorization", &["on", "off"], "on"),
    ("taskLongArnFormat", &["enabled", "disabled"], ""),
];

/// The settings that choose a resource kind's ARN format.
pub const LONG_ARN_SETTINGS: [&str; 3] = [
    "containerInstanceLongArnFormat",
    "serviceLongArnFormat",
    "taskLongArnFormat",
];

/// The value of a long-ARN setting nobody set.
pub fn long_arn_default(long_by_default: bool) -> &'static str {
    if long_by_default {
        "enabled"
    } else {
        "disabled"
    }
}

/// The value of account setting `name` where nobody set one.
pub fn account_setting_default(name: &str, long_by_default: bool) -> &'static str {
    if LONG_ARN_SETTINGS.contains(&name) {
        return long_arn_default(long_by_default);
    }
    ACCOUNT_SETTINGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map_or("disabled", |(_, _, default)| default)
}

/// An account setting as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSetting {
    pub name: String,
    pub value: String,
    pub principal_arn: String,
}

/// What a caller may do: each access key has one role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Membership, keys, and everything an operator may do.
    Admin,
    /// Every ECS action.
    Operator,
    /// The Describe and List actions.
    ReadOnly,
    /// What a container instance's agent calls: registration, DiscoverPollEndpoint, the state
    /// change reports and the agent protocol.
    Agent,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::ReadOnly, Role::Agent];

    /// The role's name, as written in configs, the CLI and the key listing.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::ReadOnly => "read-only",
            Role::Agent => "agent",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

/// An access key, kept in the replicated state so that every node verifies a signature alike.
/// The secret is kept as issued: SigV4 verification needs it (as AWS keeps its own).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Unique among the keys; the principal's name.
    pub name: String,
    pub role: Role,
    /// `arn:aws:iam::<account>:user/<name>`: the caller, for the account settings.
    pub principal_arn: String,
    /// When it was created, epoch milliseconds (the clock of the node that took the request).
    pub created_ms: u64,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("access_key_id", &self.access_key_id)
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// The length of every secret access key, as AWS's (`config` checks the root key's alike).
pub const SECRET_KEY_LENGTH: usize = 40;

/// Who made a request: the access key that signed it, or, with authentication off, the root
/// user. It travels with a request forwarded to the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// The key's name (`root` for the bootstrap key, `anonymous` with authentication off).
    pub name: String,
    pub access_key_id: String,
    pub role: Role,
    pub principal_arn: String,
}

/// Whether `name` can name an access key: 1 to 64 letters, digits and `+=,.@_-` (IAM's user
/// names).
pub fn valid_key_name(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

/// Whether a task definition revision can be used for new tasks and services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskDefinitionStatus {
    Active,
    Inactive,
    /// DeleteTaskDefinitions: no new task or service uses it; running ones keep it.
    DeleteInProgress,
}

impl TaskDefinitionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskDefinitionStatus::Active => "ACTIVE",
            TaskDefinitionStatus::Inactive => "INACTIVE",
            TaskDefinitionStatus::DeleteInProgress => "DELETE_IN_PROGRESS",
        }
    }
}

/// One revision of a task definition family, as stored under `taskdef/<family>/<revision>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskDefinition {
    pub family: String,
    pub revision: u32,
    pub arn: String,
    pub status: TaskDefinitionStatus,
    /// The validated and normalised registration, in ECS JSON (containerDefinitions, volumes,
    /// networkMode, cpu, memory, …): stored as given so every field round-trips faithfully.
    pub body: serde_json::Value,
    #[serde(default)]
    pub tags: Vec<Tag>,
    pub registered_at_ms: u64,
    #[serde(default)]
    pub deregistered_at_ms: Option<u64>,
}

/// A task's (or container's) lifecycle status. Ordered: status only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskStatus {
    Pending,
    Running,
    Stopped,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Stopped => "STOPPED",
        }
    }

    pub fn parse(text: &str) -> Option<TaskStatus> {
        match text {
            "PENDING" => Some(TaskStatus::Pending),
            "RUNNING" => Some(TaskStatus::Running),
            "STOPPED" => Some(TaskStatus::Stopped),
            _ => None,
        }
    }
}

/// What a task holds on its container instance until it is STOPPED.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub cpu: i64,
    pub memory: i64,
    /// Static TCP host ports.
    pub ports: Vec<u16>,
    /// Static UDP host ports.
    pub ports_udp: Vec<u16>,
}

/// A port a container is reachable on, as the agent reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkBinding {
    pub bind_ip: String,
    pub container_port: u16,
    pub host_port: u16,
    pub protocol: String,
}

/// A task's awsvpc network configuration: the subnets and security groups it was given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsVpc {
    pub subnets: Vec<String>,
    #[serde(default)]
    pub security_groups: Vec<String>,
    #[serde(default)]
    pub assign_public_ip: bool,
}

/// The network interface of an awsvpc task: what ECS reports as its ENI attachment. The address
/// is the task's own, in its own network namespace on the instance (the agent makes it): the
/// `/30` block `[ip - 2, ip + 1]` of 100.64.0.0/10, with the instance's side at `ip - 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskEni {
    pub attachment_id: String,
    pub eni_id: String,
    pub mac_address: String,
    pub subnet_id: String,
    pub private_ipv4: String,
}

/// The `/30` block `index` (modulo 2^20) of 100.64.0.0/10: the task's address, and the
/// instance side's (its gateway).
pub fn task_address(index: u64) -> (std::net::Ipv4Addr, std::net::Ipv4Addr) {
    let base = 0x6440_0000u32 + ((index % (1 << 20)) as u32) * 4;
    (std::net::Ipv4Addr::from(base + 2), std::net::Ipv4Addr::from(base + 1))
}

/// One container of a task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskContainer {
    pub name: String,
    pub arn: String,
    pub last_status: TaskStatus,
    #[serde(default)]
    pub exit_code: Option<i64>,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    pub network_bindings: Vec<NetworkBinding>,
    #[serde(default)]
    pub runtime_id: Option<String>,
    /// Whether the container has a health check (else its health is UNKNOWN).
    #[serde(default)]
    pub health_status: Option<String>,
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    #[serde(default)]
    pub memory_reservation: Option<String>,
    /// Whether the task stops when this container stops.
    #[serde(default = "default_true")]
    pub essential: bool,
}

fn default_true() -> bool {
    true
}

/// A task, as stored under `task/<cluster>\0<id>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub cluster: String,
    pub id: String,
    pub arn: String,
    pub task_definition_arn: String,
    pub family: String,
    pub container_instance_id: String,
    pub container_instance_arn: String,
    pub last_status: TaskStatus,
    pub desired_status: TaskStatus,
    pub group: String,
    #[serde(default)]
    pub started_by: Option<String>,
    /// The request's overrides, in ECS JSON.
    pub overrides: serde_json::Value,
    pub containers: Vec<TaskContainer>,
    /// Task-level cpu and memory strings of the task definition, if it has them.
    #[serde(default)]
    pub cpu: Option<String>,
    #[serde(default)]
    pub memory: Option<String>,
    pub reservation: Reservation,
    /// The service and deployment that started the task.
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub deployment_id: Option<String>,
    pub created_at_ms: u64,
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    #[serde(default)]
    pub stopping_at_ms: Option<u64>,
    #[serde(default)]
    pub stopped_at_ms: Option<u64>,
    #[serde(default)]
    pub execution_stopped_at_ms: Option<u64>,
    #[serde(default)]
    pub pull_started_at_ms: Option<u64>,
    #[serde(default)]
    pub pull_stopped_at_ms: Option<u64>,
    #[serde(default)]
    pub stopped_reason: Option<String>,
    #[serde(default)]
    pub stop_code: Option<String>,
    pub version: u64,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub launch_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_provider_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_version: Option<String>,
    /// The awsvpc network interface, for a task of an awsvpc task definition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eni: Option<TaskEni>,
    /// Scale-in protection: until when (epoch ms), if protected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_until_ms: Option<u64>,
}

impl Task {
    /// An essential container's health check reports UNHEALTHY.
    pub fn reported_unhealthy(&self) -> bool {
        self.containers
            .iter()
            .any(|c| c.essential && c.health_status.as_deref() == Some("UNHEALTHY"))
    }

    /// RUNNING, meant to run, and not reported unhealthy: a healthy service task in the
    /// rolling arithmetic.
    pub fn is_healthy(&self) -> bool {
        self.last_status == TaskStatus::Running
            && self.desired_status == TaskStatus::Running
            && !self.reported_unhealthy()
    }
}

/// A service's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ServiceStatus {
    Active,
    Draining,
    Inactive,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Active => "ACTIVE",
            ServiceStatus::Draining => "DRAINING",
            ServiceStatus::Inactive => "INACTIVE",
        }
    }
}

/// One deployment of a service: PRIMARY (the newest) or ACTIVE (older, still with tasks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    pub status: String,
    pub task_definition_arn: String,
    pub desired_count: i64,
    pub pending_count: i64,
    pub running_count: i64,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    #[serde(default)]
    pub network_configuration: Option<serde_json::Value>,
    #[serde(default)]
    pub platform_version: Option<String>,
    /// IN_PROGRESS, COMPLETED or FAILED (deployments made before rollout states: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_state_reason: Option<String>,
    /// Its tasks that stopped without being asked to while it was in progress (the circuit
    /// breaker's count).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_tasks: i64,
    /// Made by the circuit breaker's rollback (a rollback that fails is not rolled back).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollback: bool,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

impl Deployment {
    /// A new PRIMARY deployment, IN_PROGRESS: with a rollout state when `rollout` (the commands
    /// of earlier versions made deployments without one, and still do when replayed).
    pub fn new(id: String, task_definition_arn: String, desired_count: i64, now_ms: u64, rollout: bool) -> Deployment {
        Deployment {
            rollout_state_reason: rollout.then(|| format!("ECS deployment {id} in progress.")),
            id,
            status: "PRIMARY".into(),
            task_definition_arn,
            desired_count,
            pending_count: 0,
            running_count: 0,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            network_configuration: None,
            platform_version: None,
            rollout_state: rollout.then(|| "IN_PROGRESS".into()),
            failed_tasks: 0,
            rollback: false,
        }
    }

    pub fn is_failed(&self) -> bool {
        self.rollout_state.as_deref() == Some("FAILED")
    }
}

/// `deploymentConfiguration.deploymentCircuitBreaker`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    pub enable: bool,
    pub rollback: bool,
}

impl CircuitBreaker {
    /// How many failed tasks fail a deployment of `desired` tasks: half of them, at least 3 and
    /// at most 200 (today's ECS; the 2023 guide's minimum was 10).
    pub fn threshold(desired: i64) -> i64 {
        ((desired.max(0) + 1) / 2).clamp(3, 200)
    }
}

/// A service event: `{id, createdAt, message}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    pub id: String,
    pub created_at_ms: u64,
    pub message: String,
}

/// A service, as stored under `svc/<cluster>\0<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub cluster: String,
    pub name: String,
    pub arn: String,
    pub status: ServiceStatus,
    pub task_definition_arn: String,
    pub desired_count: i64,
    pub running_count: i64,
    pub pending_count: i64,
    pub launch_type: String,
    pub scheduling_strategy: String,
    /// `{maximumPercent, minimumHealthyPercent}`.
    pub maximum_percent: i64,
    pub minimum_healthy_percent: i64,
    pub deployments: Vec<Deployment>,
    pub events: Vec<ServiceEvent>,
    /// The placement, typed, and the request fields echoed as given (loadBalancers, roleArn, …).
    pub spec: ServiceSpec,
    pub created_at_ms: u64,
    pub created_by: String,
    #[serde(default)]
    pub client_token: Option<String>,
    /// A digest of the CreateService request, to tell an idempotent retry from a conflict.
    #[serde(default)]
    pub request_digest: String,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Tasks of this service that stopped in a row without ever reaching RUNNING (the throttle);
    /// reset by a task that reaches RUNNING and by a new deployment.
    #[serde(default)]
    pub failed_starts: u32,
    /// When the last of those failures was applied, epoch milliseconds.
    #[serde(default)]
    pub last_failed_start_ms: u64,
    /// The capacity provider strategy its tasks launch with (then `launch_type` is empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_provider_strategy: Vec<StrategyItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// The last deployment that completed: its ID and task definition (what a rollback returns to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_completed: Option<(String, String)>,
}

impl Service {
    /// The most tasks that may be PENDING or RUNNING: `floor(desired × maximumPercent / 100)`.
    pub fn max_total(&self) -> usize {
        let total = (self.desired_count.max(0) as u64).saturating_mul(self.maximum_percent.max(0) as u64) / 100;
        usize::try_from(total).unwrap_or(usize::MAX)
    }

    /// The fewest tasks that must stay RUNNING: `ceil(desired × minimumHealthyPercent / 100)`.
    pub fn min_healthy(&self) -> usize {
        let healthy = (self.desired_count.max(0) as u64)
            .saturating_mul(self.minimum_healthy_percent.max(0) as u64)
            .div_ceil(100);
        usize::try_from(healthy).unwrap_or(usize::MAX)
    }

    pub fn is_daemon(&self) -> bool {
        self.scheduling_strategy == "DAEMON"
    }
}

/// Most events a service keeps, newest first.
pub const MAX_SERVICE_EVENTS: usize = 100;

/// Error messages are cut to this many characters: one that echoes a client's input (serde
/// quotes the value it could not read) stays small, and fits a gRPC status header.
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// `text`, cut to [`MAX_MESSAGE_CHARS`] characters (with `…` when cut).
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// A 64-bit FNV-1a hash: stable across processes, versions and platforms.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Family, container and other ECS names: 1 to 255 letters, digits, hyphens and underscores.
pub fn valid_ecs_name(name: &str) -> bool {
    valid_cluster_name(name)
}

/// Cluster names: 1 to 255 letters, digits, hyphens and underscores.
pub fn valid_cluster_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Compares dotted version numbers (`1.24.0` < `1.25`); non-numeric parts compare as 0.
pub fn version_less(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> {
        v.trim_start_matches('v')
            .split('.')
            .map(|p| {
                p.split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(0)
            })
            .collect()
    };
    let (mut a, mut b) = (parse(a), parse(b));
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    a < b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert!(version_less("1.9.0", "1.24.0"));
        assert!(version_less("0.0.9", "0.1.0"));
        assert!(version_less("1.24", "1.24.1"));
        assert!(!version_less("1.24.0", "1.24"));
        assert!(!version_less("v2.0.0", "1.99.99"));
        assert!(version_less("1.2.3-beta", "1.2.4"));
    }

    fn scope() -> ArnScope {
        ArnScope {
            region: "us-east-1".into(),
            account_id: "012345678910".into(),
            long_arns_by_default: true,
        }
    }

    #[test]
    fn cluster_ids_resolve_from_name_or_arn() {
        let s = scope();
        assert_eq!(s.cluster_arn("web"), "arn:aws:ecs:us-east-1:012345678910:cluster/web");
        assert_eq!(s.cluster_name("web"), Some("web"));
        assert_eq!(
            s.cluster_name("arn:aws:ecs:us-east-1:012345678910:cluster/web"),
            Some("web")
        );
        assert_eq!(s.cluster_name("arn:aws:ecs:eu-west-1:012345678910:cluster/web"), None);
        assert_eq!(s.cluster_name("arn:aws:ecs:us-east-1:999999999999:cluster/web"), None);
        assert_eq!(s.cluster_name("arn:aws:ecs:us-east-1:012345678910:service/web"), None);
    }

    #[test]
    fn task_definition_refs_resolve() {
        let s = scope();
        assert_eq!(s.task_definition_ref("web"), Some(("web", None)));
        assert_eq!(s.task_definition_ref("web:3"), Some(("web", Some(3))));
        assert_eq!(
            s.task_definition_ref("arn:aws:ecs:us-east-1:012345678910:task-definition/web:3"),
            Some(("web", Some(3)))
        );
        assert_eq!(s.task_definition_ref("web:0"), None);
        assert_eq!(s.task_definition_ref("web:x"), None);
        assert_eq!(s.task_definition_ref("bad name"), None);
        assert_eq!(
            s.task_definition_ref("arn:aws:ecs:us-east-1:999999999999:task-definition/web:3"),
            None
        );
    }

    #[test]
    fn cluster_name_rules() {
        assert!(valid_cluster_name("My-cluster_1"));
        assert!(valid_cluster_name(&"a".repeat(255)));
        assert!(!valid_cluster_name(&"a".repeat(256)));
        assert!(!valid_cluster_name(""));
        assert!(!valid_cluster_name("has space"));
        assert!(!valid_cluster_name("slash/no"));
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    fn scope() -> ArnScope {
        ArnScope {
            region: "eu-west-1".into(),
            account_id: "123456789012".into(),
            long_arns_by_default: true,
        }
    }

    proptest! {
        #[test]
        fn cluster_arns_round_trip(name in "[A-Za-z0-9_-]{1,255}") {
            let s = scope();
            let arn = s.cluster_arn(&name);
            prop_assert_eq!(s.cluster_name(&arn), Some(name.as_str()));
            prop_assert_eq!(s.cluster_name(&name), Some(name.as_str()));
        }

        #[test]
        fn task_definition_refs_round_trip(family in "[A-Za-z0-9_-]{1,255}", revision in 1u32..1_000_000) {
            let s = scope();
            let arn = format!("{}:{revision}", s.task_definition_arn_base(&family));
            prop_assert_eq!(s.task_definition_ref(&arn), Some((family.as_str(), Some(revision))));
            let short = format!("{family}:{revision}");
            prop_assert_eq!(s.task_definition_ref(&short), Some((family.as_str(), Some(revision))));
        }

        #[test]
        fn container_instance_arns_round_trip(cluster in "[A-Za-z0-9_-]{1,64}", id in "[0-9a-f]{32}", long: bool) {
            let s = scope();
            let arn = s.container_instance_arn(&cluster, &id, long);
            prop_assert_eq!(s.container_instance_id(&cluster, &arn), Some(id.as_str()));
            // A long ARN never resolves in another cluster.
            let other = format!("{cluster}x");
            if long {
                prop_assert_eq!(s.container_instance_id(&other, &arn), None);
            }
        }

        #[test]
        fn task_and_service_arns_round_trip(cluster in "[A-Za-z0-9_-]{1,64}", id in "[0-9a-f]{32}", name in "[A-Za-z0-9_-]{1,255}", long: bool) {
            let s = scope();
            let prefix = format!("arn:aws:ecs:{}:{}:", s.region, s.account_id);
            let task = if long { format!("{prefix}task/{cluster}/{id}") } else { format!("{prefix}task/{id}") };
            prop_assert_eq!(s.task_id(&cluster, &task), Some(id.as_str()));
            prop_assert_eq!(s.task_id(&cluster, &id), Some(id.as_str()));
            let service = if long { format!("{prefix}service/{cluster}/{name}") } else { format!("{prefix}service/{name}") };
            prop_assert_eq!(s.service_name(&cluster, &service), Some(name.as_str()));
            prop_assert_eq!(s.service_name(&cluster, &name), Some(name.as_str()));
            // A task ARN is not a service ARN, and a long ARN never resolves in another cluster.
            prop_assert_eq!(s.service_name(&cluster, &task), None);
            if long {
                let other = format!("{cluster}x");
                prop_assert_eq!(s.task_id(&other, &task), None);
                prop_assert_eq!(s.service_name(&other, &service), None);
            }
        }

        #[test]
        fn identifier_parsers_never_panic(text in "\\PC{0,80}") {
            let s = scope();
            let _ = s.cluster_name(&text);
            let _ = s.task_definition_ref(&text);
            let _ = s.container_instance_id("c", &text);
            let _ = s.task_id("c", &text);
            let _ = s.service_name("c", &text);
        }
    }
}
