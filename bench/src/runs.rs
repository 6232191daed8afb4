//! A run against a local cluster (and the peer) or a running one, and what it writes.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::cluster::{fsync_latency, LocalCluster, Moto};
use crate::ecs::Ecs;
use crate::failover::failover;
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
/// `ecs-bench cluster`: a local cluster, and the peer, measured with the same workload.
pub async fn cluster(nodes: usize, peer: Option<String>, ecsd: Option<PathBuf>, load: LoadArgs) -> anyhow::Result<()> {
    // Checked before the cluster runs, not after.
    if let Some(other) = peer.as_deref().filter(|p| *p != "moto") {
        bail!("--peer {other}: only moto is known");
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
    if load.workload == "failover" || load.workload == "scale" {
        let mut local = LocalCluster::start(&binary, nodes).await?;
        println!("ecs-bench: {nodes} ecsd nodes at {}", local.endpoints.join(", "));
        out["ecsd"] = match load.workload.as_str() {
            "failover" => failover(&mut local, &load).await?,
            _ => scale(&mut local, &load).await?,
        };
        return write_json(&load, out);
    }
    let ours = {
        let local = LocalCluster::start(&binary, nodes).await?;
        println!("ecs-bench: {nodes} ecsd nodes at {}", local.endpoints.join(", "));
        let report = workload(Ecs::new(local.endpoints.clone())?, &load, "ecsd").await?;
        print_report(&format!("ecsd ({nodes} nodes)"), &report);
        smoke_check("ecsd", &report, &load)?;
        out["ecsd"] = serde_json::to_value(&report)?;
        report
        // The cluster stops here, before the peer runs on the same cores.
    };
    match peer.as_deref() {
        None => {}
        // moto, the one peer known (checked above).
        Some(_) => {
            let moto = Moto::start().await?;
            println!("ecs-bench: moto_server at {}", moto.endpoint);
            let report = match workload(Ecs::new(vec![moto.endpoint.clone()])?, &load, "moto").await {
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
