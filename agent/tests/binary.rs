//! The `ecs-agent` program as a container host gets it: its version, and a binary that needs no
//! C++ runtime (the server's RocksDB is not linked into it). These tests also make
//! `cargo test --workspace` build the binary, which the server's process tests run.

use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_ecs-agent");

#[test]
fn the_agent_reports_the_protocol_s_agent_version() {
    let out = Command::new(AGENT).arg("--version").output().expect("run ecs-agent");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("ecs-agent {}", ecsd_protocol::AGENT_VERSION));
}

#[test]
fn the_agent_binary_links_no_cpp_runtime() {
    let Ok(out) = Command::new("ldd").arg(AGENT).output() else {
        eprintln!("SKIPPED: ldd is not installed");
        return;
    };
    let libraries = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "ldd {AGENT}: {out:?}");
    assert!(libraries.contains("libc.so"), "ldd listed nothing useful: {libraries}");
    assert!(
        !libraries.contains("libstdc++"),
        "the agent links the C++ runtime:\n{libraries}"
    );
}
