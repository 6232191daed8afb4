//! The service reconciler: pure functions from a service's intent and its observed tasks and
//! instances to what to do next, following ECS's rolling-deployment arithmetic exactly:
//!
//! - `minHealthy = ceil(D × minimumHealthyPercent / 100)` tasks must stay RUNNING;
//! - `maxTotal = floor(D × maximumPercent / 100)` tasks may be PENDING or RUNNING, counting tasks
//!   told to stop until they are STOPPED;
//! - start PRIMARY tasks up to D, within maxTotal;
//! - stop leaving tasks (older deployments', and those on instances that are no longer ACTIVE):
//!   unhealthy ones freely, healthy ones only above minHealthy;
//! - scale in the PRIMARY's excess;
//! - never stop a healthy task under scale-in protection (UpdateTaskProtection), for scale-in
//!   or for a deployment: it stays until unprotected or its protection expires.
//!
//! Draining an instance and rolling out a deployment are one mechanism: a task on a DRAINING
//! instance is replaced exactly as an older deployment's task is. DAEMON services have their own
//! plan: one PRIMARY task per eligible instance.
//!
//! No I/O, no clock, no randomness: the leader's loop runs these and commits the result as
//! term-stamped commands that `apply` re-checks.

use std::collections::{BTreeMap, BTreeSet};

use crate::model::{ContainerInstance, InstanceStatus, Service, Task, TaskStatus};

/// What one pass decides for a REPLICA service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// How many tasks of the PRIMARY deployment to start.
    pub start: usize,
    /// Tasks to stop (desired STOPPED), with the reason to record.
    pub stop: Vec<(String, String)>,
    /// Nothing can move although the deployment is not finished (e.g. 100/100).
    pub stuck: bool,
    /// The service has exactly its desired count of healthy PRIMARY tasks and nothing else.
    pub steady: bool,
}

/// What the reconciler needs to know of a cluster's instances.
#[derive(Debug, Clone, Default)]
pub struct Instances {
    /// IDs of the ACTIVE instances: tasks elsewhere (DRAINING, INACTIVE, gone) are leaving.
    pub active: BTreeSet<String>,
    /// Each instance's availability zone, when it has one.
    pub zone: BTreeMap<String, String>,
}

impl Instances {
    pub fn of(instances: &[ContainerInstance]) -> Instances {
        let mut out = Instances::default();
        for i in instances {
            if i.status == InstanceStatus::Active {
                out.active.insert(i.id.clone());
            }
            if let Some(zone) = i
                .attributes
                .iter()
                .find(|a| a.name == "ecs.availability-zone")
                .and_then(|a| a.value.clone())
            {
                out.zone.insert(i.id.clone(), zone);
            }
        }
        out
    }
}

fn counted(t: &Task) -> bool {
    t.last_status != TaskStatus::Stopped
}

/// The reason recorded on tasks the scheduler stops.
pub fn stop_reason(deployment: &str) -> String {
    format!("Scaling activity initiated by (deployment {deployment})")
}

/// `tasks` in the order they should be stopped: the availability zone, then the instance,
/// holding the most of the service's tasks gives one up first (the reverse of the default
/// spread), newest task first.
fn by_crowding<'a>(tasks: &[&'a Task], all: &[&Task], instances: &Instances) -> Vec<&'a Task> {
    let zone_of = |t: &Task| {
        instances
            .zone
            .get(&t.container_instance_id)
            .cloned()
            .unwrap_or_default()
    };
    let mut per_zone: BTreeMap<String, usize> = BTreeMap::new();
    let mut per_instance: BTreeMap<&str, usize> = BTreeMap::new();
    for t in all
        .iter()
        .filter(|t| counted(t) && t.desired_status == TaskStatus::Running)
    {
        *per_zone.entry(zone_of(t)).or_default() += 1;
        *per_instance.entry(t.container_instance_id.as_str()).or_default() += 1;
    }
    let mut sorted: Vec<&Task> = tasks.to_vec();
    sorted.sort_by(|a, b| {
        let za = per_zone.get(&zone_of(a)).copied().unwrap_or(0);
        let zb = per_zone.get(&zone_of(b)).copied().unwrap_or(0);
        let ia = per_instance.get(a.container_instance_id.as_str()).copied().unwrap_or(0);
        let ib = per_instance.get(b.container_instance_id.as_str()).copied().unwrap_or(0);
        zb.cmp(&za)
            .then(ib.cmp(&ia))
            .then_with(|| b.created_at_ms.cmp(&a.created_at_ms))
            .then_with(|| a.id.cmp(&b.id))
    });
    sorted
}

/// Whether `t` is under scale-in protection at `now_ms`.
fn protected(t: &Task, now_ms: u64) -> bool {
    t.protected_until_ms.is_some_and(|until| until > now_ms)
}

/// Decides the next step for a REPLICA `service` whose tasks (any status) are `tasks`, at
/// cluster time `now_ms` (which tasks are still protected).
pub fn plan(service: &Service, tasks: &[Task], instances: &Instances, now_ms: u64) -> Plan {
    let desired = service.desired_count.max(0) as usize;
    let min_healthy = service.min_healthy();
    let max_total = service.max_total();
    let Some(primary) = service.deployments.first() else {
        return Plan::default();
    };
    let mine: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.service.as_deref() == Some(&service.name) && counted(t))
        .collect();
    let in_flight = mine.len();
    let meant_to_run = |t: &&Task| t.desired_status == TaskStatus::Running;
    // Within `healthCheckGracePeriodSeconds` of its start, a task's health checks are ignored.
    let grace_ms = service
        .spec
        .echoed
        .get("healthCheckGracePeriodSeconds")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
        .saturating_mul(1000);
    let unhealthy =
        |t: &Task| t.reported_unhealthy() && t.started_at_ms.is_none_or(|at| now_ms >= at.saturating_add(grace_ms));
    let healthy =
        |t: &Task| t.last_status == TaskStatus::Running && t.desired_status == TaskStatus::Running && !unhealthy(t);
    // Tasks that stay: the PRIMARY's, on an ACTIVE instance, not reported unhealthy.
    let stays = |t: &Task| {
        t.deployment_id.as_deref() == Some(&primary.id)
            && instances.active.contains(&t.container_instance_id)
            && !unhealthy(t)
    };
    let staying: Vec<&Task> = mine.iter().copied().filter(meant_to_run).filter(|t| stays(t)).collect();
    let leaving: Vec<&Task> = mine
        .iter()
        .copied()
        .filter(meant_to_run)
        .filter(|t| !stays(t))
        .collect();
    let reason = stop_reason(&primary.id);
    let mut out = Plan {
        start: desired
            .saturating_sub(staying.len())
            .min(max_total.saturating_sub(in_flight)),
        ..Plan::default()
    };

    // Leaving tasks: the unhealthy ones go at once, healthy ones only above the minimum.
    for t in leaving.iter().filter(|t| !healthy(t)) {
        out.stop.push((t.id.clone(), reason.clone()));
    }
    let healthy_total = mine.iter().filter(|t| healthy(t)).count();
    let mut may_stop = healthy_total.saturating_sub(min_healthy);
    let leaving_healthy: Vec<&Task> = leaving
        .iter()
        .copied()
        .filter(|t| healthy(t) && !protected(t, now_ms))
        .collect();
    for t in by_crowding(&leaving_healthy, &mine, instances) {
        if may_stop == 0 {
            break;
        }
        out.stop.push((t.id.clone(), reason.clone()));
        may_stop -= 1;
    }

    // Scale-in: the PRIMARY's excess over the desired count, pending ones first (they do no
    // work yet), then by crowding.
    let excess = staying.len().saturating_sub(desired);
    if excess > 0 {
        let (mut candidates, running): (Vec<&Task>, Vec<&Task>) = staying
            .iter()
            .filter(|t| !protected(t, now_ms))
            .partition(|t| t.last_status == TaskStatus::Pending);
        candidates.extend(by_crowding(&running, &mine, instances));
        for t in candidates.into_iter().take(excess) {
            out.stop.push((t.id.clone(), reason.clone()));
        }
    }

    let staying_healthy = staying.iter().filter(|t| healthy(t)).count();
    out.steady = staying_healthy == desired && in_flight == desired && leaving.is_empty();
    // Stuck: not finished, nothing to start or stop, and nothing on its way either.
    out.stuck = !out.steady
        && out.start == 0
        && out.stop.is_empty()
        && (!leaving.is_empty() || staying.len() < desired)
        && mine.iter().all(|t| healthy(t));
    out
}

/// What one pass decides for a DAEMON service.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonPlan {
    /// The eligible instances to start a PRIMARY task on, one each.
    pub start_on: Vec<String>,
    pub stop: Vec<(String, String)>,
    /// One task per eligible instance: the service's desired count.
    pub desired: usize,
    pub steady: bool,
    /// A rollout that cannot move (minimumHealthyPercent 100: no old task may stop first).
    pub stuck: bool,
}

/// Decides the next step for a DAEMON `service`: one PRIMARY task on each of the `eligible`
/// instances (ACTIVE and meeting the service's constraints), none anywhere else. An older
/// deployment's task makes way for the new one within minimumHealthyPercent; with the
/// maximum at 100 % the new task starts once the old one has STOPPED.
pub fn daemon_plan(service: &Service, tasks: &[Task], eligible: &BTreeSet<String>) -> DaemonPlan {
    let mut out = DaemonPlan {
        desired: eligible.len(),
        ..DaemonPlan::default()
    };
    let Some(primary) = service.deployments.first() else {
        return out;
    };
    let reason = stop_reason(&primary.id);
    let mine: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.service.as_deref() == Some(&service.name) && counted(t))
        .collect();
    let min_healthy = (eligible.len() * service.minimum_healthy_percent.max(0) as usize).div_ceil(100);
    let mut per_instance: BTreeMap<&str, Vec<&Task>> = BTreeMap::new();
    for t in &mine {
        per_instance
            .entry(t.container_instance_id.as_str())
            .or_default()
            .push(t);
    }
    let mut steady = mine.len() == eligible.len();
    for (instance, on) in &per_instance {
        if eligible.contains(*instance) {
            continue;
        }
        // Not eligible (DRAINING, gone, or no longer meeting the constraints): its tasks stop.
        steady = false;
        for t in on.iter().filter(|t| t.desired_status == TaskStatus::Running) {
            out.stop.push((t.id.clone(), reason.clone()));
        }
    }
    // Healthy tasks that stay: on an eligible instance, and the one kept there (a duplicate goes).
    let kept_healthy = eligible
        .iter()
        .filter(|i| {
            per_instance.get(i.as_str()).is_some_and(|on| {
                on.iter()
                    .any(|t| t.desired_status == TaskStatus::Running && t.is_healthy())
            })
        })
        .count();
    let mut may_stop = kept_healthy.saturating_sub(min_healthy);
    for instance in eligible {
        let on = per_instance.get(instance.as_str()).cloned().unwrap_or_default();
        let running: Vec<&Task> = on
            .iter()
            .copied()
            .filter(|t| t.desired_status == TaskStatus::Running)
            .collect();
        let (mut new, old): (Vec<&Task>, Vec<&Task>) = running
            .iter()
            .partition(|t| t.deployment_id.as_deref() == Some(&primary.id) && !t.reported_unhealthy());
        // Keep the healthiest, oldest PRIMARY task; any other goes.
        new.sort_by_key(|t| (!t.is_healthy(), t.created_at_ms, t.id.clone()));
        for t in new.iter().skip(1) {
            out.stop.push((t.id.clone(), reason.clone()));
        }
        let new_is_healthy = new.first().is_some_and(|t| t.is_healthy());
        steady &= new_is_healthy && on.len() == 1;
        for t in &old {
            let free = !t.is_healthy() || new_is_healthy;
            if free || may_stop > 0 {
                if !free {
                    may_stop -= 1;
                }
                out.stop.push((t.id.clone(), reason.clone()));
            }
        }
        // The instance takes a new task once nothing of the service is left on it.
        if on.is_empty() {
            out.start_on.push(instance.clone());
        }
    }
    out.steady = steady;
    out.stuck = !steady && out.start_on.is_empty() && out.stop.is_empty() && mine.iter().all(|t| t.is_healthy());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Deployment, Reservation, ServiceStatus};

    /// A plan at time 0: no protection has expired.
    fn plan(service: &Service, tasks: &[Task], instances: &Instances) -> Plan {
        super::plan(service, tasks, instances, 0)
    }

    fn service(desired: i64, min: i64, max: i64) -> Service {
        let deployment = |id: &str, status: &str| Deployment {
            status: status.into(),
            ..Deployment::new(id.into(), format!("td:{id}"), desired, 0, true)
        };
        Service {
            cluster: "c".into(),
            name: "web".into(),
            arn: "arn:service/web".into(),
            status: ServiceStatus::Active,
            task_definition_arn: "td:new".into(),
            desired_count: desired,
            running_count: 0,
            pending_count: 0,
            launch_type: "EC2".into(),
            scheduling_strategy: "REPLICA".into(),
            maximum_percent: max,
            minimum_healthy_percent: min,
            deployments: vec![deployment("new", "PRIMARY"), deployment("old", "ACTIVE")],
            events: vec![],
            spec: Default::default(),
            created_at_ms: 0,
            created_by: String::new(),
            client_token: None,
            request_digest: String::new(),
            tags: vec![],
            failed_starts: 0,
            last_failed_start_ms: 0,
            capacity_provider_strategy: vec![],
            circuit_breaker: None,
            last_completed: None,
        }
    }

    /// Instances i0, i1 (zone a) and i2 (zone b), all ACTIVE.
    fn inst() -> Instances {
        let mut out = Instances::default();
        for (id, zone) in [("i0", "a"), ("i1", "a"), ("i2", "b")] {
            out.active.insert(id.into());
            out.zone.insert(id.into(), zone.into());
        }
        out
    }

    fn daemon(min: i64) -> Service {
        let mut s = service(0, min, 100);
        s.scheduling_strategy = "DAEMON".into();
        s
    }

    fn ids(stop: &[(String, String)]) -> Vec<&str> {
        stop.iter().map(|(id, _)| id.as_str()).collect()
    }

    fn task(id: &str, deployment: &str, instance: &str, last: TaskStatus, desired: TaskStatus) -> Task {
        Task {
            cluster: "c".into(),
            id: id.into(),
            arn: format!("arn:task/{id}"),
            task_definition_arn: format!("td:{deployment}"),
            family: "web".into(),
            container_instance_id: instance.into(),
            container_instance_arn: format!("arn:ci/{instance}"),
            last_status: last,
            desired_status: desired,
            group: "service:web".into(),
            started_by: None,
            overrides: serde_json::json!({}),
            containers: vec![],
            cpu: None,
            memory: None,
            reservation: Reservation::default(),
            service: Some("web".into()),
            deployment_id: Some(deployment.into()),
            created_at_ms: 0,
            started_at_ms: None,
            stopping_at_ms: None,
            stopped_at_ms: None,
            execution_stopped_at_ms: None,
            pull_started_at_ms: None,
            pull_stopped_at_ms: None,
            stopped_reason: None,
            stop_code: None,
            version: 1,
            tags: vec![],
            launch_type: "EC2".into(),
            capacity_provider_name: None,
            platform_version: None,
            eni: None,
            protected_until_ms: None,
        }
    }

    /// An essential container whose health check reports UNHEALTHY.
    fn unhealthy_container(name: &str) -> crate::model::TaskContainer {
        crate::model::TaskContainer {
            name: name.into(),
            arn: format!("arn:container/{name}"),
            last_status: TaskStatus::Running,
            exit_code: None,
            reason: None,
            network_bindings: vec![],
            runtime_id: None,
            health_status: Some("UNHEALTHY".into()),
            cpu: None,
            memory: None,
            memory_reservation: None,
            essential: true,
        }
    }

    fn old_running(n: usize) -> Vec<Task> {
        (0..n)
            .map(|i| {
                task(
                    &format!("o{i}"),
                    "old",
                    &format!("i{}", i % 2),
                    TaskStatus::Running,
                    TaskStatus::Running,
                )
            })
            .collect()
    }

    use TaskStatus::{Pending, Running, Stopped};

    #[test]
    fn a_new_service_starts_its_desired_count() {
        let mut s = service(3, 100, 200);
        s.deployments.truncate(1);
        let p = plan(&s, &[], &inst());
        assert_eq!((p.start, p.stop.len(), p.steady), (3, 0, false));
    }

    #[test]
    fn four_at_100_200_starts_four_then_stops_the_old_once_the_new_run() {
        let s = service(4, 100, 200);
        let mut tasks = old_running(4);
        let p = plan(&s, &tasks, &inst());
        assert_eq!(p.start, 4, "total 8 ≤ maxTotal 8");
        assert!(p.stop.is_empty(), "no old task stops before new ones run: {p:?}");
        for i in 0..4 {
            tasks.push(task(&format!("n{i}"), "new", "i0", Pending, Running));
        }
        let p = plan(&s, &tasks, &inst());
        assert_eq!((p.start, p.stop.len()), (0, 0), "still pending: nothing to do");
        for t in tasks.iter_mut().filter(|t| t.id.starts_with('n')) {
            t.last_status = Running;
        }
        let p = plan(&s, &tasks, &inst());
        assert_eq!(p.stop.len(), 4, "8 healthy, min 4: the 4 old ones go");
        assert!(p.stop.iter().all(|(id, _)| id.starts_with('o')));
        assert!(p.stop[0]
            .1
            .starts_with("Scaling activity initiated by (deployment new)"));
    }

    #[test]
    fn four_at_50_100_stops_two_first_then_starts_two_after_they_stopped() {
        let s = service(4, 50, 100);
        let mut tasks = old_running(4);
        let p = plan(&s, &tasks, &inst());
        assert_eq!(p.start, 0, "total may not exceed 4");
        assert_eq!(p.stop.len(), 2, "keep minHealthy = 2");
        // Told to stop, still RUNNING: they count against the maximum.
        for t in tasks.iter_mut().filter(|t| p.stop.iter().any(|(id, _)| *id == t.id)) {
            t.desired_status = Stopped;
        }
        let p2 = plan(&s, &tasks, &inst());
        assert_eq!((p2.start, p2.stop.len()), (0, 0));
        for t in tasks.iter_mut().filter(|t| t.desired_status == Stopped) {
            t.last_status = Stopped;
        }
        let p3 = plan(&s, &tasks, &inst());
        assert_eq!(p3.start, 2, "two stopped: two new may start");
        assert!(p3.stop.is_empty(), "only 2 healthy = minHealthy");
    }

    #[test]
    fn zero_at_100_stops_all_then_starts_all() {
        let s = service(4, 0, 100);
        let p = plan(&s, &old_running(4), &inst());
        assert_eq!((p.start, p.stop.len()), (0, 4));
    }

    #[test]
    fn one_hundred_at_100_is_stuck() {
        let s = service(4, 100, 100);
        let p = plan(&s, &old_running(4), &inst());
        assert_eq!((p.start, p.stop.len()), (0, 0));
        assert!(p.stuck);
        assert!(!p.steady);
    }

    #[test]
    fn rounding_traps_are_exact() {
        // min 75 % of 2 is ceil(1.5) = 2: nothing may stop.
        let p = plan(&service(2, 75, 100), &old_running(2), &inst());
        assert_eq!((p.start, p.stop.len()), (0, 0));
        assert!(p.stuck);
        // max 125 % of 3 is floor(3.75) = 3: nothing may start.
        let p = plan(&service(3, 100, 125), &old_running(3), &inst());
        assert_eq!(p.start, 0);
    }

    #[test]
    fn unhealthy_old_tasks_stop_freely() {
        let s = service(2, 100, 200);
        let tasks = vec![
            task("o0", "old", "i0", Pending, Running),
            task("o1", "old", "i1", Running, Running),
        ];
        let p = plan(&s, &tasks, &inst());
        assert_eq!(p.stop.len(), 1);
        assert_eq!(p.stop[0].0, "o0", "the pending old task goes; the healthy one stays");
        assert_eq!(p.start, 2);
    }

    #[test]
    fn scale_in_stops_pending_then_the_most_crowded_instance_first() {
        let mut s = service(2, 100, 200);
        s.deployments.truncate(1);
        let tasks = vec![
            task("a", "new", "i0", Running, Running),
            task("b", "new", "i0", Running, Running),
            task("c", "new", "i1", Running, Running),
            task("d", "new", "i1", Pending, Running),
        ];
        let p = plan(&s, &tasks, &inst());
        let stopped: Vec<&str> = p.stop.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(stopped.len(), 2);
        assert_eq!(stopped[0], "d", "pending first");
        assert!(
            stopped[1] == "a" || stopped[1] == "b",
            "then from the crowded instance: {stopped:?}"
        );
    }

    #[test]
    fn steady_state_is_exactly_the_desired_healthy_primary_tasks() {
        let mut s = service(2, 100, 200);
        s.deployments.truncate(1);
        let tasks = vec![
            task("a", "new", "i0", Running, Running),
            task("b", "new", "i1", Running, Running),
            task("x", "new", "i1", Stopped, Stopped),
        ];
        let p = plan(&s, &tasks, &inst());
        assert!(p.steady, "{p:?}");
        assert_eq!((p.start, p.stop.len()), (0, 0));
    }

    #[test]
    fn a_stopped_task_is_replaced() {
        let mut s = service(2, 100, 200);
        s.deployments.truncate(1);
        let tasks = vec![
            task("a", "new", "i0", Running, Running),
            task("b", "new", "i1", Stopped, Stopped),
        ];
        let p = plan(&s, &tasks, &inst());
        assert_eq!(p.start, 1);
    }

    #[test]
    fn tasks_on_a_draining_instance_are_replaced_within_the_limits() {
        let mut s = service(2, 100, 200);
        s.deployments.truncate(1);
        let mut instances = inst();
        instances.active.remove("i0");
        let mut tasks = vec![
            task("a", "new", "i0", Running, Running),
            task("b", "new", "i1", Running, Running),
            task("p", "new", "i0", Pending, Running),
        ];
        s.desired_count = 3;
        let p = plan(&s, &tasks, &instances);
        assert_eq!(
            ids(&p.stop),
            vec!["p"],
            "a PENDING task on a draining instance stops at once"
        );
        assert_eq!(p.start, 2, "two replacements, within maxTotal 6");
        // With the replacements RUNNING, the draining one goes.
        tasks.retain(|t| t.id != "p");
        tasks.push(task("c", "new", "i2", Running, Running));
        tasks.push(task("d", "new", "i1", Running, Running));
        let p = plan(&s, &tasks, &instances);
        assert_eq!((p.start, ids(&p.stop)), (0, vec!["a"]));
        // 100/100: the replacement may not start, the old may not stop: stuck, as ECS documents.
        s.maximum_percent = 100;
        s.desired_count = 2;
        let tasks = vec![
            task("a", "new", "i0", Running, Running),
            task("b", "new", "i1", Running, Running),
        ];
        let p = plan(&s, &tasks, &instances);
        assert_eq!((p.start, p.stop.len()), (0, 0));
        assert!(p.stuck);
    }

    #[test]
    fn unhealthy_primary_tasks_are_replaced() {
        let mut s = service(2, 100, 200);
        s.deployments.truncate(1);
        let mut sick = task("a", "new", "i0", Running, Running);
        sick.containers.push(unhealthy_container("web"));
        let tasks = vec![sick, task("b", "new", "i1", Running, Running)];
        let p = plan(&s, &tasks, &inst());
        assert_eq!((p.start, ids(&p.stop)), (1, vec!["a"]));
        assert!(!p.steady);
    }

    #[test]
    fn scale_in_takes_from_the_most_crowded_zone_first() {
        let mut s = service(2, 100, 200);
        s.deployments.truncate(1);
        // Zone a holds three tasks (i0 two, i1 one), zone b one.
        let tasks = vec![
            task("a", "new", "i0", Running, Running),
            task("b", "new", "i0", Running, Running),
            task("c", "new", "i1", Running, Running),
            task("d", "new", "i2", Running, Running),
        ];
        let p = plan(&s, &tasks, &inst());
        let stopped = ids(&p.stop);
        assert_eq!(stopped.len(), 2);
        assert!(!stopped.contains(&"d"), "the lone task of zone b stays: {stopped:?}");
        assert!(stopped.contains(&"a") || stopped.contains(&"b"), "{stopped:?}");
    }

    #[test]
    fn a_failed_start_counts_only_once_stopped() {
        // A PENDING task counts against the maximum; a STOPPED one does not.
        let mut s = service(1, 100, 100);
        s.deployments.truncate(1);
        let p = plan(&s, &[task("a", "new", "i0", Pending, Running)], &inst());
        assert_eq!((p.start, p.stop.len(), p.steady), (0, 0, false));
        let p = plan(&s, &[task("a", "new", "i0", Stopped, Stopped)], &inst());
        assert_eq!(p.start, 1);
    }

    fn eligible(ids: &[&str]) -> BTreeSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn daemon_starts_one_task_per_eligible_instance_and_follows_joins() {
        let mut s = daemon(0);
        s.deployments.truncate(1);
        let p = daemon_plan(&s, &[], &eligible(&["i0", "i1", "i2"]));
        assert_eq!(p.start_on, vec!["i0", "i1", "i2"]);
        assert_eq!((p.desired, p.steady), (3, false));
        let mut tasks: Vec<Task> = ["i0", "i1", "i2"]
            .iter()
            .map(|i| task(&format!("t{i}"), "new", i, Running, Running))
            .collect();
        let p = daemon_plan(&s, &tasks, &eligible(&["i0", "i1", "i2"]));
        assert!(p.steady && p.start_on.is_empty() && p.stop.is_empty(), "{p:?}");
        // A fourth instance joins.
        let p = daemon_plan(&s, &tasks, &eligible(&["i0", "i1", "i2", "i3"]));
        assert_eq!((p.start_on.clone(), p.desired), (vec!["i3".to_string()], 4));
        // i1 drains (no longer eligible): its task stops, and nothing replaces it elsewhere.
        let p = daemon_plan(&s, &tasks, &eligible(&["i0", "i2"]));
        assert_eq!((ids(&p.stop), p.start_on.len(), p.desired), (vec!["ti1"], 0, 2));
        // A duplicate on one instance is stopped.
        tasks.push(task("dup", "new", "i0", Pending, Running));
        let p = daemon_plan(&s, &tasks, &eligible(&["i0", "i1", "i2"]));
        assert_eq!(ids(&p.stop), vec!["dup"]);
    }

    #[test]
    fn daemon_rolls_out_by_stopping_the_old_task_first() {
        let s = daemon(0);
        let mut tasks = vec![
            task("o0", "old", "i0", Running, Running),
            task("o1", "old", "i1", Running, Running),
        ];
        let p = daemon_plan(&s, &tasks, &eligible(&["i0", "i1"]));
        assert_eq!(ids(&p.stop), vec!["o0", "o1"], "min 0: both old tasks may go");
        assert!(p.start_on.is_empty(), "max 100: the new one waits for the old to stop");
        for t in &mut tasks {
            t.desired_status = Stopped;
        }
        let p = daemon_plan(&s, &tasks, &eligible(&["i0", "i1"]));
        assert!(p.start_on.is_empty(), "still RUNNING, told to stop: wait");
        for t in &mut tasks {
            t.last_status = Stopped;
        }
        let p = daemon_plan(&s, &tasks, &eligible(&["i0", "i1"]));
        assert_eq!(p.start_on, vec!["i0", "i1"]);
        // With min 50 % only one old task of two may be down at once.
        let s = daemon(50);
        let tasks = vec![
            task("o0", "old", "i0", Running, Running),
            task("o1", "old", "i1", Running, Running),
        ];
        let p = daemon_plan(&s, &tasks, &eligible(&["i0", "i1"]));
        assert_eq!(p.stop.len(), 1);
    }

    #[test]
    fn daemon_budget_counts_only_the_tasks_that_stay() {
        // Two of four instances drain during a rollout at min 50 %: of the two eligible, one old
        // task may stop now (the draining ones stop anyway and do not widen the budget).
        let s = daemon(50);
        let tasks: Vec<Task> = ["i0", "i1", "i2", "i3"]
            .iter()
            .map(|i| task(&format!("t{i}"), "old", i, Running, Running))
            .collect();
        let p = daemon_plan(&s, &tasks, &eligible(&["i0", "i1"]));
        let stopped = ids(&p.stop);
        assert_eq!(stopped.len(), 3, "{stopped:?}");
        assert!(stopped.contains(&"ti2") && stopped.contains(&"ti3"));
        assert!(!p.stuck);
        // At min 100 % nothing may stop first and nothing may start: stuck, and it says so.
        let s = daemon(100);
        let p = daemon_plan(&s, &tasks[..2], &eligible(&["i0", "i1"]));
        assert!(p.stop.is_empty() && p.start_on.is_empty() && p.stuck, "{p:?}");
    }

    #[test]
    fn protected_tasks_are_neither_scaled_in_nor_replaced_until_their_protection_expires() {
        // Scale-in from 3 to 1: two of three PRIMARY tasks protected until t=100.
        let mut s = service(1, 100, 200);
        s.deployments.truncate(1);
        let mut tasks: Vec<Task> = (0..3)
            .map(|i| {
                task(
                    &format!("n{i}"),
                    "new",
                    &format!("i{i}"),
                    TaskStatus::Running,
                    TaskStatus::Running,
                )
            })
            .collect();
        tasks[0].protected_until_ms = Some(100);
        tasks[1].protected_until_ms = Some(100);
        let p = super::plan(&s, &tasks, &inst(), 50);
        assert_eq!(ids(&p.stop), vec!["n2"], "only the unprotected task goes");
        assert!(!p.steady);
        let p = super::plan(&s, &tasks, &inst(), 100);
        assert_eq!(p.stop.len(), 2, "expired protection: scale-in goes on");
        // A rollout: a protected old task stays although the minimum would let it go.
        let mut s = service(2, 0, 100);
        s.deployments[0].task_definition_arn = "td:new".into();
        let mut old = old_running(2);
        old[0].protected_until_ms = Some(100);
        let p = super::plan(&s, &old, &inst(), 50);
        assert_eq!(ids(&p.stop), vec!["o1"]);
    }

    #[test]
    fn container_health_checks_are_ignored_within_the_grace_period() {
        let mut s = service(1, 100, 200);
        s.deployments.truncate(1);
        let mut t = task("n0", "new", "i0", TaskStatus::Running, TaskStatus::Running);
        t.started_at_ms = Some(1_000);
        t.containers.push(unhealthy_container("c"));
        let tasks = vec![t];
        // No grace: the unhealthy task is replaced.
        assert_eq!(super::plan(&s, &tasks, &inst(), 5_000).start, 1);
        s.spec
            .echoed
            .insert("healthCheckGracePeriodSeconds".into(), serde_json::json!(10));
        let p = super::plan(&s, &tasks, &inst(), 5_000);
        assert!(p.start == 0 && p.steady, "within 10 s of its start: {p:?}");
        assert_eq!(super::plan(&s, &tasks, &inst(), 11_000).start, 1, "after it");
    }
}
