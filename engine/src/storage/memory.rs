//! [`MemoryStorage`]: the log and checkpoint in memory, with fault injection.
//!
//! A clone shares the same data, so a test keeps one handle to inject
//! faults and inspect the log while the engine owns another, and can "crash"
//! the engine (drop it) and recover from what was durably written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::storage::{Checkpoint, LogStats, Storage, StorageError};

#[derive(Debug, Default)]
struct Inner {
    log: BTreeMap<u64, Vec<u8>>,
    checkpoint: Option<Checkpoint>,
    /// Appends that may still succeed; `None` = no limit.
    appends_left: Option<usize>,
    fail_all: bool,
    appended_records: u64,
}

/// In-memory [`Storage`] for tests; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct MemoryStorage {
    inner: Arc<Mutex<Inner>>,
}

fn injected(operation: &str) -> StorageError {
    StorageError::Io(format!("injected failure of {operation}"))
}

impl MemoryStorage {
    pub fn new() -> Self {
        MemoryStorage::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-changed
        // in a way that matters to a test, so a poisoned lock is still used.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The next `n` calls of `append` succeed; every later one fails and
    /// keeps nothing.
    pub fn fail_appends_after(&self, n: usize) {
        self.lock().appends_left = Some(n);
    }

    /// While `on`, every operation fails (a dead disk).
    pub fn fail_all(&self, on: bool) {
        self.lock().fail_all = on;
    }

    /// Cuts the newest record to half its length, as a write torn by a crash.
    pub fn tear_last_record(&self) {
        if let Some(mut entry) = self.lock().log.last_entry() {
            let half = entry.get().len() / 2;
            entry.get_mut().truncate(half);
        }
    }

    /// Flips one bit in the middle of the record with this sequence number.
    pub fn corrupt_record(&self, sequence: u64) {
        if let Some(bytes) = self.lock().log.get_mut(&sequence) {
            let middle = bytes.len() / 2;
            if let Some(byte) = bytes.get_mut(middle) {
                *byte ^= 0x04;
            }
        }
    }

    /// Flips one bit in the middle of the saved checkpoint's state.
    pub fn corrupt_checkpoint(&self) {
        if let Some(checkpoint) = self.lock().checkpoint.as_mut() {
            let middle = checkpoint.state.len() / 2;
            if let Some(byte) = checkpoint.state.get_mut(middle) {
                *byte ^= 0x04;
            }
        }
    }

    /// Stores a record exactly as given, bypassing faults: for tests that
    /// plant bad records.
    pub fn put_raw(&self, sequence: u64, bytes: Vec<u8>) {
        self.lock().log.insert(sequence, bytes);
    }

    /// Records durably appended since creation (trimmed ones included).
    pub fn appended_records(&self) -> u64 {
        self.lock().appended_records
    }

    /// Sequence numbers currently in the log, in order.
    pub fn log_sequences(&self) -> Vec<u64> {
        self.lock().log.keys().copied().collect()
    }
}

impl Storage for MemoryStorage {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if inner.fail_all {
            return Err(injected("append"));
        }
        match inner.appends_left {
            Some(0) => return Err(injected("append")),
            Some(left) => inner.appends_left = Some(left - 1),
            None => {}
        }
        for (sequence, bytes) in records {
            inner.log.insert(*sequence, bytes.clone());
        }
        inner.appended_records += records.len() as u64;
        Ok(())
    }

    fn read_log(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let inner = self.lock();
        if inner.fail_all {
            return Err(injected("read_log"));
        }
        let Some(first) = after.checked_add(1) else {
            return Ok(Vec::new());
        };
        Ok(inner
            .log
            .range(first..)
            .take(limit)
            .map(|(sequence, bytes)| (*sequence, bytes.clone()))
            .collect())
    }

    fn save_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if inner.fail_all {
            return Err(injected("save_checkpoint"));
        }
        if let Some(current) = &inner.checkpoint {
            if checkpoint.sequence <= current.sequence {
                return Err(StorageError::CheckpointOutOfOrder {
                    sequence: checkpoint.sequence,
                    current: current.sequence,
                });
            }
        }
        inner.checkpoint = Some(checkpoint.clone());
        Ok(())
    }

    fn load_checkpoint(&self) -> Result<Option<Checkpoint>, StorageError> {
        let inner = self.lock();
        if inner.fail_all {
            return Err(injected("load_checkpoint"));
        }
        Ok(inner.checkpoint.clone())
    }

    fn trim_log(&mut self, sequence: u64) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if inner.fail_all {
            return Err(injected("trim_log"));
        }
        inner.log = match sequence.checked_add(1) {
            Some(first_kept) => inner.log.split_off(&first_kept),
            None => BTreeMap::new(),
        };
        Ok(())
    }

    fn truncate_log(&mut self, sequence: u64) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if inner.fail_all {
            return Err(injected("truncate_log"));
        }
        inner.log.split_off(&sequence);
        Ok(())
    }

    fn log_stats(&self) -> LogStats {
        let inner = self.lock();
        LogStats {
            records: inner.log.len() as u64,
            bytes: inner.log.values().map(|bytes| bytes.len() as u64).sum(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn failed_append_keeps_nothing() {
        let mut storage = MemoryStorage::new();
        let handle = storage.clone();
        handle.fail_appends_after(1);
        storage.append(&[(1, vec![1]), (2, vec![2])]).unwrap();
        assert!(storage.append(&[(3, vec![3]), (4, vec![4])]).is_err());
        assert_eq!(handle.log_sequences(), vec![1, 2]);
        assert_eq!(handle.appended_records(), 2);
        assert_eq!(
            storage.log_stats(),
            LogStats {
                records: 2,
                bytes: 2
            }
        );
    }

    #[test]
    fn trim_and_truncate_bound_the_log() {
        let mut storage = MemoryStorage::new();
        let records: Vec<(u64, Vec<u8>)> = (1..=10).map(|s| (s, vec![0; 3])).collect();
        storage.append(&records).unwrap();
        storage.trim_log(3).unwrap();
        storage.truncate_log(9).unwrap();
        assert_eq!(storage.log_sequences(), (4..=8).collect::<Vec<_>>());
        assert_eq!(storage.read_log(5, 2).unwrap()[0].0, 6);
        assert_eq!(storage.read_log(u64::MAX, 2).unwrap(), Vec::new());
        storage.trim_log(u64::MAX).unwrap();
        assert_eq!(storage.log_stats(), LogStats::default());
    }
}
