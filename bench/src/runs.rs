//! A run against a local cluster (and the peer) or a running one, and what it writes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::cluster::{fsync_latency, LocalCluster, Moto};
use crate::ecs::Ecs;
use crate::failover::{failover, rolling_restart};
use crate::load::Report;
use crate::scale::scale;
use crate::settings::{smoke_check, LoadArgs};
use crate::workloads::workload;

/// The facts of this machine that bound the figures: cores, and the disk's fsync latency.
pub fn machine() -> anyhow::Result<Value> {
    let fsync = fsync_latency(&std::env::temp_dir(), 50)?;
    Ok(json!({
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "fsync_4k_median_ms": fsync.as_secs_f64() * 1000.0,
    }))
}
/// The endpoints to send to: all of them, the leader's, or the followers'.
pub async fn aim(endpoints: &[String], target: &str) -> anyhow::Result<Vec<String>> {
    if target == "all" {
        return Ok(endpoints.to_vec());
    }
    let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
    // The endpoint whose node says that it leads (its own member report), in the newest term.
    let mut leader_api = None;
    for url in endpoints {
        if let Ok(r) = http.get(format!("{url}/cluster/status")).send().await {
            if let Ok(v) = r.json::<Value>().await {
                let leader = crate::cluster::self_reported_leader(&v);
                if leader.is_some_and(|(_, _, api)| !api.is_empty() && url.ends_with(&api)) {
                    leader_api = Some(url.clone());
                }
            }
        }
    }
    let leader = leader_api.ok_or_else(|| anyhow!("no endpoint says it is the leader"))?;
    match target {
        "leader" => Ok(vec![leader]),
        "followers" => Ok(endpoints.iter().filter(|e| **e != leader).cloned().collect()),
        other => bail!("--target {other}: all, leader or followers"),
    }
}
/// How `ecs-bench cluster` runs the cluster: open, secured (SigV4, HTTPS, mutual TLS), or both
/// in turn, `rounds` times each, for the cost of security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    Off,
    On,
    Both { rounds: usize },
}

/// `ecs-bench cluster`: a local cluster, and the peer, measured with the same workload.
pub async fn cluster(
    nodes: usize,
    peer: Option<String>,
    ecsd: Option<PathBuf>,
    load: LoadArgs,
    security: Security,
) -> anyhow::Result<()> {
    // Checked before the cluster runs, not after.
    if let Some(other) = peer.as_deref().filter(|p| *p != "moto") {
        bail!("--peer {other}: only moto is known");
    }
    if security != Security::Off
        && matches!(
            load.workload.as_str(),
            "failover" | "rolling-restart" | "scale" | "placement"
        )
    {
        bail!("--security: the {} workload runs open only", load.workload);
    }
    if matches!(security, Security::Both { .. }) && peer.is_some() {
        bail!("--security both: measures ecsd against itself; drop --peer");
    }
    let binary = match ecsd {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("ecsd"),
    };
    let machine = machine()?;
    println!(
        "ecs-bench: {} cores, fsync of 4 KiB {:.2} ms (median of 50)",
        machine["cores"], machine["fsync_4k_median_ms"]
    );
    let mut out = json!({"machine": machine, "nodes": nodes});
    if matches!(load.workload.as_str(), "failover" | "rolling-restart" | "scale") {
        let mut local = LocalCluster::start(&binary, nodes).await?;
        println!("ecs-bench: {nodes} ecsd nodes at {}", local.endpoints.join(", "));
        out["ecsd"] = match load.workload.as_str() {
            "failover" => failover(&mut local, &load).await?,
            "rolling-restart" => rolling_restart(&mut local, &load).await?,
            _ => scale(&mut local, &load).await?,
        };
        return write_json(&load, out);
    }
    if let Security::Both { rounds } = security {
        out["security"] = security_cost(&binary, nodes, &load, rounds).await?;
        return write_json(&load, out);
    }
    let ours = {
        let local = LocalCluster::start_with(&binary, nodes, security == Security::On).await?;
        println!("ecs-bench: {nodes} ecsd nodes at {}", local.endpoints.join(", "));
        let ecs = Ecs::secured(local.endpoints.clone(), local.security.as_ref())?;
        let before = local.wait_for_confirmed_leader(Duration::from_secs(10)).await?;
        let report = workload(ecs, &load, "ecsd", &local.pids()).await?;
        // Under load a healthy leader must stay: the leader and term after the run, from the
        // leader's own report, against those before it.
        let after = local.wait_for_confirmed_leader(Duration::from_secs(10)).await?;
        print_report(&format!("ecsd ({nodes} nodes)"), &report);
        println!(
            "{:>16}  leader: node {} in term {} before the run, node {} in term {} after it{}",
            "",
            before.0,
            before.1,
            after.0,
            after.1,
            if before == after {
                ""
            } else {
                ": ELECTIONS DURING THE RUN"
            }
        );
        smoke_check("ecsd", &report, &load)?;
        out["ecsd"] = serde_json::to_value(&report)?;
        out["leader"] = json!({"before": {"node": before.0, "term": before.1}, "after": {"node": after.0, "term": after.1},
                               "unchanged": before == after});
        report
        // The cluster stops here, before the peer runs on the same cores.
    };
    match peer.as_deref() {
        None => {}
        // moto, the one peer known (checked above).
        Some(_) => {
            let moto = Moto::start().await?;
            println!("ecs-bench: moto_server at {}", moto.endpoint);
            let watch: Vec<(String, u32)> = moto.pid().map(|p| ("moto".to_string(), p)).into_iter().collect();
            let report = match workload(Ecs::new(vec![moto.endpoint.clone()])?, &load, "moto", &watch).await {
                Ok(report) => report,
                // Our figures stand; say why the peer has none.
                Err(e) => {
                    // The first line: moto answers some errors with a whole HTML page.
                    let e = format!("{e:#}");
                    let e = e.lines().next().unwrap_or_default();
                    println!("            moto: not measured: {e}");
                    out["moto_error"] = json!(e);
                    write_json(&load, out)?;
                    if load.smoke {
                        bail!("smoke: the peer (moto) was not measured: {e}");
                    }
                    return Ok(());
                }
            };
            print_report("moto", &report);
            smoke_check("moto", &report, &load)?;
            let ratio = ours.throughput_per_s / report.throughput_per_s.max(1e-9);
            let latency = ours.latency.p50_ms / report.latency.p50_ms.max(1e-9);
            println!("ecsd / moto: throughput {ratio:.1}x, p50 latency {latency:.2}x");
            out["moto"] = serde_json::to_value(&report)?;
            out["ratio"] = json!({"throughput": ratio, "p50_latency": latency});
        }
    }
    write_json(&load, out)
}
/// The workload against an open cluster and a secured one (SigV4 on every request, HTTPS,
/// mutual TLS between nodes), in turn, `rounds` times each, each on a fresh cluster: the
/// medians, and the secured cluster's throughput as a share of the open one's.
async fn security_cost(
    binary: &std::path::Path,
    nodes: usize,
    load: &LoadArgs,
    rounds: usize,
) -> anyhow::Result<Value> {
    let mut runs: [Vec<Report>; 2] = [Vec::new(), Vec::new()];
    // CPU milliseconds per successful operation: the nodes' together, and this client's.
    let mut cpu: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=rounds.max(1) {
        // ABBA: the order flips each round, so a drift over the sitting favours neither side.
        let order = if round % 2 == 1 { [false, true] } else { [true, false] };
        for secure in order {
            let k = usize::from(secure);
            let local = LocalCluster::start_with(binary, nodes, secure).await?;
            let name = if secure { "secured" } else { "open" };
            let ecs = Ecs::secured(local.endpoints.clone(), local.security.as_ref())?;
            let nodes_cpu = || {
                (1..=nodes)
                    .filter_map(|i| crate::cluster::cpu_seconds(local.pid(i)))
                    .sum::<f64>()
            };
            let own_cpu = || crate::cluster::cpu_seconds(std::process::id()).unwrap_or(0.0);
            let (nodes_before, own_before) = (nodes_cpu(), own_cpu());
            let report = workload(ecs, load, name, &local.pids()).await?;
            // The warm-up ran at the measured rate too: count its operations as well.
            let ops = report.ok as f64 * (load.duration + load.warmup) as f64 / load.duration.max(1) as f64;
            let per_op = |seconds: f64| seconds * 1000.0 / ops.max(1.0);
            cpu[k].push((per_op(nodes_cpu() - nodes_before), per_op(own_cpu() - own_before)));
            print_report(&format!("{name} (round {round})"), &report);
            println!(
                "{:>16}  CPU per operation: nodes {:.3} ms, this client {:.3} ms",
                "",
                cpu[k].last().map_or(0.0, |c| c.0),
                cpu[k].last().map_or(0.0, |c| c.1)
            );
            smoke_check(name, &report, load)?;
            runs[k].push(report);
        }
    }
    let middle = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let median = |reports: &[Report], f: fn(&Report) -> f64| middle(reports.iter().map(f).collect());
    let nodes_cpu = |k: usize| middle(cpu[k].iter().map(|c| c.0).collect());
    let client_cpu = |k: usize| middle(cpu[k].iter().map(|c| c.1).collect());
    let throughput = |r: &Report| r.throughput_per_s;
    let p50 = |r: &Report| r.latency.p50_ms;
    let (open, secured) = (median(&runs[0], throughput), median(&runs[1], throughput));
    let share = secured / open.max(1e-9);
    println!(
        "secured / open: throughput {secured:.0} / {open:.0} ok/s = {:.1} % (a cost of {:.1} %), p50 {:.2} / {:.2} ms (medians of {} rounds)",
        share * 100.0,
        (1.0 - share) * 100.0,
        median(&runs[1], p50),
        median(&runs[0], p50),
        runs[0].len()
    );
    println!(
        "CPU per operation (medians): nodes {:.3} ms secured / {:.3} ms open (+{:.1} %), this client {:.3} / {:.3} ms",
        nodes_cpu(1),
        nodes_cpu(0),
        (nodes_cpu(1) / nodes_cpu(0).max(1e-9) - 1.0) * 100.0,
        client_cpu(1),
        client_cpu(0)
    );
    Ok(json!({
        "open": runs[0],
        "secured": runs[1],
        "median_throughput": {"open": open, "secured": secured},
        "median_p50_ms": {"open": median(&runs[0], p50), "secured": median(&runs[1], p50)},
        "secured_share_of_open": share,
        "cpu_ms_per_op": {
            "nodes": {"open": cpu[0].iter().map(|c| c.0).collect::<Vec<_>>(), "secured": cpu[1].iter().map(|c| c.0).collect::<Vec<_>>()},
            "client": {"open": cpu[0].iter().map(|c| c.1).collect::<Vec<_>>(), "secured": cpu[1].iter().map(|c| c.1).collect::<Vec<_>>()},
        },
    }))
}

pub fn write_json(load: &LoadArgs, value: Value) -> anyhow::Result<()> {
    if let Some(path) = &load.json {
        std::fs::write(path, serde_json::to_string_pretty(&value)?).with_context(|| path.display().to_string())?;
        println!("ecs-bench: figures written to {}", path.display());
    }
    Ok(())
}
pub fn print_report(system: &str, r: &Report) {
    let l = &r.latency;
    println!(
        "{system:>16}: {:>9.0} ok/s, {} errors; latency p50 {:.2} ms, p90 {:.2}, p99 {:.2}, p99.9 {:.2}, max {:.2}",
        r.throughput_per_s, r.errors, l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms
    );
    if let Some(e) = &r.first_error {
        println!("{:>16}  first error: {}", "", e.chars().take(200).collect::<String>());
    }
    if !r.cpu_cores.is_empty() {
        println!("{:>16}  CPU: {}", "", crate::cpu::describe(&r.cpu_cores));
    }
}
/// `ecs-bench report`: the Markdown report and its chart.
pub fn report(files: &[PathBuf], out: &std::path::Path) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).with_context(|| f.display().to_string())?;
        let value: Value = serde_json::from_str(&text).with_context(|| f.display().to_string())?;
        let name = f.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned());
        runs.push((name, value));
    }
    let stem = out
        .file_stem()
        .map_or("report".into(), |s| s.to_string_lossy().into_owned());
    use crate::report as r;
    let mut charts: Vec<(&str, String)> = Vec::new();
    // (alt text, file suffix, the chart, or None when no run has its data)
    let throughput = r::series(&runs);
    let latency = r::latency_series(&runs);
    let kills = r::failover_series(&runs);
    let around = r::failover_timeline_series(&runs);
    let drawn = [
        (
            "throughput per second",
            "throughput",
            (!throughput.is_empty()).then(|| r::throughput_svg(&throughput)),
        ),
        (
            "p99 latency per second",
            "latency",
            (!latency.is_empty())
                .then(|| r::line_svg("p99 latency (ms) per second", "second of the measured run", &latency)),
        ),
        (
            "unavailability per leader kill",
            "failover",
            (!kills.is_empty())
                .then(|| r::line_svg("unavailability after each kill -9 of the leader (ms)", "kill", &kills)),
        ),
        (
            "writes around the leader kills",
            "failover-timeline",
            (!around.is_empty()).then(|| {
                r::line_svg(
                    "writes answered per 100 ms around a kill -9 of the leader (sum over the kills)",
                    "100 ms bins, from 1 s before the kill (bin 10 starts at the kill) to 3 s after",
                    &around,
                )
            }),
        ),
    ];
    for (alt, suffix, svg) in drawn {
        if let Some(svg) = svg {
            let file = format!("{stem}-{suffix}.svg");
            std::fs::write(out.with_file_name(&file), svg)?;
            charts.push((alt, file));
        }
    }
    std::fs::write(out, r::markdown(&runs, &charts))?;
    let files: Vec<&str> = charts.iter().map(|(_, f)| f.as_str()).collect();
    println!("ecs-bench: {} written, with {}", out.display(), files.join(", "));
    Ok(())
}
