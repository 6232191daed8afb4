//! Cluster queries (read-only views over the state, used by the API after a read barrier), and
//! the updates of a cluster's options.

use super::*;
use crate::model::*;

/// The cluster named `name`, ACTIVE or INACTIVE.
pub fn get_cluster(kv: &dyn KvRead, name: &str) -> Result<Option<Cluster>, KvError> {
    kv.get(Space::Data, &cluster_key(name))?
        .map(|bytes| decode(&bytes))
        .transpose()
}

/// Up to `limit` ACTIVE clusters whose names sort after `after`, and whether more follow.
pub fn list_active_clusters(
    kv: &dyn KvRead,
    after: Option<&str>,
    limit: usize,
) -> Result<(Vec<Cluster>, bool), KvError> {
    let mut from = match after {
        // The smallest key strictly greater than cluster/<after>.
        Some(name) => {
            let mut k = cluster_key(name);
            k.push(0);
            k
        }
        None => b"cluster/".to_vec(),
    };
    let end = b"cluster0".to_vec(); // '0' follows '/' in ASCII
    let mut found = Vec::new();
    loop {
        let chunk = kv.scan(Space::Data, &from, &end, 256)?;
        let exhausted = chunk.len() < 256;
        for (key, value) in chunk {
            let cluster: Cluster = decode(&value)?;
            if cluster.status == ClusterStatus::Active {
                if found.len() == limit {
                    return Ok((found, true));
                }
                found.push(cluster);
            }
            from = key;
            from.push(0);
        }
        if exhausted {
            return Ok((found, false));
        }
    }
}

/// UpdateCluster and UpdateClusterSettings: settings are replaced by name, the rest as a whole.
pub(super) fn update(
    txn: &mut Txn<'_>,
    name: &str,
    settings: &Option<Vec<ClusterSetting>>,
    configuration: &Option<serde_json::Value>,
    service_connect_defaults: &Option<serde_json::Value>,
) -> Result<Outcome, KvError> {
    let Some(mut cluster) = get_cluster(txn, name)?.filter(|c| c.status == ClusterStatus::Active) else {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    };
    for setting in settings.iter().flatten() {
        let options = &mut cluster.options.settings;
        match options.iter_mut().find(|s| s.name == setting.name) {
            Some(existing) => existing.value = setting.value.clone(),
            None => options.push(setting.clone()),
        }
    }
    if let Some(c) = configuration {
        cluster.options.configuration = Some(c.clone());
    }
    if let Some(d) = service_connect_defaults {
        cluster.options.service_connect_defaults = Some(d.clone());
    }
    txn.put(Space::Data, cluster_key(name), encode(&cluster));
    Ok(Outcome::Cluster(cluster))
}

/// PutClusterCapacityProviders: both lists are replaced; a provider an ACTIVE service's strategy
/// names stays.
pub(super) fn put_capacity_providers(
    txn: &mut Txn<'_>,
    name: &str,
    providers: &[String],
    strategy: &[StrategyItem],
) -> Result<Outcome, KvError> {
    let Some(mut cluster) = get_cluster(txn, name)?.filter(|c| c.status == ClusterStatus::Active) else {
        return Ok(Outcome::Rejected(Rejection::ClusterNotFound));
    };
    // One read of the services, and only when a provider is removed.
    let removed: Vec<&String> = cluster
        .options
        .capacity_providers
        .iter()
        .filter(|p| !providers.contains(p))
        .collect();
    if !removed.is_empty() {
        for s in super::services::all(txn, name)?
            .iter()
            .filter(|s| s.status != ServiceStatus::Inactive)
        {
            let mut used = s.capacity_provider_strategy.iter().map(|i| &i.capacity_provider);
            if let Some(p) = used.find(|p| removed.contains(p)) {
                return Ok(Outcome::Rejected(Rejection::CapacityProviderInUse(p.clone())));
            }
        }
    }
    cluster.options.capacity_providers = providers.to_vec();
    cluster.options.default_capacity_provider_strategy = strategy.to_vec();
    txn.put(Space::Data, cluster_key(name), encode(&cluster));
    Ok(Outcome::Cluster(cluster))
}
