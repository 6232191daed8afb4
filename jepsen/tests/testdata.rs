//! The linearizability checker reproduces every verdict of the shared test data
//! (`jepsen/testdata/linearizability/expected.tsv`, a copy of the project's shared test data),
//! each within a bounded time.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ecs_jepsen::formats::{edn_kv, jepsen_register_log};
use ecs_jepsen::linear::{check, check_partitioned, Register, Strings, Verdict};

/// Where the test data is: `$ECSD_TESTDATA`, else the copy in `jepsen/testdata` (the Porcupine
/// checker's data, MIT, with its licence and README there).
fn testdata() -> PathBuf {
    if let Ok(dir) = std::env::var("ECSD_TESTDATA") {
        return PathBuf::from(dir);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

const BUDGET: Duration = Duration::from_secs(20);

#[test]
fn shared_histories_get_their_known_verdicts() {
    let root = testdata().join("linearizability");
    let expected = std::fs::read_to_string(root.join("expected.tsv")).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (set ECSD_TESTDATA to the shared testdata directory)",
            root.display()
        )
    });
    let mut checked = 0;
    let mut slowest = (Duration::ZERO, String::new());
    for line in expected.lines().skip(1) {
        let Some((file, verdict)) = line.split_once('\t') else {
            continue;
        };
        let want = verdict.trim() == "true";
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let started = Instant::now();
        let got = if file.starts_with("etcd/") {
            check(&Register, &jepsen_register_log(&text).unwrap(), BUDGET)
        } else {
            check_partitioned(&Strings, edn_kv(&text).unwrap(), BUDGET)
        };
        let took = started.elapsed();
        if took > slowest.0 {
            slowest = (took, file.to_string());
        }
        match got {
            Verdict::Unknown => panic!("{file}: no verdict within {BUDGET:?}"),
            Verdict::Linearizable => assert!(want, "{file}: expected not linearizable, got linearizable"),
            Verdict::NotLinearizable { witness } => {
                assert!(!want, "{file}: expected linearizable, got a violation: {witness}");
                assert!(witness.contains("cannot place"), "{file}: {witness}");
            }
        }
        checked += 1;
    }
    assert_eq!(checked, 108, "every history of expected.tsv");
    eprintln!("checked {checked} histories; slowest {} in {:?}", slowest.1, slowest.0);
}
