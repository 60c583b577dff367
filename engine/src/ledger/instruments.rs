//! The ledger's side of funding instruments (types and the card-number check
//! are in `crate::instrument`): the table, bind / verify / unbind, and the
//! check a top-up or a withdrawal hold makes of the instrument it names.
//!
//! The table is kept per customer (the owner id), so it lives on the
//! customer's shard like risk state, and a lone ledger and any number of
//! shards decide alike: every check reads only the customer's own entry.
//!
//! Bounds: at most `customer_instruments_max` instruments per customer are
//! bound at once (`too_many_instruments`); unbound ones are remembered so
//! that naming one says `instrument_unbound`, until a bind of the same
//! customer needs the place (the one unbound longest ago goes). The table
//! holds at most `instruments_max` instruments in all, unbound ones
//! included (`instruments_full`; per shard when sharded, like the account
//! table's bound).
//!
//! Risk state of the instrument rules (docs/risk.md) lives here too, with
//! the instruments: per instrument what was withdrawn to it
//! ([`InstrumentRisk`], in the funding check's entry, so a withdrawal's
//! check and its record touch one entry), per customer the times of the
//! newest binds ([`BindRing`]). Both are kept only under a policy with a
//! rule on, like the customers' risk state.
//!
//! Commands without an instrument (`Deposit`, `WithdrawHold`) are still
//! taken for customers who never bound one, so gateways that predate
//! instruments keep working; once a customer has bound any instrument (even
//! one since unbound) they are refused with `instrument_required`.

use crate::growing_map::GrowingMap;

use crate::command::CommandId;
use crate::command::{AccountKind, QueryReply};
use crate::currency::Currency;
use crate::history::MovementInstrument;
use crate::instrument::{InstrumentBind, InstrumentId, InstrumentState, InstrumentView};
use crate::ledger::{Account, Books};
use crate::risk::{BindRing, InstrumentFacts, InstrumentRisk};
use crate::status::Status;

/// One bound (or unbound, remembered) instrument of a customer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub struct Instrument {
    pub number: u32,
    pub kind: crate::instrument::InstrumentKind,
    pub token: crate::instrument::InstrumentToken,
    pub bank: crate::instrument::BankName,
    pub country: [u8; 2],
    pub last_four: [u8; 4],
    pub currency: Currency,
    pub state: InstrumentState,
    /// Command time (ns) of the bind.
    pub bound_at: u64,
    /// Command time (ns) of the last state change after the bind
    /// (verification reported, unbind); 0 before any.
    pub changed_at: u64,
}

impl Instrument {
    fn new(bind: &InstrumentBind, timestamp: u64) -> Instrument {
        Instrument {
            number: bind.number,
            kind: bind.kind,
            token: bind.token,
            bank: bind.bank,
            country: bind.country,
            last_four: bind.last_four,
            currency: bind.currency,
            state: InstrumentState::Unverified,
            bound_at: timestamp,
            changed_at: 0,
        }
    }

    /// Whether it counts against the customer's cap.
    pub fn is_bound(&self) -> bool {
        self.state != InstrumentState::Unbound
    }
}

/// What a top-up or a withdrawal reads of its instrument, and what the
/// instrument rules remember of it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Usable {
    pub state: InstrumentState,
    pub currency: Currency,
    pub bound_at: u64,
    pub risk: InstrumentRisk,
    /// What a movement shows of it besides its number (never changes
    /// after the bind), so that a top-up's or a withdrawal's history entry
    /// needs no second look-up in `by_id`.
    pub bank: crate::instrument::BankName,
    pub last_four: [u8; 4],
}

/// One kept instrument with its risk state, as [`Instruments::sorted`] lists
/// them and [`Instruments::insert`] takes them (checkpoints, splitting and
/// merging shards). What is per customer (bind times, the pending holds'
/// instruments) rides with the customer's first instrument in number
/// order, so moving every entry moves it too.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Kept {
    pub instrument: Instrument,
    pub risk: InstrumentRisk,
    pub binds: Option<BindRing>,
    /// The customer's pending withdrawal holds to an instrument, by hold id.
    pub holds: Vec<(CommandId, MovementInstrument)>,
}

impl From<Instrument> for Kept {
    fn from(instrument: Instrument) -> Kept {
        Kept {
            instrument,
            risk: InstrumentRisk::default(),
            binds: None,
            holds: Vec::new(),
        }
    }
}

/// Every customer's instruments: the whole records by id, each customer's
/// numbers in order (for binds and lists, which are rare), and apart what a
/// top-up or a withdrawal checks and the instrument rules update (state,
/// currency, bind time, withdrawn), so that its probe touches one entry.
#[derive(Debug, Default, Clone)]
pub(crate) struct Instruments {
    by_id: GrowingMap<InstrumentId, Instrument>,
    usable: GrowingMap<InstrumentId, Usable>,
    /// Per owner, the numbers of the instruments kept, ascending.
    numbers: GrowingMap<u64, Vec<u32>>,
    /// Per owner who bound under a policy, the newest binds' times.
    binds: GrowingMap<u64, BindRing>,
    /// Per pending withdrawal hold to an instrument: its customer (owner)
    /// and what the posted movement shows of the instrument, taken when
    /// the hold was made (the instrument may be unbound and forgotten by
    /// the time the hold is posted). Bounded by the pending holds.
    holds: GrowingMap<CommandId, (u64, MovementInstrument)>,
}

impl Instruments {
    pub(crate) fn get(&self, id: InstrumentId) -> Option<&Instrument> {
        self.by_id.get(&id)
    }

    /// The state and currency of an instrument (what funding checks).
    fn usable(&self, id: InstrumentId) -> Option<(InstrumentState, Currency)> {
        self.usable
            .get(&id)
            .map(|usable| (usable.state, usable.currency))
    }

    /// What a movement shows of an instrument (None if it is not kept).
    pub(crate) fn shown(&self, id: InstrumentId) -> Option<MovementInstrument> {
        // From the funding check's entry, which the command has just read
        // (`by_id` holds the same instruments).
        self.usable.get(&id).map(|usable| MovementInstrument {
            number: id.number,
            bank: usable.bank,
            last_four: usable.last_four,
        })
    }

    /// A withdrawal hold `hold` to `instrument` was made: its posting will
    /// show the instrument as it is now.
    pub(crate) fn hold_to(&mut self, hold: CommandId, instrument: InstrumentId) {
        if let Some(shown) = self.shown(instrument) {
            self.holds.insert(hold, (instrument.owner, shown));
        }
    }

    /// A hold ended (posted, voided, expired): what its posting shows of its
    /// instrument, if it named one.
    pub(crate) fn end_hold(&mut self, hold: CommandId) -> Option<MovementInstrument> {
        if self.holds.is_empty() {
            return None;
        }
        self.holds.remove(&hold).map(|(_, shown)| shown)
    }

    /// Puts back a pending hold's instrument read from a checkpoint: false
    /// if the customer has no instrument or the hold is there already.
    pub(crate) fn set_hold(
        &mut self,
        hold: CommandId,
        owner: u64,
        shown: MovementInstrument,
    ) -> bool {
        if !self.numbers.contains_key(&owner) || self.holds.contains_key(&hold) {
            return false;
        }
        self.holds.insert(hold, (owner, shown));
        true
    }

    /// Remembers a withdrawal hold to `id` that committed (instrument rules).
    pub(crate) fn record_withdrawal(&mut self, id: InstrumentId, amount: u64, timestamp: u64) {
        if let Some(usable) = self.usable.get_mut(&id) {
            usable.risk.record(amount, timestamp);
        }
    }

    /// A customer's newest binds (empty if none under a policy).
    pub(crate) fn binds(&self, owner: u64) -> BindRing {
        self.binds.get(&owner).copied().unwrap_or_default()
    }

    /// Puts back an instrument's risk state read from a checkpoint: false if
    /// the instrument is not kept or already has some.
    pub(crate) fn set_risk(&mut self, id: InstrumentId, risk: InstrumentRisk) -> bool {
        match self.usable.get_mut(&id) {
            Some(usable) if usable.risk.is_empty() && !risk.is_empty() => {
                usable.risk = risk;
                true
            }
            _ => false,
        }
    }

    /// Puts back a customer's bind times read from a checkpoint: false if
    /// the customer has no instrument or already has them.
    pub(crate) fn set_binds(&mut self, owner: u64, binds: BindRing) -> bool {
        if binds.is_empty() || !self.numbers.contains_key(&owner) || self.binds.contains_key(&owner)
        {
            return false;
        }
        self.binds.insert(owner, binds);
        true
    }

    /// Moves an instrument to `state` at `timestamp` (it exists).
    fn set_state(&mut self, id: InstrumentId, state: InstrumentState, timestamp: u64) {
        if let Some(instrument) = self.by_id.get_mut(&id) {
            instrument.state = state;
            instrument.changed_at = timestamp;
        }
        if let Some(usable) = self.usable.get_mut(&id) {
            usable.state = state;
        }
    }

    /// Instruments kept, unbound ones included.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether the customer has ever bound an instrument that is still
    /// remembered (then commands must name one).
    pub(crate) fn has_any(&self, owner: u64) -> bool {
        !self.numbers.is_empty() && self.numbers.contains_key(&owner)
    }

    /// The customer's instruments, in number order.
    pub(crate) fn of_owner(&self, owner: u64) -> impl Iterator<Item = &Instrument> + '_ {
        self.numbers
            .get(&owner)
            .map_or(&[][..], Vec::as_slice)
            .iter()
            .filter_map(move |&number| self.by_id.get(&InstrumentId { owner, number }))
    }

    /// Every (owner, instrument with its risk state), sorted by owner then
    /// number; each owner's bind times with the owner's first.
    pub(crate) fn sorted(&self) -> Vec<(u64, Kept)> {
        let mut all: Vec<(u64, Kept)> = self
            .by_id
            .iter()
            .map(|(id, instrument)| {
                let risk = self.usable.get(id).map(|usable| usable.risk);
                let kept = Kept {
                    instrument: *instrument,
                    risk: risk.unwrap_or_default(),
                    binds: None,
                    holds: Vec::new(),
                };
                (id.owner, kept)
            })
            .collect();
        all.sort_unstable_by_key(|(owner, kept)| (*owner, kept.instrument.number));
        let mut holds: std::collections::BTreeMap<u64, Vec<(CommandId, MovementInstrument)>> =
            std::collections::BTreeMap::new();
        for (hold, (owner, shown)) in &self.holds {
            holds.entry(*owner).or_default().push((*hold, *shown));
        }
        let mut previous = None;
        for (owner, kept) in &mut all {
            if previous != Some(*owner) {
                kept.binds = self.binds.get(owner).copied();
                if let Some(mut owned) = holds.remove(owner) {
                    owned.sort_unstable_by_key(|(hold, _)| *hold);
                    kept.holds = owned;
                }
                previous = Some(*owner);
            }
        }
        debug_assert!(holds.is_empty(), "a hold's customer has an instrument");
        all
    }

    /// Adds one instrument (and its owner's bind times, if the entry carries
    /// them). False if the customer already has that number.
    pub(crate) fn insert(&mut self, owner: u64, kept: impl Into<Kept>) -> bool {
        let Kept {
            instrument,
            risk,
            binds,
            holds,
        } = kept.into();
        let id = InstrumentId {
            owner,
            number: instrument.number,
        };
        if self.by_id.contains_key(&id) {
            return false;
        }
        let numbers = self.numbers.entry(owner).or_default();
        if let Err(position) = numbers.binary_search(&instrument.number) {
            numbers.insert(position, instrument.number);
        }
        self.usable.insert(
            id,
            Usable {
                state: instrument.state,
                currency: instrument.currency,
                bound_at: instrument.bound_at,
                risk,
                bank: instrument.bank,
                last_four: instrument.last_four,
            },
        );
        self.by_id.insert(id, instrument);
        if let Some(binds) = binds.filter(|binds| !binds.is_empty()) {
            self.binds.insert(owner, binds);
        }
        for (hold, shown) in holds {
            self.holds.insert(hold, (owner, shown));
        }
        true
    }

    /// Forgets one instrument (its customer keeps having bound one: the
    /// owner's entry stays, possibly empty).
    fn remove(&mut self, id: InstrumentId) {
        self.by_id.remove(&id);
        self.usable.remove(&id);
        if let Some(numbers) = self.numbers.get_mut(&id.owner) {
            numbers.retain(|&number| number != id.number);
        }
    }

    /// Prefetches the instrument a command names (see `Ledger::warm_ahead`).
    #[inline]
    pub(crate) fn warm(&self, id: InstrumentId) {
        if let Some(usable) = self.usable.get(&id) {
            crate::prefetch::prefetch(usable, usize::MAX);
        }
    }

    /// Every instrument and the state kept beside it, each part in the
    /// order the digest and the checkpoint give it. The keys are sorted, not
    /// the instruments (24 bytes an entry, where [`Instruments::sorted`]
    /// copies each instrument with its risk state and bind times).
    pub(crate) fn in_order(&self) -> InstrumentsInOrder<'_> {
        let mut all: Vec<(InstrumentId, &Instrument)> = self
            .by_id
            .iter()
            .map(|(id, instrument)| (*id, instrument))
            .collect();
        all.sort_unstable_by_key(|(id, instrument)| (id.owner, instrument.number));
        let mut withdrawn = Vec::new();
        let mut binds = Vec::new();
        let mut previous = None;
        for (id, instrument) in &all {
            if let Some(usable) = self.usable.get(id) {
                if !usable.risk.is_empty() {
                    withdrawn.push((id.owner, instrument.number, usable.risk));
                }
            }
            // Each owner's bind times go with the owner's first instrument.
            if previous != Some(id.owner) {
                previous = Some(id.owner);
                if let Some(ring) = self.binds.get(&id.owner) {
                    binds.push((id.owner, ring));
                }
            }
        }
        let mut holds: Vec<(u64, CommandId, &MovementInstrument)> = self
            .holds
            .iter()
            .filter(|(_, (owner, _))| all.binary_search_by_key(owner, |(id, _)| id.owner).is_ok())
            .map(|(hold, (owner, shown))| (*owner, *hold, shown))
            .collect();
        holds.sort_unstable_by_key(|(owner, hold, _)| (*owner, *hold));
        InstrumentsInOrder {
            all,
            withdrawn,
            binds,
            holds,
        }
    }

    /// The digest's part: every instrument in (owner, number) order, the
    /// pending holds' instruments (only when there is any, so a state
    /// without them digests as before they existed) by owner then hold id,
    /// then (only when there is any, so a state without it digests as
    /// before the instrument rules) the instrument rules' state: the
    /// instruments with withdrawals recorded and their figures, and the
    /// customers' bind times, in (owner, number) and owner order.
    pub(crate) fn digest_into(&self, hasher: &mut crate::digest::DigestHasher) {
        hasher.update(b"instruments");
        let in_order = self.in_order();
        hasher.update(&(in_order.all.len() as u64).to_le_bytes());
        // Sorted from a hash map: fetched some entries ahead (perf at 1M
        // accounts: the cache misses were most of this).
        const AHEAD: usize = 16;
        for at in 0..in_order.all.len() {
            if let Some((_, ahead)) = in_order.all.get(at + AHEAD) {
                crate::prefetch::prefetch(*ahead, usize::MAX);
            }
            let (id, instrument) = &in_order.all[at];
            // In one update (`digest::Fields`).
            crate::digest::Fields::<{ 8 + 4 + 2 + 32 + 16 + 2 + 4 + 2 + 8 + 8 }>::new()
                .put(&id.owner.to_le_bytes())
                .put(&instrument.number.to_le_bytes())
                .put(&[instrument.kind as u8, instrument.state as u8])
                .put(&instrument.token.0)
                .put(&instrument.bank.0)
                .put(&instrument.country)
                .put(&instrument.last_four)
                .put(&instrument.currency.numeric().to_le_bytes())
                .put(&instrument.bound_at.to_le_bytes())
                .put(&instrument.changed_at.to_le_bytes())
                .hash_into(hasher);
        }
        if !self.holds.is_empty() {
            hasher.update(b"instrument-holds");
            hasher.update(&(self.holds.len() as u64).to_le_bytes());
            let mut bytes = Vec::with_capacity(crate::history::MOVEMENT_INSTRUMENT_BYTES);
            for (owner, hold, shown) in &in_order.holds {
                hasher.update(&owner.to_le_bytes());
                hasher.update(&hold.0.to_le_bytes());
                bytes.clear();
                shown.encode(&mut bytes);
                hasher.update(&bytes);
            }
        }
        if in_order.withdrawn.is_empty() && in_order.binds.is_empty() {
            return;
        }
        hasher.update(b"instrument-risk");
        hasher.update(&(in_order.withdrawn.len() as u64).to_le_bytes());
        for (owner, number, risk) in &in_order.withdrawn {
            hasher.update(&owner.to_le_bytes());
            hasher.update(&number.to_le_bytes());
            risk.digest_into(hasher);
        }
        hasher.update(&(in_order.binds.len() as u64).to_le_bytes());
        for (owner, ring) in &in_order.binds {
            hasher.update(&owner.to_le_bytes());
            ring.digest_into(hasher);
        }
    }
}

/// [`Instruments::in_order`]: the instruments and what is kept beside them,
/// each part sorted.
pub(crate) struct InstrumentsInOrder<'a> {
    /// Every instrument, by owner then number.
    pub all: Vec<(InstrumentId, &'a Instrument)>,
    /// The instruments with withdrawals recorded, as (owner, number, risk
    /// state), in the same order.
    pub withdrawn: Vec<(u64, u32, InstrumentRisk)>,
    /// The bind times of the owners with an instrument, by owner.
    pub binds: Vec<(u64, &'a BindRing)>,
    /// The pending holds' instruments of the owners with an instrument, as
    /// (owner, hold, what the posting shows), by owner then hold.
    pub holds: Vec<(u64, CommandId, &'a MovementInstrument)>,
}

impl Books {
    /// `BindInstrument`.
    pub(crate) fn bind_instrument(
        &mut self,
        command: CommandId,
        bind: &InstrumentBind,
        timestamp: u64,
    ) -> Result<(), Status> {
        bind.check()?;
        let slot = self.user_slot(bind.customer, Status::UnknownAccount)?;
        let account = self.account(slot);
        if account.kind != AccountKind::Customer {
            return Err(Status::NotACustomer);
        }
        account.check_movable()?;
        let owner = account.owner;
        let kyc_tier = account.kyc_tier;
        let cap = usize::from(self.caps.instruments);
        let id = InstrumentId {
            owner,
            number: bind.number,
        };
        if self.instruments.get(id).is_some() {
            return Err(Status::InstrumentExists);
        }
        let mut kept = 0usize;
        let mut bound = 0usize;
        // The unbound one that gives its place when the customer's list is
        // at the cap: the one unbound longest ago (then the lowest number).
        let mut oldest_unbound: Option<(u64, u32)> = None;
        for known in self.instruments.of_owner(owner) {
            kept += 1;
            if known.is_bound() {
                bound += 1;
            } else if oldest_unbound.is_none_or(|oldest| (known.changed_at, known.number) < oldest)
            {
                oldest_unbound = Some((known.changed_at, known.number));
            }
        }
        if bound >= cap {
            return Err(Status::TooManyInstruments);
        }
        let replace = if kept >= cap {
            oldest_unbound.map(|(_, number)| InstrumentId { owner, number })
        } else {
            None
        };
        if replace.is_none() && self.instruments.len() >= self.caps.instruments_total {
            return Err(Status::InstrumentsFull);
        }
        let binds = self.instruments.binds(owner);
        let gate = match self
            .risk
            .evaluate_bind(timestamp, owner, kyc_tier, bind.currency, &binds)
        {
            Ok(gate) => gate,
            Err(refusal) => {
                self.risk_refuse(command, slot, &super::risk_gate::RiskStop::Refused(refusal));
                return Err(refusal.status);
            }
        };
        // Point of no return.
        if let Some(replaced) = replace {
            self.instruments.remove(replaced);
        }
        let inserted = self
            .instruments
            .insert(owner, Instrument::new(bind, timestamp));
        debug_assert!(inserted);
        if let Some(gate) = gate {
            let mut binds = binds;
            binds.record(timestamp);
            self.instruments.binds.insert(owner, binds);
            self.detail = self.risk.commit_bind(command, &gate);
        }
        Ok(())
    }

    /// `VerifyInstrument`.
    pub(crate) fn verify_instrument(
        &mut self,
        id: InstrumentId,
        passed: bool,
        timestamp: u64,
    ) -> Result<(), Status> {
        let (state, _) = self
            .instruments
            .usable(id)
            .ok_or(Status::UnknownInstrument)?;
        match state {
            InstrumentState::Unverified | InstrumentState::Failed => {}
            InstrumentState::Verified => return Err(Status::InstrumentAlreadyVerified),
            InstrumentState::Unbound => return Err(Status::InstrumentUnbound),
        }
        // Point of no return.
        let state = if passed {
            InstrumentState::Verified
        } else {
            InstrumentState::Failed
        };
        self.instruments.set_state(id, state, timestamp);
        Ok(())
    }

    /// `UnbindInstrument`. Holds already made to it go on: the money was
    /// on its way when the customer unbound it.
    pub(crate) fn unbind_instrument(
        &mut self,
        id: InstrumentId,
        timestamp: u64,
    ) -> Result<(), Status> {
        let (state, _) = self
            .instruments
            .usable(id)
            .ok_or(Status::UnknownInstrument)?;
        if state == InstrumentState::Unbound {
            return Err(Status::InstrumentUnbound);
        }
        // Point of no return.
        self.instruments
            .set_state(id, InstrumentState::Unbound, timestamp);
        Ok(())
    }

    /// The check of a top-up (`withdrawal_currency` None) or a withdrawal
    /// hold (the account's currency) of `account`: with an instrument, a
    /// verified one of the account's customer (and of that currency for a
    /// withdrawal); without one, allowed unless the customer has bound any.
    /// Ok: what the instrument rules see of the instrument named, if any.
    pub(crate) fn check_funding(
        &self,
        account: &Account,
        instrument: Option<InstrumentId>,
        withdrawal_currency: Option<Currency>,
    ) -> Result<Option<InstrumentFacts>, Status> {
        let Some(id) = instrument else {
            if account.kind == AccountKind::Customer && self.instruments.has_any(account.owner) {
                return Err(Status::InstrumentRequired);
            }
            return Ok(None);
        };
        if account.kind != AccountKind::Customer {
            return Err(Status::NotACustomer);
        }
        if id.owner != account.owner {
            return Err(Status::InstrumentNotYours);
        }
        let usable = self
            .instruments
            .usable
            .get(&id)
            .ok_or(Status::UnknownInstrument)?;
        match usable.state {
            InstrumentState::Verified => {}
            InstrumentState::Unverified | InstrumentState::Failed => {
                return Err(Status::InstrumentUnverified)
            }
            InstrumentState::Unbound => return Err(Status::InstrumentUnbound),
        }
        if withdrawal_currency.is_some_and(|wanted| wanted != usable.currency) {
            return Err(Status::InstrumentCurrencyMismatch);
        }
        Ok(Some(InstrumentFacts {
            bound_at: usable.bound_at,
            risk: usable.risk,
        }))
    }

    /// `Query::Instrument`: the `index`-th instrument (in number order) of
    /// the customer holding `account`.
    pub(crate) fn instrument_view(&self, account: &Account, index: u8) -> QueryReply {
        if account.kind != AccountKind::Customer {
            return QueryReply::Refused(Status::NotACustomer);
        }
        let owner = account.owner;
        let total = self.instruments.of_owner(owner).count();
        match self.instruments.of_owner(owner).nth(usize::from(index)) {
            Some(instrument) => QueryReply::Instrument(InstrumentView {
                instrument: InstrumentId {
                    owner,
                    number: instrument.number,
                },
                kind: instrument.kind,
                token: instrument.token,
                bank: instrument.bank,
                country: instrument.country,
                last_four: instrument.last_four,
                currency: instrument.currency,
                state: instrument.state,
                bound_at: instrument.bound_at,
                changed_at: instrument.changed_at,
                instruments_total: total.min(usize::from(u8::MAX)) as u8,
            }),
            None => QueryReply::Refused(Status::UnknownInstrument),
        }
    }
}
