//! The risk rules and budgets through `Ledger::apply`: each rule's decline,
//! step-up and flag as a user sees them (status, detail, balances, audit),
//! step-up re-submission, freeze on suspicion and the operator's unfreeze,
//! a policy change in the middle of the log and its replay, checkpoints, and
//! budget warnings. Every test name contains "risk", so
//! `cargo test -p payrail-engine risk` runs them with the rules' own tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payrail_engine::budget::Category;
use payrail_engine::command::QR_MERCHANT_KEYS_MAX;
use payrail_engine::risk::{Day, RiskPolicy, RuleId, Verdict};
use payrail_engine::storage::{self, LogRecord, MemoryStorage, Storage};
use payrail_engine::{
    AccountId, AccountKind, AccountStatus, BudgetDetail, Command, CommandKind, CommandResult,
    Currency, Detail, Ledger, LedgerConfig, MerchantKey, OpenAccount, Query, QueryReply,
    RiskContext, RiskDetail, Status,
};

const SECOND: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * SECOND;
const CNY: Currency = Currency::CNY;

/// Customer A (owner 1, tier 1), customer B (owner 2), a restaurant (MCC
/// 5812) and a betting shop (MCC 7995).
const A: u64 = 101;
const B: u64 = 201;
const FOOD: u64 = 9_001;
const BETS: u64 = 9_002;

/// 2026-11-10 12:00 UTC.
fn t0() -> u64 {
    Day::from_civil(2026, 11, 10).unwrap().start_timestamp() + 12 * HOUR
}

fn key(merchant: u64) -> MerchantKey {
    MerchantKey::new("com.example.pay", &merchant.to_string())
}

fn context() -> RiskContext {
    RiskContext::NONE
}

fn with_country(country: &[u8; 2]) -> RiskContext {
    RiskContext {
        country: *country,
        ..RiskContext::NONE
    }
}

fn with_device(device: u64) -> RiskContext {
    RiskContext {
        device,
        ..RiskContext::NONE
    }
}

fn at_place(latitude: f64, longitude: f64) -> RiskContext {
    RiskContext {
        latitude_centidegrees: (latitude * 100.0).round() as i16,
        longitude_centidegrees: (longitude * 100.0).round() as i16,
        ..RiskContext::NONE
    }
}

fn transfer(amount: u64, context: RiskContext) -> CommandKind {
    CommandKind::Transfer {
        from: AccountId(A),
        to: AccountId(B),
        amount,
        currency: CNY,
        context,
    }
}

fn pay_qr(merchant: u64, amount: u64, context: RiskContext) -> CommandKind {
    let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
    keys[0] = key(merchant);
    CommandKind::PayMerchantQr {
        payer: AccountId(A),
        keys,
        amount,
        fee: 0,
        currency: CNY,
        mcc: 0,
        context,
    }
}

fn stepped_up(kind: CommandKind) -> CommandKind {
    let mut kind = kind;
    match &mut kind {
        CommandKind::Transfer { context, .. } | CommandKind::PayMerchantQr { context, .. } => {
            context.step_up_verified = true;
        }
        _ => panic!("not a payment: {kind:?}"),
    }
    kind
}

/// One entry of a test's log.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // a test's log of a few entries
enum Entry {
    Batch(u64, Vec<Command>),
    Policy(u64, RiskPolicy),
}

/// A ledger and the log that built it.
struct World {
    ledger: Ledger,
    log: Vec<Entry>,
    now: u64,
    next_id: u128,
}

impl World {
    fn new(policy: &str) -> World {
        let mut world = World {
            ledger: Ledger::default(),
            log: Vec::new(),
            now: t0() - HOUR,
            next_id: 0,
        };
        world.set_policy(policy);
        let open = |account: u64, kind, mcc, kyc_tier| {
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(account),
                owner: account / 100,
                kind,
                currency: CNY,
                kyc_tier,
                mcc,
            })
        };
        world.ok(open(A, AccountKind::Customer, 0, 1));
        world.ok(open(B, AccountKind::Customer, 0, 1));
        world.ok(open(FOOD, AccountKind::Merchant, 5812, 0));
        world.ok(open(BETS, AccountKind::Merchant, 7995, 0));
        for merchant in [FOOD, BETS] {
            world.ok(CommandKind::RegisterMerchantKey {
                merchant: AccountId(merchant),
                key: key(merchant),
            });
        }
        world.ok(CommandKind::Deposit {
            account: AccountId(A),
            amount: 100_000_000,
            currency: CNY,
        });
        world.now = t0();
        world
    }

    fn set_policy(&mut self, toml: &str) {
        let policy = RiskPolicy::from_toml(toml).unwrap();
        let sequence = self.ledger.sequence() + 1;
        self.ledger
            .set_risk_policy(sequence, self.now, policy.clone());
        self.log.push(Entry::Policy(self.now, policy));
    }

    /// Applies one command at the current time, in a batch of its own.
    fn run(&mut self, kind: CommandKind) -> CommandResult {
        self.next_id += 1;
        self.resend(Command::new(self.next_id, kind))
    }

    fn resend(&mut self, command: Command) -> CommandResult {
        let sequence = self.ledger.sequence() + 1;
        let results = self.ledger.apply_batch(sequence, self.now, &[command]);
        assert!(self.ledger.is_conserved());
        self.log.push(Entry::Batch(self.now, vec![command]));
        results[0]
    }

    fn ok(&mut self, kind: CommandKind) {
        let result = self.run(kind);
        assert_eq!(result.status, Status::Ok, "{kind:?}: {result:?}");
    }

    fn later(&mut self, ns: u64) -> &mut World {
        self.now += ns;
        self
    }

    fn balance(&self, account: u64) -> i64 {
        self.ledger.account(AccountId(account)).unwrap().balance
    }

    fn status(&self, account: u64) -> AccountStatus {
        self.ledger.account(AccountId(account)).unwrap().status
    }

    /// The customer's audited decisions through the query, newest first.
    fn audit(&self, account: u64) -> Vec<payrail_engine::risk::AuditEntry> {
        let mut entries = Vec::new();
        for index in 0..32u8 {
            match self.ledger.query(&Query::RiskAudit {
                account: AccountId(account),
                index,
            }) {
                QueryReply::RiskAudit {
                    entries: count,
                    entry,
                } if index < count => entries.push(entry),
                QueryReply::RiskAudit { .. } => break,
                other => panic!("{other:?}"),
            }
        }
        entries
    }
}

/// Replays `log` into a new ledger: the results and the digest it gives.
fn replay(log: &[Entry]) -> (Vec<CommandResult>, [u8; 32]) {
    let mut ledger = Ledger::default();
    let mut results = Vec::new();
    for (index, entry) in log.iter().enumerate() {
        let sequence = index as u64 + 1;
        match entry {
            Entry::Batch(at, commands) => ledger.apply(sequence, *at, commands, &mut results),
            Entry::Policy(at, policy) => {
                ledger.set_risk_policy(sequence, *at, policy.clone());
            }
        }
    }
    (results, ledger.digest())
}

// ---------------------------------------------------------------- each rule

/// One rule: its policy (with `{action}`), what happens before, the payment
/// that makes it fire, and the figures it reports.
struct RuleRow {
    rule: RuleId,
    policy: &'static str,
    before: fn(&mut World),
    payment: fn() -> CommandKind,
    limit: u64,
    /// None: checked to be above the limit only (a computed speed).
    observed: Option<u64>,
}

fn nothing(_: &mut World) {}

fn rule_rows() -> Vec<RuleRow> {
    vec![
        RuleRow {
            rule: RuleId::BlockedCountry,
            policy: "[blocked_countries]\naction = \"{action}\"\ncountries = [\"KP\"]",
            before: nothing,
            payment: || transfer(100, with_country(b"KP")),
            limit: 0,
            observed: Some(0x4B50),
        },
        RuleRow {
            rule: RuleId::BlockedMerchant,
            policy: "[blocked_merchants]\naction = \"{action}\"\nmerchants = [9001]",
            before: nothing,
            payment: || pay_qr(FOOD, 100, context()),
            limit: 0,
            observed: Some(FOOD),
        },
        RuleRow {
            rule: RuleId::BlockedMcc,
            policy: "[blocked_mccs]\naction = \"{action}\"\nmccs = [7995]",
            before: nothing,
            payment: || pay_qr(BETS, 100, context()),
            limit: 0,
            observed: Some(7995),
        },
        RuleRow {
            rule: RuleId::SinglePayment,
            policy: "[single_payment]\naction = \"{action}\"\n[single_payment.max]\n\
                     CNY = [\"100.00\", \"100.00\", \"100.00\", \"100.00\"]",
            before: nothing,
            payment: || transfer(10_001, context()),
            limit: 10_000,
            observed: Some(10_001),
        },
        RuleRow {
            rule: RuleId::DailyOutflow,
            policy: "[daily_outflow]\naction = \"{action}\"\n[daily_outflow.max]\n\
                     CNY = [\"100.00\", \"100.00\", \"100.00\", \"100.00\"]",
            before: |world| world.ok(pay_qr(FOOD, 6_000, context())),
            payment: || transfer(4_001, context()),
            limit: 10_000,
            observed: Some(10_001),
        },
        RuleRow {
            rule: RuleId::MonthlyOutflow,
            policy: "[monthly_outflow]\naction = \"{action}\"\n[monthly_outflow.max]\n\
                     CNY = [\"100.00\", \"100.00\", \"100.00\", \"100.00\"]",
            before: |world| {
                world.ok(transfer(6_000, context()));
                world.later(24 * HOUR);
            },
            payment: || transfer(4_001, context()),
            limit: 10_000,
            observed: Some(10_001),
        },
        RuleRow {
            rule: RuleId::Velocity,
            policy: "[velocity]\naction = \"{action}\"\npayments_max = 3\nwindow_seconds = 60",
            before: |world| {
                for _ in 0..3 {
                    world.ok(transfer(100, context()));
                    world.later(SECOND);
                }
            },
            payment: || transfer(100, context()),
            limit: 3,
            observed: Some(4),
        },
        RuleRow {
            rule: RuleId::NewDevice,
            policy: "[new_device]\naction = \"{action}\"\ntrust_first_device = true",
            before: |world| world.ok(transfer(100, with_device(7))),
            payment: || transfer(100, with_device(8)),
            limit: 1,
            observed: Some(8),
        },
        RuleRow {
            rule: RuleId::ImpossibleTravel,
            policy: "[impossible_travel]\naction = \"{action}\"\nspeed_kmh_max = 1000\n\
                     distance_km_min = 100",
            // Shanghai, then London an hour later (about 9,200 km).
            before: |world| {
                world.ok(transfer(100, at_place(31.23, 121.47)));
                world.later(HOUR);
            },
            payment: || transfer(100, at_place(51.51, -0.13)),
            limit: 1_000,
            observed: None,
        },
        RuleRow {
            rule: RuleId::AmountAnomaly,
            policy: "[amount_anomaly]\naction = \"{action}\"\nmultiplier = \"2\"\nhistory = 5\n\
                     history_min = 3",
            before: |world| {
                for _ in 0..3 {
                    world.ok(transfer(1_000, context()));
                }
            },
            payment: || transfer(2_001, context()),
            limit: 2_000,
            observed: Some(2_001),
        },
    ]
}

fn check_figures(row: &RuleRow, detail: &RiskDetail) {
    assert_eq!(detail.rule, row.rule);
    assert_eq!(detail.limit, row.limit, "{:?}", row.rule);
    match row.observed {
        Some(observed) => assert_eq!(detail.observed, observed, "{:?}", row.rule),
        None => assert!(detail.observed > row.limit, "{detail:?}"),
    }
}

#[test]
fn risk_ledger_every_rule_declines_steps_up_and_flags() {
    for row in rule_rows() {
        for action in ["decline", "step_up", "flag"] {
            let what = format!("{:?} {action}", row.rule);
            let mut world = World::new(&row.policy.replace("{action}", action));
            (row.before)(&mut world);
            assert!(world.audit(A).is_empty(), "{what}: nothing audited before");
            let before = world.balance(A);
            let payment = (row.payment)();
            let amount = match payment {
                CommandKind::Transfer { amount, .. }
                | CommandKind::PayMerchantQr { amount, .. } => amount as i64,
                _ => unreachable!(),
            };
            let result = world.run(payment);
            let (status, verdict) = match action {
                "decline" => (Status::RiskDeclined, Verdict::Decline),
                "step_up" => (Status::StepUpRequired, Verdict::StepUp),
                _ => (Status::Ok, Verdict::Flag),
            };
            assert_eq!(result.status, status, "{what}");
            let Detail::Risk(detail) = result.detail else {
                panic!("{what}: {result:?}");
            };
            assert_eq!(detail.verdict, verdict, "{what}");
            check_figures(&row, &detail);
            // Money moved only for a flag.
            let moved = if verdict == Verdict::Flag { amount } else { 0 };
            assert_eq!(world.balance(A), before - moved, "{what}");
            // Audited, queryable per customer.
            let audit = world.audit(A);
            assert_eq!(audit.len(), 1, "{what}");
            assert_eq!(audit[0].rule, Some(row.rule), "{what}");
            assert_eq!(audit[0].verdict, verdict, "{what}");
            assert_eq!(audit[0].figures.limit, row.limit, "{what}");
            // No freeze without `freeze = true`.
            assert_eq!(world.status(A), AccountStatus::Active, "{what}");
            // The decision is counted for metrics.
            let counted: u64 = world
                .ledger
                .risk()
                .counters()
                .iter()
                .filter(|(rule, v, _)| *rule == row.rule && *v == verdict)
                .map(|(_, _, count)| count)
                .sum();
            assert_eq!(counted, 1, "{what}");
        }
    }
}

#[test]
fn risk_ledger_step_up_resubmission_passes() {
    for row in rule_rows() {
        let mut world = World::new(&row.policy.replace("{action}", "step_up"));
        (row.before)(&mut world);
        let payment = (row.payment)();
        assert_eq!(world.run(payment).status, Status::StepUpRequired);
        // The gateway checked a second factor and re-submits (a new id).
        let result = world.run(stepped_up(payment));
        assert_eq!(result, CommandResult::OK, "{:?}", row.rule);
        let audit = world.audit(A);
        assert_eq!(audit.len(), 2, "{:?}", row.rule);
        // Newest first: the passed step-up is recorded too.
        assert_eq!(audit[0].verdict, Verdict::Approve);
        assert!(audit[0].stepped_up.contains(row.rule));
        assert_eq!(audit[1].verdict, Verdict::StepUp);
    }
}

#[test]
fn risk_ledger_step_up_does_not_pass_a_decline() {
    let mut world = World::new("[blocked_countries]\naction = \"decline\"\ncountries = [\"KP\"]");
    let result = world.run(stepped_up(transfer(100, with_country(b"KP"))));
    assert_eq!(result.status, Status::RiskDeclined);
}

#[test]
fn risk_ledger_edges_at_the_limit_window_and_first_device() {
    // Exactly at the single-payment limit: approved; one more: declined.
    let mut world = World::new(
        "[single_payment]\naction = \"decline\"\n[single_payment.max]\n\
         CNY = [\"100.00\", \"100.00\", \"100.00\", \"100.00\"]",
    );
    assert_eq!(world.run(transfer(10_000, context())), CommandResult::OK);
    assert_eq!(
        world.run(transfer(10_001, context())).status,
        Status::RiskDeclined
    );

    // Velocity: exactly one window after the oldest counted payment, it no
    // longer counts.
    let mut world =
        World::new("[velocity]\naction = \"decline\"\npayments_max = 2\nwindow_seconds = 60");
    world.ok(transfer(100, context()));
    world.later(10 * SECOND).ok(transfer(100, context()));
    let result = world.later(50 * SECOND - 1).run(transfer(100, context()));
    assert_eq!(result.status, Status::RiskDeclined);
    let result = world.later(1).run(transfer(100, context()));
    assert_eq!(result, CommandResult::OK);

    // The first payment from a device is trusted; the next new one is not.
    let mut world = World::new("[new_device]\naction = \"decline\"\ntrust_first_device = true");
    assert_eq!(world.run(transfer(100, with_device(1))), CommandResult::OK);
    assert_eq!(world.run(transfer(100, with_device(1))), CommandResult::OK);
    assert_eq!(
        world.run(transfer(100, with_device(2))).status,
        Status::RiskDeclined
    );
    // A payment without a device id is not checked.
    assert_eq!(world.run(transfer(100, context())), CommandResult::OK);
    let mut world = World::new("[new_device]\naction = \"decline\"\ntrust_first_device = false");
    assert_eq!(
        world.run(transfer(100, with_device(1))).status,
        Status::RiskDeclined
    );
}

#[test]
fn risk_ledger_refused_payments_are_not_remembered() {
    // A declined payment does not count towards the daily outflow.
    let mut world = World::new(
        "[daily_outflow]\naction = \"decline\"\n[daily_outflow.max]\n\
         CNY = [\"100.00\", \"100.00\", \"100.00\", \"100.00\"]",
    );
    assert_eq!(
        world.run(transfer(10_001, context())).status,
        Status::RiskDeclined
    );
    assert_eq!(world.run(transfer(10_000, context())), CommandResult::OK);
    // And a payment refused for funds is not evaluated, audited or counted.
    let mut world = World::new("[blocked_countries]\naction = \"decline\"\ncountries = [\"KP\"]");
    let result = world.run(transfer(1_000_000_000, with_country(b"KP")));
    assert_eq!(result, CommandResult::new(Status::InsufficientFunds));
    assert!(world.audit(A).is_empty());
}

#[test]
fn risk_ledger_invalid_context_is_refused() {
    let mut world = World::new("");
    for context in [
        RiskContext {
            latitude_centidegrees: 9_001,
            longitude_centidegrees: 0,
            ..RiskContext::NONE
        },
        RiskContext {
            latitude_centidegrees: 0,
            ..RiskContext::NONE
        },
        with_country(b"kp"),
        with_country(b"K\0"),
    ] {
        let result = world.run(transfer(100, context));
        assert_eq!(result.status, Status::InvalidRiskContext, "{context:?}");
    }
    assert_eq!(world.balance(B), 0);
}

#[test]
fn risk_ledger_freeze_on_suspicion_then_operator_unfreezes() {
    let mut world = World::new(
        "[impossible_travel]\naction = \"decline\"\nfreeze = true\nspeed_kmh_max = 1000\n\
         distance_km_min = 100",
    );
    world.ok(transfer(100, at_place(31.23, 121.47)));
    let result = world.later(HOUR).run(transfer(100, at_place(51.51, -0.13)));
    assert_eq!(result.status, Status::RiskFrozen);
    assert_eq!(result.detail.risk().unwrap().rule, RuleId::ImpossibleTravel);
    assert_eq!(world.status(A), AccountStatus::Frozen);
    assert!(world.audit(A)[0].freeze);
    // Frozen: nothing leaves, with or without a location.
    assert_eq!(
        world.run(transfer(100, context())),
        CommandResult::new(Status::AccountFrozen)
    );
    // The operator unfreezes; a day later London is reachable.
    world.ok(CommandKind::Unfreeze {
        account: AccountId(A),
    });
    let result = world
        .later(24 * HOUR)
        .run(transfer(100, at_place(51.51, -0.13)));
    assert_eq!(result, CommandResult::OK);
}

#[test]
fn risk_ledger_withdrawals_and_payment_codes_are_checked() {
    let policy = "[single_payment]\naction = \"decline\"\n[single_payment.max]\n\
                  CNY = [\"100.00\", \"100.00\", \"100.00\", \"100.00\"]";
    let mut world = World::new(policy);
    let hold = |amount| CommandKind::WithdrawHold {
        account: AccountId(A),
        amount,
        currency: CNY,
        timeout_ms: 60_000,
        context: RiskContext::NONE,
    };
    assert_eq!(world.run(hold(10_001)).status, Status::RiskDeclined);
    assert_eq!(world.run(hold(10_000)), CommandResult::OK);
    assert_eq!(
        world.ledger.account(AccountId(A)).unwrap().debits_pending,
        10_000
    );

    const CODE: u64 = 123_456_789_012_345_678;
    world.ok(CommandKind::IssuePaymentCode {
        customer: AccountId(A),
        code: CODE,
        lifetime_ms: 60_000,
    });
    let charge = |amount| CommandKind::ChargePaymentCode {
        merchant: AccountId(FOOD),
        code: CODE,
        amount,
        currency: CNY,
        context: RiskContext::NONE,
    };
    assert_eq!(world.run(charge(10_001)).status, Status::RiskDeclined);
    // The code is still live after a refusal.
    assert_eq!(world.run(charge(9_000)), CommandResult::OK);
    assert_eq!(world.balance(FOOD), 9_000);
    // A merchant's refund is not the customer's outflow: no rule applies.
    assert_eq!(world.audit(A).len(), 2);
}

#[test]
fn risk_ledger_disabled_policy_keeps_no_risk_state() {
    let mut world = World::new("");
    world.ok(transfer(100, with_device(5)));
    assert!(world.ledger.risk().customer(1).is_none());
    assert!(world.ledger.risk().policy().is_disabled());
}

#[test]
fn risk_ledger_policy_change_mid_log_replays_the_same() {
    let single = "[single_payment]\naction = \"decline\"\n[single_payment.max]\n\
                  CNY = [\"100.00\", \"100.00\", \"100.00\", \"100.00\"]";
    let mut world = World::new("");
    assert_eq!(world.run(transfer(50_000, context())), CommandResult::OK);
    world.set_policy(single);
    assert_eq!(
        world.run(transfer(50_000, context())).status,
        Status::RiskDeclined
    );
    let policy = RiskPolicy::example();
    let sequence = world.ledger.sequence() + 1;
    world
        .ledger
        .set_risk_policy(sequence, world.now, policy.clone());
    world.log.push(Entry::Policy(world.now, policy));
    // Tier 1: 5,000.00 is the example's single limit; 500.00 passes.
    assert_eq!(world.run(transfer(50_000, context())), CommandResult::OK);
    world.later(SECOND);
    assert_eq!(
        world.run(transfer(500_001, context())).status,
        Status::RiskDeclined
    );
    world.set_policy("");
    assert_eq!(world.run(transfer(500_001, context())), CommandResult::OK);

    let mut results = Vec::new();
    let mut live = Ledger::default();
    for (index, entry) in world.log.iter().enumerate() {
        match entry {
            Entry::Batch(at, commands) => live.apply(index as u64 + 1, *at, commands, &mut results),
            Entry::Policy(at, policy) => {
                live.set_risk_policy(index as u64 + 1, *at, policy.clone());
            }
        }
    }
    let (replayed, digest) = replay(&world.log);
    assert_eq!(replayed, results);
    assert_eq!(digest, world.ledger.digest());
    // The policy in force is part of the digest.
    let mut other = world.ledger.clone();
    other.set_risk_policy(other.sequence() + 1, world.now, RiskPolicy::example());
    let mut same = world.ledger.clone();
    same.set_risk_policy(same.sequence() + 1, world.now, RiskPolicy::disabled());
    assert_ne!(other.digest(), same.digest());
}

#[test]
fn risk_ledger_recovery_from_log_and_checkpoint_keeps_policy_and_state() {
    let mut world = World::new("");
    world.set_policy(storage_policy());
    world.ok(transfer(1_000, with_device(3)));
    world.ok(CommandKind::SetBudget {
        account: AccountId(A),
        category: Category::FoodAndDrink.code(),
        budget: Some(5_000),
    });
    world.ok(pay_qr(FOOD, 4_000, with_device(3)));
    let declined = world.run(transfer(100, with_country(b"KP")));
    assert_eq!(declined.status, Status::RiskDeclined);

    // Through the log: encoded records, recovered.
    let mut log = MemoryStorage::new();
    let mut records = Vec::new();
    for (index, entry) in world.log.iter().enumerate() {
        let sequence = index as u64 + 1;
        let record = match entry {
            Entry::Batch(at, commands) => LogRecord::batch(sequence, *at, commands.clone()),
            Entry::Policy(at, policy) => LogRecord {
                sequence,
                timestamp: *at,
                entry: storage::LogEntry::RiskPolicy(Box::new(policy.clone())),
            },
        };
        let bytes = record.to_bytes();
        assert_eq!(LogRecord::decode(&bytes).unwrap(), record);
        records.push((sequence, bytes));
    }
    log.append(&records).unwrap();
    let (recovered, _) = storage::recover(&mut log, LedgerConfig::default()).unwrap();
    assert_eq!(recovered.digest(), world.ledger.digest());
    assert_eq!(
        recovered.risk().policy_digest(),
        RiskPolicy::from_toml(storage_policy()).unwrap().digest()
    );

    // Through a checkpoint.
    let mut state = Vec::new();
    storage::encode_state(&world.ledger, &mut state);
    let decoded = storage::decode_state(&state, LedgerConfig::default()).unwrap();
    assert_eq!(decoded.digest(), world.ledger.digest());
    assert_eq!(decoded.risk().audit(1).count(), 1);
    // It decides the same from there: a new device steps up on both.
    let next = Command::new(999, transfer(100, with_device(4)));
    let mut a = decoded;
    let mut b = world.ledger.clone();
    let sequence = b.sequence() + 1;
    let result_a = a.apply_batch(sequence, world.now, &[next]);
    let result_b = b.apply_batch(sequence, world.now, &[next]);
    assert_eq!(result_a, result_b);
    assert_eq!(result_a[0].status, Status::StepUpRequired);
    assert_eq!(a.digest(), b.digest());
    // Every truncation of the state is refused, never a panic.
    for cut in (0..state.len()).rev().take(400) {
        assert!(storage::decode_state(&state[..cut], LedgerConfig::default()).is_err());
    }
}

fn storage_policy() -> &'static str {
    "[blocked_countries]\naction = \"decline\"\ncountries = [\"KP\"]\n\
     [new_device]\naction = \"step_up\"\ntrust_first_device = true"
}

// ---------------------------------------------------------------- budgets

#[test]
fn risk_ledger_budget_crossing_is_a_warning() {
    let mut world = World::new("");
    let food = Category::FoodAndDrink.code();
    world.ok(CommandKind::SetBudget {
        account: AccountId(A),
        category: food,
        budget: Some(5_000),
    });
    assert_eq!(world.run(pay_qr(FOOD, 3_000, context())), CommandResult::OK);
    // Exactly the budget: no warning.
    assert_eq!(world.run(pay_qr(FOOD, 2_000, context())), CommandResult::OK);
    // One minor unit over: Ok, with the crossing.
    let result = world.run(pay_qr(FOOD, 1, context()));
    assert_eq!(
        result,
        CommandResult::with_detail(
            Status::Ok,
            Detail::BudgetCrossed(BudgetDetail {
                category: Category::FoodAndDrink,
                budget: 5_000,
                spent: 5_001,
            })
        )
    );
    // Once a month.
    assert_eq!(world.run(pay_qr(FOOD, 1, context())), CommandResult::OK);
    // Transfers are cash and transfers, betting is entertainment.
    world.ok(transfer(700, context()));
    world.ok(pay_qr(BETS, 300, context()));
    let spending = |world: &World, category: Category, month: u32| {
        world.ledger.query(&Query::Spending {
            account: AccountId(A),
            month,
            category: category.code(),
        })
    };
    let november = payrail_engine::risk::Month::new(2026, 11).unwrap().0;
    assert_eq!(
        spending(&world, Category::FoodAndDrink, 0),
        QueryReply::Spending {
            month: november,
            category: food,
            spent: 5_002,
            budget: Some(5_000),
        }
    );
    for (category, spent) in [
        (Category::CashAndTransfers, 700),
        (Category::Entertainment, 300),
        (Category::Groceries, 0),
    ] {
        assert!(matches!(
            spending(&world, category, november),
            QueryReply::Spending { spent: s, budget: None, .. } if s == spent
        ));
    }
    // A new month starts from zero; the old one is still there.
    world.later(30 * 24 * HOUR).ok(pay_qr(FOOD, 10, context()));
    assert!(matches!(
        spending(&world, Category::FoodAndDrink, 0),
        QueryReply::Spending { spent: 10, .. }
    ));
    assert!(matches!(
        spending(&world, Category::FoodAndDrink, november),
        QueryReply::Spending { spent: 5_002, .. }
    ));
    assert_eq!(
        spending(&world, Category::FoodAndDrink, november - 12),
        QueryReply::Refused(Status::MonthNotKept)
    );
    assert_eq!(
        world.ledger.query(&Query::Spending {
            account: AccountId(A),
            month: 0,
            category: 0,
        }),
        QueryReply::Refused(Status::UnknownCategory)
    );
    assert_eq!(
        world.ledger.query(&Query::Spending {
            account: AccountId(FOOD),
            month: 0,
            category: food,
        }),
        QueryReply::Refused(Status::NotACustomer)
    );
}

#[test]
fn risk_ledger_budget_commands_are_checked() {
    let mut world = World::new("");
    let set = |account, category, budget| CommandKind::SetBudget {
        account: AccountId(account),
        category,
        budget,
    };
    assert_eq!(
        world.run(set(A, 0, Some(1))).status,
        Status::UnknownCategory
    );
    assert_eq!(
        world.run(set(A, 12, Some(1))).status,
        Status::UnknownCategory
    );
    assert_eq!(
        world.run(set(A, 1, Some(u64::MAX))).status,
        Status::AmountTooLarge
    );
    assert_eq!(
        world.run(set(FOOD, 1, Some(1))).status,
        Status::NotACustomer
    );
    assert_eq!(
        world.run(set(42, 1, Some(1))).status,
        Status::UnknownAccount
    );
    assert_eq!(world.run(set(A, 1, Some(0))), CommandResult::OK);
    // A budget of 0: the first payment crosses it. Removing it: no warning.
    assert!(world
        .run(pay_qr(FOOD, 1, context()))
        .detail
        .budget()
        .is_some());
    world.ok(set(A, 1, None));
    world.later(40 * 24 * HOUR);
    assert_eq!(world.run(pay_qr(FOOD, 1, context())), CommandResult::OK);
}

#[test]
fn risk_ledger_flag_and_budget_crossing_together() {
    let mut world = World::new("[blocked_mccs]\naction = \"flag\"\nmccs = [7995]");
    world.ok(CommandKind::SetBudget {
        account: AccountId(A),
        category: Category::Entertainment.code(),
        budget: Some(100),
    });
    let result = world.run(pay_qr(BETS, 101, context()));
    assert_eq!(result.status, Status::Ok);
    let Detail::FlaggedOverBudget(risk, budget) = result.detail else {
        panic!("{result:?}");
    };
    assert_eq!(
        (risk.verdict, risk.rule),
        (Verdict::Flag, RuleId::BlockedMcc)
    );
    assert_eq!((budget.budget, budget.spent), (100, 101));
    // A refund takes spending back down.
    let payment = world.next_id;
    world.ok(CommandKind::Refund {
        payment: payrail_engine::CommandId(payment),
        amount: 101,
        currency: CNY,
    });
    assert!(matches!(
        world.ledger.query(&Query::Spending {
            account: AccountId(A),
            month: 0,
            category: Category::Entertainment.code(),
        }),
        QueryReply::Spending { spent: 0, .. }
    ));
}

#[test]
fn risk_ledger_retry_returns_the_first_status() {
    let mut world = World::new("[blocked_countries]\naction = \"decline\"\ncountries = [\"KP\"]");
    let command = Command::new(77, transfer(100, with_country(b"KP")));
    assert_eq!(world.resend(command).status, Status::RiskDeclined);
    assert_eq!(world.resend(command).status, Status::RiskDeclined);
    assert_eq!(world.audit(A).len(), 1, "a retry is not evaluated again");
}

#[test]
fn risk_ledger_policy_query_names_the_policy_in_force() {
    let world = World::new(storage_policy());
    let QueryReply::RiskPolicy { digest, rules } = world.ledger.query(&Query::RiskPolicy) else {
        panic!()
    };
    assert_eq!(
        digest,
        RiskPolicy::from_toml(storage_policy()).unwrap().digest()
    );
    let on: Vec<RuleId> = rules.iter().collect();
    assert_eq!(on, [RuleId::BlockedCountry, RuleId::NewDevice]);
}

// ---------------------------------------------------------------- pipeline

#[test]
fn risk_ledger_policy_through_the_engine_is_durable_and_recovered() {
    use payrail_engine::pipeline::{Engine, EngineConfig};

    // Sharded execution, the shard count changing at every restart.
    let shards = |shards: usize| EngineConfig {
        shards,
        ..EngineConfig::default()
    };
    let storage = MemoryStorage::new();
    let engine = Engine::start(storage.clone(), shards(2)).unwrap();
    let handle = engine.handle();
    let policy = RiskPolicy::from_toml(storage_policy()).unwrap();
    let digest = handle.set_risk_policy_blocking(policy.clone()).unwrap();
    assert_eq!(digest, Ok(policy.digest()));
    let open = |account: u64| {
        CommandKind::OpenAccount(OpenAccount {
            account: AccountId(account),
            owner: account,
            kind: AccountKind::Customer,
            currency: CNY,
            kyc_tier: 1,
            mcc: 0,
        })
    };
    let deposit = CommandKind::Deposit {
        account: AccountId(A),
        amount: 1_000,
        currency: CNY,
    };
    let results = handle
        .submit_blocking(vec![
            Command::new(1, open(A)),
            Command::new(2, open(B)),
            Command::new(3, deposit),
            Command::new(4, transfer(10, with_country(b"KP"))),
        ])
        .unwrap();
    assert_eq!(results[3].status, Status::RiskDeclined);
    let replies = handle.query_blocking(vec![Query::RiskPolicy]).unwrap();
    assert!(matches!(replies[0], QueryReply::RiskPolicy { digest: d, .. } if d == policy.digest()));
    // Stopped without a checkpoint: the policy comes back from the log.
    drop(engine);
    let engine = Engine::start(storage.clone(), shards(3)).unwrap();
    let replies = engine
        .handle()
        .query_blocking(vec![Query::RiskPolicy])
        .unwrap();
    assert!(matches!(replies[0], QueryReply::RiskPolicy { digest: d, .. } if d == policy.digest()));
    let results = engine
        .handle()
        .submit_blocking(vec![Command::new(5, transfer(10, with_country(b"KP")))])
        .unwrap();
    assert_eq!(results[0].status, Status::RiskDeclined);
    // With a checkpoint, too.
    engine.shutdown_with_checkpoint();
    let engine = Engine::start(storage.clone(), shards(1)).unwrap();
    assert_eq!(engine.recovery().records_replayed, 0);
    let audit = Query::RiskAudit {
        account: AccountId(A),
        index: 0,
    };
    let replies = engine
        .handle()
        .query_blocking(vec![Query::RiskPolicy, audit])
        .unwrap();
    assert!(matches!(replies[0], QueryReply::RiskPolicy { digest: d, .. } if d == policy.digest()));
    // Both declines audited, the newest first, across the restarts.
    assert!(
        matches!(replies[1], QueryReply::RiskAudit { entries: 2, entry } if entry.command.0 == 5),
        "{:?}",
        replies[1]
    );
    // A log that cannot be written: the policy is refused, not put in force.
    storage.fail_all(true);
    let outcome = engine
        .handle()
        .set_risk_policy_blocking(RiskPolicy::disabled())
        .unwrap();
    assert_eq!(outcome, Err(Status::StorageFailed));
    let outcome = engine
        .handle()
        .set_risk_policy_blocking(RiskPolicy::disabled())
        .unwrap();
    assert_eq!(outcome, Err(Status::Unavailable));
    let replies = engine
        .handle()
        .query_blocking(vec![Query::RiskPolicy])
        .unwrap();
    assert!(matches!(replies[0], QueryReply::RiskPolicy { digest: d, .. } if d == policy.digest()));
    drop(engine);
}
