//! The service scheduler, on the leader: runs the pure reconciler for every ACTIVE service and
//! commits what it decides as term-stamped commands that `apply` re-checks.
//!
//! Level-triggered: each pass reads the leader's replica (which has applied everything this
//! loop committed, since every commit is awaited) and acts on the difference between intent and
//! tasks. A pass runs whenever apply writes a task, service or instance (the change feed's
//! [`SERVICE_WAKE`] key) and every [`SAFETY_PASS`] as well. A new leader simply runs a pass, so
//! a deployment continues exactly where the old leader left it.
//!
//! It never spins: a service whose tasks cannot be placed is not tried again until the
//! cluster's instances change, and tasks that keep failing to start delay the next launch
//! (the throttle: doubling waits, persisted in the service so a new leader keeps them).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::future::BoxFuture;

use super::{LeaderContext, LeaderTask};
use crate::launch;
use crate::model::{
    stable_hash, ArnScope, ContainerInstance, InstanceStatus, Service, ServiceStatus, Task, TaskDefinition, TaskStatus,
};
use crate::placement::{self, reason, Strategy};
use crate::reconcile::{self, Instances};
use crate::stamp;
use crate::state::services::repeats_newest;
use crate::state::tasks::Launch;
use crate::state::{self, container_instances, services, task_definitions, tasks, Command, Outcome};

pub use crate::state::SERVICE_WAKE;

/// A pass runs at least this often, whatever the change feed says.
const SAFETY_PASS: Duration = Duration::from_secs(2);

/// How many rounds of failed starts make the throttle's event appear.
const THROTTLE_EVENT_ROUNDS: u32 = 2;
/// The most tasks one pass launches for one service (one log entry): a large scale-up takes
/// several passes, each woken by the last one's launch, and no entry grows past what
/// replicates quickly.
const MAX_LAUNCH_PER_PASS: usize = 1000;

pub struct ServiceScheduler {
    pub scope: ArnScope,
    pub backoff: Duration,
    pub backoff_max: Duration,
    /// How long a steady deployment's tasks must have run before it is COMPLETED.
    pub settle: Duration,
}

impl LeaderTask for ServiceScheduler {
    fn name(&self) -> &'static str {
        "service-scheduler"
    }

    fn run(&self, ctx: LeaderContext) -> BoxFuture<'static, ()> {
        let scheduler = Scheduler {
            scope: self.scope.clone(),
            backoff: self.backoff,
            backoff_max: self.backoff_max,
            settle: self.settle,
            unplaceable: BTreeMap::new(),
            rolling: 0,
        };
        Box::pin(scheduler.run(ctx))
    }
}

struct Scheduler {
    scope: ArnScope,
    backoff: Duration,
    backoff_max: Duration,
    settle: Duration,
    /// (cluster, service, deployment) → the fingerprint of the cluster's instances when its
    /// tasks last could not all be placed: not tried again until the instances change.
    unplaceable: BTreeMap<(String, String, String), u64>,
    /// Services seen in this pass with a deployment under way (more than one deployment).
    rolling: u64,
}

impl Scheduler {
    async fn run(mut self, ctx: LeaderContext) {
        let mut wake = ctx.node.handle().feed().subscribe(SERVICE_WAKE.to_vec());
        loop {
            wake.borrow_and_update();
            if let Err(e) = self.pass(&ctx).await {
                tracing::debug!(error = %e, "service scheduler pass failed; retrying");
            }
            tokio::select! {
                _ = ctx.cancel.cancelled() => {
                    // Counted by the leader: a node that no longer leads shows none.
                    metrics::gauge!("ecsd_deployments_in_progress").set(0.0);
                    return;
                }
                _ = wake.changed() => {}
                _ = tokio::time::sleep(SAFETY_PASS) => {}
            }
        }
    }

    async fn pass(&mut self, ctx: &LeaderContext) -> Result<(), String> {
        let mut after: Option<String> = None;
        let mut seen = BTreeSet::new();
        self.rolling = 0;
        metrics::counter!("ecsd_reconciler_passes_total").increment(1);
        let result = self.clusters_pass(ctx, &mut after, &mut seen).await;
        // What is remembered of services gone or of superseded deployments is forgotten.
        if result.is_ok() {
            self.unplaceable.retain(|key, _| seen.contains(key));
            metrics::gauge!("ecsd_deployments_in_progress").set(self.rolling as f64);
        }
        result
    }

    async fn clusters_pass(
        &mut self,
        ctx: &LeaderContext,
        after: &mut Option<String>,
        seen: &mut BTreeSet<(String, String, String)>,
    ) -> Result<(), String> {
        loop {
            let view = ctx.node.handle().view();
            let (clusters, more) =
                state::list_active_clusters(view, after.as_deref(), 256).map_err(|e| e.to_string())?;
            for cluster in &clusters {
                if ctx.cancel.is_cancelled() {
                    return Ok(());
                }
                self.cluster_pass(ctx, &cluster.name, seen).await?;
            }
            *after = clusters.last().map(|c| c.name.clone());
            if !more {
                return Ok(());
            }
        }
    }

    async fn cluster_pass(
        &mut self,
        ctx: &LeaderContext,
        cluster: &str,
        seen: &mut BTreeSet<(String, String, String)>,
    ) -> Result<(), String> {
        let view = ctx.node.handle().view();
        let names: Vec<String> = services::all(view, cluster)
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|s| s.status == ServiceStatus::Active)
            .map(|s| s.name)
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let mut instances = container_instances::all(view, cluster).map_err(|e| e.to_string())?;
        for name in &names {
            if ctx.cancel.is_cancelled() {
                return Ok(());
            }
            // Read afresh: a pass over many services takes a while, and users change them.
            let Some(service) = services::get(view, cluster, name)
                .map_err(|e| e.to_string())?
                .filter(|s| s.status == ServiceStatus::Active)
            else {
                continue;
            };
            if let Some(primary) = service.deployments.first() {
                seen.insert((cluster.to_string(), name.clone(), primary.id.clone()));
            }
            if service.deployments.len() > 1 {
                self.rolling += 1;
            }
            let tasks = tasks::of_service(view, cluster, name).map_err(|e| e.to_string())?;
            let launched = self.service_pass(ctx, &service, &tasks, &instances).await?;
            if launched {
                // The next service places against what this one took.
                instances = container_instances::all(ctx.node.handle().view(), cluster).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// One reconciliation of one service; true if it launched tasks.
    async fn service_pass(
        &mut self,
        ctx: &LeaderContext,
        service: &Service,
        tasks: &[Task],
        instances: &[ContainerInstance],
    ) -> Result<bool, String> {
        let Some(primary) = service.deployments.first() else {
            return Ok(false);
        };
        // A DAEMON service needs its template to know the eligible instances; a REPLICA service
        // only to launch, so a steady one costs no task definition read.
        let mut template = None;
        let mut events = Vec::new();
        if service.is_daemon() {
            template = self.template(ctx, service, &mut events)?;
            if template.is_none() {
                return self.publish(ctx, service, events).await.map(|()| false);
            }
        }
        let now = ctx.node.handle().cluster_now_ms();
        let (start_on, count, steady) = if let Some(template) = &template {
            let eligible: BTreeSet<String> = instances
                .iter()
                .filter(|i| i.status == InstanceStatus::Active && template.admits(i))
                .map(|i| i.id.clone())
                .collect();
            let p = reconcile::daemon_plan(service, tasks, &eligible);
            if p.desired as i64 != service.desired_count {
                decide(
                    ctx,
                    Command::SetServiceDesiredCount {
                        cluster: service.cluster.clone(),
                        name: service.name.clone(),
                        desired: p.desired as i64,
                    },
                )
                .await?;
            }
            self.stop(ctx, service, p.stop, p.desired as i64).await?;
            if p.stuck {
                events.push(deadlock_event(&service.name));
            }
            let mut start_on = p.start_on;
            start_on.truncate(MAX_LAUNCH_PER_PASS);
            let count = start_on.len();
            (Some(start_on), count, p.steady)
        } else {
            let p = reconcile::plan(service, tasks, &Instances::of(instances), now);
            // A deployment the circuit breaker failed (and did not roll back) moves nothing:
            // the older deployment's tasks keep serving.
            if !primary.is_failed() {
                self.stop(ctx, service, p.stop, service.desired_count).await?;
            }
            if p.stuck {
                events.push(deadlock_event(&service.name));
            }
            (None, p.start.min(MAX_LAUNCH_PER_PASS), p.steady)
        };
        if steady {
            events.push(format!("(service {}) has reached a steady state.", service.name));
            // Completed once steady and settled: every task of the deployment has run a while.
            let settle = self.settle.as_millis() as u64;
            let settled = tasks
                .iter()
                .filter(|t| t.deployment_id.as_deref() == Some(&primary.id) && t.last_status == TaskStatus::Running)
                .all(|t| t.started_at_ms.is_some_and(|at| now.saturating_sub(at) >= settle));
            if primary.rollout_state.as_deref() == Some("IN_PROGRESS") && service.deployments.len() == 1 && settled {
                decide(
                    ctx,
                    Command::CompleteDeployment {
                        cluster: service.cluster.clone(),
                        name: service.name.clone(),
                        deployment: primary.id.clone(),
                    },
                )
                .await?;
            }
        }
        // A deployment the circuit breaker failed launches no more tasks.
        let count = if primary.is_failed() { 0 } else { count };
        let mut launched = false;
        if count > 0 && template.is_none() {
            template = self.template(ctx, service, &mut events)?;
        }
        if let Some(template) = template.as_ref().filter(|_| count > 0) {
            let rounds = service.failed_starts.div_ceil(service.desired_count.max(1) as u32);
            let wait = self.backoff_for(rounds);
            if now < service.last_failed_start_ms.saturating_add(wait) {
                if rounds >= THROTTLE_EVENT_ROUNDS {
                    events.push(format!(
                        "(service {}) is unable to consistently start tasks successfully.",
                        service.name
                    ));
                }
            } else {
                let fingerprint = stable_hash(&serde_json::to_vec(instances).unwrap_or_default());
                let key = (service.cluster.clone(), service.name.clone(), primary.id.clone());
                if self.unplaceable.get(&key) != Some(&fingerprint) {
                    let plan = match &start_on {
                        Some(on) => template.place_on(instances, on),
                        None => template.place(instances, count),
                    };
                    let mut failures = plan.failures.clone();
                    let mut placed = 0;
                    if !plan.placements.is_empty() {
                        let mut launch = template.launch.clone();
                        launch::add_tasks(&mut launch, &plan.placements);
                        launch.event_id = Some(stamp::fresh_id());
                        if let Outcome::Tasks { tasks, failures: found } =
                            decide(ctx, Command::LaunchTasks(Box::new(launch))).await?
                        {
                            placed = tasks.len();
                            failures.extend(found);
                            metrics::counter!("ecsd_reconciler_tasks_started_total").increment(placed as u64);
                        }
                        launched = true;
                    }
                    // Fewer placed than planned (here, or when apply re-checked): wait for the
                    // instances to change before trying again.
                    if placed < count {
                        self.unplaceable.insert(key, fingerprint);
                        let fargate_capacity = instances.iter().any(|i| {
                            i.status == InstanceStatus::Active
                                && i.attributes.iter().any(|a| a.name == launch::CAPACITY_ATTRIBUTE)
                        });
                        events.push(if template.launch.kind.is_fargate() && !fargate_capacity {
                            // As ECS says when Fargate has no capacity for a service's task.
                            format!(
                                "(service {}) was unable to place a task. Reason: Capacity is unavailable at this time. Please try again later or in a different availability zone.",
                                service.name
                            )
                        } else {
                            unplaceable_event(&service.name, &failures)
                        });
                    } else {
                        self.unplaceable.remove(&key);
                    }
                }
            }
        }
        self.publish(ctx, service, events).await?;
        Ok(launched)
    }

    /// Records the first of `events` as the service's event, unless it repeats the newest.
    async fn publish(&self, ctx: &LeaderContext, service: &Service, events: Vec<String>) -> Result<(), String> {
        // One event a pass: two alternating messages would otherwise never count as repeats.
        let Some(message) = events.into_iter().next() else {
            return Ok(());
        };
        let now = ctx.node.handle().cluster_now_ms();
        let recent =
            services::events(ctx.node.handle().view(), &service.cluster, &service.name).map_err(|e| e.to_string())?;
        if !repeats_newest(&recent, now, &message) {
            decide(
                ctx,
                Command::ServiceEvent {
                    cluster: service.cluster.clone(),
                    name: service.name.clone(),
                    id: stamp::fresh_id(),
                    message,
                },
            )
            .await?;
        }
        Ok(())
    }

    fn backoff_for(&self, rounds: u32) -> u64 {
        if rounds == 0 {
            return 0;
        }
        let base = self.backoff.as_millis() as u64;
        base.saturating_mul(1u64 << (rounds - 1).min(40))
            .min(self.backoff_max.as_millis() as u64)
    }

    async fn stop(
        &self,
        ctx: &LeaderContext,
        service: &Service,
        stop: Vec<(String, String)>,
        desired: i64,
    ) -> Result<(), String> {
        let Some((_, reason)) = stop.first().cloned() else {
            return Ok(());
        };
        metrics::counter!("ecsd_reconciler_tasks_stopped_total").increment(stop.len() as u64);
        decide(
            ctx,
            Command::StopServiceTasks {
                cluster: service.cluster.clone(),
                name: service.name.clone(),
                ids: stop.into_iter().map(|(id, _)| id).collect(),
                reason,
                event_id: stamp::fresh_id(),
                planned: service.deployments.first().map(|d| (d.id.clone(), desired)),
            },
        )
        .await
        .map(|_| ())
    }

    /// What every task of the service's PRIMARY deployment is launched with. A task definition
    /// that cannot be launched (a stored constraint that does not parse) gives none, and an
    /// event that says why; the other services are scheduled as usual.
    fn template(
        &self,
        ctx: &LeaderContext,
        service: &Service,
        events: &mut Vec<String>,
    ) -> Result<Option<Template>, String> {
        let Some(primary) = service.deployments.first() else {
            return Ok(None);
        };
        let Some((family, Some(revision))) = self.scope.task_definition_ref(&primary.task_definition_arn) else {
            return Ok(None);
        };
        let view = ctx.node.handle().view();
        let Some(definition) = task_definitions::get(view, family, revision).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let modern = crate::state::identity::cluster_version(view).map_err(|e| e.to_string())? >= 2;
        match Template::new(&self.scope, service, &definition, modern) {
            Ok(template) => Ok(Some(template)),
            Err(why) => {
                tracing::warn!(service = %service.arn, %why, "the service's tasks cannot be launched");
                events.push(format!("(service {}) is unable to launch tasks: {why}.", service.name));
                Ok(None)
            }
        }
    }
}

/// Proposes a decision of this leader's term and waits until it is applied.
async fn decide(ctx: &LeaderContext, command: Command) -> Result<Outcome, String> {
    super::decide(ctx, command).await.map_err(|e| e.to_string())
}

/// The launch of one of the service's tasks, and where such a task may go.
struct Template {
    launch: Launch,
    placement: launch::Placement,
}

impl Template {
    /// `modern`: the cluster version is at least 2, so every member applies launch kinds and
    /// long ARNs by default alike (before it, a launch is made as earlier builds made it).
    fn new(scope: &ArnScope, service: &Service, definition: &TaskDefinition, modern: bool) -> Result<Template, String> {
        let mut strategies: Vec<Strategy> = service
            .spec
            .placement_strategy
            .iter()
            .map(|s| s.strategy.clone())
            .collect();
        if strategies.is_empty() && !service.is_daemon() {
            strategies = launch::service_default_strategies();
        }
        let propagated = match service.spec.text("propagateTags") {
            Some("SERVICE") => &service.tags[..],
            Some("TASK_DEFINITION") => &definition.tags[..],
            _ => &[],
        };
        let managed = service.spec.echoed.get("enableECSManagedTags") == Some(&serde_json::Value::Bool(true));
        let tags = launch::task_tags(
            Vec::new(),
            propagated,
            managed.then_some((service.cluster.as_str(), Some(service.name.as_str()))),
        );
        let primary = service.deployments.first().map(|d| d.id.clone()).unwrap_or_default();
        let origin = launch::Origin {
            cluster: service.cluster.clone(),
            group: Some(format!("service:{}", service.name)),
            started_by: Some(primary.clone()),
            tags,
            service: Some((service.name.clone(), primary)),
            principal: service.created_by.clone(),
        };
        let mut launch = launch::template(scope, definition, None, origin).map_err(|e| format!("{e:?}"))?;
        if modern {
            launch.kind = launch::service_kind(service, definition);
        } else {
            launch.long_by_default = false;
        }
        // A DAEMON service's task goes where no task of the service is.
        let placement = launch::Placement::new(
            strategies,
            &service.spec.placement_constraints,
            definition,
            service.is_daemon(),
            &launch.kind,
        )
        .map_err(|e| e.to_string())?;
        placement.constrain(&mut launch);
        Ok(Template { launch, placement })
    }

    /// Whether a DAEMON task belongs on `instance`: it meets the constraints and attributes.
    fn admits(&self, instance: &ContainerInstance) -> bool {
        self.placement.admits(&self.launch, instance)
    }

    fn place(&self, instances: &[ContainerInstance], count: usize) -> placement::Plan {
        launch::plan(&self.launch, &self.placement, instances, count)
    }

    /// One task on each of `on` (a DAEMON service's instances), each checked as apply will.
    fn place_on(&self, instances: &[ContainerInstance], on: &[String]) -> placement::Plan {
        launch::plan_on(&self.launch, &self.placement, instances, on)
    }
}

/// The event for a rollout that the deployment configuration keeps from moving.
fn deadlock_event(service: &str) -> String {
    format!(
        "(service {service}) was unable to stop or start tasks during a deployment because of the service deployment \
         configuration. Update the minimumHealthyPercent or maximumPercent value and try again."
    )
}

/// The event for tasks that could not be placed, naming the closest-matching instance: the one
/// that passed the most checks, in the order the placement engine makes them.
pub fn unplaceable_event(service: &str, failures: &[(String, String)]) -> String {
    const ORDER: [&str; 9] = [
        reason::INACTIVE,
        reason::DRAINING,
        reason::AGENT,
        reason::ATTRIBUTE,
        reason::CPU,
        reason::MEMORY,
        reason::PORTS,
        reason::PORTS_UDP,
        reason::DISTINCT_INSTANCE,
    ];
    let rank = |why: &str| ORDER.iter().position(|r| *r == why).unwrap_or(ORDER.len());
    let head = format!(
        "(service {service}) was unable to place a task because no container instance met all of its requirements."
    );
    let closest = failures
        .iter()
        .filter(|(_, why)| !matches!(why.as_str(), reason::INACTIVE | reason::DRAINING))
        .max_by(|a, b| rank(&a.1).cmp(&rank(&b.1)).then_with(|| b.0.cmp(&a.0)));
    let Some((arn, why)) = closest else {
        return format!(
            "{head} Reason: No Container Instances were found in your cluster. For more information, see the \
             Troubleshooting section."
        );
    };
    let id = arn.rsplit('/').next().unwrap_or(arn);
    let detail = match why.as_str() {
        reason::CPU => "has insufficient CPU units available".to_string(),
        reason::MEMORY => "has insufficient memory available".to_string(),
        reason::PORTS | reason::PORTS_UDP => "is already using a port required by your task".to_string(),
        reason::ATTRIBUTE => "is missing an attribute required by your task".to_string(),
        other => format!("encountered error \"{other}\""),
    };
    format!(
        "{head} The closest matching (container-instance {id}) {detail}. For more information, see the \
         Troubleshooting section of the Amazon ECS Developer Guide."
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::placement::SpreadField;

    fn service(strategy: &str, spec: Value) -> Service {
        serde_json::from_value(json!({
            "cluster": "c", "name": "web", "arn": "arn:aws:ecs:r:1:service/web", "status": "Active",
            "task_definition_arn": "arn:aws:ecs:r:1:task-definition/web:1", "desired_count": 2,
            "running_count": 0, "pending_count": 0, "launch_type": "EC2", "scheduling_strategy": strategy,
            "maximum_percent": 200, "minimum_healthy_percent": 100,
            "deployments": [{"id": "ecs-svc/1", "status": "PRIMARY",
                "task_definition_arn": "arn:aws:ecs:r:1:task-definition/web:1", "desired_count": 2,
                "pending_count": 0, "running_count": 0, "created_at_ms": 0, "updated_at_ms": 0}],
            "events": [], "spec": spec, "created_at_ms": 0, "created_by": "arn:aws:iam::1:user/me",
            "tags": [{"key": "team", "value": "a"}]
        }))
        .unwrap()
    }

    fn definition() -> TaskDefinition {
        serde_json::from_value(json!({
            "family": "web", "revision": 1, "arn": "arn:aws:ecs:r:1:task-definition/web:1", "status": "Active",
            "body": {"containerDefinitions": [{"name": "c", "image": "x", "memory": 64,
                        "portMappings": [{"containerPort": 80, "hostPort": 8080}]}],
                     "placementConstraints": [{"type": "memberOf", "expression": "attribute:os == linux"}]},
            "tags": [{"key": "from", "value": "td"}], "registered_at_ms": 0
        }))
        .unwrap()
    }

    fn scope() -> ArnScope {
        ArnScope {
            region: "r".into(),
            account_id: "1".into(),
            long_arns_by_default: false,
        }
    }

    #[test]
    fn service_tasks_are_launched_as_the_service_and_its_definition_say() {
        let t = Template::new(&scope(), &service("REPLICA", json!({})), &definition(), true).unwrap();
        assert_eq!(
            t.placement.strategies,
            vec![
                Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
                Strategy::Spread(SpreadField::Instance)
            ],
            "the default: zones, then instances"
        );
        let l = &t.launch;
        assert_eq!(
            (l.group.as_str(), l.started_by.as_deref()),
            ("service:web", Some("ecs-svc/1"))
        );
        assert_eq!(l.service, Some(("web".to_string(), "ecs-svc/1".to_string())));
        assert_eq!((l.reservation.memory, l.reservation.ports.clone()), (64, vec![8080]));
        assert_eq!(
            l.member_of,
            vec![
                "attribute:os == linux".to_string(),
                "attribute:ecsd.capacity !exists".to_string()
            ],
            "the definition's, and EC2 capacity"
        );
        assert!(!l.distinct_instance && l.tags.is_empty());
        assert_eq!(l.principal, "arn:aws:iam::1:user/me");

        let spec = json!({
            "placementStrategy": [{"type": "binpack", "field": "memory"}],
            "placementConstraints": [{"type": "distinctInstance"}, {"type": "memberOf", "expression": "attribute:a == b"}],
            "propagateTags": "SERVICE"
        });
        let t = Template::new(&scope(), &service("REPLICA", spec), &definition(), true).unwrap();
        assert_eq!(
            t.placement.strategies,
            vec![Strategy::Binpack(placement::BinpackField::Memory)]
        );
        assert!(t.launch.distinct_instance);
        assert_eq!(
            t.launch.member_of.len(),
            3,
            "the service's, the definition's and the capacity's"
        );
        assert_eq!(t.launch.tags[0].key, "team");

        let t = Template::new(
            &scope(),
            &service("DAEMON", json!({"propagateTags": "TASK_DEFINITION"})),
            &definition(),
            true,
        )
        .unwrap();
        assert!(
            t.placement.strategies.is_empty() && t.launch.distinct_instance,
            "one task per instance"
        );
        assert_eq!(t.launch.tags[0].key, "from");

        // A task definition stored before its constraints were checked: the launch is refused
        // with the reason, never planned without the constraint.
        let mut bad = definition();
        bad.body["placementConstraints"] = json!([{"type": "memberOf", "expression": "attribute:os =="}]);
        let e = Template::new(&scope(), &service("REPLICA", json!({})), &bad, true)
            .err()
            .unwrap();
        assert!(
            e.starts_with("the placement constraint expression \"attribute:os ==\" does not parse"),
            "{e}"
        );
    }

    #[test]
    fn placement_failure_events_name_the_closest_instance() {
        let failures = vec![
            ("arn:ci/c/aaa".to_string(), reason::AGENT.to_string()),
            ("arn:ci/c/bbb".to_string(), reason::PORTS.to_string()),
            ("arn:ci/c/ccc".to_string(), reason::CPU.to_string()),
        ];
        let e = unplaceable_event("web", &failures);
        assert_eq!(
            e,
            "(service web) was unable to place a task because no container instance met all of its requirements. \
             The closest matching (container-instance bbb) is already using a port required by your task. For more \
             information, see the Troubleshooting section of the Amazon ECS Developer Guide."
        );
        let e = unplaceable_event("web", &[("arn:ci/c/x".into(), reason::MEMBER_OF.into())]);
        assert!(e.contains("(container-instance x) encountered error \"MemberOf placement constraint unsatisfied.\""));
        let e = unplaceable_event("web", &[]);
        assert!(e.ends_with("Reason: No Container Instances were found in your cluster. For more information, see the Troubleshooting section."));
    }
}
