//! The ledger's side of the inline risk checks and budgets: builds the
//! outflow the rules see from a payment's accounts, freezes the paying
//! account when a rule says so (the ledger's own freeze), and leaves the
//! result's detail for `execute` to return. The rules and the state they
//! keep are in `crate::risk` ([`RiskBooks`](crate::risk::RiskBooks)).

use crate::budget::Category;
use crate::command::{AccountId, AccountKind, CommandId, RiskContext};
use crate::ledger::Books;
use crate::risk::books::{Gate, Outflow, Refusal};
use crate::risk::InstrumentFacts;
use crate::status::Status;

/// Who receives a customer's payment, as far as the rules care.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Payee {
    pub merchant: Option<AccountId>,
    pub mcc: Option<u16>,
    /// None: not spending (a withdrawal to the customer's own bank).
    pub category: Option<Category>,
    /// A withdrawal hold's instrument (the instrument rules).
    pub instrument: Option<InstrumentFacts>,
}

impl Payee {
    /// A person-to-person transfer.
    pub const PERSON: Payee = Payee {
        merchant: None,
        mcc: None,
        category: Some(Category::CashAndTransfers),
        instrument: None,
    };
    /// A withdrawal to the customer's bank.
    pub const WITHDRAWAL: Payee = Payee {
        merchant: None,
        mcc: None,
        category: None,
        instrument: None,
    };

    /// A withdrawal to the customer's bank, naming the instrument if the
    /// command did.
    pub fn withdrawal(instrument: Option<InstrumentFacts>) -> Payee {
        Payee {
            instrument,
            ..Payee::WITHDRAWAL
        }
    }

    pub fn merchant(merchant: AccountId, mcc: u16) -> Payee {
        Payee {
            merchant: Some(merchant),
            mcc: Some(mcc),
            category: Some(Category::from_mcc(mcc)),
            instrument: None,
        }
    }
}

/// Why a payment stopped at the risk step.
#[derive(Clone, Copy, Debug)]
// A short-lived value on the stack, as large as the gate a pass returns
// (see `risk_evaluate`): boxing the refusal would allocate on every refusal.
#[allow(clippy::large_enum_variant)]
pub(crate) enum RiskStop {
    /// The payment's risk context is malformed.
    InvalidContext,
    /// The policy refused it.
    Refused(Refusal),
}

impl RiskStop {
    pub(crate) fn status(&self) -> Status {
        match self {
            RiskStop::InvalidContext => Status::InvalidRiskContext,
            RiskStop::Refused(refusal) => refusal.status,
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
        self.risk_evaluate(timestamp, payer_slot, amount, currency, payee, context)
            .map_err(|stop| {
                self.risk_refuse(id, payer_slot, &stop);
                stop.status()
            })
    }

    /// The risk step's decision, changing nothing (see
    /// [`RiskBooks::evaluate`](crate::risk::RiskBooks::evaluate)).
    // The Ok value (a gate) is as large as the refusal, so boxing the
    // refusal would add an allocation without making the result smaller.
    #[allow(clippy::result_large_err)]
    #[inline]
    pub(crate) fn risk_evaluate(
        &self,
        timestamp: u64,
        payer_slot: u32,
        amount: u64,
        currency: crate::currency::Currency,
        payee: Payee,
        context: RiskContext,
    ) -> Result<Option<Gate>, RiskStop> {
        if !context.is_valid() {
            return Err(RiskStop::InvalidContext);
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
            instrument: payee.instrument,
        };
        self.risk
            .evaluate(timestamp, outflow)
            .map(Some)
            .map_err(RiskStop::Refused)
    }

    /// The payment stopped at the risk step: a refusal is audited, the
    /// account frozen if the rule says so, and the detail left for the
    /// result.
    pub(crate) fn risk_refuse(&mut self, id: CommandId, payer_slot: u32, stop: &RiskStop) {
        let RiskStop::Refused(refusal) = stop else {
            return;
        };
        self.risk.refuse(id, refusal);
        if refusal.freeze {
            // The payment's checks found the account active, so the
            // ledger's freeze cannot refuse.
            let payer_id = self.account(payer_slot).id;
            let frozen = self.freeze(payer_id);
            debug_assert!(frozen.is_ok());
        }
        self.detail = refusal.detail;
    }

    /// Call once the payment committed.
    pub(crate) fn risk_commit(&mut self, id: CommandId, gate: Option<&Gate>) {
        if let Some(gate) = gate {
            self.detail = self.risk.commit(id, gate);
        }
    }
}
