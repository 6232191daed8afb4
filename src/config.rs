//! Node configuration: a TOML file, overridden by `ECSD_*` environment variables, then validated.
//!
//! Loading is a pure function of the file text and an environment map, so it is unit-tested
//! without touching the process environment. Every error names the offending key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Every environment variable that overrides a config key, with the key it sets.
///
/// Values are parsed as TOML scalars (`8101`, `true`, `"text"`); a value that is not valid TOML
/// is taken as a plain string.
pub const ENV_OVERRIDES: &[(&str, &str)] = &[
    ("ECSD_NODE_ID", "node_id"),
    ("ECSD_DATA_DIR", "data_dir"),
    ("ECSD_API_ADDR", "api_addr"),
    ("ECSD_RAFT_ADDR", "raft_addr"),
    ("ECSD_ADVERTISE_API_ADDR", "advertise_api_addr"),
    ("ECSD_ADVERTISE_RAFT_ADDR", "advertise_raft_addr"),
    ("ECSD_BOOTSTRAP", "bootstrap"),
    ("ECSD_ACCOUNT_ID", "account_id"),
    ("ECSD_REGION", "region"),
    ("ECSD_LONG_ARNS_BY_DEFAULT", "long_arns_by_default"),
    ("ECSD_RAFT_HEARTBEAT_MS", "raft.heartbeat_ms"),
    ("ECSD_RAFT_ELECTION_TIMEOUT_MIN_MS", "raft.election_timeout_min_ms"),
    ("ECSD_RAFT_ELECTION_TIMEOUT_MAX_MS", "raft.election_timeout_max_ms"),
    (
        "ECSD_RAFT_INSTALL_SNAPSHOT_TIMEOUT_MS",
        "raft.install_snapshot_timeout_ms",
    ),
    ("ECSD_RAFT_SNAPSHOT_EVERY", "raft.snapshot_every"),
    ("ECSD_RAFT_LOGS_TO_KEEP", "raft.logs_to_keep"),
    ("ECSD_API_MAX_BODY_BYTES", "api.max_body_bytes"),
    ("ECSD_API_HOLD_MS", "api.hold_ms"),
    ("ECSD_API_MAX_BATCH", "api.max_batch"),
    ("ECSD_API_MAX_BATCH_BYTES", "api.max_batch_bytes"),
    ("ECSD_API_HEADER_READ_TIMEOUT_MS", "api.header_read_timeout_ms"),
    ("ECSD_API_BODY_TIMEOUT_MS", "api.body_timeout_ms"),
    ("ECSD_API_REQUEST_TIMEOUT_MS", "api.request_timeout_ms"),
    ("ECSD_API_MAX_CONNECTIONS", "api.max_connections"),
    ("ECSD_API_MAX_IN_FLIGHT", "api.max_in_flight"),
    ("ECSD_AUTH_ENABLED", "auth.enabled"),
    ("ECSD_AUTH_ROOT_ACCESS_KEY_ID", "auth.root_access_key_id"),
    ("ECSD_AUTH_ROOT_SECRET_ACCESS_KEY", "auth.root_secret_access_key"),
    ("ECSD_TLS_CA_FILE", "tls.ca_file"),
    ("ECSD_TLS_CERT_FILE", "tls.cert_file"),
    ("ECSD_TLS_KEY_FILE", "tls.key_file"),
    ("ECSD_INSECURE", "insecure"),
    ("ECSD_JOIN", "join"),
    ("ECSD_AGENT_HEARTBEAT_TIMEOUT_MS", "agent.heartbeat_timeout_ms"),
    ("ECSD_AGENT_LOST_INSTANCE_TIMEOUT_MS", "agent.lost_instance_timeout_ms"),
    ("ECSD_SERVICES_RESTART_BACKOFF_MS", "services.restart_backoff_ms"),
    (
        "ECSD_SERVICES_RESTART_BACKOFF_MAX_MS",
        "services.restart_backoff_max_ms",
    ),
    ("ECSD_SERVICES_DEPLOYMENT_SETTLE_MS", "services.deployment_settle_ms"),
    (
        "ECSD_SERVICES_STOPPED_TASK_GC_EVERY_MS",
        "services.stopped_task_gc_every_ms",
    ),
    ("ECSD_HEALTH_MAX_APPLY_LAG", "health.max_apply_lag"),
    ("ECSD_HEALTH_MAX_QUORUM_SILENCE_MS", "health.max_quorum_silence_ms"),
    ("ECSD_HEALTH_MIN_FREE_DISK_MIB", "health.min_free_disk_mib"),
];

/// The configuration of one ecsd node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's Raft id: unique in the cluster and never reused for a different data dir.
    pub node_id: u64,
    /// Where RocksDB and snapshots live.
    pub data_dir: PathBuf,
    /// Listen address of the ECS HTTP API (and the admin endpoints).
    pub api_addr: SocketAddr,
    /// Listen address of the node-to-node gRPC service.
    pub raft_addr: SocketAddr,
    /// API address that peers and clients are told to use; defaults to `api_addr`.
    #[serde(default)]
    pub advertise_api_addr: Option<String>,
    /// Raft address that peers dial; defaults to `raft_addr`.
    #[serde(default)]
    pub advertise_raft_addr: Option<String>,
    /// Initialise a new cluster on first start. With `initial_members` empty, the cluster starts
    /// with this node alone and others join with `ecsd cluster add-node`.
    #[serde(default)]
    pub bootstrap: bool,
    /// Join an existing cluster as a new member (with `ecsd cluster add-node`): the only way a
    /// node starts on an empty data directory without founding a cluster (`ecsd serve --join`).
    #[serde(default)]
    pub join: bool,
    /// The voters of a new cluster. Every node in the list may carry the same list and
    /// `bootstrap = true`: initialising twice with the same members is safe.
    #[serde(default)]
    pub initial_members: Vec<MemberConfig>,
    /// Account id stamped into ARNs.
    #[serde(default = "default_account_id")]
    pub account_id: String,
    /// Region stamped into ARNs.
    #[serde(default = "default_region")]
    pub region: String,
    /// Whether a principal that never set `serviceLongArnFormat`, `taskLongArnFormat` or
    /// `containerInstanceLongArnFormat` (nor its account's root user) gets long ARNs, as in
    /// today's ECS (the default). `false` keeps the 2018 API's short ARNs until each opts in.
    #[serde(default = "yes")]
    pub long_arns_by_default: bool,
    /// Raft timings and log compaction.
    #[serde(default)]
    pub raft: RaftTuning,
    /// HTTP API limits and write batching.
    #[serde(default)]
    pub api: ApiTuning,
    /// Container instance agents.
    #[serde(default)]
    pub agent: AgentTuning,
    /// The service scheduler.
    #[serde(default)]
    pub services: ServiceTuning,
    /// Where this node connects to reach a peer: a peer address (Raft or API, spelled as in the
    /// membership) mapped to the address actually dialled, e.g.
    /// `[dial]` `"127.0.0.1:41002" = "127.0.0.1:52012"`. Unlisted addresses are dialled as they
    /// are; empty by default. The membership keeps the real addresses; this only reroutes this
    /// node's own outbound connections (the test harness puts a fault-injecting proxy on every
    /// link this way).
    #[serde(default)]
    pub dial: BTreeMap<String, String>,
    /// Who may call the API (SigV4).
    #[serde(default)]
    pub auth: AuthConfig,
    /// HTTPS on the API and mutual TLS between nodes.
    #[serde(default)]
    pub tls: TlsConfig,
    /// Allow listening beyond loopback with authentication or TLS off. Without it, such a
    /// config is refused at start.
    #[serde(default)]
    pub insecure: bool,
    /// When `/readyz` calls this node ready.
    #[serde(default)]
    pub health: HealthTuning,
}

/// The bounds of `/readyz`: past any of them, the node answers 503 and names why.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthTuning {
    /// The most log entries this node's state machine may trail its commit index by.
    pub max_apply_lag: u64,
    /// As leader: the longest time without a quorum's acknowledgement (a leader cut off from
    /// the others stays leader in its own eyes until it hears of a newer term).
    pub max_quorum_silence_ms: u64,
    /// The least free space, in MiB, on the data directory's file system.
    pub min_free_disk_mib: u64,
}

impl Default for HealthTuning {
    fn default() -> Self {
        HealthTuning {
            max_apply_lag: 1_000,
            max_quorum_silence_ms: 2_000,
            min_free_disk_mib: 256,
        }
    }
}

/// Who may call the API: every request is signed with SigV4 by an access key (`ecsd keys`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Verify the signature of every ECS and `/cluster/*` request.
    pub enabled: bool,
    /// The bootstrap key, an admin known from the config rather than the replicated state:
    /// it creates the first keys. Give every node the same one.
    pub root_access_key_id: Option<String>,
    /// Its secret: 40 characters, as AWS's are.
    pub root_secret_access_key: Option<String>,
}

/// The length of every secret access key.
pub const SECRET_KEY_LENGTH: usize = 40;

/// TLS. With the three files set, the API serves HTTPS and the node-to-node port speaks
/// mutual TLS: peers and agents present a certificate from the same CA (`ecsd tls`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// The cluster's CA certificate (PEM).
    pub ca_file: Option<PathBuf>,
    /// This node's certificate (PEM, from `ecsd tls cert --node <id>`).
    pub cert_file: Option<PathBuf>,
    /// This node's private key (PEM).
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    /// Whether TLS is on (every file is set).
    pub fn enabled(&self) -> bool {
        self.ca_file.is_some() && self.cert_file.is_some() && self.key_file.is_some()
    }
}

/// A node's `[dial]` table, shared by everything that connects to peers. Cheap to clone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dialer(Arc<BTreeMap<String, String>>);

impl Dialer {
    /// The address to connect to in order to reach a peer at `addr`: its `[dial]` entry, or
    /// `addr` itself. Every outbound node-to-node connection goes through this lookup.
    pub fn dial<'a>(&'a self, addr: &'a str) -> &'a str {
        self.0.get(addr).map_or(addr, String::as_str)
    }
}

/// The service scheduler's throttle for tasks that keep failing to start.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceTuning {
    /// After a round of a service's tasks stopped without ever reaching RUNNING, the next launch
    /// waits this long, doubling with each further round up to `restart_backoff_max_ms`.
    pub restart_backoff_ms: u64,
    /// The longest wait between launch attempts (ECS: 15 minutes).
    pub restart_backoff_max_ms: u64,
    /// How often the leader forgets tasks that stopped more than an hour ago.
    pub stopped_task_gc_every_ms: u64,
    /// A deployment is COMPLETED once the service is steady on it and each of its tasks has
    /// been RUNNING this long: a revision whose containers crash just after they start is
    /// caught by the circuit breaker while it is still in progress.
    pub deployment_settle_ms: u64,
}

impl Default for ServiceTuning {
    fn default() -> Self {
        ServiceTuning {
            restart_backoff_ms: 5_000,
            restart_backoff_max_ms: 15 * 60 * 1000,
            stopped_task_gc_every_ms: 60_000,
            deployment_settle_ms: 15_000,
        }
    }
}

/// How the leader judges agents' liveness.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AgentTuning {
    /// An instance whose agent has not sent a heartbeat for this long is marked
    /// `agentConnected: false` and gets no new tasks. After a leader change every instance
    /// first gets this long again.
    pub heartbeat_timeout_ms: u64,
    /// The lost-instance policy: when an instance's agent has been disconnected this long, its
    /// tasks are marked STOPPED (and services replace them, as Nomad does with a down node).
    /// 0 (the default) leaves them as ECS does: in their last reported status.
    pub lost_instance_timeout_ms: u64,
}

impl Default for AgentTuning {
    fn default() -> Self {
        AgentTuning {
            heartbeat_timeout_ms: 30_000,
            lost_instance_timeout_ms: 0,
        }
    }
}

/// One voter of the initial membership.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Raft node id.
    pub id: u64,
    /// Address of its ECS HTTP API.
    pub api_addr: String,
    /// Address of its gRPC service.
    pub raft_addr: String,
}

/// Raft timings. The defaults fail over within about half a second on a LAN.
///
/// A voter that has not heard from a leader for a random timeout in
/// `[election_timeout_min_ms, election_timeout_max_ms)` asks the others first (a pre-vote,
/// `raft/election.rs`) and calls an election only if a majority has not heard from one for
/// `election_timeout_min_ms` either: with 50 ms heartbeats and 200/400 a dead leader is
/// replaced about 0.2 to 0.4 s after its last message, and a loaded follower that misses
/// heartbeats does not depose a live leader.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RaftTuning {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Lower bound of the randomised election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the randomised election timeout.
    pub election_timeout_max_ms: u64,
    /// Timeout of one snapshot chunk, including the final install, which loads the whole
    /// snapshot (about 40 s for the 2.3 GB of a million tasks on these machines).
    pub install_snapshot_timeout_ms: u64,
    /// Build a snapshot after this many applied entries since the last one (0 disables).
    pub snapshot_every: u64,
    /// Log entries kept behind the last snapshot, so briefly lagging followers catch up from the log.
    pub logs_to_keep: u64,
}

impl Default for RaftTuning {
    fn default() -> Self {
        RaftTuning {
            heartbeat_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            install_snapshot_timeout_ms: 120_000,
            snapshot_every: 10_000,
            logs_to_keep: 1_000,
        }
    }
}

/// HTTP API limits and the write batcher.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiTuning {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a request is held and retried while no leader is known.
    pub hold_ms: u64,
    /// Most commands proposed in one Raft log entry.
    pub max_batch: usize,
    /// A batch is closed once its commands reach this many bytes (one command may exceed it).
    pub max_batch_bytes: usize,
    /// A connection must send a request's headers within this time; an idle keep-alive
    /// connection is closed after it.
    pub header_read_timeout_ms: u64,
    /// A request's body must arrive within this time (else `RequestTimeoutException`).
    pub body_timeout_ms: u64,
    /// A request is answered within this time (else `ServerException`); above `hold_ms`.
    pub request_timeout_ms: u64,
    /// Connections served at once; one more is answered `ThrottlingException` and closed.
    pub max_connections: usize,
    /// Requests handled at once; one more is answered `ThrottlingException`.
    pub max_in_flight: usize,
}

/// Upper bounds that keep every log entry well under the 64 MiB node-to-node message limit:
/// an entry holds at most `max_batch_bytes` plus one request.
/// The longest `api.request_timeout_ms`: a node may re-propose a request until it answers it, and
/// the id of a request without a client token is remembered for 15 minutes
/// (`state::BRIEF_DEDUPE_TTL_MS`).
pub const MAX_REQUEST_TIMEOUT_MS: u64 = 10 * 60 * 1000;
pub const MAX_BODY_BYTES_LIMIT: usize = 8 * 1024 * 1024;
pub const MAX_BATCH_BYTES_LIMIT: usize = 16 * 1024 * 1024;

impl Default for ApiTuning {
    fn default() -> Self {
        ApiTuning {
            max_body_bytes: 1024 * 1024,
            hold_ms: 5_000,
            max_batch: 512,
            max_batch_bytes: 4 * 1024 * 1024,
            header_read_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            request_timeout_ms: 60_000,
            max_connections: 1024,
            max_in_flight: 512,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_account_id() -> String {
    "000000000000".to_string()
}

fn default_region() -> String {
    "us-east-1".to_string()
}

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error("config is not valid TOML: {0}")]
    Syntax(String),
    #[error("config key `{key}`: {message}")]
    Key { key: String, message: String },
}

fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.to_string(),
        message: message.into(),
    }
}

impl NodeConfig {
    /// Parses `text`, applies the overrides found in `env`, and validates the result.
    pub fn load(text: &str, env: &BTreeMap<String, String>) -> Result<NodeConfig, ConfigError> {
        let mut table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax(e.message().to_string()))?;
        for (var, key) in ENV_OVERRIDES {
            if let Some(raw) = env.get(*var) {
                set_dotted(&mut table, key, parse_env_value(key, raw))?;
            }
        }
        let config: NodeConfig = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let path = e.path().to_string();
            let key = if path == "." { "<root>".to_string() } else { path };
            key_error(&key, e.into_inner().message().to_string())
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Reads the file at `path` and loads it with the process environment.
    pub fn load_file(path: &std::path::Path) -> Result<NodeConfig, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| ConfigError::Syntax(format!("read {}: {e}", path.display())))?;
        let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("ECSD_")).collect();
        NodeConfig::load(&text, &env)
    }

    /// The `[auth]` and `[tls]` tables, and the refusal to listen beyond loopback without them.
    fn validate_security(&self) -> Result<(), ConfigError> {
        let auth = &self.auth;
        match (&auth.root_access_key_id, &auth.root_secret_access_key) {
            (Some(id), Some(secret)) => {
                let id_ok = (16..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
                if !id_ok {
                    return Err(key_error(
                        "auth.root_access_key_id",
                        "must be 16 to 128 letters and digits",
                    ));
                }
                if secret.len() != SECRET_KEY_LENGTH || !secret.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(key_error(
                        "auth.root_secret_access_key",
                        format!("must be {SECRET_KEY_LENGTH} printable ASCII characters"),
                    ));
                }
            }
            (None, None) if auth.enabled => {
                return Err(key_error(
                    "auth.root_access_key_id",
                    "required with auth.enabled = true: the root key creates the first access keys",
                ));
            }
            (None, None) => {}
            (Some(_), None) => {
                return Err(key_error(
                    "auth.root_secret_access_key",
                    "required with auth.root_access_key_id",
                ))
            }
            (None, Some(_)) => {
                return Err(key_error(
                    "auth.root_access_key_id",
                    "required with auth.root_secret_access_key",
                ))
            }
        }
        let tls = &self.tls;
        let files = [
            ("tls.ca_file", &tls.ca_file),
            ("tls.cert_file", &tls.cert_file),
            ("tls.key_file", &tls.key_file),
        ];
        if let (true, Some((missing, _))) = (
            files.iter().any(|(_, f)| f.is_some()),
            files.iter().find(|(_, f)| f.is_none()),
        ) {
            return Err(key_error(
                missing,
                "required: set all of tls.ca_file, tls.cert_file and tls.key_file, or none",
            ));
        }
        let protected = self.auth.enabled && tls.enabled();
        if !(self.insecure || protected) {
            for (key, addr) in [("api_addr", self.api_addr), ("raft_addr", self.raft_addr)] {
                if !addr.ip().is_loopback() {
                    return Err(key_error(
                        key,
                        format!(
                            "{addr} is beyond loopback, but {} off: turn on auth.enabled and the [tls] files \
                             (see cluster-config/template.toml), or set insecure = true to serve it unprotected",
                            match (self.auth.enabled, tls.enabled()) {
                                (false, false) => "authentication and TLS are",
                                (false, true) => "authentication is",
                                _ => "TLS is",
                            }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(key_error("node_id", "must be at least 1"));
        }
        if self.account_id.len() != 12 || !self.account_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(key_error("account_id", "must be 12 digits"));
        }
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(key_error(
                "region",
                "must be lowercase letters, digits and hyphens, like us-east-1",
            ));
        }
        let raft = &self.raft;
        if raft.heartbeat_ms == 0 {
            return Err(key_error("raft.heartbeat_ms", "must be positive"));
        }
        if raft.election_timeout_min_ms < 2 * raft.heartbeat_ms {
            return Err(key_error(
                "raft.election_timeout_min_ms",
                "must be at least twice raft.heartbeat_ms: a follower must miss two heartbeats before it suspects the leader",
            ));
        }
        if raft.election_timeout_max_ms <= raft.election_timeout_min_ms {
            return Err(key_error(
                "raft.election_timeout_max_ms",
                "must be greater than raft.election_timeout_min_ms",
            ));
        }
        if raft.install_snapshot_timeout_ms < raft.heartbeat_ms {
            return Err(key_error(
                "raft.install_snapshot_timeout_ms",
                "must be at least raft.heartbeat_ms",
            ));
        }
        if !(1024..=MAX_BODY_BYTES_LIMIT).contains(&self.api.max_body_bytes) {
            return Err(key_error(
                "api.max_body_bytes",
                format!("must be between 1024 and {MAX_BODY_BYTES_LIMIT}"),
            ));
        }
        if self.api.hold_ms == 0 {
            return Err(key_error("api.hold_ms", "must be at least 1"));
        }
        for (key, value) in [
            ("api.header_read_timeout_ms", self.api.header_read_timeout_ms),
            ("api.body_timeout_ms", self.api.body_timeout_ms),
            ("api.max_connections", self.api.max_connections as u64),
            ("api.max_in_flight", self.api.max_in_flight as u64),
        ] {
            if value == 0 {
                return Err(key_error(key, "must be at least 1"));
            }
        }
        if self.api.request_timeout_ms <= self.api.hold_ms {
            return Err(key_error("api.request_timeout_ms", "must be greater than api.hold_ms"));
        }
        if self.api.request_timeout_ms > MAX_REQUEST_TIMEOUT_MS {
            return Err(key_error(
                "api.request_timeout_ms",
                format!("must be at most {MAX_REQUEST_TIMEOUT_MS} (a request's id is remembered for 15 minutes)"),
            ));
        }
        if self.agent.heartbeat_timeout_ms < 1000 {
            return Err(key_error("agent.heartbeat_timeout_ms", "must be at least 1000"));
        }
        let lost = self.agent.lost_instance_timeout_ms;
        if lost != 0 && lost < self.agent.heartbeat_timeout_ms {
            return Err(key_error(
                "agent.lost_instance_timeout_ms",
                "must be 0 (off) or at least agent.heartbeat_timeout_ms",
            ));
        }
        if self.services.restart_backoff_max_ms < self.services.restart_backoff_ms {
            return Err(key_error(
                "services.restart_backoff_max_ms",
                "must be at least services.restart_backoff_ms",
            ));
        }
        if !(100..=3_600_000).contains(&self.services.stopped_task_gc_every_ms) {
            return Err(key_error(
                "services.stopped_task_gc_every_ms",
                "must be between 100 and 3600000",
            ));
        }
        if self.api.max_batch == 0 {
            return Err(key_error("api.max_batch", "must be at least 1"));
        }
        if !(1024..=MAX_BATCH_BYTES_LIMIT).contains(&self.api.max_batch_bytes) {
            return Err(key_error(
                "api.max_batch_bytes",
                format!("must be between 1024 and {MAX_BATCH_BYTES_LIMIT}"),
            ));
        }
        self.validate_security()?;
        let mut ids = std::collections::BTreeSet::new();
        for (i, member) in self.initial_members.iter().enumerate() {
            if member.id == 0 || !ids.insert(member.id) {
                return Err(key_error(
                    &format!("initial_members[{i}].id"),
                    "must be unique and at least 1",
                ));
            }
            for (field, addr) in [("api_addr", &member.api_addr), ("raft_addr", &member.raft_addr)] {
                if addr.parse::<SocketAddr>().is_err() && !addr.contains(':') {
                    return Err(key_error(&format!("initial_members[{i}].{field}"), "must be host:port"));
                }
            }
        }
        if !self.initial_members.is_empty() && !ids.contains(&self.node_id) {
            return Err(key_error("initial_members", "must include this node's node_id"));
        }
        for (from, to) in &self.dial {
            if !from.contains(':') || !to.contains(':') {
                return Err(key_error(
                    &format!("dial.\"{from}\""),
                    "both addresses must be host:port",
                ));
            }
        }
        Ok(())
    }

    /// The API address peers and clients should use.
    pub fn advertised_api_addr(&self) -> String {
        self.advertise_api_addr
            .clone()
            .unwrap_or_else(|| self.api_addr.to_string())
    }

    /// The gRPC address peers should dial.
    pub fn advertised_raft_addr(&self) -> String {
        self.advertise_raft_addr
            .clone()
            .unwrap_or_else(|| self.raft_addr.to_string())
    }

    /// The `[dial]` table, for the code that connects to peers.
    pub fn dialer(&self) -> Dialer {
        Dialer(Arc::new(self.dial.clone()))
    }
}

/// Settings whose value is text even when it looks like a number or a boolean (an account id
/// of 12 digits, a secret of digits).
const TEXT_KEYS: &[&str] = &[
    "data_dir",
    "account_id",
    "region",
    "auth.root_access_key_id",
    "auth.root_secret_access_key",
    "tls.ca_file",
    "tls.cert_file",
    "tls.key_file",
];

fn parse_env_value(key: &str, raw: &str) -> toml::Value {
    if TEXT_KEYS.contains(&key) {
        return toml::Value::String(raw.to_string());
    }
    let doc = format!("v = {raw}");
    match doc.parse::<toml::Table>() {
        Ok(mut t) => t.remove("v").unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_dotted(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), ConfigError> {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or(key);
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| key_error(part, "must be a table"))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
node_id = 1
data_dir = "data/node-1"
api_addr = "127.0.0.1:8101"
raft_addr = "127.0.0.1:8201"
"#;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_fill_in() {
        let c = NodeConfig::load(MINIMAL, &BTreeMap::new()).unwrap();
        assert_eq!(c.account_id, "000000000000");
        assert_eq!(c.region, "us-east-1");
        assert_eq!(c.raft, RaftTuning::default());
    }

    #[test]
    fn env_overrides_file() {
        let c = NodeConfig::load(
            MINIMAL,
            &env(&[
                ("ECSD_NODE_ID", "7"),
                ("ECSD_RAFT_HEARTBEAT_MS", "50"),
                ("ECSD_REGION", "eu-west-1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.node_id, 7);
        assert_eq!(c.raft.heartbeat_ms, 50);
        assert_eq!(c.region, "eu-west-1");
    }

    #[test]
    fn a_numeric_account_id_or_secret_from_the_environment_stays_text() {
        let c = NodeConfig::load(
            MINIMAL,
            &env(&[
                ("ECSD_ACCOUNT_ID", "123456789012"),
                ("ECSD_AUTH_ROOT_ACCESS_KEY_ID", "1234567890123456"),
                (
                    "ECSD_AUTH_ROOT_SECRET_ACCESS_KEY",
                    "1234567890123456789012345678901234567890",
                ),
                ("ECSD_LONG_ARNS_BY_DEFAULT", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(c.account_id, "123456789012");
        assert_eq!(
            c.auth.root_secret_access_key.as_deref(),
            Some("1234567890123456789012345678901234567890")
        );
        assert!(!c.long_arns_by_default);
        assert!(
            NodeConfig::load(MINIMAL, &BTreeMap::new())
                .unwrap()
                .long_arns_by_default
        );
    }

    #[test]
    fn unknown_key_is_named() {
        let err = NodeConfig::load(&format!("{MINIMAL}\nbogus = 1\n"), &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn bad_type_names_the_nested_key() {
        let err = NodeConfig::load(
            &format!("{MINIMAL}\n[raft]\nheartbeat_ms = \"fast\"\n"),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("raft.heartbeat_ms"), "{err}");
    }

    #[test]
    fn invalid_timings_are_refused_with_the_key() {
        let err = NodeConfig::load(MINIMAL, &env(&[("ECSD_RAFT_ELECTION_TIMEOUT_MIN_MS", "50")])).unwrap_err();
        assert!(err.to_string().contains("raft.election_timeout_min_ms"), "{err}");
        let err = NodeConfig::load(MINIMAL, &env(&[("ECSD_API_ADDR", "not-an-address")])).unwrap_err();
        assert!(err.to_string().contains("api_addr"), "{err}");
    }

    #[test]
    fn members_must_include_self() {
        let text = format!(
            "{MINIMAL}\n[[initial_members]]\nid = 2\napi_addr = \"127.0.0.1:1\"\nraft_addr = \"127.0.0.1:2\"\n"
        );
        let err = NodeConfig::load(&text, &BTreeMap::new()).unwrap_err();
        assert!(err.to_string().contains("initial_members"), "{err}");
    }

    #[test]
    fn dial_table_reroutes_listed_addresses_only() {
        let text = format!(
            "{MINIMAL}\n[dial]\n\"127.0.0.1:8202\" = \"127.0.0.1:52012\"\n\"127.0.0.1:8102\" = \"127.0.0.1:52112\"\n"
        );
        let c = NodeConfig::load(&text, &BTreeMap::new()).unwrap();
        assert_eq!(c.dial.len(), 2);
        let dialer = c.dialer();
        assert_eq!(dialer.dial("127.0.0.1:8202"), "127.0.0.1:52012");
        assert_eq!(dialer.dial("127.0.0.1:8102"), "127.0.0.1:52112");
        assert_eq!(dialer.dial("127.0.0.1:8203"), "127.0.0.1:8203");
        // Without a table every address is dialled as it is.
        let plain = NodeConfig::load(MINIMAL, &BTreeMap::new()).unwrap();
        assert!(plain.dial.is_empty());
        assert_eq!(plain.dialer().dial("127.0.0.1:8202"), "127.0.0.1:8202");
        let err = NodeConfig::load(
            &format!("{MINIMAL}\n[dial]\n\"127.0.0.1:8202\" = \"nowhere\"\n"),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("dial"), "{err}");
    }
}
