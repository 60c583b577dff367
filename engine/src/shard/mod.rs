//! Sharded execution: N single-threaded state machines (by default one per
//! core the router and the sequencer leave), with a router in front.
//!
//! ```text
//! batch ──▶ router (one thread, in log order)
//!             idempotency: fresh / duplicate / id reused, for every command id
//!             resolve: account → shard (directory), merchant key → merchant,
//!                      payment code → customer, payment → merchant + payer,
//!                      hold → shard
//!             route: one segment per shard (bounded crossbeam queue)
//!        ──▶ shard 0 .. shard N-1 (one thread each)
//!             apply the segment in order; a two-party command whose accounts
//!             live on two shards: exchange verdicts with the peer, apply if
//!             both said yes
//!        ──▶ results, by batch index, back to the router ──▶ caller, in order
//! ```
//!
//! Every shard count gives the results a lone [`Ledger`] gives for the same
//! log (the determinism test proves it with 1, 2, 3 and 8 shards):
//! - the router answers duplicates and reused ids itself from one global
//!   table that evicts exactly as the lone ledger does, and tells each shard
//!   which of its records went;
//! - references that need another command's outcome (a merchant key being
//!   registered, a payment code being issued, a duplicate whose first result
//!   is not in yet) make the router wait for the shards to finish what was
//!   routed, then look again: it never guesses;
//! - a two-party command's halves make their checks in the order of the
//!   `Check` table, and the combined status is the earlier failure (see
//!   `ledger/halves.rs`); the lone ledger runs the same halves.
//!
//! House accounts are split into one part per shard (the part number in the
//! id's spare bits, see [`AccountId::house_part`]); a balance query for the
//! public house id answers the sum of the parts.
//!
//! # Layout
//! - this file: [`ShardedLedger`], the batches in flight (submit, results
//!   back in order, waits), queries, snapshots; the shard threads' start.
//! - `router.rs`: the router's tables ([`router::RouterTables`]) and one
//!   routing function per command class.
//! - `records.rs`: the idempotency record table (fixed capacity, a ring).
//! - `worker.rs`: one shard thread (segments, verdict exchange).
//! - `layout.rs`: a lone ledger's state split over shards, and merged back.

mod layout;
mod records;
mod router;
mod worker;

use std::collections::VecDeque;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{self, Receiver, Sender};
use dashmap::DashMap;
use rustc_hash::FxBuildHasher;

use crate::command::{
    AccountId, AccountView, Command, CommandId, CommandResult, Detail, Query, QueryReply,
};
use crate::currency::Currency;
use crate::history::MovementChunk;
use crate::ledger::{Account, IdempotencyRecord, Ledger, LedgerConfig, RecordsInOrder};
use crate::limits;
use crate::risk::{RiskCounters, RiskPolicy};
use crate::status::Status;
use router::{Routed, RouterTables};
use worker::{Input, Output, Segment, Worker};

/// How many commands ahead the router asks for a record's index bucket.
const RECORDS_PREFETCH_AHEAD: usize = 8;

/// Which of two halves' details a result keeps: the higher.
fn detail_rank(detail: &Detail) -> u8 {
    match detail {
        Detail::None => 0,
        Detail::FxConversion(_) => 1,
        _ => 2,
    }
}

/// The shard that holds an owner's accounts among `shards`: a stable mix of
/// the owner id, so a restart with another shard count re-partitions the
/// same way every time.
pub fn shard_of_owner(owner: u64, shards: usize) -> usize {
    let mixed = owner.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (owner >> 29);
    let mixed = mixed.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    ((mixed >> 32) % shards.max(1) as u64) as usize
}

/// Where an account lives and its currency (which never changes): the
/// router needs the currency to tell a cross-currency QR payment and the
/// FX liquidity account a conversion draws on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Placement {
    pub shard: u32,
    pub currency: Currency,
}

/// A batch routed (or being routed) whose results are not all in.
#[derive(Debug)]
struct InFlight {
    ticket: u64,
    sequence: u64,
    /// The movements the shards' segments made (history on only).
    movements: Vec<MovementChunk>,
    results: Vec<Option<CommandResult>>,
    /// Segments sent and not yet answered.
    outstanding: usize,
    /// Batch indexes of the fresh commands, in arrival order: the k-th
    /// arrived as `first_arrival + k`. Their statuses go into their records
    /// when the results are in (`learned` of them already have).
    fresh: Vec<u32>,
    first_arrival: u64,
    learned: usize,
    /// Fresh commands with a fact to learn (the rare kinds), not yet learned.
    routed: Vec<Routed>,
    /// Still being routed: more segments may follow.
    routing: bool,
}

impl InFlight {
    fn complete(&self) -> bool {
        !self.routing && self.outstanding == 0
    }
}

/// Requests whose queries wait for a shard's answer, at most. Each can
/// have two answers outstanding per shard (accounts, other queries); with
/// the segments' results owed they must stay within the room of the
/// shards' output channel ([`limits::SHARD_QUEUE_DEPTH`] a shard), so a
/// shard never waits on the router: `query_send` takes answers first when
/// they would not.
const QUERIES_IN_FLIGHT_MAX: usize = 16;

const _: () = assert!(2 * QUERIES_IN_FLIGHT_MAX <= limits::SHARD_QUEUE_DEPTH / 2);

/// One shard's answer to one message of a request's queries.
#[derive(Debug)]
enum Awaited<T> {
    NotAsked,
    Waiting,
    Answered(T),
}

impl<T> Awaited<T> {
    fn is_waiting(&self) -> bool {
        matches!(self, Awaited::Waiting)
    }
}

/// Who answers one query of a request.
#[derive(Debug)]
enum Answerer {
    /// A balance: the sum of its parts (shard, id there), each asked of
    /// its shard (none: an unknown account).
    Balance(AccountId, Vec<(usize, AccountId)>),
    /// This shard, from its own state (spending, risk audit, instrument,
    /// FX rate).
    Shard(usize),
    /// The router, when the request was routed (a command's status, the
    /// risk policy).
    Router(QueryReply),
}

/// A request's queries sent to the shards and not all answered: each
/// shard got at most two messages (the parts of the balances it holds,
/// and the other queries it answers), queued behind the segments sent
/// before, so its answers are the state after every batch routed before
/// the request, while the router routes on.
#[derive(Debug)]
struct QueriesInFlight {
    answerers: Vec<Answerer>,
    /// By shard: the accounts asked, in the order asked.
    accounts: Vec<Awaited<Vec<Option<Account>>>>,
    /// By shard: the answers to the other queries, in the order asked.
    replies: Vec<Awaited<Vec<QueryReply>>>,
    /// Messages sent and not answered.
    outstanding: usize,
}

impl QueriesInFlight {
    /// The replies in query order; a query whose shard never answered (a
    /// shard thread stopped) is `Unavailable`.
    fn answers(self) -> Vec<QueryReply> {
        let mut accounts: Vec<Option<std::vec::IntoIter<Option<Account>>>> = self
            .accounts
            .into_iter()
            .map(|answer| match answer {
                Awaited::Answered(found) => Some(found.into_iter()),
                Awaited::NotAsked | Awaited::Waiting => None,
            })
            .collect();
        let mut replies: Vec<Option<std::vec::IntoIter<QueryReply>>> = self
            .replies
            .into_iter()
            .map(|answer| match answer {
                Awaited::Answered(found) => Some(found.into_iter()),
                Awaited::NotAsked | Awaited::Waiting => None,
            })
            .collect();
        let unavailable = QueryReply::Refused(Status::Unavailable);
        self.answerers
            .into_iter()
            .map(|answerer| match answerer {
                Answerer::Balance(id, parts) => {
                    let mut found = Vec::with_capacity(parts.len());
                    for &(shard, _) in &parts {
                        match accounts.get_mut(shard).and_then(Option::as_mut) {
                            Some(answers) => found.push(answers.next().flatten()),
                            None => return unavailable,
                        }
                    }
                    match ShardedLedger::view_of_parts(id, found.into_iter()) {
                        Some(view) => QueryReply::Balance(view),
                        None => QueryReply::Refused(Status::UnknownAccount),
                    }
                }
                Answerer::Shard(shard) => replies
                    .get_mut(shard)
                    .and_then(Option::as_mut)
                    .and_then(Iterator::next)
                    .unwrap_or(unavailable),
                Answerer::Router(reply) => reply,
            })
            .collect()
    }
}

/// Where the work went: per shard, and how commands were routed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    /// Commands (or halves of one) each shard executed.
    pub steps: Vec<u64>,
    /// Movements each shard handed over for the history.
    pub movements: Vec<u64>,
    /// Two-party commands whose halves were on two shards (verdicts exchanged).
    pub pairs_split: u64,
    /// Two-party commands with both halves on one shard.
    pub pairs_local: u64,
    /// Duplicates and reused ids the router answered itself.
    pub answered_by_router: u64,
    /// Times the router waited for results before routing on (a reference
    /// whose outcome was in flight, or an FX liquidity position to ask for).
    pub flushes: u64,
    /// Commands drawing on FX liquidity for which the router asked the
    /// shards for the exact position (a flush each) ...
    pub liquidity_asks: u64,
    /// ... and for which its bound proved the floor holds (no flush).
    pub liquidity_bounded: u64,
    /// Each shard's risk decision counters, as of its last answered segment.
    pub risk: Vec<RiskCounters>,
}

/// Every shard's state at one sequence number, not yet merged.
pub struct ShardedState {
    config: LedgerConfig,
    sequence: u64,
    timestamp: u64,
    shards: Vec<Ledger>,
    records: Vec<(CommandId, crate::ledger::IdempotencyRecord)>,
}

impl std::fmt::Debug for ShardedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedState")
            .field("sequence", &self.sequence)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

impl ShardedState {
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// One lone-ledger state: house parts summed, records in global order.
    pub fn merge(self) -> Ledger {
        let records_len = self.records.len();
        let mut shards = self.shards;
        layout::merge_owned(
            self.config,
            self.sequence,
            self.timestamp,
            &mut shards,
            self.records,
            records_len,
        )
    }
}

/// Every shard waiting at a freeze ([`ShardedLedger::freeze`]): the
/// shards' states at these addresses and the router's tables are the state
/// at one sequence number while this lives.
pub(crate) struct Frozen<'a> {
    ledger: &'a ShardedLedger,
    addresses: Vec<usize>,
}

impl<'a> Frozen<'a> {
    /// The whole state as one lone ledger's, read from the frozen shards'
    /// memory: with one shard, the shard's state as it is and the router's
    /// records read in place (nothing copied: one shard's state is a lone
    /// ledger's but for the records, see `layout::merge_owned`); with more,
    /// the shards merged into one lone ledger.
    ///
    /// # Safety
    /// Only in a process forked while this `Frozen` lived, in which the
    /// shard threads do not exist: their `Ledger`s are then plain memory
    /// that nothing else reads or writes. They are read in place and never
    /// dropped, nor is the ledger returned (it may be a shard's own state:
    /// the forked process ends with `_exit`).
    #[allow(unsafe_code)]
    pub(crate) unsafe fn in_fork(&self) -> InFork<'a> {
        let shards: Vec<Ledger> = self
            .addresses
            .iter()
            // SAFETY: each address is a live `Ledger` of a shard thread,
            // which stays untouched while frozen (`Input::Freeze`); in the
            // forked copy of the memory no thread runs but this one. The
            // copies are forgotten below, never dropped.
            .map(|&address| unsafe { std::ptr::read(address as *const Ledger) })
            .collect();
        // Never dropped: the process ends without freeing (what a single
        // shard's merge takes over is the caller's not to drop either).
        let mut shards = std::mem::ManuallyDrop::new(shards);
        let sharded = self.ledger;
        if shards.len() == 1 {
            if let Some(mut ledger) = shards.pop() {
                layout::single_as_lone(
                    &mut ledger,
                    sharded.config,
                    sharded.sequence,
                    sharded.timestamp,
                );
                return InFork {
                    ledger: std::mem::ManuallyDrop::new(ledger),
                    router: Some(RouterRecords(&sharded.tables.records)),
                };
            }
        }
        let merged = layout::merge_owned(
            sharded.config,
            sharded.sequence,
            sharded.timestamp,
            &mut shards,
            sharded.lone_records(),
            sharded.tables.records.len(),
        );
        InFork {
            ledger: std::mem::ManuallyDrop::new(merged),
            router: None,
        }
    }
}

/// The state a checkpoint's process encodes ([`Frozen::in_fork`]): a lone
/// ledger's tables, and its records (the router's, read in place, or the
/// ledger's own). Never dropped (see `in_fork`).
pub(crate) struct InFork<'a> {
    pub(crate) ledger: std::mem::ManuallyDrop<Ledger>,
    router: Option<RouterRecords<'a>>,
}

impl InFork<'_> {
    /// The idempotency records, oldest first.
    pub(crate) fn records(&self) -> &dyn RecordsInOrder {
        match &self.router {
            Some(router) => router,
            None => &self.ledger.records,
        }
    }
}

/// The router's records as a lone ledger's (every record in global arrival
/// order; a shard's held ones are among them).
struct RouterRecords<'a>(&'a records::RecordRing);

impl RecordsInOrder for RouterRecords<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }

    fn each(&self) -> Box<dyn Iterator<Item = (CommandId, IdempotencyRecord)> + '_> {
        Box::new(self.0.iter().map(|(id, record)| (id, lone_record(&record))))
    }
}

/// A router's record as a lone ledger keeps it.
fn lone_record(record: &records::RouterRecord) -> IdempotencyRecord {
    IdempotencyRecord {
        fingerprint: record.fingerprint,
        status: record.status.unwrap_or(Status::Unavailable),
        timestamp: record.timestamp,
    }
}

/// Why a sharded ledger could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShardError {
    #[error("shard count {0} is out of range (1..={max})", max = limits::SHARDS_MAX)]
    ShardCount(usize),
    #[error("could not start a shard thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("a shard thread stopped")]
    ShardStopped,
}

/// N shards and their router. See the module documentation.
pub struct ShardedLedger {
    config: LedgerConfig,
    shards: usize,
    sequence: u64,
    timestamp: u64,
    /// What the router keeps to route (see `router.rs`).
    tables: RouterTables,
    inputs: Vec<Sender<Input>>,
    outputs: Receiver<(u32, Output)>,
    threads: Vec<JoinHandle<()>>,
    /// The segments of the batch being routed, one per shard.
    segments: Vec<Segment>,
    first_sent: bool,
    /// Batches in flight, oldest first; the one being routed is the last.
    in_flight: VecDeque<InFlight>,
    next_ticket: u64,
    /// Requests' queries sent to the shards behind the segments queued
    /// before them, oldest first, until their answers are taken
    /// ([`Self::query_send`], [`Self::take_answered`]).
    queries_in_flight: VecDeque<QueriesInFlight>,
    /// Set once a shard thread is gone; every later answer is `Unavailable`.
    failed: bool,
    stats: ShardStats,
    /// A copy of the risk policy every shard has in force.
    risk_policy: RiskPolicy,
    /// Movement history is on: the shards hand over their movements.
    history: bool,
    /// Movements of the batches completed and not yet taken, and the
    /// sequence of the last batch completed.
    history_ready: Vec<MovementChunk>,
    history_sequence: u64,
}

impl std::fmt::Debug for ShardedLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardedLedger")
            .field("shards", &self.shards)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

impl ShardedLedger {
    /// An empty ledger on `shards` shards.
    pub fn new(config: LedgerConfig, shards: usize) -> Result<ShardedLedger, ShardError> {
        ShardedLedger::from_ledger(Ledger::new(config), shards)
    }

    /// Splits a lone ledger's state (a checkpoint's) over `shards` shards.
    pub fn from_ledger(ledger: Ledger, shards: usize) -> Result<ShardedLedger, ShardError> {
        if !(1..=limits::SHARDS_MAX).contains(&shards) {
            return Err(ShardError::ShardCount(shards));
        }
        let risk_policy = ledger.risk().policy().clone();
        let split = layout::split(ledger, shards);
        let risk_counters: Vec<RiskCounters> = split
            .ledgers
            .iter()
            .map(|ledger| *ledger.risk().counters())
            .collect();
        // Room for every answer that can be outstanding (a shard is never
        // made to wait on the router): per shard, at most one segment per
        // batch in flight plus one per wait, and one state or account reply.
        let (output_sender, outputs) = channel::bounded(shards * limits::SHARD_QUEUE_DEPTH);
        // One channel each way between every two shards (verdict batches;
        // see `worker.rs` for why they need no bound of their own).
        let mut peers: Vec<Vec<Option<worker::Peer>>> = (0..shards)
            .map(|_| (0..shards).map(|_| None).collect())
            .collect();
        for low in 0..shards {
            for high in low + 1..shards {
                let (low_to_high, high_from_low) = channel::unbounded();
                let (high_to_low, low_from_high) = channel::unbounded();
                if let Some(slot) = peers.get_mut(low).and_then(|row| row.get_mut(high)) {
                    *slot = Some(worker::Peer::new(low_to_high, low_from_high));
                }
                if let Some(slot) = peers.get_mut(high).and_then(|row| row.get_mut(low)) {
                    *slot = Some(worker::Peer::new(high_to_low, high_from_low));
                }
            }
        }
        let mut sharded = ShardedLedger {
            config: split.config,
            shards,
            sequence: split.sequence,
            timestamp: split.timestamp,
            tables: split.tables,
            inputs: Vec::with_capacity(shards),
            outputs,
            threads: Vec::with_capacity(shards),
            segments: Vec::new(),
            first_sent: false,
            in_flight: VecDeque::new(),
            next_ticket: 0,
            queries_in_flight: VecDeque::new(),
            failed: false,
            history: false,
            history_ready: Vec::new(),
            history_sequence: 0,
            stats: ShardStats {
                steps: vec![0; shards],
                movements: vec![0; shards],
                risk: risk_counters,
                ..ShardStats::default()
            },
            risk_policy,
        };
        let mut peers = peers.into_iter();
        for (shard, ledger) in split.ledgers.into_iter().enumerate() {
            let (input_sender, inputs) = channel::bounded(limits::SHARD_QUEUE_DEPTH);
            let worker = Worker::new(
                ledger,
                inputs,
                output_sender.clone(),
                shard as u32,
                peers.next().unwrap_or_default(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("payrail-shard-{shard}"))
                .spawn(move || worker.run())?;
            sharded.inputs.push(input_sender);
            sharded.threads.push(thread);
        }
        Ok(sharded)
    }

    /// Turns movement history on or off on every shard (see
    /// [`Ledger::record_history`]). While on, every batch taken back with
    /// `complete_*` leaves its movements for [`Self::take_history`].
    pub fn record_history(&mut self, on: bool) -> Result<(), ShardError> {
        for input in &self.inputs {
            input
                .send(Input::RecordHistory(on))
                .map_err(|_| ShardError::ShardStopped)?;
        }
        self.history = on;
        Ok(())
    }

    /// Moves the movements of every batch completed since the last call
    /// into `into` (one chunk per shard segment, each in log order) and
    /// returns the sequence of the last batch completed: every shard has
    /// handed over its movements of every batch up to it.
    pub fn take_history(&mut self, into: &mut Vec<MovementChunk>) -> u64 {
        into.append(&mut self.history_ready);
        self.history_sequence
    }

    /// Touches every page of the idempotency record table (allocated
    /// lazily by the kernel), so traffic does not pay the page faults.
    pub fn prefault(&mut self) {
        self.tables.records.prefault();
    }

    /// The idempotency record table: (capacity in records, bytes
    /// allocated, records kept).
    pub fn record_table(&self) -> (usize, usize, usize) {
        (
            self.tables.records.capacity(),
            self.tables.records.bytes(),
            self.tables.records.len(),
        )
    }

    /// Segments waiting in each shard's queue.
    pub fn queue_depths(&self) -> impl Iterator<Item = usize> + '_ {
        self.inputs.iter().map(Sender::len)
    }

    /// Risk decisions since start over all shards (the replay at start
    /// included; see `RiskCounters`), as of each shard's last answer.
    pub fn risk_counters(&self) -> RiskCounters {
        let mut total = RiskCounters::default();
        for counters in &self.stats.risk {
            total.add(counters);
        }
        total
    }

    /// Counters of where the work went since start.
    pub fn stats(&self) -> &ShardStats {
        &self.stats
    }

    pub fn shards(&self) -> usize {
        self.shards
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    /// The account directory (account id → shard and currency), readable
    /// from any thread.
    pub fn directory(&self) -> Arc<DashMap<AccountId, Placement, FxBuildHasher>> {
        Arc::clone(&self.tables.directory)
    }

    /// `apply` into a new vector.
    pub fn apply_batch(
        &mut self,
        sequence: u64,
        timestamp: u64,
        batch: &[Command],
    ) -> Vec<CommandResult> {
        let mut results = Vec::with_capacity(batch.len());
        self.apply(sequence, timestamp, batch, &mut results);
        results
    }

    /// Applies one batch on the shards: appends one result per command, in
    /// order, exactly as [`Ledger::apply`] would. Batches submitted before
    /// and not yet taken back are completed first (their results dropped).
    pub fn apply(
        &mut self,
        sequence: u64,
        timestamp: u64,
        batch: &[Command],
        results: &mut Vec<CommandResult>,
    ) {
        while self.complete_wait().is_some() {}
        self.submit(sequence, timestamp, batch);
        if let Some(mine) = self.complete_wait() {
            results.extend(mine);
        }
    }

    /// Routes one batch to the shards without waiting for its results
    /// (unless a command needs the outcome of one still in flight); take the
    /// results back in order with [`Self::complete_wait`] or
    /// [`Self::complete_ready`].
    pub fn submit(&mut self, sequence: u64, timestamp: u64, batch: &[Command]) {
        let fingerprints: Vec<u64> = batch.iter().map(Command::fingerprint).collect();
        self.submit_prepared(sequence, timestamp, batch, &fingerprints);
    }

    /// [`Self::submit`] with each command's [`Command::fingerprint`]
    /// already computed (by the caller's thread, before the sequencer: the
    /// router's thread is the pipeline's one ordered stage).
    pub fn submit_prepared(
        &mut self,
        sequence: u64,
        timestamp: u64,
        batch: &[Command],
        fingerprints: &[u64],
    ) {
        assert_eq!(batch.len(), fingerprints.len(), "one fingerprint a command");
        assert!(
            batch.len() <= self.tables.records.capacity(),
            "a batch fits the record table"
        );
        // (`advance_clock` asserts that sequence and time move forward.)
        assert!(
            self.in_flight.len() < limits::SHARD_QUEUE_DEPTH,
            "batches in flight within the shards' queue depth"
        );
        crate::ledger::advance_clock(
            (&mut self.sequence, &mut self.timestamp),
            sequence,
            timestamp,
        );
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        // Room for the batch's steps at once (a split command has a step on
        // two shards), so a segment does not grow by copying as it fills.
        let steps_expected = if self.shards == 1 {
            batch.len()
        } else {
            (2 * batch.len() / self.shards).min(batch.len())
        };
        self.segments = (0..self.shards)
            .map(|_| Segment {
                ticket,
                sequence,
                timestamp,
                first: true,
                forget: Vec::new(),
                forget_holds: Vec::new(),
                forget_fx: Vec::new(),
                steps: Vec::with_capacity(steps_expected),
            })
            .collect();
        self.first_sent = false;
        self.in_flight.push_back(InFlight {
            ticket,
            sequence,
            movements: Vec::new(),
            results: vec![None; batch.len()],
            outstanding: 0,
            fresh: Vec::with_capacity(batch.len()),
            first_arrival: self.tables.records.next_arrival(),
            learned: 0,
            routed: Vec::new(),
            routing: true,
        });

        self.batch_start(timestamp, batch.len());
        for (index, (command, &fingerprint)) in batch.iter().zip(fingerprints).enumerate() {
            if self.failed {
                break;
            }
            if let Some(ahead) = batch.get(index + RECORDS_PREFETCH_AHEAD) {
                self.tables.records.prefetch(ahead.id);
            }
            self.route(index as u32, command, fingerprint, timestamp);
        }
        self.send_segments();
        if let Some(current) = self.in_flight.back_mut() {
            current.routing = false;
        }
    }

    /// Batches submitted whose results have not been taken back.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The oldest batch's results, waiting for them; `None` if no batch is
    /// in flight. A command never answered (a shard thread died) gets
    /// `Unavailable`.
    pub fn complete_wait(&mut self) -> Option<Vec<CommandResult>> {
        loop {
            let front = self.in_flight.front()?;
            if front.complete() || self.failed {
                return self.pop_complete();
            }
            self.receive_one();
        }
    }

    /// The oldest batch's results if they are all in; never waits.
    pub fn complete_ready(&mut self) -> Option<Vec<CommandResult>> {
        while let Ok(output) = self.outputs.try_recv() {
            self.take_output(output);
        }
        if self.in_flight.front()?.complete() {
            self.pop_complete()
        } else {
            None
        }
    }

    fn pop_complete(&mut self) -> Option<Vec<CommandResult>> {
        let mut batch = self.in_flight.pop_front()?;
        self.learn(&mut batch);
        if self.history {
            self.history_ready.append(&mut batch.movements);
            self.history_sequence = batch.sequence;
        }
        Some(
            batch
                .results
                .into_iter()
                .map(|result| result.unwrap_or(CommandResult::new(Status::Unavailable)))
                .collect(),
        )
    }

    /// The next answer from any shard. A shard thread that stopped (it
    /// panicked: a bug) fails the sharded ledger instead of leaving the
    /// router waiting forever; what is in flight is answered `unavailable`.
    fn receive_output(&mut self) -> Result<(u32, Output), channel::RecvError> {
        loop {
            match self
                .outputs
                .recv_timeout(std::time::Duration::from_millis(100))
            {
                Ok(output) => return Ok(output),
                Err(channel::RecvTimeoutError::Timeout) => {
                    if self.threads.iter().any(JoinHandle::is_finished) {
                        tracing::error!("a shard thread stopped; the sharded ledger is failed");
                        self.failed = true;
                        return Err(channel::RecvError);
                    }
                }
                Err(channel::RecvTimeoutError::Disconnected) => return Err(channel::RecvError),
            }
        }
    }

    /// Waits for one answer from a shard.
    fn receive_one(&mut self) {
        match self.receive_output() {
            Ok(output) => self.take_output(output),
            Err(_) => self.failed = true,
        }
    }

    fn take_output(&mut self, output: (u32, Output)) {
        match output {
            (shard, Output::Results(ticket, results, movements, risk)) => {
                if let (Some(risk), Some(kept)) = (risk, self.stats.risk.get_mut(shard as usize)) {
                    *kept = *risk;
                }
                let front = self.in_flight.front().map_or(0, |batch| batch.ticket);
                let position = ticket.wrapping_sub(front) as usize;
                // A shard answers each segment once, for a batch still in
                // flight: its ticket is in the window and a segment of it
                // is outstanding.
                assert!(
                    position < self.in_flight.len(),
                    "ticket {ticket} outside the batches in flight"
                );
                if let Some(batch) = self.in_flight.get_mut(position) {
                    assert!(batch.outstanding > 0, "an answer to a segment not sent");
                    batch.outstanding -= 1;
                    if !movements.is_empty() {
                        if let Some(count) = self.stats.movements.get_mut(shard as usize) {
                            *count += movements.len() as u64;
                        }
                        batch.movements.push(movements);
                    }
                    for (index, result) in results {
                        if let Some(slot) = batch.results.get_mut(index as usize) {
                            // A split payment's payer half answers too when it
                            // has a detail (risk, budget) for the result; both
                            // halves agree on the status.
                            // A cross-currency payment's amounts (from the
                            // payee half) give way to the payer half's risk
                            // detail, as in the lone ledger.
                            let keep = slot.is_some_and(|kept| {
                                detail_rank(&kept.detail) > detail_rank(&result.detail)
                            });
                            if !keep {
                                *slot = Some(result);
                            }
                        }
                    }
                }
            }
            // A request's queries (`query_send`): a shard answers its
            // messages in the order sent, so the oldest request waiting for
            // this shard's answer of this kind is the one answered.
            (shard, Output::Accounts(found)) => {
                let waiting = self
                    .queries_in_flight
                    .iter_mut()
                    .find(|request| request.accounts[shard as usize].is_waiting());
                match waiting {
                    Some(request) => {
                        request.accounts[shard as usize] = Awaited::Answered(found);
                        request.outstanding -= 1;
                    }
                    None => self.failed = true,
                }
            }
            (shard, Output::Queries(answers)) => {
                let waiting = self
                    .queries_in_flight
                    .iter_mut()
                    .find(|request| request.replies[shard as usize].is_waiting());
                match waiting {
                    Some(request) => {
                        request.replies[shard as usize] = Awaited::Answered(answers);
                        request.outstanding -= 1;
                    }
                    None => self.failed = true,
                }
            }
            // Each taken by the call that asked for it (`snapshot`,
            // `freeze`): one arriving here is a bug.
            (_, Output::State(_) | Output::Frozen(_)) => self.failed = true,
        }
    }

    /// Answers the shards owe the router: segments' results and requests'
    /// queries (each takes a place in the output channel until taken).
    fn answers_outstanding(&self) -> usize {
        let segments: usize = self.in_flight.iter().map(|batch| batch.outstanding).sum();
        let queries: usize = self
            .queries_in_flight
            .iter()
            .map(|request| request.outstanding)
            .sum();
        segments + queries
    }

    /// Requests' queries sent and not all answered.
    fn queries_waiting(&self) -> usize {
        self.queries_in_flight
            .iter()
            .filter(|request| request.outstanding > 0)
            .count()
    }

    /// Waits until every request's queries sent are answered (their
    /// answers stay for [`Self::take_answered`]).
    fn settle_queries(&mut self) {
        while !self.failed && self.queries_waiting() > 0 {
            self.receive_one();
        }
    }

    /// Waits until every segment sent is answered (results stay queued for
    /// `complete_*`), and learns from them.
    fn settle(&mut self) {
        while !self.failed && self.in_flight.iter().any(|batch| batch.outstanding > 0) {
            self.receive_one();
        }
        self.settle_queries();
        let mut batches = std::mem::take(&mut self.in_flight);
        for batch in batches.iter_mut() {
            self.learn(batch);
        }
        self.in_flight = batches;
    }

    /// Sends the segments routed so far of the current batch (the first
    /// time, to every shard: each runs the batch-start expiries).
    fn send_segments(&mut self) {
        if self.failed {
            return;
        }
        let ticket = self.in_flight.back().map_or(0, |batch| batch.ticket);
        let mut sent = 0usize;
        for shard in 0..self.shards {
            let send = !self.first_sent || !self.segments[shard].steps.is_empty();
            if !send {
                continue;
            }
            let segment = std::mem::replace(
                &mut self.segments[shard],
                Segment {
                    ticket,
                    sequence: self.sequence,
                    timestamp: self.timestamp,
                    first: false,
                    forget: Vec::new(),
                    forget_holds: Vec::new(),
                    forget_fx: Vec::new(),
                    steps: Vec::new(),
                },
            );
            if self.inputs[shard].send(Input::Segment(segment)).is_err() {
                self.failed = true;
                return;
            }
            sent += 1;
        }
        self.first_sent = true;
        if let Some(current) = self.in_flight.back_mut() {
            current.outstanding += sent;
        }
    }

    /// Sends what is routed so far and waits for every result in flight;
    /// then learns the outcomes the routing of later commands may need.
    fn flush(&mut self) {
        if self.failed {
            return;
        }
        self.stats.flushes += 1;
        self.send_segments();
        self.settle();
    }

    /// Answers a read-only query from the state after the last batch
    /// (every answer in flight is taken first).
    pub fn query(&mut self, query: &Query) -> QueryReply {
        self.settle();
        self.query_batch(std::slice::from_ref(query))
            .pop()
            .unwrap_or(QueryReply::Refused(Status::Unavailable))
    }

    /// The shard that answers `query` from its own state, behind the
    /// segments queued before it; `None` for a balance (asked for by its
    /// parts, `views`) and for what the router answers itself.
    fn query_shard(&self, query: &Query) -> Option<usize> {
        match query {
            Query::Balance { .. } | Query::Command { .. } | Query::RiskPolicy => None,
            // A customer's risk state, audit and budgets live on its shard
            // (an unknown account or a house id: shard 0, which answers as
            // a lone ledger does).
            Query::RiskAudit { account, .. }
            | Query::Spending { account, .. }
            | Query::Instrument { account, .. } => Some(self.shard_or_first(*account) as usize),
            // Every shard has the same rate table.
            Query::FxRate { .. } => Some(0),
        }
    }

    /// What the router answers itself: a command's first status (learned
    /// from results, so after `settle`) and the risk policy (its copy,
    /// changed in log order when the policy's record is routed).
    fn router_query(&self, query: &Query) -> QueryReply {
        match query {
            Query::Command { id } => {
                match self
                    .tables
                    .records
                    .get(*id)
                    .and_then(|(_, record)| record.status)
                {
                    Some(status) => QueryReply::Command(status),
                    None => QueryReply::Refused(Status::UnknownCommand),
                }
            }
            Query::RiskPolicy => QueryReply::RiskPolicy {
                digest: self.risk_policy.digest(),
                rules: self.risk_policy.rules_on(),
            },
            // Asked of a shard (`query_shard`), never here.
            _ => QueryReply::Refused(Status::Unavailable),
        }
    }

    /// Puts a risk policy in force between two batches, in log order: the
    /// record goes to every shard behind the segments already sent, so each
    /// applies it at the same point of the log. Returns the policy's digest.
    pub fn set_risk_policy(
        &mut self,
        sequence: u64,
        timestamp: u64,
        policy: RiskPolicy,
    ) -> [u8; 32] {
        crate::ledger::advance_clock(
            (&mut self.sequence, &mut self.timestamp),
            sequence,
            timestamp,
        );
        for input in &self.inputs {
            let record = Input::RiskPolicy(sequence, timestamp, Box::new(policy.clone()));
            if input.send(record).is_err() {
                self.failed = true;
            }
        }
        let digest = policy.digest();
        self.risk_policy = policy;
        digest
    }

    /// The risk policy in force.
    pub fn risk_policy(&self) -> &RiskPolicy {
        &self.risk_policy
    }

    /// Where the parts of an account live: (shard, id on that shard). One
    /// part for a customer or merchant account (none if unknown) or a house
    /// part; a public house id has one part on every shard.
    fn account_parts(&self, id: AccountId) -> Vec<(usize, AccountId)> {
        if !id.is_house() {
            if self.shards == 1 {
                // Every account's shard, no directory look-up: the shard
                // answers `None` for an id it does not hold.
                return vec![(0, id)];
            }
            return self
                .shard_of(id)
                .map(|shard| vec![(shard as usize, id)])
                .unwrap_or_default();
        }
        let part = id.house_part_number() as usize;
        if part != 0 {
            return if part < self.shards {
                vec![(part, id)]
            } else {
                Vec::new()
            };
        }
        (0..self.shards)
            .map(|shard| (shard, id.house_part(shard as u32)))
            .collect()
    }

    /// Asks each shard, in one message, for the accounts in `asks[shard]`;
    /// the answers come back in the same shape. A shard answers after the
    /// segments sent to it before (its queue is in order), so the answers
    /// are the state after every batch routed so far; results of batches
    /// in flight that arrive meanwhile are taken as usual.
    fn ask_accounts(
        &mut self,
        asks: Vec<Vec<AccountId>>,
    ) -> Result<Vec<Vec<Option<Account>>>, ShardError> {
        let queries = vec![Vec::new(); asks.len()];
        Ok(self.ask(asks, queries)?.0)
    }

    /// `ask_accounts`, with the queries in `queries[shard]` asked of each
    /// shard as well (a second message, behind the first): both answered
    /// from the state after every batch routed so far.
    #[allow(clippy::type_complexity)] // two answers in the shape asked
    fn ask(
        &mut self,
        accounts: Vec<Vec<AccountId>>,
        queries: Vec<Vec<Query>>,
    ) -> Result<(Vec<Vec<Option<Account>>>, Vec<Vec<QueryReply>>), ShardError> {
        assert!(accounts.len() <= self.shards && queries.len() <= self.shards);
        // Its answers are told apart from a request's by order alone.
        self.settle_queries();
        let mut found: Vec<Vec<Option<Account>>> = vec![Vec::new(); accounts.len()];
        let mut replies: Vec<Vec<QueryReply>> = vec![Vec::new(); queries.len()];
        let mut outstanding = 0;
        for (shard, ids) in accounts.into_iter().enumerate() {
            if ids.is_empty() {
                continue;
            }
            let input = self.inputs.get(shard).ok_or(ShardError::ShardStopped)?;
            input
                .send(Input::Accounts(ids))
                .map_err(|_| ShardError::ShardStopped)?;
            outstanding += 1;
        }
        for (shard, asked) in queries.into_iter().enumerate() {
            if asked.is_empty() {
                continue;
            }
            let input = self.inputs.get(shard).ok_or(ShardError::ShardStopped)?;
            input
                .send(Input::Queries(asked))
                .map_err(|_| ShardError::ShardStopped)?;
            outstanding += 1;
        }
        while outstanding > 0 {
            match self.receive_output() {
                Ok((shard, Output::Accounts(accounts))) => {
                    let slot = found
                        .get_mut(shard as usize)
                        .ok_or(ShardError::ShardStopped)?;
                    *slot = accounts;
                    outstanding -= 1;
                }
                Ok((shard, Output::Queries(answers))) => {
                    let slot = replies
                        .get_mut(shard as usize)
                        .ok_or(ShardError::ShardStopped)?;
                    *slot = answers;
                    outstanding -= 1;
                }
                Ok(output @ (_, Output::Results(..))) => self.take_output(output),
                _ => return Err(ShardError::ShardStopped),
            }
        }
        Ok((found, replies))
    }

    /// An account as a lone ledger shows it, from its parts (a public house
    /// id sums its parts on every shard).
    fn view_of_parts(
        id: AccountId,
        parts: impl Iterator<Item = Option<Account>>,
    ) -> Option<AccountView> {
        let mut sum: Option<Account> = None;
        for part in parts.flatten() {
            match &mut sum {
                None => sum = Some(Account { id, ..part }),
                Some(total) => layout::add_house_part(total, &part),
            }
        }
        sum.map(|account| account.view())
    }

    /// Whether `query_batch` answers every query without waiting for the
    /// batches in flight: all but a command's status (learned from the
    /// results of the batches before it) are answered by the shards behind
    /// the segments already queued, or from the router's own copy (the risk
    /// policy).
    pub fn answered_behind(queries: &[Query]) -> bool {
        queries
            .iter()
            .all(|query| !matches!(query, Query::Command { .. }))
    }

    /// Each account as a lone ledger shows it (None: unknown), asked for
    /// with one message per shard that holds any of their parts.
    fn views(&mut self, ids: &[AccountId]) -> Result<Vec<Option<AccountView>>, ShardError> {
        Ok(self.views_and(ids, Vec::new())?.0)
    }

    /// `views`, with `queries[shard]` asked of each shard at the same time
    /// (see `ask`).
    #[allow(clippy::type_complexity)] // two answers in the shape asked
    fn views_and(
        &mut self,
        ids: &[AccountId],
        mut queries: Vec<Vec<Query>>,
    ) -> Result<(Vec<Option<AccountView>>, Vec<Vec<QueryReply>>), ShardError> {
        let parts: Vec<Vec<(usize, AccountId)>> =
            ids.iter().map(|&id| self.account_parts(id)).collect();
        let mut asks = vec![Vec::new(); self.shards];
        for &(shard, part) in parts.iter().flatten() {
            asks[shard].push(part);
        }
        queries.resize(self.shards, Vec::new());
        let (found, replies) = self.ask(asks, queries)?;
        let mut answers: Vec<_> = found.into_iter().map(Vec::into_iter).collect();
        let views = ids
            .iter()
            .zip(&parts)
            .map(|(&id, parts)| {
                let found = parts
                    .iter()
                    .map(|&(shard, _)| answers.get_mut(shard).and_then(Iterator::next).flatten());
                Self::view_of_parts(id, found)
            })
            .collect();
        Ok((views, replies))
    }

    /// The account as a lone ledger would show it: a public house id sums
    /// its parts on every shard.
    pub fn account_view(&mut self, id: AccountId) -> Result<Option<AccountView>, ShardError> {
        self.settle();
        Ok(self.views(&[id])?.pop().flatten())
    }

    /// Sends the queries of one request to the shards that answer them,
    /// without waiting: each shard gets at most two messages (the parts of
    /// the balances it holds, and the other queries it answers from its own
    /// state: spending, risk audit, instruments, FX rates), queued behind
    /// the segments already sent, so it answers from the state after every
    /// batch routed so far while the router routes on. What the router
    /// answers itself (the risk policy, and a command's status, for which
    /// the batches in flight are first waited for: see `answered_behind`)
    /// is answered now. The replies come back in request order from
    /// [`Self::take_answered`].
    pub fn query_send(&mut self, queries: &[Query]) {
        if !Self::answered_behind(queries) {
            self.settle();
        }
        // Room in the shards' output channel for these answers (see
        // `QUERIES_IN_FLIGHT_MAX`): every answer taken makes room.
        while !self.failed
            && (self.queries_waiting() >= QUERIES_IN_FLIGHT_MAX
                || self.answers_outstanding() + 2 * self.shards
                    > self.shards * limits::SHARD_QUEUE_DEPTH)
        {
            self.receive_one();
        }
        let mut asked_accounts: Vec<Vec<AccountId>> = vec![Vec::new(); self.shards];
        let mut asked_queries: Vec<Vec<Query>> = vec![Vec::new(); self.shards];
        let answerers = queries
            .iter()
            .map(|query| match query {
                Query::Balance { account } => {
                    let parts = self.account_parts(*account);
                    for &(shard, part) in &parts {
                        asked_accounts[shard].push(part);
                    }
                    Answerer::Balance(*account, parts)
                }
                other => match self.query_shard(other) {
                    Some(shard) => {
                        asked_queries[shard].push(*other);
                        Answerer::Shard(shard)
                    }
                    None => Answerer::Router(self.router_query(other)),
                },
            })
            .collect();
        let mut request = QueriesInFlight {
            answerers,
            accounts: (0..self.shards).map(|_| Awaited::NotAsked).collect(),
            replies: (0..self.shards).map(|_| Awaited::NotAsked).collect(),
            outstanding: 0,
        };
        for (shard, ids) in asked_accounts.into_iter().enumerate() {
            if ids.is_empty() || self.failed {
                continue;
            }
            if self.inputs[shard].send(Input::Accounts(ids)).is_err() {
                self.failed = true;
                continue;
            }
            request.accounts[shard] = Awaited::Waiting;
            request.outstanding += 1;
        }
        for (shard, asked) in asked_queries.into_iter().enumerate() {
            if asked.is_empty() || self.failed {
                continue;
            }
            if self.inputs[shard].send(Input::Queries(asked)).is_err() {
                self.failed = true;
                continue;
            }
            request.replies[shard] = Awaited::Waiting;
            request.outstanding += 1;
        }
        self.queries_in_flight.push_back(request);
    }

    /// Requests whose queries were sent and whose replies are not taken.
    pub fn queries_in_flight(&self) -> usize {
        self.queries_in_flight.len()
    }

    /// The replies to the oldest request sent with [`Self::query_send`],
    /// once all are in (or a shard thread stopped: `Unavailable` for what
    /// it did not answer); never waits. Answers that arrived are taken by
    /// every call that receives from the shards (`complete_*`,
    /// [`Self::wait_answer`]).
    pub fn take_answered(&mut self) -> Option<Vec<QueryReply>> {
        let oldest = self.queries_in_flight.front()?;
        if oldest.outstanding > 0 && !self.failed {
            return None;
        }
        self.queries_in_flight
            .pop_front()
            .map(QueriesInFlight::answers)
    }

    /// Waits for the next answer from any shard (a batch's segment or a
    /// request's queries) and takes it; returns at once if a shard thread
    /// stopped.
    pub fn wait_answer(&mut self) {
        if !self.failed {
            self.receive_one();
        }
    }

    /// Answers the queries of one request from the state after the last
    /// batch submitted, in order, waiting for them ([`Self::query_send`]
    /// without the wait). Replies to requests sent before with `query_send`
    /// stay for [`Self::take_answered`].
    pub fn query_batch(&mut self, queries: &[Query]) -> Vec<QueryReply> {
        self.query_send(queries);
        self.settle_queries();
        self.queries_in_flight
            .pop_back()
            .map(QueriesInFlight::answers)
            .unwrap_or_default()
    }

    /// The whole state as one lone ledger (house parts summed, records in
    /// global order): for checkpoints, digests and comparisons.
    pub fn to_ledger(&mut self) -> Result<Ledger, ShardError> {
        Ok(self.snapshot()?.merge())
    }

    /// A copy of every shard's state at the current sequence number (each
    /// shard copies its own, in parallel); [`ShardedState::merge`] turns it
    /// into one lone-ledger state, off the hot path.
    pub fn snapshot(&mut self) -> Result<ShardedState, ShardError> {
        self.settle();
        for input in &self.inputs {
            input
                .send(Input::State)
                .map_err(|_| ShardError::ShardStopped)?;
        }
        let mut states: Vec<Option<Ledger>> = (0..self.shards).map(|_| None).collect();
        for _ in 0..self.shards {
            match self.receive_output() {
                Ok((shard, Output::State(ledger))) => {
                    if let Some(state) = states.get_mut(shard as usize) {
                        *state = Some(*ledger);
                    }
                }
                _ => return Err(ShardError::ShardStopped),
            }
        }
        let states: Option<Vec<Ledger>> = states.into_iter().collect();
        let shards = states.ok_or(ShardError::ShardStopped)?;
        let records = self.lone_records().collect::<Vec<_>>();
        Ok(ShardedState {
            config: self.config,
            sequence: self.sequence,
            timestamp: self.timestamp,
            shards,
            records,
        })
    }

    /// The router's idempotency records as a lone ledger keeps them,
    /// oldest first.
    fn lone_records(
        &self,
    ) -> impl Iterator<Item = (CommandId, crate::ledger::IdempotencyRecord)> + '_ {
        self.tables
            .records
            .iter()
            .map(|(id, record)| (id, lone_record(&record)))
    }

    /// Completes every batch in flight, then has every shard answer with
    /// the address of its state and wait: until the router sends the next
    /// input, no shard touches its state, so the addresses and the
    /// router's own tables are one consistent state at the current
    /// sequence. Used to fork the checkpoint's process
    /// (`crate::checkpoint_process`); the next call that sends anything
    /// (a batch, a query) lets the shards go on.
    pub(crate) fn freeze(&mut self) -> Result<Frozen<'_>, ShardError> {
        self.settle();
        if self.failed {
            return Err(ShardError::ShardStopped);
        }
        for input in &self.inputs {
            input
                .send(Input::Freeze)
                .map_err(|_| ShardError::ShardStopped)?;
        }
        let mut addresses = vec![0usize; self.shards];
        for _ in 0..self.shards {
            match self.receive_output() {
                Ok((shard, Output::Frozen(address))) => {
                    if let Some(place) = addresses.get_mut(shard as usize) {
                        *place = address;
                    }
                }
                _ => {
                    self.failed = true;
                    return Err(ShardError::ShardStopped);
                }
            }
        }
        assert!(
            addresses.iter().all(|&address| address != 0),
            "every shard answered a freeze once"
        );
        Ok(Frozen {
            ledger: self,
            addresses,
        })
    }

    /// Stops the shard threads.
    pub fn stop(&mut self) {
        for input in &self.inputs {
            let _ = input.send(Input::Stop);
        }
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("a shard thread panicked");
            }
        }
    }
}

impl Drop for ShardedLedger {
    fn drop(&mut self) {
        self.stop();
    }
}
