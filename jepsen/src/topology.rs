//! Where the nodes run and how the network between them fails: one trait, two backends.
//!
//! - [`crate::netns::Netns`] (root): a network namespace per node on one bridge; faults are
//!   iptables rules, so they hit packets, as in Jepsen.
//! - [`ProxyNet`] (no root): every node on 127.0.0.1, and every directed link
//!   between two nodes through its own TCP proxy, which cuts, delays and stalls bytes; each
//!   node is told (its `[dial]` table) to reach its peers through its own links.
//!
//! In both, the clients and the nemesis reach every node directly: faults are between nodes.

use std::net::SocketAddr;
use std::process::Command;

use crate::proxy::Mesh;

/// A test cluster's network. Node numbers are 1-based.
pub trait Topology: Send + Sync {
    /// How many nodes there are.
    fn nodes(&self) -> usize;

    /// Where node `i` serves the ECS API (`host:port`).
    fn api_addr(&self, i: usize) -> String;

    /// Where node `i` serves Raft (`host:port`).
    fn raft_addr(&self, i: usize) -> String;

    /// Node `i`'s `[dial]` table: the peer addresses it must reach through something else.
    fn dial(&self, _i: usize) -> Vec<(String, String)> {
        Vec::new()
    }

    /// A command that runs `program` as node `i`'s host (its pid is the program's).
    fn command_in_node(&self, i: usize, program: &str) -> Command;

    /// Stops all traffic between nodes `a` and `b`.
    fn cut(&self, a: usize, b: usize) -> Result<(), String>;

    /// Drops (or, over TCP proxies, stalls) this fraction of what node `i` receives.
    fn loss(&self, i: usize, probability: f64) -> Result<(), String>;

    /// Removes every fault.
    fn heal(&self) -> Result<(), String>;

    /// Splits the nodes into groups that cannot reach one another (clients still reach all).
    fn partition(&self, groups: &[Vec<usize>]) -> Result<(), String> {
        for (a, b) in pairs_across(groups) {
            self.cut(a, b)?;
        }
        Ok(())
    }

    /// The ECS API URL of node `i`.
    fn api_url(&self, i: usize) -> String {
        format!("http://{}", self.api_addr(i))
    }
}

/// Every pair of nodes in different groups: the links a partition into `groups` cuts.
pub fn pairs_across(groups: &[Vec<usize>]) -> Vec<(usize, usize)> {
    let mut pairs = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        for other in groups.iter().skip(g + 1) {
            for a in group {
                for b in other {
                    pairs.push((*a, *b));
                }
            }
        }
    }
    pairs
}

/// The links to cut for Jepsen's "majorities ring": the nodes in `order` form a ring, and each
/// keeps only its two neighbours, so each sees a majority (of 5) but no two see the same one.
pub fn ring_cuts(order: &[usize]) -> Vec<(usize, usize)> {
    let n = order.len();
    let mut cuts = Vec::new();
    for a in 0..n {
        for b in a + 1..n {
            let distance = (b - a).min(n - (b - a));
            if distance > 1 {
                cuts.push((order[a], order[b]));
            }
        }
    }
    cuts
}

/// The `proxy` backend: every node on 127.0.0.1 with ports the OS picked, every directed link
/// between nodes through its own [`crate::proxy::LinkProxy`] (nodes are told so by their `[dial]` tables).
pub struct ProxyNet {
    mesh: Mesh,
    api: Vec<SocketAddr>,
    raft: Vec<SocketAddr>,
}

impl ProxyNet {
    /// Picks two free loopback ports per node and starts the mesh of link proxies.
    pub async fn start(nodes: usize) -> Result<ProxyNet, String> {
        // Hold every listener until all ports are picked, so no port is picked twice.
        let listeners = (0..nodes * 2)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| format!("picking ports: {e}"))?;
        let addrs = listeners
            .iter()
            .map(std::net::TcpListener::local_addr)
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(|e| format!("picking ports: {e}"))?;
        drop(listeners);
        let (api, raft) = (addrs[..nodes].to_vec(), addrs[nodes..].to_vec());
        let mesh = Mesh::start(&raft, &api)
            .await
            .map_err(|e| format!("starting the link proxies: {e}"))?;
        Ok(ProxyNet { mesh, api, raft })
    }
}

impl Topology for ProxyNet {
    fn nodes(&self) -> usize {
        self.api.len()
    }

    fn api_addr(&self, i: usize) -> String {
        self.api[i - 1].to_string()
    }

    fn raft_addr(&self, i: usize) -> String {
        self.raft[i - 1].to_string()
    }

    fn dial(&self, i: usize) -> Vec<(String, String)> {
        self.mesh.dial_map(i)
    }

    fn command_in_node(&self, _i: usize, program: &str) -> std::process::Command {
        std::process::Command::new(program)
    }

    fn cut(&self, a: usize, b: usize) -> Result<(), String> {
        // The clients (host 0) are not behind proxies.
        if a != 0 && b != 0 {
            self.mesh.cut(a, b)?;
        }
        Ok(())
    }

    fn loss(&self, i: usize, probability: f64) -> Result<(), String> {
        self.mesh.loss(i, probability)
    }

    fn heal(&self) -> Result<(), String> {
        self.mesh.heal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_majorities_ring_leaves_every_node_a_different_majority() {
        let order = [3, 1, 5, 2, 4];
        let cuts = ring_cuts(&order);
        let mut views = Vec::new();
        for node in 1..=5 {
            let mut view: Vec<usize> = (1..=5)
                .filter(|m| *m == node || !cuts.iter().any(|&(a, b)| (a, b) == (node, *m) || (b, a) == (node, *m)))
                .collect();
            view.sort_unstable();
            assert_eq!(view.len(), 3, "node {node} sees a majority: {view:?}");
            views.push(view);
        }
        views.sort();
        views.dedup();
        assert_eq!(views.len(), 5, "no two nodes see the same majority");
        assert_eq!(ring_cuts(&[1, 2, 3]), Vec::<(usize, usize)>::new());
    }
}
