//! One shard: a single-threaded state machine over its own accounts.
//!
//! A shard applies the segments the router sends it strictly in order. A
//! two-party command whose other account lives on another shard is decided
//! by exchanging verdicts with that shard over a dedicated bounded channel:
//! send mine, receive theirs, apply only if both said yes. Every shard walks
//! the same global order, so the peer always reaches the same command and
//! the exchange never deadlocks.

use crossbeam::channel::{Receiver, Sender};

use crate::command::{AccountId, Command, CommandId, CommandResult};
use crate::ledger::halves::{combine, Parties};
use crate::ledger::{Account, Elsewhere, Half, IdempotencyRecord, Ledger, Verdict};

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
    /// A two-party command, this shard's share of it.
    Pair {
        index: u32,
        command: Command,
        fingerprint: u64,
        parties: Parties,
        role: Role,
    },
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
    pub(crate) steps: Vec<Step>,
}

pub(crate) enum Input {
    Segment(Segment),
    /// The account with this id, if this shard has it.
    Account(AccountId),
    /// A copy of the whole state, for a checkpoint or a merge.
    State,
    Stop,
}

pub(crate) enum Output {
    /// Results of the commands whose home is this shard, by batch index,
    /// with the batch's ticket.
    Results(u64, Vec<(u32, CommandResult)>),
    Account(Option<Account>),
    State(Box<Ledger>),
}

/// One verdict on the wire between two shards: batch sequence, index in the
/// batch, and the half's answer.
pub(crate) type VerdictMessage = (u64, u32, Verdict);

pub(crate) struct Worker {
    pub(crate) ledger: Ledger,
    pub(crate) inputs: Receiver<Input>,
    pub(crate) outputs: Sender<(u32, Output)>,
    pub(crate) shard: u32,
    /// Indexed by peer shard; `None` for this shard itself.
    pub(crate) verdicts_out: Vec<Option<Sender<VerdictMessage>>>,
    pub(crate) verdicts_in: Vec<Option<Receiver<VerdictMessage>>>,
}

impl Worker {
    pub(crate) fn run(mut self) {
        while let Ok(input) = self.inputs.recv() {
            let output = match input {
                Input::Segment(segment) => match self.apply(&segment) {
                    Some(results) => Output::Results(segment.ticket, results),
                    // A peer stopped mid-exchange: the engine is going down.
                    None => return,
                },
                Input::Account(id) => Output::Account(self.ledger.account(id).copied()),
                Input::State => Output::State(Box::new(self.ledger.clone())),
                Input::Stop => return,
            };
            if self.outputs.send((self.shard, output)).is_err() {
                return;
            }
        }
    }

    fn apply(&mut self, segment: &Segment) -> Option<Vec<(u32, CommandResult)>> {
        let timestamp = segment.timestamp;
        if segment.first {
            assert!(segment.sequence > self.ledger.sequence);
            assert!(timestamp >= self.ledger.timestamp);
            self.ledger.sequence = segment.sequence;
            self.ledger.timestamp = timestamp;
            let ledger = &mut self.ledger;
            ledger.books.expire_holds(timestamp, None);
            ledger.books.expire_payment_codes(timestamp);
            for &id in &segment.forget {
                ledger.forget_record(id);
            }
            for id in &segment.forget_holds {
                ledger.books.forget_finished_hold(*id);
            }
        }
        let mut results = Vec::with_capacity(segment.steps.len());
        for step in &segment.steps {
            match *step {
                Step::Local {
                    index,
                    command,
                    fingerprint,
                    elsewhere,
                } => {
                    let result = self
                        .ledger
                        .books
                        .execute_with(&command, timestamp, elsewhere);
                    self.record(&command, fingerprint, result, timestamp);
                    results.push((index, result));
                }
                Step::Pair {
                    index,
                    command,
                    fingerprint,
                    parties,
                    role,
                } => {
                    if let Some(result) =
                        self.pair(segment.sequence, index, &command, parties, role, timestamp)?
                    {
                        self.record(&command, fingerprint, result, timestamp);
                        results.push((index, result));
                    }
                }
            }
        }
        Some(results)
    }

    /// Decides and applies this shard's share of a two-party command; the
    /// result if this shard is the command's home. `None` if a peer is gone.
    fn pair(
        &mut self,
        sequence: u64,
        index: u32,
        command: &Command,
        parties: Parties,
        role: Role,
        timestamp: u64,
    ) -> Option<Option<CommandResult>> {
        let books = &mut self.ledger.books;
        match role {
            Role::Both => {
                let debit = books.evaluate_half(command, parties, Half::Debit);
                let credit = books.evaluate_half(command, parties, Half::Credit);
                let outcome = combine(debit.map(|_| ()), credit.map(|_| ()));
                if let (Ok(()), Ok(debit), Ok(credit)) = (outcome, debit, credit) {
                    books.apply_half(command, parties, Half::Debit, debit, None, timestamp);
                    books.apply_half(
                        command,
                        parties,
                        Half::Credit,
                        credit,
                        Some(debit.slot),
                        timestamp,
                    );
                }
                Some(Some(status_result(outcome)))
            }
            Role::Debit { peer } | Role::Credit { peer } => {
                let half = if matches!(role, Role::Debit { .. }) {
                    Half::Debit
                } else {
                    Half::Credit
                };
                let mine = books.evaluate_half(command, parties, half);
                let peer = peer as usize;
                let sender = self.verdicts_out.get(peer)?.as_ref()?;
                sender.send((sequence, index, mine.map(|_| ()))).ok()?;
                let receiver = self.verdicts_in.get(peer)?.as_ref()?;
                let (their_sequence, their_index, theirs) = receive_verdict(receiver)?;
                assert_eq!(
                    (their_sequence, their_index),
                    (sequence, index),
                    "shards walk the same global order"
                );
                let outcome = match half {
                    Half::Debit => combine(mine.map(|_| ()), theirs),
                    Half::Credit => combine(theirs, mine.map(|_| ())),
                };
                if let (Ok(()), Ok(plan)) = (outcome, mine) {
                    books.apply_half(command, parties, half, plan, None, timestamp);
                }
                Some(match half {
                    Half::Debit => None,
                    Half::Credit => Some(status_result(outcome)),
                })
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

/// The peer's verdict: spin briefly (it is usually microseconds behind),
/// then yield, then block. Parking on every verdict cost more than applying.
fn receive_verdict(receiver: &Receiver<VerdictMessage>) -> Option<VerdictMessage> {
    let backoff = crossbeam::utils::Backoff::new();
    loop {
        match receiver.try_recv() {
            Ok(message) => return Some(message),
            Err(crossbeam::channel::TryRecvError::Disconnected) => return None,
            Err(crossbeam::channel::TryRecvError::Empty) => {
                if backoff.is_completed() {
                    return receiver.recv().ok();
                }
                backoff.snooze();
            }
        }
    }
}

fn status_result(outcome: Result<(), crate::status::Status>) -> CommandResult {
    match outcome {
        Ok(()) => CommandResult::OK,
        Err(status) => CommandResult::new(status),
    }
}
