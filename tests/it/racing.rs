//! Racing RunTasks from many clients through every node while the leader goes away: the
//! requests are in flight while the leader stops and a new one is elected, and still no
//! instance is ever over-committed and no acknowledged task is lost.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::harness::{strings, wait_for, TestCluster};

/// Instances, and what each registers: every task reserves 100 MiB, so an instance holds
/// exactly `PER_INSTANCE` tasks whatever the mix, and the cluster `CAPACITY`.
const INSTANCES: u64 = 3;
const CPU: i64 = 3000;
const MEMORY: i64 = 3000;
const PER_INSTANCE: usize = 30;
const CAPACITY: usize = PER_INSTANCE * INSTANCES as usize;
/// What a task of each family reserves: (CPU, MEMORY, host port 9000).
const MEM_TASK: (i64, i64, bool) = (100, 100, false);
const PORT_TASK: (i64, i64, bool) = (0, 100, true);

async fn call(http: &reqwest::Client, url: &str, action: &str, body: Value) -> Option<(u16, Value)> {
    let reply = ecsd_protocol::ecs::send(ecsd_protocol::ecs::request(http, &format!("{url}/"), action), &body)
        .await
        .ok()?;
    (!reply.body.is_null()).then_some((reply.status, reply.body))
}

/// One RunTask as a client saw it.
struct Sent {
    issued: Instant,
    status: Option<u16>,
    tasks: Vec<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_run_tasks_through_a_leader_change_never_over_commit() {
    // Writes that arrive while there is no leader are held (not failed) until one is elected.
    let mut cluster = TestCluster::start(INSTANCES, |c| c.api.hold_ms = 20_000).await;
    cluster.leader().await;
    cluster.ok(1, "CreateCluster", json!({"clusterName": "race"})).await;
    for i in 0..INSTANCES {
        cluster
            .ok(
                (i % 3) + 1,
                "RegisterContainerInstance",
                json!({"cluster": "race", "totalResources": [
                    {"name": "CPU", "type": "INTEGER", "integerValue": CPU},
                    {"name": "MEMORY", "type": "INTEGER", "integerValue": MEMORY},
                    {"name": "PORTS", "type": "STRINGSET", "stringSetValue": []}
                ]}),
            )
            .await;
    }
    cluster
        .ok(
            2,
            "RegisterTaskDefinition",
            json!({"family": "mem", "containerDefinitions": [{"name": "c", "image": "x",
                "memory": MEM_TASK.1, "cpu": MEM_TASK.0}]}),
        )
        .await;
    cluster
        .ok(
            3,
            "RegisterTaskDefinition",
            json!({"family": "port", "containerDefinitions": [{"name": "c", "image": "x", "memory": PORT_TASK.1,
                "portMappings": [{"containerPort": 80, "hostPort": 9000}]}]}),
        )
        .await;

    // Clients send one RunTask per permit of `gate`, so the test decides how many requests
    // go out in each phase (and the cluster cannot fill up before the leader goes away).
    let urls: Vec<String> = (1..=INSTANCES).map(|id| cluster.url(id)).collect();
    let gate = Arc::new(Semaphore::new(0));
    let stop = CancellationToken::new();
    let issued = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    // The node clients leave alone while it is down (0: none).
    let down = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for c in 0..6usize {
        let (urls, gate, stop, issued, finished, down) = (
            urls.clone(),
            gate.clone(),
            stop.clone(),
            issued.clone(),
            finished.clone(),
            down.clone(),
        );
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap();
            let mut sent: Vec<Sent> = Vec::new();
            let mut n = c;
            loop {
                tokio::select! {
                    permit = gate.acquire() => permit.unwrap().forget(),
                    _ = stop.cancelled() => break,
                }
                n += 1;
                let mut target = n % urls.len();
                if down.load(Ordering::SeqCst) == target as u64 + 1 {
                    target = (target + 1) % urls.len();
                }
                let family = if n % 4 == 0 { "port" } else { "mem" };
                let body = json!({"cluster": "race", "taskDefinition": family, "count": 1 + n % 3});
                let sent_at = Instant::now();
                issued.fetch_add(1, Ordering::SeqCst);
                let reply = call(&http, &urls[target], "RunTask", body).await;
                let tasks = match &reply {
                    Some((200, reply)) => reply["tasks"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|t| t["taskArn"].as_str().unwrap().to_string())
                        .collect(),
                    _ => Vec::new(),
                };
                sent.push(Sent {
                    issued: sent_at,
                    status: reply.map(|(s, _)| s),
                    tasks,
                });
                finished.fetch_add(1, Ordering::SeqCst);
            }
            sent
        }));
    }
    let finished_at_least = |n: usize| {
        let finished = finished.clone();
        move || {
            let finished = finished.clone();
            async move { (finished.load(Ordering::SeqCst) >= n).then_some(()) }
        }
    };

    // At most 3 tasks a request: 8 + 6 + 6 requests ask for at most 60 of the 90 places, so
    // there is room left for every request of the leader change and after it.
    tracing::info!("--- phase 1: 8 RunTasks under a stable leader");
    gate.add_permits(8);
    wait_for("phase 1 answered", Duration::from_secs(60), finished_at_least(8)).await;
    let (old_leader, old_term) = cluster.leader_and_term().await;

    tracing::info!(
        old_leader,
        "--- phase 2: 6 RunTasks in flight when the leader shuts down"
    );
    gate.add_permits(6);
    wait_for("phase 2 sent", Duration::from_secs(30), || async {
        (issued.load(Ordering::SeqCst) >= 8 + 6).then_some(())
    })
    .await;
    // The shutdown runs beside the clients: it can take a while (it waits for the requests it
    // still holds), and the election can be over before it returns.
    let node = cluster.nodes.remove(&old_leader).expect("the leader runs");
    let shutdown = tokio::spawn(node.shutdown());
    let stop_began = Instant::now();
    down.store(old_leader, Ordering::SeqCst);

    tracing::info!("--- phase 3: 6 RunTasks sent while the old leader goes away, through the election");
    gate.add_permits(6);
    let (new_leader, new_term) = cluster.leader_and_term().await;
    let elected = Instant::now();
    assert!(
        new_leader != old_leader && new_term > old_term,
        "after leader {old_leader} of term {old_term}: leader {new_leader} in term {new_term}"
    );
    shutdown.await.unwrap();

    tracing::info!(
        new_leader,
        "--- phase 4: the old leader returns; clients run until the cluster is full"
    );
    gate.add_permits(Semaphore::MAX_PERMITS / 2);
    cluster.restart(old_leader).await;
    down.store(0, Ordering::SeqCst);
    wait_for("the cluster full", Duration::from_secs(60), || async {
        let c = cluster
            .ok_retrying(new_leader, "DescribeClusters", json!({"clusters": ["race"]}))
            .await;
        let held = c["clusters"][0]["pendingTasksCount"].as_u64().unwrap()
            + c["clusters"][0]["runningTasksCount"].as_u64().unwrap();
        (held >= CAPACITY as u64).then_some(())
    })
    .await;
    stop.cancel();
    let mut sent = Vec::new();
    for client in clients {
        sent.extend(client.await.unwrap());
    }

    tracing::info!("--- the race really crossed the leader change");
    let phase = |from: Instant, to: Instant| -> Vec<(Option<u16>, usize)> {
        sent.iter()
            .filter(|s| s.issued >= from && s.issued < to)
            .map(|s| (s.status, s.tasks.len()))
            .collect()
    };
    // Sent after the old leader began to go away and before a new one was known: held
    // through the election, then placed.
    let while_down = phase(stop_began, elected);
    tracing::info!(
        ?while_down,
        "RunTasks sent during the leader change: (status, tasks placed)"
    );
    assert!(
        while_down
            .iter()
            .any(|(status, placed)| *status == Some(200) && *placed > 0),
        "no RunTask sent during the leader change placed a task: {while_down:?}"
    );
    assert!(
        sent.iter().any(|s| s.issued >= elected && !s.tasks.is_empty()),
        "tasks were placed after the new leader was elected"
    );

    tracing::info!("--- every acknowledged task exists");
    let acked: Vec<String> = sent.iter().flat_map(|s| s.tasks.clone()).collect();
    for chunk in acked.chunks(100) {
        let d = cluster
            .ok_retrying(3, "DescribeTasks", json!({"cluster": "race", "tasks": chunk}))
            .await;
        assert_eq!(d["failures"], json!([]), "an acknowledged task is missing");
    }

    tracing::info!("--- no instance holds more than it has, and the books balance");
    // Every task of the cluster (acknowledged or not: a timed-out reply may have placed some).
    let mut all: Vec<String> = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = json!({"cluster": "race"});
        if let Some(t) = &token {
            req["nextToken"] = json!(t);
        }
        let page = cluster.ok_retrying(1, "ListTasks", req).await;
        all.extend(strings(&page["taskArns"]));
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let stopped = cluster
        .ok_retrying(1, "ListTasks", json!({"cluster": "race", "desiredStatus": "STOPPED"}))
        .await;
    assert_eq!(stopped["taskArns"], json!([]), "no task of this test is stopped");
    let total = all.len();
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), total, "ListTasks lists a task twice");
    let acked_set: BTreeSet<&String> = acked.iter().collect();
    assert!(acked_set.is_subset(&unique), "an acknowledged task is not listed");
    // Per instance: (CPU, MEMORY, port tasks, tasks) of the tasks it holds.
    let mut held: BTreeMap<String, (i64, i64, usize, usize)> = BTreeMap::new();
    for chunk in all.chunks(100) {
        let d = cluster
            .ok_retrying(3, "DescribeTasks", json!({"cluster": "race", "tasks": chunk}))
            .await;
        assert_eq!(d["failures"], json!([]), "{d}");
        for t in d["tasks"].as_array().unwrap() {
            assert_ne!(t["lastStatus"], "STOPPED", "{t}");
            let (cpu, memory, port) = if t["taskDefinitionArn"].as_str().unwrap().contains("/port:") {
                PORT_TASK
            } else {
                MEM_TASK
            };
            let entry = held
                .entry(t["containerInstanceArn"].as_str().unwrap().to_string())
                .or_default();
            entry.0 += cpu;
            entry.1 += memory;
            entry.2 += usize::from(port);
            entry.3 += 1;
        }
    }
    let listed = cluster
        .ok_retrying(1, "ListContainerInstances", json!({"cluster": "race"}))
        .await;
    let instances = cluster
        .ok_retrying(
            2,
            "DescribeContainerInstances",
            json!({"cluster": "race", "containerInstances": listed["containerInstanceArns"]}),
        )
        .await;
    let instances = instances["containerInstances"].as_array().unwrap();
    assert_eq!(instances.len(), INSTANCES as usize);
    let mut counted = 0;
    for i in instances {
        let arn = i["containerInstanceArn"].as_str().unwrap();
        let resource = |set: &str, name: &str| -> Value {
            i[set]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("{arn}: no {name} in {set}: {i}"))
        };
        let remaining = |name: &str| resource("remainingResources", name)["integerValue"].as_i64().unwrap();
        assert_eq!(resource("registeredResources", "CPU")["integerValue"], CPU);
        assert_eq!(resource("registeredResources", "MEMORY")["integerValue"], MEMORY);
        let (cpu, memory, ports, tasks) = held.get(arn).copied().unwrap_or_default();
        assert!(cpu <= CPU, "{arn} over-committed: its tasks reserve {cpu} CPU of {CPU}");
        assert!(
            memory <= MEMORY,
            "{arn} over-committed: its tasks reserve {memory} MiB of {MEMORY}"
        );
        assert!(ports <= 1, "{arn}: {ports} tasks hold host port 9000");
        assert!(
            tasks <= PER_INSTANCE,
            "{arn} holds {tasks} tasks, room for {PER_INSTANCE}"
        );
        assert_eq!(
            remaining("CPU"),
            CPU - cpu,
            "{arn}: remaining CPU is not registered - reserved: {i}"
        );
        assert_eq!(
            remaining("MEMORY"),
            MEMORY - memory,
            "{arn}: remaining memory is not registered - reserved: {i}"
        );
        let remaining_ports: Vec<String> = resource("remainingResources", "PORTS")["stringSetValue"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p.as_str().unwrap().to_string())
            .collect();
        let expected_ports: Vec<String> = if ports == 1 { vec!["9000".into()] } else { vec![] };
        assert_eq!(remaining_ports, expected_ports, "{arn}: reserved host ports");
        let counts = i["pendingTasksCount"].as_u64().unwrap() + i["runningTasksCount"].as_u64().unwrap();
        assert_eq!(counts, tasks as u64, "{arn}: task counts");
        counted += tasks;
    }
    assert_eq!(counted, total, "every task is on a registered instance");
    assert_eq!(
        total, CAPACITY,
        "the full cluster holds exactly what its capacity allows ({CAPACITY} tasks of 100 MiB)"
    );
    assert!(total >= acked.len());
    cluster.shutdown().await;
}
