//! What ecsd shares with the programs around it, and nothing of the server:
//! - [`pb`] and [`messages`]: the agent protocol (gRPC envelopes from `proto/agent.proto`, JSON
//!   bodies), spoken by `ecs-agent` and served by every ecsd node;
//! - [`ecs`]: one small client of the ECS HTTP API (AWS JSON 1.1), used by the agent, the bench
//!   and the tests;
//! - [`sigv4`]: signing those requests as the aws CLI does, and reading its credentials;
//! - [`journal`]: the line the simulated agents write for every start and stop, which the
//!   Jepsen scheduling checker reads;
//! - [`taskdef`]: the one reading of a task definition's containers and of what a task
//!   reserves, for the server's placement and the agents' runtimes alike.

pub mod ecs;
pub mod journal;
pub mod messages;
pub mod pb;
pub mod secure;
pub mod sigv4;
pub mod taskdef;

/// The agent version of this build, in the ECS API's numbering: what `ecs-agent` registers as,
/// and what UpdateContainerAgent updates an older agent to. It is `2.` and the crate's version,
/// so it rises with each release and is newer than every release of Amazon's ECS agent (1.x):
/// an instance registered with one of those is offered the update, as ECS offers its latest.
pub const AGENT_VERSION: &str = concat!("2.", env!("CARGO_PKG_VERSION"));

/// Milliseconds since the Unix epoch, by this host's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
