//! Test helpers for any module that reads the state: an in-memory [`KvRead`] and task rows as
//! apply stores them.

use std::collections::BTreeMap;

use super::{KvError, KvRead, Row, Space};

/// The state in memory: `(space, key)` → value.
#[derive(Default)]
pub(crate) struct MemKv(pub(crate) BTreeMap<(Space, Vec<u8>), Vec<u8>>);

impl KvRead for MemKv {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(self.0.get(&(space, key.to_vec())).cloned())
    }
    fn scan(&self, space: Space, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<Row>, KvError> {
        Ok(self
            .0
            .range((space, from.to_vec())..(space, to.to_vec()))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }
}

/// A task row of cluster `c` on instance `i` (family `td`, revision 1), as apply stores it.
pub(crate) fn task_row(
    id: &str,
    last: &str,
    desired: &str,
    stopped_at: Option<u64>,
    version: u64,
) -> serde_json::Value {
    serde_json::json!({
        "cluster": "c", "id": id, "arn": format!("arn:task/{id}"), "task_definition_arn": "td:1",
        "family": "td", "container_instance_id": "i", "container_instance_arn": "arn:ci/i",
        "last_status": last, "desired_status": desired, "group": "g", "overrides": {},
        "containers": [], "reservation": {"cpu": 0, "memory": 0, "ports": [], "ports_udp": []},
        "created_at_ms": 0, "stopped_at_ms": stopped_at, "version": version
    })
}
