//! FX: rates, locked quotes, conversions and cross-currency QR payments.
//!
//! A customer's wallet holds one account per currency. A conversion moves
//! value between two accounts of one owner as same-currency legs against
//! the house, all applied or none:
//!
//! ```text
//! from (A)  --net-->  FxLiquidity(A)        FxLiquidity(B)  --receive-->  to (B)
//! from (A)  --fee-->  FxRevenue(A)
//! ```
//!
//! so money is conserved in each currency and the spread is visible as FX
//! revenue. A cross-currency QR payment is the same with the merchant's
//! account as `to`. docs/fx.md has the rules; this module has the state and
//! the arithmetic, [`apply`] the FX command handlers and the cross-currency
//! parts of a QR payment's and a refund's halves (`ledger/halves.rs`).
//!
//! # Arithmetic and rounding
//! A mid rate is `mantissa / 10^scale` (rust_decimal's representation, see
//! [`FxMid::to_decimal`]). A conversion turns it into an exact fraction of
//! minor units ([`Price`]) and works in `u128` integers, so nothing is ever
//! rounded except where this says:
//! - the fee is `ceil(pay * spread_bps / 10_000)` (the house's spread is never
//!   rounded away);
//! - what the customer receives is `floor(net * price)` (the customer never
//!   receives a fraction the house did not get);
//! - for "I want to receive Y", `net = ceil(Y / price)` and `pay` is the
//!   least amount whose fee leaves `net`.

pub mod apply;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use crate::command::{AccountId, CommandId, FxAmounts, FxMid, FxSide, FxSource, HouseRole};
use crate::currency::Currency;
use crate::limits;
use crate::status::Status;

impl FxMid {
    /// Whether the rate is positive with at most `FX_RATE_SCALE_MAX` places.
    pub fn is_valid(self) -> bool {
        self.mantissa > 0 && self.scale <= limits::FX_RATE_SCALE_MAX
    }

    /// The rate as a decimal.
    pub fn to_decimal(self) -> Option<Decimal> {
        if !self.is_valid() {
            return None;
        }
        Decimal::try_from_i128_with_scale(i128::from(self.mantissa), u32::from(self.scale)).ok()
    }

    /// A positive decimal as a rate (trailing zeros dropped), if its
    /// mantissa fits 64 bits and it has at most `FX_RATE_SCALE_MAX` places.
    pub fn from_decimal(value: Decimal) -> Option<FxMid> {
        let value = value.normalize();
        if value <= Decimal::ZERO {
            return None;
        }
        let mantissa = u64::try_from(value.mantissa()).ok()?;
        let scale = u8::try_from(value.scale()).ok()?;
        let mid = FxMid { mantissa, scale };
        mid.is_valid().then_some(mid)
    }
}

/// An exact price in minor units: `receive = floor(net * num / den)`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Price {
    pub num: u128,
    pub den: u128,
}

fn pow10(exponent: u32) -> Option<u128> {
    10u128.checked_pow(exponent)
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Price {
    /// The price of `from` minor units in `to` minor units, for a rate set
    /// as one `from` = `mid` `to` (`inverse` false) or one `to` = `mid`
    /// `from` (`inverse` true).
    pub fn new(mid: FxMid, inverse: bool, from: Currency, to: Currency) -> Option<Price> {
        if !mid.is_valid() {
            return None;
        }
        let mantissa = u128::from(mid.mantissa);
        let scale = u32::from(mid.scale);
        let (num, den) = if inverse {
            (
                pow10(scale + to.minor_units())?,
                mantissa.checked_mul(pow10(from.minor_units())?)?,
            )
        } else {
            (
                mantissa.checked_mul(pow10(to.minor_units())?)?,
                pow10(scale + from.minor_units())?,
            )
        };
        let divisor = gcd(num, den);
        Some(Price {
            num: num / divisor,
            den: den / divisor,
        })
    }
}

fn div_ceil(a: u128, b: u128) -> u128 {
    a / b + u128::from(a % b != 0)
}

/// The fee on `pay`: `ceil(pay * spread_bps / 10_000)`.
pub fn spread_fee(pay: u64, spread_bps: u16) -> u64 {
    // pay < 2^64 and spread < 10_000, so the product fits and the result is
    // at most pay.
    div_ceil(u128::from(pay) * u128::from(spread_bps), 10_000) as u64
}

/// Pay, fee and receive of a conversion (see the module docs for the
/// rounding). Refuses amounts that give nothing or do not fit a balance.
pub fn price_amounts(
    price: Price,
    side: FxSide,
    amount: u64,
    spread_bps: u16,
) -> Result<(u64, u64, u64), Status> {
    debug_assert!(spread_bps < 10_000);
    let too_large = Status::AmountTooLarge;
    match side {
        FxSide::Pay => {
            let pay = amount;
            let fee = spread_fee(pay, spread_bps);
            let net = pay - fee;
            let receive = u128::from(net).checked_mul(price.num).ok_or(too_large)? / price.den;
            if receive == 0 {
                return Err(Status::FxAmountTooSmall);
            }
            let receive = u64::try_from(receive)
                .ok()
                .filter(|&receive| receive <= limits::AMOUNT_MAX)
                .ok_or(too_large)?;
            Ok((pay, fee, receive))
        }
        FxSide::Receive => {
            let receive = amount;
            let net = div_ceil(
                u128::from(receive)
                    .checked_mul(price.den)
                    .ok_or(too_large)?,
                price.num,
            );
            // The least pay with pay - ceil(pay * spread) >= net is at least
            // ceil(net / (1 - spread)) and at most 2 above it.
            let keep = 10_000 - u128::from(spread_bps);
            let least = div_ceil(net.checked_mul(10_000).ok_or(too_large)?, keep);
            for pay in least..least + 3 {
                let candidate = u64::try_from(pay)
                    .ok()
                    .filter(|&pay| pay <= limits::AMOUNT_MAX)
                    .ok_or(too_large)?;
                let fee = spread_fee(candidate, spread_bps);
                if u128::from(candidate - fee) >= net {
                    // The house keeps `pay - net` >= the spread's fee.
                    let fee = candidate - net as u64;
                    return Ok((candidate, fee, receive));
                }
            }
            // Unreachable (see above); refuse rather than guess.
            Err(Status::Overflow)
        }
    }
}

/// One rate of the table.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub struct FxRate {
    pub base: Currency,
    pub quote: Currency,
    pub mid: FxMid,
    pub spread_bps: u16,
    pub source: FxSource,
    pub set_at: u64,
    pub valid_until: u64,
}

/// Where a quote is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub enum FxQuoteState {
    Open,
    Used,
    Expired,
}

/// A locked quote: the conversion it will execute, at exactly these amounts.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub struct FxQuoteRecord {
    pub id: CommandId,
    pub from_slot: u32,
    pub to_slot: u32,
    pub amounts: FxAmounts,
    pub state: FxQuoteState,
}

/// The payer side of a cross-currency payment, for refunds at the original
/// rate: what went to FX liquidity and to FX revenue, and how much of each
/// has been returned.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, bincode::Encode, bincode::Decode)]
pub struct FxPaymentLegs {
    pub net: u64,
    pub fee: u64,
    pub net_refunded: u64,
    pub fee_refunded: u64,
    /// The payment's amount (merchant currency) and how much of it has been
    /// refunded: with sharded execution the payer's shard keeps its own
    /// copy of the legs and works out its share of a refund from these.
    pub amount: u64,
    pub refunded: u64,
}

impl FxPaymentLegs {
    /// The legs of a cross-currency payment at these amounts.
    pub fn of(amounts: &FxAmounts) -> FxPaymentLegs {
        FxPaymentLegs {
            net: amounts.pay - amounts.fee,
            fee: amounts.fee,
            net_refunded: 0,
            fee_refunded: 0,
            amount: amounts.receive,
            refunded: 0,
        }
    }

    /// What a refund of `amount` (merchant currency) gives back to the payer:
    /// the same share of what they paid (net and fee, at the original rate),
    /// to the minor unit once the payment is refunded in full.
    pub(crate) fn refund(&self, amount: u64) -> Result<FxRefund, Status> {
        // The caller checked the refund against what is left; a record that
        // says otherwise (corrupt) refuses the refund rather than underflow.
        let refunded = self
            .refunded
            .checked_add(amount)
            .filter(|&refunded| refunded <= self.amount && self.amount > 0)
            .ok_or(Status::Overflow)?;
        let share = |part: u64| -> u64 {
            // part * refunded / amount <= part: fits.
            (u128::from(part) * u128::from(refunded) / u128::from(self.amount)) as u64
        };
        let net_refunded = share(self.net);
        let fee_refunded = share(self.fee);
        let net_back = net_refunded
            .checked_sub(self.net_refunded)
            .ok_or(Status::Overflow)?;
        let fee_back = fee_refunded
            .checked_sub(self.fee_refunded)
            .ok_or(Status::Overflow)?;
        Ok(FxRefund {
            net_back,
            fee_back,
            after: FxPaymentLegs {
                net_refunded,
                fee_refunded,
                refunded,
                ..*self
            },
        })
    }
}

/// A refund's share of a cross-currency payment's legs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct FxRefund {
    pub(crate) net_back: u64,
    pub(crate) fee_back: u64,
    /// The legs once the refund is applied.
    pub(crate) after: FxPaymentLegs,
}

/// Everything FX keeps. Ordered maps only: iteration order is part of
/// decisions (the rate table's index) and of the digest.
#[derive(Clone, Debug, Default)]
pub(crate) struct FxState {
    pub(crate) rates: BTreeMap<(Currency, Currency), FxRate>,
    /// Per currency: how far below zero its FX liquidity account may go.
    pub(crate) floors: BTreeMap<Currency, u64>,
    pub(crate) quotes: BTreeMap<CommandId, FxQuoteRecord>,
    /// (time, quote): at a quote's expiry it stops being open; at expiry
    /// plus `FX_QUOTE_MEMORY_NS` it is forgotten.
    pub(crate) quote_expiries: BTreeSet<(u64, CommandId)>,
    /// Open quotes per paying slot (rebuilt from `quotes` on decode).
    pub(crate) quotes_open: BTreeMap<u32, u8>,
    /// Cross-currency payments by command id, forgotten with the payment.
    pub(crate) payments: BTreeMap<CommandId, FxPaymentLegs>,
}

/// Whether `id` is the FX liquidity account of some currency.
pub fn is_liquidity(id: AccountId) -> bool {
    id.is_house() && (id.0 >> 48) & 0xFF == HouseRole::FxLiquidity as u64
}
