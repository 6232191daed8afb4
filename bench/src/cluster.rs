//! What `ecs-bench cluster` starts and tears down: a local cluster of real `ecsd serve`
//! processes (temporary data directories, loopback ports the OS picked), and the peer, moto's
//! standalone server (`moto_server`, the in-memory ECS mock of the `moto[server]` pip package).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

/// Picks `n` free loopback ports (held together while picked, so none repeats).
fn free_ports(n: usize) -> anyhow::Result<Vec<SocketAddr>> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok(listeners
        .iter()
        .map(std::net::TcpListener::local_addr)
        .collect::<std::io::Result<Vec<_>>>()?)
}

/// Kills and reaps its processes when dropped.
struct Processes(Vec<Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// From one node's `/cluster/status`: the leader it names, if that member's own report (each
/// member reports its role itself) says it leads in the newest term the status knows; with that
/// term and its API address.
pub fn self_reported_leader(status: &serde_json::Value) -> Option<(u64, u64, String)> {
    let term = status["term"].as_u64()?;
    let leader = status["leader"].as_u64()?;
    let me = status["members"].as_array()?.iter().find(|m| m["id"] == leader)?;
    (me["role"] == "leader" && me["term"].as_u64() == Some(term))
        .then(|| (leader, term, me["api_addr"].as_str().unwrap_or_default().to_string()))
}

/// `--security on`: the cluster's certificates (from `ecsd tls`) and root key.
pub use ecsd_protocol::secure::Secrets as Security;

/// A local cluster of `ecsd serve` processes; dropped, it stops and its data is deleted.
pub struct LocalCluster {
    processes: Processes,
    dir: tempfile::TempDir,
    /// The nodes' ECS API URLs, node 1 first.
    pub endpoints: Vec<String>,
    /// The nodes' configuration files (to restart one).
    configs: Vec<std::path::PathBuf>,
    binary: std::path::PathBuf,
    /// With `--security on`: HTTPS, mutual TLS and signed requests.
    pub security: Option<Security>,
}

impl LocalCluster {
    /// Starts `nodes` nodes of `binary` and waits until they have a leader.
    pub async fn start(binary: &Path, nodes: usize) -> anyhow::Result<LocalCluster> {
        LocalCluster::start_with(binary, nodes, false).await
    }

    /// [`LocalCluster::start`], secured (`secure`): certificates from `ecsd tls`, a root key,
    /// authentication and TLS on.
    pub async fn start_with(binary: &Path, nodes: usize, secure: bool) -> anyhow::Result<LocalCluster> {
        let mut dir = tempfile::Builder::new().prefix("ecs-bench-").tempdir()?;
        // With ECS_BENCH_KEEP=1 the nodes' data and logs stay for a post-mortem.
        if std::env::var_os("ECS_BENCH_KEEP").is_some_and(|v| v == "1") {
            dir.disable_cleanup(true);
            println!(
                "ecs-bench: the nodes' data and logs are kept in {}",
                dir.path().display()
            );
        }
        let security = secure
            .then(|| Security::prepare(binary, dir.path().join("tls"), &vec![Vec::new(); nodes], &[]))
            .transpose()
            .map_err(anyhow::Error::msg)?;
        let ports = free_ports(nodes * 2)?;
        let (api, raft) = ports.split_at(nodes);
        let members: String = (0..nodes)
            .map(|i| {
                format!(
                    "\n[[initial_members]]\nid = {}\napi_addr = \"{}\"\nraft_addr = \"{}\"\n",
                    i + 1,
                    api[i],
                    raft[i]
                )
            })
            .collect();
        let mut configs = Vec::new();
        for i in 0..nodes {
            configs.push(write_config(
                dir.path(),
                i + 1,
                api[i],
                raft[i],
                &format!(
                    "bootstrap = true\n{members}{}",
                    security.as_ref().map(|s| s.node_config(i + 1)).unwrap_or_default()
                ),
            )?);
        }
        let scheme = if security.is_some() { "https" } else { "http" };
        let mut cluster = LocalCluster {
            processes: Processes(Vec::new()),
            endpoints: api.iter().map(|a| format!("{scheme}://{a}")).collect(),
            dir,
            configs,
            binary: binary.to_path_buf(),
            security,
        };
        for i in 0..nodes {
            let child = cluster.spawn(i)?;
            cluster.processes.0.push(child);
        }
        cluster.wait_for_leader(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    fn spawn(&self, i: usize) -> anyhow::Result<Child> {
        let log = std::fs::File::create(self.dir.path().join(format!("node-{}.log", i + 1)))?;
        Command::new(&self.binary)
            .args(["serve", "--config"])
            .arg(&self.configs[i])
            // ECS_BENCH_NODE_LOG sets the nodes' RUST_LOG (for a post-mortem, with ECS_BENCH_KEEP).
            .env(
                "RUST_LOG",
                std::env::var("ECS_BENCH_NODE_LOG").unwrap_or_else(|_| "ecsd=warn,openraft=error".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))
    }

    /// The leader's node number (1-based), as any node reports it.
    pub async fn leader(&self) -> Option<usize> {
        for url in &self.endpoints {
            if let Some(l) = self.status_at(url).await.and_then(|v| v["leader"].as_u64()) {
                return Some(l as usize);
            }
        }
        None
    }

    /// One node's `/cluster/status` (signed when secured), if it answers within 500 ms.
    pub async fn status_at(&self, url: &str) -> Option<serde_json::Value> {
        let mut http = reqwest::Client::builder().timeout(Duration::from_millis(500));
        if let Some(s) = &self.security {
            http = http.add_root_certificate(reqwest::Certificate::from_pem(&s.ca_pem).ok()?);
        }
        let http = http.build().ok()?;
        let mut request = http.get(format!("{url}/cluster/status")).build().ok()?;
        if let Some(s) = &self.security {
            s.signer().sign(&mut request).ok()?;
        }
        http.execute(request).await.ok()?.json().await.ok()
    }

    /// Waits until some node reports a leader.
    pub async fn wait_for_leader(&self, within: Duration) -> anyhow::Result<usize> {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(l) = self.leader().await {
                return Ok(l);
            }
            if tokio::time::Instant::now() > until {
                bail!("the local cluster elected no leader within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until a node says that it leads, in the newest term it knows of (its own report,
    /// not another node's possibly stale view); returns it (1-based) and that term.
    pub async fn wait_for_confirmed_leader(&self, within: Duration) -> anyhow::Result<(usize, u64)> {
        let until = tokio::time::Instant::now() + within;
        loop {
            if let Some(l) = self.leader().await {
                if let Some(v) = self.status_at(&self.endpoints[l - 1]).await {
                    if let Some((id, term, _)) = self_reported_leader(&v).filter(|(id, _, _)| *id == l as u64) {
                        return Ok((id as usize, term));
                    }
                }
            }
            if tokio::time::Instant::now() > until {
                bail!("no node of the local cluster confirmed that it led within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until node `i` (1-based) reports a leader and has applied everything the leader
    /// has committed (as the leader reports it).
    pub async fn wait_caught_up(&self, i: usize, within: Duration) -> anyhow::Result<()> {
        let http = reqwest::Client::builder().timeout(Duration::from_millis(500)).build()?;
        let until = tokio::time::Instant::now() + within;
        loop {
            let status = async {
                let v: serde_json::Value = http
                    .get(format!("{}/cluster/status", self.endpoints[i - 1]))
                    .send()
                    .await
                    .ok()?
                    .json()
                    .await
                    .ok()?;
                let members = v["members"].as_array()?;
                let leader = members.iter().find(|m| m["id"] == v["leader"])?;
                let me = members.iter().find(|m| m["id"] == i as u64)?;
                Some(me["applied_index"].as_u64()? >= leader["committed_index"].as_u64()?)
            };
            if status.await == Some(true) {
                return Ok(());
            }
            if tokio::time::Instant::now() > until {
                bail!("node {i} did not catch up within {within:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts one more node, empty and outside the membership, and asks the cluster to add it
    /// (as `ecsd cluster add-node` does): the call returns once the leader has brought it up to
    /// date (by snapshot when the leader's log no longer reaches back far enough) and made it a
    /// voter. Returns its number (1-based).
    pub async fn add_node(&mut self) -> anyhow::Result<usize> {
        let i = self.configs.len() + 1;
        let ports = free_ports(2)?;
        self.configs
            .push(write_config(self.dir.path(), i, ports[0], ports[1], "join = true\n")?);
        self.endpoints.push(format!("http://{}", ports[0]));
        let child = self.spawn(i - 1)?;
        self.processes.0.push(child);
        let body = serde_json::json!({"id": i, "api_addr": ports[0].to_string(), "raft_addr": ports[1].to_string()});
        let reply = reqwest::Client::new()
            .post(format!("{}/cluster/add-node", self.endpoints[0]))
            .json(&body)
            .send()
            .await?;
        if !reply.status().is_success() {
            bail!(
                "add-node: {} {}",
                reply.status(),
                reply.text().await.unwrap_or_default()
            );
        }
        Ok(i)
    }

    /// Node `i`'s own entry (1-based) in its `/cluster/status`: role, log positions, snapshot.
    pub async fn member_status(&self, i: usize) -> anyhow::Result<serde_json::Value> {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let status: serde_json::Value = http
            .get(format!("{}/cluster/status", self.endpoints[i - 1]))
            .send()
            .await?
            .json()
            .await?;
        Ok(status["members"]
            .as_array()
            .and_then(|m| m.iter().find(|m| m["id"] == i as u64).cloned())
            .unwrap_or_default())
    }

    /// The process id of node `i` (1-based).
    pub fn pid(&self, i: usize) -> u32 {
        self.processes.0[i - 1].id()
    }

    /// Each node's name (`node1`…) and process id, for the CPU meter.
    pub fn pids(&self) -> Vec<(String, u32)> {
        (1..=self.endpoints.len())
            .map(|i| (format!("node{i}"), self.pid(i)))
            .collect()
    }

    /// The data directory of node `i` (1-based).
    pub fn data_dir(&self, i: usize) -> std::path::PathBuf {
        self.dir.path().join(format!("data-{i}"))
    }

    /// `kill -9` of node `i` (1-based).
    pub fn kill(&mut self, i: usize) {
        let child = &mut self.processes.0[i - 1];
        let _ = child.kill();
        let _ = child.wait();
    }

    /// SIGTERM to node `i` (1-based), then waits for it to exit (at most `within`; then
    /// `kill -9`, and an error). Returns how long it took to exit.
    pub async fn terminate(&mut self, i: usize, within: Duration) -> anyhow::Result<Duration> {
        let started = std::time::Instant::now();
        let pid = self.pid(i).to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status()?;
        if !sent.success() {
            bail!("kill -TERM {pid} failed");
        }
        loop {
            if let Some(status) = self.processes.0[i - 1].try_wait()? {
                if !status.success() {
                    bail!("node {i} exited with {status} after SIGTERM");
                }
                return Ok(started.elapsed());
            }
            if started.elapsed() > within {
                self.kill(i);
                bail!("node {i} did not exit within {within:?} of SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Starts node `i` (1-based) again after a kill.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        let child = self.spawn(i - 1)?;
        self.processes.0[i - 1] = child;
        Ok(())
    }
}

/// Writes node `i`'s configuration file in `dir` (data in `dir/data-<i>`); `extra` is appended.
fn write_config(
    dir: &Path,
    i: usize,
    api: SocketAddr,
    raft: SocketAddr,
    extra: &str,
) -> anyhow::Result<std::path::PathBuf> {
    let config = dir.join(format!("node-{i}.toml"));
    let text = format!(
        "node_id = {i}\ndata_dir = \"{}\"\napi_addr = \"{api}\"\nraft_addr = \"{raft}\"\n{extra}",
        dir.join(format!("data-{i}")).display(),
    );
    std::fs::write(&config, text)?;
    Ok(config)
}

/// The resident memory of process `pid` in bytes (Linux `/proc`), if it can be read.
pub fn resident_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmRSS:")
}

/// The most resident memory process `pid` has had since it started (`VmHWM`), in bytes.
pub fn peak_resident_bytes(pid: u32) -> Option<u64> {
    status_bytes(pid, "VmHWM:")
}

/// The CPU time process `pid` has used (user and system), in seconds (Linux `/proc`).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // `/proc` counts in USER_HZ, which Linux fixes at 100 for user space.
    Some(ticks as f64 / 100.0)
}

fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Every file under `dir` (at any depth) with its size in bytes; what cannot be read is left out.
fn files_under(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => files.push((e.path(), m.len())),
                Err(_) => {}
            }
        }
    }
    files
}

/// The total size of the files under `dir`, in bytes.
pub fn dir_bytes(dir: &Path) -> u64 {
    files_under(dir).iter().map(|(_, n)| n).sum()
}

/// The size in bytes of the newest snapshot under a node's data directory `dir`: snapshot files
/// are named `<index, 20 digits>-<id>.snap`, so the newest has the greatest name.
pub fn newest_snapshot_bytes(dir: &Path) -> Option<u64> {
    files_under(dir)
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|x| x == "snap"))
        .max_by(|(a, _), (b, _)| a.file_name().cmp(&b.file_name()))
        .map(|(_, n)| n)
}

/// moto's standalone server on a loopback port; dropped, it stops.
pub struct Moto {
    _process: Processes,
    pub endpoint: String,
}

impl Moto {
    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self._process.0.first().map(|c| c.id())
    }

    /// Starts `moto_server` (from PATH) and waits until it answers.
    pub async fn start() -> anyhow::Result<Moto> {
        let port = free_ports(1)?[0].port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting moto_server (pip install 'moto[server]')")?;
        let moto = Moto {
            _process: Processes(vec![child]),
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let until = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if http.get(format!("{}/", moto.endpoint)).send().await.is_ok() {
                return Ok(moto);
            }
            if tokio::time::Instant::now() > until {
                bail!("moto_server did not answer within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The median time of a 4 KiB write followed by fsync in `dir`, over `samples` tries: what
/// bounds the latency of an acknowledged write on this disk.
pub fn fsync_latency(dir: &Path, samples: usize) -> anyhow::Result<Duration> {
    use std::io::Write;
    let path = dir.join(format!("ecs-bench-fsync-{}", std::process::id()));
    let mut file = std::fs::File::create(&path)?;
    let block = [7u8; 4096];
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples.max(1) {
        let start = std::time::Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        times.push(start.elapsed());
    }
    drop(file);
    let _ = std::fs::remove_file(&path);
    times.sort();
    Ok(times[times.len() / 2])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::self_reported_leader;

    #[test]
    fn a_leader_counts_only_when_its_own_report_says_it_leads_in_the_newest_term() {
        let status = |role: &str, its_term: u64| {
            json!({"leader": 2, "term": 5, "members": [
                {"id": 1, "role": "follower", "term": 5, "api_addr": "127.0.0.1:1"},
                {"id": 2, "role": role, "term": its_term, "api_addr": "127.0.0.1:2"}]})
        };
        assert_eq!(
            self_reported_leader(&status("leader", 5)),
            Some((2, 5, "127.0.0.1:2".to_string()))
        );
        // A deposed leader that has not heard of the newer term, or a node that is no longer
        // leading, or one that did not answer, is not confirmed.
        assert_eq!(self_reported_leader(&status("leader", 4)), None);
        assert_eq!(self_reported_leader(&status("follower", 5)), None);
        assert_eq!(self_reported_leader(&status("unreachable", 5)), None);
        assert_eq!(
            self_reported_leader(&json!({"leader": null, "term": 5, "members": []})),
            None
        );
    }
}
