//! The per-owner caps of the per-command tables (`LedgerConfig`): filled to
//! the configured capacity, the next command is refused with its status and
//! nothing is added; freeing one place lets the next one in; other owners
//! are not affected. Every row runs on a lone ledger and on 1, 2 and 3
//! shards, which must decide alike (the caps are checked where the owner's
//! accounts live, so a replay on one ledger decides as the shards did).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payrail_engine::shard::ShardedLedger;
use payrail_engine::{
    AccountId, AccountKind, Command, CommandId, CommandKind, Currency, FxMid, FxOrder, FxRateSet,
    FxSide, FxSource, Ledger, LedgerConfig, OpenAccount, RiskContext, Status,
};

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_800_000_000 * SECOND;
/// Two customers (owners 1 and 2), each with a CNY and a JPY account (the
/// JPY one is the CNY one + 1), and a merchant: on 2 and 3 shards they do
/// not all live on one shard.
const ALICE: u64 = 100;
const ALICE_JPY: u64 = 101;
const BOB: u64 = 200;
const BOB_JPY: u64 = 201;
const MERCHANT: u64 = 900;
const CODE: u64 = 123_456_789_012_345_678;

/// Runs commands one at a time on a lone ledger or a sharded one.
enum Runner {
    Lone(Box<Ledger>),
    Sharded(Box<ShardedLedger>),
}

impl Runner {
    fn run(&mut self, sequence: u64, command: Command) -> Status {
        let timestamp = T0 + sequence * SECOND;
        match self {
            Runner::Lone(ledger) => ledger.apply_batch(sequence, timestamp, &[command])[0].status,
            Runner::Sharded(sharded) => {
                sharded.submit(sequence, timestamp, &[command]);
                sharded.complete_wait().unwrap()[0].status
            }
        }
    }
}

fn open(account: u64, owner: u64, kind: AccountKind, currency: Currency) -> CommandKind {
    CommandKind::OpenAccount(OpenAccount {
        account: AccountId(account),
        owner,
        kind,
        currency,
        kyc_tier: if kind == AccountKind::Merchant { 0 } else { 3 },
        mcc: if kind == AccountKind::Merchant {
            5812
        } else {
            0
        },
    })
}

fn deposit(account: u64, amount: u64, currency: Currency) -> CommandKind {
    CommandKind::Deposit {
        account: AccountId(account),
        amount,
        currency,
    }
}

fn setup() -> Vec<CommandKind> {
    vec![
        open(ALICE, 1, AccountKind::Customer, Currency::CNY),
        open(ALICE_JPY, 1, AccountKind::Customer, Currency::JPY),
        open(BOB, 2, AccountKind::Customer, Currency::CNY),
        open(BOB_JPY, 2, AccountKind::Customer, Currency::JPY),
        open(MERCHANT, 9, AccountKind::Merchant, Currency::CNY),
        deposit(ALICE, 1_000_000, Currency::CNY),
        deposit(BOB, 1_000_000, Currency::CNY),
        CommandKind::SetFxRate(FxRateSet {
            base: Currency::CNY,
            quote: Currency::JPY,
            mid: FxMid {
                mantissa: 20,
                scale: 0,
            },
            spread_bps: 0,
            valid_ms: 3_600_000,
            source: FxSource::new("TEST").unwrap(),
        }),
        CommandKind::SetFxFloor {
            currency: Currency::JPY,
            limit: 1_000_000_000,
        },
    ]
}

fn hold(account: u64) -> CommandKind {
    CommandKind::WithdrawHold {
        account: AccountId(account),
        amount: 10,
        currency: Currency::CNY,
        timeout_ms: 600_000,
        context: RiskContext::NONE,
    }
}

fn code(customer: u64, number: u64) -> CommandKind {
    CommandKind::IssuePaymentCode {
        customer: AccountId(customer),
        code: CODE + number,
        lifetime_ms: 60_000,
    }
}

fn charge(number: u64) -> CommandKind {
    CommandKind::ChargePaymentCode {
        merchant: AccountId(MERCHANT),
        code: CODE + number,
        amount: 10,
        currency: Currency::CNY,
        context: RiskContext::NONE,
    }
}

fn quote(from: u64, to: u64) -> CommandKind {
    CommandKind::FxQuote {
        order: FxOrder {
            from: AccountId(from),
            to: AccountId(to),
            amount: 100,
            side: FxSide::Pay,
        },
        ttl_ms: 60_000,
    }
}

/// One table: how to add the n-th entry for an owner, the status past the
/// cap, how to free the entry made by a command id, and how to show that a
/// refused command added nothing (using what it would have made).
struct Row {
    table: &'static str,
    config: fn(u8) -> LedgerConfig,
    add: fn(owner_account: u64, n: u64) -> CommandKind,
    refused: Status,
    free: fn(first: CommandId, n: u64) -> CommandKind,
    /// Using the refused command's entry, and what that gets.
    use_refused: fn(refused: CommandId, n: u64) -> (CommandKind, Status),
    /// An account of another owner, which still gets its entry.
    other: u64,
}

const ROWS: &[Row] = &[
    Row {
        table: "withdrawal holds",
        config: |cap| LedgerConfig {
            account_holds_pending_max: u16::from(cap),
            ..LedgerConfig::default()
        },
        add: |account, _| hold(account),
        refused: Status::TooManyHolds,
        free: |first, _| CommandKind::WithdrawVoid { hold: first },
        use_refused: |refused, _| {
            (
                CommandKind::WithdrawPost { hold: refused },
                Status::HoldNotFound,
            )
        },
        other: BOB,
    },
    Row {
        table: "payment codes",
        config: |cap| LedgerConfig {
            customer_payment_codes_live_max: cap,
            ..LedgerConfig::default()
        },
        add: |account, n| code(account, n + account * 1_000),
        refused: Status::TooManyPaymentCodes,
        free: |_, _| charge(ALICE * 1_000),
        use_refused: |_, n| (charge(n + ALICE * 1_000), Status::UnknownPaymentCode),
        other: BOB,
    },
    Row {
        table: "FX quotes",
        config: |cap| LedgerConfig {
            account_fx_quotes_open_max: cap,
            ..LedgerConfig::default()
        },
        add: |account, _| quote(account, account + 1),
        refused: Status::FxTooManyQuotes,
        free: |first, _| CommandKind::FxConvertQuote {
            quote: first,
            from: AccountId(ALICE),
        },
        use_refused: |refused, _| {
            (
                CommandKind::FxConvertQuote {
                    quote: refused,
                    from: AccountId(ALICE),
                },
                Status::FxQuoteNotFound,
            )
        },
        other: BOB,
    },
];

/// Runs one row with capacity `cap` and returns every status, in order.
fn run_row(row: &Row, cap: u8, shards: usize) -> Vec<Status> {
    let config = (row.config)(cap);
    let mut runner = if shards == 0 {
        Runner::Lone(Box::new(Ledger::new(config)))
    } else {
        Runner::Sharded(Box::new(ShardedLedger::new(config, shards).unwrap()))
    };
    let mut sequence = 0;
    let mut id = 10_000u128;
    let mut statuses = Vec::new();
    let mut run = |kind: CommandKind, runner: &mut Runner| {
        sequence += 1;
        id += 1;
        let command = Command::new(id, kind);
        let status = runner.run(sequence, command);
        statuses.push(status);
        (command.id, status)
    };
    for kind in setup() {
        let (_, status) = run(kind, &mut runner);
        assert_eq!(status, Status::Ok, "{}: setup {kind:?}", row.table);
    }
    let mut first = None;
    for n in 0..u64::from(cap) {
        let (id, status) = run((row.add)(ALICE, n), &mut runner);
        assert_eq!(status, Status::Ok, "{}: entry {n} of {cap}", row.table);
        first.get_or_insert(id);
    }
    let first = first.unwrap();
    // Full: refused, and nothing was added.
    let cap_n = u64::from(cap);
    let (refused, status) = run((row.add)(ALICE, cap_n), &mut runner);
    assert_eq!(status, row.refused, "{}: past {cap}", row.table);
    let (use_refused, expected) = (row.use_refused)(refused, cap_n);
    let (_, status) = run(use_refused, &mut runner);
    assert_eq!(status, expected, "{}: the refused entry", row.table);
    // Still full after the refusal (a refusal takes no place either).
    let (_, status) = run((row.add)(ALICE, cap_n + 1), &mut runner);
    assert_eq!(status, row.refused, "{}: still full", row.table);
    // Another owner (or account) has its own place.
    let (_, status) = run((row.add)(row.other, 0), &mut runner);
    assert_eq!(status, Status::Ok, "{}: another owner", row.table);
    // Freeing one place lets exactly one more in.
    let (_, status) = run((row.free)(first, 0), &mut runner);
    assert_eq!(status, Status::Ok, "{}: freeing one", row.table);
    let (_, status) = run((row.add)(ALICE, cap_n + 2), &mut runner);
    assert_eq!(status, Status::Ok, "{}: after freeing one", row.table);
    let (_, status) = run((row.add)(ALICE, cap_n + 3), &mut runner);
    assert_eq!(status, row.refused, "{}: full again", row.table);
    if let Runner::Sharded(mut sharded) = runner {
        sharded.stop();
    }
    statuses
}

#[test]
fn a_full_table_refuses_and_does_not_grow() {
    for row in ROWS {
        for cap in [1u8, 3] {
            let lone = run_row(row, cap, 0);
            for shards in [1, 2, 3] {
                let sharded = run_row(row, cap, shards);
                assert_eq!(
                    sharded, lone,
                    "{} with capacity {cap}: {shards} shards decide as one ledger",
                    row.table
                );
            }
        }
    }
}

#[test]
fn the_default_caps_are_the_documented_ones() {
    let config = LedgerConfig::default();
    assert_eq!(config.account_holds_pending_max, 64);
    assert_eq!(config.customer_payment_codes_live_max, 5);
    assert_eq!(config.account_fx_quotes_open_max, 8);
    // The default per-account cap, filled, refuses the next hold.
    let row = &ROWS[0];
    let mut ledger = Ledger::new(config);
    let mut sequence = 0;
    let mut apply = |ledger: &mut Ledger, kind: CommandKind| {
        sequence += 1;
        let command = Command::new(u128::from(sequence) + 50_000, kind);
        ledger.apply_batch(sequence, T0 + sequence * SECOND, &[command])[0].status
    };
    for kind in setup() {
        assert_eq!(apply(&mut ledger, kind), Status::Ok);
    }
    for n in 0..64 {
        assert_eq!(apply(&mut ledger, (row.add)(ALICE, n)), Status::Ok);
    }
    assert_eq!(
        apply(&mut ledger, (row.add)(ALICE, 64)),
        Status::TooManyHolds
    );
}
