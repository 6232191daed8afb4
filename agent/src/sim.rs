//! The `sim` runtime: simulated containers with configurable start and run times and exit
//! codes, so that one process can act as many container instances (benchmarks, fault tests).
//!
//! With a [`Journal`], every simulated start and stop is written down as it happens (one JSON
//! line each), so that a fault test can check what really ran where: no instance ever holds
//! more than it offers, and no task runs on two instances.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use ecsd_protocol::journal::JournalLine;
use ecsd_protocol::messages::{AssignedTask, Assignment, ContainerChange, StateChange, TaskStatus};
use ecsd_protocol::{now_ms, taskdef};

use crate::Runtime;

/// How simulated tasks behave.
#[derive(Debug, Clone, Default)]
pub struct SimSettings {
    /// From assignment to RUNNING.
    pub start: Duration,
    /// From RUNNING to exit; `None` runs until stopped.
    pub run: Option<Duration>,
    /// The exit code of every container when it exits by itself.
    pub exit_code: i64,
    /// Where starts and stops are written down, if anywhere.
    pub journal: Option<Journal>,
}

/// A JSON-lines record of simulated starts and stops ([`JournalLine`]), shared by every instance
/// of an agent process, so its order is the order in which they happened.
#[derive(Debug, Clone)]
pub struct Journal(Arc<Mutex<std::fs::File>>);

impl Journal {
    /// Appends to `path`, creating it.
    pub fn open(path: &std::path::Path) -> std::io::Result<Journal> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Journal(Arc::new(Mutex::new(file))))
    }

    fn write(&self, instance: &str, task: &str, event: &str, (cpu, memory): (i64, i64)) {
        let line = JournalLine {
            t_ms: now_ms(),
            instance: instance.to_string(),
            task: task.to_string(),
            event: event.to_string(),
            cpu,
            memory,
        };
        // One write per line, so lines of processes sharing the file never interleave.
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        let mut file = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = file.write_all(&bytes) {
            tracing::warn!(error = %e, "sim journal not written");
        }
    }
}

/// Simulated tasks of one instance.
#[derive(Clone)]
pub struct SimRuntime {
    cluster: String,
    /// The instance's ec2InstanceId (named in the journal).
    instance: String,
    settings: SimSettings,
    reports: mpsc::UnboundedSender<StateChange>,
    /// Tasks started here, and those asked to stop.
    started: Arc<Mutex<BTreeSet<String>>>,
    stopping: Arc<Mutex<BTreeSet<String>>>,
    /// Tasks running here (started, not yet stopped), with the CPU and memory they hold.
    running: Arc<Mutex<BTreeMap<String, (i64, i64)>>>,
}

/// What a task holds: what the server reserved for it (`ecsd_protocol::taskdef`, the one
/// reading), CPU and memory.
fn resources(task: &AssignedTask) -> (i64, i64) {
    let containers = taskdef::containers(&task.definition, &task.overrides);
    let r = taskdef::reservation(&task.definition, &containers);
    (r.cpu, r.memory)
}

fn container_names(task: &AssignedTask) -> Vec<String> {
    taskdef::definitions(&task.definition)
        .iter()
        .filter_map(|c| c.get("name").and_then(serde_json::Value::as_str).map(str::to_string))
        .collect()
}

impl SimRuntime {
    pub fn new(
        cluster: String,
        instance: String,
        settings: SimSettings,
        reports: mpsc::UnboundedSender<StateChange>,
    ) -> Self {
        SimRuntime {
            cluster,
            instance,
            settings,
            reports,
            started: Arc::default(),
            stopping: Arc::default(),
            running: Arc::default(),
        }
    }

    /// Marks `task` running here (journal first, under the lock, so lines keep their order).
    fn begin(&self, task: &AssignedTask) {
        let held = resources(task);
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if running.insert(task.id.clone(), held).is_none() {
            if let Some(journal) = &self.settings.journal {
                journal.write(&self.instance, &task.id, "start", held);
            }
        }
    }

    /// Marks `task` stopped here; false if it was not running.
    fn end(&self, task_id: &str) -> bool {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let Some(held) = running.remove(task_id) else {
            return false;
        };
        if let Some(journal) = &self.settings.journal {
            journal.write(&self.instance, task_id, "stop", held);
        }
        true
    }

    fn change(&self, task: &AssignedTask, status: TaskStatus, exit_code: Option<i64>) -> StateChange {
        StateChange {
            cluster: self.cluster.clone(),
            task_id: task.id.clone(),
            status: Some(status),
            containers: container_names(task)
                .into_iter()
                .map(|name| ContainerChange {
                    name,
                    status: Some(status),
                    exit_code,
                    ..Default::default()
                })
                .collect(),
            execution_stopped_at_ms: (status == TaskStatus::Stopped).then(now_ms),
            ..Default::default()
        }
    }
}

impl Runtime for SimRuntime {
    fn apply(&self, assignment: &Assignment) {
        // A task no longer listed was marked STOPPED while the instance was away (not orphaned
        // by a deregistration): it stops here too. Generation 0 is an assignment that does not
        // say (as in `runner::Tracker::apply`).
        if assignment.generation > 0 && !assignment.deregistered {
            let listed: BTreeSet<&str> = assignment.tasks.iter().map(|t| t.id.as_str()).collect();
            let gone: Vec<String> = self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .filter(|id| !listed.contains(id.as_str()))
                .cloned()
                .collect();
            for id in gone {
                self.end(&id);
            }
        }
        for task in &assignment.tasks {
            let first_start = task.desired_status == "RUNNING"
                && self
                    .started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(task.id.clone());
            let first_stop = task.desired_status == "STOPPED"
                && self
                    .stopping
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(task.id.clone());
            if first_start {
                self.begin(task);
                let sim = self.clone();
                let task = task.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(sim.settings.start).await;
                    if !sim
                        .running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .contains_key(&task.id)
                    {
                        return; // stopped before it started
                    }
                    let _ = sim.reports.send(sim.change(&task, TaskStatus::Running, None));
                    if let Some(run) = sim.settings.run {
                        tokio::time::sleep(run).await;
                        if sim.end(&task.id) {
                            let _ =
                                sim.reports
                                    .send(sim.change(&task, TaskStatus::Stopped, Some(sim.settings.exit_code)));
                        }
                    }
                });
            } else if first_stop {
                // Stopped on request: the containers get SIGTERM and exit at once.
                self.end(&task.id);
                let _ = self.reports.send(self.change(task, TaskStatus::Stopped, Some(143)));
            }
        }
    }
}
