//! In-process test clusters: real nodes with real gRPC and HTTP on loopback ports the OS picks.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ecsd::config::{MemberConfig, NodeConfig};
use ecsd::control::LeaderTask;
use ecsd::node::{Listeners, Node};
use serde_json::Value;
use tokio::net::TcpListener;

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Builds the leader-only tasks of one node.
pub type TaskFactory = Arc<dyn Fn(u64) -> Vec<Arc<dyn LeaderTask>> + Send + Sync>;

/// A cluster of in-process nodes sharing one temp directory.
///
/// The harness keeps its own handle on every node's listening sockets, so a stopped node's ports
/// stay reserved and it restarts on the addresses the Raft membership records (like socket
/// activation: connections made meanwhile wait in the backlog).
pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub configs: BTreeMap<u64, NodeConfig>,
    pub nodes: BTreeMap<u64, Node>,
    sockets: BTreeMap<u64, (std::net::TcpListener, std::net::TcpListener)>,
    tasks: TaskFactory,
    pub http: reqwest::Client,
}

/// A config for node `id` on the given addresses, with test-friendly (but not racy) timings.
pub fn node_config(dir: &std::path::Path, id: u64, api: &str, raft: &str) -> NodeConfig {
    let text = format!(
        "node_id = {id}\ndata_dir = \"{}\"\napi_addr = \"{api}\"\nraft_addr = \"{raft}\"\n",
        dir.join(format!("node-{id}")).display()
    );
    NodeConfig::load(&text, &BTreeMap::new()).expect("test config")
}

/// Binds an API and a Raft socket on ports the OS picks.
fn bind_pair() -> (std::net::TcpListener, std::net::TcpListener) {
    let bind = || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        l
    };
    (bind(), bind())
}

fn listeners_for(sockets: &(std::net::TcpListener, std::net::TcpListener)) -> Listeners {
    let open = |l: &std::net::TcpListener| TcpListener::from_std(l.try_clone().unwrap()).unwrap();
    Listeners {
        api: open(&sockets.0),
        raft: open(&sockets.1),
    }
}

impl TestCluster {
    /// Starts `n` voters that bootstrap together.
    pub async fn start(n: u64, tune: impl Fn(&mut NodeConfig)) -> TestCluster {
        Self::start_with_tasks(n, tune, Arc::new(|_| Vec::new())).await
    }

    pub async fn start_with_tasks(n: u64, tune: impl Fn(&mut NodeConfig), tasks: TaskFactory) -> TestCluster {
        let mut cluster = Self::prepare(n, tune, tasks);
        cluster.boot().await;
        cluster.wait_cluster_version().await;
        cluster
    }

    /// Waits until every node has applied the cluster version of this build: the leader raises
    /// it once every member has reported its feature level (within a few seconds of a start),
    /// and until then requests keep the earlier behaviour.
    pub async fn wait_cluster_version(&self) {
        let level = ecsd::state::identity::FEATURE_LEVEL;
        wait_for("the cluster version is raised", Duration::from_secs(60), || async {
            self.nodes
                .values()
                .all(|n| ecsd::state::identity::cluster_version(n.raft.handle().view()).unwrap_or(1) >= level)
                .then_some(())
        })
        .await;
    }

    /// `n` voters' configs and sockets, not started yet ([`TestCluster::boot`]): a test can
    /// make their data directories first.
    pub fn prepare(n: u64, tune: impl Fn(&mut NodeConfig), tasks: TaskFactory) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        let mut sockets = BTreeMap::new();
        let mut members = Vec::new();
        for id in 1..=n {
            let (api, raft) = bind_pair();
            members.push(MemberConfig {
                id,
                api_addr: api.local_addr().unwrap().to_string(),
                raft_addr: raft.local_addr().unwrap().to_string(),
            });
            sockets.insert(id, (api, raft));
        }
        let mut cluster = TestCluster {
            dir,
            configs: BTreeMap::new(),
            nodes: BTreeMap::new(),
            sockets,
            tasks,
            http: reqwest::Client::new(),
        };
        for member in &members {
            let mut config = node_config(cluster.dir.path(), member.id, &member.api_addr, &member.raft_addr);
            config.bootstrap = true;
            config.initial_members = members.clone();
            tune(&mut config);
            cluster.configs.insert(member.id, config);
        }
        cluster
    }

    /// Starts every prepared node.
    pub async fn boot(&mut self) {
        let cluster = self;
        let n = cluster.configs.len() as u64;
        // All at once, as a real cluster's nodes start: each asks the others' status before it
        // takes part (a node that lost its data must not vote).
        let starts = (1..=n).map(|id| {
            let config = cluster.configs[&id].clone();
            let listeners = listeners_for(&cluster.sockets[&id]);
            let tasks = (cluster.tasks)(id);
            async move { (id, Node::start(config, listeners, tasks).await.expect("start node")) }
        });
        for (id, node) in futures::future::join_all(starts).await {
            cluster.nodes.insert(id, node);
        }
    }

    async fn launch(&mut self, id: u64) {
        self.try_restart(id).await.expect("start node");
    }

    /// Starts a new node that joins later through `add-node` (no bootstrap).
    pub async fn start_joiner(&mut self, id: u64, tune: impl Fn(&mut NodeConfig)) {
        let (api, raft) = bind_pair();
        let mut config = node_config(
            self.dir.path(),
            id,
            &api.local_addr().unwrap().to_string(),
            &raft.local_addr().unwrap().to_string(),
        );
        config.join = true;
        tune(&mut config);
        self.configs.insert(id, config);
        self.sockets.insert(id, (api, raft));
        self.launch(id).await;
    }

    /// Stops node `id` (its data stays).
    pub async fn stop(&mut self, id: u64) {
        let node = self.nodes.remove(&id).expect("node running");
        node.shutdown().await;
    }

    /// Restarts node `id` from its data directory on its old addresses.
    pub async fn restart(&mut self, id: u64) {
        self.launch(id).await;
    }

    /// [`TestCluster::restart`], or why the node refused to start.
    pub async fn try_restart(&mut self, id: u64) -> anyhow::Result<()> {
        let config = self.configs[&id].clone();
        let listeners = listeners_for(&self.sockets[&id]);
        let node = Node::start(config, listeners, (self.tasks)(id)).await?;
        self.nodes.insert(id, node);
        Ok(())
    }

    /// Node `id`'s ECS API address (`host:port`).
    pub fn api_addr(&self, id: u64) -> String {
        self.configs[&id].api_addr.to_string()
    }

    /// Node `id`'s node-to-node (gRPC) address.
    pub fn raft_addr(&self, id: u64) -> String {
        self.configs[&id].raft_addr.to_string()
    }

    pub fn url(&self, id: u64) -> String {
        format!("http://{}", self.configs[&id].api_addr)
    }

    /// The leader every running node agrees on.
    pub async fn leader(&self) -> u64 {
        wait_for("an agreed leader", Duration::from_secs(20), || async {
            let leaders: Vec<Option<u64>> = self
                .nodes
                .values()
                .map(|n| n.raft.handle().local_report())
                .map(|r| r.leader)
                .collect();
            let first = leaders.first().copied().flatten()?;
            let agreed = leaders.iter().all(|l| *l == Some(first)) && self.nodes.contains_key(&first);
            let leads = self.nodes.get(&first)?.raft.handle().local_report().state == "leader";
            (agreed && leads).then_some(first)
        })
        .await
    }

    /// The leader and its term, confirmed: every running node names it in the same term, and it
    /// reports itself that it leads that term.
    pub async fn leader_and_term(&self) -> (u64, u64) {
        wait_for("an agreed leader and term", Duration::from_secs(30), || async {
            let reports: Vec<_> = self.nodes.values().map(|n| n.raft.handle().local_report()).collect();
            let (leader, term) = (reports.first()?.leader?, reports.first()?.term);
            let agreed = reports.iter().all(|r| r.leader == Some(leader) && r.term == term);
            let own = self.nodes.get(&leader)?.raft.handle().local_report();
            (agreed && own.state == "leader" && own.term == term).then_some((leader, term))
        })
        .await
    }

    /// Stops the leader, confirmed as [`TestCluster::leader_and_term`] does and once more by its
    /// own report just before the stop, then waits until the others elect a new leader in a
    /// higher term. Returns the stopped node.
    pub async fn stop_leader(&mut self) -> u64 {
        let (old, term) = loop {
            let (leader, term) = self.leader_and_term().await;
            let own = self.nodes[&leader].raft.handle().local_report();
            if own.state == "leader" && own.term == term {
                break (leader, term);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.stop(old).await;
        let (new, new_term) = self.leader_and_term().await;
        assert!(
            new != old && new_term > term,
            "after stopping leader {old} of term {term}: leader {new} in term {new_term}"
        );
        old
    }

    /// Some running node other than `not`.
    /// Sends `action` with `body` to the leader as node `via` forwards a request it got, under
    /// `request_id` (the node-to-node port; `via` must not lead). The leader's status and body.
    pub async fn forward_as(&self, via: u64, action: &str, request_id: &str, body: &Value) -> (u16, Value) {
        let request = ecsd::raft::requests::ForwardedRequest {
            action: action.to_string(),
            request_id: request_id.to_string(),
            caller: None,
        };
        let handle = self.nodes[&via].raft.handle();
        let reply = handle
            .forward_request(&request, body.to_string().as_bytes())
            .await
            .expect("the leader answers the forward");
        (reply.status, reply.body)
    }

    pub fn other_than(&self, not: u64) -> u64 {
        *self.nodes.keys().find(|id| **id != not).expect("another node")
    }

    /// Sends an ECS action to node `id` and returns (status, body).
    pub async fn ecs(&self, id: u64, action: &str, body: Value) -> (u16, Value) {
        ecs_call(&self.http, &self.url(id), action, body, &[]).await
    }

    /// Sends an action to node `id` that must succeed, and returns its body.
    pub async fn ok(&self, id: u64, action: &str, body: Value) -> Value {
        let (status, reply) = self.ecs(id, action, body.clone()).await;
        assert_eq!(status, 200, "{action} {body} -> {reply}");
        reply
    }

    /// Like [`TestCluster::ok`], but retries server errors (5xx: a leader change, or a node too
    /// loaded to confirm its leadership in time) for up to 30 s, as AWS SDKs retry them. For polls.
    pub async fn ok_retrying(&self, id: u64, action: &str, body: Value) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (status, reply) = self.ecs(id, action, body.clone()).await;
            if status < 500 || std::time::Instant::now() > deadline {
                assert_eq!(status, 200, "{action} {body} -> {reply}");
                return reply;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sends an action to node `id` that must fail with HTTP 400, `__type` `kind` and a message
    /// that contains `text`.
    pub async fn err(&self, id: u64, action: &str, body: Value, kind: &str, text: &str) {
        let (status, reply) = self.ecs(id, action, body.clone()).await;
        assert_eq!(
            (status, reply["__type"].as_str()),
            (400, Some(kind)),
            "{action} {body} -> {reply}"
        );
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(message.contains(text), "{action}: {message:?} should mention {text:?}");
    }

    /// Every ACTIVE cluster name, following ListClusters pages, read linearizably from node `id`.
    pub async fn list_cluster_names(&self, id: u64) -> Vec<String> {
        list_cluster_names(&self.http, &self.url(id)).await
    }

    /// Waits until node `id` has applied at least what node `reference` has applied.
    pub async fn wait_caught_up(&self, id: u64, reference: u64) {
        let target = self.nodes[&reference].raft.handle().local_report().applied_index;
        wait_for(
            &format!("node {id} to apply up to {target:?}"),
            Duration::from_secs(30),
            || async {
                let applied = self.nodes[&id].raft.handle().local_report().applied_index;
                (applied >= target).then_some(())
            },
        )
        .await
    }

    /// `/cluster/status` as node `id` answers it.
    pub async fn status(&self, id: u64) -> Value {
        status_at(&self.http, &self.url(id)).await
    }

    pub async fn shutdown(mut self) {
        let ids: Vec<u64> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

/// One raw ECS JSON 1.1 call.
pub async fn ecs_call(
    http: &reqwest::Client,
    url: &str,
    action: &str,
    body: Value,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut request = ecsd_protocol::ecs::request(http, &format!("{url}/"), action);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let reply = ecsd_protocol::ecs::send(request, &body).await.expect("http call");
    assert!(
        !reply.body.is_null(),
        "{action}: HTTP {} without a JSON body",
        reply.status
    );
    (reply.status, reply.body)
}

/// Every ACTIVE cluster name at `url`, following ListClusters pages.
pub async fn list_cluster_names(http: &reqwest::Client, url: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = serde_json::json!({});
        if let Some(t) = &token {
            req["nextToken"] = serde_json::json!(t);
        }
        let (status, page) = ecs_call(http, url, "ListClusters", req, &[]).await;
        assert_eq!(status, 200, "{page}");
        for arn in page["clusterArns"].as_array().unwrap() {
            names.push(arn.as_str().unwrap().rsplit('/').next().unwrap().to_string());
        }
        match page.get("nextToken").and_then(|t| t.as_str()) {
            Some(t) => token = Some(t.to_string()),
            None => return names,
        }
    }
}

/// A JSON array of strings.
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|a| a.as_str().expect("a string").to_string())
        .collect()
}

/// Skips the calling test `test` because of `reason`, visibly: libtest captures `eprintln!`, so
/// the line is written to the process's stderr directly. With `require_var=1` in the
/// environment the skip is a failure instead (for machines where the test must run).
pub fn skip(test: &str, require_var: &str, reason: &str) {
    if std::env::var(require_var).is_ok_and(|v| v == "1") {
        panic!("{test} cannot run: {reason}; {require_var}=1 requires it to run");
    }
    let line = format!("SKIPPED {test}: {reason} (set {require_var}=1 to fail instead)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// One proxied link between nodes ([`proxy`]): the connections it has taken, and its switch.
pub struct Link {
    pub connections: Arc<std::sync::atomic::AtomicUsize>,
    /// `true` cuts the link: new connections are dropped at once and carried ones end.
    pub cut: tokio::sync::watch::Sender<bool>,
}

/// A TCP forwarder to `target` on a port the OS picks, and its [`Link`]. It runs until the
/// runtime stops.
pub fn proxy(target: String) -> (String, Link) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let listener = TcpListener::from_std(listener).unwrap();
    let (cut, watched) = tokio::sync::watch::channel(false);
    let link = Link {
        connections: Arc::default(),
        cut,
    };
    let connections = link.connections.clone();
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if *watched.borrow() {
                continue;
            }
            let target = target.clone();
            let mut watched = watched.clone();
            tokio::spawn(async move {
                let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else {
                    return;
                };
                // A link whose switch was dropped is never cut.
                let cut = async {
                    if watched.wait_for(|cut| *cut).await.is_err() {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    _ = cut => {}
                }
            });
        }
    });
    (addr, link)
}

/// Runs an agent with `config` in this process until the returned token is cancelled.
pub fn spawn_agent(config: ecs_agent::client::AgentConfig) -> tokio_util::sync::CancellationToken {
    let stop = tokio_util::sync::CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        if let Err(e) = ecs_agent::client::run(config, token).await {
            tracing::warn!(error = %e, "agent ended");
        }
    });
    stop
}

/// `/cluster/status` as the node at `url` answers it.
pub async fn status_at(http: &reqwest::Client, url: &str) -> Value {
    http.get(format!("{url}/cluster/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}
