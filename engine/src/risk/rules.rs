//! Evaluation: every rule of the policy against one payment and the
//! customer's state, in [`RuleId`] order. Pure: no mutation, no allocation,
//! no clock; the same inputs give the same [`Decision`] on every machine.

use super::bounds::{OUTFLOW_CURRENCIES_MAX, RECENT_PAYMENTS_MAX};
use super::calendar::Day;
use super::codes::{Action, RuleId, RuleSet, Verdict};
use super::geo;
use super::instruments::BindRing;
use super::policy::{LimitRule, Response, RiskPolicy, UNLIMITED};
use super::state::CustomerRiskState;
use super::PaymentContext;

/// The two numbers behind a decision, for the reply and the audit record.
/// What they mean depends on the rule (docs/risk.md has the table):
///
/// | rule | `limit` | `observed` |
/// | --- | --- | --- |
/// | blocked_country | 0 | the country, two ASCII bytes big-endian ("KP" = 0x4B50) |
/// | blocked_merchant | 0 | the merchant account id |
/// | blocked_mcc | 0 | the MCC |
/// | single_payment | the tier's limit | the amount |
/// | daily_outflow, monthly_outflow | the tier's limit | outflow including this payment |
/// | outflow_currencies | OUTFLOW_CURRENCIES_MAX | currencies with outflow this month, this one included |
/// | velocity | payments_max | payments in the window, this one included |
/// | new_device | devices on record | the device id |
/// | impossible_travel | speed_kmh_max | speed needed, km/h (u64::MAX for no time at all) |
/// | amount_anomaly | multiplier × recent average, rounded down | the amount |
/// | new_instrument | the tier's limit | withdrawn to the instrument since its bind, this one included |
/// | instrument_daily | the tier's limit | withdrawn to the instrument today, this one included |
/// | instrument_binds | binds_max | binds in the window, this one included |
///
/// Amounts are in minor units of the payment's currency.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, bincode::Encode, bincode::Decode)]
pub struct RuleFigures {
    pub limit: u64,
    pub observed: u64,
}

/// The outcome of [`evaluate`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Decision {
    /// The most severe action among the rules that fired.
    pub verdict: Verdict,
    /// The rule that decided the verdict: the first, in rule order, of the
    /// rules whose action is the verdict. None for Approve.
    pub rule: Option<RuleId>,
    /// That rule's figures (zero for Approve).
    pub figures: RuleFigures,
    /// Freeze the account: a decline rule with `freeze = true` fired.
    /// Implies `verdict == Decline`.
    pub freeze: bool,
    /// Every rule that fired (step-up rules passed by a verified step-up are
    /// not in it).
    pub fired: RuleSet,
    /// The rules that fired with action Flag.
    pub flags: RuleSet,
    /// Step-up rules that fired but were passed because the payment carried a
    /// verified step-up.
    pub stepped_up: RuleSet,
}

impl Decision {
    pub const APPROVE: Decision = Decision {
        verdict: Verdict::Approve,
        rule: None,
        figures: RuleFigures {
            limit: 0,
            observed: 0,
        },
        freeze: false,
        fired: RuleSet::EMPTY,
        flags: RuleSet::EMPTY,
        stepped_up: RuleSet::EMPTY,
    };

    /// Whether the payment may commit (Approve or Flag).
    pub fn allows_payment(&self) -> bool {
        self.verdict.allows_payment()
    }

    /// Whether this decision goes to the audit log: anything but a plain
    /// approve (a step-up passed by a verified second factor is recorded too).
    pub fn is_auditable(&self) -> bool {
        self.verdict != Verdict::Approve || !self.stepped_up.is_empty()
    }

    fn fire(&mut self, rule: RuleId, response: Response, figures: RuleFigures, step_up: bool) {
        if response.action == Action::StepUp && step_up {
            self.stepped_up.insert(rule);
            return;
        }
        self.fired.insert(rule);
        if response.action == Action::Flag {
            self.flags.insert(rule);
        }
        let verdict = response.action.verdict();
        if verdict > self.verdict {
            self.verdict = verdict;
            self.rule = Some(rule);
            self.figures = figures;
        }
        if response.freeze && response.action == Action::Decline {
            self.freeze = true;
        }
    }
}

/// Evaluates every rule of `policy` on `payment`, given what `state`
/// remembers of the customer's committed payments. See docs/risk.md.
pub fn evaluate(
    policy: &RiskPolicy,
    state: &CustomerRiskState,
    payment: &PaymentContext,
) -> Decision {
    let mut decision = Decision::APPROVE;
    let step_up = payment.step_up_verified;

    // 1. Blocked lists.
    if let (Some(list), Some(country)) = (&policy.blocked_countries, payment.country) {
        if list.contains(&country) {
            let figures = RuleFigures {
                limit: 0,
                observed: u64::from(u16::from_be_bytes(country)),
            };
            decision.fire(RuleId::BlockedCountry, list.response, figures, step_up);
        }
    }
    if let (Some(list), Some(merchant)) = (&policy.blocked_merchants, payment.merchant) {
        if list.contains(&merchant) {
            let figures = RuleFigures {
                limit: 0,
                observed: merchant.0,
            };
            decision.fire(RuleId::BlockedMerchant, list.response, figures, step_up);
        }
    }
    if let (Some(list), Some(mcc)) = (&policy.blocked_mccs, payment.mcc) {
        if list.contains(&mcc) {
            let figures = RuleFigures {
                limit: 0,
                observed: u64::from(mcc),
            };
            decision.fire(RuleId::BlockedMcc, list.response, figures, step_up);
        }
    }

    // 2. Amount limits per KYC tier and currency.
    if let Some(rule) = &policy.single_payment {
        if let Some(limit) = rule.limit(payment.currency, payment.kyc_tier) {
            if payment.amount > limit {
                let figures = RuleFigures {
                    limit,
                    observed: payment.amount,
                };
                decision.fire(RuleId::SinglePayment, rule.response, figures, step_up);
            }
        }
    }
    evaluate_outflow(policy, state, payment, &mut decision);

    // 3. Velocity: the payments_max-th newest payment is still in the window.
    if let Some(rule) = &policy.velocity {
        let payments_max = usize::from(rule.payments_max).clamp(1, RECENT_PAYMENTS_MAX);
        if let Some(oldest_counted) = state.recent_timestamp(payments_max - 1) {
            if payment.timestamp.saturating_sub(oldest_counted) < rule.window_ns {
                let in_window = (0..state.recent_len())
                    .map_while(|age| state.recent_timestamp(age))
                    .take_while(|&ts| payment.timestamp.saturating_sub(ts) < rule.window_ns)
                    .count();
                let figures = RuleFigures {
                    limit: payments_max as u64,
                    observed: in_window as u64 + 1,
                };
                decision.fire(RuleId::Velocity, rule.response, figures, step_up);
            }
        }
    }

    // 4. New device.
    if let (Some(rule), Some(device)) = (&policy.new_device, payment.device) {
        let known = state.devices_len();
        let new = if known == 0 {
            !rule.trust_first_device
        } else {
            !state.knows_device(device)
        };
        if new {
            let figures = RuleFigures {
                limit: known as u64,
                observed: device,
            };
            decision.fire(RuleId::NewDevice, rule.response, figures, step_up);
        }
    }

    // 5. Impossible travel.
    if let (Some(rule), Some(here), Some(last)) = (
        &policy.impossible_travel,
        payment.location,
        state.last_location(),
    ) {
        let elapsed_ns = payment.timestamp.saturating_sub(last.timestamp);
        let threshold = geo::half_angle_of_metres_q30(u64::from(rule.distance_m_min)).max(
            geo::half_angle_of_travel_q30(rule.speed_kmh_max, elapsed_ns),
        );
        // A threshold of half the circumference or more is never exceeded:
        // skip the trigonometry (the case after about 20 hours at 1,000 km/h).
        // The common case, a customer who stayed in town, needs none either.
        let haversine = if threshold < geo::HALF_PI_Q30
            && !geo::certainly_within(&here, &last.point, threshold)
        {
            geo::haversine_q60(&here, &last.point)
        } else {
            0
        };
        if geo::haversine_exceeds(haversine, threshold) {
            // Cold path: the figures need the distance itself.
            let distance_m = geo::distance_of_haversine_m(haversine);
            let speed_kmh = if elapsed_ns == 0 {
                u64::MAX
            } else {
                let speed = u128::from(distance_m) * 3_600_000_000 / u128::from(elapsed_ns);
                u64::try_from(speed).unwrap_or(u64::MAX)
            };
            let figures = RuleFigures {
                limit: u64::from(rule.speed_kmh_max),
                observed: speed_kmh,
            };
            decision.fire(RuleId::ImpossibleTravel, rule.response, figures, step_up);
        }
    }

    // 6. Amount anomaly: amount > multiplier × average, compared without
    // division: amount × count × 1000 > multiplier_milli × sum.
    if let Some(rule) = &policy.amount_anomaly {
        let history = usize::from(rule.history).clamp(1, RECENT_PAYMENTS_MAX);
        let (sum, count) = state.recent_sum(payment.currency, history);
        if count >= usize::from(rule.history_min).max(1) {
            let multiplier = u128::from(rule.multiplier_milli);
            let amount_scaled = u128::from(payment.amount) * count as u128 * 1_000;
            let average_scaled = multiplier * sum;
            if amount_scaled > average_scaled {
                let limit = average_scaled / (count as u128 * 1_000);
                let figures = RuleFigures {
                    limit: u64::try_from(limit).unwrap_or(u64::MAX),
                    observed: payment.amount,
                };
                decision.fire(RuleId::AmountAnomaly, rule.response, figures, step_up);
            }
        }
    }

    // 7. Instruments: the withdrawal's destination.
    if let Some(instrument) = payment.instrument {
        if let Some(rule) = &policy.new_instrument {
            let new = payment.timestamp.saturating_sub(instrument.bound_at) < rule.period_ns;
            if let (true, Some(limit)) = (new, limit_of_rule(&rule.limit, payment)) {
                let observed = instrument
                    .risk
                    .withdrawn_total
                    .saturating_add(payment.amount);
                if observed > limit {
                    let figures = RuleFigures { limit, observed };
                    let response = rule.limit.response;
                    decision.fire(RuleId::NewInstrument, response, figures, step_up);
                }
            }
        }
        if let Some(rule) = &policy.instrument_daily {
            if let Some(limit) = limit_of_rule(rule, payment) {
                let day = Day::from_timestamp(payment.timestamp);
                let observed = instrument
                    .risk
                    .day_total_on(day)
                    .saturating_add(payment.amount);
                if observed > limit {
                    let figures = RuleFigures { limit, observed };
                    decision.fire(RuleId::InstrumentDaily, rule.response, figures, step_up);
                }
            }
        }
    }

    decision
}

/// Evaluates the `instrument_binds` rule on a bind at `timestamp`, given the
/// customer's earlier binds. Pure, like [`evaluate`].
pub fn evaluate_bind(policy: &RiskPolicy, binds: &BindRing, timestamp: u64) -> Decision {
    let mut decision = Decision::APPROVE;
    if let Some(rule) = &policy.instrument_binds {
        let earlier = binds.in_window(timestamp, rule.window_ns);
        if earlier >= usize::from(rule.binds_max) {
            let figures = RuleFigures {
                limit: u64::from(rule.binds_max),
                observed: earlier as u64 + 1,
            };
            decision.fire(RuleId::InstrumentBinds, rule.response, figures, false);
        }
    }
    decision
}

fn limit_of_rule(rule: &LimitRule, payment: &PaymentContext) -> Option<u64> {
    rule.limit(payment.currency, payment.kyc_tier)
}

fn limit_of(rule: &Option<LimitRule>, payment: &PaymentContext) -> Option<u64> {
    rule.as_ref()?.limit(payment.currency, payment.kyc_tier)
}

/// Daily and monthly outflow, and the bound on currencies tracked.
#[inline]
fn evaluate_outflow(
    policy: &RiskPolicy,
    state: &CustomerRiskState,
    payment: &PaymentContext,
    decision: &mut Decision,
) {
    let daily = limit_of(&policy.daily_outflow, payment);
    let monthly = limit_of(&policy.monthly_outflow, payment);
    if daily.is_none() && monthly.is_none() {
        return;
    }
    let step_up = payment.step_up_verified;
    let day = Day::from_timestamp(payment.timestamp);
    let (day_total, month_total, untracked) = match state.outflow(payment.currency) {
        Some(bucket) => (
            bucket.day_total_on(day),
            if monthly.is_some() {
                bucket.month_total_on(day)
            } else {
                0
            },
            false,
        ),
        None => {
            let limited =
                daily.is_some_and(|l| l != UNLIMITED) || monthly.is_some_and(|l| l != UNLIMITED);
            (0, 0, limited && !state.has_outflow_slot(day))
        }
    };
    if let (Some(rule), Some(limit)) = (&policy.daily_outflow, daily) {
        let observed = day_total.saturating_add(payment.amount);
        if observed > limit {
            let figures = RuleFigures { limit, observed };
            decision.fire(RuleId::DailyOutflow, rule.response, figures, step_up);
        }
    }
    if let (Some(rule), Some(limit)) = (&policy.monthly_outflow, monthly) {
        let observed = month_total.saturating_add(payment.amount);
        if observed > limit {
            let figures = RuleFigures { limit, observed };
            decision.fire(RuleId::MonthlyOutflow, rule.response, figures, step_up);
        }
    }
    if untracked {
        let figures = RuleFigures {
            limit: OUTFLOW_CURRENCIES_MAX as u64,
            observed: OUTFLOW_CURRENCIES_MAX as u64 + 1,
        };
        decision.fire(
            RuleId::OutflowCurrencies,
            Response::DECLINE,
            figures,
            step_up,
        );
    }
}
