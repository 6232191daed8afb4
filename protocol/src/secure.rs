//! A secured cluster's material, for the programs that start ecsd nodes themselves (the bench
//! and the Jepsen harness): a CA and certificates made by `ecsd tls`, as an operator makes
//! them, a root key only this run knows, and each node's `[auth]` and `[tls]` tables.

use std::hash::BuildHasher;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sigv4::{Credentials, Signer};

/// The region the root key signs for (the nodes' default).
pub const REGION: &str = "us-east-1";

/// The certificates of a run, under `dir`, and its root key.
pub struct Secrets {
    pub dir: PathBuf,
    pub ca_pem: Vec<u8>,
    pub root: Credentials,
}

/// Runs `ecsd tls ARGS`.
fn ecsd_tls(ecsd: &Path, args: &[String]) -> Result<(), String> {
    let out = Command::new(ecsd)
        .arg("tls")
        .args(args)
        .output()
        .map_err(|e| format!("{}: {e}", ecsd.display()))?;
    if !out.status.success() {
        return Err(format!(
            "ecsd tls {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// `n` characters from `set`, from the process's random hash keys (this run alone knows them).
fn random(set: &[u8], n: usize) -> String {
    let keys = std::hash::RandomState::new();
    (0..n as u64)
        .map(|i| set[(keys.hash_one(i) % set.len() as u64) as usize] as char)
        .collect()
}

impl Secrets {
    /// Makes a CA under `dir`, a certificate for each node (node `i` is `hosts[i - 1]`, with
    /// the addresses it is reached at besides loopback), one for each agent name in `agents`,
    /// and a root key.
    pub fn prepare(ecsd: &Path, dir: PathBuf, hosts: &[Vec<String>], agents: &[&str]) -> Result<Secrets, String> {
        let d = dir.to_string_lossy().to_string();
        let args = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        ecsd_tls(ecsd, &args(&["ca", "--dir", &d]))?;
        for (i, names) in hosts.iter().enumerate() {
            let mut cert = args(&["cert", "--dir", &d, "--node", &(i + 1).to_string()]);
            for host in names {
                cert.extend(["--host".to_string(), host.clone()]);
            }
            ecsd_tls(ecsd, &cert)?;
        }
        for agent in agents {
            ecsd_tls(ecsd, &args(&["cert", "--dir", &d, "--agent", agent]))?;
        }
        let ca_pem = std::fs::read(dir.join("ca.pem")).map_err(|e| format!("{}: {e}", dir.display()))?;
        let id = format!("AKIA{}", random(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16));
        let secret = random(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", 40);
        Ok(Secrets {
            dir,
            ca_pem,
            root: Credentials::new(id, secret),
        })
    }

    /// Node `i`'s `[auth]` and `[tls]` tables, to append to its configuration.
    pub fn node_config(&self, i: usize) -> String {
        let f = |name: String| self.dir.join(name).display().to_string();
        format!(
            "\n[auth]\nenabled = true\nroot_access_key_id = \"{}\"\nroot_secret_access_key = \"{}\"\n\
             \n[tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
            self.root.access_key_id,
            self.root.secret_access_key,
            f("ca.pem".into()),
            f(format!("node-{i}.pem")),
            f(format!("node-{i}-key.pem")),
        )
    }

    /// Signs with the root key.
    pub fn signer(&self) -> Signer {
        Signer::new(self.root.clone(), REGION)
    }

    /// The CA, certificate and key files of the agent `name`.
    pub fn agent_files(&self, name: &str) -> (PathBuf, PathBuf, PathBuf) {
        (
            self.dir.join("ca.pem"),
            self.dir.join(format!("agent-{name}.pem")),
            self.dir.join(format!("agent-{name}-key.pem")),
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_strings_take_their_length_and_alphabet() {
        let s = super::random(b"AB", 64);
        assert_eq!(s.len(), 64);
        assert!(s.chars().all(|c| c == 'A' || c == 'B'));
        assert!(s.contains('A') && s.contains('B'), "{s}");
        assert_ne!(super::random(b"0123456789", 20), super::random(b"0123456789", 20));
    }
}
