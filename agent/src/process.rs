//! The `process` runtime: each container of a task is a local process.
//!
//! The argv is the container's `entryPoint` followed by its `command` (an override's `command`
//! replaces the definition's), with its `environment` (overrides added). Output goes to
//! `<log dir>/<task id>/<container>.log`. When an essential container exits, or the task's
//! desired status becomes STOPPED, the other containers get SIGTERM, then SIGKILL after the
//! container's `stopTimeout` (default 30 s).
//!
//! Each container is the leader of its own process group, and signals go to the whole group
//! (a shell's children too). Only the task that owns a child signals it, and only before it has
//! reaped it, so a recycled pid is never signalled. Containers die with the agent (Linux
//! parent-death signal): nothing could supervise them after it, and a restarted agent starts
//! the tasks it is assigned afresh.
//!
//! An awsvpc task runs in its own network namespace with the address the server gave it
//! (`netns.rs`), as root; otherwise in the instance's, with a warning.

use std::path::PathBuf;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use ecsd_protocol::messages::{AssignedTask, Assignment, ContainerChange, StateChange, TaskStatus};
use ecsd_protocol::now_ms;

use crate::netns;
use crate::runner::{container_specs, ContainerSpec, Tracker};

/// Runs tasks as local processes and reports their state changes.
#[derive(Clone)]
pub struct ProcessRuntime {
    tracker: Tracker,
    log_dir: PathBuf,
}

/// Sends `signal` to `child`'s process group. `id()` is `None` once the child is reaped, and
/// the caller owns the child, so the group (led by the child) cannot have been recycled.
fn signal(child: &Child, signal: i32) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on the process group of a child we own and have not reaped.
        unsafe {
            libc::kill(-(pid as i32), signal);
        }
    }
}

impl ProcessRuntime {
    pub fn new(cluster: String, log_dir: PathBuf, reports: mpsc::UnboundedSender<StateChange>) -> Self {
        ProcessRuntime {
            tracker: Tracker::new(cluster, reports),
            log_dir,
        }
    }
}

impl crate::Runtime for ProcessRuntime {
    /// Brings the local processes in line with `assignment`.
    fn apply(&self, assignment: &Assignment) {
        self.tracker.apply(assignment, |task, stop| {
            let runtime = self.clone();
            tokio::spawn(async move { runtime.run(task, stop).await });
        });
    }
}

impl ProcessRuntime {
    async fn run(self, task: AssignedTask, stop: CancellationToken) {
        let specs = container_specs(&task);
        let dir = self.log_dir.join(&task.id);
        let mut children: Vec<Option<Child>> = Vec::new();
        let mut failure: Option<String> = None;
        if let Err(e) = std::fs::create_dir_all(&dir) {
            failure = Some(format!("cannot create log dir: {e}"));
        }
        let mut namespace = None;
        match &task.network {
            Some(network) if netns::available() => match netns::TaskNamespace::create(&task.id, network).await {
                Ok(ns) => namespace = Some(ns),
                Err(e) => {
                    failure = Some(format!(
                        "ResourceInitializationError: the task's network namespace: {e}"
                    ))
                }
            },
            Some(network) => tracing::warn!(
                task = %task.id,
                address = %network.address,
                "an awsvpc task runs in the instance's network namespace: making its own needs root and iproute2"
            ),
            None => {}
        }
        for spec in &specs {
            if failure.is_some() {
                break;
            }
            match self.spawn(spec, &dir, namespace.as_ref()) {
                Ok(child) => children.push(Some(child)),
                Err(e) => failure = Some(format!("CannotStartContainerError: {}: {e}", spec.name)),
            }
        }
        if let Some(reason) = failure {
            for child in children.iter_mut().flatten() {
                signal(child, libc::SIGKILL);
                let _ = child.wait().await;
            }
            self.tracker.failed_to_start(&task.id, &specs, &reason);
            if let Some(ns) = &namespace {
                ns.remove().await;
            }
            return;
        }
        self.tracker.report(StateChange {
            cluster: self.tracker.cluster.clone(),
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
            pull_started_at_ms: Some(now_ms()),
            pull_stopped_at_ms: Some(now_ms()),
            ..Default::default()
        });
        self.supervise(&task, &specs, children, stop).await;
        if let Some(ns) = &namespace {
            ns.remove().await;
        }
        self.tracker.finish(&task.id);
    }

    fn spawn(
        &self,
        spec: &ContainerSpec,
        dir: &std::path::Path,
        namespace: Option<&netns::TaskNamespace>,
    ) -> std::io::Result<Child> {
        if spec.argv.is_empty() {
            return Err(std::io::Error::other("no entryPoint or command to run"));
        }
        let argv = match namespace {
            Some(ns) => ns.wrap(&spec.argv),
            None => spec.argv.clone(),
        };
        let Some((program, args)) = argv.split_first() else {
            return Err(std::io::Error::other("no entryPoint or command to run"));
        };
        let log = std::fs::File::create(dir.join(format!("{}.log", spec.name)))?;
        let err = log.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .envs(spec.env.iter().cloned())
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0)
            .kill_on_drop(true);
        #[cfg(target_os = "linux")]
        // SAFETY: prctl(2) is async-signal-safe; the closure touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        command.spawn()
    }

    /// Waits for the containers, stopping the rest when an essential one exits or `stop` fires.
    async fn supervise(
        &self,
        task: &AssignedTask,
        specs: &[ContainerSpec],
        children: Vec<Option<Child>>,
        stop: CancellationToken,
    ) {
        let (exited_tx, mut exited_rx) = mpsc::unbounded_channel::<(usize, Option<i32>)>();
        // Each child is owned by one waiter, which also delivers the signals asked of it.
        let mut pids = Vec::new();
        for (i, child) in children.into_iter().enumerate() {
            let Some(mut child) = child else { continue };
            let (signal_tx, mut signals) = mpsc::unbounded_channel::<i32>();
            pids.push((i, signal_tx));
            let tx = exited_tx.clone();
            tokio::spawn(async move {
                let code = loop {
                    tokio::select! {
                        status = child.wait() => break status.ok().and_then(|s| s.code()),
                        Some(sig) = signals.recv() => signal(&child, sig),
                    }
                };
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
                    self.tracker.container_exited(&task.id, &specs[i].name, code.map(i64::from));
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
                    for (_, signals) in &pids {
                        let _ = signals.send(libc::SIGKILL);
                    }
                    kill_at = None;
                }
            }
        }
        self.tracker.report(self.tracker.task_stopped(&task.id));
    }

    /// Sends SIGTERM to the containers still running; returns when to send SIGKILL.
    fn terminate(&self, pids: &[(usize, mpsc::UnboundedSender<i32>)], specs: &[ContainerSpec]) -> tokio::time::Instant {
        let mut timeout = Duration::ZERO;
        for (i, signals) in pids {
            let _ = signals.send(libc::SIGTERM);
            timeout = timeout.max(specs[*i].stop_timeout);
        }
        tokio::time::Instant::now() + timeout
    }
}
