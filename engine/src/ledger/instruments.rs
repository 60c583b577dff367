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
//! Commands without an instrument (`Deposit`, `WithdrawHold`) are still
//! taken for customers who never bound one, so gateways that predate
//! instruments keep working; once a customer has bound any instrument (even
//! one since unbound) they are refused with `instrument_required`.

use rustc_hash::FxHashMap;

use crate::command::{AccountKind, QueryReply};
use crate::currency::Currency;
use crate::instrument::{InstrumentBind, InstrumentId, InstrumentState, InstrumentView};
use crate::ledger::{Account, Books};
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

/// Every customer's instruments.
#[derive(Debug, Default, Clone)]
pub(crate) struct Instruments {
    /// Per owner, sorted by number; never more than the per-customer cap
    /// plus nothing: bound ones are at most the cap and unbound ones are
    /// replaced once the list is at the cap.
    pub(crate) by_owner: FxHashMap<u64, Vec<Instrument>>,
    /// Instruments in all the lists.
    pub(crate) len: usize,
}

impl Instruments {
    pub(crate) fn get(&self, id: InstrumentId) -> Option<&Instrument> {
        let list = self.by_owner.get(&id.owner)?;
        list.iter()
            .find(|instrument| instrument.number == id.number)
    }

    fn get_mut(&mut self, id: InstrumentId) -> Option<&mut Instrument> {
        let list = self.by_owner.get_mut(&id.owner)?;
        list.iter_mut()
            .find(|instrument| instrument.number == id.number)
    }

    /// Whether the customer has ever bound an instrument that is still
    /// remembered (then commands must name one).
    pub(crate) fn has_any(&self, owner: u64) -> bool {
        !self.by_owner.is_empty() && self.by_owner.contains_key(&owner)
    }

    /// Every (owner, instrument), sorted by owner then number.
    pub(crate) fn sorted(&self) -> Vec<(u64, Instrument)> {
        let mut all: Vec<(u64, Instrument)> = self
            .by_owner
            .iter()
            .flat_map(|(owner, list)| list.iter().map(move |instrument| (*owner, *instrument)))
            .collect();
        all.sort_unstable_by_key(|(owner, instrument)| (*owner, instrument.number));
        all
    }

    /// Adds one decoded or split instrument (kept sorted by number). False
    /// if the customer already has that number.
    pub(crate) fn insert(&mut self, owner: u64, instrument: Instrument) -> bool {
        let list = self.by_owner.entry(owner).or_default();
        match list.binary_search_by_key(&instrument.number, |known| known.number) {
            Ok(_) => false,
            Err(position) => {
                list.insert(position, instrument);
                self.len += 1;
                true
            }
        }
    }

    /// The digest's part: every instrument in (owner, number) order.
    pub(crate) fn digest_into(&self, hasher: &mut blake3::Hasher) {
        hasher.update(b"instruments");
        let all = self.sorted();
        hasher.update(&(all.len() as u64).to_le_bytes());
        for (owner, instrument) in &all {
            hasher.update(&owner.to_le_bytes());
            hasher.update(&instrument.number.to_le_bytes());
            hasher.update(&[instrument.kind as u8, instrument.state as u8]);
            hasher.update(&instrument.token.0);
            hasher.update(&instrument.bank.0);
            hasher.update(&instrument.country);
            hasher.update(&instrument.last_four);
            hasher.update(&instrument.currency.numeric().to_le_bytes());
            hasher.update(&instrument.bound_at.to_le_bytes());
            hasher.update(&instrument.changed_at.to_le_bytes());
        }
    }
}

impl Books {
    /// `BindInstrument`.
    pub(crate) fn bind_instrument(
        &mut self,
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
        let cap = usize::from(self.caps.instruments);
        let mut replace: Option<usize> = None;
        if let Some(list) = self.instruments.by_owner.get(&owner) {
            if list.iter().any(|known| known.number == bind.number) {
                return Err(Status::InstrumentExists);
            }
            if list.iter().filter(|known| known.is_bound()).count() >= cap {
                return Err(Status::TooManyInstruments);
            }
            if list.len() >= cap {
                // The list is at the cap with fewer bound: an unbound one
                // gives its place, the one unbound longest ago (then the
                // lowest number).
                replace = list
                    .iter()
                    .enumerate()
                    .filter(|(_, known)| !known.is_bound())
                    .min_by_key(|(_, known)| (known.changed_at, known.number))
                    .map(|(position, _)| position);
            }
        }
        if replace.is_none() && self.instruments.len >= self.caps.instruments_total {
            return Err(Status::InstrumentsFull);
        }
        // Point of no return.
        let instrument = Instrument::new(bind, timestamp);
        if let Some(position) = replace {
            if let Some(list) = self.instruments.by_owner.get_mut(&owner) {
                list.remove(position);
                self.instruments.len -= 1;
            }
        }
        let inserted = self.instruments.insert(owner, instrument);
        debug_assert!(inserted);
        Ok(())
    }

    /// `VerifyInstrument`.
    pub(crate) fn verify_instrument(
        &mut self,
        id: InstrumentId,
        passed: bool,
        timestamp: u64,
    ) -> Result<(), Status> {
        let instrument = self
            .instruments
            .get_mut(id)
            .ok_or(Status::UnknownInstrument)?;
        match instrument.state {
            InstrumentState::Unverified | InstrumentState::Failed => {}
            InstrumentState::Verified => return Err(Status::InstrumentAlreadyVerified),
            InstrumentState::Unbound => return Err(Status::InstrumentUnbound),
        }
        // Point of no return.
        instrument.state = if passed {
            InstrumentState::Verified
        } else {
            InstrumentState::Failed
        };
        instrument.changed_at = timestamp;
        Ok(())
    }

    /// `UnbindInstrument`. Holds already made to it go on: the money was
    /// on its way when the customer unbound it.
    pub(crate) fn unbind_instrument(
        &mut self,
        id: InstrumentId,
        timestamp: u64,
    ) -> Result<(), Status> {
        let instrument = self
            .instruments
            .get_mut(id)
            .ok_or(Status::UnknownInstrument)?;
        if instrument.state == InstrumentState::Unbound {
            return Err(Status::InstrumentUnbound);
        }
        // Point of no return.
        instrument.state = InstrumentState::Unbound;
        instrument.changed_at = timestamp;
        Ok(())
    }

    /// The check of a top-up (`withdrawal_currency` None) or a withdrawal
    /// hold (the account's currency) of `account`: with an instrument, a
    /// verified one of the account's customer (and of that currency for a
    /// withdrawal); without one, allowed unless the customer has bound any.
    pub(crate) fn check_funding(
        &self,
        account: &Account,
        instrument: Option<InstrumentId>,
        withdrawal_currency: Option<Currency>,
    ) -> Result<(), Status> {
        let Some(id) = instrument else {
            if account.kind == AccountKind::Customer && self.instruments.has_any(account.owner) {
                return Err(Status::InstrumentRequired);
            }
            return Ok(());
        };
        if account.kind != AccountKind::Customer {
            return Err(Status::NotACustomer);
        }
        if id.owner != account.owner {
            return Err(Status::InstrumentNotYours);
        }
        let instrument = self.instruments.get(id).ok_or(Status::UnknownInstrument)?;
        match instrument.state {
            InstrumentState::Verified => {}
            InstrumentState::Unverified | InstrumentState::Failed => {
                return Err(Status::InstrumentUnverified)
            }
            InstrumentState::Unbound => return Err(Status::InstrumentUnbound),
        }
        if withdrawal_currency.is_some_and(|currency| currency != instrument.currency) {
            return Err(Status::InstrumentCurrencyMismatch);
        }
        Ok(())
    }

    /// `Query::Instrument`: the `index`-th instrument (in number order) of
    /// the customer holding `account`.
    pub(crate) fn instrument_view(&self, account: &Account, index: u8) -> QueryReply {
        if account.kind != AccountKind::Customer {
            return QueryReply::Refused(Status::NotACustomer);
        }
        let list = self
            .instruments
            .by_owner
            .get(&account.owner)
            .map_or(&[][..], Vec::as_slice);
        match list.get(usize::from(index)) {
            Some(instrument) => QueryReply::Instrument(InstrumentView {
                instrument: InstrumentId {
                    owner: account.owner,
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
                instruments_total: list.len().min(usize::from(u8::MAX)) as u8,
            }),
            None => QueryReply::Refused(Status::UnknownInstrument),
        }
    }
}
