//! The `process` runtime: each container of a task is a local process.
//!
//! The argv is the container's `entryPoint` followed by its `command` (an override's `command`
//! replaces the definition's), with its `environment` (overrides added). Output goes to
//! `<log dir>/<task id>/<container>.log`. When an essential container exits, or the task's
//! desired status becomes STOPPED, the other containers get SIGTERM, then SIGKILL after the
//! container's `stopTimeout` (default 30 s).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::protocol::{AssignedTask, Assignment};
use crate::model::TaskStatus;
use crate::state::tasks::{ContainerChange, StateChange};

/// Default time between SIGTERM and SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs tasks as local processes and reports their state changes on `reports`.
#[derive(Clone)]
pub struct ProcessRuntime {
    cluster: String,
    log_dir: PathBuf,
    reports: mpsc::UnboundedSender<StateChange>,
    /// Tasks started here and not yet finished, by task ID.
    running: Arc<Mutex<BTreeMap<String, CancellationToken>>>,
    /// Tasks finished here (their STOPPED report may still be on its way).
    finished: Arc<Mutex<std::collections::BTreeSet<String>>>,
}

/// One container to run.
struct Spec {
    name: String,
    argv: Vec<String>,
    env: Vec<(String, String)>,
    essential: bool,
    stop_timeout: Duration,
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

fn specs(task: &AssignedTask) -> Vec<Spec> {
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
            let command = strings(o.and_then(|o| o.get("command")))
                .or_else(|| strings(d.get("command")))
                .unwrap_or_default();
            let mut argv = strings(d.get("entryPoint")).unwrap_or_default();
            argv.extend(command);
            let mut env = env_pairs(d.get("environment"));
            env.extend(env_pairs(o.and_then(|o| o.get("environment"))));
            Spec {
                name,
                argv,
                env,
                essential: d.get("essential").and_then(Value::as_bool).unwrap_or(true),
                stop_timeout: d
                    .get("stopTimeout")
                    .and_then(Value::as_u64)
                    .map_or(STOP_TIMEOUT, Duration::from_secs),
            }
        })
        .collect()
}

fn signal(child: &Child, signal: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) with a pid we spawned and still hold; no memory is shared.
        unsafe {
            libc::kill(pid as i32, signal);
        }
    }
}

fn now_seconds_ms() -> u64 {
    crate::api::now_ms()
}

impl ProcessRuntime {
    pub fn new(cluster: String, log_dir: PathBuf, reports: mpsc::UnboundedSender<StateChange>) -> Self {
        ProcessRuntime {
            cluster,
            log_dir,
            reports,
            running: Arc::default(),
            finished: Arc::default(),
        }
    }

    fn report(&self, change: StateChange) {
        let _ = self.reports.send(change);
    }
}

impl super::Runtime for ProcessRuntime {
    /// Brings the local processes in line with `assignment`.
    fn apply(&self, assignment: &Assignment) {
        for task in &assignment.tasks {
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            let known = running.get(&task.id).cloned();
            drop(running);
            let finished = self
                .finished
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&task.id);
            match (task.desired_status.as_str(), known) {
                ("STOPPED", Some(stop)) => stop.cancel(),
                ("STOPPED", None) if !finished => {
                    // Never started here (or lost in a restart): it is simply stopped.
                    self.report(self.task_stopped(&task.id));
                    self.finished
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(task.id.clone());
                }
                ("RUNNING", None) if !finished => {
                    let stop = CancellationToken::new();
                    self.running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(task.id.clone(), stop.clone());
                    let runtime = self.clone();
                    let task = task.clone();
                    tokio::spawn(async move { runtime.run(task, stop).await });
                }
                _ => {}
            }
        }
    }
}

impl ProcessRuntime {
    /// The report that a task has stopped.
    fn task_stopped(&self, task_id: &str) -> StateChange {
        StateChange {
            cluster: self.cluster.clone(),
            task_id: task_id.to_string(),
            status: Some(TaskStatus::Stopped),
            execution_stopped_at_ms: Some(now_seconds_ms()),
            ..Default::default()
        }
    }

    async fn run(self, task: AssignedTask, stop: CancellationToken) {
        let specs = specs(&task);
        let dir = self.log_dir.join(&task.id);
        let mut children: Vec<Option<Child>> = Vec::new();
        let mut failure: Option<String> = None;
        if let Err(e) = std::fs::create_dir_all(&dir) {
            failure = Some(format!("cannot create log dir: {e}"));
        }
        for spec in &specs {
            if failure.is_some() {
                break;
            }
            match self.spawn(spec, &dir) {
                Ok(child) => children.push(Some(child)),
                Err(e) => failure = Some(format!("CannotStartContainerError: {}: {e}", spec.name)),
            }
        }
        if let Some(reason) = failure {
            for child in children.iter_mut().flatten() {
                signal(child, libc::SIGKILL);
                let _ = child.wait().await;
            }
            self.report(StateChange {
                cluster: self.cluster.clone(),
                task_id: task.id.clone(),
                status: Some(TaskStatus::Stopped),
                reason: Some(reason.clone()),
                containers: specs
                    .iter()
                    .map(|s| ContainerChange {
                        name: s.name.clone(),
                        status: Some(TaskStatus::Stopped),
                        reason: Some(reason.clone()),
                        ..Default::default()
                    })
                    .collect(),
                execution_stopped_at_ms: Some(now_seconds_ms()),
                ..Default::default()
            });
            self.finish(&task.id);
            return;
        }
        self.report(StateChange {
            cluster: self.cluster.clone(),
            task_id: task.id.clone(),
            status: Some(TaskStatus::Running),
            containers: specs
                .iter()
                .zip(&children)
                .map(|(s, c)| ContainerChange {
                    name: s.name.clone(),
                    status: Some(TaskStatus::Running),
                    runtime_id: c.as_ref().and_then(|c| c.id()).map(|pid| format!("pid-{pid}")),
                    ..Default::default()
                })
                .collect(),
            pull_started_at_ms: Some(now_seconds_ms()),
            pull_stopped_at_ms: Some(now_seconds_ms()),
            ..Default::default()
        });
        self.supervise(&task, &specs, children, stop).await;
        self.finish(&task.id);
    }

    fn spawn(&self, spec: &Spec, dir: &std::path::Path) -> std::io::Result<Child> {
        let Some((program, args)) = spec.argv.split_first() else {
            return Err(std::io::Error::other("no entryPoint or command to run"));
        };
        let log = std::fs::File::create(dir.join(format!("{}.log", spec.name)))?;
        let err = log.try_clone()?;
        Command::new(program)
            .args(args)
            .envs(spec.env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
    }

    /// Waits for the containers, stopping the rest when an essential one exits or `stop` fires.
    async fn supervise(
        &self,
        task: &AssignedTask,
        specs: &[Spec],
        children: Vec<Option<Child>>,
        stop: CancellationToken,
    ) {
        let (exited_tx, mut exited_rx) = mpsc::unbounded_channel::<(usize, Option<i32>)>();
        let mut pids = Vec::new();
        for (i, child) in children.into_iter().enumerate() {
            let Some(mut child) = child else { continue };
            pids.push((i, child.id()));
            let tx = exited_tx.clone();
            tokio::spawn(async move {
                let code = child.wait().await.ok().and_then(|s| s.code());
                let _ = tx.send((i, code));
            });
        }
        drop(exited_tx);
        let mut left = pids.len();
        let mut stopping = false;
        let mut kill_at: Option<tokio::time::Instant> = None;
        while left > 0 {
            let kill_wait = async {
                match kill_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                exited = exited_rx.recv() => {
                    let Some((i, code)) = exited else { break };
                    left -= 1;
                    pids.retain(|(j, _)| *j != i);
                    self.report(StateChange {
                        cluster: self.cluster.clone(),
                        task_id: task.id.clone(),
                        containers: vec![ContainerChange {
                            name: specs[i].name.clone(),
                            status: Some(TaskStatus::Stopped),
                            exit_code: code.map(i64::from),
                            ..Default::default()
                        }],
                        ..Default::default()
                    });
                    if specs[i].essential && !stopping {
                        stopping = true;
                        kill_at = Some(self.terminate(&pids, specs));
                    }
                }
                _ = stop.cancelled(), if !stopping => {
                    stopping = true;
                    kill_at = Some(self.terminate(&pids, specs));
                }
                _ = kill_wait => {
                    for (_, pid) in &pids {
                        if let Some(pid) = pid {
                            // SAFETY: kill(2) on a child we spawned that has not been reaped.
                            unsafe { libc::kill(*pid as i32, libc::SIGKILL); }
                        }
                    }
                    kill_at = None;
                }
            }
        }
        self.report(self.task_stopped(&task.id));
    }

    /// Sends SIGTERM to the containers still running; returns when to send SIGKILL.
    fn terminate(&self, pids: &[(usize, Option<u32>)], specs: &[Spec]) -> tokio::time::Instant {
        let mut timeout = Duration::ZERO;
        for (i, pid) in pids {
            if let Some(pid) = pid {
                // SAFETY: kill(2) on a child we spawned that has not been reaped.
                unsafe {
                    libc::kill(*pid as i32, libc::SIGTERM);
                }
            }
            timeout = timeout.max(specs[*i].stop_timeout);
        }
        tokio::time::Instant::now() + timeout
    }

    fn finish(&self, task_id: &str) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(task_id);
        self.finished
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(task_id.to_string());
    }
}
