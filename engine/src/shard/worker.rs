//! One shard: a single-threaded state machine over its own accounts.
//!
//! A shard applies the segments the router sends it strictly in order. A
//! two-party command whose other account lives on another shard is decided
//! by exchanging verdicts with that shard over a dedicated bounded channel:
//! send mine, receive theirs, apply only if both said yes. Every shard walks
//! the same global order, so the peer always reaches the same command and
//! the exchange never deadlocks.

use crossbeam::channel::{Receiver, Sender};

use crate::command::{AccountId, Command, CommandId, CommandResult, Detail, Query, QueryReply};
use crate::history::Movement;
use crate::ledger::halves::{combine, with_risk, FxPlan, MccFacts, Parties, Plan, RiskOutcome};
use crate::ledger::{
    Account, Elsewhere, Half, IdempotencyRecord, Ledger, Verdict, WARM_FAR, WARM_NEAR,
};
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
    /// A copy of the whole state, for a checkpoint or a merge.
    State,
    /// A risk policy record, between two batches: (sequence, timestamp,
    /// policy).
    RiskPolicy(u64, u64, Box<RiskPolicy>),
    /// Turn movement history on or off (before the first segment).
    RecordHistory(bool),
    /// A query about an account that lives on this shard (or about the FX
    /// rate table, which every shard has).
    Query(Query),
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
        Vec<Movement>,
        Option<Box<RiskCounters>>,
    ),
    /// In the order asked.
    Accounts(Vec<Option<Account>>),
    State(Box<Ledger>),
    Query(QueryReply),
}

/// One verdict on the wire between two shards: batch sequence, index in the
/// batch, the half's answer, its fact for the peer (an MCC, or 0; see
/// `Books::half_fact`), and what it knows of the merchant category for the
/// movement history.
pub(crate) type VerdictMessage = (u64, u32, Verdict, u16, MccFacts);

pub(crate) struct Worker {
    pub(crate) ledger: Ledger,
    pub(crate) inputs: Receiver<Input>,
    pub(crate) outputs: Sender<(u32, Output)>,
    pub(crate) shard: u32,
    /// Indexed by peer shard; `None` for this shard itself.
    pub(crate) verdicts_out: Vec<Option<Sender<VerdictMessage>>>,
    pub(crate) verdicts_in: Vec<Option<Receiver<VerdictMessage>>>,
    /// Payments evaluated as of the risk counters last sent (None: never).
    pub(crate) risk_reported: Option<u64>,
}

impl Worker {
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
                Input::RiskPolicy(sequence, timestamp, policy) => {
                    self.ledger.set_risk_policy(sequence, timestamp, *policy);
                    continue;
                }
                Input::RecordHistory(on) => {
                    self.ledger.record_history(on);
                    continue;
                }
                Input::Query(query) => Output::Query(self.ledger.query(&query)),
                Input::Stop => return,
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
    /// next segment's vector is allocated once, sized for its steps.
    fn take_movements(&mut self) -> Vec<Movement> {
        match &mut self.ledger.books.history {
            Some(sink) => std::mem::take(&mut sink.movements),
            None => Vec::new(),
        }
    }

    fn apply(&mut self, segment: &Segment) -> Option<Vec<(u32, CommandResult)>> {
        let timestamp = segment.timestamp;
        if let Some(sink) = &mut self.ledger.books.history {
            // About two legs per step: one allocation per segment, none per
            // movement.
            sink.movements.reserve(segment.steps.len() * 2);
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
        for (position, step) in steps.iter().enumerate() {
            self.ledger.warm_ahead(
                steps.get(position + WARM_FAR).map(Step::command),
                steps.get(position + WARM_NEAR).map(Step::command),
            );
            match *step {
                Step::Local {
                    index,
                    command,
                    fingerprint,
                    elsewhere,
                } => {
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
                    if let Some((result, home)) =
                        self.pair(segment.sequence, index, &command, parties, role, timestamp)?
                    {
                        if home {
                            self.record(&command, fingerprint, result, timestamp);
                        }
                        results.push((index, result));
                    }
                }
            }
        }
        Some(results)
    }

    /// Decides and applies this shard's share of a two-party command; its
    /// result and whether this shard is the command's home (a payer half
    /// away from home answers only to carry its detail: a risk decision,
    /// a budget crossing). `None` if a peer is gone.
    fn pair(
        &mut self,
        sequence: u64,
        index: u32,
        command: &Command,
        parties: Parties,
        role: Role,
        timestamp: u64,
    ) -> Option<Option<(CommandResult, bool)>> {
        let books = &mut self.ledger.books;
        let history = books.history.is_some();
        if history {
            books.set_movement_context(command, index);
        }
        match role {
            Role::Both => Some(Some((
                books.apply_pair_local(command, parties, timestamp),
                true,
            ))),
            Role::Debit { peer } | Role::Credit { peer } => {
                let half = if matches!(role, Role::Debit { .. }) {
                    Half::Debit
                } else {
                    Half::Credit
                };
                let mine = books.evaluate_half(command, parties, half, timestamp);
                let peer = peer as usize;
                let sender = self.verdicts_out.get(peer)?.as_ref()?;
                let receiver = self.verdicts_in.get(peer)?.as_ref()?;
                let mut risk: RiskOutcome = Ok(None);
                let mut verdict = mine.map(|_| ());
                // The payer's risk step needs the merchant's MCC from the
                // payee half. With a policy in force the rules may decide on
                // it, so the payer receives first (the payee half always
                // sends before it receives, so this cannot deadlock); with
                // none they decide nothing, and the MCC only names the
                // spending category, so the step runs again with it below.
                let needs_fact = half == Half::Debit && books.needs_payee_fact(command, mine);
                let receive_first = needs_fact && books.risk.enabled();
                let my_facts = if history {
                    books.mcc_facts(command, mine.ok().map(|plan| plan.slot))
                } else {
                    MccFacts::default()
                };
                let (theirs, fact, their_facts) = if receive_first {
                    let (theirs, fact, their_facts) = receive_verdict(receiver, sequence, index)?;
                    if let (Ok(plan), Ok(())) = (mine, theirs) {
                        risk = books.risk_half(command, parties, plan, fact, timestamp);
                        verdict = with_risk(verdict, &risk);
                    }
                    sender.send((sequence, index, verdict, 0, my_facts)).ok()?;
                    (theirs, fact, their_facts)
                } else {
                    if let (Half::Debit, Ok(plan)) = (half, mine) {
                        risk = books.risk_half(command, parties, plan, 0, timestamp);
                        verdict = with_risk(verdict, &risk);
                    }
                    let my_fact = books.half_fact(command, half, mine);
                    sender
                        .send((sequence, index, verdict, my_fact, my_facts))
                        .ok()?;
                    receive_verdict(receiver, sequence, index)?
                };
                let outcome = match half {
                    Half::Debit => combine(verdict, theirs),
                    Half::Credit => combine(theirs, verdict),
                };
                match (outcome, mine) {
                    (Ok(()), Ok(plan)) => {
                        if needs_fact && !receive_first {
                            risk = books.risk_half(command, parties, plan, fact, timestamp);
                        }
                        if history {
                            let mcc = match half {
                                Half::Debit => MccFacts::combine(my_facts, their_facts),
                                Half::Credit => MccFacts::combine(their_facts, my_facts),
                            };
                            books.set_half_context(half, parties, mcc);
                        }
                        books.apply_half(command, parties, half, plan, None, timestamp);
                        books.note_half(half, plan);
                        books.after_half(command, half, plan, risk, fact, timestamp);
                    }
                    (Err(_), Ok(plan)) if half == Half::Debit && theirs.is_ok() => {
                        // Stopped at the rules, the lone ledger's last check.
                        if let Err(stop) = &risk {
                            books.risk_refuse(command.id, plan.slot, stop);
                        }
                    }
                    _ => {}
                }
                let mut detail = std::mem::take(&mut books.detail);
                if half == Half::Credit {
                    detail = fx_detail(outcome, detail, mine.ok());
                }
                match half {
                    Half::Debit if detail == Detail::None => Some(None),
                    Half::Debit => Some(Some((result(outcome, detail), false))),
                    Half::Credit => Some(Some((result(outcome, detail), true))),
                }
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
        records.by_id.insert(
            command.id,
            IdempotencyRecord {
                fingerprint,
                status: result.status,
                timestamp,
            },
        );
    }
}

/// The peer's verdict on the command at (`sequence`, `index`) and its fact:
/// spin briefly (it is usually microseconds behind), then yield, then block.
/// Parking on every verdict cost more than applying.
fn receive_verdict(
    receiver: &Receiver<VerdictMessage>,
    sequence: u64,
    index: u32,
) -> Option<(Verdict, u16, MccFacts)> {
    let backoff = crossbeam::utils::Backoff::new();
    let (their_sequence, their_index, theirs, fact, facts) = loop {
        match receiver.try_recv() {
            Ok(message) => break message,
            Err(crossbeam::channel::TryRecvError::Disconnected) => return None,
            Err(crossbeam::channel::TryRecvError::Empty) => {
                if backoff.is_completed() {
                    break receiver.recv().ok()?;
                }
                backoff.snooze();
            }
        }
    };
    assert_eq!(
        (their_sequence, their_index),
        (sequence, index),
        "shards walk the same global order"
    );
    Some((theirs, fact, facts))
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
