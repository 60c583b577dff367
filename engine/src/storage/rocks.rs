//! [`RocksStorage`]: the log and checkpoints in one embedded RocksDB.
//!
//! Column families (docs/persistence.md has the full layout):
//! - `log`: sequence (u64 big-endian, so key order is number order) -> record.
//! - `state`: checkpoint chunks, (sequence u64 BE, chunk index u32 BE) -> up
//!   to 4 MiB of encoded state.
//! - `history`: no longer written (movement history lives in segment files
//!   next to the database, [`HistoryStore`]); kept so that older data
//!   directories open.
//! - `meta`: `schema_version` -> u32 LE; `checkpoint` -> the manifest of the
//!   current checkpoint.
//!
//! Log appends are one `WriteBatch` written with `sync = true`: RocksDB
//! appends it to its write-ahead log and fsyncs before returning. A
//! checkpoint's chunks are written first, flushed to table files, and only
//! then is its manifest written (synced): a crash part-way leaves the old
//! manifest, and so the old checkpoint, in force.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DBCompressionType, DBRecoveryMode,
    IngestExternalFileOptions, Options, SstFileWriter, WriteBatch, WriteOptions, DB,
};

use crate::command::{AccountId, CommandId};
use crate::history::{HistoryPage, Movement};
use crate::storage::segments::{
    HistoryConfig, HistoryOpenReport, HistoryStats, HistoryStore, HISTORY_DIR,
};
use crate::storage::{
    Checkpoint, CheckpointReader, CheckpointSource, LogStats, Storage, StorageError,
};

/// The on-disk layout version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Bytes of checkpoint state per value in the `state` column family.
pub const CHECKPOINT_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// Memtable size of every column family.
pub const WRITE_BUFFER_BYTES: usize = 64 * 1024 * 1024;
/// Past this much write-ahead log, RocksDB flushes the column families that
/// hold the oldest log file, bounding its disk use and replay time.
pub const WAL_BYTES_MAX: u64 = 512 * 1024 * 1024;

const CF_LOG: &str = "log";
const CF_STATE: &str = "state";
const CF_HISTORY: &str = "history";
const CF_META: &str = "meta";
const COLUMN_FAMILIES: [&str; 4] = [CF_LOG, CF_STATE, CF_HISTORY, CF_META];

const META_SCHEMA_VERSION: &[u8] = b"schema_version";
const META_CHECKPOINT: &[u8] = b"checkpoint";

const MANIFEST_MAGIC: [u8; 2] = *b"pc";
const MANIFEST_VERSION: u8 = 1;
const MANIFEST_BYTES: usize = 76;
/// Largest chunk a manifest may claim (a bound on what loading allocates).
const CHUNK_BYTES_MAX: u32 = 64 * 1024 * 1024;

/// The log's size is tracked in spans of about this many bytes, so trimming
/// can update it without reading what it deletes.
const SPAN_BYTES: u64 = 1024 * 1024;

fn io(context: &str, error: impl std::fmt::Display) -> StorageError {
    StorageError::Io(format!("{context}: {error}"))
}

fn log_key(sequence: u64) -> [u8; 8] {
    sequence.to_be_bytes()
}

fn chunk_key(sequence: u64, index: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&sequence.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The checkpoint's table file, written in the data directory and then
/// ingested into the `state` column family.
const CHECKPOINT_INGEST_FILE: &str = "checkpoint-ingest.sst";

/// A key after every key of the `log` and `state` column families.
const KEY_AFTER_ALL: [u8; 13] = [0xFF; 13];

/// What writing a checkpoint's chunks gave, for its manifest.
#[derive(Clone, Copy, Debug)]
struct WrittenState {
    chunk_count: u32,
    state_len: u64,
    state_crc: u32,
}

/// What the `meta` column family says about the current checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Manifest {
    sequence: u64,
    timestamp: u64,
    digest: [u8; 32],
    state_len: u64,
    chunk_bytes: u32,
    chunk_count: u32,
    state_crc: u32,
}

impl Manifest {
    /// Layout (little-endian): magic b"pc" 2, version 1, reserved 1,
    /// sequence 8, timestamp 8, digest 32, state_len 8, chunk_bytes 4,
    /// chunk_count 4, state crc32c 4, crc32c of bytes 0..72 4 = 76 bytes.
    fn encode(&self) -> [u8; MANIFEST_BYTES] {
        let mut out = [0u8; MANIFEST_BYTES];
        out[0..2].copy_from_slice(&MANIFEST_MAGIC);
        out[2] = MANIFEST_VERSION;
        out[4..12].copy_from_slice(&self.sequence.to_le_bytes());
        out[12..20].copy_from_slice(&self.timestamp.to_le_bytes());
        out[20..52].copy_from_slice(&self.digest);
        out[52..60].copy_from_slice(&self.state_len.to_le_bytes());
        out[60..64].copy_from_slice(&self.chunk_bytes.to_le_bytes());
        out[64..68].copy_from_slice(&self.chunk_count.to_le_bytes());
        out[68..72].copy_from_slice(&self.state_crc.to_le_bytes());
        let crc = crc32c::crc32c(&out[..72]);
        out[72..76].copy_from_slice(&crc.to_le_bytes());
        out
    }

    fn decode(bytes: &[u8]) -> Result<Manifest, StorageError> {
        let bad = |reason: &str| StorageError::CheckpointCorrupt {
            sequence: 0,
            reason: format!("its manifest {reason}"),
        };
        if bytes.len() != MANIFEST_BYTES {
            return Err(bad(&format!(
                "has {} bytes, not {MANIFEST_BYTES}",
                bytes.len()
            )));
        }
        if bytes[0..2] != MANIFEST_MAGIC {
            return Err(bad("does not start with the manifest magic"));
        }
        if bytes[2] != MANIFEST_VERSION {
            return Err(bad(&format!("has unknown version {}", bytes[2])));
        }
        let u32_at = |offset: usize| {
            let mut buffer = [0u8; 4];
            buffer.copy_from_slice(&bytes[offset..offset + 4]);
            u32::from_le_bytes(buffer)
        };
        let u64_at = |offset: usize| {
            let mut buffer = [0u8; 8];
            buffer.copy_from_slice(&bytes[offset..offset + 8]);
            u64::from_le_bytes(buffer)
        };
        if u32_at(72) != crc32c::crc32c(&bytes[..72]) {
            return Err(bad("fails its checksum"));
        }
        let mut digest = [0u8; 32];
        digest.copy_from_slice(&bytes[20..52]);
        let manifest = Manifest {
            sequence: u64_at(4),
            timestamp: u64_at(12),
            digest,
            state_len: u64_at(52),
            chunk_bytes: u32_at(60),
            chunk_count: u32_at(64),
            state_crc: u32_at(68),
        };
        let chunks_needed = if manifest.chunk_bytes == 0 {
            None
        } else {
            Some(manifest.state_len.div_ceil(u64::from(manifest.chunk_bytes)))
        };
        if manifest.chunk_bytes > CHUNK_BYTES_MAX
            || chunks_needed != Some(u64::from(manifest.chunk_count))
        {
            return Err(StorageError::CheckpointCorrupt {
                sequence: manifest.sequence,
                reason: "its manifest's sizes do not agree".to_owned(),
            });
        }
        Ok(manifest)
    }
}

/// Part of the log: records `first..=last`, approximately.
#[derive(Clone, Copy, Debug)]
struct Span {
    first: u64,
    last: u64,
    records: u64,
    bytes: u64,
}

impl Span {
    /// The share of this span's records and bytes with sequence <= `sequence`
    /// (assuming records spread evenly: the stats are approximate).
    fn share_up_to(&self, sequence: u64) -> (u64, u64) {
        let width = u128::from(self.last - self.first) + 1;
        let covered = u128::from(sequence.saturating_sub(self.first)) + 1;
        let covered = covered.min(width);
        let part = |total: u64| (u128::from(total) * covered / width) as u64;
        (part(self.records), part(self.bytes))
    }
}

/// Log size, kept in memory (initialised by scanning the log on open).
#[derive(Debug, Default)]
struct LogSize {
    spans: VecDeque<Span>,
    stats: LogStats,
}

impl LogSize {
    fn add(&mut self, sequence: u64, bytes: u64) {
        self.stats.records += 1;
        self.stats.bytes += bytes;
        match self.spans.back_mut() {
            Some(span) if span.bytes < SPAN_BYTES && sequence > span.last => {
                span.last = sequence;
                span.records += 1;
                span.bytes += bytes;
            }
            _ => self.spans.push_back(Span {
                first: sequence,
                last: sequence,
                records: 1,
                bytes,
            }),
        }
    }

    /// Forgets records with sequence <= `sequence`.
    fn trim(&mut self, sequence: u64) {
        while let Some(span) = self.spans.front_mut() {
            if span.first > sequence {
                break;
            }
            let (records, bytes) = if span.last <= sequence {
                (span.records, span.bytes)
            } else {
                span.share_up_to(sequence)
            };
            self.stats.records = self.stats.records.saturating_sub(records);
            self.stats.bytes = self.stats.bytes.saturating_sub(bytes);
            if span.last <= sequence {
                self.spans.pop_front();
            } else {
                span.first = sequence + 1;
                span.records -= records;
                span.bytes -= bytes;
                break;
            }
        }
    }

    /// Forgets records with sequence >= `sequence`.
    fn truncate(&mut self, sequence: u64) {
        while let Some(span) = self.spans.back_mut() {
            if span.last < sequence {
                break;
            }
            let (records, bytes) = if span.first >= sequence {
                (span.records, span.bytes)
            } else {
                let (kept_records, kept_bytes) = span.share_up_to(sequence - 1);
                (span.records - kept_records, span.bytes - kept_bytes)
            };
            self.stats.records = self.stats.records.saturating_sub(records);
            self.stats.bytes = self.stats.bytes.saturating_sub(bytes);
            if span.first >= sequence {
                self.spans.pop_back();
            } else {
                span.last = sequence - 1;
                span.records -= records;
                span.bytes -= bytes;
                break;
            }
        }
    }
}

/// The RocksDB [`Storage`]. See the module documentation.
///
/// A clone is another handle on the same database (RocksDB is thread-safe):
/// give the checkpoint thread its own, so that writing a large checkpoint
/// does not hold up log appends behind a lock.
#[derive(Clone)]
pub struct RocksStorage {
    db: Arc<DB>,
    sync_write: Arc<WriteOptions>,
    log_size: Arc<Mutex<LogSize>>,
    history: HistoryStore,
    history_report: Arc<HistoryOpenReport>,
}

impl std::fmt::Debug for RocksStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RocksStorage")
            .field("path", &self.db.path())
            .field("log", &self.log_stats())
            .finish()
    }
}

fn column_family_options() -> Options {
    let mut options = Options::default();
    // The log is written once and read only at recovery; compression would
    // cost CPU on the hot path for little gain.
    options.set_compression_type(DBCompressionType::None);
    options.set_write_buffer_size(WRITE_BUFFER_BYTES);
    options
}

fn db_options() -> Options {
    let mut options = column_family_options();
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_max_background_jobs(2);
    // Every write reaches the WAL file before `write` returns; with sync it
    // is fsynced too.
    options.set_manual_wal_flush(false);
    options.set_max_total_wal_size(WAL_BYTES_MAX);
    // A write torn by a crash (never acknowledged) is dropped at the tail.
    options.set_wal_recovery_mode(DBRecoveryMode::PointInTime);
    // RocksDB's own info LOG lives in the data directory. When the disk is
    // full, Debian's librocksdb (built with assertions) aborts the process
    // while logging the write error to that LOG (a failed log file then
    // trips `WritableFileWriter` asserts). Only fatal messages go there, so
    // a full disk reaches payrail as an error it can answer with.
    options.set_log_level(rocksdb::LogLevel::Fatal);
    options
}

impl RocksStorage {
    /// Opens (creating if needed) the data directory `dir` with the default
    /// history configuration. Refuses a directory written by a newer
    /// schema, or one that holds data but no schema version.
    pub fn open(dir: &Path) -> Result<RocksStorage, StorageError> {
        RocksStorage::open_with(dir, HistoryConfig::default())
    }

    /// [`RocksStorage::open`] with this history configuration. Opening
    /// reads and checks every history segment (see [`HistoryStore::open`]);
    /// [`RocksStorage::history_report`] says what it found.
    pub fn open_with(dir: &Path, history: HistoryConfig) -> Result<RocksStorage, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|error| io(&format!("cannot create {}", dir.display()), error))?;
        let options = db_options();
        // Open every column family present (RocksDB requires it), so that a
        // newer schema's extra ones reach the version check below.
        let mut names: Vec<String> = COLUMN_FAMILIES
            .iter()
            .map(|&name| name.to_owned())
            .collect();
        if let Ok(existing) = DB::list_cf(&options, dir) {
            for name in existing {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        let descriptors = names
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, column_family_options()));
        let db = DB::open_cf_descriptors(&options, dir, descriptors)
            .map_err(|error| io(&format!("cannot open RocksDB in {}", dir.display()), error))?;
        let mut sync_write = WriteOptions::default();
        sync_write.set_sync(true);
        let db = Arc::new(db);
        check_schema(&db, &sync_write)?;
        // The log holds every batch after the checkpoint in force: history
        // past a watermark at or after it can be rebuilt.
        let log_start = manifest(&db)?.map_or(0, |manifest| manifest.sequence);
        let (history, history_report) =
            HistoryStore::open(&dir.join(HISTORY_DIR), history, log_start)?;
        let storage = RocksStorage {
            db,
            sync_write: Arc::new(sync_write),
            log_size: Arc::new(Mutex::new(LogSize::default())),
            history,
            history_report: Arc::new(history_report),
        };
        *storage.log_size() = storage.scan_log()?;
        Ok(storage)
    }

    fn log_size(&self) -> MutexGuard<'_, LogSize> {
        // Every update leaves `LogSize` consistent, so a poisoned lock's
        // contents are still good.
        self.log_size
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cf(&self, name: &str) -> Result<&ColumnFamily, StorageError> {
        cf_of(&self.db, name)
    }

    fn scan_log(&self) -> Result<LogSize, StorageError> {
        let mut size = LogSize::default();
        let mut iterator = self.db.raw_iterator_cf(self.cf(CF_LOG)?);
        iterator.seek_to_first();
        while let (Some(key), Some(value)) = (iterator.key(), iterator.value()) {
            size.add(sequence_of(key)?, value.len() as u64);
            iterator.next();
        }
        iterator
            .status()
            .map_err(|error| io("cannot read the log", error))?;
        Ok(size)
    }

    fn manifest(&self) -> Result<Option<Manifest>, StorageError> {
        manifest(&self.db)
    }

    /// Writes a checkpoint's chunks as `source` encodes them, into one table
    /// file that is then ingested; the checkpoint is not in force until its
    /// manifest is written. Returns the chunks' count, the state's length
    /// and its crc32c (computed as the chunks go by).
    fn write_chunks(&self, source: &dyn CheckpointSource) -> Result<WrittenState, StorageError> {
        let state = self.cf(CF_STATE)?;
        // The chunks go into one table file written beside the database and
        // then ingested whole: nothing passes through the memtables, the
        // write-ahead log or level 0, so a checkpoint of gigabytes never
        // trips RocksDB's write stalls (which stop every column family,
        // the log's synced appends included: measured, seconds without a
        // commit at 2M accounts). The writer syncs the file when it
        // finishes, and the ingestion is durable (in the MANIFEST) before
        // it returns; a crash before that loses only an unfinished
        // checkpoint, and the file is replaced by the next attempt. Each
        // chunk goes to the writer as soon as it is encoded: the whole
        // image is never in memory (measured at 2M accounts: 2.2 GB).
        let path = self.db.path().join(CHECKPOINT_INGEST_FILE);
        let options = column_family_options();
        let sequence = source.sequence();
        // Opened at the first chunk (an empty table file cannot be ingested).
        let mut writer: Option<SstFileWriter<'_>> = None;
        let mut written = WrittenState {
            chunk_count: 0,
            state_len: 0,
            state_crc: 0,
        };
        source.write_state(CHECKPOINT_CHUNK_BYTES, &mut |chunk: &[u8]| {
            let writer = match &mut writer {
                Some(writer) => writer,
                None => {
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                        Err(error) => {
                            return Err(StorageError::Io(format!(
                                "cannot remove {}: {error}",
                                path.display()
                            )))
                        }
                    }
                    let opened = SstFileWriter::create(&options);
                    opened
                        .open(&path)
                        .map_err(|error| io("cannot create the checkpoint file", error))?;
                    writer.insert(opened)
                }
            };
            // Keys ascend (sequence, then index, big-endian), as the
            // writer requires.
            writer
                .put(chunk_key(sequence, written.chunk_count), chunk)
                .map_err(|error| io("cannot write a checkpoint chunk", error))?;
            written.chunk_count = written
                .chunk_count
                .checked_add(1)
                .ok_or_else(|| StorageError::Io("the checkpoint has too many chunks".to_owned()))?;
            written.state_len += chunk.len() as u64;
            written.state_crc = crc32c::crc32c_append(written.state_crc, chunk);
            Ok(())
        })?;
        let Some(mut writer) = writer else {
            return Ok(written);
        };
        writer
            .finish()
            .map_err(|error| io("cannot finish the checkpoint file", error))?;
        let mut ingest = IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        self.db
            .ingest_external_file_cf_opts(state, &ingest, vec![&path])
            .map_err(|error| io("cannot ingest the checkpoint file", error))?;
        // Moved in (hard-linked): the name beside the database goes.
        let _ = std::fs::remove_file(&path);
        Ok(written)
    }

    /// A consistent copy of the whole database in `dir` (which must not
    /// exist yet), taken while serving: the history segments first (sealed
    /// ones hard-linked, the active one copied as far as written), then
    /// RocksDB hard-links the table files and copies the live write-ahead
    /// log. The history is copied first so that it never runs ahead of the
    /// copied log; the restored server rebuilds what it lacks from the log.
    /// Open the copy with [`RocksStorage::open`].
    pub fn backup(&self, dir: &Path) -> Result<(), StorageError> {
        let file_name = dir
            .file_name()
            .ok_or_else(|| StorageError::Io(format!("{} names no directory", dir.display())))?;
        let staging =
            dir.with_file_name(format!("{}.history-staging", file_name.to_string_lossy()));
        let _ = std::fs::remove_dir_all(&staging);
        self.history.backup(&staging)?;
        let checkpoint = rocksdb::checkpoint::Checkpoint::new(&self.db)
            .map_err(|error| io("cannot start a backup", error))?;
        let copied = checkpoint
            .create_checkpoint(dir)
            .map_err(|error| io(&format!("cannot back up to {}", dir.display()), error));
        if let Err(error) = copied {
            let _ = std::fs::remove_dir_all(&staging);
            return Err(error);
        }
        std::fs::rename(&staging, dir.join(HISTORY_DIR))
            .map_err(|error| io("cannot move the history into the backup", error))
    }

    /// The directory this storage lives in.
    pub fn path(&self) -> &Path {
        self.db.path()
    }
}

fn cf_of<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily, StorageError> {
    // Opened with every name in COLUMN_FAMILIES, so this always succeeds.
    db.cf_handle(name)
        .ok_or_else(|| StorageError::Io(format!("column family {name} is missing")))
}

fn is_empty(db: &DB, name: &str) -> Result<bool, StorageError> {
    let mut iterator = db.raw_iterator_cf(cf_of(db, name)?);
    iterator.seek_to_first();
    let empty = !iterator.valid();
    iterator
        .status()
        .map_err(|error| io(&format!("cannot read {name}"), error))?;
    Ok(empty)
}

fn check_schema(db: &DB, sync_write: &WriteOptions) -> Result<(), StorageError> {
    let meta = cf_of(db, CF_META)?;
    let stored = db
        .get_cf(meta, META_SCHEMA_VERSION)
        .map_err(|error| io("cannot read the schema version", error))?;
    match stored {
        Some(bytes) => {
            let version = <[u8; 4]>::try_from(bytes.as_slice())
                .map(u32::from_le_bytes)
                .map_err(|_| {
                    StorageError::NotPayrailData("its schema version is malformed".to_owned())
                })?;
            if version > SCHEMA_VERSION {
                return Err(StorageError::SchemaTooNew {
                    found: version,
                    supported: SCHEMA_VERSION,
                });
            }
            if version == 0 {
                return Err(StorageError::NotPayrailData(
                    "its schema version is 0".to_owned(),
                ));
            }
            Ok(())
        }
        None => {
            for name in [CF_LOG, CF_STATE, CF_HISTORY, CF_META, "default"] {
                if !is_empty(db, name)? {
                    return Err(StorageError::NotPayrailData(format!(
                        "column family {name} holds data but there is no schema version"
                    )));
                }
            }
            db.put_cf_opt(
                meta,
                META_SCHEMA_VERSION,
                SCHEMA_VERSION.to_le_bytes(),
                sync_write,
            )
            .map_err(|error| io("cannot write the schema version", error))
        }
    }
}

fn manifest(db: &DB) -> Result<Option<Manifest>, StorageError> {
    let stored = db
        .get_pinned_cf(cf_of(db, CF_META)?, META_CHECKPOINT)
        .map_err(|error| io("cannot read the checkpoint manifest", error))?;
    stored.map(|bytes| Manifest::decode(&bytes)).transpose()
}

fn sequence_of(key: &[u8]) -> Result<u64, StorageError> {
    <[u8; 8]>::try_from(key)
        .map(u64::from_be_bytes)
        .map_err(|_| StorageError::Corrupt {
            sequence: 0,
            reason: format!("a log key has {} bytes, not 8", key.len()),
        })
}

impl Storage for RocksStorage {
    fn append(&mut self, records: &[(u64, Vec<u8>)]) -> Result<(), StorageError> {
        let log = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        for (sequence, bytes) in records {
            batch.put_cf(log, log_key(*sequence), bytes);
        }
        self.db
            .write_opt(batch, &self.sync_write)
            .map_err(|error| io("cannot append to the log", error))?;
        let mut log_size = self.log_size();
        for (sequence, bytes) in records {
            log_size.add(*sequence, bytes.len() as u64);
        }
        Ok(())
    }

    fn read_log(&self, after: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        let Some(first) = after.checked_add(1) else {
            return Ok(out);
        };
        let mut iterator = self.db.raw_iterator_cf(self.cf(CF_LOG)?);
        iterator.seek(log_key(first));
        while out.len() < limit {
            let (Some(key), Some(value)) = (iterator.key(), iterator.value()) else {
                break;
            };
            out.push((sequence_of(key)?, value.to_vec()));
            iterator.next();
        }
        iterator
            .status()
            .map_err(|error| io("cannot read the log", error))?;
        Ok(out)
    }

    fn save_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StorageError> {
        self.save_checkpoint_from(checkpoint)
    }

    fn save_checkpoint_from(&mut self, source: &dyn CheckpointSource) -> Result<(), StorageError> {
        let sequence = source.sequence();
        if let Some(current) = self.manifest()? {
            // Writing chunks under the current checkpoint's keys would break
            // it before the new one is in force.
            if sequence <= current.sequence {
                return Err(StorageError::CheckpointOutOfOrder {
                    sequence,
                    current: current.sequence,
                });
            }
        }
        let written = self.write_chunks(source)?;
        let chunk_count = written.chunk_count;
        let manifest = Manifest {
            sequence,
            timestamp: source.timestamp(),
            digest: source.digest(),
            state_len: written.state_len,
            chunk_bytes: CHECKPOINT_CHUNK_BYTES as u32,
            chunk_count,
            state_crc: written.state_crc,
        };
        // The point of no return: from here on the new checkpoint is in force.
        self.db
            .put_cf_opt(
                self.cf(CF_META)?,
                META_CHECKPOINT,
                manifest.encode(),
                &self.sync_write,
            )
            .map_err(|error| io("cannot write the checkpoint manifest", error))?;
        // Every other chunk (older checkpoints, unfinished attempts) goes.
        let state = self.cf(CF_STATE)?;
        if let Some(before) = sequence.checked_sub(1) {
            // First the table files that hold only older checkpoints (each
            // checkpoint is ingested as a file of its own), dropped whole
            // without being read. Range deletes alone made RocksDB compact
            // those gigabytes right after each checkpoint, and the
            // compaction's reads and writes held up the log's synced
            // appends: measured at 2M accounts, 1.1 GB read and written in
            // 6 s after a 1.26 GB checkpoint, the shard at 4-8 % of a core
            // meanwhile (docs/benchmarks.md). The range ends inclusive at
            // the last key before this checkpoint's first chunk.
            self.db
                .delete_file_in_range_cf(state, chunk_key(0, 0), chunk_key(before, u32::MAX))
                .map_err(|error| io("cannot drop old checkpoint files", error))?;
        }
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(state, chunk_key(0, 0), chunk_key(sequence, 0));
        // Chunks of an unfinished attempt at this same sequence past this
        // one's last. Only up to the next sequence: a range delete over the
        // keys of later checkpoints would make each later ingested file
        // overlap it, so RocksDB would place that file above it and then
        // rewrite it whole in a compaction (gigabytes, right after every
        // checkpoint). Later sequences cannot have chunks yet: markers only
        // increase.
        let end = match sequence.checked_add(1) {
            Some(next) => chunk_key(next, 0).to_vec(),
            None => KEY_AFTER_ALL.to_vec(),
        };
        batch.delete_range_cf(state, &chunk_key(sequence, chunk_count)[..], &end[..]);
        self.db
            .write(batch)
            .map_err(|error| io("cannot delete old checkpoint chunks", error))
    }

    fn load_checkpoint(&self) -> Result<Option<Checkpoint>, StorageError> {
        let Some(reader) = self.read_checkpoint()? else {
            return Ok(None);
        };
        // Sizes come from a checksummed manifest, but reserve at most 1 GiB
        // up front all the same; past that the vector grows as chunks arrive.
        let reserve = usize::try_from(reader.state_len)
            .unwrap_or(usize::MAX)
            .min(1 << 30);
        let mut state = Vec::with_capacity(reserve);
        for chunk in reader.chunks {
            state.extend_from_slice(&chunk?);
        }
        Ok(Some(Checkpoint {
            sequence: reader.sequence,
            timestamp: reader.timestamp,
            digest: reader.digest,
            state,
        }))
    }

    fn read_checkpoint(&self) -> Result<Option<CheckpointReader<'_>>, StorageError> {
        let Some(manifest) = self.manifest()? else {
            return Ok(None);
        };
        let sequence = manifest.sequence;
        let corrupt = move |reason: String| StorageError::CheckpointCorrupt { sequence, reason };
        let state_cf = self.cf(CF_STATE)?;
        let db = &self.db;
        let mut index = 0u32;
        let mut state_len = 0u64;
        let mut state_crc = 0u32;
        let mut finished = false;
        // Each chunk read when it is taken; its size checked, the state's
        // length and checksum computed as they go and checked after the last.
        let chunks = std::iter::from_fn(move || {
            if finished {
                return None;
            }
            if index == manifest.chunk_count {
                finished = true;
                if state_len != manifest.state_len {
                    return Some(Err(corrupt(format!(
                        "the state has {state_len} bytes, not {}",
                        manifest.state_len
                    ))));
                }
                if state_crc != manifest.state_crc {
                    return Some(Err(corrupt("the state fails its checksum".to_owned())));
                }
                return None;
            }
            let read = db
                .get_pinned_cf(state_cf, chunk_key(sequence, index))
                .map_err(|error| io("cannot read a checkpoint chunk", error))
                .and_then(|chunk| {
                    chunk.ok_or_else(|| corrupt(format!("chunk {index} is missing")))
                });
            let chunk = match read {
                Ok(chunk) => chunk,
                Err(error) => {
                    finished = true;
                    return Some(Err(error));
                }
            };
            let last = index + 1 == manifest.chunk_count;
            let size_ok = if last {
                !chunk.is_empty() && chunk.len() <= manifest.chunk_bytes as usize
            } else {
                chunk.len() == manifest.chunk_bytes as usize
            };
            if !size_ok {
                finished = true;
                return Some(Err(corrupt(format!(
                    "chunk {index} has {} bytes",
                    chunk.len()
                ))));
            }
            index += 1;
            state_len += chunk.len() as u64;
            state_crc = crc32c::crc32c_append(state_crc, &chunk);
            Some(Ok(chunk.to_vec()))
        });
        Ok(Some(CheckpointReader {
            sequence,
            timestamp: manifest.timestamp,
            digest: manifest.digest,
            state_len: manifest.state_len,
            chunks: Box::new(chunks),
        }))
    }

    fn trim_log(&mut self, sequence: u64) -> Result<(), StorageError> {
        let log = self.cf(CF_LOG)?;
        // Not synced: if a crash loses the trim, recovery skips the records
        // at or before the checkpoint anyway and the next trim removes them.
        let result = match sequence.checked_add(1) {
            Some(end) => self
                .db
                .delete_range_cf(log, &log_key(0)[..], &log_key(end)[..]),
            None => self
                .db
                .delete_range_cf(log, &log_key(0)[..], &KEY_AFTER_ALL[..]),
        };
        result.map_err(|error| io("cannot trim the log", error))?;
        self.log_size().trim(sequence);
        Ok(())
    }

    fn truncate_log(&mut self, sequence: u64) -> Result<(), StorageError> {
        let log = self.cf(CF_LOG)?;
        let mut batch = WriteBatch::default();
        batch.delete_range_cf(log, &log_key(sequence)[..], &KEY_AFTER_ALL[..]);
        self.db
            .write_opt(batch, &self.sync_write)
            .map_err(|error| io("cannot truncate the log", error))?;
        self.log_size().truncate(sequence);
        Ok(())
    }

    fn log_stats(&self) -> LogStats {
        self.log_size().stats
    }

    fn keeps_history(&self) -> bool {
        true
    }

    fn write_history(
        &mut self,
        movements: &[Movement],
        watermark: u64,
    ) -> Result<(), StorageError> {
        self.history.append(movements, watermark)
    }

    fn write_history_chunks(
        &mut self,
        chunks: &[crate::history::MovementChunk],
        watermark: u64,
    ) -> Result<(), StorageError> {
        self.history.append_chunks(chunks, watermark)
    }

    fn sync_history(&self) -> Result<(), StorageError> {
        self.history.sync()
    }

    fn history_watermark(&self) -> Result<u64, StorageError> {
        Ok(self.history.watermark())
    }
}

impl RocksStorage {
    /// A page of `account`'s movements with timestamps in `from_ns..=to_ns`,
    /// newest first, from `cursor` (0: from the newest; else a page's
    /// `next_cursor`), at most `limit` (capped at
    /// [`crate::history::HISTORY_PAGE_MAX`]). Safe to call from any thread
    /// while the engine runs.
    pub fn history_page(
        &self,
        account: AccountId,
        from_ns: u64,
        to_ns: u64,
        cursor: u128,
        limit: u32,
    ) -> Result<HistoryPage, StorageError> {
        self.history.page(account, from_ns, to_ns, cursor, limit)
    }

    /// The movements (legs) of one command, in the order they were made.
    pub fn command_movements(&self, command: CommandId) -> Result<Vec<Movement>, StorageError> {
        self.history.command_movements(command)
    }

    /// What the history store holds now (segments, movements, head index).
    pub fn history_stats(&self) -> HistoryStats {
        self.history.stats()
    }

    /// What opening the history store found (damage, torn tail).
    pub fn history_report(&self) -> &HistoryOpenReport {
        &self.history_report
    }

    /// The history store itself.
    pub fn history_store(&self) -> &HistoryStore {
        &self.history
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn checkpoint(sequence: u64, state: Vec<u8>) -> Checkpoint {
        Checkpoint {
            sequence,
            timestamp: sequence * 10,
            digest: [sequence as u8; 32],
            state,
        }
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(RocksStorage::open(dir.path()).unwrap());
        {
            let storage = RocksStorage::open(dir.path()).unwrap();
            let meta = storage.cf(CF_META).unwrap();
            storage
                .db
                .put_cf(
                    meta,
                    META_SCHEMA_VERSION,
                    (SCHEMA_VERSION + 1).to_le_bytes(),
                )
                .unwrap();
        }
        let error = RocksStorage::open(dir.path()).unwrap_err();
        assert_eq!(
            error,
            StorageError::SchemaTooNew {
                found: SCHEMA_VERSION + 1,
                supported: SCHEMA_VERSION
            }
        );
        assert!(error.to_string().contains("run a newer payrail"), "{error}");
    }

    #[test]
    fn data_without_a_schema_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let storage = RocksStorage::open(dir.path()).unwrap();
            let meta = storage.cf(CF_META).unwrap();
            storage.db.delete_cf(meta, META_SCHEMA_VERSION).unwrap();
            storage
                .db
                .put_cf(storage.cf(CF_LOG).unwrap(), log_key(1), b"x")
                .unwrap();
        }
        assert!(matches!(
            RocksStorage::open(dir.path()),
            Err(StorageError::NotPayrailData(_))
        ));
    }

    #[test]
    fn large_checkpoints_span_chunks_and_replace_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = RocksStorage::open(dir.path()).unwrap();
        let first = checkpoint(10, pattern(2 * CHECKPOINT_CHUNK_BYTES + 5, 1));
        storage.save_checkpoint(&first).unwrap();
        assert_eq!(storage.load_checkpoint().unwrap(), Some(first.clone()));

        let second = checkpoint(20, pattern(CHECKPOINT_CHUNK_BYTES, 2));
        storage.save_checkpoint(&second).unwrap();
        assert_eq!(storage.load_checkpoint().unwrap(), Some(second.clone()));
        // Only the second checkpoint's single chunk is left.
        let mut iterator = storage.db.raw_iterator_cf(storage.cf(CF_STATE).unwrap());
        iterator.seek_to_first();
        let mut keys = Vec::new();
        while let Some(key) = iterator.key() {
            keys.push(key.to_vec());
            iterator.next();
        }
        assert_eq!(keys, vec![chunk_key(20, 0).to_vec()]);
        drop(iterator);

        assert_eq!(
            storage.save_checkpoint(&first),
            Err(StorageError::CheckpointOutOfOrder {
                sequence: 10,
                current: 20
            })
        );
        let empty = checkpoint(30, Vec::new());
        storage.save_checkpoint(&empty).unwrap();
        drop(storage);
        let storage = RocksStorage::open(dir.path()).unwrap();
        assert_eq!(storage.load_checkpoint().unwrap(), Some(empty));
    }

    #[test]
    fn an_unfinished_checkpoint_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = RocksStorage::open(dir.path()).unwrap();
        let done = checkpoint(5, pattern(1000, 3));
        storage.save_checkpoint(&done).unwrap();
        // A crash after the chunks of the next one, before its manifest.
        let unfinished = checkpoint(9, pattern(3000, 4));
        storage.write_chunks(&unfinished).unwrap();
        drop(storage);
        let mut storage = RocksStorage::open(dir.path()).unwrap();
        assert_eq!(storage.load_checkpoint().unwrap(), Some(done));
        // The next checkpoint at that sequence overwrites the leftovers.
        let next = checkpoint(9, pattern(10, 5));
        storage.save_checkpoint(&next).unwrap();
        assert_eq!(storage.load_checkpoint().unwrap(), Some(next));
    }

    #[test]
    fn a_damaged_checkpoint_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut storage = RocksStorage::open(dir.path()).unwrap();
        storage
            .save_checkpoint(&checkpoint(7, pattern(100, 6)))
            .unwrap();
        let state = storage.cf(CF_STATE).unwrap();
        let mut chunk = storage.db.get_cf(state, chunk_key(7, 0)).unwrap().unwrap();
        chunk[50] ^= 1;
        storage.db.put_cf(state, chunk_key(7, 0), &chunk).unwrap();
        assert!(matches!(
            storage.load_checkpoint(),
            Err(StorageError::CheckpointCorrupt { sequence: 7, .. })
        ));
        storage.db.delete_cf(state, chunk_key(7, 0)).unwrap();
        assert!(matches!(
            storage.load_checkpoint(),
            Err(StorageError::CheckpointCorrupt { sequence: 7, .. })
        ));
    }

    #[test]
    fn manifest_round_trips_and_rejects_damage() {
        let manifest = Manifest {
            sequence: 1,
            timestamp: 2,
            digest: [3; 32],
            state_len: 9_000_000,
            chunk_bytes: CHECKPOINT_CHUNK_BYTES as u32,
            chunk_count: 3,
            state_crc: 4,
        };
        let bytes = manifest.encode();
        assert_eq!(Manifest::decode(&bytes), Ok(manifest));
        for index in 0..bytes.len() {
            let mut damaged = bytes;
            damaged[index] ^= 0x80;
            assert!(Manifest::decode(&damaged).is_err(), "byte {index}");
        }
        assert!(Manifest::decode(&bytes[..75]).is_err());
    }

    #[test]
    fn log_size_is_tracked_through_trim_and_truncate() {
        let mut size = LogSize::default();
        for sequence in 1..=100 {
            size.add(sequence, 10);
        }
        size.trim(30);
        assert_eq!(
            size.stats,
            LogStats {
                records: 70,
                bytes: 700
            }
        );
        size.truncate(91);
        assert_eq!(
            size.stats,
            LogStats {
                records: 60,
                bytes: 600
            }
        );
        size.trim(u64::MAX);
        assert_eq!(size.stats, LogStats::default());
    }
}
