//! Crash recovery: the newest checkpoint, then every log record after it.
//!
//! Disk data is input: a record that breaks the rules `Ledger::apply`
//! asserts (sequence strictly increasing, timestamp never going back) is
//! reported as corruption, never passed on. Log records are numbered
//! consecutively from 1, checkpoint markers included, so a missing number is
//! a lost record and also corruption.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crossbeam::channel::{bounded, Receiver, Sender};

use crate::command::{Command, CommandResult};
use crate::history::MovementChunk;
use crate::history_writer::HISTORY_WRITE_MOVEMENTS_MAX;
use crate::ledger::{Ledger, LedgerConfig};
use crate::record_ring::RingMemory;
use crate::storage::record::{LogEntry, LogRecord};
use crate::storage::{decode_state_chunks, encode_state, hex32, Checkpoint, Storage, StorageError};

/// Records read per `read_log` call: at most 128 x 377 KiB = 47 MiB of
/// full-size batches in memory at once.
pub const RECOVERY_PAGE_RECORDS: usize = 128;

/// What recovery found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Sequence of the checkpoint loaded (0: none, started empty).
    pub checkpoint_sequence: u64,
    /// Log records read after the checkpoint (batches and markers).
    pub records_replayed: u64,
    /// Commands in the batches replayed.
    pub commands_replayed: u64,
    /// Sequence of a torn last record that was deleted: it failed its
    /// checksum, so its write never completed and it was never acknowledged.
    pub dropped_tail: Option<u64>,
    /// Sequence and timestamp of the last record kept (or of the checkpoint):
    /// the sequencer continues after them.
    pub last_sequence: u64,
    pub last_timestamp: u64,
    /// The whole recovery.
    pub elapsed: Duration,
    /// Part of `elapsed` spent loading the checkpoint (reading, decoding,
    /// and for [`recover`] checking its digest) ...
    pub load_elapsed: Duration,
    /// ... replaying the log after it (reading, decoding, applying, and
    /// rebuilding the history past its watermark) ...
    pub replay_elapsed: Duration,
    /// ... and on the digest of the whole state (the end state's for
    /// [`recover`]; the checkpoint's, checked before the replay, for
    /// [`recover_for_engine`]; it dominates when many idempotency records
    /// are kept).
    pub digest_elapsed: Duration,
    /// `Ledger::digest` of the state at record `digest_sequence`: the
    /// recovered state for [`recover`]; the checkpoint's state (checked
    /// against its stored digest) for [`recover_for_engine`], which skips
    /// digesting the end state (a start does not wait for it; `payrail
    /// verify` computes it).
    pub digest: [u8; 32],
    pub digest_sequence: u64,
    /// History watermark found (every batch up to it was in the history).
    pub history_watermark: u64,
    /// Movements written to the history for the records replayed past the
    /// watermark.
    pub history_rebuilt: u64,
}

impl RecoveryReport {
    /// Commands replayed per second of the whole recovery, checkpoint load
    /// and digest included (0 when none).
    pub fn commands_per_second(&self) -> u64 {
        per_second(self.commands_replayed, self.elapsed)
    }

    /// Commands replayed per second of the replay alone.
    pub fn replay_commands_per_second(&self) -> u64 {
        per_second(self.commands_replayed, self.replay_elapsed)
    }
}

fn per_second(count: u64, elapsed: Duration) -> u64 {
    let seconds = elapsed.as_secs_f64();
    if count == 0 || seconds <= 0.0 {
        return 0;
    }
    (count as f64 / seconds) as u64
}

fn corrupt(sequence: u64, reason: String) -> StorageError {
    StorageError::Corrupt { sequence, reason }
}

/// The next record must be numbered `previous + 1`.
fn check_next(sequence: u64, previous: u64) -> Result<(), StorageError> {
    // Cannot overflow in practice; if it did, no record could follow.
    let expected = previous.saturating_add(1);
    if sequence != expected {
        return Err(corrupt(
            sequence,
            format!("expected record {expected} next: records are missing"),
        ));
    }
    Ok(())
}

/// A decoded record stored under `sequence` may follow the record
/// (`previous`, `previous_timestamp`): numbered next, stored under its own
/// number, its timestamp not going back. `Ledger::apply` asserts the same,
/// so a record that passes cannot trip it.
fn check_record(
    sequence: u64,
    record: &LogRecord,
    previous: u64,
    previous_timestamp: u64,
) -> Result<(), StorageError> {
    check_next(sequence, previous)?;
    if record.sequence != sequence {
        return Err(corrupt(
            sequence,
            format!("it is stored under {sequence} but says {}", record.sequence),
        ));
    }
    // `ledger.timestamp() <= previous_timestamp` always holds, so this also
    // keeps `Ledger::apply`'s assertion.
    if record.timestamp < previous_timestamp {
        return Err(corrupt(
            sequence,
            format!(
                "its timestamp {} is before the previous record's {}",
                record.timestamp, previous_timestamp
            ),
        ));
    }
    Ok(())
}

/// The ledger in the checkpoint, checked against its digest; an empty
/// ledger if there is none.
fn load(storage: &dyn Storage, config: LedgerConfig) -> Result<Loaded, StorageError> {
    let loaded = load_unchecked(storage, config)?;
    check_digest(&loaded.ledger, loaded.sequence, &loaded.digest)?;
    Ok(loaded)
}

/// The ledger in the checkpoint, decoded (every structural check of
/// `decode_state`) but not yet checked against its digest: `digest` is the
/// stored one, for [`check_digest`]. An empty ledger if there is none.
fn load_unchecked(storage: &dyn Storage, config: LedgerConfig) -> Result<Loaded, StorageError> {
    // Read chunk by chunk as the decoding goes: the encoded state (gigabytes
    // at millions of accounts) is never in memory beside the decoded one.
    let Some(mut checkpoint) = storage.read_checkpoint()? else {
        let ledger = Ledger::new(config);
        let digest = ledger.digest();
        return Ok(Loaded {
            ledger,
            sequence: 0,
            timestamp: 0,
            digest,
            stored_config: None,
        });
    };
    let sequence = checkpoint.sequence;
    let checkpoint_corrupt = |reason: String| StorageError::CheckpointCorrupt { sequence, reason };
    let (ledger, stored_config) =
        decode_state_chunks(checkpoint.state_len, &mut checkpoint.chunks, config).map_err(
            |error| match error {
                StorageError::StateCorrupt(reason) => checkpoint_corrupt(reason),
                other => other,
            },
        )?;
    if ledger.sequence() > checkpoint.sequence || ledger.timestamp() > checkpoint.timestamp {
        return Err(checkpoint_corrupt(format!(
            "the state is at sequence {} timestamp {}, after its own marker (timestamp {})",
            ledger.sequence(),
            ledger.timestamp(),
            checkpoint.timestamp
        )));
    }
    Ok(Loaded {
        ledger,
        sequence: checkpoint.sequence,
        timestamp: checkpoint.timestamp,
        digest: checkpoint.digest,
        stored_config,
    })
}

/// The settings that differ between the config a checkpoint was taken with
/// (`stored`) and the one passed in, as `engine.NAME = stored (configured:
/// value)`; empty if none.
fn config_changes(stored: &LedgerConfig, config: &LedgerConfig) -> String {
    let fields: [(&str, u64, u64); 7] = [
        (
            "idempotency_window_s",
            stored.idempotency_window_ns / 1_000_000_000,
            config.idempotency_window_ns / 1_000_000_000,
        ),
        (
            "idempotency_records_max",
            stored.idempotency_records_max as u64,
            config.idempotency_records_max as u64,
        ),
        (
            "account_holds_pending_max",
            u64::from(stored.account_holds_pending_max),
            u64::from(config.account_holds_pending_max),
        ),
        (
            "customer_payment_codes_live_max",
            u64::from(stored.customer_payment_codes_live_max),
            u64::from(config.customer_payment_codes_live_max),
        ),
        (
            "account_fx_quotes_open_max",
            u64::from(stored.account_fx_quotes_open_max),
            u64::from(config.account_fx_quotes_open_max),
        ),
        (
            "customer_instruments_max",
            u64::from(stored.customer_instruments_max),
            u64::from(config.customer_instruments_max),
        ),
        (
            "instruments_max",
            stored.instruments_max as u64,
            config.instruments_max as u64,
        ),
    ];
    let mut changes = Vec::new();
    for (name, was, now) in fields {
        if was != now {
            changes.push(format!("engine.{name} = {was} (configured: {now})"));
        }
    }
    // The window is compared in whole seconds above, as configured; a
    // difference below a second still counts.
    if changes.is_empty() && stored != config {
        changes.push(format!(
            "an idempotency window of {} ns (configured: {} ns)",
            stored.idempotency_window_ns, config.idempotency_window_ns
        ));
    }
    changes.join(", ")
}

/// Compares the config the checkpoint was taken with against `config`.
/// Records after the checkpoint were written with the checkpoint's values
/// (a start with other values is refused while there are any, and a start
/// that changes them with none saves a checkpoint with the new values at
/// once: [`recover_for_engine`]), so a difference with records to replay is
/// refused: [`StorageError::ConfigChanged`]. Otherwise returns the
/// differences (empty if none), which apply from the checkpoint on.
fn check_config(
    storage: &dyn Storage,
    loaded: &Loaded,
    config: &LedgerConfig,
) -> Result<String, StorageError> {
    let Some(stored) = &loaded.stored_config else {
        if loaded.sequence > 0 {
            tracing::warn!(
                checkpoint = loaded.sequence,
                "the checkpoint does not say which config it was taken with (an older format): \
                 the configured values are used for the replay unchecked; the next checkpoint \
                 records them"
            );
        }
        return Ok(String::new());
    };
    let changes = config_changes(stored, config);
    if changes.is_empty() {
        return Ok(changes);
    }
    if let Some((first_record, _)) = storage.read_log(loaded.sequence, 1)?.first() {
        return Err(StorageError::ConfigChanged {
            sequence: loaded.sequence,
            first_record: *first_record,
            changes,
        });
    }
    Ok(changes)
}

/// The decoded checkpoint `ledger` (at marker `sequence`) must have the
/// digest stored with it.
fn check_digest(ledger: &Ledger, sequence: u64, stored: &[u8; 32]) -> Result<(), StorageError> {
    let digest = ledger.digest();
    // A checkpoint an older build wrote has the digest it defined then.
    if digest != *stored && !ledger.older_digests().contains(stored) {
        return Err(StorageError::CheckpointCorrupt {
            sequence,
            reason: format!(
                "the decoded state's digest {} differs from the stored digest {}",
                hex32(&digest),
                hex32(stored)
            ),
        });
    }
    Ok(())
}

/// The starting point of a replay.
struct Loaded {
    ledger: Ledger,
    sequence: u64,
    timestamp: u64,
    /// The checkpoint's digest (after [`load`]: also `ledger.digest()`).
    digest: [u8; 32],
    /// The config the checkpoint was taken with (`None`: no checkpoint, or
    /// an older format that did not store it).
    stored_config: Option<LedgerConfig>,
}

/// Rebuilds the ledger: loads the newest checkpoint (its digest must match),
/// then replays every log record after it in pages, applying batches and
/// risk policies and skipping checkpoint markers. A record that does not decode is dropped if
/// it is the last one in the log (a torn, unacknowledged write) and is
/// corruption anywhere else.
pub fn recover(
    storage: &mut dyn Storage,
    config: LedgerConfig,
) -> Result<(Ledger, RecoveryReport), StorageError> {
    recover_with_history(storage, config, true)
}

/// [`recover`], rebuilding the history past its watermark only if `history`
/// (the engine keeps history) and the storage keeps it.
pub fn recover_with_history(
    storage: &mut dyn Storage,
    config: LedgerConfig,
    history: bool,
) -> Result<(Ledger, RecoveryReport), StorageError> {
    let started = Instant::now();
    let loaded = load(storage, config)?;
    let changes = check_config(storage, &loaded, &config)?;
    if !changes.is_empty() {
        tracing::warn!(
            checkpoint = loaded.sequence,
            %changes,
            "the config differs from the checkpoint's; nothing is logged after it, so the \
             configured values apply from there"
        );
    }
    let checkpoint_digest = loaded.digest;
    let (mut ledger, mut report) = begin(loaded, started);
    let batches_applied = replay(storage, &mut ledger, &mut report, history)?;
    // The digest covers every account: skip recomputing it if nothing changed.
    let digest_started = Instant::now();
    report.digest = if batches_applied {
        ledger.digest()
    } else {
        checkpoint_digest
    };
    report.digest_elapsed = digest_started.elapsed();
    report.digest_sequence = report.last_sequence;
    report.elapsed = started.elapsed();
    log_recovered(&report);
    Ok((ledger, report))
}

/// The report of a recovery that starts from `loaded` (its load took
/// since `started`).
fn begin(loaded: Loaded, started: Instant) -> (Ledger, RecoveryReport) {
    let report = RecoveryReport {
        checkpoint_sequence: loaded.sequence,
        records_replayed: 0,
        commands_replayed: 0,
        dropped_tail: None,
        last_sequence: loaded.sequence,
        last_timestamp: loaded.timestamp,
        elapsed: Duration::ZERO,
        load_elapsed: started.elapsed(),
        replay_elapsed: Duration::ZERO,
        digest_elapsed: Duration::ZERO,
        digest: [0; 32],
        digest_sequence: 0,
        history_watermark: 0,
        history_rebuilt: 0,
    };
    (loaded.ledger, report)
}

fn log_recovered(report: &RecoveryReport) {
    tracing::info!(
        checkpoint = report.checkpoint_sequence,
        records = report.records_replayed,
        commands = report.commands_replayed,
        last_sequence = report.last_sequence,
        elapsed_ms = report.elapsed.as_millis() as u64,
        commands_per_second = report.commands_per_second(),
        load_ms = report.load_elapsed.as_millis() as u64,
        replay_ms = report.replay_elapsed.as_millis() as u64,
        replay_commands_per_second = report.replay_commands_per_second(),
        digest_ms = report.digest_elapsed.as_millis() as u64,
        digest = %hex32(&report.digest),
        digest_sequence = report.digest_sequence,
        history_watermark = report.history_watermark,
        history_rebuilt = report.history_rebuilt,
        "recovered"
    );
}

/// Replays every log record after `report.last_sequence` onto `ledger`
/// (see [`recover`]), rebuilding the history past its watermark if
/// `history`, and fills in the report's replay figures. True if any batch
/// or risk policy was applied (the state changed).
///
/// Three threads, so that the apply (the one part that must run in log
/// order on one thread) does nothing else: a reading thread reads the log
/// in pages, checks each record's CRC, decodes it and checks it follows
/// the one before ([`read_records`]), and keeps [`REPLAY_QUEUE_GROUPS`]
/// groups of decoded records ready; the calling thread applies them
/// ([`apply_records`]) and hands the rebuilt batches' movements over, about
/// 32,768 commands' worth at a time, as the ledger made them (one
/// `MovementChunk`, as a shard hands its segment's over live); a history
/// thread appends them to the store ([`write_history_jobs`]). Handing
/// over in groups, not per record, wakes the threads a few times per
/// million commands whatever the size of the log's records. Vectors of commands and chunks go back to be
/// reused. The storage is shared through a lock: the reading thread holds
/// it for a page read, the history thread for an append. What is applied,
/// in what order, and what the history store is given are the same as one
/// thread doing it all.
fn replay(
    storage: &mut dyn Storage,
    ledger: &mut Ledger,
    report: &mut RecoveryReport,
    history: bool,
) -> Result<bool, StorageError> {
    let checkpoint_sequence = report.checkpoint_sequence;
    // History is derived from the log: whatever the history writer had not
    // written before the stop is rebuilt here from the records replayed.
    let keeps_history = history && storage.keeps_history();
    let watermark = if keeps_history {
        storage.history_watermark()?
    } else {
        0
    };
    report.history_watermark = watermark;
    if keeps_history && watermark < checkpoint_sequence {
        // Checkpoints wait for the history writer, so only a data directory
        // written before history existed gets here.
        tracing::warn!(
            watermark,
            checkpoint_sequence,
            "history misses the movements of the records before the checkpoint"
        );
    }
    tracing::info!(
        checkpoint = report.checkpoint_sequence,
        ms = report.load_elapsed.as_millis() as u64,
        "checkpoint loaded; replaying the log after it"
    );
    let replay_started = Instant::now();
    let table = ledger.record_table_memory();
    // The commands in the log, from its bytes (a transfer takes about 50,
    // other kinds more): each command of the replay adds a record.
    let commands_estimate = storage.log_stats().bytes / 64;
    let map_index = commands_estimate >= INDEX_PAGES_FILLED * (table.index_bytes as u64 / 4096);
    let shared = Mutex::new(&mut *storage);
    let stop_mapping = AtomicBool::new(false);
    let batches_applied = std::thread::scope(|scope| -> Result<bool, StorageError> {
        let shared = &shared;
        let stop_mapping = &stop_mapping;
        if map_index {
            // Only a hint: if the thread cannot start, the apply maps the
            // pages itself.
            let _ = std::thread::Builder::new()
                .name("replay-map".into())
                .spawn_scoped(scope, move || map_record_index(table, stop_mapping));
        }
        let (records_sender, records) = bounded::<Vec<Read>>(REPLAY_QUEUE_GROUPS);
        // Room for every vector in flight, so that none is dropped.
        let (spares, spares_back) = bounded::<Vec<Command>>(REPLAY_QUEUE_RECORDS_MAX);
        let (last_sequence, last_timestamp) = (report.last_sequence, report.last_timestamp);
        let reader = std::thread::Builder::new()
            .name("replay-read".into())
            .spawn_scoped(scope, move || {
                let mut group = Group::new(&records_sender);
                let read = read_records(
                    shared,
                    (last_sequence, last_timestamp),
                    &mut group,
                    &spares_back,
                    &mut RingMapper::new(table),
                );
                if let Err(error) = read {
                    // The applying thread may have stopped already (a
                    // history write failed): then it reports that.
                    group.push(Read::Failed(error), 0);
                }
                group.send();
            })
            .map_err(|error| io_error("cannot start the replay's reading thread", &error))?;
        let (jobs, jobs_taken) = bounded::<HistoryJob>(REPLAY_HISTORY_QUEUE_JOBS);
        let (chunks_back, chunks) = bounded::<MovementChunk>(REPLAY_HISTORY_QUEUE_JOBS + 2);
        let writer = if keeps_history {
            let writer = std::thread::Builder::new()
                .name("replay-history".into())
                .spawn_scoped(scope, move || {
                    write_history_jobs(shared, &jobs_taken, &chunks_back)
                })
                .map_err(|error| io_error("cannot start the replay's history thread", &error));
            match writer {
                Ok(writer) => Some(writer),
                Err(error) => {
                    stop_mapping.store(true, Ordering::Relaxed);
                    // The reading thread stops at its next hand-over.
                    drop(records);
                    join(reader);
                    return Err(error);
                }
            }
        } else {
            None
        };
        let history_hand_over = writer.is_some().then_some((&jobs, &chunks));
        let applied = apply_records(
            ledger,
            report,
            &records,
            &spares,
            history_hand_over,
            watermark,
        );
        // Mapping the index is of no use any more.
        stop_mapping.store(true, Ordering::Relaxed);
        // Either thread ends when the other side of its channel goes.
        drop(records);
        drop(jobs);
        join(reader);
        let written = writer.map_or(Ok(()), join);
        // A record that failed to read or check comes first; a history
        // write that failed stopped the apply short of the end.
        let applied = applied?;
        written?;
        Ok(applied)
    })?;
    let storage = shared.into_inner().unwrap_or_else(PoisonError::into_inner);

    ledger.record_history(false);
    if keeps_history && report.last_sequence > watermark {
        // Markers and an empty tail move the watermark on too.
        storage.write_history(&[], report.last_sequence)?;
        storage.sync_history()?;
    }
    report.replay_elapsed = replay_started.elapsed();
    Ok(batches_applied)
}

/// The reading thread hands decoded records over in groups of at least
/// this many commands (or [`REPLAY_GROUP_RECORDS_MAX`] records), so that
/// the threads wake each other once per group, not once per record (a log
/// of records of 64 commands has 312,500 of them per 20M commands) ...
pub const REPLAY_GROUP_COMMANDS: usize = 8_192;
/// ... or of this many records (markers and empty batches hold none).
pub const REPLAY_GROUP_RECORDS_MAX: usize = 256;
/// Groups the reading thread keeps ready ahead of the apply: at most about
/// 4 x 16,382 commands decoded (a group can pass its minimum by a full
/// batch of 8,190; about 2 MiB), besides the page of raw records it is
/// decoding.
pub const REPLAY_QUEUE_GROUPS: usize = 4;
/// Records in flight between the reading and the applying thread at most
/// (their vectors of commands go back to be reused).
const REPLAY_QUEUE_RECORDS_MAX: usize = (REPLAY_QUEUE_GROUPS + 2) * REPLAY_GROUP_RECORDS_MAX;
/// The apply hands the history thread the movements of its batches once
/// they hold at least this many commands (about 65,000 movements of
/// transfers), as the engine gathers history jobs, and at the end.
pub const REPLAY_HISTORY_JOB_COMMANDS: usize = 32_768;
/// Jobs waiting for the replay's history thread before the apply waits
/// for it.
pub const REPLAY_HISTORY_QUEUE_JOBS: usize = 4;

/// Rebuilt batches' movements for the replay's history thread, with the
/// last batch's sequence (the watermark once they are written).
type HistoryJob = (u64, MovementChunk);

/// The index of the lone ledger's record table is mapped ahead of the
/// replay when the log holds at least this many commands per index page
/// (4 KiB, 512 buckets): records go to buckets at random, so by then
/// nearly every page (98 %) would be written.
const INDEX_PAGES_FILLED: u64 = 4;
/// Bytes of the record table asked for at once.
const MAP_STEP_BYTES: usize = 1 << 20;

/// The replay's mapping thread: maps the whole index of the lone ledger's
/// record table (`table`) for writing, a step at a time, from its start,
/// until it is done or `stop` is set. A fresh table (512 MiB of index at
/// the default cap of 32M records) is otherwise mapped by the apply a page
/// at a time as records land in it, each page twice (read, then written):
/// in a profile of the rebuild, a fifth of the replay was these page
/// faults. The apply and this thread may fault the same page; the kernel
/// maps it once.
fn map_record_index(table: RingMemory, stop: &AtomicBool) {
    let mut offset = 0;
    while offset < table.index_bytes && !stop.load(Ordering::Relaxed) {
        let bytes = MAP_STEP_BYTES.min(table.index_bytes - offset);
        if !crate::prefetch::populate_for_write(table.index_address + offset, bytes) {
            // An older kernel, or not Linux: the apply maps what it needs.
            return;
        }
        offset += bytes;
    }
}

/// Maps the slots of the lone ledger's record table ahead of the records
/// that will fill them (the next ones in order from `next_slot`, wrapping
/// around), on the reading thread, as it decodes their commands.
struct RingMapper {
    table: RingMemory,
    capacity: usize,
    /// Slots from `next_slot` on mapped so far.
    mapped: usize,
    /// False once the kernel refused (an older kernel, or not Linux).
    working: bool,
}

impl RingMapper {
    fn new(table: RingMemory) -> RingMapper {
        RingMapper {
            table,
            capacity: table.slots_bytes / table.slot_bytes.max(1),
            mapped: 0,
            working: true,
        }
    }

    /// Maps the slots of the next `records` records and a step more.
    fn reach(&mut self, records: usize) {
        let step = (MAP_STEP_BYTES / self.table.slot_bytes.max(1)).max(1);
        let target = records.saturating_add(step).min(self.capacity);
        while self.working && self.mapped < target {
            let from = (self.table.next_slot + self.mapped) % self.capacity;
            let count = step
                .min(self.capacity - from)
                .min(self.capacity - self.mapped);
            self.working = crate::prefetch::populate_for_write(
                self.table.slots_address + from * self.table.slot_bytes,
                count * self.table.slot_bytes,
            );
            self.mapped += count;
        }
    }
}

/// The records the reading thread has decoded and not yet handed over.
struct Group<'a> {
    sender: &'a Sender<Vec<Read>>,
    reads: Vec<Read>,
    commands: usize,
    /// False once the applying thread has stopped.
    open: bool,
}

impl<'a> Group<'a> {
    fn new(sender: &'a Sender<Vec<Read>>) -> Group<'a> {
        Group {
            sender,
            reads: Vec::new(),
            commands: 0,
            open: true,
        }
    }

    /// Adds a read of `commands` commands; hands the group over once it
    /// is full. False if the applying thread has stopped.
    fn push(&mut self, read: Read, commands: usize) -> bool {
        self.reads.push(read);
        self.commands += commands;
        if self.commands >= REPLAY_GROUP_COMMANDS || self.reads.len() >= REPLAY_GROUP_RECORDS_MAX {
            self.send();
        }
        self.open
    }

    /// Hands over what is gathered (nothing if empty).
    fn send(&mut self) {
        if self.reads.is_empty() || !self.open {
            return;
        }
        self.commands = 0;
        let reads = std::mem::replace(&mut self.reads, Vec::with_capacity(64));
        self.open = self.sender.send(reads).is_ok();
    }
}

/// What the reading thread hands the applying one, in log order.
enum Read {
    /// The next record; it follows the one before (`check_record`).
    Record(LogRecord),
    /// The torn last record, at this sequence, was deleted: the end.
    DroppedTail(u64),
    /// A record that does not decode or follow, or the storage failed:
    /// the end, and the replay's error.
    Failed(StorageError),
}

fn io_error(context: &str, error: &std::io::Error) -> StorageError {
    StorageError::Io(format!("{context}: {error}"))
}

/// The storage, for whichever replay thread holds it.
fn lock<'a, 'b>(shared: &'a Mutex<&'b mut dyn Storage>) -> MutexGuard<'a, &'b mut dyn Storage> {
    // A thread that panicked with the lock held makes the replay panic too
    // (`join`), so the value behind a poisoned lock is never used for long.
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Waits for a replay thread; a panic in it goes on in the caller.
fn join<T>(thread: std::thread::ScopedJoinHandle<'_, T>) -> T {
    thread
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// The reading thread: every log record after `last` (sequence and
/// timestamp of the record before), in pages, decoded (each into a vector
/// of commands handed back through `spares` when there is one) and checked
/// to follow the one before, handed to `records` in order (in groups). A record that
/// does not decode is deleted if it is the last one in the log (a torn,
/// never acknowledged write; `Read::DroppedTail`) and is corruption
/// anywhere else. Stops early, without an error, when the applying
/// thread has stopped.
fn read_records(
    storage: &Mutex<&mut dyn Storage>,
    last: (u64, u64),
    records: &mut Group<'_>,
    spares: &Receiver<Vec<Command>>,
    table: &mut RingMapper,
) -> Result<(), StorageError> {
    let (mut last_sequence, mut last_timestamp) = last;
    let mut commands = 0;
    loop {
        let page = lock(storage).read_log(last_sequence, RECOVERY_PAGE_RECORDS)?;
        let page_len = page.len();
        if page_len == 0 {
            return Ok(());
        }
        for (index, (sequence, bytes)) in page.into_iter().enumerate() {
            let spare = spares.try_recv().unwrap_or_default();
            let record = match LogRecord::decode_reusing(&bytes, spare) {
                Ok(record) => record,
                Err(error) => {
                    check_next(sequence, last_sequence)?;
                    let is_last =
                        index + 1 == page_len && lock(storage).read_log(sequence, 1)?.is_empty();
                    if !is_last {
                        return Err(corrupt(sequence, error.to_string()));
                    }
                    tracing::warn!(
                        sequence,
                        %error,
                        "dropping the torn last log record (never acknowledged)"
                    );
                    lock(storage).truncate_log(sequence)?;
                    records.push(Read::DroppedTail(sequence), 0);
                    return Ok(());
                }
            };
            check_record(sequence, &record, last_sequence, last_timestamp)?;
            last_sequence = record.sequence;
            last_timestamp = record.timestamp;
            // One idempotency record per command.
            let count = record.command_count();
            commands += count;
            table.reach(commands);
            if !records.push(Read::Record(record), count) {
                return Ok(());
            }
        }
    }
}

/// The applying thread: applies the records `records` hands over (batches
/// and risk policies; markers only move the report on), rebuilding the
/// history of the batches past `watermark` when `history` gives the
/// history thread's queue and the chunks it hands back. True if any batch
/// or risk policy was applied. Stops short, without an error, if the
/// history thread has stopped (its write failed: it says why).
fn apply_records(
    ledger: &mut Ledger,
    report: &mut RecoveryReport,
    records: &Receiver<Vec<Read>>,
    spares: &Sender<Vec<Command>>,
    history: Option<(&Sender<HistoryJob>, &Receiver<MovementChunk>)>,
    watermark: u64,
) -> Result<bool, StorageError> {
    let mut results: Vec<CommandResult> = Vec::new();
    // Even an empty batch changes the state (sequence, time, expiries).
    let mut batches_applied = false;
    // The rebuilt batches whose movements the ledger holds: their commands
    // and the last one's sequence.
    let mut held = (0, 0);
    for read in records.iter().flatten() {
        let record = match read {
            Read::Record(record) => record,
            Read::DroppedTail(sequence) => {
                report.dropped_tail = Some(sequence);
                break;
            }
            Read::Failed(error) => return Err(error),
        };
        if let LogEntry::Batch(commands) = &record.entry {
            let rebuild = history.filter(|_| record.sequence > watermark);
            ledger.record_history(rebuild.is_some());
            // The reading thread checked the record follows the one before
            // (`check_record`): apply's assertions hold.
            results.clear();
            ledger.apply(record.sequence, record.timestamp, commands, &mut results);
            batches_applied = true;
            report.commands_replayed += commands.len() as u64;
            if let Some(history) = rebuild {
                held = (held.0 + commands.len(), record.sequence);
                if held.0 >= REPLAY_HISTORY_JOB_COMMANDS {
                    if !hand_history_over(ledger, report, history, held.1) {
                        return Ok(batches_applied);
                    }
                    held = (0, 0);
                }
            }
        }
        report.records_replayed += 1;
        report.last_sequence = record.sequence;
        report.last_timestamp = record.timestamp;
        match record.entry {
            LogEntry::RiskPolicy(policy) => {
                // The same assertions hold as for a batch.
                ledger.set_risk_policy(record.sequence, record.timestamp, *policy);
                batches_applied = true;
            }
            LogEntry::Batch(commands) => {
                let _ = spares.try_send(commands);
            }
            LogEntry::Checkpoint => {}
        }
    }
    if let (Some(history), (_, 1..)) = (history, held) {
        hand_history_over(ledger, report, history, held.1);
    }
    Ok(batches_applied)
}

/// Hands the movements the ledger holds, of the batches up to `sequence`,
/// to the history thread. False if it has stopped (its write failed).
fn hand_history_over(
    ledger: &mut Ledger,
    report: &mut RecoveryReport,
    (jobs, chunks): (&Sender<HistoryJob>, &Receiver<MovementChunk>),
    sequence: u64,
) -> bool {
    let chunk = ledger.take_movement_chunk(chunks.try_recv().unwrap_or_default());
    report.history_rebuilt += chunk.len() as u64;
    jobs.send((sequence, chunk)).is_ok()
}

/// The history thread: appends each batch's movements, in log order, with
/// the batch's sequence as the watermark, gathering what is queued into
/// one append of up to `HISTORY_WRITE_MOVEMENTS_MAX` movements, as the
/// engine's history writer does; hands the chunks back to be reused.
/// Stops at the first write that fails, with its error.
fn write_history_jobs(
    storage: &Mutex<&mut dyn Storage>,
    jobs: &Receiver<HistoryJob>,
    chunks_back: &Sender<MovementChunk>,
) -> Result<(), StorageError> {
    let mut parts: Vec<MovementChunk> = Vec::new();
    while let Ok((sequence, chunk)) = jobs.recv() {
        let mut watermark = sequence;
        let mut movements = chunk.len();
        parts.push(chunk);
        while movements < HISTORY_WRITE_MOVEMENTS_MAX {
            let Ok((sequence, chunk)) = jobs.try_recv() else {
                break;
            };
            watermark = sequence;
            movements += chunk.len();
            parts.push(chunk);
        }
        lock(storage).write_history_chunks(&parts, watermark)?;
        for chunk in parts.drain(..) {
            let _ = chunks_back.try_send(chunk);
        }
    }
    Ok(())
}

/// Recovery for a starting engine: [`recover_with_history`], except that
/// a start that changes the config with nothing logged after the checkpoint
/// saves the checkpoint again with the configured values (which then apply
/// from there), and that the end state is not digested (the replay is
/// deterministic, and a digest of gigabytes of state would hold up the
/// start for seconds; `payrail verify` computes it): the checkpoint is
/// checked against its digest before the replay, and the report's digest
/// is the checkpoint's.
pub fn recover_for_engine(
    storage: &mut dyn Storage,
    config: LedgerConfig,
    history: bool,
) -> Result<(Ledger, RecoveryReport), StorageError> {
    let started = Instant::now();
    let mut loaded = load_unchecked(storage, config)?;
    let changes = check_config(storage, &loaded, &config)?;
    let checked = !changes.is_empty();
    let mut digest_elapsed = Duration::ZERO;
    if checked {
        // Checked against its digest first: it is saved again.
        let digest_started = Instant::now();
        check_digest(&loaded.ledger, loaded.sequence, &loaded.digest)?;
        digest_elapsed = digest_started.elapsed();
        resave_with_config(storage, &mut loaded, &changes)?;
    }
    let (checkpoint_sequence, checkpoint_digest) = (loaded.sequence, loaded.digest);
    let (mut ledger, mut report) = begin(loaded, started);
    if !checked && checkpoint_sequence > 0 {
        let digest_started = Instant::now();
        check_digest(&ledger, checkpoint_sequence, &checkpoint_digest)?;
        digest_elapsed = digest_started.elapsed();
    }
    replay(storage, &mut ledger, &mut report, history)?;
    report.digest = checkpoint_digest;
    report.digest_sequence = checkpoint_sequence;
    report.digest_elapsed = digest_elapsed;
    report.elapsed = started.elapsed();
    log_recovered(&report);
    Ok((ledger, report))
}

/// A start that changes the config with nothing logged after the
/// checkpoint: logs a checkpoint marker right after it and saves the same
/// state there with the configured values (`loaded.ledger` holds them), so
/// that the log from then on, written with them, follows a checkpoint that
/// says so. `loaded` moves to the new checkpoint.
fn resave_with_config(
    storage: &mut dyn Storage,
    loaded: &mut Loaded,
    changes: &str,
) -> Result<(), StorageError> {
    let started = Instant::now();
    let sequence = loaded.sequence + 1;
    let mut marker = Vec::new();
    LogRecord {
        sequence,
        timestamp: loaded.timestamp,
        entry: LogEntry::Checkpoint,
    }
    .encode(&mut marker);
    storage.append(&[(sequence, marker)])?;
    let mut state = Vec::new();
    encode_state(&loaded.ledger, &mut state);
    storage.save_checkpoint(&Checkpoint {
        sequence,
        timestamp: loaded.timestamp,
        digest: loaded.digest,
        state,
    })?;
    storage.trim_log(sequence)?;
    tracing::warn!(
        previous_checkpoint = loaded.sequence,
        checkpoint = sequence,
        changes,
        ms = started.elapsed().as_millis() as u64,
        "the config differs from the checkpoint's and nothing is logged after it: \
         checkpoint saved again with the configured values, which apply from here"
    );
    loaded.sequence = sequence;
    loaded.stored_config = Some(loaded.ledger.config);
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::history::Movement;
    use crate::storage::RocksStorage;
    use crate::{AccountId, AccountKind, CommandKind, Currency, OpenAccount, RiskContext};

    const ACCOUNTS: u64 = 300;

    fn open(id: u128, account: u64) -> Command {
        Command::new(
            id,
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(account),
                owner: account,
                kind: AccountKind::Customer,
                currency: Currency::CNY,
                kyc_tier: 3,
                mcc: 0,
            }),
        )
    }

    /// Batch `batch` of a log: openings and deposits first, then transfers
    /// (some refused for want of funds) with a retry of the batch before's
    /// first command here and there.
    fn batch_commands(batch: u64, size: u64) -> Vec<Command> {
        (0..size)
            .map(|index| {
                let n = batch * size + index;
                let id = 1 + u128::from(n);
                if n < ACCOUNTS {
                    open(id, n + 1)
                } else if n < 2 * ACCOUNTS {
                    Command::new(
                        id,
                        CommandKind::Deposit {
                            account: AccountId(n - ACCOUNTS + 1),
                            amount: 50_000,
                            currency: Currency::CNY,
                        },
                    )
                } else if index == 0 && batch % 5 == 0 {
                    // A retry: answered from its record, no movement.
                    let first = batch_commands(batch - 1, size).swap_remove(0);
                    Command::new(first.id.0, first.kind)
                } else {
                    Command::new(
                        id,
                        CommandKind::Transfer {
                            from: AccountId(1 + n * 7_919 % ACCOUNTS),
                            to: AccountId(1 + n * 104_729 % ACCOUNTS),
                            amount: 1 + n % 3_000,
                            currency: Currency::CNY,
                            context: RiskContext::NONE,
                        },
                    )
                }
            })
            .collect()
    }

    /// Writes a log of `batches` batches of `size` commands (a checkpoint
    /// marker after every tenth) to `storage`, applying it to a lone ledger
    /// with history on: that ledger, and its movements in log order.
    fn write_log(storage: &mut RocksStorage, batches: u64, size: u64) -> (Ledger, Vec<Movement>) {
        let mut live = Ledger::new(LedgerConfig::default());
        live.record_history(true);
        let (mut all, mut movements, mut records) = (Vec::new(), Vec::new(), Vec::new());
        let mut sequence = 0;
        for batch in 0..batches {
            sequence += 1;
            let timestamp = 1_000_000 * sequence;
            let commands = batch_commands(batch, size);
            live.apply_batch(sequence, timestamp, &commands);
            live.take_movements(&mut movements);
            all.append(&mut movements);
            records.push((
                sequence,
                LogRecord::batch(sequence, timestamp, commands).to_bytes(),
            ));
            if batch % 10 == 9 {
                sequence += 1;
                records.push((
                    sequence,
                    LogRecord::checkpoint(sequence, timestamp).to_bytes(),
                ));
            }
        }
        storage.append(&records).unwrap();
        (live, all)
    }

    /// Every movement of `account` in the history, newest first.
    fn pages_of(storage: &RocksStorage, account: u64) -> Vec<Movement> {
        let (mut entries, mut cursor) = (Vec::new(), 0);
        for _ in 0..100_000 {
            let page = storage
                .history_page(AccountId(account), 0, u64::MAX, cursor, 50)
                .unwrap();
            entries.extend(page.entries);
            cursor = page.next_cursor;
            if cursor == 0 {
                return entries;
            }
        }
        panic!("paging never ended");
    }

    fn assert_history_is(storage: &RocksStorage, movements: &[Movement]) {
        for account in 1..=ACCOUNTS {
            let expected: Vec<Movement> = movements
                .iter()
                .rev()
                .filter(|movement| movement.account.0 == account)
                .cloned()
                .collect();
            assert_eq!(pages_of(storage, account), expected, "account {account}");
        }
    }

    #[test]
    fn the_replay_rebuilds_the_state_and_the_history_the_live_ledger_made() {
        // More movements than one history append takes, so the history
        // thread appends several times.
        let (batches, size) = (40, 2_000);
        let dir = tempfile::tempdir().unwrap();
        let mut storage = RocksStorage::open(dir.path()).unwrap();
        let (live, movements) = write_log(&mut storage, batches, size);
        assert!(movements.len() > HISTORY_WRITE_MOVEMENTS_MAX);
        let (ledger, report) = recover(&mut storage, LedgerConfig::default()).unwrap();
        assert_eq!(ledger.digest(), live.digest());
        assert_eq!(report.digest, live.digest());
        assert_eq!(report.commands_replayed, batches * size);
        assert_eq!(report.records_replayed, batches + batches / 10);
        assert_eq!(report.last_sequence, batches + batches / 10);
        assert_eq!(report.history_rebuilt, movements.len() as u64);
        assert_eq!(storage.history_watermark().unwrap(), report.last_sequence);
        assert_history_is(&storage, &movements);
    }

    #[test]
    fn the_record_table_is_mapped_ahead_from_the_next_slot_around_to_its_end() {
        let slots = vec![[7u64; 5]; 100_000];
        let table = RingMemory {
            slots_address: slots.as_ptr() as usize,
            slots_bytes: std::mem::size_of_val(&*slots),
            slot_bytes: 40,
            next_slot: 90_000,
            index_address: 0,
            index_bytes: 0,
        };
        let mut mapper = RingMapper::new(table);
        // A step is 26,214 slots; the first ends at the table's end (10,000
        // slots on), the next ones go on from its start.
        let step = 26_214;
        for (records, mapped) in [(5, 10_000 + step), (40_000, 10_000 + 3 * step)] {
            mapper.reach(records);
            assert_eq!(mapper.mapped, mapped, "{records} records");
        }
        // Never past the whole table.
        mapper.reach(1_000_000);
        assert_eq!(mapper.mapped, 100_000);
        assert_eq!(mapper.working, cfg!(target_os = "linux"));
        assert!(slots.iter().all(|slot| *slot == [7; 5]));
    }

    #[test]
    fn the_replay_rebuilds_only_past_the_history_watermark() {
        let (batches, size) = (12, 500);
        let dir = tempfile::tempdir().unwrap();
        let mut storage = RocksStorage::open(dir.path()).unwrap();
        let (live, movements) = write_log(&mut storage, batches, size);
        // The history writer had written the first five batches (sequences
        // 1 to 5) when the engine stopped.
        let written = movements
            .iter()
            .take_while(|movement| movement.sequence <= 5)
            .count();
        storage.write_history(&movements[..written], 5).unwrap();
        let (ledger, report) =
            recover_for_engine(&mut storage, LedgerConfig::default(), true).unwrap();
        assert_eq!(ledger.digest(), live.digest());
        assert_eq!(report.history_watermark, 5);
        assert_eq!(report.history_rebuilt, (movements.len() - written) as u64);
        assert_history_is(&storage, &movements);
        // With history off nothing is written, and the state is the same.
        let dir = tempfile::tempdir().unwrap();
        let mut storage = RocksStorage::open(dir.path()).unwrap();
        write_log(&mut storage, batches, size);
        let (ledger, report) =
            recover_for_engine(&mut storage, LedgerConfig::default(), false).unwrap();
        assert_eq!(ledger.digest(), live.digest());
        assert_eq!((report.history_watermark, report.history_rebuilt), (0, 0));
        assert_eq!(storage.history_watermark().unwrap(), 0);
    }
}
