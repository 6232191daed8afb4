//! `ecs-agent`: the program that runs on a container instance. It registers the instance with
//! an ecsd cluster, keeps a session with some node (`client.rs`), and runs what the instance is
//! assigned with one of its runtimes: Docker containers (`docker.rs`), local processes
//! (`process.rs`, sharing `runner.rs` with Docker; an awsvpc task in its own network namespace,
//! `netns.rs`) or simulated containers (`sim.rs`, many
//! instances per process, for benchmarks and fault tests).
//!
//! It depends on `ecsd-protocol` alone, never on the server: no RocksDB, no openraft, no axum.

pub mod client;
pub mod docker;
pub mod netns;
pub mod process;
pub mod runner;
pub mod sim;

use ecsd_protocol::messages as protocol;

/// Logging: `tracing` with an env filter (`RUST_LOG`), info for the agent by default; a second
/// call is a no-op.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("ecs_agent=info,warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

/// Runs what an instance is assigned, and reports state changes on the channel it was made with.
pub trait Runtime: Send + Sync + 'static {
    /// Brings the instance in line with `assignment` (its full set of tasks not yet STOPPED).
    fn apply(&self, assignment: &protocol::Assignment);
}
