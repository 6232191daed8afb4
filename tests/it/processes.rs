//! Nodes as separate OS processes of the real binary: `kill -9` of the leader during a stream
//! of writes loses no acknowledged write.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{list_cluster_names, wait_for};

struct Proc {
    child: Child,
    config: PathBuf,
}

fn write_config(path: &Path, id: u64, data_dir: &Path, api: &str, raft: &str, bootstrap: bool) {
    let text = format!(
        "node_id = {id}\ndata_dir = \"{}\"\napi_addr = \"{api}\"\nraft_addr = \"{raft}\"\nbootstrap = {bootstrap}\n",
        data_dir.display()
    );
    std::fs::write(path, text).unwrap();
}

fn spawn(config: &Path, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    Command::new(env!("CARGO_BIN_EXE_ecsd"))
        .args(["serve", "--config"])
        .arg(config)
        .env("RUST_LOG", "ecsd=info,openraft=error")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn ecsd")
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_leader_loses_no_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut procs = Vec::new();
    let mut apis = Vec::new();

    tracing::info!("--- start three processes on OS-chosen ports; node 1 bootstraps, 2 and 3 join");
    for id in 1..=3u64 {
        let data_dir = dir.path().join(format!("node-{id}"));
        let config = dir.path().join(format!("node-{id}.toml"));
        write_config(&config, id, &data_dir, "127.0.0.1:0", "127.0.0.1:0", id == 1);
        let child = spawn(&config, &dir.path().join(format!("node-{id}.log")));
        let (api, raft) = addresses(&data_dir).await;
        // Pin the chosen ports so the node restarts on the addresses the membership records.
        write_config(&config, id, &data_dir, &api, &raft, id == 1);
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
        procs.push(Proc { child, config });
        apis.push(api);
    }

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
                let request = http
                    .post(format!("{url}/"))
                    .header("x-amz-target", "AmazonEC2ContainerServiceV20141113.CreateCluster")
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

    tracing::info!("--- kill -9 the leader");
    let leader = wait_for("a leader", Duration::from_secs(10), || async {
        cluster_status(&http, &apis[0]).await?["leader"].as_u64()
    })
    .await;
    let victim = (leader - 1) as usize;
    procs[victim].child.kill().unwrap();
    procs[victim].child.wait().unwrap();
    *killed_at.lock().unwrap() = Some(Instant::now());
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
    );
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let victim_api = apis[victim].clone();
    wait_for("the restarted node to serve", Duration::from_secs(30), || async {
        let response = http
            .post(format!("http://{victim_api}/"))
            .header("x-amz-target", "AmazonEC2ContainerServiceV20141113.ListClusters")
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

    for p in &mut procs {
        let _ = p.child.kill();
        let _ = p.child.wait();
    }
}
