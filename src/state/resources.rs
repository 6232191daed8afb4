//! What a task holds on its container instance, and the one check of whether it fits: the
//! resources, attributes, group counts and constraints an instance is judged by. The placement
//! engine plans with [`check`]; `apply` re-checks every placement with it against the state at
//! that point of the log, and [`reserve`]s and [`release`]s what tasks hold.

use crate::cql::{self, InstanceFacts};
use crate::model::{Attribute, ContainerInstance, InstanceStatus, Reservation, Resource};

/// Most reserved ports (TCP and UDP together) an instance may hold.
pub const MAX_RESERVED_PORTS: usize = 100;

/// Why an instance cannot take a task (the reasons of RunTask's `failures`).
pub mod reason {
    pub const AGENT: &str = "AGENT";
    pub const ATTRIBUTE: &str = "ATTRIBUTE";
    pub const CPU: &str = "RESOURCE:CPU";
    pub const MEMORY: &str = "RESOURCE:MEMORY";
    pub const PORTS: &str = "RESOURCE:PORTS";
    pub const PORTS_UDP: &str = "RESOURCE:PORTS_UDP";
    pub const DISTINCT_INSTANCE: &str = "DistinctInstance placement constraint unsatisfied.";
    pub const MEMBER_OF: &str = "MemberOf placement constraint unsatisfied.";
    pub const DRAINING: &str = "DRAINING";
    pub const INACTIVE: &str = "INACTIVE";
}

/// The amount of numeric resource `name` (registration makes its three fields equal), or 0.
pub fn integer(resources: &[Resource], name: &str) -> i64 {
    resources.iter().find(|r| r.name == name).map_or(0, |r| r.integer_value)
}

/// The ports of STRINGSET resource `name`.
pub fn port_set(resources: &[Resource], name: &str) -> Vec<u16> {
    resources
        .iter()
        .find(|r| r.name == name)
        .map(|r| r.string_set_value.iter().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}

/// What the query language sees of an instance.
pub fn facts(i: &ContainerInstance) -> InstanceFacts<'_> {
    InstanceFacts {
        agent_connected: i.agent_connected,
        agent_version: i.version_info.get("agentVersion").and_then(serde_json::Value::as_str),
        ec2_instance_id: &i.ec2_instance_id,
        registered_at_ms: i.registered_at_ms,
        running_tasks: i.running_tasks,
        task_groups: &i.task_groups,
        attributes: &i.attributes,
    }
}

/// The first check `instance` fails for a task, in the documented order: AGENT, ATTRIBUTE,
/// RESOURCE:CPU, RESOURCE:MEMORY, RESOURCE:PORTS, RESOURCE:PORTS_UDP, then the constraints.
/// `None` when the task fits. Used by the planner and again by `apply`.
pub fn check(
    instance: &ContainerInstance,
    reservation: &Reservation,
    requires_attributes: &[Attribute],
    group: &str,
    distinct_instance: bool,
    member_of: &[cql::Expr],
) -> Option<&'static str> {
    if instance.status == InstanceStatus::Inactive {
        return Some(reason::INACTIVE);
    }
    if instance.status == InstanceStatus::Draining {
        return Some(reason::DRAINING);
    }
    if !instance.agent_connected {
        return Some(reason::AGENT);
    }
    if !has_attributes(instance, requires_attributes) {
        return Some(reason::ATTRIBUTE);
    }
    let remaining = &instance.remaining_resources;
    // A negative reservation would give capacity back: it fits nowhere.
    if reservation.cpu < 0 || reservation.cpu > integer(remaining, "CPU") {
        return Some(reason::CPU);
    }
    if reservation.memory < 0 || reservation.memory > integer(remaining, "MEMORY") {
        return Some(reason::MEMORY);
    }
    // Most tasks reserve no host ports: then no port set needs reading.
    if !reservation.ports.is_empty() || !reservation.ports_udp.is_empty() {
        let tcp = port_set(remaining, "PORTS");
        let udp = port_set(remaining, "PORTS_UDP");
        let reserved_after = tcp.len() + udp.len() + reservation.ports.len() + reservation.ports_udp.len();
        if reservation.ports.iter().any(|p| tcp.contains(p))
            || (!reservation.ports.is_empty() && reserved_after > MAX_RESERVED_PORTS)
        {
            return Some(reason::PORTS);
        }
        if reservation.ports_udp.iter().any(|p| udp.contains(p))
            || (!reservation.ports_udp.is_empty() && reserved_after > MAX_RESERVED_PORTS)
        {
            return Some(reason::PORTS_UDP);
        }
    }
    if distinct_instance && instance.task_groups.get(group).is_some_and(|n| *n > 0) {
        return Some(reason::DISTINCT_INSTANCE);
    }
    let f = facts(instance);
    if !member_of.iter().all(|e| cql::eval(e, &f)) {
        return Some(reason::MEMBER_OF);
    }
    None
}

/// Whether `instance` has every attribute of `required` (by name, and by value where one is given).
pub fn has_attributes(instance: &ContainerInstance, required: &[Attribute]) -> bool {
    required.iter().all(|want| {
        instance
            .attributes
            .iter()
            .any(|a| a.name == want.name && (want.value.is_none() || a.value == want.value))
    })
}

/// Takes `reservation` from `instance`: CPU and MEMORY shrink, the PORTS sets grow, the group
/// count rises.
pub fn reserve(instance: &mut ContainerInstance, reservation: &Reservation, group: &str) {
    adjust(&mut instance.remaining_resources, reservation, true);
    *instance.task_groups.entry(group.to_string()).or_insert(0) += 1;
}

/// Gives `reservation` back to `instance` (when its task reaches STOPPED).
pub fn release(instance: &mut ContainerInstance, reservation: &Reservation, group: &str) {
    adjust(&mut instance.remaining_resources, reservation, false);
    if let Some(n) = instance.task_groups.get_mut(group) {
        *n = n.saturating_sub(1);
        if *n == 0 {
            instance.task_groups.remove(group);
        }
    }
}

fn adjust(resources: &mut Vec<Resource>, reservation: &Reservation, take: bool) {
    let sign = if take { -1 } else { 1 };
    for (name, amount) in [("CPU", reservation.cpu), ("MEMORY", reservation.memory)] {
        if amount == 0 {
            continue;
        }
        // Registration keeps the three numeric fields equal; they move together.
        if let Some(r) = resources.iter_mut().find(|r| r.name == name) {
            let delta = amount.saturating_mul(sign);
            r.integer_value = r.integer_value.saturating_add(delta);
            r.long_value = r.long_value.saturating_add(delta);
            r.double_value += delta as f64;
        }
    }
    for (name, ports) in [("PORTS", &reservation.ports), ("PORTS_UDP", &reservation.ports_udp)] {
        if ports.is_empty() {
            continue;
        }
        let index = match resources.iter().position(|r| r.name == name) {
            Some(i) => i,
            None => {
                resources.push(Resource {
                    name: name.to_string(),
                    kind: "STRINGSET".to_string(),
                    integer_value: 0,
                    long_value: 0,
                    double_value: 0.0,
                    string_set_value: Vec::new(),
                });
                resources.len() - 1
            }
        };
        let set = &mut resources[index].string_set_value;
        for port in ports {
            let text = port.to_string();
            if take {
                if !set.contains(&text) {
                    set.push(text);
                }
            } else {
                set.retain(|p| *p != text);
            }
        }
    }
}
