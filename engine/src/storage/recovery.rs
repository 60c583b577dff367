//! Crash recovery: the newest checkpoint, then every log record after it.
//!
//! Disk data is input: a record that breaks the rules `Ledger::apply`
//! asserts (sequence strictly increasing, timestamp never going back) is
//! reported as corruption, never passed on. Log records are numbered
//! consecutively from 1, checkpoint markers included, so a missing number is
//! a lost record and also corruption.

use std::time::{Duration, Instant};

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
    // The commands of the batch before, handed back to the decoder: no
    // vector allocated per record.
    let mut spare: Vec<crate::Command> = Vec::new();
    // Even an empty batch changes the state (sequence, time, expiries).
    let mut batches_applied = false;

    'pages: loop {
        let page = storage.read_log(report.last_sequence, RECOVERY_PAGE_RECORDS)?;
        let page_len = page.len();
        if page_len == 0 {
            break;
        }
        for (index, (sequence, bytes)) in page.into_iter().enumerate() {
            let record = match LogRecord::decode_reusing(&bytes, std::mem::take(&mut spare)) {
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
            report.records_replayed += 1;
            report.last_sequence = record.sequence;
            report.last_timestamp = record.timestamp;
            match record.entry {
                LogEntry::RiskPolicy(policy) => {
                    // The same assertions hold as for a batch.
                    ledger.set_risk_policy(record.sequence, record.timestamp, *policy);
                    batches_applied = true;
                }
                LogEntry::Batch(commands) => spare = commands,
                LogEntry::Checkpoint => {}
            }
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
