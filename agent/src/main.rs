//! `ecs-agent`: runs on a container instance, registers it with an ecsd cluster, and runs the
//! tasks placed on it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use ecs_agent::client::{run_with, AgentConfig, RuntimeKind};
use ecs_agent::sim::SimSettings;
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "ecs-agent",
    version = ecs_agent::client::AGENT_VERSION,
    about = "Runs the tasks an ecsd cluster places on this instance"
)]
struct Args {
    /// ECS API endpoints of the cluster's nodes, comma-separated (tried in turn).
    #[arg(long, env = "ECS_AGENT_ENDPOINT", default_value = "http://127.0.0.1:8101")]
    endpoint: String,
    /// The cluster to join.
    #[arg(long, env = "ECS_CLUSTER", default_value = "default")]
    cluster: String,
    /// How containers run. `docker`: Docker containers through the local engine (production).
    /// `process`: each container is a local process. `sim`: simulated containers (see the
    /// --sim-* options), for benchmarks and fault tests.
    #[arg(long, default_value = "docker", value_parser = ["docker", "process", "sim"])]
    runtime: String,
    /// With `--runtime sim`: act as this many container instances.
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// With `--runtime sim`: milliseconds from assignment to RUNNING.
    #[arg(long, default_value_t = 0)]
    sim_start_ms: u64,
    /// With `--runtime sim`: milliseconds from RUNNING to exit (default: run until stopped).
    #[arg(long)]
    sim_run_ms: Option<u64>,
    /// With `--runtime sim`: the exit code of containers that exit by themselves.
    #[arg(long, default_value_t = 0)]
    sim_exit_code: i64,
    /// With `--runtime sim`: write every simulated start and stop to this file (JSON lines),
    /// for fault tests that check what ran where.
    #[arg(long)]
    sim_journal: Option<PathBuf>,
    /// CPU units to offer (default: 1024 per CPU of this host).
    #[arg(long)]
    cpu: Option<i64>,
    /// Memory to offer in MiB (default: this host's total).
    #[arg(long)]
    memory: Option<i64>,
    /// An instance attribute, `name` or `name=value`; repeatable.
    #[arg(long = "attribute")]
    attributes: Vec<String>,
    /// What capacity the instance offers. `ec2`: container instances for EC2 tasks. `fargate`:
    /// Fargate-style capacity, for tasks launched with launchType FARGATE or a FARGATE /
    /// FARGATE_SPOT capacity provider (each runs in its own network namespace).
    #[arg(long, default_value = "ec2", value_parser = ["ec2", "fargate"])]
    capacity: String,
    /// Where task logs go: `<dir>/<task id>/<container>.log`.
    #[arg(long, default_value = "ecs-agent-logs")]
    log_dir: PathBuf,
    /// Heartbeat interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// The agentVersion to register (UpdateContainerAgent updates agents older than ecsd's).
    #[arg(long, default_value = ecs_agent::client::AGENT_VERSION)]
    agent_version: String,
    /// The instance id reported as ec2InstanceId (default: made up once, and kept in
    /// --state-dir when one is given).
    #[arg(long)]
    instance_id: Option<String>,
    /// Where the agent keeps its instance id and container instance ARN, so that a restarted
    /// agent is the same container instance, with its tasks (as the ECS agent's ECS_DATADIR).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The cluster CA (PEM): with --cert-file and --key-file, the agent speaks TLS (https
    /// endpoints, and mutual TLS to the agent service).
    #[arg(long, env = "ECS_AGENT_CA_FILE", requires_all = ["cert_file", "key_file"])]
    ca_file: Option<PathBuf>,
    /// The agent's certificate (PEM, from `ecsd tls cert --agent NAME`).
    #[arg(long, env = "ECS_AGENT_CERT_FILE", requires = "ca_file")]
    cert_file: Option<PathBuf>,
    /// The agent's private key (PEM).
    #[arg(long, env = "ECS_AGENT_KEY_FILE", requires = "ca_file")]
    key_file: Option<PathBuf>,
    /// The region its API calls are signed for. Their key is the aws CLI's (AWS_ACCESS_KEY_ID
    /// and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE): one with the `agent` role
    /// (`ecsd keys create --role agent`). Without one, calls go unsigned.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
}

/// The given instance id; else the one kept in `state_dir`; else a new one (kept there).
fn instance_id(given: Option<String>, state_dir: Option<&std::path::Path>) -> anyhow::Result<String> {
    if let Some(id) = given {
        return Ok(id);
    }
    let file = state_dir.map(|d| d.join("instance-id"));
    if let Some(kept) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        if !kept.trim().is_empty() {
            return Ok(kept.trim().to_string());
        }
    }
    let id = format!("i-{}", &uuid::Uuid::new_v4().simple().to_string()[..17]);
    if let Some(file) = file {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&file, &id)?;
    }
    Ok(id)
}

fn host_memory_mib() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<i64>().ok())
        })
        .map_or(1024, |kb| kb / 1024)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ecs_agent::init_logging();
    let args = Args::parse();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let mut attributes = vec![("ecs.os-type".to_string(), Some("linux".to_string()))];
    if args.capacity == "fargate" {
        attributes.push((
            ecs_agent::client::CAPACITY_ATTRIBUTE.to_string(),
            Some("fargate".to_string()),
        ));
    }
    for a in &args.attributes {
        match a.split_once('=') {
            Some((name, value)) => attributes.push((name.to_string(), Some(value.to_string()))),
            None => attributes.push((a.clone(), None)),
        }
    }
    let runtime = match args.runtime.as_str() {
        "sim" => RuntimeKind::Sim(SimSettings {
            start: Duration::from_millis(args.sim_start_ms),
            run: args.sim_run_ms.map(Duration::from_millis),
            exit_code: args.sim_exit_code,
            journal: args
                .sim_journal
                .as_deref()
                .map(ecs_agent::sim::Journal::open)
                .transpose()?,
        }),
        "docker" => RuntimeKind::Docker(
            ecs_agent::docker::connect()
                .await
                .map_err(|e| anyhow::anyhow!("the docker runtime needs a reachable Docker Engine: {e}"))?,
        ),
        _ => RuntimeKind::Process,
    };
    if args.instances != 1 && !matches!(runtime, RuntimeKind::Sim(_)) {
        anyhow::bail!("--instances is for --runtime sim; other runtimes are one instance per host");
    }
    let config = AgentConfig {
        endpoints: args.endpoint.split(',').map(|e| e.trim().to_string()).collect(),
        cluster: args.cluster,
        cpu: args.cpu.unwrap_or(cpus * 1024),
        memory: args.memory.unwrap_or_else(host_memory_mib),
        attributes,
        log_dir: args.log_dir,
        heartbeat: Duration::from_millis(args.heartbeat_ms.max(100)),
        ec2_instance_id: instance_id(args.instance_id.clone(), args.state_dir.as_deref())?,
        runtime,
        agent_version: args.agent_version,
        state_dir: args.state_dir.clone(),
    };
    let tls = match (&args.ca_file, &args.cert_file, &args.key_file) {
        (Some(ca), Some(cert), Some(key)) => Some(ecs_agent::client::AgentTls::read(ca, cert, key)?),
        _ => None,
    };
    let signer = ecsd_protocol::sigv4::Credentials::from_env(|k| std::env::var(k).ok())
        .map(|c| ecsd_protocol::sigv4::Signer::new(c, &args.region));
    let connections = ecs_agent::client::Connections::secured(signer, tls.as_ref())?;
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        stop.cancel();
    });
    if args.instances == 1 {
        return run_with(config, connections, shutdown).await;
    }
    let mut agents = Vec::new();
    for k in 0..args.instances {
        let mut one = config.clone();
        one.ec2_instance_id = format!("{}-{k}", config.ec2_instance_id);
        // Spread the sessions over the nodes.
        let n = one.endpoints.len();
        one.endpoints.rotate_left(k % n);
        agents.push(tokio::spawn(run_with(one, connections.clone(), shutdown.clone())));
    }
    for agent in agents {
        agent.await??;
    }
    Ok(())
}
