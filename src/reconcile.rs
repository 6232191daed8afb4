//! The service reconciler: a pure function from a service's intent and its observed tasks to
//! what to do next (start N tasks of the PRIMARY deployment, stop these tasks), following the
//! rolling arithmetic of `../shared/docs/ecs-semantics.md` §3.4 exactly:
//!
//! - `minHealthy = ceil(D × minimumHealthyPercent / 100)` tasks must stay RUNNING;
//! - `maxTotal = floor(D × maximumPercent / 100)` tasks may be PENDING or RUNNING, counting tasks
//!   told to stop until they are STOPPED;
//! - start PRIMARY tasks up to D, within maxTotal;
//! - stop older deployments' tasks: unhealthy ones freely, healthy ones only above minHealthy;
//! - scale in the PRIMARY's excess.
//!
//! No I/O, no clock, no randomness: the leader's loop runs it and commits the result as
//! term-stamped commands that `apply` re-checks.

use crate::model::{Service, Task, TaskStatus};

/// What one pass decides.
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

fn counted(t: &Task) -> bool {
    t.last_status != TaskStatus::Stopped
}

fn healthy(t: &Task) -> bool {
    t.last_status == TaskStatus::Running && t.desired_status == TaskStatus::Running
}

/// The service's tasks that should not be stopped last: the instance holding the most of the
/// service's tasks gives up one first (the AZ-balanced termination rule, by instance).
fn by_crowding<'a>(tasks: &[&'a Task], all: &[Task]) -> Vec<&'a Task> {
    let load = |instance: &str| {
        all.iter()
            .filter(|t| counted(t) && t.container_instance_id == instance)
            .count()
    };
    let mut sorted: Vec<&Task> = tasks.to_vec();
    sorted.sort_by(|a, b| {
        load(&b.container_instance_id)
            .cmp(&load(&a.container_instance_id))
            .then_with(|| b.created_at_ms.cmp(&a.created_at_ms))
            .then_with(|| a.id.cmp(&b.id))
    });
    sorted
}

/// Decides the next step for a REPLICA `service` whose tasks (any status) are `tasks`.
pub fn plan(service: &Service, tasks: &[Task]) -> Plan {
    let desired = service.desired_count.max(0) as usize;
    let min_healthy = (desired * service.minimum_healthy_percent.max(0) as usize).div_ceil(100);
    let max_total = desired * service.maximum_percent.max(0) as usize / 100;
    let Some(primary) = service.deployments.first() else {
        return Plan::default();
    };
    let mine: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.service.as_deref() == Some(&service.name))
        .collect();
    let is_primary = |t: &Task| t.deployment_id.as_deref() == Some(&primary.id);
    let in_flight = mine.iter().filter(|t| counted(t)).count();
    let primary_live: Vec<&Task> = mine
        .iter()
        .copied()
        .filter(|t| is_primary(t) && counted(t) && t.desired_status == TaskStatus::Running)
        .collect();
    let mut out = Plan {
        start: desired
            .saturating_sub(primary_live.len())
            .min(max_total.saturating_sub(in_flight)),
        ..Plan::default()
    };

    // Older deployments' tasks: the unhealthy ones go at once, healthy ones above the minimum.
    let older: Vec<&Task> = mine
        .iter()
        .copied()
        .filter(|t| !is_primary(t) && counted(t) && t.desired_status == TaskStatus::Running)
        .collect();
    let reason = format!("Scaling activity initiated by (deployment {})", primary.id);
    for t in older.iter().filter(|t| !healthy(t)) {
        out.stop.push((t.id.clone(), reason.clone()));
    }
    let healthy_total = mine.iter().filter(|t| healthy(t)).count();
    let mut may_stop = healthy_total.saturating_sub(min_healthy);
    let older_healthy: Vec<&Task> = older.iter().copied().filter(|t| healthy(t)).collect();
    for t in by_crowding(&older_healthy, tasks) {
        if may_stop == 0 {
            break;
        }
        out.stop.push((t.id.clone(), reason.clone()));
        may_stop -= 1;
    }

    // Scale-in: the PRIMARY's excess over the desired count.
    let excess = primary_live.len().saturating_sub(desired);
    if excess > 0 {
        // Pending ones first (they do no work yet), then by crowding.
        let mut candidates: Vec<&Task> = primary_live
            .iter()
            .copied()
            .filter(|t| t.last_status == TaskStatus::Pending)
            .collect();
        let running: Vec<&Task> = primary_live
            .iter()
            .copied()
            .filter(|t| t.last_status != TaskStatus::Pending)
            .collect();
        candidates.extend(by_crowding(&running, tasks));
        for t in candidates.into_iter().take(excess) {
            out.stop.push((t.id.clone(), reason.clone()));
        }
    }

    let primary_healthy = mine.iter().filter(|t| is_primary(t) && healthy(t)).count();
    out.steady = primary_healthy == desired && in_flight == desired && older.is_empty();
    out.stuck = !out.steady && out.start == 0 && out.stop.is_empty() && !older.is_empty() && {
        // Nothing is on its way either: no task is starting or stopping.
        mine.iter()
            .all(|t| !counted(t) || (t.last_status == TaskStatus::Running && t.desired_status == TaskStatus::Running))
    };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Deployment, Reservation, ServiceStatus};

    fn service(desired: i64, min: i64, max: i64) -> Service {
        let deployment = |id: &str, status: &str| Deployment {
            id: id.into(),
            status: status.into(),
            task_definition_arn: format!("td:{id}"),
            desired_count: desired,
            pending_count: 0,
            running_count: 0,
            created_at_ms: 0,
            updated_at_ms: 0,
            network_configuration: None,
            platform_version: None,
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
            spec: serde_json::json!({}),
            created_at_ms: 0,
            created_by: String::new(),
            client_token: None,
            request_digest: String::new(),
            tags: vec![],
        }
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
        let p = plan(&s, &[]);
        assert_eq!((p.start, p.stop.len(), p.steady), (3, 0, false));
    }

    #[test]
    fn four_at_100_200_starts_four_then_stops_the_old_once_the_new_run() {
        let s = service(4, 100, 200);
        let mut tasks = old_running(4);
        let p = plan(&s, &tasks);
        assert_eq!(p.start, 4, "total 8 ≤ maxTotal 8");
        assert!(p.stop.is_empty(), "no old task stops before new ones run: {p:?}");
        for i in 0..4 {
            tasks.push(task(&format!("n{i}"), "new", "i0", Pending, Running));
        }
        let p = plan(&s, &tasks);
        assert_eq!((p.start, p.stop.len()), (0, 0), "still pending: nothing to do");
        for t in tasks.iter_mut().filter(|t| t.id.starts_with('n')) {
            t.last_status = Running;
        }
        let p = plan(&s, &tasks);
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
        let p = plan(&s, &tasks);
        assert_eq!(p.start, 0, "total may not exceed 4");
        assert_eq!(p.stop.len(), 2, "keep minHealthy = 2");
        // Told to stop, still RUNNING: they count against the maximum.
        for t in tasks.iter_mut().filter(|t| p.stop.iter().any(|(id, _)| *id == t.id)) {
            t.desired_status = Stopped;
        }
        let p2 = plan(&s, &tasks);
        assert_eq!((p2.start, p2.stop.len()), (0, 0));
        for t in tasks.iter_mut().filter(|t| t.desired_status == Stopped) {
            t.last_status = Stopped;
        }
        let p3 = plan(&s, &tasks);
        assert_eq!(p3.start, 2, "two stopped: two new may start");
        assert!(p3.stop.is_empty(), "only 2 healthy = minHealthy");
    }

    #[test]
    fn zero_at_100_stops_all_then_starts_all() {
        let s = service(4, 0, 100);
        let p = plan(&s, &old_running(4));
        assert_eq!((p.start, p.stop.len()), (0, 4));
    }

    #[test]
    fn one_hundred_at_100_is_stuck() {
        let s = service(4, 100, 100);
        let p = plan(&s, &old_running(4));
        assert_eq!((p.start, p.stop.len()), (0, 0));
        assert!(p.stuck);
        assert!(!p.steady);
    }

    #[test]
    fn rounding_traps_are_exact() {
        // min 75 % of 2 is ceil(1.5) = 2: nothing may stop.
        let p = plan(&service(2, 75, 100), &old_running(2));
        assert_eq!((p.start, p.stop.len()), (0, 0));
        assert!(p.stuck);
        // max 125 % of 3 is floor(3.75) = 3: nothing may start.
        let p = plan(&service(3, 100, 125), &old_running(3));
        assert_eq!(p.start, 0);
    }

    #[test]
    fn unhealthy_old_tasks_stop_freely() {
        let s = service(2, 100, 200);
        let tasks = vec![
            task("o0", "old", "i0", Pending, Running),
            task("o1", "old", "i1", Running, Running),
        ];
        let p = plan(&s, &tasks);
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
        let p = plan(&s, &tasks);
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
        let p = plan(&s, &tasks);
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
        let p = plan(&s, &tasks);
        assert_eq!(p.start, 1);
    }
}
