//! ECS nouns as the state machine stores them, and their identifiers (ARNs, names).
//!
//! Pure data: no I/O, no clock, no randomness. Wire (JSON) shapes live in `api::wire`; these
//! records are the persisted form and carry their own serde derive for that purpose only.

use serde::{Deserialize, Serialize};

/// The AWS partition, account and region that every ARN of this deployment carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArnScope {
    pub region: String,
    pub account_id: String,
}

impl ArnScope {
    fn prefix(&self) -> String {
        format!("arn:aws:ecs:{}:{}:", self.region, self.account_id)
    }

    /// `arn:aws:ecs:REGION:ACCOUNT:cluster/NAME`.
    pub fn cluster_arn(&self, name: &str) -> String {
        format!("{}cluster/{}", self.prefix(), name)
    }

    /// Resolves "short name or full ARN" to a cluster name.
    ///
    /// Returns `None` for an ARN of another account, region or resource type: such an ARN names a
    /// cluster that does not exist here.
    pub fn cluster_name<'a>(&self, id: &'a str) -> Option<&'a str> {
        if !id.starts_with("arn:") {
            return Some(id);
        }
        let rest = id.strip_prefix(&self.prefix())?;
        let name = rest.strip_prefix("cluster/")?;
        (!name.is_empty() && !name.contains('/')).then_some(name)
    }
}

/// A resource tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// Whether a cluster can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClusterStatus {
    Active,
    Inactive,
}

impl ClusterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterStatus::Active => "ACTIVE",
            ClusterStatus::Inactive => "INACTIVE",
        }
    }
}

/// A cluster, as stored under `cluster/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub arn: String,
    pub status: ClusterStatus,
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// ACTIVE and DRAINING container instances.
    #[serde(default)]
    pub registered_container_instances: u64,
    #[serde(default)]
    pub running_tasks: u64,
    #[serde(default)]
    pub pending_tasks: u64,
    #[serde(default)]
    pub active_services: u64,
    #[serde(default)]
    pub draining_services: u64,
    /// When the cluster was (re)created, in epoch milliseconds stamped by the proposer.
    #[serde(default)]
    pub created_at_ms: u64,
}

/// Cluster names: 1 to 255 letters, digits, hyphens and underscores.
pub fn valid_cluster_name(name: &str) -> bool {
    (1..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> ArnScope {
        ArnScope {
            region: "us-east-1".into(),
            account_id: "012345678910".into(),
        }
    }

    #[test]
    fn cluster_ids_resolve_from_name_or_arn() {
        let s = scope();
        assert_eq!(s.cluster_arn("web"), "arn:aws:ecs:us-east-1:012345678910:cluster/web");
        assert_eq!(s.cluster_name("web"), Some("web"));
        assert_eq!(
            s.cluster_name("arn:aws:ecs:us-east-1:012345678910:cluster/web"),
            Some("web")
        );
        assert_eq!(s.cluster_name("arn:aws:ecs:eu-west-1:012345678910:cluster/web"), None);
        assert_eq!(s.cluster_name("arn:aws:ecs:us-east-1:999999999999:cluster/web"), None);
        assert_eq!(s.cluster_name("arn:aws:ecs:us-east-1:012345678910:service/web"), None);
    }

    #[test]
    fn cluster_name_rules() {
        assert!(valid_cluster_name("My-cluster_1"));
        assert!(valid_cluster_name(&"a".repeat(255)));
        assert!(!valid_cluster_name(&"a".repeat(256)));
        assert!(!valid_cluster_name(""));
        assert!(!valid_cluster_name("has space"));
        assert!(!valid_cluster_name("slash/no"));
    }
}
