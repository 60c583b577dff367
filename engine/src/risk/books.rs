//! The risk engine's and the budgets' part of the ledger state, and the two
//! calls the ledger makes around a customer's outgoing payment:
//!
//! 1. [`RiskBooks::evaluate`], after the payment's own checks passed and
//!    before its point of no return: evaluates the policy in force, changing
//!    nothing. A refusal (decline, step-up) comes back with its status and
//!    detail, and [`RiskBooks::refuse`] audits it once the payment is known
//!    to stop there; the ledger freezes the account if the decision says so.
//! 2. [`RiskBooks::commit`], after the money moved: records the payment in
//!    the customer's risk state (only committed payments count), audits a
//!    flag, adds the payment to the account's spending and returns the
//!    detail for the reply (flag, budget crossing, both, or none).
//!
//! With the disabled policy (no rule on) both calls skip the rules and the
//! risk state entirely: nothing is evaluated or remembered, so turning a
//! policy on starts the rules from what they see from then on. Spending and
//! budgets are kept either way.
//!
//! Risk state is kept per customer (the account's owner: one state for all
//! of a customer's currency accounts, as the per-currency outflow buckets
//! expect); budgets per customer account (one currency). Both are created on
//! a customer's first committed payment and are fixed-size.

use crate::growing_map::GrowingMap;

use super::audit::AuditLog;
use super::calendar::Month;
use super::codes::{RuleId, Verdict};
use super::geo::GeoPoint;
use super::instruments::{BindRing, InstrumentFacts};
use super::policy::RiskPolicy;
use super::rules::{evaluate, evaluate_bind, Decision};
use super::state::CustomerRiskState;
use super::{AuditEntry, PaymentContext};
use crate::budget::{BudgetState, Category};
use crate::command::{AccountId, BudgetDetail, CommandId, Detail, RiskContext, RiskDetail};
use crate::currency::Currency;
use crate::prefetch::prefetch;
use crate::status::Status;

/// One outgoing payment of a customer account, as the ledger describes it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Outflow {
    pub owner: u64,
    pub account: AccountId,
    pub kyc_tier: u8,
    pub currency: Currency,
    pub amount: u64,
    pub merchant: Option<AccountId>,
    pub mcc: Option<u16>,
    /// The spending category, or None for money that is not spending
    /// (a withdrawal to the customer's own bank).
    pub category: Option<Category>,
    pub context: RiskContext,
    /// The instrument a withdrawal hold goes to.
    pub instrument: Option<InstrumentFacts>,
}

/// A payment the rules allowed, to be committed with [`RiskBooks::commit`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Gate {
    outflow: Outflow,
    payment: PaymentContext,
    decision: Decision,
}

/// A bind the rules allowed, to be committed with [`RiskBooks::commit_bind`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct BindGate {
    owner: u64,
    payment: PaymentContext,
    decision: Decision,
}

/// A payment the rules refused.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Refusal {
    pub status: Status,
    pub detail: Detail,
    /// Freeze the paying account (freeze on suspicion).
    pub freeze: bool,
    owner: u64,
    payment: PaymentContext,
    decision: Decision,
}

/// Risk decisions since start, by rule and verdict, for metrics. Not state:
/// not checkpointed, not in the digest; a replay at start counts again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RiskCounters {
    /// `[rule code][verdict code]`: times the rule decided a payment's
    /// verdict (the deciding rule only).
    pub decided: [[u64; 4]; 16],
    /// Payments evaluated.
    pub evaluated: u64,
}

impl RiskCounters {
    /// (rule, verdict, count) for every non-zero counter, in code order.
    pub fn iter(&self) -> impl Iterator<Item = (RuleId, Verdict, u64)> + '_ {
        RuleId::ALL.iter().flat_map(move |&rule| {
            Verdict::ALL.iter().filter_map(move |&verdict| {
                let count = self.decided[usize::from(rule.code())][usize::from(verdict.code())];
                (count > 0).then_some((rule, verdict, count))
            })
        })
    }

    /// Adds another shard's counters (a merge of shard states).
    pub fn add(&mut self, other: &RiskCounters) {
        for (row, other_row) in self.decided.iter_mut().zip(&other.decided) {
            for (cell, other_cell) in row.iter_mut().zip(other_row) {
                *cell = cell.saturating_add(*other_cell);
            }
        }
        self.evaluated = self.evaluated.saturating_add(other.evaluated);
    }

    fn count(&mut self, decision: &Decision) {
        self.evaluated += 1;
        if let Some(rule) = decision.rule {
            let cell = &mut self.decided[usize::from(rule.code()) & 15]
                [usize::from(decision.verdict.code()) & 3];
            *cell += 1;
        }
    }
}

/// See the module documentation.
#[derive(Clone, Debug)]
pub struct RiskBooks {
    pub(crate) policy: RiskPolicy,
    policy_digest: [u8; 32],
    enabled: bool,
    /// By customer (owner id).
    /// Boxed: the table stays small (16 bytes a customer, so its probes
    /// mostly hit the cache) and growing it never moves the states.
    pub(crate) customers: GrowingMap<u64, Box<CustomerRiskState>>,
    pub(crate) audit: AuditLog,
    /// By customer account.
    pub(crate) budgets: GrowingMap<AccountId, Box<BudgetState>>,
    /// The state of a customer with no committed payment yet, so evaluation
    /// never builds one.
    empty: CustomerRiskState,
    counters: RiskCounters,
}

impl Default for RiskBooks {
    fn default() -> Self {
        RiskBooks::new(RiskPolicy::disabled())
    }
}

fn to_risk_detail(decision: &Decision) -> Option<RiskDetail> {
    Some(RiskDetail {
        verdict: decision.verdict,
        rule: decision.rule?,
        limit: decision.figures.limit,
        observed: decision.figures.observed,
    })
}

impl RiskBooks {
    pub fn new(policy: RiskPolicy) -> RiskBooks {
        let mut books = RiskBooks {
            policy: RiskPolicy::disabled(),
            policy_digest: [0; 32],
            enabled: false,
            customers: GrowingMap::default(),
            audit: AuditLog::new(),
            budgets: GrowingMap::default(),
            empty: CustomerRiskState::default(),
            counters: RiskCounters::default(),
        };
        books.set_policy(policy);
        books
    }

    /// Puts `policy` in force (it must be valid: decoded or parsed ones are).
    pub(crate) fn set_policy(&mut self, policy: RiskPolicy) {
        self.policy_digest = policy.digest();
        self.enabled = !policy.is_disabled();
        self.policy = policy;
    }

    pub fn policy(&self) -> &RiskPolicy {
        &self.policy
    }

    /// `RiskPolicy::digest` of the policy in force.
    pub fn policy_digest(&self) -> [u8; 32] {
        self.policy_digest
    }

    pub fn counters(&self) -> &RiskCounters {
        &self.counters
    }

    pub(crate) fn counters_mut(&mut self) -> &mut RiskCounters {
        &mut self.counters
    }

    /// Whether a policy with at least one rule is in force (the same on
    /// every shard: the policy record reaches all of them in log order).
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Prefetches the customer's risk state (see `Ledger::warm_ahead`).
    #[inline]
    pub(crate) fn warm_customer(&self, owner: u64) {
        if let Some(customer) = self.customers.get(&owner) {
            prefetch(&**customer, usize::MAX);
        }
    }

    /// Prefetches what a payment in `category` (None: not known yet) in
    /// `month` reads of the account's budget (see `Ledger::warm_ahead`).
    #[inline]
    pub(crate) fn warm_budget(&self, account: AccountId, category: Option<Category>, month: Month) {
        if let Some(budget) = self.budgets.get(&account) {
            budget.warm(category, month);
        }
    }

    /// The customer's risk state, if they have committed a payment under a
    /// policy.
    pub fn customer(&self, owner: u64) -> Option<&CustomerRiskState> {
        self.customers.get(&owner).map(|state| &**state)
    }

    /// A customer's audited decisions, newest first.
    pub fn audit(&self, owner: u64) -> impl Iterator<Item = &AuditEntry> + '_ {
        self.audit.entries(owner)
    }

    pub fn budget(&self, account: AccountId) -> Option<&BudgetState> {
        self.budgets.get(&account).map(|state| &**state)
    }

    fn payment_context(outflow: &Outflow, timestamp: u64) -> PaymentContext {
        let context = &outflow.context;
        PaymentContext {
            timestamp,
            kyc_tier: outflow.kyc_tier,
            currency: outflow.currency,
            amount: outflow.amount,
            merchant: outflow.merchant,
            mcc: outflow.mcc,
            country: context.country(),
            device: context.device(),
            location: context
                .location_microdegrees()
                .and_then(|(latitude, longitude)| GeoPoint::new(latitude, longitude)),
            step_up_verified: context.step_up_verified,
            instrument: outflow.instrument,
        }
    }

    /// The policy's decision on a payment, changing nothing: sharded
    /// execution evaluates the payer's half before it knows whether the
    /// payee's half passed, and records a refusal only if the payment
    /// stopped at the rules.
    // The Ok value (a gate) is as large as the refusal, so boxing the
    // refusal would add an allocation without making the result smaller.
    #[allow(clippy::result_large_err)]
    #[inline]
    pub(crate) fn evaluate(&self, timestamp: u64, outflow: Outflow) -> Result<Gate, Refusal> {
        let payment = Self::payment_context(&outflow, timestamp);
        if !self.enabled {
            return Ok(Gate {
                outflow,
                payment,
                decision: Decision::APPROVE,
            });
        }
        let state = match self.customers.get(&outflow.owner) {
            Some(state) => state,
            None => &self.empty,
        };
        let decision = evaluate(&self.policy, state, &payment);
        if decision.allows_payment() {
            return Ok(Gate {
                outflow,
                payment,
                decision,
            });
        }
        let status = match decision.verdict {
            Verdict::StepUp => Status::StepUpRequired,
            _ if decision.freeze => Status::RiskFrozen,
            _ => Status::RiskDeclined,
        };
        Err(Refusal {
            status,
            detail: to_risk_detail(&decision).map_or(Detail::None, Detail::Risk),
            freeze: decision.freeze,
            owner: outflow.owner,
            payment,
            decision,
        })
    }

    /// Records a refusal from [`Self::evaluate`]: counted and audited.
    pub(crate) fn refuse(&mut self, command: CommandId, refusal: &Refusal) {
        self.counters.count(&refusal.decision);
        self.audit
            .record(refusal.owner, command, &refusal.payment, &refusal.decision);
    }

    /// Step 2 (module docs): the payment committed.
    pub(crate) fn commit(&mut self, command: CommandId, gate: &Gate) -> Detail {
        let outflow = &gate.outflow;
        let mut flag = None;
        if self.enabled {
            self.counters.count(&gate.decision);
            self.customers
                .entry(outflow.owner)
                .or_default()
                .record(&gate.payment);
            self.audit
                .record(outflow.owner, command, &gate.payment, &gate.decision);
            if gate.decision.verdict == Verdict::Flag {
                flag = to_risk_detail(&gate.decision);
            }
        }
        let crossing = outflow.category.and_then(|category| {
            self.budgets
                .entry(outflow.account)
                .or_default()
                .record_spend(category, outflow.amount, gate.payment.timestamp)
        });
        let budget = crossing.map(|crossing| BudgetDetail {
            category: crossing.category,
            budget: crossing.budget,
            spent: crossing.spent,
        });
        match (flag, budget) {
            (None, None) => Detail::None,
            (Some(flag), None) => Detail::Risk(flag),
            (None, Some(budget)) => Detail::BudgetCrossed(budget),
            (Some(flag), Some(budget)) => Detail::FlaggedOverBudget(flag, budget),
        }
    }

    /// The `instrument_binds` rule on a bind of customer `owner` (an
    /// account of KYC tier `kyc_tier`) of an instrument in `currency`,
    /// given the customer's earlier binds. Changes nothing; Ok(None) when no
    /// rule is on (nothing is evaluated or remembered then).
    #[allow(clippy::result_large_err)] // as `evaluate`
    pub(crate) fn evaluate_bind(
        &self,
        timestamp: u64,
        owner: u64,
        kyc_tier: u8,
        currency: Currency,
        binds: &BindRing,
    ) -> Result<Option<BindGate>, Refusal> {
        if !self.enabled {
            return Ok(None);
        }
        let payment = PaymentContext::new(timestamp, kyc_tier, currency, 0);
        let decision = evaluate_bind(&self.policy, binds, timestamp);
        if decision.allows_payment() {
            return Ok(Some(BindGate {
                owner,
                payment,
                decision,
            }));
        }
        Err(Refusal {
            status: if decision.freeze {
                Status::RiskFrozen
            } else {
                Status::RiskDeclined
            },
            detail: to_risk_detail(&decision).map_or(Detail::None, Detail::Risk),
            freeze: decision.freeze,
            owner,
            payment,
            decision,
        })
    }

    /// The bind committed: counted, audited if flagged; the detail for the
    /// reply.
    pub(crate) fn commit_bind(&mut self, command: CommandId, gate: &BindGate) -> Detail {
        self.counters.count(&gate.decision);
        self.audit
            .record(gate.owner, command, &gate.payment, &gate.decision);
        if gate.decision.verdict == Verdict::Flag {
            return to_risk_detail(&gate.decision).map_or(Detail::None, Detail::Risk);
        }
        Detail::None
    }

    /// A refund back to a customer account takes it off the spending of the
    /// original payment's category, in the refund's month.
    pub(crate) fn refund(&mut self, account: AccountId, mcc: u16, amount: u64, timestamp: u64) {
        if let Some(state) = self.budgets.get_mut(&account) {
            state.record_refund(Category::from_mcc(mcc), amount, timestamp);
        }
    }

    /// Feeds the policy, every customer's risk state, the audit log and every
    /// account's budgets to `hasher`, each in key order.
    pub(crate) fn digest_into(&self, hasher: &mut crate::digest::DigestHasher) {
        hasher.update(b"payrail-risk-books-v1");
        self.policy.digest_into(hasher);
        // The boxes' addresses are read here, walking the map in its order
        // (cheap), so that the loops below can fetch the states ahead
        // without first waiting for a read of the map at random.
        let mut owners: Vec<(u64, &CustomerRiskState)> = self
            .customers
            .iter()
            .map(|(owner, state)| (*owner, &**state))
            .collect();
        owners.sort_unstable_by_key(|(owner, _)| *owner);
        hasher.update(&(owners.len() as u64).to_le_bytes());
        // In key order the states are random places in memory (hundreds of
        // bytes each): fetch them some entries ahead, or each waits for its
        // cache misses (most of the budgets' digest at 1M accounts, perf).
        const AHEAD: usize = 8;
        for at in 0..owners.len() {
            if let Some((_, ahead)) = owners.get(at + AHEAD) {
                crate::prefetch::prefetch(*ahead, usize::MAX);
            }
            let (owner, state) = owners[at];
            hasher.update(&owner.to_le_bytes());
            state.digest_into(hasher);
        }
        self.audit.digest_into(hasher);
        let mut budgets: Vec<(AccountId, &BudgetState)> = self
            .budgets
            .iter()
            .map(|(account, state)| (*account, &**state))
            .collect();
        budgets.sort_unstable_by_key(|(account, _)| *account);
        hasher.update(&(budgets.len() as u64).to_le_bytes());
        for at in 0..budgets.len() {
            if let Some((_, ahead)) = budgets.get(at + AHEAD) {
                crate::prefetch::prefetch(*ahead, usize::MAX);
            }
            let (account, state) = budgets[at];
            hasher.update(&account.0.to_le_bytes());
            state.digest_into(hasher);
        }
    }
}
