//! Tags on every taggable resource: one way to change them and to read them.

use serde::{Deserialize, Serialize};

use super::*;
use crate::model::*;

/// A resource that carries tags.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TagTarget {
    Cluster { name: String },
    TaskDefinition { family: String, revision: u32 },
    ContainerInstance { cluster: String, id: String },
    Task { cluster: String, id: String },
    Service { cluster: String, name: String },
}

/// Most tags one resource may carry.
pub const MAX_TAGS: usize = 50;

pub(super) fn update_tags(
    txn: &mut Txn<'_>,
    target: &TagTarget,
    change: impl FnOnce(&mut Vec<Tag>),
) -> Result<Outcome, KvError> {
    match target {
        TagTarget::Cluster { name } => {
            let Some(mut cluster) = get_cluster(txn, name)?.filter(|c| c.status == ClusterStatus::Active) else {
                return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
            };
            if !retag(&mut cluster.tags, change) {
                return Ok(Outcome::Rejected(Rejection::TooManyTags));
            }
            txn.put(Space::Data, cluster_key(name), encode(&cluster));
            Ok(Outcome::Tags(cluster.tags))
        }
        TagTarget::TaskDefinition { family, revision } => task_definitions::update_tags(txn, family, *revision, change),
        TagTarget::ContainerInstance { cluster, id } => container_instances::update_tags(txn, cluster, id, change),
        TagTarget::Task { cluster, id } => tasks::update_tags(txn, cluster, id, change),
        TagTarget::Service { cluster, name } => services::update_tags(txn, cluster, name, change),
    }
}

/// Applies `change` to `tags`; false (and the caller rejects the command) when the result
/// would carry more than [`MAX_TAGS`].
pub(super) fn retag(tags: &mut Vec<Tag>, change: impl FnOnce(&mut Vec<Tag>)) -> bool {
    change(tags);
    tags.len() <= MAX_TAGS
}

/// The tags of `target`, or `None` if it does not exist.
pub fn resource_tags(kv: &dyn KvRead, target: &TagTarget) -> Result<Option<Vec<Tag>>, KvError> {
    Ok(match target {
        TagTarget::Cluster { name } => get_cluster(kv, name)?
            .filter(|c| c.status == ClusterStatus::Active)
            .map(|c| c.tags),
        TagTarget::TaskDefinition { family, revision } => task_definitions::get(kv, family, *revision)?.map(|d| d.tags),
        TagTarget::ContainerInstance { cluster, id } => container_instances::get(kv, cluster, id)?
            .filter(|i| i.status != InstanceStatus::Inactive)
            .map(|i| i.tags),
        TagTarget::Task { cluster, id } => tasks::get(kv, cluster, id)?.map(|t| t.tags),
        TagTarget::Service { cluster, name } => services::get(kv, cluster, name)?
            .filter(|s| s.status != ServiceStatus::Inactive)
            .map(|s| s.tags),
    })
}
