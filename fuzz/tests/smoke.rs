//! The fuzz smoke that CI runs: every target, briefly, with a fixed seed. Long runs are
//! `ecsd-fuzz` (FUZZING.md).

use ecsd_fuzz::{node, pure, Report};

fn assert_clean(report: &Report, at_least: u64) {
    assert!(
        report.inputs >= at_least,
        "{}: ran {} inputs",
        report.target,
        report.inputs
    );
    assert_eq!(
        report.finding_count(),
        0,
        "{}: findings {:#?}\noutcomes {:#?}",
        report.target,
        report.findings,
        report.outcomes
    );
}

/// One test, the targets in turn: a panic anywhere in the process counts against the target
/// that runs (the harness counts them globally), so nothing else may run beside it.
#[test]
fn every_target_finds_nothing() {
    ecsd_fuzz::count_panics();
    let cql = pure::cql(7, 20_000);
    assert_clean(&cql, 20_000);
    // The generators reach both sides of the parser.
    assert!(
        cql.outcomes["parsed"] > 1_000 && cql.outcomes["refused"] > 1_000,
        "{:?}",
        cql.outcomes
    );
    let proto = pure::proto(7, 20_000);
    assert_clean(&proto, 20_000);
    assert!(
        proto.outcomes.get("report decoded").is_some_and(|n| *n > 100),
        "{:?}",
        proto.outcomes
    );
    let config = pure::config(7, 5_000);
    assert_clean(&config, 5_000);
    assert!(
        config.outcomes.get("loaded").is_some_and(|n| *n > 20),
        "{:?}",
        config.outcomes
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = runtime.block_on(node::api(7, 3_000, 8, 3_000));
    assert_clean(&api, 3_000);
    let accepted: u64 = api
        .outcomes
        .iter()
        .filter(|(k, _)| k.starts_with("200 "))
        .map(|(_, v)| v)
        .sum();
    assert!(
        accepted > 300,
        "too few requests get past validation: {:#?}",
        api.outcomes
    );
    let agent = runtime.block_on(node::agent(7, 1_000, 4, 1_000));
    assert_clean(&agent, 1_000);
    assert!(
        agent.outcomes.get("ok").is_some_and(|n| *n > 100),
        "{:?}",
        agent.outcomes
    );
}
