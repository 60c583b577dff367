//! The engine's runtime: sequencer, log, execution and checkpoints, wired in
//! one place.
//!
//! ```text
//! EngineHandle::submit ──its lane (one bounded queue per gateway)──▶ (1) sequencer thread
//!                                           group: take from the lanes in turn (deficit round
//!                                           robin by commands, weighted by share), while the
//!                                           commands taken and not answered stay below a
//!                                           budget (engine/src/intake.rs)
//!                                           number: sequence + strictly increasing timestamp
//!                                           journal: one synced RocksDB write for the group
//!                                        ──queue──▶ (2) router thread (stage 2: `RouterStage` driving the `ShardedLedger`)
//!                                           route each batch to the shards, in log order
//!                                           (shard threads 0..N-1 apply it, exchanging
//!                                           verdicts for commands across two shards)
//!                                           reply: results to the submitter's callback
//!                                        ──(at checkpoint markers)──▶ (3) checkpoint thread
//!                                           wait for the history writer to reach the marker,
//!                                           merge the shards' copies into one state,
//!                                           encode + digest it, save, trim the log
//!                                        ──(each batch's movements, from every shard)──▶ (4) history writer thread
//!                                           append them to the history segment files, off the hot path
//! ```
//!
//! Metrics (docs/operations.md) are recorded once per group commit and once
//! per batch, never per command.
//!
//! Invariant 1 (durable before acknowledged): a batch reaches the router
//! only after `Storage::append` returned Ok for the write that holds it, and
//! replies are sent only by the router. A failed write fails every batch in
//! it with `StorageFailed` and the engine stops accepting writes (later batches
//! get `Unavailable`); queries are still answered.
//!
//! Invariant 2 (state is a function of the log): the only inputs of the ledger
//! are the logged batches with their sequence numbers and timestamps; the wall
//! clock is read here, once per batch, and written into the log.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam::channel::{self, Receiver, Sender, TryRecvError, TrySendError};
use crossbeam::sync::Parker;

use crate::command::{Command, CommandResult, Query, QueryReply};
use crate::history::MovementChunk;
use crate::history_writer::{
    wait_for_history, HistoryJob, HistoryWriter, HISTORY_JOB_MOVEMENTS_MIN, HISTORY_QUEUE_JOBS,
};
pub use crate::intake::LaneError;
use crate::intake::{Intake, LaneHandle, PushError, Scheduler};
use crate::ledger::memory::{TableUse, TABLES, TABLE_ENTRIES_FIELDS, TABLE_NAMES};
use crate::ledger::LedgerConfig;
use crate::limits;
use crate::risk::{RiskCounters, RiskPolicy, RuleId, Verdict as RiskVerdict};
use crate::shard::{ShardError, ShardedLedger};
use crate::status::Status;
use crate::storage::{self, LogEntry, LogRecord, RecoveryReport, Storage, StorageError};

/// A callback that receives a request's answer, called exactly once from an
/// engine thread. It must not block.
pub type Reply<T> = Box<dyn FnOnce(T) + Send>;

/// Tuning of the pipeline. Every queue is bounded.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub ledger: LedgerConfig,
    /// Requests waiting for the sequencer in the engine's own lane (the
    /// handle `Engine::handle` gives); past it, `submit` says `Overloaded`.
    /// Other lanes have their own bound ([`EngineHandle::open_lane`]).
    pub queue_depth: usize,
    /// Commands the sequencer took from the lanes and that are not answered
    /// yet (being logged, routed or executed), at most: it takes more only
    /// below this (the last request taken may go past it). What waits beyond
    /// it waits in the lanes, where the turns are fair; what is within it
    /// is first come, first served. Small: another gateway's request waits
    /// behind up to this much work; large enough to keep the log and the
    /// shards busy at once.
    pub in_flight_commands_max: usize,
    /// Most commands in one group commit (one synced write).
    pub group_commands_max: usize,
    /// Checkpoint after this many commands were logged since the last one ...
    pub checkpoint_commands: u64,
    /// ... or after this much time with at least one command logged.
    pub checkpoint_interval: Duration,
    /// Shards (state-machine threads); 0: the default, [`default_shards`].
    pub shards: usize,
    /// Keep movement history (when the storage can): the shards emit
    /// movements and the history writer stores them.
    pub history: bool,
    /// Touch every page of the tables allocated at start before serving
    /// (the server does; tests that start many engines do not).
    pub prefault: bool,
}

impl EngineConfig {
    /// The shard count `shards` asks for: itself, or the default for the
    /// cores available (see [`default_shards`]).
    pub fn shards_resolved(&self) -> usize {
        if self.shards == 0 {
            default_shards(std::thread::available_parallelism().map_or(1, usize::from))
        } else {
            self.shards
        }
    }
}

/// The default shard count on a machine with `cores` cores: the cores left
/// once the stages that run beside the shards have theirs
/// ([`limits::ENGINE_THREADS_BESIDE_SHARDS`]: the router and the sequencer
/// with its log writes; the network tasks and history writer share what is
/// left), at least one. A shard more than that competes for a core with the
/// router, and a command split over two shards costs both of them a verdict
/// exchange: measured on 2 cores, 2 shards run below 1 (docs/architecture.md).
pub fn default_shards(cores: usize) -> usize {
    cores
        .saturating_sub(limits::ENGINE_THREADS_BESIDE_SHARDS)
        .clamp(1, limits::SHARDS_MAX)
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ledger: LedgerConfig::default(),
            queue_depth: 65_536,
            in_flight_commands_max: 16_384,
            group_commands_max: 131_072,
            checkpoint_commands: 20_000_000,
            checkpoint_interval: Duration::from_secs(300),
            shards: 0,
            history: true,
            prefault: false,
        }
    }
}

/// Why a request was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SubmitError {
    #[error("the engine's queue is full; retry later")]
    Overloaded,
    #[error("the engine is shutting down")]
    ShuttingDown,
}

/// Errors that stop the engine from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("recovery failed: {0}")]
    Recovery(#[from] StorageError),
    #[error("could not start an engine thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("could not start the shards: {0}")]
    Shards(#[from] ShardError),
    #[error("could not open the engine's lane: {0}")]
    Lane(#[from] LaneError),
}

/// Counters a running engine keeps, for `payrail status` and metrics.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub batches_logged: AtomicU64,
    pub commands_logged: AtomicU64,
    pub commands_applied: AtomicU64,
    pub group_writes: AtomicU64,
    pub log_bytes_written: AtomicU64,
    pub log_write_ns_total: AtomicU64,
    pub last_sequence: AtomicU64,
    pub checkpoints: AtomicU64,
    pub checkpoint_sequence: AtomicU64,
    pub checkpoint_pause_ns_last: AtomicU64,
    pub checkpoint_write_ns_last: AtomicU64,
    /// What recovery did at start: its time, the commands it replayed and
    /// their rate.
    pub recovery_ns: AtomicU64,
    pub recovery_commands: AtomicU64,
    pub recovery_commands_per_second: AtomicU64,
    pub queries: AtomicU64,
    /// Set once a log write failed; writes are refused from then on.
    pub write_failed: AtomicBool,
    /// Shards running.
    pub shards: AtomicU64,
    /// Commands (or halves) each shard executed, by shard.
    pub shard_steps: Vec<AtomicU64>,
    /// Segments waiting in each shard's queue, by shard (sampled per batch).
    pub shard_queue_depths: Vec<AtomicU64>,
    /// Movements each shard handed to the history writer, by shard.
    pub shard_movements: Vec<AtomicU64>,
    /// Two-party commands whose accounts were on two shards.
    pub pairs_split: AtomicU64,
    /// Times the router waited for in-flight results before routing on.
    pub router_flushes: AtomicU64,
    /// The router's idempotency record table: records it has room for
    /// (allocated at start, never more), bytes it takes, records kept.
    pub idempotency_records_capacity: AtomicU64,
    pub idempotency_table_bytes: AtomicU64,
    pub idempotency_records: AtomicU64,
    /// The ledger's per-command tables (`ledger::memory`), counted at start
    /// and at every checkpoint: `[table][entries, entries per account,
    /// entries beside, bytes an entry, accounts]`, and the sequence they were
    /// counted at.
    pub tables: [[AtomicU64; 5]; TABLES],
    pub tables_counted_sequence: AtomicU64,
    /// Wall-clock time (ns since the epoch) the last checkpoint was saved.
    pub checkpoint_unix_ns: AtomicU64,
    /// Every batch up to this sequence is in the history: every shard has
    /// handed over its movements of it and the writer has written them.
    pub history_watermark: AtomicU64,
    pub history_movements: AtomicU64,
    /// Set once a history write failed.
    pub history_failed: AtomicBool,
    /// Payments the risk rules evaluated (since start, the replay at start
    /// included), over all shards.
    pub risk_evaluated: AtomicU64,
    /// `[rule code][verdict code]`: payments whose verdict that rule decided.
    pub risk_decided: [[AtomicU64; 4]; 16],
}

impl EngineStats {
    /// Stores the tables' use, counted at `sequence`.
    pub fn publish_tables(&self, tables: &[TableUse; TABLES], sequence: u64) {
        for (gauges, table) in self.tables.iter().zip(tables) {
            let values = [
                table.entries,
                table.entries_per_account,
                table.entries_fixed,
                table.entry_bytes,
                table.accounts,
            ];
            for (gauge, value) in gauges.iter().zip(values) {
                gauge.store(value, Ordering::Relaxed);
            }
        }
        self.tables_counted_sequence
            .store(sequence, Ordering::Relaxed);
    }

    /// The tables' use as last counted.
    pub fn tables(&self) -> [TableUse; TABLES] {
        std::array::from_fn(|index| {
            let gauges = &self.tables[index];
            let get = |field: usize| gauges[field].load(Ordering::Relaxed);
            TableUse {
                name: TABLE_NAMES[index],
                entries: get(0),
                entries_per_account: get(1),
                entries_fixed: get(2),
                entry_bytes: get(3),
                accounts: get(4),
            }
        })
    }

    /// Commands (or halves) each running shard executed.
    pub fn shard_steps(&self) -> Vec<u64> {
        load_all(&self.shard_steps)
    }

    /// (rule, verdict, payments) for every rule that decided a payment's
    /// verdict at least once, in code order.
    pub fn risk_decisions(&self) -> Vec<(RuleId, RiskVerdict, u64)> {
        let mut counters = RiskCounters::default();
        for (row, atomics) in counters.decided.iter_mut().zip(&self.risk_decided) {
            for (cell, atomic) in row.iter_mut().zip(atomics) {
                *cell = atomic.load(Ordering::Relaxed);
            }
        }
        counters.iter().collect()
    }

    /// Per-shard counters: (name, one value per shard), for `payrail status`.
    pub fn per_shard(&self) -> Vec<(&'static str, Vec<u64>)> {
        vec![
            ("shard_steps", load_all(&self.shard_steps)),
            ("shard_queue_depth", load_all(&self.shard_queue_depths)),
            ("shard_movements", load_all(&self.shard_movements)),
        ]
    }
}

fn load_all(counters: &[AtomicU64]) -> Vec<u64> {
    counters
        .iter()
        .map(|counter| counter.load(Ordering::Relaxed))
        .collect()
}

impl EngineStats {
    /// Name and value of every counter.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut fields = vec![
            ("batches_logged", get(&self.batches_logged)),
            ("commands_logged", get(&self.commands_logged)),
            ("commands_applied", get(&self.commands_applied)),
            ("group_writes", get(&self.group_writes)),
            ("log_bytes_written", get(&self.log_bytes_written)),
            ("log_write_ns_total", get(&self.log_write_ns_total)),
            ("last_sequence", get(&self.last_sequence)),
            ("checkpoints", get(&self.checkpoints)),
            ("checkpoint_sequence", get(&self.checkpoint_sequence)),
            (
                "checkpoint_pause_ns_last",
                get(&self.checkpoint_pause_ns_last),
            ),
            (
                "checkpoint_write_ns_last",
                get(&self.checkpoint_write_ns_last),
            ),
            ("recovery_ns", get(&self.recovery_ns)),
            ("recovery_commands", get(&self.recovery_commands)),
            (
                "recovery_commands_per_second",
                get(&self.recovery_commands_per_second),
            ),
            ("queries", get(&self.queries)),
            ("shards", get(&self.shards)),
            ("pairs_split", get(&self.pairs_split)),
            ("router_flushes", get(&self.router_flushes)),
            (
                "idempotency_records_capacity",
                get(&self.idempotency_records_capacity),
            ),
            (
                "idempotency_table_bytes",
                get(&self.idempotency_table_bytes),
            ),
            ("idempotency_records", get(&self.idempotency_records)),
        ];
        let tables = self.tables();
        for (table, [entries, entries_max]) in tables.iter().zip(TABLE_ENTRIES_FIELDS) {
            fields.push((entries, table.entries));
            fields.push((entries_max, table.entries_max(table.accounts)));
        }
        fields.push((
            "tables_bytes",
            tables
                .iter()
                .map(TableUse::bytes)
                .fold(0, u64::saturating_add),
        ));
        fields.push((
            "tables_budget_bytes",
            tables
                .iter()
                .map(|table| table.budget_bytes(table.accounts))
                .fold(0, u64::saturating_add),
        ));
        fields.push((
            "tables_counted_sequence",
            get(&self.tables_counted_sequence),
        ));
        fields.extend([
            ("risk_evaluated", get(&self.risk_evaluated)),
            (
                "write_failed",
                u64::from(self.write_failed.load(Ordering::Relaxed)),
            ),
            ("checkpoint_unix_ns", get(&self.checkpoint_unix_ns)),
            ("history_watermark", get(&self.history_watermark)),
            ("history_movements", get(&self.history_movements)),
            (
                "history_failed",
                u64::from(self.history_failed.load(Ordering::Relaxed)),
            ),
        ]);
        fields
    }
}

enum Request {
    Batch {
        commands: Vec<Command>,
        /// `Command::fingerprint` of each, computed by the submitter's
        /// thread so the ordered stages do not.
        fingerprints: Vec<u64>,
        reply: Reply<Vec<CommandResult>>,
    },
    Query {
        queries: Vec<Query>,
        reply: Reply<Vec<QueryReply>>,
    },
    /// Take a checkpoint now; the reply comes when it is saved. If one is
    /// still being written at the marker: with `wait` (asked for, and the
    /// final one of a stop) the router waits for it; otherwise (periodic)
    /// none is taken at this marker.
    Checkpoint {
        reply: Reply<Result<u64, String>>,
        wait: bool,
    },
    /// Put a risk policy in force through the log.
    RiskPolicy {
        policy: Box<RiskPolicy>,
        reply: Reply<Result<[u8; 32], Status>>,
    },
    /// Stop (the sequencer puts it last in its final group).
    Shutdown,
}

enum Execute {
    Batch {
        sequence: u64,
        timestamp: u64,
        commands: Vec<Command>,
        fingerprints: Vec<u64>,
        reply: Reply<Vec<CommandResult>>,
    },
    Query {
        queries: Vec<Query>,
        reply: Reply<Vec<QueryReply>>,
    },
    Checkpoint {
        sequence: u64,
        timestamp: u64,
        reply: Option<Reply<Result<u64, String>>>,
        /// See `Request::Checkpoint`.
        wait: bool,
    },
    RiskPolicy {
        sequence: u64,
        timestamp: u64,
        policy: Box<RiskPolicy>,
        reply: Reply<Result<[u8; 32], Status>>,
    },
    Shutdown,
}

/// A checkpoint marker the router passed, for the checkpointer: the
/// history writer has been sent every batch before it, and the process
/// forked at the marker streams the state there
/// (`crate::checkpoint_process`).
struct CheckpointJob {
    sequence: u64,
    timestamp: u64,
    reply: Option<Reply<Result<u64, String>>>,
    image: StateImage,
    /// A periodic checkpoint (not one asked for, nor a stop's final one):
    /// the engine goes on serving after it.
    periodic: bool,
}

/// Where a checkpoint job's state comes from.
enum StateImage {
    /// The forked process that streams it (Linux).
    #[cfg(target_os = "linux")]
    Forked(crate::checkpoint_process::Forked),
    /// A copy taken at the marker (elsewhere: the forked process's pipe,
    /// descriptor closing and scheduling calls are Linux's): merged and
    /// saved by the checkpoint thread, the shards waiting for the copy.
    #[cfg(not(target_os = "linux"))]
    Copied(crate::shard::ShardedState),
}

/// Checkpoint jobs waiting for the checkpointer: one checkpoint is made at
/// a time (each has a forked process holding the memory it was forked
/// with), see `RouterStage::checkpoint_at`.
const CHECKPOINT_QUEUE_JOBS: usize = 1;
/// Longest the router waits at a marker whose checkpoint was asked for
/// while the previous one is still being written.
const CHECKPOINT_BUSY_WAIT_MAX: Duration = Duration::from_secs(600);

/// A cheap, clonable handle for submitting work to a running engine. Its
/// requests wait in its lane, in order; the sequencer takes them in turn
/// with other lanes' ([`EngineHandle::open_lane`]).
#[derive(Clone)]
pub struct EngineHandle {
    lane: LaneHandle<Request>,
    stats: Arc<EngineStats>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle").finish_non_exhaustive()
    }
}

impl EngineHandle {
    fn send(&self, request: Request) -> Result<(), SubmitError> {
        self.lane.push(request).map_err(|error| match error {
            PushError::Full(_) => SubmitError::Overloaded,
            PushError::Closed(_) => SubmitError::ShuttingDown,
        })
    }

    /// A handle on a lane of its own (one per gateway): its requests wait
    /// there, in order, up to `requests_max` of them (past it,
    /// `Overloaded`), and the sequencer takes from each busy lane in turn,
    /// `share` times [`limits::LANE_QUANTUM_COMMANDS`] commands per turn.
    /// Lanes are never closed; an engine has at most [`limits::LANES_MAX`].
    pub fn open_lane(&self, share: u32, requests_max: usize) -> Result<EngineHandle, LaneError> {
        Ok(EngineHandle {
            lane: self.lane.open_lane(share, requests_max)?,
            stats: Arc::clone(&self.stats),
        })
    }

    /// `reply`, then the commands it answers go back to the budget of
    /// commands in flight (`EngineConfig::in_flight_commands_max`).
    fn releasing<T: 'static>(&self, commands: usize, reply: Reply<T>) -> Reply<T> {
        let intake = Arc::clone(self.lane.intake());
        Box::new(move |answer| {
            reply(answer);
            intake.release(commands as u64);
        })
    }

    /// Queues a batch; `reply` gets one result per command, in order, once the
    /// batch is durable and applied (or failed).
    pub fn submit(
        &self,
        commands: Vec<Command>,
        reply: Reply<Vec<CommandResult>>,
    ) -> Result<(), SubmitError> {
        // Work that needs no log order is done here, on the caller's
        // thread (a connection task), not on the sequencer or router.
        let fingerprints = commands.iter().map(Command::fingerprint).collect();
        let reply = self.releasing(commands.len(), reply);
        self.send(Request::Batch {
            commands,
            fingerprints,
            reply,
        })
    }

    /// Queues read-only queries; they see every batch submitted before them.
    pub fn query(
        &self,
        queries: Vec<Query>,
        reply: Reply<Vec<QueryReply>>,
    ) -> Result<(), SubmitError> {
        let reply = self.releasing(queries.len(), reply);
        self.send(Request::Query { queries, reply })
    }

    /// Asks for a checkpoint now; `reply` gets its sequence number once
    /// saved. One is made at a time: if the previous one is still being
    /// written at this request's marker, the engine waits for it first.
    pub fn checkpoint(&self, reply: Reply<Result<u64, String>>) -> Result<(), SubmitError> {
        self.send(Request::Checkpoint { reply, wait: true })
    }

    /// Puts a risk policy in force: logged like a batch (its own record,
    /// durable before the reply), then applied between the batches before
    /// and after it. `reply` gets the policy's digest, or `StorageFailed` /
    /// `Unavailable` if it could not be logged.
    pub fn set_risk_policy(
        &self,
        policy: RiskPolicy,
        reply: Reply<Result<[u8; 32], Status>>,
    ) -> Result<(), SubmitError> {
        self.send(Request::RiskPolicy {
            policy: Box::new(policy),
            reply,
        })
    }

    /// `set_risk_policy` and wait.
    pub fn set_risk_policy_blocking(
        &self,
        policy: RiskPolicy,
    ) -> Result<Result<[u8; 32], Status>, SubmitError> {
        let (sender, receiver) = channel::bounded(1);
        self.set_risk_policy(
            policy,
            Box::new(move |outcome| {
                let _ = sender.send(outcome);
            }),
        )?;
        receiver.recv().map_err(|_| SubmitError::ShuttingDown)
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }

    /// Submits and waits, for tools and tests outside an async runtime.
    pub fn submit_blocking(
        &self,
        commands: Vec<Command>,
    ) -> Result<Vec<CommandResult>, SubmitError> {
        let (sender, receiver) = channel::bounded(1);
        self.submit(
            commands,
            Box::new(move |results| drop(sender.send(results))),
        )?;
        receiver.recv().map_err(|_| SubmitError::ShuttingDown)
    }

    /// Queries and waits.
    pub fn query_blocking(&self, queries: Vec<Query>) -> Result<Vec<QueryReply>, SubmitError> {
        let (sender, receiver) = channel::bounded(1);
        self.query(queries, Box::new(move |replies| drop(sender.send(replies))))?;
        receiver.recv().map_err(|_| SubmitError::ShuttingDown)
    }

    /// Checkpoints and waits.
    pub fn checkpoint_blocking(&self) -> Result<Result<u64, String>, SubmitError> {
        let (sender, receiver) = channel::bounded(1);
        self.checkpoint(Box::new(move |outcome| drop(sender.send(outcome))))?;
        receiver.recv().map_err(|_| SubmitError::ShuttingDown)
    }
}

/// A running engine. Dropping it stops the threads as `shutdown` does.
pub struct Engine {
    handle: EngineHandle,
    threads: Vec<JoinHandle<()>>,
    recovery: RecoveryReport,
    /// Tells the checkpointer to stop following the log at once (a stop
    /// without a final checkpoint).
    stopping: Arc<AtomicBool>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Recovers the state from `storage` (checkpoint plus log replay) and
    /// starts the pipeline threads.
    pub fn start<S: Storage + Clone>(
        mut storage: S,
        config: EngineConfig,
    ) -> Result<Engine, EngineError> {
        // The checkpoints are made by a process forked at each marker
        // (`crate::checkpoint_process`): the engine keeps one copy of the
        // state, the shards'.
        let (ledger, recovery) =
            storage::recover_for_engine(&mut storage, config.ledger, config.history)?;
        let tables = ledger.tables();
        let keeps_history = config.history && storage.keeps_history();
        // The recovered state is one lone ledger's; split it over the shards
        // (whatever their number was before the restart).
        let shards = config.shards_resolved();
        let splitting = Instant::now();
        let mut ledger = ShardedLedger::from_ledger(ledger, shards)?;
        tracing::info!(
            shards,
            ms = splitting.elapsed().as_millis() as u64,
            "state split over the shards"
        );
        ledger.record_history(keeps_history)?;
        if config.prefault {
            let started = Instant::now();
            ledger.prefault();
            tracing::info!(
                ms = started.elapsed().as_millis() as u64,
                "idempotency record table touched"
            );
        }
        let (records_capacity, records_bytes, records_kept) = ledger.record_table();
        let history_storage = storage.clone();
        // The checkpoint thread gets its own handle on the same storage, so a
        // large checkpoint write never holds up log appends.
        let checkpoint_storage = storage.clone();
        let stats = Arc::new(EngineStats {
            shard_steps: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            shard_queue_depths: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            shard_movements: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            ..EngineStats::default()
        });
        stats
            .last_sequence
            .store(recovery.last_sequence, Ordering::Relaxed);
        stats
            .checkpoint_sequence
            .store(recovery.checkpoint_sequence, Ordering::Relaxed);
        stats.recovery_ns.store(
            u64::try_from(recovery.elapsed.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        stats
            .recovery_commands
            .store(recovery.commands_replayed, Ordering::Relaxed);
        stats
            .recovery_commands_per_second
            .store(recovery.commands_per_second(), Ordering::Relaxed);
        stats.shards.store(shards as u64, Ordering::Relaxed);
        stats
            .idempotency_records_capacity
            .store(records_capacity as u64, Ordering::Relaxed);
        stats
            .idempotency_table_bytes
            .store(records_bytes as u64, Ordering::Relaxed);
        stats
            .idempotency_records
            .store(records_kept as u64, Ordering::Relaxed);
        stats.publish_tables(&tables, recovery.last_sequence);
        // Recovery brought the history up to the last record.
        stats
            .history_watermark
            .store(recovery.last_sequence, Ordering::Relaxed);
        let (history_sender, history_receiver) = channel::bounded::<HistoryJob>(HISTORY_QUEUE_JOBS);

        let (intake, parker) = Intake::new();
        let lane = intake.open_lane(1, config.queue_depth.max(1))?;
        // The router's queue holds whole groups' worth of batches; it is
        // bounded so a slow router pushes back on the sequencer.
        let (execute_sender, execute_receiver) = channel::bounded(config.queue_depth.max(1));
        let (checkpoint_sender, checkpoint_receiver) =
            channel::bounded::<CheckpointJob>(CHECKPOINT_QUEUE_JOBS);
        let stopping = Arc::new(AtomicBool::new(false));
        let checkpoint_busy = Arc::new(AtomicBool::new(false));

        let sequencer = Sequencer {
            storage,
            intake,
            parker,
            lanes: Scheduler::default(),
            execute: execute_sender,
            stats: Arc::clone(&stats),
            sequence: recovery.last_sequence,
            timestamp: recovery.last_timestamp,
            config: config.clone(),
            commands_since_checkpoint: recovery.commands_replayed,
            last_checkpoint: Instant::now(),
            failed: false,
        };
        let router = RouterStage {
            ledger,
            execute: execute_receiver,
            checkpoints: checkpoint_sender,
            stats: Arc::clone(&stats),
            replies: std::collections::VecDeque::new(),
            query_replies: std::collections::VecDeque::new(),
            history: keeps_history.then_some(history_sender),
            gathered: Vec::new(),
            gathered_movements: 0,
            gathered_sequence: 0,
            gathered_since: Instant::now(),
            tally: Vec::new(),
            checkpoint_busy: Arc::clone(&checkpoint_busy),
        };
        let checkpointer = Checkpointer {
            storage: checkpoint_storage,
            jobs: checkpoint_receiver,
            stats: Arc::clone(&stats),
            wait_for_history: keeps_history,
            stopping: Arc::clone(&stopping),
            busy: checkpoint_busy,
        };
        let history_writer = HistoryWriter {
            storage: history_storage,
            jobs: history_receiver,
            stats: Arc::clone(&stats),
        };

        let threads = vec![
            std::thread::Builder::new()
                .name("payrail-sequencer".into())
                .spawn(move || sequencer.run())?,
            std::thread::Builder::new()
                .name("payrail-router".into())
                .spawn(move || router.run())?,
            std::thread::Builder::new()
                .name("payrail-checkpoint".into())
                .spawn(move || checkpointer.run())?,
            // Without history it finds its channel closed and ends at once.
            std::thread::Builder::new()
                .name("payrail-history".into())
                .spawn(move || history_writer.run())?,
        ];
        Ok(Engine {
            handle: EngineHandle { lane, stats },
            threads,
            recovery,
            stopping,
        })
    }

    pub fn handle(&self) -> EngineHandle {
        self.handle.clone()
    }

    /// What recovery found at start.
    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Finishes everything queued (every command logged before it is
    /// durable and answered, its movements handed to the history writer)
    /// and stops, without a final checkpoint: the next start replays the
    /// log after the last checkpoint (docs/operations.md, "Stopping").
    pub fn shutdown(mut self) {
        self.stop(false);
    }

    /// [`Engine::shutdown`], then a final checkpoint, so that the next start
    /// replays nothing: the checkpointer catches up with the log and writes
    /// the whole state, which takes as long as a checkpoint does.
    pub fn shutdown_with_checkpoint(mut self) {
        self.stop(true);
    }

    fn stop(&mut self, checkpoint: bool) {
        if !checkpoint {
            // A checkpoint being made is abandoned (the log is kept).
            self.stopping.store(true, Ordering::Relaxed);
        }
        // New requests are refused from now on; the sequencer takes what
        // the lanes hold, then stops.
        self.handle.lane.intake().request_stop(checkpoint);
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("an engine thread panicked");
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.stop(false);
        }
    }
}

/// Stage 1: takes from the lanes, numbers, logs and forwards. Owns the
/// sequence counter.
struct Sequencer<S: Storage> {
    storage: S,
    intake: Arc<Intake<Request>>,
    /// Where the sequencer waits for requests or room; pushes and releases
    /// unpark it.
    parker: Parker,
    lanes: Scheduler<Request>,
    execute: Sender<Execute>,
    stats: Arc<EngineStats>,
    sequence: u64,
    timestamp: u64,
    config: EngineConfig,
    commands_since_checkpoint: u64,
    last_checkpoint: Instant,
    failed: bool,
}

/// What one group commit carries, in arrival order.
enum Grouped {
    Logged(Execute),
    Unlogged(Execute),
}

/// Most requests in one group commit (each is at least one record or one
/// query batch; the group's commands are bounded by `group_commands_max`).
const GROUP_REQUESTS_MAX: usize = 65_536;
/// Longest the sequencer sleeps with nothing to do, so a due checkpoint is
/// taken on time.
const SEQUENCER_IDLE_WAKE: Duration = Duration::from_millis(100);

impl<S: Storage> Sequencer<S> {
    fn run(mut self) {
        let mut group: Vec<Request> = Vec::new();
        let budget = (self.config.in_flight_commands_max as u64).max(1);
        let group_commands_max = (self.config.group_commands_max as u64).max(1);
        loop {
            self.lanes.refresh(&self.intake);
            if let Some(checkpoint) = self.intake.stop_requested() {
                self.finish(&mut group, checkpoint);
                return;
            }
            // Take from the lanes in turn, within the room the budget of
            // commands in flight leaves (group commit: everything taken
            // goes in one synced write).
            let room = budget
                .saturating_sub(self.intake.in_flight_commands())
                .min(group_commands_max);
            let taken = if room > 0 {
                self.lanes
                    .take(room, GROUP_REQUESTS_MAX, request_commands, &mut group)
            } else {
                0
            };
            if group.is_empty() {
                if self.checkpoint_due() {
                    group.push(Request::Checkpoint {
                        reply: Box::new(|_| {}),
                        wait: false,
                    });
                    self.commit(&mut group);
                    continue;
                }
                let intake = Arc::clone(&self.intake);
                self.intake.wait(
                    &self.parker,
                    room == 0,
                    || intake.in_flight_commands() < budget,
                    SEQUENCER_IDLE_WAKE,
                );
                continue;
            }
            // Released by each request's reply (EngineHandle::releasing).
            self.intake.take_budget(taken);
            if self.checkpoint_due() {
                group.push(Request::Checkpoint {
                    reply: Box::new(|_| {}),
                    wait: false,
                });
            }
            self.commit(&mut group);
        }
    }

    /// Stops: takes every request the lanes still hold (no more come in:
    /// the intake is closed), then the final checkpoint if asked, then tells
    /// the router to stop after all of it.
    fn finish(&mut self, group: &mut Vec<Request>, checkpoint: bool) {
        loop {
            self.lanes.refresh(&self.intake);
            self.lanes.take(
                self.config.group_commands_max.max(1) as u64,
                GROUP_REQUESTS_MAX,
                request_commands,
                group,
            );
            if group.is_empty() {
                break;
            }
            let taken = group.iter().map(request_commands).sum();
            self.intake.take_budget(taken);
            self.commit(group);
        }
        if checkpoint {
            // A final checkpoint, so the next start replays nothing.
            group.push(Request::Checkpoint {
                reply: Box::new(|_| {}),
                wait: true,
            });
        }
        group.push(Request::Shutdown);
        self.commit(group);
    }

    fn checkpoint_due(&self) -> bool {
        self.commands_since_checkpoint >= self.config.checkpoint_commands
            || (self.commands_since_checkpoint > 0
                && self.last_checkpoint.elapsed() >= self.config.checkpoint_interval)
    }

    /// Next timestamp: the wall clock in ns, but strictly after the last one.
    fn next_timestamp(&mut self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            });
        self.timestamp = now.max(self.timestamp.saturating_add(1));
        self.timestamp
    }

    /// Logs the group in one synced write, then forwards it in order.
    fn commit(&mut self, group: &mut Vec<Request>) {
        let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut forward: Vec<Grouped> = Vec::with_capacity(group.len());
        let mut commands_logged = 0u64;
        for request in group.drain(..) {
            match request {
                Request::Batch {
                    commands, reply, ..
                } if self.failed => {
                    let results = vec![CommandResult::new(Status::Unavailable); commands.len()];
                    reply(results);
                }
                Request::Batch {
                    commands,
                    fingerprints,
                    reply,
                } => {
                    self.sequence += 1;
                    let timestamp = self.next_timestamp();
                    let record = LogRecord {
                        sequence: self.sequence,
                        timestamp,
                        entry: LogEntry::Batch(commands),
                    };
                    let mut bytes = Vec::new();
                    record.encode(&mut bytes);
                    records.push((self.sequence, bytes));
                    // Take the commands back out of the record just encoded.
                    let commands = match record.entry {
                        LogEntry::Batch(commands) => commands,
                        LogEntry::Checkpoint | LogEntry::RiskPolicy(_) => Vec::new(),
                    };
                    commands_logged += commands.len() as u64;
                    forward.push(Grouped::Logged(Execute::Batch {
                        sequence: self.sequence,
                        timestamp,
                        commands,
                        fingerprints,
                        reply,
                    }));
                }
                Request::Checkpoint { reply, .. } if self.failed => {
                    reply(Err("the log is failed; no checkpoint taken".to_owned()));
                }
                Request::Checkpoint { reply, wait } => {
                    self.sequence += 1;
                    let timestamp = self.next_timestamp();
                    let record = LogRecord {
                        sequence: self.sequence,
                        timestamp,
                        entry: LogEntry::Checkpoint,
                    };
                    let mut bytes = Vec::new();
                    record.encode(&mut bytes);
                    records.push((self.sequence, bytes));
                    self.commands_since_checkpoint = 0;
                    self.last_checkpoint = Instant::now();
                    forward.push(Grouped::Logged(Execute::Checkpoint {
                        sequence: self.sequence,
                        timestamp,
                        reply: Some(reply),
                        wait,
                    }));
                }
                Request::RiskPolicy { reply, .. } if self.failed => {
                    reply(Err(Status::Unavailable));
                }
                Request::RiskPolicy { policy, reply } => {
                    self.sequence += 1;
                    let timestamp = self.next_timestamp();
                    let record = LogRecord {
                        sequence: self.sequence,
                        timestamp,
                        entry: LogEntry::RiskPolicy(policy),
                    };
                    let mut bytes = Vec::new();
                    record.encode(&mut bytes);
                    records.push((self.sequence, bytes));
                    let LogEntry::RiskPolicy(policy) = record.entry else {
                        // Built just above as a policy record.
                        continue;
                    };
                    forward.push(Grouped::Logged(Execute::RiskPolicy {
                        sequence: self.sequence,
                        timestamp,
                        policy,
                        reply,
                    }));
                }
                Request::Query { queries, reply } => {
                    forward.push(Grouped::Unlogged(Execute::Query { queries, reply }));
                }
                Request::Shutdown => forward.push(Grouped::Unlogged(Execute::Shutdown)),
            }
        }

        let mut written = true;
        if !records.is_empty() {
            let started = Instant::now();
            let bytes: usize = records.iter().map(|(_, record)| record.len()).sum();
            match self.storage.append(&records) {
                Ok(()) => {
                    let stats = &self.stats;
                    stats.group_writes.fetch_add(1, Ordering::Relaxed);
                    stats
                        .batches_logged
                        .fetch_add(records.len() as u64, Ordering::Relaxed);
                    stats
                        .commands_logged
                        .fetch_add(commands_logged, Ordering::Relaxed);
                    stats
                        .log_bytes_written
                        .fetch_add(bytes as u64, Ordering::Relaxed);
                    let write_ns = elapsed_ns(started);
                    stats
                        .log_write_ns_total
                        .fetch_add(write_ns, Ordering::Relaxed);
                    metrics::histogram!("payrail_log_write_seconds").record(write_ns as f64 / 1e9);
                    metrics::histogram!("payrail_group_commands").record(commands_logged as f64);
                    metrics::gauge!("payrail_sequencer_queue_depth")
                        .set(self.lanes.queued() as f64);
                    stats.last_sequence.store(self.sequence, Ordering::Relaxed);
                    self.commands_since_checkpoint += commands_logged;
                }
                Err(error) => {
                    tracing::error!(%error, "log write failed: failing its commands and refusing writes from now on");
                    self.failed = true;
                    self.stats.write_failed.store(true, Ordering::Relaxed);
                    written = false;
                }
            }
        }

        for item in forward {
            let execute = match item {
                Grouped::Logged(execute) if !written => {
                    fail(execute);
                    continue;
                }
                Grouped::Logged(execute) | Grouped::Unlogged(execute) => execute,
            };
            if let Err(channel::SendError(execute)) = self.execute.send(execute) {
                // The router is gone (it only stops after Shutdown).
                fail(execute);
            }
        }
    }
}

/// What a request costs in the lanes' turns and the budget of commands in
/// flight: its commands or queries (the replies of these release them);
/// checkpoints and policies cost nothing.
fn request_commands(request: &Request) -> u64 {
    match request {
        Request::Batch { commands, .. } => commands.len() as u64,
        Request::Query { queries, .. } => queries.len() as u64,
        Request::Checkpoint { .. } | Request::RiskPolicy { .. } | Request::Shutdown => 0,
    }
}

/// Answers a request that will not be executed.
fn fail(execute: Execute) {
    match execute {
        Execute::Batch {
            commands, reply, ..
        } => {
            reply(vec![
                CommandResult::new(Status::StorageFailed);
                commands.len()
            ]);
        }
        Execute::Query { queries, reply } => {
            reply(vec![
                QueryReply::Refused(Status::Unavailable);
                queries.len()
            ]);
        }
        Execute::Checkpoint {
            reply: Some(reply), ..
        } => reply(Err("the log write failed".to_owned())),
        Execute::RiskPolicy { reply, .. } => reply(Err(Status::StorageFailed)),
        Execute::Checkpoint { reply: None, .. } | Execute::Shutdown => {}
    }
}

fn elapsed_ns(since: Instant) -> u64 {
    u64::try_from(since.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// How long the executor keeps gathered movements when no batch arrives.
const HISTORY_GATHER_IDLE: Duration = Duration::from_millis(1);
/// How long the executor keeps gathered movements while batches keep
/// coming (fewer than [`HISTORY_JOB_MOVEMENTS_MIN`] of them).
const HISTORY_GATHER_AGE_MAX: Duration = Duration::from_millis(50);

/// Stage 2: routes logged batches to the shards in order and replies.
struct RouterStage {
    ledger: ShardedLedger,
    execute: Receiver<Execute>,
    checkpoints: Sender<CheckpointJob>,
    stats: Arc<EngineStats>,
    /// The batches in flight on the shards, oldest first: their commands
    /// (for metrics) and reply.
    replies: std::collections::VecDeque<(Vec<Command>, Reply<Vec<CommandResult>>)>,
    /// The query requests whose answers the shards have not all given,
    /// oldest first (`ShardedLedger::query_send`).
    query_replies: std::collections::VecDeque<Reply<Vec<QueryReply>>>,
    /// To the history writer, when the storage keeps history.
    history: Option<Sender<HistoryJob>>,
    /// Movements of completed batches up to `gathered_sequence` not sent
    /// yet (0: none), as the shards handed them over: one chunk per
    /// segment, never copied here.
    gathered: Vec<MovementChunk>,
    gathered_movements: usize,
    gathered_sequence: u64,
    /// When the oldest movements gathered were taken.
    gathered_since: Instant,
    /// Commands per (kind, status) in the current batch, for metrics.
    tally: Vec<(&'static str, Status, u64)>,
    /// A checkpoint job is with the checkpointer (set here when it is
    /// sent, cleared there when it is answered).
    checkpoint_busy: Arc<AtomicBool>,
}

/// Batches routed to the shards and not yet answered, at most: the router
/// works on the next batch while the shards apply the previous ones.
const BATCHES_IN_FLIGHT_MAX: usize = 8;

impl RouterStage {
    /// Replies to the oldest batch in flight (waiting for it if `wait`) and
    /// takes its movements for the history writer.
    fn complete(&mut self, wait: bool) -> bool {
        let results = if wait {
            self.ledger.complete_wait()
        } else {
            self.ledger.complete_ready()
        };
        let Some(results) = results else {
            return false;
        };
        self.stats
            .commands_applied
            .fetch_add(results.len() as u64, Ordering::Relaxed);
        if let Some((commands, reply)) = self.replies.pop_front() {
            self.record_batch_metrics(&commands, &results);
            reply(results);
        }
        if self.history.is_some() {
            let before = self.gathered.len();
            if self.gathered_sequence == 0 {
                self.gathered_since = Instant::now();
            }
            let sequence = self.ledger.take_history(&mut self.gathered);
            self.gathered_movements += self.gathered[before..]
                .iter()
                .map(MovementChunk::len)
                .sum::<usize>();
            self.gathered_sequence = sequence;
            self.offer_history();
        }
        self.reply_queries();
        true
    }

    /// Replies to the query requests whose answers are all in, in request
    /// order.
    fn reply_queries(&mut self) {
        while !self.query_replies.is_empty() {
            let Some(answers) = self.ledger.take_answered() else {
                return;
            };
            if let Some(reply) = self.query_replies.pop_front() {
                reply(answers);
            }
        }
    }

    /// Replies to every batch and query request in flight.
    fn complete_all(&mut self) {
        while self.complete(true) {}
        while !self.query_replies.is_empty() {
            self.ledger.wait_answer();
            self.reply_queries();
        }
        self.publish_shard_stats();
    }

    fn run(mut self) {
        loop {
            // With batches in flight, take the next request if one is
            // queued (route it while the shards work); otherwise finish the
            // oldest batch.
            let execute = if self.ledger.in_flight() > 0 || !self.query_replies.is_empty() {
                match self.execute.try_recv() {
                    Ok(execute) => execute,
                    Err(TryRecvError::Empty) => {
                        // Wait for the next answer from a shard (a segment's
                        // results or a request's queries), then reply to
                        // whatever it completed.
                        self.ledger.wait_answer();
                        while self.complete(false) {}
                        self.reply_queries();
                        self.publish_shard_stats();
                        continue;
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            } else if self.gathered_sequence == 0 {
                match self.execute.try_recv() {
                    Ok(execute) => execute,
                    Err(TryRecvError::Empty) => {
                        // Idle: the counters are current while the router
                        // waits (batches completed without a wait, and
                        // queries answered behind them, publish nothing).
                        self.publish_shard_stats();
                        match self.execute.recv() {
                            Ok(execute) => execute,
                            Err(_) => break,
                        }
                    }
                    Err(TryRecvError::Disconnected) => break,
                }
            } else {
                // Movements are waiting for a busy history writer: hand
                // them over as soon as no batch comes for a moment.
                match self.execute.recv_timeout(HISTORY_GATHER_IDLE) {
                    Ok(execute) => execute,
                    Err(channel::RecvTimeoutError::Timeout) => {
                        self.flush_history();
                        continue;
                    }
                    Err(channel::RecvTimeoutError::Disconnected) => break,
                }
            };
            match execute {
                Execute::Batch {
                    sequence,
                    timestamp,
                    commands,
                    fingerprints,
                    reply,
                } => {
                    if self.ledger.in_flight() >= BATCHES_IN_FLIGHT_MAX {
                        self.complete(true);
                    }
                    self.ledger
                        .submit_prepared(sequence, timestamp, &commands, &fingerprints);
                    self.replies.push_back((commands, reply));
                    while self.complete(false) {}
                }
                Execute::Query { queries, reply } => {
                    // Balances, spending, risk audits, instruments and FX
                    // rates are answered behind the batches in flight (each
                    // shard answers after them) while the router routes on:
                    // the reply goes when the shards' answers are in;
                    // replies still go out in request order per connection.
                    // A command's status waits for every batch.
                    if !ShardedLedger::answered_behind(&queries) {
                        self.complete_all();
                    }
                    self.stats
                        .queries
                        .fetch_add(queries.len() as u64, Ordering::Relaxed);
                    self.ledger.query_send(&queries);
                    self.query_replies.push_back(reply);
                    while self.complete(false) {}
                    self.reply_queries();
                }
                Execute::Checkpoint {
                    sequence,
                    timestamp,
                    reply,
                    wait,
                } => self.checkpoint_at(sequence, timestamp, reply, wait),
                Execute::RiskPolicy {
                    sequence,
                    timestamp,
                    policy,
                    reply,
                } => {
                    let digest = self.ledger.set_risk_policy(sequence, timestamp, *policy);
                    reply(Ok(digest));
                }
                Execute::Shutdown => break,
            }
        }
        self.complete_all();
        self.flush_history();
        // Dropping the senders lets the checkpoint and history threads
        // finish and stop.
        self.ledger.stop();
    }

    /// A checkpoint marker: completes every batch before it (the shards
    /// keep working meanwhile), has the shards wait at a freeze and forks
    /// the process that streams the state at the marker
    /// (`crate::checkpoint_process`), then hands the movements before the
    /// marker and the marker to the history writer (a checkpoint at S waits
    /// for the history to hold everything up to S) and the job to the
    /// checkpointer. The shards wait for the freeze and the fork only:
    /// `engine.checkpoint_pause_ns_last`.
    ///
    /// One checkpoint is made at a time. A periodic marker that comes while
    /// the previous checkpoint is still being written is passed without one
    /// (the log is kept; the next marker's checkpoint trims it). One asked
    /// for (`EngineHandle::checkpoint`) or the final one of a stop waits for
    /// the previous checkpoint first, and the engine with it (the server
    /// never asks for one while it serves).
    fn checkpoint_at(
        &mut self,
        sequence: u64,
        timestamp: u64,
        reply: Option<Reply<Result<u64, String>>>,
        wait: bool,
    ) {
        if let Err(error) = self.wait_for_checkpointer(wait) {
            // Nothing for the history writer either: a mark must follow the
            // movements of every batch before it, and batches before this
            // marker may still be in flight.
            tracing::info!(
                sequence,
                error,
                "no checkpoint at this marker; the log is kept"
            );
            if let Some(reply) = reply {
                reply(Err(error.to_owned()));
            }
            return;
        }
        let started = Instant::now();
        self.complete_all();
        let drained_ns = elapsed_ns(started);
        let frozen_at = Instant::now();
        let image = self.image_at(sequence, timestamp);
        let pause_ns = elapsed_ns(frozen_at);
        self.stats
            .checkpoint_pause_ns_last
            .store(pause_ns, Ordering::Relaxed);
        tracing::debug!(sequence, drained_ns, pause_ns, "checkpoint marker passed");
        assert_eq!(
            self.ledger.in_flight(),
            0,
            "a history mark follows the movements of every batch before it"
        );
        self.flush_history();
        self.send_history_job(HistoryJob::Mark { sequence });
        let image = match image {
            Ok(image) => image,
            Err(error) => {
                tracing::error!(sequence, %error, "no checkpoint at this marker; the log is kept");
                if let Some(reply) = reply {
                    reply(Err(error));
                }
                return;
            }
        };
        let job = CheckpointJob {
            sequence,
            timestamp,
            reply,
            image,
            periodic: !wait,
        };
        self.checkpoint_busy.store(true, Ordering::Release);
        let refused = match self.checkpoints.try_send(job) {
            Ok(()) => None,
            Err(TrySendError::Full(job)) => Some((
                job,
                "the checkpointer is behind (its queue is full); no checkpoint at this marker",
            )),
            Err(TrySendError::Disconnected(job)) => Some((job, "the checkpoint thread stopped")),
        };
        if let Some((job, message)) = refused {
            self.checkpoint_busy.store(false, Ordering::Release);
            tracing::warn!(sequence = job.sequence, message);
            if let Some(reply) = job.reply {
                reply(Err(message.to_owned()));
            }
            // Dropping the job's image ends its process.
        }
    }

    /// Ok once no checkpoint is being written: at once, or (`wait`) after
    /// waiting for the one that is.
    fn wait_for_checkpointer(&self, wait: bool) -> Result<(), &'static str> {
        let started = Instant::now();
        while self.checkpoint_busy.load(Ordering::Acquire) {
            if !wait {
                return Err("the previous checkpoint is still being written");
            }
            if started.elapsed() > CHECKPOINT_BUSY_WAIT_MAX {
                return Err("the previous checkpoint is still being written after 600 s");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    /// The state at the current sequence for a checkpoint: frozen and
    /// forked (the shards go on at their next input).
    #[cfg(target_os = "linux")]
    fn image_at(&mut self, sequence: u64, timestamp: u64) -> Result<StateImage, String> {
        let frozen = self
            .ledger
            .freeze()
            .map_err(|error| format!("the shards could not stop for the checkpoint: {error}"))?;
        crate::checkpoint_process::fork(&frozen, sequence, timestamp).map(StateImage::Forked)
    }

    /// The state at the current sequence for a checkpoint: copied.
    #[cfg(not(target_os = "linux"))]
    fn image_at(&mut self, _sequence: u64, _timestamp: u64) -> Result<StateImage, String> {
        self.ledger
            .snapshot()
            .map(StateImage::Copied)
            .map_err(|error| format!("the shards could not copy their state: {error}"))
    }

    fn publish_shard_stats(&self) {
        let (_, _, records) = self.ledger.record_table();
        self.stats
            .idempotency_records
            .store(records as u64, Ordering::Relaxed);
        let stats = self.ledger.stats();
        for (counter, steps) in self.stats.shard_steps.iter().zip(&stats.steps) {
            counter.store(*steps, Ordering::Relaxed);
        }
        for (counter, movements) in self.stats.shard_movements.iter().zip(&stats.movements) {
            counter.store(*movements, Ordering::Relaxed);
        }
        self.stats
            .pairs_split
            .store(stats.pairs_split, Ordering::Relaxed);
        self.stats
            .router_flushes
            .store(stats.flushes, Ordering::Relaxed);
        let risk = self.ledger.risk_counters();
        self.stats
            .risk_evaluated
            .store(risk.evaluated, Ordering::Relaxed);
        for (atomics, row) in self.stats.risk_decided.iter().zip(&risk.decided) {
            for (atomic, cell) in atomics.iter().zip(row) {
                atomic.store(*cell, Ordering::Relaxed);
            }
        }
    }

    /// Hands the gathered movements to the history writer once enough
    /// have gathered for one large append, or the oldest waited
    /// [`HISTORY_GATHER_AGE_MAX`] (the run loop also hands them over after
    /// [`HISTORY_GATHER_IDLE`] without a batch). A full queue makes the
    /// send wait (backpressure) rather than drop history.
    ///
    /// Under load this is one job, one wake-up of the writer and one
    /// sequential append per `HISTORY_JOB_MOVEMENTS_MIN` movements, not
    /// one per batch (docs/benchmarks.md, "What history costs").
    fn offer_history(&mut self) {
        if self.gathered_movements >= HISTORY_JOB_MOVEMENTS_MIN
            || self.gathered_since.elapsed() >= HISTORY_GATHER_AGE_MAX
        {
            self.flush_history();
        }
    }

    /// Sends what was gathered, if anything (a batch without movements
    /// moves the watermark too).
    fn flush_history(&mut self) {
        if self.gathered_sequence == 0 {
            return;
        }
        let job = HistoryJob::Batch {
            sequence: self.gathered_sequence,
            chunks: std::mem::take(&mut self.gathered),
        };
        self.gathered_sequence = 0;
        self.gathered_movements = 0;
        self.send_history_job(job);
    }

    fn send_history_job(&mut self, job: HistoryJob) {
        let Some(history) = &self.history else {
            return;
        };
        metrics::gauge!("payrail_history_queue_depth").set(history.len() as f64);
        if history.send(job).is_err() {
            // The writer only stops after the router; nothing to do.
            self.history = None;
        }
    }

    /// Per batch: its size, each shard's queue and the commands by kind and
    /// status (tallied here, one metrics update per distinct pair).
    fn record_batch_metrics(&mut self, commands: &[Command], results: &[CommandResult]) {
        metrics::histogram!("payrail_batch_commands").record(commands.len() as f64);
        let depths = self.ledger.queue_depths();
        // Published as `payrail_shard_queue_depth{shard}` by the server's
        // metrics task (a gauge handle taken here at start would predate the
        // exporter and record nothing).
        for (counter, depth) in self.stats.shard_queue_depths.iter().zip(depths) {
            counter.store(depth as u64, Ordering::Relaxed);
        }
        self.tally.clear();
        for (command, result) in commands.iter().zip(results) {
            let kind = command.kind.name();
            match self
                .tally
                .iter_mut()
                .find(|(k, status, _)| *status == result.status && *k == kind)
            {
                Some(entry) => entry.2 += 1,
                None => self.tally.push((kind, result.status, 1)),
            }
        }
        for &(kind, status, count) in &self.tally {
            metrics::counter!("payrail_commands_total", "kind" => kind, "status" => status.name())
                .increment(count);
        }
    }
}

/// Stage 3: follows the log on its own copy of the state, writes
/// checkpoints at the markers and trims the log behind them.
///
/// It replays the records the sequencer made durable onto a lone ledger
/// (as recovery does: one rule set, so its state at a marker is the
/// shards' state there), a slice at a time at a low scheduling priority, so
/// it trails the sequencer by a moment and never takes the shards' cores in
/// bursts. At a marker it waits for the router's job for that marker (the
/// history writer has then been sent every batch before it), encodes its
/// state, saves it and trims the log up to the marker. Neither the shards
/// nor the router stop for it.
struct Checkpointer<S: Storage> {
    storage: S,
    jobs: Receiver<CheckpointJob>,
    stats: Arc<EngineStats>,
    /// A checkpoint at S lets the log up to S go, so the history must hold
    /// every batch up to S first (it is rebuilt only from the log).
    wait_for_history: bool,
    /// The engine stops without a final checkpoint: give up the one being
    /// made.
    stopping: Arc<AtomicBool>,
    /// Cleared once a job is answered (see `RouterStage::checkpoint_busy`).
    busy: Arc<AtomicBool>,
}

/// Bytes the checkpoint's process takes for its idempotency records while
/// it runs with more than one shard, for the memory budget: the lone ledger
/// it merges the state into has a table allocated for `records_max`
/// (40-byte ring slots and an index of at least two 8-byte buckets a
/// record, see `Records::lone`), beside the merged tables. With one shard
/// it reads the shard's tables and the router's records where they are.
pub fn checkpoint_process_records_bytes(records_max: u64) -> u64 {
    crate::ledger::lone_records_bytes(usize::try_from(records_max).unwrap_or(usize::MAX)) as u64
}

/// Longest a checkpoint waits for the history writer to reach its marker.
const CHECKPOINT_HISTORY_WAIT: Duration = Duration::from_secs(60);
/// The pause after each 5 ms of the kernel's work putting memory on huge
/// pages: at most about half of this thread's core.
const COLLAPSE_PAUSE: Duration = Duration::from_millis(5);
/// How often the checkpoint thread puts memory on huge pages between
/// checkpoints (and after each periodic one). A pass reads the process's
/// memory map and page map (milliseconds) and collapses what filled since
/// the last.
const COLLAPSE_INTERVAL: Duration = Duration::from_secs(5);
/// The checkpoint thread's nice value (Linux: 0 normal, 19 lowest): it
/// writes what the checkpoint's process streams into the storage, which
/// is never urgent.
const CHECKPOINTER_NICE: i32 = 10;

impl<S: Storage> Checkpointer<S> {
    fn run(mut self) {
        lower_priority(CHECKPOINTER_NICE);
        // Ends once the router is gone and every job it sent is answered.
        loop {
            let job = match self.jobs.recv_timeout(COLLAPSE_INTERVAL) {
                Ok(job) => job,
                Err(channel::RecvTimeoutError::Timeout) => {
                    self.collapse_to_huge_pages(false);
                    continue;
                }
                Err(channel::RecvTimeoutError::Disconnected) => break,
            };
            let periodic = job.periodic;
            self.checkpoint(job);
            if periodic {
                self.collapse_to_huge_pages(true);
            }
        }
    }

    /// Puts the engine's memory in 4 KiB pages on huge pages
    /// (`prefetch::collapse_to_huge_pages`), so that the next fork copies
    /// one page-table entry per 2 MiB instead of 512: after a periodic
    /// checkpoint (its process reaped in `save`; after a failure killed,
    /// and perhaps still ending: a range it still shares is then copied
    /// whole, which costs only work) and every [`COLLAPSE_INTERVAL`]
    /// between checkpoints. Given up when the next checkpoint comes or the
    /// engine stops; paced (5 ms of the kernel's copying, then
    /// [`COLLAPSE_PAUSE`]), at this thread's low priority.
    fn collapse_to_huge_pages(&self, after_checkpoint: bool) {
        if self.stopping.load(Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        let keep_going = || self.jobs.is_empty() && !self.stopping.load(Ordering::Relaxed);
        let collapsed = crate::prefetch::collapse_to_huge_pages(COLLAPSE_PAUSE, &keep_going);
        let elapsed_ms = started.elapsed().as_millis() as u64;
        // After a checkpoint at info (the checkpoint's lines are), between
        // checkpoints every few seconds at debug.
        if after_checkpoint {
            tracing::info!(
                small_bytes = collapsed.small_bytes,
                huge_pages_asked = collapsed.asked,
                huge_pages_refused = collapsed.refused,
                interrupted = collapsed.interrupted,
                elapsed_ms,
                "memory put on huge pages after the checkpoint"
            );
        } else {
            tracing::debug!(
                small_bytes = collapsed.small_bytes,
                huge_pages_asked = collapsed.asked,
                huge_pages_refused = collapsed.refused,
                interrupted = collapsed.interrupted,
                elapsed_ms,
                "memory put on huge pages"
            );
        }
    }

    /// Saves the job's checkpoint and answers it.
    fn checkpoint(&mut self, job: CheckpointJob) {
        let CheckpointJob {
            sequence,
            timestamp,
            reply,
            image,
            periodic: _,
        } = job;
        let started = Instant::now();
        tracing::info!(sequence, "checkpoint started");
        let outcome = self.save(sequence, timestamp, image);
        self.stats
            .checkpoint_write_ns_last
            .store(elapsed_ns(started), Ordering::Relaxed);
        match &outcome {
            Ok(sequence) => {
                self.stats.checkpoints.fetch_add(1, Ordering::Relaxed);
                self.stats
                    .checkpoint_sequence
                    .store(*sequence, Ordering::Relaxed);
                let now_ns = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |since| {
                        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
                    });
                self.stats
                    .checkpoint_unix_ns
                    .store(now_ns, Ordering::Relaxed);
                metrics::histogram!("payrail_checkpoint_seconds")
                    .record(started.elapsed().as_secs_f64());
                tracing::info!(
                    sequence,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "checkpoint saved"
                );
            }
            Err(error) => tracing::error!(%error, "checkpoint failed; the log is kept in full"),
        }
        // Free for the next marker before the reply: a caller that asks
        // for another checkpoint once this one is answered gets one.
        self.busy.store(false, Ordering::Release);
        if let Some(reply) = reply {
            reply(outcome);
        }
    }

    /// Saves the state of `image` as the checkpoint at the marker
    /// (`sequence`, `timestamp`) and trims the log behind it.
    fn save(&mut self, sequence: u64, timestamp: u64, image: StateImage) -> Result<u64, String> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err("the engine is stopping; checkpoint abandoned".to_owned());
        }
        if self.wait_for_history
            && !wait_for_history(&self.stats, sequence, CHECKPOINT_HISTORY_WAIT)
        {
            return Err(format!(
                "the history writer has not reached sequence {} (it is at {}); no checkpoint taken",
                sequence,
                self.stats.history_watermark.load(Ordering::Relaxed)
            ));
        }
        if self.wait_for_history {
            // The log up to the marker may go once the checkpoint is saved:
            // the history covering it must be durable first.
            self.storage
                .sync_history()
                .map_err(|error| error.to_string())?;
        }
        let phase = Instant::now();
        let (state_bytes, image_ms) = self.write_image(sequence, timestamp, image)?;
        let save = phase.elapsed();
        let phase = Instant::now();
        self.storage
            .trim_log(sequence)
            .map_err(|error| error.to_string())?;
        tracing::info!(
            sequence,
            state_bytes,
            // Until the image's first bytes: the merge and the digest.
            image_ms,
            // The rest: encoding, the chunks into the table file, its
            // ingestion and the manifest.
            write_ms = save
                .saturating_sub(Duration::from_millis(image_ms))
                .as_millis() as u64,
            trim_ms = phase.elapsed().as_millis() as u64,
            "checkpoint written"
        );
        Ok(sequence)
    }

    /// Writes the image into the storage: bytes of state and milliseconds
    /// until the image's header (digest and table use) was there.
    #[cfg(target_os = "linux")]
    fn write_image(
        &mut self,
        sequence: u64,
        timestamp: u64,
        image: StateImage,
    ) -> Result<(u64, u64), String> {
        let StateImage::Forked(mut forked) = image;
        let started = Instant::now();
        let (digest, tables) = forked.read_header(&self.stopping)?;
        let image_ms = started.elapsed().as_millis() as u64;
        self.stats.publish_tables(&tables, sequence);
        let source = crate::checkpoint_process::Streamed {
            forked: std::cell::RefCell::new(&mut forked),
            sequence,
            timestamp,
            digest,
            stopping: &self.stopping,
            state_bytes: std::cell::Cell::new(0),
        };
        self.storage
            .save_checkpoint_from(&source)
            .map_err(|error| error.to_string())?;
        let state_bytes = source.state_bytes.get();
        forked.finish()?;
        Ok((state_bytes, image_ms))
    }

    /// Writes the image into the storage: bytes of state and milliseconds
    /// the merge and the digest took.
    #[cfg(not(target_os = "linux"))]
    fn write_image(
        &mut self,
        sequence: u64,
        timestamp: u64,
        image: StateImage,
    ) -> Result<(u64, u64), String> {
        let StateImage::Copied(state) = image;
        let started = Instant::now();
        let ledger = state.merge();
        self.stats.publish_tables(&ledger.tables(), sequence);
        let digest = ledger.digest();
        let image_ms = started.elapsed().as_millis() as u64;
        let checkpoint = storage::LedgerCheckpoint::new(&ledger, sequence, timestamp, digest);
        self.storage
            .save_checkpoint_from(&checkpoint)
            .map_err(|error| error.to_string())?;
        Ok((checkpoint.state_len(), image_ms))
    }
}

/// Lowers the calling thread's scheduling priority to `nice` (Linux; a
/// no-op elsewhere). A failure only costs fairness: logged, not fatal.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    {
        // Safety: gettid has no preconditions; setpriority with
        // PRIO_PROCESS and a thread id of this process changes only that
        // thread's nice value (Linux keeps it per thread) and touches no
        // memory of ours.
        #[allow(unsafe_code)]
        let result =
            unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, nice) };
        if result != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not lower the checkpointer's priority"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

#[cfg(test)]
mod default_shards_tests {
    use super::default_shards;

    #[test]
    fn the_cores_left_beside_the_router_and_the_sequencer() {
        for (cores, shards) in [(1, 1), (2, 1), (3, 1), (4, 2), (8, 6), (32, 30), (200, 64)] {
            assert_eq!(default_shards(cores), shards, "{cores} cores");
        }
    }
}
