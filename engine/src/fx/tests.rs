//! FX tests: rounding tables in 0, 2 and 3 decimal currencies, stale rates,
//! expired and reused quotes, liquidity floors, cross-currency QR payments
//! and their refunds, and a proptest of conservation per currency and of the
//! house never losing on the spread. `cargo test -p payrail-engine fx`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;

use super::*;
use crate::command::{
    AccountKind, Command, CommandKind, CommandResult, Detail, FxAmounts, FxOrder, FxRateSet,
    MerchantKey, OpenAccount, Query, QueryReply, QR_MERCHANT_KEYS_MAX,
};
use crate::ledger::Ledger;
use crate::storage::snapshot::{decode_state, encode_state};

const CNY: Currency = Currency::CNY;
const JPY: Currency = Currency::JPY;
const BHD: Currency = Currency::BHD;
const USD: Currency = Currency::USD;

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000 * MS;
const T0: u64 = 1_700_000_000 * SECOND;

// Owner 1 holds a wallet in four currencies; owner 2 a CNY account;
// merchants take JPY and CNY.
const W_CNY: u64 = 1_001;
const W_JPY: u64 = 1_002;
const W_BHD: u64 = 1_003;
const W_USD: u64 = 1_004;
const OTHER_JPY: u64 = 2_002;
const M_JPY: u64 = 3_001;
const M_CNY: u64 = 3_002;
const KEY_JPY: MerchantKey = MerchantKey(0x4A50);
const KEY_CNY: MerchantKey = MerchantKey(0x434E);

fn mid(text: &str) -> FxMid {
    FxMid::from_decimal(text.parse().unwrap()).unwrap()
}

fn liquidity(currency: Currency) -> AccountId {
    AccountId::house(HouseRole::FxLiquidity, currency)
}

fn revenue(currency: Currency) -> AccountId {
    AccountId::house(HouseRole::FxRevenue, currency)
}

/// A ledger, its command time, and checks after every batch.
struct Harness {
    ledger: Ledger,
    sequence: u64,
    now: u64,
    next_id: u128,
}

impl Harness {
    fn new() -> Harness {
        let mut harness = Harness {
            ledger: Ledger::default(),
            sequence: 0,
            now: T0,
            // Ids below are for tests to choose.
            next_id: 1 << 64,
        };
        for (account, owner, kind, currency, mcc) in [
            (W_CNY, 1, AccountKind::Customer, CNY, 0),
            (W_JPY, 1, AccountKind::Customer, JPY, 0),
            (W_BHD, 1, AccountKind::Customer, BHD, 0),
            (W_USD, 1, AccountKind::Customer, USD, 0),
            (OTHER_JPY, 2, AccountKind::Customer, JPY, 0),
            (M_JPY, 3, AccountKind::Merchant, JPY, 5812),
            (M_CNY, 4, AccountKind::Merchant, CNY, 5411),
        ] {
            harness.ok(CommandKind::OpenAccount(OpenAccount {
                account: AccountId(account),
                owner,
                kind,
                currency,
                kyc_tier: 0,
                mcc,
            }));
        }
        for (merchant, key) in [(M_JPY, KEY_JPY), (M_CNY, KEY_CNY)] {
            harness.ok(CommandKind::RegisterMerchantKey {
                merchant: AccountId(merchant),
                key,
            });
        }
        for (account, amount, currency) in [
            (W_CNY, 1_000_000, CNY),
            (W_JPY, 1_000_000, JPY),
            (W_BHD, 1_000_000, BHD),
            (W_USD, 1_000_000, USD),
        ] {
            harness.ok(CommandKind::Deposit {
                account: AccountId(account),
                amount,
                currency,
            });
        }
        harness
    }

    fn run_with_id(&mut self, id: u128, kind: CommandKind) -> CommandResult {
        self.sequence += 1;
        let results = self
            .ledger
            .apply_batch(self.sequence, self.now, &[Command::new(id, kind)]);
        assert!(self.ledger.is_conserved(), "{kind:?} broke conservation");
        for account in self.ledger.accounts() {
            if account.kind != AccountKind::House {
                assert!(account.available() >= 0, "{account:?}");
            } else if (account.id.0 >> 48) & 0xFF == HouseRole::FxRevenue as u64 {
                assert!(
                    account.balance >= 0,
                    "FX revenue went negative: {account:?}"
                );
            }
        }
        results[0]
    }

    fn run(&mut self, kind: CommandKind) -> CommandResult {
        let id = self.next_id;
        self.next_id += 1;
        self.run_with_id(id, kind)
    }

    fn ok(&mut self, kind: CommandKind) -> CommandResult {
        let result = self.run(kind);
        assert_eq!(result.status, Status::Ok, "{kind:?}");
        result
    }

    fn refused(&mut self, kind: CommandKind, status: Status) {
        let before = self.ledger.digest();
        let mut copy = self.ledger.clone();
        let result = self.run(kind);
        assert_eq!(result.status, status, "{kind:?}");
        // A refused command changes nothing but the record of its id: its
        // accounts and the FX state are as they were.
        copy.apply_batch(self.sequence, self.now, &[]);
        assert_eq!(
            copy.accounts(),
            self.ledger.accounts(),
            "refused {kind:?} moved money"
        );
        assert_eq!(copy.books.fx.quotes, self.ledger.books.fx.quotes);
        let _ = before;
    }

    fn balance(&self, id: AccountId) -> i64 {
        self.ledger.account(id).map_or(0, |account| account.balance)
    }

    fn user(&self, id: u64) -> i64 {
        self.balance(AccountId(id))
    }

    fn set_rate(&mut self, base: Currency, quote: Currency, text: &str, spread_bps: u16) {
        self.ok(set_rate(base, quote, text, spread_bps, 60_000));
    }

    fn floor(&mut self, currency: Currency, limit: u64) {
        self.ok(CommandKind::SetFxFloor { currency, limit });
    }

    fn advance_ms(&mut self, ms: u64) {
        self.now += ms * MS;
    }
}

fn set_rate(
    base: Currency,
    quote: Currency,
    text: &str,
    spread_bps: u16,
    valid_ms: u64,
) -> CommandKind {
    CommandKind::SetFxRate(FxRateSet {
        base,
        quote,
        mid: mid(text),
        spread_bps,
        valid_ms,
        source: FxSource::new("TEST").unwrap(),
    })
}

fn order(from: u64, to: u64, amount: u64, side: FxSide) -> FxOrder {
    FxOrder {
        from: AccountId(from),
        to: AccountId(to),
        amount,
        side,
    }
}

fn convert(from: u64, to: u64, amount: u64, side: FxSide) -> CommandKind {
    CommandKind::FxConvert(order(from, to, amount, side))
}

fn quote(from: u64, to: u64, amount: u64, side: FxSide, ttl_ms: u64) -> CommandKind {
    CommandKind::FxQuote {
        order: order(from, to, amount, side),
        ttl_ms,
    }
}

fn pay_qr(payer: u64, key: MerchantKey, amount: u64, currency: Currency) -> CommandKind {
    let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
    keys[0] = key;
    CommandKind::PayMerchantQr {
        payer: AccountId(payer),
        keys,
        amount,
        fee: 0,
        currency,
        mcc: 0,
        context: crate::command::RiskContext::NONE,
    }
}

fn amounts(result: &CommandResult) -> FxAmounts {
    match result.detail {
        Detail::FxConversion(amounts) => amounts,
        _ => panic!("no FX detail in {result:?}"),
    }
}

// ------------------------------------------------------------- rounding

/// Rows: rate set as base/quote, conversion from -> to, side, amount,
/// spread; expected pay, fee, receive (None: refused as too small).
/// Expected values were computed with exact fractions outside the engine.
type RoundingRow = (
    Currency,
    Currency,
    &'static str,
    Currency,
    Currency,
    FxSide,
    u64,
    u16,
    Option<(u64, u64, u64)>,
);

#[rustfmt::skip]
const ROUNDING: &[RoundingRow] = &[
    // 2 -> 0 decimals: 100.00 USD at 150.25, 30 bps: 30 cents fee, 14979.925 JPY rounds down.
    (USD, JPY, "150.25", USD, JPY, FxSide::Pay, 10_000, 30, Some((10_000, 30, 14_979))),
    // 0 -> 2 through the opposite pair: 9970 JPY / 150.25 = 66.356 USD -> 66.35.
    (USD, JPY, "150.25", JPY, USD, FxSide::Pay, 10_000, 30, Some((10_000, 30, 6_635))),
    // 2 -> 3: 99.50 CNY / 19.1234 = 5.203050 BHD -> 5.203.
    (BHD, CNY, "19.1234", CNY, BHD, FxSide::Pay, 10_000, 50, Some((10_000, 50, 5_203))),
    // 3 -> 2, no spread: 1.234 BHD * 19.1234 = 23.598 CNY -> 23.59.
    (BHD, CNY, "19.1234", BHD, CNY, FxSide::Pay, 1_234, 0, Some((1_234, 0, 2_359))),
    // One fils with a spread: the fee (rounded up) takes it all.
    (BHD, CNY, "19.1234", BHD, CNY, FxSide::Pay, 1, 50, None),
    // 3 -> 0, receive exactly 1000 JPY: net 2.529 BHD, pay 2.536 (fee 7 fils).
    (BHD, JPY, "395.5", BHD, JPY, FxSide::Receive, 1_000, 25, Some((2_536, 7, 1_000))),
    // 0 -> 3, receive one fils: 1 yen is 2.53 fils, so 1 yen net plus a 1 yen fee.
    (BHD, JPY, "395.5", JPY, BHD, FxSide::Receive, 1, 25, Some((2, 1, 1))),
    // 2 -> 0, receive 1 yen at 20.87 JPY per CNY: 4.79 fen round up to 5.
    (CNY, JPY, "20.87", CNY, JPY, FxSide::Receive, 1, 0, Some((5, 0, 1))),
    // 0 -> 2: 1 yen is 4.79 fen, the customer gets 4.
    (CNY, JPY, "20.87", JPY, CNY, FxSide::Pay, 1, 0, Some((1, 0, 4))),
    // A 1% spread on 100 yen: 1 yen fee, 99 yen = 4.7436 CNY -> 4.74.
    (CNY, JPY, "20.87", JPY, CNY, FxSide::Pay, 100, 100, Some((100, 1, 474))),
];

#[test]
fn fx_rounding_table_in_0_2_and_3_decimal_currencies() {
    let account = |currency: Currency| match currency {
        c if c == CNY => W_CNY,
        c if c == JPY => W_JPY,
        c if c == BHD => W_BHD,
        _ => W_USD,
    };
    for (row, &(base, quote_currency, text, from, to, side, amount, spread, expected)) in
        ROUNDING.iter().enumerate()
    {
        let mut h = Harness::new();
        h.set_rate(base, quote_currency, text, spread);
        h.floor(to, 1_000_000_000);
        let (from_account, to_account) = (account(from), account(to));
        let before = (h.user(from_account), h.user(to_account));
        let result = h.run(convert(from_account, to_account, amount, side));
        let Some((pay, fee, receive)) = expected else {
            assert_eq!(result.status, Status::FxAmountTooSmall, "row {row}");
            continue;
        };
        assert_eq!(result.status, Status::Ok, "row {row}");
        let got = amounts(&result);
        assert_eq!(
            (got.pay, got.fee, got.receive),
            (pay, fee, receive),
            "row {row}"
        );
        assert_eq!(got.inverse, from != base, "row {row}");
        // The legs: the customer pays `pay` and receives `receive`; the
        // house keeps net in liquidity and the fee as revenue.
        assert_eq!(h.user(from_account), before.0 - pay as i64, "row {row}");
        assert_eq!(h.user(to_account), before.1 + receive as i64, "row {row}");
        assert_eq!(h.balance(liquidity(from)), (pay - fee) as i64, "row {row}");
        assert_eq!(h.balance(revenue(from)), fee as i64, "row {row}");
        assert_eq!(h.balance(liquidity(to)), -(receive as i64), "row {row}");
    }
}

#[test]
fn fx_rates_are_parsed_and_refused_as_documented() {
    assert_eq!(
        mid("150.250"),
        FxMid {
            mantissa: 15_025,
            scale: 2
        }
    );
    assert_eq!(mid("150.25").to_decimal(), Some("150.25".parse().unwrap()));
    for bad in ["0", "-1", "0.0000000000000000001"] {
        assert_eq!(FxMid::from_decimal(bad.parse().unwrap()), None, "{bad}");
    }
    let mut h = Harness::new();
    let bad_mid = CommandKind::SetFxRate(FxRateSet {
        mid: FxMid {
            mantissa: 0,
            scale: 0,
        },
        ..match set_rate(USD, JPY, "1", 0, 60_000) {
            CommandKind::SetFxRate(set) => set,
            _ => unreachable!(),
        }
    });
    h.refused(bad_mid, Status::FxRateInvalid);
    h.refused(set_rate(USD, USD, "1", 0, 60_000), Status::FxSameCurrency);
    h.refused(
        set_rate(USD, JPY, "150", 1_001, 60_000),
        Status::FxSpreadOutOfRange,
    );
    h.refused(
        set_rate(USD, JPY, "150", 10, 999),
        Status::FxValidityOutOfRange,
    );
    h.refused(
        set_rate(USD, Currency::from_raw(999), "150", 10, 60_000),
        Status::UnknownCurrency,
    );
    let mut bad_source = match set_rate(USD, JPY, "150", 10, 60_000) {
        CommandKind::SetFxRate(set) => set,
        _ => unreachable!(),
    };
    bad_source.source = FxSource([b'a', 0, b'b', 0, 0, 0, 0, 0]);
    h.refused(CommandKind::SetFxRate(bad_source), Status::FxInvalidSource);
    // Without a rate, nothing converts.
    h.refused(
        convert(W_USD, W_JPY, 100, FxSide::Pay),
        Status::FxRateUnknown,
    );
    // Setting JPY/USD replaces USD/JPY: one entry per pair.
    h.set_rate(USD, JPY, "150", 10);
    h.set_rate(JPY, USD, "0.0066", 10);
    assert_eq!(h.ledger.books.fx.rates.len(), 1);
    match h.ledger.query(&Query::FxRate { index: 0 }) {
        QueryReply::FxRate(view) => {
            assert_eq!((view.base, view.quote, view.mid), (JPY, USD, mid("0.0066")));
            assert_eq!(view.rates_total, 1);
            assert_eq!(view.source.as_str(), "TEST");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        h.ledger.query(&Query::FxRate { index: 1 }),
        QueryReply::Refused(Status::FxRateUnknown)
    );
}

#[test]
fn fx_conversions_refuse_what_they_should() {
    let mut h = Harness::new();
    h.set_rate(CNY, JPY, "20", 10);
    h.floor(JPY, 1_000_000_000);
    h.refused(
        convert(W_CNY, OTHER_JPY, 100, FxSide::Pay),
        Status::FxNotSameOwner,
    );
    h.refused(convert(W_CNY, W_CNY, 100, FxSide::Pay), Status::SameAccount);
    h.refused(
        convert(W_CNY, W_JPY, 0, FxSide::Pay),
        Status::AmountMustBePositive,
    );
    h.refused(
        convert(W_CNY, W_JPY, 2_000_000, FxSide::Pay),
        Status::InsufficientFunds,
    );
    h.refused(
        convert(W_CNY, 9_999, 100, FxSide::Pay),
        Status::UnknownCreditAccount,
    );
    h.refused(
        convert(W_CNY, liquidity(JPY).0, 100, FxSide::Pay),
        Status::HouseAccountNotAllowed,
    );
    h.refused(
        convert(W_CNY, W_BHD, 100, FxSide::Pay),
        Status::FxRateUnknown,
    );
    h.ok(CommandKind::Freeze {
        account: AccountId(W_JPY),
    });
    h.refused(
        convert(W_CNY, W_JPY, 100, FxSide::Pay),
        Status::AccountFrozen,
    );
    h.ok(CommandKind::Unfreeze {
        account: AccountId(W_JPY),
    });
    h.ok(convert(W_CNY, W_JPY, 100, FxSide::Pay));
}

// ------------------------------------------------------------- stale rates

#[test]
fn fx_stale_rates_are_refused() {
    let mut h = Harness::new();
    h.floor(JPY, 1_000_000_000);
    h.ok(set_rate(CNY, JPY, "20", 0, 60_000));
    // Valid for 60 s of command time: at 59.999 s it converts ...
    h.advance_ms(59_999);
    h.ok(convert(W_CNY, W_JPY, 100, FxSide::Pay));
    // ... at 60 s it is stale, for conversions, quotes and QR payments alike.
    h.advance_ms(1);
    h.refused(convert(W_CNY, W_JPY, 100, FxSide::Pay), Status::FxRateStale);
    h.refused(
        quote(W_CNY, W_JPY, 100, FxSide::Pay, 10_000),
        Status::FxRateStale,
    );
    h.refused(pay_qr(W_CNY, KEY_JPY, 100, JPY), Status::FxRateStale);
    // A fresh rate converts again.
    h.ok(set_rate(CNY, JPY, "21", 0, 60_000));
    assert_eq!(
        amounts(&h.ok(convert(W_CNY, W_JPY, 100, FxSide::Pay))).receive,
        21
    );
}

#[test]
fn fx_a_quote_never_outlives_its_rate() {
    let mut h = Harness::new();
    h.floor(JPY, 1_000_000_000);
    h.ok(set_rate(CNY, JPY, "20", 0, 10_000));
    h.advance_ms(5_000);
    let result = h.ok(quote(W_CNY, W_JPY, 100, FxSide::Pay, 60_000));
    assert_eq!(amounts(&result).expires_at, T0 + 10 * SECOND);
}

// ------------------------------------------------------------- quotes

#[test]
fn fx_quotes_execute_once_at_the_quoted_amounts() {
    let mut h = Harness::new();
    h.floor(JPY, 1_000_000_000);
    h.set_rate(CNY, JPY, "20.5", 100);
    let quote_id = 77;
    let quoted = h.run_with_id(quote_id, quote(W_CNY, W_JPY, 10_000, FxSide::Pay, 30_000));
    assert_eq!(quoted.status, Status::Ok);
    let quoted = amounts(&quoted);
    assert_eq!(
        (quoted.pay, quoted.fee, quoted.receive),
        (10_000, 100, 2_029)
    );
    assert_eq!(quoted.expires_at, T0 + 30 * SECOND);
    // A quote moves nothing.
    assert_eq!(h.user(W_CNY), 1_000_000);
    // Retrying the quote command answers with the same amounts.
    let again = h.run_with_id(quote_id, quote(W_CNY, W_JPY, 10_000, FxSide::Pay, 30_000));
    assert_eq!(again.detail, Detail::FxConversion(quoted));
    // The rate moves; the quote is locked.
    h.set_rate(CNY, JPY, "25", 100);
    h.advance_ms(29_999);
    let convert_quote = |from: u64| CommandKind::FxConvertQuote {
        quote: CommandId(quote_id),
        from: AccountId(from),
    };
    h.refused(convert_quote(OTHER_JPY), Status::FxQuoteNotYours);
    let done = amounts(&h.ok(convert_quote(W_CNY)));
    assert_eq!((done.pay, done.fee, done.receive), (10_000, 100, 2_029));
    assert_eq!(h.user(W_CNY), 1_000_000 - 10_000);
    assert_eq!(h.user(W_JPY), 1_000_000 + 2_029);
    // Once only.
    h.refused(convert_quote(W_CNY), Status::FxQuoteUsed);
    h.advance_ms(1);
    h.refused(convert_quote(W_CNY), Status::FxQuoteUsed);
    // Forgotten after its memory.
    h.advance_ms(limits::FX_QUOTE_MEMORY_NS / MS);
    h.refused(convert_quote(W_CNY), Status::FxQuoteNotFound);
    assert!(h.ledger.books.fx.quotes.is_empty());
    assert!(h.ledger.books.fx.quote_expiries.is_empty());
}

#[test]
fn fx_expired_quotes_are_refused_and_free_their_place() {
    let mut h = Harness::new();
    h.floor(JPY, 1_000_000_000);
    h.set_rate(CNY, JPY, "20", 0);
    let quote_id = 5;
    h.run_with_id(quote_id, quote(W_CNY, W_JPY, 5, FxSide::Receive, 1_000));
    let convert_quote = CommandKind::FxConvertQuote {
        quote: CommandId(quote_id),
        from: AccountId(W_CNY),
    };
    h.advance_ms(1_000);
    h.refused(convert_quote, Status::FxQuoteExpired);
    // The per-account cap counts open quotes only.
    for _ in 0..limits::FX_QUOTES_OPEN_PER_ACCOUNT_MAX {
        h.ok(quote(W_CNY, W_JPY, 100, FxSide::Pay, 1_000));
    }
    h.refused(
        quote(W_CNY, W_JPY, 100, FxSide::Pay, 1_000),
        Status::FxTooManyQuotes,
    );
    h.refused(
        quote(W_JPY, W_CNY, 100, FxSide::Pay, 0),
        Status::FxQuoteTtlOutOfRange,
    );
    h.ok(quote(W_JPY, W_CNY, 100, FxSide::Pay, 1_000));
    h.advance_ms(1_000);
    h.ok(quote(W_CNY, W_JPY, 100, FxSide::Pay, 1_000));
    h.refused(
        CommandKind::FxConvertQuote {
            quote: CommandId(999_999),
            from: AccountId(W_CNY),
        },
        Status::FxQuoteNotFound,
    );
}

// ------------------------------------------------------------- floors

#[test]
fn fx_liquidity_floors_limit_what_the_house_sells() {
    let mut h = Harness::new();
    h.set_rate(CNY, JPY, "20", 0);
    h.floor(CNY, 1_000_000_000);
    // No floor set: the JPY liquidity account cannot go below zero.
    h.refused(
        convert(W_CNY, W_JPY, 100, FxSide::Pay),
        Status::FxLiquidityFloor,
    );
    h.refused(pay_qr(W_CNY, KEY_JPY, 1, JPY), Status::FxLiquidityFloor);
    h.refused(
        convert(W_CNY, W_JPY, 1, FxSide::Receive),
        Status::FxLiquidityFloor,
    );
    // Buying JPY from a customer fills it ...
    h.ok(convert(W_JPY, W_CNY, 2_000, FxSide::Pay));
    assert_eq!(h.balance(liquidity(JPY)), 2_000);
    // ... and down to zero it can sell again.
    h.ok(convert(W_CNY, W_JPY, 2_000, FxSide::Receive));
    assert_eq!(h.balance(liquidity(JPY)), 0);
    // A floor of 10,000 JPY: the house may owe up to that much.
    h.floor(JPY, 10_000);
    h.ok(convert(W_CNY, W_JPY, 9_000, FxSide::Receive));
    h.refused(
        convert(W_CNY, W_JPY, 1_001, FxSide::Receive),
        Status::FxLiquidityFloor,
    );
    h.ok(convert(W_CNY, W_JPY, 1_000, FxSide::Receive));
    assert_eq!(h.balance(liquidity(JPY)), -10_000);
    // A quote locks the price, not the liquidity: it is checked when converted.
    h.floor(JPY, 20_000);
    let quoted = h.run_with_id(900, quote(W_CNY, W_JPY, 5_000, FxSide::Receive, 10_000));
    assert_eq!(quoted.status, Status::Ok);
    h.floor(JPY, 12_000);
    h.refused(
        CommandKind::FxConvertQuote {
            quote: CommandId(900),
            from: AccountId(W_CNY),
        },
        Status::FxLiquidityFloor,
    );
    // Lowering the floor below the position moves nothing.
    h.floor(JPY, 0);
    assert_eq!(h.balance(liquidity(JPY)), -10_000);
    h.refused(
        convert(W_CNY, W_JPY, 1, FxSide::Receive),
        Status::FxLiquidityFloor,
    );
}

// ------------------------------------------------------------- QR

#[test]
fn fx_cross_currency_qr_pays_the_merchant_exactly_and_refunds_at_the_original_rate() {
    let mut h = Harness::new();
    h.floor(JPY, 1_000_000_000);
    h.set_rate(CNY, JPY, "20.87", 50);
    // A CNY wallet pays a JPY code for 1,000 JPY.
    let payment = 4_242;
    let result = h.run_with_id(payment, pay_qr(W_CNY, KEY_JPY, 1_000, JPY));
    assert_eq!(result.status, Status::Ok);
    let paid = amounts(&result);
    // net = ceil(1000 / 0.2087) = 4792 fen; pay = least X with X - ceil(X * 0.005) >= 4792.
    assert_eq!((paid.pay, paid.fee, paid.receive), (4_817, 25, 1_000));
    assert_eq!(h.user(M_JPY), 1_000);
    assert_eq!(h.user(W_CNY), 1_000_000 - 4_817);
    assert_eq!(h.balance(revenue(CNY)), 25);
    assert_eq!(h.ledger.payment(CommandId(payment)).unwrap().amount, 1_000);
    // The rate moves; refunds use the original one.
    h.set_rate(CNY, JPY, "10", 50);
    let refund = |amount| CommandKind::Refund {
        payment: CommandId(payment),
        amount,
        currency: JPY,
    };
    h.refused(
        CommandKind::Refund {
            payment: CommandId(payment),
            amount: 1,
            currency: CNY,
        },
        Status::CurrencyMismatch,
    );
    h.ok(refund(300));
    // 30% back: floor(4792 * 0.3) + floor(25 * 0.3) = 1437 + 7.
    assert_eq!(h.user(W_CNY), 1_000_000 - 4_817 + 1_444);
    assert_eq!(h.user(M_JPY), 700);
    h.refused(refund(701), Status::RefundExceedsPayment);
    h.ok(refund(700));
    // In full: exactly what the payer paid, the spread included.
    assert_eq!(h.user(W_CNY), 1_000_000);
    assert_eq!(h.user(M_JPY), 0);
    assert_eq!(h.balance(revenue(CNY)), 0);
    assert_eq!(h.balance(liquidity(CNY)), 0);
    assert_eq!(h.balance(liquidity(JPY)), 0);
    h.refused(refund(1), Status::RefundExceedsPayment);
}

#[test]
fn fx_same_currency_qr_is_unchanged_and_unknown_pairs_are_refused() {
    let mut h = Harness::new();
    let result = h.ok(pay_qr(W_CNY, KEY_CNY, 500, CNY));
    assert_eq!(result.detail, Detail::None);
    assert_eq!(h.user(M_CNY), 500);
    h.refused(pay_qr(W_BHD, KEY_JPY, 500, JPY), Status::FxRateUnknown);
    // The code's currency must still be the merchant's.
    h.set_rate(CNY, JPY, "20", 0);
    h.refused(pay_qr(W_JPY, KEY_CNY, 500, JPY), Status::CurrencyMismatch);
}

// ------------------------------------------------------------- state

#[test]
fn fx_state_survives_a_checkpoint_and_is_in_the_digest() {
    let mut h = Harness::new();
    h.floor(JPY, 1_000_000);
    h.floor(BHD, 1_000_000);
    h.set_rate(CNY, JPY, "20.87", 50);
    h.set_rate(BHD, USD, "2.659", 20);
    h.ok(quote(W_CNY, W_JPY, 1_000, FxSide::Pay, 10_000));
    h.ok(pay_qr(W_CNY, KEY_JPY, 1_000, JPY));
    h.ok(convert(W_USD, W_BHD, 1_000, FxSide::Pay));
    let mut bytes = Vec::new();
    encode_state(&h.ledger, &mut bytes);
    let decoded = decode_state(&bytes, *h.ledger.config()).unwrap();
    assert_eq!(decoded.digest(), h.ledger.digest());
    assert_eq!(decoded.books.fx.quotes_open, h.ledger.books.fx.quotes_open);
    // Every FX change shows in the digest.
    let before = h.ledger.digest();
    let mut other = h.ledger.clone();
    other.books.fx.floors.insert(JPY, 7);
    assert_ne!(other.digest(), before);
    let mut other = h.ledger.clone();
    other.books.fx.payments.clear();
    assert_ne!(other.digest(), before);
    // A truncated FX section is refused, not trusted.
    assert!(decode_state(&bytes[..bytes.len() - 1], *h.ledger.config()).is_err());
}

// ------------------------------------------------------------- properties

#[derive(Clone, Debug)]
enum Op {
    Rate {
        pair: usize,
        mid_milli: u64,
        spread_bps: u16,
    },
    Convert {
        from: usize,
        to: usize,
        amount: u64,
        receive: bool,
    },
    QuoteConvert {
        from: usize,
        to: usize,
        amount: u64,
        receive: bool,
        wait_ms: u64,
    },
    PayQr {
        payer: usize,
        merchant: usize,
        amount: u64,
    },
    Refund {
        back: usize,
        amount: u64,
    },
    Wait {
        ms: u64,
    },
}

const WALLET: [(u64, Currency); 4] = [(W_CNY, CNY), (W_JPY, JPY), (W_BHD, BHD), (W_USD, USD)];
const PAIRS: [(Currency, Currency); 6] = [
    (CNY, JPY),
    (BHD, CNY),
    (USD, JPY),
    (BHD, JPY),
    (USD, CNY),
    (BHD, USD),
];
const MERCHANTS: [(MerchantKey, Currency); 2] = [(KEY_JPY, JPY), (KEY_CNY, CNY)];

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..PAIRS.len(), 1u64..500_000, 0u16..=1_000).prop_map(|(pair, mid_milli, spread_bps)| {
            Op::Rate {
                pair,
                mid_milli,
                spread_bps,
            }
        }),
        // `to` is another account than `from` (an offset of 1 to 3).
        (0..4usize, 1..4usize, 1u64..200_000, any::<bool>()).prop_map(
            |(from, offset, amount, receive)| Op::Convert {
                from,
                to: (from + offset) % 4,
                amount,
                receive
            }
        ),
        (
            0..4usize,
            1..4usize,
            1u64..200_000,
            any::<bool>(),
            0u64..15_000
        )
            .prop_map(
                |(from, offset, amount, receive, wait_ms)| Op::QuoteConvert {
                    from,
                    to: (from + offset) % 4,
                    amount,
                    receive,
                    wait_ms
                }
            ),
        (0..4usize, 0..2usize, 1u64..50_000).prop_map(|(payer, merchant, amount)| Op::PayQr {
            payer,
            merchant,
            amount
        }),
        (0..8usize, 1u64..50_000).prop_map(|(back, amount)| Op::Refund { back, amount }),
        (0u64..60_000).prop_map(|ms| Op::Wait { ms }),
    ]
}

/// The house kept at least the spread and gave at most what `net` is
/// worth at the mid rate.
fn check_house_wins(h: &Harness, amounts: &FxAmounts) {
    let rate = h
        .ledger
        .books
        .fx
        .rates
        .values()
        .find(|rate| {
            (rate.base, rate.quote) == (amounts.pay_currency, amounts.receive_currency)
                || (rate.quote, rate.base) == (amounts.pay_currency, amounts.receive_currency)
        })
        .copied();
    let net = amounts.pay - amounts.fee;
    let price = Price::new(
        amounts.mid,
        amounts.inverse,
        amounts.pay_currency,
        amounts.receive_currency,
    )
    .unwrap();
    assert!(
        u128::from(amounts.receive) * price.den <= u128::from(net) * price.num,
        "the customer received more than net is worth at mid: {amounts:?}"
    );
    if let Some(rate) = rate {
        if rate.mid == amounts.mid {
            assert!(
                u128::from(amounts.fee) * 10_000
                    >= u128::from(amounts.pay) * u128::from(rate.spread_bps),
                "fee below the spread: {amounts:?}"
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn fx_conversions_and_cross_currency_payments_conserve_money_and_the_house_never_loses(
        ops in proptest::collection::vec(op(), 1..60)
    ) {
        let mut h = Harness::new();
        for currency in [CNY, JPY, BHD, USD] {
            h.floor(currency, 500_000_000);
        }
        for (index, (base, quote)) in PAIRS.into_iter().enumerate() {
            h.ok(set_rate(base, quote, &format!("{}.37", index * 7 + 1), 25, 120_000));
        }
        let mut payments: Vec<u128> = Vec::new();
        // Value at mid of what each conversion gave and kept is checked per
        // conversion; the per-currency sums after every batch by the harness.
        for op in ops {
            match op {
                Op::Rate { pair, mid_milli, spread_bps } => {
                    let (base, quote) = PAIRS[pair];
                    let text = format!("{}.{:03}", mid_milli / 1_000, mid_milli % 1_000);
                    h.ok(set_rate(base, quote, &text, spread_bps, 120_000));
                }
                Op::Convert { from, to, amount, receive } => {
                    let side = if receive { FxSide::Receive } else { FxSide::Pay };
                    let (from, to) = (WALLET[from].0, WALLET[to].0);
                    let before = (h.user(from), h.user(to));
                    let result = h.run(convert(from, to, amount, side));
                    if result.status == Status::Ok {
                        let got = amounts(&result);
                        check_house_wins(&h, &got);
                        prop_assert_eq!(h.user(from), before.0 - got.pay as i64);
                        prop_assert_eq!(h.user(to), before.1 + got.receive as i64);
                        let fixed = if receive { got.receive } else { got.pay };
                        prop_assert_eq!(fixed, amount);
                    } else {
                        prop_assert_eq!((h.user(from), h.user(to)), before);
                    }
                }
                Op::QuoteConvert { from, to, amount, receive, wait_ms } => {
                    let side = if receive { FxSide::Receive } else { FxSide::Pay };
                    let (from, to) = (WALLET[from].0, WALLET[to].0);
                    let id = h.next_id;
                    let quoted = h.run(quote(from, to, amount, side, 10_000));
                    h.advance_ms(wait_ms);
                    let result = h.run(CommandKind::FxConvertQuote {
                        quote: CommandId(id),
                        from: AccountId(from),
                    });
                    if result.status == Status::Ok {
                        let (quoted, done) = (amounts(&quoted), amounts(&result));
                        prop_assert_eq!(
                            (quoted.pay, quoted.fee, quoted.receive),
                            (done.pay, done.fee, done.receive)
                        );
                        prop_assert!(wait_ms < 10_000);
                        let net = done.pay - done.fee;
                        let price = Price::new(done.mid, done.inverse, done.pay_currency, done.receive_currency).unwrap();
                        prop_assert!(u128::from(done.receive) * price.den <= u128::from(net) * price.num);
                    } else if quoted.status == Status::Ok && wait_ms >= 10_000 {
                        prop_assert!(matches!(result.status, Status::FxQuoteExpired));
                    }
                }
                Op::PayQr { payer, merchant, amount } => {
                    let (key, currency) = MERCHANTS[merchant];
                    let id = h.next_id;
                    let result = h.run(pay_qr(WALLET[payer].0, key, amount, currency));
                    if result.status == Status::Ok {
                        payments.push(id);
                        if let Detail::FxConversion(got) = result.detail {
                            prop_assert_eq!(got.receive, amount);
                            check_house_wins(&h, &got);
                        }
                    }
                }
                Op::Refund { back, amount } => {
                    if payments.is_empty() {
                        continue;
                    }
                    let id = payments[back % payments.len()];
                    let payment = *h.ledger.payment(CommandId(id)).unwrap();
                    let currency = h.ledger.accounts()[payment.merchant_slot as usize].currency;
                    let _ = h.run(CommandKind::Refund { payment: CommandId(id), amount, currency });
                }
                Op::Wait { ms } => h.advance_ms(ms),
            }
        }
        // Refund everything left: every payer is back to what it paid, and
        // the FX revenue still holds at least zero.
        for id in payments {
            let payment = *h.ledger.payment(CommandId(id)).unwrap();
            let left = payment.amount - payment.refunded;
            let currency = h.ledger.accounts()[payment.merchant_slot as usize].currency;
            if left > 0 {
                let merchant = h.ledger.accounts()[payment.merchant_slot as usize].balance;
                let result = h.run(CommandKind::Refund { payment: CommandId(id), amount: left, currency });
                if merchant >= left as i64 {
                    prop_assert_eq!(result.status, Status::Ok);
                }
            }
        }
        prop_assert!(h.ledger.is_conserved());
    }
}
