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
    /// How `serve` and `dev` write their logs: text, or json (one object per line).
    #[arg(long, global = true, env = "ECSD_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
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
        /// Join an existing cluster as a new member (then `ecsd cluster add-node`): needed to
        /// start on an empty data directory without founding a cluster.
        #[arg(long)]
        join: bool,
    },
    /// Run the local 3-node cluster in one process (API on 127.0.0.1:8101-8103).
    Dev {
        /// Where the nodes keep their data (node-1, node-2, node-3 below it).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Do not start the three local agents (process runtime) in the default cluster.
        #[arg(long)]
        no_agents: bool,
        /// Turn everything on locally: HTTPS and mutual TLS (certificates under
        /// <data-dir>/tls), SigV4 (an operator key in <data-dir>/aws-credentials, profile ecsd).
        #[arg(long)]
        secure: bool,
    },
    /// Inspect or change a running cluster. Requests are signed with the aws CLI's credentials
    /// (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE in the shared file).
    Cluster {
        #[command(subcommand)]
        command: ClusterCmd,
    },
    /// Create, list and revoke access keys (needs an admin key).
    Keys {
        #[command(subcommand)]
        command: KeysCmd,
    },
    /// Back up a cluster's state, inspect a backup, or make a new cluster's data from one.
    Snapshot {
        #[command(subcommand)]
        command: SnapshotCmd,
    },
    /// Make the cluster's CA and its nodes', agents' and clients' certificates.
    Tls {
        #[command(subcommand)]
        command: TlsCmd,
    },
}

#[derive(Subcommand)]
enum TlsCmd {
    /// Create a CA: <dir>/ca.pem and <dir>/ca-key.pem (keep the key offline).
    Ca {
        #[arg(long, default_value = "tls")]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 1825)]
        days: u32,
    },
    /// Create a certificate signed by the CA in <dir>: <dir>/<who>.pem and <dir>/<who>-key.pem.
    #[command(group(clap::ArgGroup::new("who").required(true).args(["node", "agent", "client"])))]
    Cert {
        #[arg(long, default_value = "tls")]
        dir: PathBuf,
        /// A node, by its id: it serves the API and the node-to-node port.
        #[arg(long)]
        node: Option<u64>,
        /// An agent (use the same name for its access key).
        #[arg(long)]
        agent: Option<String>,
        /// An operator's tool.
        #[arg(long)]
        client: Option<String>,
        /// A DNS name or IP address the node is reached at (repeatable; a node's certificate
        /// always has localhost and 127.0.0.1).
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// Where an admin command sends its request, and how it trusts and signs it.
#[derive(clap::Args)]
struct Target {
    /// API endpoint of any member, e.g. https://127.0.0.1:8101.
    #[arg(long)]
    endpoint: String,
    /// The CA certificate (PEM) that an https endpoint's certificate chains to.
    #[arg(long, env = "AWS_CA_BUNDLE")]
    ca_bundle: Option<PathBuf>,
    /// The region of the signature's credential scope.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
}

impl Target {
    /// The endpoint's base URL, a client that trusts the CA bundle (requests bounded by
    /// `timeout`, see [`http_client`]), and a signer when credentials are set in the
    /// environment.
    fn connect(
        &self,
        timeout: Option<std::time::Duration>,
    ) -> anyhow::Result<(String, reqwest::Client, Option<ecsd_protocol::sigv4::Signer>)> {
        let ca = match &self.ca_bundle {
            Some(file) => Some(std::fs::read(file).with_context(|| format!("read {}", file.display()))?),
            None => None,
        };
        let client = http_client(ca.as_deref(), timeout)?;
        let signer = ecsd_protocol::sigv4::Credentials::from_env(|k| std::env::var(k).ok())
            .map(|c| ecsd_protocol::sigv4::Signer::new(c, &self.region));
        Ok((base(&self.endpoint), client, signer))
    }
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Print the leader, term and every member's role and log positions as JSON.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Add a node: as a learner first, promoted to voter once it has caught up.
    AddNode {
        #[command(flatten)]
        target: Target,
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
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        id: u64,
    },
}

#[derive(Subcommand)]
enum SnapshotCmd {
    /// Save a backup of the cluster's state to FILE: every write acknowledged before the call,
    /// streamed from the endpoint's node and checked against its SHA-256 (needs an admin key).
    Save {
        file: PathBuf,
        #[command(flatten)]
        target: Target,
    },
    /// Verify a backup's checksum; print its log index and term, membership and contents.
    Inspect {
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make the data directory of one member of a new cluster from a backup. Run it for each
    /// member, with that member's config (its `initial_members` list the new cluster), then
    /// start the members with `ecsd serve`.
    Restore {
        file: PathBuf,
        /// The new member's config.
        #[arg(long)]
        config: PathBuf,
        /// Overrides the config's data_dir; it must not hold a node's data.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum KeysCmd {
    /// Create an access key; prints its id and secret (the only time the secret is shown).
    Create {
        #[command(flatten)]
        target: Target,
        /// The key's name, unique in the cluster (its principal is `user/<name>`).
        #[arg(long)]
        name: String,
        /// admin, operator, read-only or agent.
        #[arg(long)]
        role: String,
    },
    /// List the access keys (without their secrets).
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Revoke an access key, by name or access key id.
    Revoke {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        name: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let log_format = match cli.log_format.as_str() {
        "json" => ecsd::telemetry::LogFormat::Json,
        _ => ecsd::telemetry::LogFormat::Text,
    };
    match cli.command {
        Cmd::Serve { config, data_dir, join } => {
            let mut config = NodeConfig::load_file(&config)?;
            ecsd::telemetry::init(log_format, Some(config.node_id));
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            config.join |= join;
            let listeners = Listeners::bind(&config).await?;
            let node = Node::start(config, listeners, Vec::new()).await?;
            // Under systemd (`Type=notify`): the node serves. Elsewhere NOTIFY_SOCKET is unset
            // and this does nothing.
            if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
                tracing::debug!(error = %e, "sd_notify READY=1 failed");
            }
            tokio::select! {
                _ = wait_for_signal() => {
                    force_exit_on_second_signal();
                    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                    node.shutdown().await;
                    Ok(())
                }
                reason = node.failed() => {
                    tracing::error!(
                        %reason,
                        "raft stopped on an unrecoverable error: exiting non-zero, for the supervisor to restart this node"
                    );
                    force_exit_on_second_signal();
                    node.shutdown().await;
                    bail!("raft stopped: {reason}")
                }
            }
        }
        Cmd::Dev {
            data_dir,
            no_agents,
            secure,
        } => {
            ecsd::telemetry::init(log_format, None);
            dev(data_dir, no_agents, secure).await
        }
        Cmd::Cluster { command } => cluster(command).await,
        Cmd::Keys { command } => keys(command).await,
        Cmd::Snapshot { command } => snapshot(command).await,
        Cmd::Tls { command } => tls(command),
    }
}

/// What `ecsd dev --secure` keeps under its data dir: the CA and certificates (`tls/`), the
/// root key (`root-credentials`), and the keys it makes with it (`aws-credentials`, profile
/// `ecsd`, an operator; `agent-credentials`, the local agents').
struct DevSecurity {
    dir: PathBuf,
    root: ecsd_protocol::sigv4::Credentials,
}

/// The name of the local agents' key and certificate.
const DEV_AGENT: &str = "local-agents";

impl DevSecurity {
    /// Makes what is missing: the CA, the three nodes' and the agents' certificates, the root key.
    fn prepare(data_dir: &std::path::Path) -> anyhow::Result<DevSecurity> {
        let dir = data_dir.to_path_buf();
        let tls = dir.join("tls");
        if !tls.join("ca.pem").exists() {
            write_pair(&tls, "ca", &ecsd::tls::make_ca(1825).map_err(anyhow::Error::msg)?)?;
        }
        let ca = read_ca(&tls)?;
        let mut identities: Vec<ecsd::tls::Identity> = (1..=3).map(ecsd::tls::Identity::Node).collect();
        identities.push(ecsd::tls::Identity::Agent(DEV_AGENT.into()));
        for who in identities {
            if !tls.join(format!("{}.pem", who.stem())).exists() {
                let pem = ecsd::tls::make_cert(&ca, &who, &[], 365).map_err(anyhow::Error::msg)?;
                write_pair(&tls, &who.stem(), &pem)?;
            }
        }
        let root_file = dir.join("root-credentials");
        let root = match std::fs::read_to_string(&root_file) {
            Ok(text) => ecsd_protocol::sigv4::Credentials::from_profile(&text, "root")
                .with_context(|| format!("{}: no [root] key", root_file.display()))?,
            Err(_) => {
                let (id, secret) = ecsd::stamp::fresh_access_key();
                let root = ecsd_protocol::sigv4::Credentials::new(id, secret);
                std::fs::create_dir_all(&dir)?;
                write_secret(&root_file, root.to_profile("root").as_bytes())?;
                root
            }
        };
        Ok(DevSecurity { dir, root })
    }

    /// Secures node `id`'s config.
    fn apply(&self, config: &mut NodeConfig, id: u64) {
        let tls = self.dir.join("tls");
        config.auth = ecsd::config::AuthConfig {
            enabled: true,
            root_access_key_id: Some(self.root.access_key_id.clone()),
            root_secret_access_key: Some(self.root.secret_access_key.clone()),
        };
        config.tls = ecsd::config::TlsConfig {
            ca_file: Some(tls.join("ca.pem")),
            cert_file: Some(tls.join(format!("node-{id}.pem"))),
            key_file: Some(tls.join(format!("node-{id}-key.pem"))),
        };
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.join("tls").join("ca.pem")
    }

    /// The key of `file` (profile `profile`), made with the root key through `endpoint` when
    /// the file does not have it yet.
    async fn key(
        &self,
        endpoint: &str,
        file: &str,
        profile: &str,
        name: &str,
        role: &str,
    ) -> anyhow::Result<ecsd_protocol::sigv4::Credentials> {
        let path = self.dir.join(file);
        if let Some(kept) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| ecsd_protocol::sigv4::Credentials::from_profile(&text, profile))
        {
            return Ok(kept);
        }
        let client = http_client(
            Some(&std::fs::read(self.ca_file())?),
            Some(std::time::Duration::from_secs(30)),
        )?;
        let root = ecsd_protocol::sigv4::Signer::new(self.root.clone(), ecsd_protocol::secure::REGION);
        let create = serde_json::json!({ "name": name, "role": role });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let url = format!("{endpoint}/cluster/keys/create");
            let answer = admin_request(&client, Some(&root), &url, Some(create.clone())).await;
            match answer {
                Ok((status, text)) if status.is_success() => {
                    let key: serde_json::Value = serde_json::from_str(&text)?;
                    let credentials = ecsd_protocol::sigv4::Credentials::new(
                        key["accessKeyId"].as_str().context("no accessKeyId")?,
                        key["secretAccessKey"].as_str().context("no secretAccessKey")?,
                    );
                    write_secret(&path, credentials.to_profile(profile).as_bytes())?;
                    return Ok(credentials);
                }
                // Made by an earlier run whose file is gone: make it anew.
                Ok((_, text)) if text.contains("of that name exists") => {
                    let url = format!("{endpoint}/cluster/keys/revoke");
                    let revoke = serde_json::json!({ "name": name });
                    admin_request(&client, Some(&root), &url, Some(revoke)).await?;
                }
                other if std::time::Instant::now() > deadline => bail!("could not create the {name} key: {other:?}"),
                _ => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    }
}

async fn dev(data_dir: PathBuf, no_agents: bool, secure: bool) -> anyhow::Result<()> {
    let env: BTreeMap<String, String> = std::env::vars().filter(|(k, _)| k.starts_with("ECSD_")).collect();
    let security = secure.then(|| DevSecurity::prepare(&data_dir)).transpose()?;
    let mut starts = Vec::new();
    for (i, text) in LOCAL_CONFIGS.iter().enumerate() {
        let mut config = NodeConfig::load(text, &env).with_context(|| format!("embedded config of node {}", i + 1))?;
        config.data_dir = data_dir.join(format!("node-{}", i + 1));
        if let Some(security) = &security {
            let id = config.node_id;
            security.apply(&mut config, id);
        }
        let listeners = Listeners::bind(&config).await?;
        starts.push(Node::start(config, listeners, Vec::new()));
    }
    // All three at once, as separate machines would: each asks the others' status first.
    let nodes = futures::future::try_join_all(starts).await?;
    let scheme = if secure { "https" } else { "http" };
    let endpoints: Vec<String> = nodes.iter().map(|n| format!("{scheme}://{}", n.api_addr)).collect();
    let mut connections = ecs_agent::client::Connections::default();
    if let Some(security) = &security {
        security
            .key(&endpoints[0], "aws-credentials", "ecsd", "ecsd", "operator")
            .await?;
        let agent_key = security
            .key(&endpoints[0], "agent-credentials", "agent", DEV_AGENT, "agent")
            .await?;
        let tls = data_dir.join("tls");
        let agent_tls = ecs_agent::client::AgentTls::read(
            &security.ca_file(),
            &tls.join(format!("agent-{DEV_AGENT}.pem")),
            &tls.join(format!("agent-{DEV_AGENT}-key.pem")),
        )?;
        let signer = ecsd_protocol::sigv4::Signer::new(agent_key, ecsd_protocol::secure::REGION);
        connections = ecs_agent::client::Connections::secured(Some(signer), Some(&agent_tls))?;
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
        // Three EC2 instances, one per zone, and one agent that offers Fargate capacity.
        let agents_to_start = [
            ("us-east-1a", false),
            ("us-east-1b", false),
            ("us-east-1c", false),
            ("us-east-1a", true),
        ];
        for (i, (zone, fargate)) in agents_to_start.into_iter().enumerate() {
            let mut attributes = vec![
                ("ecs.availability-zone".into(), Some(zone.to_string())),
                ("ecs.os-type".into(), Some("linux".into())),
            ];
            if fargate {
                attributes.push((ecs_agent::client::CAPACITY_ATTRIBUTE.into(), Some("fargate".into())));
            }
            let config = ecs_agent::client::AgentConfig {
                endpoints: endpoints
                    .iter()
                    .cycle()
                    .skip(i)
                    .take(endpoints.len())
                    .cloned()
                    .collect(),
                cluster: "default".into(),
                cpu: if fargate { 4096 } else { 1024 },
                memory: if fargate { 8192 } else { 2048 },
                attributes,
                log_dir: data_dir.join("agent-logs"),
                heartbeat: std::time::Duration::from_secs(1),
                ec2_instance_id: if fargate {
                    "i-dev-fargate".to_string()
                } else {
                    format!("i-dev{}", i + 1)
                },
                runtime: runtime.clone(),
                agent_version: ecs_agent::client::AGENT_VERSION.to_string(),
                // Restarting `ecsd dev` on the same data keeps the same three instances.
                state_dir: Some(data_dir.join("agent-state")),
            };
            let token = agents.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                if let Err(e) = ecs_agent::client::run_with(config, connections, token).await {
                    tracing::warn!(error = %e, "local agent stopped");
                }
            });
        }
    }
    println!();
    println!("ecsd: local 3-node cluster is up (data under {})", data_dir.display());
    for node in &nodes {
        println!(
            "  node {}: ECS API {scheme}://{}  raft {}",
            node.config.node_id, node.api_addr, node.raft_addr
        );
    }
    println!();
    let (aws, admin) = if secure {
        let d = data_dir.display();
        println!("Secured: HTTPS and mutual TLS (certificates in {d}/tls), and every request signed (SigV4).");
        println!("An operator key is in {d}/aws-credentials (profile ecsd); the root key in {d}/root-credentials.");
        (
            format!("AWS_SHARED_CREDENTIALS_FILE={d}/aws-credentials AWS_PROFILE=ecsd aws ecs"),
            format!("--ca-bundle {d}/tls/ca.pem --region us-east-1"),
        )
    } else {
        println!("Open: plain HTTP and no authentication, on 127.0.0.1 only (`ecsd dev --secure` turns both on).");
        (
            "AWS_ACCESS_KEY_ID=x AWS_SECRET_ACCESS_KEY=x aws ecs".to_string(),
            "--region us-east-1".to_string(),
        )
    };
    let url = |i: usize| format!("{scheme}://127.0.0.1:810{i}");
    println!("Try it (any node accepts requests):");
    println!(
        "  {aws} create-cluster --cluster-name demo --endpoint-url {} {admin}",
        url(2)
    );
    println!("  {aws} list-clusters --endpoint-url {} {admin}", url(3));
    if !no_agents {
        println!(
            "Four local agents ({runtime:?} runtime; process-runtime logs under {}) joined the default cluster: three EC2 instances and one that offers Fargate capacity:",
            data_dir.join("agent-logs").display()
        );
        println!(
            "  {aws} register-task-definition --family hello --endpoint-url {} {admin} \\",
            url(1)
        );
        println!("    --container-definitions '[{{\"name\":\"main\",\"image\":\"ecsd-busybox:latest\",\"memory\":64,\"command\":[\"sh\",\"-c\",\"echo hello; exit 3\"]}}]'");
        println!(
            "  {aws} run-task --task-definition hello --count 10 --endpoint-url {} {admin}",
            url(2)
        );
    }
    if secure {
        let d = data_dir.display();
        println!(
            "  AWS_SHARED_CREDENTIALS_FILE={d}/root-credentials AWS_PROFILE=root cargo run -- cluster status --endpoint {} --ca-bundle {d}/tls/ca.pem",
            url(1)
        );
    } else {
        println!("  cargo run -- cluster status --endpoint {}", url(1));
    }
    println!("Press Ctrl-C to stop.");
    wait_for_signal().await;
    force_exit_on_second_signal();
    println!("ecsd: stopping (a second Ctrl-C exits at once)");
    agents.cancel();
    for node in nodes {
        node.shutdown().await;
    }
    Ok(())
}

/// From now on, SIGINT or SIGTERM exits at once: a shutdown that hangs is not waited out.
fn force_exit_on_second_signal() {
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("a second signal: exiting without finishing the shutdown");
        std::process::exit(130);
    });
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
    let (target, path, body) = match command {
        ClusterCmd::Status { target } => (target, "/cluster/status", None),
        ClusterCmd::AddNode {
            target,
            id,
            api_addr,
            raft_addr,
        } => {
            let body = serde_json::json!({ "id": id, "api_addr": api_addr, "raft_addr": raft_addr });
            (target, "/cluster/add-node", Some(body))
        }
        ClusterCmd::RemoveNode { target, id } => {
            (target, "/cluster/remove-node", Some(serde_json::json!({ "id": id })))
        }
    };
    admin_call(&target, path, body).await
}

async fn keys(command: KeysCmd) -> anyhow::Result<()> {
    let (target, path, body) = match command {
        KeysCmd::Create { target, name, role } => {
            let body = serde_json::json!({ "name": name, "role": role });
            (target, "/cluster/keys/create", Some(body))
        }
        KeysCmd::List { target } => (target, "/cluster/keys", None),
        KeysCmd::Revoke { target, name } => (
            target,
            "/cluster/keys/revoke",
            Some(serde_json::json!({ "name": name })),
        ),
    };
    admin_call(&target, path, body).await
}

async fn snapshot(command: SnapshotCmd) -> anyhow::Result<()> {
    match command {
        SnapshotCmd::Save { file, target } => {
            let summary = save_snapshot(&file, &target).await?;
            println!("{}", describe_backup(&summary));
            println!("saved {}", file.display());
        }
        SnapshotCmd::Inspect { file, json } => {
            let summary = ecsd::raft::backup::inspect(&file).with_context(|| format!("inspect {}", file.display()))?;
            match json {
                true => println!("{}", serde_json::to_string_pretty(&summary)?),
                false => println!("{}", describe_backup(&summary)),
            }
        }
        SnapshotCmd::Restore { file, config, data_dir } => {
            let mut config = NodeConfig::load_file(&config)?;
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            if config.initial_members.is_empty() {
                bail!("the config's initial_members must list the new cluster's members (this node among them)");
            }
            let members = config
                .initial_members
                .iter()
                .map(|m| {
                    let info = ecsd::raft::NodeInfo {
                        rpc_addr: m.raft_addr.clone(),
                        api_addr: m.api_addr.clone(),
                    };
                    (m.id, info)
                })
                .collect();
            let summary = ecsd::raft::backup::restore(&file, &config.data_dir, config.node_id, &members)
                .await
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("restore {} into {}", file.display(), config.data_dir.display()))?;
            println!("{}", describe_backup(&summary));
            println!(
                "restored node {} into {}; start every member of the new cluster with `ecsd serve`",
                config.node_id,
                config.data_dir.display()
            );
        }
    }
    Ok(())
}

/// Streams a backup from `target` into `file` (through `<file>.part`, renamed once its
/// checksum matches the one the node sent), with mode 0600: it holds every access key.
async fn save_snapshot(file: &std::path::Path, target: &Target) -> anyhow::Result<ecsd::raft::backup::Summary> {
    use tokio::io::AsyncWriteExt;
    let (endpoint, client, signer) = target.connect(None)?;
    let request = client.get(format!("{endpoint}/cluster/snapshot"));
    let mut response = ecsd_protocol::ecs::execute(request, signer.as_ref())
        .await
        .with_context(|| format!("reach {endpoint}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        bail!("{endpoint} answered {status}: {text}");
    }
    let expected = response
        .headers()
        .get(ecsd::api::BACKUP_SHA256_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .context("the answer has no checksum header")?;
    let part = file.with_extension("part");
    let _ = std::fs::remove_file(&part);
    let received = async {
        let mut options = tokio::fs::OpenOptions::new();
        options.write(true).create_new(true).mode(0o600);
        let mut out = options
            .open(&part)
            .await
            .with_context(|| format!("create {}", part.display()))?;
        while let Some(chunk) = response.chunk().await.context("the stream broke off")? {
            out.write_all(&chunk).await?;
        }
        out.sync_all().await?;
        drop(out);
        let summary = ecsd::raft::backup::inspect(&part).with_context(|| format!("check {}", part.display()))?;
        if summary.sha256 != expected {
            bail!(
                "{}: checksum {} is not the node's {expected}",
                part.display(),
                summary.sha256
            );
        }
        std::fs::rename(&part, file).with_context(|| format!("rename to {}", file.display()))?;
        Ok(summary)
    }
    .await;
    if received.is_err() {
        // It holds every access key: no partial copy is left behind.
        let _ = std::fs::remove_file(&part);
    }
    received
}

/// A backup's summary as `ecsd snapshot inspect` prints it.
fn describe_backup(summary: &ecsd::raft::backup::Summary) -> String {
    let mut lines = vec![
        format!("sha256:               {}", summary.sha256),
        format!("size:                 {} bytes, {} rows", summary.bytes, summary.rows),
        format!(
            "log:                  index {}, term {}",
            summary.index.unwrap_or(0),
            summary.term.unwrap_or(0)
        ),
        format!(
            "cluster id:           {}",
            summary.cluster_id.as_deref().unwrap_or("(none)")
        ),
    ];
    for (id, info) in &summary.members {
        let role = if summary.voters.contains(id) {
            "voter"
        } else {
            "learner"
        };
        lines.push(format!(
            "member {id}:             {role}, api {}, raft {}",
            info.api_addr, info.rpc_addr
        ));
    }
    for kind in [
        "clusters",
        "services",
        "tasks",
        "container_instances",
        "task_definitions",
        "access_keys",
    ] {
        lines.push(format!(
            "{:<22}{}",
            format!("{kind}:"),
            summary.counts.get(kind).copied().unwrap_or(0)
        ));
    }
    lines.join("\n")
}

/// Sends one admin request, signed when credentials are set, and prints the answer.
async fn admin_call(target: &Target, path: &str, body: Option<serde_json::Value>) -> anyhow::Result<()> {
    let (endpoint, client, signer) = target.connect(Some(std::time::Duration::from_secs(30)))?;
    let (status, text) = admin_request(&client, signer.as_ref(), &format!("{endpoint}{path}"), body)
        .await
        .with_context(|| format!("reach {endpoint}"))?;
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(body) => println!("{}", serde_json::to_string_pretty(&body)?),
        Err(_) => println!("{text}"),
    }
    if !status.is_success() {
        bail!("{endpoint} answered {status}");
    }
    Ok(())
}

/// An HTTP client that trusts `ca` (PEM) besides nothing else, when given; each request bounded
/// by `timeout`, or (for a stream of any length) each read by 60 s.
fn http_client(ca: Option<&[u8]>, timeout: Option<std::time::Duration>) -> anyhow::Result<reqwest::Client> {
    let mut client = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
    client = match timeout {
        Some(t) => client.timeout(t),
        None => client.read_timeout(std::time::Duration::from_secs(60)),
    };
    if let Some(pem) = ca {
        let ca = reqwest::Certificate::from_pem(pem).context("the CA bundle is not a PEM certificate")?;
        client = client.add_root_certificate(ca);
    }
    Ok(client.build()?)
}

/// One admin request (`GET` without a body, else `POST` of JSON), signed by `signer`: the
/// answer's status and text.
async fn admin_request(
    client: &reqwest::Client,
    signer: Option<&ecsd_protocol::sigv4::Signer>,
    url: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<(reqwest::StatusCode, String)> {
    let request = match body {
        Some(body) => client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string()),
        None => client.get(url),
    };
    let response = ecsd_protocol::ecs::execute(request, signer).await?;
    let status = response.status();
    Ok((status, response.text().await?))
}

fn tls(command: TlsCmd) -> anyhow::Result<()> {
    match command {
        TlsCmd::Ca { dir, days } => {
            let ca = ecsd::tls::make_ca(days).map_err(anyhow::Error::msg)?;
            write_pair(&dir, "ca", &ca)?;
            println!("wrote {0}/ca.pem and {0}/ca-key.pem", dir.display());
        }
        TlsCmd::Cert {
            dir,
            node,
            agent,
            client,
            hosts,
            days,
        } => {
            let who = match (node, agent, client) {
                (Some(id), _, _) if id > 0 => ecsd::tls::Identity::Node(id),
                (Some(_), _, _) => bail!("--node: must be at least 1"),
                (_, Some(name), _) => ecsd::tls::Identity::Agent(name),
                (_, _, Some(name)) => ecsd::tls::Identity::Client(name),
                _ => bail!("one of --node, --agent or --client is required"),
            };
            if ecsd::tls::Identity::of_dns(&who.dns_name()).as_ref() != Some(&who) {
                bail!("{}: a name is 1 to 63 letters, digits and hyphens", who.stem());
            }
            let ca = read_ca(&dir)?;
            let pem = ecsd::tls::make_cert(&ca, &who, &hosts, days).map_err(anyhow::Error::msg)?;
            let stem = who.stem();
            write_pair(&dir, &stem, &pem)?;
            println!(
                "wrote {0}/{stem}.pem and {0}/{stem}-key.pem ({1})",
                dir.display(),
                who.dns_name()
            );
        }
    }
    Ok(())
}

fn read_ca(dir: &std::path::Path) -> anyhow::Result<ecsd::tls::Pem> {
    let read = |name: &str| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).with_context(|| {
            format!(
                "read {} (make it with `ecsd tls ca --dir {}`)",
                path.display(),
                dir.display()
            )
        })
    };
    Ok(ecsd::tls::Pem {
        cert: read("ca.pem")?,
        key: read("ca-key.pem")?,
    })
}

/// Writes `<stem>.pem` and `<stem>-key.pem` (mode 0600) under `dir`; refuses to overwrite.
fn write_pair(dir: &std::path::Path, stem: &str, pem: &ecsd::tls::Pem) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}-key.pem"));
    for path in [&cert, &key] {
        if path.exists() {
            bail!("{} exists; remove it first to make a new one", path.display());
        }
    }
    std::fs::write(&cert, &pem.cert).with_context(|| format!("write {}", cert.display()))?;
    write_secret(&key, pem.key.as_bytes())
}

/// Writes a file only its owner can read.
fn write_secret(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("write {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("write {}", path.display()))
}

fn base(endpoint: &str) -> String {
    let trimmed = endpoint.trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        trimmed.to_string()
    } else {
        format!("http://{trimmed}")
    }
}
