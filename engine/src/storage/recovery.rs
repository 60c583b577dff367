//! Crash recovery: the newest checkpoint, then every log record after it.
//!
//! Disk data is input: a record that breaks the rules `Ledger::apply`
//! asserts (sequence strictly increasing, timestamp never going back) is
//! reported as corruption, never passed on. Log records are numbered
//! consecutively from 1, checkpoint markers included, so a missing number is
//! a lost record and also corruption.

use std::time::{Duration, Instant};

use crossbeam::channel;

use crate::command::CommandResult;
use crate::ledger::{Ledger, LedgerConfig};
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
    /// The whole recovery; for [`recover_with_copy`], up to
    /// [`RecoveryCopy::finish`] (the split over the shards, which the
    /// start does meanwhile, included).
    pub elapsed: Duration,
    /// Part of `elapsed` spent loading the checkpoint (reading, decoding,
    /// and for [`recover`] checking its digest) ...
    pub load_elapsed: Duration,
    /// ... replaying the log after it (reading, decoding, applying, and
    /// rebuilding the history past its watermark) ...
    pub replay_elapsed: Duration,
    /// ... and on the final digest of the whole state (it
    /// dominates when many idempotency records are kept).
    pub digest_elapsed: Duration,
    /// `Ledger::digest` of the state at record `digest_sequence`: the
    /// recovered state for [`recover`]; the checkpoint's state (checked
    /// against its stored digest) for [`recover_with_copy`], which skips
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
/// once: [`recover_with_copy`]), so a difference with records to replay is
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
    let mut movements = Vec::new();
    let mut results: Vec<CommandResult> = Vec::new();
    // Even an empty batch changes the state (sequence, time, expiries).
    let mut batches_applied = false;

    'pages: loop {
        let page = storage.read_log(report.last_sequence, RECOVERY_PAGE_RECORDS)?;
        let page_len = page.len();
        if page_len == 0 {
            break;
        }
        for (index, (sequence, bytes)) in page.into_iter().enumerate() {
            let record = match LogRecord::decode(&bytes) {
                Ok(record) => record,
                Err(error) => {
                    check_next(sequence, report.last_sequence)?;
                    let is_last =
                        index + 1 == page_len && storage.read_log(sequence, 1)?.is_empty();
                    if !is_last {
                        return Err(corrupt(sequence, error.to_string()));
                    }
                    tracing::warn!(
                        sequence,
                        %error,
                        "dropping the torn last log record (never acknowledged)"
                    );
                    storage.truncate_log(sequence)?;
                    report.dropped_tail = Some(sequence);
                    break 'pages;
                }
            };
            check_record(
                sequence,
                &record,
                report.last_sequence,
                report.last_timestamp,
            )?;
            if let LogEntry::Batch(commands) = &record.entry {
                let rebuild = keeps_history && record.sequence > watermark;
                ledger.record_history(rebuild);
                // sequence > report.last_sequence >= ledger.sequence() and the
                // timestamp check above: apply's assertions hold.
                results.clear();
                ledger.apply(record.sequence, record.timestamp, commands, &mut results);
                batches_applied = true;
                report.commands_replayed += commands.len() as u64;
                if rebuild {
                    ledger.take_movements(&mut movements);
                    storage.write_history(&movements, record.sequence)?;
                    report.history_rebuilt += movements.len() as u64;
                }
            }
            if let LogEntry::RiskPolicy(policy) = record.entry {
                // The same assertions hold as for a batch.
                ledger.set_risk_policy(record.sequence, record.timestamp, *policy);
                batches_applied = true;
            }
            report.records_replayed += 1;
            report.last_sequence = record.sequence;
            report.last_timestamp = record.timestamp;
        }
    }

    ledger.record_history(false);
    if keeps_history && report.last_sequence > watermark {
        // Markers and an empty tail move the watermark on too.
        storage.write_history(&[], report.last_sequence)?;
        storage.sync_history()?;
    }
    report.replay_elapsed = replay_started.elapsed();
    Ok(batches_applied)
}

/// Recovery for a starting engine, which needs the state twice: for the
/// shards and for the checkpointer's [`LogFollower`]. The copy is taken
/// as soon as the checkpoint is decoded, and a second thread checks the
/// checkpoint's digest on it and then replays the log tail onto it and
/// digests the result, while this thread replays the tail (rebuilding the
/// history) onto the original, which the caller then splits over the
/// shards. [`RecoveryCopy::finish`] waits for the second thread. The
/// checkpoint is checked as [`recover_with_history`] checks it, on the
/// machine's other core; the end state is not digested (the replay is
/// deterministic, and a digest of gigabytes of state would hold up the
/// start for seconds): the report's digest is the checkpoint's.
/// With `prefault`, the copy's idempotency record table is touched there
/// too (memory flat from the start, no page zeroing on the follower's
/// path).
pub fn recover_with_copy<S: Storage + Clone>(
    storage: &mut S,
    config: LedgerConfig,
    history: bool,
    prefault: bool,
) -> Result<(Ledger, RecoveryCopy), StorageError> {
    let started = Instant::now();
    let mut loaded = load_unchecked(storage, config)?;
    let changes = check_config(storage, &loaded, &config)?;
    if !changes.is_empty() {
        // Checked against its digest first: it is saved again.
        check_digest(&loaded.ledger, loaded.sequence, &loaded.digest)?;
        resave_with_config(storage, &mut loaded, &changes)?;
    }
    let checkpoint = (loaded.sequence, loaded.timestamp, loaded.digest);
    let has_checkpoint = loaded.sequence > 0;
    let (mut ledger, mut report) = begin(loaded, started);
    // The follower's copy keeps its records for the process's life (the
    // mark is copied with the table).
    ledger.records.advise_huge_pages();
    let copying = Instant::now();
    let copy = ledger.clone();
    let copy_elapsed = copying.elapsed();
    let (replayed_sender, replayed) = channel::bounded::<Replayed>(1);
    let copy_storage = storage.clone();
    let thread = std::thread::Builder::new()
        .name("payrail-recovery".into())
        .spawn(move || {
            follow_copy(
                copy,
                prefault,
                &copy_storage,
                has_checkpoint.then_some(checkpoint),
                &replayed,
            )
        })
        .map_err(|error| StorageError::Io(format!("cannot start the recovery thread: {error}")))?;
    replay(storage, &mut ledger, &mut report, history)?;
    // The copy replays up to where this replay ended (a torn tail dropped).
    let _ = replayed_sender.send(Replayed {
        sequence: report.last_sequence,
    });
    Ok((
        ledger,
        RecoveryCopy {
            started,
            checkpoint_digest: checkpoint.2,
            copy_elapsed,
            report,
            thread,
        },
    ))
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

/// Where the main replay of [`recover_with_copy`] ended.
struct Replayed {
    sequence: u64,
}

/// What the copy's thread did.
struct CopyDone {
    follower: LogFollower,
    /// Time spent on the checkpoint's digest.
    digest_elapsed: Duration,
}

/// Checks `copy` against the checkpoint's digest (if there is a checkpoint:
/// its sequence, timestamp and digest), then replays the log onto it up to
/// where the main replay ended.
fn follow_copy(
    mut copy: Ledger,
    prefault: bool,
    storage: &dyn Storage,
    checkpoint: Option<(u64, u64, [u8; 32])>,
    replayed: &channel::Receiver<Replayed>,
) -> Result<CopyDone, StorageError> {
    let digest_started = Instant::now();
    let (sequence, timestamp) = match checkpoint {
        Some((sequence, timestamp, digest)) => {
            check_digest(&copy, sequence, &digest)?;
            (sequence, timestamp)
        }
        None => (0, 0),
    };
    let digest_elapsed = digest_started.elapsed();
    if prefault {
        copy.records.prefault();
    }
    let Ok(end) = replayed.recv() else {
        // The main replay failed; its error is the one reported.
        return Err(StorageError::Io("recovery stopped".to_owned()));
    };
    let mut follower = LogFollower::new(copy, sequence, timestamp);
    loop {
        match follower.follow(storage, end.sequence, usize::MAX)? {
            Followed::Reached => break,
            Followed::Slice => {}
            Followed::Marker {
                sequence,
                timestamp,
            } => follower.pass_marker(sequence, timestamp),
        }
    }
    if follower.sequence() != end.sequence {
        return Err(corrupt(
            end.sequence,
            format!(
                "the checkpointer's copy of the state reached record {} only",
                follower.sequence()
            ),
        ));
    }
    Ok(CopyDone {
        follower,
        digest_elapsed,
    })
}

/// The second half of [`recover_with_copy`]: the copy's thread.
#[derive(Debug)]
pub struct RecoveryCopy {
    started: Instant,
    checkpoint_digest: [u8; 32],
    copy_elapsed: Duration,
    /// The main replay's report; `digest` and the times are filled in by
    /// [`RecoveryCopy::finish`].
    report: RecoveryReport,
    thread: std::thread::JoinHandle<Result<CopyDone, StorageError>>,
}

impl RecoveryCopy {
    /// Waits for the copy: its digest check of the checkpoint (an error if
    /// it fails) and its replay. Returns the checkpointer's follower, at
    /// the same record as the main replay, and the whole report (its
    /// `elapsed` runs to now).
    pub fn finish(self) -> Result<(LogFollower, RecoveryReport), StorageError> {
        let done = self
            .thread
            .join()
            .map_err(|_| StorageError::Io("the recovery thread panicked".to_owned()))??;
        let mut report = self.report;
        report.digest = self.checkpoint_digest;
        report.digest_sequence = report.checkpoint_sequence;
        report.digest_elapsed = done.digest_elapsed;
        report.elapsed = self.started.elapsed();
        tracing::info!(
            ms = self.copy_elapsed.as_millis() as u64,
            "state copied for the checkpointer"
        );
        log_recovered(&report);
        Ok((done.follower, report))
    }
}

/// A lone ledger kept in step with the log by replaying it, as recovery
/// does: the checkpointer's own copy of the state (docs/architecture.md,
/// "Checkpoints"). It starts from the recovered state and replays the
/// records the sequencer made durable, with the same checks as recovery
/// (a record that fails them is corruption: the live log has no torn tail).
/// The lone ledger and the shards run one rule set, so its state at a
/// checkpoint marker is the state the shards have there.
#[derive(Debug)]
pub struct LogFollower {
    ledger: Ledger,
    /// Sequence and timestamp of the last record replayed (checkpoint
    /// markers included; `ledger.sequence()` counts batches only).
    sequence: u64,
    timestamp: u64,
    /// Commands replayed since the start.
    commands: u64,
    results: Vec<CommandResult>,
}

/// Where [`LogFollower::follow`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Followed {
    /// Every record up to the target is replayed.
    Reached,
    /// The next record is a checkpoint marker, not passed yet: the state is
    /// the state at the marker (checkpoint it, then
    /// [`LogFollower::pass_marker`]).
    Marker { sequence: u64, timestamp: u64 },
    /// The slice's record count is used up; call again.
    Slice,
}

impl LogFollower {
    /// A follower whose state `ledger` holds every record up to `sequence`
    /// (with `timestamp`): what recovery returned.
    pub fn new(ledger: Ledger, sequence: u64, timestamp: u64) -> LogFollower {
        LogFollower {
            ledger,
            sequence,
            timestamp,
            commands: 0,
            results: Vec::new(),
        }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Sequence of the last record replayed or passed.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Commands replayed since the start.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// Replays the records after [`LogFollower::sequence`] up to `target`,
    /// at most `records_max` of them, stopping before a checkpoint marker.
    pub fn follow(
        &mut self,
        storage: &dyn Storage,
        target: u64,
        records_max: usize,
    ) -> Result<Followed, StorageError> {
        let mut left = records_max;
        while self.sequence < target {
            if left == 0 {
                return Ok(Followed::Slice);
            }
            let wanted = usize::try_from(target - self.sequence)
                .unwrap_or(usize::MAX)
                .min(left)
                .min(RECOVERY_PAGE_RECORDS);
            let page = storage.read_log(self.sequence, wanted)?;
            if page.is_empty() {
                // The target is past the log's end: nothing more to read.
                return Ok(Followed::Reached);
            }
            for (sequence, bytes) in page {
                let record = LogRecord::decode(&bytes)
                    .map_err(|error| corrupt(sequence, error.to_string()))?;
                check_record(sequence, &record, self.sequence, self.timestamp)?;
                match record.entry {
                    LogEntry::Checkpoint => {
                        return Ok(Followed::Marker {
                            sequence,
                            timestamp: record.timestamp,
                        })
                    }
                    LogEntry::Batch(commands) => {
                        // check_record: apply's assertions hold.
                        self.results.clear();
                        self.ledger.apply(
                            record.sequence,
                            record.timestamp,
                            &commands,
                            &mut self.results,
                        );
                        self.commands += commands.len() as u64;
                    }
                    LogEntry::RiskPolicy(policy) => {
                        self.ledger
                            .set_risk_policy(record.sequence, record.timestamp, *policy);
                    }
                }
                self.sequence = sequence;
                self.timestamp = record.timestamp;
                left -= 1;
            }
        }
        Ok(Followed::Reached)
    }

    /// Steps over the checkpoint marker [`LogFollower::follow`] stopped at.
    pub fn pass_marker(&mut self, sequence: u64, timestamp: u64) {
        assert_eq!(sequence, self.sequence + 1, "the marker is the next record");
        assert!(timestamp >= self.timestamp, "time never goes back");
        self.sequence = sequence;
        self.timestamp = timestamp;
    }
}
