//! The ledger: a deterministic, single-threaded state machine with no I/O and
//! no clock.
//!
//! `apply(sequence, timestamp, batch)` is the only way state changes. Time is
//! the batch's sequencer timestamp (nanoseconds since the Unix epoch), used for
//! hold expiry and idempotency retention; nothing here reads a clock, draws a
//! random number or depends on hash-map iteration order, so replaying the same
//! log gives the same state and the same [`Ledger::digest`].
//!
//! Accounts live in a dense `Vec` indexed by slot; the id-to-slot index is
//! consulted once per account per command. Every handler validates first,
//! then passes a marked point of no return, then mutates with arithmetic that
//! the checks have proven cannot fail.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use crate::growing_map::GrowingMap;

use crate::command::{
    AccountId, AccountKind, AccountStatus, AccountView, Command, CommandId, CommandKind,
    CommandResult, Detail, HouseRole, InstrumentId, MerchantKey, OpenAccount, Query, QueryReply,
    RiskContext,
};

pub(crate) mod halves;
mod instruments;
pub mod memory;
mod payments;
pub(crate) mod risk_gate;

use crate::budget::Category;
use crate::currency::Currency;
use crate::digest::DigestHasher;
use crate::fx::FxState;
use crate::history::{HistorySink, Movement, MovementChunk, MovementContext, MovementInstrument};
use crate::limits;
use crate::prefetch::prefetch;
use crate::record_ring::{self, Ring};
use crate::risk::{RiskBooks, RiskPolicy};
use crate::status::Status;

/// `Ledger::apply` and a shard's segment loop (`Ledger::warm_ahead`) warm
/// commands in groups of this many: the look-ups of one group (account
/// index, budget table) run back to back, so their cache misses overlap
/// instead of each stalling the command that runs after it. A group's
/// accounts are asked for two groups before it runs, its risk state and
/// budget one group before (measured in docs/benchmarks.md).
pub(crate) const WARM_GROUP: usize = 8;

/// The accounts a command names directly, and whether the first is a
/// customer payment's payer, whose risk state and budget it reads. For
/// prefetching only: accounts a command finds otherwise (by merchant key,
/// payment code, payment id) are not named.
#[inline]
fn warm_parties(kind: &CommandKind) -> ([Option<AccountId>; 2], bool) {
    match *kind {
        CommandKind::Transfer { from, to, .. } => ([Some(from), Some(to)], true),
        CommandKind::PayMerchantQr { payer, .. } => ([Some(payer), None], true),
        CommandKind::WithdrawHold { account, .. } | CommandKind::WithdrawHoldTo { account, .. } => {
            ([Some(account), None], true)
        }
        CommandKind::Deposit { account, .. } | CommandKind::DepositFrom { account, .. } => {
            ([Some(account), None], false)
        }
        CommandKind::ChargePaymentCode { merchant, .. } => ([Some(merchant), None], false),
        CommandKind::FxConvert(order) | CommandKind::FxQuote { order, .. } => {
            ([Some(order.from), Some(order.to)], false)
        }
        CommandKind::FxConvertQuote { from, .. } => ([Some(from), None], false),
        _ => ([None, None], false),
    }
}

/// The spending category a command's payer pays in, for prefetching its
/// budget: None when it spends nothing (a withdrawal), `Some(None)` when the
/// category is the merchant's, not known before the command runs.
#[inline]
fn warm_category(kind: &CommandKind) -> Option<Option<Category>> {
    match *kind {
        CommandKind::Transfer { .. } => Some(Some(Category::CashAndTransfers)),
        CommandKind::PayMerchantQr { mcc: 0, .. } => Some(None),
        CommandKind::PayMerchantQr { mcc, .. } => Some(Some(Category::from_mcc(mcc))),
        _ => None,
    }
}

/// Prefetches the account in `slot`, both of its cache lines: an account
/// (56 bytes) straddles two lines at most slots, and the first of the next
/// account lies in this one's second line.
#[inline]
fn prefetch_account(accounts: &[Account], slot: usize) {
    if let Some(account) = accounts.get(slot) {
        prefetch(account, 1);
    }
    if let Some(next) = accounts.get(slot + 1) {
        prefetch(next, 1);
    }
}
pub(crate) use halves::{Half, Verdict};
pub use instruments::Instrument;
pub(crate) use instruments::{Instruments, Kept};
pub use payments::{Payment, PaymentCode, PaymentCodeState};
use risk_gate::Payee;

/// Facts about other shards that a single-shard command's checks need (the
/// router knows them; a lone ledger never sets them).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct Elsewhere {
    /// The payment code is remembered by another shard.
    pub(crate) payment_code_taken: bool,
    /// The merchant key is registered to a merchant on another shard.
    pub(crate) merchant_key_taken: bool,
    /// A hold with this command's id is still kept on another shard.
    pub(crate) hold_id_taken: bool,
    /// An FX quote with this command's id is still remembered on another shard.
    pub(crate) fx_quote_taken: bool,
    /// The conversion's `to` account lives on another shard than `from`
    /// (so it has another owner).
    pub(crate) fx_other_owner: bool,
    /// The sum of the other shards' parts of the FX liquidity account the
    /// conversion draws on, so its floor is checked on the whole position.
    pub(crate) fx_liquidity_elsewhere: i128,
}

/// One account's state, kept in a dense array.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub struct Account {
    pub id: AccountId,
    pub owner: u64,
    /// Credits minus debits posted, in minor units.
    pub balance: i64,
    /// Held by pending withdrawals from this account.
    pub debits_pending: u64,
    /// Pending withdrawals into this (house settlement) account.
    pub credits_pending: u64,
    pub currency: Currency,
    pub kind: AccountKind,
    pub status: AccountStatus,
    pub kyc_tier: u8,
    pub mcc: u16,
    /// Number of pending holds on this account.
    pub holds_pending: u16,
    /// Number of live user-presented payment codes of this customer.
    pub codes_live: u8,
}

impl Account {
    pub(crate) fn new(open: &OpenAccount) -> Account {
        Account {
            id: open.account,
            owner: open.owner,
            balance: 0,
            debits_pending: 0,
            credits_pending: 0,
            currency: open.currency,
            kind: open.kind,
            status: AccountStatus::Active,
            kyc_tier: open.kyc_tier,
            mcc: open.mcc,
            holds_pending: 0,
            codes_live: 0,
        }
    }

    /// What the owner can spend: balance minus holds. Never negative for a
    /// customer or merchant account (the ledger keeps it so).
    pub fn available(&self) -> i64 {
        // Cannot overflow: debits_pending <= balance for non-house accounts and
        // is zero for house accounts.
        self.balance.saturating_sub_unsigned(self.debits_pending)
    }

    pub fn view(&self) -> AccountView {
        AccountView {
            account: self.id,
            owner: self.owner,
            kind: self.kind,
            currency: self.currency,
            status: self.status,
            kyc_tier: self.kyc_tier,
            mcc: self.mcc,
            balance: self.balance,
            debits_pending: self.debits_pending,
            credits_pending: self.credits_pending,
            available: self.available(),
        }
    }

    /// Status for an account about to be debited or credited.
    pub(crate) fn check_movable(&self) -> Result<(), Status> {
        match self.status {
            AccountStatus::Active => Ok(()),
            AccountStatus::Frozen => Err(Status::AccountFrozen),
            AccountStatus::Closed => Err(Status::AccountClosed),
        }
    }
}

/// Where a withdrawal hold is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub enum HoldState {
    Pending,
    Posted,
    Voided,
    Expired,
}

/// A withdrawal hold: money reserved on an account until posted or voided.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub struct Hold {
    pub id: CommandId,
    pub account_slot: u32,
    pub house_slot: u32,
    pub amount: u64,
    /// Command time (ns) from which the hold counts as expired.
    pub expires_at: u64,
    pub state: HoldState,
}

/// The first result of a command id, kept to answer retries.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub struct IdempotencyRecord {
    pub fingerprint: u64,
    pub status: Status,
    pub timestamp: u64,
}

/// How long idempotency records are kept, and what one owner may hold open
/// in the per-command tables.
///
/// All of it is deterministic state: a replay decides with the values it is
/// given, so they must be the same as when the log was written (a clean stop
/// writes a final checkpoint, after which they may change). The per-owner
/// caps are checked on the shard that owns the account, so they decide the
/// same on any shard count and in a replay on one ledger.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct LedgerConfig {
    /// Keep a record at least this long in command time (ns) ...
    pub idempotency_window_ns: u64,
    /// ... unless more than this many are kept; then the oldest go first.
    pub idempotency_records_max: usize,
    /// Pending withdrawal holds one account may have (`too_many_holds`).
    pub account_holds_pending_max: u16,
    /// Live payment codes one customer may have (`too_many_payment_codes`).
    pub customer_payment_codes_live_max: u8,
    /// Open FX quotes one paying account may have (`fx_too_many_quotes`).
    pub account_fx_quotes_open_max: u8,
    /// Funding instruments one customer may have bound at once
    /// (`too_many_instruments`).
    pub customer_instruments_max: u8,
    /// Instruments one ledger holds at most, unbound ones remembered
    /// included (`instruments_full`); per shard when sharded.
    pub instruments_max: usize,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            idempotency_window_ns: limits::IDEMPOTENCY_WINDOW_NS_DEFAULT,
            idempotency_records_max: limits::IDEMPOTENCY_RECORDS_MAX_DEFAULT,
            account_holds_pending_max: limits::ACCOUNT_HOLDS_PENDING_MAX,
            customer_payment_codes_live_max: limits::CUSTOMER_PAYMENT_CODES_LIVE_MAX,
            account_fx_quotes_open_max: limits::FX_QUOTES_OPEN_PER_ACCOUNT_MAX,
            customer_instruments_max: limits::CUSTOMER_INSTRUMENTS_MAX_DEFAULT,
            instruments_max: limits::INSTRUMENTS_MAX_DEFAULT,
        }
    }
}

/// The per-owner caps of [`LedgerConfig`], where the command handlers read
/// them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct OwnerCaps {
    pub(crate) holds_pending: u16,
    pub(crate) payment_codes_live: u8,
    pub(crate) fx_quotes_open: u8,
    pub(crate) instruments: u8,
    /// The whole instrument table's bound (not per owner, but read where
    /// the others are).
    pub(crate) instruments_total: usize,
}

impl Default for OwnerCaps {
    fn default() -> Self {
        OwnerCaps::of(&LedgerConfig::default())
    }
}

impl OwnerCaps {
    pub(crate) fn of(config: &LedgerConfig) -> OwnerCaps {
        OwnerCaps {
            holds_pending: config.account_holds_pending_max,
            payment_codes_live: config.customer_payment_codes_live_max,
            fx_quotes_open: config.account_fx_quotes_open_max,
            instruments: config.customer_instruments_max,
            instruments_total: config.instruments_max,
        }
    }
}

/// Sums of one currency over all accounts. Conservation means `balance == 0`
/// and `debits_pending == credits_pending`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct CurrencyTotals {
    pub balance: i128,
    pub debits_pending: u128,
    pub credits_pending: u128,
}

impl CurrencyTotals {
    pub fn is_conserved(&self) -> bool {
        self.balance == 0 && self.debits_pending == self.credits_pending
    }
}

/// Accounts and holds: everything a command handler may touch. Kept apart
/// from the idempotency records so that a handler can run while the record
/// table's entry for its command is borrowed (one hash lookup per command).
#[derive(Debug, Default, Clone)]
pub(crate) struct Books {
    pub(crate) accounts: Vec<Account>,
    pub(crate) index: GrowingMap<AccountId, u32>,
    pub(crate) holds: GrowingMap<CommandId, Hold>,
    /// Pending holds by expiry; entries of holds finished early are skipped
    /// when they surface.
    pub(crate) hold_expiries: BinaryHeap<Reverse<(u64, CommandId)>>,
    /// QR merchant keys and the merchant slot each pays.
    pub(crate) merchant_keys: GrowingMap<MerchantKey, u32>,
    /// User-presented payment codes, live or recently finished.
    pub(crate) payment_codes: GrowingMap<u64, PaymentCode>,
    /// (time, code): at a code's expiry it stops being live; at expiry plus
    /// `PAYMENT_CODE_MEMORY_NS` it is forgotten.
    pub(crate) code_expiries: BinaryHeap<Reverse<(u64, u64)>>,
    /// Refundable payments by command id, kept as long as their command's
    /// idempotency record.
    pub(crate) payments: GrowingMap<CommandId, Payment>,
    /// Sharded execution only: payments whose payer lives on another shard,
    /// kept on the merchant's shard (`payer_slot` is unused) with the payer's id.
    pub(crate) remote_payments: GrowingMap<CommandId, (Payment, AccountId)>,
    /// Which per-shard part of each house account this ledger holds (0 for a
    /// lone ledger: the public house ids).
    pub(crate) house_part: u32,
    /// Risk policy, per-customer risk state, audit trail and budgets.
    pub(crate) risk: RiskBooks,
    /// The detail of the command being executed (a risk decision, a budget
    /// crossing), set by the risk calls and taken by `execute`; always
    /// `None` between commands.
    pub(crate) detail: Detail,
    /// FX rates, floors, quotes and cross-currency payments (crate::fx).
    pub(crate) fx: FxState,
    /// Customers' funding instruments (ledger/instruments.rs).
    pub(crate) instruments: Instruments,
    /// Movements of the batch being applied, while history is on (not part
    /// of the state: never encoded or digested).
    pub(crate) history: Option<HistorySink>,
    /// What one owner may hold open (configuration, not encoded).
    pub(crate) caps: OwnerCaps,
}

/// The parts of the state `Ledger::digest` covers that older state formats
/// did not have (see `Ledger::older_digests`).
#[derive(Clone, Copy, Debug)]
struct DigestSections {
    fx: bool,
    instruments: bool,
}

impl DigestSections {
    const ALL: DigestSections = DigestSections {
        fx: true,
        instruments: true,
    };
}

/// Bytes a lone ledger's idempotency record table takes when allocated for
/// `records_max` records (see `Records::lone`).
pub fn lone_records_bytes(records_max: usize) -> usize {
    Ring::<5>::bytes_for(records_max.max(limits::BATCH_COMMANDS_MAX))
}

/// Idempotency records. The lone ledger (recovery, the checkpointer's
/// follower, tools and tests) keeps every command's, oldest first, in a
/// ring allocated once for `idempotency_records_max` (`record_ring.rs`: 40
/// bytes a record in the ring, 16 to 32 in its index). A shard keeps only
/// the records of its withdrawal holds, by id: its router keeps every
/// record in arrival order and says when one goes.
#[derive(Debug, Clone)]
pub(crate) struct Records {
    /// The lone ledger's, oldest first: id (2 words), fingerprint,
    /// timestamp, status code.
    ring: Ring<5>,
    /// A shard's: its withdrawal holds' records.
    pub(crate) held: GrowingMap<CommandId, IdempotencyRecord>,
}

impl Records {
    /// A lone ledger's records: room for `records_max`, and for at least a
    /// batch (which is kept whole even past a smaller cap).
    pub(crate) fn lone(records_max: usize) -> Records {
        Records {
            ring: Ring::new(records_max.max(limits::BATCH_COMMANDS_MAX), 0),
            held: GrowingMap::default(),
        }
    }

    /// A shard's records: its holds' only.
    pub(crate) fn shard() -> Records {
        Records {
            ring: Ring::new(1, 0),
            held: GrowingMap::default(),
        }
    }

    fn pack(id: CommandId, record: &IdempotencyRecord) -> [u64; 5] {
        let mut slot = record_ring::slot_for(id);
        slot[2] = record.fingerprint;
        slot[3] = record.timestamp;
        slot[4] = u64::from(record.status.code());
        slot
    }

    fn unpack(slot: &[u64; 5]) -> IdempotencyRecord {
        let status = match Status::from_code(slot[4] as u16) {
            Some(status) => status,
            None => unreachable!("a record holds a status code this build wrote"),
        };
        IdempotencyRecord {
            fingerprint: slot[2],
            status,
            timestamp: slot[3],
        }
    }

    #[inline]
    pub(crate) fn get(&self, id: CommandId) -> Option<IdempotencyRecord> {
        self.get_tagged(id, self.ring.tag(id))
    }

    /// Where `id`'s look-up starts (see `Ring::tag`): for a `get` followed
    /// by a `push` of the same id.
    #[inline]
    fn tag(&self, id: CommandId) -> u32 {
        self.ring.tag(id)
    }

    /// `get` with `id`'s tag already computed.
    #[inline]
    fn get_tagged(&self, id: CommandId, tag: u32) -> Option<IdempotencyRecord> {
        match self.ring.get_tagged(id, tag) {
            Some((_, slot)) => Some(Records::unpack(slot)),
            None if self.held.is_empty() => None,
            None => self.held.get(&id).copied(),
        }
    }

    pub(crate) fn contains(&self, id: CommandId) -> bool {
        self.ring.contains(id) || self.held.contains_key(&id)
    }

    /// How many records are kept.
    pub(crate) fn len(&self) -> usize {
        self.ring.len() + self.held.len()
    }

    /// The ring holds as many as it can.
    fn is_full(&self) -> bool {
        self.ring.len() == self.ring.capacity()
    }

    /// Keeps the record of a command not kept, as the newest.
    pub(crate) fn push(&mut self, id: CommandId, record: &IdempotencyRecord) {
        self.ring.push(Records::pack(id, record));
    }

    /// `push` with `id`'s tag already computed.
    fn push_tagged(&mut self, id: CommandId, tag: u32, record: &IdempotencyRecord) {
        self.ring.push_tagged(Records::pack(id, record), tag);
    }

    /// The oldest record in arrival order.
    #[inline]
    pub(crate) fn front(&self) -> Option<(CommandId, IdempotencyRecord)> {
        let slot = self.ring.front()?;
        Some((record_ring::slot_id(slot), Records::unpack(slot)))
    }

    /// Drops the oldest record in arrival order and says whose it was.
    pub(crate) fn pop_front(&mut self) -> Option<CommandId> {
        self.ring
            .pop_front()
            .map(|slot| record_ring::slot_id(&slot))
    }

    /// Every record in arrival order, oldest first (a shard's held ones are
    /// not in it).
    pub(crate) fn in_order(&self) -> impl Iterator<Item = (CommandId, IdempotencyRecord)> + '_ {
        self.ring
            .iter()
            .map(|slot| (record_ring::slot_id(slot), Records::unpack(slot)))
    }

    /// Asks the CPU for what looking `id` up will read first.
    #[inline]
    pub(crate) fn prefetch(&self, id: CommandId) {
        self.ring.prefetch(id);
    }

    /// Asks the CPU for the index bucket the eviction `ahead` places after
    /// the next will clear.
    #[inline]
    fn prefetch_eviction(&self, ahead: u64) {
        self.ring.prefetch_eviction(ahead);
    }
}

/// Idempotency records in arrival order, as a checkpoint encodes and
/// digests them: a ledger's own ([`Records`], a shard's held ones after
/// the ring), or a sharded ledger's router's, read in place by the
/// checkpoint's process (`shard::RouterRecords`) instead of copied into a
/// lone table first.
pub(crate) trait RecordsInOrder {
    /// How many records there are.
    fn count(&self) -> usize;
    /// Every record, oldest first.
    fn each(&self) -> Box<dyn Iterator<Item = (CommandId, IdempotencyRecord)> + '_>;
}

impl RecordsInOrder for Records {
    fn count(&self) -> usize {
        self.len()
    }

    fn each(&self) -> Box<dyn Iterator<Item = (CommandId, IdempotencyRecord)> + '_> {
        let held = self.held.iter().map(|(&id, &record)| (id, record));
        Box::new(self.in_order().chain(held))
    }
}

/// The ledger state machine. See the module documentation.
#[derive(Debug, Clone)]
pub struct Ledger {
    pub(crate) config: LedgerConfig,
    pub(crate) books: Books,
    pub(crate) records: Records,
    /// Sequence number and timestamp of the last batch applied.
    pub(crate) sequence: u64,
    pub(crate) timestamp: u64,
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new(LedgerConfig::default())
    }
}

impl Ledger {
    pub fn new(config: LedgerConfig) -> Ledger {
        Ledger::with_records(config, Records::lone(config.idempotency_records_max))
    }

    /// An empty ledger keeping its idempotency records in `records` (a
    /// shard's, or a lone table sized for more than the cap): the table is
    /// allocated once, by the caller.
    pub(crate) fn with_records(config: LedgerConfig, records: Records) -> Ledger {
        Ledger {
            config,
            books: Books {
                caps: OwnerCaps::of(&config),
                ..Books::default()
            },
            records,
            sequence: 0,
            timestamp: 0,
        }
    }

    /// Turns movement history on or off. While on, every balance change
    /// adds a [`Movement`] that [`Ledger::take_movements`] hands out; it
    /// changes nothing in the state or its digest.
    pub fn record_history(&mut self, on: bool) {
        if !on {
            self.books.history = None;
        } else if self.books.history.is_none() {
            self.books.history = Some(HistorySink::default());
        }
    }

    /// Moves the movements collected since the last call into `into` (which
    /// is cleared first). Nothing when history is off.
    pub fn take_movements(&mut self, into: &mut Vec<Movement>) {
        into.clear();
        if let Some(sink) = &mut self.books.history {
            into.extend(sink.movements.iter());
            sink.movements.clear();
        }
    }

    /// The movements collected since the last call, as the ledger made
    /// them (one [`MovementChunk`], in the order made: for a lone ledger,
    /// log order), with `replacement` (cleared) collecting the next ones.
    /// What recovery hands its history thread, as the shards hand theirs
    /// over; empty (and `replacement` dropped) when history is off.
    pub fn take_movement_chunk(&mut self, mut replacement: MovementChunk) -> MovementChunk {
        match &mut self.books.history {
            Some(sink) => {
                replacement.clear();
                std::mem::replace(&mut sink.movements, replacement)
            }
            None => MovementChunk::default(),
        }
    }

    /// Where the idempotency record table lies in memory (recovery maps
    /// its pages ahead of the replay on another thread).
    pub(crate) fn record_table_memory(&self) -> crate::record_ring::RingMemory {
        self.records.ring.memory()
    }

    /// Sequence number of the last batch applied (0 before the first).
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Timestamp of the last batch applied.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// Applies one batch: appends one result per command to `results`, in order.
    ///
    /// `sequence` must increase from batch to batch and `timestamp` must not
    /// go back: the sequencer guarantees both, so a violation is a programmer
    /// error and panics.
    pub fn apply(
        &mut self,
        sequence: u64,
        timestamp: u64,
        batch: &[Command],
        results: &mut Vec<CommandResult>,
    ) {
        crate::ledger::advance_clock(
            (&mut self.sequence, &mut self.timestamp),
            sequence,
            timestamp,
        );
        self.books.begin_movements(sequence, timestamp);
        self.books.expire_holds(timestamp, Some(&self.records));
        self.books.expire_payment_codes(timestamp);
        self.books.expire_fx_quotes(timestamp);
        self.evict_records(timestamp, batch.len());

        results.reserve(batch.len());
        let month = crate::risk::Month::from_timestamp(timestamp);
        let group =
            |first: usize| &batch[first.min(batch.len())..(first + WARM_GROUP).min(batch.len())];
        self.warm_accounts_run(group(0));
        self.warm_accounts_run(group(WARM_GROUP));
        self.warm_risk_run(group(0), month);
        for (index, command) in batch.iter().enumerate() {
            if index % WARM_GROUP == 0 {
                self.warm_accounts_run(group(index + 2 * WARM_GROUP));
                self.warm_risk_run(group(index + WARM_GROUP), month);
            }
            results.push(self.apply_command(index as u32, command, timestamp));
        }
    }

    /// Prefetches the idempotency records and accounts of a run of
    /// commands (see `WARM_GROUP`). Changes nothing.
    #[inline]
    fn warm_accounts_run(&self, commands: &[Command]) {
        for command in commands {
            self.warm_accounts(command);
        }
    }

    /// Prefetches the payers' risk state and budgets of a run of commands
    /// whose accounts were asked for a group earlier (see `WARM_GROUP`).
    /// Changes nothing.
    #[inline]
    fn warm_risk_run(&self, commands: &[Command], month: crate::risk::Month) {
        for command in commands {
            self.warm_risk(command, month);
        }
    }

    /// Call before each group of `WARM_GROUP` commands of a run:
    /// prefetches the idempotency records and accounts of the commands
    /// `far` (the group two groups later) and the risk state and budgets of
    /// the commands `near` (the group one later, whose accounts were asked
    /// for a group ago), so that their cache misses overlap one another
    /// and the work of the commands in between instead of stalling one
    /// after another. `month` is the segment's (`Month::from_timestamp` of
    /// its timestamp), worked out once by the caller. Changes nothing.
    #[inline]
    pub(crate) fn warm_ahead<'a>(
        &self,
        far: impl Iterator<Item = &'a Command>,
        near: impl Iterator<Item = &'a Command>,
        month: crate::risk::Month,
    ) {
        for command in far {
            self.warm_accounts(command);
        }
        for command in near {
            self.warm_risk(command, month);
        }
    }

    /// Prefetches the idempotency record and the accounts `command` will
    /// need (see `warm_ahead`).
    #[inline]
    fn warm_accounts(&self, command: &Command) {
        self.records.prefetch(command.id);
        let (accounts, _) = warm_parties(&command.kind);
        for id in accounts.into_iter().flatten() {
            if let Some(&slot) = self.books.index.get(&id) {
                prefetch_account(&self.books.accounts, slot as usize);
            }
        }
        if let CommandKind::DepositFrom { instrument, .. }
        | CommandKind::WithdrawHoldTo { instrument, .. } = command.kind
        {
            self.books.instruments.warm(instrument);
        }
    }

    /// Prefetches the paying customer's risk state (under a policy: its
    /// account was prefetched earlier, for the owner) and the lines of its
    /// budget that a payment in `month` reads (see `warm_ahead`).
    #[inline]
    fn warm_risk(&self, command: &Command, month: crate::risk::Month) {
        let ([Some(payer), _], true) = warm_parties(&command.kind) else {
            return;
        };
        let risk = &self.books.risk;
        if risk.enabled() {
            if let Some(account) = self.books.find(payer) {
                risk.warm_customer(account.owner);
            }
        }
        if let Some(category) = warm_category(&command.kind) {
            risk.warm_budget(payer, category, month);
        }
    }

    /// `apply` into a new vector, for tests and tools.
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

    /// Puts a risk policy in force: a log entry of its own (the policy does
    /// not fit in a command), applied between batches in log order with the
    /// same sequence and timestamp rules as `apply`. Returns the policy's
    /// digest.
    pub fn set_risk_policy(
        &mut self,
        sequence: u64,
        timestamp: u64,
        policy: RiskPolicy,
    ) -> [u8; 32] {
        advance_clock(
            (&mut self.sequence, &mut self.timestamp),
            sequence,
            timestamp,
        );
        self.books.risk.set_policy(policy);
        self.books.risk.policy_digest()
    }

    /// The risk policy in force, per-customer risk state, audit trail,
    /// budgets and decision counters.
    pub fn risk(&self) -> &RiskBooks {
        &self.books.risk
    }

    fn apply_command(&mut self, index: u32, command: &Command, timestamp: u64) -> CommandResult {
        let fingerprint = command.fingerprint();
        // Hashed once for the look-up and the push.
        let tag = self.records.tag(command.id);
        if let Some(record) = self.records.get_tagged(command.id, tag) {
            return if record.fingerprint == fingerprint {
                let detail = match command.kind {
                    CommandKind::FxQuote { .. } => self.books.fx.retry_detail(command.id),
                    _ => Detail::None,
                };
                CommandResult::with_detail(record.status, detail)
            } else {
                CommandResult::new(Status::IdReusedWithDifferentFields)
            };
        }
        if self.books.history.is_some() {
            self.books.set_movement_context(command, index);
        }
        let result = self.books.execute(command, timestamp);
        if self.records.is_full() {
            // Only a batch longer than the table (a ledger applied directly
            // with more than `BATCH_COMMANDS_MAX` commands and a smaller
            // cap): the oldest goes first, as at the cap.
            if let Some(id) = self.records.pop_front() {
                self.forget_with_record(id);
            }
        }
        self.records.push_tagged(
            command.id,
            tag,
            &IdempotencyRecord {
                fingerprint,
                status: result.status,
                timestamp,
            },
        );
        result
    }

    /// Drops the records that are past the retention window, and the oldest
    /// beyond the cap (leaving room for the incoming batch).
    fn evict_records(&mut self, timestamp: u64, incoming: usize) {
        let keep_max = self.config.idempotency_records_max.saturating_sub(incoming);
        while let Some((_, oldest)) = self.records.front() {
            // Over the cap the oldest goes whatever its age; under it, only
            // age can evict.
            if self.records.len() <= keep_max
                && oldest
                    .timestamp
                    .saturating_add(self.config.idempotency_window_ns)
                    > timestamp
            {
                break;
            }
            // Evictions come in runs (a batch's worth at the cap): the
            // index bucket of a later one is asked for now.
            self.records.prefetch_eviction(record_ring::EVICT_AHEAD);
            if let Some(id) = self.records.pop_front() {
                self.forget_with_record(id);
            }
        }
    }

    /// Drops one command's idempotency record and what lives as long as it.
    /// The caller has taken the id off `records.order`.
    pub(crate) fn forget_record(&mut self, id: CommandId) {
        self.records.held.remove(&id);
        self.forget_with_record(id);
    }

    /// Drops what lives as long as a command's idempotency record, which
    /// has gone.
    fn forget_with_record(&mut self, id: CommandId) {
        // A payment is refundable as long as its command's record is kept.
        if !self.books.payments.is_empty() {
            self.books.payments.remove(&id);
        }
        if !self.books.remote_payments.is_empty() {
            self.books.remote_payments.remove(&id);
        }
        self.books.fx.forget_payment(id);
        // A finished hold is remembered as long as its command's record.
        self.books.forget_finished_hold(id);
    }

    /// Answers a read-only query from the current state.
    pub fn query(&self, query: &Query) -> QueryReply {
        match query {
            Query::Balance { account } => match self.books.index.get(account) {
                Some(&slot) => QueryReply::Balance(self.books.accounts[slot as usize].view()),
                None => QueryReply::Refused(Status::UnknownAccount),
            },
            Query::Command { id } => match self.records.get(*id) {
                Some(record) => QueryReply::Command(record.status),
                None => QueryReply::Refused(Status::UnknownCommand),
            },
            Query::RiskPolicy => {
                let policy = self.books.risk.policy();
                QueryReply::RiskPolicy {
                    digest: self.books.risk.policy_digest(),
                    rules: policy.rules_on(),
                }
            }
            Query::RiskAudit { account, index } => match self.customer(*account) {
                Ok(customer) => {
                    let entries: Vec<_> = self.books.risk.audit(customer.owner).collect();
                    let entry = entries
                        .get(usize::from(*index))
                        .map_or(crate::risk::AuditEntry::EMPTY, |entry| **entry);
                    QueryReply::RiskAudit {
                        entries: entries.len() as u8,
                        entry,
                    }
                }
                Err(status) => QueryReply::Refused(status),
            },
            Query::Spending {
                account,
                month,
                category,
            } => self.spending(*account, *month, *category),
            Query::FxRate { index } => self.books.fx.rate_view(*index),
            Query::Instrument { account, index } => match self.account(*account) {
                Some(account) => self.books.instrument_view(account, *index),
                None => QueryReply::Refused(Status::UnknownAccount),
            },
        }
    }

    fn customer(&self, id: AccountId) -> Result<&Account, Status> {
        let account = self.account(id).ok_or(Status::UnknownAccount)?;
        if account.kind != AccountKind::Customer {
            return Err(Status::NotACustomer);
        }
        Ok(account)
    }

    fn spending(&self, id: AccountId, month: u32, category: u8) -> QueryReply {
        let account = match self.customer(id) {
            Ok(account) => account,
            Err(status) => return QueryReply::Refused(status),
        };
        let Some(category) = Category::from_code(category) else {
            return QueryReply::Refused(Status::UnknownCategory);
        };
        let month = if month == 0 {
            crate::risk::Month::from_timestamp(self.timestamp)
        } else {
            crate::risk::Month(month)
        };
        let (spent, budget) = match self.books.risk.budget(account.id) {
            Some(state) => match state.spent(category, month) {
                Some(spent) => (spent, state.budget(category)),
                None => return QueryReply::Refused(Status::MonthNotKept),
            },
            None => (0, None),
        };
        QueryReply::Spending {
            month: month.0,
            category: category.code(),
            spent,
            budget,
        }
    }

    /// The account with this id.
    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.books
            .index
            .get(&id)
            .map(|&slot| &self.books.accounts[slot as usize])
    }

    /// All accounts, in slot order.
    pub fn accounts(&self) -> &[Account] {
        &self.books.accounts
    }

    /// The hold with this id, while it is remembered.
    pub fn hold(&self, id: CommandId) -> Option<&Hold> {
        self.books.holds.get(&id)
    }

    /// The payment with this command id, while it is refundable.
    pub fn payment(&self, id: CommandId) -> Option<&Payment> {
        self.books.payments.get(&id)
    }

    /// The first result recorded for this command id, while it is remembered.
    pub fn record(&self, id: CommandId) -> Option<IdempotencyRecord> {
        self.records.get(id)
    }

    pub fn records_len(&self) -> usize {
        self.records.len()
    }

    /// Sums per currency over all accounts (see [`CurrencyTotals`]).
    pub fn totals(&self) -> BTreeMap<Currency, CurrencyTotals> {
        let mut totals: BTreeMap<Currency, CurrencyTotals> = BTreeMap::new();
        for account in &self.books.accounts {
            let entry = totals.entry(account.currency).or_default();
            entry.balance += i128::from(account.balance);
            entry.debits_pending += u128::from(account.debits_pending);
            entry.credits_pending += u128::from(account.credits_pending);
        }
        totals
    }

    /// Whether money is conserved in every currency.
    pub fn is_conserved(&self) -> bool {
        self.totals().values().all(CurrencyTotals::is_conserved)
    }

    /// A BLAKE3 hash of the whole state in a canonical order (accounts, holds,
    /// merchant keys, payment codes and payments each sorted by key; the
    /// idempotency records as an order-free sum of their xxh3 hashes), so two
    /// ledgers can be compared cheaply however they were built.
    pub fn digest(&self) -> [u8; 32] {
        self.digest_of(DigestSections::ALL)
    }

    /// The digests an older build would have stored for this state, newest
    /// definition first, for a checkpoint written by it: a section the
    /// digest gained later is left out, and only while this state holds
    /// nothing in it (what an older checkpoint decodes to), so every part
    /// of the state stays covered. State format 3 (before instruments) and
    /// 2 (before FX).
    pub fn older_digests(&self) -> Vec<[u8; 32]> {
        let mut digests = Vec::new();
        if self.books.instruments.len() == 0 {
            digests.push(self.digest_of(DigestSections {
                fx: true,
                instruments: false,
            }));
            let fx = &self.books.fx;
            if fx.rates.is_empty()
                && fx.floors.is_empty()
                && fx.quotes.is_empty()
                && fx.payments.is_empty()
            {
                digests.push(self.digest_of(DigestSections {
                    fx: false,
                    instruments: false,
                }));
            }
        }
        digests
    }

    /// [`Ledger::digest`] computed with `hasher` (a fresh one): for
    /// checking that the hasher's buffering changes nothing
    /// ([`DigestHasher::with_buffer`] of 0 passes every write straight on).
    pub fn digest_with(&self, hasher: DigestHasher) -> [u8; 32] {
        self.digest_of_with(DigestSections::ALL, hasher)
    }

    fn digest_of(&self, sections: DigestSections) -> [u8; 32] {
        self.digest_of_with(sections, DigestHasher::new())
    }

    fn digest_of_with(&self, sections: DigestSections, hasher: DigestHasher) -> [u8; 32] {
        self.digest_parts(sections, hasher, &self.records)
    }

    /// The digest of this ledger's state with `records` for its
    /// idempotency records (a shard's state with its router's records is
    /// the lone ledger they merge into; see `shard::Frozen::in_fork`).
    pub(crate) fn digest_with_records(&self, records: &dyn RecordsInOrder) -> [u8; 32] {
        self.digest_parts(DigestSections::ALL, DigestHasher::new(), records)
    }

    fn digest_parts(
        &self,
        sections: DigestSections,
        mut hasher: DigestHasher,
        records: &dyn RecordsInOrder,
    ) -> [u8; 32] {
        hasher.update(b"payrail-ledger-digest-v1");
        hasher.update(&self.sequence.to_le_bytes());
        hasher.update(&self.timestamp.to_le_bytes());

        // Accounts by id: slot order when that is id order (accounts opened
        // in id order), else the slots sorted by a copy of the id.
        let accounts = &self.books.accounts;
        let by_id: Vec<(AccountId, u32)> = if accounts.is_sorted_by_key(|account| account.id) {
            Vec::new()
        } else {
            let mut by_id: Vec<(AccountId, u32)> = accounts
                .iter()
                .enumerate()
                .map(|(slot, account)| (account.id, slot as u32))
                .collect();
            by_id.sort_unstable();
            by_id
        };
        let in_order: Box<dyn Iterator<Item = &Account>> = if by_id.is_empty() {
            Box::new(accounts.iter())
        } else {
            Box::new(by_id.iter().map(|&(_, slot)| &accounts[slot as usize]))
        };
        hasher.update(&(accounts.len() as u64).to_le_bytes());
        // Each item's fields go to the hasher in one update (`Fields`).
        use crate::digest::Fields;
        for account in in_order {
            Fields::<50>::new()
                .put(&account.id.0.to_le_bytes())
                .put(&account.owner.to_le_bytes())
                .put(&account.balance.to_le_bytes())
                .put(&account.debits_pending.to_le_bytes())
                .put(&account.credits_pending.to_le_bytes())
                .put(&account.currency.numeric().to_le_bytes())
                .put(&[account.kind as u8, account.status as u8, account.kyc_tier])
                .put(&account.mcc.to_le_bytes())
                .put(&account.holds_pending.to_le_bytes())
                .put(&[account.codes_live])
                .hash_into(&mut hasher);
        }

        let mut holds: Vec<([u64; 2], &Hold)> = self
            .books
            .holds
            .values()
            .map(|hold| (crate::digest::id_key(hold.id.0), hold))
            .collect();
        holds.sort_unstable_by_key(|(key, _)| *key);
        hasher.update(&(holds.len() as u64).to_le_bytes());
        for (_, hold) in holds {
            let account_id = |slot: u32| self.books.accounts[slot as usize].id.0.to_le_bytes();
            Fields::<49>::new()
                .put(&hold.id.0.to_le_bytes())
                .put(&account_id(hold.account_slot))
                .put(&account_id(hold.house_slot))
                .put(&hold.amount.to_le_bytes())
                .put(&hold.expires_at.to_le_bytes())
                .put(&[hold.state as u8])
                .hash_into(&mut hasher);
        }

        // Idempotency records are by far the largest part (tens of millions):
        // instead of sorting them, each is hashed on its own and the hashes
        // are summed, which is independent of the table's order. (A multiset
        // hash: fine for telling two states apart, not meant to resist
        // someone crafting collisions.)
        let mut sum: u128 = 0;
        let mut bytes = [0u8; 34];
        for (id, record) in records.each() {
            bytes[..16].copy_from_slice(&id.0.to_le_bytes());
            bytes[16..24].copy_from_slice(&record.fingerprint.to_le_bytes());
            bytes[24..26].copy_from_slice(&record.status.code().to_le_bytes());
            bytes[26..34].copy_from_slice(&record.timestamp.to_le_bytes());
            sum = sum.wrapping_add(xxhash_rust::xxh3::xxh3_128(&bytes));
        }
        hasher.update(&(records.count() as u64).to_le_bytes());
        hasher.update(&sum.to_le_bytes());
        self.books.digest_payments(&mut hasher);
        self.books.risk.digest_into(&mut hasher);
        if sections.fx {
            self.books.digest_fx(&mut hasher);
        }
        if sections.instruments {
            self.books.instruments.digest_into(&mut hasher);
        }
        *hasher.finalize().as_bytes()
    }
}

/// The checks of an account opening that need no state (the router of a
/// sharded ledger runs them too).
pub(crate) fn check_open(open: &OpenAccount) -> Result<(), Status> {
    if open.account.is_house() {
        return Err(Status::ReservedAccountId);
    }
    if !open.currency.is_valid() {
        return Err(Status::UnknownCurrency);
    }
    match open.kind {
        AccountKind::House => return Err(Status::InvalidAccountKind),
        AccountKind::Customer => {
            if open.kyc_tier > limits::KYC_TIER_MAX {
                return Err(Status::InvalidKycTier);
            }
            if open.mcc != 0 {
                return Err(Status::InvalidMcc);
            }
        }
        AccountKind::Merchant => {
            if open.kyc_tier != 0 {
                return Err(Status::InvalidKycTier);
            }
            if open.mcc > limits::MCC_MAX {
                return Err(Status::InvalidMcc);
            }
        }
    }
    Ok(())
}

/// Checks common to every amount.
pub(crate) fn check_amount(amount: u64) -> Result<(), Status> {
    if amount == 0 {
        return Err(Status::AmountMustBePositive);
    }
    if amount > limits::AMOUNT_MAX {
        return Err(Status::AmountTooLarge);
    }
    Ok(())
}

/// `amount` as i64; callers have passed `check_amount`.
pub(crate) fn signed(amount: u64) -> i64 {
    debug_assert!(amount <= limits::AMOUNT_MAX);
    amount as i64
}

/// Moves a state machine's clock to a new batch's sequence and timestamp.
/// The sequencer makes sequences increase and timestamps never go back, so a
/// violation is a programmer error and panics.
pub(crate) fn advance_clock(clock: (&mut u64, &mut u64), sequence: u64, timestamp: u64) {
    let (current_sequence, current_timestamp) = clock;
    assert!(
        sequence > *current_sequence,
        "sequence {sequence} after {current_sequence}"
    );
    assert!(
        timestamp >= *current_timestamp,
        "timestamp {timestamp} before {current_timestamp}"
    );
    *current_sequence = sequence;
    *current_timestamp = timestamp;
}

/// A movement's merchant category: the command's own (a QR payment's, a
/// refunded payment's), else the credited merchant's, else the debited
/// merchant's; 0 when no merchant is involved. Sharded halves compute it
/// from what each side knows, so it is the same on any shard count.
pub(crate) fn movement_mcc(command: u16, credit_merchant: u16, debit_merchant: u16) -> u16 {
    [command, credit_merchant, debit_merchant]
        .into_iter()
        .find(|mcc| *mcc != 0)
        .unwrap_or(0)
}

impl Books {
    /// Drops the hold with this id if it is finished (its record is gone).
    pub(crate) fn forget_finished_hold(&mut self, id: CommandId) {
        if self.holds.is_empty() {
            return;
        }
        if let Some(hold) = self.holds.get(&id) {
            if hold.state != HoldState::Pending {
                self.holds.remove(&id);
            }
        }
    }

    fn execute(&mut self, command: &Command, timestamp: u64) -> CommandResult {
        self.execute_with(command, timestamp, Elsewhere::default())
    }

    /// `execute` with facts from other shards (see [`Elsewhere`]).
    pub(crate) fn execute_with(
        &mut self,
        command: &Command,
        timestamp: u64,
        elsewhere: Elsewhere,
    ) -> CommandResult {
        debug_assert_eq!(self.detail, Detail::None);
        let outcome = self.execute_kind(command, timestamp, elsewhere);
        // Set by the risk calls of a payment; None for everything else.
        let detail = std::mem::take(&mut self.detail);
        match outcome {
            Ok(()) => CommandResult::with_detail(Status::Ok, detail),
            Err(status) => CommandResult::with_detail(status, detail),
        }
    }

    fn execute_kind(
        &mut self,
        command: &Command,
        timestamp: u64,
        elsewhere: Elsewhere,
    ) -> Result<(), Status> {
        match command.kind {
            CommandKind::OpenAccount(open) => self.open_account(&open),
            CommandKind::Deposit {
                account,
                amount,
                currency,
            } => self.deposit(account, amount, currency, None),
            CommandKind::DepositFrom {
                account,
                amount,
                currency,
                instrument,
            } => self.deposit(account, amount, currency, Some(instrument)),
            // Two parties: the halves a shard runs (ledger/halves.rs).
            CommandKind::Transfer { .. }
            | CommandKind::PayMerchantQr { .. }
            | CommandKind::ChargePaymentCode { .. }
            | CommandKind::Refund { .. } => {
                let parties = self.local_parties(command);
                let result = self.apply_pair_local(command, parties, timestamp);
                self.detailed(result)
            }
            CommandKind::WithdrawHold {
                account,
                amount,
                currency,
                timeout_ms,
                context,
            } => self.withdraw_hold(
                command.id,
                account,
                amount,
                currency,
                timeout_ms,
                context,
                timestamp,
                elsewhere.hold_id_taken,
                None,
            ),
            CommandKind::WithdrawHoldTo {
                account,
                amount,
                currency,
                timeout_ms,
                context,
                instrument,
            } => self.withdraw_hold(
                command.id,
                account,
                amount,
                currency,
                timeout_ms,
                context,
                timestamp,
                elsewhere.hold_id_taken,
                Some(instrument),
            ),
            CommandKind::BindInstrument(bind) => self.bind_instrument(command.id, &bind, timestamp),
            CommandKind::VerifyInstrument { instrument, passed } => {
                self.verify_instrument(instrument, passed, timestamp)
            }
            CommandKind::UnbindInstrument { instrument } => {
                self.unbind_instrument(instrument, timestamp)
            }
            CommandKind::WithdrawPost { hold } => self.finish_hold(hold, HoldState::Posted),
            CommandKind::WithdrawVoid { hold } => self.finish_hold(hold, HoldState::Voided),
            CommandKind::Freeze { account } => self.freeze(account),
            CommandKind::Unfreeze { account } => self.unfreeze(account),
            CommandKind::Close { account } => self.close(account),
            CommandKind::SetKycTier { account, tier } => self.set_kyc_tier(account, tier),
            CommandKind::RegisterMerchantKey { merchant, key } => {
                self.register_merchant_key(merchant, key, elsewhere.merchant_key_taken)
            }
            CommandKind::IssuePaymentCode {
                customer,
                code,
                lifetime_ms,
            } => self.issue_payment_code(
                customer,
                code,
                lifetime_ms,
                timestamp,
                elsewhere.payment_code_taken,
            ),
            CommandKind::SetBudget {
                account,
                category,
                budget,
            } => self.set_budget(account, category, budget),
            CommandKind::SetFxRate(set) => {
                let result = self.set_fx_rate(&set, timestamp);
                self.detailed(result)
            }
            CommandKind::SetFxFloor { currency, limit } => {
                let result = self.set_fx_floor(currency, limit);
                self.detailed(result)
            }
            CommandKind::FxQuote { order, ttl_ms } => {
                let result = self.fx_quote(command.id, &order, ttl_ms, timestamp, elsewhere);
                self.detailed(result)
            }
            CommandKind::FxConvertQuote { quote, from } => {
                let result = self.fx_convert_quote(quote, from, timestamp, elsewhere);
                self.detailed(result)
            }
            CommandKind::FxConvert(order) => {
                let result = self.fx_convert(&order, timestamp, elsewhere);
                self.detailed(result)
            }
        }
    }

    /// An FX or two-party command's result as `execute_kind`'s: the detail
    /// is left for `execute_with`.
    fn detailed(&mut self, result: CommandResult) -> Result<(), Status> {
        self.detail = result.detail;
        match result.status {
            Status::Ok => Ok(()),
            status => Err(status),
        }
    }

    fn set_budget(
        &mut self,
        id: AccountId,
        category: u8,
        budget: Option<u64>,
    ) -> Result<(), Status> {
        let category = Category::from_code(category).ok_or(Status::UnknownCategory)?;
        if budget.is_some_and(|amount| amount > limits::AMOUNT_MAX) {
            return Err(Status::AmountTooLarge);
        }
        let slot = self.user_slot(id, Status::UnknownAccount)?;
        let account = self.account(slot);
        if account.kind != AccountKind::Customer {
            return Err(Status::NotACustomer);
        }
        if account.status == AccountStatus::Closed {
            return Err(Status::AccountClosed);
        }
        // Point of no return (the amount is checked above, so this cannot fail).
        let state = self.risk.budgets.entry(id).or_default();
        state
            .set_budget(category, budget)
            .map_err(|_| Status::AmountTooLarge)
    }

    pub(crate) fn slot(&self, id: AccountId) -> Option<u32> {
        self.index.get(&id).copied()
    }

    /// Starts a batch's movements (history on only): every movement of it
    /// carries the batch's sequence and timestamp.
    pub(crate) fn begin_movements(&mut self, sequence: u64, timestamp: u64) {
        if let Some(sink) = &mut self.history {
            sink.context = MovementContext {
                sequence,
                timestamp,
                ..MovementContext::default()
            };
        }
    }

    /// Tags the movements `command`, at `index` in its batch, will make
    /// (history on only).
    pub(crate) fn set_movement_context(&mut self, command: &Command, index: u32) {
        let mcc = match command.kind {
            CommandKind::PayMerchantQr { mcc, .. } => mcc,
            CommandKind::Refund { payment, .. } => self.payment_mcc(payment),
            _ => 0,
        };
        if let Some(sink) = &mut self.history {
            sink.context.command = command.id;
            sink.context.kind = command.kind.name();
            sink.context.mcc = mcc;
            sink.context.index = index;
            sink.context.counterparty = None;
            sink.context.legs = 0;
            sink.context.instrument = None;
            sink.context.entry = None;
        }
    }

    /// The merchant category of a payment kept here (0 if none).
    pub(crate) fn payment_mcc(&self, payment: CommandId) -> u16 {
        self.payments
            .get(&payment)
            .map(|payment| payment.mcc)
            .or_else(|| {
                self.remote_payments
                    .get(&payment)
                    .map(|(payment, _)| payment.mcc)
            })
            .unwrap_or(0)
    }

    /// The merchant category an account lends its movements (a merchant's).
    pub(crate) fn account_mcc(&self, slot: u32) -> u16 {
        let account = self.account(slot);
        if account.kind == AccountKind::Merchant {
            account.mcc
        } else {
            0
        }
    }

    /// Records that `amount` just moved from `debit_slot` to `credit_slot`
    /// (balances already updated): one movement per customer or merchant
    /// side (legs `2k` and `2k + 1` of the command). Every primitive that
    /// changes a balance calls it after its point of no return; it does
    /// nothing while history is off.
    pub(crate) fn note_movement(&mut self, debit_slot: u32, credit_slot: u32, amount: u64) {
        let Some(sink) = &self.history else {
            return;
        };
        let context = sink.context;
        let debit = *self.account(debit_slot);
        let credit = *self.account(credit_slot);
        let mcc = movement_mcc(
            context.mcc,
            self.account_mcc(credit_slot),
            self.account_mcc(debit_slot),
        );
        let legs = context.legs;
        let amount = signed(amount);
        self.push_movement(&debit, credit.id, -amount, mcc, legs);
        self.push_movement(&credit, debit.id, amount, mcc, legs + 1);
        if let Some(sink) = &mut self.history {
            sink.context.legs = legs.saturating_add(2);
        }
    }

    /// One movement of `account` (its balance already updated), leg `leg`
    /// of the current command. House accounts get none (history.rs says
    /// why); a house counterparty is named by its public id.
    pub(crate) fn push_movement(
        &mut self,
        account: &Account,
        counterparty: AccountId,
        amount: i64,
        mcc: u16,
        leg: u32,
    ) {
        if account.id.is_house() {
            return;
        }
        let Some(sink) = &mut self.history else {
            return;
        };
        let counterparty = if counterparty.is_house() {
            counterparty.house_part(0)
        } else {
            counterparty
        };
        sink.movements
            .push(&mut sink.context, account, counterparty, amount, mcc, leg);
    }

    /// The funding instrument the current command's next movements carry
    /// (history on only).
    pub(crate) fn set_movement_instrument(&mut self, instrument: Option<MovementInstrument>) {
        if let Some(sink) = &mut self.history {
            sink.context.instrument = instrument;
            // The next leg starts a command entry with this instrument.
            sink.context.entry = None;
        }
    }

    /// Slot of a customer or merchant account.
    pub(crate) fn user_slot(&self, id: AccountId, unknown: Status) -> Result<u32, Status> {
        if id.is_house() {
            return Err(Status::HouseAccountNotAllowed);
        }
        self.slot(id).ok_or(unknown)
    }

    /// The account with this id, if this ledger holds it.
    #[inline]
    pub(crate) fn find(&self, id: AccountId) -> Option<&Account> {
        let &slot = self.index.get(&id)?;
        self.accounts.get(slot as usize)
    }

    pub(crate) fn account(&self, slot: u32) -> &Account {
        &self.accounts[slot as usize]
    }

    pub(crate) fn account_mut(&mut self, slot: u32) -> &mut Account {
        &mut self.accounts[slot as usize]
    }

    pub(crate) fn push_account(&mut self, account: Account) -> u32 {
        debug_assert!(self.accounts.len() < limits::ACCOUNTS_MAX);
        let slot = self.accounts.len() as u32;
        self.index.insert(account.id, slot);
        self.accounts.push(account);
        slot
    }

    /// The house settlement account of `currency`, opened on first use.
    /// Callers check `has_room_for_house` before their point of no return.
    fn house_settlement(&mut self, currency: Currency) -> u32 {
        self.house_account(HouseRole::Settlement, currency)
    }

    /// This ledger's part of the house account of `role` and `currency`,
    /// opened on first use.
    pub(crate) fn house_account(&mut self, role: HouseRole, currency: Currency) -> u32 {
        let id = AccountId::house(role, currency).house_part(self.house_part);
        match self.slot(id) {
            Some(slot) => slot,
            None => self.push_account(Account::new(&OpenAccount {
                account: id,
                owner: 0,
                kind: AccountKind::House,
                currency,
                kyc_tier: 0,
                mcc: 0,
            })),
        }
    }

    /// The settlement account's balance and pending credits (zero if it does
    /// not exist yet), and whether there is room to open it.
    fn settlement_state(&self, currency: Currency) -> Result<(i64, u64), Status> {
        match self
            .slot(AccountId::house(HouseRole::Settlement, currency).house_part(self.house_part))
        {
            Some(slot) => {
                let house = self.account(slot);
                Ok((house.balance, house.credits_pending))
            }
            None if self.accounts.len() >= limits::ACCOUNTS_MAX => Err(Status::LedgerFull),
            None => Ok((0, 0)),
        }
    }

    fn open_account(&mut self, open: &OpenAccount) -> Result<(), Status> {
        check_open(open)?;
        if self.index.contains_key(&open.account) {
            return Err(Status::AccountExists);
        }
        if self.accounts.len() >= limits::ACCOUNTS_MAX {
            return Err(Status::LedgerFull);
        }
        // Point of no return.
        self.push_account(Account::new(open));
        Ok(())
    }

    /// `Deposit` (no instrument) and `DepositFrom`.
    fn deposit(
        &mut self,
        id: AccountId,
        amount: u64,
        currency: Currency,
        instrument: Option<InstrumentId>,
    ) -> Result<(), Status> {
        check_amount(amount)?;
        let slot = self.user_slot(id, Status::UnknownAccount)?;
        let account = self.account(slot);
        account.check_movable()?;
        if account.currency != currency {
            return Err(Status::CurrencyMismatch);
        }
        self.check_funding(account, instrument, None)?;
        let balance = account
            .balance
            .checked_add(signed(amount))
            .ok_or(Status::Overflow)?;
        let (house_balance, _) = self.settlement_state(currency)?;
        let house_balance = house_balance
            .checked_sub(signed(amount))
            .ok_or(Status::Overflow)?;
        // Point of no return.
        let house = self.house_settlement(currency);
        self.account_mut(slot).balance = balance;
        self.account_mut(house).balance = house_balance;
        if let (Some(instrument), true) = (instrument, self.history.is_some()) {
            let shown = self.instruments.shown(instrument);
            self.set_movement_instrument(shown);
        }
        self.note_movement(house, slot, amount);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // the fields of one command, and a fact
    fn withdraw_hold(
        &mut self,
        id: CommandId,
        account_id: AccountId,
        amount: u64,
        currency: Currency,
        timeout_ms: u64,
        context: RiskContext,
        timestamp: u64,
        hold_id_taken: bool,
        instrument: Option<InstrumentId>,
    ) -> Result<(), Status> {
        check_amount(amount)?;
        if !(limits::HOLD_TIMEOUT_MS_MIN..=limits::HOLD_TIMEOUT_MS_MAX).contains(&timeout_ms) {
            return Err(Status::TimeoutOutOfRange);
        }
        let slot = self.user_slot(account_id, Status::UnknownAccount)?;
        let account = self.account(slot);
        account.check_movable()?;
        if account.currency != currency {
            return Err(Status::CurrencyMismatch);
        }
        let destination = self.check_funding(account, instrument, Some(currency))?;
        if account.holds_pending >= self.caps.holds_pending {
            return Err(Status::TooManyHolds);
        }
        if account.available() < signed(amount) {
            return Err(Status::InsufficientFunds);
        }
        if self.holds.contains_key(&id) || hold_id_taken {
            // A hold outlived its command's idempotency record and the id came back.
            return Err(Status::IdReusedWithDifferentFields);
        }
        let (_, house_credits_pending) = self.settlement_state(currency)?;
        let house_credits_pending = house_credits_pending
            .checked_add(amount)
            .ok_or(Status::Overflow)?;
        // Timestamps are ns since the epoch (< 2^63 until 2262) and the timeout
        // is bounded, so this saturating add never saturates in practice.
        let expires_at = timestamp.saturating_add(timeout_ms.saturating_mul(1_000_000));
        let gate = self.risk_check(
            id,
            timestamp,
            slot,
            amount,
            currency,
            Payee::withdrawal(destination),
            context,
        )?;
        // Point of no return. debits_pending + amount <= balance, so no overflow.
        let house_slot = self.house_settlement(currency);
        let account = self.account_mut(slot);
        account.debits_pending += amount;
        account.holds_pending += 1;
        self.account_mut(house_slot).credits_pending = house_credits_pending;
        self.holds.insert(
            id,
            Hold {
                id,
                account_slot: slot,
                house_slot,
                amount,
                expires_at,
                state: HoldState::Pending,
            },
        );
        self.hold_expiries.push(Reverse((expires_at, id)));
        if let Some(instrument) = instrument {
            // What its posted movement will show, as it is now.
            self.instruments.hold_to(id, instrument);
            // Under a policy (a gate), the instrument rules remember it.
            if gate.is_some() && self.risk.enabled() {
                self.instruments
                    .record_withdrawal(instrument, amount, timestamp);
            }
        }
        self.risk_commit(id, gate.as_ref());
        Ok(())
    }

    /// Posts or voids a pending hold.
    fn finish_hold(&mut self, id: CommandId, outcome: HoldState) -> Result<(), Status> {
        debug_assert!(matches!(outcome, HoldState::Posted | HoldState::Voided));
        let hold = *self.holds.get(&id).ok_or(Status::HoldNotFound)?;
        match hold.state {
            HoldState::Pending => {}
            HoldState::Posted => return Err(Status::HoldAlreadyPosted),
            HoldState::Voided => return Err(Status::HoldAlreadyVoided),
            HoldState::Expired => return Err(Status::HoldExpired),
        }
        let account = self.account(hold.account_slot);
        let house = self.account(hold.house_slot);
        if outcome == HoldState::Posted {
            // Freezing an account stops money leaving it, held money included.
            account.check_movable()?;
            house
                .balance
                .checked_add(signed(hold.amount))
                .ok_or(Status::Overflow)?;
        }
        // Point of no return.
        self.release_hold(&hold, outcome);
        Ok(())
    }

    /// Ends a pending hold: `Posted` moves the money, `Voided` and `Expired`
    /// release it.
    fn release_hold(&mut self, hold: &Hold, outcome: HoldState) {
        let amount = hold.amount;
        let account = self.account_mut(hold.account_slot);
        assert!(account.debits_pending >= amount);
        assert!(account.holds_pending >= 1);
        account.debits_pending -= amount;
        account.holds_pending -= 1;
        if outcome == HoldState::Posted {
            account.balance -= signed(amount);
        }
        let house = self.account_mut(hold.house_slot);
        assert!(house.credits_pending >= amount);
        house.credits_pending -= amount;
        if outcome == HoldState::Posted {
            // Checked by finish_hold before its point of no return.
            house.balance = house.balance.saturating_add(signed(amount));
        }
        if let Some(stored) = self.holds.get_mut(&hold.id) {
            stored.state = outcome;
        }
        let instrument = self.instruments.end_hold(hold.id);
        if outcome == HoldState::Posted {
            self.set_movement_instrument(instrument);
            self.note_movement(hold.account_slot, hold.house_slot, amount);
        }
    }

    /// Releases every pending hold whose expiry is at or before `timestamp`.
    /// With `records`, an expired hold whose record is gone is dropped too;
    /// a shard passes `None` (its router says when a record went).
    pub(crate) fn expire_holds(&mut self, timestamp: u64, records: Option<&Records>) {
        while let Some(&Reverse((expires_at, id))) = self.hold_expiries.peek() {
            if expires_at > timestamp {
                break;
            }
            self.hold_expiries.pop();
            let Some(hold) = self.holds.get(&id).copied() else {
                continue;
            };
            if hold.expires_at != expires_at {
                // The entry of an earlier hold with this id, finished early
                // and forgotten; the id now names a newer hold with its own
                // expiry entry.
                continue;
            }
            if hold.state == HoldState::Pending {
                self.release_hold(&hold, HoldState::Expired);
            }
            if records.is_some_and(|records| !records.contains(id)) {
                self.holds.remove(&id);
            }
        }
    }

    fn freeze(&mut self, id: AccountId) -> Result<(), Status> {
        let slot = self.user_slot(id, Status::UnknownAccount)?;
        match self.account(slot).status {
            AccountStatus::Active => {}
            AccountStatus::Frozen => return Err(Status::AccountAlreadyFrozen),
            AccountStatus::Closed => return Err(Status::AccountClosed),
        }
        // Point of no return.
        self.account_mut(slot).status = AccountStatus::Frozen;
        Ok(())
    }

    fn unfreeze(&mut self, id: AccountId) -> Result<(), Status> {
        let slot = self.user_slot(id, Status::UnknownAccount)?;
        match self.account(slot).status {
            AccountStatus::Frozen => {}
            AccountStatus::Active => return Err(Status::AccountNotFrozen),
            AccountStatus::Closed => return Err(Status::AccountClosed),
        }
        // Point of no return.
        self.account_mut(slot).status = AccountStatus::Active;
        Ok(())
    }

    fn close(&mut self, id: AccountId) -> Result<(), Status> {
        let slot = self.user_slot(id, Status::UnknownAccount)?;
        let account = self.account(slot);
        account.check_movable()?;
        if account.holds_pending > 0 {
            return Err(Status::AccountHasHolds);
        }
        if account.balance != 0 {
            return Err(Status::AccountNotEmpty);
        }
        debug_assert_eq!(account.debits_pending, 0);
        debug_assert_eq!(account.credits_pending, 0);
        // Point of no return.
        self.account_mut(slot).status = AccountStatus::Closed;
        Ok(())
    }

    fn set_kyc_tier(&mut self, id: AccountId, tier: u8) -> Result<(), Status> {
        if tier > limits::KYC_TIER_MAX {
            return Err(Status::InvalidKycTier);
        }
        let slot = self.user_slot(id, Status::UnknownAccount)?;
        let account = self.account(slot);
        if account.kind != AccountKind::Customer {
            return Err(Status::NotACustomer);
        }
        if account.status == AccountStatus::Closed {
            return Err(Status::AccountClosed);
        }
        // Point of no return.
        self.account_mut(slot).kyc_tier = tier;
        Ok(())
    }
}
