//! The layering that ARCHITECTURE.md states, checked against the code: every path a module of
//! the server names (`crate::…` and outside crates; `super::` stays within a top-level module
//! and is not followed) is read from its source, and an arrow the rules forbid fails this test
//! with the file and the path. Comments and inline unit-test modules (`#[cfg(test)] mod … {…}`)
//! are not read; test-only files are read like the others.

use std::collections::BTreeSet;
use std::path::Path;

/// The server's top-level modules and outside crates, by what each module may name. A module
/// listed here may name only the crate modules given; `*` is any.
const MAY_NAME: &[(&str, &[&str])] = &[
    // The domain: pure, deterministic, no I/O.
    ("model", &[]),
    ("cql", &["model"]),
    ("state", &["model", "cql"]),
    ("taskdef", &["model", "state"]),
    ("placement", &["model", "cql", "state"]),
    ("reconcile", &["model", "state"]),
    // The adapters.
    ("storage", &[]),
    ("rpc", &[]),
    ("raft", &["model", "state", "storage", "rpc", "config", "stamp", "tls"]),
    ("tls", &["config"]),
    // What runs on them.
    ("stamp", &["model", "state"]),
    ("launch", &["model", "state", "cql", "placement", "taskdef", "stamp"]),
    ("control", &["*"]),
    ("agents", &["model", "state", "raft", "stamp", "control", "tls"]),
    ("api", &["*"]),
    ("config", &[]),
    ("telemetry", &[]),
    ("node", &["*"]),
    ("lib", &["*"]),
    ("bin", &["*"]),
];

/// Outside crates, and the only modules that may name them.
const ONLY_IN: &[(&str, &[&str])] = &[
    ("openraft", &["raft"]),
    ("rocksdb", &["storage"]),
    ("axum", &["api", "node"]),
    // The ECS API server's accept loop (`api/server.rs`).
    ("hyper", &["api"]),
    ("hyper_util", &["api"]),
    ("tonic", &["raft", "rpc", "agents", "node"]),
    // Fresh ids come from the one stamping module (the Raft adapter names its temporary files).
    ("uuid", &["stamp", "raft"]),
    // The agent protocol's wire types become commands at one boundary.
    ("ecsd_protocol::messages", &["agents"]),
    ("ecsd_protocol::pb", &["agents"]),
    // Certificates and their identities are one module's; the API's accept loop wraps its
    // connections in the acceptor that module makes.
    ("rustls", &["tls"]),
    ("rcgen", &["tls"]),
    ("x509_parser", &["tls"]),
    ("tokio_rustls", &["tls", "api"]),
    // SigV4 is verified in one place (`api/auth.rs`).
    ("scratchstack_aws_signature", &["api"]),
    ("chrono", &["api", "tls"]),
    // The Prometheus recorder is the telemetry module's.
    ("metrics_exporter_prometheus", &["telemetry"]),
    // `ecsd dev` starts local agents; nothing else of the server runs one.
    ("ecs_agent", &["bin"]),
    // Only the API layer knows ECS wire types.
    ("crate::api", &["api", "node", "bin", "lib"]),
    // Generated node-to-node code stays behind the Raft adapter.
    ("crate::rpc", &["rpc", "raft", "node", "lib"]),
];

/// What the domain modules never name: the runtime, I/O, the clock's and randomness's crates.
const DOMAIN: &[&str] = &["model", "cql", "state", "taskdef", "placement", "reconcile"];
const NOT_IN_DOMAIN: &[&str] = &[
    "tokio",
    "rocksdb",
    "tonic",
    "axum",
    "openraft",
    "reqwest",
    "uuid",
    "ecsd_protocol",
    "chrono",
];
/// What of those the domain may name all the same: the one reading of a task definition's
/// containers and reservation, pure code that the agents share.
const DOMAIN_MAY_NAME: &[&str] = &["ecsd_protocol::taskdef"];

/// A file's code without its comments and its unit-test modules (`#[cfg(test)] mod … { … }`).
fn code_of(text: &str) -> String {
    let mut text = text.to_string();
    while let Some(start) = text.find("#[cfg(test)]\nmod ") {
        let Some(open) = text[start..].find(['{', ';']).map(|i| start + i) else {
            break;
        };
        if text[open..].starts_with(';') {
            // A declaration (`mod tests;`): its file is read on its own.
            text.replace_range(start..=open, "");
            continue;
        }
        let mut depth = 0;
        let mut end = text.len();
        for (i, c) in text[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if depth == 0 {
                end = open + i + 1;
                break;
            }
        }
        text.replace_range(start..end, "");
    }
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_before(bytes: &[u8], end: usize) -> &str {
    let mut start = end;
    while start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
        start -= 1;
    }
    std::str::from_utf8(&bytes[start..end]).unwrap_or("")
}

/// The identifier `text` starts with; a glob (`*`) is kept as `*`, which no rule allows by name.
fn ident_at(text: &str) -> &str {
    if text.starts_with('*') {
        return "*";
    }
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    &text[..end]
}

/// The paths `code` names, as `root` and `root::first` (`crate::state`, `tokio`,
/// `ecsd_protocol::messages`), groups (`crate::{a, b}`) expanded one level.
fn named_paths(code: &str) -> BTreeSet<String> {
    let bytes = code.as_bytes();
    let mut out = BTreeSet::new();
    let mut at = 0;
    while let Some(i) = code[at..].find("::") {
        let i = at + i;
        at = i + 2;
        let root = ident_before(bytes, i);
        if root.is_empty() {
            continue;
        }
        let before = i - root.len();
        if before >= 2 && &code[before - 2..before] == "::" {
            continue;
        }
        let rest = &code[i + 2..];
        let firsts: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            group[..end].split(',').map(|s| ident_at(s.trim())).collect()
        } else {
            vec![ident_at(rest)]
        };
        out.insert(root.to_string());
        for first in firsts.into_iter().filter(|f| !f.is_empty()) {
            out.insert(format!("{root}::{first}"));
        }
    }
    out
}

/// The top-level module a file of `src/` belongs to.
fn module_of(relative: &Path) -> String {
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// Every broken rule in one file of module `module`, as lines naming it.
fn violations(module: &str, file: &str, code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let named = named_paths(code);
    for path in &named {
        let Some(target) = path.strip_prefix("crate::") else {
            continue;
        };
        if target == module {
            continue;
        }
        if let Some((_, allowed)) = MAY_NAME.iter().find(|(m, _)| *m == module) {
            if !allowed.contains(&"*") && !allowed.contains(&target) {
                out.push(format!("{file}: `{module}` names `crate::{target}`"));
            }
        } else {
            out.push(format!("{file}: `{module}` is not in tidy.rs's MAY_NAME"));
        }
    }
    for (name, allowed) in ONLY_IN {
        if named.contains(*name) && !allowed.contains(&module) {
            out.push(format!("{file}: `{module}` names `{name}` (only {allowed:?} may)"));
        }
    }
    // Failures map to HTTP statuses in one place.
    for path in &named {
        if let Some(status) = path.strip_prefix("StatusCode::") {
            if status != "OK" && file != "api/error.rs" {
                out.push(format!(
                    "{file}: maps a failure to HTTP `{path}` (only api/error.rs does)"
                ));
            }
        }
    }
    if DOMAIN.contains(&module) {
        for name in NOT_IN_DOMAIN {
            let prefix = format!("{name}::");
            let mut paths = named.iter().filter(|p| p.starts_with(&prefix)).peekable();
            let forbidden: Vec<&String> = match paths.peek() {
                None => named.get(*name).into_iter().collect(),
                Some(_) => paths.filter(|p| !DOMAIN_MAY_NAME.contains(&p.as_str())).collect(),
            };
            for path in forbidden {
                out.push(format!("{file}: the domain module `{module}` names `{path}`"));
            }
        }
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn the_server_s_modules_name_only_what_architecture_md_allows() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    assert!(files.len() > 30, "the source tree was not found at {}", src.display());
    let mut broken = Vec::new();
    for path in &files {
        let relative = path.strip_prefix(&src).unwrap();
        let code = code_of(&std::fs::read_to_string(path).unwrap());
        broken.extend(violations(&module_of(relative), &relative.display().to_string(), &code));
    }
    assert!(broken.is_empty(), "layering rules broken:\n{}", broken.join("\n"));
}

#[test]
fn a_forbidden_arrow_is_found() {
    let code = code_of(
        "use crate::model::Task;\nuse crate::{cql, raft::NodeId};\n// use crate::api;\nfn f() { tokio::spawn(async {}); }\n#[cfg(test)]\nmod tests {\n    use crate::api;\n}\n",
    );
    let found = violations("state", "state/x.rs", &code);
    assert!(
        code_of("#[cfg(test)]\nmod tests {\n    fn f() { if x { y } }\n}\nuse crate::raft;\n").contains("crate::raft"),
        "code after a test module is still read"
    );
    let declared = code_of("#[cfg(test)]\nmod format_tests;\nuse crate::api;\nfn f() {}\n");
    assert!(
        declared.contains("crate::api"),
        "code after a test module's declaration is read: {declared}"
    );
    assert_eq!(
        found,
        [
            "state/x.rs: `state` names `crate::raft`",
            "state/x.rs: the domain module `state` names `tokio::spawn`",
        ],
        "{found:?}"
    );
    assert!(violations("model", "model.rs", "fn f() -> openraft::LogId {}")
        .contains(&"model.rs: `model` names `openraft` (only [\"raft\"] may)".to_string()));
    assert!(violations("api", "api/x.rs", "use ecsd_protocol::messages::Report;").len() == 1);
    assert!(violations("raft", "raft/x.rs", "use crate::state::Command; use openraft::Raft;").is_empty());
    // The domain may read a task definition with the shared reading, and name nothing else of
    // the protocol crate.
    assert!(violations("taskdef", "taskdef.rs", "use ecsd_protocol::taskdef as reading;").is_empty());
    assert_eq!(
        violations("taskdef", "taskdef.rs", "use ecsd_protocol::{taskdef, messages};"),
        [
            "taskdef.rs: `taskdef` names `ecsd_protocol::messages` (only [\"agents\"] may)",
            "taskdef.rs: the domain module `taskdef` names `ecsd_protocol::messages`",
        ]
    );
    assert_eq!(
        violations("taskdef", "taskdef.rs", "use ecsd_protocol::{taskdef, *};"),
        ["taskdef.rs: the domain module `taskdef` names `ecsd_protocol::*`"]
    );
    assert_eq!(
        violations(
            "api",
            "api/admin.rs",
            "fn f() { (StatusCode::BAD_REQUEST, StatusCode::OK) }"
        )
        .len(),
        1
    );
    assert!(violations("api", "api/error.rs", "fn f() { StatusCode::BAD_REQUEST }").is_empty());
}

/// The `ecsd_*` names in `text` that follow `marker` (a macro's opening, or a quote).
fn metric_names(text: &str, marker: &str) -> BTreeSet<String> {
    text.match_indices(marker)
        .filter_map(|(at, _)| {
            let rest = &text[at + marker.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            name.starts_with("ecsd_").then_some(name)
        })
        .collect()
}

#[test]
fn every_metric_is_in_the_catalog_and_in_docs_metrics_md() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut recorded = BTreeSet::new();
    let mut rendered = BTreeSet::new();
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for macro_name in ["counter!(\"", "gauge!(\"", "histogram!(\""] {
            recorded.extend(metric_names(&text, macro_name));
        }
        if path.ends_with("api/health.rs") {
            // Rendered at scrape time: `family(out, "ecsd_...", ...)`.
            rendered.extend(metric_names(&text, "\""));
        }
    }
    assert!(recorded.len() > 10, "the recorded metrics were not found: {recorded:?}");
    assert!(
        rendered.len() > 10,
        "the rendered families were not found: {rendered:?}"
    );
    let catalog: BTreeSet<String> = ecsd::telemetry::CATALOG.iter().map(|(n, ..)| n.to_string()).collect();
    let uncatalogued: Vec<_> = recorded.difference(&catalog).collect();
    assert!(
        uncatalogued.is_empty(),
        "recorded but not in telemetry::CATALOG: {uncatalogued:?}"
    );
    let doc = std::fs::read_to_string(root.join("docs/metrics.md")).unwrap();
    let documented = metric_names(&doc, "`");
    let missing: Vec<_> = catalog.union(&rendered).filter(|n| !documented.contains(*n)).collect();
    assert!(missing.is_empty(), "not in docs/metrics.md: {missing:?}");
    let stale: Vec<_> = documented
        .iter()
        .filter(|n| !catalog.contains(*n) && !rendered.contains(*n))
        .collect();
    assert!(
        stale.is_empty(),
        "docs/metrics.md names families nothing records: {stale:?}"
    );
}
