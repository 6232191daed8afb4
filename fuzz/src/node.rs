//! Targets that need a running node: the ECS API over HTTP and the agent service over gRPC,
//! both against a single-node cluster started in this process on ports the OS picks. Every
//! `epoch` inputs the node is replaced by a fresh one, so that the state a run builds up stays
//! small enough to keep the run fast.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ecsd::config::NodeConfig;
use ecsd::node::{Listeners, Node};
use ecsd_protocol::messages as wire;
use ecsd_protocol::pb::agent_service_client::AgentServiceClient;
use ecsd_protocol::pb::AgentRequest;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::model::{Model, Names};
use crate::mutate::{self, pick};
use crate::{Finding, Report};

/// A request that takes longer than this is a finding (the node's own request timeout is 60 s,
/// but nothing a fuzzed request asks for may take more than a few seconds on an idle node).
const HANG: Duration = Duration::from_secs(30);

/// A single-node cluster in this process.
pub struct FuzzNode {
    node: Node,
    _dir: tempfile::TempDir,
    pub api: String,
    pub raft: String,
    http: reqwest::Client,
}

impl FuzzNode {
    pub async fn start() -> anyhow::Result<FuzzNode> {
        // Under /dev/shm where there is one: the fuzzed node fsyncs every write.
        let parent = ["/dev/shm", "/tmp"]
            .into_iter()
            .find(|p| std::path::Path::new(p).is_dir())
            .unwrap_or(".");
        let dir = tempfile::Builder::new().prefix("ecsd-fuzz-").tempdir_in(parent)?;
        let bind = || -> anyhow::Result<std::net::TcpListener> {
            let l = std::net::TcpListener::bind("127.0.0.1:0")?;
            l.set_nonblocking(true)?;
            Ok(l)
        };
        let (api, raft) = (bind()?, bind()?);
        let (api_addr, raft_addr) = (api.local_addr()?, raft.local_addr()?);
        let text = format!(
            "node_id = 1\ndata_dir = {:?}\napi_addr = \"{api_addr}\"\nraft_addr = \"{raft_addr}\"\nbootstrap = true\n\
             [[initial_members]]\nid = 1\napi_addr = \"{api_addr}\"\nraft_addr = \"{raft_addr}\"\n",
            dir.path().join("node-1").display().to_string(),
        );
        let config = NodeConfig::load(&text, &BTreeMap::new())?;
        let listeners = Listeners {
            api: tokio::net::TcpListener::from_std(api)?,
            raft: tokio::net::TcpListener::from_std(raft)?,
        };
        let node = Node::start(config, listeners, Vec::new()).await?;
        let fuzz = FuzzNode {
            node,
            _dir: dir,
            api: format!("http://{api_addr}/"),
            raft: format!("http://{raft_addr}"),
            http: reqwest::Client::builder().timeout(HANG).build()?,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, _)) = fuzz.call("ListClusters", b"{}").await {
                return Ok(fuzz);
            }
            anyhow::ensure!(Instant::now() < deadline, "the fuzzed node did not serve within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POSTs `body` as `operation`; the status and the body as text.
    pub async fn call(&self, operation: &str, body: &[u8]) -> Result<(u16, String), reqwest::Error> {
        let response = ecsd_protocol::ecs::request(&self.http, &self.api, operation)
            .body(body.to_vec())
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    async fn ok(&self, operation: &str, body: Value) -> anyhow::Result<Value> {
        let (status, text) = self.call(operation, body.to_string().as_bytes()).await?;
        anyhow::ensure!(status == 200, "fixture {operation}: {status} {text}");
        Ok(serde_json::from_str(&text)?)
    }

    /// A cluster `fz` with a task definition, two instances, four tasks and a service; the
    /// names and ARNs of all of it.
    async fn fixture(&self) -> anyhow::Result<(Names, Fixture)> {
        let mut found = Vec::new();
        let mut fixture = Fixture::default();
        mutate::arns(
            &self.ok("CreateCluster", json!({"clusterName": "fz"})).await?,
            &mut found,
        );
        // Many revisions: fuzzed requests deregister them one by one.
        let definition = json!({"family": "fz", "containerDefinitions": [{
            "name": "main", "image": "busybox", "cpu": 128, "memory": 64,
            "portMappings": [{"containerPort": 80, "hostPort": 0}]}]});
        for _ in 0..20 {
            mutate::arns(
                &self.ok("RegisterTaskDefinition", definition.clone()).await?,
                &mut found,
            );
        }
        for zone in ["us-east-1a", "us-east-1b"] {
            let registered = self
                .ok(
                    "RegisterContainerInstance",
                    json!({"cluster": "fz", "totalResources": [
                        {"name": "CPU", "type": "INTEGER", "integerValue": 4096},
                        {"name": "MEMORY", "type": "INTEGER", "integerValue": 8192}],
                        "attributes": [{"name": "ecs.availability-zone", "value": zone}]}),
                )
                .await?;
            if let Some(arn) = registered["containerInstance"]["containerInstanceArn"].as_str() {
                fixture.instances.push(last_segment(arn));
            }
            mutate::arns(&registered, &mut found);
        }
        let ran = self
            .ok("RunTask", json!({"cluster": "fz", "taskDefinition": "fz", "count": 4}))
            .await?;
        for task in ran["tasks"].as_array().into_iter().flatten() {
            if let Some(arn) = task["taskArn"].as_str() {
                fixture.tasks.push(last_segment(arn));
            }
        }
        mutate::arns(&ran, &mut found);
        let service = json!({"cluster": "fz", "serviceName": "svc", "taskDefinition": "fz", "desiredCount": 2});
        mutate::arns(&self.ok("CreateService", service).await?, &mut found);
        let mut names = Names::default();
        names.by_field.insert("cluster", vec!["fz".into(), "default".into()]);
        names
            .by_field
            .insert("taskDefinition", vec!["fz".into(), "fz:1".into()]);
        names.by_field.insert("service", vec!["svc".into()]);
        let mut rng = StdRng::seed_from_u64(0);
        for arn in &found {
            names.learn(arn, 256, &mut rng);
        }
        Ok((names, fixture))
    }

    pub async fn stop(self) {
        self.node.shutdown().await;
    }
}

#[derive(Default, Clone)]
struct Fixture {
    instances: Vec<String>,
    tasks: Vec<String>,
}

fn last_segment(arn: &str) -> String {
    arn.rsplit('/').next().unwrap_or(arn).to_string()
}

/// Runs `inputs` inputs against fresh nodes, `workers` at a time, one node per `epoch` inputs;
/// `one` makes and sends one input and judges the answer.
async fn epochs<F, Fut>(target: &str, seed: u64, inputs: u64, workers: u64, epoch: u64, one: F) -> Report
where
    F: Fn(Arc<Shared>, StdRng, Names, Fixture, Arc<AtomicU64>, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Report> + Send + 'static,
{
    let mut report = Report::new(target);
    let started = Instant::now();
    let (panics_before, _) = crate::panics();
    let mut done = 0;
    let mut round = 0;
    while done < inputs {
        let quota = epoch.min(inputs - done);
        let node = match FuzzNode::start().await {
            Ok(n) => Arc::new(n),
            Err(e) => {
                report.find(Finding::new("node-start", b"", e.to_string()));
                break;
            }
        };
        let (names, fixture) = match node.fixture().await {
            Ok(f) => f,
            Err(e) => {
                report.find(Finding::new("fixture", b"", e.to_string()));
                break;
            }
        };
        let shared = Arc::new(Shared {
            node: node.clone(),
            model: Model::load(),
        });
        let next = Arc::new(AtomicU64::new(0));
        let mut handles = Vec::new();
        for w in 0..workers {
            let rng = StdRng::seed_from_u64(crate::worker_seed(seed, round * workers + w));
            let one = one.clone();
            handles.push(tokio::spawn(one(
                shared.clone(),
                rng,
                names.clone(),
                fixture.clone(),
                next.clone(),
                quota,
            )));
        }
        for h in handles {
            match h.await {
                Ok(r) => report.merge(r),
                Err(e) => report.find(Finding::new("worker-panic", b"", e.to_string())),
            }
        }
        // The node must still answer reads and take writes (a fuzzed DeleteCluster may have
        // removed the fixture's cluster; that is fine).
        let read = node.call("DescribeClusters", br#"{"clusters":["fz"]}"#).await;
        let write = node.call("CreateCluster", br#"{"clusterName":"fz-after"}"#).await;
        if !matches!((&read, &write), (Ok((200, _)), Ok((200, _)))) {
            let detail = format!("after {quota} inputs: read {read:?}, write {write:?}");
            report.find(Finding::new("node-stopped-serving", b"", detail));
        }
        drop(shared);
        match Arc::try_unwrap(node) {
            Ok(node) => node.stop().await,
            Err(_) => report.find(Finding::new("node-held", b"", "a worker kept the node")),
        }
        done += quota;
        round += 1;
    }
    let (panics_after, messages) = crate::panics();
    if panics_after > panics_before {
        for m in messages {
            report.find(Finding::new("panic", b"", m));
        }
    }
    report.elapsed = started.elapsed();
    report
}

struct Shared {
    node: Arc<FuzzNode>,
    model: Model,
}

/// Takes the next input number of this epoch, if any is left.
fn take(next: &AtomicU64, quota: u64) -> bool {
    next.fetch_add(1, Ordering::Relaxed) < quota
}

/// Every ECS operation of today's model, as generated requests with 0-4 structural mutations
/// (and byte mutations now and then), over HTTP. Every answer must be 200 with a JSON object, or
/// a 4xx whose body carries an AWS `__type` and a message.
pub async fn api(seed: u64, inputs: u64, workers: u64, epoch: u64) -> Report {
    epochs("api", seed, inputs, workers, epoch, api_worker).await
}

async fn api_worker(
    shared: Arc<Shared>,
    mut rng: StdRng,
    mut names: Names,
    _fixture: Fixture,
    next: Arc<AtomicU64>,
    quota: u64,
) -> Report {
    let mut report = Report::new("api");
    let all: Vec<&String> = shared.model.operations.keys().collect();
    while take(&next, quota) {
        let operation = if rng.gen_ratio(17, 20) {
            // Mostly the operations ecsd serves.
            pick(&mut rng, ecsd::api::ACTIONS).to_string()
        } else {
            pick(&mut rng, &all).to_string()
        };
        let mut body = shared.model.request(&mut rng, &operation, &names);
        let mutations = match rng.gen_range(0..20) {
            0..=5 => 0,
            6..=12 => 1,
            _ => rng.gen_range(2..5),
        };
        mutate::json(&mut rng, &mut body, mutations);
        let mut bytes = serde_json::to_vec(&body).unwrap_or_default();
        if rng.gen_ratio(1, 12) {
            let n = rng.gen_range(1..5);
            mutate::bytes(&mut rng, &mut bytes, n);
        }
        let t = Instant::now();
        let answer = shared.node.call(&operation, &bytes).await;
        report.slowest = report.slowest.max(t.elapsed());
        report.inputs += 1;
        let input = [operation.as_bytes(), b" ", &bytes].concat();
        match answer {
            Err(e) if e.is_timeout() => report.find(Finding::new("hang", &input, e.to_string())),
            Err(e) => report.find(Finding::new("connection-error", &input, error_chain(&e))),
            Ok((status, text)) => {
                let value: Option<Value> = serde_json::from_str(&text).ok();
                match (status, value) {
                    (200, Some(v)) if v.is_object() => {
                        report.count(format!("200 {operation}"));
                        let mut found = Vec::new();
                        mutate::arns(&v, &mut found);
                        for arn in found.iter().take(8) {
                            names.learn(arn, 256, &mut rng);
                        }
                    }
                    (400..=499, Some(v))
                        if v["__type"].as_str().is_some_and(|t| !t.is_empty())
                            && v["message"].as_str().is_some_and(|m| !m.is_empty()) =>
                    {
                        report.count(format!("{status} {}", v["__type"].as_str().unwrap_or_default()));
                    }
                    (500..=599, _) => {
                        report.find(Finding::new("server-error", &input, format!("{status} {text}")));
                    }
                    _ => report.find(Finding::new("answer-shape", &input, format!("{status} {text}"))),
                }
            }
        }
    }
    report
}

/// The agent service's four calls with generated messages naming the fixture's instances and
/// tasks, mutated as JSON and as bytes, over gRPC. A client's bad message must get a client
/// error code, never `internal` or `unknown`, and never hang.
pub async fn agent(seed: u64, inputs: u64, workers: u64, epoch: u64) -> Report {
    epochs("agent", seed, inputs, workers, epoch, agent_worker).await
}

async fn agent_worker(
    shared: Arc<Shared>,
    mut rng: StdRng,
    names: Names,
    fixture: Fixture,
    next: Arc<AtomicU64>,
    quota: u64,
) -> Report {
    let mut report = Report::new("agent");
    let mut client = match AgentServiceClient::connect(shared.node.raft.clone()).await {
        Ok(c) => c,
        Err(e) => {
            report.find(Finding::new("connect", b"", e.to_string()));
            return report;
        }
    };
    let clusters = names.by_field.get("cluster").cloned().unwrap_or_default();
    while take(&next, quota) {
        let cluster = if rng.gen_ratio(9, 10) {
            "fz".to_string()
        } else {
            pick(&mut rng, &clusters).clone()
        };
        let instance = wire::InstanceRef {
            cluster: cluster.clone(),
            instance_id: pick(&mut rng, &fixture.instances).clone(),
        };
        let call = rng.gen_range(0..10);
        let mut doc = match call {
            0..=5 => {
                let changes: Vec<wire::StateChange> = (0..rng.gen_range(1..4))
                    .map(|_| state_change(&mut rng, &cluster, &fixture))
                    .collect();
                serde_json::to_value(wire::Report { changes })
            }
            6 => serde_json::to_value(&instance),
            7 => serde_json::to_value(wire::UpdateProgress {
                instance,
                status: pick(&mut rng, &["STAGING", "STAGED", "UPDATING", "UPDATED", "FAILED", "x"]).to_string(),
                version_info: rng.gen_bool(0.5).then(|| json!({"agentVersion": "1.2.3"})),
            }),
            _ => serde_json::to_value(wire::AssignmentsRequest {
                instance,
                deltas: rng.gen(),
            }),
        }
        .unwrap_or_default();
        let n = rng.gen_range(0..3);
        mutate::json(&mut rng, &mut doc, n);
        let mut payload = serde_json::to_vec(&doc).unwrap_or_default();
        if rng.gen_ratio(1, 10) {
            let n = rng.gen_range(1..4);
            mutate::bytes(&mut rng, &mut payload, n);
        }
        let request = AgentRequest {
            payload: payload.clone(),
        };
        let t = Instant::now();
        let answer = tokio::time::timeout(HANG, async {
            match call {
                0..=5 => client.report(request).await.map(|_| ()),
                6 => client.heartbeat(request).await.map(|_| ()),
                7 => client.update_status(request).await.map(|_| ()),
                _ => {
                    let mut stream = client.assignments(request).await?.into_inner();
                    // The first assignment comes at once; then the stream waits for changes.
                    stream.message().await.map(|_| ())
                }
            }
        })
        .await;
        report.slowest = report.slowest.max(t.elapsed());
        report.inputs += 1;
        match answer {
            Err(_) => report.find(Finding::new("hang", &payload, format!("call {call}"))),
            Ok(Ok(())) => report.count("ok"),
            Ok(Err(status)) => {
                use tonic::Code;
                match status.code() {
                    Code::Internal | Code::Unknown | Code::DataLoss | Code::Unavailable => report.find(Finding::new(
                        "grpc-server-error",
                        &payload,
                        format!("call {call}: {status}"),
                    )),
                    code => report.count(format!("{code:?}")),
                }
            }
        }
    }
    report
}

fn state_change(rng: &mut StdRng, cluster: &str, fixture: &Fixture) -> wire::StateChange {
    let statuses = [
        None,
        Some(wire::TaskStatus::Pending),
        Some(wire::TaskStatus::Running),
        Some(wire::TaskStatus::Stopped),
    ];
    let exit_codes = [
        None,
        Some(0),
        Some(1),
        Some(137),
        Some(-1),
        Some(i64::MAX),
        Some(i64::MIN),
    ];
    let port = |rng: &mut StdRng| *pick(rng, &[0u16, 80, 8080, 65535]);
    wire::StateChange {
        cluster: cluster.to_string(),
        task_id: if rng.gen_ratio(9, 10) && !fixture.tasks.is_empty() {
            pick(rng, &fixture.tasks).clone()
        } else {
            mutate::random_text(rng, 8)
        },
        status: *pick(rng, &statuses),
        reason: rng.gen_bool(0.3).then(|| mutate::random_text(rng, 20)),
        containers: (0..rng.gen_range(0..3))
            .map(|_| wire::ContainerChange {
                name: pick(rng, &["main", "other", ""]).to_string(),
                status: *pick(rng, &statuses),
                exit_code: *pick(rng, &exit_codes),
                reason: rng.gen_bool(0.2).then(|| "r".to_string()),
                network_bindings: rng.gen_bool(0.3).then(|| {
                    vec![wire::NetworkBinding {
                        bind_ip: "0.0.0.0".into(),
                        container_port: port(rng),
                        host_port: port(rng),
                        protocol: pick(rng, &["tcp", "udp", "sctp"]).to_string(),
                    }]
                }),
                runtime_id: rng.gen_bool(0.3).then(|| mutate::random_text(rng, 12)),
            })
            .collect(),
        pull_started_at_ms: rng.gen_bool(0.2).then(|| rng.gen()),
        pull_stopped_at_ms: rng.gen_bool(0.2).then(|| rng.gen()),
        execution_stopped_at_ms: rng.gen_bool(0.2).then(|| rng.gen()),
    }
}

/// An error with its causes, which reqwest's own message leaves out.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
