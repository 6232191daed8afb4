//! One reading of a registered task definition (ECS JSON, as the server stores it and sends it
//! to the agents) and of a run's `overrides`: what each container is, and what a task reserves.
//!
//! The server reserves what [`reservation`] says; the agents run the [`containers`] it reads;
//! the simulated agents hold the same reservation, so the Jepsen scheduling checker compares
//! what ran with what the server placed. Validation is the API's work, at registration and at
//! RunTask: this module reads values that passed it, and reads leniently (a field of the wrong
//! type counts as absent).

use serde_json::Value;

/// One container of a task, the run's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub name: String,
    pub image: String,
    /// Whether the task stops when this container stops (omitted: true).
    pub essential: bool,
    pub entry_point: Option<Vec<String>>,
    /// The override's command, else the definition's.
    pub command: Option<Vec<String>>,
    /// The definition's environment, then the override's (a later pair wins where both name one).
    pub environment: Vec<(String, String)>,
    /// `stopTimeout`, in seconds.
    pub stop_timeout: Option<u64>,
    /// The override's value, else the definition's.
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub port_mappings: Vec<PortMapping>,
    /// Whether the container defines a health check.
    pub health_check: bool,
}

impl Container {
    /// `entryPoint` followed by `command`: what a process runtime executes.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = self.entry_point.clone().unwrap_or_default();
        argv.extend(self.command.iter().flatten().cloned());
        argv
    }
}

/// One `portMappings` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortMapping {
    pub container_port: Option<i64>,
    /// `None` or 0: a dynamic host port (bridge mode).
    pub host_port: Option<i64>,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// What a task reserves on its instance.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reservation {
    /// CPU units: the task-level `cpu` when the definition has one, else the containers' sum.
    pub cpu: i64,
    /// MiB: the task-level `memory`, else the sum over the containers of `memoryReservation`,
    /// else `memory`.
    pub memory: i64,
    /// Static TCP host ports, each once.
    pub ports: Vec<u16>,
    /// Static UDP host ports, each once.
    pub ports_udp: Vec<u16>,
}

/// An integer, or a string holding one (task-level sizes are stored as strings: `"512"`).
pub fn integer(value: Option<&Value>) -> Option<i64> {
    value.and_then(|v| v.as_i64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
}

fn strings(value: Option<&Value>) -> Option<Vec<String>> {
    value?
        .as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
}

fn env_pairs(value: Option<&Value>) -> impl Iterator<Item = (String, String)> + '_ {
    value.and_then(Value::as_array).into_iter().flatten().filter_map(|e| {
        Some((
            e.get("name")?.as_str()?.to_string(),
            e.get("value").and_then(Value::as_str).unwrap_or_default().to_string(),
        ))
    })
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// The definition's `containerDefinitions`.
pub fn definitions(definition: &Value) -> &[Value] {
    definition
        .get("containerDefinitions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// The `containerOverrides` of `overrides`.
pub fn container_overrides(overrides: &Value) -> &[Value] {
    overrides
        .get("containerOverrides")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice)
}

/// The containers of `definition` in order, with `overrides` (a task's `overrides`:
/// `{containerOverrides: [{name, command, environment, cpu, memory, memoryReservation}]}`)
/// applied; an override names its container, and the first one that names it applies.
pub fn containers(definition: &Value, overrides: &Value) -> Vec<Container> {
    let overrides = container_overrides(overrides);
    definitions(definition)
        .iter()
        .map(|d| {
            let name = text(d, "name").unwrap_or_default().to_string();
            let o = overrides.iter().find(|o| text(o, "name") == Some(&name));
            let given = |key: &str| o.and_then(|o| o.get(key)).filter(|v| !v.is_null());
            let pick = |key: &str| integer(given(key)).or_else(|| integer(d.get(key)));
            Container {
                image: text(d, "image").unwrap_or_default().to_string(),
                essential: d.get("essential").and_then(Value::as_bool).unwrap_or(true),
                entry_point: strings(d.get("entryPoint")),
                command: strings(given("command")).or_else(|| strings(d.get("command"))),
                environment: env_pairs(d.get("environment"))
                    .chain(env_pairs(given("environment")))
                    .collect(),
                stop_timeout: d.get("stopTimeout").and_then(Value::as_u64),
                cpu: pick("cpu"),
                memory: pick("memory"),
                memory_reservation: pick("memoryReservation"),
                port_mappings: d
                    .get("portMappings")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(|m| PortMapping {
                        container_port: integer(m.get("containerPort")),
                        host_port: integer(m.get("hostPort")),
                        protocol: text(m, "protocol").unwrap_or("tcp").to_string(),
                    })
                    .collect(),
                health_check: d.get("healthCheck").is_some_and(|h| !h.is_null()),
                name,
            }
        })
        .collect()
}

/// What a task of `definition` with `containers` (from [`containers`]) reserves.
pub fn reservation(definition: &Value, containers: &[Container]) -> Reservation {
    let host_network = text(definition, "networkMode") == Some("host");
    // An awsvpc task has its own network namespace: its ports are its own, not the instance's.
    let own_network = text(definition, "networkMode") == Some("awsvpc");
    let mut r = Reservation::default();
    // Saturating sums: a stored value too large to add up makes the task unplaceable, never a
    // wrapped (negative) reservation that would give capacity back to an instance.
    for c in containers {
        r.cpu = r.cpu.saturating_add(c.cpu.unwrap_or(0).max(0));
        r.memory = r
            .memory
            .saturating_add(c.memory_reservation.or(c.memory).unwrap_or(0).max(0));
        for m in c.port_mappings.iter().filter(|_| !own_network) {
            // With the host network a container's port is the host's.
            let host_port = match host_network {
                true => m.host_port.or(m.container_port),
                false => m.host_port,
            };
            let Some(port) = host_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p != 0) else {
                continue;
            };
            let set = if m.protocol == "udp" {
                &mut r.ports_udp
            } else {
                &mut r.ports
            };
            if !set.contains(&port) {
                set.push(port);
            }
        }
    }
    // Task-level sizes take precedence over the containers'.
    if let Some(cpu) = integer(definition.get("cpu")) {
        r.cpu = cpu.max(0);
    }
    if let Some(memory) = integer(definition.get("memory")) {
        r.memory = memory.max(0);
    }
    r
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn definition() -> Value {
        json!({
            "networkMode": "bridge",
            "containerDefinitions": [
                {"name": "web", "image": "nginx", "cpu": 256, "memory": 512, "memoryReservation": 128,
                 "entryPoint": ["/bin/sh", "-c"], "command": ["serve"], "stopTimeout": 5,
                 "environment": [{"name": "A", "value": "1"}],
                 "portMappings": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 53, "hostPort": 53, "protocol": "udp"},
                                  {"containerPort": 81}]},
                {"name": "side", "image": "busybox", "memory": 64, "essential": false,
                 "healthCheck": {"command": ["true"]}}
            ]
        })
    }

    #[test]
    fn containers_read_the_definition_with_the_overrides_applied() {
        let overrides = json!({"containerOverrides": [
            {"name": "web", "command": ["other"], "memoryReservation": 200, "environment": [{"name": "B", "value": "2"}]},
            {"name": "web", "cpu": 1}
        ]});
        let c = containers(&definition(), &overrides);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].argv(), ["/bin/sh", "-c", "other"]);
        assert_eq!(
            (c[0].cpu, c[0].memory, c[0].memory_reservation),
            (Some(256), Some(512), Some(200))
        );
        assert_eq!(c[0].environment, [("A".into(), "1".into()), ("B".into(), "2".into())]);
        assert_eq!(c[0].stop_timeout, Some(5));
        assert!(c[0].essential && !c[0].health_check);
        assert!(!c[1].essential && c[1].health_check);
        assert_eq!(c[1].port_mappings, []);
    }

    #[test]
    fn a_task_reserves_memory_reservation_else_memory_and_its_static_ports() {
        let d = definition();
        let r = reservation(&d, &containers(&d, &json!({})));
        assert_eq!(
            r,
            Reservation {
                cpu: 256,
                memory: 128 + 64,
                ports: vec![8080],
                ports_udp: vec![53]
            }
        );
    }

    #[test]
    fn huge_or_negative_values_never_wrap_into_a_negative_reservation() {
        let d = json!({"containerDefinitions": [
            {"name": "a", "cpu": i64::MAX, "memory": i64::MAX},
            {"name": "b", "cpu": i64::MAX, "memory": -5, "memoryReservation": i64::MAX}
        ]});
        let r = reservation(&d, &containers(&d, &json!({})));
        assert_eq!((r.cpu, r.memory), (i64::MAX, i64::MAX));
        let d = json!({"cpu": "-1", "containerDefinitions": [{"name": "a", "cpu": -3, "memory": -3}]});
        let r = reservation(&d, &containers(&d, &json!({})));
        assert_eq!((r.cpu, r.memory), (0, 0));
    }

    #[test]
    fn task_level_sizes_win_and_the_host_network_reserves_container_ports() {
        let mut d = definition();
        d["cpu"] = json!("1024");
        d["memory"] = json!("2048");
        d["networkMode"] = json!("host");
        let r = reservation(&d, &containers(&d, &json!({})));
        assert_eq!((r.cpu, r.memory), (1024, 2048));
        assert_eq!(r.ports, [8080, 81]);
    }
}
