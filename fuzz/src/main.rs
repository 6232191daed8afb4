//! `ecsd-fuzz`: runs one target or all of them and prints the totals (see `FUZZING.md`).
//!
//! ```sh
//! cargo run --release -p ecsd-fuzz -- all --inputs 1000000 --seed 1
//! cargo run --release -p ecsd-fuzz -- api --inputs 200000 --findings /tmp/findings
//! ```

use std::time::Instant;

use clap::{Parser, ValueEnum};
use ecsd_fuzz::{node, pure, Report};

#[derive(Clone, Copy, Debug, PartialEq, ValueEnum)]
enum Target {
    Api,
    Agent,
    Cql,
    Proto,
    Config,
    /// Every target, each with `--inputs` inputs.
    All,
}

#[derive(Parser)]
#[command(about = "Structured fuzzing of ecsd (stable toolchain)")]
struct Args {
    target: Target,
    /// Inputs per target.
    #[arg(long, default_value_t = 100_000)]
    inputs: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Requests in flight at once (api and agent).
    #[arg(long, default_value_t = 16)]
    workers: u64,
    /// Inputs per fresh node (api and agent).
    #[arg(long, default_value_t = 200_000)]
    epoch: u64,
    /// Writes each finding's input and detail here.
    #[arg(long)]
    findings: Option<std::path::PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    ecsd_fuzz::count_panics();
    let runtime = tokio::runtime::Runtime::new()?;
    let targets = match args.target {
        Target::All => vec![Target::Cql, Target::Proto, Target::Config, Target::Agent, Target::Api],
        t => vec![t],
    };
    let started = Instant::now();
    let mut total_inputs = 0;
    let mut total_findings = 0;
    for target in targets {
        let (seed, n) = (args.seed, args.inputs);
        let report = match target {
            Target::Cql => pure::cql(seed, n),
            Target::Proto => pure::proto(seed, n),
            Target::Config => pure::config(seed, n),
            Target::Api => runtime.block_on(node::api(seed, n, args.workers, args.epoch)),
            Target::Agent => runtime.block_on(node::agent(seed, n, args.workers, args.epoch)),
            Target::All => unreachable!("expanded above"),
        };
        print_report(&report);
        if let Some(dir) = &args.findings {
            save(dir, &report)?;
        }
        total_inputs += report.inputs;
        total_findings += report.finding_count();
    }
    println!(
        "TOTAL inputs={total_inputs} findings={total_findings} elapsed={:.1}s",
        started.elapsed().as_secs_f64()
    );
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    if total_findings > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn print_report(r: &Report) {
    let secs = r.elapsed.as_secs_f64();
    println!(
        "{}: inputs={} findings={} elapsed={secs:.1}s rate={:.0}/s slowest={:?}",
        r.target,
        r.inputs,
        r.finding_count(),
        r.inputs as f64 / secs.max(1e-9),
        r.slowest
    );
    for (outcome, n) in &r.outcomes {
        println!("  {outcome}: {n}");
    }
    for f in &r.findings {
        println!(
            "  finding {}: {}\n    input: {}",
            f.kind,
            f.detail,
            f.input.chars().take(300).collect::<String>()
        );
    }
}

fn save(dir: &std::path::Path, r: &Report) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (i, f) in r.findings.iter().enumerate() {
        let path = dir.join(format!("{}-{}-{i}.txt", r.target, f.kind));
        std::fs::write(path, format!("{}\n\n{}\n", f.detail, f.input))?;
    }
    Ok(())
}
