//! Two-party commands split in halves: the only implementation of their
//! rules, on any shard count.
//!
//! A transfer, a QR payment, a payment-code charge and a refund move money
//! from a debit account to a credit account that may live on two shards.
//! Each half is evaluated against the state that owns its account and says
//! yes or no; both apply only if both said yes. A lone ledger (which
//! recovery replays) and a shard that owns both accounts run both halves
//! in [`Books::apply_pair_local`]; two shards run one half each and
//! exchange verdicts (`shard/worker.rs`). Either way the same checks run.
//!
//! Every check is a [`Check`], and the order of `Check`'s variants is the
//! order in which a command makes its checks. A failing half reports its
//! first failing check (within a half the checks run in that order), and
//! when both halves fail the combined status is the earlier check's
//! ([`combine`]): the same status whichever half ran where. Each command
//! makes these checks, in this order (D = debit half, C = credit half):
//!
//! | transfer | QR payment | code charge | refund |
//! |----------|------------|-------------|--------|
//! | `Fields`: amount (D, C) | `Fields`: amount, fee, mcc (D, C) | `Fields`: amount (D, C) | `Fields`: amount (D, C) |
//! | `SameAccount` (D, C) | `Payer` unknown (D) | `ChargeMerchant` unknown/kind (C) | `Payment` unknown (D, C) |
//! | `Payer` unknown (D) | `QrMerchant`: none, same account (D, C) | `Code` unknown/used/expired (D) | `PaymentCurrency` (D) |
//! | `Payee` unknown (C) | | | `Refundable`: refund exceeds payment (D) |
//! | `DebitMovable`: payer (D) | `DebitMovable`: payer (D) | `DebitMovable`: customer (D) | `DebitMovable`: merchant (D) |
//! | `CreditMovable`: payee (C) | `CreditMovable`: merchant (C) | `CreditMovable`: merchant (C) | `CreditMovable`: payer (C) |
//! | `Currency` (D, C) | `Currency` (D, C) | `Currency` (D, C) | `Currency` (C) |
//! | `Funds` (D) | `Funds` (D) | `Funds` (D) | `Funds` (D) |
//! | `Overflow` (C) | `Overflow` (C) | `Overflow` (C) | `Overflow` (C) |
//! | `Risk`: context, rules (D) | `Risk` (D) | `Risk` (D) | |
//!
//! Cross-currency QR payments (the payer's account is in another currency
//! than the code's; the parties tell both halves the payer's currency, as
//! the router or the lone ledger resolved them) and
//! refunds of them (both halves keep the payment's FX legs) take the FX
//! checks instead of `DebitMovable`..`Overflow` (and before `Risk`, which
//! sees what leaves the payer's account, in its currency):
//!
//! | cross-currency QR payment | refund of one |
//! |---------------------------|---------------|
//! | `FxMerchantCurrency` (C) | `FxRefundRecord`: the legs' record (D, C) |
//! | `FxPayerMovable` (D) | `FxRefundMerchantLegs`: merchant movable, funds; liquidity leg (D) |
//! | `FxMerchantMovable` (C) | `FxRefundPayerLegs`: house legs, payer movable, overflow (C) |
//! | `FxPrice`: rate and price (D) | |
//! | `FxPayerLegs`: payer funds, house legs, liquidity floor (D) | |
//! | `FxMerchantOverflow` (C) | |
//!
//! The two halves of one command take the same path (plain or FX: both
//! know the payer's currency, both keep the FX legs), so only checks of one
//! column are ever compared; the unit test at the end checks that every
//! column is in `Check`'s order.
//!
//! The risk step (`Check::Risk`) runs only once every other check of the
//! payer's half passed; it is evaluated without changing anything
//! ([`Books::risk_half`]), and a refusal is recorded (audit, counters,
//! freeze on suspicion) only if the payee's half passed too, since only then
//! is it the first failing check. A QR payment with no MCC of its own and a
//! code charge need the merchant's MCC for the rules: the payee's half
//! sends it with its verdict ([`Books::half_fact`]), and the payer's half
//! then receives before it sends. A refund's payee half needs the original
//! payment's MCC for the customer's spending: the payer's half sends it.

use crate::command::{
    AccountId, AccountKind, Command, CommandKind, CommandResult, Detail, FxAmounts, MerchantKey,
};
use crate::currency::Currency;
use crate::fx::FxRefund;
use crate::ledger::risk_gate::{Payee, RiskStop};
use crate::ledger::{check_amount, signed, Books, Payment, PaymentCodeState};
use crate::limits;
use crate::risk::books::Gate;
use crate::status::Status;

/// Which half of a two-party command a shard evaluates.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Half {
    Debit,
    Credit,
}

/// The checks of the two-party commands, in the order a command makes
/// them (the tables in the module documentation): of two failing halves,
/// the one whose check comes first decides the status. Never compared
/// across commands or across the plain and the FX path of one.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub(crate) enum Check {
    /// The command's own fields: the amount (a QR payment's fee and MCC).
    Fields,
    /// Transfer: the two accounts differ.
    SameAccount,
    /// Code charge: the merchant is known and is a merchant.
    ChargeMerchant,
    /// Refund: the payment is kept (and its payer known).
    Payment,
    /// Transfer, QR payment: the payer is known (and not a house account).
    Payer,
    /// Code charge: the code is known and live.
    Code,
    /// Refund: in the currency of the payment's merchant account.
    PaymentCurrency,
    /// Transfer: the payee is known (and not a house account).
    Payee,
    /// QR payment: a key of the code names a merchant, not the payer.
    QrMerchant,
    /// Refund: at most what is left of the payment to refund.
    Refundable,
    /// The debit account is active.
    DebitMovable,
    /// The credit account is active.
    CreditMovable,
    /// The account is in the command's currency.
    Currency,
    /// The debit account has the amount available.
    Funds,
    /// The credit account's balance has room for the amount.
    Overflow,
    /// Cross-currency QR payment: the merchant is in the code's currency.
    FxMerchantCurrency,
    /// Cross-currency QR payment: the payer is active.
    FxPayerMovable,
    /// Cross-currency QR payment: the merchant is active.
    FxMerchantMovable,
    /// Cross-currency QR payment: a fresh rate and its price.
    FxPrice,
    /// Cross-currency QR payment: the payer's funds, the house legs and the
    /// liquidity floor.
    FxPayerLegs,
    /// Cross-currency QR payment: the merchant's balance has room.
    FxMerchantOverflow,
    /// Refund of a cross-currency payment: its FX legs' record allows it.
    FxRefundRecord,
    /// Refund of a cross-currency payment: the merchant's and liquidity legs.
    FxRefundMerchantLegs,
    /// Refund of a cross-currency payment: the house legs and the payer's.
    FxRefundPayerLegs,
    /// The payer's risk context and rules: after every other check of both
    /// halves.
    Risk,
}

/// One half's answer: yes, or its first failing check and that check's
/// status.
pub(crate) type Verdict = Result<(), (Check, Status)>;

/// What the risk step of a payer's half decided.
pub(crate) type RiskOutcome = Result<Option<Gate>, RiskStop>;

/// A half's verdict once its risk step ran: the step's refusal, as `Risk`.
pub(crate) fn with_risk(verdict: Verdict, risk: &RiskOutcome) -> Verdict {
    verdict?;
    match risk {
        Ok(_) => Ok(()),
        Err(stop) => Err((Check::Risk, stop.status())),
    }
}

/// The combined outcome of two halves: the failure at the earlier check wins.
pub(crate) fn combine(debit: Verdict, credit: Verdict) -> Result<(), Status> {
    match (debit, credit) {
        (Ok(()), Ok(())) => Ok(()),
        (Err((_, status)), Ok(())) | (Ok(()), Err((_, status))) => Err(status),
        (Err((debit_check, debit_status)), Err((credit_check, credit_status))) => {
            // The same check on both sides (amount, currency...) fails with
            // the same status.
            if debit_check <= credit_check {
                Err(debit_status)
            } else {
                Err(credit_status)
            }
        }
    }
}

/// The accounts of a two-party command, as the router resolved them:
/// `None` when the reference (merchant key, payment code, payment) names
/// nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Parties {
    pub(crate) debit: Option<AccountId>,
    pub(crate) credit: Option<AccountId>,
    /// QR payments: the payer's currency as the router knows it (so the
    /// merchant's half knows a cross-currency payment without asking).
    pub(crate) payer_currency: Option<Currency>,
    /// Cross-currency QR payments: the other shards' parts of the FX
    /// liquidity account the payment draws on (the floor is checked on the
    /// whole position).
    pub(crate) liquidity_elsewhere: i128,
}

impl Parties {
    pub(crate) fn new(debit: Option<AccountId>, credit: Option<AccountId>) -> Parties {
        Parties {
            debit,
            credit,
            payer_currency: None,
            liquidity_elsewhere: 0,
        }
    }
}

/// What a half that said yes will change: its account's slot and the amount.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Plan {
    pub(crate) slot: u32,
    pub(crate) amount: u64,
    pub(crate) fx: FxPlan,
}

/// The FX part of a half's plan.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FxPlan {
    None,
    /// A cross-currency QR payment at these amounts (`None` on the
    /// merchant's side if it could not price: then the payer's half failed).
    Pay(Option<FxAmounts>),
    /// A refund of a cross-currency payment.
    Refund(FxRefund),
}

impl Plan {
    fn plain(slot: u32, amount: u64) -> Plan {
        Plan {
            slot,
            amount,
            fx: FxPlan::None,
        }
    }
}

/// `outcome`'s failure as a failure of `check`.
pub(crate) fn at<T>(check: Check, outcome: Result<T, Status>) -> Result<T, (Check, Status)> {
    outcome.map_err(|status| (check, status))
}

fn qr_static(amount: u64, fee: u64, mcc: u16) -> Result<u64, Status> {
    check_amount(amount)?;
    let total = amount.checked_add(fee).ok_or(Status::AmountTooLarge)?;
    check_amount(total)?;
    if mcc > limits::MCC_MAX {
        return Err(Status::QrBadField);
    }
    Ok(total)
}

impl Books {
    /// Debit half: payer's status, currency and funds (plus what only the
    /// debit side knows: a payment code's state, a payment's refundable rest).
    fn debit_checks(&self, slot: u32, amount: u64, currency: crate::Currency) -> Verdict {
        let account = self.account(slot);
        at(Check::DebitMovable, account.check_movable())?;
        if account.currency != currency {
            return Err((Check::Currency, Status::CurrencyMismatch));
        }
        if account.available() < signed(amount) {
            return Err((Check::Funds, Status::InsufficientFunds));
        }
        Ok(())
    }

    /// Credit half: payee's status, currency and room for the amount.
    fn credit_checks(&self, slot: u32, amount: u64, currency: crate::Currency) -> Verdict {
        let account = self.account(slot);
        at(Check::CreditMovable, account.check_movable())?;
        if account.currency != currency {
            return Err((Check::Currency, Status::CurrencyMismatch));
        }
        if account.balance.checked_add(signed(amount)).is_none() {
            return Err((Check::Overflow, Status::Overflow));
        }
        Ok(())
    }

    /// Evaluates one half of a two-party command against this shard's state.
    pub(crate) fn evaluate_half(
        &self,
        command: &Command,
        parties: Parties,
        half: Half,
        timestamp: u64,
    ) -> Result<Plan, (Check, Status)> {
        match command.kind {
            CommandKind::Transfer {
                from,
                to,
                amount,
                currency,
                ..
            } => {
                at(Check::Fields, check_amount(amount))?;
                if from == to {
                    return Err((Check::SameAccount, Status::SameAccount));
                }
                let slot = match half {
                    Half::Debit => at(
                        Check::Payer,
                        self.user_slot(from, Status::UnknownDebitAccount),
                    )?,
                    Half::Credit => at(
                        Check::Payee,
                        self.user_slot(to, Status::UnknownCreditAccount),
                    )?,
                };
                match half {
                    Half::Debit => self.debit_checks(slot, amount, currency)?,
                    Half::Credit => self.credit_checks(slot, amount, currency)?,
                }
                Ok(Plan::plain(slot, amount))
            }
            CommandKind::PayMerchantQr {
                payer,
                amount,
                fee,
                currency,
                mcc,
                ..
            } => {
                let total = at(Check::Fields, qr_static(amount, fee, mcc))?;
                let payer_slot = match half {
                    Half::Debit => Some(at(
                        Check::Payer,
                        self.user_slot(payer, Status::UnknownDebitAccount),
                    )?),
                    Half::Credit => None,
                };
                let merchant = parties
                    .credit
                    .ok_or((Check::QrMerchant, Status::UnknownMerchant))?;
                if merchant == payer {
                    return Err((Check::QrMerchant, Status::SameAccount));
                }
                match (half, payer_slot) {
                    (Half::Debit, Some(slot)) => {
                        if self.account(slot).currency != currency {
                            let amounts = self.fx_pay_payer_half(
                                slot,
                                total,
                                currency,
                                timestamp,
                                parties.liquidity_elsewhere,
                            )?;
                            return Ok(Plan {
                                slot,
                                amount: amounts.pay,
                                fx: FxPlan::Pay(Some(amounts)),
                            });
                        }
                        self.debit_checks(slot, total, currency)?;
                        Ok(Plan::plain(slot, total))
                    }
                    _ => {
                        // The router resolved the key to this merchant, so it
                        // lives here; `UnknownMerchant` only guards a router bug.
                        let slot = at(
                            Check::QrMerchant,
                            self.user_slot(merchant, Status::UnknownMerchant),
                        )?;
                        if let Some(payer_currency) =
                            parties.payer_currency.filter(|&other| other != currency)
                        {
                            let amounts = self.fx_pay_merchant_half(
                                slot,
                                payer_currency,
                                total,
                                currency,
                                timestamp,
                            )?;
                            return Ok(Plan {
                                slot,
                                amount: total,
                                fx: FxPlan::Pay(amounts),
                            });
                        }
                        self.credit_checks(slot, total, currency)?;
                        Ok(Plan::plain(slot, total))
                    }
                }
            }
            CommandKind::ChargePaymentCode {
                merchant,
                code,
                amount,
                currency,
                ..
            } => {
                at(Check::Fields, check_amount(amount))?;
                match half {
                    Half::Debit => {
                        // The code lives with its customer: if this shard does
                        // not know it, no shard does (the router routed here).
                        let entry = *self
                            .payment_codes
                            .get(&code)
                            .ok_or((Check::Code, Status::UnknownPaymentCode))?;
                        match entry.state {
                            PaymentCodeState::Live => {}
                            PaymentCodeState::Used => {
                                return Err((Check::Code, Status::PaymentCodeUsed))
                            }
                            PaymentCodeState::Expired => {
                                return Err((Check::Code, Status::PaymentCodeExpired))
                            }
                        }
                        self.debit_checks(entry.customer_slot, amount, currency)?;
                        Ok(Plan::plain(entry.customer_slot, amount))
                    }
                    Half::Credit => {
                        let slot = at(
                            Check::ChargeMerchant,
                            self.merchant_slot(merchant, Status::UnknownCreditAccount),
                        )?;
                        self.credit_checks(slot, amount, currency)?;
                        Ok(Plan::plain(slot, amount))
                    }
                }
            }
            CommandKind::Refund {
                payment,
                amount,
                currency,
            } => {
                at(Check::Fields, check_amount(amount))?;
                match half {
                    Half::Debit => {
                        let original = self
                            .payment_anywhere(payment)
                            .ok_or((Check::Payment, Status::PaymentNotFound))?;
                        let slot = original.merchant_slot;
                        if self.account(slot).currency != currency {
                            return Err((Check::PaymentCurrency, Status::CurrencyMismatch));
                        }
                        if amount > original.amount - original.refunded {
                            return Err((Check::Refundable, Status::RefundExceedsPayment));
                        }
                        if let Some(legs) = self.fx.payments.get(&payment) {
                            let back = self.fx_refund_half(slot, amount, legs, true)?;
                            return Ok(Plan {
                                slot,
                                amount,
                                fx: FxPlan::Refund(back),
                            });
                        }
                        self.debit_checks(slot, amount, currency)?;
                        Ok(Plan::plain(slot, amount))
                    }
                    Half::Credit => {
                        let payer = parties
                            .credit
                            .ok_or((Check::Payment, Status::PaymentNotFound))?;
                        let slot = at(
                            Check::Payment,
                            self.user_slot(payer, Status::PaymentNotFound),
                        )?;
                        if let Some(legs) = self.fx.payments.get(&payment) {
                            let back = self.fx_refund_half(slot, amount, legs, false)?;
                            return Ok(Plan {
                                slot,
                                amount: back.net_back + back.fee_back,
                                fx: FxPlan::Refund(back),
                            });
                        }
                        self.credit_checks(slot, amount, currency)?;
                        Ok(Plan::plain(slot, amount))
                    }
                }
            }
            // Not a two-party command: the router never pairs one.
            _ => Err((Check::Fields, Status::InvalidAccountKind)),
        }
    }

    /// What this half tells its peer besides its verdict (0 when nothing):
    /// a payment's merchant MCC (payee half of a QR payment or code charge),
    /// a refunded payment's MCC (payer half of a refund).
    pub(crate) fn half_fact(
        &self,
        command: &Command,
        half: Half,
        plan: Result<Plan, (Check, Status)>,
    ) -> u16 {
        let Ok(plan) = plan else {
            return 0;
        };
        match (command.kind, half) {
            (
                CommandKind::PayMerchantQr { .. } | CommandKind::ChargePaymentCode { .. },
                Half::Credit,
            ) => self.account(plan.slot).mcc,
            (CommandKind::Refund { payment, .. }, Half::Debit) => self
                .payment_anywhere(payment)
                .map_or(0, |payment| payment.mcc),
            _ => 0,
        }
    }

    /// Whether the payer's half needs the payee's fact (the merchant's MCC)
    /// for its risk step: a customer paying a merchant whose MCC the command
    /// does not carry.
    pub(crate) fn needs_payee_fact(
        &self,
        command: &Command,
        plan: Result<Plan, (Check, Status)>,
    ) -> bool {
        let Ok(plan) = plan else {
            return false;
        };
        let customer = self.account(plan.slot).kind == AccountKind::Customer;
        customer
            && match command.kind {
                CommandKind::PayMerchantQr { mcc, .. } => mcc == 0,
                CommandKind::ChargePaymentCode { .. } => true,
                _ => false,
            }
    }

    /// The risk step of a payer's half whose other checks passed (`plan`),
    /// changing nothing; `payee_mcc` is the payee half's fact.
    // The Ok value (a gate) is as large as the refusal, so boxing the
    // refusal would add an allocation without making the result smaller.
    #[allow(clippy::result_large_err)]
    #[inline]
    pub(crate) fn risk_half(
        &self,
        command: &Command,
        parties: Parties,
        plan: Plan,
        payee_mcc: u16,
        timestamp: u64,
    ) -> RiskOutcome {
        match command.kind {
            CommandKind::Transfer {
                currency, context, ..
            } => self.risk_evaluate(
                timestamp,
                plan.slot,
                plan.amount,
                currency,
                Payee::PERSON,
                context,
            ),
            CommandKind::PayMerchantQr {
                currency,
                mcc,
                context,
                ..
            } => {
                let merchant = parties.credit.unwrap_or(AccountId(0));
                let mcc = if mcc == 0 { payee_mcc } else { mcc };
                // A cross-currency payment: what leaves the payer's account.
                let currency = match plan.fx {
                    FxPlan::Pay(Some(amounts)) => amounts.pay_currency,
                    _ => currency,
                };
                self.risk_evaluate(
                    timestamp,
                    plan.slot,
                    plan.amount,
                    currency,
                    Payee::merchant(merchant, mcc),
                    context,
                )
            }
            CommandKind::ChargePaymentCode {
                merchant,
                currency,
                context,
                ..
            } => self.risk_evaluate(
                timestamp,
                plan.slot,
                plan.amount,
                currency,
                Payee::merchant(merchant, payee_mcc),
                context,
            ),
            _ => Ok(None),
        }
    }

    /// After a half was applied: the payer's risk state and spending (payer
    /// half, with its risk step's gate), or a refund taken off the
    /// customer's spending (payee half of a refund, `fact` being the
    /// payment's MCC from the payer half).
    pub(crate) fn after_half(
        &mut self,
        command: &Command,
        half: Half,
        plan: Plan,
        risk: RiskOutcome,
        fact: u16,
        timestamp: u64,
    ) {
        match (command.kind, half) {
            (CommandKind::Refund { .. }, Half::Credit) => {
                let customer = self.account(plan.slot).id;
                self.risk.refund(customer, fact, plan.amount, timestamp);
            }
            (_, Half::Debit) => {
                if let Ok(gate) = risk {
                    self.risk_commit(command.id, gate.as_ref());
                }
            }
            _ => {}
        }
    }

    /// A payment by id, whether its payer lives here or on another shard.
    fn payment_anywhere(&self, id: crate::CommandId) -> Option<Payment> {
        self.payments
            .get(&id)
            .copied()
            .or_else(|| self.remote_payments.get(&id).map(|(payment, _)| *payment))
    }

    /// Applies a half that both sides said yes to. `debit_slot` is the debit
    /// account's slot when it lives on this shard too (it is named in a
    /// payment record).
    pub(crate) fn apply_half(
        &mut self,
        command: &Command,
        parties: Parties,
        half: Half,
        plan: Plan,
        debit_slot: Option<u32>,
        timestamp: u64,
    ) {
        // Point of no return: the half's checks passed on this state.
        match (plan.fx, half) {
            (FxPlan::Pay(Some(amounts)), Half::Debit) => {
                self.fx_pay_payer_apply(command.id, plan.slot, &amounts);
                return;
            }
            (FxPlan::Refund(back), _) => {
                if let CommandKind::Refund { payment, .. } = command.kind {
                    let merchant = half == Half::Debit;
                    self.fx_refund_apply(payment, plan.slot, plan.amount, &back, merchant);
                }
                if half == Half::Debit {
                    self.add_refunded(command, plan.amount);
                }
                return;
            }
            (FxPlan::Pay(Some(amounts)), Half::Credit) => {
                let legs = crate::fx::FxPaymentLegs::of(&amounts);
                self.fx.payments.insert(command.id, legs);
            }
            _ => {}
        }
        match half {
            Half::Debit => {
                let account = self.account_mut(plan.slot);
                assert!(account.available() >= signed(plan.amount));
                account.balance -= signed(plan.amount);
            }
            Half::Credit => {
                let account = self.account_mut(plan.slot);
                account.balance = account.balance.saturating_add(signed(plan.amount));
            }
        }
        match (command.kind, half) {
            (CommandKind::ChargePaymentCode { code, .. }, Half::Debit) => {
                self.finish_code(code, PaymentCodeState::Used);
            }
            (CommandKind::Refund { .. }, Half::Debit) => self.add_refunded(command, plan.amount),
            (CommandKind::PayMerchantQr { mcc, payer, .. }, Half::Credit) => {
                let mcc = if mcc == 0 {
                    self.account(plan.slot).mcc
                } else {
                    mcc
                };
                self.record_payment(command, plan, debit_slot, payer, mcc, timestamp);
            }
            (CommandKind::ChargePaymentCode { .. }, Half::Credit) => {
                let mcc = self.account(plan.slot).mcc;
                let payer = parties.debit.unwrap_or(AccountId(0));
                self.record_payment(command, plan, debit_slot, payer, mcc, timestamp);
            }
            _ => {}
        }
    }

    fn add_refunded(&mut self, command: &Command, amount: u64) {
        let CommandKind::Refund { payment, .. } = command.kind else {
            return;
        };
        if let Some(stored) = self.payments.get_mut(&payment) {
            stored.refunded += amount;
        } else if let Some((stored, _)) = self.remote_payments.get_mut(&payment) {
            stored.refunded += amount;
        }
    }

    fn record_payment(
        &mut self,
        command: &Command,
        plan: Plan,
        debit_slot: Option<u32>,
        payer: AccountId,
        mcc: u16,
        timestamp: u64,
    ) {
        let payment = Payment {
            id: command.id,
            payer_slot: debit_slot.unwrap_or(u32::MAX),
            merchant_slot: plan.slot,
            amount: plan.amount,
            refunded: 0,
            mcc,
            timestamp,
        };
        match debit_slot {
            Some(_) => {
                self.payments.insert(command.id, payment);
            }
            None => {
                self.remote_payments.insert(command.id, (payment, payer));
            }
        }
    }
}

impl Books {
    /// A two-party command whose halves are both on this state machine
    /// (the lone ledger, or a shard that owns both accounts): evaluate both
    /// halves, run the payer's risk step once every other check passed,
    /// combine them ([`combine`]), and apply both halves if both said yes. This is the
    /// only implementation of the two-party commands' rules; a shard that
    /// owns one half runs the same halves and exchanges verdicts instead.
    /// The caller has set the movement context (history on).
    pub(crate) fn apply_pair_local(
        &mut self,
        command: &Command,
        parties: Parties,
        timestamp: u64,
    ) -> CommandResult {
        debug_assert_eq!(self.detail, Detail::None);
        let history = self.history.is_some();
        let debit = self.evaluate_half(command, parties, Half::Debit, timestamp);
        let credit = self.evaluate_half(command, parties, Half::Credit, timestamp);
        // The risk step runs after every other check of both halves.
        let mut risk: RiskOutcome = Ok(None);
        let mut debit_verdict = debit.map(|_| ());
        if let (Ok(plan), Ok(credit_plan)) = (debit, credit) {
            let payee_mcc = self.half_fact(command, Half::Credit, Ok(credit_plan));
            risk = self.risk_half(command, parties, plan, payee_mcc, timestamp);
            debit_verdict = with_risk(debit_verdict, &risk);
        }
        let outcome = combine(debit_verdict, credit.map(|_| ()));
        match (outcome, debit, credit) {
            (Ok(()), Ok(debit), Ok(credit)) => {
                let refunded_mcc = self.half_fact(command, Half::Debit, Ok(debit));
                let mcc = if history {
                    MccFacts::combine(
                        self.mcc_facts(command, Some(debit.slot)),
                        self.mcc_facts(command, Some(credit.slot)),
                    )
                } else {
                    0
                };
                self.set_half_context(Half::Debit, parties, mcc);
                self.apply_half(command, parties, Half::Debit, debit, None, timestamp);
                self.note_half(Half::Debit, debit);
                self.set_half_context(Half::Credit, parties, mcc);
                self.apply_half(
                    command,
                    parties,
                    Half::Credit,
                    credit,
                    Some(debit.slot),
                    timestamp,
                );
                self.note_half(Half::Credit, credit);
                // The debit half's `after_half`, without moving the gate.
                if let Ok(gate) = &risk {
                    self.risk_commit(command.id, gate.as_ref());
                }
                self.after_half(
                    command,
                    Half::Credit,
                    credit,
                    Ok(None),
                    refunded_mcc,
                    timestamp,
                );
            }
            (Err(_), Ok(debit), Ok(_)) => {
                // Stopped at the rules, the last check.
                if let Err(stop) = &risk {
                    self.risk_refuse(command.id, debit.slot, stop);
                }
            }
            _ => {}
        }
        let detail = std::mem::take(&mut self.detail);
        pair_result(outcome, detail, credit.ok())
    }
}

impl Books {
    /// `parties` with a QR payment's payer currency looked up here if the
    /// router left it out (with one shard it does: this state holds the
    /// payer), as [`Self::local_parties`] does for a lone ledger. An
    /// unknown payer has none either way.
    pub(crate) fn with_payer_currency(&self, command: &Command, mut parties: Parties) -> Parties {
        if parties.payer_currency.is_none() {
            if let CommandKind::PayMerchantQr { payer, .. } = command.kind {
                parties.payer_currency = self.find(payer).map(|account| account.currency);
            }
        }
        parties
    }

    /// The parties of a two-party command as this state machine knows them,
    /// resolved the way the router of a sharded ledger resolves them: a QR
    /// payment's merchant by the code's first registered key, a code
    /// charge's customer by the code, a refund's merchant and payer by the
    /// payment. For a lone ledger, which holds every account.
    pub(crate) fn local_parties(&self, command: &Command) -> Parties {
        let id = |slot: u32| Some(self.account(slot).id);
        match command.kind {
            CommandKind::Transfer { from, to, .. } => Parties::new(Some(from), Some(to)),
            CommandKind::PayMerchantQr { payer, keys, .. } => {
                let merchant = first_known_key(&keys, |key| self.merchant_keys.get(key).copied());
                Parties {
                    payer_currency: self.find(payer).map(|account| account.currency),
                    ..Parties::new(Some(payer), merchant.and_then(id))
                }
            }
            CommandKind::ChargePaymentCode { merchant, code, .. } => {
                let customer = self
                    .payment_codes
                    .get(&code)
                    .map(|entry| entry.customer_slot);
                Parties::new(customer.and_then(id), Some(merchant))
            }
            CommandKind::Refund { payment, .. } => match self.payments.get(&payment) {
                Some(original) => Parties::new(id(original.merchant_slot), id(original.payer_slot)),
                None => Parties::new(None, None),
            },
            _ => Parties::new(None, None),
        }
    }
}

/// A two-party command's result from its combined outcome, the detail the
/// risk step left (a decision, a budget crossing) and the credit half's
/// plan: a cross-currency payment's result says what it cost (the credit
/// half priced it) unless the risk step left a detail.
pub(crate) fn pair_result(
    outcome: Result<(), Status>,
    detail: Detail,
    credit: Option<Plan>,
) -> CommandResult {
    let detail = match (outcome, detail, credit.map(|plan| plan.fx)) {
        (Ok(()), Detail::None, Some(FxPlan::Pay(Some(amounts)))) => Detail::FxConversion(amounts),
        (_, detail, _) => detail,
    };
    match outcome {
        Ok(()) => CommandResult::with_detail(Status::Ok, detail),
        Err(status) => CommandResult::with_detail(status, detail),
    }
}

/// What one half knows of its movement's merchant category: the command's
/// own (a QR payment's; a refunded payment's, known where the payment is
/// kept) and its account's as a merchant. Halves exchange it with their
/// verdicts, so both legs carry the lone ledger's category.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(crate) struct MccFacts {
    pub(crate) command: u16,
    pub(crate) merchant: u16,
}

impl MccFacts {
    /// The movement's category from the debit half's and the credit half's
    /// facts ([`crate::ledger::movement_mcc`]).
    pub(crate) fn combine(debit: MccFacts, credit: MccFacts) -> u16 {
        let command = if debit.command != 0 {
            debit.command
        } else {
            credit.command
        };
        crate::ledger::movement_mcc(command, credit.merchant, debit.merchant)
    }
}

impl Books {
    /// This half's [`MccFacts`] (history on only; `slot` is its account).
    pub(crate) fn mcc_facts(&self, command: &Command, slot: Option<u32>) -> MccFacts {
        MccFacts {
            command: match command.kind {
                CommandKind::PayMerchantQr { mcc, .. } => mcc,
                CommandKind::Refund { payment, .. } => self.payment_mcc(payment),
                _ => 0,
            },
            merchant: slot.map_or(0, |slot| self.account_mcc(slot)),
        }
    }

    /// Before a half is applied (history on only): its movement's
    /// counterparty is the other party the router resolved, and its merchant
    /// category the one both halves' facts give.
    pub(crate) fn set_half_context(&mut self, half: Half, parties: Parties, mcc: u16) {
        if let Some(sink) = &mut self.history {
            let other = match half {
                Half::Debit => parties.credit,
                Half::Credit => parties.debit,
            };
            sink.context.counterparty = Some(other.unwrap_or(AccountId(0)));
            sink.context.mcc = mcc;
        }
    }

    /// The movement of a half just applied (history on only): the debit
    /// half is leg 0, the credit half leg 1, as `note_movement` numbers
    /// the lone ledger's one move. A half whose FX legs were applied as
    /// deltas made its movement there (`write_deltas`).
    pub(crate) fn note_half(&mut self, half: Half, plan: Plan) {
        let Some(sink) = &self.history else {
            return;
        };
        let deltas_done = matches!(
            (plan.fx, half),
            (FxPlan::Pay(Some(_)), Half::Debit) | (FxPlan::Refund(_), _)
        );
        if deltas_done {
            return;
        }
        let context = sink.context;
        let account = *self.account(plan.slot);
        // A two-party command moves money once: debit leg 0, credit leg 1
        // (whatever an FX half numbered before it on this shard).
        let (amount, leg) = match half {
            Half::Debit => (-signed(plan.amount), 0),
            Half::Credit => (signed(plan.amount), 1),
        };
        let counterparty = context.counterparty.unwrap_or(AccountId(0));
        self.push_movement(&account, counterparty, amount, context.mcc, leg);
    }
}

/// The merchant a QR payment pays: the first key (in the code's order) that
/// `lookup` knows.
pub(crate) fn first_known_key<T>(
    keys: &[MerchantKey],
    lookup: impl FnMut(&MerchantKey) -> Option<T>,
) -> Option<T> {
    keys.iter()
        .filter(|key| **key != MerchantKey::NONE)
        .find_map(lookup)
}

#[cfg(test)]
mod tests {
    use super::Check::{self, *};

    /// Each column of the module documentation's tables: the checks one
    /// command makes on one path, in the order it makes them.
    const COMMANDS: [(&str, &[Check]); 6] = [
        (
            "transfer",
            &[
                Fields,
                SameAccount,
                Payer,
                Payee,
                DebitMovable,
                CreditMovable,
                Currency,
                Funds,
                Overflow,
                Risk,
            ],
        ),
        (
            "QR payment",
            &[
                Fields,
                Payer,
                QrMerchant,
                DebitMovable,
                CreditMovable,
                Currency,
                Funds,
                Overflow,
                Risk,
            ],
        ),
        (
            "code charge",
            &[
                Fields,
                ChargeMerchant,
                Code,
                DebitMovable,
                CreditMovable,
                Currency,
                Funds,
                Overflow,
                Risk,
            ],
        ),
        (
            "refund",
            &[
                Fields,
                Payment,
                PaymentCurrency,
                Refundable,
                DebitMovable,
                CreditMovable,
                Currency,
                Funds,
                Overflow,
            ],
        ),
        (
            "cross-currency QR payment",
            &[
                Fields,
                Payer,
                QrMerchant,
                FxMerchantCurrency,
                FxPayerMovable,
                FxMerchantMovable,
                FxPrice,
                FxPayerLegs,
                FxMerchantOverflow,
                Risk,
            ],
        ),
        (
            "refund of a cross-currency payment",
            &[
                Fields,
                Payment,
                PaymentCurrency,
                Refundable,
                FxRefundRecord,
                FxRefundMerchantLegs,
                FxRefundPayerLegs,
            ],
        ),
    ];

    #[test]
    fn every_command_checks_in_the_tables_order() {
        for (command, checks) in COMMANDS {
            for pair in checks.windows(2) {
                assert!(pair[0] < pair[1], "{command}: {pair:?} out of order");
            }
        }
    }

    #[test]
    fn the_earlier_check_decides() {
        use crate::status::Status;
        let funds = Err((Funds, Status::InsufficientFunds));
        let frozen_payee = Err((CreditMovable, Status::AccountFrozen));
        assert_eq!(
            super::combine(funds, frozen_payee),
            Err(Status::AccountFrozen)
        );
        let risk = Err((Risk, Status::RiskDeclined));
        let overflow = Err((Overflow, Status::Overflow));
        assert_eq!(super::combine(risk, overflow), Err(Status::Overflow));
        assert_eq!(super::combine(Ok(()), overflow), Err(Status::Overflow));
        assert_eq!(super::combine(Ok(()), Ok(())), Ok(()));
    }
}
