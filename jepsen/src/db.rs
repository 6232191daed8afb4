//! The system under test: real `ecsd` processes, one per node of the topology, with their
//! PIDs recorded so the nemesis can kill, restart, pause and resume them, and, for the clock
//! nemesis, each started under libfaketime with an offset file of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::topology::Topology;

/// libfaketime as Debian's `faketime` package installs it (the multi-threaded variant).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

struct NodeProc {
    config: PathBuf,
    log: PathBuf,
    /// The libfaketime offset file (`+0`, `-30s`, …), when clocks can be skewed.
    clock: Option<PathBuf>,
    child: Option<Child>,
    paused: bool,
}

/// A running cluster of `ecsd serve` processes.
pub struct Db {
    binary: PathBuf,
    nodes: Vec<NodeProc>,
}

impl Db {
    /// Writes each node's configuration under `run_dir/n<i>` and starts every node; with
    /// `skewable_clocks`, each under libfaketime (wall clock only; monotonic time is real).
    /// With `security`, every node verifies signatures and speaks TLS (`--secure`).
    pub fn start(
        net: &dyn Topology,
        binary: &Path,
        run_dir: &Path,
        skewable_clocks: bool,
        security: Option<&crate::secure::Security>,
    ) -> Result<Db, String> {
        if skewable_clocks && !Path::new(LIBFAKETIME).exists() {
            return Err(format!(
                "the clock nemesis needs libfaketime ({LIBFAKETIME}): apt-get install faketime"
            ));
        }
        let n = net.nodes();
        let members: String = (1..=n)
            .map(|i| {
                format!(
                    "\n[[initial_members]]\nid = {i}\napi_addr = \"{}\"\nraft_addr = \"{}\"\n",
                    net.api_addr(i),
                    net.raft_addr(i)
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
            let dial: String = net
                .dial(i)
                .iter()
                .map(|(from, to)| format!("\"{from}\" = \"{to}\"\n"))
                .collect();
            // The test network is the harness's own (loopback or private namespaces): without
            // --secure, the nodes may listen on it unprotected.
            let (insecure, secure) = match security {
                Some(s) => ("", s.node_config(i)),
                None => ("insecure = true\n", String::new()),
            };
            let text = format!(
                "node_id = {i}\ndata_dir = \"{data}\"\napi_addr = \"{api}\"\nraft_addr = \"{raft}\"\n\
                 bootstrap = true\n{insecure}{members}\n{secure}\n[dial]\n{dial}",
                data = dir.join("data").display(),
                api = net.api_addr(i),
                raft = net.raft_addr(i),
            );
            std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
            let clock = skewable_clocks.then(|| dir.join("clock"));
            if let Some(file) = &clock {
                std::fs::write(file, "+0\n").map_err(|e| format!("{}: {e}", file.display()))?;
            }
            db.nodes.push(NodeProc {
                config,
                log: dir.join("ecsd.log"),
                clock,
                child: None,
                paused: false,
            });
        }
        for i in 1..=n {
            db.spawn(net, i)?;
        }
        Ok(db)
    }

    fn spawn(&mut self, net: &dyn Topology, i: usize) -> Result<(), String> {
        let node = &mut self.nodes[i - 1];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| format!("{}: {e}", node.log.display()))?;
        let err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = net.command_in_node(i, &self.binary.to_string_lossy());
        command
            .args(["serve", "--config"])
            .arg(&node.config)
            .env("RUST_LOG", "ecsd=info,openraft=warn");
        if let Some(clock) = &node.clock {
            // The offset file is read again at most once a second; monotonic clocks stay real,
            // as NTP steps only the wall clock.
            command
                .env("LD_PRELOAD", LIBFAKETIME)
                .env("FAKETIME_TIMESTAMP_FILE", clock)
                .env("FAKETIME_CACHE_DURATION", "1")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = command
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

    /// Sets node `i`'s wall-clock offset in seconds (0 puts it right); false if clocks are
    /// not skewable in this run.
    pub fn skew_clock(&self, i: usize, seconds: i64) -> Result<bool, String> {
        let Some(file) = &self.nodes[i - 1].clock else {
            return Ok(false);
        };
        std::fs::write(file, format!("{seconds:+}s\n")).map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(true)
    }

    /// Starts node `i` again if it is not running.
    pub fn restart(&mut self, net: &dyn Topology, i: usize) -> Result<(), String> {
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
    pub fn recover(&mut self, net: &dyn Topology) -> Result<(), String> {
        for i in 1..=self.nodes.len() {
            self.skew_clock(i, 0)?;
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
