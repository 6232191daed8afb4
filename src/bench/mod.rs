//! The logic of `ecs-bench` (`src/bin/ecs-bench.rs`) that can be tested without a cluster:
//! latency histograms ([`hist`]), the closed- and open-loop load drivers ([`load`]), and the
//! local clusters and peers it starts ([`cluster`]).

pub mod cluster;
pub mod hist;
pub mod load;
