//! The `sim` runtime: simulated containers with configurable start and run times and exit
//! codes, so that one process can act as many container instances (benchmarks, fault tests).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use super::protocol::{AssignedTask, Assignment};
use super::Runtime;
use crate::model::TaskStatus;
use crate::state::tasks::{ContainerChange, StateChange};

/// How simulated tasks behave.
#[derive(Debug, Clone, Default)]
pub struct SimSettings {
    /// From assignment to RUNNING.
    pub start: Duration,
    /// From RUNNING to exit; `None` runs until stopped.
    pub run: Option<Duration>,
    /// The exit code of every container when it exits by itself.
    pub exit_code: i64,
}

/// Simulated tasks of one instance.
#[derive(Clone)]
pub struct SimRuntime {
    cluster: String,
    settings: SimSettings,
    reports: mpsc::UnboundedSender<StateChange>,
    /// Tasks started here, and those asked to stop.
    started: Arc<Mutex<BTreeSet<String>>>,
    stopping: Arc<Mutex<BTreeSet<String>>>,
}

fn container_names(task: &AssignedTask) -> Vec<String> {
    task.definition
        .get("containerDefinitions")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(serde_json::Value::as_str).map(str::to_string))
        .collect()
}

impl SimRuntime {
    pub fn new(cluster: String, settings: SimSettings, reports: mpsc::UnboundedSender<StateChange>) -> Self {
        SimRuntime {
            cluster,
            settings,
            reports,
            started: Arc::default(),
            stopping: Arc::default(),
        }
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
            execution_stopped_at_ms: (status == TaskStatus::Stopped).then(crate::api::now_ms),
            ..Default::default()
        }
    }
}

impl Runtime for SimRuntime {
    fn apply(&self, assignment: &Assignment) {
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
                let sim = self.clone();
                let task = task.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(sim.settings.start).await;
                    let _ = sim.reports.send(sim.change(&task, TaskStatus::Running, None));
                    if let Some(run) = sim.settings.run {
                        tokio::time::sleep(run).await;
                        let _ = sim
                            .reports
                            .send(sim.change(&task, TaskStatus::Stopped, Some(sim.settings.exit_code)));
                    }
                });
            } else if first_stop {
                // Stopped on request: the containers get SIGTERM and exit at once.
                let _ = self.reports.send(self.change(task, TaskStatus::Stopped, Some(143)));
            }
        }
    }
}
