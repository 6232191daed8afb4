//! The network namespace of an awsvpc task under the `process` runtime: the task's own
//! namespace with the address the server gave it (`eth0`, a `/30`), joined to the instance by a
//! veth pair whose instance side is the gateway. Made with iproute2 (`ip`), so only as root;
//! elsewhere the task runs in the instance's namespace and the agent says so.

use ecsd_protocol::messages::TaskNetwork;

/// A task's namespace, removed by [`TaskNamespace::remove`] (removing it removes the veth pair).
pub struct TaskNamespace {
    name: String,
}

/// Whether this agent can make namespaces: root, with `ip` on the PATH.
pub fn available() -> bool {
    // SAFETY: geteuid(2) cannot fail and reads no memory.
    let root = unsafe { libc::geteuid() } == 0;
    root && std::process::Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

async fn ip(args: &[&str]) -> std::io::Result<()> {
    let out = tokio::process::Command::new("ip").args(args).output().await?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl TaskNamespace {
    /// The namespace's name for `task_id` (at most 15 characters for its interfaces).
    fn names(task_id: &str) -> (String, String, String) {
        let short: String = task_id.chars().filter(char::is_ascii_alphanumeric).take(12).collect();
        (format!("ecsd-{short}"), format!("ve{short}"), format!("vp{short}"))
    }

    /// Makes the namespace of task `task_id` with `network`; one left by an earlier run of the
    /// agent is made afresh.
    pub async fn create(task_id: &str, network: &TaskNetwork) -> std::io::Result<TaskNamespace> {
        // Only addresses and a prefix reach `ip`, never other text from the server.
        let invalid = |what: &str| std::io::Error::other(format!("the task's network has an invalid {what}"));
        let address: std::net::Ipv4Addr = network.address.parse().map_err(|_| invalid("address"))?;
        let gateway: std::net::Ipv4Addr = network.gateway.parse().map_err(|_| invalid("gateway"))?;
        if !(8..=30).contains(&network.prefix) {
            return Err(invalid("prefix"));
        }
        let network = TaskNetwork {
            address: address.to_string(),
            gateway: gateway.to_string(),
            prefix: network.prefix,
        };
        let network = &network;
        let (name, host, peer) = Self::names(task_id);
        let _ = ip(&["netns", "del", &name]).await;
        let _ = ip(&["link", "del", &host]).await;
        let made = TaskNamespace { name: name.clone() };
        let address = format!("{}/{}", network.address, network.prefix);
        let gateway = format!("{}/{}", network.gateway, network.prefix);
        let steps: [&[&str]; 10] = [
            &["netns", "add", &name],
            &["link", "add", &host, "type", "veth", "peer", "name", &peer],
            &["link", "set", &peer, "netns", &name],
            &["addr", "add", &gateway, "dev", &host],
            &["link", "set", &host, "up"],
            &["-n", &name, "link", "set", &peer, "name", "eth0"],
            &["-n", &name, "addr", "add", &address, "dev", "eth0"],
            &["-n", &name, "link", "set", "eth0", "up"],
            &["-n", &name, "link", "set", "lo", "up"],
            &["-n", &name, "route", "add", "default", "via", &network.gateway],
        ];
        for step in steps {
            if let Err(e) = ip(step).await {
                made.remove().await;
                return Err(e);
            }
        }
        Ok(made)
    }

    /// The argv that runs `argv` inside the namespace.
    pub fn wrap(&self, argv: &[String]) -> Vec<String> {
        ["ip", "netns", "exec", self.name.as_str()]
            .iter()
            .map(|s| s.to_string())
            .chain(argv.iter().cloned())
            .collect()
    }

    /// Removes the namespace (and with it the veth pair).
    pub async fn remove(&self) {
        if let Err(e) = ip(&["netns", "del", &self.name]).await {
            tracing::warn!(namespace = %self.name, error = %e, "could not remove a task's network namespace");
        }
    }
}
