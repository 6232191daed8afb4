//! The run loop: the nodes, the clients of every workload, the nemesis, the final reads.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ecs_jepsen::client::Client;
use ecs_jepsen::db::Db;
use ecs_jepsen::history::Recorder;
use ecs_jepsen::nemesis::{self, Nemesis};
use ecs_jepsen::topology::Topology;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use crate::*;

/// What a run needs to know.
pub(crate) struct Setup {
    pub(crate) args: TestArgs,
    pub(crate) workloads: Vec<String>,
    pub(crate) packages: Vec<String>,
    pub(crate) required: Vec<nemesis::Requirement>,
    pub(crate) weaken: Weaken,
    pub(crate) seed: u64,
    pub(crate) run_dir: PathBuf,
    /// The `ecs-agent` binary (the scheduling workload's sim instances).
    pub(crate) agent: PathBuf,
    /// With `--secure`: the run's certificates and root key.
    pub(crate) security: Option<Arc<ecs_jepsen::secure::Security>>,
}

/// A child process killed when dropped.
pub(crate) struct Reaped(pub(crate) std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) async fn run(
    setup: Setup,
    net: Arc<dyn Topology>,
    db: Arc<Mutex<Db>>,
    recorder: Recorder,
) -> Result<(), String> {
    let Setup {
        args,
        workloads,
        packages,
        required,
        weaken,
        seed,
        run_dir,
        agent,
        security,
    } = setup;
    let stale = weaken != Weaken::None;
    let has = |w: &str| workloads.iter().any(|x| x == w);
    // The self-test times out in 1 s, so a cut-off node's clients read (stale) several times
    // in every fault instead of once.
    let client = Client::with(
        Duration::from_secs(if stale { 1 } else { 5 }),
        stale,
        security.as_deref(),
    );
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
        Some(setup_scheduling(&client, &urls, &recorder, &agent, &run_dir, security.as_deref()).await?)
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
        Client::with(Duration::from_secs(5), false, security.as_deref()),
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
pub(crate) async fn progress(recorder: Recorder, status: Arc<Mutex<String>>, limit: u64) {
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

pub(crate) async fn wait_for_leader(client: &Client, urls: &[String], within: Duration) -> Result<(), String> {
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
