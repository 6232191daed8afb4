//! Unit tests of `apply`: dedupe, dispatch and the outcomes of each command kind.

use super::testing::{task_row, MemKv};
use super::*;
use crate::model::{Tag, Task};

impl MemKv {
    fn apply(&mut self, batch: Batch) -> Vec<Outcome> {
        let (outcomes, writes) = {
            let mut txn = Txn::new(&*self);
            let outcomes = apply_batch(&mut txn, &batch, 1).unwrap();
            (outcomes, txn.into_writes())
        };
        for ((space, key), value) in writes {
            match value {
                Some(v) => self.0.insert((space, key), v),
                None => self.0.remove(&(space, key)),
            };
        }
        outcomes.0
    }
}

fn proposal(id: &str, ts_ms: u64, command: Command) -> Proposal {
    Proposal {
        request_id: id.to_string(),
        ts_ms,
        command,
        request_digest: None,
    }
}

fn create(id: &str, name: &str) -> Proposal {
    proposal(
        id,
        1000,
        Command::CreateCluster {
            name: name.into(),
            arn: format!("arn/{name}"),
            tags: vec![],
            options: Default::default(),
        },
    )
}

#[test]
fn create_is_idempotent_and_delete_marks_inactive() {
    let mut kv = MemKv::default();
    let out = kv.apply(Batch(vec![create("r1", "a"), create("r2", "a")]));
    assert!(matches!(&out[0], Outcome::Cluster(c) if c.status == ClusterStatus::Active && c.created_at_ms == 1000));
    assert_eq!(out[0], out[1]);

    let out = kv.apply(Batch(vec![proposal(
        "r3",
        2000,
        Command::DeleteCluster { name: "a".into() },
    )]));
    assert!(matches!(&out[0], Outcome::Cluster(c) if c.status == ClusterStatus::Inactive));
    let out = kv.apply(Batch(vec![proposal(
        "r4",
        2000,
        Command::DeleteCluster { name: "a".into() },
    )]));
    assert_eq!(out[0], Outcome::Rejected(Rejection::ClusterNotFound));

    // Re-creating an INACTIVE name makes it ACTIVE again, with a new creation time.
    let out = kv.apply(Batch(vec![proposal(
        "r5",
        3000,
        Command::CreateCluster {
            name: "a".into(),
            arn: "arn/a".into(),
            tags: vec![],
            options: Default::default(),
        },
    )]));
    assert!(matches!(&out[0], Outcome::Cluster(c) if c.status == ClusterStatus::Active && c.created_at_ms == 3000));
}

#[test]
fn a_repeated_request_id_applies_once_and_returns_the_first_outcome() {
    let mut kv = MemKv::default();
    kv.apply(Batch(vec![create("r1", "a")]));
    let first = kv.apply(Batch(vec![proposal(
        "del",
        2000,
        Command::DeleteCluster { name: "a".into() },
    )]));
    kv.apply(Batch(vec![create("r2", "a")]));
    // The retried delete must not delete the re-created cluster.
    let retried = kv.apply(Batch(vec![proposal(
        "del",
        2500,
        Command::DeleteCluster { name: "a".into() },
    )]));
    assert_eq!(first, retried);
    assert_eq!(get_cluster(&kv, "a").unwrap().unwrap().status, ClusterStatus::Active);
}

#[test]
fn dedupe_records_expire_after_the_ttl_of_applied_time() {
    let mut kv = MemKv::default();
    kv.apply(Batch(vec![create("old", "a")]));
    assert!(kv.get(Space::Dedupe, b"r/old").unwrap().is_some());
    kv.apply(Batch(vec![proposal("new", 1000 + DEDUPE_TTL_MS + 1, Command::Noop)]));
    assert!(kv.get(Space::Dedupe, b"r/old").unwrap().is_none());
    assert!(kv.get(Space::Dedupe, b"r/new").unwrap().is_some());
}

#[test]
fn a_dedupe_backlog_larger_than_one_purge_batch_is_purged_over_several_batches() {
    let backlog = 2 * DEDUPE_PURGE_PER_BATCH + 50;
    let mut kv = MemKv::default();
    // A backlog of records from one busy millisecond long ago, then some from a day later.
    let old: Vec<Proposal> = (0..backlog)
        .map(|i| proposal(&format!("old-{i:04}"), 1000, Command::Noop))
        .collect();
    kv.apply(Batch(old));
    let recent_ts = 1000 + DEDUPE_TTL_MS;
    let recent: Vec<Proposal> = (0..10)
        .map(|i| proposal(&format!("recent-{i}"), recent_ts, Command::Noop))
        .collect();
    kv.apply(Batch(recent));
    let count = |kv: &MemKv, prefix: &str| {
        let (records, index) = (format!("r/{prefix}"), format!("/{prefix}"));
        let rows = kv.scan(Space::Dedupe, b"", b"~", usize::MAX).unwrap();
        let records = rows.iter().filter(|(k, _)| k.starts_with(records.as_bytes())).count();
        let index = rows
            .iter()
            .filter(|(k, _)| k.starts_with(b"t/") && k.windows(index.len()).any(|w| w == index.as_bytes()))
            .count();
        (records, index)
    };
    assert_eq!(count(&kv, "old-"), (backlog, backlog));
    assert_eq!(count(&kv, "recent-"), (10, 10));

    // Now the old records are past the TTL and the recent ones are not. One batch purges at
    // most one purge batch of them, oldest (then smallest request id) first.
    let now = recent_ts + 1;
    kv.apply(Batch(vec![proposal("tick-0", now, Command::Noop)]));
    let left = backlog - DEDUPE_PURGE_PER_BATCH;
    assert_eq!(count(&kv, "old-"), (left, left));
    assert!(kv.get(Space::Dedupe, b"r/old-0000").unwrap().is_none());
    let first_left = format!("r/old-{DEDUPE_PURGE_PER_BATCH:04}");
    assert!(kv.get(Space::Dedupe, first_left.as_bytes()).unwrap().is_some());

    // Several entries applied in one transaction (as a follower catching up applies them)
    // each purge a batch more: the second sees the first's deletions.
    let writes = {
        let mut txn = Txn::new(&kv);
        for i in 1..=2 {
            let tick = Batch(vec![proposal(&format!("tick-{i}"), now, Command::Noop)]);
            apply_batch(&mut txn, &tick, 1).unwrap();
        }
        txn.into_writes()
    };
    for ((space, key), value) in writes {
        match value {
            Some(v) => kv.0.insert((space, key), v),
            None => kv.0.remove(&(space, key)),
        };
    }
    // Every expired record is gone, with its index entry; none of the unexpired ones is.
    assert_eq!(count(&kv, "old-"), (0, 0));
    assert_eq!(count(&kv, "recent-"), (10, 10));
    assert_eq!(count(&kv, "tick-"), (3, 3));
    // A purged request id applies again; a recent one is still deduplicated.
    let again = kv.apply(Batch(vec![create("old-0001", "purged"), create("recent-0", "kept")]));
    assert!(matches!(&again[0], Outcome::Cluster(c) if c.name == "purged"));
    assert_eq!(again[1], Outcome::Done);
    assert!(get_cluster(&kv, "kept").unwrap().is_none());
}

#[test]
fn a_leader_decision_applies_only_in_its_own_term() {
    let mut kv = MemKv::default();
    let decision = |id: &str, term: u64, name: &str| {
        let mut p = create(id, name);
        p.command = Command::AsLeader {
            term,
            command: Box::new(p.command),
        };
        p
    };
    // MemKv::apply applies as an entry of term 1.
    let out = kv.apply(Batch(vec![decision("old", 0, "stale"), decision("new", 1, "fresh")]));
    assert_eq!(out[0], Outcome::Rejected(Rejection::StaleLeader));
    assert!(matches!(&out[1], Outcome::Cluster(c) if c.name == "fresh"));
    assert!(get_cluster(&kv, "stale").unwrap().is_none());
}

/// A task row of cluster `c` as apply stores it.
fn stored_task(id: &str, last: &str, stopped_at: Option<u64>) -> serde_json::Value {
    task_row(id, last, "Stopped", stopped_at, 1)
}

#[test]
fn stopped_tasks_are_forgotten_an_hour_after_they_stopped() {
    let mut kv = MemKv::default();
    kv.apply(Batch(vec![create("c", "c")]));
    let task = stored_task;
    for (id, last, at) in [
        ("old", "Stopped", Some(1_000)),
        ("recent", "Stopped", Some(9_000)),
        ("live", "Running", None),
    ] {
        kv.0.insert(
            (Space::Data, format!("task/c\0{id}").into_bytes()),
            serde_json::to_vec(&task(id, last, at)).unwrap(),
        );
    }
    let forget = |id: &str| {
        proposal(
            id,
            10_000,
            Command::ForgetStoppedTasks {
                cluster: "c".into(),
                before_ms: 5_000,
                limit: 10,
            },
        )
    };
    assert_eq!(kv.apply(Batch(vec![forget("gc1")])), vec![Outcome::Forgotten(1)]);
    let left: Vec<String> = tasks::all(&kv, "c").unwrap().into_iter().map(|t| t.id).collect();
    assert_eq!(left, ["live", "recent"]);
    assert_eq!(kv.apply(Batch(vec![forget("gc2")])), vec![Outcome::Forgotten(0)]);
}

#[test]
fn a_launch_is_remembered_by_its_task_ids_and_recalled_as_the_tasks_are_now() {
    let mut kv = MemKv::default();
    let row = |id: &str, last: &str| task_row(id, last, "Running", None, 1);
    let mut launched = Vec::new();
    for id in ["t1", "t2"] {
        let bytes = serde_json::to_vec(&row(id, "Pending")).unwrap();
        launched.push(decode::<Task>(&bytes).unwrap());
        kv.0.insert((Space::Data, tasks::key("c", id)), bytes);
    }
    let outcome = Outcome::Tasks {
        tasks: launched.clone(),
        failures: vec![("arn:ci/x".into(), "RESOURCE:CPU".into())],
    };
    let stored = encode(&DedupeRecord::new(5, &outcome));
    assert!(!String::from_utf8_lossy(&stored).contains("task_definition_arn"));
    assert_eq!(decode::<DedupeRecord>(&stored).unwrap().recall(&kv).unwrap(), outcome);

    // Records written in full (by earlier versions) still answer as they were written.
    let full = serde_json::to_vec(&serde_json::json!({"ts_ms": 5, "outcome": outcome})).unwrap();
    assert_eq!(decode::<DedupeRecord>(&full).unwrap().recall(&kv).unwrap(), outcome);

    // A retry sees the tasks as they are now; a forgotten one is left out.
    kv.0.insert(
        (Space::Data, tasks::key("c", "t1")),
        serde_json::to_vec(&row("t1", "Running")).unwrap(),
    );
    kv.0.remove(&(Space::Data, tasks::key("c", "t2")));
    match decode::<DedupeRecord>(&stored).unwrap().recall(&kv).unwrap() {
        Outcome::Tasks { tasks, failures } => {
            assert_eq!(tasks.len(), 1);
            assert_eq!(tasks[0].last_status, crate::model::TaskStatus::Running);
            assert_eq!(failures.len(), 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn stopped_tasks_are_forgotten_oldest_first_through_the_stop_time_index() {
    let mut kv = MemKv::default();
    kv.apply(Batch(vec![create("c", "c")]));
    let task = stored_task;
    // Rows as an earlier version stored them: no stop-time index entries.
    for (id, last, at) in [
        ("a", "Stopped", Some(3_000)),
        ("b", "Stopped", Some(1_000)),
        ("c", "Stopped", Some(2_000)),
        ("recent", "Stopped", Some(9_000)),
        ("live", "Running", None),
    ] {
        kv.0.insert(
            (Space::Data, tasks::key("c", id)),
            serde_json::to_vec(&task(id, last, at)).unwrap(),
        );
    }
    let forget = |id: &str, limit: usize| {
        proposal(
            id,
            10_000,
            Command::ForgetStoppedTasksByTime {
                cluster: "c".into(),
                before_ms: 5_000,
                limit,
            },
        )
    };
    let left = |kv: &MemKv| -> Vec<String> { tasks::all(kv, "c").unwrap().into_iter().map(|t| t.id).collect() };
    // The first one indexes the earlier rows, then forgets the two that stopped first.
    assert_eq!(kv.apply(Batch(vec![forget("gc1", 2)])), vec![Outcome::Forgotten(2)]);
    assert_eq!(left(&kv), ["a", "live", "recent"]);
    assert_eq!(kv.apply(Batch(vec![forget("gc2", 10)])), vec![Outcome::Forgotten(1)]);
    assert_eq!(left(&kv), ["live", "recent"]);
    assert_eq!(kv.apply(Batch(vec![forget("gc3", 10)])), vec![Outcome::Forgotten(0)]);
    // Only the index entry of the task kept is left, and the sweep is done.
    let index: Vec<Vec<u8>> =
        kv.0.keys()
            .filter(|(_, k)| k.starts_with(b"tstop/"))
            .map(|(_, k)| k.clone())
            .collect();
    assert_eq!(index, vec![b"tstop/c\x0000000000000000009000\x00recent".to_vec()]);
    assert_eq!(
        kv.0.get(&(Space::Data, b"tstop-sweep/c".to_vec())),
        Some(&b"\xff".to_vec())
    );

    // More earlier rows than one sweep looks at: the sweep resumes where it stopped.
    let mut kv = MemKv::default();
    kv.apply(Batch(vec![create("c2", "c")]));
    for i in 0..1_500 {
        let id = format!("t{i:04}");
        kv.0.insert(
            (Space::Data, tasks::key("c", &id)),
            serde_json::to_vec(&task(&id, "Stopped", Some(1_000))).unwrap(),
        );
    }
    assert_eq!(kv.apply(Batch(vec![forget("s1", 0)])), vec![Outcome::Forgotten(0)]);
    assert_ne!(
        kv.0.get(&(Space::Data, b"tstop-sweep/c".to_vec())),
        Some(&b"\xff".to_vec())
    );
    assert_eq!(
        kv.apply(Batch(vec![forget("s2", 5_000)])),
        vec![Outcome::Forgotten(1_500)]
    );
    assert!(left(&kv).is_empty());
}

#[test]
fn an_instance_change_counter_moves_with_every_write_of_its_tasks() {
    use crate::model::TaskStatus;
    let mut kv = MemKv::default();
    kv.apply(Batch(vec![create("c", "c")]));
    let mut row = stored_task("t", "Pending", None);
    row["desired_status"] = "Running".into();
    kv.0.insert((Space::Data, tasks::key("c", "t")), serde_json::to_vec(&row).unwrap());
    let counter = |kv: &MemKv| -> Option<u64> {
        kv.0.get(&(Space::Data, tasks::work_key("c", "i")))
            .map(|b| decode(b).unwrap())
    };
    let report = |id: &str, status: TaskStatus| {
        proposal(
            id,
            2_000,
            Command::TaskStateChange(Box::new(tasks::StateChange {
                cluster: "c".into(),
                task_id: "t".into(),
                status: Some(status),
                ..Default::default()
            })),
        )
    };
    // Every write moves it, the agent's own report and a tag change included: what apply
    // writes for a command is the same on every version of ecsd (the stream decides what to
    // send).
    kv.apply(Batch(vec![report("r1", TaskStatus::Running)]));
    assert_eq!(counter(&kv), Some(1));
    let tag = Command::TagResource {
        target: TagTarget::Task {
            cluster: "c".into(),
            id: "t".into(),
        },
        tags: vec![Tag {
            key: "k".into(),
            value: "v".into(),
        }],
    };
    kv.apply(Batch(vec![proposal("tag", 2_000, tag)]));
    assert_eq!(
        tasks::get(&kv, "c", "t").unwrap().unwrap().last_status,
        TaskStatus::Running
    );
    assert_eq!(counter(&kv), Some(2));
    let stop = Command::StopTask {
        cluster: "c".into(),
        id: "t".into(),
        reason: None,
    };
    kv.apply(Batch(vec![proposal("stop", 3_000, stop)]));
    assert_eq!(counter(&kv), Some(3));
    kv.apply(Batch(vec![report("r2", TaskStatus::Stopped)]));
    assert_eq!(counter(&kv), Some(4));
}

#[test]
fn applied_time_never_goes_backwards() {
    let mut kv = MemKv::default();
    kv.apply(Batch(vec![proposal("a", 5000, Command::Noop)]));
    let out = kv.apply(Batch(vec![create("b", "late")]));
    assert!(matches!(&out[0], Outcome::Cluster(c) if c.created_at_ms == 5000));
}

#[test]
fn task_definition_revisions_are_never_reused() {
    let mut kv = MemKv::default();
    let reg = register_family;
    kv.apply(Batch(vec![
        reg("1", "web"),
        reg("2", "web"),
        reg("3", "web"),
        reg("4", "web-b"),
    ]));
    let out = kv.apply(Batch(vec![proposal(
        "5",
        2000,
        Command::DeregisterTaskDefinition {
            family: "web".into(),
            revision: 3,
        },
    )]));
    assert!(matches!(&out[0], Outcome::TaskDefinition(d) if d.status == crate::model::TaskDefinitionStatus::Inactive));
    let out = kv.apply(Batch(vec![reg("6", "web")]));
    assert!(matches!(&out[0], Outcome::TaskDefinition(d) if d.revision == 4 && d.arn == "arn/web:4"));
    assert_eq!(
        task_definitions::latest_active(&kv, "web").unwrap().unwrap().revision,
        4
    );
    let order: Vec<(String, u32)> = task_definitions::all(&kv)
        .unwrap()
        .into_iter()
        .map(|d| (d.family, d.revision))
        .collect();
    let expected = [("web", 1), ("web", 2), ("web", 3), ("web", 4), ("web-b", 1)];
    assert_eq!(
        order,
        expected.iter().map(|(f, r)| (f.to_string(), *r)).collect::<Vec<_>>()
    );
    let out = kv.apply(Batch(vec![proposal(
        "7",
        2000,
        Command::DeregisterTaskDefinition {
            family: "web".into(),
            revision: 9,
        },
    )]));
    assert_eq!(out[0], Outcome::Rejected(Rejection::TaskDefinitionNotFound));
}

#[test]
fn listing_skips_inactive_and_pages() {
    let mut kv = MemKv::default();
    kv.apply(Batch(vec![
        create("1", "a"),
        create("2", "b"),
        create("3", "c"),
        create("4", "d"),
    ]));
    kv.apply(Batch(vec![proposal(
        "5",
        1000,
        Command::DeleteCluster { name: "b".into() },
    )]));
    let (page, more) = list_active_clusters(&kv, None, 2).unwrap();
    assert_eq!(page.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["a", "c"]);
    assert!(more);
    let (page, more) = list_active_clusters(&kv, Some("c"), 2).unwrap();
    assert_eq!(page.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), vec!["d"]);
    assert!(!more);
}

proptest::proptest! {
    /// Paging through ListClusters sees every ACTIVE cluster exactly once, in order, while
    /// clusters are created and deleted between pages.
    #[test]
    fn pages_see_every_cluster_once(
        names in proptest::collection::btree_set("[a-z]{1,6}", 1..40),
        page in 1usize..7,
        churn in proptest::collection::vec(("[a-z]{1,6}", proptest::bool::ANY), 0..20),
    ) {
        let mut kv = MemKv::default();
        let creates: Vec<Proposal> = names.iter().enumerate().map(|(i, n)| create(&format!("c{i}"), n)).collect();
        kv.apply(Batch(creates));
        let mut seen: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        let mut churn = churn.into_iter().enumerate();
        loop {
            let (items, more) = list_active_clusters(&kv, after.as_deref(), page).unwrap();
            proptest::prop_assert!(items.len() <= page);
            seen.extend(items.iter().map(|c| c.name.clone()));
            if !more {
                break;
            }
            after = items.last().map(|c| c.name.clone());
            // Concurrent writes between pages: new names and deletes of other names.
            if let Some((i, (name, delete))) = churn.next() {
                let command = if delete && !names.contains(&name) {
                    Command::DeleteCluster { name }
                } else {
                    Command::CreateCluster {
                        name: format!("{name}-new"),
                        arn: String::new(),
                        tags: vec![],
                        options: Default::default(),
                    }
                };
                kv.apply(Batch(vec![proposal(&format!("w{i}"), 1000, command)]));
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        proptest::prop_assert_eq!(&sorted, &seen, "pages out of order or repeated");
        for name in &names {
            proptest::prop_assert!(seen.contains(name), "{} missing", name);
        }
    }
}

fn service_creation(ts: u64) -> Proposal {
    proposal(
        &format!("svc-{ts}"),
        ts,
        Command::CreateService(Box::new(services::Creation {
            cluster: "c".into(),
            name: "web".into(),
            task_definition_family: "web".into(),
            task_definition_revision: 1,
            task_definition_arn: "arn/web:1".into(),
            desired_count: 0,
            daemon: false,
            maximum_percent: 200,
            minimum_healthy_percent: 100,
            spec: Default::default(),
            network_configuration: None,
            platform_version: None,
            client_token: None,
            request_digest: String::new(),
            tags: vec![],
            principal: "p".into(),
            root: "p".into(),
            long_by_default: false,
            arn_prefix: "arn:".into(),
            launch_type: None,
            capacity_provider_strategy: vec![],
            circuit_breaker: None,
            rollout_states: false,
        })),
    )
}

/// The next revision of task definition family `family`, under request id `id`.
fn register_family(id: &str, family: &str) -> Proposal {
    proposal(
        id,
        1000,
        Command::RegisterTaskDefinition {
            family: family.into(),
            arn_base: format!("arn/{family}"),
            body: serde_json::json!({"family": family}),
            tags: vec![],
        },
    )
}

/// Revision 1 of task definition family `web`.
fn register_web() -> Proposal {
    proposal(
        "td",
        1000,
        Command::RegisterTaskDefinition {
            family: "web".into(),
            arn_base: "arn/web".into(),
            body: serde_json::json!({"family": "web", "containerDefinitions": []}),
            tags: vec![],
        },
    )
}

#[test]
fn service_events_are_capped_deduplicated_and_kept_apart() {
    let mut kv = MemKv::default();
    kv.apply(Batch(vec![create("c1", "c"), register_web(), service_creation(1000)]));
    let event = |n: u64, message: &str| {
        proposal(
            &format!("e{n}"),
            2000 + n,
            Command::ServiceEvent {
                cluster: "c".into(),
                name: "web".into(),
                id: format!("id{n}"),
                message: message.into(),
            },
        )
    };
    let batch: Vec<Proposal> = (0..105).map(|n| event(n, &format!("m{n}"))).collect();
    kv.apply(Batch(batch));
    let list = services::events(&kv, "c", "web").unwrap();
    assert_eq!(list.len(), crate::model::MAX_SERVICE_EVENTS);
    assert_eq!((list[0].message.as_str(), list[99].message.as_str()), ("m104", "m5"));
    // The record itself carries none: count updates do not rewrite them.
    assert!(services::get(&kv, "c", "web").unwrap().unwrap().events.is_empty());
    // The newest message again, within six hours: suppressed. An older one: recorded.
    kv.apply(Batch(vec![event(200, "m104"), event(201, "m103")]));
    let list = services::events(&kv, "c", "web").unwrap();
    assert_eq!((list[0].message.as_str(), list[1].message.as_str()), ("m103", "m104"));
    // Six hours later the same message is recorded again (ECS re-reports a steady state).
    let mut late = event(202, "m103");
    late.ts_ms += services::EVENT_REPEAT_MS;
    kv.apply(Batch(vec![late]));
    assert_eq!(services::events(&kv, "c", "web").unwrap()[0].id, "id202");
    // A new service of the same name starts with no events.
    kv.apply(Batch(vec![proposal(
        "del",
        30_000_000,
        Command::DeleteService {
            cluster: "c".into(),
            name: "web".into(),
            force: true,
        },
    )]));
    let out = kv.apply(Batch(vec![service_creation(30_000_001)]));
    assert!(matches!(&out[0], Outcome::Service(s) if s.events.is_empty()));
    assert!(services::events(&kv, "c", "web").unwrap().is_empty());
}

#[test]
fn a_launch_whose_constraint_does_not_parse_is_refused_whole_not_placed_anywhere() {
    let mut kv = MemKv::default();
    kv.apply(Batch(vec![create("c", "c"), register_web()]));
    let launch = |member_of: &str| tasks::Launch {
        cluster: "c".into(),
        task_definition_family: "web".into(),
        task_definition_revision: 1,
        task_definition_arn: "arn/web:1".into(),
        reservation: Default::default(),
        requires_attributes: vec![],
        group: "family:web".into(),
        distinct_instance: false,
        member_of: vec![member_of.into()],
        started_by: None,
        overrides: serde_json::json!({}),
        containers: vec![],
        cpu: None,
        memory: None,
        tags: vec![],
        service: None,
        principal: "p".into(),
        root: "p".into(),
        long_by_default: false,
        arn_prefix: "arn:aws:ecs:r:1:".into(),
        tasks: vec![],
        failures: vec![],
        event_id: None,
        kind: Default::default(),
    };
    // Written by a proposer of an earlier version, which dropped what did not parse.
    let deep = format!("{}agentConnected == true{}", "(".repeat(40), ")".repeat(40));
    for (id, expression) in [("l1", "attribute:x =="), ("l2", deep.as_str())] {
        let out = kv.apply(Batch(vec![proposal(
            id,
            2000,
            Command::LaunchTasks(Box::new(launch(expression))),
        )]));
        assert_eq!(
            out,
            vec![Outcome::Rejected(Rejection::InvalidPlacementConstraint)],
            "{expression}"
        );
    }
    let out = kv.apply(Batch(vec![proposal(
        "l3",
        2000,
        Command::LaunchTasks(Box::new(launch("agentConnected == true"))),
    )]));
    assert!(matches!(&out[0], Outcome::Tasks { .. }), "{out:?}");
}

#[test]
fn a_page_of_tasks_reads_from_its_position_and_stops_when_full() {
    let mut kv = MemKv::default();
    for (id, desired) in [
        ("t1", "Running"),
        ("t2", "Stopped"),
        ("t3", "Running"),
        ("t4", "Running"),
        ("t5", "Running"),
    ] {
        kv.0.insert(
            (Space::Data, tasks::key("c", id)),
            serde_json::to_vec(&task_row(id, "Running", desired, None, 1)).unwrap(),
        );
    }
    let ids = |tasks: Vec<Task>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let running = |t: &Task| t.desired_status == crate::model::TaskStatus::Running;
    assert_eq!(
        ids(tasks::first_matching(&kv, "c", tasks::Within::Cluster, None, 2, running).unwrap()),
        ["t1", "t3"]
    );
    assert_eq!(
        ids(tasks::first_matching(&kv, "c", tasks::Within::Cluster, Some("t3"), 2, running).unwrap()),
        ["t4", "t5"]
    );
    assert_eq!(
        ids(tasks::first_matching(&kv, "c", tasks::Within::Cluster, Some("t5"), 2, running).unwrap()),
        Vec::<String>::new()
    );
    // It stops at the page: a filter that counts its calls sees no row past the second match.
    let mut seen = 0;
    tasks::first_matching(&kv, "c", tasks::Within::Cluster, None, 2, |_| {
        seen += 1;
        true
    })
    .unwrap();
    assert_eq!(seen, 2);
}

#[test]
fn a_page_of_an_instance_s_tasks_walks_only_its_index() {
    let mut kv = MemKv::default();
    for (id, instance) in [
        ("t1", "i"),
        ("t2", "j"),
        ("t3", "i"),
        ("t4", "j"),
        ("t5", "i"),
        ("t6", "j"),
    ] {
        let mut row = task_row(id, "Running", "Running", None, 1);
        row["container_instance_id"] = serde_json::json!(instance);
        kv.0.insert((Space::Data, tasks::key("c", id)), serde_json::to_vec(&row).unwrap());
        let index = format!("itask/c\0{instance}\0{id}").into_bytes();
        kv.0.insert((Space::Data, index), b"1".to_vec());
    }
    let ids = |tasks: Vec<Task>| tasks.into_iter().map(|t| t.id).collect::<Vec<_>>();
    let on_i = tasks::Within::Instance("i");
    assert_eq!(
        ids(tasks::first_matching(&kv, "c", on_i, None, 2, |_| true).unwrap()),
        ["t1", "t3"]
    );
    assert_eq!(
        ids(tasks::first_matching(&kv, "c", on_i, Some("t3"), 2, |_| true).unwrap()),
        ["t5"]
    );
    // Only the instance's own tasks are read: the filter sees three, not six.
    let mut seen = 0;
    tasks::first_matching(&kv, "c", on_i, None, 10, |t| {
        seen += 1;
        t.container_instance_id == "i"
    })
    .unwrap();
    assert_eq!(seen, 3);
}

#[test]
fn a_page_of_revisions_reads_either_way_from_its_position() {
    let mut kv = MemKv::default();
    for (family, revision, status) in [
        ("a", 1, "Active"),
        ("a", 2, "Inactive"),
        ("a", 3, "Active"),
        ("b", 1, "Active"),
    ] {
        let key = format!("taskdef/{family}\0{revision:010}").into_bytes();
        let row = serde_json::json!({"family": family, "revision": revision, "arn": format!("{family}:{revision}"),
            "status": status, "body": {}, "registered_at_ms": 0});
        kv.0.insert((Space::Data, key), serde_json::to_vec(&row).unwrap());
    }
    let arns = |d: Vec<crate::model::TaskDefinition>| d.into_iter().map(|d| d.arn).collect::<Vec<_>>();
    let page = |family, descending, after, want| {
        arns(task_definitions::page(&kv, family, descending, after, want, |d| d.status.as_str() == "ACTIVE").unwrap())
    };
    assert_eq!(page(None, false, None, 10), ["a:1", "a:3", "b:1"]);
    assert_eq!(page(None, true, None, 2), ["b:1", "a:3"]);
    assert_eq!(page(None, true, Some(("a", 3)), 10), ["a:1"]);
    assert_eq!(page(None, false, Some(("a", 1)), 1), ["a:3"]);
    assert_eq!(page(Some("a"), true, None, 10), ["a:3", "a:1"]);
    assert_eq!(page(Some("a"), false, Some(("a", 3)), 10), Vec::<String>::new());
    assert_eq!(
        task_definitions::latest_active(&kv, "a").unwrap().map(|d| d.revision),
        Some(3)
    );
}

#[test]
fn a_page_of_families_reads_from_its_position_and_stops_when_full() {
    let mut kv = MemKv::default();
    let reg = register_family;
    kv.apply(Batch(vec![
        reg("1", "api"),
        reg("2", "web"),
        reg("3", "web"),
        reg("4", "web-b"),
        reg("5", "worker"),
        proposal(
            "6",
            1000,
            Command::DeregisterTaskDefinition {
                family: "web-b".into(),
                revision: 1,
            },
        ),
    ]));
    let page = |after: Option<&str>, want: usize, inactive_only: bool| {
        task_definitions::families_page(&kv, "w", after, want, |_, active| !inactive_only || !active).unwrap()
    };
    assert_eq!(page(None, 2, false), ["web", "web-b"]);
    assert_eq!(page(Some("web-b"), 2, false), ["worker"]);
    assert_eq!(page(None, 5, true), ["web-b"]);
    let mut seen = 0;
    task_definitions::families_page(&kv, "", None, 2, |_, _| {
        seen += 1;
        true
    })
    .unwrap();
    assert_eq!(seen, 2, "no family past the page is read");
}

#[test]
fn from_version_3_a_request_without_a_client_token_is_remembered_briefly() {
    let token_id = "RunTask/tok-1/00000000000000ab";
    let fresh_id = "6f1c2a4e-0d6b-4a51-9a8e-2f0f3d7c9b11";
    for version in [2, 3] {
        let mut kv = MemKv::default();
        kv.apply(Batch(vec![proposal("v", 1000, Command::SetClusterVersion { version })]));
        kv.apply(Batch(vec![create(token_id, "a"), create(fresh_id, "b")]));
        let record = |kv: &MemKv, id: &str| kv.get(Space::Dedupe, format!("r/{id}").as_bytes()).unwrap();
        kv.apply(Batch(vec![proposal(
            "tick-1",
            1000 + BRIEF_DEDUPE_TTL_MS + 1,
            Command::Noop,
        )]));
        assert!(
            record(&kv, token_id).is_some(),
            "version {version}: a client token is kept a day"
        );
        assert_eq!(
            record(&kv, fresh_id).is_some(),
            version < 3,
            "version {version}: a fresh id is kept a day before version 3, 15 minutes from it"
        );
        kv.apply(Batch(vec![proposal("tick-2", 1000 + DEDUPE_TTL_MS + 1, Command::Noop)]));
        assert!(record(&kv, token_id).is_none(), "version {version}: and no longer");
        assert!(record(&kv, fresh_id).is_none());
    }
}

#[test]
fn from_version_3_a_tagging_record_holds_no_copy_of_the_tags() {
    let mut kv = MemKv::default();
    kv.apply(Batch(vec![proposal(
        "v",
        1000,
        Command::SetClusterVersion { version: 3 },
    )]));
    kv.apply(Batch(vec![create("c", "a")]));
    let tag = || {
        proposal(
            "tag-1",
            2000,
            Command::TagResource {
                target: TagTarget::Cluster { name: "a".into() },
                tags: vec![Tag {
                    key: "k".into(),
                    value: "v".into(),
                }],
            },
        )
    };
    let first = kv.apply(Batch(vec![tag()]));
    assert!(matches!(&first[0], Outcome::Tags(t) if t.len() == 1), "{first:?}");
    let record = kv.get(Space::Dedupe, b"r/tag-1").unwrap().unwrap();
    assert!(
        !String::from_utf8_lossy(&record).contains("\"k\""),
        "{}",
        String::from_utf8_lossy(&record)
    );
    let retried = kv.apply(Batch(vec![tag()]));
    assert_eq!(
        retried,
        vec![Outcome::Tags(vec![])],
        "a retry is answered, and applies nothing again"
    );
    let tags = resource_tags(&kv, &TagTarget::Cluster { name: "a".into() }).unwrap();
    assert_eq!(tags.map(|t| t.len()), Some(1));
}
