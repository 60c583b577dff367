//! Audit trail of risk decisions: every decision that is not a plain approve
//! (flag, step-up, decline, or a step-up passed by a verified second factor),
//! with the rule that fired and its figures, kept per customer in a ring of
//! [`AUDIT_ENTRIES_MAX`] entries (the oldest go first).

use std::collections::BTreeMap;

use bincode::{Decode, Encode};

use super::bounds::AUDIT_ENTRIES_MAX;
use super::codes::{RuleId, RuleSet, Verdict};
use super::rules::{Decision, RuleFigures};
use super::PaymentContext;
use crate::command::CommandId;
use crate::currency::Currency;

/// One audited decision.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct AuditEntry {
    /// The command's sequencer timestamp.
    pub timestamp: u64,
    /// The command that was evaluated.
    pub command: CommandId,
    pub currency: Currency,
    pub amount: u64,
    pub verdict: Verdict,
    /// The deciding rule (None only for a payment whose step-up rules were
    /// all passed by a verified step-up).
    pub rule: Option<RuleId>,
    pub figures: RuleFigures,
    pub freeze: bool,
    pub fired: RuleSet,
    pub flags: RuleSet,
    pub stepped_up: RuleSet,
}

impl AuditEntry {
    /// All zeros: fills unused ring slots and answers for a missing entry.
    pub const EMPTY: AuditEntry = AuditEntry {
        timestamp: 0,
        command: CommandId(0),
        currency: Currency::from_raw(0),
        amount: 0,
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

    pub fn new(command: CommandId, payment: &PaymentContext, decision: &Decision) -> AuditEntry {
        AuditEntry {
            timestamp: payment.timestamp,
            command,
            currency: payment.currency,
            amount: payment.amount,
            verdict: decision.verdict,
            rule: decision.rule,
            figures: decision.figures,
            freeze: decision.freeze,
            fired: decision.fired,
            flags: decision.flags,
            stepped_up: decision.stepped_up,
        }
    }

    fn digest_into(&self, hasher: &mut crate::digest::DigestHasher) {
        hasher.update(&self.timestamp.to_le_bytes());
        hasher.update(&self.command.0.to_le_bytes());
        hasher.update(&self.currency.numeric().to_le_bytes());
        hasher.update(&self.amount.to_le_bytes());
        hasher.update(&[
            self.verdict.code(),
            self.rule.map_or(0, RuleId::code),
            u8::from(self.freeze),
        ]);
        hasher.update(&self.figures.limit.to_le_bytes());
        hasher.update(&self.figures.observed.to_le_bytes());
        hasher.update(&self.fired.0.to_le_bytes());
        hasher.update(&self.flags.0.to_le_bytes());
        hasher.update(&self.stepped_up.0.to_le_bytes());
    }
}

/// One customer's audited decisions: a ring of the newest
/// [`AUDIT_ENTRIES_MAX`].
#[derive(Clone, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct AuditRing {
    entries: [AuditEntry; AUDIT_ENTRIES_MAX],
    len: u8,
    next: u8,
}

impl Default for AuditRing {
    fn default() -> Self {
        AuditRing {
            entries: [AuditEntry::EMPTY; AUDIT_ENTRIES_MAX],
            len: 0,
            next: 0,
        }
    }
}

impl AuditRing {
    pub fn push(&mut self, entry: AuditEntry) {
        let slot = usize::from(self.next) % AUDIT_ENTRIES_MAX;
        self.entries[slot] = entry;
        self.next = ((slot + 1) % AUDIT_ENTRIES_MAX) as u8;
        self.len = (usize::from(self.len) + 1).min(AUDIT_ENTRIES_MAX) as u8;
    }

    pub fn len(&self) -> usize {
        usize::from(self.len).min(AUDIT_ENTRIES_MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries, newest first.
    pub fn iter(&self) -> impl Iterator<Item = &AuditEntry> + '_ {
        let next = usize::from(self.next) % AUDIT_ENTRIES_MAX;
        (0..self.len())
            .map(move |age| &self.entries[(next + AUDIT_ENTRIES_MAX - 1 - age) % AUDIT_ENTRIES_MAX])
    }

    /// Canonical bytes: count u8, then each entry newest first.
    pub fn digest_into(&self, hasher: &mut crate::digest::DigestHasher) {
        hasher.update(&[self.len() as u8]);
        for entry in self.iter() {
            entry.digest_into(hasher);
        }
    }
}

/// Audited decisions of all customers of a shard, by customer (owner) id. A
/// `BTreeMap`, so iteration and the digest follow customer order; it holds one
/// bounded ring per customer that ever had an audited decision.
#[derive(Clone, PartialEq, Eq, Debug, Default, Encode, Decode)]
pub struct AuditLog {
    customers: BTreeMap<u64, AuditRing>,
}

impl AuditLog {
    pub fn new() -> AuditLog {
        AuditLog::default()
    }

    /// Records `decision` for `customer` if it is auditable
    /// ([`Decision::is_auditable`]); returns whether it did.
    pub fn record(
        &mut self,
        customer: u64,
        command: CommandId,
        payment: &PaymentContext,
        decision: &Decision,
    ) -> bool {
        if !decision.is_auditable() {
            return false;
        }
        self.push(customer, AuditEntry::new(command, payment, decision));
        true
    }

    pub fn push(&mut self, customer: u64, entry: AuditEntry) {
        self.customers.entry(customer).or_default().push(entry);
    }

    /// A customer's audited decisions, newest first.
    pub fn entries(&self, customer: u64) -> impl Iterator<Item = &AuditEntry> + '_ {
        self.customers
            .get(&customer)
            .into_iter()
            .flat_map(AuditRing::iter)
    }

    /// Every customer's ring, in customer order (for checkpoints).
    pub fn rings(&self) -> impl Iterator<Item = (u64, &AuditRing)> + '_ {
        self.customers
            .iter()
            .map(|(customer, ring)| (*customer, ring))
    }

    /// Puts back a customer's ring read from a checkpoint; false if the
    /// customer already has one.
    pub fn insert_ring(&mut self, customer: u64, ring: AuditRing) -> bool {
        match self.customers.entry(customer) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(entry) => {
                entry.insert(ring);
                true
            }
        }
    }

    /// Customers with at least one audited decision.
    pub fn customers_len(&self) -> usize {
        self.customers.len()
    }

    /// Canonical bytes: customer count u64, then per customer in id order:
    /// id u64 and its ring ([`AuditRing::digest_into`]).
    pub fn digest_into(&self, hasher: &mut crate::digest::DigestHasher) {
        hasher.update(&(self.customers.len() as u64).to_le_bytes());
        for (customer, ring) in &self.customers {
            hasher.update(&customer.to_le_bytes());
            ring.digest_into(hasher);
        }
    }
}
