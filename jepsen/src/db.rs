//! The system under test: real `ecsd` processes, one per node namespace, with their PIDs
//! recorded so the nemesis can kill, restart, pause and resume them.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::netns::{node_ip, Netns};

/// The ECS API port of every node (each node has its own address).
pub const API_PORT: u16 = 8101;
/// The Raft port of every node.
pub const RAFT_PORT: u16 = 8201;

struct NodeProc {
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    paused: bool,
}

/// A running cluster of `ecsd serve` processes.
pub struct Db {
    binary: PathBuf,
    nodes: Vec<NodeProc>,
}

/// The ECS API URL of node `i` (1-based).
pub fn api_url(i: usize) -> String {
    format!("http://{}:{API_PORT}", node_ip(i))
}

impl Db {
    /// Writes each node's configuration under `run_dir/n<i>` and starts every node.
    pub fn start(net: &Netns, binary: &Path, run_dir: &Path) -> Result<Db, String> {
        let n = net.nodes();
        let members: String = (1..=n)
            .map(|i| {
                format!(
                    "\n[[initial_members]]\nid = {i}\napi_addr = \"{ip}:{API_PORT}\"\nraft_addr = \"{ip}:{RAFT_PORT}\"\n",
                    ip = node_ip(i)
                )
            })
            .collect();
        let mut db = Db {
            binary: binary.to_path_buf(),
            nodes: Vec::new(),
        };
        for i in 1..=n {
            let dir = run_dir.join(format!("n{i}"));
            std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            let config = dir.join("node.toml");
            let text = format!(
                "node_id = {i}\ndata_dir = \"{data}\"\napi_addr = \"{ip}:{API_PORT}\"\nraft_addr = \"{ip}:{RAFT_PORT}\"\n\
                 bootstrap = true\n{members}",
                data = dir.join("data").display(),
                ip = node_ip(i),
            );
            std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
            db.nodes.push(NodeProc {
                config,
                log: dir.join("ecsd.log"),
                child: None,
                paused: false,
            });
        }
        for i in 1..=n {
            db.spawn(net, i)?;
        }
        Ok(db)
    }

    fn spawn(&mut self, net: &Netns, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i - 1];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| format!("{}: {e}", node.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let child = net
            .command_in_node(i, &self.binary.to_string_lossy())
            .args(["serve", "--config"])
            .arg(&node.config)
            .env("RUST_LOG", "ecsd=info,openraft=warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("start node {i}: {e}"))?;
        node.child = Some(child);
        node.paused = false;
        Ok(())
    }

    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The process id of node `i`, if it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.nodes[i - 1].child.as_ref().map(Child::id)
    }

    fn signal(&self, i: usize, signal: i32) {
        if let Some(pid) = self.pid(i) {
            // SAFETY: kill(2) on a child we own and have not reaped.
            unsafe {
                libc::kill(pid as i32, signal);
            }
        }
    }

    /// `kill -9` of node `i` (a paused node is killed too).
    pub fn kill(&mut self, i: usize) {
        self.signal(i, libc::SIGKILL);
        if let Some(mut child) = self.nodes[i - 1].child.take() {
            let _ = child.wait();
        }
        self.nodes[i - 1].paused = false;
    }

    /// Starts node `i` again if it is not running.
    pub fn restart(&mut self, net: &Netns, i: usize) -> Result<(), String> {
        if self.nodes[i - 1].child.is_some() {
            return Ok(());
        }
        self.spawn(net, i)
    }

    /// SIGSTOP of node `i`.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        self.nodes[i - 1].paused = self.pid(i).is_some();
    }

    /// SIGCONT of node `i`.
    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
        self.nodes[i - 1].paused = false;
    }

    /// Resumes every paused node and starts every stopped one.
    pub fn recover(&mut self, net: &Netns) -> Result<(), String> {
        for i in 1..=self.nodes.len() {
            if self.nodes[i - 1].paused {
                self.resume(i);
            }
            self.restart(net, i)?;
        }
        Ok(())
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        for i in 1..=self.nodes.len() {
            self.resume(i);
            self.kill(i);
        }
    }
}
