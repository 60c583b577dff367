//! Table tests of every rule and its edges, the policy format, the bounds of
//! the state and determinism. `cargo test -p payrail-engine risk` runs them.

use super::bounds::{
    AUDIT_ENTRIES_MAX, DEVICES_MAX, OUTFLOW_CURRENCIES_MAX, POLICY_ENCODED_BYTES_MAX,
    POLICY_LIST_ENTRIES_MAX, RECENT_PAYMENTS_MAX,
};
use super::policy::{
    AmountAnomalyRule, BlockList, ImpossibleTravelRule, LimitRule, NewDeviceRule, TierLimits,
    VelocityRule,
};
use super::*;
use crate::command::CommandId;

const SECOND: u64 = 1_000_000_000;
const HOUR: u64 = 3_600 * SECOND;

/// 2026-11-10 12:00 UTC.
fn t0() -> u64 {
    Day::from_civil(2026, 11, 10).unwrap().start_timestamp() + 12 * HOUR
}

fn midnight(year: u32, month: u32, day: u32) -> u64 {
    Day::from_civil(year, month, day).unwrap().start_timestamp()
}

fn pay(timestamp: u64, amount: u64) -> PaymentContext {
    PaymentContext::new(timestamp, 1, Currency::CNY, amount)
}

fn policy(build: impl FnOnce(&mut RiskPolicy)) -> RiskPolicy {
    let mut policy = RiskPolicy::disabled();
    build(&mut policy);
    policy.validate().unwrap();
    policy
}

fn limit_rule(response: Response, rows: &[(Currency, [u64; 4])]) -> Option<LimitRule> {
    Some(LimitRule {
        response,
        limits: rows
            .iter()
            .map(|&(currency, max)| TierLimits { currency, max })
            .collect(),
    })
}

fn record_all(state: &mut CustomerRiskState, payments: &[PaymentContext]) {
    for payment in payments {
        state.record(payment);
    }
}

/// (verdict, rule) of one evaluation.
fn outcome(
    policy: &RiskPolicy,
    state: &CustomerRiskState,
    payment: &PaymentContext,
) -> (Verdict, Option<RuleId>) {
    let decision = evaluate(policy, state, payment);
    (decision.verdict, decision.rule)
}

fn point(latitude: f64, longitude: f64) -> GeoPoint {
    GeoPoint::new(
        (latitude * 1e6).round() as i32,
        (longitude * 1e6).round() as i32,
    )
    .unwrap()
}

const DECLINE: Response = Response::DECLINE;
const STEP_UP: Response = Response::STEP_UP;
const FLAG: Response = Response::FLAG;

// ---------------------------------------------------------------- policy

#[test]
fn risk_policy_example_parses_with_documented_values() {
    let policy = RiskPolicy::example();
    policy.validate().unwrap();
    let single = policy.single_payment.as_ref().unwrap();
    assert_eq!(single.response, DECLINE);
    assert_eq!(single.limit(Currency::CNY, 0), Some(50_000));
    assert_eq!(single.limit(Currency::CNY, 1), Some(500_000));
    assert_eq!(single.limit(Currency::JPY, 0), Some(10_000));
    assert_eq!(single.limit(Currency::EUR, 0), None);
    let monthly = policy.monthly_outflow.as_ref().unwrap();
    assert_eq!(monthly.limit(Currency::USD, 3), Some(UNLIMITED));
    assert_eq!(policy.daily_outflow.as_ref().unwrap().response, STEP_UP);
    assert_eq!(
        policy.velocity,
        Some(VelocityRule {
            response: STEP_UP,
            payments_max: 10,
            window_ns: 600 * SECOND,
        })
    );
    let countries = &policy.blocked_countries.as_ref().unwrap().entries;
    assert_eq!(countries, &[*b"CU", *b"IR", *b"KP", *b"SY"]);
    let merchants = &policy.blocked_merchants.as_ref().unwrap().entries;
    assert_eq!(
        merchants,
        &[
            AccountId(9_000_001),
            AccountId(9_000_002),
            AccountId(0xFE00_0000_0000_0001)
        ]
    );
    assert_eq!(
        policy.blocked_mccs.as_ref().unwrap().entries,
        [7800, 7801, 7802, 7995]
    );
    assert_eq!(
        policy.new_device,
        Some(NewDeviceRule {
            response: STEP_UP,
            trust_first_device: true,
        })
    );
    assert_eq!(
        policy.impossible_travel,
        Some(ImpossibleTravelRule {
            response: Response {
                action: Action::Decline,
                freeze: true,
            },
            speed_kmh_max: 1_000,
            distance_m_min: 100_000,
        })
    );
    assert_eq!(
        policy.amount_anomaly,
        Some(AmountAnomalyRule {
            response: STEP_UP,
            multiplier_milli: 8_000,
            history: 20,
            history_min: 5,
        })
    );
}

#[test]
fn risk_policy_bincode_round_trip_and_digest() {
    let policy = RiskPolicy::example();
    for bytes in [
        bincode::encode_to_vec(&policy, bincode::config::standard()).unwrap(),
        policy.encode_canonical(),
    ] {
        assert!(bytes.len() <= POLICY_ENCODED_BYTES_MAX);
    }
    let config = bincode::config::standard();
    let bytes = bincode::encode_to_vec(&policy, config).unwrap();
    let (decoded, used): (RiskPolicy, usize) = bincode::decode_from_slice(&bytes, config).unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(decoded, policy);
    assert_eq!(decoded.digest(), policy.digest());
    assert_ne!(policy.digest(), RiskPolicy::disabled().digest());
    assert!(RiskPolicy::disabled().is_disabled());
    assert!(!policy.is_disabled());
    // Key order and list order in the TOML do not matter.
    let reordered = RiskPolicy::from_toml(
        r#"
        [blocked_mccs]
        mccs = [7995, 7800, 7802, 7801, 7995]
        action = "decline"
        "#,
    )
    .unwrap();
    assert_eq!(reordered.blocked_mccs, policy.blocked_mccs);
}

#[test]
fn risk_policy_biggest_valid_policy_fits_the_encoding_bound() {
    let policy = policy(|p| {
        p.blocked_merchants = Some(BlockList {
            response: DECLINE,
            entries: (0..POLICY_LIST_ENTRIES_MAX as u64)
                .map(|i| AccountId(0xFE00_0000_0000_0000 + i))
                .collect(),
        });
        p.blocked_mccs = Some(BlockList {
            response: DECLINE,
            entries: (0..POLICY_LIST_ENTRIES_MAX as u16).collect(),
        });
        p.blocked_countries = Some(BlockList {
            response: DECLINE,
            entries: (0..26u8)
                .flat_map(|a| (0..26u8).map(move |b| [b'A' + a, b'A' + b]))
                .collect(),
        });
        let rows: Vec<(Currency, [u64; 4])> = (1..=999)
            .filter_map(Currency::from_numeric)
            .take(64)
            .map(|c| (c, [u64::MAX; 4]))
            .collect();
        assert_eq!(rows.len(), 64);
        p.single_payment = limit_rule(DECLINE, &rows);
        p.daily_outflow = limit_rule(DECLINE, &rows);
        p.monthly_outflow = limit_rule(DECLINE, &rows);
    });
    let fixed = policy.encode_canonical();
    assert!(fixed.len() <= POLICY_ENCODED_BYTES_MAX, "{}", fixed.len());
    let varint = bincode::encode_to_vec(&policy, bincode::config::standard()).unwrap();
    assert!(varint.len() <= POLICY_ENCODED_BYTES_MAX, "{}", varint.len());
}

#[test]
fn risk_policy_refuses_unknown_keys() {
    let table = [
        ("colour = \"blue\"", "unknown field `colour`"),
        (
            "[velocity]\naction = \"decline\"\npayments_max = 3\nwindow_seconds = 60\nburst = 2",
            "unknown field `burst`",
        ),
        (
            "[blocked_mccs]\naction = \"decline\"\nmccs = [1]\nfreze = true",
            "unknown field `freze`",
        ),
        (
            "[new_devices]\naction = \"flag\"",
            "unknown field `new_devices`",
        ),
    ];
    for (text, expected) in table {
        let error = RiskPolicy::from_toml(text).unwrap_err().to_string();
        assert!(error.contains(expected), "{text:?}: {error}");
    }
}

#[test]
fn risk_policy_refuses_bad_values_with_clear_messages() {
    let limits =
        |max: &str| format!("[single_payment]\naction = \"decline\"\n[single_payment.max]\n{max}");
    let table: Vec<(String, &str)> = vec![
        (limits("CNY = [\"1\", \"2\", \"3\"]"), "single_payment.max.CNY: 3 amounts; one per KYC tier 0..=3 (4) is needed"),
        (limits("CNY = [\"1.001\", 2, 3, 4]"), "single_payment.max.CNY[0]: 1.001 has more decimals than CNY has minor units (2)"),
        (limits("JPY = [\"1.5\", 2, 3, 4]"), "more decimals than JPY has minor units (0)"),
        (limits("CNY = [1.5, 2, 3, 4]"), "is a float"),
        (limits("CNY = [-1, 2, 3, 4]"), "-1 is negative"),
        (limits("CNY = [\"lots\", 2, 3, 4]"), "\"lots\" is not an amount"),
        (limits("XYZ = [1, 2, 3, 4]"), "single_payment.max.XYZ: \"XYZ\" is not an ISO 4217 currency"),
        (limits("CNY = [1, 2, 3, 4]\ncny = [1, 2, 3, 4]"), "a currency is listed twice"),
        (limits("CNY = [100000000000000000, 2, 3, 4]"), "is more than any amount"),
        (
            "[velocity]\naction = \"decline\"\npayments_max = 33\nwindow_seconds = 60".into(),
            "velocity.payments_max: 33 is out of range 1..=32",
        ),
        (
            "[velocity]\naction = \"decline\"\npayments_max = 0\nwindow_seconds = 60".into(),
            "velocity.payments_max: 0 is out of range 1..=32",
        ),
        (
            "[velocity]\naction = \"decline\"\npayments_max = 3\nwindow_seconds = 0".into(),
            "velocity.window_seconds: 0 is out of range 1..=2678400",
        ),
        (
            "[velocity]\naction = \"block\"\npayments_max = 3\nwindow_seconds = 60".into(),
            "velocity.action: \"block\" is not one of \"decline\", \"step_up\", \"flag\"",
        ),
        (
            "[velocity]\naction = \"step_up\"\nfreeze = true\npayments_max = 3\nwindow_seconds = 60".into(),
            "velocity.freeze: freeze = true needs action = \"decline\"",
        ),
        (
            "[new_device]\naction = \"flag\"\nfreeze = true\ntrust_first_device = true".into(),
            "new_device.freeze: freeze = true needs action = \"decline\"",
        ),
        (
            "[new_device]\naction = \"flag\"".into(),
            "missing field `trust_first_device`",
        ),
        (
            "[blocked_countries]\naction = \"decline\"\ncountries = [\"KPR\"]".into(),
            "\"KPR\" is not an ISO 3166 alpha-2 country code",
        ),
        (
            "[blocked_mccs]\naction = \"decline\"\nmccs = [10000]".into(),
            "blocked_mccs.mccs: 10000 is out of range 0..=9999",
        ),
        (
            "[blocked_merchants]\naction = \"decline\"\nmerchants = [-5]".into(),
            "-5 is not a merchant account id",
        ),
        (
            "[blocked_merchants]\naction = \"decline\"\nmerchants = [\"0xFF00000000000001\"]".into(),
            "is not a merchant account id",
        ),
        (
            "[impossible_travel]\naction = \"flag\"\nspeed_kmh_max = 0\ndistance_km_min = 10".into(),
            "impossible_travel.speed_kmh_max: 0 is out of range 1..=100000",
        ),
        (
            "[impossible_travel]\naction = \"flag\"\nspeed_kmh_max = 900\ndistance_km_min = 30000".into(),
            "impossible_travel.distance_km_min: 30000 is out of range 0..=20015",
        ),
        (
            "[amount_anomaly]\naction = \"flag\"\nmultiplier = \"0.5\"\nhistory = 10\nhistory_min = 5".into(),
            "amount_anomaly.multiplier: 0.5 is out of range 1..=1000",
        ),
        (
            "[amount_anomaly]\naction = \"flag\"\nmultiplier = \"2.0001\"\nhistory = 10\nhistory_min = 5".into(),
            "2.0001 has more than 3 decimals",
        ),
        (
            "[amount_anomaly]\naction = \"flag\"\nmultiplier = 2.5\nhistory = 10\nhistory_min = 5".into(),
            "is not a multiplier",
        ),
        (
            "[amount_anomaly]\naction = \"flag\"\nmultiplier = 3\nhistory = 10\nhistory_min = 11".into(),
            "amount_anomaly.history_min: 11 is out of range 1..=10",
        ),
        (
            "[amount_anomaly]\naction = \"flag\"\nmultiplier = 3\nhistory = 40\nhistory_min = 5".into(),
            "amount_anomaly.history: 40 is out of range 1..=32",
        ),
        ("velocity = 3".into(), "invalid type"),
        ("[velocity\n".into(), "TOML"),
    ];
    for (text, expected) in &table {
        let error = RiskPolicy::from_toml(text).unwrap_err().to_string();
        assert!(
            error.contains(expected),
            "{text:?}\n  got: {error}\n  expected: {expected}"
        );
    }
}

#[test]
fn risk_policy_refuses_lists_over_the_bound() {
    let merchants: Vec<String> = (1..=POLICY_LIST_ENTRIES_MAX as u64 + 1)
        .map(|i| i.to_string())
        .collect();
    let text = format!(
        "[blocked_merchants]\naction = \"decline\"\nmerchants = [{}]",
        merchants.join(", ")
    );
    let error = RiskPolicy::from_toml(&text).unwrap_err().to_string();
    assert!(
        error.contains("blocked_merchants.merchants: 1025 entries; at most 1024"),
        "{error}"
    );
    // Exactly at the bound is fine.
    let text = format!(
        "[blocked_merchants]\naction = \"decline\"\nmerchants = [{}]",
        merchants[..POLICY_LIST_ENTRIES_MAX].join(", ")
    );
    assert!(RiskPolicy::from_toml(&text).is_ok());

    let huge = "#".repeat(super::bounds::POLICY_TOML_BYTES_MAX + 1);
    assert!(matches!(
        RiskPolicy::from_toml(&huge),
        Err(PolicyError::TooLarge { .. })
    ));
}

#[test]
fn risk_policy_decoding_validates_and_bounds_lists() {
    let config = bincode::config::standard();
    // A policy that skipped validation (unsorted list) is refused on decode.
    let mut unsorted = RiskPolicy::disabled();
    unsorted.blocked_mccs = Some(BlockList {
        response: DECLINE,
        entries: vec![7995, 7801],
    });
    assert!(unsorted.validate().is_err());
    let bytes = bincode::encode_to_vec(&unsorted, config).unwrap();
    let error = bincode::decode_from_slice::<RiskPolicy, _>(&bytes, config).unwrap_err();
    assert!(error.to_string().contains("sorted"), "{error}");

    // Too many entries: refused before anything is allocated.
    let mut long = RiskPolicy::disabled();
    long.blocked_mccs = Some(BlockList {
        response: DECLINE,
        entries: (0..=POLICY_LIST_ENTRIES_MAX as u16).collect(),
    });
    let bytes = bincode::encode_to_vec(&long, config).unwrap();
    assert!(bincode::decode_from_slice::<RiskPolicy, _>(&bytes, config).is_err());

    // A length prefix claiming 2^60 entries.
    let mut forged = bincode::encode_to_vec(None::<u8>, config).unwrap(); // no countries
    forged.extend(bincode::encode_to_vec(None::<u8>, config).unwrap()); // no merchants
    forged.push(1); // Some(blocked_mccs)
    forged.extend(bincode::encode_to_vec(DECLINE, config).unwrap());
    forged.extend(bincode::encode_to_vec(1u64 << 60, config).unwrap());
    let error = bincode::decode_from_slice::<RiskPolicy, _>(&forged, config).unwrap_err();
    assert!(error.to_string().contains("at most 1024"), "{error}");

    // Freeze without decline, built in code.
    let mut freeze = RiskPolicy::disabled();
    freeze.new_device = Some(NewDeviceRule {
        response: Response {
            action: Action::StepUp,
            freeze: true,
        },
        trust_first_device: true,
    });
    assert!(freeze.validate().is_err());
}

// ---------------------------------------------------------------- rules

#[test]
fn risk_disabled_policy_approves_everything() {
    let policy = RiskPolicy::disabled();
    let mut state = CustomerRiskState::new();
    for index in 0..100 {
        let mut payment = pay(t0() + index * SECOND, u64::MAX);
        payment.country = Some(*b"KP");
        payment.device = Some(index);
        payment.location = Some(point(if index % 2 == 0 { 0.0 } else { 60.0 }, 0.0));
        assert_eq!(evaluate(&policy, &state, &payment), Decision::APPROVE);
        state.record(&payment);
    }
}

#[test]
fn risk_blocked_country_merchant_and_mcc() {
    let policy = policy(|p| {
        p.blocked_countries = Some(BlockList {
            response: DECLINE,
            entries: vec![*b"IR", *b"KP"],
        });
        p.blocked_merchants = Some(BlockList {
            response: STEP_UP,
            entries: vec![AccountId(7), AccountId(9)],
        });
        p.blocked_mccs = Some(BlockList {
            response: FLAG,
            entries: vec![7995],
        });
    });
    let state = CustomerRiskState::new();
    let with = |country: Option<[u8; 2]>, merchant: Option<u64>, mcc: Option<u16>| {
        let mut payment = pay(t0(), 100);
        payment.country = country;
        payment.merchant = merchant.map(AccountId);
        payment.mcc = mcc;
        payment
    };
    let table = [
        (
            with(Some(*b"KP"), None, None),
            Verdict::Decline,
            Some(RuleId::BlockedCountry),
        ),
        (
            with(Some(*b"IR"), None, None),
            Verdict::Decline,
            Some(RuleId::BlockedCountry),
        ),
        (with(Some(*b"CN"), None, None), Verdict::Approve, None),
        // Lower case is not an ISO 3166 code: the gateway sends upper case.
        (with(Some(*b"kp"), None, None), Verdict::Approve, None),
        (
            with(None, Some(9), None),
            Verdict::StepUp,
            Some(RuleId::BlockedMerchant),
        ),
        (with(None, Some(8), None), Verdict::Approve, None),
        (
            with(None, None, Some(7995)),
            Verdict::Flag,
            Some(RuleId::BlockedMcc),
        ),
        (with(None, None, Some(5812)), Verdict::Approve, None),
        (with(None, None, None), Verdict::Approve, None),
        // Several at once: the most severe decides.
        (
            with(Some(*b"KP"), Some(7), Some(7995)),
            Verdict::Decline,
            Some(RuleId::BlockedCountry),
        ),
        (
            with(Some(*b"CN"), Some(7), Some(7995)),
            Verdict::StepUp,
            Some(RuleId::BlockedMerchant),
        ),
    ];
    for (payment, verdict, rule) in table {
        assert_eq!(
            outcome(&policy, &state, &payment),
            (verdict, rule),
            "{payment:?}"
        );
    }
    let decision = evaluate(&policy, &state, &with(Some(*b"KP"), Some(7), Some(7995)));
    assert_eq!(
        decision.figures.observed,
        u64::from(u16::from_be_bytes(*b"KP"))
    );
    assert_eq!(
        decision.fired.iter().collect::<Vec<_>>(),
        [
            RuleId::BlockedCountry,
            RuleId::BlockedMerchant,
            RuleId::BlockedMcc
        ]
    );
    assert_eq!(
        decision.flags.iter().collect::<Vec<_>>(),
        [RuleId::BlockedMcc]
    );
}

#[test]
fn risk_single_payment_limit_edges() {
    let policy = policy(|p| {
        p.single_payment = limit_rule(
            DECLINE,
            &[
                (Currency::CNY, [1_000, 5_000, 20_000, UNLIMITED]),
                (Currency::JPY, [100, 200, 300, 400]),
            ],
        );
    });
    let state = CustomerRiskState::new();
    let payment = |tier: u8, currency: Currency, amount: u64| {
        PaymentContext::new(t0(), tier, currency, amount)
    };
    let table = [
        (payment(0, Currency::CNY, 1_000), Verdict::Approve),
        (payment(0, Currency::CNY, 1_001), Verdict::Decline),
        (payment(1, Currency::CNY, 5_000), Verdict::Approve),
        (payment(1, Currency::CNY, 5_001), Verdict::Decline),
        (payment(2, Currency::CNY, 20_000), Verdict::Approve),
        (payment(2, Currency::CNY, 20_001), Verdict::Decline),
        (payment(3, Currency::CNY, u64::MAX), Verdict::Approve),
        // Tiers above the highest read as the highest.
        (payment(9, Currency::JPY, 400), Verdict::Approve),
        (payment(9, Currency::JPY, 401), Verdict::Decline),
        (payment(0, Currency::JPY, 101), Verdict::Decline),
        // A currency that is not listed has no limit.
        (payment(0, Currency::USD, u64::MAX), Verdict::Approve),
    ];
    for (payment, verdict) in table {
        assert_eq!(
            evaluate(&policy, &state, &payment).verdict,
            verdict,
            "{payment:?}"
        );
    }
    let decision = evaluate(&policy, &state, &payment(1, Currency::CNY, 5_001));
    assert_eq!(decision.rule, Some(RuleId::SinglePayment));
    assert_eq!(
        decision.figures,
        RuleFigures {
            limit: 5_000,
            observed: 5_001
        }
    );
}

#[test]
fn risk_daily_outflow_at_limit_and_midnight_rollover() {
    let policy = policy(|p| {
        p.daily_outflow = limit_rule(DECLINE, &[(Currency::CNY, [0, 10_000, 0, 0])]);
    });
    let mut state = CustomerRiskState::new();
    let last_ns = midnight(2026, 11, 11) - 1; // 23:59:59.999999999 on the 10th
    record_all(&mut state, &[pay(t0(), 6_000), pay(t0() + HOUR, 3_000)]);
    // 9,000 spent: 1,000 more is exactly the limit, 1,001 is over.
    assert_eq!(
        evaluate(&policy, &state, &pay(last_ns, 1_000)).verdict,
        Verdict::Approve
    );
    let over = evaluate(&policy, &state, &pay(last_ns, 1_001));
    assert_eq!(over.verdict, Verdict::Decline);
    assert_eq!(over.rule, Some(RuleId::DailyOutflow));
    assert_eq!(
        over.figures,
        RuleFigures {
            limit: 10_000,
            observed: 10_001
        }
    );
    state.record(&pay(last_ns, 1_000));
    assert_eq!(
        evaluate(&policy, &state, &pay(last_ns, 1)).verdict,
        Verdict::Decline
    );
    // Midnight UTC: a new day, the whole limit again.
    let next_day = midnight(2026, 11, 11);
    assert_eq!(
        evaluate(&policy, &state, &pay(next_day, 10_000)).verdict,
        Verdict::Approve
    );
    assert_eq!(
        evaluate(&policy, &state, &pay(next_day, 10_001)).verdict,
        Verdict::Decline
    );
    state.record(&pay(next_day, 4_000));
    assert_eq!(state.outflow(Currency::CNY).unwrap().day_total, 4_000);
    assert_eq!(state.outflow(Currency::CNY).unwrap().month_total, 14_000);
    // Outflow in another currency is counted apart.
    let usd = PaymentContext::new(next_day, 1, Currency::USD, 1_000_000);
    assert_eq!(evaluate(&policy, &state, &usd).verdict, Verdict::Approve);
}

#[test]
fn risk_monthly_outflow_at_limit_and_month_end_rollover() {
    let policy = policy(|p| {
        p.monthly_outflow = limit_rule(DECLINE, &[(Currency::CNY, [0, 50_000, 0, 0])]);
    });
    let mut state = CustomerRiskState::new();
    for day in [1, 10, 20, 30] {
        state.record(&pay(midnight(2026, 11, day) + HOUR, 10_000));
    }
    let last_ns = midnight(2026, 12, 1) - 1; // 2026-11-30 23:59:59.999999999
    assert_eq!(
        evaluate(&policy, &state, &pay(last_ns, 10_000)).verdict,
        Verdict::Approve
    );
    let over = evaluate(&policy, &state, &pay(last_ns, 10_001));
    assert_eq!(
        (over.verdict, over.rule),
        (Verdict::Decline, Some(RuleId::MonthlyOutflow))
    );
    assert_eq!(over.figures.observed, 50_001);
    // December 1st, 00:00 UTC: a new month.
    let december = midnight(2026, 12, 1);
    assert_eq!(
        evaluate(&policy, &state, &pay(december, 50_000)).verdict,
        Verdict::Approve
    );
    assert_eq!(
        evaluate(&policy, &state, &pay(december, 50_001)).verdict,
        Verdict::Decline
    );
    // A later day of the same month still counts the month (the bucket's day
    // differs, its month does not).
    state.record(&pay(december, 30_000));
    let later = midnight(2026, 12, 31) + 23 * HOUR;
    assert_eq!(
        evaluate(&policy, &state, &pay(later, 20_000)).verdict,
        Verdict::Approve
    );
    assert_eq!(
        evaluate(&policy, &state, &pay(later, 20_001)).verdict,
        Verdict::Decline
    );
    // And the year end.
    let january = midnight(2027, 1, 1);
    assert_eq!(
        evaluate(&policy, &state, &pay(january, 50_000)).verdict,
        Verdict::Approve
    );
}

#[test]
fn risk_outflow_currencies_bound() {
    let currencies: Vec<Currency> = [
        "CNY", "USD", "EUR", "JPY", "SGD", "THB", "GBP", "HKD", "KRW",
    ]
    .iter()
    .map(|code| Currency::from_code(code).unwrap())
    .collect();
    assert_eq!(currencies.len(), OUTFLOW_CURRENCIES_MAX + 1);
    let ninth = currencies[OUTFLOW_CURRENCIES_MAX];
    let limited = policy(|p| {
        p.daily_outflow = limit_rule(DECLINE, &[(ninth, [1_000; 4])]);
    });
    let unlimited = policy(|p| {
        p.daily_outflow = limit_rule(DECLINE, &[(Currency::CNY, [1_000; 4])]);
    });
    let mut state = CustomerRiskState::new();
    for &currency in &currencies[..OUTFLOW_CURRENCIES_MAX] {
        state.record(&PaymentContext::new(t0(), 1, currency, 10));
    }
    let payment = PaymentContext::new(t0(), 1, ninth, 10);
    let decision = evaluate(&limited, &state, &payment);
    assert_eq!(
        (decision.verdict, decision.rule),
        (Verdict::Decline, Some(RuleId::OutflowCurrencies))
    );
    // A step-up does not pass it: it is a bound, not a suspicion.
    let verified = PaymentContext {
        step_up_verified: true,
        ..payment
    };
    assert_eq!(
        evaluate(&limited, &state, &verified).verdict,
        Verdict::Decline
    );
    // Without a limit in that currency there is nothing to track.
    assert_eq!(
        evaluate(&unlimited, &state, &payment).verdict,
        Verdict::Approve
    );
    state.record(&payment);
    assert!(state.outflow(ninth).is_none());
    // Next month the slots of last month are free again.
    let next_month = PaymentContext::new(midnight(2026, 12, 1), 1, ninth, 10);
    assert_eq!(
        evaluate(&limited, &state, &next_month).verdict,
        Verdict::Approve
    );
    state.record(&next_month);
    assert_eq!(state.outflow(ninth).unwrap().day_total, 10);
    // The oldest slot (lowest index on ties: CNY) made room.
    assert!(state.outflow(Currency::CNY).is_none());
}

#[test]
fn risk_velocity_window_boundary() {
    let window = 60 * SECOND;
    let policy = policy(|p| {
        p.velocity = Some(VelocityRule {
            response: DECLINE,
            payments_max: 3,
            window_ns: window,
        });
    });
    let mut state = CustomerRiskState::new();
    let start = t0();
    // Two payments: a third is fine at any time.
    record_all(&mut state, &[pay(start, 1), pay(start + 10 * SECOND, 1)]);
    assert_eq!(
        evaluate(&policy, &state, &pay(start + 10 * SECOND, 1)).verdict,
        Verdict::Approve
    );
    state.record(&pay(start + 20 * SECOND, 1));
    // Three in the window: a fourth 1 ns before the oldest leaves it is refused ...
    let inside = evaluate(&policy, &state, &pay(start + window - 1, 1));
    assert_eq!(
        (inside.verdict, inside.rule),
        (Verdict::Decline, Some(RuleId::Velocity))
    );
    assert_eq!(
        inside.figures,
        RuleFigures {
            limit: 3,
            observed: 4
        }
    );
    // ... and allowed exactly `window` ns after the oldest counted payment.
    let boundary = evaluate(&policy, &state, &pay(start + window, 1));
    assert_eq!(boundary.verdict, Verdict::Approve);
    state.record(&pay(start + window, 1));
    // Now the payments at +10 s, +20 s, +60 s are counted: +70 s is the edge.
    assert_eq!(
        evaluate(&policy, &state, &pay(start + 70 * SECOND - 1, 1)).verdict,
        Verdict::Decline
    );
    assert_eq!(
        evaluate(&policy, &state, &pay(start + 70 * SECOND, 1)).verdict,
        Verdict::Approve
    );
    // A burst in one batch (equal timestamps) counts too.
    let mut burst = CustomerRiskState::new();
    record_all(&mut burst, &[pay(start, 1), pay(start, 1), pay(start, 1)]);
    assert_eq!(
        evaluate(&policy, &burst, &pay(start, 1)).verdict,
        Verdict::Decline
    );
}

#[test]
fn risk_velocity_at_the_ring_bound() {
    let policy = policy(|p| {
        p.velocity = Some(VelocityRule {
            response: FLAG,
            payments_max: RECENT_PAYMENTS_MAX as u8,
            window_ns: 3_600 * SECOND,
        });
    });
    let mut state = CustomerRiskState::new();
    for index in 0..RECENT_PAYMENTS_MAX as u64 {
        let payment = pay(t0() + index * SECOND, 1);
        assert_eq!(
            evaluate(&policy, &state, &payment).verdict,
            Verdict::Approve
        );
        state.record(&payment);
    }
    let decision = evaluate(&policy, &state, &pay(t0() + 40 * SECOND, 1));
    assert_eq!(decision.verdict, Verdict::Flag);
    assert_eq!(
        decision.figures,
        RuleFigures {
            limit: 32,
            observed: 33
        }
    );
    assert_eq!(
        evaluate(&policy, &state, &pay(t0() + 3_600 * SECOND, 1)).verdict,
        Verdict::Approve
    );
}

#[test]
fn risk_new_device_first_payment_and_eviction() {
    let trusting = policy(|p| {
        p.new_device = Some(NewDeviceRule {
            response: STEP_UP,
            trust_first_device: true,
        });
    });
    let strict = policy(|p| {
        p.new_device = Some(NewDeviceRule {
            response: STEP_UP,
            trust_first_device: false,
        });
    });
    let from = |device: Option<u64>, timestamp: u64| PaymentContext {
        device,
        ..pay(timestamp, 100)
    };
    let mut state = CustomerRiskState::new();
    // The very first payment with a device: trusted, or new, as the policy says.
    assert_eq!(
        evaluate(&trusting, &state, &from(Some(1), t0())).verdict,
        Verdict::Approve
    );
    let first = evaluate(&strict, &state, &from(Some(1), t0()));
    assert_eq!(
        (first.verdict, first.rule),
        (Verdict::StepUp, Some(RuleId::NewDevice))
    );
    assert_eq!(
        first.figures,
        RuleFigures {
            limit: 0,
            observed: 1
        }
    );
    // A payment without a device id is not checked (and records no device).
    assert_eq!(
        evaluate(&strict, &state, &from(None, t0())).verdict,
        Verdict::Approve
    );
    state.record(&from(None, t0()));
    assert_eq!(state.devices_len(), 0);
    state.record(&from(Some(1), t0()));
    // The known device passes; another one is new under both settings.
    for policy in [&trusting, &strict] {
        assert_eq!(
            evaluate(policy, &state, &from(Some(1), t0())).verdict,
            Verdict::Approve
        );
        assert_eq!(
            evaluate(policy, &state, &from(Some(2), t0())).verdict,
            Verdict::StepUp
        );
    }
    // With the second factor it passes, and once committed it is known.
    let verified = PaymentContext {
        step_up_verified: true,
        ..from(Some(2), t0())
    };
    let decision = evaluate(&trusting, &state, &verified);
    assert_eq!(decision.verdict, Verdict::Approve);
    assert!(decision.stepped_up.contains(RuleId::NewDevice));
    assert!(decision.is_auditable());
    state.record(&verified);
    assert_eq!(state.devices(), &[2, 1]);
    // Devices 3..=9 push device 1 (least recently used) out of the 8 kept.
    for device in 3..=9 {
        state.record(&from(Some(device), t0()));
    }
    assert_eq!(state.devices_len(), DEVICES_MAX);
    assert_eq!(
        evaluate(&trusting, &state, &from(Some(1), t0())).verdict,
        Verdict::StepUp
    );
    assert_eq!(
        evaluate(&trusting, &state, &from(Some(2), t0())).verdict,
        Verdict::Approve
    );
    // Using a device again makes it the most recent: device 2 survives the next new one.
    state.record(&from(Some(2), t0()));
    state.record(&from(Some(10), t0()));
    assert_eq!(state.devices(), &[10, 2, 9, 8, 7, 6, 5, 4]);
    assert_eq!(
        evaluate(&trusting, &state, &from(Some(3), t0())).verdict,
        Verdict::StepUp
    );
}

#[test]
fn risk_impossible_travel_just_under_and_over_the_speed() {
    let policy = policy(|p| {
        p.impossible_travel = Some(ImpossibleTravelRule {
            response: FLAG,
            speed_kmh_max: 1_000,
            distance_m_min: 100_000,
        });
    });
    let shanghai = point(31.2304, 121.4737);
    let beijing = point(39.9042, 116.4074);
    let distance_m = geo::distance_m(&shanghai, &beijing);
    assert_eq!(distance_m / 1_000, 1_067);
    let at = |location: GeoPoint, timestamp: u64| PaymentContext {
        location: Some(location),
        ..pay(timestamp, 100)
    };
    let mut state = CustomerRiskState::new();
    // No previous location: nothing to compare.
    assert_eq!(
        evaluate(&policy, &state, &at(beijing, t0())).verdict,
        Verdict::Approve
    );
    state.record(&at(shanghai, t0()));
    // Time to cover the distance at `speed` km/h, in ns.
    let elapsed_at = |speed: u64| u64::from(distance_m as u32) * 3_600_000_000 / speed;
    let table = [
        (990, Verdict::Approve),
        (999, Verdict::Approve),
        (1_001, Verdict::Flag),
        (1_010, Verdict::Flag),
        (100_000, Verdict::Flag),
    ];
    for (speed, verdict) in table {
        let decision = evaluate(&policy, &state, &at(beijing, t0() + elapsed_at(speed)));
        assert_eq!(decision.verdict, verdict, "{speed} km/h");
        if verdict == Verdict::Flag {
            assert_eq!(decision.rule, Some(RuleId::ImpossibleTravel));
            assert_eq!(decision.figures.limit, 1_000);
            let observed = decision.figures.observed;
            assert!(
                observed.abs_diff(speed) <= speed / 1_000 + 1,
                "{observed} vs {speed}"
            );
        }
    }
    // The same instant: infinitely fast.
    let instant = evaluate(&policy, &state, &at(beijing, t0()));
    assert_eq!(instant.figures.observed, u64::MAX);
    // Jumps shorter than distance_km_min never fire, however fast.
    let suzhou = point(31.2989, 120.5853); // about 85 km from Shanghai
    assert!(geo::distance_m(&shanghai, &suzhou) < 100_000);
    assert_eq!(
        evaluate(&policy, &state, &at(suzhou, t0() + 1)).verdict,
        Verdict::Approve
    );
    // A payment without a location is not checked and keeps the last location.
    state.record(&pay(t0() + HOUR, 100));
    assert_eq!(state.last_location().unwrap().point, shanghai);
    // Across the antimeridian: 0.2° of longitude at the equator is 22 km.
    let mut pacific = CustomerRiskState::new();
    pacific.record(&at(point(0.0, 179.9), t0()));
    assert_eq!(
        evaluate(&policy, &pacific, &at(point(0.0, -179.9), t0() + 1)).verdict,
        Verdict::Approve
    );
}

#[test]
fn risk_amount_anomaly_history_and_edges() {
    let policy = policy(|p| {
        p.amount_anomaly = Some(AmountAnomalyRule {
            response: STEP_UP,
            multiplier_milli: 2_500,
            history: 4,
            history_min: 3,
        });
    });
    let mut state = CustomerRiskState::new();
    // Too little history: never fires.
    record_all(&mut state, &[pay(t0(), 100), pay(t0(), 100)]);
    assert_eq!(
        evaluate(&policy, &state, &pay(t0(), u64::MAX)).verdict,
        Verdict::Approve
    );
    state.record(&pay(t0(), 100));
    // Average 100 over 3: 2.5 × 100 = 250 is allowed, 251 is not.
    assert_eq!(
        evaluate(&policy, &state, &pay(t0(), 250)).verdict,
        Verdict::Approve
    );
    let over = evaluate(&policy, &state, &pay(t0(), 251));
    assert_eq!(
        (over.verdict, over.rule),
        (Verdict::StepUp, Some(RuleId::AmountAnomaly))
    );
    assert_eq!(
        over.figures,
        RuleFigures {
            limit: 250,
            observed: 251
        }
    );
    // Only the newest `history` payments count: 100, 100, 100, 500 -> then 900.
    state.record(&pay(t0(), 500)); // average 200 -> limit 500
    assert_eq!(
        evaluate(&policy, &state, &pay(t0(), 500)).verdict,
        Verdict::Approve
    );
    state.record(&pay(t0(), 300)); // 100, 100, 500, 300: average 250 -> 625
    assert_eq!(
        evaluate(&policy, &state, &pay(t0(), 625)).verdict,
        Verdict::Approve
    );
    assert_eq!(
        evaluate(&policy, &state, &pay(t0(), 626)).verdict,
        Verdict::StepUp
    );
    // Other currencies are not part of the average (and have no history).
    let jpy = PaymentContext::new(t0(), 1, Currency::JPY, 1_000_000);
    assert_eq!(evaluate(&policy, &state, &jpy).verdict, Verdict::Approve);
    // A verified step-up passes it.
    let verified = PaymentContext {
        step_up_verified: true,
        ..pay(t0(), 10_000)
    };
    assert_eq!(
        evaluate(&policy, &state, &verified).verdict,
        Verdict::Approve
    );
    // Sums beyond u64 are exact: three payments of u64::MAX - 1 average
    // u64::MAX - 1, and 2.5 times that is above any amount.
    let mut huge = CustomerRiskState::new();
    for _ in 0..3 {
        huge.record(&pay(t0(), u64::MAX - 1));
    }
    assert_eq!(
        evaluate(&policy, &huge, &pay(t0(), u64::MAX)).verdict,
        Verdict::Approve
    );
    let decision = evaluate(&policy, &huge, &pay(t0(), u64::MAX));
    assert_eq!(decision.fired, RuleSet::EMPTY);
}

#[test]
fn risk_step_up_passes_step_up_rules_but_not_decline_rules() {
    let policy = policy(|p| {
        p.blocked_mccs = Some(BlockList {
            response: DECLINE,
            entries: vec![7995],
        });
        p.single_payment = limit_rule(STEP_UP, &[(Currency::CNY, [100; 4])]);
        p.new_device = Some(NewDeviceRule {
            response: FLAG,
            trust_first_device: false,
        });
    });
    let state = CustomerRiskState::new();
    let payment = |mcc: u16, amount: u64, verified: bool, device: Option<u64>| PaymentContext {
        mcc: Some(mcc),
        step_up_verified: verified,
        device,
        ..pay(t0(), amount)
    };
    let table = [
        (
            payment(5812, 101, false, None),
            Verdict::StepUp,
            Some(RuleId::SinglePayment),
        ),
        (payment(5812, 101, true, None), Verdict::Approve, None),
        (
            payment(7995, 50, true, None),
            Verdict::Decline,
            Some(RuleId::BlockedMcc),
        ),
        (
            payment(7995, 101, true, None),
            Verdict::Decline,
            Some(RuleId::BlockedMcc),
        ),
        // Flags are not passed by a step-up: they are recorded either way.
        (
            payment(5812, 101, true, Some(1)),
            Verdict::Flag,
            Some(RuleId::NewDevice),
        ),
    ];
    for (payment, verdict, rule) in table {
        assert_eq!(
            outcome(&policy, &state, &payment),
            (verdict, rule),
            "{payment:?}"
        );
    }
    let decision = evaluate(&policy, &state, &payment(7995, 101, true, None));
    assert!(decision.stepped_up.contains(RuleId::SinglePayment));
    assert!(!decision.fired.contains(RuleId::SinglePayment));
}

#[test]
fn risk_verdict_is_the_most_severe_and_rule_order_breaks_ties() {
    let policy = policy(|p| {
        p.single_payment = limit_rule(FLAG, &[(Currency::CNY, [100; 4])]);
        p.daily_outflow = limit_rule(STEP_UP, &[(Currency::CNY, [100; 4])]);
        p.monthly_outflow = limit_rule(STEP_UP, &[(Currency::CNY, [100; 4])]);
    });
    let decision = evaluate(&policy, &CustomerRiskState::new(), &pay(t0(), 101));
    assert_eq!(decision.verdict, Verdict::StepUp);
    // daily_outflow (5) comes before monthly_outflow (6).
    assert_eq!(decision.rule, Some(RuleId::DailyOutflow));
    assert_eq!(decision.fired.len(), 3);
    assert_eq!(
        decision.flags.iter().collect::<Vec<_>>(),
        [RuleId::SinglePayment]
    );
    assert!(!decision.allows_payment());
}

#[test]
fn risk_freeze_on_suspicion() {
    let freeze = Response {
        action: Action::Decline,
        freeze: true,
    };
    let policy = policy(|p| {
        p.blocked_merchants = Some(BlockList {
            response: freeze,
            entries: vec![AccountId(66)],
        });
        p.single_payment = limit_rule(DECLINE, &[(Currency::CNY, [100; 4])]);
    });
    let state = CustomerRiskState::new();
    let to = |merchant: u64, amount: u64| PaymentContext {
        merchant: Some(AccountId(merchant)),
        ..pay(t0(), amount)
    };
    let table = [
        (to(66, 1), Verdict::Decline, true),
        (to(66, 1_000), Verdict::Decline, true),
        (to(67, 1_000), Verdict::Decline, false),
        (to(67, 1), Verdict::Approve, false),
    ];
    for (payment, verdict, frozen) in table {
        let decision = evaluate(&policy, &state, &payment);
        assert_eq!(
            (decision.verdict, decision.freeze),
            (verdict, frozen),
            "{payment:?}"
        );
    }
    // The example policy freezes on impossible travel.
    let example = RiskPolicy::example();
    let mut state = CustomerRiskState::new();
    let at = |latitude: f64, longitude: f64, timestamp: u64| PaymentContext {
        location: Some(point(latitude, longitude)),
        device: Some(1),
        ..pay(timestamp, 1_000)
    };
    state.record(&at(31.2304, 121.4737, t0())); // Shanghai
    let decision = evaluate(&example, &state, &at(51.5074, -0.1278, t0() + HOUR)); // London
    assert_eq!(decision.verdict, Verdict::Decline);
    assert_eq!(decision.rule, Some(RuleId::ImpossibleTravel));
    assert!(decision.freeze);
}

#[test]
fn risk_example_policy_everyday_journey() {
    let policy = RiskPolicy::example();
    let mut state = CustomerRiskState::new();
    let mut audit = AuditLog::new();
    let shanghai = point(31.2304, 121.4737);
    let base = PaymentContext {
        merchant: Some(AccountId(5_000)),
        mcc: Some(5812),
        country: Some(*b"CN"),
        device: Some(42),
        location: Some(shanghai),
        ..pay(t0(), 3_500)
    };
    // A lunch a day for 20 days: all approved.
    for day in 0..20u64 {
        let payment = PaymentContext {
            timestamp: t0() + day * 24 * HOUR,
            ..base
        };
        let decision = evaluate(&policy, &state, &payment);
        assert_eq!(decision, Decision::APPROVE, "day {day}");
        state.record(&payment);
    }
    let now = t0() + 20 * 24 * HOUR;
    let table = [
        // An ordinary lunch.
        (
            PaymentContext {
                timestamp: now,
                ..base
            },
            Verdict::Approve,
            None,
        ),
        // 8 × 35.00 = 280.00 is the anomaly limit: 280.00 passes, 280.01 steps up.
        (
            PaymentContext {
                timestamp: now,
                amount: 28_000,
                ..base
            },
            Verdict::Approve,
            None,
        ),
        (
            PaymentContext {
                timestamp: now,
                amount: 28_001,
                ..base
            },
            Verdict::StepUp,
            Some(RuleId::AmountAnomaly),
        ),
        // Above the tier-1 single payment limit (5,000.00).
        (
            PaymentContext {
                timestamp: now,
                amount: 500_001,
                ..base
            },
            Verdict::Decline,
            Some(RuleId::SinglePayment),
        ),
        // A gambling merchant, a blocked country.
        (
            PaymentContext {
                timestamp: now,
                mcc: Some(7995),
                ..base
            },
            Verdict::Decline,
            Some(RuleId::BlockedMcc),
        ),
        (
            PaymentContext {
                timestamp: now,
                country: Some(*b"KP"),
                ..base
            },
            Verdict::Decline,
            Some(RuleId::BlockedCountry),
        ),
        // A new phone.
        (
            PaymentContext {
                timestamp: now,
                device: Some(43),
                ..base
            },
            Verdict::StepUp,
            Some(RuleId::NewDevice),
        ),
    ];
    for (index, (payment, verdict, rule)) in table.into_iter().enumerate() {
        let decision = evaluate(&policy, &state, &payment);
        assert_eq!(
            (decision.verdict, decision.rule),
            (verdict, rule),
            "row {index}"
        );
        audit.record(7, CommandId(index as u128), &payment, &decision);
    }
    let entries: Vec<&AuditEntry> = audit.entries(7).collect();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0].rule, Some(RuleId::NewDevice));
    assert_eq!(entries[0].command, CommandId(6));
    assert_eq!(entries[4].rule, Some(RuleId::AmountAnomaly));
    assert_eq!(audit.entries(8).count(), 0);
}

// ---------------------------------------------------------------- audit

#[test]
fn risk_audit_ring_is_bounded_newest_first() {
    let mut audit = AuditLog::new();
    let decision = Decision {
        verdict: Verdict::Decline,
        rule: Some(RuleId::Velocity),
        ..Decision::APPROVE
    };
    assert!(!audit.record(1, CommandId(0), &pay(t0(), 1), &Decision::APPROVE));
    for index in 0..100u64 {
        assert!(audit.record(
            1,
            CommandId(u128::from(index)),
            &pay(t0() + index, index),
            &decision
        ));
    }
    audit.record(2, CommandId(1_000), &pay(t0(), 5), &decision);
    let entries: Vec<&AuditEntry> = audit.entries(1).collect();
    assert_eq!(entries.len(), AUDIT_ENTRIES_MAX);
    assert_eq!(entries[0].command, CommandId(99));
    assert_eq!(
        entries[AUDIT_ENTRIES_MAX - 1].command,
        CommandId(100 - AUDIT_ENTRIES_MAX as u128)
    );
    assert_eq!(entries[0].amount, 99);
    assert_eq!(audit.customers_len(), 2);
    let config = bincode::config::standard();
    let bytes = bincode::encode_to_vec(&audit, config).unwrap();
    let (decoded, _): (AuditLog, usize) = bincode::decode_from_slice(&bytes, config).unwrap();
    assert_eq!(decoded, audit);
    let digest = |log: &AuditLog| {
        let mut hasher = crate::digest::DigestHasher::new();
        log.digest_into(&mut hasher);
        hasher.finalize()
    };
    assert_eq!(digest(&decoded), digest(&audit));
}

// ---------------------------------------------------------------- bounds and determinism

/// A deterministic pseudo-random workload (SplitMix64).
struct Workload(u64);

impl Workload {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn payment(&mut self, timestamp: u64) -> PaymentContext {
        let currencies = [
            Currency::CNY,
            Currency::USD,
            Currency::JPY,
            Currency::SGD,
            Currency::THB,
            Currency::EUR,
            Currency::BHD,
            Currency::from_code("GBP").unwrap(),
            Currency::from_code("HKD").unwrap(),
            Currency::from_code("KRW").unwrap(),
        ];
        let random = self.next();
        PaymentContext {
            timestamp,
            kyc_tier: (random % 4) as u8,
            currency: currencies[(random >> 8) as usize % currencies.len()],
            amount: 1 + (random >> 16) % 200_000,
            merchant: Some(AccountId(random >> 40)),
            mcc: Some(((random >> 20) % 10_000) as u16),
            country: Some([
                b'A' + (random % 26) as u8,
                b'A' + ((random >> 5) % 26) as u8,
            ]),
            device: Some((random >> 33) % 20),
            location: GeoPoint::new(
                ((random >> 3) % 180_000_000) as i32 - 90_000_000,
                ((random >> 7) % 360_000_000) as i32 - 180_000_000,
            ),
            step_up_verified: random % 7 == 0,
            instrument: None,
        }
    }
}

fn state_digest(state: &CustomerRiskState) -> blake3::Hash {
    let mut hasher = crate::digest::DigestHasher::new();
    state.digest_into(&mut hasher);
    hasher.finalize()
}

#[test]
fn risk_state_stays_bounded_after_100000_payments() {
    let policy = RiskPolicy::example();
    let mut state = CustomerRiskState::new();
    let mut workload = Workload(1);
    let fixed = bincode::config::standard().with_fixed_int_encoding();
    let mut timestamp = t0();
    let mut size_after_1_000 = 0;
    for index in 0..100_000 {
        // Between 0 and about 2 hours apart: about 23 years of payments.
        timestamp += workload.next() % (2 * HOUR);
        let payment = workload.payment(timestamp);
        let _ = evaluate(&policy, &state, &payment);
        state.record(&payment);
        if index == 1_000 {
            size_after_1_000 = bincode::encode_to_vec(&state, fixed).unwrap().len();
        }
    }
    assert_eq!(state.recent_len(), RECENT_PAYMENTS_MAX);
    assert!(state.devices_len() <= DEVICES_MAX);
    assert_eq!(state.recent().count(), RECENT_PAYMENTS_MAX);
    let size = bincode::encode_to_vec(&state, fixed).unwrap().len();
    assert_eq!(size, size_after_1_000);
    assert!(size <= 1_024, "{size}");
    assert!(
        std::mem::size_of::<CustomerRiskState>() <= 1_024,
        "{}",
        std::mem::size_of::<CustomerRiskState>()
    );
    // The recent ring holds the newest payments, newest first.
    let timestamps: Vec<u64> = state.recent().map(|p| p.timestamp).collect();
    assert!(timestamps.windows(2).all(|pair| pair[0] >= pair[1]));
    assert_eq!(timestamps[0], timestamp);
}

#[test]
fn risk_same_inputs_same_decisions_and_digest() {
    let policy = RiskPolicy::example();
    let run = || {
        let mut state = CustomerRiskState::new();
        let mut workload = Workload(7);
        let mut decisions = blake3::Hasher::new();
        let mut timestamp = t0();
        for _ in 0..5_000 {
            timestamp += workload.next() % (10 * 60 * SECOND);
            let payment = workload.payment(timestamp);
            let decision = evaluate(&policy, &state, &payment);
            decisions.update(&[
                decision.verdict.code(),
                decision.rule.map_or(0, RuleId::code),
                u8::from(decision.freeze),
            ]);
            decisions.update(&decision.figures.limit.to_le_bytes());
            decisions.update(&decision.figures.observed.to_le_bytes());
            decisions.update(&decision.fired.0.to_le_bytes());
            if decision.allows_payment() {
                state.record(&payment);
            }
        }
        (state, decisions.finalize())
    };
    let (state_a, decisions_a) = run();
    let (state_b, decisions_b) = run();
    assert_eq!(state_a, state_b);
    assert_eq!(decisions_a, decisions_b);
    assert_eq!(state_digest(&state_a), state_digest(&state_b));
    // The digest survives a checkpoint round trip, and sees every change.
    let config = bincode::config::standard();
    let bytes = bincode::encode_to_vec(&state_a, config).unwrap();
    let (decoded, _): (CustomerRiskState, usize) =
        bincode::decode_from_slice(&bytes, config).unwrap();
    assert_eq!(decoded, state_a);
    assert_eq!(state_digest(&decoded), state_digest(&state_a));
    let mut changed = state_a.clone();
    changed.record(&pay(u64::MAX / 2, 1));
    assert_ne!(state_digest(&changed), state_digest(&state_a));
    assert_ne!(
        state_digest(&CustomerRiskState::new()),
        state_digest(&state_a)
    );
    // The workload exercised every verdict.
    let mut verdicts = std::collections::BTreeSet::new();
    let mut workload = Workload(7);
    let mut state = CustomerRiskState::new();
    let mut timestamp = t0();
    for _ in 0..5_000 {
        timestamp += workload.next() % (10 * 60 * SECOND);
        let payment = workload.payment(timestamp);
        let decision = evaluate(&policy, &state, &payment);
        verdicts.insert(decision.verdict);
        if decision.allows_payment() {
            state.record(&payment);
        }
    }
    assert!(verdicts.contains(&Verdict::Approve));
    assert!(verdicts.contains(&Verdict::StepUp));
    assert!(verdicts.contains(&Verdict::Decline));
}

#[test]
fn risk_decoded_garbage_state_never_panics() {
    // Ring positions out of range (a corrupted or hand-made checkpoint) are
    // read modulo the bounds instead of indexing out of range.
    let mut state = CustomerRiskState::new();
    state.record(&pay(t0(), 5));
    let config = bincode::config::standard().with_fixed_int_encoding();
    let mut bytes = bincode::encode_to_vec(&state, config).unwrap();
    // recent_len and recent_next follow the three arrays.
    let offset = RECENT_PAYMENTS_MAX * (8 + 8 + 2);
    bytes[offset] = 255;
    bytes[offset + 1] = 254;
    let (garbage, _): (CustomerRiskState, usize) =
        bincode::decode_from_slice(&bytes, config).unwrap();
    assert_eq!(garbage.recent_len(), RECENT_PAYMENTS_MAX);
    let policy = RiskPolicy::example();
    let _ = evaluate(&policy, &garbage, &pay(t0(), 5));
    let mut garbage = garbage;
    garbage.record(&pay(t0(), 5));
    let _ = state_digest(&garbage);
}

// ---------------------------------------------------------------- instruments

use super::policy::{InstrumentBindsRule, NewInstrumentRule, POLICY_ENCODING_V2};

fn instrument(bound_at: u64, withdrawn_total: u64, day: Day, day_total: u64) -> InstrumentFacts {
    InstrumentFacts {
        bound_at,
        risk: InstrumentRisk {
            withdrawn_total,
            day,
            day_total,
        },
    }
}

fn withdraw(timestamp: u64, amount: u64, facts: InstrumentFacts) -> PaymentContext {
    PaymentContext {
        instrument: Some(facts),
        ..pay(timestamp, amount)
    }
}

fn instrument_policy() -> RiskPolicy {
    policy(|p| {
        // CNY tier 1: 1,000.00 in the first 24 hours.
        p.new_instrument = Some(NewInstrumentRule {
            limit: limit_rule(
                STEP_UP,
                &[(Currency::CNY, [50_000, 100_000, 200_000, UNLIMITED])],
            )
            .unwrap(),
            period_ns: 24 * HOUR,
        });
        // CNY: 3,000.00 a day per instrument.
        p.instrument_daily = limit_rule(DECLINE, &[(Currency::CNY, [300_000; 4])]);
        // A third bind within an hour flags the customer.
        p.instrument_binds = Some(InstrumentBindsRule {
            response: FLAG,
            binds_max: 2,
            window_ns: HOUR,
        });
    })
}

#[test]
fn risk_policy_old_encoding_still_decodes() {
    // A policy written before the instrument rules (version 1: no version
    // byte), canonical config: velocity only, step-up, 10 payments in 600 s.
    let mut old = vec![0u8; 6]; // no lists, no amount limits
    old.extend([1, 2, 0, 10]); // Some(velocity): step_up, no freeze, payments_max
    old.extend(600_000_000_000u64.to_le_bytes());
    old.extend([0, 0, 0]); // no new_device, impossible_travel, amount_anomaly
    let (decoded, used) =
        bincode::decode_from_slice::<RiskPolicy, _>(&old, policy::canonical_config()).unwrap();
    assert_eq!(used, old.len());
    let want = policy(|p| {
        p.velocity = Some(VelocityRule {
            response: STEP_UP,
            payments_max: 10,
            window_ns: 600 * SECOND,
        })
    });
    assert_eq!(decoded, want);
    // Written again, it is the same bytes: a policy without instrument rules
    // keeps its version 1 encoding, hence its digest.
    assert_eq!(decoded.encode_canonical(), old);
    let example = RiskPolicy::example();
    assert!(!example.has_instrument_rules());
    assert!(matches!(example.encode_canonical()[0], 0 | 1));
}

#[test]
fn risk_policy_version_2_round_trips() {
    let policy = instrument_policy();
    let varint = bincode::config::standard();
    let bytes = bincode::encode_to_vec(&policy, varint).unwrap();
    assert_eq!(bytes[0], POLICY_ENCODING_V2);
    let (decoded, used): (RiskPolicy, usize) = bincode::decode_from_slice(&bytes, varint).unwrap();
    assert_eq!((used, &decoded), (bytes.len(), &policy));
    let bytes = policy.encode_canonical();
    assert_eq!(bytes[0], POLICY_ENCODING_V2);
    let (decoded, used): (RiskPolicy, usize) =
        bincode::decode_from_slice(&bytes, policy::canonical_config()).unwrap();
    assert_eq!((used, &decoded), (bytes.len(), &policy));
    assert_ne!(policy.digest(), RiskPolicy::disabled().digest());
    let rules: Vec<RuleId> = policy.rules_on().iter().collect();
    assert_eq!(
        rules,
        [
            RuleId::NewInstrument,
            RuleId::InstrumentDaily,
            RuleId::InstrumentBinds
        ]
    );
    // The same policy from TOML.
    let parsed = RiskPolicy::from_toml(
        r#"
        [new_instrument]
        action = "step_up"
        hours = 24
        [new_instrument.max]
        CNY = ["500.00", "1000.00", "2000.00", "unlimited"]

        [instrument_daily]
        action = "decline"
        [instrument_daily.max]
        CNY = [3000, 3000, 3000, 3000]

        [instrument_binds]
        action = "flag"
        binds_max = 2
        window_seconds = 3600
        "#,
    )
    .unwrap();
    assert_eq!(parsed, policy);

    let config = policy::canonical_config();
    // Version 2 without a rule of its own is not how any policy is written.
    let mut bare = vec![POLICY_ENCODING_V2];
    bare.extend(RiskPolicy::disabled().encode_canonical());
    bare.extend([0, 0, 0]);
    let error = bincode::decode_from_slice::<RiskPolicy, _>(&bare, config).unwrap_err();
    assert!(error.to_string().contains("version 2"), "{error}");
    // A version byte from the future.
    let error = bincode::decode_from_slice::<RiskPolicy, _>(&[3u8; 16], config).unwrap_err();
    assert!(error.to_string().contains("version byte 3"), "{error}");
}

#[test]
fn risk_policy_instrument_rules_are_validated() {
    let table = [
        (
            "[instrument_binds]\naction = \"step_up\"\nbinds_max = 2\nwindow_seconds = 60",
            "a bind carries no second factor",
        ),
        (
            "[instrument_binds]\naction = \"flag\"\nbinds_max = 17\nwindow_seconds = 60",
            "instrument_binds.binds_max: 17 is out of range 1..=16",
        ),
        (
            "[instrument_binds]\naction = \"flag\"\nbinds_max = 2\nwindow_seconds = 0",
            "instrument_binds.window_seconds: 0 is out of range",
        ),
        (
            "[new_instrument]\naction = \"decline\"\nhours = 0\n[new_instrument.max]\nCNY = [1, 1, 1, 1]",
            "new_instrument.hours: 0 is out of range 1..=744",
        ),
        (
            "[new_instrument]\naction = \"decline\"\nhours = 2\n[new_instrument.max]\nCNY = [1, 1, 1]",
            "new_instrument.max.CNY: 3 amounts",
        ),
        (
            "[instrument_daily]\naction = \"flag\"\nfreeze = true\n[instrument_daily.max]\nCNY = [1, 1, 1, 1]",
            "instrument_daily.freeze",
        ),
    ];
    for (text, message) in table {
        let error = RiskPolicy::from_toml(text).unwrap_err().to_string();
        assert!(error.contains(message), "{text}: {error}");
    }
    // Built in code: a period that is not whole hours.
    let mut odd = instrument_policy();
    if let Some(rule) = odd.new_instrument.as_mut() {
        rule.period_ns = 90 * 60 * SECOND;
    }
    assert!(odd.validate().is_err());
}

#[test]
fn risk_new_instrument_edges() {
    let policy = instrument_policy();
    let state = CustomerRiskState::new();
    let bound = t0();
    let today = Day::from_timestamp(bound);
    // (ns after the bind, withdrawn since, amount, tier, outcome)
    let none = (Verdict::Approve, None);
    let step_up = (Verdict::StepUp, Some(RuleId::NewInstrument));
    let table = [
        (HOUR, 0, 100_000, 1, none),
        (HOUR, 0, 100_001, 1, step_up),
        (HOUR, 60_000, 40_000, 1, none),
        (HOUR, 60_000, 40_001, 1, step_up),
        // Tier 0 has a lower limit, tier 3 none.
        (HOUR, 0, 50_001, 0, step_up),
        (HOUR, 0, 250_000, 3, none),
        // The first 24 hours are half-open: at exactly 24 h it is no longer new.
        (24 * HOUR - 1, 0, 100_001, 1, step_up),
        (24 * HOUR, 0, 100_001, 1, none),
        // At the bind's own timestamp (the same batch).
        (0, 0, 100_001, 1, step_up),
    ];
    for (after, withdrawn, amount, tier, want) in table {
        let payment = PaymentContext {
            kyc_tier: tier,
            ..withdraw(
                bound + after,
                amount,
                instrument(bound, withdrawn, today, 0),
            )
        };
        let got = outcome(&policy, &state, &payment);
        assert_eq!(
            got, want,
            "after {after} ns, withdrawn {withdrawn}, amount {amount}, tier {tier}"
        );
    }
    // Figures: the limit, and what was withdrawn since the bind with this one.
    let decision = evaluate(
        &policy,
        &state,
        &withdraw(bound + HOUR, 70_000, instrument(bound, 60_000, today, 0)),
    );
    assert_eq!(
        decision.figures,
        RuleFigures {
            limit: 100_000,
            observed: 130_000
        }
    );
    // A verified step-up passes it; another currency has no limit; a
    // withdrawal without an instrument is not checked.
    let facts = instrument(bound, 0, today, 0);
    let verified = PaymentContext {
        step_up_verified: true,
        ..withdraw(bound + HOUR, 100_001, facts)
    };
    assert_eq!(outcome(&policy, &state, &verified), none);
    let usd = PaymentContext {
        currency: Currency::USD,
        ..withdraw(bound + HOUR, 100_001, facts)
    };
    assert_eq!(outcome(&policy, &state, &usd), none);
    assert_eq!(outcome(&policy, &state, &pay(bound + HOUR, 100_001)), none);
}

#[test]
fn risk_instrument_daily_edges_and_midnight() {
    let policy = instrument_policy();
    let state = CustomerRiskState::new();
    // Bound long ago: only the daily limit applies.
    let bound = t0() - 30 * 24 * HOUR;
    let now = t0();
    let today = Day::from_timestamp(now);
    let yesterday = Day(today.0 - 1);
    let none = (Verdict::Approve, None);
    let decline = (Verdict::Decline, Some(RuleId::InstrumentDaily));
    // (withdrawn on that day, that day, amount, outcome)
    let table = [
        (0, today, 300_000, none),
        (0, today, 300_001, decline),
        (299_999, today, 1, none),
        (299_999, today, 2, decline),
        // Yesterday's withdrawals do not count today.
        (300_000, yesterday, 300_000, none),
    ];
    for (day_total, day, amount, want) in table {
        let payment = withdraw(now, amount, instrument(bound, 900_000, day, day_total));
        assert_eq!(
            outcome(&policy, &state, &payment),
            want,
            "{day_total} on {day:?} + {amount}"
        );
    }
    // What the instrument remembers rolls over at midnight UTC.
    let mut risk = InstrumentRisk::default();
    let midnight = midnight(2026, 11, 11);
    risk.record(200_000, midnight - 1);
    risk.record(100_000, midnight - 1);
    assert_eq!(
        risk.day_total_on(Day::from_timestamp(midnight - 1)),
        300_000
    );
    assert_eq!(risk.day_total_on(Day::from_timestamp(midnight)), 0);
    risk.record(5, midnight);
    assert_eq!(
        risk,
        InstrumentRisk {
            withdrawn_total: 300_005,
            day: Day::from_timestamp(midnight),
            day_total: 5,
        }
    );
    // The figures: the limit, today's withdrawals with this one.
    let decision = evaluate(
        &policy,
        &state,
        &withdraw(now, 1_000, instrument(bound, 0, today, 299_500)),
    );
    assert_eq!(
        decision.figures,
        RuleFigures {
            limit: 300_000,
            observed: 300_500
        }
    );
}

#[test]
fn risk_instrument_binds_window_edges() {
    let policy = instrument_policy();
    let mut binds = BindRing::default();
    let now = t0();
    // (earlier binds, outcome of one more at `now`)
    assert_eq!(evaluate_bind(&policy, &binds, now), Decision::APPROVE);
    binds.record(now - HOUR); // exactly one window ago: outside (half-open)
    binds.record(now - HOUR + 1);
    assert_eq!(evaluate_bind(&policy, &binds, now), Decision::APPROVE);
    binds.record(now - 1);
    let decision = evaluate_bind(&policy, &binds, now);
    assert_eq!(
        (decision.verdict, decision.rule, decision.figures),
        (
            Verdict::Flag,
            Some(RuleId::InstrumentBinds),
            RuleFigures {
                limit: 2,
                observed: 3
            }
        )
    );
    assert!(decision.flags.contains(RuleId::InstrumentBinds));
    // An hour later only the last bind is in the window.
    assert_eq!(
        evaluate_bind(&policy, &binds, now + HOUR - 1),
        Decision::APPROVE
    );
    // A decline rule refuses the bind (and may freeze).
    let mut strict = policy.clone();
    strict.instrument_binds = Some(InstrumentBindsRule {
        response: Response {
            action: Action::Decline,
            freeze: true,
        },
        binds_max: 2,
        window_ns: HOUR,
    });
    let decision = evaluate_bind(&strict, &binds, now);
    assert_eq!(decision.verdict, Verdict::Decline);
    assert!(decision.freeze);
    // The ring keeps the newest 16 binds, newest first.
    let mut ring = BindRing::default();
    for i in 0..40u64 {
        ring.record(now + i);
    }
    assert_eq!(ring.len(), super::bounds::BINDS_REMEMBERED_MAX);
    let kept: Vec<u64> = ring.iter().collect();
    assert_eq!(kept.first(), Some(&(now + 39)));
    assert_eq!(kept.last(), Some(&(now + 24)));
    let mut full = strict.clone();
    if let Some(rule) = full.instrument_binds.as_mut() {
        rule.binds_max = 16;
    }
    assert_eq!(
        evaluate_bind(&full, &ring, now + 40).verdict,
        Verdict::Decline
    );
    assert_eq!(
        evaluate_bind(&full, &ring, now + HOUR + 24).verdict,
        Verdict::Approve
    );
    // No rule on: nothing fires.
    assert_eq!(
        evaluate_bind(&RiskPolicy::disabled(), &ring, now + 40),
        Decision::APPROVE
    );
}
