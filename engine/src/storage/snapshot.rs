//! Ledger state to bytes and back, for checkpoints.
//!
//! Layout (integers little-endian; each item is bincode with fixed-width
//! integers, so every item of a fixed-width section has the same size; the
//! largest sections are written and read field by field with the same
//! bytes, see `snapshot/fixed.rs` and `BudgetState::encode_checkpoint`):
//!
//! ```text
//! magic           8  b"prstate\0"
//! version         4  u32 = 7
//! sequence        8  u64, last batch applied
//! timestamp       8  u64
//! accounts        8  count u64, then accounts in slot order            (56 bytes each)
//! holds           8  count u64, then holds sorted by id                (44 bytes each)
//! hold expiries   8  count u64, then (expires_at, hold id) sorted      (24 bytes each)
//! merchant keys   8  count u64, then (key, merchant slot) sorted       (20 bytes each)
//! payment codes   8  count u64, then codes sorted by code              (24 bytes each)
//! code expiries   8  count u64, then (time, code) sorted               (16 bytes each)
//! payments        8  count u64, then payments sorted by command id     (50 bytes each)
//! records         8  count u64, then (command id, record) in arrival order (34 bytes each)
//! risk policy     8  byte length u64, then the policy in force (bincode)       (version 2)
//! risk customers  8  count u64, then (owner u64, CustomerRiskState) by owner   (version 2)
//! risk audit      8  count u64, then (owner u64, AuditRing) by owner           (version 2)
//! budgets         8  count u64, then (account id, BudgetState) by account      (version 2)
//! fx rates        8  count u64, then rates sorted by pair              (39 bytes each)   (version 3)
//! fx floors       8  count u64, then (currency, limit) sorted          (10 bytes each)   (version 3)
//! fx quotes       8  count u64, then quotes sorted by id               (74 bytes each)   (version 3)
//! quote expiries  8  count u64, then (time, quote id) sorted           (24 bytes each)   (version 3)
//! fx payments     8  count u64, then (payment id, legs) sorted         (64 bytes each)   (version 3)
//! instruments     8  count u64, then (owner, Instrument) by owner, number (92 bytes each)   (version 4)
//! instrument risk 8  count u64, then (owner u64, number u32, InstrumentRisk) by owner, number (32 bytes each)   (version 5)
//! bind times      8  count u64, then (owner u64, BindRing) by owner            (138 bytes each)   (version 5)
//! hold instruments 8 count u64, then (hold id, owner u64, MovementInstrument) by owner, hold id (48 bytes each)   (version 6)
//! config         29  the LedgerConfig the state was made with: idempotency window ns u64,
//!                    records max u64, holds pending max u16, payment codes live max u8,
//!                    FX quotes open max u8, instruments per customer max u8,
//!                    instruments max u64                                                   (version 7)
//! ```
//!
//! Version 1 (before the risk engine) is still read: it ends after the
//! records, and loads with the disabled policy and no risk state or budgets.
//! Version 2 (before FX) is still read too: it ends after the budgets, and
//! loads with no rates, floors, quotes or FX legs. Version 3 (before funding
//! instruments) is still read: it ends after the FX payments, and loads with
//! no instruments. Version 4 (before the instrument rules) is still read: it
//! ends after the instruments, and loads with no instrument risk state.
//! Version 5 (before the pending holds' instruments) is still read: it ends
//! after the bind times, and loads with no instrument for pending holds (a
//! hold made before the upgrade shows none when posted).
//! Version 6 (before the stored config) is still read: it ends after the
//! pending holds' instruments, and says nothing of the config it was made
//! with.
//!
//! The `LedgerConfig` is passed in and used; the one stored (version 7) is
//! only returned by [`decode_state_and_config`], for recovery to compare
//! (the values decide commands: a replay must use the ones the log was
//! written with).
//! The id-to-slot index is rebuilt. The two expiry queues are stored as they
//! are (not rebuilt from the holds and codes) because they also hold entries
//! for holds and codes that finished early, and those entries still act when
//! they surface.
//!
//! Encoding is deterministic (equal states give equal bytes). Decoding
//! treats the bytes as untrusted input: counts are checked against the bytes
//! present before anything is allocated, ids must be unique, slots in range,
//! every account's pending amounts and live payment codes must match its
//! holds and codes, and no payment may be refunded beyond its amount, so that
//! a decoded ledger can never trip an assertion or an overflow in
//! `Ledger::apply`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::growing_map::GrowingMap;
use rustc_hash::FxHashSet;

use crate::budget::{BudgetState, BUDGET_STATE_BYTES_MAX};
use crate::command::{AccountId, AccountKind, CommandId, Detail, MerchantKey};
use crate::currency::Currency;
use crate::digest::id_key;
use crate::fx::{FxPaymentLegs, FxQuoteRecord, FxQuoteState, FxRate, FxState};
use crate::history::MovementInstrument;
use crate::instrument::InstrumentId;
use crate::ledger::{
    Account, Books, Hold, HoldState, IdempotencyRecord, Instruments, Kept, Ledger, LedgerConfig,
    OwnerCaps, Payment, PaymentCode, PaymentCodeState, Records, RecordsInOrder,
};
use crate::limits;
use crate::risk::bounds::POLICY_ENCODED_BYTES_MAX;
use crate::risk::policy::canonical_config;
use crate::risk::{AuditRing, BindRing, CustomerRiskState, InstrumentRisk, RiskBooks, RiskPolicy};
use crate::storage::record::{decode_value, encode_value};
use crate::storage::StorageError;

mod fixed;

const STATE_MAGIC: [u8; 8] = *b"prstate\0";
const STATE_VERSION: u32 = 7;
/// The version before the stored config, still read.
const STATE_VERSION_NO_CONFIG: u32 = 6;
/// Bytes of the config section (version 7).
const CONFIG_BYTES: usize = 8 + 8 + 2 + 1 + 1 + 1 + 8;
/// The version before the risk sections, still read.
const STATE_VERSION_NO_RISK: u32 = 1;
/// The version before the FX sections, still read.
const STATE_VERSION_NO_FX: u32 = 2;
/// The version before the instruments section, still read.
const STATE_VERSION_NO_INSTRUMENTS: u32 = 3;
/// The version before the instrument rules' sections, still read.
const STATE_VERSION_NO_INSTRUMENT_RISK: u32 = 4;
/// The version before the pending holds' instruments, still read.
const STATE_VERSION_NO_HOLD_INSTRUMENTS: u32 = 5;

/// Encoded sizes of one item of each section (checked by a test).
const ACCOUNT_BYTES: usize = 56;
const HOLD_BYTES: usize = 44;
const EXPIRY_BYTES: usize = 24;
const RECORD_BYTES: usize = 34;
const MERCHANT_KEY_BYTES: usize = 20;
const PAYMENT_CODE_BYTES: usize = 24;
const CODE_EXPIRY_BYTES: usize = 16;
const PAYMENT_BYTES: usize = 50;
const FX_RATE_BYTES: usize = 39;
const FX_FLOOR_BYTES: usize = 10;
const FX_QUOTE_BYTES: usize = 74;
const FX_QUOTE_EXPIRY_BYTES: usize = 24;
const FX_PAYMENT_BYTES: usize = 64;
const INSTRUMENT_BYTES: usize = 92;
const INSTRUMENT_RISK_BYTES: usize = 32;
const BIND_RING_BYTES: usize = 138;
const HOLD_INSTRUMENT_BYTES: usize = 48;

/// Appends the encoded state of `ledger` to `out` (layout in the module docs).
pub fn encode_state(ledger: &Ledger, out: &mut Vec<u8>) {
    let mut state = StateOut {
        bytes: std::mem::take(out),
        chunk_bytes: usize::MAX,
        chunk: None,
        error: None,
        #[cfg(test)]
        through_bincode: false,
    };
    encode_into(ledger, lone_records(ledger), &mut state);
    *out = state.bytes;
}

/// Encodes the state of `ledger` (layout in the module docs) and hands it to
/// `chunk` as it goes, in pieces of exactly `chunk_bytes` bytes and a last
/// shorter one (never empty): the bytes [`encode_state`] gives, without the
/// whole image in memory at once (a checkpoint of gigabytes holds a chunk
/// and a bit). The first error `chunk` returns ends the handing on and is
/// returned.
pub fn encode_state_chunks(
    ledger: &Ledger,
    chunk_bytes: usize,
    chunk: &mut dyn FnMut(&[u8]) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    encode_state_chunks_with(ledger, lone_records(ledger), chunk_bytes, chunk)
}

/// A lone ledger's records (a checkpoint is a lone ledger's state).
fn lone_records(ledger: &Ledger) -> &dyn RecordsInOrder {
    assert!(
        ledger.records.held.is_empty(),
        "a checkpoint is a lone ledger's"
    );
    &ledger.records
}

/// [`encode_state_chunks`] of `ledger` with `records` for its idempotency
/// records (see [`RecordsInOrder`]).
pub(crate) fn encode_state_chunks_with(
    ledger: &Ledger,
    records: &dyn RecordsInOrder,
    chunk_bytes: usize,
    chunk: &mut dyn FnMut(&[u8]) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    assert!(chunk_bytes > 0, "chunks hold at least a byte");
    let mut state = StateOut {
        // Room for a chunk and the item that crosses its end (items are a
        // few kilobytes at most; the risk policy up to its bound).
        bytes: Vec::with_capacity(chunk_bytes.saturating_add(64 * 1024)),
        chunk_bytes,
        chunk: Some(chunk),
        error: None,
        #[cfg(test)]
        through_bincode: false,
    };
    encode_into(ledger, records, &mut state);
    state.finish()
}

/// What takes the encoded state's chunks, one at a time.
type ChunkSink<'a> = dyn FnMut(&[u8]) -> Result<(), StorageError> + 'a;

/// Where the encoding goes: a vector that keeps it all, or (with `chunk`)
/// a buffer handed on each time it holds `chunk_bytes`.
struct StateOut<'a> {
    bytes: Vec<u8>,
    chunk_bytes: usize,
    chunk: Option<&'a mut ChunkSink<'a>>,
    /// The first error `chunk` returned: nothing is handed on after it.
    error: Option<StorageError>,
    /// Every item through bincode, as before the fixed-width items were
    /// written by hand: for the test that the bytes are the same.
    #[cfg(test)]
    through_bincode: bool,
}

impl StateOut<'_> {
    /// One item, bincode with fixed-width integers.
    #[inline]
    fn item<T: bincode::Encode>(&mut self, value: &T) {
        encode_value(value, &mut self.bytes);
        self.spill();
    }

    /// One fixed-width item, written by `put` straight into the buffer
    /// (the bytes bincode gives for it, without its writer: see [`fixed`]).
    #[inline]
    fn fixed<T: bincode::Encode, const N: usize>(&mut self, item: &T, put: fn(&T, &mut [u8; N])) {
        #[cfg(test)]
        if self.through_bincode {
            let start = self.bytes.len();
            encode_value(item, &mut self.bytes);
            assert_eq!(self.bytes.len() - start, N, "bincode's size of the item");
            self.spill();
            return;
        }
        let mut bytes = [0u8; N];
        put(item, &mut bytes);
        self.bytes.extend_from_slice(&bytes);
        self.spill();
    }

    /// A budget's state (see [`BudgetState::encode_checkpoint`]).
    #[inline]
    fn budget(&mut self, state: &BudgetState) {
        #[cfg(test)]
        if self.through_bincode {
            self.item(state);
            return;
        }
        state.encode_checkpoint(&mut self.bytes);
        self.spill();
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
        self.spill();
    }

    /// A section's count, u64.
    #[inline]
    fn count(&mut self, count: usize) {
        self.put(&(count as u64).to_le_bytes());
    }

    #[inline]
    fn spill(&mut self) {
        if self.bytes.len() >= self.chunk_bytes {
            self.hand_on_full();
        }
    }

    /// Hands on every full chunk and keeps the rest.
    #[cold]
    fn hand_on_full(&mut self) {
        let Some(chunk) = self.chunk.as_mut() else {
            return;
        };
        let mut start = 0;
        while self.bytes.len() - start >= self.chunk_bytes {
            if self.error.is_none() {
                if let Err(error) = chunk(&self.bytes[start..start + self.chunk_bytes]) {
                    self.error = Some(error);
                }
            }
            start += self.chunk_bytes;
        }
        self.bytes.copy_within(start.., 0);
        self.bytes.truncate(self.bytes.len() - start);
    }

    /// Hands on the last, shorter chunk.
    fn finish(mut self) -> Result<(), StorageError> {
        self.hand_on_full();
        if let Some(error) = self.error {
            return Err(error);
        }
        match self.chunk {
            Some(chunk) if !self.bytes.is_empty() => chunk(&self.bytes),
            _ => Ok(()),
        }
    }
}

fn encode_into(ledger: &Ledger, records: &dyn RecordsInOrder, out: &mut StateOut<'_>) {
    let books = &ledger.books;
    if out.chunk.is_none() {
        out.bytes.reserve(
            48 + books.accounts.len() * ACCOUNT_BYTES
                + books.holds.len() * HOLD_BYTES
                + books.hold_expiries.len() * EXPIRY_BYTES
                + books.merchant_keys.len() * MERCHANT_KEY_BYTES
                + books.payment_codes.len() * PAYMENT_CODE_BYTES
                + books.code_expiries.len() * CODE_EXPIRY_BYTES
                + books.payments.len() * PAYMENT_BYTES
                + records.count() * RECORD_BYTES,
        );
    }
    out.put(&STATE_MAGIC);
    out.put(&STATE_VERSION.to_le_bytes());
    out.put(&ledger.sequence.to_le_bytes());
    out.put(&ledger.timestamp.to_le_bytes());

    out.count(books.accounts.len());
    for account in &books.accounts {
        out.fixed(account, fixed::put_account);
    }

    // Each sorted by a key copied next to a reference, not through it.
    let mut holds: Vec<([u64; 2], &Hold)> = books
        .holds
        .values()
        .map(|hold| (id_key(hold.id.0), hold))
        .collect();
    holds.sort_unstable_by_key(|(key, _)| *key);
    out.count(holds.len());
    for (_, hold) in holds {
        out.fixed(hold, fixed::put_hold);
    }

    let mut expiries: Vec<(u64, CommandId)> =
        books.hold_expiries.iter().map(|entry| entry.0).collect();
    expiries.sort_unstable();
    out.count(expiries.len());
    for expiry in &expiries {
        out.fixed(expiry, fixed::put_expiry);
    }

    let mut keys: Vec<(MerchantKey, u32)> = books
        .merchant_keys
        .iter()
        .map(|(key, slot)| (*key, *slot))
        .collect();
    keys.sort_unstable();
    out.count(keys.len());
    for key in &keys {
        out.fixed(key, fixed::put_merchant_key);
    }

    let mut codes: Vec<(u64, &PaymentCode)> = books
        .payment_codes
        .values()
        .map(|code| (code.code, code))
        .collect();
    codes.sort_unstable_by_key(|(code, _)| *code);
    out.count(codes.len());
    for (_, code) in codes {
        out.fixed(code, fixed::put_payment_code);
    }

    let mut code_expiries: Vec<(u64, u64)> =
        books.code_expiries.iter().map(|entry| entry.0).collect();
    code_expiries.sort_unstable();
    out.count(code_expiries.len());
    for expiry in &code_expiries {
        out.fixed(expiry, fixed::put_code_expiry);
    }

    let mut payments: Vec<([u64; 2], &Payment)> = books
        .payments
        .values()
        .map(|payment| (id_key(payment.id.0), payment))
        .collect();
    payments.sort_unstable_by_key(|(key, _)| *key);
    out.count(payments.len());
    // In id order the payments are random places in memory: fetch them
    // some entries ahead.
    const AHEAD: usize = 16;
    for at in 0..payments.len() {
        if let Some((_, ahead)) = payments.get(at + AHEAD) {
            crate::prefetch::prefetch(*ahead, 1);
        }
        let payment = payments[at].1;
        out.fixed(payment, fixed::put_payment);
    }

    // The records, oldest first.
    out.count(records.count());
    for (id, record) in records.each() {
        out.fixed(&(id, record), fixed::put_record);
    }

    encode_risk(&books.risk, out);
    encode_fx(&books.fx, out);
    encode_instruments(&books.instruments, out);
    encode_config(&ledger.config, out);
}

/// The config section (version 7).
fn encode_config(config: &LedgerConfig, out: &mut StateOut<'_>) {
    out.put(&config.idempotency_window_ns.to_le_bytes());
    out.put(&(config.idempotency_records_max as u64).to_le_bytes());
    out.put(&config.account_holds_pending_max.to_le_bytes());
    out.put(&[
        config.customer_payment_codes_live_max,
        config.account_fx_quotes_open_max,
        config.customer_instruments_max,
    ]);
    out.put(&(config.instruments_max as u64).to_le_bytes());
}

/// Reads the config section. The values are compared, not used, so any
/// value is accepted (one past what this machine can address saturates).
fn decode_config(reader: &mut Reader<'_>) -> Result<LedgerConfig, StorageError> {
    let bytes = reader.take(CONFIG_BYTES, "config")?;
    let u64_at = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(word)
    };
    Ok(LedgerConfig {
        idempotency_window_ns: u64_at(0),
        idempotency_records_max: usize::try_from(u64_at(8)).unwrap_or(usize::MAX),
        account_holds_pending_max: u16::from_le_bytes([bytes[16], bytes[17]]),
        customer_payment_codes_live_max: bytes[18],
        account_fx_quotes_open_max: bytes[19],
        customer_instruments_max: bytes[20],
        instruments_max: usize::try_from(u64_at(21)).unwrap_or(usize::MAX),
    })
}

/// The instruments section (version 4), in (owner, number) order, then the
/// instrument rules' sections (version 5): the instruments with withdrawals
/// recorded, and the customers' bind times; then the pending holds'
/// instruments (version 6), by owner then hold.
fn encode_instruments(instruments: &Instruments, out: &mut StateOut<'_>) {
    let in_order = instruments.in_order();
    out.count(in_order.all.len());
    // Sorted from a hash map: fetched some entries ahead, as above.
    const AHEAD: usize = 16;
    for at in 0..in_order.all.len() {
        if let Some((_, ahead)) = in_order.all.get(at + AHEAD) {
            crate::prefetch::prefetch(*ahead, usize::MAX);
        }
        let (id, instrument) = in_order.all[at];
        out.fixed(&(id.owner, *instrument), fixed::put_instrument);
    }
    out.count(in_order.withdrawn.len());
    for entry in &in_order.withdrawn {
        out.item(entry);
    }
    out.count(in_order.binds.len());
    for (owner, ring) in &in_order.binds {
        out.item(&(*owner, **ring));
    }
    out.count(in_order.holds.len());
    for (owner, hold, shown) in &in_order.holds {
        out.item(&(*hold, *owner, **shown));
    }
}

/// Reads the pending holds' instruments (version 6): each of a pending
/// hold of the state, of a customer with an instrument, once.
fn decode_hold_instruments(
    reader: &mut Reader<'_>,
    instruments: &mut Instruments,
    holds: &GrowingMap<CommandId, Hold>,
) -> Result<(), StorageError> {
    let len = reader.count(HOLD_INSTRUMENT_BYTES, usize::MAX, "hold instruments")?;
    for _ in 0..len {
        let (hold, owner, shown): (CommandId, u64, MovementInstrument) =
            reader.item(HOLD_INSTRUMENT_BYTES, "hold instrument")?;
        let pending = holds
            .get(&hold)
            .is_some_and(|hold| hold.state == HoldState::Pending);
        let valid = shown.bank.is_valid() && shown.last_four.iter().all(u8::is_ascii_digit);
        if !pending || !valid || !instruments.set_hold(hold, owner, shown) {
            return Err(corrupt(format!(
                "hold instrument of {}: no such pending hold, invalid, or twice",
                hold.0
            )));
        }
    }
    Ok(())
}

/// Reads the instrument rules' sections (version 5) into `instruments`:
/// each names a kept instrument (a customer with one), once.
fn decode_instrument_risk(
    reader: &mut Reader<'_>,
    instruments: &mut Instruments,
) -> Result<(), StorageError> {
    let len = reader.count(INSTRUMENT_RISK_BYTES, usize::MAX, "instrument risk")?;
    for _ in 0..len {
        let (owner, number, risk): (u64, u32, InstrumentRisk) =
            reader.item(INSTRUMENT_RISK_BYTES, "instrument risk")?;
        if !instruments.set_risk(InstrumentId { owner, number }, risk) {
            return Err(corrupt(format!(
                "instrument risk of {owner}/{number}: no such instrument, or twice"
            )));
        }
    }
    let len = reader.count(BIND_RING_BYTES, usize::MAX, "bind times")?;
    for _ in 0..len {
        let (owner, binds): (u64, BindRing) = reader.item(BIND_RING_BYTES, "bind times")?;
        if !instruments.set_binds(owner, binds) {
            return Err(corrupt(format!(
                "bind times of {owner}: no instrument of the customer, or twice"
            )));
        }
    }
    Ok(())
}

/// Reads the instruments section: valid fields, no number twice for one
/// customer. A customer over today's cap is not corrupt (the cap may have
/// been lowered after a clean stop); binds are refused until under it.
fn decode_instruments(reader: &mut Reader<'_>) -> Result<Instruments, StorageError> {
    let mut instruments = Instruments::default();
    let len = reader.count(INSTRUMENT_BYTES, usize::MAX, "instruments")?;
    for _ in 0..len {
        let (owner, instrument) = reader.fixed("instrument", fixed::take_instrument)?;
        let id = format!("{owner}/{}", instrument.number);
        let fields = instrument.token.is_valid()
            && instrument.bank.is_valid()
            && instrument.currency.is_valid()
            && instrument.country.iter().all(u8::is_ascii_uppercase)
            && instrument.last_four.iter().all(u8::is_ascii_digit);
        if !fields {
            return Err(corrupt(format!("instrument {id} has invalid fields")));
        }
        if !instruments.insert(owner, Kept::from(instrument)) {
            return Err(corrupt(format!("instrument {id} appears twice")));
        }
    }
    Ok(instruments)
}

/// The four risk sections (version 2), each in key order.
fn encode_risk(risk: &RiskBooks, out: &mut StateOut<'_>) {
    let policy = risk.policy().encode_canonical();
    out.count(policy.len());
    out.put(&policy);

    // The boxes' addresses read walking the map (cheap), so that the states
    // can be fetched ahead below without a dependent read at random first.
    let mut customers: Vec<(u64, &CustomerRiskState)> = risk
        .customers
        .iter()
        .map(|(owner, state)| (*owner, &**state))
        .collect();
    customers.sort_unstable_by_key(|(owner, _)| *owner);
    out.count(customers.len());
    // In key order the states are random places in memory (hundreds of
    // bytes each): fetch them some entries ahead (waiting for each was most
    // of encoding the budgets at 1M accounts, perf).
    const AHEAD: usize = 8;
    for at in 0..customers.len() {
        if let Some((_, ahead)) = customers.get(at + AHEAD) {
            crate::prefetch::prefetch(*ahead, usize::MAX);
        }
        let (owner, state) = customers[at];
        out.item(&owner);
        out.item(state);
    }

    let rings: Vec<(u64, &AuditRing)> = risk.audit.rings().collect();
    out.count(rings.len());
    for (owner, ring) in rings {
        out.item(&owner);
        out.item(ring);
    }

    let mut budgets: Vec<(AccountId, &BudgetState)> = risk
        .budgets
        .iter()
        .map(|(account, state)| (*account, &**state))
        .collect();
    budgets.sort_unstable_by_key(|(account, _)| *account);
    out.count(budgets.len());
    for at in 0..budgets.len() {
        if let Some((_, ahead)) = budgets.get(at + AHEAD) {
            crate::prefetch::prefetch(*ahead, usize::MAX);
        }
        let (account, state) = budgets[at];
        out.put(&account.0.to_le_bytes());
        out.budget(state);
    }
}

/// Reads the risk sections; every owner and account must be unique, and a
/// budget's account must be a customer account of the ledger.
fn decode_risk(
    reader: &mut Reader<'_>,
    accounts: &GrowingMap<AccountId, u32>,
    account_list: &[Account],
) -> Result<RiskBooks, StorageError> {
    let policy_len = reader.count(1, POLICY_ENCODED_BYTES_MAX, "risk policy")?;
    let policy_bytes = reader.take(policy_len, "risk policy")?;
    let (policy, used) =
        bincode::decode_from_slice::<RiskPolicy, _>(policy_bytes, canonical_config())
            .map_err(|error| corrupt(format!("risk policy: {error}")))?;
    if used != policy_len {
        return Err(corrupt("risk policy: trailing bytes"));
    }
    let mut risk = RiskBooks::new(policy);

    // Every item is at least its key (8 bytes) plus a few bytes of state.
    let customers_len = reader.count(8 + 1, usize::MAX, "risk customers")?;
    risk.customers.reserve(customers_len);
    for _ in 0..customers_len {
        let owner: u64 = reader.item_var("risk customer")?;
        let state: CustomerRiskState = reader.item_var("risk customer state")?;
        if risk.customers.insert(owner, Box::new(state)).is_some() {
            return Err(corrupt(format!("risk customer {owner} appears twice")));
        }
    }

    let rings_len = reader.count(8 + 1, usize::MAX, "risk audit")?;
    for _ in 0..rings_len {
        let owner: u64 = reader.item_var("risk audit customer")?;
        let ring: AuditRing = reader.item_var("risk audit ring")?;
        if !risk.audit.insert_ring(owner, ring) {
            return Err(corrupt(format!(
                "risk audit of customer {owner} appears twice"
            )));
        }
    }

    let budgets_len = reader.count(8 + 1, usize::MAX, "budgets")?;
    risk.budgets.reserve(budgets_len);
    for _ in 0..budgets_len {
        let account = AccountId(reader.u64("budget account")?);
        let state = reader.var_with(
            BUDGET_STATE_BYTES_MAX,
            "budget",
            BudgetState::decode_checkpoint,
        )?;
        let is_customer = accounts
            .get(&account)
            .is_some_and(|&slot| account_list[slot as usize].kind == AccountKind::Customer);
        if !is_customer {
            return Err(corrupt(format!(
                "budget of account {} that is not a customer account",
                account.0
            )));
        }
        if risk.budgets.insert(account, Box::new(state)).is_some() {
            return Err(corrupt(format!(
                "budget of account {} appears twice",
                account.0
            )));
        }
    }
    Ok(risk)
}

/// The FX sections; every map is ordered, so this is already sorted.
fn encode_fx(fx: &FxState, out: &mut StateOut<'_>) {
    out.count(fx.rates.len());
    for rate in fx.rates.values() {
        out.item(rate);
    }
    out.count(fx.floors.len());
    for floor in &fx.floors {
        out.item(&(*floor.0, *floor.1));
    }
    out.count(fx.quotes.len());
    for quote in fx.quotes.values() {
        out.item(quote);
    }
    out.count(fx.quote_expiries.len());
    for expiry in &fx.quote_expiries {
        out.item(expiry);
    }
    out.count(fx.payments.len());
    for payment in &fx.payments {
        out.item(&(*payment.0, *payment.1));
    }
}

/// Reads the FX sections, checked like the rest: valid rates and
/// currencies, slots in range, per-account quote counts within the limit,
/// every quote in the expiry queue, refunds within what was paid.
fn decode_fx(
    reader: &mut Reader<'_>,
    accounts_len: usize,
    payments: &GrowingMap<CommandId, Payment>,
) -> Result<FxState, StorageError> {
    let mut fx = FxState::default();
    let rates_len = reader.count(FX_RATE_BYTES, limits::FX_RATES_MAX, "fx rates")?;
    for _ in 0..rates_len {
        let rate: FxRate = reader.item(FX_RATE_BYTES, "fx rate")?;
        let pair = format!("{}/{}", rate.base, rate.quote);
        if !rate.base.is_valid() || !rate.quote.is_valid() || rate.base == rate.quote {
            return Err(corrupt(format!("fx rate {pair}: bad currencies")));
        }
        if !rate.mid.is_valid() || rate.spread_bps > limits::FX_SPREAD_BPS_MAX {
            return Err(corrupt(format!("fx rate {pair}: bad mid or spread")));
        }
        if fx.rates.contains_key(&(rate.quote, rate.base))
            || fx.rates.insert((rate.base, rate.quote), rate).is_some()
        {
            return Err(corrupt(format!("fx rate {pair} appears twice")));
        }
    }
    let floors_len = reader.count(FX_FLOOR_BYTES, usize::MAX, "fx floors")?;
    for _ in 0..floors_len {
        let (currency, limit): (Currency, u64) = reader.item(FX_FLOOR_BYTES, "fx floor")?;
        if !currency.is_valid() || limit > limits::AMOUNT_MAX {
            return Err(corrupt(format!("fx floor of {currency:?} is invalid")));
        }
        if fx.floors.insert(currency, limit).is_some() {
            return Err(corrupt(format!("fx floor of {currency} appears twice")));
        }
    }
    let quotes_len = reader.count(FX_QUOTE_BYTES, limits::FX_QUOTES_MAX, "fx quotes")?;
    for _ in 0..quotes_len {
        let quote: FxQuoteRecord = reader.item(FX_QUOTE_BYTES, "fx quote")?;
        if quote.from_slot as usize >= accounts_len || quote.to_slot as usize >= accounts_len {
            return Err(corrupt(format!(
                "fx quote {} names a slot out of range",
                quote.id.0
            )));
        }
        if quote.amounts.fee > quote.amounts.pay {
            return Err(corrupt(format!(
                "fx quote {} has a fee above its pay",
                quote.id.0
            )));
        }
        if quote.state == FxQuoteState::Open {
            let open = fx.quotes_open.entry(quote.from_slot).or_default();
            // The cap may have been lowered since (after a clean stop): only
            // the counter's own width is corruption.
            if *open == u8::MAX {
                return Err(corrupt("an account has too many open fx quotes"));
            }
            *open += 1;
        }
        if fx.quotes.insert(quote.id, quote).is_some() {
            return Err(corrupt(format!("fx quote {} appears twice", quote.id.0)));
        }
    }
    let expiries_len = reader.count(FX_QUOTE_EXPIRY_BYTES, usize::MAX, "fx quote expiries")?;
    for _ in 0..expiries_len {
        let entry: (u64, CommandId) = reader.item(FX_QUOTE_EXPIRY_BYTES, "fx quote expiry")?;
        fx.quote_expiries.insert(entry);
    }
    for quote in fx.quotes.values() {
        let at = quote.amounts.expires_at;
        let queued = fx.quote_expiries.contains(&(at, quote.id))
            || (quote.state != FxQuoteState::Open
                && fx
                    .quote_expiries
                    .contains(&(at.saturating_add(limits::FX_QUOTE_MEMORY_NS), quote.id)));
        if !queued {
            return Err(corrupt(format!(
                "fx quote {} is missing from the expiry queue",
                quote.id.0
            )));
        }
    }
    let payments_len = reader.count(FX_PAYMENT_BYTES, usize::MAX, "fx payments")?;
    for _ in 0..payments_len {
        let (id, legs): (CommandId, FxPaymentLegs) = reader.item(FX_PAYMENT_BYTES, "fx payment")?;
        if !payments.contains_key(&id)
            || legs.net_refunded > legs.net
            || legs.fee_refunded > legs.fee
            || legs.refunded > legs.amount
        {
            return Err(corrupt(format!("fx payment {} is inconsistent", id.0)));
        }
        if fx.payments.insert(id, legs).is_some() {
            return Err(corrupt(format!("fx payment {} appears twice", id.0)));
        }
    }
    Ok(fx)
}

/// The chunks of an encoded state, read one at a time (see
/// [`decode_state_chunks`]).
pub type StateChunks<'a> = dyn Iterator<Item = Result<Vec<u8>, StorageError>> + 'a;

/// Bytes an item of variable size may take at most (the largest, a
/// customer's risk state, takes a few kilobytes): [`Reader::item_var`]
/// decodes from a window of at least this much, or what is left.
const ITEM_VAR_BYTES_MAX: usize = 1 << 20;

/// A cursor over untrusted state bytes: one slice, or chunks read as the
/// decoding reaches them (never the whole state in memory at once).
struct Reader<'a> {
    /// Bytes read in and not yet gone past (from `at`).
    window: std::borrow::Cow<'a, [u8]>,
    at: usize,
    /// Bytes still to come from `chunks`, as their total length says.
    unread: u64,
    chunks: Option<&'a mut StateChunks<'a>>,
}

fn corrupt(reason: impl Into<String>) -> StorageError {
    StorageError::StateCorrupt(reason.into())
}

impl<'a> Reader<'a> {
    fn whole(bytes: &'a [u8]) -> Reader<'a> {
        Reader {
            window: std::borrow::Cow::Borrowed(bytes),
            at: 0,
            unread: 0,
            chunks: None,
        }
    }

    /// Bytes left, read in or not.
    fn left(&self) -> u64 {
        (self.window.len() - self.at) as u64 + self.unread
    }

    /// Reads chunks in until `count` bytes from `at` are in the window (or
    /// there are no more).
    fn fill(&mut self, count: usize) -> Result<(), StorageError> {
        if self.window.len() - self.at >= count {
            return Ok(());
        }
        let Some(chunks) = self.chunks.as_mut() else {
            return Ok(());
        };
        // What is gone past goes first (the window stays a chunk and a bit).
        let window = self.window.to_mut();
        window.drain(..self.at);
        self.at = 0;
        while window.len() < count {
            let Some(chunk) = chunks.next().transpose()? else {
                break;
            };
            let Some(unread) = self.unread.checked_sub(chunk.len() as u64) else {
                return Err(corrupt("the chunks hold more than the state's length"));
            };
            self.unread = unread;
            window.extend_from_slice(&chunk);
        }
        Ok(())
    }

    fn take(&mut self, count: usize, what: &str) -> Result<&[u8], StorageError> {
        self.fill(count)?;
        if self.window.len() - self.at < count {
            return Err(corrupt(format!("truncated in {what}")));
        }
        let start = self.at;
        self.at += count;
        Ok(&self.window[start..start + count])
    }

    fn u32(&mut self, what: &str) -> Result<u32, StorageError> {
        let mut buffer = [0u8; 4];
        buffer.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(buffer))
    }

    fn u64(&mut self, what: &str) -> Result<u64, StorageError> {
        let mut buffer = [0u8; 8];
        buffer.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(buffer))
    }

    /// A section's item count, checked against the bytes left and `max`.
    fn count(&mut self, item_bytes: usize, max: usize, what: &str) -> Result<usize, StorageError> {
        let count = self.u64(what)?;
        let left = self.left();
        let fits = usize::try_from(count)
            .ok()
            .filter(|&count| count <= max)
            .filter(|&count| {
                count
                    .checked_mul(item_bytes)
                    .is_some_and(|bytes| bytes as u64 <= left)
            });
        fits.ok_or_else(|| corrupt(format!("{what}: count {count} does not fit")))
    }

    fn item<T: bincode::Decode<()>>(
        &mut self,
        item_bytes: usize,
        what: &str,
    ) -> Result<T, StorageError> {
        let bytes = self.take(item_bytes, what)?;
        let (value, used) =
            decode_value::<T>(bytes).map_err(|reason| corrupt(format!("{what}: {reason}")))?;
        if used != item_bytes {
            return Err(corrupt(format!(
                "{what}: item has {used} bytes, not {item_bytes}"
            )));
        }
        Ok(value)
    }

    /// One fixed-width item, read by `take` from its bytes (see [`fixed`]).
    #[inline]
    fn fixed<const N: usize, T>(
        &mut self,
        what: &str,
        take: impl FnOnce(&[u8; N]) -> Result<T, String>,
    ) -> Result<T, StorageError> {
        let bytes = self.take(N, what)?;
        let item: &[u8; N] = bytes
            .try_into()
            .map_err(|_| corrupt(format!("truncated in {what}")))?;
        take(item).map_err(|reason| corrupt(format!("{what}: {reason}")))
    }

    /// One item of variable size (at most [`ITEM_VAR_BYTES_MAX`]): decoded
    /// from the bytes left, which it advances past.
    fn item_var<T: bincode::Decode<()>>(&mut self, what: &str) -> Result<T, StorageError> {
        let window = usize::try_from(self.left())
            .unwrap_or(usize::MAX)
            .min(ITEM_VAR_BYTES_MAX);
        self.fill(window)?;
        let (value, used) = decode_value::<T>(&self.window[self.at..])
            .map_err(|reason| corrupt(format!("{what}: {reason}")))?;
        self.at += used;
        Ok(value)
    }

    /// One item of variable size, at most `bytes_max`, read by `take` from
    /// the front of the bytes left (it says how many it used).
    #[inline]
    fn var_with<T>(
        &mut self,
        bytes_max: usize,
        what: &str,
        take: impl FnOnce(&[u8]) -> Result<(T, usize), String>,
    ) -> Result<T, StorageError> {
        let window = usize::try_from(self.left())
            .unwrap_or(usize::MAX)
            .min(bytes_max);
        self.fill(window)?;
        let (value, used) =
            take(&self.window[self.at..]).map_err(|reason| corrupt(format!("{what}: {reason}")))?;
        self.at += used;
        Ok(value)
    }

    /// Whether every byte has been gone past; reads what chunks are left
    /// (the last may report a failed checksum).
    fn at_end(&mut self) -> Result<bool, StorageError> {
        if let Some(chunks) = self.chunks.as_mut() {
            for chunk in chunks.by_ref() {
                if !chunk?.is_empty() {
                    return Ok(false);
                }
            }
        }
        Ok(self.at == self.window.len() && self.unread == 0)
    }
}

/// Rebuilds a ledger from [`encode_state`] bytes; the result has the same
/// digest and behaves the same on every further command.
pub fn decode_state(bytes: &[u8], config: LedgerConfig) -> Result<Ledger, StorageError> {
    decode_state_and_config(bytes, config).map(|(ledger, _)| ledger)
}

/// [`decode_state`], also returning the config the state was made with
/// (`None` before version 6, which did not store it).
pub fn decode_state_and_config(
    bytes: &[u8],
    config: LedgerConfig,
) -> Result<(Ledger, Option<LedgerConfig>), StorageError> {
    decode_from(Reader::whole(bytes), config)
}

/// [`decode_state_and_config`] of a state of `state_len` bytes read chunk
/// by chunk from `chunks` as the decoding reaches them: the whole encoded
/// state is never in memory (a window of a chunk and a bit is). Every
/// chunk is read, the last included, so that a reader that checks the
/// state's checksum after the last chunk gets to say so.
pub fn decode_state_chunks(
    state_len: u64,
    chunks: &mut StateChunks<'_>,
    config: LedgerConfig,
) -> Result<(Ledger, Option<LedgerConfig>), StorageError> {
    let reader = Reader {
        window: std::borrow::Cow::Owned(Vec::new()),
        at: 0,
        unread: state_len,
        chunks: Some(chunks),
    };
    decode_from(reader, config)
}

fn decode_from(
    mut reader: Reader<'_>,
    config: LedgerConfig,
) -> Result<(Ledger, Option<LedgerConfig>), StorageError> {
    if reader.take(8, "magic")? != STATE_MAGIC {
        return Err(corrupt("it does not start with the state magic"));
    }
    let version = reader.u32("version")?;
    if version != STATE_VERSION
        && version != STATE_VERSION_NO_RISK
        && version != STATE_VERSION_NO_FX
        && version != STATE_VERSION_NO_INSTRUMENTS
        && version != STATE_VERSION_NO_INSTRUMENT_RISK
        && version != STATE_VERSION_NO_HOLD_INSTRUMENTS
        && version != STATE_VERSION_NO_CONFIG
    {
        return Err(corrupt(format!(
            "state format version {version} is not supported (this build reads {STATE_VERSION})"
        )));
    }
    let sequence = reader.u64("sequence")?;
    let timestamp = reader.u64("timestamp")?;

    // 1. Accounts, and the index rebuilt from them.
    let accounts_len = reader.count(ACCOUNT_BYTES, limits::ACCOUNTS_MAX, "accounts")?;
    let mut accounts: Vec<Account> = Vec::with_capacity(accounts_len);
    let mut index: GrowingMap<AccountId, u32> =
        GrowingMap::with_capacity_and_hasher(accounts_len, Default::default());
    for _ in 0..accounts_len {
        accounts.push(reader.fixed("account", fixed::take_account)?);
    }
    // A separate pass: interleaving the decoding with the (cache-missing)
    // inserts was 2-3x slower at 10M accounts (decode 6.9 s against 2.4 s).
    for (slot, account) in accounts.iter().enumerate() {
        // Cannot truncate: accounts_len <= ACCOUNTS_MAX <= u32::MAX.
        if index.insert(account.id, slot as u32).is_some() {
            return Err(corrupt(format!("account {} appears twice", account.id.0)));
        }
    }

    // 2. Holds: slots in range; pending amounts summed per account.
    let holds_len = reader.count(HOLD_BYTES, usize::MAX, "holds")?;
    let mut holds: GrowingMap<CommandId, Hold> =
        GrowingMap::with_capacity_and_hasher(holds_len, Default::default());
    // Indexed by slot: a dense array, not a map of millions of entries.
    let mut pending: Vec<Pending> = vec![Pending::default(); accounts_len];
    for _ in 0..holds_len {
        let hold = reader.fixed("hold", fixed::take_hold)?;
        if hold.account_slot as usize >= accounts_len || hold.house_slot as usize >= accounts_len {
            return Err(corrupt(format!(
                "hold {} names a slot out of range",
                hold.id.0
            )));
        }
        if hold.state == HoldState::Pending {
            // Both slots were checked against accounts_len above.
            pending[hold.account_slot as usize].add_debit(hold.amount)?;
            pending[hold.house_slot as usize].add_credit(hold.amount)?;
        }
        if holds.insert(hold.id, hold).is_some() {
            return Err(corrupt(format!("hold {} appears twice", hold.id.0)));
        }
    }

    // 3. The hold-expiry queue; every pending hold must be in it.
    let expiries_len = reader.count(EXPIRY_BYTES, usize::MAX, "hold expiries")?;
    let mut expiries: Vec<Reverse<(u64, CommandId)>> = Vec::with_capacity(expiries_len);
    for _ in 0..expiries_len {
        let entry = reader.fixed("hold expiry", |bytes| Ok(fixed::take_expiry(bytes)))?;
        expiries.push(Reverse(entry));
    }
    let queued: FxHashSet<(u64, CommandId)> = expiries.iter().map(|entry| entry.0).collect();
    for hold in holds.values() {
        if hold.state == HoldState::Pending && !queued.contains(&(hold.expires_at, hold.id)) {
            return Err(corrupt(format!(
                "pending hold {} is missing from the expiry queue",
                hold.id.0
            )));
        }
    }
    let hold_expiries = BinaryHeap::from(expiries);

    // 4. Merchant keys.
    let keys_len = reader.count(MERCHANT_KEY_BYTES, usize::MAX, "merchant keys")?;
    let mut merchant_keys: GrowingMap<MerchantKey, u32> =
        GrowingMap::with_capacity_and_hasher(keys_len, Default::default());
    for _ in 0..keys_len {
        let (key, slot) =
            reader.fixed("merchant key", |bytes| Ok(fixed::take_merchant_key(bytes)))?;
        if slot as usize >= accounts_len {
            return Err(corrupt(format!(
                "merchant key {:#x} names a slot out of range",
                key.0
            )));
        }
        if merchant_keys.insert(key, slot).is_some() {
            return Err(corrupt(format!("merchant key {:#x} appears twice", key.0)));
        }
    }

    // 5. Payment codes: slots in range; live codes counted per customer.
    let codes_len = reader.count(PAYMENT_CODE_BYTES, usize::MAX, "payment codes")?;
    let mut payment_codes: GrowingMap<u64, PaymentCode> =
        GrowingMap::with_capacity_and_hasher(codes_len, Default::default());
    for _ in 0..codes_len {
        let code = reader.fixed("payment code", fixed::take_payment_code)?;
        if code.customer_slot as usize >= accounts_len {
            return Err(corrupt(format!(
                "payment code {} names a slot out of range",
                code.code
            )));
        }
        if code.state == PaymentCodeState::Live {
            pending[code.customer_slot as usize].codes += 1;
        }
        if payment_codes.insert(code.code, code).is_some() {
            return Err(corrupt(format!("payment code {} appears twice", code.code)));
        }
    }

    // 6. The code-expiry queue; every live code must be in it.
    let code_expiries_len = reader.count(CODE_EXPIRY_BYTES, usize::MAX, "code expiries")?;
    let mut code_expiries: Vec<Reverse<(u64, u64)>> = Vec::with_capacity(code_expiries_len);
    for _ in 0..code_expiries_len {
        let entry = reader.fixed("code expiry", |bytes| Ok(fixed::take_code_expiry(bytes)))?;
        code_expiries.push(Reverse(entry));
    }
    let queued: FxHashSet<(u64, u64)> = code_expiries.iter().map(|entry| entry.0).collect();
    for code in payment_codes.values() {
        if code.state == PaymentCodeState::Live && !queued.contains(&(code.expires_at, code.code)) {
            return Err(corrupt(format!(
                "live payment code {} is missing from the expiry queue",
                code.code
            )));
        }
    }
    let code_expiries = BinaryHeap::from(code_expiries);

    // Every account's pending amounts and live codes match its holds and codes.
    for (account, &expected) in accounts.iter().zip(&pending) {
        let found = Pending {
            debits: account.debits_pending,
            credits: account.credits_pending,
            holds: u64::from(account.holds_pending),
            codes: u64::from(account.codes_live),
        };
        if expected != found {
            return Err(corrupt(format!(
                "account {} has {found:?} but its holds and codes add up to {expected:?}",
                account.id.0
            )));
        }
    }

    // 7. Payments: slots in range, never refunded beyond the amount.
    let payments_len = reader.count(PAYMENT_BYTES, usize::MAX, "payments")?;
    let mut payments: GrowingMap<CommandId, Payment> =
        GrowingMap::with_capacity_and_hasher(payments_len, Default::default());
    for _ in 0..payments_len {
        let payment = reader.fixed("payment", |bytes| Ok(fixed::take_payment(bytes)))?;
        if payment.payer_slot as usize >= accounts_len
            || payment.merchant_slot as usize >= accounts_len
        {
            return Err(corrupt(format!(
                "payment {} names a slot out of range",
                payment.id.0
            )));
        }
        if payment.refunded > payment.amount {
            return Err(corrupt(format!(
                "payment {} is refunded beyond its amount",
                payment.id.0
            )));
        }
        if payments.insert(payment.id, payment).is_some() {
            return Err(corrupt(format!("payment {} appears twice", payment.id.0)));
        }
    }

    // 8. Idempotency records, in arrival order.
    let records_len = reader.count(RECORD_BYTES, usize::MAX, "records")?;
    // Room for the configured cap, or for what the checkpoint holds if a
    // larger cap wrote it (the oldest go at the next batch).
    let mut records = Records::lone(config.idempotency_records_max.max(records_len));
    // Read a group ahead and ask for each id's index bucket first: the
    // look-ups land at random in an index of gigabytes, and waiting for
    // each in turn was a fifth of the decoding (perf, 1M accounts).
    const RECORDS_AHEAD: usize = 32;
    let mut group: Vec<(CommandId, IdempotencyRecord)> = Vec::with_capacity(RECORDS_AHEAD);
    let mut left = records_len;
    while left > 0 {
        group.clear();
        for _ in 0..left.min(RECORDS_AHEAD) {
            let (id, record) = reader.fixed("record", fixed::take_record)?;
            records.prefetch(id);
            group.push((id, record));
        }
        left -= group.len();
        for (id, record) in &group {
            if records.contains(*id) {
                return Err(corrupt(format!("record {} appears twice", id.0)));
            }
            records.push(*id, record);
        }
    }

    // 9. Risk policy, risk state, audit and budgets (version 2).
    let risk = if version == STATE_VERSION_NO_RISK {
        RiskBooks::default()
    } else {
        decode_risk(&mut reader, &index, &accounts)?
    };
    // 10. FX (version 3).
    let fx = if version >= STATE_VERSION_NO_INSTRUMENTS {
        decode_fx(&mut reader, accounts_len, &payments)?
    } else {
        FxState::default()
    };
    // 11. Instruments (version 4), and the instrument rules' state (version 5).
    let mut instruments = if version >= STATE_VERSION_NO_INSTRUMENT_RISK {
        decode_instruments(&mut reader)?
    } else {
        Instruments::default()
    };
    if version >= STATE_VERSION_NO_HOLD_INSTRUMENTS {
        decode_instrument_risk(&mut reader, &mut instruments)?;
    }
    if version >= STATE_VERSION_NO_CONFIG {
        decode_hold_instruments(&mut reader, &mut instruments, &holds)?;
    }
    // 13. The config it was made with (version 7).
    let stored_config = if version == STATE_VERSION {
        Some(decode_config(&mut reader)?)
    } else {
        None
    };

    if !reader.at_end()? {
        return Err(corrupt(format!(
            "{} bytes follow the last record",
            reader.left()
        )));
    }
    let ledger = Ledger {
        config,
        books: Books {
            accounts,
            index,
            holds,
            hold_expiries,
            merchant_keys,
            payment_codes,
            code_expiries,
            payments,
            risk,
            detail: Detail::None,
            fx,
            instruments,
            caps: OwnerCaps::of(&config),
            ..Books::default()
        },
        records,
        sequence,
        timestamp,
    };
    Ok((ledger, stored_config))
}

/// What an account's pending holds and live payment codes add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pending {
    debits: u64,
    credits: u64,
    holds: u64,
    codes: u64,
}

impl Pending {
    fn add_debit(&mut self, amount: u64) -> Result<(), StorageError> {
        self.debits = self
            .debits
            .checked_add(amount)
            .ok_or_else(|| corrupt("pending debits overflow"))?;
        self.holds += 1;
        Ok(())
    }

    fn add_credit(&mut self, amount: u64) -> Result<(), StorageError> {
        self.credits = self
            .credits
            .checked_add(amount)
            .ok_or_else(|| corrupt("pending credits overflow"))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;
    use crate::command::{AccountKind, AccountStatus, CommandId, FxAmounts, FxMid, FxSource};
    use crate::currency::Currency;
    use crate::ledger::{HoldState, Instrument};
    use crate::status::Status;

    #[test]
    fn item_sizes_match_the_layout() {
        let mut out = Vec::new();
        encode_value(
            &Account {
                id: AccountId(1),
                owner: 2,
                balance: -3,
                debits_pending: 4,
                credits_pending: 5,
                currency: Currency::CNY,
                kind: AccountKind::House,
                status: AccountStatus::Closed,
                kyc_tier: 3,
                mcc: 9999,
                holds_pending: 64,
                codes_live: 5,
            },
            &mut out,
        );
        assert_eq!(out.len(), ACCOUNT_BYTES);
        out.clear();
        encode_value(
            &Hold {
                id: CommandId(1),
                account_slot: 2,
                house_slot: 3,
                amount: 4,
                expires_at: 5,
                state: HoldState::Expired,
            },
            &mut out,
        );
        assert_eq!(out.len(), HOLD_BYTES);
        out.clear();
        encode_value(&(5u64, CommandId(6)), &mut out);
        assert_eq!(out.len(), EXPIRY_BYTES);
        out.clear();
        encode_value(
            &(
                CommandId(7),
                IdempotencyRecord {
                    fingerprint: 8,
                    status: Status::StorageFailed,
                    timestamp: 9,
                },
            ),
            &mut out,
        );
        assert_eq!(out.len(), RECORD_BYTES);
        out.clear();
        encode_value(&(MerchantKey(u128::MAX), 7u32), &mut out);
        assert_eq!(out.len(), MERCHANT_KEY_BYTES);
        out.clear();
        encode_value(
            &PaymentCode {
                code: 1,
                customer_slot: 2,
                expires_at: 3,
                state: PaymentCodeState::Used,
            },
            &mut out,
        );
        assert_eq!(out.len(), PAYMENT_CODE_BYTES);
        out.clear();
        encode_value(&(1u64, 2u64), &mut out);
        assert_eq!(out.len(), CODE_EXPIRY_BYTES);
        out.clear();
        encode_value(
            &Payment {
                id: CommandId(1),
                payer_slot: 2,
                merchant_slot: 3,
                amount: 4,
                refunded: 5,
                mcc: 6,
                timestamp: 7,
            },
            &mut out,
        );
        assert_eq!(out.len(), PAYMENT_BYTES);
        out.clear();
        let rate = FxRate {
            base: Currency::USD,
            quote: Currency::JPY,
            mid: FxMid {
                mantissa: u64::MAX,
                scale: 18,
            },
            spread_bps: 1_000,
            source: FxSource::new("ECB").unwrap(),
            set_at: 1,
            valid_until: 2,
        };
        encode_value(&rate, &mut out);
        assert_eq!(out.len(), FX_RATE_BYTES);
        out.clear();
        encode_value(&(Currency::JPY, 5u64), &mut out);
        assert_eq!(out.len(), FX_FLOOR_BYTES);
        out.clear();
        encode_value(
            &FxQuoteRecord {
                id: CommandId(1),
                from_slot: 2,
                to_slot: 3,
                amounts: FxAmounts {
                    pay: 1,
                    fee: 1,
                    receive: 1,
                    pay_currency: Currency::USD,
                    receive_currency: Currency::JPY,
                    mid: rate.mid,
                    inverse: true,
                    expires_at: 9,
                },
                state: FxQuoteState::Expired,
            },
            &mut out,
        );
        assert_eq!(out.len(), FX_QUOTE_BYTES);
        out.clear();
        encode_value(&(9u64, CommandId(1)), &mut out);
        assert_eq!(out.len(), FX_QUOTE_EXPIRY_BYTES);
        out.clear();
        encode_value(&(CommandId(1), FxPaymentLegs::default()), &mut out);
        assert_eq!(out.len(), FX_PAYMENT_BYTES);
        out.clear();
        encode_value(
            &(
                7u64,
                Instrument {
                    number: 1,
                    kind: crate::instrument::InstrumentKind::BankAccount,
                    token: crate::instrument::InstrumentText([b'x'; 32]),
                    bank: crate::instrument::InstrumentText([b'y'; 16]),
                    country: *b"CN",
                    last_four: *b"1234",
                    currency: Currency::CNY,
                    state: crate::instrument::InstrumentState::Unbound,
                    bound_at: 1,
                    changed_at: 2,
                },
            ),
            &mut out,
        );
        assert_eq!(out.len(), INSTRUMENT_BYTES);
        out.clear();
        encode_value(&(7u64, 1u32, InstrumentRisk::default()), &mut out);
        assert_eq!(out.len(), INSTRUMENT_RISK_BYTES);
        out.clear();
        encode_value(&(7u64, BindRing::default()), &mut out);
        assert_eq!(out.len(), BIND_RING_BYTES);
        out.clear();
        encode_value(
            &(CommandId(1), 7u64, MovementInstrument::default()),
            &mut out,
        );
        assert_eq!(out.len(), HOLD_INSTRUMENT_BYTES);
    }

    #[test]
    fn empty_ledger_round_trips() {
        let ledger = Ledger::default();
        let mut bytes = Vec::new();
        encode_state(&ledger, &mut bytes);
        assert_eq!(
            bytes.len(),
            8 + 4 + 8 + 8 + 8 * 8 + 8 + 10 + 3 * 8 + 5 * 8 + 8 + 3 * 8 + CONFIG_BYTES
        );
        let decoded = decode_state(&bytes, LedgerConfig::default()).unwrap();
        assert_eq!(decoded.digest(), ledger.digest());
    }

    #[test]
    fn the_config_is_stored_with_the_state() {
        let config = LedgerConfig {
            idempotency_window_ns: 123_456_789_012,
            idempotency_records_max: 70_000,
            account_holds_pending_max: 513,
            customer_payment_codes_live_max: 3,
            account_fx_quotes_open_max: 250,
            customer_instruments_max: 7,
            instruments_max: 1 << 40,
        };
        let mut bytes = Vec::new();
        encode_state(&Ledger::new(config), &mut bytes);
        // Decoded with other values: those are used, the stored ones returned.
        let (ledger, stored) = decode_state_and_config(&bytes, LedgerConfig::default()).unwrap();
        assert_eq!(stored, Some(config));
        assert_eq!(ledger.config, LedgerConfig::default());
        // A cut config section is corruption, not a default.
        let cut = &bytes[..bytes.len() - 1];
        assert!(matches!(
            decode_state_and_config(cut, config),
            Err(StorageError::StateCorrupt(_))
        ));
    }

    /// Encodes `ledger` with every item through bincode, as the encoder
    /// did before its fixed-width items were written by hand.
    fn encode_through_bincode(ledger: &Ledger) -> Vec<u8> {
        let mut state = StateOut {
            bytes: Vec::new(),
            chunk_bytes: usize::MAX,
            chunk: None,
            error: None,
            through_bincode: true,
        };
        encode_into(ledger, lone_records(ledger), &mut state);
        state.bytes
    }

    /// A lone ledger with something in every table the hand-written items
    /// cover: accounts opened out of id order, holds pending and finished,
    /// merchant keys, payment codes live and used, QR payments (some
    /// refunded), budgets with and without a budget set, instruments of
    /// every kind and state, and idempotency records of several statuses.
    pub(crate) fn busy_ledger() -> Ledger {
        use crate::command::{
            Command, CommandKind, OpenAccount, RiskContext, QR_MERCHANT_KEYS_MAX,
        };
        use crate::instrument::{BankName, InstrumentBind, InstrumentKind, InstrumentToken};
        const CUSTOMERS: u64 = 120;
        const MERCHANT_FIRST: u64 = 5_000;
        const MERCHANTS: u64 = 5;
        let mut ledger = Ledger::new(LedgerConfig::default());
        let mut sequence = 0u64;
        let mut timestamp = 1_700_000_000_000_000_000u64;
        let mut id = 0u128;
        let mut apply = |ledger: &mut Ledger, kinds: Vec<CommandKind>| {
            let batch: Vec<Command> = kinds
                .into_iter()
                .map(|kind| {
                    id += 1;
                    Command::new(id, kind)
                })
                .collect();
            sequence += 1;
            timestamp += 900_000_000;
            let mut results = Vec::new();
            ledger.apply(sequence, timestamp, &batch, &mut results);
            batch
                .iter()
                .zip(results)
                .map(|(command, result)| (command.id, result.status))
                .collect::<Vec<_>>()
        };
        let key = |merchant: u64| MerchantKey::new("test.payrail", &merchant.to_string());
        let open = |account: u64, kind, mcc| {
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(account),
                owner: account,
                kind,
                currency: Currency::CNY,
                kyc_tier: u8::from(kind == AccountKind::Customer),
                mcc,
            })
        };
        let mut opens: Vec<CommandKind> = (1..=CUSTOMERS)
            .rev()
            .map(|c| open(c, AccountKind::Customer, 0))
            .collect();
        opens
            .extend((0..MERCHANTS).map(|m| open(MERCHANT_FIRST + m, AccountKind::Merchant, 5_812)));
        apply(&mut ledger, opens);
        let mut setup: Vec<CommandKind> = (1..=CUSTOMERS)
            .map(|c| CommandKind::Deposit {
                account: AccountId(c),
                amount: 5_000_000,
                currency: Currency::CNY,
            })
            .collect();
        setup.extend((0..MERCHANTS).map(|m| CommandKind::RegisterMerchantKey {
            merchant: AccountId(MERCHANT_FIRST + m),
            key: key(MERCHANT_FIRST + m),
        }));
        setup.extend((1..=CUSTOMERS / 3).map(|c| {
            CommandKind::BindInstrument(InstrumentBind {
                customer: AccountId(c),
                number: 1 + (c % 3) as u32,
                kind: if c % 2 == 0 {
                    InstrumentKind::Card
                } else {
                    InstrumentKind::BankAccount
                },
                token: InstrumentToken::new(&format!("tok-{c}")).unwrap(),
                bank: BankName::new("ICBC").unwrap(),
                country: *b"CN",
                last_four: *b"1234",
                currency: Currency::CNY,
            })
        }));
        apply(&mut ledger, setup);
        // Instruments verified, failed and unbound; the rest stay unverified.
        let states: Vec<CommandKind> = (1..=CUSTOMERS / 3)
            .filter(|c| c % 4 != 0)
            .map(|c| {
                let instrument = crate::instrument::InstrumentId {
                    owner: c,
                    number: 1 + (c % 3) as u32,
                };
                match c % 4 {
                    1 => CommandKind::VerifyInstrument {
                        instrument,
                        passed: true,
                    },
                    2 => CommandKind::VerifyInstrument {
                        instrument,
                        passed: false,
                    },
                    _ => CommandKind::UnbindInstrument { instrument },
                }
            })
            .collect();
        apply(&mut ledger, states);
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let mut payments = Vec::new();
        let mut holds = Vec::new();
        let mut codes = Vec::new();
        for round in 0..30u64 {
            let mut kinds = Vec::new();
            for _ in 0..40 {
                let customer = AccountId(1 + next(CUSTOMERS));
                let merchant = AccountId(MERCHANT_FIRST + next(MERCHANTS));
                let kind = match next(9) {
                    0 | 1 => {
                        let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
                        keys[0] = key(merchant.0);
                        CommandKind::PayMerchantQr {
                            payer: customer,
                            keys,
                            amount: 1 + next(20_000),
                            fee: 0,
                            currency: Currency::CNY,
                            mcc: 5_812,
                            context: RiskContext::NONE,
                        }
                    }
                    2 => CommandKind::WithdrawHold {
                        account: customer,
                        amount: 1 + next(3_000),
                        currency: Currency::CNY,
                        timeout_ms: 60_000 + next(600_000),
                        context: RiskContext::NONE,
                    },
                    3 => {
                        let code = 100_000_000_000_000_000 + round * 1_000 + next(1_000);
                        codes.push(code);
                        CommandKind::IssuePaymentCode {
                            customer,
                            code,
                            lifetime_ms: 30_000 + next(90_000),
                        }
                    }
                    4 if !codes.is_empty() => CommandKind::ChargePaymentCode {
                        merchant,
                        code: codes.swap_remove(next(codes.len() as u64) as usize),
                        amount: 1 + next(2_000),
                        currency: Currency::CNY,
                        context: RiskContext::NONE,
                    },
                    5 if !payments.is_empty() => CommandKind::Refund {
                        payment: payments[next(payments.len() as u64) as usize],
                        amount: 1 + next(500),
                        currency: Currency::CNY,
                    },
                    6 if !holds.is_empty() => {
                        let hold = holds.swap_remove(next(holds.len() as u64) as usize);
                        if next(2) == 0 {
                            CommandKind::WithdrawPost { hold }
                        } else {
                            CommandKind::WithdrawVoid { hold }
                        }
                    }
                    7 => CommandKind::SetBudget {
                        account: customer,
                        category: next(5) as u8,
                        budget: (next(3) != 0).then(|| 10_000 + next(100_000)),
                    },
                    _ => CommandKind::Transfer {
                        from: customer,
                        to: AccountId(1 + next(CUSTOMERS + 3)),
                        amount: 1 + next(5_000),
                        currency: Currency::CNY,
                        context: RiskContext::NONE,
                    },
                };
                kinds.push(kind);
            }
            let payment_or_hold: Vec<(bool, bool)> = kinds
                .iter()
                .map(|kind| {
                    (
                        matches!(kind, CommandKind::PayMerchantQr { .. }),
                        matches!(kind, CommandKind::WithdrawHold { .. }),
                    )
                })
                .collect();
            for (at, (id, status)) in apply(&mut ledger, kinds).into_iter().enumerate() {
                if status == Status::Ok && payment_or_hold[at].0 {
                    payments.push(id);
                }
                if status == Status::Ok && payment_or_hold[at].1 {
                    holds.push(id);
                }
            }
        }
        ledger
    }

    #[test]
    fn the_state_is_the_bytes_bincode_wrote_item_by_item() {
        let ledger = busy_ledger();
        let books = &ledger.books;
        // Every table the hand-written items cover holds something, and the
        // enums show more than one variant.
        assert!(books
            .holds
            .values()
            .any(|hold| hold.state == HoldState::Pending));
        assert!(books
            .holds
            .values()
            .any(|hold| hold.state != HoldState::Pending));
        assert!(!books.hold_expiries.is_empty());
        assert!(!books.merchant_keys.is_empty());
        let code_states: FxHashSet<u32> = books
            .payment_codes
            .values()
            .map(|code| code.state as u32)
            .collect();
        assert!(code_states.len() >= 2, "{code_states:?}");
        assert!(!books.code_expiries.is_empty());
        assert!(books.payments.values().any(|payment| payment.refunded > 0));
        assert!(books.risk.budgets.len() > 10);
        let instrument_states: FxHashSet<u32> = books
            .instruments
            .in_order()
            .all
            .iter()
            .map(|(_, instrument)| instrument.state as u32)
            .collect();
        assert_eq!(instrument_states.len(), 4, "{instrument_states:?}");
        let statuses: FxHashSet<Status> = ledger
            .records
            .in_order()
            .map(|(_, record)| record.status)
            .collect();
        assert!(statuses.len() >= 3, "{statuses:?}");

        let mut bytes = Vec::new();
        encode_state(&ledger, &mut bytes);
        assert!(bytes.len() > 50_000);
        assert!(bytes == encode_through_bincode(&ledger));
        // Read back by the hand-written readers: the same state.
        let decoded = decode_state(&bytes, LedgerConfig::default()).unwrap();
        assert_eq!(decoded.digest(), ledger.digest());
        let mut again = Vec::new();
        encode_state(&decoded, &mut again);
        assert!(again == bytes);
    }

    #[test]
    fn fixed_items_are_the_bytes_bincode_writes() {
        fn same<T: bincode::Encode, const N: usize>(
            item: &T,
            put: fn(&T, &mut [u8; N]),
        ) -> [u8; N] {
            let mut expected = Vec::new();
            encode_value(item, &mut expected);
            let mut bytes = [0u8; N];
            put(item, &mut bytes);
            assert_eq!(bytes.as_slice(), expected.as_slice());
            bytes
        }
        for (at, (kind, status)) in [
            (AccountKind::Customer, AccountStatus::Active),
            (AccountKind::Merchant, AccountStatus::Frozen),
            (AccountKind::House, AccountStatus::Closed),
        ]
        .into_iter()
        .enumerate()
        {
            let account = Account {
                id: AccountId(u64::MAX - at as u64),
                owner: 0x0102_0304_0506_0708,
                balance: [i64::MIN, -1, i64::MAX][at],
                debits_pending: u64::MAX,
                credits_pending: 7,
                currency: Currency::from_raw(0xABCD),
                kind,
                status,
                kyc_tier: 255,
                mcc: 9_999,
                holds_pending: u16::MAX,
                codes_live: 3,
            };
            let bytes = same(&account, fixed::put_account);
            assert_eq!(fixed::take_account(&bytes), Ok(account));
        }
        for (at, state) in [
            HoldState::Pending,
            HoldState::Posted,
            HoldState::Voided,
            HoldState::Expired,
        ]
        .into_iter()
        .enumerate()
        {
            let hold = Hold {
                id: CommandId(u128::MAX - at as u128),
                account_slot: 1,
                house_slot: u32::MAX,
                amount: 1 << 40,
                expires_at: u64::MAX,
                state,
            };
            let bytes = same(&hold, fixed::put_hold);
            assert_eq!(fixed::take_hold(&bytes), Ok(hold));
        }
        for state in [
            PaymentCodeState::Live,
            PaymentCodeState::Used,
            PaymentCodeState::Expired,
        ] {
            let code = PaymentCode {
                code: 999_999_999_999_999_999,
                customer_slot: 77,
                expires_at: 1 << 62,
                state,
            };
            let bytes = same(&code, fixed::put_payment_code);
            assert_eq!(fixed::take_payment_code(&bytes), Ok(code));
        }
        let payment = Payment {
            id: CommandId(0x0011_2233_4455_6677_8899_AABB_CCDD_EEFF),
            payer_slot: 3,
            merchant_slot: u32::MAX,
            amount: u64::MAX,
            refunded: 12,
            mcc: 5_812,
            timestamp: 1 << 60,
        };
        assert_eq!(
            fixed::take_payment(&same(&payment, fixed::put_payment)),
            payment
        );
        let expiry = (u64::MAX - 1, CommandId(u128::MAX / 3));
        assert_eq!(
            fixed::take_expiry(&same(&expiry, fixed::put_expiry)),
            expiry
        );
        let key = (MerchantKey(u128::MAX / 7), 0xDEAD_BEEF);
        assert_eq!(
            fixed::take_merchant_key(&same(&key, fixed::put_merchant_key)),
            key
        );
        let code_expiry = (5u64, u64::MAX);
        assert_eq!(
            fixed::take_code_expiry(&same(&code_expiry, fixed::put_code_expiry)),
            code_expiry
        );
        for &status in Status::ALL {
            let record = (
                CommandId(u128::MAX - 5),
                IdempotencyRecord {
                    fingerprint: 0xFEED_FACE_CAFE_BEEF,
                    status,
                    timestamp: 42,
                },
            );
            assert_eq!(
                fixed::take_record(&same(&record, fixed::put_record)),
                Ok(record)
            );
        }
        use crate::instrument::{InstrumentKind, InstrumentState, InstrumentText};
        for (kind, state) in [
            (InstrumentKind::Card, InstrumentState::Unverified),
            (InstrumentKind::BankAccount, InstrumentState::Verified),
            (InstrumentKind::Card, InstrumentState::Failed),
            (InstrumentKind::BankAccount, InstrumentState::Unbound),
        ] {
            let instrument = (
                u64::MAX,
                Instrument {
                    number: 0x0A0B_0C0D,
                    kind,
                    token: InstrumentText(*b"token-token-token-token-token-32"),
                    bank: InstrumentText(*b"bank name 16 byt"),
                    country: *b"CN",
                    last_four: *b"9876",
                    currency: Currency::JPY,
                    state,
                    bound_at: 1,
                    changed_at: u64::MAX,
                },
            );
            let bytes = same(&instrument, fixed::put_instrument);
            assert_eq!(fixed::take_instrument(&bytes), Ok(instrument));
        }
        // What bincode refused is refused: a variant past the last, a status
        // code no build wrote.
        let mut account = [0u8; ACCOUNT_BYTES];
        account[42..46].copy_from_slice(&3u32.to_le_bytes());
        assert!(fixed::take_account(&account).is_err());
        let mut hold = [0u8; HOLD_BYTES];
        hold[40..44].copy_from_slice(&4u32.to_le_bytes());
        assert!(fixed::take_hold(&hold).is_err());
        let mut record = [0u8; RECORD_BYTES];
        record[24..26].copy_from_slice(&3u16.to_le_bytes());
        assert!(fixed::take_record(&record).is_err());
    }

    #[test]
    fn budget_states_are_the_bytes_bincode_writes() {
        use crate::budget::Category;
        let mut state = BudgetState::new();
        for (at, index) in [0, 3, 10].into_iter().enumerate() {
            let category = Category::ALL[index];
            state
                .set_budget(category, Some([0, 1, crate::limits::AMOUNT_MAX][at]))
                .unwrap();
        }
        for day in [0u64, 40, 75, 400] {
            let timestamp = 1_700_000_000_000_000_000 + day * 86_400_000_000_000;
            state.record_spend(Category::ALL[2], 1_234 + day, timestamp);
        }
        for state in [BudgetState::new(), state] {
            let mut expected = Vec::new();
            encode_value(&state, &mut expected);
            let mut bytes = Vec::new();
            state.encode_checkpoint(&mut bytes);
            assert_eq!(bytes, expected);
            expected.extend_from_slice(b"next");
            let (decoded, used) = BudgetState::decode_checkpoint(&expected).unwrap();
            assert_eq!((decoded, used), (state, bytes.len()));
            // Cut short anywhere, or a bad option tag: an error.
            assert!(BudgetState::decode_checkpoint(&bytes[..bytes.len() - 1]).is_err());
            let mut bad = bytes.clone();
            // The first budget's option tag, after the kept months.
            bad[crate::budget::BUDGET_MONTHS_KEPT * (4 + 8 * crate::budget::CATEGORIES)] = 2;
            assert!(BudgetState::decode_checkpoint(&bad).is_err());
        }
    }
}
