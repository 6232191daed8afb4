//! A write overlay over a read-only key-value view: what `apply` reads and writes through.
//!
//! Reads see earlier writes of the same transaction. The writes come out in key order, so the
//! caller can turn them into one atomic storage batch.

use std::collections::BTreeMap;
use std::ops::Bound;

use serde::{Deserialize, Serialize};

/// The key spaces of the state machine, mapped to storage column families by the Raft adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Space {
    /// State-machine bookkeeping that is part of the replicated state (the applied-time watermark).
    Meta,
    /// The request-dedupe table.
    Dedupe,
    /// ECS resources.
    Data,
}

/// A key and its value, as scans return them.
pub type Row = (Vec<u8>, Vec<u8>);

/// A storage read failed. Fatal: the state machine cannot continue.
#[derive(Debug, Clone, thiserror::Error)]
#[error("state storage: {0}")]
pub struct KvError(pub String);

/// Read-only access to the state.
pub trait KvRead {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    /// Up to `limit` pairs with `from <= key < to`, in key order.
    fn scan(&self, space: Space, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<Row>, KvError>;
    /// Up to `limit` pairs with `from <= key < to`, in descending key order. The replica reads
    /// only those; this default (for in-memory and overlay reads) reads the whole range.
    fn scan_rev(&self, space: Space, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<Row>, KvError> {
        let mut rows = self.scan(space, from, to, usize::MAX)?;
        rows.reverse();
        rows.truncate(limit);
        Ok(rows)
    }
}

type Writes = BTreeMap<(Space, Vec<u8>), Option<Vec<u8>>>;

/// Buffered writes over a base view.
pub struct Txn<'a> {
    base: &'a dyn KvRead,
    writes: Writes,
    /// Bytes of keys and values put or deleted so far (rewrites of a key count again).
    written: usize,
}

impl<'a> Txn<'a> {
    pub fn new(base: &'a dyn KvRead) -> Self {
        Txn {
            base,
            writes: BTreeMap::new(),
            written: 0,
        }
    }

    pub fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.written += key.len() + value.len();
        self.writes.insert((space, key), Some(value));
    }

    pub fn delete(&mut self, space: Space, key: Vec<u8>) {
        self.written += key.len();
        self.writes.insert((space, key), None);
    }

    /// About how much the buffered writes hold: an upper bound, as rewrites count again.
    pub fn written_bytes(&self) -> usize {
        self.written
    }

    /// The buffered writes, in key order; `None` is a delete.
    pub fn into_writes(self) -> Writes {
        self.writes
    }
}

impl KvRead for Txn<'_> {
    fn get(&self, space: Space, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        match self.writes.get(&(space, key.to_vec())) {
            Some(value) => Ok(value.clone()),
            None => self.base.get(space, key),
        }
    }

    fn scan(&self, space: Space, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<Row>, KvError> {
        let overlay: Vec<(&Vec<u8>, &Option<Vec<u8>>)> = self
            .writes
            .range((
                Bound::Included((space, from.to_vec())),
                Bound::Excluded((space, to.to_vec())),
            ))
            .map(|((_, k), v)| (k, v))
            .collect();
        // Deletes in the overlay can hide base rows, so ask the base for enough extra rows.
        let base = self.base.scan(space, from, to, limit.saturating_add(overlay.len()))?;
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> = base.into_iter().collect();
        let base_complete_upto = if merged.len() >= limit.saturating_add(overlay.len()) {
            merged.keys().next_back().cloned()
        } else {
            None
        };
        for (key, value) in overlay {
            if let Some(bound) = &base_complete_upto {
                if key > bound {
                    // Beyond what the base returned; including it could skip base rows before it.
                    continue;
                }
            }
            match value {
                Some(v) => merged.insert(key.clone(), v.clone()),
                None => merged.remove(key),
            };
        }
        Ok(merged.into_iter().take(limit).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Base(BTreeMap<Vec<u8>, Vec<u8>>);

    impl KvRead for Base {
        fn get(&self, _: Space, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
            Ok(self.0.get(key).cloned())
        }
        fn scan(&self, _: Space, from: &[u8], to: &[u8], limit: usize) -> Result<Vec<Row>, KvError> {
            Ok(self
                .0
                .range(from.to_vec()..to.to_vec())
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        }
    }

    #[test]
    fn overlay_reads_and_scans_merge_in_order() {
        let base = Base(
            [("a", "1"), ("c", "3"), ("e", "5")]
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        );
        let mut txn = Txn::new(&base);
        txn.put(Space::Data, b"b".to_vec(), b"2".to_vec());
        txn.delete(Space::Data, b"c".to_vec());
        assert_eq!(txn.get(Space::Data, b"c").unwrap(), None);
        assert_eq!(txn.get(Space::Data, b"b").unwrap(), Some(b"2".to_vec()));
        let keys = |rows: Vec<(Vec<u8>, Vec<u8>)>| {
            rows.into_iter()
                .map(|(k, _)| String::from_utf8(k).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys(txn.scan(Space::Data, b"a", b"z", 10).unwrap()),
            vec!["a", "b", "e"]
        );
        assert_eq!(keys(txn.scan(Space::Data, b"a", b"z", 2).unwrap()), vec!["a", "b"]);
        txn.put(Space::Data, b"f".to_vec(), b"6".to_vec());
        assert_eq!(keys(txn.scan(Space::Data, b"a", b"z", 1).unwrap()), vec!["a"]);
        assert_eq!(keys(txn.scan(Space::Data, b"d", b"z", 5).unwrap()), vec!["e", "f"]);
    }
}
