//! The durable log, checkpoints and crash recovery.
//!
//! The sequencer encodes each batch as a [`LogRecord`] and hands the bytes to
//! a [`Storage`], which makes them durable in one synced write before any
//! command of the batch is acknowledged. Now and then a checkpoint marker goes
//! through the log; the ledger state at that point is encoded with
//! [`encode_state`] and saved with [`Storage::save_checkpoint`], after which
//! the log up to the marker may be trimmed. [`recover`] rebuilds the ledger:
//! newest checkpoint, then every log record after it. docs/persistence.md
//! has the byte layouts and what happens in each crash window.
//!
//! # Layout
//! - [`record`]: one log record and its versioned, checksummed encoding.
//! - [`snapshot`]: ledger state to bytes and back, for checkpoints.
//! - [`rocks`]: [`RocksStorage`], the RocksDB implementation.
//! - [`memory`]: [`MemoryStorage`], in memory with fault injection, for tests.
//! - [`recovery`]: [`recover`], checkpoint plus log replay.
//! - [`segments`]: [`HistoryStore`], movement history in append-only segment files.

pub mod memory;
pub mod record;
pub mod recovery;
pub mod rocks;
pub mod segments;
pub mod snapshot;

pub use memory::MemoryStorage;
pub use record::{LogEntry, LogRecord, RecordError};
pub use recovery::{
    recover, recover_with_copy, recover_with_history, Followed, LogFollower, RecoveryCopy,
    RecoveryReport,
};
pub use rocks::RocksStorage;
pub use segments::{HistoryConfig, HistoryOpenReport, HistoryStats, HistoryStore, HEADS_FILE};
pub use snapshot::{decode_state, decode_state_and_config, encode_state};

/// Why a storage operation failed. Every variant is fatal for the writer:
/// the engine stops accepting writes (see docs/persistence.md).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The disk or RocksDB refused an operation (disk full, I/O error ...).
    #[error("storage I/O failed: {0}")]
    Io(String),
    /// A log record on disk cannot be used; recovery stops here.
    #[error("log record {sequence} is corrupt: {reason}")]
    Corrupt { sequence: u64, reason: String },
    /// The checkpoint on disk cannot be used.
    #[error("the checkpoint at sequence {sequence} is corrupt: {reason}")]
    CheckpointCorrupt { sequence: u64, reason: String },
    /// A checkpoint may only replace an older one.
    #[error("a checkpoint at sequence {sequence} cannot replace the one at sequence {current}")]
    CheckpointOutOfOrder { sequence: u64, current: u64 },
    /// Encoded ledger state that does not decode (see [`decode_state`]).
    #[error("the checkpointed ledger state is corrupt: {0}")]
    StateCorrupt(String),
    /// The data directory was written by a newer payrail.
    #[error(
        "the data directory has schema version {found}, but this build only knows \
         versions up to {supported}: run a newer payrail"
    )]
    SchemaTooNew { found: u32, supported: u32 },
    /// The data directory is not one payrail can use.
    #[error("the data directory is not a payrail data directory: {0}")]
    NotPayrailData(String),
    /// Settings that decide commands differ from the ones the checkpoint
    /// was taken with, and the log after it holds records written with
    /// those: a replay with other values could decide them differently.
    #[error(
        "the checkpoint at sequence {sequence} was taken with {changes}; the log after it \
         (from record {first_record}) was written with those values and a replay must \
         decide its commands as they were decided: start with the checkpoint's values, \
         and change them only after a stop that leaves nothing to replay \
         (docs/operations.md, \"Checkpoints and stopping\")"
    )]
    ConfigChanged {
        sequence: u64,
        first_record: u64,
        changes: String,
    },
}

/// A checkpoint: the encoded ledger state (see [`encode_state`]) as of the
/// checkpoint marker with this sequence number.
#[derive(Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Sequence number of the checkpoint marker in the log. The state holds
    /// every record before it; recovery replays the records after it.
    pub sequence: u64,
    /// Timestamp of the checkpoint marker.
    pub timestamp: u64,
    /// `Ledger::digest` of the state, checked after decoding.
    pub digest: [u8; 32],
    /// The encoded state.
    pub state: Vec<u8>,
}

impl std::fmt::Debug for Checkpoint {
    // The state is hundreds of megabytes: show its size, not its bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("sequence", &self.sequence)
            .field("timestamp", &self.timestamp)
            .field("digest", &format_args!("{}", hex32(&self.digest)))
            .field("state_bytes", &self.state.len())
            .finish()
    }
}

/// Size of the log currently kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    pub records: u64,
    /// Sum of the encoded records' lengths (keys and RocksDB overhead not counted).
    pub bytes: u64,
}

/// Where log records and checkpoints are kept.
///
/// Keys are sequence numbers; the storage does not interpret record bytes
/// (recovery does). Implementations: [`RocksStorage`] and [`MemoryStorage`].
pub trait Storage: Send + 'static {
    /// Durably appends encoded records (keys = their sequence numbers) in ONE
    /// synced write. Either all are durable when this returns `Ok`, or it
    /// returns `Err` and none may be acknowledged.
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError>;

    /// Raw records with sequence > `after`, in order; at most `limit` per
    /// call (callers page).
    fn read_log(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StorageError>;

    /// Durably writes a checkpoint, replacing the previous one. A crash
    /// before it returns leaves the previous checkpoint in force.
    fn save_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StorageError>;

    /// The newest complete checkpoint, if any.
    fn load_checkpoint(&self) -> Result<Option<Checkpoint>, StorageError>;

    /// Deletes log records with sequence <= `sequence` (after a checkpoint at
    /// that sequence).
    fn trim_log(&mut self, sequence: u64) -> Result<(), StorageError>;

    /// Durably deletes log records with sequence >= `sequence`: recovery uses
    /// it to drop a torn, never acknowledged last record.
    fn truncate_log(&mut self, sequence: u64) -> Result<(), StorageError>;

    /// Records and bytes of the log currently kept, for checkpoint-by-size
    /// and metrics.
    fn log_stats(&self) -> LogStats;

    /// Whether this storage keeps movement history (the pipeline then turns
    /// the ledger's history on and runs a history writer).
    fn keeps_history(&self) -> bool {
        false
    }

    /// Writes movements and, in the same write, the history watermark: every
    /// batch with sequence <= `watermark` is then in the history. Not
    /// durable until [`Storage::sync_history`]: history is rebuilt from the
    /// log past the watermark found at recovery (docs/persistence.md).
    fn write_history(
        &mut self,
        movements: &[crate::history::Movement],
        watermark: u64,
    ) -> Result<(), StorageError> {
        let _ = (movements, watermark);
        Ok(())
    }

    /// [`Storage::write_history`] of the movements of `parts` one after the
    /// other (the history writer's jobs as the shards handed them over).
    fn write_history_parts(
        &mut self,
        parts: &[Vec<crate::history::Movement>],
        watermark: u64,
    ) -> Result<(), StorageError> {
        let movements: Vec<_> = parts.iter().flatten().cloned().collect();
        self.write_history(&movements, watermark)
    }

    /// Makes every history write so far durable (a checkpoint calls it
    /// before it lets the log behind it go).
    fn sync_history(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// The history watermark (0: nothing written yet).
    fn history_watermark(&self) -> Result<u64, StorageError> {
        Ok(0)
    }
}

/// Lowercase hex of a digest, for messages and reports.
pub fn hex32(bytes: &[u8; 32]) -> String {
    let mut text = String::with_capacity(64);
    for byte in bytes {
        text.push_str(&format!("{byte:02x}"));
    }
    text
}
