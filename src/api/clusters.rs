//! CreateCluster, DescribeClusters, ListClusters and DeleteCluster.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wire::{self, Failure, KeyValuePair, TagWire};
use super::{to_value, ApiError, Ctx};
use crate::model::{valid_cluster_name, Cluster};
use crate::state::{self, Command, Outcome};

/// Most clusters in one DescribeClusters call.
const MAX_DESCRIBE: usize = 100;
const LIST_MAX: usize = 100;
const NAME_RULE: &str = "must be 1 to 255 letters, numbers, hyphens and underscores";

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateClusterRequest {
    #[serde(default)]
    cluster_name: Option<String>,
    #[serde(default)]
    tags: Option<Vec<TagWire>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeClustersRequest {
    #[serde(default)]
    clusters: Option<Vec<String>>,
    #[serde(default)]
    include: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListClustersRequest {
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteClusterRequest {
    #[serde(default)]
    cluster: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClusterWire {
    cluster_arn: String,
    cluster_name: String,
    status: &'static str,
    registered_container_instances_count: u64,
    running_tasks_count: u64,
    pending_tasks_count: u64,
    active_services_count: u64,
    statistics: Vec<KeyValuePair>,
    tags: Vec<TagWire>,
}

#[derive(Default, Clone, Copy)]
struct Include {
    statistics: bool,
    tags: bool,
}

fn cluster_to_wire(c: &Cluster, include: Include) -> ClusterWire {
    let statistics = if include.statistics {
        [
            ("runningEC2TasksCount", c.running_tasks),
            ("runningFargateTasksCount", 0),
            ("pendingEC2TasksCount", c.pending_tasks),
            ("pendingFargateTasksCount", 0),
            ("activeEC2ServiceCount", c.active_services),
            ("activeFargateServiceCount", 0),
            ("drainingEC2ServiceCount", c.draining_services),
            ("drainingFargateServiceCount", 0),
        ]
        .into_iter()
        .map(|(name, value)| KeyValuePair {
            name: name.to_string(),
            value: value.to_string(),
        })
        .collect()
    } else {
        Vec::new()
    };
    ClusterWire {
        cluster_arn: c.arn.clone(),
        cluster_name: c.name.clone(),
        status: c.status.as_str(),
        registered_container_instances_count: c.registered_container_instances,
        running_tasks_count: c.running_tasks,
        pending_tasks_count: c.pending_tasks,
        active_services_count: c.active_services,
        statistics,
        tags: if include.tags {
            wire::tags_to_wire(&c.tags)
        } else {
            Vec::new()
        },
    }
}

fn cluster_outcome(outcome: Outcome, include: Include) -> Result<Value, ApiError> {
    match outcome {
        Outcome::Cluster(c) => to_value(&serde_json::json!({ "cluster": cluster_to_wire(&c, include) })),
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server("unexpected outcome for a cluster command".into())),
    }
}

pub async fn create_cluster(ctx: &Ctx<'_>, req: CreateClusterRequest) -> Result<Value, ApiError> {
    let name = req.cluster_name.unwrap_or_else(|| "default".to_string());
    if !valid_cluster_name(&name) {
        return Err(ApiError::InvalidParameter(format!("clusterName: {NAME_RULE}")));
    }
    let tags = wire::tags_from_wire("tags", req.tags)?;
    let arn = ctx.state.scope.cluster_arn(&name);
    let outcome = ctx.propose(Command::CreateCluster { name, arn, tags }).await?;
    cluster_outcome(
        outcome,
        Include {
            statistics: false,
            tags: true,
        },
    )
}

pub async fn delete_cluster(ctx: &Ctx<'_>, req: DeleteClusterRequest) -> Result<Value, ApiError> {
    let Some(id) = req.cluster else {
        return Err(ApiError::InvalidParameter("cluster: is required".into()));
    };
    let Some(name) = ctx.state.scope.cluster_name(&id) else {
        return Err(ApiError::cluster_not_found());
    };
    if !valid_cluster_name(name) {
        return Err(ApiError::cluster_not_found());
    }
    let outcome = ctx.propose(Command::DeleteCluster { name: name.to_string() }).await?;
    cluster_outcome(
        outcome,
        Include {
            statistics: false,
            tags: true,
        },
    )
}

pub async fn describe_clusters(ctx: &Ctx<'_>, req: DescribeClustersRequest) -> Result<Value, ApiError> {
    let ids = req
        .clusters
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| vec!["default".to_string()]);
    if ids.len() > MAX_DESCRIBE {
        return Err(ApiError::InvalidParameter(format!(
            "clusters: at most {MAX_DESCRIBE} clusters can be described at once, got {}",
            ids.len()
        )));
    }
    let mut include = Include::default();
    for (i, value) in req.include.unwrap_or_default().iter().enumerate() {
        match value.as_str() {
            "STATISTICS" => include.statistics = true,
            "TAGS" => include.tags = true,
            // Newer values that modern clients may send; this API has nothing to add for them.
            "ATTACHMENTS" | "CONFIGURATIONS" | "SETTINGS" => {}
            other => {
                return Err(ApiError::InvalidParameter(format!(
                    "include[{i}]: {other} is not one of STATISTICS, TAGS"
                )))
            }
        }
    }
    let view = ctx.read_view().await?;
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for id in ids {
        let name = ctx.state.scope.cluster_name(&id).filter(|n| valid_cluster_name(n));
        let found = match name {
            Some(name) => state::get_cluster(view, name)?,
            None => None,
        };
        match found {
            Some(c) => {
                if seen.insert(c.name.clone()) {
                    clusters.push(cluster_to_wire(&c, include));
                }
            }
            None => {
                let arn = match name {
                    Some(n) if !id.starts_with("arn:") => ctx.state.scope.cluster_arn(n),
                    _ => id.clone(),
                };
                failures.push(Failure {
                    arn,
                    reason: "MISSING".into(),
                });
            }
        }
    }
    to_value(&serde_json::json!({ "clusters": clusters, "failures": failures }))
}

pub async fn list_clusters(ctx: &Ctx<'_>, req: ListClustersRequest) -> Result<Value, ApiError> {
    let limit = wire::max_results(req.max_results, LIST_MAX, LIST_MAX)?;
    let after = match req.next_token.as_deref() {
        Some(token) if !token.is_empty() => Some(wire::decode_token("clusters", "", token)?),
        _ => None,
    };
    let view = ctx.read_view().await?;
    let (page, more) = state::list_active_clusters(view, after.as_deref(), limit)?;
    let arns: Vec<&str> = page.iter().map(|c| c.arn.as_str()).collect();
    let mut body = serde_json::json!({ "clusterArns": arns });
    if more {
        if let Some(last) = page.last() {
            body["nextToken"] = Value::String(wire::encode_token("clusters", "", &last.name));
        }
    }
    Ok(body)
}
