//! The newest entries of the Raft log, kept decoded in memory.
//!
//! openraft reads entries back right after they are appended: the leader once per follower to
//! replicate them and once to apply them, a follower once to apply them. Without this cache each
//! of those reads is a RocksDB scan and a decode of every entry. The cache holds one contiguous
//! run of the newest entries, bounded by their encoded size; a read that it covers whole is
//! served from memory, any other from RocksDB.
//!
//! It changes in step with the log: an append extends it (or starts it afresh when the entries
//! do not follow on), a truncate cuts its tail and a purge its head. The log store updates it
//! after an append is durable and before a truncate or purge is written, so it never holds an
//! entry that the log on disk does not.

use std::collections::VecDeque;

use openraft::Entry;

use super::TypeConfig;

/// The encoded bytes of entries the cache keeps at most (their decoded form takes a few times as
/// much memory).
pub(super) const CACHE_BYTES: usize = 32 << 20;

pub(super) struct LogCache {
    /// The entries, each with its encoded size; `entries[i]` has index `first + i`.
    entries: VecDeque<(Entry<TypeConfig>, usize)>,
    first: u64,
    bytes: usize,
    limit: usize,
}

impl LogCache {
    pub(super) fn new(limit: usize) -> Self {
        LogCache {
            entries: VecDeque::new(),
            first: 0,
            bytes: 0,
            limit,
        }
    }

    /// The index after the last cached entry.
    fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Notes entries just written to the log, each with its encoded size.
    pub(super) fn appended(&mut self, entries: impl IntoIterator<Item = (Entry<TypeConfig>, usize)>) {
        for (entry, size) in entries {
            let index = entry.log_id.index;
            if self.entries.is_empty() || index < self.first || index > self.end() {
                self.clear();
                self.first = index;
            } else if index < self.end() {
                // Overwrites the cached tail (openraft truncates first; this keeps the cache
                // right even if it did not).
                self.truncate(index);
            }
            self.bytes += size;
            self.entries.push_back((entry, size));
        }
        while self.bytes > self.limit {
            let Some((_, size)) = self.entries.pop_front() else {
                break;
            };
            self.bytes -= size;
            self.first += 1;
        }
    }

    /// Drops the entries from `index` on.
    pub(super) fn truncate(&mut self, index: u64) {
        while self.end() > index.max(self.first) {
            let Some((_, size)) = self.entries.pop_back() else {
                break;
            };
            self.bytes -= size;
        }
    }

    /// Drops the entries up to and including `index`.
    pub(super) fn purge(&mut self, index: u64) {
        while self.first <= index {
            let Some((_, size)) = self.entries.pop_front() else {
                self.first = index + 1;
                break;
            };
            self.bytes -= size;
            self.first += 1;
        }
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// The entries `[start, end)` (`end` None: through the last), if the cache holds all of them.
    pub(super) fn get(&self, start: u64, end: Option<u64>) -> Option<Vec<Entry<TypeConfig>>> {
        if self.entries.is_empty() {
            return None;
        }
        let end = end.unwrap_or(self.end());
        if start < self.first || end > self.end() {
            return None;
        }
        if start >= end {
            return Some(Vec::new());
        }
        let from = (start - self.first) as usize;
        let to = (end - self.first) as usize;
        Some(self.entries.range(from..to).map(|(e, _)| e.clone()).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload, LogId};

    fn entry(term: u64, index: u64) -> (Entry<TypeConfig>, usize) {
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        };
        (entry, 10)
    }

    fn indexes(got: Option<Vec<Entry<TypeConfig>>>) -> Option<Vec<(u64, u64)>> {
        got.map(|v| v.iter().map(|e| (e.log_id.leader_id.term, e.log_id.index)).collect())
    }

    #[test]
    fn serves_only_ranges_it_holds_whole() {
        let mut cache = LogCache::new(1000);
        assert_eq!(indexes(cache.get(0, None)), None, "an empty cache serves nothing");
        cache.appended((5..10).map(|i| entry(1, i)));
        assert_eq!(indexes(cache.get(5, Some(8))), Some(vec![(1, 5), (1, 6), (1, 7)]));
        assert_eq!(indexes(cache.get(8, None)), Some(vec![(1, 8), (1, 9)]));
        assert_eq!(indexes(cache.get(9, Some(9))), Some(vec![]));
        assert_eq!(indexes(cache.get(4, Some(6))), None, "starts before the cache");
        assert_eq!(indexes(cache.get(8, Some(11))), None, "ends after it");
    }

    #[test]
    fn keeps_the_newest_entries_within_its_byte_limit() {
        let mut cache = LogCache::new(35);
        cache.appended((1..=5).map(|i| entry(1, i)));
        assert_eq!(cache.bytes, 30);
        assert_eq!(indexes(cache.get(3, None)), Some(vec![(1, 3), (1, 4), (1, 5)]));
        assert_eq!(indexes(cache.get(2, None)), None, "the oldest were evicted");
    }

    #[test]
    fn follows_truncates_purges_and_overwrites() {
        let mut cache = LogCache::new(1000);
        cache.appended((1..=6).map(|i| entry(1, i)));
        cache.truncate(5);
        assert_eq!(indexes(cache.get(5, Some(6))), None, "a truncated entry is gone");
        cache.appended([entry(2, 5)]);
        assert_eq!(indexes(cache.get(4, None)), Some(vec![(1, 4), (2, 5)]));
        cache.appended([entry(3, 3)]);
        assert_eq!(
            indexes(cache.get(1, None)),
            Some(vec![(1, 1), (1, 2), (3, 3)]),
            "an overwrite cuts the tail"
        );
        cache.purge(2);
        assert_eq!(indexes(cache.get(1, None)), None);
        assert_eq!(indexes(cache.get(3, None)), Some(vec![(3, 3)]));
        assert_eq!(cache.bytes, 10);
        cache.purge(10);
        assert_eq!(indexes(cache.get(3, None)), None);
        assert_eq!(cache.bytes, 0);
        cache.appended([entry(3, 11)]);
        assert_eq!(indexes(cache.get(11, None)), Some(vec![(3, 11)]));
    }

    #[test]
    fn entries_that_do_not_follow_on_start_it_afresh() {
        let mut cache = LogCache::new(1000);
        cache.appended((1..=3).map(|i| entry(1, i)));
        cache.appended([entry(1, 7)]);
        assert_eq!(indexes(cache.get(1, None)), None);
        assert_eq!(indexes(cache.get(7, None)), Some(vec![(1, 7)]));
        assert_eq!(cache.bytes, 10);
    }
}
