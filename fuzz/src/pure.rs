//! Targets that run in the calling thread: the cluster query language, config files, and the
//! agent and peer messages as a node decodes them.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use ecsd::cql;
use ecsd::model::Attribute;
use ecsd_protocol::messages as wire;
use ecsd_protocol::pb as agent_pb;
use prost::Message;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::mutate::{self, pick};
use crate::{Finding, Report};

/// One input slower than this is a finding: a pure parser must never take a second (ten in a
/// debug build, which decodes a 4 MB message several times slower).
const SLOW: Duration = Duration::from_secs(if cfg!(debug_assertions) { 10 } else { 1 });

/// Runs `one` for `inputs` generated inputs, catching panics and timing each.
fn run(target: &str, seed: u64, inputs: u64, mut one: impl FnMut(&mut StdRng, &mut Report) -> Vec<u8>) -> Report {
    let mut report = Report::new(target);
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    for _ in 0..inputs {
        let mut input = Vec::new();
        let t = Instant::now();
        let result = catch_unwind(AssertUnwindSafe(|| {
            input = one(&mut rng, &mut report);
        }));
        let took = t.elapsed();
        report.slowest = report.slowest.max(took);
        if let Err(panic) = result {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            report.find(Finding::new("panic", &input, message));
        } else if took > SLOW {
            report.find(Finding::new("slow", &input, format!("{took:?}")));
        }
        report.inputs += 1;
    }
    report.elapsed = started.elapsed();
    report
}

// ----- the cluster query language -----

const SUBJECTS: &[&str] = &[
    "attribute:ecs.instance-type",
    "attribute:ecs.availability-zone",
    "attribute:ecs.os-type",
    "attribute:stack",
    "attribute:x.y-z_1",
    "agentConnected",
    "agentVersion",
    "ec2InstanceId",
    "registeredAt",
    "runningTasksCount",
    "task:group",
];
const OPERATORS: &[&str] = &[
    "==",
    "equals",
    "!=",
    "not_equals",
    ">",
    ">=",
    "<",
    "<=",
    "exists",
    "!exists",
    "in",
    "not_in",
    "=~",
    "matches",
    "!~",
    "not_matches",
];
const VALUES: &[&str] = &[
    "t2.micro",
    "us-east-1a",
    "linux",
    "prod",
    "true",
    "1.20.0",
    "i-0123",
    "2018-01-01",
    "2018-01-01T10:00:00Z",
    "3",
    "-1",
    "18446744073709551616",
    "t2.*",
    "(a+)+$",
    "[",
    "'quoted value'",
    "\"dq\"",
    "service:web",
];

fn expression(rng: &mut StdRng, depth: usize) -> String {
    if depth > 4 || rng.gen_ratio(1, 2) {
        let subject = pick(rng, SUBJECTS);
        let op = pick(rng, OPERATORS);
        return match *op {
            "exists" | "!exists" => format!("{subject} {op}"),
            "in" | "not_in" => {
                let n = rng.gen_range(0..4);
                let list: Vec<&str> = (0..n).map(|_| *pick(rng, VALUES)).collect();
                format!("{subject} {op} [{}]", list.join(", "))
            }
            _ => format!("{subject} {op} {}", pick(rng, VALUES)),
        };
    }
    match rng.gen_range(0..4) {
        0 => format!("{} and {}", expression(rng, depth + 1), expression(rng, depth + 1)),
        1 => format!("{} or {}", expression(rng, depth + 1), expression(rng, depth + 1)),
        2 => format!("not ({})", expression(rng, depth + 1)),
        _ => format!("({})", expression(rng, depth + 1)),
    }
}

/// The parser and evaluator on generated expressions, mutated as text; nesting and length far
/// past the limits now and then.
pub fn cql(seed: u64, inputs: u64) -> Report {
    let attributes = vec![
        Attribute {
            name: "ecs.instance-type".into(),
            value: Some("t2.micro".into()),
        },
        Attribute {
            name: "ecs.availability-zone".into(),
            value: Some("us-east-1a".into()),
        },
        Attribute {
            name: "stack".into(),
            value: None,
        },
    ];
    let groups: BTreeMap<String, u64> = [("service:web".to_string(), 2)].into();
    run("cql", seed, inputs, |rng, report| {
        let mut text = expression(rng, 0);
        for _ in 0..rng.gen_range(0..4) {
            mutate::string(rng, &mut text);
        }
        if rng.gen_ratio(1, 50) {
            let n = rng.gen_range(1..5_000);
            let open = *pick(rng, &["(", "not (", "not "]);
            text = format!("{}{text}{}", open.repeat(n), ")".repeat(n));
        }
        let facts = cql::InstanceFacts {
            agent_connected: rng.gen(),
            agent_version: Some("1.20.0"),
            ec2_instance_id: "i-0123",
            registered_at_ms: 1_514_800_000_000,
            running_tasks: 2,
            task_groups: &groups,
            attributes: &attributes,
        };
        match cql::parse(&text) {
            Ok(expr) => {
                report.count("parsed");
                cql::eval(&expr, &facts);
                if text.chars().count() > cql::MAX_LENGTH {
                    report.find(Finding::new("over-limit", text.as_bytes(), "parsed past MAX_LENGTH"));
                }
            }
            Err(_) => report.count("refused"),
        }
        text.into_bytes()
    })
}

// ----- config files -----

const CONFIGS: &[&str] = &[
    include_str!("../../cluster-config/template.toml"),
    include_str!("../../cluster-config/local/node-1.toml"),
    include_str!("../../cluster-config/five-node/node-3.toml"),
    "node_id = 1\ndata_dir = \"/tmp/x\"\napi_addr = \"127.0.0.1:0\"\nraft_addr = \"127.0.0.1:0\"\n",
];

fn toml_hostile(rng: &mut StdRng) -> toml::Value {
    match rng.gen_range(0..12) {
        0 => toml::Value::Integer(0),
        1 => toml::Value::Integer(-1),
        2 => toml::Value::Integer(i64::MAX),
        3 => toml::Value::Integer(i64::MIN),
        4 => toml::Value::Integer(u32::MAX as i64 + 1),
        5 => toml::Value::Float(f64::NAN),
        6 => toml::Value::String(String::new()),
        7 => toml::Value::String("0.0.0.0:99999".into()),
        8 => toml::Value::Boolean(true),
        9 => toml::Value::Array(vec![toml::Value::Integer(1)]),
        10 => toml::Value::Table(toml::Table::new()),
        _ => toml::Value::String({
            let n = rng.gen_range(0..30);
            mutate::random_text(rng, n)
        }),
    }
}

/// Picks a value anywhere in a TOML table, walking down at random.
fn toml_node<'a>(rng: &mut StdRng, table: &'a mut toml::Table) -> Option<&'a mut toml::Value> {
    if table.is_empty() {
        return None;
    }
    let i = rng.gen_range(0..table.len());
    let value = table.iter_mut().nth(i).map(|(_, v)| v)?;
    let descend = matches!(value, toml::Value::Table(t) if !t.is_empty()) && rng.gen_ratio(2, 3);
    if !descend {
        return Some(value);
    }
    match value {
        toml::Value::Table(t) => toml_node(rng, t),
        _ => None,
    }
}

/// `NodeConfig::load` on the shipped configs mutated as TOML and as text, with random
/// environment overrides. A config that loads must also make a valid Raft config.
pub fn config(seed: u64, inputs: u64) -> Report {
    let overrides = ecsd::config::ENV_OVERRIDES;
    run("config", seed, inputs, |rng, report| {
        let base = *pick(rng, CONFIGS);
        let mut text = base.to_string();
        if let Ok(mut table) = base.parse::<toml::Table>() {
            for _ in 0..rng.gen_range(1..4) {
                match rng.gen_range(0..4) {
                    0 if !table.is_empty() => {
                        let key = table
                            .keys()
                            .nth(rng.gen_range(0..table.len()))
                            .cloned()
                            .unwrap_or_default();
                        table.remove(&key);
                    }
                    1 => {
                        table.insert(mutate::random_text(rng, 5), toml_hostile(rng));
                    }
                    _ => {
                        if let Some(v) = toml_node(rng, &mut table) {
                            *v = toml_hostile(rng);
                        }
                    }
                }
            }
            text = toml::to_string(&table).unwrap_or(text);
        }
        let mut bytes = text.into_bytes();
        if rng.gen_ratio(1, 4) {
            let n = rng.gen_range(1..4);
            mutate::bytes(rng, &mut bytes, n);
        }
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let mut env = BTreeMap::new();
        for _ in 0..rng.gen_range(0..3) {
            let (var, _) = pick(rng, overrides);
            let value = match rng.gen_range(0..4) {
                0 => "-1".to_string(),
                1 => "99999999999999999999".to_string(),
                2 => "127.0.0.1:0".to_string(),
                _ => {
                    let n = rng.gen_range(0..12);
                    mutate::random_text(rng, n)
                }
            };
            env.insert(var.to_string(), value);
        }
        match ecsd::config::NodeConfig::load(&text, &env) {
            Ok(config) => {
                report.count("loaded");
                if let Err(e) = ecsd::raft::raft_config(&config) {
                    report.find(Finding::new(
                        "valid-config-cannot-start",
                        text.as_bytes(),
                        e.to_string(),
                    ));
                }
                let _ = ecsd::api::server::Limits::of(&config.api);
            }
            Err(_) => report.count("refused"),
        }
        text.into_bytes()
    })
}

// ----- the agent and peer messages -----

type C = ecsd::raft::TypeConfig;

/// A valid example of every JSON body the node decodes from a peer or an agent.
fn payload_seeds() -> Vec<Value> {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Vote};
    let log_id = LogId::new(CommittedLeaderId::new(3, 1), 41);
    let proposal = ecsd::stamp::proposal(ecsd::state::Command::DeleteCluster { name: "fz".into() });
    let entry: Entry<C> = Entry {
        log_id,
        payload: EntryPayload::Normal(ecsd::state::Batch(vec![proposal.clone()])),
    };
    let append = openraft::raft::AppendEntriesRequest::<C> {
        vote: Vote::new_committed(3, 1),
        prev_log_id: Some(LogId::new(CommittedLeaderId::new(3, 1), 40)),
        entries: vec![entry],
        leader_commit: Some(log_id),
    };
    let vote = openraft::raft::VoteRequest::<u64>::new(Vote::new(4, 2), Some(log_id));
    let snapshot = openraft::raft::InstallSnapshotRequest::<C> {
        vote: Vote::new_committed(3, 1),
        meta: openraft::SnapshotMeta {
            last_log_id: Some(log_id),
            last_membership: openraft::StoredMembership::default(),
            snapshot_id: "3-1-41".into(),
        },
        offset: 0,
        data: vec![1, 2, 3],
        done: true,
    };
    let instance = wire::InstanceRef {
        cluster: "fz".into(),
        instance_id: "0123456789abcdef".into(),
    };
    let change = wire::StateChange {
        cluster: "fz".into(),
        task_id: "0123".into(),
        status: Some(wire::TaskStatus::Running),
        reason: Some("r".into()),
        containers: vec![wire::ContainerChange {
            name: "main".into(),
            status: Some(wire::TaskStatus::Stopped),
            exit_code: Some(3),
            reason: None,
            network_bindings: Some(vec![wire::NetworkBinding {
                bind_ip: "0.0.0.0".into(),
                container_port: 80,
                host_port: 8080,
                protocol: "tcp".into(),
            }]),
            runtime_id: Some("abc".into()),
        }],
        pull_started_at_ms: Some(1),
        pull_stopped_at_ms: Some(2),
        execution_stopped_at_ms: None,
    };
    vec![
        to(&append),
        to(&vote),
        to(&snapshot),
        to(&ecsd::state::Batch(vec![proposal])),
        to(&ecsd::raft::AdminOp::RemoveNode { id: 4 }),
        to(&wire::AssignmentsRequest {
            instance: instance.clone(),
            deltas: true,
        }),
        to(&instance),
        to(&wire::Report { changes: vec![change] }),
        to(&wire::UpdateProgress {
            instance,
            status: "UPDATED".into(),
            version_info: Some(json!({"agentVersion": "1.2.3"})),
        }),
        json!(null),
    ]
}

/// `value` as JSON (a seed: plain data, which always serialises).
fn to<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("seed serialises")
}

/// Decodes `payload` as every body type a node reads from peers and agents, and converts what
/// decodes as an agent's report into commands, as the agent service does.
fn decode_all(payload: &[u8], report: &mut Report) {
    fn try_json<T: serde::de::DeserializeOwned>(payload: &[u8], name: &str, report: &mut Report) -> Option<T> {
        match serde_json::from_slice::<T>(payload) {
            Ok(v) => {
                report.count(format!("{name} decoded"));
                Some(v)
            }
            Err(_) => None,
        }
    }
    try_json::<openraft::raft::AppendEntriesRequest<C>>(payload, "append", report);
    try_json::<openraft::raft::VoteRequest<u64>>(payload, "vote", report);
    try_json::<openraft::raft::InstallSnapshotRequest<C>>(payload, "snapshot", report);
    try_json::<ecsd::state::Batch>(payload, "batch", report);
    try_json::<ecsd::raft::AdminOp>(payload, "admin", report);
    try_json::<wire::AssignmentsRequest>(payload, "assignments", report);
    try_json::<wire::InstanceRef>(payload, "instance", report);
    try_json::<wire::UpdateProgress>(payload, "progress", report).map(ecsd::agents::boundary::update_status);
    if let Some(r) = try_json::<wire::Report>(payload, "report", report) {
        for change in r.changes {
            ecsd::agents::boundary::task_state_change(change);
        }
    }
}

/// The agent service's decoding limit (`src/agents/mod.rs`).
const AGENT_MESSAGE_LIMIT: usize = 4 * 1024 * 1024;

/// The protobuf envelopes of both services, mutated as bytes, and the JSON bodies inside them,
/// mutated as JSON; each decoded as the node decodes it.
pub fn proto(seed: u64, inputs: u64) -> Report {
    let seeds = payload_seeds();
    run("proto", seed, inputs, |rng, report| {
        let mut doc = pick(rng, &seeds).clone();
        let n = rng.gen_range(0..4);
        mutate::json(rng, &mut doc, n);
        let mut payload = serde_json::to_vec(&doc).unwrap_or_default();
        if rng.gen_ratio(1, 3) {
            let n = rng.gen_range(1..6);
            mutate::bytes(rng, &mut payload, n);
        }
        let mut envelope = match rng.gen_range(0..2) {
            0 => ecsd::rpc::pb::RaftRequest {
                target: rng.gen_range(0..5),
                payload,
                data: vec![0; rng.gen_range(0..16)],
                cluster_id: String::new(),
            }
            .encode_to_vec(),
            _ => agent_pb::AgentRequest { payload }.encode_to_vec(),
        };
        if rng.gen_ratio(1, 3) {
            let n = rng.gen_range(1..4);
            mutate::bytes(rng, &mut envelope, n);
        }
        // tonic refuses a larger agent message before anything decodes it.
        if envelope.len() > AGENT_MESSAGE_LIMIT {
            report.count("over the agent message limit");
            return envelope;
        }
        match ecsd::rpc::pb::RaftRequest::decode(envelope.as_slice()) {
            Ok(request) => {
                report.count("peer envelope decoded");
                decode_all(&request.payload, report);
            }
            Err(_) => report.count("peer envelope refused"),
        }
        match agent_pb::AgentRequest::decode(envelope.as_slice()) {
            Ok(request) => {
                report.count("agent envelope decoded");
                decode_all(&request.payload, report);
            }
            Err(_) => report.count("agent envelope refused"),
        }
        let _ = agent_pb::AgentReply::decode(envelope.as_slice());
        let _ = ecsd::rpc::pb::RaftReply::decode(envelope.as_slice());
        envelope
    })
}
