//! The router's table of every command id it keeps a record of (up to
//! `idempotency_records_max`, tens of millions): one hash map per slice of
//! the ids instead of one map.
//!
//! A hash map grows by allocating twice the room and moving every entry,
//! all at once. With one map that move is a pause of the whole pipeline
//! that grows with the table (about 4 s at 8 M records, seen in the load
//! test). Split into slices that all fill at the same rate, the slices would
//! reach their growth points together and make the same pause. So the ids
//! are routed to the slices unevenly: slice `i` gets a share proportional
//! to `2^(i / SLICES)`, the shares spanning a factor of two, and the slices'
//! growth points fall evenly through every doubling of the table. Each pause
//! is then one slice's move, about 1/45 of the table.
//!
//! The slice of an id comes from a multiplicative hash of its bits that the
//! maps' own hash (FxHash) does not use, so the ids of one slice still
//! spread over its map.

use rustc_hash::FxHashMap;

use crate::command::CommandId;

const SLICES: usize = 64;
/// The route table has `2^ROUTE_BITS` entries, each naming a slice.
const ROUTE_BITS: u32 = 12;

pub(crate) struct RecordTable<V> {
    slices: Vec<FxHashMap<CommandId, V>>,
    /// Hash prefix → slice.
    route: Box<[u8]>,
    len: usize,
}

impl<V> std::fmt::Debug for RecordTable<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordTable")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl<V> Default for RecordTable<V> {
    fn default() -> Self {
        RecordTable::new()
    }
}

impl<V> RecordTable<V> {
    pub(crate) fn new() -> RecordTable<V> {
        let entries = 1usize << ROUTE_BITS;
        let weights: Vec<f64> = (0..SLICES)
            .map(|slice| (slice as f64 / SLICES as f64).exp2())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut route = Vec::with_capacity(entries);
        let mut cumulative = 0.0;
        for (slice, weight) in weights.iter().enumerate() {
            cumulative += weight / total;
            let end = ((cumulative * entries as f64).round() as usize).min(entries);
            while route.len() < end {
                route.push(slice as u8);
            }
        }
        route.resize(entries, (SLICES - 1) as u8);
        RecordTable {
            slices: (0..SLICES).map(|_| FxHashMap::default()).collect(),
            route: route.into_boxed_slice(),
            len: 0,
        }
    }

    #[inline]
    fn slice_of(&self, id: &CommandId) -> usize {
        let folded = (id.0 as u64) ^ ((id.0 >> 64) as u64);
        let mixed = folded.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        usize::from(self.route[(mixed >> (64 - ROUTE_BITS)) as usize])
    }

    #[inline]
    pub(crate) fn get(&self, id: &CommandId) -> Option<&V> {
        self.slices[self.slice_of(id)].get(id)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, id: &CommandId) -> Option<&mut V> {
        let slice = self.slice_of(id);
        self.slices[slice].get_mut(id)
    }

    #[inline]
    pub(crate) fn contains_key(&self, id: &CommandId) -> bool {
        self.slices[self.slice_of(id)].contains_key(id)
    }

    #[inline]
    pub(crate) fn insert(&mut self, id: CommandId, value: V) -> Option<V> {
        let slice = self.slice_of(&id);
        let old = self.slices[slice].insert(id, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    #[inline]
    pub(crate) fn remove(&mut self, id: &CommandId) -> Option<V> {
        let slice = self.slice_of(id);
        let old = self.slices[slice].remove(id);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.len
    }

    /// Entries per slice, for tests.
    #[cfg(test)]
    fn slice_lens(&self) -> Vec<usize> {
        self.slices.iter().map(|slice| slice.len()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_one_map() {
        let mut table = RecordTable::new();
        let mut reference = FxHashMap::default();
        let mut state = 0x1234_5678_9ABC_DEF0_u64;
        for step in 0..200_000u64 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Counters and random ids alike.
            let id = CommandId(if step % 2 == 0 {
                u128::from(state % 50_000)
            } else {
                u128::from(state) << 64 | u128::from(step % 50_000)
            });
            match state % 4 {
                0 => assert_eq!(table.remove(&id), reference.remove(&id)),
                1 => assert_eq!(table.get(&id), reference.get(&id)),
                2 => {
                    if let Some(value) = table.get_mut(&id) {
                        *value += 1;
                    }
                    if let Some(value) = reference.get_mut(&id) {
                        *value += 1;
                    }
                }
                _ => assert_eq!(table.insert(id, step), reference.insert(id, step)),
            }
            assert_eq!(table.contains_key(&id), reference.contains_key(&id));
            assert_eq!(table.len(), reference.len());
        }
    }

    #[test]
    fn slices_fill_unevenly_over_a_factor_of_two() {
        let mut table = RecordTable::new();
        for id in 0..1_000_000u128 {
            table.insert(CommandId(id), ());
        }
        let lens = table.slice_lens();
        let (min, max) = (
            *lens.iter().min().unwrap_or(&0),
            *lens.iter().max().unwrap_or(&0),
        );
        // Counter ids: the shares follow the route table, from about
        // 1/92 of the ids to twice that.
        assert!(min > 9_000 && max < 23_000, "{min} {max}");
        assert!(max as f64 / min as f64 > 1.8, "{min} {max}");
        let first: usize = lens[..8].iter().sum();
        let last: usize = lens[SLICES - 8..].iter().sum();
        assert!(last as f64 / first as f64 > 1.7, "{first} {last}");
    }
}
