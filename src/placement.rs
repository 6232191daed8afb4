//! The placement engine: which container instances a task may go to, and in what order.
//!
//! Pure: from a view of a cluster's instances and what a task needs, it produces placements and
//! per-instance failures. It does no I/O, reads no clock, and draws its randomness from the seed
//! it is given. `apply` re-checks each placement with [`check`] (`state::resources`, beside the state it guards), so a placement computed from a
//! stale view can never over-commit an instance.
//!
//! Order of work, as ECS documents it: eligibility and resources, then
//! constraints, then strategies; tasks of one call are placed one at a time, each seeing the
//! resources and group counts the earlier ones took.

use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;

use crate::cql;
use crate::model::{stable_hash, Attribute, ContainerInstance, InstanceStatus, Reservation};
pub use crate::model::{BinpackField, SpreadField, Strategy};
pub use crate::state::resources::{check, facts, integer, port_set, reason, release, reserve, MAX_RESERVED_PORTS};

/// What one placement call asks for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub reservation: &'a Reservation,
    pub count: usize,
    /// The task group: spread counts and `distinctInstance` consider tasks of this group.
    pub group: &'a str,
    pub distinct_instance: bool,
    pub member_of: &'a [cql::Expr],
    pub requires_attributes: &'a [Attribute],
    pub strategies: &'a [Strategy],
    pub seed: u64,
}

impl Request<'_> {
    /// [`check`] of `instance` for one task of this request.
    fn check(&self, instance: &ContainerInstance) -> Option<&'static str> {
        check(
            instance,
            self.reservation,
            self.requires_attributes,
            self.group,
            self.distinct_instance,
            self.member_of,
        )
    }
}

/// The outcome: the instance ID of each placed task, in order, and `(instance ARN, reason)` for
/// each instance that turned a task away (deduplicated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub placements: Vec<String>,
    pub failures: Vec<(String, String)>,
}

/// A deterministic 64-bit mix (splitmix64), for seeded random order.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The value of attribute `name` on `instance` (its spread bucket).
fn attribute_value<'a>(instance: &'a ContainerInstance, name: &str) -> Option<&'a str> {
    instance
        .attributes
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| a.value.as_deref())
}

/// Places up to `request.count` tasks on `instances` (a cluster's instances, in any order).
pub fn place<I: Borrow<ContainerInstance>>(instances: &[I], request: &Request<'_>) -> Plan {
    // Instances are copied only when a task is placed on them.
    let mut view: Vec<Cow<'_, ContainerInstance>> = instances.iter().map(|i| Cow::Borrowed(i.borrow())).collect();
    // Deterministic base order, whatever order the caller used.
    view.sort_by(|a, b| a.id.cmp(&b.id));
    let mut plan = Plan::default();
    let mut failed: BTreeMap<(String, String), ()> = BTreeMap::new();
    // Every check reads only its own instance, so each instance is checked once, and again only
    // after a task was placed on it: the same eligible set and failures as checking them all
    // before each task.
    let mut eligible = eligible(&view, request, &mut failed);
    let ids: Vec<u64> = view.iter().map(|i| stable_hash(i.id.as_bytes())).collect();
    for n in 0..request.count {
        let Some(at) = choose(&view, &ids, &eligible, request, n as u64) else {
            break;
        };
        let best = eligible[at];
        let chosen = view[best].to_mut();
        reserve(chosen, request.reservation, request.group);
        chosen.pending_tasks += 1;
        plan.placements.push(chosen.id.clone());
        if let Some(why) = request.check(&view[best]) {
            failed.insert((view[best].arn.clone(), why.to_string()), ());
            eligible.remove(at);
        }
    }
    if plan.placements.len() < request.count {
        plan.failures = failed.into_keys().collect();
    }
    plan
}

/// The positions of the ACTIVE instances of `view` that pass [`check`]; each other ACTIVE one
/// goes into `failed` with its reason.
fn eligible<I: Borrow<ContainerInstance>>(
    view: &[I],
    request: &Request<'_>,
    failed: &mut BTreeMap<(String, String), ()>,
) -> Vec<usize> {
    let mut eligible = Vec::new();
    for (i, instance) in view.iter().map(Borrow::borrow).enumerate() {
        if instance.status != InstanceStatus::Active {
            continue;
        }
        match request.check(instance) {
            None => eligible.push(i),
            Some(why) => {
                failed.insert((instance.arn.clone(), why.to_string()), ());
            }
        }
    }
    eligible
}

/// Most placement strategies a request may give (the API refuses more).
pub const MAX_STRATEGIES: usize = 5;

/// The position in `eligible` of the best instance by the strategies, in order, then by
/// instance ID. `ids` holds each instance's ID hash (for the random order).
fn choose(
    view: &[Cow<'_, ContainerInstance>],
    ids: &[u64],
    eligible: &[usize],
    request: &Request<'_>,
    n: u64,
) -> Option<usize> {
    let strategies: &[Strategy] = if request.strategies.is_empty() {
        &[Strategy::Random]
    } else {
        &request.strategies[..request.strategies.len().min(MAX_STRATEGIES)]
    };
    // Tasks of the group in each attribute bucket, over ACTIVE instances.
    let bucket_counts = |name: &str| -> BTreeMap<Option<&str>, u64> {
        let mut counts = BTreeMap::new();
        for instance in view.iter().filter(|i| i.status == InstanceStatus::Active) {
            *counts.entry(attribute_value(instance, name)).or_insert(0) +=
                instance.task_groups.get(request.group).copied().unwrap_or(0);
        }
        counts
    };
    let counts: Vec<Option<BTreeMap<Option<&str>, u64>>> = strategies
        .iter()
        .map(|s| match s {
            Strategy::Spread(SpreadField::Attribute(name)) => Some(bucket_counts(name)),
            _ => None,
        })
        .collect();
    let random = request.seed ^ mix(n);
    // The strategies' keys, compared in order (unused places stay 0 for every instance).
    let key = |i: usize| -> [u64; MAX_STRATEGIES] {
        let instance = &view[i];
        let mut key = [0; MAX_STRATEGIES];
        for ((slot, s), counts) in key.iter_mut().zip(strategies).zip(&counts) {
            *slot = match s {
                Strategy::Binpack(BinpackField::Cpu) => integer(&instance.remaining_resources, "CPU").max(0) as u64,
                Strategy::Binpack(BinpackField::Memory) => {
                    integer(&instance.remaining_resources, "MEMORY").max(0) as u64
                }
                Strategy::Spread(SpreadField::Instance) => {
                    instance.task_groups.get(request.group).copied().unwrap_or(0)
                }
                Strategy::Spread(SpreadField::Attribute(name)) => counts
                    .as_ref()
                    .and_then(|c| c.get(&attribute_value(instance, name)).copied())
                    .unwrap_or(0),
                Strategy::Random => mix(random ^ ids[i]),
            };
        }
        key
    };
    // Each key once; ties go to the lowest instance ID (`eligible` is in ID order, so the first).
    eligible
        .iter()
        .enumerate()
        .map(|(at, &i)| (key(i), at))
        .min()
        .map(|(_, at)| at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Resource;

    /// The plan as the engine defines it: every instance checked again before each task.
    fn place_by_definition(instances: &[ContainerInstance], request: &Request<'_>) -> Plan {
        let mut view: Vec<ContainerInstance> = instances.to_vec();
        view.sort_by(|a, b| a.id.cmp(&b.id));
        let mut plan = Plan::default();
        let mut failed: BTreeMap<(String, String), ()> = BTreeMap::new();
        for n in 0..request.count {
            let eligible = eligible(&view, request, &mut failed);
            let cows: Vec<Cow<'_, ContainerInstance>> = view.iter().map(Cow::Borrowed).collect();
            let ids: Vec<u64> = view.iter().map(|i| stable_hash(i.id.as_bytes())).collect();
            let Some(at) = choose(&cows, &ids, &eligible, request, n as u64) else {
                continue;
            };
            let chosen = &mut view[eligible[at]];
            reserve(chosen, request.reservation, request.group);
            chosen.pending_tasks += 1;
            plan.placements.push(chosen.id.clone());
        }
        if plan.placements.len() < request.count {
            plan.failures = failed.into_keys().collect();
        }
        plan
    }

    #[test]
    fn checking_only_the_chosen_instance_again_plans_as_checking_all_before_each_task() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let strategy_sets = [
            vec![],
            vec![Strategy::Binpack(BinpackField::Memory)],
            vec![
                Strategy::Spread(SpreadField::Instance),
                Strategy::Binpack(BinpackField::Cpu),
            ],
            vec![Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into()))],
        ];
        for round in 0..300 {
            let instances: Vec<ContainerInstance> = (0..rng.gen_range(0..12))
                .map(|i| {
                    let mut inst = instance(
                        &format!("i{i:02}"),
                        rng.gen_range(0..2048),
                        rng.gen_range(0..2048),
                        ["a", "b", "c"][rng.gen_range(0..3)],
                    );
                    if rng.gen_bool(0.3) {
                        inst.task_groups.insert("family:web".into(), rng.gen_range(0..3));
                    }
                    if rng.gen_bool(0.1) {
                        inst.status = InstanceStatus::Draining;
                    }
                    inst
                })
                .collect();
            let reservation = Reservation {
                cpu: rng.gen_range(0..700),
                memory: rng.gen_range(0..700),
                ports: if rng.gen_bool(0.3) { vec![8080] } else { vec![] },
                ports_udp: vec![],
            };
            let strategies = &strategy_sets[round % strategy_sets.len()];
            let mut req = request(&reservation, rng.gen_range(1..=10), strategies);
            req.distinct_instance = rng.gen_bool(0.3);
            req.seed = rng.gen();
            assert_eq!(
                place(&instances, &req),
                place_by_definition(&instances, &req),
                "round {round}"
            );
        }
    }

    fn resource(name: &str, value: i64) -> Resource {
        Resource {
            name: name.into(),
            kind: "INTEGER".into(),
            integer_value: value,
            long_value: 0,
            double_value: 0.0,
            string_set_value: vec![],
        }
    }

    fn instance(id: &str, cpu: i64, memory: i64, az: &str) -> ContainerInstance {
        let resources = vec![resource("CPU", cpu), resource("MEMORY", memory)];
        ContainerInstance {
            cluster: "c".into(),
            id: id.into(),
            arn: format!("arn/{id}"),
            ec2_instance_id: format!("i-{id}"),
            status: InstanceStatus::Active,
            agent_connected: true,
            registered_resources: resources.clone(),
            remaining_resources: resources,
            attributes: vec![Attribute {
                name: "ecs.availability-zone".into(),
                value: Some(az.into()),
            }],
            version_info: serde_json::json!({}),
            tags: vec![],
            registered_at_ms: 0,
            version: 1,
            running_tasks: 0,
            pending_tasks: 0,
            agent_update_status: None,
            task_groups: BTreeMap::new(),
            agent_heartbeats: false,
            agent: None,
        }
    }

    fn request<'a>(reservation: &'a Reservation, count: usize, strategies: &'a [Strategy]) -> Request<'a> {
        Request {
            reservation,
            count,
            group: "family:web",
            distinct_instance: false,
            member_of: &[],
            requires_attributes: &[],
            strategies,
            seed: 7,
        }
    }

    #[test]
    fn placement_stops_at_capacity_and_reports_the_resource() {
        let instances = vec![instance("a", 1024, 1000, "1a")];
        let r = Reservation {
            cpu: 0,
            memory: 300,
            ..Default::default()
        };
        let plan = place(&instances, &request(&r, 10, &[]));
        assert_eq!(plan.placements, ["a", "a", "a"]);
        assert_eq!(plan.failures, [("arn/a".to_string(), reason::MEMORY.to_string())]);
    }

    #[test]
    fn static_ports_conflict_and_grow_the_ports_set() {
        let mut a = instance("a", 1024, 1000, "1a");
        let r = Reservation {
            ports: vec![80],
            ..Default::default()
        };
        assert_eq!(check(&a, &r, &[], "g", false, &[]), None);
        reserve(&mut a, &r, "g");
        assert_eq!(port_set(&a.remaining_resources, "PORTS"), [80]);
        assert_eq!(check(&a, &r, &[], "g", false, &[]), Some(reason::PORTS));
        release(&mut a, &r, "g");
        assert_eq!(check(&a, &r, &[], "g", false, &[]), None);
        assert!(a.task_groups.is_empty());
    }

    #[test]
    fn spread_by_zone_then_instance_puts_one_task_on_each() {
        let instances = vec![
            instance("a", 4096, 4096, "1a"),
            instance("b", 4096, 4096, "1a"),
            instance("c", 4096, 4096, "1b"),
            instance("d", 4096, 4096, "1b"),
        ];
        let strategies = [
            Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())),
            Strategy::Spread(SpreadField::Instance),
        ];
        let r = Reservation::default();
        let mut plan = place(&instances, &request(&r, 4, &strategies)).placements;
        plan.sort();
        assert_eq!(plan, ["a", "b", "c", "d"]);
    }

    #[test]
    fn binpack_prefers_the_fullest_instance_that_fits() {
        let instances = vec![instance("a", 4096, 4096, "1a"), instance("b", 4096, 1024, "1a")];
        let strategies = [Strategy::Binpack(BinpackField::Memory)];
        let r = Reservation {
            memory: 512,
            ..Default::default()
        };
        let plan = place(&instances, &request(&r, 3, &strategies));
        assert_eq!(plan.placements, ["b", "b", "a"]);
    }

    #[test]
    fn distinct_instance_limits_a_group_to_one_task_per_instance() {
        let instances = vec![instance("a", 4096, 4096, "1a"), instance("b", 4096, 4096, "1a")];
        let r = Reservation::default();
        let mut req = request(&r, 3, &[]);
        req.distinct_instance = true;
        let plan = place(&instances, &req);
        assert_eq!(plan.placements.len(), 2);
        assert!(plan.failures.iter().all(|(_, why)| why == reason::DISTINCT_INSTANCE));
    }

    #[test]
    fn member_of_and_required_attributes_filter_instances() {
        let instances = vec![instance("a", 4096, 4096, "1a"), instance("b", 4096, 4096, "1b")];
        let r = Reservation::default();
        let expr = [cql::parse("attribute:ecs.availability-zone == 1b").unwrap()];
        let mut req = request(&r, 2, &[]);
        req.member_of = &expr;
        let plan = place(&instances, &req);
        assert_eq!(plan.placements, ["b", "b"]);
        let needs = [Attribute {
            name: "com.amazonaws.ecs.capability.docker-remote-api.1.19".into(),
            value: None,
        }];
        let mut req = request(&r, 1, &[]);
        req.requires_attributes = &needs;
        let plan = place(&instances, &req);
        assert!(plan.placements.is_empty());
        assert_eq!(plan.failures.len(), 2);
        assert!(plan.failures.iter().all(|(_, why)| why == reason::ATTRIBUTE));
    }

    #[test]
    fn a_disconnected_agent_takes_no_tasks() {
        let mut a = instance("a", 4096, 4096, "1a");
        a.agent_connected = false;
        let r = Reservation::default();
        let plan = place(&[a], &request(&r, 1, &[]));
        assert_eq!(plan.failures, [("arn/a".to_string(), reason::AGENT.to_string())]);
    }

    #[test]
    fn random_is_seeded_and_repeatable() {
        let instances: Vec<_> = (0..8).map(|i| instance(&format!("i{i}"), 4096, 4096, "1a")).collect();
        let r = Reservation::default();
        let one = place(&instances, &request(&r, 5, &[]));
        let two = place(&instances, &request(&r, 5, &[]));
        assert_eq!(one, two);
        let mut other = request(&r, 5, &[]);
        other.seed = 8;
        let distinct: std::collections::BTreeSet<_> = (0..20u64)
            .map(|seed| {
                other.seed = seed;
                place(&instances, &other).placements[0].clone()
            })
            .collect();
        assert!(distinct.len() > 1, "random placement always picks the same instance");
    }

    #[test]
    fn strategies_parse_with_errors_that_name_the_problem() {
        assert_eq!(Strategy::parse("random", None), Ok(Strategy::Random));
        assert_eq!(
            Strategy::parse("binpack", Some("MEMORY")),
            Ok(Strategy::Binpack(BinpackField::Memory))
        );
        assert_eq!(
            Strategy::parse("spread", Some("attribute:ecs.availability-zone")),
            Ok(Strategy::Spread(SpreadField::Attribute("ecs.availability-zone".into())))
        );
        assert!(Strategy::parse("binpack", Some("disk"))
            .unwrap_err()
            .contains("cpu or memory"));
        assert!(Strategy::parse("spread", None).is_err());
        assert!(Strategy::parse("pack", None).unwrap_err().contains("pack"));
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::{prop_assert, prop_assert_eq, prop_oneof, proptest, Just};
    use proptest::strategy::Strategy as Gen;

    use super::*;
    use crate::model::Resource;

    fn arb_instance(i: usize) -> impl Gen<Value = ContainerInstance> {
        (
            0i64..4096,
            0i64..4096,
            proptest::collection::vec(1u16..20, 0..4),
            0usize..3,
            0u64..3,
            proptest::bool::weighted(0.9),
        )
            .prop_map(move |(cpu, memory, ports, zone, group_tasks, connected)| {
                let mut remaining = vec![
                    Resource {
                        name: "CPU".into(),
                        kind: "INTEGER".into(),
                        integer_value: cpu,
                        long_value: 0,
                        double_value: 0.0,
                        string_set_value: vec![],
                    },
                    Resource {
                        name: "MEMORY".into(),
                        kind: "INTEGER".into(),
                        integer_value: memory,
                        long_value: 0,
                        double_value: 0.0,
                        string_set_value: vec![],
                    },
                ];
                remaining.push(Resource {
                    name: "PORTS".into(),
                    kind: "STRINGSET".into(),
                    integer_value: 0,
                    long_value: 0,
                    double_value: 0.0,
                    string_set_value: ports.iter().map(|p| p.to_string()).collect(),
                });
                let mut task_groups = BTreeMap::new();
                if group_tasks > 0 {
                    task_groups.insert("g".to_string(), group_tasks);
                }
                ContainerInstance {
                    cluster: "c".into(),
                    id: format!("i{i:02}"),
                    arn: format!("arn/i{i:02}"),
                    ec2_instance_id: format!("ec2-{i}"),
                    status: InstanceStatus::Active,
                    agent_connected: connected,
                    registered_resources: remaining.clone(),
                    remaining_resources: remaining,
                    attributes: vec![Attribute {
                        name: "zone".into(),
                        value: Some(format!("z{zone}")),
                    }],
                    version_info: serde_json::json!({}),
                    tags: vec![],
                    registered_at_ms: 0,
                    version: 1,
                    running_tasks: 0,
                    pending_tasks: 0,
                    agent_update_status: None,
                    task_groups,
                    agent_heartbeats: false,
                    agent: None,
                }
            })
    }

    fn arb_cluster() -> impl Gen<Value = Vec<ContainerInstance>> {
        (1usize..8).prop_flat_map(|n| (0..n).map(arb_instance).collect::<Vec<_>>())
    }

    fn arb_strategies() -> impl Gen<Value = Vec<Strategy>> {
        proptest::collection::vec(
            prop_oneof![
                Just(Strategy::Random),
                Just(Strategy::Binpack(BinpackField::Cpu)),
                Just(Strategy::Binpack(BinpackField::Memory)),
                Just(Strategy::Spread(SpreadField::Instance)),
                Just(Strategy::Spread(SpreadField::Attribute("zone".into()))),
            ],
            0..3,
        )
    }

    proptest! {
        /// Whatever the strategies, no placement over-commits an instance, every constraint
        /// holds for every placement, and failures are reported only when fewer were placed.
        #[test]
        fn placements_never_over_commit_and_honour_constraints(
            instances in arb_cluster(),
            cpu in 0i64..1500,
            memory in 0i64..1500,
            ports in proptest::collection::vec(1u16..20, 0..2),
            count in 1usize..10,
            distinct: bool,
            zone in proptest::option::of(0usize..3),
            strategies in arb_strategies(),
            seed: u64,
        ) {
            let reservation = Reservation { cpu, memory, ports: { let mut p = ports; p.sort(); p.dedup(); p }, ports_udp: vec![] };
            let member_of: Vec<cql::Expr> = zone.map(|z| cql::parse(&format!("attribute:zone == z{z}")).unwrap()).into_iter().collect();
            let request = Request {
                reservation: &reservation,
                count,
                group: "g",
                distinct_instance: distinct,
                member_of: &member_of,
                requires_attributes: &[],
                strategies: &strategies,
                seed,
            };
            let plan = place(&instances, &request);
            prop_assert!(plan.placements.len() <= count);
            prop_assert_eq!(plan.failures.is_empty() && plan.placements.len() < count, false);
            // Replay the placements on a copy, checking each with the same rules apply uses.
            let mut view: BTreeMap<String, ContainerInstance> = instances.iter().map(|i| (i.id.clone(), i.clone())).collect();
            for id in &plan.placements {
                let instance = view.get_mut(id).unwrap();
                prop_assert_eq!(check(instance, &reservation, &[], "g", distinct, &member_of), None);
                reserve(instance, &reservation, "g");
                prop_assert!(integer(&instance.remaining_resources, "CPU") >= 0);
                prop_assert!(integer(&instance.remaining_resources, "MEMORY") >= 0);
            }
            if distinct {
                let mut seen = std::collections::BTreeSet::new();
                for id in &plan.placements {
                    prop_assert!(seen.insert(id), "distinctInstance broken on {}", id);
                    prop_assert!(!instances.iter().any(|i| i.id == *id && i.task_groups.contains_key("g")));
                }
            }
        }

        /// binpack on memory puts the first task on the eligible instance with the least memory
        /// left; spread by instance puts it on one with the fewest tasks of the group.
        #[test]
        fn binpack_and_spread_choose_as_documented(instances in arb_cluster(), memory in 0i64..1000, seed: u64) {
            let reservation = Reservation { cpu: 0, memory, ports: vec![], ports_udp: vec![] };
            let eligible: Vec<&ContainerInstance> = instances
                .iter()
                .filter(|i| check(i, &reservation, &[], "g", false, &[]).is_none())
                .collect();
            for (strategy, key) in [
                (Strategy::Binpack(BinpackField::Memory), Box::new(|i: &ContainerInstance| integer(&i.remaining_resources, "MEMORY") as u64) as Box<dyn Fn(&ContainerInstance) -> u64>),
                (Strategy::Spread(SpreadField::Instance), Box::new(|i: &ContainerInstance| i.task_groups.get("g").copied().unwrap_or(0))),
            ] {
                let strategies = [strategy];
                let request = Request {
                    reservation: &reservation,
                    count: 1,
                    group: "g",
                    distinct_instance: false,
                    member_of: &[],
                    requires_attributes: &[],
                    strategies: &strategies,
                    seed,
                };
                let plan = place(&instances, &request);
                match eligible.iter().map(|i| key(i)).min() {
                    None => prop_assert!(plan.placements.is_empty()),
                    Some(best) => {
                        let chosen = instances.iter().find(|i| i.id == plan.placements[0]).unwrap();
                        prop_assert_eq!(key(chosen), best);
                    }
                }
            }
        }
    }
}
