//! Logging setup: `tracing` with an env filter (`RUST_LOG`), defaulting to info for ecsd; and
//! the process's Prometheus recorder, which `/metrics` renders.

use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written (`--log-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one readable line per event.
    #[default]
    Text,
    /// For log pipelines: one JSON object per line, with `timestamp`, `level`, `target`,
    /// `fields` (the message among them), and `node_id` when the process is one node.
    Json,
}

/// Installs the global subscriber (`node_id`: the node this process is, when it is one); a
/// second call is a no-op.
pub fn init(format: LogFormat, node_id: Option<u64>) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("ecsd=info,ecs_agent=info,openraft=error,warn"));
    // Logs go to stderr, as etcd's do: stdout is for what a command prints.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.with_target(false).try_init(),
        LogFormat::Json => {
            let json = tracing_subscriber::fmt::format()
                .json()
                .with_current_span(false)
                .with_span_list(false);
            builder
                .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                .event_format(WithNode { inner: json, node_id })
                .try_init()
        }
    };
}

/// A JSON event format with the process's node id added as the object's first field.
struct WithNode<F> {
    inner: F,
    node_id: Option<u64>,
}

impl<S, N, F> FormatEvent<S, N> for WithNode<F>
where
    F: FormatEvent<S, N>,
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let Some(id) = self.node_id else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => write!(writer, "{{\"node_id\":{id},{rest}"),
            None => writer.write_str(&line),
        }
    }
}

/// The buckets of every latency histogram (`*_seconds`), from half a millisecond to ten seconds.
/// Other histograms (counts, such as a write batch's size) render as summaries.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// What a recorded family is: Prometheus' type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every family the code records with the `metrics` macros: its name, type, whether it has
/// labels, and its help text (`docs/metrics.md` lists them, with the families `/metrics` renders
/// from the node's state at scrape time; a tidy test checks that both lists are complete).
/// Those without labels are registered at zero when the recorder is installed, so that a
/// scrape shows every one of them from the start.
pub const CATALOG: &[(&str, Kind, bool, &str)] = &[
    (
        "ecsd_api_requests_total",
        Kind::Counter,
        true,
        "ECS API requests, by action and outcome (ok or the error's __type).",
    ),
    (
        "ecsd_api_request_seconds",
        Kind::Histogram,
        true,
        "ECS API request latency, by action (RunTask's is the RunTask latency).",
    ),
    (
        "ecsd_api_requests_in_flight",
        Kind::Gauge,
        false,
        "ECS API and admin requests being answered now.",
    ),
    (
        "ecsd_api_requests_throttled_total",
        Kind::Counter,
        false,
        "ECS API requests refused with ThrottlingException (too many in flight).",
    ),
    (
        "ecsd_api_connections_refused_total",
        Kind::Counter,
        false,
        "API connections refused at the connection cap.",
    ),
    (
        "ecsd_api_tls_handshake_failures_total",
        Kind::Counter,
        false,
        "API connections whose TLS handshake failed or timed out.",
    ),
    (
        "ecsd_grpc_connections_refused_total",
        Kind::Counter,
        false,
        "Node-to-node port connections refused at the cap or for a slow preface.",
    ),
    (
        "ecsd_write_batch_size",
        Kind::Histogram,
        false,
        "Proposals per log entry (group commit).",
    ),
    (
        "ecsd_writes_forwarded_total",
        Kind::Counter,
        false,
        "Proposals this node forwarded to the leader.",
    ),
    (
        "ecsd_writes_refused_low_disk_total",
        Kind::Counter,
        false,
        "Write batches refused below the disk watermark (health.min_free_disk_mib).",
    ),
    (
        "ecsd_raft_elections_total",
        Kind::Counter,
        false,
        "Elections this node has seen: each new term is one, won or not.",
    ),
    (
        "ecsd_raft_pre_votes_total",
        Kind::Counter,
        true,
        "Pre-votes this node asked for after it lost the leader, by outcome (granted: it called an election; denied).",
    ),
    (
        "ecsd_raft_leader_changes_total",
        Kind::Counter,
        false,
        "Times this node has seen a new leader.",
    ),
    (
        "ecsd_raft_log_append_seconds",
        Kind::Histogram,
        false,
        "Time to append entries to the Raft log: encoding, write and fsync.",
    ),
    (
        "ecsd_raft_log_fsync_seconds",
        Kind::Histogram,
        false,
        "Time of a synced write to the Raft log (append, truncate, purge) in RocksDB.",
    ),
    (
        "ecsd_clock_clamped_total",
        Kind::Counter,
        false,
        "Proposals whose time was off the cluster clock by more than the skew and was clamped.",
    ),
    (
        "ecsd_leader_loop_restarts_total",
        Kind::Counter,
        false,
        "Leader loops restarted after a panic.",
    ),
    (
        "ecsd_placements_total",
        Kind::Counter,
        false,
        "Tasks placed on instances by the placement engine (RunTask, StartTask, services).",
    ),
    (
        "ecsd_placement_shortfall_tasks_total",
        Kind::Counter,
        false,
        "Tasks asked for that no instance could take.",
    ),
    (
        "ecsd_placement_failures_total",
        Kind::Counter,
        true,
        "Instances refused by a placement that fell short, by reason (RESOURCE:MEMORY, ...).",
    ),
    (
        "ecsd_reconciler_passes_total",
        Kind::Counter,
        false,
        "Passes of the service scheduler over every service (leader).",
    ),
    (
        "ecsd_reconciler_tasks_started_total",
        Kind::Counter,
        false,
        "Tasks the service scheduler started.",
    ),
    (
        "ecsd_reconciler_tasks_stopped_total",
        Kind::Counter,
        false,
        "Tasks the service scheduler stopped.",
    ),
    (
        "ecsd_deployments_in_progress",
        Kind::Gauge,
        false,
        "Services with a deployment under way, at the leader's last pass (0 on followers).",
    ),
    (
        "ecsd_agents_connected",
        Kind::Gauge,
        false,
        "Container instances whose agent is connected, at the leader's last sweep (0 on followers).",
    ),
    (
        "ecsd_agent_heartbeats_missed_total",
        Kind::Counter,
        false,
        "Agents marked disconnected after their heartbeats stopped.",
    ),
];

/// Describes every family of [`CATALOG`], and registers those without labels at zero.
fn register_catalog() {
    for (name, kind, labelled, help) in CATALOG {
        match kind {
            Kind::Counter => {
                metrics::describe_counter!(*name, *help);
                if !labelled {
                    metrics::counter!(*name).increment(0);
                }
            }
            Kind::Gauge => {
                metrics::describe_gauge!(*name, *help);
                if !labelled {
                    metrics::gauge!(*name).increment(0.0);
                }
            }
            Kind::Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}

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
        register_catalog();
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
