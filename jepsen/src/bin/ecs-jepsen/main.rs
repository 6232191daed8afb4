//! `ecs-jepsen`: runs a Jepsen-style test against real `ecsd` nodes, or re-checks a stored run.
//!
//! `ecs-jepsen test --nodes 3 --workload all --nemesis partition,kill,pause --time-limit 120`
//! builds the topology (network namespaces as root, else TCP proxies), starts the nodes, runs
//! client processes while the nemesis injects faults, heals, does final reads, checks the
//! history and writes `results/<timestamp>-<seed>/` (history.jsonl, summary.json,
//! timeline.svg, node logs). `ecs-jepsen check results/<run>` checks a stored run again.

mod check;
mod run;
mod workloads;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use ecs_jepsen::db::Db;
use ecs_jepsen::history::{read_jsonl, write_jsonl, Recorder};
use ecs_jepsen::nemesis::{self};
use ecs_jepsen::netns::{self, Netns};
use ecs_jepsen::topology::{ProxyNet, Topology};

use check::*;
use run::*;
use workloads::*;
#[derive(Parser)]
#[command(about = "Fault injection and consistency checking for ecsd, the way Jepsen does it")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Runs a test and checks its history.
    Test(Box<TestArgs>),
    /// Checks the history of a stored run again.
    Check { run: PathBuf },
}

#[derive(clap::Args, Clone)]
pub(crate) struct TestArgs {
    #[arg(long, default_value_t = 3)]
    pub(crate) nodes: usize,
    /// `netns` (root: a network namespace per node, faults in iptables) or `proxy` (no root:
    /// nodes on 127.0.0.1, a TCP proxy per directed link). Default: netns as root, else proxy.
    #[arg(long)]
    pub(crate) backend: Option<String>,
    /// Comma-separated: register, set, monotonic, idempotency, scheduling, or all.
    #[arg(long, default_value = "register,set")]
    pub(crate) workload: String,
    /// Comma-separated: partition, kill, pause, member, loss, clock, or none.
    #[arg(long, default_value = "partition,kill")]
    pub(crate) nemesis: String,
    #[arg(long, default_value_t = 30)]
    pub(crate) time_limit: u64,
    /// Operations per second, over all clients.
    #[arg(long, default_value_t = 30.0)]
    pub(crate) rate: f64,
    #[arg(long, default_value_t = 6)]
    pub(crate) concurrency: usize,
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// The ecsd binary (default: `ecsd` beside this program; `ecs-agent` is found beside it).
    #[arg(long)]
    pub(crate) ecsd: Option<PathBuf>,
    #[arg(long, default_value = "results")]
    pub(crate) results: PathBuf,
    /// Faults the run must see, comma-separated: a package of `--nemesis` (one of its faults
    /// started), or `<package>-leader` (one aimed at a node that confirmed it led, while which
    /// another node came to lead in a newer term). They come first; the run fails without them.
    #[arg(long, default_value = "none")]
    pub(crate) require_faults: String,
    /// The fewest successful client operations each workload must have (a register also needs
    /// a successful read); the run fails with fewer.
    #[arg(long, default_value_t = 1)]
    pub(crate) min_ok: usize,
    /// The self-tests; a run must then report a violation (that is how a green run means
    /// something). `stale-reads`: every read asks for the node's local state, without
    /// read-index. `minority-reads`: reads are stale too, and go only to the nodes a partition
    /// cuts off, only while it holds, and only when no write was acknowledged for 500 ms (far
    /// longer than replication takes), so only a real partition makes them stale. Register
    /// workload only.
    #[arg(long)]
    pub(crate) weaken: Option<String>,
    /// The cluster's trust boundary on, as production runs it: certificates from `ecsd tls`,
    /// HTTPS, mutual TLS between nodes and to the agents, every request signed (SigV4).
    #[arg(long)]
    pub(crate) secure: bool,
}

/// How a run was asked for, kept beside its history (`run.json`) so that `check` judges a
/// stored run the same way.
#[derive(serde::Serialize, serde::Deserialize, Clone, Default)]
pub(crate) struct RunSpec {
    pub(crate) workloads: Vec<String>,
    #[serde(default)]
    pub(crate) nemesis: Vec<String>,
    #[serde(default)]
    pub(crate) require_faults: Vec<nemesis::Requirement>,
    #[serde(default)]
    pub(crate) min_ok: usize,
}

pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Test(args) => test(*args),
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

pub(crate) const SET_KEY: &str = "set";
pub(crate) const REGISTER_KEYS: usize = 4;
/// Task definition families of the monotonic workload.
pub(crate) const FAMILIES: usize = 2;
pub(crate) const IDEM_KEY: &str = "idem";
/// The scheduling workload: its cluster, services, sim instances and what each offers.
pub(crate) const SCHED_KEY: &str = "sched";
pub(crate) const SCHED_CLUSTER: &str = "jsched";
pub(crate) const SERVICES: usize = 2;
pub(crate) const SIM_INSTANCES: usize = 4;
pub(crate) const SIM_CAPACITY: (i64, i64) = (1024, 1024);
pub(crate) const WORKLOADS: [&str; 5] = ["register", "set", "monotonic", "idempotency", "scheduling"];

/// Parses `--workload`: a comma-separated list, or `all`.
pub(crate) fn workloads(list: &str) -> Result<Vec<String>, String> {
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

pub(crate) fn test(args: TestArgs) -> Result<bool, String> {
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
    let security = match args.secure {
        true => Some(Arc::new(ecs_jepsen::secure::prepare(&ecsd, &run_dir, net.as_ref())?)),
        false => None,
    };
    let db = Arc::new(Mutex::new(Db::start(
        net.as_ref(),
        &ecsd,
        &run_dir,
        skewable,
        security.as_deref(),
    )?));
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
        security,
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

pub(crate) fn check_run(run: &Path) -> Result<bool, String> {
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
pub(crate) enum Weaken {
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
