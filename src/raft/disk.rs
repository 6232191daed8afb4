//! The disk watermark for writes: below `health.min_free_disk_mib` free on the data directory's
//! file system, a node refuses the writes it receives and, as leader, every write, with a clear
//! error, rather than run RocksDB out of space (a failed log append stops Raft). Reads go on.
//! The free space is measured at most once a second.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::NodeError;

const RECHECK: Duration = Duration::from_secs(1);

pub struct DiskGuard {
    dir: PathBuf,
    floor_bytes: u64,
    /// The last measurement: when, and the free bytes (`u64::MAX` when it could not be made).
    last: Mutex<Option<(Instant, u64)>>,
}

impl DiskGuard {
    pub fn new(dir: PathBuf, floor_mib: u64) -> DiskGuard {
        DiskGuard {
            dir,
            floor_bytes: floor_mib.saturating_mul(1 << 20),
            last: Mutex::new(None),
        }
    }

    /// `Err` when the data directory's file system is below the watermark.
    pub fn check(&self) -> Result<(), NodeError> {
        if self.floor_bytes == 0 {
            return Ok(());
        }
        let free = {
            let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
            match *last {
                Some((at, free)) if at.elapsed() < RECHECK => free,
                _ => {
                    // A file system that cannot be measured is not held against the writes.
                    let free = crate::storage::free_bytes(&self.dir).unwrap_or(u64::MAX);
                    *last = Some((Instant::now(), free));
                    free
                }
            }
        };
        if free >= self.floor_bytes {
            return Ok(());
        }
        metrics::counter!("ecsd_writes_refused_low_disk_total").increment(1);
        Err(NodeError::Unavailable(format!(
            "writes are refused: the data directory {} has {} MiB free, below the watermark \
             health.min_free_disk_mib = {} MiB; free space on it (or lower the watermark)",
            self.dir.display(),
            free >> 20,
            self.floor_bytes >> 20
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_refused_below_the_watermark_only() {
        let dir = std::env::temp_dir();
        assert!(DiskGuard::new(dir.clone(), 0).check().is_ok());
        assert!(
            DiskGuard::new(dir.clone(), 1).check().is_ok(),
            "a temp dir has 1 MiB free"
        );
        let e = DiskGuard::new(dir, u64::MAX >> 20).check().unwrap_err().to_string();
        assert!(e.contains("below the watermark health.min_free_disk_mib"), "{e}");
    }
}
