//! A command's bytes, written and read field by field.
//!
//! The bytes are exactly those bincode gives with the log's settings
//! (fixed-width little-endian integers; an enum as its variant index, u32;
//! a `u128` as 16 bytes; an `Option` as a tag byte 0 or 1, then the value;
//! a `bool` as one byte 0 or 1; arrays without a length), so the log record
//! and the fingerprint are unchanged: old logs read, and a retry of a
//! command logged or checkpointed before still matches its fingerprint.
//! Tests compare every kind and every enum value of every field with
//! bincode, both ways, and random bytes with bincode's reader.
//!
//! Going through bincode cost a writer or reader call per field (about 10
//! per command), on the sequencer's ordered path (every batch is encoded
//! before its fsync), on the connection tasks (the fingerprint) and in
//! recovery (docs/benchmarks.md, "The log record's commands field by
//! field").
//!
//! The reader refuses what bincode refused, in the same order and with the
//! same error (`bincode::error::DecodeError`, whose text the log record's
//! `BadCommand` carries): bytes missing (`UnexpectedEnd`, counting the bytes
//! the field being read lacks), an enum variant past the last
//! (`UnexpectedVariant`), a bool other than 0 or 1 (`InvalidBooleanValue`).
//! What bincode accepted it accepts (a currency code is any u16; the
//! ledger checks it).

use bincode::error::{AllowedEnumVariants, DecodeError};

use crate::command::{
    AccountId, AccountKind, Command, CommandId, CommandKind, FxMid, FxOrder, FxRateSet, FxSide,
    FxSource, MerchantKey, OpenAccount, RiskContext, QR_MERCHANT_KEYS_MAX,
};
use crate::currency::Currency;
use crate::instrument::{InstrumentBind, InstrumentId, InstrumentKind, InstrumentText};

/// Bytes of the largest command: id 16, kind tag 4 and `PayMerchantQr`'s
/// fields (payer 8, keys 4 x 16, amount 8, fee 8, currency 2, mcc 2, risk
/// context 15). Tested against every kind.
pub const COMMAND_BYTES_MAX: usize = 127;

/// Bytes of the largest kind alone (no id).
pub const KIND_BYTES_MAX: usize = COMMAND_BYTES_MAX - 16;

/// Variant counts, as bincode's derive numbers them (declaration order).
const COMMAND_KIND_VARIANTS: u32 = 26;
const ACCOUNT_KIND_VARIANTS: u32 = 3;
const FX_SIDE_VARIANTS: u32 = 2;
const INSTRUMENT_KIND_VARIANTS: u32 = 2;

/// Writes fields one after the other into a command's buffer. Inlined with
/// constant offsets (each kind's fields have fixed sizes), the bounds
/// checks fold away.
struct Put<'a> {
    bytes: &'a mut [u8; COMMAND_BYTES_MAX],
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

    #[inline(always)]
    fn account(&mut self, account: AccountId) -> &mut Self {
        self.u64(account.0)
    }

    #[inline(always)]
    fn currency(&mut self, currency: Currency) -> &mut Self {
        self.u16(currency.numeric())
    }

    #[inline(always)]
    fn bool(&mut self, value: bool) -> &mut Self {
        self.u8(u8::from(value))
    }

    #[inline(always)]
    fn context(&mut self, context: &RiskContext) -> &mut Self {
        self.u64(context.device)
            .bytes(&context.latitude_centidegrees.to_le_bytes())
            .bytes(&context.longitude_centidegrees.to_le_bytes())
            .bytes(&context.country)
            .bool(context.step_up_verified)
    }

    #[inline(always)]
    fn instrument(&mut self, instrument: InstrumentId) -> &mut Self {
        self.u64(instrument.owner).u32(instrument.number)
    }

    #[inline(always)]
    fn order(&mut self, order: &FxOrder) -> &mut Self {
        self.account(order.from)
            .account(order.to)
            .u64(order.amount)
            .u32(order.side as u32)
    }
}

/// Writes `kind` (variant index, then its fields) from `put`'s position on.
#[inline(always)]
fn put_kind(put: &mut Put<'_>, kind: &CommandKind) {
    match kind {
        CommandKind::OpenAccount(open) => {
            put.u32(0)
                .account(open.account)
                .u64(open.owner)
                .u32(open.kind as u32)
                .currency(open.currency)
                .u8(open.kyc_tier)
                .u16(open.mcc);
        }
        CommandKind::Deposit {
            account,
            amount,
            currency,
        } => {
            put.u32(1)
                .account(*account)
                .u64(*amount)
                .currency(*currency);
        }
        CommandKind::Transfer {
            from,
            to,
            amount,
            currency,
            context,
        } => {
            put.u32(2)
                .account(*from)
                .account(*to)
                .u64(*amount)
                .currency(*currency)
                .context(context);
        }
        CommandKind::WithdrawHold {
            account,
            amount,
            currency,
            timeout_ms,
            context,
        } => {
            put.u32(3)
                .account(*account)
                .u64(*amount)
                .currency(*currency)
                .u64(*timeout_ms)
                .context(context);
        }
        CommandKind::WithdrawPost { hold } => {
            put.u32(4).u128(hold.0);
        }
        CommandKind::WithdrawVoid { hold } => {
            put.u32(5).u128(hold.0);
        }
        CommandKind::Freeze { account } => {
            put.u32(6).account(*account);
        }
        CommandKind::Unfreeze { account } => {
            put.u32(7).account(*account);
        }
        CommandKind::Close { account } => {
            put.u32(8).account(*account);
        }
        CommandKind::SetKycTier { account, tier } => {
            put.u32(9).account(*account).u8(*tier);
        }
        CommandKind::RegisterMerchantKey { merchant, key } => {
            put.u32(10).account(*merchant).u128(key.0);
        }
        CommandKind::PayMerchantQr {
            payer,
            keys,
            amount,
            fee,
            currency,
            mcc,
            context,
        } => {
            put.u32(11).account(*payer);
            for key in keys {
                put.u128(key.0);
            }
            put.u64(*amount)
                .u64(*fee)
                .currency(*currency)
                .u16(*mcc)
                .context(context);
        }
        CommandKind::IssuePaymentCode {
            customer,
            code,
            lifetime_ms,
        } => {
            put.u32(12).account(*customer).u64(*code).u64(*lifetime_ms);
        }
        CommandKind::ChargePaymentCode {
            merchant,
            code,
            amount,
            currency,
            context,
        } => {
            put.u32(13)
                .account(*merchant)
                .u64(*code)
                .u64(*amount)
                .currency(*currency)
                .context(context);
        }
        CommandKind::Refund {
            payment,
            amount,
            currency,
        } => {
            put.u32(14).u128(payment.0).u64(*amount).currency(*currency);
        }
        CommandKind::SetBudget {
            account,
            category,
            budget,
        } => {
            put.u32(15).account(*account).u8(*category);
            match budget {
                None => put.u8(0),
                Some(budget) => put.u8(1).u64(*budget),
            };
        }
        CommandKind::SetFxRate(rate) => {
            put.u32(16)
                .currency(rate.base)
                .currency(rate.quote)
                .u64(rate.mid.mantissa)
                .u8(rate.mid.scale)
                .u16(rate.spread_bps)
                .u64(rate.valid_ms)
                .bytes(&rate.source.0);
        }
        CommandKind::SetFxFloor { currency, limit } => {
            put.u32(17).currency(*currency).u64(*limit);
        }
        CommandKind::FxQuote { order, ttl_ms } => {
            put.u32(18).order(order).u64(*ttl_ms);
        }
        CommandKind::FxConvertQuote { quote, from } => {
            put.u32(19).u128(quote.0).account(*from);
        }
        CommandKind::FxConvert(order) => {
            put.u32(20).order(order);
        }
        CommandKind::BindInstrument(bind) => {
            put.u32(21)
                .account(bind.customer)
                .u32(bind.number)
                .u32(bind.kind as u32)
                .bytes(&bind.token.0)
                .bytes(&bind.bank.0)
                .bytes(&bind.country)
                .bytes(&bind.last_four)
                .currency(bind.currency);
        }
        CommandKind::VerifyInstrument { instrument, passed } => {
            put.u32(22).instrument(*instrument).bool(*passed);
        }
        CommandKind::UnbindInstrument { instrument } => {
            put.u32(23).instrument(*instrument);
        }
        CommandKind::DepositFrom {
            account,
            amount,
            currency,
            instrument,
        } => {
            put.u32(24)
                .account(*account)
                .u64(*amount)
                .currency(*currency)
                .instrument(*instrument);
        }
        CommandKind::WithdrawHoldTo {
            account,
            amount,
            currency,
            timeout_ms,
            context,
            instrument,
        } => {
            put.u32(25)
                .account(*account)
                .u64(*amount)
                .currency(*currency)
                .u64(*timeout_ms)
                .context(context)
                .instrument(*instrument);
        }
    }
}

/// Writes `command` (id, then kind) into `buffer`; returns the bytes used.
#[inline]
pub fn put_command(command: &Command, buffer: &mut [u8; COMMAND_BYTES_MAX]) -> usize {
    let mut put = Put {
        bytes: buffer,
        at: 0,
    };
    put.u128(command.id.0);
    put_kind(&mut put, &command.kind);
    put.at
}

/// Writes `kind` alone (what the fingerprint hashes) into `buffer`; returns
/// the bytes used.
#[inline]
pub fn put_command_kind(kind: &CommandKind, buffer: &mut [u8; COMMAND_BYTES_MAX]) -> usize {
    let mut put = Put {
        bytes: buffer,
        at: 0,
    };
    put_kind(&mut put, kind);
    put.at
}

/// Appends `command`'s bytes to `out`.
#[inline]
pub fn encode_command(command: &Command, out: &mut Vec<u8>) {
    let mut buffer = [0u8; COMMAND_BYTES_MAX];
    let len = put_command(command, &mut buffer);
    out.extend_from_slice(&buffer[..len]);
}

/// Why bytes are not a command; small, so the hot path's `Result` stays
/// small. [`CommandDecodeError::to_bincode`] gives bincode's own error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandDecodeError {
    /// The field being read needs `additional` more bytes than are left.
    UnexpectedEnd { additional: usize },
    /// An enum's variant index past its last variant.
    UnexpectedVariant { what: Variant, found: u32 },
    /// A bool byte other than 0 or 1.
    InvalidBooleanValue(u8),
}

/// The enums a command holds, for [`CommandDecodeError::UnexpectedVariant`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    CommandKind,
    AccountKind,
    FxSide,
    InstrumentKind,
    /// `SetBudget`'s `Option<u64>` tag.
    OptionU64,
}

impl CommandDecodeError {
    /// The error bincode's reader gives for the same bytes.
    pub fn to_bincode(self) -> DecodeError {
        match self {
            CommandDecodeError::UnexpectedEnd { additional } => {
                DecodeError::UnexpectedEnd { additional }
            }
            CommandDecodeError::InvalidBooleanValue(value) => {
                DecodeError::InvalidBooleanValue(value)
            }
            CommandDecodeError::UnexpectedVariant { what, found } => {
                // The names and ranges bincode's derive and its `Option`
                // impl write into the error.
                let (type_name, allowed): (&'static str, &'static AllowedEnumVariants) = match what
                {
                    Variant::CommandKind => (
                        "CommandKind",
                        &AllowedEnumVariants::Range {
                            min: 0,
                            max: COMMAND_KIND_VARIANTS - 1,
                        },
                    ),
                    Variant::AccountKind => (
                        "AccountKind",
                        &AllowedEnumVariants::Range {
                            min: 0,
                            max: ACCOUNT_KIND_VARIANTS - 1,
                        },
                    ),
                    Variant::FxSide => (
                        "FxSide",
                        &AllowedEnumVariants::Range {
                            min: 0,
                            max: FX_SIDE_VARIANTS - 1,
                        },
                    ),
                    Variant::InstrumentKind => (
                        "InstrumentKind",
                        &AllowedEnumVariants::Range {
                            min: 0,
                            max: INSTRUMENT_KIND_VARIANTS - 1,
                        },
                    ),
                    Variant::OptionU64 => (
                        std::any::type_name::<Option<u64>>(),
                        &AllowedEnumVariants::Range { min: 0, max: 1 },
                    ),
                };
                DecodeError::UnexpectedVariant {
                    type_name,
                    allowed,
                    found,
                }
            }
        }
    }
}

impl std::fmt::Display for CommandDecodeError {
    /// bincode's text for the same error (what logs and tests saw before).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_bincode().fmt(f)
    }
}

impl std::error::Error for CommandDecodeError {}

/// Reads fields one after the other; each read checks that its bytes are
/// there, as bincode's slice reader does.
struct Take<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Take<'_> {
    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CommandDecodeError> {
        let Some(field) = self.bytes.get(self.at..self.at + N) else {
            return Err(CommandDecodeError::UnexpectedEnd {
                additional: N - (self.bytes.len() - self.at),
            });
        };
        let mut out = [0u8; N];
        out.copy_from_slice(field);
        self.at += N;
        Ok(out)
    }

    #[inline(always)]
    fn u8(&mut self) -> Result<u8, CommandDecodeError> {
        Ok(self.array::<1>()?[0])
    }

    #[inline(always)]
    fn u16(&mut self) -> Result<u16, CommandDecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    #[inline(always)]
    fn i16(&mut self) -> Result<i16, CommandDecodeError> {
        Ok(i16::from_le_bytes(self.array()?))
    }

    #[inline(always)]
    fn u32(&mut self) -> Result<u32, CommandDecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    #[inline(always)]
    fn u64(&mut self) -> Result<u64, CommandDecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    #[inline(always)]
    fn u128(&mut self) -> Result<u128, CommandDecodeError> {
        Ok(u128::from_le_bytes(self.array()?))
    }

    #[inline(always)]
    fn account(&mut self) -> Result<AccountId, CommandDecodeError> {
        Ok(AccountId(self.u64()?))
    }

    #[inline(always)]
    fn currency(&mut self) -> Result<Currency, CommandDecodeError> {
        Ok(Currency::from_raw(self.u16()?))
    }

    #[inline(always)]
    fn bool(&mut self) -> Result<bool, CommandDecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(CommandDecodeError::InvalidBooleanValue(value)),
        }
    }

    /// An enum's variant index (u32), which must be below `variants`.
    #[inline(always)]
    fn variant(&mut self, variants: u32, what: Variant) -> Result<u32, CommandDecodeError> {
        let found = self.u32()?;
        if found >= variants {
            return Err(CommandDecodeError::UnexpectedVariant { what, found });
        }
        Ok(found)
    }

    #[inline(always)]
    fn context(&mut self) -> Result<RiskContext, CommandDecodeError> {
        Ok(RiskContext {
            device: self.u64()?,
            latitude_centidegrees: self.i16()?,
            longitude_centidegrees: self.i16()?,
            country: self.array()?,
            step_up_verified: self.bool()?,
        })
    }

    #[inline(always)]
    fn instrument(&mut self) -> Result<InstrumentId, CommandDecodeError> {
        Ok(InstrumentId {
            owner: self.u64()?,
            number: self.u32()?,
        })
    }

    #[inline(always)]
    fn order(&mut self) -> Result<FxOrder, CommandDecodeError> {
        Ok(FxOrder {
            from: self.account()?,
            to: self.account()?,
            amount: self.u64()?,
            side: match self.variant(FX_SIDE_VARIANTS, Variant::FxSide)? {
                0 => FxSide::Pay,
                _ => FxSide::Receive,
            },
        })
    }
}

/// Reads a kind (variant index, then its fields). Struct fields are read in
/// declaration order, as bincode's derive reads them.
#[inline(always)]
fn take_kind(take: &mut Take<'_>) -> Result<CommandKind, CommandDecodeError> {
    let kind = match take.variant(COMMAND_KIND_VARIANTS, Variant::CommandKind)? {
        0 => CommandKind::OpenAccount(OpenAccount {
            account: take.account()?,
            owner: take.u64()?,
            kind: match take.variant(ACCOUNT_KIND_VARIANTS, Variant::AccountKind)? {
                0 => AccountKind::Customer,
                1 => AccountKind::Merchant,
                _ => AccountKind::House,
            },
            currency: take.currency()?,
            kyc_tier: take.u8()?,
            mcc: take.u16()?,
        }),
        1 => CommandKind::Deposit {
            account: take.account()?,
            amount: take.u64()?,
            currency: take.currency()?,
        },
        2 => CommandKind::Transfer {
            from: take.account()?,
            to: take.account()?,
            amount: take.u64()?,
            currency: take.currency()?,
            context: take.context()?,
        },
        3 => CommandKind::WithdrawHold {
            account: take.account()?,
            amount: take.u64()?,
            currency: take.currency()?,
            timeout_ms: take.u64()?,
            context: take.context()?,
        },
        4 => CommandKind::WithdrawPost {
            hold: CommandId(take.u128()?),
        },
        5 => CommandKind::WithdrawVoid {
            hold: CommandId(take.u128()?),
        },
        6 => CommandKind::Freeze {
            account: take.account()?,
        },
        7 => CommandKind::Unfreeze {
            account: take.account()?,
        },
        8 => CommandKind::Close {
            account: take.account()?,
        },
        9 => CommandKind::SetKycTier {
            account: take.account()?,
            tier: take.u8()?,
        },
        10 => CommandKind::RegisterMerchantKey {
            merchant: take.account()?,
            key: MerchantKey(take.u128()?),
        },
        11 => {
            let payer = take.account()?;
            let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
            for key in &mut keys {
                *key = MerchantKey(take.u128()?);
            }
            CommandKind::PayMerchantQr {
                payer,
                keys,
                amount: take.u64()?,
                fee: take.u64()?,
                currency: take.currency()?,
                mcc: take.u16()?,
                context: take.context()?,
            }
        }
        12 => CommandKind::IssuePaymentCode {
            customer: take.account()?,
            code: take.u64()?,
            lifetime_ms: take.u64()?,
        },
        13 => CommandKind::ChargePaymentCode {
            merchant: take.account()?,
            code: take.u64()?,
            amount: take.u64()?,
            currency: take.currency()?,
            context: take.context()?,
        },
        14 => CommandKind::Refund {
            payment: CommandId(take.u128()?),
            amount: take.u64()?,
            currency: take.currency()?,
        },
        15 => CommandKind::SetBudget {
            account: take.account()?,
            category: take.u8()?,
            budget: match take.u8()? {
                0 => None,
                1 => Some(take.u64()?),
                found => {
                    return Err(CommandDecodeError::UnexpectedVariant {
                        what: Variant::OptionU64,
                        found: u32::from(found),
                    })
                }
            },
        },
        16 => CommandKind::SetFxRate(FxRateSet {
            base: take.currency()?,
            quote: take.currency()?,
            mid: FxMid {
                mantissa: take.u64()?,
                scale: take.u8()?,
            },
            spread_bps: take.u16()?,
            valid_ms: take.u64()?,
            source: FxSource(take.array()?),
        }),
        17 => CommandKind::SetFxFloor {
            currency: take.currency()?,
            limit: take.u64()?,
        },
        18 => CommandKind::FxQuote {
            order: take.order()?,
            ttl_ms: take.u64()?,
        },
        19 => CommandKind::FxConvertQuote {
            quote: CommandId(take.u128()?),
            from: take.account()?,
        },
        20 => CommandKind::FxConvert(take.order()?),
        21 => CommandKind::BindInstrument(InstrumentBind {
            customer: take.account()?,
            number: take.u32()?,
            kind: match take.variant(INSTRUMENT_KIND_VARIANTS, Variant::InstrumentKind)? {
                0 => InstrumentKind::Card,
                _ => InstrumentKind::BankAccount,
            },
            token: InstrumentText(take.array()?),
            bank: InstrumentText(take.array()?),
            country: take.array()?,
            last_four: take.array()?,
            currency: take.currency()?,
        }),
        22 => CommandKind::VerifyInstrument {
            instrument: take.instrument()?,
            passed: take.bool()?,
        },
        23 => CommandKind::UnbindInstrument {
            instrument: take.instrument()?,
        },
        24 => CommandKind::DepositFrom {
            account: take.account()?,
            amount: take.u64()?,
            currency: take.currency()?,
            instrument: take.instrument()?,
        },
        _ => CommandKind::WithdrawHoldTo {
            account: take.account()?,
            amount: take.u64()?,
            currency: take.currency()?,
            timeout_ms: take.u64()?,
            context: take.context()?,
            instrument: take.instrument()?,
        },
    };
    Ok(kind)
}

/// Reads one command from the front of `bytes`; returns it and the bytes
/// it used (what `bincode::decode_from_slice` returns for the same bytes).
#[inline]
pub fn decode_command(bytes: &[u8]) -> Result<(Command, usize), CommandDecodeError> {
    match bytes.first_chunk::<COMMAND_BYTES_MAX>() {
        // At least the largest command's bytes (every command of a batch
        // but the last one or two): no field can run short, and with the
        // window's length a constant the length checks fold away.
        Some(window) => take_command(window),
        None => take_command(bytes),
    }
}

#[inline(always)]
fn take_command(bytes: &[u8]) -> Result<(Command, usize), CommandDecodeError> {
    let mut take = Take { bytes, at: 0 };
    let id = CommandId(take.u128()?);
    let kind = take_kind(&mut take)?;
    Ok((Command { id, kind }, take.at))
}

/// Every kind, each with small and with extreme field values, and every
/// value of every enum, option and bool field; for the tests that compare
/// the codec with bincode (here, the fingerprint's, the log record's).
#[cfg(test)]
pub(crate) fn every_kind_and_variant() -> Vec<Command> {
    use crate::command::{RiskContext as Context, QR_MERCHANT_KEYS_MAX as KEYS};
    let small = AccountId(1);
    let large = AccountId(u64::MAX);
    let full = Context {
        device: u64::MAX,
        latitude_centidegrees: -9_000,
        longitude_centidegrees: 18_000,
        country: *b"CN",
        step_up_verified: true,
    };
    let contexts = [Context::NONE, full];
    let token = InstrumentText::new("tok_9f8e7d6c5b4a").unwrap_or_default();
    let bank = InstrumentText::new("Bank of China").unwrap_or_default();
    let instrument = InstrumentId {
        owner: u64::MAX,
        number: u32::MAX,
    };
    let mut kinds = Vec::new();
    for (account_kind, currency) in [
        (AccountKind::Customer, Currency::CNY),
        (AccountKind::Merchant, Currency::JPY),
        (AccountKind::House, Currency::from_raw(u16::MAX)),
    ] {
        kinds.push(CommandKind::OpenAccount(OpenAccount {
            account: large,
            owner: 77,
            kind: account_kind,
            currency,
            kyc_tier: u8::MAX,
            mcc: 5_411,
        }));
    }
    for context in contexts {
        kinds.push(CommandKind::Transfer {
            from: small,
            to: large,
            amount: 150,
            currency: Currency::CNY,
            context,
        });
        kinds.push(CommandKind::WithdrawHold {
            account: small,
            amount: u64::MAX,
            currency: Currency::BHD,
            timeout_ms: 30_000,
            context,
        });
        kinds.push(CommandKind::PayMerchantQr {
            payer: large,
            keys: [MerchantKey(u128::MAX); KEYS],
            amount: u64::MAX,
            fee: 3,
            currency: Currency::SGD,
            mcc: u16::MAX,
            context,
        });
        kinds.push(CommandKind::ChargePaymentCode {
            merchant: small,
            code: 123_456_789_012_345_678,
            amount: 99,
            currency: Currency::THB,
            context,
        });
        kinds.push(CommandKind::WithdrawHoldTo {
            account: large,
            amount: 1,
            currency: Currency::USD,
            timeout_ms: u64::MAX,
            context,
            instrument,
        });
    }
    kinds.extend([
        CommandKind::Deposit {
            account: small,
            amount: u64::MAX,
            currency: Currency::EUR,
        },
        CommandKind::WithdrawPost {
            hold: CommandId(u128::MAX),
        },
        CommandKind::WithdrawVoid {
            hold: CommandId(1 << 100 | 5),
        },
        CommandKind::Freeze { account: large },
        CommandKind::Unfreeze { account: small },
        CommandKind::Close { account: large },
        CommandKind::SetKycTier {
            account: small,
            tier: 2,
        },
        CommandKind::RegisterMerchantKey {
            merchant: large,
            key: MerchantKey::new("com.example", "M-1"),
        },
        CommandKind::PayMerchantQr {
            payer: small,
            keys: [
                MerchantKey(1),
                MerchantKey::NONE,
                MerchantKey(u128::MAX - 1),
                MerchantKey(7),
            ],
            amount: 0,
            fee: 0,
            currency: Currency::CNY,
            mcc: 0,
            context: Context {
                device: 9,
                latitude_centidegrees: i16::MAX,
                longitude_centidegrees: -1,
                country: [0, 0],
                step_up_verified: false,
            },
        },
        CommandKind::IssuePaymentCode {
            customer: large,
            code: u64::MAX,
            lifetime_ms: 60_000,
        },
        CommandKind::Refund {
            payment: CommandId(u128::MAX),
            amount: 10,
            currency: Currency::JPY,
        },
        CommandKind::SetBudget {
            account: small,
            category: 3,
            budget: None,
        },
        CommandKind::SetBudget {
            account: large,
            category: u8::MAX,
            budget: Some(u64::MAX),
        },
        CommandKind::SetBudget {
            account: large,
            category: 0,
            budget: Some(0),
        },
        CommandKind::SetFxRate(FxRateSet {
            base: Currency::CNY,
            quote: Currency::JPY,
            mid: FxMid {
                mantissa: u64::MAX,
                scale: u8::MAX,
            },
            spread_bps: u16::MAX,
            valid_ms: u64::MAX,
            source: FxSource([u8::MAX; 8]),
        }),
        CommandKind::SetFxFloor {
            currency: Currency::USD,
            limit: u64::MAX,
        },
        CommandKind::FxConvertQuote {
            quote: CommandId(u128::MAX),
            from: large,
        },
        CommandKind::VerifyInstrument {
            instrument,
            passed: true,
        },
        CommandKind::VerifyInstrument {
            instrument: InstrumentId {
                owner: 5,
                number: 0,
            },
            passed: false,
        },
        CommandKind::UnbindInstrument { instrument },
        CommandKind::DepositFrom {
            account: small,
            amount: 5_000,
            currency: Currency::CNY,
            instrument,
        },
    ]);
    for side in [FxSide::Pay, FxSide::Receive] {
        let order = FxOrder {
            from: small,
            to: large,
            amount: u64::MAX,
            side,
        };
        kinds.push(CommandKind::FxQuote {
            order,
            ttl_ms: 10_000,
        });
        kinds.push(CommandKind::FxConvert(order));
    }
    for kind in [InstrumentKind::Card, InstrumentKind::BankAccount] {
        kinds.push(CommandKind::BindInstrument(InstrumentBind {
            customer: large,
            number: u32::MAX,
            kind,
            token,
            bank,
            country: *b"JP",
            last_four: *b"4242",
            currency: Currency::JPY,
        }));
    }
    kinds
        .into_iter()
        .enumerate()
        .map(|(index, kind)| Command::new(u128::MAX - index as u128, kind))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::storage::record::BINCODE;
    use proptest::prelude::*;

    fn bincode_bytes(command: &Command) -> Vec<u8> {
        bincode::encode_to_vec(command, BINCODE).unwrap()
    }

    /// What a reader makes of bytes: the command and the bytes used, or
    /// the error's text (what a log record's `BadCommand` carries).
    type Read = Result<(Command, usize), String>;

    /// Both readers on the same bytes: ours, then bincode's.
    fn both(bytes: &[u8]) -> (Read, Read) {
        let ours = decode_command(bytes).map_err(|error| error.to_string());
        let theirs = bincode::decode_from_slice::<Command, _>(bytes, BINCODE)
            .map_err(|error| error.to_string());
        (ours, theirs)
    }

    #[test]
    fn the_samples_hold_every_kind() {
        let names: std::collections::BTreeSet<&str> = every_kind_and_variant()
            .iter()
            .map(|command| command.kind.name())
            .collect();
        assert_eq!(names.len(), COMMAND_KIND_VARIANTS as usize);
    }

    #[test]
    fn writes_the_bytes_bincode_writes_and_reads_them_back() {
        let mut largest = 0;
        for command in every_kind_and_variant() {
            let expected = bincode_bytes(&command);
            let mut bytes = vec![0xAB]; // appends after what is there
            encode_command(&command, &mut bytes);
            assert_eq!(&bytes[1..], &expected[..], "{command:?}");
            largest = largest.max(expected.len());

            // Decoded by both readers, with bytes after it left alone (a
            // few, and more than the largest command takes).
            for after in [9, COMMAND_BYTES_MAX] {
                let mut followed = bytes.clone();
                followed.extend(std::iter::repeat_n(7, after));
                let (ours, theirs) = both(&followed[1..]);
                assert_eq!(ours, Ok((command, expected.len())));
                assert_eq!(ours, theirs);
            }
            let (ours, _) = both(&bytes[1..]);

            let mut again = Vec::new();
            encode_command(&ours.unwrap().0, &mut again);
            assert_eq!(again, expected);

            // The kind alone, as the fingerprint hashes it.
            let mut buffer = [0u8; COMMAND_BYTES_MAX];
            let len = put_command_kind(&command.kind, &mut buffer);
            assert_eq!(
                &buffer[..len],
                &bincode::encode_to_vec(command.kind, BINCODE).unwrap()[..]
            );
        }
        assert_eq!(largest, COMMAND_BYTES_MAX);
    }

    #[test]
    fn every_truncation_is_refused_as_bincode_refuses_it() {
        for command in every_kind_and_variant() {
            let bytes = bincode_bytes(&command);
            for len in 0..bytes.len() {
                let (ours, theirs) = both(&bytes[..len]);
                assert!(ours.is_err(), "{command:?} cut at {len}");
                assert_eq!(ours, theirs, "{command:?} cut at {len}");
            }
        }
        // One example spelled out: 10 of the id's 16 bytes.
        assert_eq!(
            decode_command(&[0; 10]).map_err(|error| error.to_string()),
            Err("UnexpectedEnd { additional: 6 }".to_owned())
        );
    }

    /// Every value of every byte of every sample: the same command, or the
    /// same error (variant tags past the last, bools and option tags other
    /// than 0 or 1 included).
    #[test]
    fn every_changed_byte_reads_as_bincode_reads_it() {
        for command in every_kind_and_variant() {
            let exact = bincode_bytes(&command);
            // Also with the bytes of the commands after it: the reader's
            // path for a window of at least the largest command's bytes.
            let mut followed = exact.clone();
            followed.resize(COMMAND_BYTES_MAX + 13, 0xEE);
            for bytes in [exact, followed] {
                for index in 0..bytes.len() {
                    for value in 0..=u8::MAX {
                        let mut changed = bytes.clone();
                        changed[index] = value;
                        let (ours, theirs) = both(&changed);
                        assert_eq!(ours, theirs, "{command:?} byte {index} = {value}");
                    }
                }
            }
        }
        let mut bad_kind = vec![0u8; 16];
        bad_kind.extend_from_slice(&26u32.to_le_bytes());
        assert_eq!(
            decode_command(&bad_kind).map_err(|error| error.to_string()),
            Err("UnexpectedVariant { type_name: \"CommandKind\", \
                 allowed: Range { min: 0, max: 25 }, found: 26 }"
                .to_owned())
        );
    }

    /// Bytes that start like a command: an id, a kind tag (mostly a known
    /// one), then anything.
    fn command_like() -> impl Strategy<Value = Vec<u8>> {
        (
            any::<u128>(),
            prop_oneof![9 => 0..COMMAND_KIND_VARIANTS, 1 => any::<u32>()],
            proptest::collection::vec(
                prop_oneof![3 => 0..=2u8, 1 => any::<u8>()],
                0..KIND_BYTES_MAX + 40,
            ),
        )
            .prop_map(|(id, tag, tail)| {
                let mut bytes = id.to_le_bytes().to_vec();
                bytes.extend_from_slice(&tag.to_le_bytes());
                bytes.extend_from_slice(&tail);
                bytes
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4_000))]

        /// Random bytes never panic and read as bincode reads them.
        #[test]
        fn random_bytes_read_as_bincode_reads_them(
            bytes in proptest::collection::vec(any::<u8>(), 0..2 * COMMAND_BYTES_MAX)
        ) {
            let (ours, theirs) = both(&bytes);
            prop_assert_eq!(ours, theirs);
        }

        /// Command-like bytes (most decode): the same command or error, and
        /// what decodes writes back to exactly the bytes it used.
        #[test]
        fn command_like_bytes_read_and_write_as_bincode_does(bytes in command_like()) {
            let (ours, theirs) = both(&bytes);
            prop_assert_eq!(&ours, &theirs);
            if let Ok((command, used)) = ours {
                let mut again = Vec::new();
                encode_command(&command, &mut again);
                prop_assert_eq!(&again[..], &bytes[..used]);
                prop_assert_eq!(again, bincode_bytes(&command));
            }
        }
    }
}
