//! The composition root: opens storage, starts Raft, the gRPC and HTTP servers and the leader
//! supervisor, and shuts them down in order.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::config::NodeConfig;
use crate::control::{self, LeaderTask};
use crate::model::ArnScope;
use crate::raft::service::RaftGrpc;
use crate::raft::RaftNode;
use crate::storage::Store;

/// Listeners bound before the node starts (tests bind port 0 and pass them in).
pub struct Listeners {
    pub api: TcpListener,
    pub raft: TcpListener,
}

impl Listeners {
    /// Binds the config's addresses.
    pub async fn bind(config: &NodeConfig) -> anyhow::Result<Listeners> {
        let api = TcpListener::bind(config.api_addr)
            .await
            .with_context(|| format!("bind api_addr {}", config.api_addr))?;
        let raft = TcpListener::bind(config.raft_addr)
            .await
            .with_context(|| format!("bind raft_addr {}", config.raft_addr))?;
        Ok(Listeners { api, raft })
    }
}

/// A running node.
/// The node-to-node port's bounds: connections at once (peers, and one per agent process),
/// time to the first bytes of a connection, and the keep-alive ping interval and timeout.
const GRPC_MAX_CONNECTIONS: usize = 4096;
const GRPC_PREFACE: std::time::Duration = std::time::Duration::from_secs(10);
const GRPC_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);

pub struct Node {
    pub raft: RaftNode,
    pub config: NodeConfig,
    pub api_addr: SocketAddr,
    pub raft_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    store_watch: crate::storage::StoreWatch,
}

impl Node {
    /// Starts a node on `listeners`, running `leader_tasks` whenever it leads.
    pub async fn start(
        mut config: NodeConfig,
        listeners: Listeners,
        leader_tasks: Vec<Arc<dyn LeaderTask>>,
    ) -> anyhow::Result<Node> {
        // The metrics recorder first, so that nothing this node records is lost.
        crate::telemetry::prometheus();
        let api_addr = listeners.api.local_addr()?;
        let raft_addr = listeners.raft.local_addr()?;
        // Ports chosen by the OS become the addresses this node advertises.
        config.api_addr = api_addr;
        config.raft_addr = raft_addr;
        std::fs::create_dir_all(&config.data_dir).with_context(|| format!("create {}", config.data_dir.display()))?;
        std::fs::write(
            config.data_dir.join("addresses.json"),
            serde_json::to_vec(&serde_json::json!({ "api_addr": api_addr, "raft_addr": raft_addr }))?,
        )?;

        let store = Store::open(&config.data_dir.join("db")).context("open rocksdb")?;
        tracing::info!(node_id = config.node_id, data_dir = %config.data_dir.display(), "opened storage");
        let store_watch = store.watch();
        let tls = crate::tls::Material::load(&config.tls, config.node_id).map_err(anyhow::Error::msg)?;
        let raft = RaftNode::start(&config, store, tls.as_ref()).await?;
        tracing::info!(node_id = config.node_id, %raft_addr, "started raft");
        // Agents' heartbeats reach the leader's liveness loop through its inbox.
        let heartbeats = Arc::new(control::liveness::Heartbeats::default());
        raft.handle().set_leader_inbox(heartbeats.inbox());

        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();

        let mut grpc = tonic::transport::Server::builder();
        if let Some(tls) = &tls {
            // Mutual TLS: every caller presents a certificate from the cluster CA; the services
            // then admit members (Raft) or agents (the agent service) by its identity.
            grpc = grpc
                .tls_config(
                    tonic::transport::ServerTlsConfig::new()
                        .identity(tonic::transport::Identity::from_pem(&tls.cert, &tls.key))
                        .client_ca_root(tonic::transport::Certificate::from_pem(&tls.ca))
                        .timeout(GRPC_PREFACE),
                )
                .context("the node-to-node port's TLS")?;
        }
        let grpc = grpc
            // Every agent session holds a stream: allow many per connection.
            .max_concurrent_streams(Some(65_536))
            // A peer or agent that stops answering pings is dropped.
            .http2_keepalive_interval(Some(GRPC_KEEPALIVE))
            .http2_keepalive_timeout(Some(GRPC_KEEPALIVE))
            .tcp_keepalive(Some(GRPC_KEEPALIVE))
            // A call not answered in time is cancelled: a client that opens a stream and never
            // sends its message cannot hold it. The longest call is a snapshot chunk's install.
            .timeout(std::time::Duration::from_millis(
                config.raft.install_snapshot_timeout_ms + 30_000,
            ))
            .add_service(RaftGrpc::server(raft.handle().clone(), tls.is_some()))
            .add_service(crate::agents::AgentGrpc::server(
                raft.clone(),
                shutdown.clone(),
                tls.is_some(),
            ))
            .serve_with_incoming_shutdown(
                crate::rpc::incoming::bounded(listeners.raft, GRPC_MAX_CONNECTIONS, GRPC_PREFACE),
                shutdown.clone().cancelled_owned(),
            );
        tasks.push(tokio::spawn(async move {
            if let Err(e) = grpc.await {
                tracing::error!(error = %e, "grpc server failed");
            }
        }));
        // Raft's messages are let in once the node is sure it did not lose its data
        // (`raft/identity.rs`); then it founds the cluster if configured to.
        if let Err(e) = raft.admit(&config).await {
            shutdown.cancel();
            raft.handle().shutdown().await;
            return Err(anyhow::anyhow!("{e}"));
        }

        let scope = ArnScope {
            region: config.region.clone(),
            account_id: config.account_id.clone(),
            long_arns_by_default: config.long_arns_by_default,
        };
        let state = Arc::new(ApiState {
            node: raft.clone(),
            auth: api::auth::Authenticator::new(&config.auth, &scope),
            tls: tls.is_some(),
            scope,
            max_body_bytes: config.api.max_body_bytes,
            advertised_api_addr: config.advertised_api_addr(),
            advertised_agent_addr: config.advertised_raft_addr(),
            limits: api::server::Limits::of(&config.api),
            health: api::health::Health {
                data_dir: config.data_dir.clone(),
                tuning: config.health.clone(),
            },
            modern: Default::default(),
        });
        raft.handle().set_request_handler(api::request_handler(&state));
        let limits = state.limits.clone();
        let https = tls
            .as_ref()
            .map(|m| m.https_acceptor())
            .transpose()
            .map_err(|e| anyhow::anyhow!("the API's TLS: {e}"))?;
        tasks.push(tokio::spawn(api::server::serve(
            listeners.api,
            api::router(state),
            limits,
            shutdown.clone(),
            https,
        )));
        tracing::info!(node_id = config.node_id, %api_addr, "serving ecs api");

        let mut loops = control::builtin_tasks(&config, heartbeats);
        loops.extend(leader_tasks);
        tasks.push(control::spawn_supervisor(raft.clone(), loops, shutdown.clone()));
        Ok(Node {
            raft,
            config,
            api_addr,
            raft_addr,
            shutdown,
            tasks,
            store_watch,
        })
    }

    /// Resolves when Raft stops on its own (openraft's Fatal: a storage error, a panic in its
    /// core), with the reason. The node cannot recover from it in place; `ecsd serve` exits
    /// non-zero so that its supervisor restarts it.
    pub async fn failed(&self) -> String {
        let mut metrics = self.raft.handle().leadership();
        loop {
            if let Err(fatal) = &metrics.borrow_and_update().running_state {
                return fatal.to_string();
            }
            if metrics.changed().await.is_err() {
                return "raft's metrics ended".to_string();
            }
        }
    }

    /// Stops leader loops and servers, then Raft, and waits for all of it, for at most the
    /// write hold plus 10 s: a task still running then is aborted, and the rest goes on.
    pub async fn shutdown(self) {
        // A leader hands off first (`raft/handoff.rs`): the servers still run meanwhile, and
        // the writes they take wait for the next leader.
        self.raft.handle().hand_off_leadership().await;
        self.shutdown.cancel();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(self.config.api.hold_ms + 10_000);
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!(node_id = self.config.node_id, "a task did not stop in time; aborted");
                abort.abort();
            }
        }
        if tokio::time::timeout_at(deadline, self.raft.handle().shutdown())
            .await
            .is_err()
        {
            tracing::warn!(node_id = self.config.node_id, "raft did not stop in time");
        }
        let Node {
            raft,
            config,
            store_watch,
            ..
        } = self;
        drop(raft);
        // Requests still draining (a held write, a closing connection) keep the database open;
        // wait for them, so the data dir can be reopened at once (bounded by the write hold).
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(config.api.hold_ms + 5_000);
        while !store_watch.is_closed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if store_watch.is_closed() {
            tracing::info!(node_id = config.node_id, "node stopped");
        } else {
            tracing::warn!(
                node_id = config.node_id,
                "node stopped, but storage is still held by a lingering task"
            );
        }
    }
}
