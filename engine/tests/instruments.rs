//! Funding instruments as tables: every status a bind, a verification, an
//! unbind, a top-up or a withdrawal hold with an instrument can return,
//! written as rows of "command, expected status". Every table runs on a
//! lone ledger and on 1, 2 and 3 shards, which must give the same statuses
//! (one rule set; the customers below do not all live on one shard). On the
//! lone ledger each row is also checked for what a user would notice: a
//! refused command moves no money and changes no instrument; money is
//! conserved; balances are what the row says.
//!
//! Then a property test: whatever random sequence of binds, verifications,
//! unbinds, top-ups and withdrawals runs, a withdrawal hold that is accepted
//! names a bound, verified instrument of the account's own customer in the
//! account's currency (checked against a reference model of the
//! instruments), and 2 shards decide every command as one ledger does.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use payrail_engine::instrument::{
    BankName, InstrumentKind, InstrumentState, InstrumentText, InstrumentToken, InstrumentView,
};
use payrail_engine::shard::ShardedLedger;
use payrail_engine::{
    AccountId, AccountKind, Command, CommandId, CommandKind, Currency, InstrumentBind,
    InstrumentId, Ledger, LedgerConfig, OpenAccount, Query, QueryReply, RiskContext, Status as S,
};
use proptest::prelude::*;

const CNY: Currency = Currency::CNY;
const JPY: Currency = Currency::JPY;
const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_800_000_000 * SECOND;

/// Customers (owner = account / 100) and a merchant.
const ALICE: u64 = 100; // owner 1, CNY
const ALICE_JPY: u64 = 101; // owner 1, JPY
const BOB: u64 = 200; // owner 2, CNY
const CAROL: u64 = 300; // owner 3, CNY
const MERCHANT: u64 = 900; // owner 9, CNY
const UNKNOWN: u64 = 999;
const H_CNY: u64 = 0xFF01_0000_0000_009C;

fn owner_of(account: u64) -> u64 {
    account / 100
}

// ---------------------------------------------------------------- commands

fn open(account: u64, kind: AccountKind, currency: Currency) -> CommandKind {
    CommandKind::OpenAccount(OpenAccount {
        account: AccountId(account),
        owner: owner_of(account),
        kind,
        currency,
        kyc_tier: if kind == AccountKind::Customer { 3 } else { 0 },
        mcc: if kind == AccountKind::Merchant {
            5812
        } else {
            0
        },
    })
}

fn setup() -> Vec<CommandKind> {
    vec![
        open(ALICE, AccountKind::Customer, CNY),
        open(ALICE_JPY, AccountKind::Customer, JPY),
        open(BOB, AccountKind::Customer, CNY),
        open(CAROL, AccountKind::Customer, CNY),
        open(MERCHANT, AccountKind::Merchant, CNY),
        deposit(ALICE, 100_000),
        deposit(BOB, 100_000),
    ]
}

fn instrument(owner: u64, number: u32) -> InstrumentId {
    InstrumentId { owner, number }
}

/// A valid bind of card `number` (CNY) for `account`'s customer.
fn card(account: u64, number: u32) -> InstrumentBind {
    InstrumentBind {
        customer: AccountId(account),
        number,
        kind: InstrumentKind::Card,
        token: InstrumentToken::new(&format!("tok_{account}_{number}")).unwrap(),
        bank: BankName::new("ICBC").unwrap(),
        country: *b"CN",
        last_four: *b"4242",
        currency: CNY,
    }
}

fn bind(bind: InstrumentBind) -> CommandKind {
    CommandKind::BindInstrument(bind)
}

fn verify(owner: u64, number: u32, passed: bool) -> CommandKind {
    CommandKind::VerifyInstrument {
        instrument: instrument(owner, number),
        passed,
    }
}

fn unbind(owner: u64, number: u32) -> CommandKind {
    CommandKind::UnbindInstrument {
        instrument: instrument(owner, number),
    }
}

fn deposit(account: u64, amount: u64) -> CommandKind {
    CommandKind::Deposit {
        account: AccountId(account),
        amount,
        currency: if account == ALICE_JPY { JPY } else { CNY },
    }
}

fn deposit_from(account: u64, amount: u64, owner: u64, number: u32) -> CommandKind {
    CommandKind::DepositFrom {
        account: AccountId(account),
        amount,
        currency: if account == ALICE_JPY { JPY } else { CNY },
        instrument: instrument(owner, number),
    }
}

fn hold(account: u64, amount: u64) -> CommandKind {
    CommandKind::WithdrawHold {
        account: AccountId(account),
        amount,
        currency: if account == ALICE_JPY { JPY } else { CNY },
        timeout_ms: 600_000,
        context: RiskContext::NONE,
    }
}

fn hold_to(account: u64, amount: u64, owner: u64, number: u32) -> CommandKind {
    CommandKind::WithdrawHoldTo {
        account: AccountId(account),
        amount,
        currency: if account == ALICE_JPY { JPY } else { CNY },
        timeout_ms: 600_000,
        context: RiskContext::NONE,
        instrument: instrument(owner, number),
    }
}

// ------------------------------------------------------------------ runner

/// A lone ledger or a sharded one, one command per batch, one second apart.
enum Runner {
    Lone(Box<Ledger>),
    Sharded(Box<ShardedLedger>),
}

impl Runner {
    fn new(config: LedgerConfig, shards: usize) -> Runner {
        if shards == 0 {
            Runner::Lone(Box::new(Ledger::new(config)))
        } else {
            Runner::Sharded(Box::new(ShardedLedger::new(config, shards).unwrap()))
        }
    }

    fn run(&mut self, sequence: u64, command: Command) -> S {
        let timestamp = T0 + sequence * SECOND;
        match self {
            Runner::Lone(ledger) => ledger.apply_batch(sequence, timestamp, &[command])[0].status,
            Runner::Sharded(sharded) => {
                sharded.submit(sequence, timestamp, &[command]);
                sharded.complete_wait().unwrap()[0].status
            }
        }
    }

    fn query(&mut self, query: &Query) -> QueryReply {
        match self {
            Runner::Lone(ledger) => ledger.query(query),
            Runner::Sharded(sharded) => sharded.query(query),
        }
    }

    fn balance(&mut self, account: u64) -> i64 {
        match self.query(&Query::Balance {
            account: AccountId(account),
        }) {
            QueryReply::Balance(view) => view.balance,
            other => panic!("balance of {account}: {other:?}"),
        }
    }

    /// The customer's instruments, as `payrail card list` shows them.
    fn instruments(&mut self, account: u64) -> Vec<InstrumentView> {
        (0..=u8::MAX)
            .map_while(|index| {
                match self.query(&Query::Instrument {
                    account: AccountId(account),
                    index,
                }) {
                    QueryReply::Instrument(view) => Some(view),
                    _ => None,
                }
            })
            .collect()
    }

    fn stop(self) {
        if let Runner::Sharded(mut sharded) = self {
            sharded.stop();
        }
    }
}

/// One row: the command, its status, and balances `(account, balance)`
/// expected afterwards (checked on every runner).
type Row = (CommandKind, S, &'static [(u64, i64)]);

/// Runs the setup and then `rows` on a lone ledger (`shards` 0) or on
/// `shards` shards; returns every status. On the lone ledger a refused row
/// must leave every balance and every instrument as it was.
fn run_table(name: &str, config: LedgerConfig, rows: &[Row], shards: usize) -> Vec<S> {
    let mut runner = Runner::new(config, shards);
    let mut sequence = 0u64;
    for kind in setup() {
        sequence += 1;
        let status = runner.run(sequence, Command::new(u128::from(sequence), kind));
        assert_eq!(status, S::Ok, "{name}: setup {kind:?}");
    }
    let watched = [ALICE, ALICE_JPY, BOB, CAROL, MERCHANT, H_CNY];
    let mut statuses = Vec::new();
    for (number, (kind, expected, balances)) in rows.iter().enumerate() {
        let context = format!("{name} on {shards} shards, row {number}: {kind:?}");
        let before: Vec<(i64, Vec<InstrumentView>)> = if shards == 0 {
            watched
                .iter()
                .map(|&account| {
                    let balance = runner.balance(account);
                    (balance, runner.instruments(account))
                })
                .collect()
        } else {
            Vec::new()
        };
        sequence += 1;
        let status = runner.run(sequence, Command::new(1_000 + u128::from(sequence), *kind));
        assert_eq!(status, *expected, "{context}");
        statuses.push(status);
        for &(account, balance) in *balances {
            assert_eq!(
                runner.balance(account),
                balance,
                "{context}: balance of {account}"
            );
        }
        if let Runner::Lone(ledger) = &runner {
            assert!(ledger.is_conserved(), "{context}: money not conserved");
        }
        if shards == 0 && status != S::Ok {
            let after: Vec<(i64, Vec<InstrumentView>)> = watched
                .iter()
                .map(|&account| {
                    let balance = runner.balance(account);
                    (balance, runner.instruments(account))
                })
                .collect();
            assert_eq!(
                after, before,
                "{context}: a refused command changed something"
            );
        }
    }
    runner.stop();
    statuses
}

/// Runs a table on a lone ledger and on 1, 2 and 3 shards.
fn check_table(name: &str, config: LedgerConfig, rows: &[Row]) {
    let lone = run_table(name, config, rows, 0);
    for shards in [1, 2, 3] {
        let sharded = run_table(name, config, rows, shards);
        assert_eq!(
            sharded, lone,
            "{name}: {shards} shards decide as one ledger"
        );
    }
}

// ------------------------------------------------------------------ tables

#[rustfmt::skip]
fn bind_rows() -> Vec<Row> {
    let with = |change: fn(&mut InstrumentBind)| {
        let mut bind = card(ALICE, 5);
        change(&mut bind);
        CommandKind::BindInstrument(bind)
    };
    vec![
        (bind(card(ALICE, 1)), S::Ok, &[]),
        (bind(card(ALICE, 1)), S::InstrumentExists, &[]),
        // Another customer may use the same number.
        (bind(card(BOB, 1)), S::Ok, &[]),
        // Any account of the customer binds for the customer.
        (bind(card(ALICE_JPY, 1)), S::InstrumentExists, &[]),
        // A card number in any text field, plain, spaced, dashed or hidden
        // in a longer run of digits; a bad field otherwise.
        (with(|b| b.token = InstrumentToken::new("4111111111111111").unwrap()), S::LooksLikeCardNumber, &[]),
        (with(|b| b.token = InstrumentToken::new("pan 4111 1111 1111 1111").unwrap()), S::LooksLikeCardNumber, &[]),
        (with(|b| b.bank = BankName::new("378282246310005").unwrap()), S::LooksLikeCardNumber, &[]),
        (with(|b| b.token = InstrumentToken::new("x99378282246310005").unwrap()), S::LooksLikeCardNumber, &[]),
        // Digits no 13 to 19 of which pass the Luhn check are not a card
        // number (a date and time here), nor are 12 digits.
        (with(|b| b.token = InstrumentToken::new("t2026120709081234").unwrap()), S::Ok, &[]),
        (with(|b| { b.number = 8; b.token = InstrumentToken::new("tok 4111 1111 1111").unwrap(); }), S::Ok, &[]),
        (with(|b| b.number = 6), S::Ok, &[]),
        (with(|b| { b.number = 7; b.last_four = *b"42a2"; }), S::InvalidInstrument, &[]),
        (with(|b| { b.number = 7; b.country = *b"cn"; }), S::InvalidInstrument, &[]),
        (with(|b| { b.number = 7; b.token = InstrumentText([0; 32]); }), S::InvalidInstrument, &[]),
        (with(|b| { b.number = 7; b.bank = InstrumentText(*b"IC\0BC\0\0\0\0\0\0\0\0\0\0\0"); }), S::InvalidInstrument, &[]),
        (with(|b| { b.number = 7; b.currency = Currency::from_raw(999); }), S::UnknownCurrency, &[]),
        (with(|b| { b.number = 7; b.customer = AccountId(MERCHANT); }), S::NotACustomer, &[]),
        (with(|b| { b.number = 7; b.customer = AccountId(UNKNOWN); }), S::UnknownAccount, &[]),
        (with(|b| { b.number = 7; b.customer = AccountId(H_CNY); }), S::HouseAccountNotAllowed, &[]),
        // Frozen customers bind nothing.
        (CommandKind::Freeze { account: AccountId(CAROL) }, S::Ok, &[]),
        (bind(card(CAROL, 1)), S::AccountFrozen, &[]),
    ]
}

#[rustfmt::skip]
fn verify_rows() -> Vec<Row> {
    vec![
        (bind(card(ALICE, 1)), S::Ok, &[]),
        (verify(1, 2, true), S::UnknownInstrument, &[]),
        // Bob has no instrument 1: Alice's number does not reach him.
        (verify(2, 1, true), S::UnknownInstrument, &[]),
        (verify(1, 1, false), S::Ok, &[]),
        // A failed check can be followed by one that passes ...
        (verify(1, 1, true), S::Ok, &[]),
        // ... but a verified instrument is not verified again.
        (verify(1, 1, true), S::InstrumentAlreadyVerified, &[]),
        (verify(1, 1, false), S::InstrumentAlreadyVerified, &[]),
        (unbind(1, 1), S::Ok, &[]),
        (unbind(1, 1), S::InstrumentUnbound, &[]),
        (verify(1, 1, true), S::InstrumentUnbound, &[]),
        (unbind(1, 9), S::UnknownInstrument, &[]),
        (unbind(77, 1), S::UnknownInstrument, &[]),
        // The number stays taken while the unbound instrument is remembered.
        (bind(card(ALICE, 1)), S::InstrumentExists, &[]),
    ]
}

#[rustfmt::skip]
fn funding_rows() -> Vec<Row> {
    let mut jpy_card = card(ALICE, 3);
    jpy_card.currency = JPY;
    jpy_card.kind = InstrumentKind::BankAccount;
    vec![
        // Before any instrument, top-ups and holds without one are taken.
        (deposit(ALICE, 1_000), S::Ok, &[(ALICE, 101_000), (H_CNY, -201_000)]),
        (bind(card(ALICE, 1)), S::Ok, &[]),
        // From now on Alice must name one; Bob, who has none, need not.
        (deposit(ALICE, 1_000), S::InstrumentRequired, &[(ALICE, 101_000)]),
        (deposit(ALICE_JPY, 1_000), S::InstrumentRequired, &[(ALICE_JPY, 0)]),
        (hold(ALICE, 1_000), S::InstrumentRequired, &[]),
        (deposit(BOB, 1_000), S::Ok, &[(BOB, 101_000)]),
        (hold(BOB, 1_000), S::Ok, &[]),
        // Unverified.
        (deposit_from(ALICE, 500, 1, 1), S::InstrumentUnverified, &[(ALICE, 101_000)]),
        (hold_to(ALICE, 500, 1, 1), S::InstrumentUnverified, &[]),
        (verify(1, 1, true), S::Ok, &[]),
        (deposit_from(ALICE, 500, 1, 1), S::Ok, &[(ALICE, 101_500), (H_CNY, -202_500)]),
        // A top-up may come from a card of another currency (the card's
        // bank converts); a withdrawal goes to one of the account's.
        (deposit_from(ALICE_JPY, 300, 1, 1), S::Ok, &[(ALICE_JPY, 300)]),
        (hold_to(ALICE_JPY, 100, 1, 1), S::InstrumentCurrencyMismatch, &[]),
        (bind(jpy_card), S::Ok, &[]),
        (verify(1, 3, true), S::Ok, &[]),
        (hold_to(ALICE_JPY, 100, 1, 3), S::Ok, &[]),
        (hold_to(ALICE, 100, 1, 3), S::InstrumentCurrencyMismatch, &[]),
        // Someone else's instrument.
        (deposit_from(BOB, 500, 1, 1), S::InstrumentNotYours, &[(BOB, 101_000)]),
        (hold_to(BOB, 500, 1, 1), S::InstrumentNotYours, &[]),
        (hold_to(ALICE, 500, 2, 1), S::InstrumentNotYours, &[]),
        // Unknown number.
        (deposit_from(ALICE, 500, 1, 9), S::UnknownInstrument, &[]),
        (hold_to(ALICE, 500, 1, 9), S::UnknownInstrument, &[]),
        // The account's own checks come first.
        (deposit_from(ALICE, 0, 1, 1), S::AmountMustBePositive, &[]),
        (deposit_from(UNKNOWN, 500, 1, 1), S::UnknownAccount, &[]),
        (hold_to(ALICE, 1_000_000, 1, 1), S::InsufficientFunds, &[]),
        (deposit_from(MERCHANT, 500, 9, 1), S::NotACustomer, &[]),
        // A verified instrument of the customer in the account's currency.
        (hold_to(ALICE, 1_500, 1, 1), S::Ok, &[(ALICE, 101_500)]),
        (CommandKind::WithdrawPost { hold: CommandId(1_000 + 34) }, S::Ok, &[(ALICE, 100_000)]),
        // Unbound: nothing more to or from it.
        (unbind(1, 1), S::Ok, &[]),
        (deposit_from(ALICE, 500, 1, 1), S::InstrumentUnbound, &[(ALICE, 100_000)]),
        (hold_to(ALICE, 500, 1, 1), S::InstrumentUnbound, &[]),
        // Still required after every instrument of the customer in that
        // currency is gone.
        (deposit(ALICE, 1_000), S::InstrumentRequired, &[(ALICE, 100_000)]),
    ]
}

fn caps_config() -> LedgerConfig {
    LedgerConfig {
        customer_instruments_max: 2,
        ..LedgerConfig::default()
    }
}

#[rustfmt::skip]
fn cap_rows() -> Vec<Row> {
    vec![
        (bind(card(ALICE, 1)), S::Ok, &[]),
        (bind(card(ALICE, 2)), S::Ok, &[]),
        (bind(card(ALICE, 3)), S::TooManyInstruments, &[]),
        // The refused bind left nothing behind.
        (verify(1, 3, true), S::UnknownInstrument, &[]),
        // Another customer has their own places.
        (bind(card(BOB, 1)), S::Ok, &[]),
        // Unbinding one frees a place; the unbound one is remembered until
        // then, and forgotten when a new bind takes its place.
        (unbind(1, 1), S::Ok, &[]),
        (verify(1, 1, true), S::InstrumentUnbound, &[]),
        (bind(card(ALICE, 3)), S::Ok, &[]),
        (verify(1, 1, true), S::UnknownInstrument, &[]),
        (bind(card(ALICE, 4)), S::TooManyInstruments, &[]),
    ]
}

#[test]
fn binding_checks_every_field_and_refuses_card_numbers() {
    check_table("bind", LedgerConfig::default(), &bind_rows());
}

#[test]
fn verification_and_unbinding_follow_the_instrument_life() {
    check_table("verify", LedgerConfig::default(), &verify_rows());
}

#[test]
fn top_ups_and_withdrawals_name_a_verified_instrument_of_the_customer() {
    check_table("funding", LedgerConfig::default(), &funding_rows());
}

#[test]
fn the_per_customer_cap_refuses_and_does_not_grow() {
    check_table("caps", caps_config(), &cap_rows());
}

/// The table's own bound is per ledger (per shard when sharded, like the
/// account table's): a lone ledger and one shard refuse alike.
#[test]
fn a_full_instrument_table_refuses() {
    #[rustfmt::skip]
    let rows: Vec<Row> = vec![
        (bind(card(ALICE, 1)), S::Ok, &[]),
        (bind(card(BOB, 1)), S::Ok, &[]),
        (bind(card(CAROL, 1)), S::Ok, &[]),
        (bind(card(ALICE, 2)), S::InstrumentsFull, &[]),
        (verify(1, 2, true), S::UnknownInstrument, &[]),
        // An unbound instrument's place is reused by its own customer only
        // when the customer is at the cap; the table stays full for others.
        (unbind(1, 1), S::Ok, &[]),
        (bind(card(BOB, 2)), S::InstrumentsFull, &[]),
    ];
    let config = LedgerConfig {
        instruments_max: 3,
        ..LedgerConfig::default()
    };
    let lone = run_table("full", config, &rows, 0);
    assert_eq!(run_table("full", config, &rows, 1), lone);
}

/// Every instrument status (170-181) is the expected one of some row.
#[test]
fn the_tables_cover_every_instrument_status() {
    let mut expected: Vec<S> = [bind_rows(), verify_rows(), funding_rows(), cap_rows()]
        .iter()
        .flatten()
        .map(|row| row.1)
        .collect();
    expected.push(S::InstrumentsFull);
    for status in S::ALL {
        if (170..190).contains(&status.code()) {
            assert!(expected.contains(status), "no row expects {status:?}");
        }
    }
}

#[test]
fn the_list_shows_bank_last_four_and_state() {
    let mut ledger = Ledger::default();
    let mut jpy = card(ALICE_JPY, 2);
    jpy.kind = InstrumentKind::BankAccount;
    jpy.bank = BankName::new("MUFG").unwrap();
    jpy.last_four = *b"0077";
    jpy.currency = JPY;
    let kinds = [
        open(ALICE, AccountKind::Customer, CNY),
        open(ALICE_JPY, AccountKind::Customer, JPY),
        bind(jpy),
        bind(card(ALICE, 1)),
        verify(1, 2, true),
    ];
    for (sequence, kind) in kinds.into_iter().enumerate() {
        let sequence = sequence as u64 + 1;
        let command = Command::new(u128::from(sequence), kind);
        let status = ledger.apply_batch(sequence, T0 + sequence * SECOND, &[command])[0].status;
        assert_eq!(status, S::Ok, "{kind:?}");
    }
    let list: Vec<InstrumentView> = (0..4)
        .map_while(|index| {
            match ledger.query(&Query::Instrument {
                account: AccountId(ALICE),
                index,
            }) {
                QueryReply::Instrument(view) => Some(view),
                _ => None,
            }
        })
        .collect();
    assert_eq!(list.len(), 2);
    // In number order, whichever account bound them.
    assert_eq!(list[0].instrument, instrument(1, 1));
    assert_eq!(list[0].bank.as_str(), "ICBC");
    assert_eq!(list[0].state, InstrumentState::Unverified);
    assert_eq!(list[1].instrument, instrument(1, 2));
    assert_eq!(list[1].bank.as_str(), "MUFG");
    assert_eq!(&list[1].last_four, b"0077");
    assert_eq!(list[1].kind, InstrumentKind::BankAccount);
    assert_eq!(list[1].state, InstrumentState::Verified);
    assert_eq!(list[1].changed_at, T0 + 5 * SECOND);
    assert_eq!(list[1].instruments_total, 2);
    assert_eq!(
        ledger.query(&Query::Instrument {
            account: AccountId(MERCHANT),
            index: 0
        }),
        QueryReply::Refused(S::UnknownAccount)
    );
}

/// Instruments are state: a checkpoint carries them (the digest covers
/// them), and a state written before instruments (version 3) still loads.
#[test]
fn checkpoints_carry_instruments() {
    let mut ledger = Ledger::default();
    let kinds = [
        open(ALICE, AccountKind::Customer, CNY),
        bind(card(ALICE, 1)),
        verify(1, 1, true),
        bind(card(ALICE, 2)),
        unbind(1, 2),
    ];
    for (sequence, kind) in kinds.into_iter().enumerate() {
        let sequence = sequence as u64 + 1;
        let command = Command::new(u128::from(sequence), kind);
        ledger.apply_batch(sequence, T0 + sequence * SECOND, &[command]);
    }
    let mut bytes = Vec::new();
    payrail_engine::storage::snapshot::encode_state(&ledger, &mut bytes);
    let decoded =
        payrail_engine::storage::snapshot::decode_state(&bytes, LedgerConfig::default()).unwrap();
    assert_eq!(decoded.digest(), ledger.digest());
    // The decoded ledger still knows instrument 1 as verified and 2 as unbound.
    let mut decoded = decoded;
    let statuses: Vec<S> = decoded
        .apply_batch(
            10,
            T0 + 10 * SECOND,
            &[
                Command::new(100, deposit_from(ALICE, 5, 1, 1)),
                Command::new(101, deposit_from(ALICE, 5, 1, 2)),
            ],
        )
        .iter()
        .map(|result| result.status)
        .collect();
    assert_eq!(statuses, [S::Ok, S::InstrumentUnbound]);

    // An instrument changes the digest.
    let mut other = ledger.clone();
    other.apply_batch(6, T0 + 6 * SECOND, &[Command::new(6, bind(card(ALICE, 3)))]);
    let mut same = ledger.clone();
    same.apply_batch(6, T0 + 6 * SECOND, &[Command::new(6, verify(1, 1, true))]);
    assert_ne!(other.digest(), same.digest());
}

// ---------------------------------------------------------------- property

/// One random step of the property test.
#[derive(Clone, Debug)]
enum Step {
    Bind {
        account: u64,
        number: u32,
        jpy: bool,
    },
    Verify {
        owner: u64,
        number: u32,
        passed: bool,
    },
    Unbind {
        owner: u64,
        number: u32,
    },
    DepositFrom {
        account: u64,
        owner: u64,
        number: u32,
    },
    HoldTo {
        account: u64,
        owner: u64,
        number: u32,
    },
    Hold {
        account: u64,
    },
}

const PROP_ACCOUNTS: [u64; 4] = [ALICE, ALICE_JPY, BOB, CAROL];

fn step() -> impl Strategy<Value = Step> {
    let account = prop::sample::select(PROP_ACCOUNTS.to_vec());
    let owner = prop::sample::select(vec![1u64, 2, 3, 4]);
    let number = 1u32..4;
    prop_oneof![
        (account.clone(), number.clone(), any::<bool>()).prop_map(|(account, number, jpy)| {
            Step::Bind {
                account,
                number,
                jpy,
            }
        }),
        (owner.clone(), number.clone(), prop::bool::weighted(0.8)).prop_map(
            |(owner, number, passed)| Step::Verify {
                owner,
                number,
                passed
            }
        ),
        (owner.clone(), number.clone()).prop_map(|(owner, number)| Step::Unbind { owner, number }),
        (account.clone(), owner.clone(), number.clone()).prop_map(|(account, owner, number)| {
            Step::DepositFrom {
                account,
                owner,
                number,
            }
        }),
        (account.clone(), owner, number).prop_map(|(account, owner, number)| Step::HoldTo {
            account,
            owner,
            number
        }),
        account.prop_map(|account| Step::Hold { account }),
    ]
}

fn currency_of(account: u64) -> Currency {
    if account == ALICE_JPY {
        JPY
    } else {
        CNY
    }
}

fn step_kind(step: &Step) -> CommandKind {
    match *step {
        Step::Bind {
            account,
            number,
            jpy,
        } => {
            let mut bind = card(account, number);
            if jpy {
                bind.currency = JPY;
            }
            CommandKind::BindInstrument(bind)
        }
        Step::Verify {
            owner,
            number,
            passed,
        } => verify(owner, number, passed),
        Step::Unbind { owner, number } => unbind(owner, number),
        Step::DepositFrom {
            account,
            owner,
            number,
        } => deposit_from(account, 50, owner, number),
        Step::HoldTo {
            account,
            owner,
            number,
        } => hold_to(account, 10, owner, number),
        Step::Hold { account } => hold(account, 10),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_withdrawal_never_reaches_an_instrument_that_is_not_the_customers(
        steps in prop::collection::vec(step(), 20..120)
    ) {
        // The reference model: per (owner, number), (state, currency).
        let mut model: BTreeMap<(u64, u32), (InstrumentState, Currency)> = BTreeMap::new();
        let mut lone = Runner::new(LedgerConfig::default(), 0);
        let mut sharded = Runner::new(LedgerConfig::default(), 2);
        let mut sequence = 0u64;
        let mut setup_kinds = setup();
        setup_kinds.push(deposit(ALICE_JPY, 100_000));
        setup_kinds.push(deposit(CAROL, 100_000));
        for kind in setup_kinds {
            sequence += 1;
            let command = Command::new(u128::from(sequence), kind);
            prop_assert_eq!(lone.run(sequence, command), S::Ok);
            prop_assert_eq!(sharded.run(sequence, command), S::Ok);
        }
        for step in &steps {
            sequence += 1;
            let command = Command::new(u128::from(sequence), step_kind(step));
            let status = lone.run(sequence, command);
            prop_assert_eq!(sharded.run(sequence, command), status, "{:?}", step);
            match *step {
                Step::Bind { account, number, jpy } if status == S::Ok => {
                    let currency = if jpy { JPY } else { CNY };
                    model.insert((owner_of(account), number), (InstrumentState::Unverified, currency));
                }
                Step::Verify { owner, number, passed } if status == S::Ok => {
                    let entry = model.get_mut(&(owner, number)).expect("verified an unknown instrument");
                    entry.0 = if passed { InstrumentState::Verified } else { InstrumentState::Failed };
                }
                Step::Unbind { owner, number } if status == S::Ok => {
                    let entry = model.get_mut(&(owner, number)).expect("unbound an unknown instrument");
                    entry.0 = InstrumentState::Unbound;
                }
                Step::HoldTo { account, owner, number } if status == S::Ok => {
                    // The property: only to the account's own customer's
                    // verified instrument of the account's currency.
                    prop_assert_eq!(owner, owner_of(account), "{:?} reached another customer", step);
                    let (state, currency) = model[&(owner, number)];
                    prop_assert_eq!(state, InstrumentState::Verified, "{:?}", step);
                    prop_assert_eq!(currency, currency_of(account), "{:?}", step);
                }
                Step::HoldTo { account, owner, .. } if owner != owner_of(account) => {
                    prop_assert!(
                        status == S::InstrumentNotYours,
                        "{:?}: {:?}", step, status
                    );
                }
                Step::DepositFrom { account, owner, number } if status == S::Ok => {
                    prop_assert_eq!(owner, owner_of(account));
                    prop_assert_eq!(model[&(owner, number)].0, InstrumentState::Verified);
                }
                Step::Hold { account } if status == S::Ok => {
                    // Without an instrument only while the customer has none.
                    let owner = owner_of(account);
                    prop_assert!(!model.keys().any(|(holder, _)| *holder == owner), "{:?}", step);
                }
                _ => {}
            }
        }
        // The instrument lists agree with the model, on both runners.
        for account in [ALICE, BOB, CAROL] {
            let owner = owner_of(account);
            let want: Vec<(u32, InstrumentState)> = model
                .iter()
                .filter(|((holder, _), _)| *holder == owner)
                .map(|((_, number), (state, _))| (*number, *state))
                .collect();
            for runner in [&mut lone, &mut sharded] {
                let got: Vec<(u32, InstrumentState)> = runner
                    .instruments(account)
                    .iter()
                    .map(|view| (view.instrument.number, view.state))
                    .collect();
                prop_assert_eq!(&got, &want);
            }
        }
        if let (Runner::Lone(ledger), Runner::Sharded(sharded_ledger)) = (&lone, &mut sharded) {
            prop_assert_eq!(ledger.digest(), sharded_ledger.to_ledger().unwrap().digest());
        }
        sharded.stop();
    }
}
