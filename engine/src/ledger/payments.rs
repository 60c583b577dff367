//! What QR payments (merchant-presented and user-presented codes) and
//! refunds keep: merchant keys, payment codes and payment records. The
//! payments and refunds themselves are two-party commands, decided and
//! applied by their halves (`ledger/halves.rs`) on any shard count.
//!
//! QR payloads are parsed at the edge (api); the ledger sees the parsed
//! result: the merchant keys the code carries, the amount, the fee and the
//! category. A user-presented payment code is 18 digits drawn by the gateway,
//! entered through the log, live for its lifetime in command time and single
//! use. Every successful payment is remembered for refunds as long as its
//! command's idempotency record is kept.

use std::cmp::Reverse;

use crate::command::{AccountId, AccountKind, CommandId, MerchantKey};
use crate::ledger::Books;
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
        if account.codes_live >= self.caps.payment_codes_live {
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

    /// Adds merchant keys, payment codes and payments to a digest, each in
    /// key order.
    pub(super) fn digest_payments(&self, hasher: &mut crate::digest::DigestHasher) {
        let account_id = |slot: u32| self.accounts[slot as usize].id.0.to_le_bytes();

        // Each sorted by a key copied next to a reference (no look-through
        // at every comparison).
        let mut keys: Vec<(MerchantKey, u32)> = self
            .merchant_keys
            .iter()
            .map(|(key, slot)| (*key, *slot))
            .collect();
        keys.sort_unstable_by_key(|(key, _)| *key);
        hasher.update(&(keys.len() as u64).to_le_bytes());
        // Each item's fields go to the hasher in one update (`Fields`).
        use crate::digest::Fields;
        for (key, slot) in keys {
            Fields::<24>::new()
                .put(&key.0.to_le_bytes())
                .put(&account_id(slot))
                .hash_into(hasher);
        }

        let mut codes: Vec<(u64, &PaymentCode)> = self
            .payment_codes
            .values()
            .map(|code| (code.code, code))
            .collect();
        codes.sort_unstable_by_key(|(code, _)| *code);
        hasher.update(&(codes.len() as u64).to_le_bytes());
        for (_, code) in codes {
            Fields::<25>::new()
                .put(&code.code.to_le_bytes())
                .put(&account_id(code.customer_slot))
                .put(&code.expires_at.to_le_bytes())
                .put(&[code.state as u8])
                .hash_into(hasher);
        }

        let mut payments: Vec<([u64; 2], &Payment)> = self
            .payments
            .values()
            .map(|payment| (crate::digest::id_key(payment.id.0), payment))
            .collect();
        payments.sort_unstable_by_key(|(key, _)| *key);
        hasher.update(&(payments.len() as u64).to_le_bytes());
        // In id order the payments and their payers' accounts are random
        // places in memory: fetch them some entries ahead (two steps: a
        // payment must be in the cache before its payer's slot is read).
        const AHEAD: usize = 16;
        for at in 0..payments.len() {
            if let Some((_, ahead)) = payments.get(at + AHEAD) {
                crate::prefetch::prefetch(*ahead, 1);
            }
            if let Some((_, ahead)) = payments.get(at + AHEAD / 2) {
                if let Some(account) = self.accounts.get(ahead.payer_slot as usize) {
                    crate::prefetch::prefetch(account, 1);
                }
            }
            let payment = payments[at].1;
            Fields::<58>::new()
                .put(&payment.id.0.to_le_bytes())
                .put(&account_id(payment.payer_slot))
                .put(&account_id(payment.merchant_slot))
                .put(&payment.amount.to_le_bytes())
                .put(&payment.refunded.to_le_bytes())
                .put(&payment.mcc.to_le_bytes())
                .put(&payment.timestamp.to_le_bytes())
                .hash_into(hasher);
        }
    }
}
