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
use crate::command::{AccountId, AccountKind, CommandId, FxMid, HouseRole};
use crate::currency::Currency;
use crate::fx::FxQuoteRecord;
use crate::ledger::{
    Account, Books, Hold, IdempotencyRecord, Ledger, LedgerConfig, PaymentCode, Records,
};
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

pub(super) fn split(ledger: Ledger, shards: usize) -> Split {
    if shards == 1 {
        return split_single(ledger);
    }
    split_over(ledger, shards)
}

/// [`split`] over any number of shards: every table rebuilt per part.
fn split_over(mut ledger: Ledger, shards: usize) -> Split {
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
        holds.insert(hold.id, hold_entry(hold, shard));
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
        keys.insert(*key, key_entry(books.accounts[slot as usize].id));
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
        let entry = code_entry(code, books.accounts[code.customer_slot as usize].id, shard);
        code_forgets.push(Reverse((entry.forget_at, code.code)));
        codes.insert(code.code, entry);
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
        let entry = quote_entry(quote, shard);
        quote_forgets.push(Reverse((entry.forget_at, quote.id)));
        quotes.insert(quote.id, entry);
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
    let mut records = router_records(&config, &ledger.records);
    for (id, record) in ledger.records.in_order() {
        let (home, parties) = match payment_parties.get(&id) {
            Some(&(shard, parties)) => (shard, Some(parties)),
            None => (hold_homes.get(&id).copied().unwrap_or(0), None),
        };
        if hold_homes.contains_key(&id) {
            ledgers[home as usize].records.held.insert(id, record);
        }
        records.push(id, &router_record(record, home, parties));
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
            fx_floors: fx_floors(books),
            liquidity: FxHashMap::default(),
            fx_rates: fx_rates(books),
            rates_unlearned: 0,
        },
    }
}

/// [`split`] onto one shard: the lone ledger's state is the shard's as it
/// is (every slot stays where it is, shard 0's house part is the house
/// account itself and no payment is remote: see [`merge_owned`]), so only
/// the records move to the router and the router's tables are built. A
/// start at millions of accounts otherwise spent most of its split copying
/// every table into a new one (`split` on one shard gives the same state:
/// the determinism test restarts runs on one shard).
fn split_single(mut ledger: Ledger) -> Split {
    let config = ledger.config;
    let lone_records = std::mem::replace(&mut ledger.records, Records::shard());
    let books = &mut ledger.books;
    // A shard's history is turned on by the engine, as on a new part.
    books.history = None;
    assert_eq!(books.house_part, 0, "a lone ledger is part 0");
    assert!(
        books.remote_payments.is_empty(),
        "a lone ledger has no remote payer"
    );
    // What `split` leaves out of a part, left out here too: heap entries of
    // holds, codes and quotes no longer kept, FX legs of payments gone.
    let held_ids = &books.holds;
    books
        .hold_expiries
        .retain(|Reverse((_, id))| held_ids.contains_key(id));
    let codes_kept = &books.payment_codes;
    books
        .code_expiries
        .retain(|Reverse((_, code))| codes_kept.contains_key(code));
    let quotes_kept = &books.fx.quotes;
    books
        .fx
        .quote_expiries
        .retain(|(_, id)| quotes_kept.contains_key(id));
    let payments_kept = &books.payments;
    books
        .fx
        .payments
        .retain(|id, _| payments_kept.contains_key(id));
    books.fx.rebuild_open();
    // A house part carries the pending credits of the holds on it.
    for account in &mut books.accounts {
        if account.kind == AccountKind::House {
            account.credits_pending = 0;
        }
    }
    let mut holds = GrowingMap::with_capacity_and_hasher(books.holds.len(), FxBuildHasher);
    let mut hold_expiries = BinaryHeap::with_capacity(books.holds.len());
    for hold in books.holds.values() {
        if hold.state == crate::ledger::HoldState::Pending {
            let house = &mut books.accounts[hold.house_slot as usize];
            house.credits_pending = house.credits_pending.saturating_add(hold.amount);
        }
        holds.insert(hold.id, hold_entry(hold, 0));
        hold_expiries.push(Reverse((hold.expires_at, hold.id)));
    }

    let books = &ledger.books;
    let directory: DashMap<AccountId, Placement, FxBuildHasher> =
        DashMap::with_capacity_and_hasher(books.accounts.len(), FxBuildHasher);
    for account in &books.accounts {
        if account.kind != AccountKind::House {
            directory.insert(
                account.id,
                Placement {
                    shard: 0,
                    currency: account.currency,
                },
            );
        }
    }
    let mut keys = GrowingMap::default();
    for (key, &slot) in &books.merchant_keys {
        keys.insert(*key, key_entry(books.accounts[slot as usize].id));
    }
    let mut codes = GrowingMap::with_capacity_and_hasher(books.payment_codes.len(), FxBuildHasher);
    let mut code_forgets = BinaryHeap::with_capacity(books.payment_codes.len());
    for code in books.payment_codes.values() {
        let entry = code_entry(code, books.accounts[code.customer_slot as usize].id, 0);
        code_forgets.push(Reverse((entry.forget_at, code.code)));
        codes.insert(code.code, entry);
    }
    let mut quotes = GrowingMap::default();
    let mut quote_forgets = BinaryHeap::new();
    for quote in books.fx.quotes.values() {
        let entry = quote_entry(quote, 0);
        quote_forgets.push(Reverse((entry.forget_at, quote.id)));
        quotes.insert(quote.id, entry);
    }

    let mut records = router_records(&config, &lone_records);
    let mut held = Vec::new();
    for (id, record) in lone_records.in_order() {
        let parties = books.payments.get(&id).map(|payment| {
            (
                books.accounts[payment.merchant_slot as usize].id,
                books.accounts[payment.payer_slot as usize].id,
            )
        });
        if books.holds.contains_key(&id) {
            held.push((id, record));
        }
        records.push(id, &router_record(record, 0, parties));
    }
    let tables = RouterTables {
        directory: Arc::new(directory),
        records,
        keys,
        codes,
        code_forgets,
        holds,
        hold_expiries,
        quotes,
        quote_forgets,
        fx_floors: fx_floors(books),
        liquidity: FxHashMap::default(),
        fx_rates: fx_rates(books),
        rates_unlearned: 0,
    };
    drop(lone_records);
    for (id, record) in held {
        ledger.records.held.insert(id, record);
    }
    Split {
        config,
        sequence: ledger.sequence,
        timestamp: ledger.timestamp,
        ledgers: vec![ledger],
        tables,
    }
}

/// The router's entry for a hold kept on `shard`.
fn hold_entry(hold: &Hold, shard: u32) -> HoldEntry {
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
    }
}

/// The router's entry for a merchant key registered to `merchant`.
fn key_entry(merchant: AccountId) -> KeyEntry {
    KeyEntry {
        merchant,
        resolved: true,
        arrival: u64::MAX,
    }
}

/// The router's entry for `customer`'s payment code kept on `shard`.
fn code_entry(code: &PaymentCode, customer: AccountId, shard: u32) -> CodeEntry {
    CodeEntry {
        customer,
        shard,
        forget_at: code
            .expires_at
            .saturating_add(limits::PAYMENT_CODE_MEMORY_NS),
        resolved: true,
        arrival: u64::MAX,
    }
}

/// The router's entry for an FX quote kept on `shard`.
fn quote_entry(quote: &FxQuoteRecord, shard: u32) -> QuoteEntry {
    QuoteEntry {
        shard,
        forget_at: quote
            .amounts
            .expires_at
            .saturating_add(limits::FX_QUOTE_MEMORY_NS),
        amounts: Some(quote.amounts),
        resolved: true,
        arrival: u64::MAX,
    }
}

/// The router's record table, allocated once for the configured cap (and
/// never less than what the checkpoint holds, or than a few batches).
fn router_records(config: &LedgerConfig, records: &Records) -> RecordRing {
    let capacity = config
        .idempotency_records_max
        .max(records.len())
        .max(limits::BATCH_COMMANDS_MAX * 8);
    RecordRing::new(capacity, 0)
}

/// The router's copy of a record kept on `home`.
fn router_record(
    record: IdempotencyRecord,
    home: u32,
    parties: Option<(AccountId, AccountId)>,
) -> RouterRecord {
    RouterRecord {
        fingerprint: record.fingerprint,
        status: Some(record.status),
        timestamp: record.timestamp,
        home,
        parties,
        keeps: true,
    }
}

/// The router's copy of the FX floors in force.
fn fx_floors(books: &Books) -> FxHashMap<Currency, u64> {
    books.fx.floors.iter().map(|(&c, &l)| (c, l)).collect()
}

/// The router's copy of the FX mid rates in force.
fn fx_rates(books: &Books) -> FxHashMap<(Currency, Currency), FxMid> {
    books
        .fx
        .rates
        .iter()
        .map(|(&pair, rate)| (pair, rate.mid))
        .collect()
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
    single_as_lone(&mut ledger, config, sequence, timestamp);
    let mut lone = Records::lone(config.idempotency_records_max.max(records_len));
    for (id, record) in records {
        lone.push(id, &record);
    }
    debug_assert_eq!(lone.len(), records_len, "every record merged");
    ledger.records = lone;
    ledger
}

/// A single shard's state made a lone ledger's but for its records (which
/// its router keeps): it already is one (shard 0's house part is the house
/// account itself, and no payment is remote), at the router's config,
/// sequence and timestamp.
pub(super) fn single_as_lone(
    ledger: &mut Ledger,
    config: LedgerConfig,
    sequence: u64,
    timestamp: u64,
) {
    assert_eq!(ledger.books.house_part, 0, "a single shard is part 0");
    assert!(
        ledger.books.remote_payments.is_empty(),
        "a single shard has no remote payer"
    );
    ledger.config = config;
    ledger.sequence = sequence;
    ledger.timestamp = timestamp;
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    /// Every entry of a split's tables, in a stable order, as text.
    fn tables_of(split: &Split) -> Vec<String> {
        let tables = &split.tables;
        let mut directory: Vec<String> = tables
            .directory
            .iter()
            .map(|entry| format!("{:?} {:?}", entry.key(), *entry.value()))
            .collect();
        directory.sort();
        let sorted = |mut entries: Vec<String>| {
            entries.sort();
            entries.join("; ")
        };
        vec![
            directory.join("; "),
            format!("{:?}", tables.records.iter().collect::<Vec<_>>()),
            sorted(tables.keys.iter().map(|e| format!("{e:?}")).collect()),
            sorted(tables.codes.iter().map(|e| format!("{e:?}")).collect()),
            format!("{:?}", tables.code_forgets.clone().into_sorted_vec()),
            sorted(tables.holds.iter().map(|e| format!("{e:?}")).collect()),
            format!("{:?}", tables.hold_expiries.clone().into_sorted_vec()),
            sorted(tables.quotes.iter().map(|e| format!("{e:?}")).collect()),
            format!("{:?}", tables.quote_forgets.clone().into_sorted_vec()),
            sorted(tables.fx_floors.iter().map(|e| format!("{e:?}")).collect()),
            sorted(tables.fx_rates.iter().map(|e| format!("{e:?}")).collect()),
        ]
    }

    #[test]
    fn one_shard_takes_the_lone_state_as_the_split_over_one_would() {
        let ledger = crate::storage::snapshot::tests::busy_ledger();
        assert!(!ledger.books.holds.is_empty() && !ledger.books.payments.is_empty());
        assert!(!ledger.books.payment_codes.is_empty());
        let over = split_over(ledger.clone(), 1);
        let single = split_single(ledger);
        assert_eq!(single.ledgers.len(), 1);
        let (a, b) = (&single.ledgers[0], &over.ledgers[0]);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.books.accounts, b.books.accounts);
        let held = |ledger: &Ledger| {
            let mut held: Vec<String> = ledger
                .records
                .held
                .iter()
                .map(|e| format!("{e:?}"))
                .collect();
            held.sort();
            held
        };
        assert!(!held(b).is_empty());
        assert_eq!(held(a), held(b));
        let heap = |ledger: &Ledger| {
            (
                ledger.books.hold_expiries.clone().into_sorted_vec(),
                ledger.books.code_expiries.clone().into_sorted_vec(),
                format!("{:?}", ledger.books.fx),
            )
        };
        assert_eq!(heap(a), heap(b));
        let router = tables_of(&single);
        assert!(router[1].contains("parties: Some"));
        assert_eq!(router, tables_of(&over));
        assert_eq!(
            (single.sequence, single.timestamp),
            (over.sequence, over.timestamp)
        );
    }
}
