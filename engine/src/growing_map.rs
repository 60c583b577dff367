//! The hash map of the tables whose size follows the traffic (the account
//! index, holds, payments kept for refunds, payment codes, risk and budget
//! state, instruments, the router's entries): a resize moves a few entries
//! on each insert instead of all of them at once (`griddle`), so a table
//! that doubles from 8 to 16 million entries does not stop the shard for
//! the move (an all-at-once rehash of that size stopped it for 2 to 3 s on
//! a 2-core host, most of it the kernel zeroing the new table). The
//! same FxHash as the rest of the engine; lookups and iteration work as on
//! any hash map (iteration order is never relied on: what is encoded or
//! digested is sorted first).

/// See the module documentation.
pub(crate) type GrowingMap<K, V> = griddle::HashMap<K, V, rustc_hash::FxBuildHasher>;
