//! `ecs-jepsen`: runs a Jepsen-style test against real `ecsd` nodes, or re-checks a stored run.
//!
//! `ecs-jepsen test --nodes 3 --workload all --nemesis partition,kill,pause --time-limit 120`
//! builds the topology (network namespaces as root, else TCP proxies), starts the nodes, runs
//! client processes while the nemesis injects faults, heals, does final reads, checks the
//! history and writes `results/<timestamp>-<seed>/` (history.jsonl, summary.json,
//! timeline.svg, node logs). `ecs-jepsen check results/<run>` checks a stored run again.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use ecs_jepsen::checkers::{
    availability, idempotency, median_window, read_journal, register_ops, running_at_end, scheduling, set, unique_ids,
    SetReport,
};
use ecs_jepsen::client::{Client, Outcome};
use ecs_jepsen::db::Db;
use ecs_jepsen::history::{read_jsonl, write_jsonl, Op, OpType, Recorder, Row};
use ecs_jepsen::linear::{check_partitioned, Register, Verdict};
use ecs_jepsen::nemesis::{self, Nemesis};
use ecs_jepsen::netns::{self, Netns};
use ecs_jepsen::topology::{ProxyNet, Topology};
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
    /// `netns` (root: a network namespace per node, faults in iptables) or `proxy` (no root:
    /// nodes on 127.0.0.1, a TCP proxy per directed link). Default: netns as root, else proxy.
    #[arg(long)]
    backend: Option<String>,
    /// Comma-separated: register, set, monotonic, idempotency, scheduling, or all.
    #[arg(long, default_value = "register,set")]
    workload: String,
    /// Comma-separated: partition, kill, pause, member, loss, clock, or none.
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
    /// The ecsd binary (default: `ecsd` beside this program; `ecs-agent` is found beside it).
    #[arg(long)]
    ecsd: Option<PathBuf>,
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Faults the run must see, comma-separated: a package of `--nemesis` (one of its faults
    /// started), or `<package>-leader` (one aimed at a node that confirmed it led, while which
    /// another node came to lead in a newer term). They come first; the run fails without them.
    #[arg(long, default_value = "none")]
    require_faults: String,
    /// The fewest successful client operations each workload must have (a register also needs
    /// a successful read); the run fails with fewer.
    #[arg(long, default_value_t = 1)]
    min_ok: usize,
    /// The self-tests; a run must then report a violation (that is how a green run means
    /// something). `stale-reads`: every read asks for the node's local state, without
    /// read-index. `minority-reads`: reads are stale too, and go only to the nodes a partition
    /// cuts off, only while it holds, and only when no write was acknowledged for 500 ms (far
    /// longer than replication takes), so only a real partition makes them stale. Register
    /// workload only.
    #[arg(long)]
    weaken: Option<String>,
}

/// How a run was asked for, kept beside its history (`run.json`) so that `check` judges a
/// stored run the same way.
#[derive(serde::Serialize, serde::Deserialize, Clone, Default)]
struct RunSpec {
    workloads: Vec<String>,
    #[serde(default)]
    nemesis: Vec<String>,
    #[serde(default)]
    require_faults: Vec<nemesis::Requirement>,
    #[serde(default)]
    min_ok: usize,
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
/// The scheduling workload: its cluster, services, sim instances and what each offers.
const SCHED_KEY: &str = "sched";
const SCHED_CLUSTER: &str = "jsched";
const SERVICES: usize = 2;
const SIM_INSTANCES: usize = 4;
const SIM_CAPACITY: (i64, i64) = (1024, 1024);
const WORKLOADS: [&str; 5] = ["register", "set", "monotonic", "idempotency", "scheduling"];

/// Parses `--workload`: a comma-separated list, or `all`.
fn workloads(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for w in list.split(',').map(str::trim).filter(|w| !w.is_empty()) {
        if w == "all" {
            out.extend(WORKLOADS.iter().map(|w| w.to_string()));
        } else if WORKLOADS.contains(&w) {
            out.push(w.to_string());
        } else {
            return Err(format!(
                "--workload {w}: expected some of {} or all",
                WORKLOADS.join(",")
            ));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    out.retain(|w| seen.insert(w.clone()));
    if out.is_empty() {
        return Err("--workload: name at least one workload".into());
    }
    Ok(out)
}

fn test(args: TestArgs) -> Result<bool, String> {
    let chosen = workloads(&args.workload)?;
    let packages = nemesis::parse(&args.nemesis)?;
    let required = nemesis::parse_requirements(&args.require_faults, &packages)?;
    let weaken = Weaken::parse(args.weaken.as_deref())?;
    if weaken == Weaken::MinorityReads && (chosen != ["register"] || !packages.iter().any(|p| p == "partition")) {
        return Err("--weaken minority-reads: needs --workload register and the partition nemesis".into());
    }
    if !(1..=9).contains(&args.nodes) {
        return Err(format!("--nodes {}: 1 to 9", args.nodes));
    }
    let backend = args
        .backend
        .clone()
        .unwrap_or_else(|| if netns::available() { "netns" } else { "proxy" }.into());
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
        "ecs-jepsen: {} nodes ({backend}), workload {}, nemesis {}, {} s, seed {seed}; results in {}",
        args.nodes,
        chosen.join(","),
        args.nemesis,
        args.time_limit,
        run_dir.display()
    );
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    };
    let (net, runtime): (Arc<dyn Topology>, tokio::runtime::Runtime) = match backend.as_str() {
        "netns" => {
            if !netns::available() {
                return Err("the netns backend needs root and `ip netns` (try --backend proxy)".into());
            }
            let net = Netns::create(args.nodes)?;
            // Clients and nemesis act from the control host, as Jepsen's control node does;
            // the runtime's threads, made after this, are there too.
            Netns::enter(&net.control_ns())?;
            (Arc::new(net), runtime()?)
        }
        "proxy" => {
            let runtime = runtime()?;
            let net = runtime.block_on(ProxyNet::start(args.nodes))?;
            (Arc::new(net), runtime)
        }
        other => return Err(format!("--backend {other}: netns or proxy")),
    };
    let spec = RunSpec {
        workloads: chosen.clone(),
        nemesis: packages.clone(),
        require_faults: required.clone(),
        min_ok: args.min_ok,
    };
    std::fs::write(
        run_dir.join("run.json"),
        serde_json::to_string_pretty(&spec).map_err(|e| e.to_string())?,
    )
    .map_err(|e| e.to_string())?;
    let skewable = packages.iter().any(|p| p == "clock");
    let db = Arc::new(Mutex::new(Db::start(net.as_ref(), &ecsd, &run_dir, skewable)?));
    // Ctrl-C or SIGTERM ends the run early; the topology and the nodes are still torn down.
    let setup = Setup {
        args: args.clone(),
        workloads: chosen.clone(),
        packages,
        required,
        weaken,
        seed,
        run_dir: run_dir.clone(),
        agent: ecsd.with_file_name("ecs-agent"),
    };
    let recorder = Recorder::default();
    let outcome = runtime.block_on(async {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).map_err(|e| e.to_string())?;
        tokio::select! {
            done = run(setup, net.clone(), db.clone(), recorder.clone()) => done,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
            _ = term.recv() => Err("terminated".to_string()),
        }
    });
    drop(runtime);
    // The history is kept even when the run failed: that is when it is needed most.
    let rows = recorder.rows();
    write_jsonl(&run_dir.join("history.jsonl"), &rows).map_err(|e| e.to_string())?;
    outcome?;
    let valid = check(&rows, &spec, &run_dir)?;
    drop(db);
    drop(net);
    if valid {
        // A valid run keeps its history, summary, timeline and logs, not the nodes' data.
        for i in 1..=args.nodes {
            let _ = std::fs::remove_dir_all(run_dir.join(format!("n{i}")).join("data"));
        }
    }
    Ok(valid)
}

fn check_run(run: &Path) -> Result<bool, String> {
    let rows = read_jsonl(&run.join("history.jsonl"))?;
    let spec = match std::fs::read_to_string(run.join("run.json")) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| format!("{}: {e}", run.join("run.json").display()))?,
        // A run stored before run.json (it kept its workloads in `workload`): no fault or
        // minimum checks.
        Err(_) => {
            let workload = std::fs::read_to_string(run.join("workload")).unwrap_or_else(|_| "register,set".into());
            RunSpec {
                workloads: workloads(workload.trim())?,
                ..RunSpec::default()
            }
        }
    };
    check(&rows, &spec, run)
}

/// The self-test a run is, if any.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Weaken {
    None,
    StaleReads,
    MinorityReads,
}

impl Weaken {
    fn parse(text: Option<&str>) -> Result<Weaken, String> {
        match text {
            None => Ok(Weaken::None),
            Some("stale-reads") => Ok(Weaken::StaleReads),
            Some("minority-reads") => Ok(Weaken::MinorityReads),
            Some(other) => Err(format!("--weaken {other}: stale-reads or minority-reads")),
        }
    }
}

/// Which workload a key's rows belong to.
fn workload_of(key: &str) -> &'static str {
    if key == SET_KEY {
        "set"
    } else if key == IDEM_KEY {
        "idempotency"
    } else if key.starts_with("jm") {
        "monotonic"
    } else if key == SCHED_KEY || key.starts_with("svc") {
        "scheduling"
    } else if is_register(key) {
        "register"
    } else {
        "other"
    }
}

/// The first process id of the final reads and of the setup rows: client processes are below.
const FIRST_NON_CLIENT_PROCESS: u64 = 900_000;

/// Each workload's successful client operations (not setup, not final reads), and of those the
/// reads.
fn client_successes(rows: &[Op]) -> std::collections::BTreeMap<&'static str, (usize, usize)> {
    let mut out = std::collections::BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.kind == OpType::Ok && r.process < FIRST_NON_CLIENT_PROCESS)
    {
        let Some(key) = r.key.as_deref() else { continue };
        let e: &mut (usize, usize) = out.entry(workload_of(key)).or_default();
        e.0 += 1;
        if r.f == "read" {
            e.1 += 1;
        }
    }
    out
}

/// Whether `key` is one of the registers (cluster tags `r<k>`, service desired counts
/// `svc<k>`).
fn is_register(key: &str) -> bool {
    let digits = |rest: &str| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit());
    key.strip_prefix("svc").is_some_and(digits) || key.strip_prefix('r').is_some_and(digits)
}

/// Checks `rows`, writes `summary.json` and `timeline.svg` into `dir`, prints a summary; true
/// if all is valid.
fn check(rows: &[Op], spec: &RunSpec, dir: &Path) -> Result<bool, String> {
    let workload = spec.workloads.join(",");
    let workload = workload.as_str();
    let mut summary = serde_json::Map::new();
    let mut valid = true;
    let faults = ecs_jepsen::checkers::faults(rows, &spec.nemesis, &spec.require_faults);
    println!("  nemesis: {} faults", faults.faults.len());
    for f in &faults.faults {
        let mut line = format!("    {} at {:.1} s", f.fault, f.at_s);
        if f.node > 0 {
            line += &format!(" on n{}{}", f.node, if f.leader { " (leader)" } else { "" });
        }
        match f.held_s {
            Some(s) => line += &format!(", held {s:.1} s"),
            None => line += ", never stopped",
        }
        if let Some(l) = f.new_leader {
            line += &format!(", n{l} led in a newer term while it held");
        }
        println!("{line}");
    }
    for e in &faults.errors {
        println!("    ERROR: {e}");
    }
    if !faults.never_started.is_empty() {
        println!("    requested but never started: {}", faults.never_started.join(", "));
    }
    if !faults.unmet.is_empty() {
        println!("    required but not seen: {}", faults.unmet.join(", "));
    }
    println!("  nemesis: {}", if faults.valid { "valid" } else { "INVALID" });
    valid &= faults.valid;
    summary.insert(
        "nemesis".into(),
        serde_json::to_value(&faults).map_err(|e| e.to_string())?,
    );
    let successes = client_successes(rows);
    let mut short = Vec::new();
    for w in &spec.workloads {
        let (ok, reads) = successes.get(w.as_str()).copied().unwrap_or_default();
        let mut line = format!("    {w}: {ok} ok ({reads} reads)");
        if ok < spec.min_ok || (w == "register" && reads == 0) {
            line += &format!(
                ": fewer than the minimum ({} ok{})",
                spec.min_ok,
                if w == "register" { ", 1 read" } else { "" }
            );
            short.push(w.clone());
        }
        println!("{line}");
    }
    valid &= short.is_empty();
    summary.insert(
        "successes".into(),
        json!({"min_ok": spec.min_ok, "too_few": short, "by_workload": successes}),
    );
    let oks = rows.iter().filter(|r| r.kind == OpType::Ok).count();
    let infos = rows.iter().filter(|r| r.kind == OpType::Info).count();
    summary.insert(
        "operations".into(),
        json!({"rows": rows.len(), "ok": oks, "info": infos}),
    );
    if workload.contains("register") || workload.contains("scheduling") {
        let ops: Vec<_> = register_ops(rows).into_iter().filter(|(k, _)| is_register(k)).collect();
        let count = ops.len();
        let keys = ops
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        let verdict = check_partitioned(&Register, ops, Duration::from_secs(120));
        let (ok, text) = match &verdict {
            Verdict::Linearizable => (Some(true), "linearizable".to_string()),
            Verdict::Unknown => (None, "unknown (time budget)".to_string()),
            Verdict::NotLinearizable { witness } => (Some(false), format!("NOT linearizable: {witness}")),
        };
        valid &= ok == Some(true);
        println!("  register: {count} operations on {keys} keys, {text}");
        summary.insert(
            "register".into(),
            json!({"valid": ok, "operations": count, "keys": keys, "verdict": text}),
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
    if workload.contains("scheduling") {
        let journal = read_journal(&dir.join("agents.jsonl"))?;
        let r = scheduling(&rows_of(rows, |k| k == SCHED_KEY), &journal, SIM_CAPACITY);
        let line = format!(
            "{} task starts on {SIM_INSTANCES} instances, peak cpu {}/{} memory {}/{}, {} over-committed, \
             {} on two instances, {} services not converged, {} disagreements",
            r.starts,
            r.peak.0,
            r.capacity.0,
            r.peak.1,
            r.capacity.1,
            r.overcommitted.len(),
            r.on_two_instances.len(),
            r.not_converged.len(),
            r.disagreements.len()
        );
        valid &= keep(&mut summary, "scheduling", r.valid, &line, &r)?;
    }
    let report = availability(rows);
    print!(
        "  availability: {:.1} ok/s, latency p50 {:.1} ms, p99 {:.1} ms",
        report.ok_per_s, report.latency_p50_ms, report.latency_p99_ms
    );
    let mut kinds: Vec<&str> = report.windows.iter().map(|w| w.fault.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    for fault in kinds {
        for (leader, who) in [(true, "leader"), (false, "other")] {
            if let Some(ms) = median_window(&report, fault, leader) {
                print!("; {fault} ({who}): median window {ms:.0} ms");
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
    std::fs::write(dir.join("timeline.svg"), ecs_jepsen::timeline::render(rows)).map_err(|e| e.to_string())?;
    println!(
        "ecs-jepsen: {} (summary.json, timeline.svg in {})",
        if valid { "valid" } else { "INVALID" },
        dir.display()
    );
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

/// What a run needs to know.
struct Setup {
    args: TestArgs,
    workloads: Vec<String>,
    packages: Vec<String>,
    required: Vec<nemesis::Requirement>,
    weaken: Weaken,
    seed: u64,
    run_dir: PathBuf,
    /// The `ecs-agent` binary (the scheduling workload's sim instances).
    agent: PathBuf,
}

/// A child process killed when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run(setup: Setup, net: Arc<dyn Topology>, db: Arc<Mutex<Db>>, recorder: Recorder) -> Result<(), String> {
    let Setup {
        args,
        workloads,
        packages,
        required,
        weaken,
        seed,
        run_dir,
        agent,
    } = setup;
    let stale = weaken != Weaken::None;
    let has = |w: &str| workloads.iter().any(|x| x == w);
    // The self-test times out in 1 s, so a cut-off node's clients read (stale) several times
    // in every fault instead of once.
    let client = Client::new(Duration::from_secs(if stale { 1 } else { 5 }), stale);
    let urls: Vec<String> = (1..=args.nodes).map(|i| net.api_url(i)).collect();
    wait_for_leader(&client, &urls, Duration::from_secs(60)).await?;
    let created = setup_call(&client, &urls[0], "CreateCluster", json!({"clusterName": "jepsen"})).await?;
    let cluster_arn = created["cluster"]["clusterArn"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if has("idempotency") {
        setup_idempotency(&client, &urls[0]).await?;
    }
    let _agents = if has("scheduling") {
        Some(setup_scheduling(&client, &urls, &recorder, &agent, &run_dir).await?)
    } else {
        None
    };
    let deadline = Instant::now() + Duration::from_secs(args.time_limit);
    let names = Arc::new(AtomicU64::new(0));
    let nemesis = Nemesis::new(
        packages,
        required,
        seed,
        net.clone(),
        db.clone(),
        recorder.clone(),
        // Its own client: a node's status asks every member, and a cut-off one takes a second
        // to time out, longer than the self-tests' client waits.
        Client::new(Duration::from_secs(5), false),
    );
    let minority = Arc::new(Minority {
        cut_off: nemesis.cut_off.clone(),
        last_ack: Mutex::new(None),
        start: Instant::now(),
    });
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (client, urls, recorder, workloads, names, arn, minority) = (
            client.clone(),
            urls.clone(),
            recorder.clone(),
            workloads.clone(),
            names.clone(),
            cluster_arn.clone(),
            minority.clone(),
        );
        let pause = Duration::from_secs_f64(args.concurrency as f64 / args.rate.max(0.1));
        let concurrency = args.concurrency as u64;
        workers.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed ^ (w as u64 + 1));
            let mut plan = RegisterPlan {
                self_test: stale,
                turn: 0,
                worker: w as u64,
                workers: concurrency,
            };
            let mut process = w as u64;
            let url = &urls[w % urls.len()];
            while Instant::now() < deadline {
                let workload = &workloads[rng.gen_range(0..workloads.len())];
                let info = match workload.as_str() {
                    "set" => set_op(&client, url, &recorder, process, &mut rng, &names).await,
                    "monotonic" => monotonic_op(&client, url, &recorder, process, &mut rng).await,
                    "idempotency" => {
                        let n = names.fetch_add(1, Ordering::SeqCst);
                        run_once(&client, &urls, w, &recorder, process, seed, n).await
                    }
                    "scheduling" => sched_op(&client, url, &recorder, process, &mut rng).await,
                    _ if weaken == Weaken::MinorityReads => {
                        minority.op(&client, &urls, (&recorder, process), &arn, &mut plan).await
                    }
                    _ => register_op(&client, url, &recorder, process, &mut rng, &arn, &mut plan).await,
                };
                if info {
                    // An indeterminate operation retires the process, as in Jepsen.
                    process += concurrency;
                }
                tokio::time::sleep(pause.mul_f64(rng.gen_range(0.5..1.5))).await;
            }
        }));
    }
    let status = nemesis.status.clone();
    let nemesis = tokio::spawn(nemesis.run(deadline));
    let progress = tokio::spawn(progress(recorder.clone(), status, args.time_limit));
    // A client or the nemesis that panicked makes the run an error: its history is incomplete.
    let mut panicked = Vec::new();
    for (w, worker) in workers.into_iter().enumerate() {
        if let Err(e) = worker.await {
            panicked.push(format!("client {w}: {e}"));
        }
    }
    // The nemesis heals everything and brings every node back when it ends.
    if let Err(e) = nemesis.await {
        panicked.push(format!("nemesis: {e}"));
    }
    progress.abort();
    if !panicked.is_empty() {
        return Err(format!("tasks panicked: {}", panicked.join("; ")));
    }
    if std::io::stderr().is_terminal() {
        eprintln!();
    }
    wait_for_leader(&client, &urls, Duration::from_secs(60)).await?;
    eprintln!("ecs-jepsen: healed; final reads");
    let final_process = 1_000_000;
    if has("scheduling") {
        converge(&client, &urls, &recorder, final_process + 400, &run_dir).await;
    }
    for (i, url) in urls.iter().enumerate() {
        if has("set") {
            read_set(&client, url, &recorder, final_process + i as u64).await;
        }
        if i == 0 && has("idempotency") {
            for attempt in 0..5u64 {
                if read_started_by(&client, url, &recorder, final_process + 300 + attempt).await {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        if has("monotonic") {
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
        if has("register") {
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
        if has("scheduling") {
            for k in 0..SERVICES {
                read_desired(&client, url, &recorder, final_process + 500 + i as u64, k).await;
            }
        }
    }
    Ok(())
}

/// Prints a progress line every few seconds: time, outcomes so far, the current fault.
async fn progress(recorder: Recorder, status: Arc<Mutex<String>>, limit: u64) {
    let tty = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs(if tty { 1 } else { 10 }));
    loop {
        tick.tick().await;
        let (ok, fail, info) = recorder.tally();
        let fault = status.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let line = format!(
            "[{:>4.0}/{limit} s] ok {ok}, fail {fail}, info {info}; nemesis: {fault}",
            recorder.elapsed_s()
        );
        if tty {
            eprint!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
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

/// The minority self-test's shared view: the nodes a partition cuts off now, and when a write
/// was last acknowledged.
struct Minority {
    cut_off: Arc<Mutex<Vec<usize>>>,
    last_ack: Mutex<Option<Instant>>,
    start: Instant,
}

/// Writes are invoked in the first 600 ms of every 2 s, reads in the last 800 ms.
const MINORITY_CYCLE_MS: u128 = 2_000;
/// A read waits this long after the last acknowledged write: far longer than a connected
/// follower takes to apply it (a heartbeat is 100 ms), far shorter than a partition holds.
const MINORITY_QUIET: Duration = Duration::from_millis(500);

impl Minority {
    /// One operation of the minority self-test: a write of a unique value through a node that
    /// is not cut off, or a stale read of the cut-off node. True if it was indeterminate.
    async fn op(
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
struct RegisterPlan {
    self_test: bool,
    turn: u64,
    worker: u64,
    workers: u64,
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
async fn write_register(
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

/// Creates the scheduling workload's cluster, task definition and services, and starts the
/// sim agent (its instances registered and ACTIVE before this returns). Each service's
/// creation is recorded as the first write of its desired-count register.
async fn setup_scheduling(
    client: &Client,
    urls: &[String],
    recorder: &Recorder,
    agent: &Path,
    run_dir: &Path,
) -> Result<Reaped, String> {
    let url = &urls[0];
    setup_call(client, url, "CreateCluster", json!({"clusterName": SCHED_CLUSTER})).await?;
    let definition = json!({"family": SCHED_CLUSTER,
        "containerDefinitions": [{"name": "c", "image": "x", "cpu": 256, "memory": 256}]});
    setup_call(client, url, "RegisterTaskDefinition", definition).await?;
    let log = std::fs::File::create(run_dir.join("agent.log")).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let child = std::process::Command::new(agent)
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
        .args(["--heartbeat-ms", "500", "--endpoint", &urls.join(",")])
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
async fn sched_op(client: &Client, url: &str, recorder: &Recorder, process: u64, rng: &mut StdRng) -> bool {
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
async fn read_desired(client: &Client, url: &str, recorder: &Recorder, process: u64, k: usize) {
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
async fn converge(client: &Client, urls: &[String], recorder: &Recorder, process: u64, run_dir: &Path) {
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
async fn running_in_cluster(client: &Client, url: &str) -> Result<std::collections::BTreeSet<String>, String> {
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
