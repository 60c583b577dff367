//! Stage 2, the router: classifies each command of a batch in log order
//! (fresh, duplicate, id reused), resolves what it names to shards, and
//! appends its steps to the segments the shards apply. Everything it keeps
//! to do so is one struct, [`RouterTables`], which a checkpoint's split
//! (`layout.rs`) fills.
//!
//! One routing function per command class: `route_fresh` classifies (an
//! exhaustive match), one-shard commands are pushed as they are, two-party
//! commands go through `route_pair`, global settings to every shard.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::growing_map::GrowingMap;
use dashmap::DashMap;
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::records::{RecordRing, RouterRecord};
use super::worker::{Role, Step};
use super::{shard_of_owner, InFlight, Placement, ShardedLedger};
use crate::command::{
    AccountId, Command, CommandId, CommandKind, CommandResult, Detail, FxAmounts, FxMid, FxOrder,
    FxRateSet, FxSide, HouseRole, MerchantKey,
};
use crate::currency::Currency;
use crate::ledger::halves::{first_known_key, Parties};
use crate::ledger::{check_open, Elsewhere};
use crate::limits;
use crate::status::Status;

/// Everything the router keeps to route, in log order.
#[derive(Debug)]
pub(super) struct RouterTables {
    /// Account id → shard, for every customer and merchant account.
    pub(super) directory: Arc<DashMap<AccountId, Placement, FxBuildHasher>>,
    /// Idempotency records, in arrival order (fixed capacity, never grows).
    pub(super) records: RecordRing,
    pub(super) keys: GrowingMap<MerchantKey, KeyEntry>,
    pub(super) codes: GrowingMap<u64, CodeEntry>,
    pub(super) code_forgets: BinaryHeap<Reverse<(u64, u64)>>,
    pub(super) holds: GrowingMap<CommandId, HoldEntry>,
    pub(super) hold_expiries: BinaryHeap<Reverse<(u64, CommandId)>>,
    pub(super) quotes: GrowingMap<CommandId, QuoteEntry>,
    pub(super) quote_forgets: BinaryHeap<Reverse<(u64, CommandId)>>,
    /// FX liquidity floors in force (a copy: `SetFxFloor` needs no state).
    pub(super) fx_floors: FxHashMap<Currency, u64>,
    pub(super) liquidity: FxHashMap<Currency, LiquidityBound>,
    /// The FX rate table as the shards have it once every `SetFxRate`
    /// routed is learned (`rates_unlearned` is 0): mids by pair as set.
    pub(super) fx_rates: FxHashMap<(Currency, Currency), FxMid>,
    pub(super) rates_unlearned: u32,
}

/// Who a merchant key pays.
#[derive(Clone, Copy, Debug)]
pub(super) struct KeyEntry {
    pub(super) merchant: AccountId,
    /// `false` while the registration that made this entry is in flight.
    pub(super) resolved: bool,
    /// The arrival number of that registration.
    pub(super) arrival: u64,
}

/// Which customer a payment code belongs to, while some shard remembers it.
#[derive(Clone, Copy, Debug)]
pub(super) struct CodeEntry {
    pub(super) customer: AccountId,
    pub(super) shard: u32,
    /// Command time from which the code is forgotten (expiry plus memory).
    pub(super) forget_at: u64,
    pub(super) resolved: bool,
    pub(super) arrival: u64,
}

/// Where an FX quote lives, while its shard remembers it.
#[derive(Clone, Copy, Debug)]
pub(super) struct QuoteEntry {
    pub(super) shard: u32,
    /// Command time from which the quote is forgotten (expiry plus
    /// `FX_QUOTE_MEMORY_NS`); `u64::MAX` until the quote's result is in.
    pub(super) forget_at: u64,
    /// The quoted amounts (for retries of the quote command, and the
    /// currency a conversion of it draws on); `None` until resolved.
    pub(super) amounts: Option<FxAmounts>,
    pub(super) resolved: bool,
    pub(super) arrival: u64,
}

/// What the router knows of one currency's FX liquidity parts: their exact
/// balances at the last time it asked, and since then an upper bound of what
/// commands routed on each shard may have drawn from them (credits are left
/// out: they only help). `exact` is false once a command with no known
/// bound was routed, until the next ask.
#[derive(Clone, Debug)]
pub(super) struct LiquidityBound {
    pub(super) parts: Vec<i128>,
    pub(super) drawn: Vec<u128>,
    pub(super) exact: bool,
}

/// Where a withdrawal hold lives, when it expires, and what the router
/// knows of its state: enough to tell, when its record is evicted, whether
/// the shard keeps it until expiry (a pending hold) or drops it now.
#[derive(Clone, Copy, Debug)]
pub(super) struct HoldEntry {
    pub(super) shard: u32,
    pub(super) expires_at: u64,
    pub(super) state: HoldKnown,
    /// The arrival number of the hold's opening.
    pub(super) arrival: u64,
    /// Commands on this hold (its opening, posts, voids) whose results are
    /// not yet learned.
    pub(super) unresolved: u32,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(super) enum HoldKnown {
    Opening,
    Pending,
    Finished,
    Failed,
}

/// A fact the router learns from a result.
#[derive(Clone, Copy, Debug)]
pub(super) enum Fact {
    None,
    Key(MerchantKey),
    Code(u64),
    /// Opening of a hold.
    HoldOpen(CommandId),
    /// Post or void of the hold entry with this arrival.
    HoldFinish(CommandId, u64),
    /// An FX quote (its id).
    Quote(CommandId),
    /// An FX rate set: the router's copy of the table, for bounds.
    Rate(FxRateSet),
}

/// A fresh command with a fact to learn, routed and not yet learned from.
#[derive(Clone, Copy, Debug)]
pub(super) struct Routed {
    pub(super) index: u32,
    pub(super) arrival: u64,
    pub(super) fact: Fact,
}

impl ShardedLedger {
    /// What the lone ledger does before a batch's first command: expiries
    /// and record eviction, mirrored in the router's tables.
    pub(super) fn batch_start(&mut self, timestamp: u64, incoming: usize) {
        while let Some(&Reverse((at, id))) = self.tables.hold_expiries.peek() {
            if at > timestamp {
                break;
            }
            self.tables.hold_expiries.pop();
            let expired = self
                .tables
                .holds
                .get(&id)
                .filter(|hold| hold.expires_at == at);
            if let Some(hold) = expired.copied() {
                if !self.tables.records.contains(id) {
                    // Expired (so finished) with no record: the shard drops it.
                    self.tables.holds.remove(&id);
                    if let Some(segment) = self.segments.get_mut(hold.shard as usize) {
                        segment.forget_holds.push(id);
                    }
                }
            }
        }
        while let Some(&Reverse((at, code))) = self.tables.code_forgets.peek() {
            if at > timestamp {
                break;
            }
            self.tables.code_forgets.pop();
            if self
                .tables
                .codes
                .get(&code)
                .is_some_and(|entry| entry.forget_at == at)
            {
                self.tables.codes.remove(&code);
            }
        }
        while let Some(&Reverse((at, id))) = self.tables.quote_forgets.peek() {
            if at > timestamp {
                break;
            }
            self.tables.quote_forgets.pop();
            if self
                .tables
                .quotes
                .get(&id)
                .is_some_and(|entry| entry.forget_at == at)
            {
                self.tables.quotes.remove(&id);
            }
        }
        // Ledger::evict_records, on the global table.
        let keep_max = self.config.idempotency_records_max.saturating_sub(incoming);
        while let Some((oldest, record)) = self.tables.records.front() {
            if self.tables.records.len() <= keep_max {
                let expired = record
                    .timestamp
                    .saturating_add(self.config.idempotency_window_ns)
                    <= timestamp;
                if !expired {
                    break;
                }
            }
            self.tables
                .records
                .prefetch_eviction(crate::record_ring::EVICT_AHEAD);
            self.tables.records.pop_front();
            if record.keeps {
                if let Some(segment) = self.segments.get_mut(record.home as usize) {
                    segment.forget.push(oldest);
                }
            }
            // A cross-currency payment's FX legs are kept by its payer's
            // shard too.
            let payer_shard = record
                .parties
                .and_then(|(_, payer)| self.shard_of(payer))
                .filter(|&shard| shard != record.home);
            if let Some(segment) =
                payer_shard.and_then(|shard| self.segments.get_mut(shard as usize))
            {
                segment.forget_fx.push(oldest);
            }
            // The id was reused for a command on another shard than
            // its hold's: that shard hears of the record going too.
            if let Some(hold) = self.tables.holds.get(&oldest) {
                if hold.shard != record.home || !record.keeps {
                    if let Some(segment) = self.segments.get_mut(hold.shard as usize) {
                        segment.forget_holds.push(oldest);
                    }
                }
            }
            // The shard drops a finished hold with its record and keeps a
            // pending one until it expires: learn which this one is.
            if self
                .tables
                .holds
                .get(&oldest)
                .is_some_and(|hold| hold.unresolved > 0)
            {
                self.settle();
            }
            if self.tables.holds.get(&oldest).is_some_and(|hold| {
                hold.state != HoldKnown::Pending || hold.expires_at <= timestamp
            }) {
                self.tables.holds.remove(&oldest);
            }
        }
    }

    pub(super) fn shard_of(&self, account: AccountId) -> Option<u32> {
        self.tables.directory.get(&account).map(|entry| entry.shard)
    }

    /// The shard of a command's one account, shard 0 if the directory does
    /// not know it (the shard then answers "unknown" as a lone ledger
    /// would). With one shard that is every account's: no look-up (a
    /// directory probe is a cache miss per account at millions of them).
    pub(super) fn shard_or_first(&self, account: AccountId) -> u32 {
        if self.shards == 1 {
            return 0;
        }
        self.shard_of(account).unwrap_or(0)
    }

    pub(super) fn currency_of(&self, account: AccountId) -> Option<Currency> {
        self.tables
            .directory
            .get(&account)
            .map(|entry| entry.currency)
    }

    /// The shard an FX order runs on (its paying account's, as a lone
    /// ledger looks that up first), and whether `to` lives on another shard
    /// (so has another owner).
    fn fx_shard(&self, order: &FxOrder) -> (u32, bool) {
        if self.shards == 1 {
            return (0, false);
        }
        let from = self.shard_of(order.from);
        let to = self.shard_of(order.to);
        match (from, to) {
            (Some(from), Some(to)) => (from, from != to),
            (Some(shard), None) | (None, Some(shard)) => (shard, false),
            (None, None) => (0, false),
        }
    }

    /// The sum of the FX liquidity parts of `currency` on every shard but
    /// `except`, at this point of the log, for a command that draws at most
    /// `draw` (`None`: not known) from `except`'s part. A conversion checks
    /// the liquidity floor on its own part plus this, which is the lone
    /// ledger's whole position.
    ///
    /// Exact when the router waits for everything routed so far and asks
    /// the shards (a flush). It skips that when its bound already proves the
    /// floor holds: balances at the last ask, minus everything routed since
    /// that may have drawn on them, minus `draw`, is at or above `-floor`.
    /// It then passes that lower bound of the other parts: the shard's
    /// check passes with it, as the lone ledger's does with the exact sum,
    /// and nothing else decides on the number.
    fn liquidity_elsewhere(&mut self, currency: Currency, except: u32, draw: Option<u64>) -> i128 {
        if self.shards == 1 {
            return 0;
        }
        let floor = i128::from(self.tables.fx_floors.get(&currency).copied().unwrap_or(0));
        if let (Some(draw), Some(bound)) = (draw, self.tables.liquidity.get_mut(&currency)) {
            if bound.exact {
                let low = |shard: usize| bound.parts[shard] - bound.drawn[shard] as i128;
                let total: i128 = (0..bound.parts.len()).map(low).sum();
                if total - i128::from(draw) >= -floor {
                    let others = total - low(except as usize);
                    bound.drawn[except as usize] += u128::from(draw);
                    self.stats.liquidity_bounded += 1;
                    return others;
                }
            }
        }
        self.stats.liquidity_asks += 1;
        self.flush();
        let public = AccountId::house(HouseRole::FxLiquidity, currency);
        let asks = (0..self.shards as u32)
            .map(|shard| vec![public.house_part(shard)])
            .collect();
        let parts: Vec<i128> = match self.ask_accounts(asks) {
            Ok(answers) => answers
                .iter()
                .map(|answer| {
                    answer
                        .first()
                        .copied()
                        .flatten()
                        .map_or(0, |part| i128::from(part.balance))
                })
                .collect(),
            Err(_) => {
                self.failed = true;
                return 0;
            }
        };
        let others = parts.iter().sum::<i128>() - parts[except as usize];
        let mut drawn = vec![0u128; self.shards];
        drawn[except as usize] = draw.map_or(0, u128::from);
        self.tables.liquidity.insert(
            currency,
            LiquidityBound {
                parts,
                drawn,
                exact: draw.is_some(),
            },
        );
        others
    }

    /// At most what paying `order.amount` buys, from the router's copy of
    /// the rate table; `None` while a rate set is in flight (the copy may be
    /// behind) or the accounts are unknown.
    fn receive_bound(&self, order: &FxOrder) -> Option<u64> {
        if self.tables.rates_unlearned > 0 {
            return None;
        }
        let from = self.currency_of(order.from)?;
        let to = self.currency_of(order.to)?;
        let (mid, inverse) = match self.tables.fx_rates.get(&(from, to)) {
            Some(mid) => (*mid, false),
            None => match self.tables.fx_rates.get(&(to, from)) {
                Some(mid) => (*mid, true),
                // No rate: the conversion is refused and draws nothing.
                None => return Some(0),
            },
        };
        let price = crate::fx::Price::new(mid, inverse, from, to)?;
        // receive = floor((pay - fee) * num / den) <= pay * num / den.
        let bound = u128::from(order.amount).checked_mul(price.num)? / price.den;
        Some(u64::try_from(bound).unwrap_or(u64::MAX))
    }

    /// A command routed that may draw on `currency`'s liquidity by an
    /// amount the router does not know: the next draw asks again.
    fn liquidity_unknown(&mut self, currency: Currency) {
        if let Some(bound) = self.tables.liquidity.get_mut(&currency) {
            bound.exact = false;
        }
    }

    /// A quote remembered by some shard (in flight or resolved).
    fn remembered_quote(&mut self, id: CommandId) -> Option<QuoteEntry> {
        if self
            .tables
            .quotes
            .get(&id)
            .is_some_and(|entry| !entry.resolved)
        {
            self.flush();
        }
        self.tables.quotes.get(&id).copied()
    }

    fn push(&mut self, shard: u32, step: Step) {
        if let Some(steps) = self.stats.steps.get_mut(shard as usize) {
            *steps += 1;
        }
        if let Some(segment) = self.segments.get_mut(shard as usize) {
            segment.steps.push(step);
        }
    }

    /// Classifies one command (fresh, duplicate, id reused) and routes it.
    /// `fingerprint` is `command.fingerprint()`, computed before the
    /// sequencer (off this thread).
    pub(super) fn route(
        &mut self,
        index: u32,
        command: &Command,
        fingerprint: u64,
        timestamp: u64,
    ) {
        debug_assert_eq!(fingerprint, command.fingerprint());
        if let Some((_, record)) = self.tables.records.get(command.id) {
            self.stats.answered_by_router += 1;
            if record.fingerprint != fingerprint {
                self.set_result(index, Status::IdReusedWithDifferentFields);
                return;
            }
            if record.status.is_none() {
                // The first of two in one batch (or still in flight).
                self.flush();
            }
            let status = self
                .tables
                .records
                .get(command.id)
                .and_then(|(_, record)| record.status)
                .unwrap_or(Status::Unavailable);
            // A retried quote answers with its amounts while it is
            // remembered, as the lone ledger does.
            let detail = match command.kind {
                CommandKind::FxQuote { .. } => self
                    .remembered_quote(command.id)
                    .and_then(|entry| entry.amounts)
                    .map_or(Detail::None, Detail::FxConversion),
                _ => Detail::None,
            };
            self.set_result_with(index, CommandResult::with_detail(status, detail));
            return;
        }
        let arrival = self.tables.records.next_arrival();
        let (home, fact, parties) =
            self.route_fresh(index, command, fingerprint, timestamp, arrival);
        // Routing may have waited for results (a flush), never routed
        // another command: the arrival is still the next one.
        assert_eq!(self.tables.records.next_arrival(), arrival);
        let pushed = self.tables.records.push(
            command.id,
            &RouterRecord {
                fingerprint,
                status: None,
                timestamp,
                home,
                parties,
                keeps: matches!(
                    command.kind,
                    CommandKind::WithdrawHold { .. }
                        | CommandKind::WithdrawHoldTo { .. }
                        | CommandKind::PayMerchantQr { .. }
                        | CommandKind::ChargePaymentCode { .. }
                ),
            },
        );
        debug_assert_eq!(pushed, arrival);
        if let Some(current) = self.in_flight.back_mut() {
            // Fresh commands of a batch arrive one after another: the
            // k-th fresh one is `first_arrival + k`.
            debug_assert_eq!(current.first_arrival + current.fresh.len() as u64, arrival);
            current.fresh.push(index);
            if !matches!(fact, Fact::None) {
                current.routed.push(Routed {
                    index,
                    arrival,
                    fact,
                });
            }
        }
    }

    /// Routes a fresh command; returns its home shard, what to learn from
    /// its result, and for payments the accounts a refund will need.
    ///
    /// The match has no wildcard arm: a command kind added later does not
    /// compile until it is classified here.
    fn route_fresh(
        &mut self,
        index: u32,
        command: &Command,
        fingerprint: u64,
        timestamp: u64,
        arrival: u64,
    ) -> (u32, Fact, Option<(AccountId, AccountId)>) {
        let local = |elsewhere| Step::Local {
            index,
            command: *command,
            fingerprint,
            elsewhere,
        };
        let plain = local(Elsewhere::default());
        match command.kind {
            // One account and this shard's house parts.
            CommandKind::OpenAccount(open) => {
                let shard = match self.shard_of(open.account) {
                    Some(shard) => shard,
                    None => {
                        let shard = shard_of_owner(open.owner, self.shards) as u32;
                        if check_open(&open).is_ok() {
                            self.tables.directory.insert(
                                open.account,
                                Placement {
                                    shard,
                                    currency: open.currency,
                                },
                            );
                        }
                        shard
                    }
                };
                self.push(shard, plain);
                (shard, Fact::None, None)
            }
            CommandKind::Deposit { account, .. }
            | CommandKind::DepositFrom { account, .. }
            | CommandKind::Freeze { account }
            | CommandKind::Unfreeze { account }
            | CommandKind::Close { account }
            | CommandKind::SetKycTier { account, .. }
            // A budget lives with its customer account.
            | CommandKind::SetBudget { account, .. }
            // Instruments live with their customer's accounts.
            | CommandKind::BindInstrument(crate::command::InstrumentBind {
                customer: account,
                ..
            }) => {
                let shard = self.shard_or_first(account);
                self.push(shard, plain);
                (shard, Fact::None, None)
            }
            CommandKind::VerifyInstrument { instrument, .. }
            | CommandKind::UnbindInstrument { instrument } => {
                let shard = shard_of_owner(instrument.owner, self.shards) as u32;
                self.push(shard, plain);
                (shard, Fact::None, None)
            }
            CommandKind::WithdrawHold {
                account,
                timeout_ms,
                ..
            }
            | CommandKind::WithdrawHoldTo {
                account,
                timeout_ms,
                ..
            } => {
                let shard = self.shard_or_first(account);
                // The id is fresh, so an entry left is a hold that outlived
                // its record (pending when the record went) and that some
                // shard still keeps: the lone ledger refuses the id.
                if self
                    .tables
                    .holds
                    .get(&command.id)
                    .is_some_and(|hold| hold.unresolved > 0)
                {
                    self.flush();
                }
                if self.tables.holds.contains_key(&command.id) {
                    self.push(
                        shard,
                        local(Elsewhere {
                            hold_id_taken: true,
                            ..Elsewhere::default()
                        }),
                    );
                    return (shard, Fact::None, None);
                }
                let expires_at = timestamp.saturating_add(timeout_ms.saturating_mul(1_000_000));
                self.tables.holds.insert(
                    command.id,
                    HoldEntry {
                        shard,
                        expires_at,
                        state: HoldKnown::Opening,
                        arrival,
                        unresolved: 1,
                    },
                );
                self.tables.hold_expiries.push(Reverse((expires_at, command.id)));
                self.push(shard, plain);
                (shard, Fact::HoldOpen(command.id), None)
            }
            CommandKind::WithdrawPost { hold } | CommandKind::WithdrawVoid { hold } => {
                let (shard, fact) = match self.tables.holds.get_mut(&hold) {
                    Some(entry) => {
                        entry.unresolved += 1;
                        (entry.shard, Fact::HoldFinish(hold, entry.arrival))
                    }
                    None => (0, Fact::None),
                };
                self.push(shard, plain);
                (shard, fact, None)
            }
            CommandKind::RegisterMerchantKey { merchant, key } => {
                let shard = self.shard_or_first(merchant);
                let mut taken = false;
                if key != MerchantKey::NONE {
                    if self.tables.keys.get(&key).is_some_and(|entry| !entry.resolved) {
                        self.flush();
                    }
                    match self.tables.keys.get(&key) {
                        Some(entry) => taken = entry.merchant != merchant,
                        None => {
                            self.tables.keys.insert(
                                key,
                                KeyEntry {
                                    merchant,
                                    resolved: false,
                                    arrival,
                                },
                            );
                        }
                    }
                }
                self.push(
                    shard,
                    local(Elsewhere {
                        merchant_key_taken: taken,
                        ..Elsewhere::default()
                    }),
                );
                (shard, Fact::Key(key), None)
            }
            CommandKind::IssuePaymentCode {
                customer,
                code,
                lifetime_ms,
            } => {
                let shard = self.shard_or_first(customer);
                if self
                    .remembered_code(code, timestamp)
                    .is_some_and(|entry| !entry.resolved)
                {
                    self.flush();
                }
                let taken = self.remembered_code(code, timestamp).is_some();
                if !taken {
                    let expires_at =
                        timestamp.saturating_add(lifetime_ms.saturating_mul(1_000_000));
                    let forget_at = expires_at.saturating_add(limits::PAYMENT_CODE_MEMORY_NS);
                    self.tables.codes.insert(
                        code,
                        CodeEntry {
                            customer,
                            shard,
                            forget_at,
                            resolved: false,
                            arrival,
                        },
                    );
                    self.tables.code_forgets.push(Reverse((forget_at, code)));
                }
                self.push(
                    shard,
                    local(Elsewhere {
                        payment_code_taken: taken,
                        ..Elsewhere::default()
                    }),
                );
                (shard, Fact::Code(code), None)
            }
            // Two parties, possibly on two shards.
            CommandKind::Transfer { from, to, .. } => {
                let parties = Parties::new(Some(from), Some(to));
                let home = self.route_pair(index, command, fingerprint, parties);
                (home, Fact::None, None)
            }
            CommandKind::PayMerchantQr {
                payer,
                keys,
                amount,
                fee,
                currency,
                ..
            } => {
                let merchant = loop {
                    let lookup = first_known_key(&keys, |key| self.tables.keys.get(key).copied());
                    match lookup {
                        Some(entry) if !entry.resolved => self.flush(),
                        Some(entry) => break Some(entry.merchant),
                        None => break None,
                    }
                    if self.failed {
                        break None;
                    }
                };
                let mut parties = Parties::new(Some(payer), merchant);
                // With one shard, that shard runs both halves and holds the
                // payer: it looks the payer's currency up itself, as a lone
                // ledger does (`Books::with_payer_currency`), and there is
                // no liquidity elsewhere; a directory probe here was a cache
                // miss per payment at millions of accounts.
                if self.shards > 1 {
                    parties.payer_currency = self.currency_of(payer);
                    if merchant.is_some() && parties.payer_currency.is_some_and(|c| c != currency)
                    {
                        // Cross-currency: the payer's shard draws on its part
                        // of the merchant currency's FX liquidity.
                        let payer_shard = self.shard_or_first(payer);
                        let draw = amount.saturating_add(fee);
                        parties.liquidity_elsewhere =
                            self.liquidity_elsewhere(currency, payer_shard, Some(draw));
                    }
                }
                let home = self.route_pair(index, command, fingerprint, parties);
                (home, Fact::None, merchant.map(|merchant| (merchant, payer)))
            }
            CommandKind::ChargePaymentCode { merchant, code, .. } => {
                let customer = self
                    .remembered_code(code, timestamp)
                    .map(|entry| entry.customer);
                let parties = Parties::new(customer, Some(merchant));
                let home = self.route_pair(index, command, fingerprint, parties);
                (
                    home,
                    Fact::None,
                    customer.map(|customer| (merchant, customer)),
                )
            }
            CommandKind::Refund {
                payment, currency, ..
            } => {
                let original = self
                    .tables
                    .records
                    .get(payment)
                    .and_then(|(_, record)| record.parties);
                // A refund of a cross-currency payment draws on the payer
                // currency's liquidity by a share the router does not know.
                // (With one shard no bound is kept: no look-up.)
                let payer_currency = original
                    .filter(|_| self.shards > 1)
                    .and_then(|(_, payer)| self.currency_of(payer));
                if let Some(payer_currency) = payer_currency.filter(|&other| other != currency) {
                    self.liquidity_unknown(payer_currency);
                }
                let parties = Parties::new(
                    original.map(|(merchant, _)| merchant),
                    original.map(|(_, payer)| payer),
                );
                let home = self.route_pair(index, command, fingerprint, parties);
                (home, Fact::None, None)
            }
            // Global settings: every shard keeps the rate table and floors.
            CommandKind::SetFxRate(_) | CommandKind::SetFxFloor { .. } => {
                let fact = match command.kind {
                    CommandKind::SetFxRate(set) => {
                        self.tables.rates_unlearned += 1;
                        Fact::Rate(set)
                    }
                    _ => Fact::None,
                };
                // The router's copy of the floors: `SetFxFloor` applies
                // whenever its fields are valid (no state decides it).
                if let CommandKind::SetFxFloor { currency, limit } = command.kind {
                    if currency.is_valid() && limit <= limits::AMOUNT_MAX {
                        if limit == 0 {
                            self.tables.fx_floors.remove(&currency);
                        } else {
                            self.tables.fx_floors.insert(currency, limit);
                        }
                    }
                }
                for shard in 0..self.shards as u32 {
                    self.push(
                        shard,
                        Step::Setting {
                            index,
                            command: *command,
                            report: shard == 0,
                        },
                    );
                }
                (0, fact, None)
            }
            // One owner's accounts and this shard's house parts.
            CommandKind::FxQuote { order, .. } => {
                let (shard, other_owner) = self.fx_shard(&order);
                let taken = self.remembered_quote(command.id).is_some();
                let fact = if taken {
                    Fact::None
                } else {
                    self.tables.quotes.insert(
                        command.id,
                        QuoteEntry {
                            shard,
                            forget_at: u64::MAX,
                            amounts: None,
                            resolved: false,
                            arrival,
                        },
                    );
                    Fact::Quote(command.id)
                };
                self.push(
                    shard,
                    local(Elsewhere {
                        fx_quote_taken: taken,
                        fx_other_owner: other_owner,
                        ..Elsewhere::default()
                    }),
                );
                (shard, fact, None)
            }
            CommandKind::FxConvertQuote { quote, from } => {
                // The quote's shard decides (not found, not yours, used...).
                let entry = self.remembered_quote(quote);
                let shard = match entry {
                    Some(entry) => entry.shard,
                    None => self.shard_or_first(from),
                };
                let elsewhere = match entry.and_then(|entry| entry.amounts) {
                    Some(amounts) => self.liquidity_elsewhere(
                        amounts.receive_currency,
                        shard,
                        Some(amounts.receive),
                    ),
                    None => 0,
                };
                self.push(
                    shard,
                    local(Elsewhere {
                        fx_liquidity_elsewhere: elsewhere,
                        ..Elsewhere::default()
                    }),
                );
                (shard, Fact::None, None)
            }
            CommandKind::FxConvert(order) => {
                let (shard, other_owner) = self.fx_shard(&order);
                // "Receive Y" draws Y; "pay X" at most what X buys at the
                // current rate, spread aside.
                let draw = match order.side {
                    FxSide::Receive => Some(order.amount),
                    FxSide::Pay => self.receive_bound(&order),
                };
                let elsewhere = match self.currency_of(order.to) {
                    Some(currency) if !other_owner => {
                        self.liquidity_elsewhere(currency, shard, draw)
                    }
                    _ => 0,
                };
                self.push(
                    shard,
                    local(Elsewhere {
                        fx_other_owner: other_owner,
                        fx_liquidity_elsewhere: elsewhere,
                        ..Elsewhere::default()
                    }),
                );
                (shard, Fact::None, None)
            }
        }
    }

    /// A result the router decides itself, for the batch being routed.
    fn set_result(&mut self, index: u32, status: Status) {
        self.set_result_with(index, CommandResult::new(status));
    }

    fn set_result_with(&mut self, index: u32, result: CommandResult) {
        if let Some(slot) = self
            .in_flight
            .back_mut()
            .and_then(|current| current.results.get_mut(index as usize))
        {
            *slot = Some(result);
        }
    }

    fn remembered_code(&self, code: u64, timestamp: u64) -> Option<CodeEntry> {
        self.tables
            .codes
            .get(&code)
            .copied()
            .filter(|entry| entry.forget_at > timestamp)
    }

    /// Routes a two-party command to the shards of its debit and credit
    /// accounts; returns its home (the credit side's shard, or the one shard).
    fn route_pair(
        &mut self,
        index: u32,
        command: &Command,
        fingerprint: u64,
        parties: Parties,
    ) -> u32 {
        if self.shards == 1 {
            // Both halves are on the one shard: no directory look-up.
            self.stats.pairs_local += 1;
            self.push(
                0,
                Step::Pair {
                    index,
                    command: *command,
                    fingerprint,
                    parties,
                    role: Role::Both,
                },
            );
            return 0;
        }
        let debit = parties.debit.and_then(|id| self.shard_of(id));
        let credit = parties.credit.and_then(|id| self.shard_of(id));
        let pair = |role| Step::Pair {
            index,
            command: *command,
            fingerprint,
            parties,
            role,
        };
        match (debit, credit) {
            (Some(debit), Some(credit)) if debit != credit => {
                self.stats.pairs_split += 1;
                self.push(debit, pair(Role::Debit { peer: credit }));
                self.push(credit, pair(Role::Credit { peer: debit }));
                credit
            }
            (Some(shard), _) | (None, Some(shard)) => {
                self.stats.pairs_local += 1;
                self.push(shard, pair(Role::Both));
                shard
            }
            (None, None) => {
                self.stats.pairs_local += 1;
                self.push(0, pair(Role::Both));
                0
            }
        }
    }

    pub(super) fn learn(&mut self, batch: &mut InFlight) {
        // Every fresh command's first status, by arrival: no hash look-up.
        for (offset, &index) in batch.fresh.iter().enumerate().skip(batch.learned) {
            if let Some(result) = batch.results.get(index as usize).copied().flatten() {
                self.tables
                    .records
                    .set_status(batch.first_arrival + offset as u64, result.status);
            }
        }
        batch.learned = batch.fresh.len();
        for routed in batch.routed.drain(..) {
            let (status, detail) = match batch.results.get(routed.index as usize).copied().flatten()
            {
                Some(result) => (result.status, result.detail),
                None => continue,
            };
            let ok = status == Status::Ok;
            match routed.fact {
                Fact::None => {}
                Fact::Key(key) => {
                    if let Some(entry) = self.tables.keys.get_mut(&key) {
                        if entry.arrival == routed.arrival && !entry.resolved {
                            if ok {
                                entry.resolved = true;
                            } else {
                                self.tables.keys.remove(&key);
                            }
                        }
                    }
                }
                Fact::HoldOpen(id) => {
                    if let Some(entry) = self.tables.holds.get_mut(&id) {
                        if entry.arrival == routed.arrival {
                            entry.unresolved = entry.unresolved.saturating_sub(1);
                            entry.state = if ok {
                                HoldKnown::Pending
                            } else {
                                HoldKnown::Failed
                            };
                        }
                    }
                }
                Fact::HoldFinish(id, arrival) => {
                    if let Some(entry) = self.tables.holds.get_mut(&id) {
                        if entry.arrival == arrival {
                            entry.unresolved = entry.unresolved.saturating_sub(1);
                            if ok {
                                entry.state = HoldKnown::Finished;
                            }
                        }
                    }
                }
                Fact::Rate(set) => {
                    self.tables.rates_unlearned = self.tables.rates_unlearned.saturating_sub(1);
                    if ok {
                        // A pair has one entry: setting B/A replaces A/B.
                        self.tables.fx_rates.remove(&(set.quote, set.base));
                        self.tables.fx_rates.insert((set.base, set.quote), set.mid);
                    }
                }
                Fact::Quote(id) => {
                    if let Some(entry) = self.tables.quotes.get_mut(&id) {
                        if entry.arrival == routed.arrival && !entry.resolved {
                            match detail {
                                Detail::FxConversion(amounts) if ok => {
                                    entry.resolved = true;
                                    entry.amounts = Some(amounts);
                                    entry.forget_at = amounts
                                        .expires_at
                                        .saturating_add(limits::FX_QUOTE_MEMORY_NS);
                                    self.tables
                                        .quote_forgets
                                        .push(Reverse((entry.forget_at, id)));
                                }
                                _ => {
                                    self.tables.quotes.remove(&id);
                                }
                            }
                        }
                    }
                }
                Fact::Code(code) => {
                    if let Some(entry) = self.tables.codes.get_mut(&code) {
                        if entry.arrival == routed.arrival && !entry.resolved {
                            if ok {
                                entry.resolved = true;
                            } else {
                                self.tables.codes.remove(&code);
                            }
                        }
                    }
                }
            }
        }
    }
}
