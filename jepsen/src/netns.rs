//! The `netns` topology: one network namespace per node, all on one bridge in a "switch"
//! namespace, with the test hosts at 10.77.0.11 and up and a control namespace at 10.77.0.100
//! for the clients and the nemesis (Jepsen's control node). Faults are iptables rules inside
//! the node namespaces, as Jepsen's own nemeses do.
//!
//! Every name carries a per-run prefix (`ej<pid>`), so runs never collide; namespaces left by
//! a run whose process is gone are swept at the next start, and everything is torn down on
//! drop. The root namespace is never touched.

use std::process::Command;

use crate::topology::Topology;

/// The prefix of every namespace and interface this harness creates.
const BASE: &str = "ej";

/// The address of node `i` (1-based).
pub fn node_ip(i: usize) -> String {
    format!("10.77.0.{}", 10 + i)
}

/// The control namespace's address.
pub const CONTROL_IP: &str = "10.77.0.100";

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Whether this process may build the topology (root, with `ip netns` working).
pub fn available() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    root && run(&["ip", "netns", "list"]).is_ok()
}

/// Deletes namespaces of earlier runs whose process is gone.
pub fn sweep_stale() {
    let Ok(list) = run(&["ip", "netns", "list"]) else {
        return;
    };
    for line in list.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(BASE) else { continue };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if !pid.is_empty() && !alive {
            let _ = run(&["ip", "netns", "del", name]);
        }
    }
}

/// A built topology; dropped, it is torn down.
pub struct Netns {
    prefix: String,
    nodes: usize,
    namespaces: Vec<String>,
}

impl Netns {
    /// Builds the switch, `nodes` node namespaces and the control namespace.
    pub fn create(nodes: usize) -> Result<Netns, String> {
        sweep_stale();
        let mut net = Netns {
            prefix: format!("{BASE}{}", std::process::id()),
            nodes,
            namespaces: Vec::new(),
        };
        let switch = net.ns("sw");
        net.add_ns(&switch)?;
        run(&["ip", "-n", &switch, "link", "add", "br0", "type", "bridge"])?;
        run(&["ip", "-n", &switch, "link", "set", "br0", "up"])?;
        let hosts: Vec<(String, String)> = (1..=nodes)
            .map(|i| (format!("n{i}"), node_ip(i)))
            .chain([("c".to_string(), CONTROL_IP.to_string())])
            .collect();
        for (tag, ip) in hosts {
            let ns = net.ns(&tag);
            net.add_ns(&ns)?;
            let (inside, outside) = (format!("{}{tag}a", net.prefix), format!("{}{tag}b", net.prefix));
            // Made inside the namespaces, so a failure never leaves a link in the root one.
            run(&[
                "ip", "-n", &ns, "link", "add", &inside, "type", "veth", "peer", "name", &outside, "netns", &switch,
            ])?;
            run(&["ip", "-n", &ns, "addr", "add", &format!("{ip}/24"), "dev", &inside])?;
            run(&["ip", "-n", &ns, "link", "set", &inside, "up"])?;
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            run(&["ip", "-n", &switch, "link", "set", &outside, "master", "br0"])?;
            run(&["ip", "-n", &switch, "link", "set", &outside, "up"])?;
        }
        Ok(net)
    }

    fn ns(&self, tag: &str) -> String {
        format!("{}{tag}", self.prefix)
    }

    fn add_ns(&mut self, name: &str) -> Result<(), String> {
        run(&["ip", "netns", "add", name])?;
        self.namespaces.push(name.to_string());
        Ok(())
    }

    /// The namespace of node `i` (1-based).
    pub fn node_ns(&self, i: usize) -> String {
        self.ns(&format!("n{i}"))
    }

    /// The control namespace.
    pub fn control_ns(&self) -> String {
        self.ns("c")
    }

    /// Moves the calling thread into namespace `ns` (threads it creates later follow it).
    pub fn enter(ns: &str) -> Result<(), String> {
        let path = format!("/var/run/netns/{ns}");
        let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
        use std::os::fd::AsRawFd;
        // SAFETY: setns(2) on a namespace file we hold open; it changes only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if rc != 0 {
            return Err(format!("setns {ns}: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn iptables(&self, ns: &str, rule: &[&str]) -> Result<(), String> {
        let mut args = vec!["ip", "netns", "exec", ns, "iptables", "-w"];
        args.extend_from_slice(rule);
        run(&args).map(|_| ())
    }
}

/// The ECS API port of every node (each node has its own address).
pub const API_PORT: u16 = 8101;
/// The Raft port of every node.
pub const RAFT_PORT: u16 = 8201;

impl Topology for Netns {
    fn nodes(&self) -> usize {
        self.nodes
    }

    fn api_addr(&self, i: usize) -> String {
        format!("{}:{API_PORT}", node_ip(i))
    }

    fn raft_addr(&self, i: usize) -> String {
        format!("{}:{RAFT_PORT}", node_ip(i))
    }

    /// `ip netns exec` execs the program, so the child's pid is the program's.
    fn command_in_node(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.node_ns(i), program]);
        c
    }

    /// Drops all traffic between host `a` and host `b` (node numbers; 0 is the control host).
    fn cut(&self, a: usize, b: usize) -> Result<(), String> {
        let ip = |i: usize| if i == 0 { CONTROL_IP.to_string() } else { node_ip(i) };
        for (at, from) in [(a, b), (b, a)] {
            if at == 0 {
                continue;
            }
            self.iptables(&self.node_ns(at), &["-A", "INPUT", "-s", &ip(from), "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Drops this fraction of the packets node `i` receives (iptables `statistic`).
    fn loss(&self, i: usize, probability: f64) -> Result<(), String> {
        let p = format!("{probability:.3}");
        self.iptables(
            &self.node_ns(i),
            &[
                "-A",
                "INPUT",
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ],
        )
    }

    /// Removes every fault.
    fn heal(&self) -> Result<(), String> {
        for i in 1..=self.nodes {
            self.iptables(&self.node_ns(i), &["-F", "INPUT"])?;
        }
        Ok(())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting a namespace removes its end of each veth pair, and with it the other end.
        for ns in self.namespaces.iter().rev() {
            let _ = run(&["ip", "netns", "del", ns]);
        }
    }
}
