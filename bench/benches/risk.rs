//! Inline risk evaluation (`payrail_engine::risk::evaluate`) with the full
//! example policy (docs/risk-policy.example.toml): every rule on.
//!
//! Setup (not measured): 1,024 customers, each with a full history: 40
//! committed payments (the ring keeps 32) over the previous 40 hours in two
//! currencies, from 8 devices, at locations around Shanghai. One payment per
//! customer is pre-built.
//!
//! Cases, each a pass over the 1,024 customers (throughput in payments):
//! - `approve`: payments that pass every rule (known device, a few km from
//!   the last location, amounts well within limits and the anomaly bound):
//!   the hot path, where every rule is evaluated and none fires.
//! - `mixed`: one payment in 8 fires a rule (new device, impossible travel,
//!   anomaly, blocked MCC, over the single-payment limit), so cold paths
//!   (figures, the distance bisection) are included at that rate.
//! - `disabled`: the same payments under `RiskPolicy::disabled()`, the floor.
//! - `risk_rule/*`: the `approve` payments under a policy with only one rule
//!   (or group) of the example on, to see where the time goes.
//! - `record`: `CustomerRiskState::record` of the approved payments, on
//!   clones of the states (the clone is not measured).
//!
//! Run: `cargo bench -p payrail-bench --bench risk`; results in
//! docs/benchmarks.md.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use payrail_engine::risk::{evaluate, CustomerRiskState, GeoPoint, PaymentContext, RiskPolicy};
use payrail_engine::{AccountId, Currency};

const CUSTOMERS: usize = 1_024;
const HISTORY: u64 = 40;
const HOUR: u64 = 3_600_000_000_000;
/// 2026-11-22 00:00 UTC.
const T0: u64 = 1_795_305_600_000_000_000;
const SHANGHAI: (i32, i32) = (31_230_400, 121_473_700);

/// SplitMix64, as in the other benches.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A point within about ±5 km of Shanghai.
fn near_shanghai(random: &mut SplitMix64) -> GeoPoint {
    let jitter = |random: &mut SplitMix64| random.below(90_000) as i32 - 45_000;
    GeoPoint::new(SHANGHAI.0 + jitter(random), SHANGHAI.1 + jitter(random)).unwrap()
}

fn payment(customer: u64, timestamp: u64, amount: u64, random: &mut SplitMix64) -> PaymentContext {
    PaymentContext {
        timestamp,
        kyc_tier: 2,
        currency: Currency::CNY,
        amount,
        merchant: Some(AccountId(100_000 + random.below(5_000))),
        mcc: Some([5812, 5411, 4121, 5311][random.below(4) as usize]),
        country: Some(*b"CN"),
        device: Some(customer * 16 + random.below(8)),
        location: Some(near_shanghai(random)),
        step_up_verified: false,
        instrument: None,
    }
}

struct Fixture {
    states: Vec<CustomerRiskState>,
    approve: Vec<PaymentContext>,
    mixed: Vec<PaymentContext>,
}

fn fixture() -> Fixture {
    let mut random = SplitMix64(0x5EED);
    let start = T0 + 10 * HOUR - HISTORY * HOUR;
    let mut states = Vec::with_capacity(CUSTOMERS);
    let mut approve = Vec::with_capacity(CUSTOMERS);
    let mut mixed = Vec::with_capacity(CUSTOMERS);
    for customer in 0..CUSTOMERS as u64 {
        let mut state = CustomerRiskState::new();
        for index in 0..HISTORY {
            let mut past = payment(
                customer,
                start + index * HOUR,
                2_000 + random.below(6_000),
                &mut random,
            );
            // Every 8th payment in USD, so two outflow buckets are in use.
            if index % 8 == 0 {
                past.currency = Currency::USD;
            }
            // Cover all 8 devices.
            past.device = Some(customer * 16 + index % 8);
            state.record(&past);
        }
        let now = start + HISTORY * HOUR + HOUR / 2;
        let ok = payment(customer, now, 2_000 + random.below(10_000), &mut random);
        let mut odd = ok;
        match customer % 40 {
            0 => odd.device = Some(customer * 16 + 9),
            5 => odd.location = GeoPoint::new(51_507_400, -127_800), // London
            10 => odd.amount = 200_000,                              // anomaly
            15 => odd.mcc = Some(7995),
            20 => odd.amount = 3_000_000, // over the tier-2 single limit
            _ => {}
        }
        states.push(state);
        approve.push(ok);
        mixed.push(odd);
    }
    Fixture {
        states,
        approve,
        mixed,
    }
}

fn bench_risk(c: &mut Criterion) {
    let policy = RiskPolicy::example();
    let disabled = RiskPolicy::disabled();
    let fixture = fixture();
    // The approve case must really approve, and mixed must fire now and then.
    let fired = |payments: &[PaymentContext]| {
        fixture
            .states
            .iter()
            .zip(payments)
            .filter(|(state, payment)| !evaluate(&policy, state, payment).allows_payment())
            .count()
    };
    assert_eq!(fired(&fixture.approve), 0);
    assert!(
        fired(&fixture.mixed) >= CUSTOMERS / 10,
        "{}",
        fired(&fixture.mixed)
    );

    let mut group = c.benchmark_group("risk_evaluate");
    group.throughput(Throughput::Elements(CUSTOMERS as u64));
    for (name, policy, payments) in [
        ("approve", &policy, &fixture.approve),
        ("mixed", &policy, &fixture.mixed),
        ("disabled", &disabled, &fixture.approve),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                for (state, payment) in fixture.states.iter().zip(payments.iter()) {
                    black_box(evaluate(black_box(policy), state, black_box(payment)));
                }
            })
        });
    }
    group.finish();

    // Where the time goes: the same approved payments under a policy with
    // only one rule (or group of rules) of the example on.
    let mut group = c.benchmark_group("risk_rule");
    group.throughput(Throughput::Elements(CUSTOMERS as u64));
    let only = |enable: &dyn Fn(&mut RiskPolicy)| {
        let mut policy = RiskPolicy::disabled();
        enable(&mut policy);
        policy
    };
    let full = &policy;
    let single_rules = [
        (
            "blocked_lists",
            only(&|p| {
                p.blocked_countries = full.blocked_countries.clone();
                p.blocked_merchants = full.blocked_merchants.clone();
                p.blocked_mccs = full.blocked_mccs.clone();
            }),
        ),
        (
            "single_payment",
            only(&|p| p.single_payment = full.single_payment.clone()),
        ),
        (
            "daily_and_monthly_outflow",
            only(&|p| {
                p.daily_outflow = full.daily_outflow.clone();
                p.monthly_outflow = full.monthly_outflow.clone();
            }),
        ),
        ("velocity", only(&|p| p.velocity = full.velocity)),
        ("new_device", only(&|p| p.new_device = full.new_device)),
        (
            "impossible_travel",
            only(&|p| p.impossible_travel = full.impossible_travel),
        ),
        (
            "amount_anomaly",
            only(&|p| p.amount_anomaly = full.amount_anomaly),
        ),
    ];
    for (name, policy) in &single_rules {
        group.bench_function(*name, |b| {
            b.iter(|| {
                for (state, payment) in fixture.states.iter().zip(fixture.approve.iter()) {
                    black_box(evaluate(black_box(policy), state, black_box(payment)));
                }
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("risk_record");
    group.throughput(Throughput::Elements(CUSTOMERS as u64));
    group.bench_function("record", |b| {
        b.iter_batched_ref(
            || fixture.states.clone(),
            |states| {
                for (state, payment) in states.iter_mut().zip(fixture.approve.iter()) {
                    state.record(black_box(payment));
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench_risk);
criterion_main!(benches);
