//! QR payments, user-presented payment codes and refunds, as ledger rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payrail_engine::command::QR_MERCHANT_KEYS_MAX;
use payrail_engine::{
    limits, AccountId, AccountKind, Command, CommandId, CommandKind, Currency, Ledger, MerchantKey,
    OpenAccount, Status,
};

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_700_000_000 * SECOND;
const PAYER: u64 = 1;
const OTHER_PAYER: u64 = 2;
const MERCHANT: u64 = 10;
const OTHER_MERCHANT: u64 = 11;
const CODE: u64 = 123_456_789_012_345_678;

struct Book {
    ledger: Ledger,
    sequence: u64,
    next_id: u128,
}

impl Book {
    fn new() -> Book {
        let mut book = Book {
            ledger: Ledger::default(),
            sequence: 0,
            next_id: 1_000,
        };
        let open = |account: u64, kind, mcc| {
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(account),
                owner: account,
                kind,
                currency: Currency::CNY,
                kyc_tier: 0,
                mcc,
            })
        };
        book.ok(open(PAYER, AccountKind::Customer, 0));
        book.ok(open(OTHER_PAYER, AccountKind::Customer, 0));
        book.ok(open(MERCHANT, AccountKind::Merchant, 5812));
        book.ok(open(OTHER_MERCHANT, AccountKind::Merchant, 5411));
        book.ok(CommandKind::Deposit {
            account: AccountId(PAYER),
            amount: 10_000,
            currency: Currency::CNY,
        });
        book.ok(CommandKind::Deposit {
            account: AccountId(OTHER_PAYER),
            amount: 10_000,
            currency: Currency::CNY,
        });
        book
    }

    /// Applies one command at `T0 + at_seconds`; returns its status.
    fn run_at(&mut self, at_ns: u64, kind: CommandKind) -> (CommandId, Status) {
        self.next_id += 1;
        self.sequence += 1;
        let command = Command::new(self.next_id, kind);
        let results = self
            .ledger
            .apply_batch(self.sequence, T0 + at_ns, &[command]);
        assert!(
            self.ledger.is_conserved(),
            "money is conserved after {kind:?}"
        );
        (command.id, results[0].status)
    }

    fn run(&mut self, kind: CommandKind) -> (CommandId, Status) {
        let at = self.ledger.timestamp().saturating_sub(T0);
        self.run_at(at, kind)
    }

    fn ok(&mut self, kind: CommandKind) -> CommandId {
        let (id, status) = self.run(kind);
        assert_eq!(status, Status::Ok, "{kind:?}");
        id
    }

    fn balance(&self, account: u64) -> i64 {
        self.ledger.account(AccountId(account)).unwrap().balance
    }
}

fn key(merchant_id: &str) -> MerchantKey {
    MerchantKey::new("br.gov.bcb.pix", merchant_id)
}

fn keys(list: &[MerchantKey]) -> [MerchantKey; QR_MERCHANT_KEYS_MAX] {
    let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
    keys[..list.len()].copy_from_slice(list);
    keys
}

fn pay(keys: [MerchantKey; QR_MERCHANT_KEYS_MAX], amount: u64, fee: u64) -> CommandKind {
    CommandKind::PayMerchantQr {
        payer: AccountId(PAYER),
        keys,
        amount,
        fee,
        currency: Currency::CNY,
        mcc: 0,
        context: payrail_engine::RiskContext::NONE,
    }
}

#[test]
fn merchant_keys_register_once_per_account() {
    let mut book = Book::new();
    let register = |merchant: u64, key| CommandKind::RegisterMerchantKey {
        merchant: AccountId(merchant),
        key,
    };
    let rows = [
        (register(MERCHANT, key("m-1")), Status::Ok),
        (register(MERCHANT, key("m-1")), Status::Ok), // same key, same merchant: nothing changes
        (
            register(OTHER_MERCHANT, key("m-1")),
            Status::MerchantKeyTaken,
        ),
        (register(PAYER, key("m-2")), Status::NotAMerchant),
        (register(99, key("m-2")), Status::UnknownAccount),
        (
            register(MERCHANT, MerchantKey::NONE),
            Status::QrNoMerchantAccount,
        ),
    ];
    for (kind, expected) in rows {
        assert_eq!(book.run(kind).1, expected, "{kind:?}");
    }
    // Keys are case-insensitive in the scheme identifier only.
    assert_eq!(MerchantKey::new("BR.GOV.BCB.PIX", "m-1"), key("m-1"));
    assert_ne!(MerchantKey::new("br.gov.bcb.pix", "M-1"), key("m-1"));
}

#[test]
fn merchant_presented_payments_move_amount_and_fee() {
    let mut book = Book::new();
    book.ok(CommandKind::RegisterMerchantKey {
        merchant: AccountId(MERCHANT),
        key: key("m-1"),
    });
    let rows: Vec<(CommandKind, Status, i64, i64)> = vec![
        // (command, status, payer balance after, merchant balance after)
        (pay(keys(&[key("m-1")]), 1_250, 0), Status::Ok, 8_750, 1_250),
        (
            pay(keys(&[key("unknown"), key("m-1")]), 100, 25),
            Status::Ok,
            8_625,
            1_375,
        ),
        (
            pay(keys(&[key("unknown")]), 100, 0),
            Status::UnknownMerchant,
            8_625,
            1_375,
        ),
        (
            pay(keys(&[]), 100, 0),
            Status::UnknownMerchant,
            8_625,
            1_375,
        ),
        (
            pay(keys(&[key("m-1")]), 0, 5),
            Status::AmountMustBePositive,
            8_625,
            1_375,
        ),
        (
            pay(keys(&[key("m-1")]), 8_626, 0),
            Status::InsufficientFunds,
            8_625,
            1_375,
        ),
        (
            pay(keys(&[key("m-1")]), 8_600, 26),
            Status::InsufficientFunds,
            8_625,
            1_375,
        ),
        (
            pay(keys(&[key("m-1")]), u64::MAX, 1),
            Status::AmountTooLarge,
            8_625,
            1_375,
        ),
        (
            CommandKind::PayMerchantQr {
                payer: AccountId(PAYER),
                keys: keys(&[key("m-1")]),
                amount: 1,
                fee: 0,
                currency: Currency::JPY,
                mcc: 0,
                context: payrail_engine::RiskContext::NONE,
            },
            Status::CurrencyMismatch,
            8_625,
            1_375,
        ),
        (
            CommandKind::PayMerchantQr {
                payer: AccountId(77),
                keys: keys(&[key("m-1")]),
                amount: 1,
                fee: 0,
                currency: Currency::CNY,
                mcc: 0,
                context: payrail_engine::RiskContext::NONE,
            },
            Status::UnknownDebitAccount,
            8_625,
            1_375,
        ),
        (pay(keys(&[key("m-1")]), 8_625, 0), Status::Ok, 0, 10_000),
    ];
    for (kind, expected, payer, merchant) in rows {
        assert_eq!(book.run(kind).1, expected, "{kind:?}");
        assert_eq!(
            (book.balance(PAYER), book.balance(MERCHANT)),
            (payer, merchant),
            "{kind:?}"
        );
    }
    book.ok(CommandKind::Freeze {
        account: AccountId(MERCHANT),
    });
    book.ok(CommandKind::Deposit {
        account: AccountId(PAYER),
        amount: 100,
        currency: Currency::CNY,
    });
    assert_eq!(
        book.run(pay(keys(&[key("m-1")]), 1, 0)).1,
        Status::AccountFrozen
    );
}

#[test]
fn payments_record_their_category() {
    let mut book = Book::new();
    book.ok(CommandKind::RegisterMerchantKey {
        merchant: AccountId(MERCHANT),
        key: key("m-1"),
    });
    let own = book.ok(pay(keys(&[key("m-1")]), 10, 0));
    let coded = book.ok(CommandKind::PayMerchantQr {
        payer: AccountId(PAYER),
        keys: keys(&[key("m-1")]),
        amount: 10,
        fee: 0,
        currency: Currency::CNY,
        mcc: 4111,
        context: payrail_engine::RiskContext::NONE,
    });
    assert_eq!(
        book.ledger.payment(own).unwrap().mcc,
        5812,
        "the merchant's own MCC when the code has none"
    );
    assert_eq!(
        book.ledger.payment(coded).unwrap().mcc,
        4111,
        "the code's MCC"
    );
}

#[test]
fn payment_codes_are_single_use_and_expire_by_command_time() {
    let mut book = Book::new();
    let issue = |code, lifetime_ms| CommandKind::IssuePaymentCode {
        customer: AccountId(PAYER),
        code,
        lifetime_ms,
    };
    let charge = |merchant: u64, code, amount| CommandKind::ChargePaymentCode {
        merchant: AccountId(merchant),
        code,
        amount,
        currency: Currency::CNY,
        context: payrail_engine::RiskContext::NONE,
    };
    let lifetime = limits::PAYMENT_CODE_LIFETIME_MS_DEFAULT;
    let rows = [
        (0, issue(CODE, lifetime), Status::Ok),
        (0, issue(CODE, lifetime), Status::PaymentCodeTaken),
        (0, issue(12_345, lifetime), Status::InvalidPaymentCode),
        (0, issue(CODE + 1, 1_000), Status::LifetimeOutOfRange),
        (
            0,
            issue(CODE + 1, limits::PAYMENT_CODE_LIFETIME_MS_MAX + 1),
            Status::LifetimeOutOfRange,
        ),
        (1, charge(PAYER, CODE, 100), Status::NotAMerchant),
        (
            1,
            charge(MERCHANT, CODE + 9, 100),
            Status::UnknownPaymentCode,
        ),
        (1, charge(MERCHANT, CODE, 10_001), Status::InsufficientFunds),
        (1, charge(MERCHANT, CODE, 300), Status::Ok),
        (2, charge(MERCHANT, CODE, 300), Status::PaymentCodeUsed),
    ];
    for (at_seconds, kind, expected) in rows {
        assert_eq!(
            book.run_at(at_seconds * SECOND, kind).1,
            expected,
            "{kind:?}"
        );
    }
    assert_eq!(book.balance(PAYER), 9_700);
    assert_eq!(book.balance(MERCHANT), 300);

    // Expiry, exactly at the boundary: issued at t=10 s with 60 s, live at
    // 70 s minus 1 ns, expired at 70 s.
    let second_code = CODE + 2;
    assert_eq!(
        book.run_at(10 * SECOND, issue(second_code, lifetime)).1,
        Status::Ok
    );
    let third_code = CODE + 3;
    assert_eq!(
        book.run_at(10 * SECOND, issue(third_code, lifetime)).1,
        Status::Ok
    );
    assert_eq!(
        book.run_at(70 * SECOND - 1, charge(MERCHANT, second_code, 1))
            .1,
        Status::Ok
    );
    assert_eq!(
        book.run_at(70 * SECOND, charge(MERCHANT, third_code, 1)).1,
        Status::PaymentCodeExpired
    );
    // Forgotten after the memory period; the number can then be drawn again.
    let forgotten = 70 * SECOND + limits::PAYMENT_CODE_MEMORY_NS;
    assert_eq!(
        book.run_at(forgotten, charge(MERCHANT, third_code, 1)).1,
        Status::UnknownPaymentCode
    );
    assert_eq!(
        book.run_at(forgotten, issue(third_code, lifetime)).1,
        Status::Ok
    );
}

#[test]
fn a_customer_has_a_bounded_number_of_live_codes() {
    let mut book = Book::new();
    let issue = |code| CommandKind::IssuePaymentCode {
        customer: AccountId(PAYER),
        code,
        lifetime_ms: limits::PAYMENT_CODE_LIFETIME_MS_DEFAULT,
    };
    for n in 0..u64::from(limits::CUSTOMER_PAYMENT_CODES_LIVE_MAX) {
        book.ok(issue(CODE + n));
    }
    assert_eq!(book.run(issue(CODE + 100)).1, Status::TooManyPaymentCodes);
    // Using one frees a place.
    book.ok(CommandKind::ChargePaymentCode {
        merchant: AccountId(MERCHANT),
        code: CODE,
        amount: 1,
        currency: Currency::CNY,
        context: payrail_engine::RiskContext::NONE,
    });
    book.ok(issue(CODE + 100));
    // Merchants cannot have codes.
    let merchant_code = CommandKind::IssuePaymentCode {
        customer: AccountId(MERCHANT),
        code: CODE + 200,
        lifetime_ms: 60_000,
    };
    assert_eq!(book.run(merchant_code).1, Status::NotACustomer);
}

#[test]
fn refunds_are_partial_capped_and_go_back_to_the_payer() {
    let mut book = Book::new();
    book.ok(CommandKind::RegisterMerchantKey {
        merchant: AccountId(MERCHANT),
        key: key("m-1"),
    });
    let payment = book.ok(pay(keys(&[key("m-1")]), 1_000, 50)); // 1,050 paid in all
    let refund = |payment, amount| CommandKind::Refund {
        payment,
        amount,
        currency: Currency::CNY,
    };
    let transfer = book.ok(CommandKind::Transfer {
        from: AccountId(PAYER),
        to: AccountId(OTHER_PAYER),
        amount: 1,
        currency: Currency::CNY,
        context: payrail_engine::RiskContext::NONE,
    });
    let rows = [
        (refund(payment, 400), Status::Ok, 9_349, 650),
        (
            CommandKind::Refund {
                payment,
                amount: 1,
                currency: Currency::JPY,
            },
            Status::CurrencyMismatch,
            9_349,
            650,
        ),
        (
            refund(payment, 651),
            Status::RefundExceedsPayment,
            9_349,
            650,
        ),
        (refund(payment, 0), Status::AmountMustBePositive, 9_349, 650),
        (
            refund(CommandId(424_242), 1),
            Status::PaymentNotFound,
            9_349,
            650,
        ),
        (refund(transfer, 1), Status::PaymentNotFound, 9_349, 650),
        (refund(payment, 650), Status::Ok, 9_999, 0),
        (refund(payment, 1), Status::RefundExceedsPayment, 9_999, 0),
    ];
    for (kind, expected, payer, merchant) in rows {
        assert_eq!(book.run(kind).1, expected, "{kind:?}");
        assert_eq!(
            (book.balance(PAYER), book.balance(MERCHANT)),
            (payer, merchant),
            "{kind:?}"
        );
    }
    // A refund the merchant cannot cover is refused, not overdrawn.
    let second = book.ok(pay(keys(&[key("m-1")]), 100, 0));
    book.ok(CommandKind::Transfer {
        from: AccountId(MERCHANT),
        to: AccountId(OTHER_PAYER),
        amount: 100,
        currency: Currency::CNY,
        context: payrail_engine::RiskContext::NONE,
    });
    assert_eq!(book.run(refund(second, 100)).1, Status::InsufficientFunds);
    // Re-sending the same refund command returns its first result.
    let id = CommandId(book.next_id);
    let results = book.ledger.apply_batch(
        book.sequence + 1,
        T0 + SECOND,
        &[Command {
            id,
            kind: refund(second, 100),
        }],
    );
    assert_eq!(results[0].status, Status::InsufficientFunds);
}
