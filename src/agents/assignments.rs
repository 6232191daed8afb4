//! One assignment stream's memory of what it sent: each wake reads the instance's index of live
//! tasks and only the tasks whose version moved, and sends the whole assignment first, then
//! (when the agent asks for them) deltas.

use std::collections::{BTreeMap, BTreeSet};

use ecsd_protocol::messages::{AssignedTask, Assignment, InstanceRef};

use super::boundary;
use crate::model::InstanceStatus;
use crate::state::{self, container_instances, tasks, KvRead};

/// One assignment stream's memory of what it last read: each task with the version it was read
/// at, and the task definitions it has read (a registered revision never changes). A wake then
/// reads the instance's index of live tasks and only the tasks whose version moved, and sends
/// nothing when all that moved is what the agent itself reported (a task's last status) or the
/// change counter.
#[derive(Default)]
pub struct Tracker {
    tasks: BTreeMap<String, (Option<u64>, AssignedTask)>,
    definitions: BTreeMap<(String, u32), serde_json::Value>,
    /// What the last assignment sent said of the instance: deregistered, and its agent update.
    sent: Option<(bool, Option<String>)>,
}

impl Tracker {
    /// The instance's assignment now, if it differs from the last one: whole the first time
    /// (and every time when `deltas` is off), else as a delta. `None`: nothing changed.
    pub fn next(
        &mut self,
        view: &dyn KvRead,
        instance: &InstanceRef,
        deltas: bool,
    ) -> Result<Option<Assignment>, state::KvError> {
        // The counter is read before the tasks: the tasks sent are then at least as new as the
        // generation they are labelled with, so an agent never drops a task on a stale read.
        let generation = match view.get(
            state::Space::Data,
            &tasks::work_key(&instance.cluster, &instance.instance_id),
        )? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or(0),
            None => 0,
        };
        let registered = container_instances::get(view, &instance.cluster, &instance.instance_id)?;
        let mut head = Assignment {
            generation,
            deregistered: registered.as_ref().is_none_or(|i| i.status == InstanceStatus::Inactive),
            agent_update: registered.and_then(|i| i.agent_update_status),
            ..Default::default()
        };
        let listed = tasks::versions_on_instance(view, &instance.cluster, &instance.instance_id)?;
        let mut changed = Vec::new();
        for (id, version) in &listed {
            let known = self.tasks.get(id);
            if version.is_some() && known.is_some_and(|(v, _)| v == version) {
                continue;
            }
            let Some(task) = tasks::get(view, &instance.cluster, id)? else {
                continue;
            };
            let assigned = boundary::assigned_task(view, &mut self.definitions, &task)?;
            if known.is_none_or(|(_, t)| !acts_alike(t, &assigned)) {
                changed.push(assigned.clone());
            }
            self.tasks.insert(id.clone(), (*version, assigned));
        }
        let live: BTreeSet<&str> = listed.iter().map(|(id, _)| id.as_str()).collect();
        let removed: Vec<String> = self
            .tasks
            .keys()
            .filter(|id| !live.contains(id.as_str()))
            .cloned()
            .collect();
        for id in &removed {
            self.tasks.remove(id);
        }
        // Definitions are kept for the tasks the instance runs; on a long stream through many
        // revisions, forget them all once they outnumber those (they are read again on need).
        if self.definitions.len() > 2 * self.tasks.len() + 16 {
            self.definitions.clear();
        }
        // The counter moves with every write of the instance's tasks, the agent's own reports
        // included; only what the agent acts on is worth a message.
        let said = (head.deregistered, head.agent_update.clone());
        let same_head = self.sent.as_ref() == Some(&said);
        let first = self.sent.is_none();
        self.sent = Some(said);
        if !first && same_head && changed.is_empty() && removed.is_empty() {
            return Ok(None);
        }
        if deltas && !first {
            head.delta = true;
            head.tasks = changed;
            head.removed = removed;
        } else {
            head.tasks = self.tasks.values().map(|(_, t)| t.clone()).collect();
        }
        Ok(Some(head))
    }
}

/// Whether the agent would do the same with `a` as with `b`: everything but the last status,
/// which is the agent's own report.
fn acts_alike(a: &AssignedTask, b: &AssignedTask) -> bool {
    a.id == b.id
        && a.arn == b.arn
        && a.desired_status == b.desired_status
        && a.definition == b.definition
        && a.overrides == b.overrides
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::testing::{task_row, MemKv};
    use crate::state::Space;

    /// Stores task `id` of instance `i` at `version` (desired `desired`) and lists it in the
    /// instance index, as apply does; `None` as version: an index entry from before entries held
    /// versions.
    fn put_task(kv: &mut MemKv, id: &str, desired: &str, version: Option<u64>) {
        let row = task_row(id, "Pending", desired, None, version.unwrap_or(1));
        put(kv, &format!("task/c\0{id}"), serde_json::to_vec(&row).unwrap());
        let listed = version.map(|v| serde_json::to_vec(&v).unwrap()).unwrap_or_default();
        put(kv, &format!("itask/c\0i\0{id}"), listed);
    }

    fn put(kv: &mut MemKv, key: &str, value: Vec<u8>) {
        kv.0.insert((Space::Data, key.as_bytes().to_vec()), value);
    }

    fn unlist(kv: &mut MemKv, id: &str) {
        kv.0.remove(&(Space::Data, format!("itask/c\0i\0{id}").into_bytes()));
    }

    fn ids(a: &Assignment) -> Vec<&str> {
        a.tasks.iter().map(|t| t.id.as_str()).collect()
    }

    #[test]
    fn a_long_stream_through_many_revisions_keeps_few_definitions() {
        let instance = InstanceRef {
            cluster: "c".into(),
            instance_id: "i".into(),
        };
        let mut kv = MemKv::default();
        let mut tracker = Tracker::default();
        for revision in 1..=100 {
            let id = format!("t{revision}");
            let mut row = task_row(&id, "Pending", "Running", None, 1);
            row["task_definition_arn"] = serde_json::json!(format!("arn:aws:ecs:r:1:task-definition/td:{revision}"));
            put(&mut kv, &format!("task/c\0{id}"), serde_json::to_vec(&row).unwrap());
            put(
                &mut kv,
                &format!("itask/c\0i\0{id}"),
                serde_json::to_vec(&1u64).unwrap(),
            );
            if revision > 1 {
                unlist(&mut kv, &format!("t{}", revision - 1));
            }
            tracker.next(&kv, &instance, true).unwrap();
            assert!(
                tracker.definitions.len() <= 18,
                "{} definitions kept",
                tracker.definitions.len()
            );
        }
    }

    #[test]
    fn a_stream_sends_the_whole_assignment_then_deltas_that_rebuild_it() {
        let instance = InstanceRef {
            cluster: "c".into(),
            instance_id: "i".into(),
        };
        let mut kv = MemKv::default();
        put_task(&mut kv, "t1", "Running", Some(1));
        put_task(&mut kv, "t2", "Running", Some(1));
        put_task(&mut kv, "t4", "Running", None);
        let mut tracker = Tracker::default();
        let mut agent = tracker.next(&kv, &instance, true).unwrap().expect("the first is sent");
        assert!(!agent.delta);
        assert_eq!(ids(&agent), ["t1", "t2", "t4"]);
        assert_eq!(tracker.next(&kv, &instance, true).unwrap(), None, "nothing changed");

        // t1 told to stop, t2 gone, t3 new; t4 (no version in its entry) read again, unchanged.
        put_task(&mut kv, "t1", "Stopped", Some(2));
        unlist(&mut kv, "t2");
        put_task(&mut kv, "t3", "Running", Some(1));
        put(&mut kv, "iw/c\0i", b"5".to_vec());
        let delta = tracker.next(&kv, &instance, true).unwrap().expect("a change is sent");
        assert!(delta.delta);
        assert_eq!(ids(&delta), ["t1", "t3"]);
        assert_eq!(delta.removed, ["t2"]);
        agent.merge(delta);
        let whole = Tracker::default().next(&kv, &instance, false).unwrap().unwrap();
        assert_eq!(agent.generation, 5);
        assert_eq!(agent, whole);
        assert_eq!(agent.tasks[0].desired_status, "STOPPED");

        // The agent's own report (t3 RUNNING, a new version) moves the counter: nothing is sent.
        let row = task_row("t3", "Running", "Running", None, 2);
        put(&mut kv, "task/c\0t3", serde_json::to_vec(&row).unwrap());
        put(&mut kv, "itask/c\0i\0t3", b"2".to_vec());
        put(&mut kv, "iw/c\0i", b"6".to_vec());
        assert_eq!(tracker.next(&kv, &instance, true).unwrap(), None);

        // Without deltas, every change sends the whole assignment.
        let mut full = Tracker::default();
        full.next(&kv, &instance, false).unwrap();
        unlist(&mut kv, "t3");
        assert_eq!(ids(&full.next(&kv, &instance, false).unwrap().unwrap()), ["t1", "t4"]);
    }
}
