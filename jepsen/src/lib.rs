//! ecs-jepsen: a fault-injection and consistency-checking harness for ecsd, built the way
//! Jepsen is: logical client processes, an invoke/ok/fail/info history, a nemesis, and
//! offline checkers.
//!
//! - [`linear`]: the linearizability checker (Wing–Gong/Lowe with memoization, per key, with
//!   a time budget) and the register and string models.
//! - [`formats`]: readers for histories written by Jepsen (its text logs and EDN maps).
//! - [`history`]: the recorder and its JSONL rows, and invocation/completion pairs.
//! - [`checkers`]: set, unique and monotonic ids, idempotency, scheduling safety (over the sim
//!   agents' journal) and availability.
//! - [`netns`]: the network-namespace topology and its faults (cut, partition, loss, heal).
//! - [`proxy`]: the rootless topology: a TCP proxy per directed node-to-node link, with faults
//!   (cut, partition, loss, delay, heal) emulated at the TCP level.
//! - [`db`]: the `ecsd` processes under test (start, kill, restart, pause, resume).
//! - [`client`]: an ECS client whose outcomes are ok, refused (definite) or unknown.
//! - [`topology`]: the backends' one trait (netns, proxy) and the majorities ring.
//! - [`nemesis`]: the faults on a seeded schedule, as start/stop pairs in the history.
//! - [`timeline`]: a run's history drawn as an SVG of latency over time with the fault bands.

pub mod checkers;
pub mod client;
pub mod db;
pub mod formats;
pub mod history;
pub mod linear;
pub mod nemesis;
pub mod netns;
pub mod proxy;
pub mod secure;
pub mod timeline;
pub mod topology;
