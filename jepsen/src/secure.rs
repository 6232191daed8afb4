//! `--secure`: the cluster under test with its trust boundary on, as production runs it:
//! every API request signed (SigV4, with the root key), HTTPS, and mutual TLS between the
//! nodes and to the agents. The certificates come from `ecsd tls`, as an operator's do.

use std::path::Path;

pub use ecsd_protocol::secure::Secrets as Security;

use crate::topology::Topology;

/// The name of the scheduling workload's agents: their certificate and their key.
pub const AGENTS: &str = "jepsen-agents";

fn host(addr: &str) -> String {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string()
}

/// Makes the CA, each node's certificate (for the addresses the topology gives it) and the
/// agents' under `run_dir/tls`, and a root key.
pub fn prepare(ecsd: &Path, run_dir: &Path, net: &dyn Topology) -> Result<Security, String> {
    let hosts: Vec<Vec<String>> = (1..=net.nodes())
        .map(|i| {
            let mut hosts = vec![host(&net.api_addr(i))];
            let raft = host(&net.raft_addr(i));
            if !hosts.contains(&raft) {
                hosts.push(raft);
            }
            hosts
        })
        .collect();
    Security::prepare(ecsd, run_dir.join("tls"), &hosts, &[AGENTS])
}
