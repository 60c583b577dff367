//! The memory budget of the ledger's per-command tables: what each holds
//! now, what bounds it, and the bytes it may take at that bound.
//!
//! | table | bound | rule when full |
//! |---|---|---|
//! | accounts | `ACCOUNTS_MAX` (64 Mi) | `ledger_full` |
//! | withdrawal holds | pending: accounts x `account_holds_pending_max`; finished: kept with their command's idempotency record (at most `idempotency_records_max`) | `too_many_holds`; finished ones go with their record |
//! | payment codes | live: accounts x `customer_payment_codes_live_max` | `too_many_payment_codes`; used and expired ones are forgotten 600 s after their expiry |
//! | payments kept for refunds | kept with their command's idempotency record (at most `idempotency_records_max`) | the oldest go with their record (a refund of it gets `payment_not_found`) |
//! | FX quotes | open: accounts x `account_fx_quotes_open_max` | `fx_too_many_quotes`; used and expired ones are forgotten 600 s after their expiry |
//! | risk and budget state | one fixed-size state per customer (and budget per account) | grows only with accounts |
//! | funding instruments | `customer_instruments_max` bound per customer (unbound ones remembered until a bind needs the place); `instruments_max` per ledger | `too_many_instruments`; `instruments_full` |
//!
//! The per-owner caps are checked on the shard that owns the account, so the
//! bound is the same on any shard count. Codes and quotes finished in the
//! last 600 s are bounded by the rate of the commands that made them, not by
//! configuration: docs/operations.md says how to add them when sizing.
//!
//! Bytes per entry are the entry's size plus the hash table's control byte
//! at its 7/8 load (a table just grown may take up to twice that), plus the
//! expiry queue's entry where the table has one, plus a boxed state's
//! allocation; the idempotency record table is apart (the router's, fixed
//! at start).

use std::mem::size_of;

use super::{Account, AccountId, CommandId, Hold, Instrument, Ledger, Payment, PaymentCode};
use crate::budget::BudgetState;
use crate::fx::FxQuoteRecord;
use crate::history::MovementInstrument;
use crate::instrument::InstrumentId;
use crate::ledger::instruments::Usable;
use crate::risk::audit::AuditRing;
use crate::risk::state::CustomerRiskState;
use crate::risk::BindRing;

/// The tables [`Ledger::tables`] reports, in this order.
pub const TABLES: usize = 7;

/// Names of the tables, as in metrics labels and status fields.
pub const TABLE_NAMES: [&str; TABLES] = [
    "accounts",
    "holds",
    "payment_codes",
    "payments",
    "fx_quotes",
    "risk_customers",
    "instruments",
];

/// Status fields of each table: its entries and its entries at the bound.
pub const TABLE_ENTRIES_FIELDS: [[&str; 2]; TABLES] = [
    ["table_accounts", "table_accounts_max"],
    ["table_holds", "table_holds_max"],
    ["table_payment_codes", "table_payment_codes_max"],
    ["table_payments", "table_payments_max"],
    ["table_fx_quotes", "table_fx_quotes_max"],
    ["table_risk_customers", "table_risk_customers_max"],
    ["table_instruments", "table_instruments_max"],
];

/// One table: entries now, its bound (`entries_per_account` x accounts +
/// `entries_fixed`, from the configuration), and bytes an entry takes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TableUse {
    pub name: &'static str,
    pub entries: u64,
    pub entries_per_account: u64,
    pub entries_fixed: u64,
    pub entry_bytes: u64,
    /// Accounts when counted (the bound now is `entries_max(accounts)`).
    pub accounts: u64,
}

impl TableUse {
    /// Entries the table may hold with `accounts` accounts.
    pub fn entries_max(&self, accounts: u64) -> u64 {
        self.entries_per_account
            .saturating_mul(accounts)
            .saturating_add(self.entries_fixed)
    }

    /// Bytes the table may take with `accounts` accounts.
    pub fn budget_bytes(&self, accounts: u64) -> u64 {
        self.entries_max(accounts).saturating_mul(self.entry_bytes)
    }

    /// Bytes the table's entries take now.
    pub fn bytes(&self) -> u64 {
        self.entries.saturating_mul(self.entry_bytes)
    }
}

/// Bytes of one hash-table entry of `(K, V)` at the table's full load.
const fn hashed<K, V>() -> u64 {
    ((size_of::<(K, V)>() + 1) * 8).div_ceil(7) as u64
}

/// Bytes of one ordered-map entry (a B-tree holds 6 to 11 a node).
const fn ordered<K, V>() -> u64 {
    (size_of::<(K, V)>() * 11).div_ceil(6) as u64
}

/// A boxed value's allocation, with the allocator's bookkeeping.
const fn boxed<T>() -> u64 {
    size_of::<T>() as u64 + 16
}

/// An expiry queue's entry: (time, id).
const EXPIRY_BYTES: u64 = size_of::<(u64, CommandId)>() as u64;

impl Ledger {
    /// Every per-command table's use and bound (see the module
    /// documentation), in [`TABLE_NAMES`] order. O(1): the tables' lengths.
    pub fn tables(&self) -> [TableUse; TABLES] {
        let books = &self.books;
        let config = &self.config;
        let accounts = books.accounts.len() as u64;
        let records_max = config.idempotency_records_max as u64;
        let table =
            |index: usize, entries: usize, per_account: u64, fixed: u64, bytes: u64| TableUse {
                name: TABLE_NAMES[index],
                entries: entries as u64,
                entries_per_account: per_account,
                entries_fixed: fixed,
                entry_bytes: bytes,
                accounts,
            };
        [
            table(
                0,
                books.accounts.len(),
                1,
                0,
                size_of::<Account>() as u64 + hashed::<AccountId, u32>(),
            ),
            // Pending per account; finished ones live with their record.
            // A pending hold to an instrument also has the instrument its
            // posting shows (counted for every hold: an over-estimate).
            table(
                1,
                books.holds.len(),
                u64::from(config.account_holds_pending_max),
                records_max,
                hashed::<CommandId, Hold>()
                    + EXPIRY_BYTES
                    + hashed::<CommandId, (u64, MovementInstrument)>(),
            ),
            table(
                2,
                books.payment_codes.len(),
                u64::from(config.customer_payment_codes_live_max),
                0,
                hashed::<u64, PaymentCode>() + EXPIRY_BYTES,
            ),
            // Each lives with its command's record (local, remote and the
            // FX legs of one payment: counted as one entry's size each).
            table(
                3,
                books.payments.len() + books.remote_payments.len() + books.fx.payments.len(),
                0,
                records_max,
                hashed::<CommandId, (Payment, AccountId)>(),
            ),
            table(
                4,
                books.fx.quotes.len(),
                u64::from(config.account_fx_quotes_open_max),
                0,
                ordered::<CommandId, FxQuoteRecord>() + ordered::<(u64, CommandId), ()>(),
            ),
            table(
                5,
                books.risk.customers.len(),
                1,
                0,
                hashed::<u64, usize>()
                    + boxed::<CustomerRiskState>()
                    + ordered::<u64, AuditRing>()
                    + hashed::<AccountId, usize>()
                    + boxed::<BudgetState>(),
            ),
            // Per customer account at most the per-customer cap (an owner
            // with several currency accounts is counted once per account:
            // an over-estimate); the record, the funding check's entry (with
            // the instrument rules' state), the number in the owner's list,
            // and the owner's bind times (one per customer who bound: at
            // most one per instrument, so counted per instrument).
            table(
                6,
                books.instruments.len(),
                u64::from(config.customer_instruments_max),
                0,
                hashed::<InstrumentId, Instrument>()
                    + hashed::<InstrumentId, Usable>()
                    + size_of::<u32>() as u64
                    + hashed::<u64, BindRing>(),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LedgerConfig;

    #[test]
    fn the_bounds_follow_the_configuration_and_the_accounts() {
        let config = LedgerConfig {
            idempotency_records_max: 10_000,
            account_holds_pending_max: 2,
            customer_payment_codes_live_max: 3,
            account_fx_quotes_open_max: 4,
            ..LedgerConfig::default()
        };
        let ledger = Ledger::new(config);
        let tables = ledger.tables();
        let names: Vec<&str> = tables.iter().map(|table| table.name).collect();
        assert_eq!(names, TABLE_NAMES);
        // No accounts: only what lives with the records is budgeted.
        assert_eq!(tables[1].entries_max(0), 10_000);
        assert_eq!(tables[2].entries_max(0), 0);
        assert_eq!(tables[3].entries_max(0), 10_000);
        // A million accounts: the per-owner caps times the accounts.
        assert_eq!(tables[0].entries_max(1_000_000), 1_000_000);
        assert_eq!(tables[1].entries_max(1_000_000), 2_010_000);
        assert_eq!(tables[2].entries_max(1_000_000), 3_000_000);
        assert_eq!(tables[4].entries_max(1_000_000), 4_000_000);
        assert_eq!(tables[5].entries_max(1_000_000), 1_000_000);
        assert_eq!(tables[6].entries_max(1_000_000), 8_000_000);
        assert!(tables.iter().all(|table| table.entries == 0));
        assert!(tables.iter().all(|table| table.entry_bytes > 0));
    }
}
