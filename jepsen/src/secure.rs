//! `--secure`: the cluster under test with its trust boundary on, as production runs it:
//! every API request signed (SigV4, with the root key), HTTPS, and mutual TLS between the
//! nodes and to the agents. The certificates come from `ecsd tls`, as an operator's do.

use std::path::{Path, PathBuf};
use std::process::Command;

use ecsd_protocol::sigv4::{Credentials, Signer};
use rand::Rng;

use crate::topology::Topology;

/// The name of the scheduling workload's agents: their certificate and their key.
pub const AGENTS: &str = "jepsen-agents";

/// The certificates of a run and its root key.
pub struct Security {
    pub dir: PathBuf,
    pub ca_pem: Vec<u8>,
    pub root: Credentials,
}

fn ecsd_tls(ecsd: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(ecsd)
        .arg("tls")
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", ecsd.display()))?;
    if !out.status.success() {
        return Err(format!(
            "ecsd tls {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn host(addr: &str) -> String {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string()
}

impl Security {
    /// Makes the CA, each node's certificate (for the addresses the topology gives it) and the
    /// agents' under `run_dir/tls`, and a root key.
    pub fn prepare(ecsd: &Path, run_dir: &Path, net: &dyn Topology) -> Result<Security, String> {
        let dir = run_dir.join("tls");
        let d = dir.to_string_lossy().to_string();
        ecsd_tls(ecsd, &["ca", "--dir", &d])?;
        for i in 1..=net.nodes() {
            let mut hosts = vec![host(&net.api_addr(i))];
            let raft = host(&net.raft_addr(i));
            if !hosts.contains(&raft) {
                hosts.push(raft);
            }
            let mut args = vec![
                "cert".to_string(),
                "--dir".into(),
                d.clone(),
                "--node".into(),
                i.to_string(),
            ];
            for h in hosts {
                args.extend(["--host".to_string(), h]);
            }
            ecsd_tls(ecsd, &args.iter().map(String::as_str).collect::<Vec<_>>())?;
        }
        ecsd_tls(ecsd, &["cert", "--dir", &d, "--agent", AGENTS])?;
        let ca_pem = std::fs::read(dir.join("ca.pem")).map_err(|e| e.to_string())?;
        let mut rng = rand::thread_rng();
        let mut pick =
            |set: &[u8], n: usize| -> String { (0..n).map(|_| set[rng.gen_range(0..set.len())] as char).collect() };
        let id = format!("AKIA{}", pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
        let secret = pick(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 40);
        Ok(Security {
            dir,
            ca_pem,
            root: Credentials::new(id, secret),
        })
    }

    /// Node `i`'s `[auth]` and `[tls]` tables.
    pub fn config(&self, i: usize) -> String {
        let f = |name: &str| self.dir.join(name).display().to_string();
        format!(
            "[auth]\nenabled = true\nroot_access_key_id = \"{}\"\nroot_secret_access_key = \"{}\"\n\n\
             [tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            self.root.access_key_id,
            self.root.secret_access_key,
            f("ca.pem"),
            f(&format!("node-{i}.pem")),
            f(&format!("node-{i}-key.pem")),
        )
    }

    /// Signs with the root key.
    pub fn signer(&self) -> Signer {
        Signer::new(self.root.clone(), "us-east-1")
    }

    /// The agents' certificate and key files.
    pub fn agent_files(&self) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.dir.join("ca.pem"),
            self.dir.join(format!("agent-{AGENTS}.pem")),
            self.dir.join(format!("agent-{AGENTS}-key.pem")),
        )
    }
}
