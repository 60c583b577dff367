//! The router's idempotency records: one table allocated once, at start,
//! for `idempotency_records_max` records, that never grows or rehashes.
//!
//! ```text
//! ring   [ slot 0 | slot 1 | ... | slot C-1 ]   C = capacity, 64 bytes a slot
//!          records in arrival order: arrival a lives in slot a % C;
//!          the live ones are arrivals head..tail (oldest first)
//! index  [ bucket 0 | ... | bucket 2^k - 1 ]     2^k >= 2 C, 8 bytes a bucket
//!          open addressing, linear probing: 0 = empty, else
//!          (hash tag: 32 bits) << 32 | (slot + 1)
//! ```
//!
//! Eviction is a ring: the oldest record goes first (the lone ledger's
//! rule: past the retention window, or past the cap), so removing is always
//! at `head`, and the index entry goes by backward shift (no tombstones,
//! probe chains never lengthen with churn). A record is 64 bytes in the
//! ring plus at least 16 in the index: 80 bytes (at most 96) per record.
//!
//! The memory is taken zeroed from the allocator, so the kernel maps it
//! lazily, and marked for transparent huge pages (a look-up at random in
//! gigabytes would otherwise pay a TLB miss and a page walk);
//! [`RecordRing::prefault`] touches every page once at start so the first
//! minutes of traffic do not pay page faults (the server calls it).
//!
//! Ids are client-chosen, so the index hashes them with a key drawn at
//! start (xxh3 with a random seed): a gateway cannot aim ids at one probe
//! chain. The key only decides where an id sits in the index, never an
//! outcome (invariant 2).

use crate::command::{AccountId, CommandId};
use crate::status::Status;

/// The router's copy of one command's idempotency record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RouterRecord {
    pub(crate) fingerprint: u64,
    /// `None` while the command is routed but its result is not in.
    pub(crate) status: Option<Status>,
    pub(crate) timestamp: u64,
    /// The shard that keeps the command's record (and what lives as long
    /// as it: a payment, a finished hold).
    pub(crate) home: u32,
    /// For payments: (merchant, payer) as routed, for refunds.
    pub(crate) parties: Option<(AccountId, AccountId)>,
    /// Something on the home shard lives as long as the record (a hold, a
    /// payment): the home shard hears when the record goes.
    pub(crate) keeps: bool,
}

/// One ring slot: id (2 words), fingerprint, timestamp, meta, merchant, payer.
type Slot = [u64; 8];

const META_HAS_STATUS: u64 = 1 << 16;
const META_KEEPS: u64 = 1 << 17;
const META_HAS_PARTIES: u64 = 1 << 18;
const META_HOME_SHIFT: u32 = 24;

fn pack(id: CommandId, record: &RouterRecord) -> Slot {
    let mut meta = u64::from(record.home) << META_HOME_SHIFT;
    if let Some(status) = record.status {
        meta |= u64::from(status.code()) | META_HAS_STATUS;
    }
    if record.keeps {
        meta |= META_KEEPS;
    }
    let (merchant, payer) = match record.parties {
        Some((merchant, payer)) => {
            meta |= META_HAS_PARTIES;
            (merchant.0, payer.0)
        }
        None => (0, 0),
    };
    [
        id.0 as u64,
        (id.0 >> 64) as u64,
        record.fingerprint,
        record.timestamp,
        meta,
        merchant,
        payer,
        0,
    ]
}

fn slot_id(slot: &Slot) -> CommandId {
    CommandId(u128::from(slot[0]) | u128::from(slot[1]) << 64)
}

fn unpack(slot: &Slot) -> RouterRecord {
    let meta = slot[4];
    RouterRecord {
        fingerprint: slot[2],
        // A code this build wrote; an unknown one cannot be read back.
        status: if meta & META_HAS_STATUS != 0 {
            Status::from_code(meta as u16)
        } else {
            None
        },
        timestamp: slot[3],
        home: (meta >> META_HOME_SHIFT) as u32,
        parties: (meta & META_HAS_PARTIES != 0).then_some((AccountId(slot[5]), AccountId(slot[6]))),
        keeps: meta & META_KEEPS != 0,
    }
}

/// See the module documentation.
pub(crate) struct RecordRing {
    slots: Box<[Slot]>,
    index: Box<[u64]>,
    /// `index.len() - 1`.
    mask: usize,
    /// log2 of `index.len()`.
    bits: u32,
    seed: u64,
    /// Arrival number of the oldest record kept.
    head: u64,
    /// Arrival number the next record gets.
    tail: u64,
}

impl std::fmt::Debug for RecordRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordRing")
            .field("capacity", &self.slots.len())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl RecordRing {
    /// A ring for `capacity` records (at least one), arrivals numbered from
    /// `first_arrival`.
    pub(crate) fn new(capacity: usize, first_arrival: u64) -> RecordRing {
        let capacity = capacity.clamp(1, u32::MAX as usize - 1);
        let buckets = (capacity * 2).next_power_of_two().max(16);
        let bits = buckets.trailing_zeros();
        assert!(bits <= 32, "the hash tag holds the bucket bits");
        // Zeroed allocations (calloc): no page is touched until used.
        let mut slots = vec![[0u64; 8]; capacity].into_boxed_slice();
        let mut index = vec![0u64; buckets].into_boxed_slice();
        // Read at random: on huge pages an access costs no page walk.
        crate::prefetch::advise_huge_pages(&mut slots);
        crate::prefetch::advise_huge_pages(&mut index);
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(0x7061_7972_6169_6c00);
            hasher.finish()
        };
        RecordRing {
            slots,
            index,
            mask: buckets - 1,
            bits,
            seed,
            head: first_arrival,
            tail: first_arrival,
        }
    }

    /// Touches every page of the table once (the kernel maps zeroed
    /// memory lazily): 3.4 s for 2.5 GiB on the 2-core reference machine,
    /// the kernel zeroing the pages.
    pub(crate) fn prefault(&mut self) {
        const PAGE: usize = 4096;
        for slot in self
            .slots
            .iter_mut()
            .step_by(PAGE / std::mem::size_of::<Slot>())
        {
            slot[7] = 0;
        }
        for bucket in self
            .index
            .iter_mut()
            .step_by(PAGE / std::mem::size_of::<u64>())
        {
            // Read-modify-write of a zero: the bucket keeps its value.
            *bucket = std::hint::black_box(*bucket);
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn len(&self) -> usize {
        (self.tail - self.head) as usize
    }

    /// Bytes allocated, ring and index.
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of_val(&*self.slots) + std::mem::size_of_val(&*self.index)
    }

    /// The arrival number the next record gets.
    pub(crate) fn next_arrival(&self) -> u64 {
        self.tail
    }

    #[inline]
    fn hash(&self, id: CommandId) -> u64 {
        xxhash_rust::xxh3::xxh3_64_with_seed(&id.0.to_le_bytes(), self.seed)
    }

    #[inline]
    fn home_bucket(&self, tag: u32) -> usize {
        (tag >> (32 - self.bits)) as usize
    }

    #[inline]
    fn slot_of(&self, arrival: u64) -> usize {
        (arrival % self.slots.len() as u64) as usize
    }

    /// The bucket holding `id`, and its arrival.
    #[inline]
    fn find(&self, id: CommandId) -> Option<(usize, u64)> {
        let tag = (self.hash(id) >> 32) as u32;
        let mut bucket = self.home_bucket(tag);
        loop {
            let entry = self.index[bucket];
            if entry == 0 {
                return None;
            }
            if (entry >> 32) as u32 == tag {
                let slot = (entry as u32 - 1) as usize;
                if slot_id(&self.slots[slot]) == id {
                    return Some((bucket, self.arrival_of_slot(slot)));
                }
            }
            bucket = (bucket + 1) & self.mask;
        }
    }

    /// The arrival number of a live slot.
    fn arrival_of_slot(&self, slot: usize) -> u64 {
        let capacity = self.slots.len() as u64;
        let head_slot = self.head % capacity;
        let offset = (slot as u64 + capacity - head_slot) % capacity;
        self.head + offset
    }

    /// Asks the CPU for the index bucket where `id`'s look-up starts (a
    /// hint: the table is far larger than the cache, so each look-up is a
    /// miss unless asked for a few commands ahead).
    #[inline]
    pub(crate) fn prefetch(&self, id: CommandId) {
        let tag = (self.hash(id) >> 32) as u32;
        crate::prefetch::prefetch(&self.index[self.home_bucket(tag)], 1);
    }

    /// The record of `id` and its arrival number.
    #[inline]
    pub(crate) fn get(&self, id: CommandId) -> Option<(u64, RouterRecord)> {
        let (_, arrival) = self.find(id)?;
        Some((arrival, unpack(&self.slots[self.slot_of(arrival)])))
    }

    pub(crate) fn contains(&self, id: CommandId) -> bool {
        self.find(id).is_some()
    }

    fn live(&self, arrival: u64) -> bool {
        (self.head..self.tail).contains(&arrival)
    }

    /// Sets the status of the record that arrived as `arrival`, if it is
    /// still kept (no hash: the arrival names the slot).
    #[inline]
    pub(crate) fn set_status(&mut self, arrival: u64, status: Status) {
        if !self.live(arrival) {
            return;
        }
        let slot = self.slot_of(arrival);
        let meta = &mut self.slots[slot][4];
        *meta = (*meta & !0xFFFF) | u64::from(status.code()) | META_HAS_STATUS;
    }

    /// Appends a record for an id not kept; returns its arrival number.
    /// The caller makes room first (the table never grows).
    pub(crate) fn push(&mut self, id: CommandId, record: &RouterRecord) -> u64 {
        assert!(
            self.len() < self.slots.len(),
            "record ring full: evict first"
        );
        debug_assert!(!self.contains(id), "an id is kept once");
        let arrival = self.tail;
        let slot = self.slot_of(arrival);
        self.slots[slot] = pack(id, record);
        let tag = (self.hash(id) >> 32) as u32;
        let mut bucket = self.home_bucket(tag);
        while self.index[bucket] != 0 {
            bucket = (bucket + 1) & self.mask;
        }
        self.index[bucket] = u64::from(tag) << 32 | (slot as u64 + 1);
        self.tail += 1;
        arrival
    }

    /// The oldest record kept.
    pub(crate) fn front(&self) -> Option<(CommandId, RouterRecord)> {
        if self.head == self.tail {
            return None;
        }
        let slot = &self.slots[self.slot_of(self.head)];
        Some((slot_id(slot), unpack(slot)))
    }

    /// Drops the oldest record.
    pub(crate) fn pop_front(&mut self) -> Option<(CommandId, RouterRecord)> {
        let (id, record) = self.front()?;
        let slot = self.slot_of(self.head) as u64 + 1;
        let tag = (self.hash(id) >> 32) as u32;
        let mut bucket = self.home_bucket(tag);
        while self.index[bucket] as u32 as u64 != slot {
            assert_ne!(self.index[bucket], 0, "every record kept is indexed");
            bucket = (bucket + 1) & self.mask;
        }
        self.remove_bucket(bucket);
        self.slots[(slot - 1) as usize] = [0; 8];
        self.head += 1;
        Some((id, record))
    }

    /// Backward-shift deletion: entries after the hole that may live in it
    /// move back, so every probe chain stays unbroken.
    fn remove_bucket(&mut self, mut hole: usize) {
        let mut next = hole;
        loop {
            self.index[hole] = 0;
            loop {
                next = (next + 1) & self.mask;
                let entry = self.index[next];
                if entry == 0 {
                    return;
                }
                let home = self.home_bucket((entry >> 32) as u32);
                // The entry may move to `hole` unless its home lies
                // cyclically in (hole, next].
                let stays = if hole <= next {
                    hole < home && home <= next
                } else {
                    hole < home || home <= next
                };
                if !stays {
                    self.index[hole] = entry;
                    hole = next;
                    break;
                }
            }
        }
    }

    /// Every record kept, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (CommandId, RouterRecord)> + '_ {
        (self.head..self.tail).map(|arrival| {
            let slot = &self.slots[self.slot_of(arrival)];
            (slot_id(slot), unpack(slot))
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::{HashMap, VecDeque};

    fn record(n: u64) -> RouterRecord {
        RouterRecord {
            fingerprint: n.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            status: (n % 3 != 0).then_some(if n % 2 == 0 {
                Status::Ok
            } else {
                Status::InsufficientFunds
            }),
            timestamp: n,
            home: (n % 7) as u32,
            parties: (n % 5 == 0).then_some((AccountId(n), AccountId(n + 1))),
            keeps: n % 2 == 1,
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let mut ring = RecordRing::new(8, 0);
        for n in 0..8u64 {
            ring.push(CommandId(u128::from(n) << 70 | 5), &record(n));
        }
        for n in 0..8u64 {
            let (arrival, got) = ring.get(CommandId(u128::from(n) << 70 | 5)).unwrap();
            assert_eq!(arrival, n);
            assert_eq!(got, record(n));
        }
        ring.set_status(3, Status::Ok);
        assert_eq!(
            ring.get(CommandId(3 << 70 | 5)).unwrap().1.status,
            Some(Status::Ok)
        );
    }

    /// Against a map plus a queue (what the table replaced), under a ring's
    /// churn: counter ids and random ids, ids coming back after eviction,
    /// status updates by arrival.
    #[test]
    fn behaves_as_a_map_in_arrival_order() {
        let capacity = 1_000;
        let mut ring = RecordRing::new(capacity, 0);
        let mut map: HashMap<CommandId, (u64, RouterRecord)> = HashMap::new();
        let mut order: VecDeque<CommandId> = VecDeque::new();
        let mut state = 0x1234_5678_9ABC_DEF0_u64;
        let mut arrival = 0u64;
        for step in 0..300_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let id = CommandId(if step % 2 == 0 {
                u128::from(state % 3_000)
            } else {
                u128::from(state % 3_000) << 64 | 1
            });
            match state % 5 {
                0 | 1 => {
                    if map.contains_key(&id) {
                        assert!(ring.contains(id));
                        continue;
                    }
                    if order.len() == capacity || state % 7 == 0 {
                        let oldest = order.pop_front();
                        let popped = ring.pop_front().map(|(id, _)| id);
                        assert_eq!(popped, oldest);
                        if let Some(oldest) = oldest {
                            map.remove(&oldest);
                        }
                    }
                    let got = ring.push(id, &record(step));
                    assert_eq!(got, arrival);
                    map.insert(id, (arrival, record(step)));
                    order.push_back(id);
                    arrival += 1;
                }
                2 => {
                    let target = state % (arrival + 1);
                    ring.set_status(target, Status::Ok);
                    for (kept_arrival, kept) in map.values_mut() {
                        if *kept_arrival == target {
                            kept.status = Some(Status::Ok);
                        }
                    }
                }
                _ => assert_eq!(ring.get(id), map.get(&id).copied()),
            }
            assert_eq!(ring.len(), order.len());
        }
        let listed: Vec<CommandId> = ring.iter().map(|(id, _)| id).collect();
        assert_eq!(listed, Vec::from(order));
    }

    #[test]
    fn never_grows() {
        let mut ring = RecordRing::new(100, 0);
        let bytes = ring.bytes();
        for n in 0..10_000u64 {
            if ring.len() == ring.capacity() {
                ring.pop_front();
            }
            ring.push(CommandId(u128::from(n)), &record(n));
        }
        assert_eq!(ring.bytes(), bytes);
        assert_eq!(ring.len(), 100);
        assert_eq!(ring.front().map(|(id, _)| id), Some(CommandId(9_900)));
        ring.prefault();
        assert!(ring.get(CommandId(9_950)).is_some());
    }
}
