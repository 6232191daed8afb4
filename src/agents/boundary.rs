//! The one boundary between the agent protocol (`ecsd_protocol::messages`, wire types) and the
//! replicated state (`state`, log types): agents' reports and update progress become commands
//! here, and tasks become what an agent is sent. Either side can change its types; only this
//! file changes with it.

use std::collections::BTreeMap;

use ecsd_protocol::messages::{self as wire, AssignedTask, TaskNetwork, UpdateProgress};

use crate::model::{NetworkBinding, Task, TaskStatus};
use crate::state::tasks::{ContainerChange, StateChange};
use crate::state::{task_definitions, Command, KvError, KvRead};

fn status(s: wire::TaskStatus) -> TaskStatus {
    match s {
        wire::TaskStatus::Pending => TaskStatus::Pending,
        wire::TaskStatus::Running => TaskStatus::Running,
        wire::TaskStatus::Stopped => TaskStatus::Stopped,
    }
}

fn binding(b: wire::NetworkBinding) -> NetworkBinding {
    NetworkBinding {
        bind_ip: b.bind_ip,
        container_port: b.container_port,
        host_port: b.host_port,
        protocol: b.protocol,
    }
}

/// An agent's report of one task, as the command that applies it (SubmitTaskStateChange's).
pub fn task_state_change(c: wire::StateChange) -> Command {
    Command::TaskStateChange(Box::new(StateChange {
        cluster: c.cluster,
        task_id: c.task_id,
        status: c.status.map(status),
        reason: c.reason,
        containers: c
            .containers
            .into_iter()
            .map(|c| ContainerChange {
                name: c.name,
                status: c.status.map(status),
                exit_code: c.exit_code,
                reason: c.reason,
                network_bindings: c.network_bindings.map(|b| b.into_iter().map(binding).collect()),
                runtime_id: c.runtime_id,
            })
            .collect(),
        pull_started_at_ms: c.pull_started_at_ms,
        pull_stopped_at_ms: c.pull_stopped_at_ms,
        execution_stopped_at_ms: c.execution_stopped_at_ms,
    }))
}

/// An agent's progress through an update, as the command that records it.
pub fn update_status(p: UpdateProgress) -> Command {
    Command::SetAgentUpdateStatus {
        cluster: p.instance.cluster,
        id: p.instance.instance_id,
        status: p.status,
        version_info: p.version_info,
    }
}

/// What the agent is sent of `task`, its definition read through `definitions`.
pub fn assigned_task(
    view: &dyn KvRead,
    definitions: &mut BTreeMap<(String, u32), serde_json::Value>,
    task: &Task,
) -> Result<AssignedTask, KvError> {
    let revision = crate::model::arn::task_definition_revision(&task.task_definition_arn).unwrap_or(0);
    let key = (task.family.clone(), revision);
    let definition = match definitions.get(&key) {
        Some(d) => d.clone(),
        None => {
            let d = task_definitions::get(view, &task.family, revision)?
                .map(|d| d.body)
                .unwrap_or_default();
            definitions.insert(key, d.clone());
            d
        }
    };
    Ok(AssignedTask {
        id: task.id.clone(),
        arn: task.arn.clone(),
        desired_status: task.desired_status.as_str().to_string(),
        last_status: task.last_status.as_str().to_string(),
        definition,
        overrides: task.overrides.clone(),
        network: task.eni.as_ref().and_then(|e| {
            let address: std::net::Ipv4Addr = e.private_ipv4.parse().ok()?;
            Some(TaskNetwork {
                address: address.to_string(),
                gateway: std::net::Ipv4Addr::from(u32::from(address).checked_sub(1)?).to_string(),
                prefix: 30,
            })
        }),
    })
}
