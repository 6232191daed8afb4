//! CreateCluster, DescribeClusters, ListClusters, DeleteCluster, UpdateCluster,
//! UpdateClusterSettings and PutClusterCapacityProviders.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::wire::{self, Failure, KeyValuePair, TagWire};
use super::{invalid, to_value, ApiError, Ctx};
use crate::model::{
    valid_cluster_name, Cluster, ClusterOptions, ClusterSetting, StrategyItem, BUILT_IN_CAPACITY_PROVIDERS,
};
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
    #[serde(default)]
    settings: Option<Vec<SettingWire>>,
    #[serde(default)]
    configuration: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    service_connect_defaults: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    capacity_providers: Option<Vec<String>>,
    #[serde(default)]
    default_capacity_provider_strategy: Option<Vec<StrategyItemWire>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingWire {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

/// A capacity provider strategy item as clients send it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StrategyItemWire {
    #[serde(default)]
    capacity_provider: Option<String>,
    #[serde(default)]
    weight: Option<i64>,
    #[serde(default)]
    base: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateClusterRequest {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    settings: Option<Vec<SettingWire>>,
    #[serde(default)]
    configuration: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    service_connect_defaults: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    capacity_providers: Option<Vec<String>>,
    #[serde(default)]
    default_capacity_provider_strategy: Option<Vec<StrategyItemWire>>,
}

/// Cluster settings: `containerInsights` only, `enhanced`, `enabled` or `disabled` (as sent).
fn settings_from_wire(settings: Vec<SettingWire>) -> Result<Vec<ClusterSetting>, ApiError> {
    let mut out: Vec<ClusterSetting> = Vec::new();
    for (i, s) in settings.into_iter().enumerate() {
        let name = s.name.unwrap_or_default();
        if name != "containerInsights" {
            return Err(invalid(format!("settings[{i}].name: {name} is not containerInsights")));
        }
        let value = s.value.unwrap_or_default();
        if !["enhanced", "enabled", "disabled"]
            .iter()
            .any(|v| v.eq_ignore_ascii_case(&value))
        {
            return Err(invalid(format!(
                "settings[{i}].value: Invalid setting 'value' {value}; use enhanced, enabled or disabled"
            )));
        }
        out.retain(|o| o.name != name);
        out.push(ClusterSetting { name, value });
    }
    Ok(out)
}

/// The capacity providers a cluster names: only the built-in ones exist, at most 10.
fn providers_from_wire(providers: Vec<String>) -> Result<Vec<String>, ApiError> {
    if providers.len() > 10 {
        return Err(invalid(
            "The maximum number of capacity providers per cluster has been exceeded.",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for (i, p) in providers.into_iter().enumerate() {
        if !BUILT_IN_CAPACITY_PROVIDERS.contains(&p.as_str()) {
            return Err(invalid(format!(
                "capacityProviders[{i}]: The specified capacity provider {p} does not exist. Only FARGATE and FARGATE_SPOT exist here (there is no EC2 Auto Scaling)."
            )));
        }
        if !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// A capacity provider strategy: 1 to 20 distinct providers, weights 0 to 1000, bases 0 to
/// 100000 with at most one base, and some weight above zero.
pub(super) fn strategy_from_wire(field: &str, items: Vec<StrategyItemWire>) -> Result<Vec<StrategyItem>, ApiError> {
    if items.len() > 20 {
        return Err(invalid(format!("{field}: at most 20 capacity providers can be given")));
    }
    let mut out: Vec<StrategyItem> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let provider = item
            .capacity_provider
            .filter(|p| !p.is_empty())
            .ok_or_else(|| invalid(format!("{field}[{i}].capacityProvider: is required")))?;
        let weight = item.weight.unwrap_or(0);
        let base = item.base.unwrap_or(0);
        if !(0..=1000).contains(&weight) {
            return Err(invalid(format!("{field}[{i}].weight: must be between 0 and 1000")));
        }
        if !(0..=100_000).contains(&base) {
            return Err(invalid(format!("{field}[{i}].base: must be between 0 and 100000")));
        }
        if out.iter().any(|o| o.capacity_provider == provider) {
            return Err(invalid(format!(
                "{field}[{i}].capacityProvider: {provider} is given twice"
            )));
        }
        out.push(StrategyItem {
            capacity_provider: provider,
            weight,
            base,
        });
    }
    if out.iter().filter(|o| o.base > 0).count() > 1 {
        return Err(invalid(format!(
            "{field}: only one capacity provider in a strategy can have a base"
        )));
    }
    if !out.is_empty() && out.iter().all(|o| o.weight == 0) {
        return Err(invalid(format!(
            "{field}: There are no capacity providers with a weight value greater than zero defined in the capacity provider strategy. Specify a weight greater than zero for at least one capacity provider and try again."
        )));
    }
    Ok(out)
}

pub(super) fn strategy_to_wire(items: &[StrategyItem]) -> Value {
    json!(items
        .iter()
        .map(|i| json!({ "capacityProvider": i.capacity_provider, "weight": i.weight, "base": i.base }))
        .collect::<Vec<_>>())
}

/// A default strategy names only providers of the cluster.
fn check_strategy_providers(strategy: &[StrategyItem], providers: &[String]) -> Result<(), ApiError> {
    if strategy.iter().any(|i| !providers.contains(&i.capacity_provider)) {
        return Err(crate::state::Rejection::CapacityProviderNotAssociated.into());
    }
    Ok(())
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
    capacity_providers: Vec<String>,
    default_capacity_provider_strategy: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    settings: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    configuration: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_connect_defaults: Option<Value>,
}

#[derive(Default, Clone, Copy)]
struct Include {
    statistics: bool,
    tags: bool,
    settings: bool,
    configurations: bool,
}

impl Include {
    /// What a write's answer shows: everything but the statistics.
    const WRITE: Include = Include {
        statistics: false,
        tags: true,
        settings: true,
        configurations: true,
    };
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
        capacity_providers: c.options.capacity_providers.clone(),
        default_capacity_provider_strategy: strategy_to_wire(&c.options.default_capacity_provider_strategy),
        settings: include.settings.then(|| {
            let mut settings = c.options.settings.clone();
            if settings.is_empty() {
                settings.push(ClusterSetting {
                    name: "containerInsights".into(),
                    value: "disabled".into(),
                });
            }
            json!(settings
                .iter()
                .map(|s| json!({"name": s.name, "value": s.value}))
                .collect::<Vec<_>>())
        }),
        configuration: c.options.configuration.clone().filter(|_| include.configurations),
        service_connect_defaults: c.options.service_connect_defaults.clone(),
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
    let capacity_providers = providers_from_wire(req.capacity_providers.unwrap_or_default())?;
    let default_capacity_provider_strategy = strategy_from_wire(
        "defaultCapacityProviderStrategy",
        req.default_capacity_provider_strategy.unwrap_or_default(),
    )?;
    check_strategy_providers(&default_capacity_provider_strategy, &capacity_providers)?;
    let options = ClusterOptions {
        settings: settings_from_wire(req.settings.unwrap_or_default())?,
        configuration: req.configuration.map(Value::Object),
        service_connect_defaults: req.service_connect_defaults.map(Value::Object),
        capacity_providers,
        default_capacity_provider_strategy,
    };
    if !options.is_empty() {
        ctx.require_modern("A cluster's settings, configuration or capacity providers")?;
    }
    let arn = ctx.state.scope.cluster_arn(&name);
    let command = Command::CreateCluster {
        name,
        arn,
        tags,
        options,
    };
    cluster_outcome(ctx.propose(command).await?, Include::WRITE)
}

/// The cluster an update names (required).
fn named_cluster(ctx: &Ctx<'_>, cluster: Option<&str>) -> Result<String, ApiError> {
    let id = cluster
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid("cluster: is required"))?;
    match ctx.state.scope.cluster_name(id) {
        Some(name) if valid_cluster_name(name) => Ok(name.to_string()),
        _ => Err(ApiError::cluster_not_found()),
    }
}

pub async fn update_cluster(ctx: &Ctx<'_>, req: UpdateClusterRequest) -> Result<Value, ApiError> {
    let name = named_cluster(ctx, req.cluster.as_deref())?;
    ctx.require_modern("UpdateCluster")?;
    let command = Command::UpdateCluster {
        name,
        settings: req.settings.map(settings_from_wire).transpose()?,
        configuration: req.configuration.map(Value::Object),
        service_connect_defaults: req.service_connect_defaults.map(Value::Object),
    };
    cluster_outcome(ctx.propose(command).await?, Include::WRITE)
}

pub async fn update_cluster_settings(ctx: &Ctx<'_>, req: UpdateClusterRequest) -> Result<Value, ApiError> {
    let name = named_cluster(ctx, req.cluster.as_deref())?;
    ctx.require_modern("UpdateClusterSettings")?;
    let settings = req.settings.ok_or_else(|| invalid("settings: is required"))?;
    let command = Command::UpdateCluster {
        name,
        settings: Some(settings_from_wire(settings)?),
        configuration: None,
        service_connect_defaults: None,
    };
    cluster_outcome(ctx.propose(command).await?, Include::WRITE)
}

pub async fn put_cluster_capacity_providers(ctx: &Ctx<'_>, req: UpdateClusterRequest) -> Result<Value, ApiError> {
    let name = named_cluster(ctx, req.cluster.as_deref())?;
    let providers = req
        .capacity_providers
        .ok_or_else(|| invalid("capacityProviders: is required"))?;
    let providers = providers_from_wire(providers)?;
    let strategy = req
        .default_capacity_provider_strategy
        .ok_or_else(|| invalid("defaultCapacityProviderStrategy: is required"))?;
    let strategy = strategy_from_wire("defaultCapacityProviderStrategy", strategy)?;
    check_strategy_providers(&strategy, &providers)?;
    ctx.require_modern("PutClusterCapacityProviders")?;
    let command = Command::PutClusterCapacityProviders {
        name,
        providers,
        strategy,
    };
    cluster_outcome(ctx.propose(command).await?, Include::WRITE)
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
    cluster_outcome(outcome, Include::WRITE)
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
            "SETTINGS" => include.settings = true,
            "CONFIGURATIONS" => include.configurations = true,
            // Capacity providers backed by Auto Scaling groups have attachments; none exist here.
            "ATTACHMENTS" => {}
            other => {
                return Err(ApiError::InvalidParameter(format!(
                    "include[{i}]: {other} is not one of ATTACHMENTS, CONFIGURATIONS, SETTINGS, STATISTICS, TAGS"
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

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CapacityProviderRequest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    capacity_providers: Option<Vec<String>>,
}

fn capacity_provider_to_wire(ctx: &Ctx<'_>, name: &str) -> Value {
    json!({
        "capacityProviderArn": format!("{}capacity-provider/{name}", ctx.state.scope.arn_prefix()),
        "name": name,
        "status": "ACTIVE",
        "tags": [],
    })
}

/// CreateCapacityProvider: an Auto Scaling group provider needs EC2 Auto Scaling, which is not
/// here; FARGATE and FARGATE_SPOT are built in.
pub async fn create_capacity_provider(_ctx: &Ctx<'_>, req: CapacityProviderRequest) -> Result<Value, ApiError> {
    let name = req.name.unwrap_or_default();
    let reserved = ["aws", "ecs", "fargate"]
        .iter()
        .any(|p| name.to_ascii_lowercase().starts_with(p));
    if BUILT_IN_CAPACITY_PROVIDERS.contains(&name.as_str()) || reserved {
        return Err(invalid(format!(
            "name: {name} is reserved: FARGATE and FARGATE_SPOT are built in, and names may not begin with aws, ecs or fargate"
        )));
    }
    Err(invalid(
        "autoScalingGroupProvider: capacity providers backed by an EC2 Auto Scaling group are not supported here (there is no EC2 Auto Scaling); use the built-in FARGATE and FARGATE_SPOT providers with agents that offer Fargate capacity",
    ))
}

/// DescribeCapacityProviders: the two built-in providers.
pub async fn describe_capacity_providers(ctx: &Ctx<'_>, req: CapacityProviderRequest) -> Result<Value, ApiError> {
    let names: Vec<String> = match req.capacity_providers.filter(|p| !p.is_empty()) {
        Some(p) => p,
        None => BUILT_IN_CAPACITY_PROVIDERS.iter().map(|s| s.to_string()).collect(),
    };
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for n in names {
        let short = n.rsplit('/').next().unwrap_or(&n).to_string();
        if BUILT_IN_CAPACITY_PROVIDERS.contains(&short.as_str()) {
            found.push(capacity_provider_to_wire(ctx, &short));
        } else {
            failures.push(json!({ "arn": n, "reason": "MISSING" }));
        }
    }
    Ok(json!({ "capacityProviders": found, "failures": failures }))
}
