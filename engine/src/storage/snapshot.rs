//! Ledger state to bytes and back, for checkpoints.
//!
//! Layout (integers little-endian; each item is bincode with fixed-width
//! integers, so every item of a section has the same size):
//!
//! ```text
//! magic          8  b"prstate\0"
//! version        4  u32 = 1
//! sequence       8  u64, last batch applied
//! timestamp      8  u64
//! accounts       8  count u64, then accounts in slot order     (55 bytes each)
//! holds          8  count u64, then holds sorted by id         (44 bytes each)
//! hold expiries  8  count u64, then (expires_at, hold id) sorted (24 bytes each)
//! records        8  count u64, then (command id, record) in arrival order (34 bytes each)
//! ```
//!
//! The `LedgerConfig` is not stored: it is configuration and is passed in.
//! The id-to-slot index is rebuilt. The hold-expiry queue is stored as it is
//! (not rebuilt from the pending holds) because it also holds entries for
//! holds that finished early, and those entries still act when they surface.
//!
//! Encoding is deterministic (equal states give equal bytes). Decoding
//! treats the bytes as untrusted input: counts are checked against the bytes
//! present before anything is allocated, ids must be unique, slots in range,
//! and every account's pending amounts must match its pending holds, so that
//! a decoded ledger can never trip an assertion in `Ledger::apply`.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::command::{AccountId, CommandId};
use crate::ledger::{
    Account, Books, Hold, HoldState, IdempotencyRecord, Ledger, LedgerConfig, Records,
};
use crate::limits;
use crate::storage::record::{decode_value, encode_value};
use crate::storage::StorageError;

const STATE_MAGIC: [u8; 8] = *b"prstate\0";
const STATE_VERSION: u32 = 1;

/// Encoded sizes of one item of each section (checked by a test).
const ACCOUNT_BYTES: usize = 55;
const HOLD_BYTES: usize = 44;
const EXPIRY_BYTES: usize = 24;
const RECORD_BYTES: usize = 34;

/// Appends the encoded state of `ledger` to `out` (layout in the module docs).
pub fn encode_state(ledger: &Ledger, out: &mut Vec<u8>) {
    let books = &ledger.books;
    let records = &ledger.records;
    out.reserve(
        48 + books.accounts.len() * ACCOUNT_BYTES
            + books.holds.len() * HOLD_BYTES
            + books.hold_expiries.len() * EXPIRY_BYTES
            + records.order.len() * RECORD_BYTES,
    );
    out.extend_from_slice(&STATE_MAGIC);
    out.extend_from_slice(&STATE_VERSION.to_le_bytes());
    out.extend_from_slice(&ledger.sequence.to_le_bytes());
    out.extend_from_slice(&ledger.timestamp.to_le_bytes());

    put_count(out, books.accounts.len());
    for account in &books.accounts {
        encode_value(account, out);
    }

    let mut holds: Vec<&Hold> = books.holds.values().collect();
    holds.sort_unstable_by_key(|hold| hold.id);
    put_count(out, holds.len());
    for hold in holds {
        encode_value(hold, out);
    }

    let mut expiries: Vec<(u64, CommandId)> =
        books.hold_expiries.iter().map(|entry| entry.0).collect();
    expiries.sort_unstable();
    put_count(out, expiries.len());
    for expiry in &expiries {
        encode_value(expiry, out);
    }

    // `order` and `by_id` change together in the ledger; should they ever
    // disagree, the count written is the number of records actually written.
    let count_at = out.len();
    put_count(out, 0);
    let mut written = 0usize;
    for id in &records.order {
        if let Some(record) = records.by_id.get(id) {
            encode_value(&(*id, *record), out);
            written += 1;
        }
    }
    out[count_at..count_at + 8].copy_from_slice(&(written as u64).to_le_bytes());
}

fn put_count(out: &mut Vec<u8>, count: usize) {
    out.extend_from_slice(&(count as u64).to_le_bytes());
}

/// A cursor over untrusted state bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

fn corrupt(reason: impl Into<String>) -> StorageError {
    StorageError::StateCorrupt(reason.into())
}

impl<'a> Reader<'a> {
    fn take(&mut self, count: usize, what: &str) -> Result<&'a [u8], StorageError> {
        if self.bytes.len() < count {
            return Err(corrupt(format!("truncated in {what}")));
        }
        let (head, rest) = self.bytes.split_at(count);
        self.bytes = rest;
        Ok(head)
    }

    fn u32(&mut self, what: &str) -> Result<u32, StorageError> {
        let mut buffer = [0u8; 4];
        buffer.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_le_bytes(buffer))
    }

    fn u64(&mut self, what: &str) -> Result<u64, StorageError> {
        let mut buffer = [0u8; 8];
        buffer.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_le_bytes(buffer))
    }

    /// A section's item count, checked against the bytes present and `max`.
    fn count(&mut self, item_bytes: usize, max: usize, what: &str) -> Result<usize, StorageError> {
        let count = self.u64(what)?;
        let fits = usize::try_from(count)
            .ok()
            .filter(|&count| count <= max)
            .filter(|&count| {
                count
                    .checked_mul(item_bytes)
                    .is_some_and(|bytes| bytes <= self.bytes.len())
            });
        fits.ok_or_else(|| corrupt(format!("{what}: count {count} does not fit")))
    }

    fn item<T: bincode::Decode<()>>(
        &mut self,
        item_bytes: usize,
        what: &str,
    ) -> Result<T, StorageError> {
        let bytes = self.take(item_bytes, what)?;
        let (value, used) =
            decode_value::<T>(bytes).map_err(|reason| corrupt(format!("{what}: {reason}")))?;
        if used != item_bytes {
            return Err(corrupt(format!(
                "{what}: item has {used} bytes, not {item_bytes}"
            )));
        }
        Ok(value)
    }
}

/// Rebuilds a ledger from [`encode_state`] bytes; the result has the same
/// digest and behaves the same on every further command.
pub fn decode_state(bytes: &[u8], config: LedgerConfig) -> Result<Ledger, StorageError> {
    let mut reader = Reader { bytes };
    if reader.take(8, "magic")? != STATE_MAGIC {
        return Err(corrupt("it does not start with the state magic"));
    }
    let version = reader.u32("version")?;
    if version != STATE_VERSION {
        return Err(corrupt(format!(
            "state format version {version} is not supported (this build reads {STATE_VERSION})"
        )));
    }
    let sequence = reader.u64("sequence")?;
    let timestamp = reader.u64("timestamp")?;

    // 1. Accounts, and the index rebuilt from them.
    let accounts_len = reader.count(ACCOUNT_BYTES, limits::ACCOUNTS_MAX, "accounts")?;
    let mut accounts: Vec<Account> = Vec::with_capacity(accounts_len);
    let mut index: FxHashMap<AccountId, u32> =
        FxHashMap::with_capacity_and_hasher(accounts_len, Default::default());
    for slot in 0..accounts_len {
        let account: Account = reader.item(ACCOUNT_BYTES, "account")?;
        // Cannot truncate: accounts_len <= ACCOUNTS_MAX <= u32::MAX.
        if index.insert(account.id, slot as u32).is_some() {
            return Err(corrupt(format!("account {} appears twice", account.id.0)));
        }
        accounts.push(account);
    }

    // 2. Holds: slots in range, and pending amounts matching the accounts.
    let holds_len = reader.count(HOLD_BYTES, usize::MAX, "holds")?;
    let mut holds: FxHashMap<CommandId, Hold> =
        FxHashMap::with_capacity_and_hasher(holds_len, Default::default());
    let mut pending: FxHashMap<u32, Pending> = FxHashMap::default();
    for _ in 0..holds_len {
        let hold: Hold = reader.item(HOLD_BYTES, "hold")?;
        if hold.account_slot as usize >= accounts_len || hold.house_slot as usize >= accounts_len {
            return Err(corrupt(format!(
                "hold {} names a slot out of range",
                hold.id.0
            )));
        }
        if hold.state == HoldState::Pending {
            pending
                .entry(hold.account_slot)
                .or_default()
                .add_debit(hold.amount)?;
            pending
                .entry(hold.house_slot)
                .or_default()
                .add_credit(hold.amount)?;
        }
        if holds.insert(hold.id, hold).is_some() {
            return Err(corrupt(format!("hold {} appears twice", hold.id.0)));
        }
    }
    for (slot, account) in accounts.iter().enumerate() {
        let expected = pending.get(&(slot as u32)).copied().unwrap_or_default();
        let found = Pending {
            debits: account.debits_pending,
            credits: account.credits_pending,
            holds: u64::from(account.holds_pending),
        };
        if expected != found {
            return Err(corrupt(format!(
                "account {} has pending amounts {found:?} but its holds sum to {expected:?}",
                account.id.0
            )));
        }
    }

    // 3. The hold-expiry queue; every pending hold must be in it.
    let expiries_len = reader.count(EXPIRY_BYTES, usize::MAX, "hold expiries")?;
    let mut expiries: Vec<Reverse<(u64, CommandId)>> = Vec::with_capacity(expiries_len);
    for _ in 0..expiries_len {
        let entry: (u64, CommandId) = reader.item(EXPIRY_BYTES, "hold expiry")?;
        expiries.push(Reverse(entry));
    }
    let queued: FxHashSet<(u64, CommandId)> = expiries.iter().map(|entry| entry.0).collect();
    for hold in holds.values() {
        if hold.state == HoldState::Pending && !queued.contains(&(hold.expires_at, hold.id)) {
            return Err(corrupt(format!(
                "pending hold {} is missing from the expiry queue",
                hold.id.0
            )));
        }
    }
    let hold_expiries = BinaryHeap::from(expiries);

    // 4. Idempotency records, in arrival order.
    let records_len = reader.count(RECORD_BYTES, usize::MAX, "records")?;
    let mut by_id: FxHashMap<CommandId, IdempotencyRecord> =
        FxHashMap::with_capacity_and_hasher(records_len, Default::default());
    let mut order: VecDeque<CommandId> = VecDeque::with_capacity(records_len);
    for _ in 0..records_len {
        let (id, record): (CommandId, IdempotencyRecord) = reader.item(RECORD_BYTES, "record")?;
        if by_id.insert(id, record).is_some() {
            return Err(corrupt(format!("record {} appears twice", id.0)));
        }
        order.push_back(id);
    }

    if !reader.bytes.is_empty() {
        return Err(corrupt(format!(
            "{} bytes follow the last record",
            reader.bytes.len()
        )));
    }
    Ok(Ledger {
        config,
        books: Books {
            accounts,
            index,
            holds,
            hold_expiries,
        },
        records: Records { by_id, order },
        sequence,
        timestamp,
    })
}

/// What an account's pending holds add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pending {
    debits: u64,
    credits: u64,
    holds: u64,
}

impl Pending {
    fn add_debit(&mut self, amount: u64) -> Result<(), StorageError> {
        self.debits = self
            .debits
            .checked_add(amount)
            .ok_or_else(|| corrupt("pending debits overflow"))?;
        self.holds += 1;
        Ok(())
    }

    fn add_credit(&mut self, amount: u64) -> Result<(), StorageError> {
        self.credits = self
            .credits
            .checked_add(amount)
            .ok_or_else(|| corrupt("pending credits overflow"))?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::command::{AccountKind, AccountStatus, CommandId};
    use crate::currency::Currency;
    use crate::ledger::HoldState;
    use crate::status::Status;

    #[test]
    fn item_sizes_match_the_layout() {
        let mut out = Vec::new();
        encode_value(
            &Account {
                id: AccountId(1),
                owner: 2,
                balance: -3,
                debits_pending: 4,
                credits_pending: 5,
                currency: Currency::CNY,
                kind: AccountKind::House,
                status: AccountStatus::Closed,
                kyc_tier: 3,
                mcc: 9999,
                holds_pending: 64,
            },
            &mut out,
        );
        assert_eq!(out.len(), ACCOUNT_BYTES);
        out.clear();
        encode_value(
            &Hold {
                id: CommandId(1),
                account_slot: 2,
                house_slot: 3,
                amount: 4,
                expires_at: 5,
                state: HoldState::Expired,
            },
            &mut out,
        );
        assert_eq!(out.len(), HOLD_BYTES);
        out.clear();
        encode_value(&(5u64, CommandId(6)), &mut out);
        assert_eq!(out.len(), EXPIRY_BYTES);
        out.clear();
        encode_value(
            &(
                CommandId(7),
                IdempotencyRecord {
                    fingerprint: 8,
                    status: Status::StorageFailed,
                    timestamp: 9,
                },
            ),
            &mut out,
        );
        assert_eq!(out.len(), RECORD_BYTES);
    }

    #[test]
    fn empty_ledger_round_trips() {
        let ledger = Ledger::default();
        let mut bytes = Vec::new();
        encode_state(&ledger, &mut bytes);
        assert_eq!(bytes.len(), 8 + 4 + 8 + 8 + 4 * 8);
        let decoded = decode_state(&bytes, LedgerConfig::default()).unwrap();
        assert_eq!(decoded.digest(), ledger.digest());
    }
}
