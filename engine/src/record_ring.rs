//! Idempotency records in arrival order: one table allocated once, for a
//! capacity fixed at creation, that never grows or rehashes. The router
//! keeps its records in one (`shard/records.rs`), the lone ledger (recovery,
//! the checkpointer's follower, tests) in another (`ledger.rs`, `Records`).
//!
//! ```text
//! ring   [ slot 0 | slot 1 | ... | slot C-1 ]   C = capacity, W words a slot
//!          records in arrival order: arrival a lives in slot a % C;
//!          the live ones are arrivals head..tail (oldest first);
//!          words 0 and 1 of a slot are the command id, the rest the user's
//! index  [ bucket 0 | ... | bucket 2^k - 1 ]     2^k >= 2 C, 8 bytes a bucket
//!          open addressing, linear probing: 0 = empty, else
//!          (hash tag: 32 bits) << 32 | (slot + 1)
//! ```
//!
//! Eviction is a ring: the oldest record goes first (past the retention
//! window, or past the cap), so removing is always at `head`, and the index
//! entry goes by backward shift (no tombstones, probe chains never lengthen
//! with churn). A record costs 8 W bytes in the ring plus at least 16 in the
//! index (at most 32). A look-up that misses reads one index bucket (the
//! tag rarely matches); an insert writes the bucket it probed and the slot
//! at the ring's tail, which is written in order.
//!
//! The memory is taken zeroed from the allocator, so the kernel maps it
//! lazily: a table sized for tens of millions of records costs what it
//! holds until it fills. [`Ring::advise_huge_pages`] asks for transparent
//! huge pages (a look-up at random in gigabytes would otherwise pay a TLB
//! miss and a page walk) and [`Ring::prefault`] touches every page once, for
//! the tables a server keeps for its lifetime.
//!
//! Ids are client-chosen, so the index hashes them with a key drawn at
//! creation (xxh3 with a random seed): a gateway cannot aim ids at one probe
//! chain. The key only decides where an id sits in the index, never an
//! outcome (invariant 2).

use crate::command::CommandId;

/// How many evictions ahead a run of them asks for the index bucket it
/// will clear ([`Ring::prefetch_eviction`]).
pub(crate) const EVICT_AHEAD: u64 = 8;

/// See the module documentation.
pub(crate) struct Ring<const W: usize> {
    slots: Box<[[u64; W]]>,
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
    /// Marked for huge pages (a copy is too).
    huge: bool,
}

impl<const W: usize> std::fmt::Debug for Ring<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("capacity", &self.slots.len())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// A copy holds the same records in the same order, with the same arrival
/// numbers, in a table of the same capacity; it costs what the records
/// hold, not the capacity (an index built anew, under a key of its own).
impl<const W: usize> Clone for Ring<W> {
    fn clone(&self) -> Self {
        let mut copy = Ring::new(self.capacity(), self.head);
        if self.huge {
            copy.advise_huge_pages();
        }
        for slot in self.iter() {
            copy.push(*slot);
        }
        copy
    }
}

/// Where a ring's table lies in memory ([`Ring::memory`]): addresses as
/// numbers, for the kernel only (never read or written through).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RingMemory {
    pub slots_address: usize,
    pub slots_bytes: usize,
    pub slot_bytes: usize,
    /// The slot the next record takes (arrivals take slots in order,
    /// wrapping around).
    pub next_slot: usize,
    pub index_address: usize,
    pub index_bytes: usize,
}

/// The command id a slot holds.
#[inline]
pub(crate) fn slot_id<const W: usize>(slot: &[u64; W]) -> CommandId {
    CommandId(u128::from(slot[0]) | u128::from(slot[1]) << 64)
}

/// A slot for `id`, its other words zero.
#[inline]
pub(crate) fn slot_for<const W: usize>(id: CommandId) -> [u64; W] {
    let mut slot = [0u64; W];
    slot[0] = id.0 as u64;
    slot[1] = (id.0 >> 64) as u64;
    slot
}

impl<const W: usize> Ring<W> {
    const HOLDS_AN_ID: () = assert!(W >= 2, "words 0 and 1 hold the id");

    /// A ring for `capacity` records (at least one), arrivals numbered from
    /// `first_arrival`.
    pub(crate) fn new(capacity: usize, first_arrival: u64) -> Ring<W> {
        let () = Self::HOLDS_AN_ID;
        let (capacity, buckets) = Self::sizes(capacity);
        let bits = buckets.trailing_zeros();
        assert!(bits <= 32, "the hash tag holds the bucket bits");
        // Zeroed allocations (calloc): no page is touched until used.
        let slots = vec![[0u64; W]; capacity].into_boxed_slice();
        let index = vec![0u64; buckets].into_boxed_slice();
        let seed = {
            use std::hash::{BuildHasher, Hasher};
            let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
            hasher.write_u64(0x7061_7972_6169_6c00);
            hasher.finish()
        };
        Ring {
            slots,
            index,
            mask: buckets - 1,
            bits,
            seed,
            head: first_arrival,
            tail: first_arrival,
            huge: false,
        }
    }

    /// Slots and index buckets of a ring asked for `capacity` records.
    fn sizes(capacity: usize) -> (usize, usize) {
        let capacity = capacity.clamp(1, u32::MAX as usize - 1);
        (capacity, (capacity * 2).next_power_of_two().max(16))
    }

    /// Bytes a ring asked for `capacity` records allocates.
    pub(crate) fn bytes_for(capacity: usize) -> usize {
        let (slots, buckets) = Self::sizes(capacity);
        slots * std::mem::size_of::<[u64; W]>() + buckets * std::mem::size_of::<u64>()
    }

    /// Asks for transparent huge pages for the table (read at random: on
    /// huge pages an access costs no page walk). For tables kept for a
    /// process's lifetime: a huge page is zeroed whole on first touch.
    pub(crate) fn advise_huge_pages(&mut self) {
        self.huge = true;
        crate::prefetch::advise_huge_pages(&mut self.slots);
        crate::prefetch::advise_huge_pages(&mut self.index);
    }

    /// Leaves the index out of forked processes: the checkpoint's process
    /// reads the records in arrival order from the slots only, and the
    /// router's writes to the index (at random places) then copy no page
    /// while a checkpoint is made.
    pub(crate) fn keep_index_from_forks(&mut self) {
        crate::prefetch::keep_from_forks(&mut self.index);
    }

    /// Touches every page of the table once (the kernel maps zeroed
    /// memory lazily): 3.4 s for 2.5 GiB on the 2-core reference machine,
    /// the kernel zeroing the pages.
    pub(crate) fn prefault(&mut self) {
        const PAGE: usize = 4096;
        for slot in self
            .slots
            .iter_mut()
            .step_by((PAGE / std::mem::size_of::<[u64; W]>()).max(1))
        {
            // Read-modify-write: the slot keeps its value.
            slot[W - 1] = std::hint::black_box(slot[W - 1]);
        }
        for bucket in self
            .index
            .iter_mut()
            .step_by(PAGE / std::mem::size_of::<u64>())
        {
            *bucket = std::hint::black_box(*bucket);
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Where the table lies in memory, for asking the kernel to map its
    /// pages ahead of the records that will fill them
    /// (`prefetch::populate_for_write`).
    pub(crate) fn memory(&self) -> RingMemory {
        RingMemory {
            slots_address: self.slots.as_ptr() as usize,
            slots_bytes: std::mem::size_of_val(&*self.slots),
            slot_bytes: std::mem::size_of::<[u64; W]>(),
            next_slot: self.slot_of(self.tail),
            index_address: self.index.as_ptr() as usize,
            index_bytes: std::mem::size_of_val(&*self.index),
        }
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

    /// The hash tag of `id` under this table's key: where its look-up
    /// starts. A caller that looks an id up and then pushes it computes it
    /// once ([`Ring::get_tagged`], [`Ring::push_tagged`]).
    #[inline]
    pub(crate) fn tag(&self, id: CommandId) -> u32 {
        (xxhash_rust::xxh3::xxh3_64_with_seed(&id.0.to_le_bytes(), self.seed) >> 32) as u32
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
        self.find_tagged(id, self.tag(id))
    }

    /// `find` with `id`'s tag already computed.
    #[inline]
    fn find_tagged(&self, id: CommandId, tag: u32) -> Option<(usize, u64)> {
        debug_assert_eq!(tag, self.tag(id));
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
        let tag = self.tag(id);
        crate::prefetch::prefetch(&self.index[self.home_bucket(tag)], 1);
    }

    /// Asks the CPU for the index bucket of the record `ahead` places after
    /// the oldest (the one an eviction that far ahead will remove).
    #[inline]
    pub(crate) fn prefetch_eviction(&self, ahead: u64) {
        let arrival = self.head + ahead;
        if arrival < self.tail {
            self.prefetch(slot_id(&self.slots[self.slot_of(arrival)]));
        }
    }

    /// The slot of `id` and its arrival number.
    #[inline]
    pub(crate) fn get(&self, id: CommandId) -> Option<(u64, &[u64; W])> {
        self.get_tagged(id, self.tag(id))
    }

    /// `get` with `id`'s tag ([`Ring::tag`]) already computed.
    #[inline]
    pub(crate) fn get_tagged(&self, id: CommandId, tag: u32) -> Option<(u64, &[u64; W])> {
        let (_, arrival) = self.find_tagged(id, tag)?;
        Some((arrival, &self.slots[self.slot_of(arrival)]))
    }

    pub(crate) fn contains(&self, id: CommandId) -> bool {
        self.find(id).is_some()
    }

    /// The slot of the record that arrived as `arrival`, if it is still
    /// kept (no hash: the arrival names the slot). Words 0 and 1 (the id)
    /// must not change.
    #[inline]
    pub(crate) fn slot_mut(&mut self, arrival: u64) -> Option<&mut [u64; W]> {
        if !(self.head..self.tail).contains(&arrival) {
            return None;
        }
        let slot = self.slot_of(arrival);
        Some(&mut self.slots[slot])
    }

    /// Appends a record (its id in words 0 and 1) for an id not kept;
    /// returns its arrival number. The caller makes room first (the table
    /// never grows).
    pub(crate) fn push(&mut self, record: [u64; W]) -> u64 {
        self.push_tagged(record, self.tag(slot_id(&record)))
    }

    /// `push` with the id's tag ([`Ring::tag`]) already computed.
    pub(crate) fn push_tagged(&mut self, record: [u64; W], tag: u32) -> u64 {
        assert!(
            self.len() < self.slots.len(),
            "record ring full: evict first"
        );
        let id = slot_id(&record);
        debug_assert!(!self.contains(id), "an id is kept once");
        debug_assert_eq!(tag, self.tag(id));
        let arrival = self.tail;
        let slot = self.slot_of(arrival);
        self.slots[slot] = record;
        let mut bucket = self.home_bucket(tag);
        while self.index[bucket] != 0 {
            bucket = (bucket + 1) & self.mask;
        }
        self.index[bucket] = u64::from(tag) << 32 | (slot as u64 + 1);
        self.tail += 1;
        arrival
    }

    /// The oldest record kept.
    #[inline]
    pub(crate) fn front(&self) -> Option<&[u64; W]> {
        if self.head == self.tail {
            return None;
        }
        Some(&self.slots[self.slot_of(self.head)])
    }

    /// Drops the oldest record and returns it.
    pub(crate) fn pop_front(&mut self) -> Option<[u64; W]> {
        let record = *self.front()?;
        let slot = self.slot_of(self.head) as u64 + 1;
        let mut bucket = self.home_bucket(self.tag(slot_id(&record)));
        while self.index[bucket] as u32 as u64 != slot {
            assert_ne!(self.index[bucket], 0, "every record kept is indexed");
            bucket = (bucket + 1) & self.mask;
        }
        self.remove_bucket(bucket);
        self.head += 1;
        Some(record)
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
    pub(crate) fn iter(&self) -> impl Iterator<Item = &[u64; W]> + '_ {
        (self.head..self.tail).map(|arrival| &self.slots[self.slot_of(arrival)])
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record(n: u64) -> [u64; 3] {
        let mut slot = slot_for(CommandId(u128::from(n) << 64 | u128::from(n * 7)));
        slot[2] = n;
        slot
    }

    #[test]
    fn a_copy_holds_the_same_records_in_the_same_order_and_arrivals() {
        let mut ring: Ring<3> = Ring::new(1_000, 40);
        for n in 0..2_500u64 {
            if ring.len() == ring.capacity() {
                ring.pop_front();
            }
            ring.push(record(n));
        }
        let copy = ring.clone();
        assert_eq!(copy.capacity(), ring.capacity());
        assert_eq!(copy.bytes(), Ring::<3>::bytes_for(1_000));
        assert_eq!(copy.next_arrival(), ring.next_arrival());
        assert!(copy.iter().eq(ring.iter()));
        for n in [1_499u64, 1_500, 2_000, 2_499] {
            let id = slot_id(&record(n));
            assert_eq!(copy.get(id), ring.get(id), "record {n}");
        }
        assert_eq!(copy.get(slot_id(&record(1_500))).unwrap().0, 1_540);
        assert!(!copy.contains(slot_id(&record(1_499))));
    }

    #[test]
    fn a_status_set_by_arrival_reaches_only_live_records() {
        let mut ring: Ring<3> = Ring::new(4, 0);
        for n in 0..6u64 {
            if ring.len() == ring.capacity() {
                ring.pop_front();
            }
            ring.push(record(n));
        }
        assert!(ring.slot_mut(1).is_none(), "evicted");
        assert!(ring.slot_mut(6).is_none(), "not yet arrived");
        ring.slot_mut(5).unwrap()[2] = 99;
        assert_eq!(ring.get(slot_id(&record(5))).unwrap().1[2], 99);
    }
}
