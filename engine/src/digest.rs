//! [`DigestHasher`]: BLAKE3 behind a buffer, for the state digest.
//!
//! `Ledger::digest` feeds the state to the hasher a field at a time (1 to
//! 16 bytes), hundreds of millions of times at millions of accounts, and
//! each `blake3::Hasher::update` call costs far more than its few bytes.
//! BLAKE3 hashes a stream: the same bytes give the same hash however they
//! are split, so gathering them in a buffer and handing it over in bulk
//! changes nothing in the digest (a test checks it against the unbuffered
//! hasher) and lets BLAKE3 hash whole runs of chunks at once.

/// Bytes gathered before they go to BLAKE3: many of its 1 KiB chunks at a
/// time (so it can hash several in parallel lanes), small enough to stay in
/// the first-level cache's neighbourhood.
const BUFFER_BYTES: usize = 64 * 1024;

/// A BLAKE3 hasher that takes small writes into a buffer and passes them on
/// in runs of [`BUFFER_BYTES`]. Gives exactly the hash a `blake3::Hasher`
/// fed the same bytes gives.
pub struct DigestHasher {
    hasher: blake3::Hasher,
    buffer: Vec<u8>,
    /// Bytes gathered at most before they go on.
    buffer_bytes: usize,
}

impl std::fmt::Debug for DigestHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestHasher")
            .field("buffered", &self.buffer.len())
            .field("hashed", &self.hasher.count())
            .finish()
    }
}

impl Default for DigestHasher {
    fn default() -> Self {
        DigestHasher::new()
    }
}

impl DigestHasher {
    pub fn new() -> DigestHasher {
        DigestHasher::with_buffer(BUFFER_BYTES)
    }

    /// A hasher that gathers up to `buffer_bytes` before passing them on;
    /// 0 passes every write straight to BLAKE3 (what the digest did
    /// before the buffer: for tests that compare the two).
    pub fn with_buffer(buffer_bytes: usize) -> DigestHasher {
        DigestHasher {
            hasher: blake3::Hasher::new(),
            buffer: Vec::with_capacity(buffer_bytes),
            buffer_bytes,
        }
    }

    /// Adds `bytes` to the stream.
    #[inline]
    pub fn update(&mut self, bytes: &[u8]) -> &mut DigestHasher {
        if self.buffer.len() + bytes.len() > self.buffer_bytes {
            self.flush();
            if bytes.len() >= self.buffer_bytes {
                self.hasher.update(bytes);
                return self;
            }
        }
        self.buffer.extend_from_slice(bytes);
        self
    }

    /// The hash of every byte added.
    pub fn finalize(mut self) -> blake3::Hash {
        self.flush();
        self.hasher.finalize()
    }

    #[cold]
    fn flush(&mut self) {
        if !self.buffer.is_empty() {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
    }
}

/// One item's fields gathered on the stack, to go to the hasher in one
/// update: the digest hashes millions of items of 25 to 650 bytes, and a
/// hasher call per field (1 to 16 bytes) cost more than the hashing (perf
/// at 1M accounts, docs/benchmarks.md). The bytes are the same, so is the
/// digest.
pub(crate) struct Fields<const N: usize> {
    bytes: [u8; N],
    at: usize,
}

impl<const N: usize> Fields<N> {
    #[inline(always)]
    pub(crate) fn new() -> Fields<N> {
        Fields {
            bytes: [0; N],
            at: 0,
        }
    }

    /// Appends a field. Inlined with constant sizes, the checks fold away.
    #[inline(always)]
    pub(crate) fn put(&mut self, field: &[u8]) -> &mut Fields<N> {
        self.bytes[self.at..self.at + field.len()].copy_from_slice(field);
        self.at += field.len();
        self
    }

    /// Hands every field put to `hasher`, which must have filled the item.
    #[inline(always)]
    pub(crate) fn hash_into(&self, hasher: &mut DigestHasher) {
        debug_assert_eq!(self.at, N, "the fields fill the item");
        hasher.update(&self.bytes[..self.at]);
    }
}

/// A 128-bit id as two words in the same order (high word first), to sort
/// by: a copy of the key next to a reference sorts without looking through
/// the reference at every comparison, and `[u64; 2]` keeps the pair at 8-byte
/// alignment (24 bytes with the reference, where a `u128` makes it 32).
#[inline]
pub(crate) fn id_key(id: u128) -> [u64; 2] {
    [(id >> 64) as u64, id as u64]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_split_gives_blake3_of_the_whole() {
        // Writes of 0 to 300 bytes and some past the buffer, so that the
        // buffer is flushed at every kind of boundary.
        let mut stream = Vec::new();
        let mut buffered = DigestHasher::new();
        let mut direct = DigestHasher::with_buffer(0);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..3_000u64 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let len = if round % 997 == 0 {
                BUFFER_BYTES + (state % 5_000) as usize
            } else {
                (state >> 33) as usize % 301
            };
            let piece: Vec<u8> = (0..len).map(|at| (at as u64 ^ state) as u8).collect();
            buffered.update(&piece);
            direct.update(&piece);
            stream.extend_from_slice(&piece);
        }
        assert!(stream.len() > 4 * BUFFER_BYTES);
        assert_eq!(buffered.finalize(), blake3::hash(&stream));
        assert_eq!(direct.finalize(), blake3::hash(&stream));
        assert_eq!(DigestHasher::new().finalize(), blake3::hash(&[]));
    }

    #[test]
    fn id_keys_sort_as_the_ids() {
        let ids = [
            0u128,
            1,
            u64::MAX as u128,
            1 << 64,
            (1 << 64) + 1,
            u128::MAX,
            7 << 100,
        ];
        for a in ids {
            for b in ids {
                assert_eq!(id_key(a).cmp(&id_key(b)), a.cmp(&b), "{a} {b}");
            }
        }
    }
}
