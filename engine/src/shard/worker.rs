//! One shard: a single-threaded state machine over its own accounts.
//!
//! A shard applies the segments the router sends it strictly in order. A
//! two-party command whose other account lives on another shard is decided
//! by exchanging verdicts with that shard: each half sends its verdict and
//! receives the peer's, and is applied only if both said yes.
//!
//! Verdicts travel in batches, not one message per command. A shard decides
//! a split half, queues its verdict for the peer and goes on (the half is
//! *deferred*); it settles its deferred halves (sends what it queued,
//! receives the peers' verdicts, applies in log order) only when it must:
//! - a later step touches an owner with a deferred half (its accounts, its
//!   risk and budget state, its payment codes): that step needs the outcome;
//! - a step that is not characterised by its owners (a one-account command,
//!   a setting, a refund, a cross-currency payment, a payer half that waits
//!   for the merchant's MCC): settle first, then decide it as before;
//! - the end of the segment (its results go back whole).
//!
//! Steps on other owners run in between: they commute with the deferred
//! halves, so the state after the segment is the lone ledger's. A shard
//! sends everything it queued before it waits for anything, and every shard
//! walks the same global order, so the shard furthest behind always has what
//! it waits for: the exchange never deadlocks.

use std::collections::VecDeque;

use crossbeam::channel::{Receiver, Sender, TryRecvError};
use rustc_hash::FxHashSet;

use crate::command::{
    AccountId, Command, CommandId, CommandKind, CommandResult, Detail, Query, QueryReply,
};
use crate::history::MovementChunk;
use crate::ledger::halves::{
    combine, with_risk, Check, FxPlan, MccFacts, Parties, Plan, RiskOutcome,
};
use crate::ledger::{Account, Elsewhere, Half, IdempotencyRecord, Ledger, Verdict, WARM_GROUP};
use crate::limits;
use crate::risk::{RiskCounters, RiskPolicy};
use crate::status::Status;

/// What a shard does with one command of a segment.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Step {
    /// Everything the command touches is on this shard (with this shard's
    /// part of the house accounts): the lone ledger's handler runs as is.
    Local {
        index: u32,
        command: Command,
        fingerprint: u64,
        elsewhere: Elsewhere,
    },
    /// A global setting (an FX rate or floor): every shard applies it, in
    /// log order; only `report` (shard 0) reports its result, which every
    /// shard's equals (the setting's checks read only other settings).
    Setting {
        index: u32,
        command: Command,
        report: bool,
    },
    /// A two-party command, this shard's share of it.
    Pair {
        index: u32,
        command: Command,
        fingerprint: u64,
        parties: Parties,
        role: Role,
    },
}

impl Step {
    pub(crate) fn command(&self) -> &Command {
        match self {
            Step::Local { command, .. }
            | Step::Setting { command, .. }
            | Step::Pair { command, .. } => command,
        }
    }
}

/// A shard's share of a two-party command.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    /// Both halves are here.
    Both,
    /// The debit half is here, the credit half on `peer`.
    Debit { peer: u32 },
    /// The credit half is here, the debit half on `peer`. The credit side
    /// keeps the command's record and reports its result.
    Credit { peer: u32 },
}

/// A run of one batch's commands for one shard.
#[derive(Debug, Default)]
pub(crate) struct Segment {
    /// The router's number for the batch, to match the answer.
    pub(crate) ticket: u64,
    pub(crate) sequence: u64,
    pub(crate) timestamp: u64,
    /// The batch's first segment: run the batch-start expiries first.
    pub(crate) first: bool,
    /// Records the router dropped (window or cap) whose home is this shard,
    /// oldest first; applied after the expiries, as the lone ledger does.
    pub(crate) forget: Vec<CommandId>,
    /// Holds kept here whose id's record (kept on another shard: the id was
    /// reused) was dropped: a finished one goes, as with a local record.
    pub(crate) forget_holds: Vec<CommandId>,
    /// Cross-currency payments whose payer lives here and whose record (kept
    /// on the merchant's shard) was dropped: their FX legs go too.
    pub(crate) forget_fx: Vec<CommandId>,
    pub(crate) steps: Vec<Step>,
}

pub(crate) enum Input {
    Segment(Segment),
    /// The accounts with these ids, each if this shard has it (one message
    /// for all the balance queries of a request).
    Accounts(Vec<AccountId>),
    /// A copy of the whole state, for a merge.
    State,
    /// Answer with the address of this shard's state and touch nothing
    /// until the next input: the router forks the checkpoint's process
    /// while every shard waits (`crate::checkpoint_process`).
    Freeze,
    /// A risk policy record, between two batches: (sequence, timestamp,
    /// policy).
    RiskPolicy(u64, u64, Box<RiskPolicy>),
    /// Turn movement history on or off (before the first segment).
    RecordHistory(bool),
    /// Queries about accounts that live on this shard (or about the FX rate
    /// table, which every shard has), answered in order from the state after
    /// the segments queued before them.
    Queries(Vec<Query>),
    Stop,
}

pub(crate) enum Output {
    /// Results of the commands whose home is this shard, by batch index,
    /// with the batch's ticket, and the movements the segment made (empty
    /// while history is off).
    /// The shard's risk counters come along when they changed since its
    /// last answer.
    Results(
        u64,
        Vec<(u32, CommandResult)>,
        MovementChunk,
        Option<Box<RiskCounters>>,
    ),
    /// In the order asked.
    Accounts(Vec<Option<Account>>),
    State(Box<Ledger>),
    /// The address of the shard's `Ledger`, which stays where it is and
    /// unchanged until the shard's next input.
    Frozen(usize),
    /// In the order asked.
    Queries(Vec<QueryReply>),
}

/// One verdict on the wire between two shards: batch sequence, index in the
/// batch, the half's answer, its fact for the peer (an MCC, or 0; see
/// `Books::half_fact`), and what it knows of the merchant category for the
/// movement history.
pub(crate) type VerdictMessage = (u64, u32, Verdict, u16, MccFacts);

/// What one message between two shards carries: the verdicts queued since
/// the last one, in log order.
pub(crate) type VerdictBatch = Vec<VerdictMessage>;

/// Verdicts queued for one peer before they go without waiting for a
/// reason (a shard also sends before it waits, and at a segment's end).
const VERDICTS_SEND_AT: usize = 256;

/// Verdict batches that can be on their way from one shard to another. A
/// shard cannot finish a segment before it has its peers' verdicts for it,
/// so it runs at most one segment it shares with a peer ahead of that peer:
/// at most two segments' verdicts are queued, and a batch holds at least
/// one. The channels are unbounded for that reason and checked against it.
const VERDICT_BATCHES_QUEUED_MAX: usize = 2 * limits::BATCH_COMMANDS_MAX;

/// The exchange with one peer shard.
pub(crate) struct Peer {
    pub(crate) sender: Sender<VerdictBatch>,
    pub(crate) receiver: Receiver<VerdictBatch>,
    /// Verdicts queued for the peer, not sent yet.
    outbox: Vec<VerdictMessage>,
    /// Verdicts received from the peer, not used yet (log order).
    inbox: VecDeque<VerdictMessage>,
}

impl Peer {
    pub(crate) fn new(sender: Sender<VerdictBatch>, receiver: Receiver<VerdictBatch>) -> Peer {
        Peer {
            sender,
            receiver,
            outbox: Vec::with_capacity(VERDICTS_SEND_AT),
            inbox: VecDeque::with_capacity(VERDICTS_SEND_AT),
        }
    }

    /// Sends what is queued; `None` if the peer is gone.
    fn send(&mut self) -> Option<()> {
        if self.outbox.is_empty() {
            return Some(());
        }
        let batch = std::mem::replace(&mut self.outbox, Vec::with_capacity(VERDICTS_SEND_AT));
        self.sender.send(batch).ok()
    }

    /// The peer's next verdict: spin briefly (it is usually microseconds
    /// behind), then yield, then block. Parking on every verdict cost more
    /// than applying.
    fn receive(&mut self, sequence: u64, index: u32) -> Option<(Verdict, u16, MccFacts)> {
        if self.inbox.is_empty() {
            assert!(
                self.receiver.len() <= VERDICT_BATCHES_QUEUED_MAX,
                "a shard runs at most one shared segment ahead of its peer"
            );
            let backoff = crossbeam::utils::Backoff::new();
            let batch = loop {
                match self.receiver.try_recv() {
                    Ok(batch) => break batch,
                    Err(TryRecvError::Disconnected) => return None,
                    Err(TryRecvError::Empty) => {
                        if backoff.is_completed() {
                            break self.receiver.recv().ok()?;
                        }
                        backoff.snooze();
                    }
                }
            };
            assert!(!batch.is_empty(), "only queued verdicts are sent");
            self.inbox.extend(batch);
        }
        let (their_sequence, their_index, theirs, fact, facts) = self.inbox.pop_front()?;
        assert_eq!(
            (their_sequence, their_index),
            (sequence, index),
            "shards walk the same global order"
        );
        Some((theirs, fact, facts))
    }
}

/// A split half decided here, its verdict queued for the peer, waiting for
/// the peer's verdict to be applied (or not).
#[derive(Clone, Copy)]
struct Deferred {
    sequence: u64,
    timestamp: u64,
    index: u32,
    command: Command,
    fingerprint: u64,
    parties: Parties,
    half: Half,
    peer: u32,
    mine: Result<Plan, (Check, Status)>,
    /// Mine, with the risk step's answer (payer half).
    verdict: Verdict,
    risk: RiskOutcome,
    /// The payer's risk step runs again with the merchant's MCC once both
    /// said yes (no policy in force: the MCC only names the category).
    rerun_risk: bool,
    facts: MccFacts,
}

pub(crate) struct Worker {
    pub(crate) ledger: Ledger,
    pub(crate) inputs: Receiver<Input>,
    pub(crate) outputs: Sender<(u32, Output)>,
    pub(crate) shard: u32,
    /// Indexed by peer shard; `None` for this shard itself.
    pub(crate) peers: Vec<Option<Peer>>,
    /// Split halves sent and not settled, in log order.
    deferred: Vec<Deferred>,
    /// The owners the deferred halves touch.
    pending: FxHashSet<u64>,
    /// Payments evaluated as of the risk counters last sent (None: never).
    pub(crate) risk_reported: Option<u64>,
}

impl Worker {
    pub(crate) fn new(
        ledger: Ledger,
        inputs: Receiver<Input>,
        outputs: Sender<(u32, Output)>,
        shard: u32,
        peers: Vec<Option<Peer>>,
    ) -> Worker {
        Worker {
            ledger,
            inputs,
            outputs,
            shard,
            peers,
            deferred: Vec::new(),
            pending: FxHashSet::default(),
            risk_reported: None,
        }
    }

    pub(crate) fn run(mut self) {
        while let Ok(input) = self.inputs.recv() {
            let output = match input {
                Input::Segment(segment) => match self.apply(&segment) {
                    Some(results) => Output::Results(
                        segment.ticket,
                        results,
                        self.take_movements(),
                        self.risk_changed(),
                    ),
                    // A peer stopped mid-exchange: the engine is going down.
                    None => return,
                },
                Input::Accounts(ids) => Output::Accounts(
                    ids.iter()
                        .map(|id| self.ledger.account(*id).copied())
                        .collect(),
                ),
                Input::State => Output::State(Box::new(self.ledger.clone())),
                Input::Freeze => {
                    debug_assert!(self.deferred.is_empty(), "no half waits at a freeze");
                    Output::Frozen(std::ptr::from_ref(&self.ledger) as usize)
                }
                Input::RiskPolicy(sequence, timestamp, policy) => {
                    self.ledger.set_risk_policy(sequence, timestamp, *policy);
                    continue;
                }
                Input::RecordHistory(on) => {
                    self.ledger.record_history(on);
                    continue;
                }
                Input::Queries(queries) => Output::Queries(
                    queries
                        .iter()
                        .map(|query| self.ledger.query(query))
                        .collect(),
                ),
                Input::Stop => {
                    // A stop does not wait while the allocator takes the
                    // state back (seconds at 2M accounts).
                    crate::prefetch::drop_in_background(self.ledger);
                    return;
                }
            };
            if self.outputs.send((self.shard, output)).is_err() {
                return;
            }
        }
    }

    /// The risk counters, if payments were evaluated since they were last
    /// sent (every decision counts an evaluation).
    fn risk_changed(&mut self) -> Option<Box<RiskCounters>> {
        let counters = self.ledger.risk().counters();
        if self.risk_reported == Some(counters.evaluated) {
            return None;
        }
        self.risk_reported = Some(counters.evaluated);
        Some(Box::new(*counters))
    }

    /// The movements of the segment just applied, handed over whole; the
    /// next segment's chunk is allocated once, sized for its steps.
    fn take_movements(&mut self) -> MovementChunk {
        match &mut self.ledger.books.history {
            Some(sink) => std::mem::take(&mut sink.movements),
            None => MovementChunk::default(),
        }
    }

    fn apply(&mut self, segment: &Segment) -> Option<Vec<(u32, CommandResult)>> {
        assert!(self.deferred.is_empty() && self.pending.is_empty());
        let timestamp = segment.timestamp;
        if let Some(sink) = &mut self.ledger.books.history {
            // A command entry and about two legs per step: two allocations
            // per segment, none per movement.
            sink.movements.reserve(segment.steps.len());
        }
        self.ledger
            .books
            .begin_movements(segment.sequence, timestamp);
        if segment.first {
            assert!(segment.sequence > self.ledger.sequence);
            assert!(timestamp >= self.ledger.timestamp);
            self.ledger.sequence = segment.sequence;
            self.ledger.timestamp = timestamp;
            let ledger = &mut self.ledger;
            ledger.books.expire_holds(timestamp, None);
            ledger.books.expire_payment_codes(timestamp);
            ledger.books.expire_fx_quotes(timestamp);
            for &id in &segment.forget {
                ledger.forget_record(id);
            }
            for id in &segment.forget_holds {
                ledger.books.forget_finished_hold(*id);
            }
            for &id in &segment.forget_fx {
                ledger.books.fx.forget_payment(id);
            }
        }
        let mut results = Vec::with_capacity(segment.steps.len());
        let steps = &segment.steps;
        // The budget prefetch's month, the same for the whole segment.
        let month = crate::risk::Month::from_timestamp(self.ledger.timestamp);
        // Warmed a group at a time (see `WARM_GROUP`): the first groups
        // before the loop, then two groups ahead of the one that runs.
        let group = |first: usize| {
            steps[first.min(steps.len())..(first + WARM_GROUP).min(steps.len())]
                .iter()
                .map(Step::command)
        };
        self.ledger
            .warm_ahead(group(0).chain(group(WARM_GROUP)), group(0), month);
        for (position, step) in steps.iter().enumerate() {
            if position % WARM_GROUP == 0 {
                self.ledger.warm_ahead(
                    group(position + 2 * WARM_GROUP),
                    group(position + WARM_GROUP),
                    month,
                );
            }
            match *step {
                Step::Local {
                    index,
                    command,
                    fingerprint,
                    elsewhere,
                } => {
                    self.settle(&mut results)?;
                    if self.ledger.books.history.is_some() {
                        self.ledger.books.set_movement_context(&command, index);
                    }
                    let result = self
                        .ledger
                        .books
                        .execute_with(&command, timestamp, elsewhere);
                    self.record(&command, fingerprint, result, timestamp);
                    results.push((index, result));
                }
                Step::Setting {
                    index,
                    command,
                    report,
                } => {
                    self.settle(&mut results)?;
                    let result =
                        self.ledger
                            .books
                            .execute_with(&command, timestamp, Elsewhere::default());
                    if report {
                        results.push((index, result));
                    }
                }
                Step::Pair {
                    index,
                    command,
                    fingerprint,
                    parties,
                    role,
                } => {
                    let (half, peer) = match role {
                        Role::Both => {
                            self.pair_here(
                                index,
                                &command,
                                fingerprint,
                                parties,
                                timestamp,
                                &mut results,
                            )?;
                            continue;
                        }
                        Role::Debit { peer } => (Half::Debit, peer),
                        Role::Credit { peer } => (Half::Credit, peer),
                    };
                    let deferred = Deferred {
                        sequence: segment.sequence,
                        timestamp,
                        index,
                        command,
                        fingerprint,
                        parties,
                        half,
                        peer,
                        mine: Err((Check::Fields, Status::Unavailable)),
                        verdict: Ok(()),
                        risk: Ok(None),
                        rerun_risk: false,
                        facts: MccFacts::default(),
                    };
                    self.pair_split(deferred, &mut results)?;
                }
            }
        }
        self.settle(&mut results)?;
        // A verdict queued after the last wait (a payer half that received
        // first sends after) goes before the shard goes idle.
        self.send_all()?;
        Some(results)
    }

    /// The owner whose state a split half touches on this shard, if the
    /// half can be deferred (`Some(None)`: its account is unknown here, so
    /// it fails whatever happens before it); `None` if it must be settled
    /// on the spot (it touches more than its owner: a refund, a
    /// cross-currency payment, anything else).
    fn deferrable_owner(
        &self,
        command: &Command,
        parties: Parties,
        half: Half,
    ) -> Option<Option<u64>> {
        let books = &self.ledger.books;
        let account = match (command.kind, half) {
            (CommandKind::Transfer { from, .. }, Half::Debit) => Some(from),
            (CommandKind::Transfer { to, .. }, Half::Credit) => Some(to),
            (
                CommandKind::PayMerchantQr {
                    payer, currency, ..
                },
                Half::Debit,
            ) => {
                if books
                    .find(payer)
                    .is_some_and(|account| account.currency != currency)
                {
                    return None;
                }
                Some(payer)
            }
            (CommandKind::PayMerchantQr { currency, .. }, Half::Credit) => {
                if parties
                    .payer_currency
                    .is_some_and(|payer| payer != currency)
                {
                    return None;
                }
                parties.credit
            }
            (CommandKind::ChargePaymentCode { .. }, Half::Debit) => parties.debit,
            (CommandKind::ChargePaymentCode { merchant, .. }, Half::Credit) => Some(merchant),
            _ => return None,
        };
        Some(
            account
                .and_then(|id| books.find(id))
                .map(|account| account.owner),
        )
    }

    /// Whether an owner of `parties` has a deferred half.
    fn touches_pending(&self, parties: Parties) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let books = &self.ledger.books;
        [parties.debit, parties.credit]
            .into_iter()
            .flatten()
            .filter_map(|id| books.find(id))
            .any(|account| self.pending.contains(&account.owner))
    }

    /// A two-party command with both halves here: the lone ledger's way.
    fn pair_here(
        &mut self,
        index: u32,
        command: &Command,
        fingerprint: u64,
        parties: Parties,
        timestamp: u64,
        results: &mut Vec<(u32, CommandResult)>,
    ) -> Option<()> {
        if self.touches_pending(parties) {
            self.settle(results)?;
        }
        let books = &mut self.ledger.books;
        if books.history.is_some() {
            books.set_movement_context(command, index);
        }
        let parties = books.with_payer_currency(command, parties);
        let result = books.apply_pair_local(command, parties, timestamp);
        self.record(command, fingerprint, result, timestamp);
        results.push((index, result));
        Some(())
    }

    /// This shard's half of a split two-party command: decide it, queue the
    /// verdict for the peer, and defer it, or settle it on the spot.
    /// `None` if a peer is gone.
    fn pair_split(
        &mut self,
        mut half: Deferred,
        results: &mut Vec<(u32, CommandResult)>,
    ) -> Option<()> {
        let owner = self.deferrable_owner(&half.command, half.parties, half.half);
        let free = matches!(owner, Some(owner) if !owner.is_some_and(|owner| self.pending.contains(&owner)));
        if !free {
            self.settle(results)?;
        }
        let books = &self.ledger.books;
        let (command, parties, timestamp) = (half.command, half.parties, half.timestamp);
        let command = &command;
        half.mine = books.evaluate_half(command, parties, half.half, timestamp);
        half.verdict = half.mine.map(|_| ());
        if books.history.is_some() {
            half.facts = books.mcc_facts(command, half.mine.ok().map(|plan| plan.slot));
        }
        // The payer's risk step needs the merchant's MCC from the payee
        // half. With a policy in force the rules may decide on it, so the
        // payer receives first (the payee half never waits for the payer's
        // verdict before sending its own); with none they decide nothing,
        // and the MCC only names the spending category, so the step runs
        // again with it once both said yes.
        let needs_fact = half.half == Half::Debit && books.needs_payee_fact(command, half.mine);
        if needs_fact && books.risk.enabled() {
            self.settle(results)?;
            let peer = half.peer;
            let (theirs, fact, their_facts) = self.receive(peer, half.sequence, half.index)?;
            let books = &self.ledger.books;
            if let (Ok(plan), Ok(())) = (half.mine, theirs) {
                half.risk = books.risk_half(command, parties, plan, fact, timestamp);
                half.verdict = with_risk(half.verdict, &half.risk);
            }
            self.post(
                peer,
                (half.sequence, half.index, half.verdict, 0, half.facts),
            )?;
            self.finish(&half, theirs, fact, their_facts, results);
            return Some(());
        }
        if let (Half::Debit, Ok(plan)) = (half.half, half.mine) {
            half.risk = books.risk_half(command, parties, plan, 0, timestamp);
            half.verdict = with_risk(half.verdict, &half.risk);
        }
        half.rerun_risk = needs_fact;
        let fact = books.half_fact(command, half.half, half.mine);
        self.post(
            half.peer,
            (half.sequence, half.index, half.verdict, fact, half.facts),
        )?;
        match owner {
            Some(owner) => {
                if let Some(owner) = owner {
                    self.pending.insert(owner);
                }
                self.deferred.push(half);
            }
            None => {
                let (theirs, fact, their_facts) =
                    self.receive(half.peer, half.sequence, half.index)?;
                self.finish(&half, theirs, fact, their_facts, results);
            }
        }
        Some(())
    }

    /// Queues a verdict for `peer`; sends the queue once it is long.
    fn post(&mut self, peer: u32, message: VerdictMessage) -> Option<()> {
        let peer = self.peers.get_mut(peer as usize)?.as_mut()?;
        peer.outbox.push(message);
        if peer.outbox.len() >= VERDICTS_SEND_AT {
            peer.send()?;
        }
        Some(())
    }

    /// Sends what is queued for every peer. A shard does this before it
    /// waits for anything, so no peer can be waiting for it meanwhile.
    fn send_all(&mut self) -> Option<()> {
        for peer in self.peers.iter_mut().flatten() {
            peer.send()?;
        }
        Some(())
    }

    /// `peer`'s verdict on the command at (`sequence`, `index`), after
    /// sending everything queued.
    fn receive(
        &mut self,
        peer: u32,
        sequence: u64,
        index: u32,
    ) -> Option<(Verdict, u16, MccFacts)> {
        self.send_all()?;
        self.received(peer, sequence, index)
    }

    /// `peer`'s verdict, once this shard has sent everything queued.
    fn received(
        &mut self,
        peer: u32,
        sequence: u64,
        index: u32,
    ) -> Option<(Verdict, u16, MccFacts)> {
        self.peers
            .get_mut(peer as usize)?
            .as_mut()?
            .receive(sequence, index)
    }

    /// Settles every deferred half, in log order.
    fn settle(&mut self, results: &mut Vec<(u32, CommandResult)>) -> Option<()> {
        if self.deferred.is_empty() {
            return Some(());
        }
        // Settling queues nothing new: one send covers every wait below.
        self.send_all()?;
        let mut deferred = std::mem::take(&mut self.deferred);
        for half in &deferred {
            let (theirs, fact, their_facts) =
                self.received(half.peer, half.sequence, half.index)?;
            self.finish(half, theirs, fact, their_facts, results);
        }
        deferred.clear();
        self.deferred = deferred;
        self.pending.clear();
        Some(())
    }

    /// Applies a split half once the peer's verdict is in (if both said
    /// yes), and gives its result if this shard reports one (a payer half
    /// away from home answers only to carry its detail: a risk decision, a
    /// budget crossing).
    fn finish(
        &mut self,
        half: &Deferred,
        theirs: Verdict,
        fact: u16,
        their_facts: MccFacts,
        results: &mut Vec<(u32, CommandResult)>,
    ) {
        let command = &half.command;
        let (parties, timestamp) = (half.parties, half.timestamp);
        let books = &mut self.ledger.books;
        let history = books.history.is_some();
        if history {
            books.set_movement_context(command, half.index);
        }
        let outcome = match half.half {
            Half::Debit => combine(half.verdict, theirs),
            Half::Credit => combine(theirs, half.verdict),
        };
        let mut risk = half.risk;
        match (outcome, half.mine) {
            (Ok(()), Ok(plan)) => {
                if half.rerun_risk {
                    risk = books.risk_half(command, parties, plan, fact, timestamp);
                }
                if history {
                    let mcc = match half.half {
                        Half::Debit => MccFacts::combine(half.facts, their_facts),
                        Half::Credit => MccFacts::combine(their_facts, half.facts),
                    };
                    books.set_half_context(half.half, parties, mcc);
                }
                books.apply_half(command, parties, half.half, plan, None, timestamp);
                books.note_half(half.half, plan);
                books.after_half(command, half.half, plan, risk, fact, timestamp);
            }
            (Err(_), Ok(plan)) if half.half == Half::Debit && theirs.is_ok() => {
                // Stopped at the rules, the lone ledger's last check.
                if let Err(stop) = &risk {
                    books.risk_refuse(command.id, plan.slot, stop);
                }
            }
            _ => {}
        }
        let mut detail = std::mem::take(&mut books.detail);
        if half.half == Half::Credit {
            detail = fx_detail(outcome, detail, half.mine.ok());
        }
        match half.half {
            Half::Debit if detail == Detail::None => {}
            Half::Debit => results.push((half.index, result(outcome, detail))),
            Half::Credit => {
                let result = result(outcome, detail);
                self.record(command, half.fingerprint, result, timestamp);
                results.push((half.index, result));
            }
        }
    }

    /// A shard keeps records only where state hangs on them: a hold is
    /// dropped when it is finished and its record is gone. The router keeps
    /// every record (duplicates, queries, checkpoints).
    fn record(
        &mut self,
        command: &Command,
        fingerprint: u64,
        result: CommandResult,
        timestamp: u64,
    ) {
        if !matches!(
            command.kind,
            crate::command::CommandKind::WithdrawHold { .. }
                | crate::command::CommandKind::WithdrawHoldTo { .. }
        ) {
            return;
        }
        let records = &mut self.ledger.records;
        records.held.insert(
            command.id,
            IdempotencyRecord {
                fingerprint,
                status: result.status,
                timestamp,
            },
        );
    }
}

fn result(outcome: Result<(), crate::status::Status>, detail: Detail) -> CommandResult {
    match outcome {
        Ok(()) => CommandResult::with_detail(crate::status::Status::Ok, detail),
        Err(status) => CommandResult::with_detail(status, detail),
    }
}

/// A cross-currency payment's result says what it cost (the credit half
/// priced it), unless the risk step left a detail, as in the lone ledger.
fn fx_detail(outcome: Result<(), Status>, detail: Detail, credit: Option<Plan>) -> Detail {
    match (outcome, detail, credit.map(|plan| plan.fx)) {
        (Ok(()), Detail::None, Some(FxPlan::Pay(Some(amounts)))) => Detail::FxConversion(amounts),
        (_, detail, _) => detail,
    }
}
