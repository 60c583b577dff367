//! The router's idempotency records: a [`Ring`] of 64-byte slots allocated
//! once, at start, for `idempotency_records_max` records, that never grows
//! or rehashes (the layout, eviction and hashing are `record_ring.rs`'s).
//! A record is 64 bytes in the ring plus at least 16 in the index: 80 bytes
//! (at most 96) per record. The server marks the table for huge pages and
//! touches it once at start ([`RecordRing::prefault`]).

use crate::command::{AccountId, CommandId};
use crate::record_ring::{slot_id, Ring};
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
#[derive(Debug)]
pub(crate) struct RecordRing(Ring<8>);

impl RecordRing {
    /// A ring for `capacity` records (at least one), arrivals numbered from
    /// `first_arrival`, marked for huge pages, its index left out of forked
    /// processes (the checkpoint's reads the records with [`RecordRing::iter`]
    /// only).
    pub(crate) fn new(capacity: usize, first_arrival: u64) -> RecordRing {
        let mut ring = Ring::new(capacity, first_arrival);
        ring.advise_huge_pages();
        ring.keep_index_from_forks();
        RecordRing(ring)
    }

    /// Touches every page of the table once (see `Ring::prefault`).
    pub(crate) fn prefault(&mut self) {
        self.0.prefault();
    }

    pub(crate) fn capacity(&self) -> usize {
        self.0.capacity()
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Bytes allocated, ring and index.
    pub(crate) fn bytes(&self) -> usize {
        self.0.bytes()
    }

    /// The arrival number the next record gets.
    pub(crate) fn next_arrival(&self) -> u64 {
        self.0.next_arrival()
    }

    /// Asks the CPU for the index bucket where `id`'s look-up starts.
    #[inline]
    pub(crate) fn prefetch(&self, id: CommandId) {
        self.0.prefetch(id);
    }

    /// The record of `id` and its arrival number.
    #[inline]
    pub(crate) fn get(&self, id: CommandId) -> Option<(u64, RouterRecord)> {
        self.0
            .get(id)
            .map(|(arrival, slot)| (arrival, unpack(slot)))
    }

    pub(crate) fn contains(&self, id: CommandId) -> bool {
        self.0.contains(id)
    }

    /// Sets the status of the record that arrived as `arrival`, if it is
    /// still kept (no hash: the arrival names the slot).
    #[inline]
    pub(crate) fn set_status(&mut self, arrival: u64, status: Status) {
        if let Some(slot) = self.0.slot_mut(arrival) {
            slot[4] = (slot[4] & !0xFFFF) | u64::from(status.code()) | META_HAS_STATUS;
        }
    }

    /// Appends a record for an id not kept; returns its arrival number.
    /// The caller makes room first (the table never grows).
    pub(crate) fn push(&mut self, id: CommandId, record: &RouterRecord) -> u64 {
        self.0.push(pack(id, record))
    }

    /// The oldest record kept.
    pub(crate) fn front(&self) -> Option<(CommandId, RouterRecord)> {
        self.0.front().map(|slot| (slot_id(slot), unpack(slot)))
    }

    /// Asks the CPU for the index bucket the eviction `ahead` places after
    /// the next will clear (evictions come in runs of up to a batch).
    #[inline]
    pub(crate) fn prefetch_eviction(&self, ahead: u64) {
        self.0.prefetch_eviction(ahead);
    }

    /// Drops the oldest record.
    pub(crate) fn pop_front(&mut self) -> Option<(CommandId, RouterRecord)> {
        self.0
            .pop_front()
            .map(|slot| (slot_id(&slot), unpack(&slot)))
    }

    /// Every record kept, oldest first.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (CommandId, RouterRecord)> + '_ {
        self.0.iter().map(|slot| (slot_id(slot), unpack(slot)))
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
