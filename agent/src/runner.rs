//! What the runtimes that run real containers share: the bookkeeping of which tasks were
//! started and finished here, the reports, and the reading of container definitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use ecsd_protocol::messages::{AssignedTask, Assignment, ContainerChange, StateChange, TaskStatus};
use ecsd_protocol::taskdef;

/// Default time between the stop signal and SIGKILL (ECS_CONTAINER_STOP_TIMEOUT).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One container of a task, with the task's overrides applied.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub entry_point: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    /// `entryPoint` followed by `command`: what the process runtime executes.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub essential: bool,
    pub stop_timeout: Duration,
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// (containerPort, hostPort or 0 for dynamic, protocol).
    pub ports: Vec<(u16, u16, String)>,
}

/// The containers of `task`, overrides applied (the one reading, `ecsd_protocol::taskdef`).
pub fn container_specs(task: &AssignedTask) -> Vec<ContainerSpec> {
    taskdef::containers(&task.definition, &task.overrides)
        .into_iter()
        .map(|c| {
            let ports = c
                .port_mappings
                .iter()
                .filter_map(|m| {
                    let container = u16::try_from(m.container_port?).ok()?;
                    let host = m.host_port.and_then(|p| u16::try_from(p).ok()).unwrap_or(0);
                    Some((container, host, m.protocol.clone()))
                })
                .collect();
            ContainerSpec {
                argv: c.argv(),
                stop_timeout: c.stop_timeout.map_or(STOP_TIMEOUT, Duration::from_secs),
                name: c.name,
                image: c.image,
                entry_point: c.entry_point,
                command: c.command,
                env: c.environment,
                essential: c.essential,
                cpu: c.cpu,
                memory: c.memory,
                memory_reservation: c.memory_reservation,
                ports,
            }
        })
        .collect()
}

/// Which tasks were started and finished here, and where their reports go.
#[derive(Clone)]
pub struct Tracker {
    pub cluster: String,
    reports: mpsc::UnboundedSender<StateChange>,
    /// Tasks started here and not yet finished, with the token that asks them to stop.
    running: Arc<Mutex<BTreeMap<String, CancellationToken>>>,
    /// Tasks finished here (their STOPPED report may still be on its way).
    finished: Arc<Mutex<BTreeSet<String>>>,
}

impl Tracker {
    pub fn new(cluster: String, reports: mpsc::UnboundedSender<StateChange>) -> Self {
        Tracker {
            cluster,
            reports,
            running: Arc::default(),
            finished: Arc::default(),
        }
    }

    pub fn report(&self, change: StateChange) {
        let _ = self.reports.send(change);
    }

    /// The report that a task has stopped.
    pub fn task_stopped(&self, task_id: &str) -> StateChange {
        StateChange {
            cluster: self.cluster.clone(),
            task_id: task_id.to_string(),
            status: Some(TaskStatus::Stopped),
            execution_stopped_at_ms: Some(ecsd_protocol::now_ms()),
            ..Default::default()
        }
    }

    /// Reports a task whose containers could not all be started as STOPPED (it never ran), with
    /// `reason` on it and every container, and marks it finished.
    pub fn failed_to_start(&self, task_id: &str, specs: &[ContainerSpec], reason: &str) {
        let mut change = self.task_stopped(task_id);
        change.reason = Some(reason.to_string());
        change.containers = specs
            .iter()
            .map(|s| ContainerChange {
                name: s.name.clone(),
                status: Some(TaskStatus::Stopped),
                reason: Some(reason.to_string()),
                ..Default::default()
            })
            .collect();
        self.report(change);
        self.finish(task_id);
    }

    /// Reports that one container of a task exited with `exit_code`.
    pub fn container_exited(&self, task_id: &str, container: &str, exit_code: Option<i64>) {
        self.report(StateChange {
            cluster: self.cluster.clone(),
            task_id: task_id.to_string(),
            containers: vec![ContainerChange {
                name: container.to_string(),
                status: Some(TaskStatus::Stopped),
                exit_code,
                ..Default::default()
            }],
            ..Default::default()
        });
    }

    /// Marks `task_id` finished here.
    pub fn finish(&self, task_id: &str) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(task_id);
        self.finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task_id.to_string());
    }

    /// Starts the tasks new to this instance with `start`, and asks those told to stop to stop.
    /// A task told to stop that never started here is reported STOPPED at once, and a running
    /// task the assignment no longer lists (it was marked STOPPED meanwhile) is stopped.
    pub fn apply(&self, assignment: &Assignment, mut start: impl FnMut(AssignedTask, CancellationToken)) {
        if assignment.generation > 0 {
            let listed: std::collections::BTreeSet<&str> = assignment.tasks.iter().map(|t| t.id.as_str()).collect();
            if !assignment.deregistered {
                for (id, stop) in self.running.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    if !listed.contains(id.as_str()) {
                        tracing::info!(task = %id, "no longer assigned here; stopping it");
                        stop.cancel();
                    }
                }
            }
            // Finished tasks no longer listed are STOPPED in the state too: forget them.
            self.finished
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|id| listed.contains(id.as_str()));
        }
        for task in &assignment.tasks {
            let known = self
                .running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&task.id)
                .cloned();
            let finished = self
                .finished
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&task.id);
            match (task.desired_status.as_str(), known) {
                ("STOPPED", Some(stop)) => stop.cancel(),
                ("STOPPED", None) if !finished => {
                    self.report(self.task_stopped(&task.id));
                    self.finish(&task.id);
                }
                ("RUNNING", None) if !finished => {
                    let stop = CancellationToken::new();
                    self.running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(task.id.clone(), stop.clone());
                    start(task.clone(), stop);
                }
                _ => {}
            }
        }
    }
}
