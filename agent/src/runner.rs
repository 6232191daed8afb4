//! What the runtimes that run real containers share: the bookkeeping of which tasks were
//! started and finished here, the reports, and the reading of container definitions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use ecsd_protocol::messages::{AssignedTask, Assignment, ContainerChange, StateChange, TaskStatus};

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

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    value?
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
}

fn env_pairs(value: Option<&Value>) -> Vec<(String, String)> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            Some((
                e.get("name")?.as_str()?.to_string(),
                e.get("value").and_then(Value::as_str).unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

/// The containers of `task`, overrides applied (command, environment, cpu, memory).
pub fn container_specs(task: &AssignedTask) -> Vec<ContainerSpec> {
    let overrides: Vec<Value> = task
        .overrides
        .get("containerOverrides")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    task.definition
        .get("containerDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|d| {
            let name = d.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
            let o = overrides
                .iter()
                .find(|o| o.get("name").and_then(Value::as_str) == Some(&name));
            let pick = |key: &str| {
                o.and_then(|o| o.get(key))
                    .filter(|v| !v.is_null())
                    .or_else(|| d.get(key))
                    .and_then(Value::as_i64)
            };
            let command = strings(o.and_then(|o| o.get("command"))).or_else(|| strings(d.get("command")));
            let entry_point = strings(d.get("entryPoint"));
            let mut argv = entry_point.clone().unwrap_or_default();
            argv.extend(command.clone().unwrap_or_default());
            let mut env = env_pairs(d.get("environment"));
            env.extend(env_pairs(o.and_then(|o| o.get("environment"))));
            let ports = d
                .get("portMappings")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|m| {
                    let container = u16::try_from(m.get("containerPort")?.as_u64()?).ok()?;
                    let host = m
                        .get("hostPort")
                        .and_then(Value::as_u64)
                        .and_then(|p| u16::try_from(p).ok())
                        .unwrap_or(0);
                    let protocol = m.get("protocol").and_then(Value::as_str).unwrap_or("tcp").to_string();
                    Some((container, host, protocol))
                })
                .collect();
            ContainerSpec {
                name,
                image: d.get("image").and_then(Value::as_str).unwrap_or_default().to_string(),
                entry_point,
                command,
                argv,
                env,
                essential: d.get("essential").and_then(Value::as_bool).unwrap_or(true),
                stop_timeout: d
                    .get("stopTimeout")
                    .and_then(Value::as_u64)
                    .map_or(STOP_TIMEOUT, Duration::from_secs),
                cpu: pick("cpu"),
                memory: pick("memory"),
                memory_reservation: pick("memoryReservation"),
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
