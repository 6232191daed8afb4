//! Cluster queries: read-only views over the state, used by the API after a read barrier.

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
