//! The logic of `ecs-bench` (`src/bin/ecs-bench.rs`) that can be tested without a cluster:
//! latency histograms ([`hist`]), the closed- and open-loop load drivers ([`load`]), the local
//! clusters and peers it starts ([`cluster`]), its reports ([`report`]), and the failover
//! timeline ([`timeline`]).

pub mod cluster;
pub mod hist;
pub mod load;
pub mod report;
pub mod timeline;
