//! Container instance agents: the protocol shared with ecsd, ecsd's side of it, and the
//! `ecs-agent` program with its runtimes.

pub mod client;
pub mod docker;
pub mod process;
pub mod protocol;
pub mod runner;
pub mod server;
pub mod sim;

/// Runs what an instance is assigned, and reports state changes on the channel it was made with.
pub trait Runtime: Send + Sync + 'static {
    /// Brings the instance in line with `assignment` (its full set of tasks not yet STOPPED).
    fn apply(&self, assignment: &protocol::Assignment);
}
