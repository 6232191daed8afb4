//! Nodes as separate OS processes of the real binary: `kill -9` of the leader during a stream
//! of writes loses no acknowledged write. And the real `ecs-agent` with the process runtime,
//! killed and restarted.

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{list_cluster_names, wait_for, TestCluster};

/// A child process that is killed and reaped when dropped, also when the test panics, so a
/// failed test leaves no `ecsd` or `ecs-agent` running into the rest of the run.
struct Guarded(Child);

impl Guarded {
    /// `kill -9`, asserting that the process was still running (it dies of SIGKILL), and reaps it.
    fn kill_9(&mut self) -> ExitStatus {
        self.0.kill().expect("kill -9");
        let status = self.0.wait().expect("reap the killed process");
        assert_eq!(status.signal(), Some(libc::SIGKILL), "it had already exited: {status}");
        status
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Proc {
    child: Guarded,
    config: PathBuf,
    env: Vec<(String, String)>,
}

/// A node's config; `extra` is appended (tables such as `[services]`).
fn write_config(path: &Path, id: u64, data_dir: &Path, api: &str, raft: &str, bootstrap: bool, extra: &str) {
    let text = format!(
        "node_id = {id}\ndata_dir = \"{}\"\napi_addr = \"{api}\"\nraft_addr = \"{raft}\"\nbootstrap = {bootstrap}\njoin = {}\n{extra}",
        data_dir.display(),
        !bootstrap
    );
    std::fs::write(path, text).unwrap();
}

/// `ecsd serve` with `config`, its log in `log`, with `env` added to its environment.
fn spawn(config: &Path, log: &Path, env: &[(String, String)]) -> Guarded {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_ecsd"))
        .args(["serve", "--config"])
        .arg(config)
        .envs(env.iter().cloned())
        .env("RUST_LOG", "ecsd=info,openraft=error")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ecsd");
    Guarded(child)
}

/// The `ecs-agent` binary of the workspace's `agent/` package, built beside `ecsd` (the agent
/// package's own tests make `cargo test --workspace` build it).
fn agent_binary() -> std::path::PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_ecsd")).with_file_name("ecs-agent");
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`, or `cargo build -p ecs-agent` first",
        path.display()
    );
    path
}

/// The real `ecs-agent` with `args`, talking to `endpoints`, its log in `log`.
fn spawn_agent(args: &[&str], endpoints: &[String], log: &Path) -> Guarded {
    let log = std::fs::File::create(log).unwrap();
    let child = Command::new(agent_binary())
        .args(args)
        .arg("--endpoint")
        .arg(endpoints.join(","))
        .env("RUST_LOG", "ecs_agent=info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ecs-agent");
    Guarded(child)
}

/// The addresses a node bound (it writes them once listening).
async fn addresses(data_dir: &Path) -> (String, String) {
    let file = data_dir.join("addresses.json");
    let v: Value = wait_for("a node to write its addresses", Duration::from_secs(30), || async {
        let text = std::fs::read_to_string(&file).ok()?;
        serde_json::from_str(&text).ok()
    })
    .await;
    (
        v["api_addr"].as_str().unwrap().to_string(),
        v["raft_addr"].as_str().unwrap().to_string(),
    )
}

async fn cluster_status(http: &reqwest::Client, api: &str) -> Option<Value> {
    let response = http.get(format!("http://{api}/cluster/status")).send().await.ok()?;
    response.json().await.ok()
}

/// The leader of the three nodes (node `i + 1` serves `apis[i]`) and its term, confirmed rather
/// than read from one node's possibly stale view: the node itself reports that it leads in term
/// T, no node reports a term above T, and a majority of the three (each asked directly, about
/// its own view) name it as the leader of T. Nodes in `dead` are not asked.
async fn confirmed_leader(http: &reqwest::Client, apis: &[String], dead: &[u64]) -> Option<(u64, u64)> {
    let mut views = Vec::new(); // (node, its term, the leader it names in that term)
    let mut top_term = 0;
    let mut leading = None; // (node, term) of a node that reports itself leader
    for (i, api) in apis.iter().enumerate() {
        let id = i as u64 + 1;
        if dead.contains(&id) {
            continue;
        }
        let Some(status) = cluster_status(http, api).await else {
            continue;
        };
        for m in status["members"].as_array()? {
            top_term = top_term.max(m["term"].as_u64().unwrap_or(0));
        }
        let own = status["members"].as_array()?.iter().find(|m| m["id"] == id)?.clone();
        let term = own["term"].as_u64()?;
        if own["role"] == "leader" {
            leading = Some((id, term));
        }
        if status["term"].as_u64() == Some(term) {
            views.push((id, term, status["leader"].as_u64()));
        }
    }
    let (leader, term) = leading?;
    let naming = views.iter().filter(|v| v.1 == term && v.2 == Some(leader)).count();
    (term == top_term && naming > apis.len() / 2).then_some((leader, term))
}

/// `kill -9` of the leader, confirmed just before (see [`confirmed_leader`]). Returns the
/// killed node's id and the term it led.
async fn kill_9_the_leader(http: &reqwest::Client, apis: &[String], procs: &mut [Proc]) -> (u64, u64) {
    let (leader, term) = wait_for("a confirmed leader", Duration::from_secs(30), || {
        confirmed_leader(http, apis, &[])
    })
    .await;
    tracing::info!(leader, term, "--- kill -9 the leader");
    procs[(leader - 1) as usize].child.kill_9();
    (leader, term)
}

/// Waits until the nodes other than `killed` confirm a new leader in a term above `term`.
async fn wait_new_leader(http: &reqwest::Client, apis: &[String], killed: u64, term: u64) {
    let (new, new_term) = wait_for("a new leader in a higher term", Duration::from_secs(60), || async {
        confirmed_leader(http, apis, &[killed])
            .await
            .filter(|(l, t)| *l != killed && *t > term)
    })
    .await;
    tracing::info!(new, new_term, "a new leader");
}

/// Three `ecsd serve` processes on OS-chosen ports: node 1 bootstraps, 2 and 3 join.
async fn start_three(dir: &Path, http: &reqwest::Client) -> (Vec<Proc>, Vec<String>) {
    start_three_with(dir, http, "", |_| Vec::new()).await
}

/// [`start_three`], each node's config with `extra` appended and `env_of(id)` in its environment.
async fn start_three_with(
    dir: &Path,
    http: &reqwest::Client,
    extra: &str,
    env_of: impl Fn(u64) -> Vec<(String, String)>,
) -> (Vec<Proc>, Vec<String>) {
    let mut procs = Vec::new();
    let mut apis = Vec::new();

    tracing::info!("--- start three processes on OS-chosen ports; node 1 bootstraps, 2 and 3 join");
    for id in 1..=3u64 {
        let data_dir = dir.join(format!("node-{id}"));
        let config = dir.join(format!("node-{id}.toml"));
        write_config(&config, id, &data_dir, "127.0.0.1:0", "127.0.0.1:0", id == 1, extra);
        let env = env_of(id);
        let child = spawn(&config, &dir.join(format!("node-{id}.log")), &env);
        let (api, raft) = addresses(&data_dir).await;
        // Pin the chosen ports so the node restarts on the addresses the membership records.
        write_config(&config, id, &data_dir, &api, &raft, id == 1, extra);
        if id > 1 {
            let body = json!({"id": id, "api_addr": api, "raft_addr": raft});
            let response = http
                .post(format!("http://{}/cluster/add-node", apis[0]))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(response.status().is_success(), "{}", response.text().await.unwrap());
        }
        procs.push(Proc { child, config, env });
        apis.push(api);
    }

    (procs, apis)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (mut procs, apis) = start_three(dir.path(), &http).await;

    tracing::info!("--- a client writes in a loop, round-robin over the nodes");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let first_ok_after = Arc::new(Mutex::new(None::<Instant>));
    let killed_at = Arc::new(Mutex::new(None::<Instant>));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acked, first_ok_after, killed_at, stop) =
            (acked.clone(), first_ok_after.clone(), killed_at.clone(), stop.clone());
        let (http, apis) = (http.clone(), apis.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let name = format!("k{i:05}");
                let url = format!("http://{}", apis[i % apis.len()]);
                i += 1;
                let request = ecsd_protocol::ecs::request(&http, &format!("{url}/"), "CreateCluster")
                    .body(json!({"clusterName": name}).to_string())
                    .send()
                    .await;
                // Only a 200 is an acknowledgement; errors and dead nodes are simply retried elsewhere.
                if matches!(&request, Ok(r) if r.status() == 200) {
                    acked.lock().unwrap().push(name);
                    let killed = *killed_at.lock().unwrap();
                    if let Some(k) = killed {
                        first_ok_after.lock().unwrap().get_or_insert_with(|| {
                            let now = Instant::now();
                            tracing::info!(
                                ms = (now - k).as_millis() as u64,
                                "first write acknowledged after kill -9"
                            );
                            now
                        });
                    }
                }
            }
        })
    };
    wait_for("some writes", Duration::from_secs(30), || async {
        (acked.lock().unwrap().len() >= 50).then_some(())
    })
    .await;

    let (leader, term) = kill_9_the_leader(&http, &apis, &mut procs).await;
    let victim = (leader - 1) as usize;
    *killed_at.lock().unwrap() = Some(Instant::now());
    wait_new_leader(&http, &apis, leader, term).await;
    let acked_before_kill = acked.lock().unwrap().len();
    wait_for("writes to resume after the kill", Duration::from_secs(30), || async {
        (acked.lock().unwrap().len() >= acked_before_kill + 50).then_some(())
    })
    .await;
    let recovery = first_ok_after.lock().unwrap().unwrap() - killed_at.lock().unwrap().unwrap();
    assert!(
        recovery < Duration::from_secs(10),
        "writes resumed only after {recovery:?}"
    );

    tracing::info!("--- restart the killed node; it catches up");
    procs[victim].child = spawn(
        &procs[victim].config,
        &dir.path().join(format!("node-{}-restart.log", victim + 1)),
        &procs[victim].env,
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let victim_api = apis[victim].clone();
    wait_for("the restarted node to serve", Duration::from_secs(30), || async {
        let response = ecsd_protocol::ecs::request(&http, &format!("http://{victim_api}/"), "ListClusters")
            .body("{}")
            .send()
            .await
            .ok()?;
        (response.status() == 200).then_some(())
    })
    .await;

    tracing::info!("--- no acknowledged write is lost, on any node");
    for api in &apis {
        let present: BTreeSet<String> = list_cluster_names(&http, &format!("http://{api}"))
            .await
            .into_iter()
            .collect();
        let lost: Vec<&String> = acked.iter().filter(|n| !present.contains(*n)).collect();
        assert!(lost.is_empty(), "{api} lost acknowledged writes: {lost:?}");
    }
    let status = cluster_status(&http, &victim_api).await.unwrap();
    let applied: Vec<Option<u64>> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["applied_index"].as_u64())
        .collect();
    assert!(applied.iter().all(Option::is_some), "{status}");
}

async fn ecs(http: &reqwest::Client, api: &str, action: &str, body: Value) -> Option<Value> {
    ecsd_protocol::ecs::call(http, &format!("http://{api}/"), action, &body)
        .await
        .ok()
}

/// Retries `action` over the nodes until one answers 200.
async fn ecs_any(http: &reqwest::Client, apis: &[String], action: &str, body: Value) -> Value {
    wait_for(&format!("{action} to succeed"), Duration::from_secs(30), || async {
        for api in apis {
            if let Some(v) = ecs(http, api, action, body.clone()).await {
                return Some(v);
            }
        }
        None
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_during_run_task_load_never_over_commits() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (mut procs, apis) = start_three(dir.path(), &http).await;
    ecs_any(&http, &apis, "CreateCluster", json!({"clusterName": "k9"})).await;
    for i in 0..3 {
        ecs_any(
            &http,
            &apis,
            "RegisterContainerInstance",
            json!({"cluster": "k9", "instanceIdentityDocument": format!("{{\"instanceId\": \"i-k9-{i}\"}}"),
                   "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": 2048},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": 2000},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": []}
            ]}),
        )
        .await;
    }
    ecs_any(
        &http,
        &apis,
        "RegisterTaskDefinition",
        json!({"family": "k9", "containerDefinitions": [{"name": "c", "image": "x", "memory": 50, "cpu": 32,
            "portMappings": [{"containerPort": 1, "hostPort": 1}]}]}),
    )
    .await;
    ecs_any(
        &http,
        &apis,
        "RegisterTaskDefinition",
        json!({"family": "k9m", "containerDefinitions": [{"name": "c", "image": "x", "memory": 50, "cpu": 32}]}),
    )
    .await;

    tracing::info!("--- four clients place tasks round-robin over the nodes");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let answered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4usize {
        let (acked, answered, stop, http, apis) = (
            acked.clone(),
            answered.clone(),
            stop.clone(),
            http.clone(),
            apis.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut i = c;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                i += 1;
                let family = if i % 5 == 0 { "k9" } else { "k9m" };
                let body = json!({"cluster": "k9", "taskDefinition": family, "count": 1 + i % 4});
                if let Some(reply) = ecs(&http, &apis[i % apis.len()], "RunTask", body).await {
                    let mut acked = acked.lock().unwrap();
                    for t in reply["tasks"].as_array().unwrap() {
                        acked.push(t["taskArn"].as_str().unwrap().to_string());
                    }
                    answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }));
    }
    let answered_at_least = |n: usize| {
        let answered = answered.clone();
        move || {
            let answered = answered.clone();
            async move { (answered.load(std::sync::atomic::Ordering::SeqCst) >= n).then_some(()) }
        }
    };
    wait_for("RunTasks answered", Duration::from_secs(30), answered_at_least(20)).await;

    tracing::info!("--- kill -9 the leader under load, then restart it");
    let (leader, term) = kill_9_the_leader(&http, &apis, &mut procs).await;
    let victim = (leader - 1) as usize;
    wait_new_leader(&http, &apis, leader, term).await;
    let before = answered.load(std::sync::atomic::Ordering::SeqCst);
    wait_for(
        "RunTasks answered after the kill",
        Duration::from_secs(30),
        answered_at_least(before + 20),
    )
    .await;
    procs[victim].child = spawn(
        &procs[victim].config,
        &dir.path().join(format!("node-{}-restart.log", victim + 1)),
        &procs[victim].env,
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }

    tracing::info!("--- every acknowledged task exists once; no instance exceeds what it registered");
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let unique: BTreeSet<&String> = acked.iter().collect();
    assert_eq!(unique.len(), acked.len(), "a task was acknowledged twice");
    let mut per_instance: std::collections::BTreeMap<String, (i64, i64, usize)> = Default::default();
    for chunk in acked.chunks(100) {
        let d = ecs_any(&http, &apis, "DescribeTasks", json!({"cluster": "k9", "tasks": chunk})).await;
        assert_eq!(d["failures"], json!([]), "an acknowledged task is missing");
        for t in d["tasks"].as_array().unwrap() {
            let e = per_instance
                .entry(t["containerInstanceArn"].as_str().unwrap().to_string())
                .or_default();
            e.0 += 32;
            e.1 += 50;
            e.2 += usize::from(t["taskDefinitionArn"].as_str().unwrap().contains("/k9:"));
        }
    }
    let listed = ecs_any(&http, &apis, "ListContainerInstances", json!({"cluster": "k9"})).await;
    let described = ecs_any(
        &http,
        &apis,
        "DescribeContainerInstances",
        json!({"cluster": "k9", "containerInstances": listed["containerInstanceArns"]}),
    )
    .await;
    for i in described["containerInstances"].as_array().unwrap() {
        let arn = i["containerInstanceArn"].as_str().unwrap();
        let remaining = |name: &str| {
            i["remainingResources"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .and_then(|r| r["integerValue"].as_i64())
                .unwrap()
        };
        assert!(
            remaining("CPU") >= 0 && remaining("MEMORY") >= 0,
            "{arn} over-committed: {i}"
        );
        let (cpu, memory, ports) = per_instance.get(arn).copied().unwrap_or_default();
        assert!(
            cpu <= 2048 - remaining("CPU"),
            "{arn}: more CPU acknowledged than taken"
        );
        assert!(
            memory <= 2000 - remaining("MEMORY"),
            "{arn}: more memory acknowledged than taken"
        );
        assert!(ports <= 1, "{arn}: host port 1 held by {ports} tasks");
    }
}

/// The service of `name` in cluster `dp`, read from `api`.
async fn service_at(http: &reqwest::Client, api: &str, name: &str) -> Option<Value> {
    let d = ecs(
        http,
        api,
        "DescribeServices",
        json!({"cluster": "dp", "services": [name]}),
    )
    .await?;
    Some(d["services"][0].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_during_a_rolling_deployment_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let (mut procs, apis) = start_three(dir.path(), &http).await;
    ecs_any(&http, &apis, "CreateCluster", json!({"clusterName": "dp"})).await;

    tracing::info!("--- four simulated instances in one ecs-agent process");
    let endpoints: Vec<String> = apis.iter().map(|a| format!("http://{a}")).collect();
    let _agent = spawn_agent(
        &[
            "--runtime",
            "sim",
            "--instances",
            "4",
            "--cluster",
            "dp",
            "--cpu",
            "1024",
            "--memory",
            "1024",
            "--sim-start-ms",
            "300",
            "--heartbeat-ms",
            "500",
        ],
        &endpoints,
        &dir.path().join("agent.log"),
    );
    wait_for("four instances", Duration::from_secs(30), || async {
        let l = ecs(&http, &apis[0], "ListContainerInstances", json!({"cluster": "dp"})).await?;
        (l["containerInstanceArns"].as_array()?.len() == 4).then_some(())
    })
    .await;
    for memory in [128, 64] {
        ecs_any(
            &http,
            &apis,
            "RegisterTaskDefinition",
            json!({"family": "roll", "containerDefinitions": [{"name": "c", "image": "x", "memory": memory}]}),
        )
        .await;
    }
    ecs_any(
        &http,
        &apis,
        "CreateService",
        json!({"cluster": "dp", "serviceName": "web", "taskDefinition": "roll:1", "desiredCount": 8,
               "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 125}}),
    )
    .await;
    let stable = |td: &'static str, apis: Vec<String>| {
        let http = http.clone();
        move || {
            let (http, apis) = (http.clone(), apis.clone());
            async move {
                for api in &apis {
                    let Some(s) = service_at(&http, api, "web").await else {
                        continue;
                    };
                    let d = s["deployments"].as_array()?;
                    let done = d.len() == 1
                        && d[0]["taskDefinition"].as_str()?.ends_with(td)
                        && s["runningCount"] == 8
                        && s["pendingCount"] == 0;
                    return done.then_some(());
                }
                None
            }
        }
    };
    wait_for(
        "the service stable on roll:1",
        Duration::from_secs(60),
        stable("roll:1", apis.clone()),
    )
    .await;

    tracing::info!("--- roll out roll:2 (min 4, max 10 of 8); kill -9 the leader once it is under way");
    ecs_any(
        &http,
        &apis,
        "UpdateService",
        json!({"cluster": "dp", "service": "web", "taskDefinition": "roll:2"}),
    )
    .await;
    wait_for("the deployment under way", Duration::from_secs(30), || async {
        let s = service_at(&http, &apis[0], "web").await?;
        let d = s["deployments"].as_array()?;
        (d.len() == 2 && d[0]["pendingCount"].as_i64()? + d[0]["runningCount"].as_i64()? > 0).then_some(())
    })
    .await;
    let (leader, term) = kill_9_the_leader(&http, &apis, &mut procs).await;
    let victim = (leader - 1) as usize;
    wait_new_leader(&http, &apis, leader, term).await;
    let survivors: Vec<String> = apis
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, a)| a.clone())
        .collect();
    wait_for(
        "the deployment to complete under the new leader",
        Duration::from_secs(60),
        stable("roll:2", survivors.clone()),
    )
    .await;

    tracing::info!("--- exactly eight RUNNING tasks of roll:2: none extra, none missing");
    let list = ecs_any(
        &http,
        &survivors,
        "ListTasks",
        json!({"cluster": "dp", "serviceName": "web"}),
    )
    .await;
    let arns = list["taskArns"].as_array().unwrap().clone();
    assert_eq!(arns.len(), 8, "{list}");
    let d = ecs_any(
        &http,
        &survivors,
        "DescribeTasks",
        json!({"cluster": "dp", "tasks": arns}),
    )
    .await;
    for t in d["tasks"].as_array().unwrap() {
        assert_eq!(t["lastStatus"], "RUNNING", "{t}");
        assert!(t["taskDefinitionArn"].as_str().unwrap().ends_with("roll:2"), "{t}");
    }
}

/// A real `ecs-agent` with the process runtime: instance `i-restart` of cluster `pa`, which
/// keeps its container instance ARN in `state` (so a restart is the same instance).
fn spawn_process_agent(cluster: &TestCluster, state: &Path, logs: &Path, log: &Path) -> Guarded {
    let endpoints: Vec<String> = (1..=3).map(|id| cluster.url(id)).collect();
    let (state, logs) = (state.to_string_lossy(), logs.to_string_lossy());
    spawn_agent(
        &[
            "--runtime",
            "process",
            "--cluster",
            "pa",
            "--instance-id",
            "i-restart",
            "--cpu",
            "1024",
            "--memory",
            "1024",
            "--heartbeat-ms",
            "200",
            "--state-dir",
            &state,
            "--log-dir",
            &logs,
        ],
        &endpoints,
        log,
    )
}

/// (parent pid, command line) of a live process; `None` once it is gone or a zombie.
fn process(pid: u32) -> Option<(u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    let mut rest = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = rest.next()?;
    let ppid = rest.next()?.parse().ok()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ").trim().to_string();
    Some((ppid, cmdline))
}

/// The live children of `parent`, with their command lines.
fn children(parent: u32) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some((ppid, cmdline)) = process(pid) {
            if ppid == parent {
                found.push((pid, cmdline));
            }
        }
    }
    found
}

/// The pid of a process-runtime task's container, from its `runtimeId` (`pid-<n>`).
fn task_pid(task: &Value) -> u32 {
    task["containers"][0]["runtimeId"]
        .as_str()
        .and_then(|r| r.strip_prefix("pid-"))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no process runtime id: {task}"))
}

/// The process runtime does not adopt processes across an agent restart: its containers die
/// with the agent (parent-death signal), and the restarted agent, the same container instance,
/// starts the tasks still meant to run afresh and reports STOPPED those stopped meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_process_agent_runs_its_tasks_afresh_and_stops_those_stopped_meanwhile() {
    let cluster = TestCluster::start(3, |_| {}).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "pa"})).await;
    cluster
        .ok(
            2,
            "RegisterTaskDefinition",
            json!({"family": "sleeper", "containerDefinitions": [{
                "name": "main", "image": "busybox", "memory": 64, "command": ["sleep", "300"], "stopTimeout": 2
            }]}),
        )
        .await;
    let dir = tempfile::tempdir().unwrap();
    let (state, logs) = (dir.path().join("state"), dir.path().join("logs"));
    let mut agent = spawn_process_agent(&cluster, &state, &logs, &dir.path().join("agent-1.log"));
    let instance = wait_for("the agent registered", Duration::from_secs(30), || async {
        let l = cluster.ok(3, "ListContainerInstances", json!({"cluster": "pa"})).await;
        l["containerInstanceArns"].as_array()?.first().cloned()
    })
    .await;
    let describe = |arn: String| {
        let cluster = &cluster;
        async move {
            let d = cluster
                .ok(2, "DescribeTasks", json!({"cluster": "pa", "tasks": [arn]}))
                .await;
            d["tasks"][0].clone()
        }
    };
    let wait_status = |arn: String, status: &'static str| async move {
        wait_for(&format!("task {arn} {status}"), Duration::from_secs(30), || async {
            Some(describe(arn.clone()).await).filter(|t| t["lastStatus"] == status)
        })
        .await
    };

    tracing::info!("--- two tasks run as children of the agent");
    let run = cluster
        .ok(
            1,
            "RunTask",
            json!({"cluster": "pa", "taskDefinition": "sleeper", "count": 2}),
        )
        .await;
    assert_eq!(run["failures"], json!([]), "{run}");
    let arns: Vec<String> = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskArn"].as_str().unwrap().to_string())
        .collect();
    let (kept, stopped) = (arns[0].clone(), arns[1].clone());
    let mut old_pids = Vec::new();
    for arn in &arns {
        let pid = task_pid(&wait_status(arn.clone(), "RUNNING").await);
        let (ppid, cmdline) = process(pid).expect("the task's process runs");
        assert_eq!((ppid, cmdline.as_str()), (agent.pid(), "sleep 300"), "pid {pid}");
        old_pids.push(pid);
    }

    tracing::info!("--- kill -9 the agent: its task processes die with it, no orphan is left");
    agent.kill_9();
    wait_for("the tasks' processes gone", Duration::from_secs(30), || async {
        old_pids.iter().all(|pid| process(*pid).is_none()).then_some(())
    })
    .await;

    tracing::info!("--- a task is stopped while the agent is away");
    cluster
        .ok(3, "StopTask", json!({"cluster": "pa", "task": stopped}))
        .await;
    let away = describe(stopped.clone()).await;
    assert_eq!(
        (away["desiredStatus"].as_str(), away["lastStatus"].as_str()),
        (Some("STOPPED"), Some("RUNNING")),
        "nobody can report it stopped yet: {away}"
    );

    tracing::info!("--- the agent restarts: the same instance; the stopped task is reported STOPPED");
    let agent = spawn_process_agent(&cluster, &state, &logs, &dir.path().join("agent-2.log"));
    let gone = wait_status(stopped.clone(), "STOPPED").await;
    assert_eq!(gone["stopCode"], "UserInitiated", "{gone}");
    let listed = cluster.ok(1, "ListContainerInstances", json!({"cluster": "pa"})).await;
    assert_eq!(listed["containerInstanceArns"], json!([instance]), "the same instance");

    tracing::info!("--- the task still meant to run is started afresh: one new process, nothing else");
    let fresh = wait_for("the kept task started again", Duration::from_secs(30), || async {
        let now = children(agent.pid());
        (now.len() == 1 && now[0].1 == "sleep 300" && !old_pids.contains(&now[0].0)).then(|| now[0].0)
    })
    .await;
    assert_eq!(describe(kept.clone()).await["lastStatus"], "RUNNING");
    assert!(old_pids.iter().all(|pid| process(*pid).is_none()));
    let on_instance = cluster
        .ok(2, "ListTasks", json!({"cluster": "pa", "containerInstance": instance}))
        .await;
    assert_eq!(on_instance["taskArns"], json!([kept]), "{on_instance}");

    tracing::info!("--- and the restarted agent controls it: StopTask ends the new process");
    cluster.ok(1, "StopTask", json!({"cluster": "pa", "task": kept})).await;
    wait_status(kept.clone(), "STOPPED").await;
    wait_for("the new process gone", Duration::from_secs(30), || async {
        process(fresh).is_none().then_some(())
    })
    .await;
    assert!(children(agent.pid()).is_empty(), "{:?}", children(agent.pid()));
    drop(agent);
    cluster.shutdown().await;
}

/// libfaketime as Debian's `faketime` package installs it (the multi-threaded variant).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
const DAY_S: i64 = 24 * 60 * 60;

/// Three processes; node 1 (the leader: it bootstraps and adds the others) runs under
/// libfaketime, its wall clock right until [`step_clock`]. `None` when libfaketime is missing
/// (the test is skipped).
async fn start_three_under_faketime(
    test: &str,
    dir: &Path,
    http: &reqwest::Client,
) -> Option<(Vec<Proc>, Vec<String>)> {
    if !Path::new(LIBFAKETIME).exists() {
        let reason = format!("{LIBFAKETIME} is missing (apt-get install faketime)");
        crate::harness::skip(test, "ECSD_REQUIRE_FAKETIME", &reason);
        return None;
    }
    let clock = dir.join("node-1.clock");
    std::fs::write(&clock, "+0\n").unwrap();
    let extra = "[services]\nrestart_backoff_ms = 200\nrestart_backoff_max_ms = 400\nstopped_task_gc_every_ms = 200\n";
    let env_of = |id: u64| {
        if id != 1 {
            return Vec::new();
        }
        [
            ("LD_PRELOAD", LIBFAKETIME.to_string()),
            ("FAKETIME_TIMESTAMP_FILE", clock.display().to_string()),
            ("FAKETIME_CACHE_DURATION", "1".to_string()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
            ("DONT_FAKE_MONOTONIC", "1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    };
    Some(start_three_with(dir, http, extra, env_of).await)
}

/// Steps node 1's wall clock by `offset_s` (monotonic time stays real, as when NTP steps a
/// clock), waits until node 2 sees it, and checks that node 1 still leads and stamps writes with
/// the real time.
async fn step_clock(dir: &Path, http: &reqwest::Client, apis: &[String], offset_s: i64) {
    std::fs::write(dir.join("node-1.clock"), format!("{offset_s:+}s\n")).unwrap();
    wait_for(
        "node 2 to see node 1's clock stepped",
        Duration::from_secs(30),
        || async {
            let status = cluster_status(http, &apis[1]).await?;
            let member = status["members"].as_array()?.iter().find(|m| m["id"] == 1)?.clone();
            let offset = member["clock_offset_ms"].as_i64()?;
            ((offset - offset_s * 1000).abs() < 60_000).then_some(())
        },
    )
    .await;
    let leader = wait_for("a confirmed leader", Duration::from_secs(30), || {
        confirmed_leader(http, apis, &[])
    })
    .await;
    assert_eq!(leader.0, 1, "node 1 bootstrapped the cluster and still leads");
    let real = real_now_s;
    let td = json!({"family": "probe", "containerDefinitions": [{"name": "main", "image": "busybox", "memory": 16}]});
    let v = ecs(http, &apis[0], "RegisterTaskDefinition", td)
        .await
        .expect("register through node 1");
    let at = v["taskDefinition"]["registeredAt"].as_f64().unwrap();
    assert!(
        (at - real()).abs() < 30.0,
        "node 1 stamped {at}, not the real time {}; node 1's log:\n{}",
        real(),
        std::fs::read_to_string(dir.join("node-1.log")).unwrap_or_default()
    );
}

/// A cluster `c`, a task definition `td` and one container instance (no agent).
async fn clock_fixture(http: &reqwest::Client, apis: &[String]) {
    ecs_any(http, apis, "CreateCluster", json!({"clusterName": "c"})).await;
    let td = json!({"family": "td", "containerDefinitions": [{"name": "main", "image": "busybox", "memory": 16}]});
    ecs_any(http, apis, "RegisterTaskDefinition", td).await;
    let instance = json!({"cluster": "c", "totalResources": [
        {"name": "CPU", "type": "INTEGER", "integerValue": 1024},
        {"name": "MEMORY", "type": "INTEGER", "integerValue": 1024}]});
    ecs_any(http, apis, "RegisterContainerInstance", instance).await;
}

/// This machine's clock, in epoch seconds (the tests' processes run without libfaketime).
fn real_now_s() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Reports `task` STOPPED (it never ran), as its agent would.
async fn report_stopped(http: &reqwest::Client, apis: &[String], task: &str) {
    let body = json!({"cluster": "c", "task": task, "status": "STOPPED", "reason": "exited"});
    ecs_any(http, apis, "SubmitTaskStateChange", body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_two_days_ahead_expires_no_dedupe_record_and_forgets_no_task_early() {
    let test = "a_leader_two_days_ahead_expires_no_dedupe_record_and_forgets_no_task_early";
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let Some((_procs, apis)) = start_three_under_faketime(test, dir.path(), &http).await else {
        return;
    };
    clock_fixture(&http, &apis).await;

    tracing::info!("--- a service created with a client token, while every clock is right");
    let create = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "td", "desiredCount": 0,
        "clientToken": "token-1"});
    let first = ecs(&http, &apis[1], "CreateService", create.clone())
        .await
        .expect("CreateService");
    step_clock(dir.path(), &http, &apis, 2 * DAY_S).await;

    tracing::info!("--- writes through node 1, whose clock is two days ahead (each purges expired dedupe records)");
    for i in 0..20 {
        let td = json!({"family": format!("later-{i}"),
            "containerDefinitions": [{"name": "main", "image": "busybox", "memory": 16}]});
        ecs_any(&http, &apis[..1], "RegisterTaskDefinition", td).await;
    }
    tracing::info!("--- the retry with the same token gets the first answer, not a second creation");
    let retry = ecs(&http, &apis[2], "CreateService", create)
        .await
        .expect("the retry succeeds");
    assert_eq!(retry, first, "the dedupe record of the first request was expired early");

    tracing::info!("--- a task that stopped just now stays visible through many gc passes of the leader");
    let ran = ecs_any(&http, &apis, "RunTask", json!({"cluster": "c", "taskDefinition": "td"})).await;
    let task = ran["tasks"][0]["taskArn"].as_str().expect("a task").to_string();
    report_stopped(&http, &apis, &task).await;
    // Nothing is to happen here, so there is no condition to wait for: 25 passes of the
    // collector (every 200 ms) run meanwhile; one alone forgets the task if it measures its age
    // with node 1's clock.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let described = ecs_any(&http, &apis, "DescribeTasks", json!({"cluster": "c", "tasks": [task]})).await;
    assert_eq!(described["tasks"][0]["lastStatus"], "STOPPED", "{described}");
    let stopped_at = described["tasks"][0]["stoppedAt"].as_f64().unwrap();
    let real = real_now_s();
    assert!(
        (stopped_at - real).abs() < 30.0,
        "stoppedAt {stopped_at} is not now ({real})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_two_days_behind_does_not_stall_a_services_restarts() {
    let test = "a_leader_two_days_behind_does_not_stall_a_services_restarts";
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let Some((_procs, apis)) = start_three_under_faketime(test, dir.path(), &http).await else {
        return;
    };
    clock_fixture(&http, &apis).await;
    step_clock(dir.path(), &http, &apis, -2 * DAY_S).await;
    let create = json!({"cluster": "c", "serviceName": "web", "taskDefinition": "td", "desiredCount": 1});
    ecs_any(&http, &apis[1..], "CreateService", create).await;
    let list = json!({"cluster": "c", "serviceName": "web"});
    let mut stopped = BTreeSet::new();
    tracing::info!("--- the service's task stops before it runs, three times: each time a new one is started");
    for round in 0..3 {
        let task = wait_for(
            &format!("a new task of the service (round {round})"),
            Duration::from_secs(30),
            || {
                let (http, apis, list, stopped) = (http.clone(), apis.clone(), list.clone(), stopped.clone());
                async move {
                    let v = ecs(&http, &apis[1], "ListTasks", list).await?;
                    v["taskArns"]
                        .as_array()?
                        .iter()
                        .filter_map(Value::as_str)
                        .find(|t| !stopped.contains(*t))
                        .map(str::to_string)
                }
            },
        )
        .await;
        report_stopped(&http, &apis, &task).await;
        stopped.insert(task);
    }
}

/// A tmpfs of `mib` MiB mounted at a new directory under `dir`, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// `None` (the caller skips) unless this runs as root and the mount works.
    fn mount(dir: &Path, mib: u64) -> Option<Tmpfs> {
        let at = dir.join("tmpfs");
        std::fs::create_dir_all(&at).ok()?;
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        mounted.then_some(Tmpfs(at))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A task definition of about 30 KiB (a long environment value), family `fill-<i>`.
fn bulky_task_definition(i: usize) -> Value {
    json!({"family": format!("fill-{i}"), "containerDefinitions": [{"name": "main", "image": "busybox",
        "memory": 16, "environment": [{"name": "PADDING", "value": "x".repeat(30 * 1024)}]}]})
}

/// A scrape of `api`'s `/metrics`: the value of the unlabelled sample `name`.
async fn scraped(http: &reqwest::Client, api: &str, name: &str) -> Option<f64> {
    let page = http
        .get(format!("http://{api}/metrics"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn below_the_disk_watermark_writes_are_refused_and_a_full_disk_stops_the_node_non_zero() {
    let test = "below_the_disk_watermark_writes_are_refused_and_a_full_disk_stops_the_node_non_zero";
    let dir = tempfile::tempdir().unwrap();
    let Some(disk) = Tmpfs::mount(dir.path(), 192) else {
        crate::harness::skip(test, "ECSD_REQUIRE_ROOT", "mounting a tmpfs needs root");
        return;
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let data_dir = disk.0.join("node-1");
    let config = dir.path().join("node-1.toml");
    let log = |name: &str| dir.path().join(name);
    write_config(&config, 1, &data_dir, "127.0.0.1:0", "127.0.0.1:0", true, "");
    let start = |env: Vec<(String, String)>, log_name: &str| {
        let _ = std::fs::remove_file(data_dir.join("addresses.json"));
        spawn(&config, &log(log_name), &env)
    };
    let watermark = |mib: u64| vec![("ECSD_HEALTH_MIN_FREE_DISK_MIB".to_string(), mib.to_string())];

    tracing::info!("--- how much the node leaves free once it runs");
    let mut node = start(watermark(0), "node-1.log");
    let (api, _) = addresses(&data_dir).await;
    ecs_any(
        &http,
        std::slice::from_ref(&api),
        "CreateCluster",
        json!({"clusterName": "c"}),
    )
    .await;
    let free = wait_for("the free space on /metrics", Duration::from_secs(30), || {
        scraped(&http, &api, "ecsd_disk_free_bytes")
    })
    .await as u64;
    drop(node);

    tracing::info!("--- a watermark 16 MiB below that: writes go on, then are refused, reads are not");
    let floor = (free >> 20).saturating_sub(16);
    node = start(watermark(floor), "node-1-watermark.log");
    let (api, _) = addresses(&data_dir).await;
    let mut refused = None;
    for i in 0..2000 {
        let url = format!("http://{api}/");
        match ecsd_protocol::ecs::call(&http, &url, "RegisterTaskDefinition", &bulky_task_definition(i)).await {
            Ok(_) => continue,
            Err(ecsd_protocol::ecs::CallError::Status(reply)) => {
                refused = Some((i, reply.status, reply.body));
                break;
            }
            Err(e) => panic!("write {i}: {e}"),
        }
    }
    let (written, status, body) = refused.expect("writes were refused below the watermark");
    assert!(written > 0, "the first write was refused: {body}");
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["__type"], "ServerException", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("health.min_free_disk_mib"),
        "{body}"
    );
    let listed = ecs(&http, &api, "ListClusters", json!({})).await.expect("reads go on");
    assert_eq!(listed["clusterArns"].as_array().map(Vec::len), Some(1), "{listed}");
    let ready = http.get(format!("http://{api}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503, "/readyz fails its disk check");
    drop(node);

    tracing::info!("--- no watermark: the disk fills, RocksDB fails, and the node exits non-zero");
    let mut node = start(watermark(0), "node-1-full.log");
    let (api, _) = addresses(&data_dir).await;
    let mut exited = None;
    for i in 2000..20_000 {
        let _ = ecs(&http, &api, "RegisterTaskDefinition", bulky_task_definition(i)).await;
        if let Some(status) = node.0.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = exited.or_else(|| node.0.try_wait().unwrap()) {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node did not exit on a full disk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.code(), Some(1), "{status}");
    let text = std::fs::read_to_string(log("node-1-full.log")).unwrap();
    assert!(
        text.contains("raft stopped on an unrecoverable error"),
        "no clear log line in:\n{}",
        text.lines()
            .filter(|l| l.contains("ERROR") || l.contains("WARN") || l.contains("panicked") || l.starts_with("Error"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigterm_ends_a_shutdown_that_waits_for_a_held_write() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    // Node 1 of three whose others never start: no quorum, so a write is held (30 s here), and
    // a shutdown drains its connection for as long.
    let dead: Vec<std::net::TcpListener> = (0..4)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addr = |i: usize| dead[i].local_addr().unwrap().to_string();
    let members = format!(
        "[api]\nhold_ms = 30000\nrequest_timeout_ms = 60000\n\
         [[initial_members]]\nid = 2\napi_addr = \"{}\"\nraft_addr = \"{}\"\n\
         [[initial_members]]\nid = 3\napi_addr = \"{}\"\nraft_addr = \"{}\"\n",
        addr(0),
        addr(1),
        addr(2),
        addr(3)
    );
    drop(dead);
    let data_dir = dir.path().join("node-1");
    let config = dir.path().join("node-1.toml");
    write_config(&config, 1, &data_dir, "127.0.0.1:0", "127.0.0.1:0", true, "");
    let (api, raft) = {
        let mut probe = spawn(&config, &dir.path().join("probe.log"), &[]);
        let bound = addresses(&data_dir).await;
        probe.0.kill().unwrap();
        let _ = probe.0.wait();
        bound
    };
    std::fs::remove_dir_all(&data_dir).unwrap();
    let me = format!("[[initial_members]]\nid = 1\napi_addr = \"{api}\"\nraft_addr = \"{raft}\"\n");
    write_config(&config, 1, &data_dir, &api, &raft, true, &format!("{members}{me}"));
    let mut node = spawn(&config, &dir.path().join("node-1.log"), &[]);
    addresses(&data_dir).await;

    tracing::info!("--- a write, held for want of a leader");
    let held = {
        let (http, api) = (http.clone(), api.clone());
        tokio::spawn(async move {
            ecsd_protocol::ecs::call(
                &http,
                &format!("http://{api}/"),
                "CreateCluster",
                &json!({"clusterName": "held"}),
            )
            .await
        })
    };
    wait_for("the held write in flight", Duration::from_secs(30), || async {
        // The scrape itself is one of the requests in flight.
        (scraped(&http, &api, "ecsd_api_requests_in_flight").await? >= 2.0).then_some(())
    })
    .await;

    tracing::info!("--- SIGTERM: the shutdown waits for the held write; a second SIGTERM ends it");
    let pid = node.pid().to_string();
    let term = || Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(term().success());
    let first = std::time::Instant::now();
    // The first signal's shutdown drains the held write's connection for up to its 30 s hold.
    while first.elapsed() < Duration::from_secs(2) {
        assert!(
            node.0.try_wait().unwrap().is_none(),
            "the node exited before its held write was answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(term().success());
    let second = std::time::Instant::now();
    let status = loop {
        if let Some(status) = node.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            second.elapsed() < Duration::from_secs(5),
            "a second SIGTERM did not end the node"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(130), "{status}");
    let log = std::fs::read_to_string(dir.path().join("node-1.log")).unwrap();
    assert!(
        log.contains("a second signal: exiting without finishing the shutdown"),
        "{log}"
    );
    held.abort();
}
