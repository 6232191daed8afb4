//! The simulated agents' journal (`ecs-agent --sim-journal`): one JSON line for every simulated
//! start and stop, in the order they happened, which the Jepsen scheduling checker reads to
//! check what really ran where.

use serde::{Deserialize, Serialize};

/// A task started or stopped on an instance, with what it holds. A task holds its resources
/// from its start (the assignment reached the instance) to its stop (the instance stopped it,
/// and reports STOPPED after writing the line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalLine {
    #[serde(default)]
    pub t_ms: u64,
    /// The instance's ec2InstanceId.
    pub instance: String,
    pub task: String,
    /// `start` or `stop`.
    pub event: String,
    #[serde(default)]
    pub cpu: i64,
    #[serde(default)]
    pub memory: i64,
}

/// Reads a journal; a torn last line (the agent was killed mid-write) is ignored.
pub fn read(path: &std::path::Path) -> Result<Vec<JournalLine>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(l) => out.push(l),
            Err(_) if n + 1 == lines.len() => {}
            Err(e) => return Err(format!("{}:{}: {e}", path.display(), n + 1)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_is_ignored_and_a_torn_middle_line_is_an_error() {
        let dir = std::env::temp_dir().join(format!("ecsd-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("j");
        let line = JournalLine {
            t_ms: 1,
            instance: "i-1".into(),
            task: "t".into(),
            event: "start".into(),
            cpu: 10,
            memory: 20,
        };
        let whole = serde_json::to_string(&line).unwrap();
        std::fs::write(&path, format!("{whole}\n{whole}\n{{\"t_ms\":")).unwrap();
        assert_eq!(read(&path).unwrap(), vec![line.clone(), line]);
        std::fs::write(&path, format!("{whole}\n{{\"t_ms\":\n{whole}\n")).unwrap();
        assert!(read(&path).unwrap_err().contains(":2:"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
