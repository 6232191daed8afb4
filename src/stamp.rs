//! The one clock and the one place proposals are stamped. The node that receives a request
//! stamps its command with a request id and its wall-clock time, and makes the fresh ids a
//! command carries (task and container UUIDs, event ids), so `apply` stays deterministic: it
//! never reads the clock or draws an id. Only proposers call this module; `state` never does.

use crate::state::tasks::NewTask;
use crate::state::{Command, Proposal};

/// Wall-clock milliseconds since the epoch, read only by the proposing node.
pub fn now_ms() -> u64 {
    ecsd_protocol::now_ms()
}

/// A fresh access key id and secret: `AKIA` and 16 upper-case letters and digits (AWS's shape),
/// and 40 letters and digits, from the operating system's generator.
pub fn fresh_access_key() -> (String, String) {
    use rand::Rng;
    const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const ANY: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rngs::OsRng;
    let mut pick =
        |set: &[u8], n: usize| -> String { (0..n).map(|_| set[rng.gen_range(0..set.len())] as char).collect() };
    let id = format!("AKIA{}", pick(UPPER, 16));
    let secret = pick(ANY, crate::model::SECRET_KEY_LENGTH);
    (id, secret)
}

/// A fresh seed for the placement engine's random choices.
pub fn seed() -> u64 {
    rand::random()
}

/// A fresh, unique id (a UUID): request ids, event ids.
pub fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Whether `text` has the form of a [`fresh_id`] (a request id forwarded by another node).
pub fn is_id(text: &str) -> bool {
    uuid::Uuid::parse_str(text).is_ok()
}

/// A fresh UUID, for a new resource's identifiers (a container instance's).
pub fn fresh_uuid() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

/// `command` under `request_id` (kept across forwards and retries, so it applies at most once),
/// stamped now.
pub fn proposal_as(request_id: String, command: Command) -> Proposal {
    Proposal {
        request_id,
        ts_ms: now_ms(),
        command,
        request_digest: None,
    }
}

/// `command` under a fresh request id, stamped now.
pub fn proposal(command: Command) -> Proposal {
    proposal_as(fresh_id(), command)
}

/// A task for `instance_id` with fresh identifiers (one UUID per container, for its ARN).
pub fn new_task(instance_id: &str, containers: usize) -> NewTask {
    NewTask {
        instance_id: instance_id.to_string(),
        uuid: uuid::Uuid::new_v4().hyphenated().to_string(),
        container_uuids: (0..containers)
            .map(|_| uuid::Uuid::new_v4().hyphenated().to_string())
            .collect(),
    }
}
