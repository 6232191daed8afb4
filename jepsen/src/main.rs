//! `ecs-jepsen`: runs a Jepsen-style test against real `ecsd` nodes, or re-checks a stored run.
//!
//! `ecs-jepsen test --nodes 3 --workload register,set --nemesis partition,kill --time-limit 30`
//! builds the network-namespace topology, starts the nodes, runs client processes from the
//! control namespace while the nemesis injects faults, heals, does final reads, checks the
//! history and writes `results/<timestamp>/` (history.jsonl, summary.json, node logs).
//! `ecs-jepsen check results/<run>` checks a stored history again.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ecs_jepsen::checkers::{availability, idempotency, median_window, register_ops, set, unique_ids, SetReport};
use ecs_jepsen::client::{Client, Outcome};
use ecs_jepsen::db::{api_url, Db};
use ecs_jepsen::history::{read_jsonl, write_jsonl, Op, OpType, Recorder, Row};
use ecs_jepsen::linear::{check_partitioned, Register, Verdict};
use ecs_jepsen::netns::{self, Netns};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

#[derive(Parser)]
#[command(about = "Fault injection and consistency checking for ecsd, the way Jepsen does it")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs a test and checks its history.
    Test(TestArgs),
    /// Checks the history of a stored run again.
    Check { run: PathBuf },
}

#[derive(clap::Args, Clone)]
struct TestArgs {
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    /// Only `netns` is built so far (it needs root).
    #[arg(long, default_value = "netns")]
    backend: String,
    /// Comma-separated: register, set, monotonic, idempotency.
    #[arg(long, default_value = "register,set")]
    workload: String,
    /// Comma-separated: partition, kill, pause, or none.
    #[arg(long, default_value = "partition,kill")]
    nemesis: String,
    #[arg(long, default_value_t = 30)]
    time_limit: u64,
    /// Operations per second, over all clients.
    #[arg(long, default_value_t = 30.0)]
    rate: f64,
    #[arg(long, default_value_t = 6)]
    concurrency: usize,
    #[arg(long)]
    seed: Option<u64>,
    /// The ecsd binary (default: `ecsd` beside this program).
    #[arg(long)]
    ecsd: Option<PathBuf>,
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// The self-test: `stale-reads` makes every read ask for the node's local state, without
    /// read-index; a run must then report a violation (that is how a green run means something).
    #[arg(long)]
    weaken: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test(args),
        Command::Check { run } => check_run(&run),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ecs-jepsen: {e}");
            ExitCode::from(2)
        }
    }
}

const SET_KEY: &str = "set";
const REGISTER_KEYS: usize = 4;
/// Task definition families of the monotonic workload.
const FAMILIES: usize = 2;
const IDEM_KEY: &str = "idem";

fn test(args: TestArgs) -> Result<bool, String> {
    if args.backend != "netns" {
        return Err(format!("backend {}: only netns is built so far", args.backend));
    }
    if !netns::available() {
        return Err("the netns backend needs root and `ip netns`".into());
    }
    let seed = args.seed.unwrap_or_else(rand::random);
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let run_dir = args.results.join(format!("{stamp}-{seed}"));
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    let ecsd = match &args.ecsd {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| e.to_string())?
            .with_file_name("ecsd"),
    };
    println!(
        "ecs-jepsen: {} nodes, workload {}, nemesis {}, {} s, seed {seed}; results in {}",
        args.nodes,
        args.workload,
        args.nemesis,
        args.time_limit,
        run_dir.display()
    );
    let net = Arc::new(Netns::create(args.nodes)?);
    let db = Arc::new(Mutex::new(Db::start(&net, &ecsd, &run_dir)?));
    // Clients and nemesis act from the control host, as Jepsen's control node does.
    Netns::enter(&net.control_ns())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    // Ctrl-C or SIGTERM ends the run early; the topology and the nodes are still torn down.
    let rows = runtime.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            rows = run(args.clone(), seed, net.clone(), db.clone()) => rows,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
            _ = term.recv() => Err("terminated".to_string()),
        }
    });
    drop(runtime);
    let rows = rows?;
    write_jsonl(&run_dir.join("history.jsonl"), &rows).map_err(|e| e.to_string())?;
    std::fs::write(run_dir.join("workload"), &args.workload).map_err(|e| e.to_string())?;
    let valid = check(&rows, &args.workload, &run_dir)?;
    drop(db);
    drop(net);
    Ok(valid)
}

fn check_run(run: &Path) -> Result<bool, String> {
    let rows = read_jsonl(&run.join("history.jsonl"))?;
    let workload = std::fs::read_to_string(run.join("workload")).unwrap_or_else(|_| "register,set".into());
    check(&rows, workload.trim(), run)
}

/// Checks `rows`, writes `summary.json` into `dir`, prints a summary; true if all is valid.
fn check(rows: &[Op], workload: &str, dir: &Path) -> Result<bool, String> {
    let mut summary = serde_json::Map::new();
    let mut valid = true;
    let oks = rows.iter().filter(|r| r.kind == OpType::Ok).count();
    let infos = rows.iter().filter(|r| r.kind == OpType::Info).count();
    summary.insert(
        "operations".into(),
        json!({"rows": rows.len(), "ok": oks, "info": infos}),
    );
    if workload.contains("register") {
        let ops: Vec<_> = register_ops(rows)
            .into_iter()
            .filter(|(k, _)| k.starts_with('r'))
            .collect();
        let count = ops.len();
        let verdict = check_partitioned(&Register, ops, Duration::from_secs(120));
        let (ok, text) = match &verdict {
            Verdict::Linearizable => (Some(true), "linearizable".to_string()),
            Verdict::Unknown => (None, "unknown (time budget)".to_string()),
            Verdict::NotLinearizable { witness } => (Some(false), format!("NOT linearizable: {witness}")),
        };
        valid &= ok == Some(true);
        println!("  register: {count} operations, {text}");
        summary.insert(
            "register".into(),
            json!({"valid": ok, "operations": count, "verdict": text}),
        );
    }
    if workload.contains("set") {
        let r: SetReport = set(&rows_of(rows, |k| k == SET_KEY));
        let line = format!(
            "{} acknowledged, {} lost, {} duplicated, {} unexpected, {} stale, {} final reads",
            r.acknowledged,
            r.lost.len(),
            r.duplicated.len(),
            r.unexpected.len(),
            r.stale.len(),
            r.final_reads
        );
        valid &= keep(&mut summary, "set", r.valid, &line, &r)?;
    }
    if workload.contains("idempotency") {
        let r = idempotency(&rows_of(rows, |k| k == IDEM_KEY));
        let line = format!(
            "{} acknowledged, {} duplicated, {} lost, {} refused but applied",
            r.acknowledged,
            r.duplicated.len(),
            r.lost.len(),
            r.refused_but_applied.len()
        );
        valid &= keep(&mut summary, "idempotency", r.valid, &line, &r)?;
    }
    if workload.contains("monotonic") {
        let r = unique_ids(&rows_of(rows, |k| k.starts_with("jm")));
        let line = format!(
            "{} revisions acknowledged, {} handed out twice, {} seen going backwards, {} lost",
            r.acknowledged,
            r.duplicated.len(),
            r.backwards.len(),
            r.lost.len()
        );
        valid &= keep(&mut summary, "monotonic", r.valid, &line, &r)?;
    }
    let report = availability(rows);
    print!(
        "  availability: {:.1} ok/s, latency p50 {:.1} ms, p99 {:.1} ms",
        report.ok_per_s, report.latency_p50_ms, report.latency_p99_ms
    );
    for fault in ["partition", "kill", "pause"] {
        for (leader, who) in [(true, "leader"), (false, "follower")] {
            if let Some(ms) = median_window(&report, fault, leader) {
                print!("; {fault} of the {who}: median window {ms:.0} ms");
            }
        }
    }
    println!();
    summary.insert(
        "availability".into(),
        serde_json::to_value(&report).map_err(|e| e.to_string())?,
    );
    summary.insert("valid".into(), json!(valid));
    std::fs::write(
        dir.join("summary.json"),
        serde_json::to_string_pretty(&Value::Object(summary)).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    println!("ecs-jepsen: {}", if valid { "valid" } else { "INVALID" });
    Ok(valid)
}

/// The rows of one workload: those whose key `belongs`.
fn rows_of(rows: &[Op], belongs: impl Fn(&str) -> bool) -> Vec<Op> {
    rows.iter()
        .filter(|r| r.key.as_deref().is_some_and(&belongs))
        .cloned()
        .collect()
}

/// Prints one checker's line and keeps its report in the summary; returns its validity.
fn keep<T: serde::Serialize>(
    summary: &mut serde_json::Map<String, Value>,
    name: &str,
    valid: bool,
    line: &str,
    report: &T,
) -> Result<bool, String> {
    println!("  {name}: {line}: {}", if valid { "valid" } else { "INVALID" });
    summary.insert(name.into(), serde_json::to_value(report).map_err(|e| e.to_string())?);
    Ok(valid)
}

/// The process id the nemesis records under.
const NEMESIS: u64 = u64::MAX;

async fn run(args: TestArgs, seed: u64, net: Arc<Netns>, db: Arc<Mutex<Db>>) -> Result<Vec<Op>, String> {
    let stale = match args.weaken.as_deref() {
        None => false,
        Some("stale-reads") => true,
        Some(other) => return Err(format!("--weaken {other}: only stale-reads is known")),
    };
    let client = Client::new(Duration::from_secs(5), stale);
    let urls: Vec<String> = (1..=args.nodes).map(api_url).collect();
    wait_for_leader(&client, &urls, Duration::from_secs(60)).await?;
    let created = setup_call(&client, &urls[0], "CreateCluster", json!({"clusterName": "jepsen"})).await?;
    let cluster_arn = created["cluster"]["clusterArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let workloads: Vec<String> = args.workload.split(',').map(|w| w.trim().to_string()).collect();
    if workloads.iter().any(|w| w == "idempotency") {
        setup_idempotency(&client, &urls[0]).await?;
    }
    let recorder = Recorder::default();
    let deadline = Instant::now() + Duration::from_secs(args.time_limit);
    let names = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (client, urls, recorder, workloads, names, arn) = (
            client.clone(),
            urls.clone(),
            recorder.clone(),
            workloads.clone(),
            names.clone(),
            cluster_arn.clone(),
        );
        let pause = Duration::from_secs_f64(args.concurrency as f64 / args.rate.max(0.1));
        let concurrency = args.concurrency as u64;
        workers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (w as u64 + 1));
            let mut plan = RegisterPlan {
                self_test: stale,
                turn: 0,
            };
            let mut process = w as u64;
            let url = &urls[w % urls.len()];
            while Instant::now() < deadline {
                let workload = &workloads[rng.gen_range(0..workloads.len())];
                let info = if workload == "set" {
                    set_op(&client, url, &recorder, process, &mut rng, &names).await
                } else if workload == "monotonic" {
                    monotonic_op(&client, url, &recorder, process, &mut rng).await
                } else if workload == "idempotency" {
                    let n = names.fetch_add(1, Ordering::SeqCst);
                    run_once(&client, &urls, w, &recorder, process, seed, n).await
                } else {
                    register_op(&client, url, &recorder, process, &mut rng, &arn, &mut plan).await
                };
                if info {
                    // An indeterminate operation retires the process, as in Jepsen.
                    process += concurrency;
                }
                tokio::time::sleep(pause.mul_f64(rng.gen_range(0.5..1.5))).await;
            }
        }));
    }
    let nemesis = tokio::spawn(nemesis(
        args.nemesis.clone(),
        seed,
        deadline,
        net.clone(),
        db.clone(),
        recorder.clone(),
        client.clone(),
        urls.clone(),
    ));
    for w in workers {
        let _ = w.await;
    }
    let _ = nemesis.await;
    // Heal everything, bring every node back, then read what is there.
    net.heal()?;
    db.lock().unwrap_or_else(|p| p.into_inner()).recover(&net)?;
    wait_for_leader(&client, &urls, Duration::from_secs(60)).await?;
    let final_process = 1_000_000;
    for (i, url) in urls.iter().enumerate() {
        if workloads.iter().any(|w| w == "set") {
            read_set(&client, url, &recorder, final_process + i as u64).await;
        }
        if i == 0 && workloads.iter().any(|w| w == "idempotency") {
            for attempt in 0..5u64 {
                if read_started_by(&client, url, &recorder, final_process + 300 + attempt).await {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if workloads.iter().any(|w| w == "monotonic") {
            for k in 0..FAMILIES {
                read_revision(
                    &client,
                    url,
                    &recorder,
                    final_process + 200 + i as u64,
                    &format!("jm{k}"),
                )
                .await;
            }
        }
        if workloads.iter().any(|w| w == "register") {
            for k in 0..REGISTER_KEYS {
                read_register(
                    &client,
                    url,
                    &recorder,
                    final_process + 100 + i as u64,
                    &format!("r{k}"),
                    &cluster_arn,
                )
                .await;
            }
        }
    }
    Ok(recorder.rows())
}

async fn wait_for_leader(client: &Client, urls: &[String], within: Duration) -> Result<(), String> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        for url in urls {
            if client.leader(url).await.is_some() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err("no leader within the time allowed".into())
}

fn row(process: u64, f: &str, key: &str, value: Value, node: &str) -> Row {
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
fn complete_mutation(recorder: &Recorder, mut r: Row, outcome: &Outcome) -> bool {
    let (kind, error) = match outcome {
        Outcome::Ok(_) => (OpType::Ok, None),
        Outcome::Refused(e) => (OpType::Fail, Some(e.clone())),
        Outcome::Unknown(e) => (OpType::Info, Some(e.clone())),
    };
    r.error = error;
    recorder.record(kind, r);
    kind == OpType::Info
}

async fn set_op(
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
async fn read_set(client: &Client, url: &str, recorder: &Recorder, process: u64) {
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
async fn monotonic_op(client: &Client, url: &str, recorder: &Recorder, process: u64, rng: &mut StdRng) -> bool {
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
async fn read_revision(client: &Client, url: &str, recorder: &Recorder, process: u64, family: &str) {
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
async fn read_value(
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
async fn setup_idempotency(client: &Client, url: &str) -> Result<(), String> {
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
async fn setup_call(client: &Client, url: &str, action: &str, body: Value) -> Result<Value, String> {
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
async fn run_once(
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
async fn read_started_by(client: &Client, url: &str, recorder: &Recorder, process: u64) -> bool {
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

/// How a client chooses its register operations.
struct RegisterPlan {
    self_test: bool,
    turn: u64,
}

#[allow(clippy::too_many_arguments)]
async fn register_op(
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
    let (key, write) = if plan.self_test {
        plan.turn += 1;
        ("r0".to_string(), plan.turn % 2 == 1)
    } else {
        (format!("r{}", rng.gen_range(0..REGISTER_KEYS)), rng.gen_bool(0.5))
    };
    if write {
        let value = rng.gen_range(0..5i64);
        let r = row(process, "write", &key, json!(value), url);
        recorder.record(OpType::Invoke, r.clone());
        let body = json!({"resourceArn": arn, "tags": [{"key": key, "value": value.to_string()}]});
        let outcome = client.call(url, "TagResource", body).await;
        complete_mutation(recorder, r, &outcome)
    } else {
        read_register(client, url, recorder, process, &key, arn).await;
        false
    }
}

async fn read_register(client: &Client, url: &str, recorder: &Recorder, process: u64, key: &str, arn: &str) {
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

#[allow(clippy::too_many_arguments)]
async fn nemesis(
    faults: String,
    seed: u64,
    deadline: Instant,
    net: Arc<Netns>,
    db: Arc<Mutex<Db>>,
    recorder: Recorder,
    client: Client,
    urls: Vec<String>,
) {
    let faults: Vec<&str> = faults
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty() && *f != "none")
        .collect();
    if faults.is_empty() {
        return;
    }
    let mut rng = StdRng::seed_from_u64(seed.rotate_left(17));
    let n = urls.len();
    let note = |what: &str, value: Value| {
        recorder.record(
            OpType::Info,
            Row {
                process: NEMESIS,
                f: what.into(),
                key: None,
                value,
                error: None,
                node: None,
            },
        )
    };
    loop {
        let wait = Duration::from_secs_f64(rng.gen_range(5.0..10.0));
        if Instant::now() + wait >= deadline {
            return;
        }
        tokio::time::sleep(wait).await;
        let fault = faults[rng.gen_range(0..faults.len())];
        let current = client.leader(&urls[rng.gen_range(0..n)]).await;
        let target = match current {
            Some(l) if rng.gen_bool(0.5) => l as usize,
            _ => rng.gen_range(1..=n),
        };
        let is_leader = current == Some(target as u64);
        match fault {
            "partition" => {
                let others: Vec<usize> = (1..=n).filter(|i| *i != target).collect();
                note("start-partition", json!({"node": target, "leader": is_leader}));
                if let Err(e) = net.partition(&[vec![target], others]) {
                    eprintln!("nemesis: {e}");
                }
            }
            "kill" => {
                note("start-kill", json!({"node": target, "leader": is_leader}));
                db.lock().unwrap_or_else(|p| p.into_inner()).kill(target);
            }
            "pause" => {
                note("start-pause", json!({"node": target, "leader": is_leader}));
                db.lock().unwrap_or_else(|p| p.into_inner()).pause(target);
            }
            other => {
                eprintln!("nemesis: {other} is not built yet");
                continue;
            }
        }
        let hold =
            Duration::from_secs_f64(rng.gen_range(5.0..10.0)).min(deadline.saturating_duration_since(Instant::now()));
        tokio::time::sleep(hold).await;
        let _ = net.heal();
        let recovered = db.lock().unwrap_or_else(|p| p.into_inner()).recover(&net);
        if let Err(e) = recovered {
            eprintln!("nemesis: {e}");
        }
        note(&format!("stop-{fault}"), json!({"node": target}));
    }
}
