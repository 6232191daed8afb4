//! The workloads' operations: set, monotonic, idempotency, register (with the minority-reads
//! weakening) and scheduling, and their setup and final reads.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecs_jepsen::checkers::{read_journal, running_at_end};
use ecs_jepsen::client::{Client, Outcome};
use ecs_jepsen::history::{OpType, Recorder, Row};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use crate::*;

pub(crate) fn row(process: u64, f: &str, key: &str, value: Value, node: &str) -> Row {
    Row {
        process,
        f: f.into(),
        key: Some(key.into()),
        value,
        error: None,
        node: Some(node.into()),
    }
}

/// Records the completion of a mutation; true if it was indeterminate.
pub(crate) fn complete_mutation(recorder: &Recorder, mut r: Row, outcome: &Outcome) -> bool {
    let (kind, error) = match outcome {
        Outcome::Ok(_) => (OpType::Ok, None),
        Outcome::Refused(e) => (OpType::Fail, Some(e.clone())),
        Outcome::Unknown(e) => (OpType::Info, Some(e.clone())),
    };
    r.error = error;
    recorder.record(kind, r);
    kind == OpType::Info
}

pub(crate) async fn set_op(
    client: &Client,
    url: &str,
    recorder: &Recorder,
    process: u64,
    rng: &mut StdRng,
    names: &AtomicU64,
) -> bool {
    if rng.gen_bool(0.8) {
        let name = format!("s-{}", names.fetch_add(1, Ordering::SeqCst));
        let r = row(process, "add", SET_KEY, json!(name), url);
        recorder.record(OpType::Invoke, r.clone());
        let outcome = client.call(url, "CreateCluster", json!({"clusterName": name})).await;
        complete_mutation(recorder, r, &outcome)
    } else {
        read_set(client, url, recorder, process).await;
        false
    }
}

/// Reads every `s-` cluster (all pages); a failed read is a `fail` (it changed nothing).
pub(crate) async fn read_set(client: &Client, url: &str, recorder: &Recorder, process: u64) {
    let r = row(process, "read", SET_KEY, Value::Null, url);
    recorder.record(OpType::Invoke, r.clone());
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"maxResults": 100});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        match client.read(url, "ListClusters", body).await {
            Outcome::Ok(v) => {
                for arn in v["clusterArns"].as_array().into_iter().flatten() {
                    let name = arn.as_str().unwrap_or_default().rsplit('/').next().unwrap_or_default();
                    if name.starts_with("s-") {
                        names.push(json!(name));
                    }
                }
                token = v["nextToken"].as_str().map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
            Outcome::Refused(e) | Outcome::Unknown(e) => {
                let mut done = r;
                done.error = Some(e);
                recorder.record(OpType::Fail, done);
                return;
            }
        }
    }
    let mut done = r;
    done.value = Value::Array(names);
    recorder.record(OpType::Ok, done);
}

/// Registers a new revision of a family (its id), or reads the family's latest revision.
pub(crate) async fn monotonic_op(
    client: &Client,
    url: &str,
    recorder: &Recorder,
    process: u64,
    rng: &mut StdRng,
) -> bool {
    let family = format!("jm{}", rng.gen_range(0..FAMILIES));
    if !rng.gen_bool(0.5) {
        read_revision(client, url, recorder, process, &family).await;
        return false;
    }
    let r = row(process, "register", &family, Value::Null, url);
    recorder.record(OpType::Invoke, r.clone());
    let body = json!({"family": family, "containerDefinitions": [{"name": "c", "image": "x", "memory": 8}]});
    let outcome = client.call(url, "RegisterTaskDefinition", body).await;
    let mut done = r;
    if let Outcome::Ok(v) = &outcome {
        done.value = v["taskDefinition"]["revision"].clone();
    }
    complete_mutation(recorder, done, &outcome)
}

/// Reads the latest revision of `family`; a failed read is a `fail`.
pub(crate) async fn read_revision(client: &Client, url: &str, recorder: &Recorder, process: u64, family: &str) {
    let body = json!({"taskDefinition": family});
    read_value(
        client,
        (url, recorder, process),
        family,
        "DescribeTaskDefinition",
        body,
        |v| v["taskDefinition"]["revision"].clone(),
    )
    .await;
}

/// One read of `key` with `action`: `ok` with what `extract` finds in the answer, or `fail`
/// (a read changes nothing, so even a timeout is a definite failure).
pub(crate) async fn read_value(
    client: &Client,
    (url, recorder, process): (&str, &Recorder, u64),
    key: &str,
    action: &str,
    body: Value,
    extract: impl Fn(&Value) -> Value,
) {
    let r = row(process, "read", key, Value::Null, url);
    recorder.record(OpType::Invoke, r.clone());
    let mut done = r;
    match client.read(url, action, body).await {
        Outcome::Ok(v) => {
            done.value = extract(&v);
            recorder.record(OpType::Ok, done);
        }
        Outcome::Refused(e) | Outcome::Unknown(e) => {
            done.error = Some(e);
            recorder.record(OpType::Fail, done);
        }
    }
}

/// Registers the task definition and three roomy container instances (API-only) that the
/// idempotency workload's tasks go to.
pub(crate) async fn setup_idempotency(client: &Client, url: &str) -> Result<(), String> {
    let definition = json!({"family": "jidem", "containerDefinitions": [{"name": "c", "image": "x", "memory": 8}]});
    setup_call(client, url, "RegisterTaskDefinition", definition).await?;
    for k in 0..3 {
        let body = json!({"cluster": "jepsen", "instanceIdentityDocument": format!("{{\"instanceId\": \"i-jepsen-{k}\"}}"),
            "totalResources": [{"name": "CPU", "type": "INTEGER", "integerValue": 1_000_000},
                               {"name": "MEMORY", "type": "INTEGER", "integerValue": 10_000_000}]});
        setup_call(client, url, "RegisterContainerInstance", body).await?;
    }
    Ok(())
}

/// A setup call: retried while its outcome is unknown (for up to a minute), an error if refused.
pub(crate) async fn setup_call(client: &Client, url: &str, action: &str, body: Value) -> Result<Value, String> {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match client.call(url, action, body.clone()).await {
            Outcome::Ok(v) => return Ok(v),
            Outcome::Refused(e) => return Err(format!("setup {action}: {e}")),
            Outcome::Unknown(e) if Instant::now() > until => return Err(format!("setup {action}: {e}")),
            Outcome::Unknown(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// One RunTask named by its `startedBy`, retried with the same client token on the next node
/// while its outcome is unknown; true if it stayed unknown.
pub(crate) async fn run_once(
    client: &Client,
    urls: &[String],
    worker: usize,
    recorder: &Recorder,
    process: u64,
    seed: u64,
    n: u64,
) -> bool {
    let name = format!("i-{n}");
    let body = json!({"cluster": "jepsen", "taskDefinition": "jidem", "startedBy": name,
                      "clientToken": format!("ej-{seed:x}-{n}"), "count": 1});
    let r = row(process, "run", IDEM_KEY, json!(name), &urls[worker % urls.len()]);
    recorder.record(OpType::Invoke, r.clone());
    let mut outcome = Outcome::Unknown("not sent".into());
    for attempt in 0..6 {
        let url = &urls[(worker + attempt) % urls.len()];
        outcome = client.call(url, "RunTask", body.clone()).await;
        if !matches!(outcome, Outcome::Unknown(_)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // An answer that started no task is a definite failure.
    if let Outcome::Ok(v) = &outcome {
        if v["tasks"].as_array().is_none_or(Vec::is_empty) {
            outcome = Outcome::Refused(format!("no task started: {}", v["failures"]));
        }
    }
    complete_mutation(recorder, r, &outcome)
}

/// Reads the `startedBy` of every task of cluster `jepsen` meant to run (all pages).
pub(crate) async fn read_started_by(client: &Client, url: &str, recorder: &Recorder, process: u64) -> bool {
    let r = row(process, "tasks", IDEM_KEY, Value::Null, url);
    recorder.record(OpType::Invoke, r.clone());
    let mut done = r;
    let mut started = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = json!({"cluster": "jepsen", "maxResults": 100});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let page = match client.read(url, "ListTasks", body).await {
            Outcome::Ok(v) => v,
            Outcome::Refused(e) | Outcome::Unknown(e) => {
                done.error = Some(e);
                recorder.record(OpType::Fail, done);
                return false;
            }
        };
        let arns = page["taskArns"].clone();
        if arns.as_array().is_some_and(|a| !a.is_empty()) {
            match client
                .read(url, "DescribeTasks", json!({"cluster": "jepsen", "tasks": arns}))
                .await
            {
                Outcome::Ok(d) => {
                    for t in d["tasks"].as_array().into_iter().flatten() {
                        started.push(t["startedBy"].clone());
                    }
                }
                Outcome::Refused(e) | Outcome::Unknown(e) => {
                    done.error = Some(e);
                    recorder.record(OpType::Fail, done);
                    return false;
                }
            }
        }
        token = page["nextToken"].as_str().map(str::to_string);
        if token.is_none() {
            break;
        }
    }
    done.value = Value::Array(started);
    recorder.record(OpType::Ok, done);
    true
}

/// The minority self-test's shared view: the nodes a partition cuts off now, and when a write
/// was last acknowledged.
pub(crate) struct Minority {
    pub(crate) cut_off: Arc<Mutex<Vec<usize>>>,
    pub(crate) last_ack: Mutex<Option<Instant>>,
    pub(crate) start: Instant,
}

/// Writes are invoked in the first 600 ms of every 2 s, reads in the last 800 ms.
pub(crate) const MINORITY_CYCLE_MS: u128 = 2_000;
/// A read waits this long after the last acknowledged write: far longer than a connected
/// follower takes to apply it (a heartbeat is 100 ms), far shorter than a partition holds.
pub(crate) const MINORITY_QUIET: Duration = Duration::from_millis(500);

impl Minority {
    /// One operation of the minority self-test: a write of a unique value through a node that
    /// is not cut off, or a stale read of the cut-off node. True if it was indeterminate.
    pub(crate) async fn op(
        &self,
        client: &Client,
        urls: &[String],
        (recorder, process): (&Recorder, u64),
        arn: &str,
        plan: &mut RegisterPlan,
    ) -> bool {
        let phase = self.start.elapsed().as_millis() % MINORITY_CYCLE_MS;
        let cut_off = self.cut_off.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if phase < 600 {
            plan.turn += 1;
            let value = (plan.turn * plan.workers + plan.worker) as i64;
            let n = urls.len();
            let Some(node) = (0..n)
                .map(|k| (plan.worker as usize + k) % n + 1)
                .find(|i| !cut_off.contains(i))
            else {
                return false;
            };
            let outcome = write_register(client, &urls[node - 1], (recorder, process), "r0", value, arn).await;
            if matches!(outcome, Outcome::Ok(_)) {
                *self.last_ack.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
            }
            return matches!(outcome, Outcome::Unknown(_));
        }
        let quiet = self
            .last_ack
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|t| t.elapsed() >= MINORITY_QUIET);
        if phase >= 1_200 && quiet && !cut_off.is_empty() {
            let node = cut_off[plan.worker as usize % cut_off.len()];
            read_register(client, &urls[node - 1], recorder, process, "r0", arn).await;
        }
        false
    }
}

/// How a client chooses its register operations.
pub(crate) struct RegisterPlan {
    pub(crate) self_test: bool,
    pub(crate) turn: u64,
    pub(crate) worker: u64,
    pub(crate) workers: u64,
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn register_op(
    client: &Client,
    url: &str,
    recorder: &Recorder,
    process: u64,
    rng: &mut StdRng,
    arn: &str,
    plan: &mut RegisterPlan,
) -> bool {
    // The self-test writes and then reads one key, turn about, so that every client of a
    // partitioned node reads right after its write timed out, while the majority writes on.
    // Its values are unique, so a stale read cannot pass for a write of the same value (a
    // CI run with values 0..5 once let every stale read through that way).
    let (key, write) = if plan.self_test {
        plan.turn += 1;
        ("r0".to_string(), plan.turn % 2 == 1)
    } else {
        (format!("r{}", rng.gen_range(0..REGISTER_KEYS)), rng.gen_bool(0.5))
    };
    if write {
        let value = if plan.self_test {
            (plan.turn * plan.workers + plan.worker) as i64
        } else {
            rng.gen_range(0..5i64)
        };
        let outcome = write_register(client, url, (recorder, process), &key, value, arn).await;
        matches!(outcome, Outcome::Unknown(_))
    } else {
        read_register(client, url, recorder, process, &key, arn).await;
        false
    }
}

/// Writes `value` to register `key` (a tag of the cluster `arn`), recorded; returns the outcome.
pub(crate) async fn write_register(
    client: &Client,
    url: &str,
    (recorder, process): (&Recorder, u64),
    key: &str,
    value: i64,
    arn: &str,
) -> Outcome {
    let r = row(process, "write", key, json!(value), url);
    recorder.record(OpType::Invoke, r.clone());
    let body = json!({"resourceArn": arn, "tags": [{"key": key, "value": value.to_string()}]});
    let outcome = client.call(url, "TagResource", body).await;
    complete_mutation(recorder, r, &outcome);
    outcome
}

pub(crate) async fn read_register(client: &Client, url: &str, recorder: &Recorder, process: u64, key: &str, arn: &str) {
    let body = json!({"resourceArn": arn});
    read_value(
        client,
        (url, recorder, process),
        key,
        "ListTagsForResource",
        body,
        |v| {
            v["tags"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|t| t["key"] == key)
                .and_then(|t| t["value"].as_str())
                .and_then(|s| s.parse::<i64>().ok())
                .map_or(Value::Null, Value::from)
        },
    )
    .await;
}

/// Creates the scheduling workload's cluster, task definition and services, and starts the
/// sim agent (its instances registered and ACTIVE before this returns). Each service's
/// creation is recorded as the first write of its desired-count register.
pub(crate) async fn setup_scheduling(
    client: &Client,
    urls: &[String],
    recorder: &Recorder,
    agent: &Path,
    run_dir: &Path,
    security: Option<&ecs_jepsen::secure::Security>,
) -> Result<Reaped, String> {
    let url = &urls[0];
    setup_call(client, url, "CreateCluster", json!({"clusterName": SCHED_CLUSTER})).await?;
    let definition = json!({"family": SCHED_CLUSTER,
        "containerDefinitions": [{"name": "c", "image": "x", "cpu": 256, "memory": 256}]});
    setup_call(client, url, "RegisterTaskDefinition", definition).await?;
    let log = std::fs::File::create(run_dir.join("agent.log")).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut command = std::process::Command::new(agent);
    let mut endpoints: Vec<String> = urls.to_vec();
    if let Some(security) = security {
        // The agents' own key (role agent) and certificate, of the same name.
        let key = client.create_key(url, ecs_jepsen::secure::AGENTS, "agent").await?;
        let (ca, cert, private) = security.agent_files(ecs_jepsen::secure::AGENTS);
        command
            .arg("--ca-file")
            .arg(ca)
            .arg("--cert-file")
            .arg(cert)
            .arg("--key-file")
            .arg(private)
            .env("AWS_ACCESS_KEY_ID", &key.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &key.secret_access_key);
        endpoints = urls.iter().map(|u| client.url(u)).collect();
    }
    let child = command
        .args([
            "--runtime",
            "sim",
            "--cluster",
            SCHED_CLUSTER,
            "--instance-id",
            "i-jsim",
        ])
        .args(["--instances", &SIM_INSTANCES.to_string()])
        .args([
            "--cpu",
            &SIM_CAPACITY.0.to_string(),
            "--memory",
            &SIM_CAPACITY.1.to_string(),
        ])
        .args(["--heartbeat-ms", "500", "--endpoint", &endpoints.join(",")])
        .arg("--sim-journal")
        .arg(run_dir.join("agents.jsonl"))
        .arg("--log-dir")
        .arg(run_dir.join("agent-logs"))
        .env("RUST_LOG", "ecsd=info")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("{}: {e}", agent.display()))?;
    let agents = Reaped(child);
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let listed = client
            .read(
                url,
                "ListContainerInstances",
                json!({"cluster": SCHED_CLUSTER, "status": "ACTIVE"}),
            )
            .await;
        if let Outcome::Ok(v) = listed {
            if v["containerInstanceArns"].as_array().map_or(0, Vec::len) >= SIM_INSTANCES {
                break;
            }
        }
        if Instant::now() > until {
            return Err(format!(
                "the sim agent's {SIM_INSTANCES} instances did not register within 60 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for k in 0..SERVICES {
        let r = row(900_000 + k as u64, "write", &format!("svc{k}"), json!(2), url);
        recorder.record(OpType::Invoke, r.clone());
        let body = json!({"cluster": SCHED_CLUSTER, "serviceName": format!("sv{k}"),
                          "taskDefinition": SCHED_CLUSTER, "desiredCount": 2,
                          "clientToken": format!("jsched-sv{k}")});
        setup_call(client, url, "CreateService", body).await?;
        recorder.record(OpType::Ok, r);
    }
    Ok(agents)
}

/// One scheduling operation: set a service's desired count (a register write), read it, run
/// an ad-hoc task, or stop one.
pub(crate) async fn sched_op(client: &Client, url: &str, recorder: &Recorder, process: u64, rng: &mut StdRng) -> bool {
    let k = rng.gen_range(0..SERVICES);
    match rng.gen_range(0..10) {
        0..=3 => {
            let count = rng.gen_range(0..=5i64);
            let r = row(process, "write", &format!("svc{k}"), json!(count), url);
            recorder.record(OpType::Invoke, r.clone());
            let body = json!({"cluster": SCHED_CLUSTER, "service": format!("sv{k}"), "desiredCount": count});
            let outcome = client.call(url, "UpdateService", body).await;
            complete_mutation(recorder, r, &outcome)
        }
        4..=6 => {
            read_desired(client, url, recorder, process, k).await;
            false
        }
        7 | 8 => {
            let r = row(process, "run-adhoc", SCHED_KEY, Value::Null, url);
            recorder.record(OpType::Invoke, r.clone());
            let body = json!({"cluster": SCHED_CLUSTER, "taskDefinition": SCHED_CLUSTER, "count": 1,
                              "startedBy": "jrun"});
            let outcome = client.call(url, "RunTask", body).await;
            complete_mutation(recorder, r, &outcome)
        }
        _ => {
            let listed = client
                .read(url, "ListTasks", json!({"cluster": SCHED_CLUSTER, "startedBy": "jrun"}))
                .await;
            let Outcome::Ok(v) = listed else { return false };
            let arns: Vec<&Value> = v["taskArns"].as_array().into_iter().flatten().collect();
            if arns.is_empty() {
                return false;
            }
            let arn = arns[rng.gen_range(0..arns.len())].clone();
            let r = row(process, "stop-adhoc", SCHED_KEY, arn.clone(), url);
            recorder.record(OpType::Invoke, r.clone());
            let outcome = client
                .call(url, "StopTask", json!({"cluster": SCHED_CLUSTER, "task": arn}))
                .await;
            complete_mutation(recorder, r, &outcome)
        }
    }
}

/// Reads service `k`'s desired count (the register `svc<k>`).
pub(crate) async fn read_desired(client: &Client, url: &str, recorder: &Recorder, process: u64, k: usize) {
    let body = json!({"cluster": SCHED_CLUSTER, "services": [format!("sv{k}")]});
    read_value(
        client,
        (url, recorder, process),
        &format!("svc{k}"),
        "DescribeServices",
        body,
        |v| v["services"][0]["desiredCount"].clone(),
    )
    .await;
}

/// After healing: stops the ad-hoc tasks, waits (up to two minutes) for every service to run
/// its desired count in one deployment, recording a `converge` row per service, then for the tasks the cluster says are
/// RUNNING to be exactly those the agents run (an `agree` row).
pub(crate) async fn converge(client: &Client, urls: &[String], recorder: &Recorder, process: u64, run_dir: &Path) {
    let until = Instant::now() + Duration::from_secs(120);
    // Ad-hoc tasks may fill every instance; they are stopped first, so that the services'
    // tasks have room.
    let mut stopper = process + 2;
    while Instant::now() < until {
        let listed = client
            .read(
                &urls[0],
                "ListTasks",
                json!({"cluster": SCHED_CLUSTER, "startedBy": "jrun"}),
            )
            .await;
        let Outcome::Ok(v) = listed else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let arns: Vec<Value> = v["taskArns"].as_array().cloned().unwrap_or_default();
        if arns.is_empty() {
            break;
        }
        for arn in arns {
            let r = row(stopper, "stop-adhoc", SCHED_KEY, arn.clone(), &urls[0]);
            recorder.record(OpType::Invoke, r.clone());
            let outcome = client
                .call(&urls[0], "StopTask", json!({"cluster": SCHED_CLUSTER, "task": arn}))
                .await;
            if complete_mutation(recorder, r, &outcome) {
                stopper += 1_000;
            }
        }
        // The stops take effect when the agents report them: list again after a pause.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for k in 0..SERVICES {
        let r = row(
            process,
            "converge",
            SCHED_KEY,
            json!(format!("sv{k}")),
            &urls[k % urls.len()],
        );
        recorder.record(OpType::Invoke, r.clone());
        let body = json!({"cluster": SCHED_CLUSTER, "services": [format!("sv{k}")]});
        let mut last = String::from("no answer");
        let mut done = r;
        loop {
            if let Outcome::Ok(v) = client
                .read(&urls[k % urls.len()], "DescribeServices", body.clone())
                .await
            {
                let s = &v["services"][0];
                let (desired, running, pending) = (&s["desiredCount"], &s["runningCount"], &s["pendingCount"]);
                let deployments = s["deployments"].as_array().map_or(0, Vec::len);
                last = format!("desired {desired}, running {running}, pending {pending}, {deployments} deployments");
                if desired == running && pending == 0 && deployments == 1 {
                    done.value = json!({"service": format!("sv{k}"), "desired": desired, "running": running});
                    recorder.record(OpType::Ok, done);
                    break;
                }
            }
            if Instant::now() > until {
                done.error = Some(format!("not converged after healing: {last}"));
                recorder.record(OpType::Fail, done);
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let r = row(process + 1, "agree", SCHED_KEY, Value::Null, &urls[0]);
    recorder.record(OpType::Invoke, r.clone());
    let until = Instant::now() + Duration::from_secs(30);
    let mut done = r;
    loop {
        let cluster = running_in_cluster(client, &urls[0]).await;
        let agents = read_journal(&run_dir.join("agents.jsonl")).map(|j| running_at_end(&j));
        match (cluster, agents) {
            (Ok(cluster), Ok(agents)) => {
                done.value = json!({"cluster": cluster, "agents": agents});
                if cluster == agents || Instant::now() > until {
                    recorder.record(OpType::Ok, done);
                    return;
                }
            }
            (Err(e), _) | (_, Err(e)) if Instant::now() > until => {
                done.error = Some(e);
                recorder.record(OpType::Fail, done);
                return;
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The ids of the scheduling cluster's tasks whose last status is RUNNING.
pub(crate) async fn running_in_cluster(
    client: &Client,
    url: &str,
) -> Result<std::collections::BTreeSet<String>, String> {
    let listed = client
        .read(url, "ListTasks", json!({"cluster": SCHED_CLUSTER, "maxResults": 100}))
        .await;
    let arns = match listed {
        Outcome::Ok(v) => v["taskArns"].clone(),
        Outcome::Refused(e) | Outcome::Unknown(e) => return Err(e),
    };
    if arns.as_array().is_none_or(Vec::is_empty) {
        return Ok(Default::default());
    }
    match client
        .read(url, "DescribeTasks", json!({"cluster": SCHED_CLUSTER, "tasks": arns}))
        .await
    {
        Outcome::Ok(v) => Ok(v["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["lastStatus"] == "RUNNING")
            .filter_map(|t| t["taskArn"].as_str()?.rsplit('/').next().map(str::to_string))
            .collect()),
        Outcome::Refused(e) | Outcome::Unknown(e) => Err(e),
    }
}
