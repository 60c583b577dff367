//! QR payments (merchant-presented and user-presented codes) and refunds.
//!
//! QR payloads are parsed at the edge (api); the ledger sees the parsed
//! result: the merchant keys the code carries, the amount, the fee and the
//! category. A user-presented payment code is 18 digits drawn by the gateway,
//! entered through the log, live for its lifetime in command time and single
//! use. Every successful payment is remembered for refunds as long as its
//! command's idempotency record is kept.

use std::cmp::Reverse;

use crate::command::{AccountId, AccountKind, CommandId, Detail, MerchantKey, RiskContext};
use crate::currency::Currency;
use crate::ledger::risk_gate::Payee;
use crate::ledger::{check_amount, signed, Books};
use crate::limits;
use crate::status::Status;

/// Where a user-presented payment code is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub enum PaymentCodeState {
    Live,
    Used,
    Expired,
}

/// A user-presented payment code.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub struct PaymentCode {
    pub code: u64,
    pub customer_slot: u32,
    /// Command time (ns) from which the code is expired.
    pub expires_at: u64,
    pub state: PaymentCodeState,
}

/// A successful payment, for refunds and spending categories.
#[derive(Clone, Copy, PartialEq, Eq, Debug, bincode::Encode, bincode::Decode)]
pub struct Payment {
    pub id: CommandId,
    pub payer_slot: u32,
    pub merchant_slot: u32,
    /// What the payer paid in all (amount plus fee), in minor units.
    pub amount: u64,
    /// Refunded so far; never above `amount`.
    pub refunded: u64,
    pub mcc: u16,
    pub timestamp: u64,
}

impl Books {
    /// Moves `amount` between two customer or merchant slots: the checks
    /// every movement shares (status, currency, funds, overflow), then the
    /// point of no return. Callers check the amount and resolve the slots.
    pub(super) fn move_money(
        &mut self,
        debit_slot: u32,
        credit_slot: u32,
        amount: u64,
        currency: Currency,
    ) -> Result<(), Status> {
        let credit_balance = self.check_move(debit_slot, credit_slot, amount, currency)?;
        // Point of no return.
        self.commit_move(debit_slot, credit_slot, amount, credit_balance);
        Ok(())
    }

    /// The checks of [`Self::move_money`]; returns the credit account's new
    /// balance for [`Self::commit_move`]. A payment that runs the risk rules
    /// checks, then asks the rules, then commits.
    pub(super) fn check_move(
        &self,
        debit_slot: u32,
        credit_slot: u32,
        amount: u64,
        currency: Currency,
    ) -> Result<i64, Status> {
        let debit = self.account(debit_slot);
        let credit = self.account(credit_slot);
        debit.check_movable()?;
        credit.check_movable()?;
        if debit.currency != currency || credit.currency != currency {
            return Err(Status::CurrencyMismatch);
        }
        if debit.available() < signed(amount) {
            return Err(Status::InsufficientFunds);
        }
        credit
            .balance
            .checked_add(signed(amount))
            .ok_or(Status::Overflow)
    }

    /// The mutation of [`Self::move_money`], after [`Self::check_move`]
    /// passed with no change to either account since.
    pub(super) fn commit_move(
        &mut self,
        debit_slot: u32,
        credit_slot: u32,
        amount: u64,
        credit_balance: i64,
    ) {
        // The debit cannot underflow: check_move found available >= amount.
        self.account_mut(debit_slot).balance -= signed(amount);
        self.account_mut(credit_slot).balance = credit_balance;
        self.note_movement(debit_slot, credit_slot, amount);
    }

    pub(super) fn merchant_slot(&self, id: AccountId, unknown: Status) -> Result<u32, Status> {
        let slot = self.user_slot(id, unknown)?;
        if self.account(slot).kind != AccountKind::Merchant {
            return Err(Status::NotAMerchant);
        }
        Ok(slot)
    }

    pub(super) fn register_merchant_key(
        &mut self,
        merchant: AccountId,
        key: MerchantKey,
        taken_elsewhere: bool,
    ) -> Result<(), Status> {
        let slot = self.merchant_slot(merchant, Status::UnknownAccount)?;
        self.account(slot).check_movable()?;
        if key == MerchantKey::NONE {
            return Err(Status::QrNoMerchantAccount);
        }
        if taken_elsewhere {
            return Err(Status::MerchantKeyTaken);
        }
        match self.merchant_keys.get(&key) {
            Some(&owner) if owner == slot => return Ok(()),
            Some(_) => return Err(Status::MerchantKeyTaken),
            None => {}
        }
        // Point of no return.
        self.merchant_keys.insert(key, slot);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // the fields of one command
    pub(super) fn pay_merchant_qr(
        &mut self,
        id: CommandId,
        payer: AccountId,
        keys: &[MerchantKey],
        amount: u64,
        fee: u64,
        currency: Currency,
        mcc: u16,
        context: RiskContext,
        timestamp: u64,
    ) -> Result<(), Status> {
        check_amount(amount)?;
        let total = amount.checked_add(fee).ok_or(Status::AmountTooLarge)?;
        check_amount(total)?;
        if mcc > limits::MCC_MAX {
            return Err(Status::QrBadField);
        }
        let payer_slot = self.user_slot(payer, Status::UnknownDebitAccount)?;
        let merchant_slot = keys
            .iter()
            .filter(|key| **key != MerchantKey::NONE)
            .find_map(|key| self.merchant_keys.get(key).copied())
            .ok_or(Status::UnknownMerchant)?;
        if merchant_slot == payer_slot {
            return Err(Status::SameAccount);
        }
        // A payer whose account is in another currency than the code's pays
        // through FX (crate::fx::apply): the risk step sees what leaves the
        // payer's account, in its currency.
        let payer_currency = self.account(payer_slot).currency;
        let (planned, outflow) = if payer_currency != currency {
            let amounts =
                self.fx_pay_check(payer_slot, merchant_slot, total, currency, timestamp)?;
            (Err(amounts), (amounts.pay, payer_currency))
        } else {
            let credit_balance = self.check_move(payer_slot, merchant_slot, total, currency)?;
            (Ok(credit_balance), (total, currency))
        };
        let mcc = if mcc == 0 {
            self.account(merchant_slot).mcc
        } else {
            mcc
        };
        let merchant = self.account(merchant_slot).id;
        let gate = self.risk_check(
            id,
            timestamp,
            payer_slot,
            outflow.0,
            outflow.1,
            Payee::merchant(merchant, mcc),
            context,
        )?;
        // Point of no return.
        match planned {
            Ok(credit_balance) => {
                self.commit_move(payer_slot, merchant_slot, total, credit_balance);
                self.risk_commit(id, gate);
            }
            Err(amounts) => {
                self.fx_pay_commit(id, payer_slot, merchant_slot, &amounts);
                self.risk_commit(id, gate);
                // A risk flag or budget warning says more than the amounts.
                if self.detail == Detail::None {
                    self.detail = Detail::FxConversion(amounts);
                }
            }
        }
        self.payments.insert(
            id,
            Payment {
                id,
                payer_slot,
                merchant_slot,
                amount: total,
                refunded: 0,
                mcc,
                timestamp,
            },
        );
        Ok(())
    }

    pub(super) fn issue_payment_code(
        &mut self,
        customer: AccountId,
        code: u64,
        lifetime_ms: u64,
        timestamp: u64,
        taken_elsewhere: bool,
    ) -> Result<(), Status> {
        if !(limits::PAYMENT_CODE_MIN..=limits::PAYMENT_CODE_MAX).contains(&code) {
            return Err(Status::InvalidPaymentCode);
        }
        if !(limits::PAYMENT_CODE_LIFETIME_MS_MIN..=limits::PAYMENT_CODE_LIFETIME_MS_MAX)
            .contains(&lifetime_ms)
        {
            return Err(Status::LifetimeOutOfRange);
        }
        let slot = self.user_slot(customer, Status::UnknownAccount)?;
        let account = self.account(slot);
        if account.kind != AccountKind::Customer {
            return Err(Status::NotACustomer);
        }
        account.check_movable()?;
        if account.codes_live >= limits::CUSTOMER_PAYMENT_CODES_LIVE_MAX {
            return Err(Status::TooManyPaymentCodes);
        }
        if taken_elsewhere || self.payment_codes.contains_key(&code) {
            return Err(Status::PaymentCodeTaken);
        }
        let expires_at = timestamp.saturating_add(lifetime_ms.saturating_mul(1_000_000));
        // Point of no return.
        self.account_mut(slot).codes_live += 1;
        self.payment_codes.insert(
            code,
            PaymentCode {
                code,
                customer_slot: slot,
                expires_at,
                state: PaymentCodeState::Live,
            },
        );
        self.code_expiries.push(Reverse((expires_at, code)));
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // the fields of one command
    pub(super) fn charge_payment_code(
        &mut self,
        id: CommandId,
        merchant: AccountId,
        code: u64,
        amount: u64,
        currency: Currency,
        context: RiskContext,
        timestamp: u64,
    ) -> Result<(), Status> {
        check_amount(amount)?;
        let merchant_slot = self.merchant_slot(merchant, Status::UnknownCreditAccount)?;
        let entry = *self
            .payment_codes
            .get(&code)
            .ok_or(Status::UnknownPaymentCode)?;
        match entry.state {
            PaymentCodeState::Live => {}
            PaymentCodeState::Used => return Err(Status::PaymentCodeUsed),
            PaymentCodeState::Expired => return Err(Status::PaymentCodeExpired),
        }
        // Expiry runs before each batch, so a live code has not expired yet.
        debug_assert!(entry.expires_at > timestamp);
        let credit_balance =
            self.check_move(entry.customer_slot, merchant_slot, amount, currency)?;
        let mcc = self.account(merchant_slot).mcc;
        let gate = self.risk_check(
            id,
            timestamp,
            entry.customer_slot,
            amount,
            currency,
            Payee::merchant(merchant, mcc),
            context,
        )?;
        // Point of no return. The money moves; the code is spent.
        self.commit_move(entry.customer_slot, merchant_slot, amount, credit_balance);
        self.finish_code(code, PaymentCodeState::Used);
        self.risk_commit(id, gate);
        self.payments.insert(
            id,
            Payment {
                id,
                payer_slot: entry.customer_slot,
                merchant_slot,
                amount,
                refunded: 0,
                mcc,
                timestamp,
            },
        );
        Ok(())
    }

    /// Ends a live code: it no longer counts against the customer's limit.
    pub(super) fn finish_code(&mut self, code: u64, state: PaymentCodeState) {
        let Some(entry) = self.payment_codes.get_mut(&code) else {
            return;
        };
        if entry.state != PaymentCodeState::Live {
            return;
        }
        entry.state = state;
        let slot = entry.customer_slot;
        let account = self.account_mut(slot);
        assert!(account.codes_live >= 1);
        account.codes_live -= 1;
    }

    /// At a code's expiry it stops being live; `PAYMENT_CODE_MEMORY_NS` later
    /// it is forgotten.
    pub(crate) fn expire_payment_codes(&mut self, timestamp: u64) {
        while let Some(&Reverse((at, code))) = self.code_expiries.peek() {
            if at > timestamp {
                break;
            }
            self.code_expiries.pop();
            let Some(entry) = self.payment_codes.get(&code).copied() else {
                continue;
            };
            if at < entry.expires_at {
                continue; // a stale entry
            }
            if at == entry.expires_at {
                self.finish_code(code, PaymentCodeState::Expired);
                self.code_expiries.push(Reverse((
                    at.saturating_add(limits::PAYMENT_CODE_MEMORY_NS),
                    code,
                )));
            } else {
                self.payment_codes.remove(&code);
            }
        }
    }

    /// `currency` must be the payment's: a refund typed in another currency
    /// would put the decimal point elsewhere.
    pub(super) fn refund(
        &mut self,
        payment: CommandId,
        amount: u64,
        currency: Currency,
        timestamp: u64,
    ) -> Result<(), Status> {
        check_amount(amount)?;
        let original = *self.payments.get(&payment).ok_or(Status::PaymentNotFound)?;
        if self.account(original.merchant_slot).currency != currency {
            return Err(Status::CurrencyMismatch);
        }
        let refundable = original.amount - original.refunded;
        if amount > refundable {
            return Err(Status::RefundExceedsPayment);
        }
        // What goes back to the payer: the amount, or for a cross-currency
        // payment its share of what the payer paid, in the payer's currency.
        let back = match self.fx.payments.get(&payment).copied() {
            Some(legs) => self.fx_refund(payment, &original, legs, amount)?,
            None => {
                self.plain_refund(payment, &original, amount, currency)?;
                amount
            }
        };
        let payer = self.account(original.payer_slot).id;
        self.risk.refund(payer, original.mcc, back, timestamp);
        Ok(())
    }

    fn plain_refund(
        &mut self,
        payment: CommandId,
        original: &Payment,
        amount: u64,
        currency: Currency,
    ) -> Result<(), Status> {
        self.move_money(
            original.merchant_slot,
            original.payer_slot,
            amount,
            currency,
        )?;
        if let Some(stored) = self.payments.get_mut(&payment) {
            stored.refunded += amount;
        }
        Ok(())
    }

    /// Adds merchant keys, payment codes and payments to a digest, each in
    /// key order.
    pub(super) fn digest_payments(&self, hasher: &mut blake3::Hasher) {
        let account_id = |slot: u32| self.accounts[slot as usize].id.0.to_le_bytes();

        let mut keys: Vec<(&MerchantKey, &u32)> = self.merchant_keys.iter().collect();
        keys.sort_unstable_by_key(|(key, _)| **key);
        hasher.update(&(keys.len() as u64).to_le_bytes());
        for (key, &slot) in keys {
            hasher.update(&key.0.to_le_bytes());
            hasher.update(&account_id(slot));
        }

        let mut codes: Vec<&PaymentCode> = self.payment_codes.values().collect();
        codes.sort_unstable_by_key(|code| code.code);
        hasher.update(&(codes.len() as u64).to_le_bytes());
        for code in codes {
            hasher.update(&code.code.to_le_bytes());
            hasher.update(&account_id(code.customer_slot));
            hasher.update(&code.expires_at.to_le_bytes());
            hasher.update(&[code.state as u8]);
        }

        let mut payments: Vec<&Payment> = self.payments.values().collect();
        payments.sort_unstable_by_key(|payment| payment.id);
        hasher.update(&(payments.len() as u64).to_le_bytes());
        for payment in payments {
            hasher.update(&payment.id.0.to_le_bytes());
            hasher.update(&account_id(payment.payer_slot));
            hasher.update(&account_id(payment.merchant_slot));
            hasher.update(&payment.amount.to_le_bytes());
            hasher.update(&payment.refunded.to_le_bytes());
            hasher.update(&payment.mcc.to_le_bytes());
            hasher.update(&payment.timestamp.to_le_bytes());
        }
    }
}
