//! The `docker` runtime: each container of a task is a Docker container, through the Docker
//! Engine API (bollard).
//!
//! The container definition maps onto the engine's: image, entryPoint, command, environment,
//! portMappings (a `hostPort` of 0 or none is a dynamic port, read back after start and reported
//! as `networkBindings`), memory (hard limit), memoryReservation, cpu (shares), stopTimeout,
//! `networkMode` and ECS labels. Logs stay with the engine (`docker logs`). Containers are
//! removed a while after their task stopped.

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointIpamConfig, EndpointSettings, HostConfig, Ipam, IpamConfig, NetworkCreateRequest,
    NetworkingConfig, PortBinding,
};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, RemoveContainerOptions, StartContainerOptions,
    StopContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use ecsd_protocol::messages::{AssignedTask, Assignment, ContainerChange, NetworkBinding, StateChange, TaskStatus};

use crate::runner::{container_specs, ContainerSpec, Tracker};

/// How long stopped containers are kept (for `docker logs`) before they are removed.
const KEEP_STOPPED: Duration = Duration::from_secs(600);

/// Runs tasks as Docker containers.
#[derive(Clone)]
pub struct DockerRuntime {
    tracker: Tracker,
    docker: Docker,
    /// The container instance this agent is: its containers carry it as a label.
    instance_id: String,
    /// Whether the containers left by an earlier run of this agent have been checked.
    swept: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

/// The label naming the container instance a container belongs to.
const INSTANCE_LABEL: &str = "ecsd.container-instance";

/// Connects to the local engine and checks that it answers.
pub async fn connect() -> anyhow::Result<Docker> {
    let docker = Docker::connect_with_local_defaults()?;
    docker.ping().await?;
    Ok(docker)
}

fn container_name(task_id: &str, container: &str) -> String {
    format!("ecs-{task_id}-{container}")
}

/// The Docker network of an awsvpc task: its own, with the task's `/30`.
fn task_network_name(task_id: &str) -> String {
    format!("ecsd-task-{task_id}")
}

/// How a container joins the network: an awsvpc task's first container holds the task's
/// address on the task's own network, and the others share its namespace (as ECS's pause
/// container does); other tasks use their network mode.
enum Join<'a> {
    Mode,
    TaskNetwork(&'a str),
    Container(&'a str),
}

fn create_body(
    task: &AssignedTask,
    spec: &ContainerSpec,
    cluster: &str,
    instance_id: &str,
    join: Join<'_>,
) -> ContainerCreateBody {
    let mut network_mode = task
        .definition
        .get("networkMode")
        .and_then(Value::as_str)
        .unwrap_or("bridge")
        .to_string();
    let mut networking_config = None;
    match join {
        Join::Mode => {}
        Join::TaskNetwork(address) => {
            network_mode = task_network_name(&task.id);
            let endpoint = EndpointSettings {
                ipam_config: Some(EndpointIpamConfig {
                    ipv4_address: Some(address.to_string()),
                    ..Default::default()
                }),
                ..Default::default()
            };
            networking_config = Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(network_mode.clone(), endpoint)])),
            });
        }
        Join::Container(first) => network_mode = format!("container:{first}"),
    }
    let mut exposed = HashMap::new();
    let mut bindings = HashMap::new();
    for (container_port, host_port, protocol) in &spec.ports {
        let key = format!("{container_port}/{protocol}");
        exposed.insert(key.clone(), HashMap::new());
        let host = if *host_port == 0 {
            String::new()
        } else {
            host_port.to_string()
        };
        bindings.insert(
            key,
            Some(vec![PortBinding {
                host_ip: Some("0.0.0.0".into()),
                host_port: Some(host),
            }]),
        );
    }
    let labels = HashMap::from([
        ("com.amazonaws.ecs.task-arn".to_string(), task.arn.clone()),
        ("com.amazonaws.ecs.container-name".to_string(), spec.name.clone()),
        ("com.amazonaws.ecs.cluster".to_string(), cluster.to_string()),
        (INSTANCE_LABEL.to_string(), instance_id.to_string()),
    ]);
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entry_point.clone(),
        cmd: spec.command.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        exposed_ports: (network_mode == "bridge").then_some(exposed),
        host_config: Some(HostConfig {
            memory: spec.memory.map(|m| m * 1024 * 1024),
            memory_reservation: spec.memory_reservation.map(|m| m * 1024 * 1024),
            // Docker needs at least 2 shares; 0 means "no limit" in ECS.
            cpu_shares: spec.cpu.filter(|c| *c > 0).map(|c| c.max(2)),
            port_bindings: (network_mode == "bridge").then_some(bindings),
            network_mode: Some(network_mode),
            ..Default::default()
        }),
        networking_config,
        ..Default::default()
    }
}

impl DockerRuntime {
    pub fn new(
        docker: Docker,
        cluster: String,
        instance_id: String,
        reports: mpsc::UnboundedSender<StateChange>,
    ) -> Self {
        DockerRuntime {
            tracker: Tracker::new(cluster, reports),
            docker,
            instance_id,
            swept: Default::default(),
        }
    }

    /// After a restart: stops this instance's running containers whose task the assignment does
    /// not want running (stopped, or marked STOPPED while the agent was away). Those it wants
    /// are adopted when the task starts.
    async fn sweep(self, wanted: std::collections::BTreeSet<String>) {
        let filters = HashMap::from([(
            "label".to_string(),
            vec![format!("{INSTANCE_LABEL}={}", self.instance_id)],
        )]);
        let options = bollard::query_parameters::ListContainersOptions {
            filters: Some(filters),
            ..Default::default()
        };
        let containers = match self.docker.list_containers(Some(options)).await {
            Ok(c) => c,
            Err(e) => {
                // Not swept: the next assignment tries again.
                tracing::warn!(error = %e, "cannot list this instance's containers");
                self.swept.store(false, std::sync::atomic::Ordering::SeqCst);
                return;
            }
        };
        for c in containers {
            let labels = c.labels.unwrap_or_default();
            let task = labels
                .get("com.amazonaws.ecs.task-arn")
                .map(|arn| arn.rsplit('/').next().unwrap_or(arn).to_string())
                .unwrap_or_default();
            if wanted.contains(&task) {
                continue;
            }
            if let Some(id) = c.id {
                tracing::info!(%task, container = %id, "stopping a container left from before this agent started");
                let options = StopContainerOptions {
                    t: Some(10),
                    ..Default::default()
                };
                let _ = self.docker.stop_container(&id, Some(options)).await;
            }
        }
    }

    /// An awsvpc task's own network (`/30`, the instance's side its gateway); an existing one
    /// (this agent restarted) is kept.
    async fn create_task_network(&self, task: &AssignedTask) -> anyhow::Result<()> {
        let Some(network) = &task.network else {
            return Ok(());
        };
        let address: std::net::Ipv4Addr = network.address.parse()?;
        let _: std::net::Ipv4Addr = network.gateway.parse()?;
        if !(8..=30).contains(&network.prefix) {
            anyhow::bail!("the task's network has an invalid prefix /{}", network.prefix);
        }
        let base = std::net::Ipv4Addr::from(u32::from(address) & !((1u32 << (32 - network.prefix)) - 1));
        let request = NetworkCreateRequest {
            name: task_network_name(&task.id),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(format!("{base}/{}", network.prefix)),
                    gateway: Some(network.gateway.clone()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            labels: Some(HashMap::from([(INSTANCE_LABEL.to_string(), self.instance_id.clone())])),
            ..Default::default()
        };
        match self.docker.create_network(request).await {
            Ok(_) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates and starts one container; returns its id.
    async fn start_one(&self, task: &AssignedTask, spec: &ContainerSpec, join: Join<'_>) -> anyhow::Result<String> {
        let name = container_name(&task.id, &spec.name);
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let body = create_body(task, spec, &self.tracker.cluster, &self.instance_id, join);
        let created = match self.docker.create_container(Some(options.clone()), body.clone()).await {
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                // No such image here: pull it, then create again.
                self.pull(&spec.image).await?;
                self.docker.create_container(Some(options), body).await?
            }
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
                // The container exists: this agent restarted. A running one is adopted (the
                // task goes on); a stopped one is replaced.
                let existing = self
                    .docker
                    .inspect_container(&name, None::<InspectContainerOptions>)
                    .await?;
                let id = existing.id.clone().unwrap_or_else(|| name.clone());
                if existing.state.and_then(|s| s.running) == Some(true) {
                    tracing::info!(task = %task.id, container = %spec.name, "adopting the running container");
                    return Ok(id);
                }
                let remove = RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                };
                self.docker.remove_container(&id, Some(remove)).await?;
                self.docker.create_container(Some(options), body).await?
            }
            other => other?,
        };
        if let Err(e) = self
            .docker
            .start_container(&created.id, None::<StartContainerOptions>)
            .await
        {
            // Created but never started: it is removed, not left behind.
            let options = RemoveContainerOptions {
                force: true,
                ..Default::default()
            };
            let _ = self.docker.remove_container(&created.id, Some(options)).await;
            return Err(e.into());
        }
        Ok(created.id)
    }

    /// Waits until container `id` exits and returns its exit code. A broken wait (the engine
    /// restarted, a connection dropped) is not an exit: the container's state is checked and
    /// the wait resumed while it runs.
    async fn exit_code(docker: &Docker, id: &str) -> i64 {
        loop {
            let mut wait = docker.wait_container(id, None::<WaitContainerOptions>);
            match wait.next().await {
                Some(Ok(r)) => return r.status_code,
                Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => return code,
                _ => {}
            }
            match docker.inspect_container(id, None::<InspectContainerOptions>).await {
                Ok(c) => {
                    let state = c.state.unwrap_or_default();
                    if state.running != Some(true) {
                        return state.exit_code.unwrap_or(-1);
                    }
                }
                // The container is gone: it was removed from outside, so it no longer runs.
                Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => return -1,
                Err(_) => {}
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    async fn pull(&self, image: &str) -> anyhow::Result<()> {
        let options = bollard::query_parameters::CreateImageOptions {
            from_image: Some(image.to_string()),
            ..Default::default()
        };
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(step) = progress.next().await {
            step?;
        }
        Ok(())
    }

    /// The host ports the engine bound for a started container.
    async fn bindings(&self, id: &str) -> Vec<NetworkBinding> {
        let Ok(inspected) = self.docker.inspect_container(id, None::<InspectContainerOptions>).await else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let ports = inspected.network_settings.and_then(|n| n.ports).unwrap_or_default();
        for (key, bound) in ports {
            let (port, protocol) = key.split_once('/').unwrap_or((key.as_str(), "tcp"));
            let Ok(container_port) = port.parse::<u16>() else {
                continue;
            };
            for b in bound.unwrap_or_default() {
                // One binding per port is enough (the engine lists IPv4 and IPv6 separately).
                if out
                    .iter()
                    .any(|x: &NetworkBinding| x.container_port == container_port && x.protocol == protocol)
                {
                    continue;
                }
                if let Some(host_port) = b.host_port.and_then(|p| p.parse().ok()) {
                    out.push(NetworkBinding {
                        bind_ip: "0.0.0.0".into(),
                        container_port,
                        host_port,
                        protocol: protocol.to_string(),
                    });
                }
            }
        }
        out.sort_by_key(|b| (b.container_port, b.protocol.clone()));
        out
    }

    async fn run(self, task: AssignedTask, stop: CancellationToken) {
        let specs = container_specs(&task);
        let mut ids: Vec<String> = Vec::new();
        let mut failure = None;
        if let Err(e) = self.create_task_network(&task).await {
            failure = Some(format!("ResourceInitializationError: the task's network: {e}"));
        }
        for spec in specs.iter().take_while(|_| failure.is_none()) {
            let join = match (&task.network, ids.first()) {
                (None, _) => Join::Mode,
                (Some(n), None) => Join::TaskNetwork(&n.address),
                (Some(_), Some(first)) => Join::Container(first),
            };
            match self.start_one(&task, spec, join).await {
                Ok(id) => ids.push(id),
                Err(e) => {
                    failure = Some(format!("CannotStartContainerError: {}: {e}", spec.name));
                    break;
                }
            }
        }
        if let Some(reason) = failure {
            for id in &ids {
                let _ = self
                    .docker
                    .stop_container(
                        id,
                        Some(StopContainerOptions {
                            t: Some(0),
                            ..Default::default()
                        }),
                    )
                    .await;
            }
            self.tracker.failed_to_start(&task.id, &specs, &reason);
            self.remove_later(ids, task.network.as_ref().map(|_| task_network_name(&task.id)));
            return;
        }
        let mut containers = Vec::new();
        for (spec, id) in specs.iter().zip(&ids) {
            containers.push(ContainerChange {
                name: spec.name.clone(),
                status: Some(TaskStatus::Running),
                runtime_id: Some(id.clone()),
                network_bindings: Some(self.bindings(id).await),
                ..Default::default()
            });
        }
        self.tracker.report(StateChange {
            cluster: self.tracker.cluster.clone(),
            task_id: task.id.clone(),
            status: Some(TaskStatus::Running),
            containers,
            ..Default::default()
        });
        self.supervise(&task, &specs, &ids, stop).await;
        self.tracker.report(self.tracker.task_stopped(&task.id));
        self.tracker.finish(&task.id);
        self.remove_later(ids, task.network.as_ref().map(|_| task_network_name(&task.id)));
    }

    /// Waits for the containers; stops the rest when an essential one exits or `stop` fires
    /// (the engine sends SIGTERM, then SIGKILL after the container's stopTimeout).
    async fn supervise(&self, task: &AssignedTask, specs: &[ContainerSpec], ids: &[String], stop: CancellationToken) {
        let (exited_tx, mut exited_rx) = mpsc::unbounded_channel::<(usize, i64)>();
        for (i, id) in ids.iter().enumerate() {
            let docker = self.docker.clone();
            let id = id.clone();
            let tx = exited_tx.clone();
            tokio::spawn(async move {
                let code = DockerRuntime::exit_code(&docker, &id).await;
                let _ = tx.send((i, code));
            });
        }
        drop(exited_tx);
        let mut running: Vec<usize> = (0..ids.len()).collect();
        let mut stopping = false;
        while !running.is_empty() {
            tokio::select! {
                exited = exited_rx.recv() => {
                    let Some((i, code)) = exited else { break };
                    running.retain(|j| *j != i);
                    self.tracker.container_exited(&task.id, &specs[i].name, Some(code));
                    if specs[i].essential && !stopping {
                        stopping = true;
                        self.stop_all(&running, specs, ids);
                    }
                }
                _ = stop.cancelled(), if !stopping => {
                    stopping = true;
                    self.stop_all(&running, specs, ids);
                }
            }
        }
    }

    fn stop_all(&self, running: &[usize], specs: &[ContainerSpec], ids: &[String]) {
        for i in running {
            let docker = self.docker.clone();
            let id = ids[*i].clone();
            let t = specs[*i].stop_timeout.as_secs().min(i32::MAX as u64) as i32;
            tokio::spawn(async move {
                let options = StopContainerOptions {
                    t: Some(t),
                    ..Default::default()
                };
                let _ = docker.stop_container(&id, Some(options)).await;
            });
        }
    }

    /// Removes the task's containers, then its own network if it has one, after a while.
    fn remove_later(&self, ids: Vec<String>, network: Option<String>) {
        let docker = self.docker.clone();
        tokio::spawn(async move {
            tokio::time::sleep(KEEP_STOPPED).await;
            for id in ids {
                let options = RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                };
                let _ = docker.remove_container(&id, Some(options)).await;
            }
            if let Some(network) = network {
                let _ = docker.remove_network(&network).await;
            }
        });
    }
}

impl crate::Runtime for DockerRuntime {
    fn apply(&self, assignment: &Assignment) {
        if !assignment.deregistered && !self.swept.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let wanted = assignment
                .tasks
                .iter()
                .filter(|t| t.desired_status == "RUNNING")
                .map(|t| t.id.clone())
                .collect();
            tokio::spawn(self.clone().sweep(wanted));
        }
        self.tracker.apply(assignment, |task, stop| {
            let runtime = self.clone();
            tokio::spawn(async move { runtime.run(task, stop).await });
        });
    }
}
