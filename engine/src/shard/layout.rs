//! Splitting a lone ledger's state over N shards, and merging it back.
//!
//! A checkpoint is always written as one lone-ledger state (house parts
//! summed into the public house accounts, records in global arrival order),
//! so a restart may split it over any number of shards: owners go to
//! [`shard_of_owner`]; each house account's balance goes to part 0, and each
//! shard's part carries the pending credits of the holds on that shard.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::growing_map::GrowingMap;
use dashmap::DashMap;
use rustc_hash::{FxBuildHasher, FxHashMap};

use super::records::{RecordRing, RouterRecord};

use super::router::{CodeEntry, HoldEntry, HoldKnown, KeyEntry, QuoteEntry, RouterTables};
use super::{shard_of_owner, Placement};
use crate::command::{AccountId, AccountKind, CommandId, HouseRole};
use crate::ledger::{Account, IdempotencyRecord, Ledger, LedgerConfig, Records};
use crate::limits;

/// A lone ledger's state split over shards, with the router's tables.
pub(super) struct Split {
    pub(super) config: LedgerConfig,
    pub(super) sequence: u64,
    pub(super) timestamp: u64,
    pub(super) ledgers: Vec<Ledger>,
    pub(super) tables: RouterTables,
}

/// Adds a house part's money to the sum of the parts.
pub(super) fn add_house_part(total: &mut Account, part: &Account) {
    total.balance = total.balance.saturating_add(part.balance);
    total.debits_pending = total.debits_pending.saturating_add(part.debits_pending);
    total.credits_pending = total.credits_pending.saturating_add(part.credits_pending);
    total.holds_pending = total.holds_pending.saturating_add(part.holds_pending);
}

pub(super) fn split(mut ledger: Ledger, shards: usize) -> Split {
    let config = ledger.config;
    // Moved out, not copied: the risk states are the largest table.
    let risk = std::mem::take(&mut ledger.books.risk);
    // Each part gets its share of every table up front (owners hash evenly
    // over the shards), so that no table rehashes while it fills.
    let share = |len: usize| len / shards + len / (shards * 8) + 64;
    let source = &ledger.books;
    let mut ledgers: Vec<Ledger> = (0..shards)
        .map(|shard| {
            let mut part = Ledger::with_records(config, Records::shard());
            part.sequence = ledger.sequence;
            part.timestamp = ledger.timestamp;
            part.books.house_part = shard as u32;
            // Global settings: every shard has the whole table.
            part.books.fx.rates = ledger.books.fx.rates.clone();
            part.books.fx.floors = ledger.books.fx.floors.clone();
            part.books.accounts.reserve(share(source.accounts.len()));
            part.books.index.reserve(share(source.accounts.len()));
            part.books.holds.reserve(share(source.holds.len()));
            part.books.payments.reserve(share(source.payments.len()));
            part.books
                .payment_codes
                .reserve(share(source.payment_codes.len()));
            part
        })
        .collect();
    let books = &ledger.books;
    let directory: DashMap<AccountId, Placement, FxBuildHasher> =
        DashMap::with_capacity_and_hasher(books.accounts.len(), FxBuildHasher);
    // Old slot → (shard, new slot).
    let mut place: Vec<(u32, u32)> = Vec::with_capacity(books.accounts.len());
    for account in &books.accounts {
        if account.kind == AccountKind::House {
            // Part 0 takes the balance; pending credits follow the holds.
            let mut part = *account;
            part.credits_pending = 0;
            let slot = ledgers[0].books.push_account(part);
            place.push((0, slot));
        } else {
            let shard = shard_of_owner(account.owner, shards);
            let slot = ledgers[shard].books.push_account(*account);
            directory.insert(
                account.id,
                Placement {
                    shard: shard as u32,
                    currency: account.currency,
                },
            );
            place.push((shard as u32, slot));
        }
    }
    let house_slot = |ledgers: &mut Vec<Ledger>, shard: u32, public: &Account| -> u32 {
        let id = public.id.house_part(shard);
        let books = &mut ledgers[shard as usize].books;
        match books.index.get(&id) {
            Some(&slot) => slot,
            None => books.push_account(Account {
                id,
                balance: 0,
                debits_pending: 0,
                credits_pending: 0,
                holds_pending: 0,
                ..*public
            }),
        }
    };

    // FX house accounts: every shard converts against its own parts.
    for account in &books.accounts {
        let role = (account.id.0 >> 48) & 0xFF;
        let fx = role == HouseRole::FxLiquidity as u64 || role == HouseRole::FxRevenue as u64;
        if account.kind == AccountKind::House && fx {
            for shard in 1..shards as u32 {
                house_slot(&mut ledgers, shard, account);
            }
        }
    }

    let mut holds = GrowingMap::with_capacity_and_hasher(books.holds.len(), FxBuildHasher);
    let mut hold_homes: FxHashMap<CommandId, u32> =
        FxHashMap::with_capacity_and_hasher(books.holds.len(), FxBuildHasher);
    for hold in books.holds.values() {
        let (shard, account_slot) = place[hold.account_slot as usize];
        let public = books.accounts[hold.house_slot as usize];
        let house = house_slot(&mut ledgers, shard, &public);
        let target = &mut ledgers[shard as usize].books;
        if hold.state == crate::ledger::HoldState::Pending {
            let part = &mut target.accounts[house as usize];
            part.credits_pending = part.credits_pending.saturating_add(hold.amount);
        }
        let mut moved = *hold;
        moved.account_slot = account_slot;
        moved.house_slot = house;
        target.holds.insert(hold.id, moved);
        holds.insert(
            hold.id,
            HoldEntry {
                shard,
                expires_at: hold.expires_at,
                state: if hold.state == crate::ledger::HoldState::Pending {
                    HoldKnown::Pending
                } else {
                    HoldKnown::Finished
                },
                arrival: u64::MAX,
                unresolved: 0,
            },
        );
        hold_homes.insert(hold.id, shard);
    }
    for &Reverse((at, id)) in books.hold_expiries.iter() {
        if let Some(&shard) = hold_homes.get(&id) {
            ledgers[shard as usize]
                .books
                .hold_expiries
                .push(Reverse((at, id)));
        }
    }
    let mut hold_expiries = BinaryHeap::new();
    for (id, entry) in &holds {
        hold_expiries.push(Reverse((entry.expires_at, *id)));
    }

    let mut keys = GrowingMap::default();
    for (key, &slot) in &books.merchant_keys {
        let (shard, new_slot) = place[slot as usize];
        ledgers[shard as usize]
            .books
            .merchant_keys
            .insert(*key, new_slot);
        keys.insert(
            *key,
            KeyEntry {
                merchant: books.accounts[slot as usize].id,
                resolved: true,
                arrival: u64::MAX,
            },
        );
    }

    let mut codes = GrowingMap::with_capacity_and_hasher(books.payment_codes.len(), FxBuildHasher);
    let mut code_forgets = BinaryHeap::with_capacity(books.payment_codes.len());
    for code in books.payment_codes.values() {
        let (shard, slot) = place[code.customer_slot as usize];
        let mut moved = *code;
        moved.customer_slot = slot;
        ledgers[shard as usize]
            .books
            .payment_codes
            .insert(code.code, moved);
        let forget_at = code
            .expires_at
            .saturating_add(limits::PAYMENT_CODE_MEMORY_NS);
        codes.insert(
            code.code,
            CodeEntry {
                customer: books.accounts[code.customer_slot as usize].id,
                shard,
                forget_at,
                resolved: true,
                arrival: u64::MAX,
            },
        );
        code_forgets.push(Reverse((forget_at, code.code)));
    }
    for &Reverse((at, code)) in books.code_expiries.iter() {
        if let Some(entry) = codes.get(&code) {
            ledgers[entry.shard as usize]
                .books
                .code_expiries
                .push(Reverse((at, code)));
        }
    }

    let mut payment_parties: FxHashMap<CommandId, (u32, (AccountId, AccountId))> =
        FxHashMap::with_capacity_and_hasher(books.payments.len(), FxBuildHasher);
    for payment in books.payments.values() {
        let (merchant_shard, merchant_slot) = place[payment.merchant_slot as usize];
        let (payer_shard, payer_slot) = place[payment.payer_slot as usize];
        let payer = books.accounts[payment.payer_slot as usize].id;
        let merchant = books.accounts[payment.merchant_slot as usize].id;
        let mut moved = *payment;
        moved.merchant_slot = merchant_slot;
        let target = &mut ledgers[merchant_shard as usize].books;
        if payer_shard == merchant_shard {
            moved.payer_slot = payer_slot;
            target.payments.insert(payment.id, moved);
        } else {
            moved.payer_slot = u32::MAX;
            target.remote_payments.insert(payment.id, (moved, payer));
        }
        payment_parties.insert(payment.id, (merchant_shard, (merchant, payer)));
    }

    // FX quotes live with their paying account; a cross-currency payment's
    // legs with both its merchant and its payer.
    let mut quotes = GrowingMap::default();
    let mut quote_forgets = BinaryHeap::new();
    let mut quote_homes: FxHashMap<CommandId, u32> = FxHashMap::default();
    for quote in books.fx.quotes.values() {
        let (shard, from_slot) = place[quote.from_slot as usize];
        let (to_shard, to_slot) = place[quote.to_slot as usize];
        // One owner's accounts, so one shard; a state that says otherwise
        // is not one a ledger makes: the quote is dropped.
        if to_shard != shard {
            continue;
        }
        let mut moved = *quote;
        moved.from_slot = from_slot;
        moved.to_slot = to_slot;
        ledgers[shard as usize]
            .books
            .fx
            .quotes
            .insert(quote.id, moved);
        let forget_at = quote
            .amounts
            .expires_at
            .saturating_add(limits::FX_QUOTE_MEMORY_NS);
        quotes.insert(
            quote.id,
            QuoteEntry {
                shard,
                forget_at,
                amounts: Some(quote.amounts),
                resolved: true,
                arrival: u64::MAX,
            },
        );
        quote_forgets.push(Reverse((forget_at, quote.id)));
        quote_homes.insert(quote.id, shard);
    }
    for &(at, id) in &books.fx.quote_expiries {
        if let Some(&shard) = quote_homes.get(&id) {
            ledgers[shard as usize]
                .books
                .fx
                .quote_expiries
                .insert((at, id));
        }
    }
    for part in &mut ledgers {
        part.books.fx.rebuild_open();
    }
    for (id, legs) in &books.fx.payments {
        let Some(payment) = books.payments.get(id) else {
            continue;
        };
        let (merchant_shard, _) = place[payment.merchant_slot as usize];
        let (payer_shard, _) = place[payment.payer_slot as usize];
        for shard in [merchant_shard, payer_shard] {
            ledgers[shard as usize].books.fx.payments.insert(*id, *legs);
        }
    }

    // Records: each on the shard of what lives as long as it (a payment, a
    // hold), others on shard 0; the router keeps them all in global order.
    // The table is allocated once, here, for the configured cap (and never
    // less than what the checkpoint holds, or than a few batches).
    let capacity = config
        .idempotency_records_max
        .max(ledger.records.len())
        .max(limits::BATCH_COMMANDS_MAX * 8);
    let mut records = RecordRing::new(capacity, 0);
    for (id, record) in ledger.records.in_order() {
        let (home, parties) = match payment_parties.get(&id) {
            Some(&(shard, parties)) => (shard, Some(parties)),
            None => (hold_homes.get(&id).copied().unwrap_or(0), None),
        };
        if hold_homes.contains_key(&id) {
            ledgers[home as usize].records.held.insert(id, record);
        }
        records.push(
            id,
            &RouterRecord {
                fingerprint: record.fingerprint,
                status: Some(record.status),
                timestamp: record.timestamp,
                home,
                parties,
                keeps: true,
            },
        );
    }

    split_risk(risk, &mut ledgers, &directory);
    split_instruments(&ledger, &mut ledgers);

    Split {
        config,
        sequence: ledger.sequence,
        timestamp: ledger.timestamp,
        ledgers,
        tables: RouterTables {
            directory: Arc::new(directory),
            records,
            keys,
            codes,
            code_forgets,
            holds,
            hold_expiries,
            quotes,
            quote_forgets,
            fx_floors: books.fx.floors.iter().map(|(&c, &l)| (c, l)).collect(),
            liquidity: FxHashMap::default(),
            fx_rates: books
                .fx
                .rates
                .iter()
                .map(|(&pair, rate)| (pair, rate.mid))
                .collect(),
            rates_unlearned: 0,
        },
    }
}

/// [`merge`], taking the state of a single shard as it is: one shard's
/// state is a lone ledger's but for the idempotency records, which its
/// router keeps (shard 0's house part is the house account itself, and no
/// payment is remote). So the records are put in and nothing else is
/// copied. With more shards, merges them; what is left in `shards` is the
/// caller's to drop.
pub(super) fn merge_owned(
    config: LedgerConfig,
    sequence: u64,
    timestamp: u64,
    shards: &mut Vec<Ledger>,
    records: impl IntoIterator<Item = (CommandId, IdempotencyRecord)>,
    records_len: usize,
) -> Ledger {
    if shards.len() != 1 {
        return merge(config, sequence, timestamp, shards, records, records_len);
    }
    let Some(mut ledger) = shards.pop() else {
        return merge(config, sequence, timestamp, shards, records, records_len);
    };
    assert_eq!(ledger.books.house_part, 0, "a single shard is part 0");
    assert!(
        ledger.books.remote_payments.is_empty(),
        "a single shard has no remote payer"
    );
    let mut lone = Records::lone(config.idempotency_records_max.max(records_len));
    for (id, record) in records {
        lone.push(id, &record);
    }
    debug_assert_eq!(lone.len(), records_len, "every record merged");
    ledger.records = lone;
    ledger.config = config;
    ledger.sequence = sequence;
    ledger.timestamp = timestamp;
    ledger
}

/// Merges shard states back into one lone ledger. `records` are the
/// router's, in global arrival order, `records_len` of them.
pub(super) fn merge(
    config: LedgerConfig,
    sequence: u64,
    timestamp: u64,
    shards: &[Ledger],
    records: impl IntoIterator<Item = (CommandId, IdempotencyRecord)>,
    records_len: usize,
) -> Ledger {
    let mut merged = Ledger::with_records(
        config,
        Records::lone(config.idempotency_records_max.max(records_len)),
    );
    merged.sequence = sequence;
    merged.timestamp = timestamp;
    // Per shard: old slot → merged slot.
    let mut places: Vec<Vec<u32>> = Vec::with_capacity(shards.len());
    for shard in shards {
        let mut place = Vec::with_capacity(shard.books.accounts.len());
        for account in &shard.books.accounts {
            if account.kind == AccountKind::House {
                let public = account.id.house_part(0);
                let slot = match merged.books.index.get(&public) {
                    Some(&slot) => {
                        add_house_part(&mut merged.books.accounts[slot as usize], account);
                        slot
                    }
                    None => merged.books.push_account(Account {
                        id: public,
                        ..*account
                    }),
                };
                place.push(slot);
            } else {
                place.push(merged.books.push_account(*account));
            }
        }
        places.push(place);
    }
    for (shard, place) in shards.iter().zip(&places) {
        let books = &shard.books;
        for hold in books.holds.values() {
            let mut moved = *hold;
            moved.account_slot = place[hold.account_slot as usize];
            moved.house_slot = place[hold.house_slot as usize];
            merged.books.holds.insert(hold.id, moved);
        }
        merged
            .books
            .hold_expiries
            .extend(books.hold_expiries.iter().copied());
        for (key, &slot) in &books.merchant_keys {
            merged
                .books
                .merchant_keys
                .insert(*key, place[slot as usize]);
        }
        for code in books.payment_codes.values() {
            let mut moved = *code;
            moved.customer_slot = place[code.customer_slot as usize];
            merged.books.payment_codes.insert(code.code, moved);
        }
        merged
            .books
            .code_expiries
            .extend(books.code_expiries.iter().copied());
        for payment in books.payments.values() {
            let mut moved = *payment;
            moved.payer_slot = place[payment.payer_slot as usize];
            moved.merchant_slot = place[payment.merchant_slot as usize];
            merged.books.payments.insert(payment.id, moved);
        }
    }
    // FX: the settings are the same on every shard (shard 0's are taken);
    // quotes move to merged slots; payment legs are kept by a payment's
    // merchant and payer shards alike.
    if let Some(first) = shards.first() {
        merged.books.fx.rates = first.books.fx.rates.clone();
        merged.books.fx.floors = first.books.fx.floors.clone();
    }
    for (shard, place) in shards.iter().zip(&places) {
        debug_assert_eq!(shard.books.fx.rates, merged.books.fx.rates);
        let fx = &shard.books.fx;
        for quote in fx.quotes.values() {
            let mut moved = *quote;
            moved.from_slot = place[quote.from_slot as usize];
            moved.to_slot = place[quote.to_slot as usize];
            merged.books.fx.quotes.insert(quote.id, moved);
        }
        merged
            .books
            .fx
            .quote_expiries
            .extend(fx.quote_expiries.iter().copied());
        for (id, legs) in &fx.payments {
            merged.books.fx.payments.insert(*id, *legs);
        }
    }
    merged.books.fx.rebuild_open();
    // Remote payments name their payer by id: resolve once every account
    // has its merged slot.
    for (shard, place) in shards.iter().zip(&places) {
        for (payment, payer) in shard.books.remote_payments.values() {
            let Some(&payer_slot) = merged.books.index.get(payer) else {
                continue;
            };
            let mut moved = *payment;
            moved.payer_slot = payer_slot;
            moved.merchant_slot = place[payment.merchant_slot as usize];
            merged.books.payments.insert(payment.id, moved);
        }
    }
    for (id, record) in records {
        merged.records.push(id, &record);
    }
    debug_assert_eq!(merged.records.len(), records_len, "every record merged");
    merge_risk(&mut merged, shards);
    // Instruments: each customer's on its shard, so the lists are disjoint.
    for shard in shards {
        for (owner, instrument) in shard.books.instruments.sorted() {
            let inserted = merged.books.instruments.insert(owner, instrument);
            debug_assert!(inserted, "a customer's instruments live on one shard");
        }
    }
    merged
}

/// Each customer's instruments go to the customer's shard.
fn split_instruments(ledger: &Ledger, ledgers: &mut [Ledger]) {
    let shards = ledgers.len();
    for (owner, instrument) in ledger.books.instruments.sorted() {
        let shard = shard_of_owner(owner, shards);
        ledgers[shard].books.instruments.insert(owner, instrument);
    }
}

/// Risk state is per customer: the policy goes to every shard; each
/// customer's risk state and audit ring to the customer's shard, each
/// budget to its account's shard. The decision counters (not state) stay
/// whole on shard 0 so that a merge adds up to the same figures.
fn split_risk(
    mut risk: crate::risk::RiskBooks,
    ledgers: &mut [Ledger],
    directory: &DashMap<AccountId, Placement, FxBuildHasher>,
) {
    let shards = ledgers.len();
    let customers_share = risk.customers.len() / shards + risk.customers.len() / (shards * 8);
    for part in ledgers.iter_mut() {
        part.books.risk.set_policy(risk.policy().clone());
        part.books.risk.customers.reserve(customers_share);
    }
    // Each state moves (its box, not a copy of its 5.5 KB).
    for (owner, state) in risk.customers.drain() {
        let shard = shard_of_owner(owner, shards);
        ledgers[shard].books.risk.customers.insert(owner, state);
    }
    for (owner, ring) in risk.audit.rings() {
        let shard = shard_of_owner(owner, shards);
        ledgers[shard]
            .books
            .risk
            .audit
            .insert_ring(owner, ring.clone());
    }
    for (account, budget) in risk.budgets.drain() {
        let shard = directory.get(&account).map_or(0, |entry| entry.shard) as usize;
        ledgers[shard].books.risk.budgets.insert(account, budget);
    }
    if let Some(first) = ledgers.first_mut() {
        first.books.risk.counters_mut().add(risk.counters());
    }
}

/// The inverse of [`split_risk`]: every shard's customers, audit rings and
/// budgets (disjoint: each lives on one shard), the policy they share, and
/// the counters added up.
fn merge_risk(merged: &mut Ledger, shards: &[Ledger]) {
    let Some(first) = shards.first() else {
        return;
    };
    let risk = &mut merged.books.risk;
    risk.set_policy(first.books.risk.policy().clone());
    for shard in shards {
        let books = &shard.books.risk;
        debug_assert_eq!(books.policy_digest(), risk.policy_digest());
        for (owner, state) in &books.customers {
            risk.customers.insert(*owner, state.clone());
        }
        for (owner, ring) in books.audit.rings() {
            let inserted = risk.audit.insert_ring(owner, ring.clone());
            debug_assert!(inserted, "a customer's audit lives on one shard");
        }
        for (account, budget) in &books.budgets {
            risk.budgets.insert(*account, budget.clone());
        }
        risk.counters_mut().add(books.counters());
    }
}
