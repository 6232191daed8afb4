//! The `netns` topology really isolates hosts: a client in the control namespace reaches a
//! listener in a node namespace, not while a cut is in place, and again after healing; and
//! nothing is left behind after a drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use ecs_jepsen::netns::{available, node_ip, Netns};
use ecs_jepsen::topology::Topology;

/// Skips the calling test `test` because of `reason`, visibly: libtest captures `eprintln!`, so
/// the line is written to the process's stderr directly. With `require_var=1` in the
/// environment the skip is a failure instead (for machines where the test must run).
fn skip(test: &str, require_var: &str, reason: &str) {
    if std::env::var(require_var).is_ok_and(|v| v == "1") {
        panic!("{test} cannot run: {reason}; {require_var}=1 requires it to run");
    }
    let line = format!("SKIPPED {test}: {reason} (set {require_var}=1 to fail instead)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), line.as_bytes());
}

/// Connects from a thread inside the control namespace; true if the listener answered.
fn reachable(net: &Netns, addr: SocketAddr) -> bool {
    let control = net.control_ns();
    std::thread::spawn(move || {
        Netns::enter(&control).unwrap();
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut byte = [0u8; 1];
        s.write_all(b"?").is_ok() && s.read_exact(&mut byte).is_ok()
    })
    .join()
    .unwrap()
}

#[test]
fn cuts_isolate_hosts_and_heal_restores_them() {
    if !available() {
        skip(
            "cuts_isolate_hosts_and_heal_restores_them",
            "ECSD_REQUIRE_NETNS",
            "needs root and `ip netns`",
        );
        return;
    }
    let net = Netns::create(3).unwrap();
    let names: Vec<String> = (1..=3).map(|i| net.node_ns(i)).chain([net.control_ns()]).collect();
    // An echo server on node 2.
    let node2 = net.node_ns(2);
    let addr: SocketAddr = format!("{}:9000", node_ip(2)).parse().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        Netns::enter(&node2).unwrap();
        let listener = TcpListener::bind(addr).unwrap();
        ready_tx.send(()).unwrap();
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut byte = [0u8; 1];
            if s.read_exact(&mut byte).is_ok() {
                let _ = s.write_all(&byte);
            }
        }
    });
    ready_rx.recv().unwrap();
    assert!(reachable(&net, addr), "the control host reaches node 2");
    net.cut(0, 2).unwrap();
    assert!(!reachable(&net, addr), "cut off");
    net.heal().unwrap();
    assert!(reachable(&net, addr), "healed");
    net.loss(2, 1.0).unwrap();
    assert!(!reachable(&net, addr), "all packets lost");
    net.heal().unwrap();
    drop(net);
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    for name in names {
        assert!(
            !left.lines().any(|l| l.split_whitespace().next() == Some(name.as_str())),
            "{name} left behind"
        );
    }
}
