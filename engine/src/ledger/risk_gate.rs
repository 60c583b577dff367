//! The ledger's side of the inline risk checks and budgets: builds the
//! outflow the rules see from a payment's accounts, freezes the paying
//! account when a rule says so (the ledger's own freeze), and leaves the
//! result's detail for `execute` to return. The rules and the state they
//! keep are in `crate::risk` ([`RiskBooks`](crate::risk::RiskBooks)).

use crate::budget::Category;
use crate::command::{AccountId, AccountKind, CommandId, RiskContext};
use crate::ledger::Books;
use crate::risk::books::{Gate, Outflow};
use crate::status::Status;

/// Who receives a customer's payment, as far as the rules care.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Payee {
    pub merchant: Option<AccountId>,
    pub mcc: Option<u16>,
    /// None: not spending (a withdrawal to the customer's own bank).
    pub category: Option<Category>,
}

impl Payee {
    /// A person-to-person transfer.
    pub const PERSON: Payee = Payee {
        merchant: None,
        mcc: None,
        category: Some(Category::CashAndTransfers),
    };
    /// A withdrawal to the customer's bank.
    pub const WITHDRAWAL: Payee = Payee {
        merchant: None,
        mcc: None,
        category: None,
    };

    pub fn merchant(merchant: AccountId, mcc: u16) -> Payee {
        Payee {
            merchant: Some(merchant),
            mcc: Some(mcc),
            category: Some(Category::from_mcc(mcc)),
        }
    }
}

impl Books {
    /// Call after the payment's own checks and before its point of no
    /// return. Ok(None): the payer is not a customer (no rules apply).
    /// Err: refused; the refusal is audited, the account frozen if the rule
    /// says so, and the detail left for `execute`.
    #[allow(clippy::too_many_arguments)] // the facts of one payment
    pub(super) fn risk_check(
        &mut self,
        id: CommandId,
        timestamp: u64,
        payer_slot: u32,
        amount: u64,
        currency: crate::currency::Currency,
        payee: Payee,
        context: RiskContext,
    ) -> Result<Option<Gate>, Status> {
        if !context.is_valid() {
            return Err(Status::InvalidRiskContext);
        }
        let payer = self.account(payer_slot);
        if payer.kind != AccountKind::Customer {
            return Ok(None);
        }
        let outflow = Outflow {
            owner: payer.owner,
            account: payer.id,
            kyc_tier: payer.kyc_tier,
            currency,
            amount,
            merchant: payee.merchant,
            mcc: payee.mcc,
            category: payee.category,
            context,
        };
        let payer_id = payer.id;
        match self.risk.check(id, timestamp, outflow) {
            Ok(gate) => Ok(Some(gate)),
            Err(refusal) => {
                if refusal.freeze {
                    // The payment's checks found the account active, so the
                    // ledger's freeze cannot refuse.
                    let frozen = self.freeze(payer_id);
                    debug_assert!(frozen.is_ok());
                }
                self.detail = refusal.detail;
                Err(refusal.status)
            }
        }
    }

    /// Call once the payment committed.
    pub(super) fn risk_commit(&mut self, id: CommandId, gate: Option<Gate>) {
        if let Some(gate) = gate {
            self.detail = self.risk.commit(id, &gate);
        }
    }
}
