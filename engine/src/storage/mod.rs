//! The durable log, checkpoints and crash recovery.
//!
//! The sequencer encodes each batch as a [`LogRecord`] and hands the bytes to
//! a [`Storage`], which makes them durable in one synced write before any
//! command of the batch is acknowledged. Now and then a checkpoint marker goes
//! through the log; the ledger state at that point is encoded with
//! [`encode_state_chunks`] while [`Storage::save_checkpoint_from`] writes
//! it, chunk by chunk, after which the log up to the marker may be
//! trimmed. [`recover`] rebuilds the ledger: newest checkpoint, then every
//! log record after it. docs/persistence.md has the byte layouts and what
//! happens in each crash window.
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
pub use recovery::{recover, recover_for_engine, recover_with_history, RecoveryReport};
pub use rocks::RocksStorage;
pub use segments::{HistoryConfig, HistoryOpenReport, HistoryStats, HistoryStore, HEADS_FILE};
pub use snapshot::{
    decode_state, decode_state_and_config, decode_state_chunks, encode_state, encode_state_chunks,
    StateChunks,
};

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

/// A checkpoint to save: its marker, its digest, and its encoded state
/// handed over in chunks (so that a storage can write the state as it is
/// encoded, never holding the whole image: see
/// [`Storage::save_checkpoint_from`]).
pub trait CheckpointSource {
    /// Sequence number of the checkpoint marker.
    fn sequence(&self) -> u64;
    /// Timestamp of the checkpoint marker.
    fn timestamp(&self) -> u64;
    /// `Ledger::digest` of the state.
    fn digest(&self) -> [u8; 32];
    /// Hands the encoded state to `chunk` in pieces of exactly
    /// `chunk_bytes`, the last one shorter (never empty); stops at the first
    /// error `chunk` returns and returns it.
    fn write_state(
        &self,
        chunk_bytes: usize,
        chunk: &mut dyn FnMut(&[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError>;
}

impl CheckpointSource for Checkpoint {
    fn sequence(&self) -> u64 {
        self.sequence
    }

    fn timestamp(&self) -> u64 {
        self.timestamp
    }

    fn digest(&self) -> [u8; 32] {
        self.digest
    }

    fn write_state(
        &self,
        chunk_bytes: usize,
        chunk: &mut dyn FnMut(&[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        for piece in self.state.chunks(chunk_bytes) {
            chunk(piece)?;
        }
        Ok(())
    }
}

/// A ledger's state as a [`CheckpointSource`]: encoded
/// ([`encode_state_chunks`]) while the storage writes it. Keeps the time
/// spent encoding apart from the time the storage spends on the chunks.
pub struct LedgerCheckpoint<'a> {
    pub ledger: &'a crate::Ledger,
    /// The records encoded with it: the ledger's own, or (in the
    /// checkpoint's process, one shard) its router's.
    records: Option<&'a dyn crate::ledger::RecordsInOrder>,
    pub sequence: u64,
    pub timestamp: u64,
    pub digest: [u8; 32],
    /// Nanoseconds spent in the storage's hands (writing chunks) during
    /// the last `write_state`.
    written_ns: std::cell::Cell<u64>,
    /// Nanoseconds the last `write_state` took in all.
    total_ns: std::cell::Cell<u64>,
    /// Bytes the last `write_state` handed on.
    state_bytes: std::cell::Cell<u64>,
}

impl<'a> LedgerCheckpoint<'a> {
    pub fn new(
        ledger: &'a crate::Ledger,
        sequence: u64,
        timestamp: u64,
        digest: [u8; 32],
    ) -> LedgerCheckpoint<'a> {
        LedgerCheckpoint {
            ledger,
            records: None,
            sequence,
            timestamp,
            digest,
            written_ns: std::cell::Cell::new(0),
            total_ns: std::cell::Cell::new(0),
            state_bytes: std::cell::Cell::new(0),
        }
    }

    /// [`LedgerCheckpoint::new`] with `records` encoded for the ledger's
    /// idempotency records (`digest` must be of the two together:
    /// [`crate::Ledger::digest_with_records`]).
    pub(crate) fn with_records(
        ledger: &'a crate::Ledger,
        records: &'a dyn crate::ledger::RecordsInOrder,
        sequence: u64,
        timestamp: u64,
        digest: [u8; 32],
    ) -> LedgerCheckpoint<'a> {
        LedgerCheckpoint {
            records: Some(records),
            ..LedgerCheckpoint::new(ledger, sequence, timestamp, digest)
        }
    }

    /// Bytes of encoded state the last `write_state` handed on.
    pub fn state_len(&self) -> u64 {
        self.state_bytes.get()
    }

    /// Of the last `write_state`: the time spent encoding, and the time
    /// spent in the storage's hands with the chunks.
    pub fn times(&self) -> (std::time::Duration, std::time::Duration) {
        let written = self.written_ns.get();
        (
            std::time::Duration::from_nanos(self.total_ns.get().saturating_sub(written)),
            std::time::Duration::from_nanos(written),
        )
    }
}

impl std::fmt::Debug for LedgerCheckpoint<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerCheckpoint")
            .field("sequence", &self.sequence)
            .field("timestamp", &self.timestamp)
            .field("digest", &format_args!("{}", hex32(&self.digest)))
            .finish()
    }
}

impl CheckpointSource for LedgerCheckpoint<'_> {
    fn sequence(&self) -> u64 {
        self.sequence
    }

    fn timestamp(&self) -> u64 {
        self.timestamp
    }

    fn digest(&self) -> [u8; 32] {
        self.digest
    }

    fn write_state(
        &self,
        chunk_bytes: usize,
        chunk: &mut dyn FnMut(&[u8]) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        let mut written_ns = 0u64;
        let mut state_bytes = 0u64;
        let mut hand_on = |piece: &[u8]| {
            let handed = std::time::Instant::now();
            let result = chunk(piece);
            written_ns = written_ns.saturating_add(nanos(handed.elapsed()));
            state_bytes += piece.len() as u64;
            result
        };
        let result = match self.records {
            Some(records) => {
                snapshot::encode_state_chunks_with(self.ledger, records, chunk_bytes, &mut hand_on)
            }
            None => encode_state_chunks(self.ledger, chunk_bytes, &mut hand_on),
        };
        self.written_ns.set(written_ns);
        self.state_bytes.set(state_bytes);
        self.total_ns.set(nanos(started.elapsed()));
        result
    }
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// The checkpoint in force as it is read: its marker, digest and state
/// length, and its state's chunks, each read when it is taken (see
/// [`Storage::read_checkpoint`] and [`decode_state_chunks`]).
pub struct CheckpointReader<'a> {
    pub sequence: u64,
    pub timestamp: u64,
    pub digest: [u8; 32],
    pub state_len: u64,
    /// The chunks in order; after the last, an error if the state's length
    /// or checksum is not the manifest's.
    pub chunks: Box<StateChunks<'a>>,
}

impl std::fmt::Debug for CheckpointReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointReader")
            .field("sequence", &self.sequence)
            .field("timestamp", &self.timestamp)
            .field("digest", &format_args!("{}", hex32(&self.digest)))
            .field("state_len", &self.state_len)
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

    /// [`Storage::save_checkpoint`] of a state handed over in chunks as it
    /// is encoded. This default gathers the chunks into one
    /// [`Checkpoint`]; [`RocksStorage`] writes each chunk as it comes, so
    /// the whole encoded image is never in memory.
    fn save_checkpoint_from(&mut self, source: &dyn CheckpointSource) -> Result<(), StorageError> {
        let mut state = Vec::new();
        source.write_state(rocks::CHECKPOINT_CHUNK_BYTES, &mut |chunk: &[u8]| {
            state.extend_from_slice(chunk);
            Ok(())
        })?;
        self.save_checkpoint(&Checkpoint {
            sequence: source.sequence(),
            timestamp: source.timestamp(),
            digest: source.digest(),
            state,
        })
    }

    /// The newest complete checkpoint, if any.
    fn load_checkpoint(&self) -> Result<Option<Checkpoint>, StorageError>;

    /// The newest complete checkpoint with its state read chunk by chunk
    /// as it is taken, so that it can be decoded without the whole encoded
    /// state in memory. This default reads it whole
    /// ([`Storage::load_checkpoint`]) and hands it over as one chunk;
    /// [`RocksStorage`] reads one 4 MiB chunk at a time and checks the
    /// state's checksum after the last.
    fn read_checkpoint(&self) -> Result<Option<CheckpointReader<'_>>, StorageError> {
        Ok(self.load_checkpoint()?.map(|checkpoint| CheckpointReader {
            sequence: checkpoint.sequence,
            timestamp: checkpoint.timestamp,
            digest: checkpoint.digest,
            state_len: checkpoint.state.len() as u64,
            chunks: Box::new(std::iter::once(Ok(checkpoint.state))),
        }))
    }

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

    /// [`Storage::write_history`] of the movements of `chunks` one after the
    /// other, in log order (the history writer's jobs as the shards handed
    /// them over).
    fn write_history_chunks(
        &mut self,
        chunks: &[crate::history::MovementChunk],
        watermark: u64,
    ) -> Result<(), StorageError> {
        let movements: Vec<_> = chunks.iter().flat_map(|chunk| chunk.iter()).collect();
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
