//! The `ecsd` binary: run a node, run a local dev cluster, or administer a cluster.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use ecsd::config::NodeConfig;
use ecsd::node::{Listeners, Node};

/// jemalloc, not the system allocator: glibc's per-thread arenas kept the memory of large
/// transient buffers (snapshot builds, big log entries) resident, several GiB per node with a
/// million tasks in state (BENCHMARKS.md, "Resident memory").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The configs of the local 3-node cluster, embedded so `ecsd dev` needs no files.
const LOCAL_CONFIGS: [&str; 3] = [
    include_str!("../../cluster-config/local/node-1.toml"),
    include_str!("../../cluster-config/local/node-2.toml"),
    include_str!("../../cluster-config/local/node-3.toml"),
];

#[derive(Parser)]
#[command(
    name = "ecsd",
    version,
    about = "A highly available control plane that speaks the Amazon ECS API"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run one node from a config file.
    Serve {
        /// The node's TOML config (see cluster-config/template.toml).
        #[arg(long)]
        config: PathBuf,
        /// Overrides the config's data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Run the local 3-node cluster in one process (API on 127.0.0.1:8101-8103).
    Dev {
        /// Where the nodes keep their data (node-1, node-2, node-3 below it).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Do not start the three local agents (process runtime) in the default cluster.
        #[arg(long)]
        no_agents: bool,
    },
    /// Inspect or change a running cluster.
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
    },
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Print the leader, term and every member's role and log positions as JSON.
    Status {
        /// API endpoint of any member, e.g. http://127.0.0.1:8101.
        #[arg(long)]
        endpoint: String,
    },
    /// Add a node: as a learner first, promoted to voter once it has caught up.
    AddNode {
        #[arg(long)]
        endpoint: String,
        /// The new node's id (never reuse an id that had other data).
        #[arg(long)]
        id: u64,
        /// The new node's API address (host:port).
        #[arg(long)]
        api_addr: String,
        /// The new node's Raft gRPC address (host:port).
        #[arg(long)]
        raft_addr: String,
    },
    /// Remove a node from the membership.
    RemoveNode {
        #[arg(long)]
        endpoint: String,
        #[arg(long)]
        id: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Serve { config, data_dir } => {
            ecsd::telemetry::init();
            let mut config = NodeConfig::load_file(&config)?;
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            let listeners = Listeners::bind(&config).await?;
            let node = Node::start(config, listeners, Vec::new()).await?;
            wait_for_signal().await;
            node.shutdown().await;
            Ok(())
        }
        Cmd::Dev { data_dir, no_agents } => dev(data_dir, no_agents).await,
        Cmd::Cluster { command } => cluster(command).await,
    }
}

async fn dev(data_dir: PathBuf, no_agents: bool) -> anyhow::Result<()> {
    ecsd::telemetry::init();
    let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("ECSD_")).collect();
    let mut nodes = Vec::new();
    for (i, text) in LOCAL_CONFIGS.iter().enumerate() {
        let mut config = NodeConfig::load(text, &env).with_context(|| format!("embedded config of node {}", i + 1))?;
        config.data_dir = data_dir.join(format!("node-{}", i + 1));
        let listeners = Listeners::bind(&config).await?;
        nodes.push(Node::start(config, listeners, Vec::new()).await?);
    }
    // Three local agents in the default cluster, one per availability zone: the docker runtime
    // when an engine answers, else the process runtime.
    let agents = tokio_util::sync::CancellationToken::new();
    let runtime = match ecs_agent::docker::connect().await {
        Ok(docker) => ecs_agent::client::RuntimeKind::Docker(docker),
        Err(e) => {
            tracing::info!(error = %e, "no Docker Engine reachable; local agents use the process runtime");
            ecs_agent::client::RuntimeKind::Process
        }
    };
    if !no_agents {
        let endpoints: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.api_addr)).collect();
        for (i, zone) in ["us-east-1a", "us-east-1b", "us-east-1c"].iter().enumerate() {
            let config = ecs_agent::client::AgentConfig {
                endpoints: endpoints
                    .iter()
                    .cycle()
                    .skip(i)
                    .take(endpoints.len())
                    .cloned()
                    .collect(),
                cluster: "default".into(),
                cpu: 1024,
                memory: 2048,
                attributes: vec![
                    ("ecs.availability-zone".into(), Some(zone.to_string())),
                    ("ecs.os-type".into(), Some("linux".into())),
                ],
                log_dir: data_dir.join("agent-logs"),
                heartbeat: std::time::Duration::from_secs(1),
                ec2_instance_id: format!("i-dev{}", i + 1),
                runtime: runtime.clone(),
                agent_version: ecs_agent::client::AGENT_VERSION.to_string(),
                // Restarting `ecsd dev` on the same data keeps the same three instances.
                state_dir: Some(data_dir.join("agent-state")),
            };
            let token = agents.clone();
            tokio::spawn(async move {
                if let Err(e) = ecs_agent::client::run(config, token).await {
                    tracing::warn!(error = %e, "local agent stopped");
                }
            });
        }
    }
    println!();
    println!("ecsd: local 3-node cluster is up (data under {})", data_dir.display());
    for node in &nodes {
        println!(
            "  node {}: ECS API http://{}  raft {}",
            node.config.node_id, node.api_addr, node.raft_addr
        );
    }
    println!();
    println!("Try it (any node accepts requests):");
    println!("  aws ecs create-cluster --cluster-name demo --endpoint-url http://127.0.0.1:8102 --region us-east-1");
    println!("  aws ecs list-clusters --endpoint-url http://127.0.0.1:8103 --region us-east-1");
    if !no_agents {
        println!(
            "Three local agents ({runtime:?} runtime; process-runtime logs under {}) joined the default cluster:",
            data_dir.join("agent-logs").display()
        );
        println!("  aws ecs register-task-definition --family hello --endpoint-url http://127.0.0.1:8101 --region us-east-1 \\");
        println!("    --container-definitions '[{{\"name\":\"main\",\"image\":\"ecsd-busybox:latest\",\"memory\":64,\"command\":[\"sh\",\"-c\",\"echo hello; exit 3\"]}}]'");
        println!("  aws ecs run-task --task-definition hello --count 10 --endpoint-url http://127.0.0.1:8102 --region us-east-1");
    }
    println!("  cargo run -- cluster status --endpoint http://127.0.0.1:8101");
    println!("(the aws CLI needs some credentials, e.g. AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x)");
    println!("Press Ctrl-C to stop.");
    wait_for_signal().await;
    println!("ecsd: stopping");
    agents.cancel();
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn cluster(command: ClusterCmd) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let (response, endpoint) = match command {
        ClusterCmd::Status { endpoint } => (
            client.get(format!("{}/cluster/status", base(&endpoint))).send().await,
            endpoint,
        ),
        ClusterCmd::AddNode {
            endpoint,
            id,
            api_addr,
            raft_addr,
        } => {
            let body = serde_json::json!({ "id": id, "api_addr": api_addr, "raft_addr": raft_addr });
            (
                client
                    .post(format!("{}/cluster/add-node", base(&endpoint)))
                    .json(&body)
                    .send()
                    .await,
                endpoint,
            )
        }
        ClusterCmd::RemoveNode { endpoint, id } => {
            let body = serde_json::json!({ "id": id });
            (
                client
                    .post(format!("{}/cluster/remove-node", base(&endpoint)))
                    .json(&body)
                    .send()
                    .await,
                endpoint,
            )
        }
    };
    let response = response.with_context(|| format!("reach {endpoint}"))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.context("read response")?;
    println!("{}", serde_json::to_string_pretty(&body)?);
    if !status.is_success() {
        bail!("{endpoint} answered {status}");
    }
    Ok(())
}

fn base(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    }
}
