//! Logging setup: `tracing` with an env filter (`RUST_LOG`), defaulting to info for ecsd; and
//! the process's Prometheus recorder, which `/metrics` renders.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; a second call is a no-op.
pub fn init() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("ecsd=info,ecs_agent=info,openraft=warn,warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// The buckets of every latency histogram (`*_seconds`), from half a millisecond to ten seconds.
/// Other histograms (counts, such as a write batch's size) render as summaries.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process's Prometheus recorder, installed as the global one on first use: the counters
/// and histograms recorded after that call (`metrics::counter!` and the like) are what it
/// renders. Several nodes in one process (the tests) share it.
pub fn prometheus() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        let seconds = metrics_exporter_prometheus::Matcher::Suffix("_seconds".into());
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new()
            .set_buckets_for_metric(seconds, BUCKETS)
            .expect("BUCKETS is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder was installed first: /metrics shows Raft state only");
        }
        // Histogram samples are kept until folded into their buckets: fold them now and then,
        // whether or not anyone scrapes.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(5));
                upkeep.run_upkeep();
            });
        handle
    })
}
