//! The instrument rules of the risk policy through the ledger, as tables of
//! "command, time, expected status and risk detail": a new instrument's
//! first hours, the per-instrument daily limit, and too many binds in a
//! window (flag, then decline with freeze). Every table runs on a lone
//! ledger and on 1, 2 and 3 shards, which must give the same results; the
//! lone ledger's audit, counters and checkpoint are checked too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payrail_engine::instrument::{BankName, InstrumentKind, InstrumentToken};
use payrail_engine::risk::{RiskPolicy, RuleId, Verdict};
use payrail_engine::shard::ShardedLedger;
use payrail_engine::storage::snapshot::{decode_state, encode_state};
use payrail_engine::{
    AccountId, AccountKind, Command, CommandKind, CommandResult, Currency, InstrumentBind,
    InstrumentId, Ledger, LedgerConfig, OpenAccount, Query, QueryReply, RiskContext, Status as S,
};

const CNY: Currency = Currency::CNY;
const SECOND: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * SECOND;
/// A UTC midnight (2027-01-16 00:00:00).
const T0: u64 = 1_800_000_000 * SECOND - (1_800_000_000 % 86_400) * SECOND + 86_400 * SECOND;

const ALICE: u64 = 100; // owner 1
const BOB: u64 = 200; // owner 2

const POLICY: &str = r#"
[new_instrument]
action = "step_up"
hours = 24

[new_instrument.max]
CNY = ["100.00", "500.00", "1000.00", "unlimited"]

[instrument_daily]
action = "decline"

[instrument_daily.max]
CNY = ["2000.00", "2000.00", "2000.00", "2000.00"]

[instrument_binds]
action = "flag"
binds_max = 2
window_seconds = 3600
"#;

fn open(account: u64) -> CommandKind {
    CommandKind::OpenAccount(OpenAccount {
        account: AccountId(account),
        owner: account / 100,
        kind: AccountKind::Customer,
        currency: CNY,
        kyc_tier: 1,
        mcc: 0,
    })
}

fn bind(account: u64, number: u32) -> CommandKind {
    CommandKind::BindInstrument(InstrumentBind {
        customer: AccountId(account),
        number,
        kind: InstrumentKind::Card,
        token: InstrumentToken::new(&format!("tok_{account}_{number}")).unwrap(),
        bank: BankName::new("ICBC").unwrap(),
        country: *b"CN",
        last_four: *b"4242",
        currency: CNY,
    })
}

fn verify(account: u64, number: u32) -> CommandKind {
    CommandKind::VerifyInstrument {
        instrument: InstrumentId {
            owner: account / 100,
            number,
        },
        passed: true,
    }
}

fn top_up(account: u64, amount: u64) -> CommandKind {
    CommandKind::Deposit {
        account: AccountId(account),
        amount,
        currency: CNY,
    }
}

fn withdraw_to(account: u64, number: u32, amount: u64, step_up: bool) -> CommandKind {
    CommandKind::WithdrawHoldTo {
        account: AccountId(account),
        amount,
        currency: CNY,
        timeout_ms: 600_000,
        context: RiskContext {
            step_up_verified: step_up,
            ..RiskContext::NONE
        },
        instrument: InstrumentId {
            owner: account / 100,
            number,
        },
    }
}

/// What a row expects: the status and the risk detail (rule, verdict,
/// limit, observed), if any.
type Want = (S, Option<(RuleId, Verdict, u64, u64)>);

const OK: Want = (S::Ok, None);

/// (ns after T0, command, expected)
type Row = (u64, CommandKind, Want);

fn setup() -> Vec<(u64, CommandKind)> {
    vec![
        (0, open(ALICE)),
        (0, open(BOB)),
        (0, top_up(ALICE, 10_000_000)),
        (0, top_up(BOB, 10_000_000)),
    ]
}

enum Runner {
    Lone(Box<Ledger>),
    Sharded(Box<ShardedLedger>),
}

impl Runner {
    fn run(&mut self, sequence: u64, timestamp: u64, command: Command) -> CommandResult {
        match self {
            Runner::Lone(ledger) => ledger.apply_batch(sequence, timestamp, &[command])[0],
            Runner::Sharded(sharded) => {
                sharded.submit(sequence, timestamp, &[command]);
                sharded.complete_wait().unwrap()[0]
            }
        }
    }

    fn set_policy(&mut self, sequence: u64, timestamp: u64, policy: RiskPolicy) {
        match self {
            Runner::Lone(ledger) => {
                ledger.set_risk_policy(sequence, timestamp, policy);
            }
            Runner::Sharded(sharded) => {
                sharded.set_risk_policy(sequence, timestamp, policy);
            }
        }
    }
}

fn risk_of(result: &CommandResult) -> Option<(RuleId, Verdict, u64, u64)> {
    result
        .detail
        .risk()
        .map(|risk| (risk.rule, risk.verdict, risk.limit, risk.observed))
}

/// Runs `rows` after the setup under `policy` on a lone ledger (`shards` 0)
/// or on `shards` shards; returns the ledger (lone or merged) at the end.
fn run_table(name: &str, policy: &RiskPolicy, rows: &[Row], shards: usize) -> Ledger {
    let config = LedgerConfig::default();
    let mut runner = if shards == 0 {
        Runner::Lone(Box::new(Ledger::new(config)))
    } else {
        Runner::Sharded(Box::new(ShardedLedger::new(config, shards).unwrap()))
    };
    let mut sequence = 1;
    runner.set_policy(sequence, T0, policy.clone());
    for (at, kind) in setup() {
        sequence += 1;
        let result = runner.run(sequence, T0 + at, Command::new(u128::from(sequence), kind));
        assert_eq!(result.status, S::Ok, "{name}: setup {kind:?}");
    }
    for (row, (at, kind, want)) in rows.iter().enumerate() {
        sequence += 1;
        let command = Command::new(1_000 + u128::from(sequence), *kind);
        let result = runner.run(sequence, T0 + at, command);
        let got = (result.status, risk_of(&result));
        assert_eq!(got, *want, "{name} on {shards} shards, row {row}: {kind:?}");
    }
    match runner {
        Runner::Lone(ledger) => *ledger,
        Runner::Sharded(mut sharded) => {
            let merged = sharded.to_ledger().unwrap();
            sharded.stop();
            merged
        }
    }
}

/// A table on a lone ledger and 1, 2 and 3 shards: the same results, the
/// same final state. Returns the lone ledger.
fn check_table(name: &str, policy: &RiskPolicy, rows: &[Row]) -> Ledger {
    let lone = run_table(name, policy, rows, 0);
    for shards in [1, 2, 3] {
        let merged = run_table(name, policy, rows, shards);
        assert_eq!(merged.digest(), lone.digest(), "{name} on {shards} shards");
        assert_eq!(
            merged.risk().counters(),
            lone.risk().counters(),
            "{name} on {shards} shards"
        );
    }
    lone
}

fn audit(ledger: &Ledger, account: u64) -> Vec<(RuleId, Verdict, u64, u64)> {
    (0..=u8::MAX)
        .map_while(|index| {
            match ledger.query(&Query::RiskAudit {
                account: AccountId(account),
                index,
            }) {
                QueryReply::RiskAudit { entry, .. } => Some(entry),
                _ => None,
            }
        })
        .filter_map(|entry| {
            Some((
                entry.rule?,
                entry.verdict,
                entry.figures.limit,
                entry.figures.observed,
            ))
        })
        .collect()
}

fn decided(ledger: &Ledger, rule: RuleId, verdict: Verdict) -> u64 {
    ledger
        .risk()
        .counters()
        .iter()
        .find(|(r, v, _)| *r == rule && *v == verdict)
        .map_or(0, |(_, _, count)| count)
}

#[test]
fn a_new_instrument_withdraws_at_most_its_limit_in_its_first_hours() {
    let policy = RiskPolicy::from_toml(POLICY).unwrap();
    let step_up = |observed| {
        (
            S::StepUpRequired,
            Some((RuleId::NewInstrument, Verdict::StepUp, 50_000, observed)),
        )
    };
    let rows: Vec<Row> = vec![
        (SECOND, bind(ALICE, 1), OK),
        (2 * SECOND, verify(ALICE, 1), OK),
        // Tier 1: 500.00 in the first 24 hours, inclusive.
        (3 * SECOND, withdraw_to(ALICE, 1, 30_000, false), OK),
        (
            4 * SECOND,
            withdraw_to(ALICE, 1, 20_001, false),
            step_up(50_001),
        ),
        (5 * SECOND, withdraw_to(ALICE, 1, 20_000, false), OK),
        (6 * SECOND, withdraw_to(ALICE, 1, 1, false), step_up(50_001)),
        // A verified second factor passes it (and counts).
        (7 * SECOND, withdraw_to(ALICE, 1, 10_000, true), OK),
        // Refused withdrawals did not count; the first 24 hours end at
        // exactly 24 h after the bind.
        (
            SECOND + 24 * HOUR - 1,
            withdraw_to(ALICE, 1, 1, false),
            step_up(60_001),
        ),
        (SECOND + 24 * HOUR, withdraw_to(ALICE, 1, 90_000, false), OK),
        // Bob's instrument is his own: Alice's withdrawals do not count.
        (SECOND + 24 * HOUR, bind(BOB, 1), OK),
        (SECOND + 24 * HOUR, verify(BOB, 1), OK),
        (SECOND + 24 * HOUR, withdraw_to(BOB, 1, 50_000, false), OK),
    ];
    let lone = check_table("new instrument", &policy, &rows);
    assert_eq!(
        audit(&lone, ALICE),
        [
            (RuleId::NewInstrument, Verdict::StepUp, 50_000, 60_001),
            (RuleId::NewInstrument, Verdict::StepUp, 50_000, 50_001),
            (RuleId::NewInstrument, Verdict::StepUp, 50_000, 50_001),
        ]
    );
    assert_eq!(decided(&lone, RuleId::NewInstrument, Verdict::StepUp), 3);
}

#[test]
fn an_instrument_takes_at_most_its_daily_limit() {
    let policy = RiskPolicy::from_toml(POLICY).unwrap();
    let decline = |observed| {
        (
            S::RiskDeclined,
            Some((RuleId::InstrumentDaily, Verdict::Decline, 200_000, observed)),
        )
    };
    let day = 86_400 * SECOND;
    let rows: Vec<Row> = vec![
        (SECOND, bind(ALICE, 1), OK),
        (SECOND, verify(ALICE, 1), OK),
        (SECOND, bind(ALICE, 2), OK),
        (SECOND, verify(ALICE, 2), OK),
        // Two days later: no longer new. 2,000.00 a day per instrument.
        (2 * day, withdraw_to(ALICE, 1, 150_000, false), OK),
        (
            2 * day + 1,
            withdraw_to(ALICE, 1, 50_001, false),
            decline(200_001),
        ),
        (2 * day + 2, withdraw_to(ALICE, 1, 50_000, false), OK),
        // Per instrument: the other card has its own day.
        (2 * day + 3, withdraw_to(ALICE, 2, 200_000, false), OK),
        // A second factor does not pass a decline.
        (
            2 * day + 4,
            withdraw_to(ALICE, 1, 1, true),
            decline(200_001),
        ),
        // The next UTC day starts again at zero.
        (
            3 * day - 1,
            withdraw_to(ALICE, 1, 1, false),
            decline(200_001),
        ),
        (3 * day, withdraw_to(ALICE, 1, 200_000, false), OK),
    ];
    let lone = check_table("instrument daily", &policy, &rows);
    assert_eq!(decided(&lone, RuleId::InstrumentDaily, Verdict::Decline), 3);
    assert_eq!(audit(&lone, ALICE).len(), 3);
}

#[test]
fn too_many_binds_in_a_window_flag_then_decline_and_freeze() {
    let flagged = RiskPolicy::from_toml(POLICY).unwrap();
    let flag = |observed| {
        (
            S::Ok,
            Some((RuleId::InstrumentBinds, Verdict::Flag, 2, observed)),
        )
    };
    let rows: Vec<Row> = vec![
        (0, bind(ALICE, 1), OK),
        (HOUR / 2, bind(ALICE, 2), OK),
        // The third within the hour: bound, and the customer flagged.
        (HOUR - 1, bind(ALICE, 3), flag(3)),
        // The window is half-open: the first bind is out of it at exactly 1 h.
        (HOUR, bind(ALICE, 4), flag(3)),
        (HOUR + HOUR / 2, bind(ALICE, 5), flag(3)),
        // Bob's binds are his own.
        (HOUR + HOUR / 2, bind(BOB, 1), OK),
        // Refused binds are not evaluated (the number is taken).
        (HOUR + HOUR / 2, bind(ALICE, 5), (S::InstrumentExists, None)),
        (3 * HOUR, bind(ALICE, 6), OK),
    ];
    let lone = check_table("binds flagged", &flagged, &rows);
    assert_eq!(decided(&lone, RuleId::InstrumentBinds, Verdict::Flag), 3);
    assert_eq!(
        audit(&lone, ALICE),
        [
            (RuleId::InstrumentBinds, Verdict::Flag, 2, 3),
            (RuleId::InstrumentBinds, Verdict::Flag, 2, 3),
            (RuleId::InstrumentBinds, Verdict::Flag, 2, 3),
        ]
    );

    let strict = RiskPolicy::from_toml(&POLICY.replace(
        "[instrument_binds]\naction = \"flag\"",
        "[instrument_binds]\naction = \"decline\"\nfreeze = true",
    ))
    .unwrap();
    let rows: Vec<Row> = vec![
        (0, bind(ALICE, 1), OK),
        (SECOND, bind(ALICE, 2), OK),
        (
            2 * SECOND,
            bind(ALICE, 3),
            (
                S::RiskFrozen,
                Some((RuleId::InstrumentBinds, Verdict::Decline, 2, 3)),
            ),
        ),
        // Not bound, and the customer's account is frozen.
        (3 * SECOND, verify(ALICE, 3), (S::UnknownInstrument, None)),
        (3 * SECOND, bind(ALICE, 4), (S::AccountFrozen, None)),
        (3 * SECOND, top_up(ALICE, 1), (S::AccountFrozen, None)),
    ];
    check_table("binds declined", &strict, &rows);
}

#[test]
fn instrument_risk_state_is_checkpointed_and_in_the_digest() {
    let policy = RiskPolicy::from_toml(POLICY).unwrap();
    let rows: Vec<Row> = vec![
        (0, bind(ALICE, 1), OK),
        (0, verify(ALICE, 1), OK),
        (SECOND, bind(ALICE, 2), OK),
        (2 * SECOND, withdraw_to(ALICE, 1, 40_000, false), OK),
    ];
    let ledger = run_table("checkpoint", &policy, &rows, 0);
    let mut bytes = Vec::new();
    encode_state(&ledger, &mut bytes);
    let mut decoded = decode_state(&bytes, LedgerConfig::default()).unwrap();
    assert_eq!(decoded.digest(), ledger.digest());
    // The decoded ledger remembers the 400.00 withdrawn and the two binds.
    let timestamp = T0 + 3 * SECOND;
    let results = decoded.apply_batch(
        100,
        timestamp,
        &[
            Command::new(9_001, withdraw_to(ALICE, 1, 10_001, false)),
            Command::new(9_002, bind(ALICE, 3)),
        ],
    );
    assert_eq!(
        (results[0].status, risk_of(&results[0])),
        (
            S::StepUpRequired,
            Some((RuleId::NewInstrument, Verdict::StepUp, 50_000, 50_001))
        )
    );
    assert_eq!(
        risk_of(&results[1]),
        Some((RuleId::InstrumentBinds, Verdict::Flag, 2, 3))
    );

    // What was withdrawn to an instrument is in the digest: the same
    // checkpoint with another figure (the section's one entry, then the bind
    // times' one entry, the pending hold's instrument and the 29-byte
    // config section end the state) decodes to another digest, so recovery
    // would refuse it.
    let hold_section = 8 + 48 + 29;
    let withdrawn_at = bytes.len() - hold_section - 138 - 8 - 32 + 12;
    assert_eq!(
        bytes[withdrawn_at..withdrawn_at + 8],
        40_000u64.to_le_bytes()
    );
    let mut tampered = bytes.clone();
    tampered[withdrawn_at] ^= 1;
    let tampered = decode_state(&tampered, LedgerConfig::default()).unwrap();
    assert_ne!(tampered.digest(), ledger.digest());

    // Without a policy in force nothing is remembered.
    let mut plain = Ledger::new(LedgerConfig::default());
    let mut sequence = 0;
    for (at, kind) in setup()
        .into_iter()
        .chain(rows.iter().map(|(at, kind, _)| (*at, *kind)))
    {
        sequence += 1;
        let command = Command::new(u128::from(sequence), kind);
        let result = plain.apply_batch(sequence, T0 + at, &[command]);
        assert_eq!(result[0].status, S::Ok);
    }
    let mut bytes = Vec::new();
    encode_state(&plain, &mut bytes);
    // Both instrument rules' sections are empty (two zero counts), before
    // the pending hold's instrument (kept with or without a policy).
    let rules_end = bytes.len() - hold_section;
    assert_eq!(bytes[rules_end - 16..rules_end], [0u8; 16]);
    assert_eq!(bytes[rules_end..rules_end + 8], 1u64.to_le_bytes());
}

/// The posted movement of a withdrawal shows the instrument its hold named,
/// as it was when the hold was made: after the instrument was unbound and
/// forgotten (its place taken by a new bind), across a checkpoint, and the
/// same on shards as on a lone ledger.
#[test]
fn a_posted_withdrawal_shows_its_instrument_after_it_is_forgotten() {
    use payrail_engine::history::Movement;
    let config = LedgerConfig {
        customer_instruments_max: 1,
        ..LedgerConfig::default()
    };
    let hold_id = 9_000u128;
    let before: Vec<(u64, CommandKind)> = vec![
        (0, open(ALICE)),
        (0, bind(ALICE, 1)),
        (0, verify(ALICE, 1)),
        (SECOND, top_up_from(ALICE, 1, 5_000)),
        (2 * SECOND, withdraw_to(ALICE, 1, 2_000, false)),
        (3 * SECOND, unbind_kind(ALICE, 1)),
        // The cap is 1: this bind forgets card 1.
        (4 * SECOND, bind(ALICE, 2)),
    ];
    let post = CommandKind::WithdrawPost {
        hold: payrail_engine::CommandId(hold_id),
    };
    let id_of = |index: usize, kind: &CommandKind| -> u128 {
        if matches!(kind, CommandKind::WithdrawHoldTo { .. }) {
            hold_id
        } else {
            index as u128 + 1
        }
    };
    // A lone ledger with a checkpoint round trip before the post.
    let mut lone = Ledger::new(config);
    let mut movements: Vec<Movement> = Vec::new();
    let mut all: Vec<Movement> = Vec::new();
    lone.record_history(true);
    for (index, (at, kind)) in before.iter().enumerate() {
        let command = Command::new(id_of(index, kind), *kind);
        let result = lone.apply_batch(index as u64 + 1, T0 + at, &[command]);
        assert_eq!(result[0].status, S::Ok, "{kind:?}");
        lone.take_movements(&mut movements);
        all.append(&mut movements);
    }
    // Card 1 is forgotten: card 2 is the customer's only instrument.
    let first = lone.query(&Query::Instrument {
        account: AccountId(ALICE),
        index: 0,
    });
    assert!(
        matches!(first, QueryReply::Instrument(view) if view.instrument.number == 2),
        "{first:?}"
    );
    let mut bytes = Vec::new();
    encode_state(&lone, &mut bytes);
    let mut restored = decode_state(&bytes, config).unwrap();
    assert_eq!(restored.digest(), lone.digest());
    restored.record_history(true);
    let sequence = before.len() as u64 + 1;
    let result = restored.apply_batch(sequence, T0 + 5 * SECOND, &[Command::new(77, post)]);
    assert_eq!(result[0].status, S::Ok);
    restored.take_movements(&mut movements);
    all.append(&mut movements);
    let shown: Vec<(String, Option<String>)> = all
        .iter()
        .map(|movement| {
            (
                movement.kind.to_string(),
                movement.instrument.map(|instrument| instrument.to_string()),
            )
        })
        .collect();
    let card = Some("ICBC ****4242 (instrument 1)".to_owned());
    assert_eq!(
        shown,
        [
            ("deposit_from".to_owned(), card.clone()),
            ("withdraw_post".to_owned(), card),
        ]
    );

    // Two shards, the same movements.
    let mut sharded = ShardedLedger::new(config, 2).unwrap();
    sharded.record_history(true).unwrap();
    for (index, (at, kind)) in before.iter().enumerate() {
        let command = Command::new(id_of(index, kind), *kind);
        sharded.submit(index as u64 + 1, T0 + at, &[command]);
        assert_eq!(sharded.complete_wait().unwrap()[0].status, S::Ok);
    }
    sharded.submit(sequence, T0 + 5 * SECOND, &[Command::new(77, post)]);
    assert_eq!(sharded.complete_wait().unwrap()[0].status, S::Ok);
    let mut chunks = Vec::new();
    sharded.take_history(&mut chunks);
    let got: Vec<Movement> = chunks.into_iter().flatten().collect();
    assert_eq!(got, all);
    sharded.stop();
}

fn top_up_from(account: u64, number: u32, amount: u64) -> CommandKind {
    CommandKind::DepositFrom {
        account: AccountId(account),
        amount,
        currency: CNY,
        instrument: InstrumentId {
            owner: account / 100,
            number,
        },
    }
}

fn unbind_kind(account: u64, number: u32) -> CommandKind {
    CommandKind::UnbindInstrument {
        instrument: InstrumentId {
            owner: account / 100,
            number,
        },
    }
}
