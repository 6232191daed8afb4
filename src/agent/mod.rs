//! Container instance agents: the protocol shared with ecsd, ecsd's side of it, and the
//! `ecs-agent` program with its runtimes.

pub mod client;
pub mod process;
pub mod protocol;
pub mod server;
