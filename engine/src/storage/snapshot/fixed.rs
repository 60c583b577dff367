//! The fixed-width items of the state, written and read field by field.
//!
//! The bytes are exactly those bincode gives with the state's settings
//! (fixed-width integers, little-endian; a fieldless enum as its variant
//! index, u32; a `u128` as 16 bytes), so the format is unchanged: a test
//! compares each function with `encode_value` on every value of every enum.
//! Going through bincode cost a writer call per field; at millions of items
//! per section that was most of a checkpoint's encoding (perf at 1M
//! accounts, docs/benchmarks.md).
//!
//! Readers check what bincode checked (enum variants in range, a status
//! code this build knows); everything else about an item is checked by the
//! section's decoder, as before.

use crate::command::{AccountId, AccountKind, AccountStatus, CommandId, MerchantKey};
use crate::currency::Currency;
use crate::instrument::{InstrumentKind, InstrumentState, InstrumentText};
use crate::ledger::{
    Account, Hold, HoldState, IdempotencyRecord, Instrument, Payment, PaymentCode, PaymentCodeState,
};
use crate::status::Status;

use super::{
    ACCOUNT_BYTES, CODE_EXPIRY_BYTES, EXPIRY_BYTES, HOLD_BYTES, INSTRUMENT_BYTES,
    MERCHANT_KEY_BYTES, PAYMENT_BYTES, PAYMENT_CODE_BYTES, RECORD_BYTES,
};

/// Writes fields one after the other into an item's bytes. Inlined with
/// constant offsets, the bounds checks fold away.
struct Put<'a> {
    bytes: &'a mut [u8],
    at: usize,
}

impl Put<'_> {
    #[inline(always)]
    fn bytes(&mut self, field: &[u8]) -> &mut Self {
        self.bytes[self.at..self.at + field.len()].copy_from_slice(field);
        self.at += field.len();
        self
    }

    #[inline(always)]
    fn u8(&mut self, value: u8) -> &mut Self {
        self.bytes(&[value])
    }

    #[inline(always)]
    fn u16(&mut self, value: u16) -> &mut Self {
        self.bytes(&value.to_le_bytes())
    }

    #[inline(always)]
    fn u32(&mut self, value: u32) -> &mut Self {
        self.bytes(&value.to_le_bytes())
    }

    #[inline(always)]
    fn u64(&mut self, value: u64) -> &mut Self {
        self.bytes(&value.to_le_bytes())
    }

    #[inline(always)]
    fn u128(&mut self, value: u128) -> &mut Self {
        self.bytes(&value.to_le_bytes())
    }

    /// The end: every byte of the item written.
    #[inline(always)]
    fn done(&self) {
        debug_assert_eq!(self.at, self.bytes.len(), "an item's fields fill it");
    }
}

/// Reads fields one after the other from an item's bytes.
struct Take<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Take<'a> {
    #[inline(always)]
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut field = [0u8; N];
        field.copy_from_slice(&self.bytes[self.at..self.at + N]);
        self.at += N;
        field
    }

    #[inline(always)]
    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    #[inline(always)]
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    #[inline(always)]
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    #[inline(always)]
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    #[inline(always)]
    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.array())
    }

    #[inline(always)]
    fn u128(&mut self) -> u128 {
        u128::from_le_bytes(self.array())
    }

    /// An enum's variant index (u32), which must be below `variants`.
    #[inline(always)]
    fn variant(&mut self, variants: u32, what: &str) -> Result<u32, String> {
        let index = self.u32();
        if index >= variants {
            return Err(format!("{what}: variant {index} of {variants}"));
        }
        Ok(index)
    }

    #[inline(always)]
    fn status(&mut self) -> Result<Status, String> {
        let code = self.u16();
        Status::from_code(code).ok_or_else(|| format!("unknown status code {code}"))
    }
}

fn account_kind(index: u32) -> AccountKind {
    match index {
        0 => AccountKind::Customer,
        1 => AccountKind::Merchant,
        _ => AccountKind::House,
    }
}

fn account_status(index: u32) -> AccountStatus {
    match index {
        0 => AccountStatus::Active,
        1 => AccountStatus::Frozen,
        _ => AccountStatus::Closed,
    }
}

fn hold_state(index: u32) -> HoldState {
    match index {
        0 => HoldState::Pending,
        1 => HoldState::Posted,
        2 => HoldState::Voided,
        _ => HoldState::Expired,
    }
}

fn instrument_kind(index: u32) -> InstrumentKind {
    match index {
        0 => InstrumentKind::Card,
        _ => InstrumentKind::BankAccount,
    }
}

fn instrument_state(index: u32) -> InstrumentState {
    match index {
        0 => InstrumentState::Unverified,
        1 => InstrumentState::Verified,
        2 => InstrumentState::Failed,
        _ => InstrumentState::Unbound,
    }
}

fn code_state(index: u32) -> PaymentCodeState {
    match index {
        0 => PaymentCodeState::Live,
        1 => PaymentCodeState::Used,
        _ => PaymentCodeState::Expired,
    }
}

#[inline]
pub(super) fn put_account(account: &Account, bytes: &mut [u8; ACCOUNT_BYTES]) {
    Put { bytes, at: 0 }
        .u64(account.id.0)
        .u64(account.owner)
        .bytes(&account.balance.to_le_bytes())
        .u64(account.debits_pending)
        .u64(account.credits_pending)
        .u16(account.currency.numeric())
        .u32(account.kind as u32)
        .u32(account.status as u32)
        .u8(account.kyc_tier)
        .u16(account.mcc)
        .u16(account.holds_pending)
        .u8(account.codes_live)
        .done();
}

#[inline]
pub(super) fn take_account(bytes: &[u8; ACCOUNT_BYTES]) -> Result<Account, String> {
    let mut take = Take { bytes, at: 0 };
    Ok(Account {
        id: AccountId(take.u64()),
        owner: take.u64(),
        balance: take.i64(),
        debits_pending: take.u64(),
        credits_pending: take.u64(),
        currency: Currency::from_raw(take.u16()),
        kind: account_kind(take.variant(3, "account kind")?),
        status: account_status(take.variant(3, "account status")?),
        kyc_tier: take.u8(),
        mcc: take.u16(),
        holds_pending: take.u16(),
        codes_live: take.u8(),
    })
}

#[inline]
pub(super) fn put_hold(hold: &Hold, bytes: &mut [u8; HOLD_BYTES]) {
    Put { bytes, at: 0 }
        .u128(hold.id.0)
        .u32(hold.account_slot)
        .u32(hold.house_slot)
        .u64(hold.amount)
        .u64(hold.expires_at)
        .u32(hold.state as u32)
        .done();
}

#[inline]
pub(super) fn take_hold(bytes: &[u8; HOLD_BYTES]) -> Result<Hold, String> {
    let mut take = Take { bytes, at: 0 };
    Ok(Hold {
        id: CommandId(take.u128()),
        account_slot: take.u32(),
        house_slot: take.u32(),
        amount: take.u64(),
        expires_at: take.u64(),
        state: hold_state(take.variant(4, "hold state")?),
    })
}

/// A hold-expiry or FX-quote-expiry entry: (time, id).
#[inline]
pub(super) fn put_expiry(entry: &(u64, CommandId), bytes: &mut [u8; EXPIRY_BYTES]) {
    Put { bytes, at: 0 }.u64(entry.0).u128(entry.1 .0).done();
}

#[inline]
pub(super) fn take_expiry(bytes: &[u8; EXPIRY_BYTES]) -> (u64, CommandId) {
    let mut take = Take { bytes, at: 0 };
    (take.u64(), CommandId(take.u128()))
}

#[inline]
pub(super) fn put_merchant_key(entry: &(MerchantKey, u32), bytes: &mut [u8; MERCHANT_KEY_BYTES]) {
    Put { bytes, at: 0 }.u128(entry.0 .0).u32(entry.1).done();
}

#[inline]
pub(super) fn take_merchant_key(bytes: &[u8; MERCHANT_KEY_BYTES]) -> (MerchantKey, u32) {
    let mut take = Take { bytes, at: 0 };
    (MerchantKey(take.u128()), take.u32())
}

#[inline]
pub(super) fn put_payment_code(code: &PaymentCode, bytes: &mut [u8; PAYMENT_CODE_BYTES]) {
    Put { bytes, at: 0 }
        .u64(code.code)
        .u32(code.customer_slot)
        .u64(code.expires_at)
        .u32(code.state as u32)
        .done();
}

#[inline]
pub(super) fn take_payment_code(bytes: &[u8; PAYMENT_CODE_BYTES]) -> Result<PaymentCode, String> {
    let mut take = Take { bytes, at: 0 };
    Ok(PaymentCode {
        code: take.u64(),
        customer_slot: take.u32(),
        expires_at: take.u64(),
        state: code_state(take.variant(3, "payment code state")?),
    })
}

/// A code-expiry entry: (time, code).
#[inline]
pub(super) fn put_code_expiry(entry: &(u64, u64), bytes: &mut [u8; CODE_EXPIRY_BYTES]) {
    Put { bytes, at: 0 }.u64(entry.0).u64(entry.1).done();
}

#[inline]
pub(super) fn take_code_expiry(bytes: &[u8; CODE_EXPIRY_BYTES]) -> (u64, u64) {
    let mut take = Take { bytes, at: 0 };
    (take.u64(), take.u64())
}

#[inline]
pub(super) fn put_payment(payment: &Payment, bytes: &mut [u8; PAYMENT_BYTES]) {
    Put { bytes, at: 0 }
        .u128(payment.id.0)
        .u32(payment.payer_slot)
        .u32(payment.merchant_slot)
        .u64(payment.amount)
        .u64(payment.refunded)
        .u16(payment.mcc)
        .u64(payment.timestamp)
        .done();
}

#[inline]
pub(super) fn take_payment(bytes: &[u8; PAYMENT_BYTES]) -> Payment {
    let mut take = Take { bytes, at: 0 };
    Payment {
        id: CommandId(take.u128()),
        payer_slot: take.u32(),
        merchant_slot: take.u32(),
        amount: take.u64(),
        refunded: take.u64(),
        mcc: take.u16(),
        timestamp: take.u64(),
    }
}

/// An idempotency record with its command id.
#[inline]
pub(super) fn put_record(
    (id, record): &(CommandId, IdempotencyRecord),
    bytes: &mut [u8; RECORD_BYTES],
) {
    Put { bytes, at: 0 }
        .u128(id.0)
        .u64(record.fingerprint)
        .u16(record.status.code())
        .u64(record.timestamp)
        .done();
}

#[inline]
pub(super) fn take_record(
    bytes: &[u8; RECORD_BYTES],
) -> Result<(CommandId, IdempotencyRecord), String> {
    let mut take = Take { bytes, at: 0 };
    Ok((
        CommandId(take.u128()),
        IdempotencyRecord {
            fingerprint: take.u64(),
            status: take.status()?,
            timestamp: take.u64(),
        },
    ))
}

/// An instrument with its owner.
#[inline]
pub(super) fn put_instrument(
    (owner, instrument): &(u64, Instrument),
    bytes: &mut [u8; INSTRUMENT_BYTES],
) {
    Put { bytes, at: 0 }
        .u64(*owner)
        .u32(instrument.number)
        .u32(instrument.kind as u32)
        .bytes(&instrument.token.0)
        .bytes(&instrument.bank.0)
        .bytes(&instrument.country)
        .bytes(&instrument.last_four)
        .u16(instrument.currency.numeric())
        .u32(instrument.state as u32)
        .u64(instrument.bound_at)
        .u64(instrument.changed_at)
        .done();
}

#[inline]
pub(super) fn take_instrument(bytes: &[u8; INSTRUMENT_BYTES]) -> Result<(u64, Instrument), String> {
    let mut take = Take { bytes, at: 0 };
    Ok((
        take.u64(),
        Instrument {
            number: take.u32(),
            kind: instrument_kind(take.variant(2, "instrument kind")?),
            token: InstrumentText(take.array()),
            bank: InstrumentText(take.array()),
            country: take.array(),
            last_four: take.array(),
            currency: Currency::from_raw(take.u16()),
            state: instrument_state(take.variant(4, "instrument state")?),
            bound_at: take.u64(),
            changed_at: take.u64(),
        },
    ))
}
