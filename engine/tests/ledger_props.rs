//! Property tests: random command sequences against the ledger.
//!
//! A case is a random sequence of commands of every kind over a few accounts
//! in JPY (0 minor units), CNY (2) and BHD (3), cut into batches whose
//! timestamps move forward by random jumps (so holds expire), with command ids
//! sometimes re-sent (same fields) or re-used (other fields). Properties:
//!
//! 1. per currency, balances sum to zero and debits pending equal credits
//!    pending after every batch, and the ledger agrees with a reference model
//!    (plain `BTreeMap`s, i128 arithmetic) on every status, balance, hold and
//!    account field;
//! 2. no customer or merchant balance or available amount is below zero;
//! 3. applying the same sequence twice from empty gives the same results and
//!    the same digest after every batch;
//! 4. re-sending any earlier command returns its first result and leaves the
//!    state as an empty batch would (same digest).
//!
//! Size: each case has at least `COMMANDS_PER_CASE_MIN` = 100 generated
//! commands (plus a fixed setup batch) and each of the three tests runs
//! `CASES` = 64 cases, so at least 3 x 64 x 100 = 19,200 generated commands
//! are applied per run (about 38,000 on average; test 4 re-sends each of them
//! once more on top). The file takes a few seconds in a debug build.

// Tests may unwrap and panic (helper rules); the workspace lints are for
// code that input can reach.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use payrail_engine::ledger::HoldState;
use payrail_engine::{
    limits, AccountId, AccountKind, AccountStatus, Command, CommandId, CommandKind, CommandResult,
    Currency, HouseRole, Ledger, OpenAccount, Status,
};
use proptest::collection::vec;
use proptest::prelude::*;

const CASES: u32 = 64;
const COMMANDS_PER_CASE_MIN: usize = 100;
const COMMANDS_PER_CASE_MAX: usize = 300;

const MS: u64 = 1_000_000;
const SECOND: u64 = 1_000 * MS;
const T0: u64 = 1_700_000_000 * SECOND;

const JPY: Currency = Currency::JPY;
const CNY: Currency = Currency::CNY;
const BHD: Currency = Currency::BHD;
const CURRENCIES: [Currency; 3] = [JPY, CNY, BHD];

/// The accounts a case works with: id, kind, currency. The first
/// `OPENED_AT_SETUP` are opened and funded by the setup batch; the others
/// only by random `OpenAccount` commands.
const ACCOUNTS: [(u64, AccountKind, Currency); 8] = [
    (1, AccountKind::Customer, JPY),
    (2, AccountKind::Customer, JPY),
    (3, AccountKind::Merchant, JPY),
    (4, AccountKind::Customer, CNY),
    (5, AccountKind::Customer, CNY),
    (6, AccountKind::Merchant, CNY),
    (7, AccountKind::Customer, BHD),
    (8, AccountKind::Merchant, BHD),
];
const OPENED_AT_SETUP: usize = 6;
/// Account picks past the table: an id never opened, and a house account.
const PICK_UNKNOWN: usize = ACCOUNTS.len();
const PICK_HOUSE: usize = ACCOUNTS.len() + 1;
const UNKNOWN: u64 = 99;

const AMOUNT_MAX: u64 = limits::AMOUNT_MAX;

// ------------------------------------------------------------- generation

/// A command before ids and hold references are resolved.
#[derive(Clone, Debug)]
enum Op {
    /// `variant` 0..=4 opens the account as the table says; 5 as a house
    /// account, 6 in a currency that does not exist, 7 with a bad KYC tier.
    Open {
        account: usize,
        variant: u8,
    },
    Deposit {
        account: usize,
        amount: u64,
        currency: Option<usize>,
    },
    /// `to` is an offset into the debit account's currency group when
    /// `same_currency`, else any account pick.
    Transfer {
        from: usize,
        to: usize,
        same_currency: bool,
        amount: u64,
        currency: Option<usize>,
    },
    Hold {
        account: usize,
        amount: u64,
        currency: Option<usize>,
        timeout_ms: u64,
    },
    /// An earlier hold by index (modulo their number), or an unknown one.
    Post {
        hold: usize,
    },
    Void {
        hold: usize,
    },
    Freeze {
        account: usize,
    },
    Unfreeze {
        account: usize,
    },
    Close {
        account: usize,
    },
    SetKyc {
        account: usize,
        tier: u8,
    },
}

/// Which id a command gets.
#[derive(Clone, Debug)]
enum IdPick {
    Fresh,
    /// Re-send an earlier command exactly (index modulo the history).
    Resend(usize),
    /// An earlier command's id with this step's fields.
    Reuse(usize),
}

#[derive(Clone, Debug)]
struct Step {
    id: IdPick,
    op: Op,
}

#[derive(Clone, Debug)]
struct Case {
    steps: Vec<Step>,
    /// Batch sizes and the time jump before each batch, used in a cycle
    /// until the steps run out.
    batches: Vec<(usize, u64)>,
    /// For test 4: which earlier command to re-send after each batch.
    resends: Vec<usize>,
}

fn amount() -> impl Strategy<Value = u64> {
    prop_oneof![
        12 => 1..=20_000u64,
        2 => 1..=200_000u64,
        1 => Just(0u64),
        1 => Just(AMOUNT_MAX),
        1 => AMOUNT_MAX + 1..=u64::MAX,
    ]
}

fn currency() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![9 => Just(None), 1 => (0..CURRENCIES.len()).prop_map(Some)]
}

fn account() -> impl Strategy<Value = usize> {
    prop_oneof![10 => 0..ACCOUNTS.len(), 1 => Just(PICK_UNKNOWN), 1 => Just(PICK_HOUSE)]
}

fn timeout_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => limits::HOLD_TIMEOUT_MS_MIN..=5_000,
        3 => limits::HOLD_TIMEOUT_MS_MIN..=120_000,
        1 => Just(limits::HOLD_TIMEOUT_MS_MAX),
        1 => prop_oneof![Just(0), Just(limits::HOLD_TIMEOUT_MS_MIN - 1), Just(u64::MAX)],
    ]
}

/// Time between batches: often none, sometimes past most hold timeouts.
fn jump() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => Just(0u64),
        4 => 1..=2_000 * MS,
        2 => SECOND..=10 * SECOND,
        1 => 10 * SECOND..=150 * SECOND,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..ACCOUNTS.len(), 0..8u8).prop_map(|(account, variant)| Op::Open { account, variant }),
        3 => (account(), amount(), currency())
            .prop_map(|(account, amount, currency)| Op::Deposit { account, amount, currency }),
        6 => (account(), 0..ACCOUNTS.len() + 2, prop::bool::weighted(0.8), amount(), currency())
            .prop_map(|(from, to, same_currency, amount, currency)| Op::Transfer {
                from, to, same_currency, amount, currency
            }),
        3 => (account(), amount(), currency(), timeout_ms()).prop_map(
            |(account, amount, currency, timeout_ms)| Op::Hold { account, amount, currency, timeout_ms }
        ),
        2 => any::<usize>().prop_map(|hold| Op::Post { hold }),
        1 => any::<usize>().prop_map(|hold| Op::Void { hold }),
        1 => account().prop_map(|account| Op::Freeze { account }),
        2 => account().prop_map(|account| Op::Unfreeze { account }),
        1 => account().prop_map(|account| Op::Close { account }),
        1 => (account(), 0..=limits::KYC_TIER_MAX + 1).prop_map(|(account, tier)| Op::SetKyc { account, tier }),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let id = prop_oneof![
        17 => Just(IdPick::Fresh),
        2 => any::<usize>().prop_map(IdPick::Resend),
        1 => any::<usize>().prop_map(IdPick::Reuse),
    ];
    (id, op()).prop_map(|(id, op)| Step { id, op })
}

fn case() -> impl Strategy<Value = Case> {
    (
        vec(step(), COMMANDS_PER_CASE_MIN..=COMMANDS_PER_CASE_MAX),
        vec((1usize..=24, jump()), 1..=16),
        vec(any::<usize>(), 1..=16),
    )
        .prop_map(|(steps, batches, resends)| Case {
            steps,
            batches,
            resends,
        })
}

// --------------------------------------------------------------- building

/// One batch: its timestamp and commands.
type Batch = (u64, Vec<Command>);

fn account_id(pick: usize) -> u64 {
    match pick {
        PICK_UNKNOWN => UNKNOWN,
        PICK_HOUSE => AccountId::house(HouseRole::Settlement, CNY).0,
        index => ACCOUNTS[index].0,
    }
}

/// The account's own currency (CNY for the unknown and house picks), or
/// another one when the op asks.
fn currency_for(pick: usize, currency: Option<usize>) -> Currency {
    match currency {
        Some(index) => CURRENCIES[index],
        None if pick < ACCOUNTS.len() => ACCOUNTS[pick].2,
        None => CNY,
    }
}

fn open_kind(index: usize, variant: u8) -> CommandKind {
    let (id, kind, currency) = ACCOUNTS[index];
    let mut open = OpenAccount {
        account: AccountId(id),
        owner: id,
        kind,
        currency,
        kyc_tier: if kind == AccountKind::Customer { 1 } else { 0 },
        mcc: if kind == AccountKind::Merchant {
            5_812
        } else {
            0
        },
    };
    match variant {
        5 => open.kind = AccountKind::House,
        6 => open.currency = Currency::from_raw(999),
        7 => open.kyc_tier = 9,
        _ => {}
    }
    CommandKind::OpenAccount(open)
}

fn kind(op: &Op, holds: &[CommandId]) -> CommandKind {
    // Mostly one of the last few holds (likely still pending), sometimes an
    // older one, sometimes one that does not exist.
    let hold = |index: usize| match holds.len() {
        0 => CommandId(777),
        _ if index % 16 == 15 => CommandId(777),
        len if index % 4 == 3 => holds[index % len],
        len => holds[len - 1 - index % len.min(4)],
    };
    match *op {
        Op::Open { account, variant } => open_kind(account, variant),
        Op::Deposit {
            account,
            amount,
            currency,
        } => CommandKind::Deposit {
            account: AccountId(account_id(account)),
            amount,
            currency: currency_for(account, currency),
        },
        Op::Transfer {
            from,
            to,
            same_currency,
            amount,
            currency,
        } => {
            let to = if same_currency && from < ACCOUNTS.len() {
                // Another account of the same currency.
                let group: Vec<usize> = (0..ACCOUNTS.len())
                    .filter(|&index| index != from && ACCOUNTS[index].2 == ACCOUNTS[from].2)
                    .collect();
                group[to % group.len()]
            } else {
                to
            };
            CommandKind::Transfer {
                from: AccountId(account_id(from)),
                to: AccountId(account_id(to)),
                amount,
                currency: currency_for(from, currency),
                context: payrail_engine::RiskContext::NONE,
            }
        }
        Op::Hold {
            account,
            amount,
            currency,
            timeout_ms,
        } => CommandKind::WithdrawHold {
            account: AccountId(account_id(account)),
            amount,
            currency: currency_for(account, currency),
            timeout_ms,
            context: payrail_engine::RiskContext::NONE,
        },
        Op::Post { hold: index } => CommandKind::WithdrawPost { hold: hold(index) },
        Op::Void { hold: index } => CommandKind::WithdrawVoid { hold: hold(index) },
        Op::Freeze { account } => CommandKind::Freeze {
            account: AccountId(account_id(account)),
        },
        Op::Unfreeze { account } => CommandKind::Unfreeze {
            account: AccountId(account_id(account)),
        },
        Op::Close { account } => CommandKind::Close {
            account: AccountId(account_id(account)),
        },
        Op::SetKyc { account, tier } => CommandKind::SetKycTier {
            account: AccountId(account_id(account)),
            tier,
        },
    }
}

/// The setup batch (ids 1..): open the first accounts and fund them.
fn setup() -> Vec<Command> {
    let mut commands = Vec::new();
    for index in 0..OPENED_AT_SETUP {
        commands.push(Command::new(
            commands.len() as u128 + 1,
            open_kind(index, 0),
        ));
    }
    for &(id, _, currency) in &ACCOUNTS[..OPENED_AT_SETUP] {
        let kind = CommandKind::Deposit {
            account: AccountId(id),
            amount: 50_000,
            currency,
        };
        commands.push(Command::new(commands.len() as u128 + 1, kind));
    }
    commands
}

/// Resolves a case into batches: fresh ids count up from 1,000; re-sends and
/// re-uses pick from the commands before them; posts and voids pick from the
/// holds before them.
fn build(case: &Case) -> Vec<Batch> {
    let mut batches = vec![(T0, setup())];
    let mut history: Vec<Command> = batches[0].1.clone();
    let mut holds: Vec<CommandId> = Vec::new();
    let mut next_id: u128 = 1_000;
    let mut now = T0;
    let mut steps = case.steps.iter();
    for &(len, jump) in case.batches.iter().cycle() {
        let mut batch = Vec::with_capacity(len);
        for step in steps.by_ref().take(len) {
            let command = match step.id {
                IdPick::Fresh => {
                    next_id += 1;
                    Command::new(next_id, kind(&step.op, &holds))
                }
                IdPick::Resend(index) => history[index % history.len()],
                IdPick::Reuse(index) => Command {
                    id: history[index % history.len()].id,
                    kind: kind(&step.op, &holds),
                },
            };
            if matches!(command.kind, CommandKind::WithdrawHold { .. }) {
                holds.push(command.id);
            }
            history.push(command);
            batch.push(command);
        }
        if batch.is_empty() {
            break;
        }
        now += jump;
        batches.push((now, batch));
    }
    batches
}

// ------------------------------------------------------------------ model

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ModelAccount {
    kind: AccountKind,
    currency: Currency,
    status: AccountStatus,
    kyc_tier: u8,
    balance: i128,
    held: u128,
    holds: u16,
}

impl ModelAccount {
    fn available(&self) -> i128 {
        self.balance - self.held as i128
    }

    fn movable(&self) -> Result<(), Status> {
        match self.status {
            AccountStatus::Active => Ok(()),
            AccountStatus::Frozen => Err(Status::AccountFrozen),
            AccountStatus::Closed => Err(Status::AccountClosed),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct ModelHold {
    account: u64,
    currency: Currency,
    amount: u64,
    expires_at: u64,
    state: HoldState,
}

/// The ledger's rules written plainly, without idempotency eviction (cases
/// span far less than the default 24 h window).
#[derive(Default, Debug)]
struct Model {
    accounts: BTreeMap<u64, ModelAccount>,
    /// House settlement account per currency: balance and credits pending.
    houses: BTreeMap<Currency, (i128, u128)>,
    holds: BTreeMap<CommandId, ModelHold>,
    records: BTreeMap<CommandId, (CommandKind, Status)>,
}

fn amount_ok(amount: u64) -> Result<i128, Status> {
    match amount {
        0 => Err(Status::AmountMustBePositive),
        _ if amount > AMOUNT_MAX => Err(Status::AmountTooLarge),
        _ => Ok(i128::from(amount)),
    }
}

impl Model {
    fn apply(&mut self, timestamp: u64, batch: &[Command]) -> Vec<Status> {
        for hold in self.holds.values_mut() {
            if hold.state == HoldState::Pending && hold.expires_at <= timestamp {
                hold.state = HoldState::Expired;
                let account = self.accounts.get_mut(&hold.account).unwrap();
                account.held -= u128::from(hold.amount);
                account.holds -= 1;
                self.houses.get_mut(&hold.currency).unwrap().1 -= u128::from(hold.amount);
            }
        }
        batch
            .iter()
            .map(|command| match self.records.get(&command.id) {
                Some((kind, status)) if *kind == command.kind => *status,
                Some(_) => Status::IdReusedWithDifferentFields,
                None => {
                    let status = match self.execute(command, timestamp) {
                        Ok(()) => Status::Ok,
                        Err(status) => status,
                    };
                    self.records.insert(command.id, (command.kind, status));
                    status
                }
            })
            .collect()
    }

    fn user(&self, id: AccountId, unknown: Status) -> Result<ModelAccount, Status> {
        if id.is_house() {
            return Err(Status::HouseAccountNotAllowed);
        }
        self.accounts.get(&id.0).copied().ok_or(unknown)
    }

    fn execute(&mut self, command: &Command, timestamp: u64) -> Result<(), Status> {
        match command.kind {
            CommandKind::OpenAccount(open) => {
                if open.account.is_house() {
                    return Err(Status::ReservedAccountId);
                }
                if !open.currency.is_valid() {
                    return Err(Status::UnknownCurrency);
                }
                let (kyc_ok, mcc_ok) = match open.kind {
                    AccountKind::House => return Err(Status::InvalidAccountKind),
                    AccountKind::Customer => (open.kyc_tier <= limits::KYC_TIER_MAX, open.mcc == 0),
                    AccountKind::Merchant => (open.kyc_tier == 0, open.mcc <= limits::MCC_MAX),
                };
                if !kyc_ok {
                    return Err(Status::InvalidKycTier);
                }
                if !mcc_ok {
                    return Err(Status::InvalidMcc);
                }
                if self.accounts.contains_key(&open.account.0) {
                    return Err(Status::AccountExists);
                }
                let account = ModelAccount {
                    kind: open.kind,
                    currency: open.currency,
                    status: AccountStatus::Active,
                    kyc_tier: open.kyc_tier,
                    balance: 0,
                    held: 0,
                    holds: 0,
                };
                self.accounts.insert(open.account.0, account);
            }
            CommandKind::Deposit {
                account: id,
                amount,
                currency,
            } => {
                let amount = amount_ok(amount)?;
                let account = self.user(id, Status::UnknownAccount)?;
                account.movable()?;
                if account.currency != currency {
                    return Err(Status::CurrencyMismatch);
                }
                if account.balance + amount > i128::from(i64::MAX) {
                    return Err(Status::Overflow);
                }
                let house = self.houses.get(&currency).map_or(0, |house| house.0);
                if house - amount < i128::from(i64::MIN) {
                    return Err(Status::Overflow);
                }
                self.accounts.get_mut(&id.0).unwrap().balance += amount;
                self.houses.entry(currency).or_default().0 -= amount;
            }
            CommandKind::Transfer {
                from,
                to,
                amount,
                currency,
                ..
            } => {
                let amount = amount_ok(amount)?;
                if from == to {
                    return Err(Status::SameAccount);
                }
                let debit = self.user(from, Status::UnknownDebitAccount)?;
                let credit = self.user(to, Status::UnknownCreditAccount)?;
                debit.movable()?;
                credit.movable()?;
                if debit.currency != currency || credit.currency != currency {
                    return Err(Status::CurrencyMismatch);
                }
                if debit.available() < amount {
                    return Err(Status::InsufficientFunds);
                }
                if credit.balance + amount > i128::from(i64::MAX) {
                    return Err(Status::Overflow);
                }
                self.accounts.get_mut(&from.0).unwrap().balance -= amount;
                self.accounts.get_mut(&to.0).unwrap().balance += amount;
            }
            CommandKind::WithdrawHold {
                account: id,
                amount,
                currency,
                timeout_ms,
                ..
            } => {
                let signed = amount_ok(amount)?;
                if !(limits::HOLD_TIMEOUT_MS_MIN..=limits::HOLD_TIMEOUT_MS_MAX)
                    .contains(&timeout_ms)
                {
                    return Err(Status::TimeoutOutOfRange);
                }
                let account = self.user(id, Status::UnknownAccount)?;
                account.movable()?;
                if account.currency != currency {
                    return Err(Status::CurrencyMismatch);
                }
                if account.holds >= limits::ACCOUNT_HOLDS_PENDING_MAX {
                    return Err(Status::TooManyHolds);
                }
                if account.available() < signed {
                    return Err(Status::InsufficientFunds);
                }
                // Without eviction a hold's id always has a record, so the
                // ledger's "hold outlived its record" check cannot trigger.
                assert!(!self.holds.contains_key(&command.id));
                let account = self.accounts.get_mut(&id.0).unwrap();
                account.held += u128::from(amount);
                account.holds += 1;
                self.houses.entry(currency).or_default().1 += u128::from(amount);
                let hold = ModelHold {
                    account: id.0,
                    currency,
                    amount,
                    expires_at: timestamp + timeout_ms * MS,
                    state: HoldState::Pending,
                };
                self.holds.insert(command.id, hold);
            }
            CommandKind::WithdrawPost { hold: id } | CommandKind::WithdrawVoid { hold: id } => {
                let post = matches!(command.kind, CommandKind::WithdrawPost { .. });
                let hold = *self.holds.get(&id).ok_or(Status::HoldNotFound)?;
                match hold.state {
                    HoldState::Pending => {}
                    HoldState::Posted => return Err(Status::HoldAlreadyPosted),
                    HoldState::Voided => return Err(Status::HoldAlreadyVoided),
                    HoldState::Expired => return Err(Status::HoldExpired),
                }
                if post {
                    self.accounts[&hold.account].movable()?;
                }
                let amount = u128::from(hold.amount);
                let account = self.accounts.get_mut(&hold.account).unwrap();
                account.held -= amount;
                account.holds -= 1;
                let house = self.houses.get_mut(&hold.currency).unwrap();
                house.1 -= amount;
                if post {
                    account.balance -= amount as i128;
                    house.0 += amount as i128;
                }
                self.holds.get_mut(&id).unwrap().state = if post {
                    HoldState::Posted
                } else {
                    HoldState::Voided
                };
            }
            CommandKind::Freeze { account: id } => {
                match self.user(id, Status::UnknownAccount)?.status {
                    AccountStatus::Active => {}
                    AccountStatus::Frozen => return Err(Status::AccountAlreadyFrozen),
                    AccountStatus::Closed => return Err(Status::AccountClosed),
                }
                self.accounts.get_mut(&id.0).unwrap().status = AccountStatus::Frozen;
            }
            CommandKind::Unfreeze { account: id } => {
                match self.user(id, Status::UnknownAccount)?.status {
                    AccountStatus::Frozen => {}
                    AccountStatus::Active => return Err(Status::AccountNotFrozen),
                    AccountStatus::Closed => return Err(Status::AccountClosed),
                }
                self.accounts.get_mut(&id.0).unwrap().status = AccountStatus::Active;
            }
            CommandKind::Close { account: id } => {
                let account = self.user(id, Status::UnknownAccount)?;
                account.movable()?;
                if account.holds > 0 {
                    return Err(Status::AccountHasHolds);
                }
                if account.balance != 0 {
                    return Err(Status::AccountNotEmpty);
                }
                self.accounts.get_mut(&id.0).unwrap().status = AccountStatus::Closed;
            }
            CommandKind::SetKycTier { account: id, tier } => {
                if tier > limits::KYC_TIER_MAX {
                    return Err(Status::InvalidKycTier);
                }
                let account = self.user(id, Status::UnknownAccount)?;
                if account.kind != AccountKind::Customer {
                    return Err(Status::NotACustomer);
                }
                if account.status == AccountStatus::Closed {
                    return Err(Status::AccountClosed);
                }
                self.accounts.get_mut(&id.0).unwrap().kyc_tier = tier;
            }
            // QR payments, payment codes and refunds have tests of their own;
            // the generator here makes only the kinds above.
            other => unreachable!("not generated here: {other:?}"),
        }
        Ok(())
    }
}

// ----------------------------------------------------------------- checks

fn statuses(results: &[CommandResult]) -> Vec<Status> {
    results.iter().map(|result| result.status).collect()
}

/// Properties 1 and 2 on the ledger alone.
fn check_invariants(ledger: &Ledger) -> Result<(), TestCaseError> {
    for (currency, totals) in ledger.totals() {
        prop_assert_eq!(totals.balance, 0, "{:?}: {:?}", currency, totals);
        prop_assert_eq!(
            totals.debits_pending,
            totals.credits_pending,
            "{:?}",
            currency
        );
    }
    prop_assert!(ledger.is_conserved());
    for account in ledger.accounts() {
        if account.kind == AccountKind::House {
            prop_assert_eq!(account.debits_pending, 0, "{:?}", account);
        } else {
            prop_assert!(account.balance >= 0, "{:?}", account);
            prop_assert!(account.available() >= 0, "{:?}", account);
            prop_assert_eq!(account.credits_pending, 0, "{:?}", account);
        }
    }
    Ok(())
}

fn check_model(ledger: &Ledger, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        ledger.accounts().len(),
        model.accounts.len() + model.houses.len()
    );
    for account in ledger.accounts() {
        if account.kind == AccountKind::House {
            let house = model.houses.get(&account.currency).copied();
            let expected = Some((
                i128::from(account.balance),
                u128::from(account.credits_pending),
            ));
            prop_assert_eq!(house, expected, "{:?}", account);
            prop_assert_eq!(
                account.id,
                AccountId::house(HouseRole::Settlement, account.currency)
            );
        } else {
            let expected = model.accounts.get(&account.id.0).copied();
            let actual = ModelAccount {
                kind: account.kind,
                currency: account.currency,
                status: account.status,
                kyc_tier: account.kyc_tier,
                balance: i128::from(account.balance),
                held: u128::from(account.debits_pending),
                holds: account.holds_pending,
            };
            prop_assert_eq!(Some(actual), expected, "account {}", account.id.0);
        }
    }
    for (id, hold) in &model.holds {
        let actual = ledger.hold(*id);
        prop_assert!(actual.is_some(), "hold {:?} forgotten", id);
        let actual = *actual.unwrap();
        prop_assert_eq!(actual.state, hold.state, "hold {:?}", id);
        prop_assert_eq!(actual.amount, hold.amount, "hold {:?}", id);
        prop_assert_eq!(actual.expires_at, hold.expires_at, "hold {:?}", id);
    }
    Ok(())
}

// ------------------------------------------------------------- properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Properties 1 and 2, and agreement with the reference model.
    #[test]
    fn money_is_conserved_and_the_model_agrees(case in case()) {
        let batches = build(&case);
        let mut ledger = Ledger::default();
        let mut model = Model::default();
        let mut results = Vec::new();
        for (number, (timestamp, batch)) in batches.iter().enumerate() {
            results.clear();
            ledger.apply(number as u64 + 1, *timestamp, batch, &mut results);
            let expected = model.apply(*timestamp, batch);
            prop_assert_eq!(statuses(&results), expected, "batch {}", number);
            check_invariants(&ledger)?;
            check_model(&ledger, &model)?;
        }
        // The setup batch must have worked, or the case tests little.
        prop_assert!(ledger.accounts().len() >= OPENED_AT_SETUP);
    }

    /// Property 3: the same sequence from empty gives the same results and
    /// digests.
    #[test]
    fn replay_is_deterministic(case in case()) {
        let batches = build(&case);
        let mut first = Ledger::default();
        let mut second = Ledger::default();
        for (number, (timestamp, batch)) in batches.iter().enumerate() {
            let sequence = number as u64 + 1;
            let first_results = first.apply_batch(sequence, *timestamp, batch);
            let second_results = second.apply_batch(sequence, *timestamp, batch);
            prop_assert_eq!(first_results, second_results, "batch {}", number);
            prop_assert_eq!(first.digest(), second.digest(), "batch {}", number);
        }
        prop_assert_eq!(first.accounts(), second.accounts());
    }

    /// Property 4: re-sending an earlier command returns its first result
    /// and changes the state no more than an empty batch does.
    #[test]
    fn resending_returns_the_first_result_and_changes_nothing(case in case()) {
        let batches = build(&case);
        let mut ledger = Ledger::default();
        let mut sent: Vec<(Command, Status)> = Vec::new();
        let mut sequence = 0;
        for (number, (timestamp, batch)) in batches.iter().enumerate() {
            sequence += 1;
            let results = ledger.apply_batch(sequence, *timestamp, batch);
            sent.extend(batch.iter().copied().zip(statuses(&results)));

            // One earlier command on its own, at this batch's time.
            let (command, first) = sent[case.resends[number % case.resends.len()] % sent.len()];
            sequence += 1;
            let mut empty = ledger.clone();
            empty.apply(sequence, *timestamp, &[], &mut Vec::new());
            let results = ledger.apply_batch(sequence, *timestamp, &[command]);
            prop_assert_eq!(results[0].status, first, "re-sent {:?}", command);
            prop_assert_eq!(ledger.digest(), empty.digest(), "re-sent {:?}", command);
        }
        // Every command once more, in full batches, a little later (well
        // inside the 24 h idempotency window).
        let timestamp = batches.last().map_or(T0, |batch| batch.0) + 200 * SECOND;
        for chunk in sent.chunks(limits::BATCH_COMMANDS_MAX) {
            let commands: Vec<Command> = chunk.iter().map(|(command, _)| *command).collect();
            sequence += 1;
            let mut empty = ledger.clone();
            empty.apply(sequence, timestamp, &[], &mut Vec::new());
            let results = ledger.apply_batch(sequence, timestamp, &commands);
            let firsts: Vec<Status> = chunk.iter().map(|(_, status)| *status).collect();
            prop_assert_eq!(statuses(&results), firsts);
            prop_assert_eq!(ledger.digest(), empty.digest());
        }
        check_invariants(&ledger)?;
    }
}
