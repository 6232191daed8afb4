//! PutAttributes, DeleteAttributes and ListAttributes (target type `container-instance`).

use serde::Deserialize;
use serde_json::{json, Value};

use super::container_instances::{attributes_from_wire, AttributeWire};
use super::wire;
use super::{cluster_name, invalid, ApiError, Ctx};
use crate::model::{Attribute, InstanceStatus};
use crate::state::{self, container_instances as cis, Command, Outcome};

const MAX_PER_CALL: usize = 10;
const LIST_MAX: usize = 100;
const TARGET_TYPE: &str = "container-instance";

/// An attribute and the ID of the instance it goes on.
type InstanceAttribute = (String, Attribute);

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetedAttribute {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    target_type: Option<String>,
    #[serde(default)]
    target_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttributesRequest {
    #[serde(default)]
    cluster: Option<String>,
    #[serde(default)]
    attributes: Option<Vec<TargetedAttribute>>,
    #[serde(default)]
    target_type: Option<String>,
    #[serde(default)]
    attribute_name: Option<String>,
    #[serde(default)]
    attribute_value: Option<String>,
    #[serde(default)]
    max_results: Option<i64>,
    #[serde(default)]
    next_token: Option<String>,
}

fn check_target_type(field: &str, value: Option<&str>) -> Result<(), ApiError> {
    match value {
        None | Some(TARGET_TYPE) => Ok(()),
        Some(other) => Err(invalid(format!("{field}: {other} is not {TARGET_TYPE}"))),
    }
}

/// Validates the request's attributes and resolves their targets to instance IDs.
fn targeted(
    ctx: &Ctx<'_>,
    cluster: &str,
    attributes: Option<Vec<TargetedAttribute>>,
    with_values: bool,
) -> Result<(Vec<InstanceAttribute>, Vec<Value>), ApiError> {
    let attributes = attributes.unwrap_or_default();
    if attributes.is_empty() || attributes.len() > MAX_PER_CALL {
        return Err(invalid(format!("attributes: give 1 to {MAX_PER_CALL} attributes")));
    }
    let mut items = Vec::new();
    let mut echo = Vec::new();
    for (i, a) in attributes.into_iter().enumerate() {
        let field = format!("attributes[{i}]");
        check_target_type(&format!("{field}.targetType"), a.target_type.as_deref())?;
        let target = a
            .target_id
            .filter(|t| !t.is_empty())
            .ok_or_else(|| invalid(format!("{field}.targetId: is required")))?;
        if !target.starts_with("arn:") && a.target_type.is_none() {
            return Err(invalid(format!(
                "{field}.targetType: is required when targetId is not an ARN"
            )));
        }
        let id = ctx.state.scope.container_instance_id(cluster, &target).ok_or_else(|| {
            ApiError::TargetNotFound(format!("{field}.targetId: {target} is not in cluster {cluster}"))
        })?;
        let value = if with_values { a.value.clone() } else { None };
        let attribute = attributes_from_wire(&field, vec![AttributeWire::new(a.name.clone(), value)])?.remove(0);
        // What capacity an instance offers is its agent's to say, when it registers.
        if attribute.name == crate::launch::CAPACITY_ATTRIBUTE {
            return Err(invalid(format!(
                "{field}.name: {} is set by the instance's agent when it registers (ecs-agent --capacity)",
                crate::launch::CAPACITY_ATTRIBUTE
            )));
        }
        let mut shown = json!({"name": attribute.name, "targetType": TARGET_TYPE, "targetId": target});
        if let Some(v) = &a.value {
            shown["value"] = json!(v);
        }
        echo.push(shown);
        items.push((id.to_string(), attribute));
    }
    Ok((items, echo))
}

fn done(outcome: Outcome, echo: Vec<Value>) -> Result<Value, ApiError> {
    match outcome {
        Outcome::Done => Ok(json!({ "attributes": echo })),
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server("unexpected outcome for an attributes command".into())),
    }
}

pub async fn put_attributes(ctx: &Ctx<'_>, req: AttributesRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let (items, echo) = targeted(ctx, &cluster, req.attributes, true)?;
    done(ctx.propose(Command::PutAttributes { cluster, items }).await?, echo)
}

pub async fn delete_attributes(ctx: &Ctx<'_>, req: AttributesRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    let (items, echo) = targeted(ctx, &cluster, req.attributes, false)?;
    done(ctx.propose(Command::DeleteAttributes { cluster, items }).await?, echo)
}

pub async fn list_attributes(ctx: &Ctx<'_>, req: AttributesRequest) -> Result<Value, ApiError> {
    let cluster = cluster_name(ctx, req.cluster.as_deref())?;
    match req.target_type.as_deref() {
        None => return Err(invalid("targetType: is required")),
        other => check_target_type("targetType", other)?,
    }
    if req.attribute_value.is_some() && req.attribute_name.is_none() {
        return Err(invalid("attributeValue: can be given only together with attributeName"));
    }
    let limit = wire::max_results(req.max_results, LIST_MAX, LIST_MAX)?;
    let params = format!(
        "{:?}",
        (&cluster, &req.target_type, &req.attribute_name, &req.attribute_value)
    );
    let after = match req.next_token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => Some(wire::decode_token("attributes", &params, token)?),
        None => None,
    };
    let view = ctx.read_view().await?;
    if state::get_cluster(view, &cluster)?.is_none() {
        return Err(ApiError::cluster_not_found());
    }
    // (position, wire) in (instance ID, attribute name) order.
    let mut rows: Vec<(String, Value)> = Vec::new();
    for instance in cis::all(view, &cluster)? {
        if instance.status == InstanceStatus::Inactive {
            continue;
        }
        let mut attributes = instance.attributes.clone();
        attributes.sort_by(|a, b| a.name.cmp(&b.name));
        for a in attributes {
            if req.attribute_name.as_ref().is_some_and(|n| *n != a.name) {
                continue;
            }
            if req.attribute_value.is_some() && req.attribute_value != a.value {
                continue;
            }
            let mut row = json!({"name": a.name, "targetType": TARGET_TYPE, "targetId": instance.arn});
            if let Some(v) = &a.value {
                row["value"] = json!(v);
            }
            rows.push((format!("{}\n{}", instance.id, a.name), row));
        }
    }
    rows.retain(|(position, _)| after.as_ref().is_none_or(|a| position > a));
    let page: Vec<&(String, Value)> = rows.iter().take(limit).collect();
    let mut out = json!({ "attributes": page.iter().map(|(_, row)| row).collect::<Vec<_>>() });
    if rows.len() > page.len() {
        if let Some((position, _)) = page.last() {
            out["nextToken"] = json!(wire::encode_token("attributes", &params, position));
        }
    }
    Ok(out)
}
