//! What a node keeps beside its replica, driven by apply but never stored: the rows it mirrors
//! in memory ([`Mirrors`]), and which watchers an applied write wakes ([`Signals`]). The Raft
//! adapter calls these for every applied batch without knowing which keys they concern.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use serde::Deserialize;

use super::{container_instances, decode, scan_rows, tasks, KvError, KvRead};
use crate::model::ContainerInstance;

/// The change-feed key that wakes the service scheduler: apply "writes" it (a node-local signal,
/// never stored) whenever it writes a task, a service or a container instance.
pub const SERVICE_WAKE: &[u8] = b"!services";

/// Which watchers the data writes of an applied batch wake: an instance's change counter wakes
/// that instance's assignment streams (the key itself), and a task, service or container
/// instance row wakes the service scheduler ([`SERVICE_WAKE`]).
#[derive(Debug, Default)]
pub struct Signals {
    keys: Vec<Vec<u8>>,
    services: bool,
}

impl Signals {
    /// Notes an applied write of data key `key`.
    pub fn note(&mut self, key: &[u8]) {
        if key.starts_with(tasks::WORK_PREFIX) {
            self.keys.push(key.to_vec());
        }
        self.services |=
            key.starts_with(b"task/") || key.starts_with(b"svc/") || key.starts_with(container_instances::PREFIX);
    }

    /// The change-feed keys to signal.
    pub fn into_keys(mut self) -> Vec<Vec<u8>> {
        if self.services {
            self.keys.push(SERVICE_WAKE.to_vec());
        }
        self.keys
    }
}

/// Every mirror a node keeps: the container instances, for placement.
pub struct Mirrors {
    pub instances: Mirror<ContainerInstance>,
}

impl Default for Mirrors {
    fn default() -> Self {
        Mirrors {
            instances: Mirror::new(container_instances::PREFIX),
        }
    }
}

impl Mirrors {
    /// Whether a data write of `key` concerns a mirror.
    pub fn covers(&self, key: &[u8]) -> bool {
        self.instances.covers(key)
    }

    /// Takes in a batch's data writes (those [`Mirrors::covers`]), after they are in the store.
    pub fn note<'a>(&self, writes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) {
        self.instances.note(writes);
    }

    /// Forgets every mirrored row (the state was replaced); the next use loads again.
    pub fn reset(&self) {
        self.instances.reset();
    }
}

/// The rows under one key prefix of the data space, held in memory and kept current by apply,
/// each decoded on first use and again only when its bytes change.
///
/// Planning a RunTask reads every instance of the cluster. From RocksDB that is an iteration
/// over a memtable holding a version of an instance row per task placed on it, and a decode of
/// each row; here it is a walk of a map, and between two requests only the few instances that
/// took tasks are decoded again.
///
/// It is loaded from the store on first use. Apply calls [`Mirror::note`] with each batch's
/// writes after the batch is in the store and before the batch counts as applied, so a read
/// that waited for an applied index sees everything up to it; a snapshot install calls
/// [`Mirror::reset`] after swapping the state, and the next use loads it again. The load and
/// the notes take the same lock, and a note always follows its write to the store, so a load
/// that missed a write is followed by that write's note.
pub struct Mirror<T> {
    prefix: &'static [u8],
    rows: std::sync::Mutex<Option<MirroredRows<T>>>,
}

/// Key → (stored bytes, the record they decode to, once decoded).
type MirroredRows<T> = BTreeMap<Vec<u8>, (Vec<u8>, Option<Arc<T>>)>;

impl<T: for<'de> Deserialize<'de>> Mirror<T> {
    pub fn new(prefix: &'static [u8]) -> Self {
        Mirror {
            prefix,
            rows: Default::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<MirroredRows<T>>> {
        self.rows.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `key` is one of the mirrored rows.
    pub fn covers(&self, key: &[u8]) -> bool {
        key.starts_with(self.prefix)
    }

    /// Takes in writes of the data space that are now in the store (`None`: a delete); keys
    /// outside the prefix are ignored. Nothing to do until the first use has loaded the rows.
    pub fn note<'a>(&self, writes: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>) {
        let mut guard = self.lock();
        let Some(rows) = guard.as_mut() else { return };
        for (key, value) in writes.into_iter().filter(|(k, _)| self.covers(k)) {
            match value {
                Some(v) => {
                    if rows.get(key).is_none_or(|(bytes, _)| bytes.as_slice() != v) {
                        rows.insert(key.to_vec(), (v.to_vec(), None));
                    }
                }
                None => {
                    rows.remove(key);
                }
            }
        }
    }

    /// Forgets everything (the state was replaced); the next use loads it again.
    pub fn reset(&self) {
        *self.lock() = None;
    }

    /// Every record in `[from, to)`, decoded, in key order: what [`scan_values`] over `kv`
    /// returns, for a range that starts within the prefix (rows past it are not held).
    pub fn scan(&self, kv: &dyn KvRead, from: &[u8], to: &[u8]) -> Result<Vec<Arc<T>>, KvError> {
        debug_assert!(from.starts_with(self.prefix), "a range of the mirrored rows");
        let mut guard = self.lock();
        if guard.is_none() {
            let mut end = self.prefix.to_vec();
            *end.last_mut().expect("a non-empty prefix") += 1;
            let mut rows = BTreeMap::new();
            scan_rows(kv, self.prefix, &end, |key, value| {
                rows.insert(key, (value, None));
                Ok(true)
            })?;
            *guard = Some(rows);
        }
        let rows = guard.as_mut().expect("loaded above");
        let mut out = Vec::new();
        for (_, (bytes, record)) in rows.range_mut::<[u8], _>((Bound::Included(from), Bound::Excluded(to))) {
            let record = match record {
                Some(r) => r.clone(),
                None => record.insert(Arc::new(decode::<T>(bytes)?)).clone(),
            };
            out.push(record);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::encode;
    use crate::state::testing::MemKv;
    use crate::state::Space;

    #[test]
    fn the_mirror_loads_once_follows_notes_and_decodes_only_changed_rows() {
        let mut kv = MemKv::default();
        let put = |kv: &mut MemKv, key: &str, value: u64| {
            kv.0.insert((Space::Data, key.as_bytes().to_vec()), encode(&value));
        };
        for (key, value) in [("a/x/1", 1), ("a/x/2", 2), ("a/x/3", 3), ("a/y/1", 7), ("b/1", 9)] {
            put(&mut kv, key, value);
        }
        let mirror = Mirror::<u64>::new(b"a/");
        let values = |rows: &[Arc<u64>]| rows.iter().map(|v| **v).collect::<Vec<_>>();
        let first = mirror.scan(&kv, b"a/x/", b"a/x0").unwrap();
        assert_eq!(values(&first), [1, 2, 3]);
        // After the load, the store is not read again: only notes change what it holds.
        put(&mut kv, "a/x/2", 20);
        kv.0.remove(&(Space::Data, b"a/x/3".to_vec()));
        assert_eq!(values(&mirror.scan(&kv, b"a/x/", b"a/x0").unwrap()), [1, 2, 3]);
        let twenty = encode(&20u64);
        mirror.note([
            (b"a/x/2".as_slice(), Some(twenty.as_slice())),
            (b"a/x/3".as_slice(), None),
            (b"b/2".as_slice(), Some(twenty.as_slice())),
        ]);
        let second = mirror.scan(&kv, b"a/x/", b"a/x0").unwrap();
        assert_eq!(values(&second), [1, 20]);
        assert!(
            Arc::ptr_eq(&first[0], &second[0]),
            "an unchanged row is not decoded again"
        );
        assert_eq!(values(&mirror.scan(&kv, b"a/", b"a0").unwrap()), [1, 20, 7]);
        // A reset (a snapshot was installed) loads the store again.
        put(&mut kv, "a/y/2", 8);
        mirror.reset();
        assert_eq!(values(&mirror.scan(&kv, b"a/y/", b"a/y0").unwrap()), [7, 8]);
        // Notes before the first load are not needed: the load reads the store.
        let fresh = Mirror::<u64>::new(b"a/");
        fresh.note([(b"a/x/1".as_slice(), Some(twenty.as_slice()))]);
        assert_eq!(values(&fresh.scan(&kv, b"a/x/", b"a/x0").unwrap()), [1, 20]);
    }
}
