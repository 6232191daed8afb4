//! TagResource, UntagResource and ListTagsForResource.

use serde::Deserialize;
use serde_json::{json, Value};

use super::wire::{self, TagWire};
use super::{invalid, ApiError, Ctx};
use crate::model::valid_ecs_name;
use crate::state::{self, Command, Outcome, TagTarget};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagRequest {
    #[serde(default)]
    resource_arn: Option<String>,
    #[serde(default)]
    tags: Option<Vec<TagWire>>,
    #[serde(default)]
    tag_keys: Option<Vec<String>>,
}

fn not_found() -> ApiError {
    ApiError::ResourceNotFound("The specified resource could not be found.".into())
}

/// Resolves a resource ARN to what it tags.
fn target(ctx: &Ctx<'_>, arn: Option<&str>) -> Result<TagTarget, ApiError> {
    let arn = arn
        .filter(|a| !a.is_empty())
        .ok_or_else(|| invalid("resourceArn: is required"))?;
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || parts[2] != "ecs" {
        return Err(invalid(format!("resourceArn: {arn} is not an Amazon ECS ARN")));
    }
    if parts[3] != ctx.state.scope.region || parts[4] != ctx.state.scope.account_id {
        return Err(not_found());
    }
    let resource = parts[5];
    let (kind, rest) = resource
        .split_once('/')
        .ok_or_else(|| invalid(format!("resourceArn: {arn} names no resource")))?;
    match kind {
        "cluster" if valid_ecs_name(rest) => Ok(TagTarget::Cluster { name: rest.to_string() }),
        "task-definition" => match ctx.state.scope.task_definition_ref(rest) {
            Some((family, Some(revision))) => Ok(TagTarget::TaskDefinition {
                family: family.to_string(),
                revision,
            }),
            _ => Err(invalid(format!(
                "resourceArn: {arn} must name a task definition revision (family:revision)"
            ))),
        },
        "service" | "task" | "container-instance" if !rest.contains('/') => {
            Err(invalid("Long arn format must be used for tagging operations"))
        }
        "container-instance" | "task" | "service" => match rest.split_once('/') {
            Some((cluster, id)) if valid_ecs_name(cluster) && !id.is_empty() && !id.contains('/') => {
                let (cluster, id) = (cluster.to_string(), id.to_string());
                Ok(match kind {
                    "task" => TagTarget::Task { cluster, id },
                    "service" => TagTarget::Service { cluster, name: id },
                    _ => TagTarget::ContainerInstance { cluster, id },
                })
            }
            _ => Err(invalid(format!("resourceArn: {arn} is not a {kind} ARN"))),
        },
        _ => Err(invalid(format!("resourceArn: {arn} is not a taggable resource"))),
    }
}

fn tags_outcome(outcome: Outcome) -> Result<(), ApiError> {
    match outcome {
        Outcome::Tags(_) => Ok(()),
        Outcome::Rejected(r) => Err(r.into()),
        _ => Err(ApiError::Server("unexpected outcome for a tagging command".into())),
    }
}

pub async fn tag_resource(ctx: &Ctx<'_>, req: TagRequest) -> Result<Value, ApiError> {
    let target = target(ctx, req.resource_arn.as_deref())?;
    if req.tags.is_none() {
        return Err(invalid("tags: is required"));
    }
    let tags = wire::tags_from_wire("tags", req.tags)?;
    tags_outcome(ctx.propose(Command::TagResource { target, tags }).await?)?;
    Ok(json!({}))
}

pub async fn untag_resource(ctx: &Ctx<'_>, req: TagRequest) -> Result<Value, ApiError> {
    let target = target(ctx, req.resource_arn.as_deref())?;
    let keys = req.tag_keys.ok_or_else(|| invalid("tagKeys: is required"))?;
    if keys.len() > wire::MAX_TAGS {
        return Err(invalid(format!("tagKeys: at most {} keys are allowed", wire::MAX_TAGS)));
    }
    for (i, key) in keys.iter().enumerate() {
        if !(1..=128).contains(&key.chars().count()) {
            return Err(invalid(format!("tagKeys[{i}]: must be 1 to 128 characters")));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(invalid(format!("tagKeys[{i}]: the aws: prefix is reserved")));
        }
    }
    tags_outcome(ctx.propose(Command::UntagResource { target, keys }).await?)?;
    Ok(json!({}))
}

pub async fn list_tags_for_resource(ctx: &Ctx<'_>, req: TagRequest) -> Result<Value, ApiError> {
    let target = target(ctx, req.resource_arn.as_deref())?;
    let view = ctx.read_view().await?;
    // The reference lists no ResourceNotFoundException for this action: a missing cluster is
    // ClusterNotFoundException, any other missing resource an invalid parameter.
    let tags = state::resource_tags(view, &target)?.ok_or_else(|| match target {
        TagTarget::Cluster { .. } => ApiError::cluster_not_found(),
        _ => invalid("resourceArn: The specified resource could not be found."),
    })?;
    Ok(json!({ "tags": wire::tags_to_wire(&tags) }))
}
