//! The logic of `ecs-bench` (`src/bin/ecs-bench.rs`) that can be tested without a cluster:
//! latency histograms ([`hist`]), the closed- and open-loop load drivers ([`load`]), the local
//! clusters and peers it starts ([`cluster`]), and its reports ([`report`]).

pub mod cluster;
pub mod hist;
pub mod load;
pub mod report;
