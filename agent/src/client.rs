//! The agent's side: register, then keep a session with some ecsd node: an assignment stream,
//! heartbeats, and batched state reports. When the node goes away the agent moves to another
//! with backoff.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use ecsd_protocol::ecs;
use ecsd_protocol::messages::{Assignment, AssignmentsRequest, InstanceRef, Report, StateChange};
use ecsd_protocol::pb::agent_service_client::AgentServiceClient;
use ecsd_protocol::pb::AgentRequest;
use ecsd_protocol::sigv4::Signer;

use crate::process::ProcessRuntime;
use crate::sim::{SimRuntime, SimSettings};
use crate::Runtime;

/// What one agent runs as.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// ECS API endpoints (`http://host:port`) of the cluster's nodes, tried in turn.
    pub endpoints: Vec<String>,
    pub cluster: String,
    pub cpu: i64,
    pub memory: i64,
    pub attributes: Vec<(String, Option<String>)>,
    pub log_dir: PathBuf,
    pub heartbeat: Duration,
    pub ec2_instance_id: String,
    pub runtime: RuntimeKind,
    /// The `agentVersion` registered. UpdateContainerAgent updates an agent older than ecsd's.
    pub agent_version: String,
    /// Where the agent keeps its container instance ARN (`<cluster>-<ec2 instance id>.arn`), so a
    /// restarted agent re-registers as the same instance, with its tasks (`None`: a new instance
    /// each start).
    pub state_dir: Option<PathBuf>,
}

/// The agent version this build is.
pub use ecsd_protocol::AGENT_VERSION;

/// The attribute of an instance that offers Fargate capacity (`--capacity fargate`); the
/// server places FARGATE tasks only there.
pub const CAPACITY_ATTRIBUTE: &str = "ecsd.capacity";

/// Which runtime runs the containers.
#[derive(Clone)]
pub enum RuntimeKind {
    Process,
    Docker(bollard::Docker),
    Sim(SimSettings),
}

impl std::fmt::Debug for RuntimeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RuntimeKind::Process => "process",
            RuntimeKind::Docker(_) => "docker",
            RuntimeKind::Sim(_) => "sim",
        })
    }
}

/// An ECS API call over HTTP, with a deadline, signed by `signer` when there is one; returns
/// the JSON body or the ECS error.
pub async fn ecs_call(
    http: &reqwest::Client,
    signer: Option<&Signer>,
    url: &str,
    action: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let request = ecs::request(http, url, action).timeout(Duration::from_secs(10));
    let reply = ecs::send_as(request, &body, signer).await?;
    if reply.is_success() {
        Ok(reply.body)
    } else {
        Err(anyhow!("{action} at {url}: {} {}", reply.status, reply.body))
    }
}

fn request<T: serde::Serialize>(value: &T) -> AgentRequest {
    AgentRequest {
        payload: serde_json::to_vec(value).unwrap_or_default(),
    }
}

/// Registers with the first endpoint that answers; returns the instance ID.
async fn register(connections: &Connections, config: &AgentConfig) -> anyhow::Result<String> {
    let (http, signer) = (&connections.http, connections.signer.as_ref());
    let attributes: Vec<Value> = config
        .attributes
        .iter()
        .map(|(name, value)| match value {
            Some(v) => json!({"name": name, "value": v}),
            None => json!({"name": name}),
        })
        .collect();
    let body = json!({
        "cluster": config.cluster,
        "instanceIdentityDocument": json!({"instanceId": config.ec2_instance_id}).to_string(),
        "totalResources": [
            {"name": "CPU", "type": "INTEGER", "integerValue": config.cpu},
            {"name": "MEMORY", "type": "INTEGER", "integerValue": config.memory},
            {"name": "PORTS", "type": "STRINGSET", "stringSetValue": []},
            {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []}
        ],
        "versionInfo": {"agentVersion": config.agent_version, "agentHash": "ecsd"},
        "attributes": attributes,
    });
    let state_file = config
        .state_dir
        .as_ref()
        .map(|dir| dir.join(format!("{}-{}.arn", config.cluster, config.ec2_instance_id)));
    let mut saved = state_file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|arn| arn.trim().to_string())
        .filter(|arn| !arn.is_empty());
    let mut backoff = Duration::from_millis(100);
    loop {
        for url in &config.endpoints {
            let mut body = body.clone();
            if let Some(arn) = &saved {
                body["containerInstanceArn"] = json!(arn);
            }
            // Like the ECS agent, create the default cluster when joining it (idempotent).
            if config.cluster == "default" {
                if let Err(e) = ecs_call(http, signer, url, "CreateCluster", json!({})).await {
                    tracing::debug!(error = %e, "creating the default cluster failed");
                }
            }
            match ecs_call(http, signer, url, "RegisterContainerInstance", body).await {
                Ok(reply) => {
                    let arn = reply["containerInstance"]["containerInstanceArn"]
                        .as_str()
                        .context("registration reply without an ARN")?;
                    if let Some(file) = &state_file {
                        if let Some(dir) = file.parent() {
                            std::fs::create_dir_all(dir)?;
                        }
                        std::fs::write(file, arn).with_context(|| format!("write {}", file.display()))?;
                    }
                    return Ok(arn.rsplit('/').next().unwrap_or(arn).to_string());
                }
                // The saved instance is gone (deregistered): register a new one.
                Err(e) if saved.is_some() && e.to_string().contains(" 400 ") => {
                    tracing::warn!(error = %e, "the saved container instance is gone; registering a new one");
                    saved = None;
                }
                Err(e) => tracing::warn!(error = %e, "registration failed; trying another node"),
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// HTTP and gRPC connections, shared by the instances one process acts as (HTTP/2 multiplexes
/// every session over one connection per node), and how they are secured.
#[derive(Clone, Default)]
pub struct Connections {
    http: reqwest::Client,
    grpc: std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, Channel>>>,
    /// Signs the agent's ECS API calls (a key with the `agent` role).
    signer: Option<Signer>,
    /// The agent's certificate for the agent service (mutual TLS), and the cluster CA.
    tls: Option<ClientTlsConfig>,
}

/// An agent's TLS files, read (PEM): the cluster CA, and its certificate and key from
/// `ecsd tls cert --agent NAME`.
#[derive(Clone)]
pub struct AgentTls {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl AgentTls {
    /// Reads the three files.
    pub fn read(ca: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> anyhow::Result<AgentTls> {
        let read = |p: &std::path::Path| std::fs::read(p).with_context(|| format!("read {}", p.display()));
        Ok(AgentTls {
            ca: read(ca)?,
            cert: read(cert)?,
            key: read(key)?,
        })
    }
}

impl Connections {
    /// Connections that sign with `signer` and speak TLS with `tls` (each optional).
    pub fn secured(signer: Option<Signer>, tls: Option<&AgentTls>) -> anyhow::Result<Connections> {
        let mut http = reqwest::Client::builder();
        if let Some(tls) = tls {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&tls.ca).context("the CA certificate")?);
        }
        Ok(Connections {
            http: http.build()?,
            grpc: Default::default(),
            signer,
            tls: tls.map(|t| {
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(&t.ca))
                    .identity(Identity::from_pem(&t.cert, &t.key))
            }),
        })
    }

    /// Asks `url` where agents should connect (its gRPC endpoint) and connects, or reuses the
    /// connection to that endpoint. A failed session drops it (see [`Connections::forget`]).
    async fn discover(&self, url: &str, cluster: &str) -> anyhow::Result<(String, Channel)> {
        let reply = ecs_call(
            &self.http,
            self.signer.as_ref(),
            url,
            "DiscoverPollEndpoint",
            json!({"cluster": cluster}),
        )
        .await?;
        let endpoint = reply["endpoint"].as_str().context("no endpoint")?.to_string();
        if let Some(channel) = self.grpc.lock().unwrap_or_else(|p| p.into_inner()).get(&endpoint) {
            return Ok((endpoint, channel.clone()));
        }
        let mut channel = Endpoint::from_shared(endpoint.clone())?;
        if let Some(tls) = &self.tls {
            channel = channel.tls_config(tls.clone())?;
        }
        let channel = channel
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            // A peer that vanished without closing the connection is noticed.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect()
            .await?;
        self.grpc
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(endpoint.clone(), channel.clone());
        Ok((endpoint, channel))
    }

    fn forget(&self, endpoint: &str) {
        self.grpc.lock().unwrap_or_else(|p| p.into_inner()).remove(endpoint);
    }
}

/// Runs the agent until `shutdown` fires.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with(config, Connections::default(), shutdown).await
}

/// Runs one agent over shared connections until `shutdown` fires.
pub async fn run_with(
    config: AgentConfig,
    connections: Connections,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let instance_id = register(&connections, &config).await?;
    tracing::info!(instance = %instance_id, cluster = %config.cluster, "registered");
    let instance = InstanceRef {
        cluster: config.cluster.clone(),
        instance_id,
    };
    let (reports_tx, reports_rx) = mpsc::unbounded_channel();
    let runtime: Box<dyn Runtime> = match &config.runtime {
        RuntimeKind::Process => Box::new(ProcessRuntime::new(
            config.cluster.clone(),
            config.log_dir.clone(),
            reports_tx,
        )),
        RuntimeKind::Docker(docker) => Box::new(crate::docker::DockerRuntime::new(
            docker.clone(),
            config.cluster.clone(),
            instance.instance_id.clone(),
            reports_tx,
        )),
        RuntimeKind::Sim(settings) => Box::new(SimRuntime::new(
            config.cluster.clone(),
            config.ec2_instance_id.clone(),
            settings.clone(),
            reports_tx,
        )),
    };
    let (channel_tx, channel_rx) = tokio::sync::watch::channel::<Option<Channel>>(None);
    tokio::spawn(send_reports(reports_rx, channel_rx, shutdown.clone()));

    let mut turn = 0usize;
    let mut backoff = Duration::from_millis(100);
    // The newest assignment seen, across sessions: an older one (from a lagging node) is ignored.
    let mut generation = 0u64;
    while !shutdown.is_cancelled() {
        let url = &config.endpoints[turn % config.endpoints.len()];
        turn += 1;
        let (endpoint, channel) = match connections.discover(url, &config.cluster).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot reach {url}; trying another node");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let _ = channel_tx.send(Some(channel.clone()));
        let session = session(
            channel,
            &instance,
            runtime.as_ref(),
            config.heartbeat,
            &mut generation,
            &shutdown,
        )
        .await;
        if let Err(e) = session {
            tracing::warn!(error = %e, "session ended; reconnecting");
            connections.forget(&endpoint);
            let _ = channel_tx.send(None);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        } else {
            backoff = Duration::from_millis(100);
        }
    }
    Ok(())
}

/// One session with one node: heartbeats alongside the assignment stream.
async fn session(
    channel: Channel,
    instance: &InstanceRef,
    runtime: &dyn Runtime,
    heartbeat: Duration,
    generation: &mut u64,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut client = AgentServiceClient::new(channel);
    let ask = AssignmentsRequest {
        instance: instance.clone(),
        deltas: true,
    };
    let mut stream = client.assignments(request(&ask)).await?.into_inner();
    // The whole assignment, rebuilt from the stream's first one and the deltas after it.
    let mut current = Assignment::default();
    let mut beats = tokio::time::interval(heartbeat);
    // One update at a time; the assignments sent while it runs repeat its status.
    let updating = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = beats.tick() => {
                // A node that is gone (or cut off from the leader) does not answer: try another.
                let deadline = (heartbeat * 3).max(Duration::from_secs(1));
                match tokio::time::timeout(deadline, client.heartbeat(request(instance))).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(anyhow!("heartbeat: {e}")),
                    Err(_) => return Err(anyhow!("heartbeat: no answer within {deadline:?}")),
                }
            }
            message = stream.message() => {
                let Some(reply) = message? else { return Err(anyhow!("assignment stream closed")) };
                current.merge(serde_json::from_slice(&reply.payload)?);
                let assignment = &current;
                if assignment.generation < *generation {
                    continue;
                }
                *generation = assignment.generation;
                runtime.apply(assignment);
                // An update asked for, or one this agent began before it restarted: go on from
                // the step after the last one recorded.
                let from = assignment.agent_update.as_deref().and_then(update_steps_after);
                if let Some(from) = from.filter(|_| !updating.swap(true, std::sync::atomic::Ordering::SeqCst)) {
                    let (mut client, instance, updating) = (client.clone(), instance.clone(), updating.clone());
                    tokio::spawn(async move {
                        if let Err(e) = update(&mut client, &instance, from).await {
                            tracing::warn!(error = %e, "agent update interrupted; it resumes on the next assignment");
                        }
                        updating.store(false, std::sync::atomic::Ordering::SeqCst);
                    });
                }
            }
        }
    }
}

const UPDATE_STEPS: [&str; 4] = ["STAGING", "STAGED", "UPDATING", "UPDATED"];

/// Where an update in `status` goes on: the index of the next step, or `None` when there is
/// nothing to do (no update, or it ended UPDATED or FAILED).
fn update_steps_after(status: &str) -> Option<usize> {
    match status {
        "PENDING" => Some(0),
        other => UPDATE_STEPS[..3].iter().position(|s| *s == other).map(|i| i + 1),
    }
}

/// Goes through an update asked for by UpdateContainerAgent. The agent's code is this
/// build's: the update re-registers it at `AGENT_VERSION`, keeping its tasks running.
async fn update(client: &mut AgentServiceClient<Channel>, instance: &InstanceRef, from: usize) -> anyhow::Result<()> {
    for status in &UPDATE_STEPS[from..] {
        let status = *status;
        let progress = ecsd_protocol::messages::UpdateProgress {
            instance: instance.clone(),
            status: status.to_string(),
            version_info: (status == "UPDATED").then(|| json!({"agentVersion": AGENT_VERSION, "agentHash": "ecsd"})),
        };
        client.update_status(request(&progress)).await?;
        tracing::info!(instance = %instance.instance_id, status, "agent update");
    }
    Ok(())
}

/// Sends state changes in batches, retrying (they are idempotent) until they are acknowledged.
/// Most state changes in one report (a change is well under 1 KiB).
const MAX_REPORT_BATCH: usize = 1000;

async fn send_reports(
    mut rx: mpsc::UnboundedReceiver<StateChange>,
    mut channel: tokio::sync::watch::Receiver<Option<Channel>>,
    shutdown: CancellationToken,
) {
    while let Some(first) = tokio::select! {
        item = rx.recv() => item,
        _ = shutdown.cancelled() => None,
    } {
        // A batch stays well under gRPC's 4 MiB message limit: the rest goes in the next one.
        let mut batch = vec![first];
        while batch.len() < MAX_REPORT_BATCH {
            let Ok(more) = rx.try_recv() else { break };
            batch.push(more);
        }
        let report = Report { changes: batch };
        let mut backoff = Duration::from_millis(50);
        loop {
            let current = channel.borrow_and_update().clone();
            if let Some(ch) = current {
                let mut client = AgentServiceClient::new(ch);
                let call = tokio::time::timeout(Duration::from_secs(10), client.report(request(&report)));
                tokio::select! {
                    result = call => match result {
                        Ok(Ok(_)) => break,
                        Ok(Err(e)) => tracing::debug!(error = %e, "report failed; retrying"),
                        Err(_) => tracing::debug!("report timed out; retrying"),
                    },
                    // The session moved to another node: send there (reports are idempotent).
                    _ = channel.changed() => continue,
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = channel.changed() => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_update_resumes_after_its_last_step() {
        assert_eq!(update_steps_after("PENDING"), Some(0));
        assert_eq!(update_steps_after("STAGING"), Some(1));
        assert_eq!(update_steps_after("STAGED"), Some(2));
        assert_eq!(update_steps_after("UPDATING"), Some(3));
        assert_eq!(update_steps_after("UPDATED"), None);
        assert_eq!(update_steps_after("FAILED"), None);
    }
}
