//! [`HistoryStore`]: movement history as an append-only chain of segment
//! files, one sequential write per history job and no compaction.
//!
//! Movements are appended in log order to fixed-size segment files in
//! `<data dir>/history/`. Each movement record holds the address of its
//! account's previous record, and an in-memory head index (fixed capacity,
//! allocated at open) holds each account's newest address, so a page follows
//! the chain backwards from the head: one positioned read per entry. Each
//! record also holds its account's newest address in an older segment, so
//! a time range skips whole segments newer than it. A full
//! segment is sealed (a record with the CRC-32C of everything before it;
//! each write likewise ends with a watermark record holding the CRC-32C of
//! the file up to it: checksums per block, one pass over the bytes),
//! fsynced, and given a sorted command-id index file for `tx show`; sealed
//! segments older than the retention are deleted whole. Byte layouts,
//! crash and damage handling: docs/persistence.md, "History".
//!
//! An address is `segment number << 32 | offset in the segment`; segment
//! numbers start at 1, so address 0 means "none".
//!
//! One writer (the history writer thread, or recovery) appends; any number
//! of readers read at once: head slots and addresses are atomics published
//! only after the bytes they name were written.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use rustc_hash::FxHashMap;

use crate::command::{AccountId, CommandId};
use crate::history::{self, HistoryPage, Movement, MovementChunk, MovementRef};
use crate::storage::StorageError;

/// Segment size when the configuration names none.
pub const SEGMENT_BYTES_DEFAULT: u32 = 64 * 1024 * 1024;
/// Smallest segment: one command's legs (at most [`history::MOVEMENT_LEGS_MAX`])
/// always fit in an empty one.
pub const SEGMENT_BYTES_MIN: u32 = 64 * 1024;
/// Largest segment: offsets are u32.
pub const SEGMENT_BYTES_MAX: u32 = 1 << 30;
/// Accounts the head index holds when the configuration names no number.
pub const HISTORY_ACCOUNTS_MAX_DEFAULT: usize = 1 << 20;
/// Most accounts a head index may be configured for.
pub const HISTORY_ACCOUNTS_MAX: usize = crate::limits::ACCOUNTS_MAX;
/// Most records a page request reads while skipping entries newer than its
/// time range; past it the page ends early with a cursor to go on from.
pub const PAGE_SCAN_RECORDS_MAX: usize = 100_000;
/// Most records [`HistoryStore::page_without_waiting`] reads; a page that
/// needs more is read by [`HistoryStore::page`] on a thread that may wait.
pub const PAGE_NO_WAIT_RECORDS_MAX: usize = 256;
/// Segments mapped for reading at most: the newest this store wrote or
/// read (so in the page cache), the active one among them.
const MAPPED_SEGMENTS_MAX: usize = 4;
/// Bytes mapped for reading at most (the newest segment is mapped whatever
/// its size): what the mappings can add to the process's resident size.
const MAPPED_BYTES_MAX: usize = 256 << 20;

/// The history directory inside the data directory.
pub const HISTORY_DIR: &str = "history";
/// The head-index snapshot's file in the history directory.
pub const HEADS_FILE: &str = "heads";

const HEADS_MAGIC: [u8; 8] = *b"prhhead\0";
const HEADS_VERSION: u32 = 1;
const HEADS_HEADER_BYTES: usize = 64;
/// number u32, seal checksum u32, bytes u64, movements u64, first and last
/// timestamp u64, command-index entries u64.
const HEADS_SEGMENT_BYTES: usize = 48;
/// account u64, latest address u64, skip address u64.
const HEADS_ENTRY_BYTES: usize = 24;
/// A seal writes a head-index snapshot once the segments sealed since the
/// last one hold this many times the snapshot's bytes: the snapshots then
/// add at most 1/16 to the history's writes, and a start reads at most the
/// segments that many snapshot sizes hold (a few segments at 1M accounts)
/// plus the active one.
const HEADS_SNAPSHOT_RATIO: u64 = 16;

const SEGMENT_MAGIC: [u8; 8] = *b"prhseg\0\0";
const COMMANDS_MAGIC: [u8; 8] = *b"prhcmd\0\0";
/// Version 5 ([`Format::Relative`]): the records of version 4, and a
/// command's next leg may be written relative to the movement record
/// right before it (`history::encode_movement_follow_on`).
const SEGMENT_VERSION: u32 = 5;
/// Still read. Version 4: compact records ([`Format::Compact`]): a
/// one-byte length, links as varints relative to the record, the movement
/// in `history::encode_movement_compact`; the header holds the segment's
/// base timestamp.
const SEGMENT_VERSION_COMPACT: u32 = 4;
/// Still read. Version 2: records carry no checksum of their own; each
/// watermark and the seal end with the CRC-32C of the file up to them
/// (version 1 had one per record). Version 3: the same records; a
/// movement's value may be version 2 (with its funding instrument,
/// `history::encode_movement`).
const SEGMENT_VERSION_BLOCK_CHECKSUMS: u32 = 3;
/// Still read: its movements are all value version 1, which version 3
/// reads as they are (values say their own version).
const SEGMENT_VERSION_NO_INSTRUMENTS: u32 = 2;
/// Still read (written before 2026-12-07 09:37): every record has its own
/// CRC-32C, watermarks carry none ([`Format::RecordChecksums`]).
const SEGMENT_VERSION_RECORD_CHECKSUMS: u32 = 1;
const HEADER_BYTES: usize = 32;
/// len u32, kind u8.
const RECORD_HEADER_BYTES: usize = 5;
/// Version 4: len u8, kind u8.
const RECORD_HEADER_BYTES_COMPACT: usize = 2;
/// Version 4 links: previous (a varint, and a varint offset when in an
/// older segment) and skip (likewise): at most 5 + 5 bytes each.
const LINKS_BYTES_MAX_COMPACT: usize = 20;
/// The longest version-4 movement record; its length fits its u8.
const MOVEMENT_RECORD_BYTES_MAX_COMPACT: usize =
    RECORD_HEADER_BYTES_COMPACT + LINKS_BYTES_MAX_COMPACT + history::COMPACT_VALUE_BYTES_MAX;
const _: () = assert!(MOVEMENT_RECORD_BYTES_MAX_COMPACT <= u8::MAX as usize);
/// The shortest version-4 movement record (one byte per link).
const MOVEMENT_RECORD_BYTES_MIN_COMPACT: usize =
    RECORD_HEADER_BYTES_COMPACT + 2 + history::COMPACT_VALUE_BYTES_MIN;
/// Version 1: len u32, crc32c u32, kind u8.
const RECORD_HEADER_BYTES_V1: usize = 9;
/// Version 1 movement links: previous and skip address (written from
/// 2026-12-07 07:29), or the previous address alone (before; the version
/// number did not change, so each record says which by its length).
const MOVEMENT_LINKS_BYTES_V1_PREVIOUS_ONLY: usize = 8;
/// Version 1: watermark u64, its timestamp u64 (no block checksum).
const WATERMARK_BODY_BYTES_V1: usize = 16;
/// Version 1: movements u64, last timestamp u64, crc32c u32 of the
/// segment before the seal record.
const SEAL_BODY_BYTES_V1: usize = 20;
const SEAL_RECORD_BYTES_V1: usize = RECORD_HEADER_BYTES_V1 + SEAL_BODY_BYTES_V1;
/// The checksum that ends a watermark or seal record.
const CHECKSUM_BYTES: usize = 4;
const KIND_MOVEMENT: u8 = 1;
const KIND_WATERMARK: u8 = 2;
const KIND_SEAL: u8 = 3;
/// Previous address and skip address before the movement.
const MOVEMENT_LINKS_BYTES: usize = 16;
const MOVEMENT_RECORD_BYTES_MAX: usize =
    RECORD_HEADER_BYTES + MOVEMENT_LINKS_BYTES + history::VALUE_BYTES_MAX;
/// The longest movement record of any version read (version 1's values
/// had no instrument, so its records are shorter despite the longer header).
const RECORD_BYTES_MAX: usize = if MOVEMENT_RECORD_BYTES_MAX > MOVEMENT_RECORD_BYTES_MAX_COMPACT {
    MOVEMENT_RECORD_BYTES_MAX
} else {
    MOVEMENT_RECORD_BYTES_MAX_COMPACT
};
const _: () = assert!(
    RECORD_HEADER_BYTES_V1
        + MOVEMENT_LINKS_BYTES
        + history::VALUE_FIXED_BYTES
        + history::MOVEMENT_KIND_BYTES_MAX
        <= RECORD_BYTES_MAX,
    "a version-1 movement record fits the read buffer"
);
/// Watermark u64, its timestamp u64, checksum.
const WATERMARK_BODY_BYTES: usize = 16 + CHECKSUM_BYTES;
const WATERMARK_RECORD_BYTES: usize = RECORD_HEADER_BYTES + WATERMARK_BODY_BYTES;
/// Movements u64, last timestamp u64, checksum.
const SEAL_BODY_BYTES: usize = 16 + CHECKSUM_BYTES;
const SEAL_RECORD_BYTES: usize = RECORD_HEADER_BYTES + SEAL_BODY_BYTES;
/// Bytes of one command-index entry: command u128 BE, address u64 LE.
const COMMAND_ENTRY_BYTES: usize = 24;
const COMMANDS_HEADER_BYTES: usize = 16;
/// The command index's sort buckets ids by this many bits: the highest
/// in which they differ.
const COMMAND_BUCKET_BITS: u32 = 16;
/// Fewer entries than this are sorted as they are, not bucketed first.
const COMMAND_BUCKET_SORT_MIN: usize = 1 << 14;
const EMPTY_KEY: u64 = u64::MAX;
/// Movements the writer looks ahead to prefetch head slots: enough to
/// cover a memory access (~100 ns) with the work of the movements between
/// (~20 ns each), few enough that the lines are still cached when used.
const HEAD_PREFETCH_DISTANCE: usize = 16;
/// An append writes its buffer to the file whenever it holds this much
/// (at a command's end), so the kernel copies bytes still in cache.
const WRITE_CHUNK_BYTES: usize = 128 * 1024;

const _: () = assert!(
    HEADER_BYTES
        + history::MOVEMENT_LEGS_MAX as usize * RECORD_BYTES_MAX
        + WATERMARK_RECORD_BYTES
        + SEAL_RECORD_BYTES
        <= SEGMENT_BYTES_MIN as usize,
    "one command's legs fit in an empty segment"
);
const _: () = assert!(
    crate::command::AccountId::HOUSE_FIRST < EMPTY_KEY,
    "house accounts (never in the history) hold the empty key"
);

fn io(context: &str, error: impl std::fmt::Display) -> StorageError {
    StorageError::Io(format!("{context}: {error}"))
}

/// How a segment's records are framed, from its header's version. Every
/// version is read; only the newest is written (docs/persistence.md,
/// "History layout").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    /// Version 1: each record has its own CRC-32C; a watermark has none,
    /// the seal holds the CRC-32C of the segment before it.
    RecordChecksums,
    /// Versions 2 and 3: no checksum per record; each watermark and the
    /// seal end with the CRC-32C of the file up to them.
    BlockChecksums,
    /// Version 4: checksums per block as versions 2 and 3; a record's
    /// length is one byte, its links and movement are compact.
    Compact,
    /// Version 5: as version 4, and a movement record may be a follow-on
    /// of the full movement record right before it (a command's next leg).
    Relative,
}

impl Format {
    fn of_version(version: u32) -> Option<Format> {
        match version {
            SEGMENT_VERSION_RECORD_CHECKSUMS => Some(Format::RecordChecksums),
            SEGMENT_VERSION_NO_INSTRUMENTS | SEGMENT_VERSION_BLOCK_CHECKSUMS => {
                Some(Format::BlockChecksums)
            }
            SEGMENT_VERSION_COMPACT => Some(Format::Compact),
            SEGMENT_VERSION => Some(Format::Relative),
            _ => None,
        }
    }

    /// The version a segment this build creates in the format says.
    fn version(self) -> u32 {
        match self {
            Format::RecordChecksums => SEGMENT_VERSION_RECORD_CHECKSUMS,
            Format::BlockChecksums => SEGMENT_VERSION_BLOCK_CHECKSUMS,
            Format::Compact => SEGMENT_VERSION_COMPACT,
            Format::Relative => SEGMENT_VERSION,
        }
    }

    /// The format this build appends in.
    const CURRENT: Format = Format::Relative;

    /// Versions 4 and 5: one-byte record lengths, compact movements and
    /// links, a base timestamp in the header.
    fn is_compact(self) -> bool {
        matches!(self, Format::Compact | Format::Relative)
    }

    fn record_header_bytes(self) -> usize {
        match self {
            Format::RecordChecksums => RECORD_HEADER_BYTES_V1,
            Format::BlockChecksums => RECORD_HEADER_BYTES,
            Format::Compact | Format::Relative => RECORD_HEADER_BYTES_COMPACT,
        }
    }

    fn watermark_record_bytes(self) -> usize {
        match self {
            Format::RecordChecksums => RECORD_HEADER_BYTES_V1 + WATERMARK_BODY_BYTES_V1,
            Format::BlockChecksums | Format::Compact | Format::Relative => {
                self.record_header_bytes() + WATERMARK_BODY_BYTES
            }
        }
    }

    fn seal_record_bytes(self) -> usize {
        match self {
            Format::RecordChecksums => SEAL_RECORD_BYTES_V1,
            Format::BlockChecksums | Format::Compact | Format::Relative => {
                self.record_header_bytes() + SEAL_BODY_BYTES
            }
        }
    }

    /// At least the bytes of `movement`'s record (a compact record's
    /// length depends on its place, so the longest is assumed).
    fn movement_record_bytes_bound(self, movement: MovementRef<'_>) -> usize {
        match self {
            Format::RecordChecksums => {
                RECORD_HEADER_BYTES_V1
                    + MOVEMENT_LINKS_BYTES
                    + history::encoded_movement_len(&movement.movement())
            }
            Format::BlockChecksums => {
                RECORD_HEADER_BYTES
                    + MOVEMENT_LINKS_BYTES
                    + history::encoded_movement_len(&movement.movement())
            }
            Format::Compact | Format::Relative => MOVEMENT_RECORD_BYTES_MAX_COMPACT,
        }
    }
}

/// How the history store is shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Bytes per segment file ([`SEGMENT_BYTES_MIN`] ..= [`SEGMENT_BYTES_MAX`]).
    pub segment_bytes: u32,
    /// Accounts the head index holds; a movement of a further account is not
    /// kept (counted in [`HistoryStats::movements_refused`]).
    pub accounts_max: usize,
    /// Sealed segments whose newest movement is this much older (log time,
    /// ns) than the newest movement written are deleted; 0 keeps everything.
    pub retention_ns: u64,
    /// Open reads and checks every segment, ignoring the head-index
    /// snapshot (`payrail verify`); otherwise it reads only the segments
    /// after the snapshot's.
    pub check_all_segments: bool,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            segment_bytes: SEGMENT_BYTES_DEFAULT,
            accounts_max: HISTORY_ACCOUNTS_MAX_DEFAULT,
            retention_ns: 0,
            check_all_segments: false,
        }
    }
}

impl HistoryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !(SEGMENT_BYTES_MIN..=SEGMENT_BYTES_MAX).contains(&self.segment_bytes) {
            return Err(format!(
                "history segment_bytes must be {SEGMENT_BYTES_MIN} ..= {SEGMENT_BYTES_MAX}, not {}",
                self.segment_bytes
            ));
        }
        if !(1..=HISTORY_ACCOUNTS_MAX).contains(&self.accounts_max) {
            return Err(format!(
                "history accounts_max must be 1 ..= {HISTORY_ACCOUNTS_MAX}, not {}",
                self.accounts_max
            ));
        }
        Ok(())
    }

    /// Bytes the head index allocates at open.
    pub fn head_index_bytes(&self) -> usize {
        head_slots(self.accounts_max) * 32
    }
}

/// Most movement records (so commands) one segment can hold, in the
/// format with the shortest records.
fn commands_per_segment_max(segment_bytes: u32) -> usize {
    segment_bytes as usize / MOVEMENT_RECORD_BYTES_MIN_COMPACT
}

fn head_slots(accounts_max: usize) -> usize {
    accounts_max.saturating_mul(2).next_power_of_two().max(2)
}

/// What the store holds now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HistoryStats {
    pub segments: u64,
    pub bytes: u64,
    /// Movements in the kept segments.
    pub movements: u64,
    /// Timestamp of the oldest kept movement (0: none).
    pub oldest_timestamp: u64,
    pub newest_timestamp: u64,
    /// Accounts in the head index, and its capacity.
    pub accounts: u64,
    pub accounts_max: u64,
    /// Movements not kept because the head index was full.
    pub movements_refused: u64,
    /// Segments deleted by the retention since open.
    pub segments_expired: u64,
    pub retention_ns: u64,
}

/// A damaged segment found at open and what was done about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedSegment {
    pub number: u32,
    pub reason: String,
    /// The history was cut at this segment and recovery rebuilds it from
    /// the log; false: the log no longer holds it, the segment was deleted
    /// and its movements are gone (pages end where they were).
    pub rebuilt: bool,
}

/// What opening the store found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryOpenReport {
    /// Segments read and checked (every block's checksum).
    pub segments: u64,
    pub movements: u64,
    /// Bytes of a torn, unfinished tail dropped (rebuilt from the log).
    pub torn_bytes: u64,
    pub damaged: Vec<DamagedSegment>,
    /// Command-index files rewritten (missing or damaged).
    pub command_indexes_rebuilt: u64,
    /// Sealed segments taken from the head-index snapshot, not read.
    pub segments_from_snapshot: u64,
}

/// One slot of the head index: 32 bytes, two to a cache line, so the
/// writer's look-up and update of an account touch one line.
#[repr(C, align(32))]
struct HeadSlot {
    account: AtomicU64,
    /// The newest record readers may follow (published after its write).
    published: AtomicU64,
    /// Writer only: the newest record appended (ahead of `published`
    /// while a write is being built) and its skip address.
    latest: AtomicU64,
    skip: AtomicU64,
}

/// The in-memory head index: account -> newest record address. Open
/// addressing with linear probing at most half full; slots are never
/// removed, so readers need no lock.
struct HeadIndex {
    slots: Box<[HeadSlot]>,
    mask: usize,
    used: AtomicUsize,
    capacity: usize,
}

impl HeadIndex {
    fn new(capacity: usize) -> HeadIndex {
        let slots = head_slots(capacity);
        // Huge pages before the slots are first written: the writer looks
        // up an account at random in tens of MB, and on 4 KiB pages each
        // look-up also missed the TLB (the largest part of the append's
        // own time in a perf profile of the server, docs/benchmarks.md).
        let mut table = Vec::with_capacity(slots);
        crate::prefetch::advise_huge_pages(table.spare_capacity_mut());
        table.extend((0..slots).map(|_| HeadSlot {
            account: AtomicU64::new(EMPTY_KEY),
            published: AtomicU64::new(0),
            latest: AtomicU64::new(0),
            skip: AtomicU64::new(0),
        }));
        HeadIndex {
            slots: table.into_boxed_slice(),
            mask: slots - 1,
            used: AtomicUsize::new(0),
            capacity,
        }
    }

    fn home(&self, account: u64) -> usize {
        let hash = account.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        ((hash >> 32) ^ hash) as usize & self.mask
    }

    /// Asks the CPU for `account`'s home slot, for a look-up soon.
    #[inline]
    fn prefetch(&self, account: u64) {
        crate::prefetch::prefetch(&self.slots[self.home(account)], 1);
    }

    /// The slot of `account`, if it has one.
    fn find(&self, account: u64) -> Option<&HeadSlot> {
        let mut slot = self.home(account);
        for _ in 0..=self.mask {
            match self.slots[slot].account.load(Ordering::Acquire) {
                key if key == account => return Some(&self.slots[slot]),
                EMPTY_KEY => return None,
                _ => slot = (slot + 1) & self.mask,
            }
        }
        None
    }

    /// The slot of `account`, taking a free one if it has none; `None` when
    /// the index holds `capacity` accounts already. Writer only.
    fn find_or_insert(&self, account: u64) -> Option<usize> {
        debug_assert_ne!(account, EMPTY_KEY);
        let mut slot = self.home(account);
        for _ in 0..=self.mask {
            match self.slots[slot].account.load(Ordering::Relaxed) {
                key if key == account => return Some(slot),
                EMPTY_KEY => {
                    let used = self.used.load(Ordering::Relaxed);
                    if used >= self.capacity {
                        return None;
                    }
                    self.used.store(used + 1, Ordering::Relaxed);
                    // Its address is still 0 ("none") when readers see the key.
                    self.slots[slot].account.store(account, Ordering::Release);
                    return Some(slot);
                }
                _ => slot = (slot + 1) & self.mask,
            }
        }
        None
    }

    fn head(&self, account: u64) -> u64 {
        self.find(account)
            .map_or(0, |slot| slot.published.load(Ordering::Acquire))
    }

    /// Writer only: the links of a new record of the account in `slot` at
    /// `address`, which becomes the slot's latest.
    fn append(&self, slot: usize, address: u64) -> Links {
        let slot = &self.slots[slot];
        let links = Links::after(
            address,
            slot.latest.load(Ordering::Relaxed),
            slot.skip.load(Ordering::Relaxed),
        );
        slot.latest.store(address, Ordering::Relaxed);
        slot.skip.store(links.skip, Ordering::Relaxed);
        links
    }

    /// At open: `account`'s latest record and skip address, from a
    /// snapshot. False when the index is full.
    fn restore(&self, account: u64, latest: u64, skip: u64) -> bool {
        let Some(slot) = self.find_or_insert(account) else {
            return false;
        };
        let slot = &self.slots[slot];
        slot.latest.store(latest, Ordering::Relaxed);
        slot.skip.store(skip, Ordering::Relaxed);
        true
    }

    /// Writer only: readers may now follow the slot's latest record.
    fn publish(&self, slot: usize) {
        let slot = &self.slots[slot];
        slot.published
            .store(slot.latest.load(Ordering::Relaxed), Ordering::Release);
    }
}

fn address_of(number: u32, offset: u32) -> u64 {
    (u64::from(number) << 32) | u64::from(offset)
}

fn split_address(address: u64) -> (u32, u32) {
    ((address >> 32) as u32, address as u32)
}

/// One kept segment, as readers see it.
struct SegmentEntry {
    /// How its records are framed (older segments keep their version).
    format: Format,
    /// Version 4: the timestamp its movements' timestamps are relative to.
    base_timestamp: u64,
    file: Arc<File>,
    /// Bytes written and readable.
    bytes: u64,
    sealed: bool,
    movements: u64,
    first_timestamp: u64,
    last_timestamp: u64,
    /// The sorted command index of a sealed segment: (file, entries).
    commands: Option<(Arc<File>, u64)>,
    /// The file mapped for reading, for the newest segments this store
    /// wrote or read ([`MAPPED_BYTES_MAX`]).
    map: Option<Arc<SegmentMap>>,
}

/// What a read needs of one kept segment, copied out of its entry so that
/// a walk takes the segments' lock once per segment, not per record.
struct SegmentView {
    number: u32,
    format: Format,
    base_timestamp: u64,
    file: Arc<File>,
    /// The segment's mapping, if it has one.
    map: Option<Arc<SegmentMap>>,
    /// Bytes written and readable when the view was taken.
    bytes: u64,
    first_timestamp: u64,
}

/// A segment file mapped read-only and shared (`MAP_SHARED`): a page reads
/// a record there from memory instead of with a `pread` (the system call
/// and the kernel's copy were most of a page's cost, docs/benchmarks.md).
/// The writer still appends with `pwrite`; both go through the one page
/// cache. Only the bytes a segment has published (below its entry's
/// `bytes`) are ever read through a map: they are in the file, so a read
/// never reaches past its end, and they are never written again (segments
/// are append-only; only [`HistoryStore::open`] cuts a file, before it maps
/// any).
struct SegmentMap {
    address: std::ptr::NonNull<u8>,
    len: usize,
}

// Safety: the mapping is read-only, owned by this value alone until its
// drop unmaps it, and only lent out as shared byte slices.
#[allow(unsafe_code)]
unsafe impl Send for SegmentMap {}
// Safety: as for Send; concurrent reads of shared bytes are sound.
#[allow(unsafe_code)]
unsafe impl Sync for SegmentMap {}

impl SegmentMap {
    /// `len` bytes of `file` from its start (more than the file holds is
    /// fine: only its written bytes are read); `None` if the kernel will
    /// not map it (reads then use `pread`).
    fn new(file: &File, len: usize) -> Option<SegmentMap> {
        use std::os::fd::AsRawFd;
        if len == 0 {
            return None;
        }
        // Safety: a new mapping at an address the kernel chooses, aliasing
        // no Rust object; the file descriptor is open for the call (the
        // mapping keeps its own reference to the file).
        #[allow(unsafe_code)]
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return None;
        }
        std::ptr::NonNull::new(address.cast::<u8>()).map(|address| SegmentMap { address, len })
    }

    /// Bytes `start..end` of the file, which the caller knows are written
    /// (below its segment's published `bytes`); `None` if they are not all
    /// inside the mapping.
    fn written(&self, start: usize, end: usize) -> Option<&[u8]> {
        if start > end || end > self.len {
            return None;
        }
        // Safety: `start..end` lies inside the mapping, which lives as
        // long as `self`; those bytes are in the file and never written
        // again while mapped (see the type's comment).
        #[allow(unsafe_code)]
        let bytes =
            unsafe { std::slice::from_raw_parts(self.address.as_ptr().add(start), end - start) };
        Some(bytes)
    }
}

impl Drop for SegmentMap {
    fn drop(&mut self) {
        // Safety: the mapping `new` made, unmapped once; no slice of it
        // outlives `self` (they borrow it).
        #[allow(unsafe_code)]
        unsafe {
            libc::munmap(self.address.as_ptr().cast(), self.len);
        }
    }
}

impl std::fmt::Debug for SegmentMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentMap")
            .field("len", &self.len)
            .finish()
    }
}

/// A mapping of `entry`'s file for reading: its bytes if sealed, else as
/// many as it may grow to.
fn map_segment(entry: &SegmentEntry, segment_bytes: u32) -> Option<Arc<SegmentMap>> {
    let len = if entry.sealed {
        entry.bytes
    } else {
        entry.bytes.max(u64::from(segment_bytes))
    };
    SegmentMap::new(&entry.file, usize::try_from(len).ok()?).map(Arc::new)
}

/// Keeps the mappings of the newest mapped segments, at most
/// [`MAPPED_SEGMENTS_MAX`] of them and [`MAPPED_BYTES_MAX`] bytes (the
/// newest whatever its size), and drops the others' (a page reading one
/// keeps it until it is done).
fn keep_newest_maps(segments: &mut BTreeMap<u32, SegmentEntry>) {
    let (mut count, mut bytes, mut full) = (0usize, 0usize, false);
    for entry in segments.values_mut().rev() {
        let Some(map) = &entry.map else {
            continue;
        };
        full = full
            || (count > 0 && (count == MAPPED_SEGMENTS_MAX || bytes + map.len > MAPPED_BYTES_MAX));
        if full {
            entry.map = None;
        } else {
            count += 1;
            bytes += map.len;
        }
    }
}

/// The segment being appended to, as the writer sees it.
struct Active {
    number: u32,
    format: Format,
    base_timestamp: u64,
    file: Arc<File>,
    /// Bytes in the file.
    offset: u32,
    /// CRC-32C of the file's bytes so far (for the seal).
    crc: u32,
}

struct Writer {
    /// The format of the segments it creates: [`Format::CURRENT`] (tests
    /// write older ones as the builds before did).
    format: Format,
    active: Option<Active>,
    /// The next segment number to create.
    next_number: u32,
    buffer: Vec<u8>,
    /// The buffer ends with a watermark record whose checksum the flush
    /// fills in.
    ends_with_watermark: bool,
    /// Head slots appended to since the last flush.
    dirty: Vec<u32>,
    /// Command id -> address of its first leg, for the records in `buffer`.
    commands: Vec<(u128, u64)>,
    movements_buffered: u64,
    first_timestamp_buffered: u64,
    last_timestamp: u64,
    /// Bytes of the segments sealed since the last head-index snapshot
    /// (`u64::MAX` when there is none that a start could use).
    sealed_since_snapshot: u64,
}

struct Shared {
    dir: PathBuf,
    config: HistoryConfig,
    heads: HeadIndex,
    segments: RwLock<BTreeMap<u32, SegmentEntry>>,
    /// The active segment's command index.
    /// (command, address of its first leg) in the order appended.
    active_commands: Mutex<Vec<(u128, u64)>>,
    watermark: AtomicU64,
    movements_refused: AtomicU64,
    segments_expired: AtomicU64,
    writer: Mutex<Writer>,
}

/// The history store. Clones share one store.
#[derive(Clone)]
pub struct HistoryStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HistoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoryStore")
            .field("dir", &self.shared.dir)
            .field("stats", &self.stats())
            .finish()
    }
}

fn segment_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:010}.seg"))
}

fn commands_path(dir: &Path, number: u32) -> PathBuf {
    dir.join(format!("{number:010}.cmd"))
}

/// A segment's header; `base_timestamp` goes in the bytes versions before
/// 4 reserved (zero).
fn segment_header(
    number: u32,
    segment_bytes: u32,
    format: Format,
    base_timestamp: u64,
) -> [u8; HEADER_BYTES] {
    let mut header = [0u8; HEADER_BYTES];
    header[0..8].copy_from_slice(&SEGMENT_MAGIC);
    header[8..12].copy_from_slice(&format.version().to_le_bytes());
    header[12..16].copy_from_slice(&number.to_le_bytes());
    header[16..20].copy_from_slice(&segment_bytes.to_le_bytes());
    if format.is_compact() {
        header[20..28].copy_from_slice(&base_timestamp.to_le_bytes());
    }
    let crc = crc32c::crc32c(&header[0..28]);
    header[28..32].copy_from_slice(&crc.to_le_bytes());
    header
}

/// The segment's format and base timestamp (0 before version 4).
fn check_header(bytes: &[u8], number: u32) -> Result<(Format, u64), String> {
    if bytes.len() < HEADER_BYTES {
        return Err(format!("the segment has {} bytes, no header", bytes.len()));
    }
    if bytes[0..8] != SEGMENT_MAGIC {
        return Err("the segment header has the wrong magic".to_owned());
    }
    if crc32c::crc32c(&bytes[0..28]) != u32_at(bytes, 28) {
        return Err("the segment header fails its checksum".to_owned());
    }
    let version = u32_at(bytes, 8);
    let Some(format) = Format::of_version(version) else {
        return Err(format!("unknown segment version {version}"));
    };
    if u32_at(bytes, 12) != number {
        return Err(format!(
            "the header says segment {}, the file name {number}",
            u32_at(bytes, 12)
        ));
    }
    let base_timestamp = match format {
        Format::Compact | Format::Relative => u64_at(bytes, 20),
        Format::RecordChecksums | Format::BlockChecksums => 0,
    };
    Ok((format, base_timestamp))
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut buffer = [0u8; 4];
    buffer.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(buffer)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut buffer = [0u8; 8];
    buffer.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(buffer)
}

/// Appends a record of `kind` in `format` (versions 2 to 4) whose body
/// `body` writes; fills in its length. A watermark's or seal's body ends
/// with a checksum the caller fills in when the bytes before it are known
/// ([`HistoryStore::flush`], [`HistoryStore::seal`]).
fn push_record(format: Format, out: &mut Vec<u8>, kind: u8, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    match format {
        Format::Compact | Format::Relative => {
            out.extend_from_slice(&[0, kind]);
            body(out);
            let len = out.len() - start;
            // Every record's longest form fits (MOVEMENT_RECORD_BYTES_MAX_COMPACT).
            assert!(
                len <= usize::from(u8::MAX),
                "a compact record of {len} bytes"
            );
            out[start] = len as u8;
        }
        Format::BlockChecksums | Format::RecordChecksums => {
            debug_assert_eq!(format, Format::BlockChecksums, "version 1 is never written");
            out.extend_from_slice(&[0u8; 4]);
            out.push(kind);
            body(out);
            let len = (out.len() - start) as u32;
            out[start..start + 4].copy_from_slice(&len.to_le_bytes());
        }
    }
}

/// The record at the start of `bytes`: (kind, body, length). In the
/// current format only its framing is checked: the checksums are per block
/// (`scan_segment`); a version-1 record's own checksum is checked too.
fn parse_record(format: Format, bytes: &[u8]) -> Result<(u8, &[u8], usize), String> {
    let header = format.record_header_bytes();
    if bytes.len() < header {
        return Err(format!("a record is cut off after {} bytes", bytes.len()));
    }
    let len = match format {
        Format::Compact | Format::Relative => usize::from(bytes[0]),
        Format::RecordChecksums | Format::BlockChecksums => u32_at(bytes, 0) as usize,
    };
    if !(header..=RECORD_BYTES_MAX).contains(&len) {
        return Err(format!("a record claims {len} bytes"));
    }
    if len > bytes.len() {
        return Err(format!(
            "a record of {len} bytes is cut off after {}",
            bytes.len()
        ));
    }
    match format {
        Format::Compact | Format::Relative => Ok((bytes[1], &bytes[header..len], len)),
        Format::BlockChecksums => Ok((bytes[4], &bytes[header..len], len)),
        Format::RecordChecksums => {
            let record = &bytes[..len];
            let crc = crc32c::crc32c_append(crc32c::crc32c(&record[0..4]), &record[8..]);
            if crc != u32_at(record, 4) {
                return Err("a record fails its checksum".to_owned());
            }
            Ok((record[8], &record[header..], len))
        }
    }
}

/// The links of a movement record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Links {
    /// The account's previous record (0: none).
    previous: u64,
    /// The account's newest record in an older segment than this one's
    /// (0: none).
    skip: u64,
}

impl Links {
    /// The links of a new record at `address` after the account's record
    /// at `previous`, whose skip was `previous_skip`.
    fn after(address: u64, previous: u64, previous_skip: u64) -> Links {
        let skip = if previous != 0 && split_address(previous).0 == split_address(address).0 {
            previous_skip
        } else {
            previous
        };
        Links { previous, skip }
    }
}

/// Appends the links of a compact record at `number:offset`. Previous:
/// a varint, 0 for none, `distance << 1 | 1` back in the same segment, or
/// `segments_back << 1` and then the offset (a varint) in an older one.
/// Skip: a varint, 0 for none, 1 for "the previous address" (what it is
/// whenever the previous record is in an older segment), else
/// `segments_back + 2` and then the offset.
fn encode_links_compact(out: &mut Vec<u8>, number: u32, offset: u32, links: Links) {
    let (previous_number, previous_offset) = split_address(links.previous);
    if links.previous == 0 {
        history::put_varint(out, 0);
    } else if previous_number == number {
        debug_assert!(previous_offset < offset);
        history::put_varint(out, u64::from(offset - previous_offset) << 1 | 1);
    } else {
        debug_assert!(previous_number < number);
        history::put_varint(out, u64::from(number - previous_number) << 1);
        history::put_varint(out, u64::from(previous_offset));
    }
    let (skip_number, skip_offset) = split_address(links.skip);
    if links.skip == 0 {
        history::put_varint(out, 0);
    } else if links.skip == links.previous && previous_number != number {
        history::put_varint(out, 1);
    } else {
        debug_assert!(skip_number <= number);
        history::put_varint(out, u64::from(number - skip_number) + 2);
        history::put_varint(out, u64::from(skip_offset));
    }
}

/// Reads what [`encode_links_compact`] wrote at `*at` of a record at
/// `number:offset`, and moves past it.
fn decode_links_compact(
    body: &[u8],
    at: &mut usize,
    number: u32,
    offset: u32,
) -> Result<Links, String> {
    let out_of_range = || "a movement record's link is out of range".to_owned();
    let older = |segments_back: u64, at: &mut usize| -> Result<u64, String> {
        let number = u32::try_from(segments_back)
            .ok()
            .and_then(|back| number.checked_sub(back))
            .filter(|&number| number > 0)
            .ok_or_else(out_of_range)?;
        let offset = u32::try_from(history::get_varint(body, at)?).map_err(|_| out_of_range())?;
        Ok(address_of(number, offset))
    };
    let previous = match history::get_varint(body, at)? {
        0 => 0,
        value if value & 1 == 1 => {
            let distance = u32::try_from(value >> 1).map_err(|_| out_of_range())?;
            let previous = offset.checked_sub(distance).ok_or_else(out_of_range)?;
            address_of(number, previous)
        }
        value => older(value >> 1, at)?,
    };
    let skip = match history::get_varint(body, at)? {
        0 => 0,
        1 => previous,
        value => older(value - 2, at)?,
    };
    Ok(Links { previous, skip })
}

/// Appends a movement record at `number:offset` of a segment in `format`
/// whose base timestamp is `base_timestamp`; in version 5, a follow-on of
/// `follows` (the movement of the full record `back` bytes before this
/// one, right before it) when given.
fn push_movement(
    format: Format,
    out: &mut Vec<u8>,
    (number, offset): (u32, u32),
    base_timestamp: u64,
    links: Links,
    movement: &Movement,
    follows: Option<(&Movement, u8)>,
) {
    push_record(format, out, KIND_MOVEMENT, |out| match format {
        Format::Compact | Format::Relative => {
            encode_links_compact(out, number, offset, links);
            match follows {
                Some((previous, back)) if format == Format::Relative => {
                    history::encode_movement_follow_on(movement, previous, back, out);
                }
                _ => history::encode_movement_compact(movement, base_timestamp, out),
            }
        }
        Format::BlockChecksums | Format::RecordChecksums => {
            out.extend_from_slice(&links.previous.to_le_bytes());
            out.extend_from_slice(&links.skip.to_le_bytes());
            history::encode_movement(movement, out);
        }
    });
}

/// Where a movement record is and what its segment says about it: the
/// segment's number and base timestamp, the record's offset.
#[derive(Clone, Copy)]
struct Place {
    number: u32,
    offset: u32,
    base_timestamp: u64,
}

/// The account, command and timestamp of the movement record body `body`
/// at `place`, read without decoding the rest (blocks of versions 2 to 4).
fn movement_keys(
    format: Format,
    body: &[u8],
    place: Place,
) -> Result<(AccountId, CommandId, u64), String> {
    match format {
        // Version 5's scan reads follow-ons with their first leg
        // (`RelativeScan`); a record that is not one reads as version 4.
        Format::Compact | Format::Relative => {
            let mut at = 0;
            decode_links_compact(body, &mut at, place.number, place.offset)?;
            history::movement_keys_compact(&body[at..], place.base_timestamp)
        }
        Format::BlockChecksums | Format::RecordChecksums => body
            .get(MOVEMENT_LINKS_BYTES..)
            .ok_or_else(|| "a movement record has no links".to_owned())
            .and_then(history::movement_keys),
    }
}

/// A movement record's body at `place`: (links, movement). A version-5
/// follow-on asks `previous` for the movement of the record it follows,
/// which starts the given number of bytes before it.
fn decode_movement_body(
    format: Format,
    body: &[u8],
    place: Place,
    previous: impl FnOnce(u8) -> Result<Movement, String>,
) -> Result<(Links, Movement), String> {
    if format == Format::RecordChecksums {
        return decode_movement_body_v1(body);
    }
    if format.is_compact() {
        let mut at = 0;
        let links = decode_links_compact(body, &mut at, place.number, place.offset)?;
        let bytes = &body[at..];
        let movement = match history::follow_on_back(bytes) {
            Some(back) if format == Format::Relative => {
                history::decode_movement_follow_on(bytes, &previous(back)?)?
            }
            _ => history::decode_movement_compact(bytes, place.base_timestamp)?,
        };
        return Ok((links, movement));
    }
    if body.len() < MOVEMENT_LINKS_BYTES {
        return Err("a movement record has no links".to_owned());
    }
    let links = Links {
        previous: u64_at(body, 0),
        skip: u64_at(body, 8),
    };
    Ok((
        links,
        history::decode_movement(&body[MOVEMENT_LINKS_BYTES..])?,
    ))
}

/// A version-1 movement record's body, with 16 bytes of links or (the
/// earliest records) 8: whichever leaves a whole movement. A record with
/// the previous address alone gets that address as its skip address too:
/// following it instead of a skip reads more records, never fewer.
fn decode_movement_body_v1(body: &[u8]) -> Result<(Links, Movement), String> {
    let value_after = |links: usize| {
        body.get(links..)
            .ok_or_else(|| "a movement record has no links".to_owned())
            .and_then(history::decode_movement)
    };
    match value_after(MOVEMENT_LINKS_BYTES) {
        Ok(movement) => {
            let links = Links {
                previous: u64_at(body, 0),
                skip: u64_at(body, 8),
            };
            Ok((links, movement))
        }
        // Most records have both links: say what is wrong with that.
        Err(reason) => match value_after(MOVEMENT_LINKS_BYTES_V1_PREVIOUS_ONLY) {
            Ok(movement) => {
                let previous = u64_at(body, 0);
                let links = Links {
                    previous,
                    skip: previous,
                };
                Ok((links, movement))
            }
            Err(_) => Err(reason),
        },
    }
}

/// [`movement_keys`] of a record in a scan, which reads a version-5
/// follow-on with the full record right before it (`first_leg`, which it
/// updates: this record, if it is a full one of version 5).
fn relative_keys(
    format: Format,
    body: &[u8],
    place: Place,
    first_leg: &mut Option<(usize, AccountId, CommandId, u64)>,
) -> Result<(AccountId, CommandId, u64), String> {
    if format != Format::Relative {
        return movement_keys(format, body, place);
    }
    let mut at = 0;
    decode_links_compact(body, &mut at, place.number, place.offset)?;
    let bytes = &body[at..];
    let offset = place.offset as usize;
    match history::follow_on_back(bytes) {
        Some(back) => {
            let Some((leg_offset, counterparty, command, timestamp)) = first_leg.take() else {
                return Err("a follow-on movement follows no full movement record".to_owned());
            };
            if leg_offset + usize::from(back) != offset {
                return Err(format!(
                    "a follow-on movement says its first leg is {back} bytes back, not {}",
                    offset - leg_offset
                ));
            }
            let account = history::follow_on_account(bytes, counterparty)?;
            Ok((account, command, timestamp))
        }
        None => {
            let (account, counterparty, command, timestamp) =
                history::movement_head_compact(bytes, place.base_timestamp)?;
            *first_leg = Some((offset, counterparty, command, timestamp));
            Ok((account, command, timestamp))
        }
    }
}

/// Reads the movement record at `place` of a segment `file` in `format`:
/// (links, movement, record length), or `Err(kind)` if the record there
/// is of another kind. One positioned read: in version 5 it takes the
/// bytes before the record too, where a follow-on's first leg is.
fn read_movement_record(
    segment: &SegmentView,
    offset: u32,
    mode: ReadMode,
) -> Result<RecordRead, StorageError> {
    let format = segment.format;
    let number = segment.number;
    let place = Place {
        number,
        offset,
        base_timestamp: segment.base_timestamp,
    };
    let corrupt = |reason: String| {
        StorageError::Io(format!(
            "the history record at {number}:{offset} is corrupt: {reason}"
        ))
    };
    let before = if format == Format::Relative {
        (offset as usize)
            .saturating_sub(HEADER_BYTES)
            .min(RECORD_BYTES_MAX)
    } else {
        0
    };
    let start = offset as usize - before;
    // From the mapping when the segment has one (no system call), else
    // one positioned read.
    let mut buffer = [0u8; 2 * RECORD_BYTES_MAX];
    let mapped = segment.map.as_ref().and_then(|map| {
        let end = (offset as usize + RECORD_BYTES_MAX).min(segment.bytes as usize);
        map.written(start, end)
    });
    let window: &[u8] = match mapped {
        Some(bytes) => bytes,
        None => {
            let window = &mut buffer[..before + RECORD_BYTES_MAX];
            let read = match mode {
                ReadMode::Wait => read_full_at(&segment.file, window, start as u64),
                ReadMode::NoWait => match read_cached_at(&segment.file, window, start as u64) {
                    Ok(Some(read)) => Ok(read),
                    Ok(None) => return Ok(RecordRead::NotCached),
                    Err(error) => Err(error),
                },
            }
            .map_err(|error| io("cannot read history", error))?;
            &buffer[..read]
        }
    };
    if window.len() < before {
        return Err(corrupt("the segment ends before it".to_owned()));
    }
    let (kind, body, len) = parse_record(format, &window[before..]).map_err(corrupt)?;
    if kind != KIND_MOVEMENT {
        return Ok(RecordRead::OtherKind(kind));
    }
    let first_leg = |back: u8| -> Result<Movement, String> {
        let back = usize::from(back);
        let Some(start) = before.checked_sub(back).filter(|_| back > 0) else {
            return Err(format!(
                "a follow-on's first leg {back} bytes back is outside the segment"
            ));
        };
        let (kind, body, len) = parse_record(format, &window[start..before])?;
        if kind != KIND_MOVEMENT || len != back {
            return Err("a follow-on movement does not follow a movement record".to_owned());
        }
        let place = Place {
            offset: offset - back as u32,
            ..place
        };
        decode_movement_body(format, body, place, |_| {
            Err("a follow-on movement follows another follow-on".to_owned())
        })
        .map(|(_, movement)| movement)
    };
    let (links, movement) =
        decode_movement_body(format, body, place, first_leg).map_err(corrupt)?;
    Ok(RecordRead::Movement(links, movement, len))
}

/// What [`read_movement_record`] found.
enum RecordRead {
    /// A movement record: its links, its movement, its length.
    Movement(Links, Movement, usize),
    /// A record of another kind.
    OtherKind(u8),
    /// Its bytes are not all in the page cache ([`ReadMode::NoWait`]).
    NotCached,
}

/// What reading one segment file found.
#[derive(Default)]
struct Scanned {
    /// How its records are framed (from its header; `None` if the header
    /// is damaged).
    format: Option<Format>,
    /// Version 4: the header's base timestamp.
    base_timestamp: u64,
    /// Bytes of well-formed records from the start (header included).
    valid_end: usize,
    /// After the last watermark record: (offset past it, watermark, its timestamp).
    last_watermark: Option<(usize, u64, u64)>,
    sealed: bool,
    /// Why reading stopped before the end of the file, if it did.
    error: Option<String>,
    /// (account, offset, timestamp) of each movement record.
    movements: Vec<(u64, u32, u64)>,
    /// (command, offset of its first leg).
    commands: Vec<(u128, u32)>,
}

fn scan_segment(bytes: &[u8], number: u32) -> Scanned {
    let mut scanned = Scanned::default();
    let format = match check_header(bytes, number) {
        Ok((Format::RecordChecksums, _)) => return scan_segment_v1(bytes),
        Ok((format, base_timestamp)) => {
            scanned.format = Some(format);
            scanned.base_timestamp = base_timestamp;
            format
        }
        Err(reason) => {
            scanned.error = Some(reason);
            return scanned;
        }
    };
    let mut at = HEADER_BYTES;
    // CRC-32C of `bytes[..checked]`; everything up to `verified` was
    // checked against a watermark's or the seal's checksum.
    let mut crc = 0u32;
    let mut checked = 0usize;
    let mut verified = HEADER_BYTES;
    let mut last_command: Option<u128> = None;
    // Version 5: the full movement record right before this one, if the
    // last record was one: (its offset, counterparty, command, timestamp).
    let mut first_leg: Option<(usize, AccountId, CommandId, u64)> = None;
    while at < bytes.len() {
        let (kind, body, len) = match parse_record(format, &bytes[at..]) {
            Ok(record) => record,
            Err(reason) => {
                scanned.error = Some(format!("at offset {at}: {reason}"));
                break;
            }
        };
        let end = at + len;
        // A watermark or the seal: the file up to its checksum must match it.
        let block_ends = |crc: &mut u32, checked: &mut usize| -> bool {
            let checksum_at = end - CHECKSUM_BYTES;
            *crc = crc32c::crc32c_append(*crc, &bytes[*checked..checksum_at]);
            let matches = *crc == u32_at(bytes, checksum_at);
            *crc = crc32c::crc32c_append(*crc, &bytes[checksum_at..end]);
            *checked = end;
            matches
        };
        match kind {
            KIND_MOVEMENT => match relative_keys(
                format,
                body,
                Place {
                    number,
                    offset: at as u32,
                    base_timestamp: scanned.base_timestamp,
                },
                &mut first_leg,
            ) {
                Ok((account, command, timestamp)) => {
                    scanned.movements.push((account.0, at as u32, timestamp));
                    if last_command != Some(command.0) {
                        scanned.commands.push((command.0, at as u32));
                        last_command = Some(command.0);
                    }
                }
                Err(reason) => {
                    scanned.error = Some(format!("at offset {at}: {reason}"));
                    break;
                }
            },
            KIND_WATERMARK if body.len() == WATERMARK_BODY_BYTES => {
                if !block_ends(&mut crc, &mut checked) {
                    scanned.error = Some(format!(
                        "the block ending at offset {end} fails its checksum"
                    ));
                    break;
                }
                verified = end;
                last_command = None;
                first_leg = None;
                scanned.last_watermark = Some((end, u64_at(body, 0), u64_at(body, 8)));
            }
            KIND_SEAL if body.len() == SEAL_BODY_BYTES => {
                if !block_ends(&mut crc, &mut checked) {
                    scanned.error = Some("the segment fails its seal's checksum".to_owned());
                    break;
                }
                if end != bytes.len() {
                    scanned.error = Some(format!("{} bytes follow the seal", bytes.len() - end));
                    break;
                }
                scanned.valid_end = end;
                scanned.sealed = true;
                return scanned;
            }
            _ => {
                scanned.error = Some(format!("at offset {at}: unknown record kind {kind}"));
                break;
            }
        }
        at = end;
    }
    if scanned.error.is_none() {
        // Records after the last watermark are whole but not yet checked
        // (an unfinished block): `HistoryStore::open` cuts them off.
        scanned.valid_end = bytes.len();
    } else {
        // What follows the last checked block cannot be trusted.
        scanned.valid_end = verified;
        scanned
            .movements
            .retain(|&(_, offset, _)| (offset as usize) < verified);
        scanned
            .commands
            .retain(|&(_, offset)| (offset as usize) < verified);
    }
    scanned
}

/// [`scan_segment`] of a version-1 segment (its header checked): every
/// record checked against its own checksum, so everything up to the first
/// record that fails is whole; the seal checked against the segment
/// before it.
fn scan_segment_v1(bytes: &[u8]) -> Scanned {
    let mut scanned = Scanned {
        format: Some(Format::RecordChecksums),
        valid_end: HEADER_BYTES,
        ..Scanned::default()
    };
    let mut at = HEADER_BYTES;
    let mut last_command: Option<u128> = None;
    while at < bytes.len() {
        let (kind, body, len) = match parse_record(Format::RecordChecksums, &bytes[at..]) {
            Ok(record) => record,
            Err(reason) => {
                scanned.error = Some(format!("at offset {at}: {reason}"));
                break;
            }
        };
        match kind {
            KIND_MOVEMENT => match decode_movement_body_v1(body) {
                Ok((_, movement)) => {
                    scanned
                        .movements
                        .push((movement.account.0, at as u32, movement.timestamp));
                    if last_command != Some(movement.command.0) {
                        scanned.commands.push((movement.command.0, at as u32));
                        last_command = Some(movement.command.0);
                    }
                }
                Err(reason) => {
                    scanned.error = Some(format!("at offset {at}: {reason}"));
                    break;
                }
            },
            KIND_WATERMARK if body.len() == WATERMARK_BODY_BYTES_V1 => {
                last_command = None;
                scanned.last_watermark = Some((at + len, u64_at(body, 0), u64_at(body, 8)));
            }
            KIND_SEAL if body.len() == SEAL_BODY_BYTES_V1 => {
                if crc32c::crc32c(&bytes[..at]) != u32_at(body, 16) {
                    scanned.error = Some("the segment fails its seal's checksum".to_owned());
                    break;
                }
                if at + len != bytes.len() {
                    scanned.error = Some(format!(
                        "{} bytes follow the seal",
                        bytes.len() - (at + len)
                    ));
                    break;
                }
                scanned.valid_end = at + len;
                scanned.sealed = true;
                return scanned;
            }
            _ => {
                scanned.error = Some(format!("at offset {at}: unknown record kind {kind}"));
                break;
            }
        }
        at += len;
        scanned.valid_end = at;
    }
    scanned
}

/// The seal record of a version-1 segment whose first `end` bytes are
/// `bytes` (all whole records): its movement count, newest timestamp and
/// the CRC-32C of those bytes, framed with the record's own checksum.
fn seal_record_v1(bytes: &[u8], movements: u64, last_timestamp: u64) -> Vec<u8> {
    let mut record = Vec::with_capacity(SEAL_RECORD_BYTES_V1);
    record.extend_from_slice(&(SEAL_RECORD_BYTES_V1 as u32).to_le_bytes());
    record.extend_from_slice(&[0u8; 4]);
    record.push(KIND_SEAL);
    record.extend_from_slice(&movements.to_le_bytes());
    record.extend_from_slice(&last_timestamp.to_le_bytes());
    record.extend_from_slice(&crc32c::crc32c(bytes).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&record[0..4]), &record[8..]);
    record[4..8].copy_from_slice(&crc.to_le_bytes());
    record
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|file| file.sync_all())
        .map_err(|error| io(&format!("cannot sync {}", dir.display()), error))
}

fn read_full_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

/// How a record read may get its bytes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ReadMode {
    /// From the disk if need be (`pread`).
    Wait,
    /// Only from the page cache (`preadv2` with `RWF_NOWAIT`): a read that
    /// would wait for the disk is not made.
    NoWait,
}

/// [`read_full_at`] from the page cache only: `None` if any of the bytes
/// would have to come from the disk (or the kernel cannot say so).
fn read_cached_at(file: &File, buffer: &mut [u8], offset: u64) -> std::io::Result<Option<usize>> {
    use std::os::fd::AsRawFd;
    let mut filled = 0;
    while filled < buffer.len() {
        let rest = &mut buffer[filled..];
        let vector = libc::iovec {
            iov_base: rest.as_mut_ptr().cast(),
            iov_len: rest.len(),
        };
        let Ok(at) = libc::off_t::try_from(offset + filled as u64) else {
            return Ok(None);
        };
        // Safety: one iovec naming `rest`, a live, exclusively borrowed
        // buffer of `iov_len` bytes that the kernel fills and nothing else
        // touches during the call; the file descriptor is `file`'s, open
        // for as long as the borrow.
        #[allow(unsafe_code)]
        let read = unsafe { libc::preadv2(file.as_raw_fd(), &vector, 1, at, libc::RWF_NOWAIT) };
        match read {
            0 => break,
            read if read > 0 => filled += read as usize,
            _ => {
                let error = std::io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // Not in the page cache (EAGAIN), or no RWF_NOWAIT
                    // here (EOPNOTSUPP, EINVAL, ENOSYS): a read that may
                    // wait will do it.
                    Some(libc::EAGAIN | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS) => {
                        return Ok(None)
                    }
                    _ => return Err(error),
                }
            }
        }
    }
    Ok(Some(filled))
}

/// `commands` sorted by command id, then address, with only the last
/// (highest) address of a command id kept (one applied twice, after its
/// idempotency record expired, is found at its newer application).
///
/// A counting sort by [`COMMAND_BUCKET_BITS`] bits of the id, the
/// highest ones in which the ids differ (not simply the top ones: ids that
/// share a prefix, a load generator's run nonce or a time-ordered id's
/// time, fell in a few buckets and cost one large sort: 10 % of the
/// history writer's time in a profile of the server, docs/benchmarks.md),
/// then each bucket the same way if it is still large, else sorted on its
/// own: a seal's million entries take a few passes and many small sorts
/// instead of one large one.
fn sorted_commands(commands: &[(u128, u64)]) -> Vec<(u128, u64)> {
    let mut sorted = commands.to_vec();
    let mut scratch = vec![(0u128, 0u64); sorted.len()];
    sort_commands(&mut sorted, &mut scratch);
    let mut kept = 0;
    for index in 0..sorted.len() {
        if sorted
            .get(index + 1)
            .is_some_and(|next| next.0 == sorted[index].0)
        {
            continue;
        }
        sorted[kept] = sorted[index];
        kept += 1;
    }
    sorted.truncate(kept);
    sorted
}

/// Sorts `entries` by (id, address), `scratch` being as long: see
/// [`sorted_commands`].
fn sort_commands(entries: &mut [(u128, u64)], scratch: &mut [(u128, u64)]) {
    let Some(&(first, _)) = entries.first() else {
        return;
    };
    if entries.len() < COMMAND_BUCKET_SORT_MIN || scratch.len() != entries.len() {
        entries.sort_unstable();
        return;
    }
    let differ = entries
        .iter()
        .fold(0u128, |differ, &(command, _)| differ | (command ^ first));
    if differ == 0 {
        // One id: by address.
        entries.sort_unstable();
        return;
    }
    let top = 128 - differ.leading_zeros();
    let shift = top.saturating_sub(COMMAND_BUCKET_BITS);
    let mask = (1u128 << COMMAND_BUCKET_BITS) - 1;
    let bucket = |command: u128| ((command >> shift) & mask) as usize;
    // starts[b]: where bucket b begins in the sorted order.
    let mut starts = vec![0usize; (1 << COMMAND_BUCKET_BITS) + 1];
    for &(command, _) in entries.iter() {
        starts[bucket(command) + 1] += 1;
    }
    for index in 1..starts.len() {
        starts[index] += starts[index - 1];
    }
    let mut next = starts.clone();
    for &entry in entries.iter() {
        let slot = &mut next[bucket(entry.0)];
        scratch[*slot] = entry;
        *slot += 1;
    }
    entries.copy_from_slice(scratch);
    for bounds in starts.windows(2) {
        let (from, to) = (bounds[0], bounds[1]);
        if to - from > 1 {
            sort_commands(&mut entries[from..to], &mut scratch[from..to]);
        }
    }
}

/// The number of entries of a well-formed command index file.
fn check_commands(bytes: &[u8]) -> Option<u64> {
    if bytes.len() < COMMANDS_HEADER_BYTES + 4 || bytes[0..8] != COMMANDS_MAGIC {
        return None;
    }
    let count = u64_at(bytes, 8);
    let expected = (count as usize)
        .checked_mul(COMMAND_ENTRY_BYTES)?
        .checked_add(COMMANDS_HEADER_BYTES + 4)?;
    if bytes.len() != expected {
        return None;
    }
    let body = bytes.len() - 4;
    (crc32c::crc32c(&bytes[..body]) == u32_at(bytes, body)).then_some(count)
}

/// Deduplicates (command, address) pairs: the later address of a command
/// wins (a command id applied again after its idempotency record expired).
fn latest_commands(commands: impl IntoIterator<Item = (u128, u64)>) -> Vec<(u128, u64)> {
    let mut map: FxHashMap<u128, u64> = FxHashMap::default();
    for (command, address) in commands {
        map.insert(command, address);
    }
    map.into_iter().collect()
}

/// A sealed segment as the head-index snapshot describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SnapshotSegment {
    number: u32,
    /// The seal record's checksum (the file's last 4 bytes).
    seal_checksum: u32,
    bytes: u64,
    movements: u64,
    first_timestamp: u64,
    last_timestamp: u64,
    /// Entries of its command index.
    commands: u64,
}

/// The head index as it stood when segment `last_sealed` was sealed, and
/// the sealed segments up to it: a start takes these instead of reading
/// those segments (docs/persistence.md, "Head-index snapshot").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct HeadsSnapshot {
    last_sealed: u32,
    /// The last watermark record in the segments up to `last_sealed`.
    watermark: u64,
    last_timestamp: u64,
    refused: u64,
    segments: Vec<SnapshotSegment>,
    /// (account, latest address, skip address).
    heads: Vec<(u64, u64, u64)>,
}

impl HeadsSnapshot {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            HEADS_HEADER_BYTES
                + self.segments.len() * HEADS_SEGMENT_BYTES
                + self.heads.len() * HEADS_ENTRY_BYTES
                + CHECKSUM_BYTES,
        );
        out.extend_from_slice(&HEADS_MAGIC);
        out.extend_from_slice(&HEADS_VERSION.to_le_bytes());
        out.extend_from_slice(&self.last_sealed.to_le_bytes());
        for value in [
            self.watermark,
            self.last_timestamp,
            self.refused,
            self.segments.len() as u64,
            self.heads.len() as u64,
            0,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        debug_assert_eq!(out.len(), HEADS_HEADER_BYTES);
        for segment in &self.segments {
            out.extend_from_slice(&segment.number.to_le_bytes());
            out.extend_from_slice(&segment.seal_checksum.to_le_bytes());
            for value in [
                segment.bytes,
                segment.movements,
                segment.first_timestamp,
                segment.last_timestamp,
                segment.commands,
            ] {
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
        for &(account, latest, skip) in &self.heads {
            out.extend_from_slice(&account.to_le_bytes());
            out.extend_from_slice(&latest.to_le_bytes());
            out.extend_from_slice(&skip.to_le_bytes());
        }
        let checksum = crc32c::crc32c(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Decodes a snapshot file; `None` if it is not a whole, well-formed
    /// snapshot of this version.
    fn decode(bytes: &[u8]) -> Option<HeadsSnapshot> {
        if bytes.len() < HEADS_HEADER_BYTES + CHECKSUM_BYTES || bytes[0..8] != HEADS_MAGIC {
            return None;
        }
        let body = bytes.len() - CHECKSUM_BYTES;
        if crc32c::crc32c(&bytes[..body]) != u32_at(bytes, body)
            || u32_at(bytes, 8) != HEADS_VERSION
        {
            return None;
        }
        let segments = usize::try_from(u64_at(bytes, 40)).ok()?;
        let heads = usize::try_from(u64_at(bytes, 48)).ok()?;
        let expected = segments
            .checked_mul(HEADS_SEGMENT_BYTES)?
            .checked_add(heads.checked_mul(HEADS_ENTRY_BYTES)?)?
            .checked_add(HEADS_HEADER_BYTES)?;
        if expected != body {
            return None;
        }
        let mut snapshot = HeadsSnapshot {
            last_sealed: u32_at(bytes, 12),
            watermark: u64_at(bytes, 16),
            last_timestamp: u64_at(bytes, 24),
            refused: u64_at(bytes, 32),
            segments: Vec::with_capacity(segments),
            heads: Vec::with_capacity(heads),
        };
        let mut at = HEADS_HEADER_BYTES;
        for _ in 0..segments {
            snapshot.segments.push(SnapshotSegment {
                number: u32_at(bytes, at),
                seal_checksum: u32_at(bytes, at + 4),
                bytes: u64_at(bytes, at + 8),
                movements: u64_at(bytes, at + 16),
                first_timestamp: u64_at(bytes, at + 24),
                last_timestamp: u64_at(bytes, at + 32),
                commands: u64_at(bytes, at + 40),
            });
            at += HEADS_SEGMENT_BYTES;
        }
        for _ in 0..heads {
            snapshot.heads.push((
                u64_at(bytes, at),
                u64_at(bytes, at + 8),
                u64_at(bytes, at + 16),
            ));
            at += HEADS_ENTRY_BYTES;
        }
        Some(snapshot)
    }

    /// The snapshot in `dir`, if there is a well-formed one.
    fn read(dir: &Path) -> Option<HeadsSnapshot> {
        let bytes = fs::read(dir.join(HEADS_FILE)).ok()?;
        let snapshot = HeadsSnapshot::decode(&bytes);
        if snapshot.is_none() {
            tracing::warn!("the history's head-index snapshot is damaged: reading every segment");
        }
        snapshot
    }

    /// Puts the snapshot's sealed segments into `segments` and its heads
    /// into `heads`, after checking it against the segment files present
    /// (`numbers`, sorted). False if it does not fit them: a segment it
    /// names differs (size, seal, command index), a segment up to
    /// `last_sealed` is there that it does not name, one it names is
    /// missing but a later one is there (only the retention deletes
    /// segments, oldest first), or the index is too small for its heads.
    fn restore(
        &self,
        dir: &Path,
        numbers: &[u32],
        heads: &HeadIndex,
        segments: &mut BTreeMap<u32, SegmentEntry>,
    ) -> Result<bool, StorageError> {
        if self.heads.len() > heads.capacity {
            return Ok(false);
        }
        let present_up_to_last = numbers
            .iter()
            .filter(|&&number| number <= self.last_sealed)
            .count();
        let mut gone_before = true;
        let mut present = 0;
        for segment in &self.segments {
            if numbers.binary_search(&segment.number).is_err() {
                if !gone_before {
                    return Ok(false);
                }
                continue;
            }
            gone_before = false;
            present += 1;
            let Some(entry) = open_snapshot_segment(dir, segment)? else {
                return Ok(false);
            };
            segments.insert(segment.number, entry);
        }
        if present != present_up_to_last {
            return Ok(false);
        }
        let first_kept = segments.keys().next().copied().unwrap_or(u32::MAX);
        for &(account, latest, skip) in &self.heads {
            if split_address(latest).0 < first_kept {
                // Every movement of the account was deleted by the retention.
                continue;
            }
            if account == EMPTY_KEY || !heads.restore(account, latest, skip) {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The entry of a sealed segment the snapshot names, if its files are
/// as the snapshot says.
fn open_snapshot_segment(
    dir: &Path,
    segment: &SnapshotSegment,
) -> Result<Option<SegmentEntry>, StorageError> {
    let path = segment_path(dir, segment.number);
    let file =
        File::open(&path).map_err(|error| io(&format!("cannot open {}", path.display()), error))?;
    let len = file
        .metadata()
        .map_err(|error| io(&format!("cannot read {}", path.display()), error))?
        .len();
    let mut header = [0u8; HEADER_BYTES];
    let read = read_full_at(&file, &mut header, 0)
        .map_err(|error| io(&format!("cannot read {}", path.display()), error))?;
    let Ok((format, base_timestamp)) = check_header(&header[..read], segment.number) else {
        return Ok(None);
    };
    let seal_bytes = format.seal_record_bytes();
    if len != segment.bytes || len < (HEADER_BYTES + seal_bytes) as u64 {
        return Ok(None);
    }
    let mut seal = [0u8; SEAL_RECORD_BYTES_V1];
    let seal = &mut seal[..seal_bytes];
    let read = read_full_at(&file, seal, len - seal_bytes as u64)
        .map_err(|error| io(&format!("cannot read {}", path.display()), error))?;
    if read != seal_bytes
        || seal[format.record_header_bytes() - 1] != KIND_SEAL
        || u32_at(seal, seal_bytes - CHECKSUM_BYTES) != segment.seal_checksum
    {
        return Ok(None);
    }
    let commands_file = commands_path(dir, segment.number);
    let Ok(commands) = File::open(&commands_file) else {
        return Ok(None);
    };
    let expected = segment
        .commands
        .checked_mul(COMMAND_ENTRY_BYTES as u64)
        .and_then(|bytes| bytes.checked_add((COMMANDS_HEADER_BYTES + CHECKSUM_BYTES) as u64));
    if commands.metadata().ok().map(|metadata| metadata.len()) != expected {
        return Ok(None);
    }
    Ok(Some(SegmentEntry {
        format,
        base_timestamp,
        file: Arc::new(file),
        bytes: len,
        sealed: true,
        movements: segment.movements,
        first_timestamp: segment.first_timestamp,
        last_timestamp: segment.last_timestamp,
        commands: Some((Arc::new(commands), segment.commands)),
        // Not read at this start: maybe not in the page cache.
        map: None,
    }))
}

/// Deletes the head-index snapshot, durably, if there is one.
fn remove_heads_snapshot(dir: &Path) -> Result<(), StorageError> {
    match fs::remove_file(dir.join(HEADS_FILE)) {
        Ok(()) => sync_dir(dir),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io("cannot delete the history's head-index snapshot", error)),
    }
}

impl HistoryStore {
    /// Opens (creating if needed) the store in `dir`. The head index and
    /// the sealed segments up to the head-index snapshot's come from the
    /// snapshot ([`HEADS_FILE`]) when it matches the files; the segments
    /// after it are read and checked. Without a usable snapshot, or with
    /// [`HistoryConfig::check_all_segments`], every segment is read and
    /// checked. `log_start` is the sequence of the checkpoint in
    /// force: the log holds every batch after it, so history past a
    /// watermark at or after it can be rebuilt. A torn tail is cut back to
    /// its last watermark; a damaged segment is cut (rebuilt from the log
    /// by recovery) or, if the log no longer holds it, deleted.
    pub fn open(
        dir: &Path,
        config: HistoryConfig,
        log_start: u64,
    ) -> Result<(HistoryStore, HistoryOpenReport), StorageError> {
        config.validate().map_err(StorageError::Io)?;
        fs::create_dir_all(dir)
            .map_err(|error| io(&format!("cannot create {}", dir.display()), error))?;
        if !config.check_all_segments {
            if let Some(snapshot) = HeadsSnapshot::read(dir) {
                if let Some(opened) = Self::open_from(dir, config, log_start, Some(&snapshot))? {
                    return Ok(opened);
                }
                tracing::info!(
                    "the history's head-index snapshot does not fit its segments: reading every segment"
                );
            }
        }
        let (store, report) = Self::open_from(dir, config, log_start, None)?
            .ok_or_else(|| StorageError::Io("the history could not be opened".to_owned()))?;
        if !report.damaged.is_empty() || report.torn_bytes > 0 {
            // Segments were cut: numbers the snapshot names may be used
            // again by other contents. The next seal writes a new one.
            remove_heads_snapshot(dir)?;
        }
        Ok((store, report))
    }

    /// [`HistoryStore::open`] from `snapshot` and the segments after it,
    /// or from every segment; `None` when the snapshot does not fit.
    fn open_from(
        dir: &Path,
        config: HistoryConfig,
        log_start: u64,
        snapshot: Option<&HeadsSnapshot>,
    ) -> Result<Option<(HistoryStore, HistoryOpenReport)>, StorageError> {
        let mut numbers = Vec::new();
        let entries = fs::read_dir(dir)
            .map_err(|error| io(&format!("cannot list {}", dir.display()), error))?;
        for entry in entries {
            let entry = entry.map_err(|error| io("cannot list the history", error))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(number) = name.strip_suffix(".seg") {
                if let Ok(number) = number.parse::<u32>() {
                    if number > 0 {
                        numbers.push(number);
                    }
                }
            } else if name.ends_with(".tmp") {
                let _ = fs::remove_file(entry.path());
            }
        }
        numbers.sort_unstable();

        let mut report = HistoryOpenReport::default();
        let heads = HeadIndex::new(config.accounts_max);
        let mut segments = BTreeMap::new();
        let mut watermark = 0;
        let mut last_timestamp = 0;
        let mut refused = 0u64;
        let mut sealed_since_snapshot = u64::MAX;
        if let Some(snapshot) = snapshot {
            if !snapshot.restore(dir, &numbers, &heads, &mut segments)? {
                return Ok(None);
            }
            numbers.retain(|&number| number > snapshot.last_sealed);
            if numbers.is_empty() {
                // The crash came right after the seal: whether the
                // snapshot's last segment ends a batch only a read tells.
                return Ok(None);
            }
            report.segments_from_snapshot = segments.len() as u64;
            watermark = snapshot.watermark;
            last_timestamp = snapshot.last_timestamp;
            refused = snapshot.refused;
            sealed_since_snapshot = 0;
        }
        let mut kept: Vec<(u32, Scanned)> = Vec::new();
        let mut index = 0;
        while index < numbers.len() {
            let number = numbers[index];
            let path = segment_path(dir, number);
            let bytes = fs::read(&path)
                .map_err(|error| io(&format!("cannot read {}", path.display()), error))?;
            let is_last = index + 1 == numbers.len();
            if is_last && bytes.len() < HEADER_BYTES {
                // Created, but the crash came before its header was synced.
                remove_segment(dir, number)?;
                break;
            }
            let mut scanned = scan_segment(&bytes, number);
            report.segments += 1;
            let whole = scanned.error.is_none() && scanned.sealed;
            if whole || (is_last && scanned.valid_end >= HEADER_BYTES) {
                let end = scanned.valid_end;
                if !whole && end != bytes.len() {
                    // The unfinished tail: keep the records that are whole
                    // (cut back to a watermark below).
                    report.torn_bytes += (bytes.len() - end) as u64;
                    truncate_scanned(&mut scanned, end);
                    set_len(&path, end as u64)?;
                }
                kept.push((number, scanned));
                index += 1;
                continue;
            }
            let reason = scanned
                .error
                .clone()
                .unwrap_or_else(|| "the segment is not sealed".to_owned());
            let watermark_before = kept
                .iter()
                .rev()
                .find_map(|(_, scanned)| scanned.last_watermark.map(|(_, watermark, _)| watermark))
                .unwrap_or(watermark);
            if watermark_before >= log_start {
                // Cut here: this segment and every later one go, the kept
                // tail is cut back to its last watermark (below), and
                // recovery rebuilds the rest from the log.
                for &later in &numbers[index..] {
                    remove_segment(dir, later)?;
                }
                report.damaged.push(DamagedSegment {
                    number,
                    reason,
                    rebuilt: true,
                });
                break;
            }
            tracing::error!(
                segment = number,
                %reason,
                "a history segment is damaged and the log no longer holds its batches: its movements are deleted"
            );
            remove_segment(dir, number)?;
            report.damaged.push(DamagedSegment {
                number,
                reason,
                rebuilt: false,
            });
            index += 1;
        }
        // The history ends right after a watermark record: a batch whose
        // movements were only partly written (a crash mid-append, or the
        // rest of it in a segment cut above) is rebuilt whole from the log.
        while let Some((last, scanned)) = kept.last_mut() {
            let last = *last;
            match scanned.last_watermark {
                Some((end, ..)) => {
                    if end != scanned.valid_end {
                        report.torn_bytes += (scanned.valid_end - end) as u64;
                        truncate_scanned(scanned, end);
                        scanned.sealed = false;
                        set_len(&segment_path(dir, last), end as u64)?;
                        let _ = fs::remove_file(commands_path(dir, last));
                    }
                    break;
                }
                None => {
                    report.torn_bytes += (scanned.valid_end.saturating_sub(HEADER_BYTES)) as u64;
                    remove_segment(dir, last)?;
                    kept.pop();
                }
            }
        }
        // The writer appends only in the current format: an unfinished
        // segment of an older version is sealed in its own (an upgrade
        // then goes on in a new segment).
        if let Some((last, scanned)) = kept.last_mut() {
            if !scanned.sealed && scanned.format != Some(Format::CURRENT) {
                seal_older_segment(dir, *last, scanned)?;
            }
        }
        sync_dir(dir)?;
        if snapshot.is_some() && kept.is_empty() {
            // Nothing after the snapshot ends with a watermark: the cut
            // may reach into the snapshot's last segment.
            return Ok(None);
        }

        // The kept segments, oldest first: heads, command indexes, entries.
        let mut active = None;
        let mut active_commands =
            Vec::with_capacity(commands_per_segment_max(config.segment_bytes));
        let kept_count = kept.len();
        for (position, (number, scanned)) in kept.into_iter().enumerate() {
            let path = segment_path(dir, number);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|error| io(&format!("cannot open {}", path.display()), error))?;
            if scanned.sealed && sealed_since_snapshot != u64::MAX {
                sealed_since_snapshot += scanned.valid_end as u64;
            }
            for (index, &(account, offset, _)) in scanned.movements.iter().enumerate() {
                if let Some(&(later, ..)) = scanned.movements.get(index + HEAD_PREFETCH_DISTANCE) {
                    heads.prefetch(later);
                }
                match heads.find_or_insert(account) {
                    Some(slot) => {
                        heads.append(slot, address_of(number, offset));
                    }
                    None => refused += 1,
                }
            }
            report.movements += scanned.movements.len() as u64;
            if let Some((_, mark, timestamp)) = scanned.last_watermark {
                watermark = mark;
                last_timestamp = last_timestamp.max(timestamp);
            }
            let commands = latest_commands(
                scanned
                    .commands
                    .iter()
                    .map(|&(command, offset)| (command, address_of(number, offset))),
            );
            let is_last = position + 1 == kept_count;
            let format = scanned.format.unwrap_or(Format::CURRENT);
            let mut entry = SegmentEntry {
                format,
                base_timestamp: scanned.base_timestamp,
                file: Arc::new(file),
                bytes: scanned.valid_end as u64,
                sealed: scanned.sealed,
                movements: scanned.movements.len() as u64,
                first_timestamp: scanned.movements.first().map_or(0, |&(_, _, at)| at),
                last_timestamp: scanned.movements.last().map_or(0, |&(_, _, at)| at),
                commands: None,
                map: None,
            };
            // Just read, so in the page cache (the newest are kept mapped).
            entry.map = map_segment(&entry, config.segment_bytes);
            if scanned.sealed {
                let commands_file = commands_path(dir, number);
                let count = fs::read(&commands_file)
                    .ok()
                    .and_then(|bytes| check_commands(&bytes));
                let count = match count {
                    Some(count) => count,
                    None => {
                        report.command_indexes_rebuilt += 1;
                        write_commands(dir, number, &sorted_commands(&commands))?
                    }
                };
                let file = File::open(&commands_file).map_err(|error| {
                    io(&format!("cannot open {}", commands_file.display()), error)
                })?;
                entry.commands = Some((Arc::new(file), count));
            } else if is_last {
                let crc = {
                    let mut buffer = vec![0u8; scanned.valid_end];
                    read_full_at(&entry.file, &mut buffer, 0)
                        .map_err(|error| io("cannot read the history", error))?;
                    crc32c::crc32c(&buffer)
                };
                active = Some(Active {
                    number,
                    format,
                    base_timestamp: scanned.base_timestamp,
                    file: Arc::clone(&entry.file),
                    offset: scanned.valid_end as u32,
                    crc,
                });
                active_commands.extend(commands);
            }
            segments.insert(number, entry);
        }
        keep_newest_maps(&mut segments);
        for slot in 0..heads.slots.len() {
            heads.publish(slot);
        }
        let next_number = segments
            .keys()
            .next_back()
            .map_or(1, |&last: &u32| last.saturating_add(1))
            .max(numbers.last().map_or(1, |&last| last.saturating_add(1)));
        let store = HistoryStore {
            shared: Arc::new(Shared {
                dir: dir.to_owned(),
                config,
                heads,
                segments: RwLock::new(segments),
                active_commands: Mutex::new(active_commands),
                watermark: AtomicU64::new(watermark),
                movements_refused: AtomicU64::new(refused),
                segments_expired: AtomicU64::new(0),
                writer: Mutex::new(Writer {
                    format: Format::CURRENT,
                    active,
                    next_number,
                    buffer: Vec::new(),
                    ends_with_watermark: false,
                    dirty: Vec::new(),
                    commands: Vec::new(),
                    movements_buffered: 0,
                    first_timestamp_buffered: 0,
                    last_timestamp,
                    sealed_since_snapshot,
                }),
            }),
        };
        Ok(Some((store, report)))
    }

    fn writer(&self) -> MutexGuard<'_, Writer> {
        // Every writer step leaves `Writer` consistent with the files or
        // fails the write; a poisoned lock's contents are still usable.
        self.shared
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn segments(&self) -> RwLockReadGuard<'_, BTreeMap<u32, SegmentEntry>> {
        self.shared
            .segments
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn segments_mut(&self) -> RwLockWriteGuard<'_, BTreeMap<u32, SegmentEntry>> {
        self.shared
            .segments
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn active_commands(&self) -> MutexGuard<'_, Vec<(u128, u64)>> {
        self.shared
            .active_commands
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> HistoryConfig {
        self.shared.config
    }

    /// Every batch with sequence <= this is in the store.
    pub fn watermark(&self) -> u64 {
        self.shared.watermark.load(Ordering::Acquire)
    }

    /// Appends `movements` (in log order: a command's legs together) and a
    /// watermark record: every batch up to `watermark` is then in the
    /// store. One `write` per call (plus a seal and a new file when a
    /// segment fills); not durable until [`HistoryStore::sync`].
    pub fn append(&self, movements: &[Movement], watermark: u64) -> Result<(), StorageError> {
        self.append_parts(std::slice::from_ref(&movements), watermark)
    }

    /// [`HistoryStore::append`] of the movements of `parts` one after the
    /// other (their concatenation in log order), so the history writer
    /// hands over the shards' vectors as they came, without copying them
    /// into one.
    pub fn append_parts<P: AsRef<[Movement]>>(
        &self,
        parts: &[P],
        watermark: u64,
    ) -> Result<(), StorageError> {
        self.append_refs(
            parts
                .iter()
                .flat_map(|part| part.as_ref().iter().map(MovementRef::Built)),
            watermark,
        )
    }

    /// [`HistoryStore::append`] of the movements of `chunks` one after the
    /// other (their concatenation in log order: the history writer's job
    /// as the shards handed it over), each movement built only as it is
    /// encoded.
    pub fn append_chunks(
        &self,
        chunks: &[MovementChunk],
        watermark: u64,
    ) -> Result<(), StorageError> {
        self.append_refs(history::ChunkRefs::new(chunks), watermark)
    }

    fn append_refs<'a>(
        &self,
        mut movements: impl Iterator<Item = MovementRef<'a>> + Clone,
        watermark: u64,
    ) -> Result<(), StorageError> {
        let mut writer = self.writer();
        let writer = &mut *writer;
        // Runs HEAD_PREFETCH_DISTANCE movements ahead, asking for each one's
        // head slot: the slots of many accounts are far apart in a large
        // index, and a look-up that waits for memory stalls the writer.
        let mut ahead = movements.clone();
        for movement in ahead.by_ref().take(HEAD_PREFETCH_DISTANCE) {
            self.shared.heads.prefetch(movement.account().0);
        }
        while let Some(first) = movements.next() {
            // The command's legs: `first` and the ones after it with its id.
            let format = writer.format;
            let command = first.command();
            let mut legs = 1;
            let mut bytes = format.movement_record_bytes_bound(first);
            for next in movements.clone() {
                if next.command() != command {
                    break;
                }
                bytes += format.movement_record_bytes_bound(next);
                legs += 1;
            }
            self.make_room(
                writer,
                bytes + format.watermark_record_bytes(),
                first.timestamp(),
            )?;
            let Some(active) = writer.active.as_ref() else {
                return Err(StorageError::Io("no active history segment".to_owned()));
            };
            let number = active.number;
            let base = active.offset as usize;
            let base_timestamp = active.base_timestamp;
            let format = active.format;
            let mut first_leg = None;
            // Version 5: the full record written right before this one,
            // which the next leg may follow: (its movement, its offset).
            let mut followable: Option<(MovementRef<'a>, u32)> = None;
            let group = std::iter::once(first).chain(movements.by_ref().take(legs - 1));
            for leg in group {
                if let Some(later) = ahead.next() {
                    self.shared.heads.prefetch(later.account().0);
                }
                let Some(slot) = self.shared.heads.find_or_insert(leg.account().0) else {
                    self.shared
                        .movements_refused
                        .fetch_add(1, Ordering::Relaxed);
                    continue;
                };
                let offset = (base + writer.buffer.len()) as u32;
                let address = address_of(number, offset);
                let links = self.shared.heads.append(slot, address);
                writer.dirty.push(slot as u32);
                first_leg.get_or_insert(address);
                let previous = followable.take();
                // A chunk's mirror leg right after its entry's first leg:
                // its follow-on written straight from the entry.
                let mirror = previous.and_then(|(previous, at)| {
                    let balance = leg.mirror_of(previous)?;
                    let back = u8::try_from(offset - at).ok()?;
                    (format == Format::Relative).then_some((balance, back))
                });
                if let Some((balance, back)) = mirror {
                    push_record(format, &mut writer.buffer, KIND_MOVEMENT, |out| {
                        encode_links_compact(out, number, offset, links);
                        history::encode_movement_mirror(balance, back, out);
                    });
                } else {
                    let movement = leg.movement();
                    let previous = previous.map(|(previous, at)| (previous.movement(), at));
                    let follows = previous.as_ref().and_then(|(previous, at)| {
                        let back = u8::try_from(offset - at).ok()?;
                        history::can_follow(previous, &movement).then_some((&**previous, back))
                    });
                    if follows.is_none() {
                        followable = Some((leg, offset));
                    }
                    push_movement(
                        format,
                        &mut writer.buffer,
                        (number, offset),
                        base_timestamp,
                        links,
                        &movement,
                        follows,
                    );
                }
                let timestamp = leg.timestamp();
                if writer.movements_buffered == 0 {
                    writer.first_timestamp_buffered = timestamp;
                }
                writer.movements_buffered += 1;
                writer.last_timestamp = writer.last_timestamp.max(timestamp);
            }
            if let Some(address) = first_leg {
                writer.commands.push((command.0 .0, address));
            }
            if writer.buffer.len() >= WRITE_CHUNK_BYTES {
                self.write_buffer(writer)?;
            }
        }
        let last_timestamp = writer.last_timestamp;
        self.make_room(
            writer,
            writer.format.watermark_record_bytes(),
            last_timestamp,
        )?;
        let format = writer
            .active
            .as_ref()
            .map_or(writer.format, |active| active.format);
        push_record(format, &mut writer.buffer, KIND_WATERMARK, |out| {
            out.extend_from_slice(&watermark.to_le_bytes());
            out.extend_from_slice(&last_timestamp.to_le_bytes());
            out.extend_from_slice(&[0u8; CHECKSUM_BYTES]);
        });
        writer.ends_with_watermark = true;
        self.flush(writer)?;
        self.shared.watermark.store(watermark, Ordering::Release);
        Ok(())
    }

    /// Makes sure the active segment has `bytes` free besides the seal's
    /// reserve: creates the first segment, or seals a full one and starts
    /// the next, whose base timestamp is `base_timestamp` (the next
    /// movement's).
    fn make_room(
        &self,
        writer: &mut Writer,
        bytes: usize,
        base_timestamp: u64,
    ) -> Result<(), StorageError> {
        if let Some(active) = &writer.active {
            let limit =
                self.shared.config.segment_bytes as usize - active.format.seal_record_bytes();
            if active.offset as usize + writer.buffer.len() + bytes <= limit {
                return Ok(());
            }
            self.seal(writer)?;
        }
        self.create_segment(writer, base_timestamp)
    }

    /// Writes the buffer to the active segment, without publishing what it
    /// holds: readers see it at the next [`HistoryStore::flush`]. An
    /// append writes every [`WRITE_CHUNK_BYTES`] so that the kernel copies
    /// bytes still in the CPU's cache (a whole job's buffer, several MB,
    /// is not), and the buffer stays that small.
    fn write_buffer(&self, writer: &mut Writer) -> Result<(), StorageError> {
        let Some(active) = writer.active.as_mut() else {
            return Ok(());
        };
        if writer.buffer.is_empty() {
            return Ok(());
        }
        // One pass of the checksum over the new bytes: a buffer that ends
        // with a watermark gets the file's checksum up to it.
        let buffer = &mut writer.buffer;
        let checksum_at = buffer.len().saturating_sub(CHECKSUM_BYTES);
        if std::mem::take(&mut writer.ends_with_watermark) {
            let crc = crc32c::crc32c_append(active.crc, &buffer[..checksum_at]);
            buffer[checksum_at..].copy_from_slice(&crc.to_le_bytes());
            active.crc = crc32c::crc32c_append(crc, &buffer[checksum_at..]);
        } else {
            active.crc = crc32c::crc32c_append(active.crc, buffer);
        }
        active
            .file
            .write_all_at(buffer, u64::from(active.offset))
            .map_err(|error| io("cannot write history", error))?;
        active.offset += buffer.len() as u32;
        buffer.clear();
        Ok(())
    }

    /// Writes the buffer to the active segment and publishes what it holds.
    fn flush(&self, writer: &mut Writer) -> Result<(), StorageError> {
        self.write_buffer(writer)?;
        let Some(active) = writer.active.as_mut() else {
            return Ok(());
        };
        {
            let mut segments = self.segments_mut();
            if let Some(entry) = segments.get_mut(&active.number) {
                entry.bytes = u64::from(active.offset);
                if entry.movements == 0 && writer.movements_buffered > 0 {
                    entry.first_timestamp = writer.first_timestamp_buffered;
                }
                entry.movements += writer.movements_buffered;
                entry.last_timestamp = entry.last_timestamp.max(writer.last_timestamp);
            }
        }
        {
            let mut commands = self.active_commands();
            commands.extend(writer.commands.drain(..));
        }
        let heads = &self.shared.heads;
        for (index, &slot) in writer.dirty.iter().enumerate() {
            if let Some(&later) = writer.dirty.get(index + HEAD_PREFETCH_DISTANCE) {
                crate::prefetch::prefetch(&heads.slots[later as usize], 1);
            }
            heads.publish(slot as usize);
        }
        writer.dirty.clear();
        writer.movements_buffered = 0;
        Ok(())
    }

    /// Seals the active segment: flushes it, appends the seal, fsyncs it,
    /// writes its command index, then applies the retention.
    fn seal(&self, writer: &mut Writer) -> Result<(), StorageError> {
        self.flush(writer)?;
        let Some(active) = writer.active.take() else {
            return Ok(());
        };
        let mut seal = Vec::with_capacity(SEAL_RECORD_BYTES);
        let movements = self
            .segments()
            .get(&active.number)
            .map_or(0, |e| e.movements);
        let crc = active.crc;
        push_record(active.format, &mut seal, KIND_SEAL, |out| {
            out.extend_from_slice(&movements.to_le_bytes());
            out.extend_from_slice(&writer.last_timestamp.to_le_bytes());
            out.extend_from_slice(&[0u8; CHECKSUM_BYTES]);
        });
        // The checksum of the whole file up to it.
        let checksum_at = seal.len() - CHECKSUM_BYTES;
        let crc = crc32c::crc32c_append(crc, &seal[..checksum_at]);
        seal[checksum_at..].copy_from_slice(&crc.to_le_bytes());
        active
            .file
            .write_all_at(&seal, u64::from(active.offset))
            .map_err(|error| io("cannot seal a history segment", error))?;
        active
            .file
            .sync_data()
            .map_err(|error| io("cannot sync a history segment", error))?;
        // Sorted straight from the active list (tx show waits for it
        // meanwhile, as it waited for a copy before).
        let sorted = sorted_commands(&self.active_commands());
        let count = write_commands(&self.shared.dir, active.number, &sorted)?;
        let commands_file = File::open(commands_path(&self.shared.dir, active.number))
            .map_err(|error| io("cannot open a history command index", error))?;
        {
            let mut segments = self.segments_mut();
            if let Some(entry) = segments.get_mut(&active.number) {
                entry.bytes = u64::from(active.offset) + seal.len() as u64;
                entry.sealed = true;
                entry.commands = Some((Arc::new(commands_file), count));
            }
        }
        self.active_commands().clear();
        self.expire(writer.last_timestamp)?;
        let sealed_bytes = u64::from(active.offset) + seal.len() as u64;
        writer.sealed_since_snapshot = writer.sealed_since_snapshot.saturating_add(sealed_bytes);
        let snapshot_bytes = (HEADS_HEADER_BYTES
            + self.segments().len() * HEADS_SEGMENT_BYTES
            + self.shared.heads.used.load(Ordering::Relaxed) * HEADS_ENTRY_BYTES)
            as u64;
        if writer.sealed_since_snapshot >= snapshot_bytes.saturating_mul(HEADS_SNAPSHOT_RATIO) {
            match self.write_heads_snapshot(active.number, writer.last_timestamp) {
                Ok(()) => writer.sealed_since_snapshot = 0,
                // The snapshot before it (if any) still holds: the
                // segments it names have not changed.
                Err(error) => {
                    tracing::warn!(%error, "cannot write the history's head-index snapshot")
                }
            }
        }
        Ok(())
    }

    /// Writes the head-index snapshot right after segment `last_sealed`
    /// was sealed (every record appended is in it or before it):
    /// crash-safely, a temporary file fsynced, renamed over the last one,
    /// and the directory fsynced.
    fn write_heads_snapshot(
        &self,
        last_sealed: u32,
        last_timestamp: u64,
    ) -> Result<(), StorageError> {
        let mut snapshot = HeadsSnapshot {
            last_sealed,
            watermark: self.shared.watermark.load(Ordering::Acquire),
            last_timestamp,
            refused: self.shared.movements_refused.load(Ordering::Relaxed),
            segments: Vec::new(),
            heads: Vec::with_capacity(self.shared.heads.used.load(Ordering::Relaxed)),
        };
        for (&number, entry) in self.segments().iter() {
            if !entry.sealed || number > last_sealed {
                continue;
            }
            let mut checksum = [0u8; CHECKSUM_BYTES];
            let read = read_full_at(
                &entry.file,
                &mut checksum,
                entry.bytes - CHECKSUM_BYTES as u64,
            )
            .map_err(|error| io("cannot read the history", error))?;
            if read != CHECKSUM_BYTES {
                return Err(StorageError::Io(format!(
                    "history segment {number} is cut off"
                )));
            }
            snapshot.segments.push(SnapshotSegment {
                number,
                seal_checksum: u32::from_le_bytes(checksum),
                bytes: entry.bytes,
                movements: entry.movements,
                first_timestamp: entry.first_timestamp,
                last_timestamp: entry.last_timestamp,
                commands: entry.commands.as_ref().map_or(0, |(_, count)| *count),
            });
        }
        for slot in self.shared.heads.slots.iter() {
            let account = slot.account.load(Ordering::Relaxed);
            if account != EMPTY_KEY {
                snapshot.heads.push((
                    account,
                    slot.latest.load(Ordering::Relaxed),
                    slot.skip.load(Ordering::Relaxed),
                ));
            }
        }
        let bytes = snapshot.encode();
        let dir = &self.shared.dir;
        let path = dir.join(HEADS_FILE);
        let temporary = dir.join(format!("{HEADS_FILE}.tmp"));
        let written = (|| -> std::io::Result<()> {
            let file = File::create(&temporary)?;
            file.write_all_at(&bytes, 0)?;
            file.sync_all()?;
            fs::rename(&temporary, &path)
        })();
        written.map_err(|error| io(&format!("cannot write {}", path.display()), error))?;
        sync_dir(dir)
    }

    fn create_segment(&self, writer: &mut Writer, base_timestamp: u64) -> Result<(), StorageError> {
        let number = writer.next_number;
        let path = segment_path(&self.shared.dir, number);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|error| io(&format!("cannot create {}", path.display()), error))?;
        let format = writer.format;
        let header = segment_header(
            number,
            self.shared.config.segment_bytes,
            format,
            base_timestamp,
        );
        file.write_all_at(&header, 0)
            .map_err(|error| io("cannot write a history segment header", error))?;
        file.sync_data()
            .map_err(|error| io("cannot sync a history segment", error))?;
        sync_dir(&self.shared.dir)?;
        let file = Arc::new(file);
        let mut entry = SegmentEntry {
            format,
            base_timestamp,
            file: Arc::clone(&file),
            bytes: HEADER_BYTES as u64,
            sealed: false,
            movements: 0,
            first_timestamp: 0,
            last_timestamp: 0,
            commands: None,
            map: None,
        };
        entry.map = map_segment(&entry, self.shared.config.segment_bytes);
        {
            let mut segments = self.segments_mut();
            segments.insert(number, entry);
            keep_newest_maps(&mut segments);
        }
        writer.active = Some(Active {
            number,
            format,
            base_timestamp,
            file,
            offset: HEADER_BYTES as u32,
            crc: crc32c::crc32c(&header),
        });
        writer.next_number = number
            .checked_add(1)
            .ok_or_else(|| StorageError::Io("history segment numbers ran out".to_owned()))?;
        Ok(())
    }

    /// Deletes sealed segments whose newest movement is older than the
    /// retention before `now` (log time). Returns how many went.
    fn expire(&self, now: u64) -> Result<u64, StorageError> {
        let retention = self.shared.config.retention_ns;
        if retention == 0 {
            return Ok(0);
        }
        let cutoff = now.saturating_sub(retention);
        let expired: Vec<u32> = {
            let mut segments = self.segments_mut();
            let expired: Vec<u32> = segments
                .iter()
                .take_while(|(_, entry)| entry.sealed && entry.last_timestamp < cutoff)
                .map(|(&number, _)| number)
                .collect();
            for number in &expired {
                segments.remove(number);
            }
            expired
        };
        for &number in &expired {
            remove_segment(&self.shared.dir, number)?;
        }
        if !expired.is_empty() {
            sync_dir(&self.shared.dir)?;
            self.shared
                .segments_expired
                .fetch_add(expired.len() as u64, Ordering::Relaxed);
        }
        Ok(expired.len() as u64)
    }

    /// Makes every append so far durable (sealed segments were synced when
    /// sealed).
    pub fn sync(&self) -> Result<(), StorageError> {
        let active = self
            .segments()
            .values()
            .next_back()
            .filter(|entry| !entry.sealed)
            .map(|entry| Arc::clone(&entry.file));
        if let Some(file) = active {
            file.sync_data()
                .map_err(|error| io("cannot sync the history", error))?;
        }
        Ok(())
    }

    /// What a read of segment `number` needs, or `None` if it is no longer
    /// kept: taken under the segments' lock once per segment a walk enters.
    fn segment_view(&self, number: u32) -> Option<SegmentView> {
        self.segments().get(&number).map(|entry| SegmentView {
            number,
            format: entry.format,
            base_timestamp: entry.base_timestamp,
            file: Arc::clone(&entry.file),
            map: entry.map.clone(),
            bytes: entry.bytes,
            first_timestamp: entry.first_timestamp,
        })
    }

    /// The movement record at `address` ([`RecordRead::Movement`]), or
    /// `None` if its segment is no longer kept. `view` holds the segment of
    /// the last read (a page's records are mostly in one or two segments).
    /// A record of another kind is an error.
    fn read_movement(
        &self,
        address: u64,
        view: &mut Option<SegmentView>,
        mode: ReadMode,
    ) -> Result<Option<RecordRead>, StorageError> {
        let (number, offset) = split_address(address);
        if view.as_ref().is_none_or(|view| view.number != number) {
            *view = self.segment_view(number);
        }
        let Some(segment) = view.as_ref() else {
            return Ok(None);
        };
        if u64::from(offset) + segment.format.record_header_bytes() as u64 > segment.bytes
            || (offset as usize) < HEADER_BYTES
        {
            return Err(StorageError::Io(format!(
                "history address {number}:{offset} is outside its segment"
            )));
        }
        match read_movement_record(segment, offset, mode)? {
            RecordRead::OtherKind(kind) => Err(StorageError::Io(format!(
                "the history record at {number}:{offset} is corrupt: it is of kind {kind}, not a movement"
            ))),
            read => Ok(Some(read)),
        }
    }

    /// A page of `account`'s movements with timestamps in `from_ns..=to_ns`,
    /// newest first, starting at `cursor` (0: the newest), at most `limit`
    /// (1 ..= [`history::HISTORY_PAGE_MAX`]). A cursor is the next entry's
    /// `timestamp << 64 | address`; one that names no entry of this account
    /// is an error. Its reads may wait for the disk.
    pub fn page(
        &self,
        account: AccountId,
        from_ns: u64,
        to_ns: u64,
        cursor: u128,
        limit: u32,
    ) -> Result<HistoryPage, StorageError> {
        self.page_reading(account, from_ns, to_ns, cursor, limit, ReadMode::Wait)?
            .ok_or_else(|| StorageError::Io("a history read that may wait did not".to_owned()))
    }

    /// [`HistoryStore::page`] if it can be read without waiting for the
    /// disk: every record it reads is in the page cache, and it reads at
    /// most [`PAGE_NO_WAIT_RECORDS_MAX`]. `None` otherwise (nothing is
    /// lost but the reads made: ask [`HistoryStore::page`]). The server
    /// answers a page on its network thread this way, and only otherwise
    /// on a thread that may wait: a page of recent movements costs a
    /// hand-off to another thread less (docs/benchmarks.md).
    pub fn page_without_waiting(
        &self,
        account: AccountId,
        from_ns: u64,
        to_ns: u64,
        cursor: u128,
        limit: u32,
    ) -> Result<Option<HistoryPage>, StorageError> {
        self.page_reading(account, from_ns, to_ns, cursor, limit, ReadMode::NoWait)
    }

    /// [`HistoryStore::page`], its reads made in `mode`: `None` only in
    /// [`ReadMode::NoWait`], when a read would wait or the page reads
    /// more than [`PAGE_NO_WAIT_RECORDS_MAX`] records.
    fn page_reading(
        &self,
        account: AccountId,
        from_ns: u64,
        to_ns: u64,
        cursor: u128,
        limit: u32,
        mode: ReadMode,
    ) -> Result<Option<HistoryPage>, StorageError> {
        let limit = limit.clamp(1, history::HISTORY_PAGE_MAX) as usize;
        let mut page = HistoryPage::default();
        if from_ns > to_ns {
            return Ok(Some(page));
        }
        let (mut address, mut expected_timestamp) = if cursor == 0 {
            (self.shared.heads.head(account.0), None)
        } else {
            (cursor as u64, Some((cursor >> 64) as u64))
        };
        let records_max = match mode {
            ReadMode::Wait => usize::MAX,
            ReadMode::NoWait => PAGE_NO_WAIT_RECORDS_MAX,
        };
        let mut view = None;
        // Records read, and those read while skipping entries newer than
        // the range.
        let mut read = 0usize;
        let mut skipped = 0usize;
        while address != 0 {
            if read == records_max {
                return Ok(None);
            }
            read += 1;
            let (links, movement) = match self.read_movement(address, &mut view, mode)? {
                None => break,
                Some(RecordRead::Movement(links, movement, _)) => (links, movement),
                Some(RecordRead::NotCached | RecordRead::OtherKind(_)) => return Ok(None),
            };
            if let Some(timestamp) = expected_timestamp.take() {
                if movement.account != account || movement.timestamp != timestamp {
                    return Err(StorageError::Io(
                        "the history cursor names no entry of this account".to_owned(),
                    ));
                }
            }
            if movement.account != account {
                return Err(StorageError::Io(format!(
                    "the history chain of account {} reaches account {}",
                    account.0, movement.account.0
                )));
            }
            let cursor_here = (u128::from(movement.timestamp) << 64) | u128::from(address);
            if movement.timestamp > to_ns {
                skipped += 1;
                if skipped >= PAGE_SCAN_RECORDS_MAX {
                    page.next_cursor = cursor_here;
                    break;
                }
                // Every record of this segment is newer than the range:
                // on to the account's newest record in an older segment.
                let segment_first = view.as_ref().map_or(0, |view| view.first_timestamp);
                address = if segment_first > to_ns {
                    links.skip
                } else {
                    links.previous
                };
                continue;
            }
            if movement.timestamp < from_ns {
                break;
            }
            if page.entries.len() == limit {
                page.next_cursor = cursor_here;
                break;
            }
            page.entries.push(movement);
            address = links.previous;
        }
        Ok(Some(page))
    }

    /// The movements (legs) of one command, in the order they were made;
    /// the newest application of its id if it was applied twice.
    pub fn command_movements(&self, command: CommandId) -> Result<Vec<Movement>, StorageError> {
        // Newest first: a command id applied again wins.
        let found = self
            .active_commands()
            .iter()
            .rev()
            .find(|&&(id, _)| id == command.0)
            .map(|&(_, address)| address);
        let address = match found {
            Some(address) => Some(address),
            None => self.find_sealed_command(command.0)?,
        };
        let Some(mut address) = address else {
            return Ok(Vec::new());
        };
        let mut legs = Vec::new();
        while legs.len() < history::COMMAND_LEGS_MAX {
            let Some((movement, len)) = self.read_next_movement(address)? else {
                break;
            };
            if movement.command != command {
                break;
            }
            legs.push(movement);
            address += len as u64;
        }
        Ok(legs)
    }

    /// The movement record at `address` and its length, or `None` if the
    /// segment ends there or the record there is not a movement (a
    /// watermark or the seal ends a command's legs).
    fn read_next_movement(&self, address: u64) -> Result<Option<(Movement, usize)>, StorageError> {
        let (number, offset) = split_address(address);
        let segment = match self.segment_view(number) {
            Some(segment)
                if u64::from(offset) + segment.format.record_header_bytes() as u64
                    <= segment.bytes =>
            {
                segment
            }
            _ => return Ok(None),
        };
        Ok(
            match read_movement_record(&segment, offset, ReadMode::Wait)? {
                RecordRead::Movement(_, movement, len) => Some((movement, len)),
                RecordRead::OtherKind(_) | RecordRead::NotCached => None,
            },
        )
    }

    /// Binary search of the sealed segments' command indexes, newest first.
    fn find_sealed_command(&self, command: u128) -> Result<Option<u64>, StorageError> {
        let indexes: Vec<(Arc<File>, u64)> = self
            .segments()
            .values()
            .rev()
            .filter_map(|entry| entry.commands.clone())
            .collect();
        let key = command.to_be_bytes();
        for (file, count) in indexes {
            let (mut low, mut high) = (0u64, count);
            while low < high {
                let middle = low + (high - low) / 2;
                let mut entry = [0u8; COMMAND_ENTRY_BYTES];
                let at = COMMANDS_HEADER_BYTES as u64 + middle * COMMAND_ENTRY_BYTES as u64;
                let read = read_full_at(&file, &mut entry, at)
                    .map_err(|error| io("cannot read a history command index", error))?;
                if read != COMMAND_ENTRY_BYTES {
                    return Err(StorageError::Io(
                        "a history command index is cut off".to_owned(),
                    ));
                }
                match entry[..16].cmp(&key[..]) {
                    std::cmp::Ordering::Less => low = middle + 1,
                    std::cmp::Ordering::Greater => high = middle,
                    std::cmp::Ordering::Equal => return Ok(Some(u64_at(&entry, 16))),
                }
            }
        }
        Ok(None)
    }

    pub fn stats(&self) -> HistoryStats {
        let segments = self.segments();
        let mut stats = HistoryStats {
            segments: segments.len() as u64,
            accounts: self.shared.heads.used.load(Ordering::Relaxed) as u64,
            accounts_max: self.shared.heads.capacity as u64,
            movements_refused: self.shared.movements_refused.load(Ordering::Relaxed),
            segments_expired: self.shared.segments_expired.load(Ordering::Relaxed),
            retention_ns: self.shared.config.retention_ns,
            ..HistoryStats::default()
        };
        for entry in segments.values() {
            stats.bytes += entry.bytes;
            stats.movements += entry.movements;
            if stats.oldest_timestamp == 0 && entry.movements > 0 {
                stats.oldest_timestamp = entry.first_timestamp;
            }
            stats.newest_timestamp = stats.newest_timestamp.max(entry.last_timestamp);
        }
        stats
    }

    /// Copies the store into `dir` (which must not exist): sealed segments
    /// and their command indexes hard-linked (copied across file systems),
    /// the active segment copied as far as written. Appends wait meanwhile.
    pub fn backup(&self, dir: &Path) -> Result<(), StorageError> {
        let _writer = self.writer();
        fs::create_dir(dir)
            .map_err(|error| io(&format!("cannot create {}", dir.display()), error))?;
        let segments = self.segments();
        for (&number, entry) in segments.iter() {
            let source = segment_path(&self.shared.dir, number);
            let target = segment_path(dir, number);
            if entry.sealed {
                link_or_copy(&source, &target)?;
                link_or_copy(
                    &commands_path(&self.shared.dir, number),
                    &commands_path(dir, number),
                )?;
            } else {
                let mut bytes = vec![0u8; entry.bytes as usize];
                read_full_at(&entry.file, &mut bytes, 0)
                    .map_err(|error| io("cannot read the history", error))?;
                fs::write(&target, &bytes)
                    .map_err(|error| io(&format!("cannot write {}", target.display()), error))?;
                File::open(&target)
                    .and_then(|file| file.sync_all())
                    .map_err(|error| io("cannot sync a history backup", error))?;
            }
        }
        // The sealed segments it names are in the backup (or were
        // deleted by the retention, as it allows).
        let heads = self.shared.dir.join(HEADS_FILE);
        if heads.exists() {
            link_or_copy(&heads, &dir.join(HEADS_FILE))?;
        }
        sync_dir(dir)
    }

    /// The kept segment files, oldest first (for tests and tools).
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments()
            .keys()
            .map(|&number| segment_path(&self.shared.dir, number))
            .collect()
    }
}

fn link_or_copy(source: &Path, target: &Path) -> Result<(), StorageError> {
    if fs::hard_link(source, target).is_ok() {
        return Ok(());
    }
    fs::copy(source, target)
        .map(|_| ())
        .map_err(|error| io(&format!("cannot copy {}", source.display()), error))
}

/// Seals the unfinished segment `number` of an older format in that
/// format, so that it can be read as it is and appends go on in a new
/// segment of the current one. `scanned` ends at a watermark.
fn seal_older_segment(dir: &Path, number: u32, scanned: &mut Scanned) -> Result<(), StorageError> {
    let path = segment_path(dir, number);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|error| io(&format!("cannot open {}", path.display()), error))?;
    let mut bytes = vec![0u8; scanned.valid_end];
    read_full_at(&file, &mut bytes, 0)
        .map_err(|error| io(&format!("cannot read {}", path.display()), error))?;
    let movements = scanned.movements.len() as u64;
    let last_timestamp = scanned
        .movements
        .iter()
        .map(|&(_, _, timestamp)| timestamp)
        .max()
        .unwrap_or(0);
    let seal = match scanned.format {
        Some(Format::RecordChecksums) => seal_record_v1(&bytes, movements, last_timestamp),
        _ => {
            let format = scanned.format.unwrap_or(Format::BlockChecksums);
            let mut seal = Vec::with_capacity(SEAL_RECORD_BYTES);
            push_record(format, &mut seal, KIND_SEAL, |out| {
                out.extend_from_slice(&movements.to_le_bytes());
                out.extend_from_slice(&last_timestamp.to_le_bytes());
                out.extend_from_slice(&[0u8; CHECKSUM_BYTES]);
            });
            let checksum_at = seal.len() - CHECKSUM_BYTES;
            let crc = crc32c::crc32c_append(crc32c::crc32c(&bytes), &seal[..checksum_at]);
            seal[checksum_at..].copy_from_slice(&crc.to_le_bytes());
            seal
        }
    };
    file.write_all_at(&seal, scanned.valid_end as u64)
        .and_then(|()| file.sync_data())
        .map_err(|error| io(&format!("cannot seal {}", path.display()), error))?;
    scanned.valid_end += seal.len();
    scanned.sealed = true;
    Ok(())
}

fn truncate_scanned(scanned: &mut Scanned, end: usize) {
    scanned.valid_end = end;
    scanned
        .movements
        .retain(|&(_, offset, _)| (offset as usize) < end);
    scanned
        .commands
        .retain(|&(_, offset)| (offset as usize) < end);
    scanned.error = None;
}

fn set_len(path: &Path, len: u64) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|error| io(&format!("cannot open {}", path.display()), error))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(|error| io(&format!("cannot truncate {}", path.display()), error))
}

fn remove_segment(dir: &Path, number: u32) -> Result<(), StorageError> {
    for path in [segment_path(dir, number), commands_path(dir, number)] {
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io(&format!("cannot delete {}", path.display()), error)),
        }
    }
    Ok(())
}

/// Writes a sealed segment's command index (crash-safely) of `sorted`
/// (from [`sorted_commands`]): header (magic, count), the entries, CRC-32C
/// of everything before it, written every [`WRITE_CHUNK_BYTES`] as it is
/// encoded (so the kernel copies bytes still in the cache). Returns its
/// entries.
fn write_commands(dir: &Path, number: u32, sorted: &[(u128, u64)]) -> Result<u64, StorageError> {
    let path = commands_path(dir, number);
    let temporary = dir.join(format!("{number:010}.cmd.tmp"));
    let written = (|| -> std::io::Result<()> {
        let file = File::create(&temporary)?;
        let mut buffer = Vec::with_capacity(WRITE_CHUNK_BYTES + COMMAND_ENTRY_BYTES);
        buffer.extend_from_slice(&COMMANDS_MAGIC);
        buffer.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
        let mut crc = 0;
        let mut offset = 0u64;
        for (command, address) in sorted {
            buffer.extend_from_slice(&command.to_be_bytes());
            buffer.extend_from_slice(&address.to_le_bytes());
            if buffer.len() >= WRITE_CHUNK_BYTES {
                crc = crc32c::crc32c_append(crc, &buffer);
                file.write_all_at(&buffer, offset)?;
                offset += buffer.len() as u64;
                buffer.clear();
            }
        }
        crc = crc32c::crc32c_append(crc, &buffer);
        buffer.extend_from_slice(&crc.to_le_bytes());
        file.write_all_at(&buffer, offset)?;
        file.sync_all()?;
        fs::rename(&temporary, &path)
    })();
    written.map_err(|error| io(&format!("cannot write {}", path.display()), error))?;
    sync_dir(dir)?;
    Ok(sorted.len() as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::currency::Currency;

    const ACCOUNTS: u64 = 40;
    const COMMANDS_PER_BATCH: u64 = 15;

    /// `batches` batches of transfers between pseudo-random accounts, in
    /// log order, as the ledger would emit them.
    fn movements(batches: u64) -> Vec<Vec<Movement>> {
        let mut out = Vec::new();
        let mut balance = vec![0i64; ACCOUNTS as usize + 1];
        for batch in 0..batches {
            let sequence = batch + 1;
            let mut legs = Vec::new();
            for index in 0..COMMANDS_PER_BATCH {
                let number = batch * COMMANDS_PER_BATCH + index;
                let from = 1 + (number * 7919) % ACCOUNTS;
                let to = 1 + (from + 1 + number % (ACCOUNTS - 1)) % ACCOUNTS;
                let amount = (1 + number % 97) as i64;
                let kind = if number % 3 == 0 {
                    "transfer"
                } else {
                    "qr_payment"
                };
                // A transfer's two legs (a credit leg that mirrors its
                // debit leg, in version 5 a short follow-on); one command
                // in five names a house account as the credit leg's
                // counterparty (a follow-on that does not mirror), one in
                // seven has four legs (two of them follow-ons).
                let mut command_legs = vec![(from, to, -amount), (to, from, amount)];
                if number % 5 == 0 {
                    command_legs[1].1 = AccountId::HOUSE_FIRST + 77;
                }
                if number % 7 == 0 {
                    command_legs.extend([(from, to, -1), (to, from, 1)]);
                }
                for (leg, (account, other, signed)) in command_legs.into_iter().enumerate() {
                    balance[account as usize] += signed;
                    legs.push(Movement {
                        account: AccountId(account),
                        counterparty: AccountId(other),
                        command: CommandId(u128::from(number) + 1),
                        sequence,
                        timestamp: sequence * 1_000,
                        position: history::position_of(index as u32, leg as u32),
                        kind: kind.into(),
                        amount: signed,
                        balance: balance[account as usize],
                        currency: Currency::CNY,
                        mcc: 5812,
                        instrument: None,
                    });
                }
            }
            out.push(legs);
        }
        out
    }

    fn config(segment_bytes: u32) -> HistoryConfig {
        HistoryConfig {
            segment_bytes,
            accounts_max: 1_000,
            retention_ns: 0,
            check_all_segments: false,
        }
    }

    fn write(store: &HistoryStore, batches: &[Vec<Movement>], first_sequence: u64) {
        for (index, batch) in batches.iter().enumerate() {
            store.append(batch, first_sequence + index as u64).unwrap();
        }
    }

    /// Every page of `account` (pages of `limit`), followed by cursor.
    fn all_pages(
        store: &HistoryStore,
        account: u64,
        from: u64,
        to: u64,
        limit: u32,
    ) -> Vec<Movement> {
        let mut entries = Vec::new();
        let mut cursor = 0;
        for _ in 0..10_000 {
            let page = store
                .page(AccountId(account), from, to, cursor, limit)
                .unwrap();
            // The network thread's read: the same page, or none at all.
            if let Some(without_waiting) = store
                .page_without_waiting(AccountId(account), from, to, cursor, limit)
                .unwrap()
            {
                assert_eq!(without_waiting, page, "account {account} from {cursor}");
            }
            assert!(page.entries.len() <= limit as usize);
            entries.extend(page.entries);
            cursor = page.next_cursor;
            if cursor == 0 {
                return entries;
            }
        }
        panic!("paging never ended");
    }

    /// The reference: an account's movements newest first, in the range.
    fn reference(all: &[Movement], account: u64, from: u64, to: u64) -> Vec<Movement> {
        all.iter()
            .rev()
            .filter(|movement| {
                movement.account.0 == account && (from..=to).contains(&movement.timestamp)
            })
            .cloned()
            .collect()
    }

    fn check_every_account(store: &HistoryStore, all: &[Movement]) {
        for account in 1..=ACCOUNTS {
            assert_eq!(
                all_pages(store, account, 0, u64::MAX, 7),
                reference(all, account, 0, u64::MAX),
                "account {account}"
            );
        }
    }

    #[test]
    fn pages_equal_the_reference_across_segments_and_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(300);
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        {
            let (store, report) =
                HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
            assert_eq!(report, HistoryOpenReport::default());
            write(&store, &batches, 1);
            assert_eq!(store.watermark(), 300);
            let stats = store.stats();
            assert!(stats.segments >= 5, "{stats:?}");
            assert_eq!(stats.movements, all.len() as u64);
            assert_eq!(stats.accounts, ACCOUNTS);
            check_every_account(&store, &all);
            // Time ranges, and a page of one entry at a time.
            for (from, to) in [(50_000, 90_000), (0, 1_000), (299_000, u64::MAX)] {
                assert_eq!(
                    all_pages(&store, 3, from, to, 1),
                    reference(&all, 3, from, to)
                );
            }
            // Every command's legs, whatever segment holds it.
            for number in [1u128, 17, 1_500, 2_999, 3_000] {
                let legs = store.command_movements(CommandId(number)).unwrap();
                let expected: Vec<Movement> = all
                    .iter()
                    .filter(|movement| movement.command.0 == number)
                    .cloned()
                    .collect();
                assert_eq!(legs, expected, "command {number}");
            }
            assert!(store
                .command_movements(CommandId(99_999))
                .unwrap()
                .is_empty());
            store.sync().unwrap();
        }
        let (store, report) =
            HistoryStore::open(dir.path(), check_all(SEGMENT_BYTES_MIN), 0).unwrap();
        assert_eq!(report.movements, all.len() as u64);
        assert!(
            report.damaged.is_empty() && report.torn_bytes == 0,
            "{report:?}"
        );
        assert_eq!(store.watermark(), 300);
        check_every_account(&store, &all);
        assert_eq!(store.command_movements(CommandId(17)).unwrap().len(), 2);
        // Appends go on after the reopen.
        let more = movements(320);
        write(&store, &more[300..], 301);
        let all: Vec<Movement> = more.iter().flatten().cloned().collect();
        check_every_account(&store, &all);
    }

    /// Whether reads of files in `dir` can be asked not to wait
    /// (`RWF_NOWAIT`: ext4, xfs and btrfs can; tmpfs cannot).
    fn reads_without_waiting_here(dir: &Path) -> bool {
        let path = dir.join("probe");
        fs::write(&path, [1u8; 64]).unwrap();
        let read = read_cached_at(&File::open(&path).unwrap(), &mut [0u8; 8], 0).unwrap();
        fs::remove_file(&path).unwrap();
        read == Some(8)
    }

    /// Drops `path`'s pages from the page cache (they are clean: synced).
    fn evict(path: &Path) {
        use std::os::fd::AsRawFd;
        let file = File::open(path).unwrap();
        file.sync_all().unwrap();
        // Safety: an advice about a file descriptor open for the call.
        #[allow(unsafe_code)]
        let result =
            unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(result, 0);
    }

    #[test]
    fn a_page_is_read_without_waiting_from_the_newest_segments_maps_or_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(700);
        let all = all_of(&batches);
        let (store, _) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
        write(&store, &batches, 1);
        // The newest segments are mapped, the older ones not.
        let numbers: Vec<u32> = store.segments().keys().copied().collect();
        let mapped: Vec<u32> = store
            .segments()
            .iter()
            .filter(|(_, entry)| entry.map.is_some())
            .map(|(&number, _)| number)
            .collect();
        assert!(numbers.len() > MAPPED_SEGMENTS_MAX + 2, "{numbers:?}");
        assert_eq!(mapped, numbers[numbers.len() - MAPPED_SEGMENTS_MAX..]);
        let account = AccountId(3);
        let entries = reference(&all, 3, 0, u64::MAX);
        let newest = store.page(account, 0, u64::MAX, 0, 20).unwrap();
        assert_eq!(newest.entries, entries[..20]);
        assert_eq!(
            store
                .page_without_waiting(account, 0, u64::MAX, 0, 20)
                .unwrap(),
            Some(newest.clone())
        );
        // A page that reads more records than the bound is left to a read
        // that may wait, whatever the cache holds.
        assert!(entries.len() > PAGE_NO_WAIT_RECORDS_MAX);
        let limit = history::HISTORY_PAGE_MAX;
        assert_eq!(
            store
                .page_without_waiting(account, 0, u64::MAX, 0, limit)
                .unwrap(),
            None
        );
        assert_eq!(all_pages(&store, 3, 0, u64::MAX, limit), entries);
        // Out of the page cache: a page in the mapped segments is still
        // read from them; one that starts in an older segment is left to
        // a read that may wait (where the file system can say so), and
        // that read gives the same entries.
        for path in store.segment_paths() {
            evict(&path);
        }
        assert_eq!(
            store
                .page_without_waiting(account, 0, u64::MAX, 0, 20)
                .unwrap(),
            Some(newest)
        );
        let supported = reads_without_waiting_here(dir.path());
        let mut cursor = store.page(account, 0, u64::MAX, 0, 20).unwrap().next_cursor;
        let mut unmapped_starts = 0;
        while cursor != 0 {
            let starts_in = ((cursor as u64) >> 32) as u32;
            let without_waiting = store
                .page_without_waiting(account, 0, u64::MAX, cursor, 20)
                .unwrap();
            let page = store.page(account, 0, u64::MAX, cursor, 20).unwrap();
            for path in store.segment_paths() {
                evict(&path);
            }
            if !mapped.contains(&starts_in) {
                unmapped_starts += 1;
                if supported {
                    assert_eq!(without_waiting, None, "from segment {starts_in}");
                }
            }
            if let Some(without_waiting) = without_waiting {
                assert_eq!(without_waiting, page);
            }
            cursor = page.next_cursor;
        }
        assert!(unmapped_starts > 0);
    }

    /// `movements` as a ledger pushes them into a chunk, leg by leg.
    fn chunk_of(movements: &[Movement]) -> MovementChunk {
        let mut chunk = MovementChunk::default();
        let mut context = history::MovementContext::default();
        for movement in movements {
            let kind = match &*movement.kind {
                "transfer" => "transfer",
                _ => "qr_payment",
            };
            if context.entry.is_none()
                || context.command != movement.command
                || context.instrument != movement.instrument
            {
                context = history::MovementContext {
                    command: movement.command,
                    kind,
                    sequence: movement.sequence,
                    timestamp: movement.timestamp,
                    index: movement.position / history::MOVEMENT_LEGS_MAX,
                    instrument: movement.instrument,
                    ..history::MovementContext::default()
                };
            }
            let account = crate::ledger::Account {
                id: movement.account,
                owner: movement.account.0,
                balance: movement.balance,
                debits_pending: 0,
                credits_pending: 0,
                currency: movement.currency,
                kind: crate::command::AccountKind::Customer,
                status: crate::command::AccountStatus::Active,
                kyc_tier: 1,
                mcc: 0,
                holds_pending: 0,
                codes_live: 0,
            };
            chunk.push(
                &mut context,
                &account,
                movement.counterparty,
                movement.amount,
                movement.mcc,
                movement.position % history::MOVEMENT_LEGS_MAX,
            );
        }
        chunk
    }

    #[test]
    fn chunks_write_the_bytes_their_built_movements_write() {
        let mut batches = movements(400);
        // Commands from an instrument (an entry of their own in a chunk,
        // never a follow-on of another command's leg).
        let instrument = history::MovementInstrument {
            number: 3,
            bank: crate::instrument::InstrumentText(*b"ICBC\0\0\0\0\0\0\0\0\0\0\0\0"),
            last_four: *b"4242",
        };
        for movement in batches.iter_mut().flatten() {
            if movement.command.0 % 11 == 0 {
                movement.instrument = Some(instrument);
            }
        }
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        let chunks: Vec<MovementChunk> = batches.iter().map(|batch| chunk_of(batch)).collect();
        let rebuilt: Vec<Movement> = chunks.iter().flat_map(MovementChunk::iter).collect();
        assert_eq!(rebuilt, all, "a chunk gives back the movements pushed");
        assert!(
            chunks.iter().map(|chunk| chunk.legs_held()).sum::<usize>() < all.len() * 3 / 4,
            "most credit legs are held in their debit leg's entry"
        );
        let (built_dir, chunks_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        {
            let (built, _) =
                HistoryStore::open(built_dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
            let (chunked, _) =
                HistoryStore::open(chunks_dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
            // Several batches' chunks in one write, as the writer drains
            // them, and a job's chunks split across writes.
            let mut sequence = 0;
            for group in batches.chunks(7) {
                sequence += group.len() as u64;
                built.append_parts(group, sequence).unwrap();
            }
            sequence = 0;
            for group in chunks.chunks(7) {
                sequence += group.len() as u64;
                chunked.append_chunks(group, sequence).unwrap();
            }
            assert!(chunked.stats().segments >= 5, "{:?}", chunked.stats());
            check_every_account(&chunked, &all);
            for number in [11u128, 22, 1_500, 5_999] {
                assert_eq!(
                    chunked.command_movements(CommandId(number)).unwrap(),
                    built.command_movements(CommandId(number)).unwrap(),
                );
            }
            built.sync().unwrap();
            chunked.sync().unwrap();
        }
        let mut names: Vec<_> = fs::read_dir(built_dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name.to_string_lossy().ends_with(".seg"))
            .collect();
        names.sort();
        assert!(names.len() >= 5);
        for name in names {
            assert_eq!(
                fs::read(built_dir.path().join(&name)).unwrap(),
                fs::read(chunks_dir.path().join(&name)).unwrap(),
                "{name:?}"
            );
        }
    }

    #[test]
    fn a_job_larger_than_a_write_chunk_and_a_crash_between_its_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(1_200);
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        let (first, second) = all.split_at(all.len() / 2);
        let end_of_first;
        {
            let (store, _) =
                HistoryStore::open(dir.path(), config(SEGMENT_BYTES_DEFAULT), 0).unwrap();
            store.append(first, 600).unwrap();
            let path = store.segment_paths().pop().unwrap();
            end_of_first = fs::metadata(&path).unwrap().len();
            // One job of several write chunks: written in pieces, pages
            // see all of it once the append returns.
            store.append(second, 1_200).unwrap();
            let written = fs::metadata(&path).unwrap().len() - end_of_first;
            assert!(written > 2 * WRITE_CHUNK_BYTES as u64, "{written} bytes");
            check_every_account(&store, &all);
            store.sync().unwrap();
            // A crash after the second job's first chunk reached the file,
            // before its watermark did.
            let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(end_of_first + WRITE_CHUNK_BYTES as u64 + 10)
                .unwrap();
        }
        let (store, report) =
            HistoryStore::open(dir.path(), check_all(SEGMENT_BYTES_DEFAULT), 0).unwrap();
        assert!(report.torn_bytes > 0, "{report:?}");
        assert_eq!(store.watermark(), 600);
        check_every_account(&store, first);
        let path = store.segment_paths().pop().unwrap();
        assert_eq!(fs::metadata(&path).unwrap().len(), end_of_first);
        // The rebuild appends the second job again.
        store.append(second, 1_200).unwrap();
        check_every_account(&store, &all);
    }

    #[test]
    fn parts_split_anywhere_write_what_one_slice_writes() {
        let batches = movements(300);
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        let whole = tempfile::tempdir().unwrap();
        let split = tempfile::tempdir().unwrap();
        let (one, _) = HistoryStore::open(whole.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
        let (parts, _) = HistoryStore::open(split.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
        // Jobs of 12 batches, cut into parts of 7 movements: some parts
        // end between a command's two legs, and jobs span segments.
        for (job, chunk) in all.chunks(12 * 2 * COMMANDS_PER_BATCH as usize).enumerate() {
            let watermark = 12 * (job as u64 + 1);
            one.append(chunk, watermark).unwrap();
            let cut: Vec<Vec<Movement>> = chunk.chunks(7).map(<[Movement]>::to_vec).collect();
            parts.append_parts(&cut, watermark).unwrap();
        }
        assert!(parts.stats().segments > 2);
        assert_eq!(one.stats(), parts.stats());
        for path in one.segment_paths() {
            let name = path.file_name().unwrap();
            assert_eq!(
                fs::read(&path).unwrap(),
                fs::read(split.path().join(name)).unwrap()
            );
        }
        check_every_account(&parts, &all);
        for command in [1u128, 17, 600, 1_199] {
            // One command in seven has four legs (`movements`).
            let legs = if (command - 1) % 7 == 0 { 4 } else { 2 };
            assert_eq!(
                parts.command_movements(CommandId(command)).unwrap().len(),
                legs,
                "command {command}"
            );
        }
    }

    #[test]
    fn a_torn_tail_is_cut_back_to_its_last_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(50);
        let path;
        {
            let (store, _) = HistoryStore::open(dir.path(), config(1 << 20), 0).unwrap();
            write(&store, &batches[..40], 1);
            let before = store.stats().bytes;
            write(&store, &batches[40..41], 41);
            path = store.segment_paths().pop().unwrap();
            // A crash part-way through the last write.
            let len = fs::metadata(&path).unwrap().len();
            assert_eq!(len, store.stats().bytes);
            set_len(&path, before + (len - before) / 2).unwrap();
        }
        let (store, report) = HistoryStore::open(dir.path(), config(1 << 20), 0).unwrap();
        assert!(
            report.torn_bytes > 0 && report.damaged.is_empty(),
            "{report:?}"
        );
        assert_eq!(store.watermark(), 40);
        // Rebuilt as recovery would: from batch 41 on.
        write(&store, &batches[40..], 41);
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        check_every_account(&store, &all);
    }

    #[test]
    fn a_crash_between_a_seal_and_the_next_segment_rebuilds_the_split_batch() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(300);
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        // One job of many batches, as the history writer sends them: it
        // spans segments, so a segment is sealed mid-job.
        let watermark_before;
        {
            let (store, _) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
            write(&store, &batches[..10], 1);
            watermark_before = store.watermark();
            let job: Vec<Movement> = batches[10..300].iter().flatten().cloned().collect();
            store.append(&job, 300).unwrap();
            let paths = store.segment_paths();
            assert!(paths.len() >= 3);
            // The crash: every segment after the first sealed one is gone.
            for path in &paths[1..] {
                fs::remove_file(path).unwrap();
            }
        }
        let (store, report) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
        assert!(report.torn_bytes > 0, "{report:?}");
        // Back to the last watermark record: the 10 batches written alone.
        assert_eq!(store.watermark(), watermark_before);
        write(&store, &batches[10..], 11);
        check_every_account(&store, &all);
        for number in [101u128, 1_500, 3_000] {
            assert_eq!(store.command_movements(CommandId(number)).unwrap().len(), 2);
        }
    }

    fn check_all(segment_bytes: u32) -> HistoryConfig {
        HistoryConfig {
            check_all_segments: true,
            ..config(segment_bytes)
        }
    }

    #[test]
    fn a_start_takes_the_sealed_segments_from_the_head_snapshot_and_reads_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(400);
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        let written = {
            let (store, _) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
            write(&store, &batches[..300], 1);
            store.stats()
        };
        assert!(written.segments >= 4, "{written:?}");
        assert!(dir.path().join(HEADS_FILE).exists());
        let (store, report) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
        // The snapshot is written at each seal here (40 accounts): only
        // the active segment is read.
        assert_eq!(
            report.segments_from_snapshot,
            written.segments - 1,
            "{report:?}"
        );
        assert_eq!(report.segments, 1, "{report:?}");
        assert!(report.damaged.is_empty() && report.torn_bytes == 0);
        assert_eq!(store.stats(), written);
        assert_eq!(store.watermark(), 300);
        let first_300: Vec<Movement> = batches[..300].iter().flatten().cloned().collect();
        check_every_account(&store, &first_300);
        assert_eq!(store.command_movements(CommandId(5)).unwrap().len(), 2);
        // Appends go on from the snapshot's heads; a full read agrees.
        write(&store, &batches[300..], 301);
        check_every_account(&store, &all);
        let stats = store.stats();
        drop(store);
        let (full, report) =
            HistoryStore::open(dir.path(), check_all(SEGMENT_BYTES_MIN), 0).unwrap();
        assert_eq!(report.segments_from_snapshot, 0);
        assert_eq!(report.segments, stats.segments);
        assert_eq!(full.stats(), stats);
        check_every_account(&full, &all);
    }

    #[test]
    fn a_snapshot_that_does_not_fit_the_segments_is_not_used() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(300);
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        let paths = {
            let (store, _) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
            write(&store, &batches, 1);
            store.segment_paths()
        };
        assert!(paths.len() >= 4);
        let heads = dir.path().join(HEADS_FILE);

        // A damaged snapshot: every segment is read.
        let good = fs::read(&heads).unwrap();
        flip(&heads, 70);
        let (store, report) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
        assert_eq!(report.segments_from_snapshot, 0, "{report:?}");
        assert_eq!(report.segments, paths.len() as u64);
        check_every_account(&store, &all);
        drop(store);

        // A sealed segment it names differs (here: its seal): not used.
        fs::write(&heads, &good).unwrap();
        let len = fs::metadata(&paths[1]).unwrap().len();
        flip(&paths[1], len - 1);
        let (_, report) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
        assert_eq!(report.segments_from_snapshot, 0, "{report:?}");
        assert_eq!(report.damaged.len(), 1, "{report:?}");
        assert!(report.damaged[0].rebuilt);
    }

    #[test]
    fn damage_in_a_segment_the_snapshot_covers_is_found_by_a_full_check() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(300);
        let paths = {
            let (store, _) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
            write(&store, &batches, 1);
            store.segment_paths()
        };
        flip(&paths[1], 5_000);
        // A start does not read it (that is what makes it fast) ...
        let (_, report) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
        assert!(report.segments_from_snapshot > 0 && report.damaged.is_empty());
        // ... a full check (`payrail verify`) does, and cuts it for a rebuild.
        let (store, report) =
            HistoryStore::open(dir.path(), check_all(SEGMENT_BYTES_MIN), 0).unwrap();
        assert_eq!(report.damaged.len(), 1, "{report:?}");
        assert_eq!(report.damaged[0].number, 2);
        assert!(report.damaged[0].rebuilt);
        let watermark = store.watermark();
        write(&store, &batches[watermark as usize..], watermark + 1);
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        check_every_account(&store, &all);
        drop(store);
        // The cut removed the snapshot; the seals since wrote a new one
        // that a start uses.
        let (store, report) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
        assert!(report.segments_from_snapshot > 0, "{report:?}");
        check_every_account(&store, &all);
    }

    fn flip(path: &Path, at: u64) {
        let mut bytes = fs::read(path).unwrap();
        bytes[at as usize] ^= 0x10;
        fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_damaged_segment_the_log_still_holds_is_cut_for_a_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(300);
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        let paths = {
            let (store, _) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
            write(&store, &batches, 1);
            store.segment_paths()
        };
        assert!(paths.len() >= 5);
        flip(&paths[2], 5_000);
        // The log holds everything (no checkpoint yet).
        let (store, report) =
            HistoryStore::open(dir.path(), check_all(SEGMENT_BYTES_MIN), 0).unwrap();
        assert_eq!(report.damaged.len(), 1, "{report:?}");
        assert!(report.damaged[0].rebuilt);
        assert!(
            report.damaged[0].reason.ends_with("fails its checksum"),
            "{report:?}"
        );
        let watermark = store.watermark();
        assert!(watermark > 0 && watermark < 300, "{watermark}");
        assert_eq!(store.segment_paths().len(), 2);
        // What recovery does next: the batches after the watermark again.
        write(&store, &batches[watermark as usize..], watermark + 1);
        check_every_account(&store, &all);
    }

    #[test]
    fn a_damaged_segment_the_log_no_longer_holds_is_deleted_and_pages_end_there() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(300);
        let paths = {
            let (store, _) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
            write(&store, &batches, 1);
            store.segment_paths()
        };
        flip(&paths[1], 3_000);
        // A checkpoint at 300: the log holds nothing before it.
        let (store, report) =
            HistoryStore::open(dir.path(), check_all(SEGMENT_BYTES_MIN), 300).unwrap();
        assert_eq!(report.damaged.len(), 1);
        assert!(!report.damaged[0].rebuilt);
        assert_eq!(store.watermark(), 300);
        assert_eq!(store.segment_paths().len(), paths.len() - 1);
        // Each account's pages are its movements after the hole.
        let lost: std::collections::HashSet<(u64, u32)> = {
            let kept: Vec<Movement> = (1..=ACCOUNTS)
                .flat_map(|account| all_pages(&store, account, 0, u64::MAX, 50))
                .collect();
            let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
            let kept: std::collections::HashSet<(u64, u32, u64)> = kept
                .iter()
                .map(|movement| (movement.sequence, movement.position, movement.account.0))
                .collect();
            all.iter()
                .filter(|movement| {
                    !kept.contains(&(movement.sequence, movement.position, movement.account.0))
                })
                .map(|movement| (movement.sequence, movement.position))
                .collect()
        };
        // Some movements are gone, and only from the start of the history.
        assert!(!lost.is_empty());
        let newest_lost = lost.iter().map(|&(sequence, _)| sequence).max().unwrap();
        assert!(newest_lost < 150, "{newest_lost}");
    }

    #[test]
    fn retention_deletes_whole_old_segments_and_pages_stop_there() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(300);
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        let retention = HistoryConfig {
            retention_ns: 100_000,
            ..config(SEGMENT_BYTES_MIN)
        };
        let (store, _) = HistoryStore::open(dir.path(), retention, 0).unwrap();
        write(&store, &batches, 1);
        let stats = store.stats();
        assert!(stats.segments_expired >= 2, "{stats:?}");
        // What is kept is the newest movements of the stream, whole
        // segments, and covers at least the retention.
        assert!(stats.movements < all.len() as u64);
        assert!(stats.oldest_timestamp <= 300_000 - 100_000, "{stats:?}");
        let kept = &all[all.len() - stats.movements as usize..];
        assert_eq!(kept[0].timestamp, stats.oldest_timestamp);
        check_every_account(&store, kept);
        drop(store);
        let (store, report) = HistoryStore::open(dir.path(), retention, 0).unwrap();
        assert!(report.damaged.is_empty());
        check_every_account(&store, kept);
    }

    #[test]
    fn a_full_head_index_refuses_new_accounts_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let small = HistoryConfig {
            accounts_max: 3,
            ..config(SEGMENT_BYTES_MIN)
        };
        let (store, _) = HistoryStore::open(dir.path(), small, 0).unwrap();
        let batches = movements(2);
        write(&store, &batches, 1);
        let stats = store.stats();
        assert_eq!(stats.accounts, 3);
        let all: Vec<Movement> = batches.iter().flatten().cloned().collect();
        let kept_accounts: std::collections::BTreeSet<u64> = {
            let mut seen = Vec::new();
            for movement in &all {
                if !seen.contains(&movement.account.0) && seen.len() < 3 {
                    seen.push(movement.account.0);
                }
            }
            seen.into_iter().collect()
        };
        let refused = all
            .iter()
            .filter(|movement| !kept_accounts.contains(&movement.account.0))
            .count() as u64;
        assert_eq!(stats.movements_refused, refused);
        for account in kept_accounts {
            assert_eq!(
                all_pages(&store, account, 0, u64::MAX, 5),
                reference(&all, account, 0, u64::MAX)
            );
        }
    }

    #[test]
    fn a_cursor_that_names_no_entry_of_the_account_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
        write(&store, &movements(5), 1);
        let page = store.page(AccountId(1), 0, u64::MAX, 0, 1).unwrap();
        let cursor = page.next_cursor;
        assert_ne!(cursor, 0);
        assert!(store.page(AccountId(1), 0, u64::MAX, cursor, 1).is_ok());
        assert!(store.page(AccountId(2), 0, u64::MAX, cursor, 1).is_err());
        assert!(store
            .page(AccountId(1), 0, u64::MAX, cursor + 1, 1)
            .is_err());
        assert!(store
            .page(AccountId(1), 0, u64::MAX, cursor ^ (1 << 64), 1)
            .is_err());
        // A cursor into a segment that is not kept (gone with the
        // retention): the history ends there.
        assert_eq!(
            store.page(AccountId(1), 0, u64::MAX, u128::MAX, 1).unwrap(),
            HistoryPage::default()
        );
    }

    /// Writes `batches` (batch `i` has sequence `first_sequence + i`) as a
    /// build before segment version 2 wrote them: version-1 segments of at
    /// most `segment_bytes`, every record with its own CRC-32C, a watermark
    /// after each batch, a full segment sealed. The first
    /// `previous_only_batches` batches have records with the previous
    /// address alone (the builds before the skip address), the rest both
    /// links. The last segment is left unsealed, as a stop leaves it.
    fn write_version_1(
        dir: &Path,
        batches: &[Vec<Movement>],
        first_sequence: u64,
        segment_bytes: usize,
        previous_only_batches: usize,
    ) {
        fn record(out: &mut Vec<u8>, kind: u8, body: &[u8]) {
            let start = out.len();
            out.extend_from_slice(&((RECORD_HEADER_BYTES_V1 + body.len()) as u32).to_le_bytes());
            out.extend_from_slice(&[0u8; 4]);
            out.push(kind);
            out.extend_from_slice(body);
            let crc =
                crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 4]), &out[start + 8..]);
            out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        }
        fn header(number: u32, segment_bytes: usize) -> Vec<u8> {
            segment_header(number, segment_bytes as u32, Format::RecordChecksums, 0).to_vec()
        }
        fs::create_dir_all(dir).unwrap();
        // account -> (latest address, skip address)
        let mut heads: FxHashMap<u64, (u64, u64)> = FxHashMap::default();
        let mut number = 1u32;
        let mut file = header(number, segment_bytes);
        let mut movements_in = 0u64;
        let mut newest = 0u64;
        for (index, batch) in batches.iter().enumerate() {
            let mut block = Vec::new();
            let mut block_heads = heads.clone();
            let previous_only = index < previous_only_batches;
            let base = loop {
                // Records with links need the block's place: build it at
                // the segment's end, or seal and start a new one.
                block.clear();
                block_heads.clone_from(&heads);
                let base = file.len();
                for movement in batch {
                    let address = address_of(number, (base + block.len()) as u32);
                    let (latest, skip) = block_heads
                        .get(&movement.account.0)
                        .copied()
                        .unwrap_or((0, 0));
                    let links = Links::after(address, latest, skip);
                    block_heads.insert(movement.account.0, (address, links.skip));
                    let mut body = links.previous.to_le_bytes().to_vec();
                    if !previous_only {
                        body.extend_from_slice(&links.skip.to_le_bytes());
                    }
                    history::encode_movement(movement, &mut body);
                    record(&mut block, KIND_MOVEMENT, &body);
                }
                let mut mark = (first_sequence + index as u64).to_le_bytes().to_vec();
                let batch_newest = batch.iter().map(|m| m.timestamp).max().unwrap_or(0);
                mark.extend_from_slice(&newest.max(batch_newest).to_le_bytes());
                record(&mut block, KIND_WATERMARK, &mark);
                if base + block.len() + SEAL_RECORD_BYTES_V1 <= segment_bytes {
                    break base;
                }
                file.extend_from_slice(&seal_record_v1(&file, movements_in, newest));
                fs::write(segment_path(dir, number), &file).unwrap();
                number += 1;
                file = header(number, segment_bytes);
                movements_in = 0;
            };
            assert_eq!(base, file.len());
            file.extend_from_slice(&block);
            heads = block_heads;
            movements_in += batch.len() as u64;
            newest = newest.max(batch.iter().map(|m| m.timestamp).max().unwrap_or(0));
        }
        fs::write(segment_path(dir, number), &file).unwrap();
    }

    fn all_of(batches: &[Vec<Movement>]) -> Vec<Movement> {
        batches.iter().flatten().cloned().collect()
    }

    fn check_ranges_and_commands(store: &HistoryStore, all: &[Movement]) {
        for (from, to) in [(50_000, 90_000), (0, 1_000), (120_000, u64::MAX)] {
            for account in [3, 17] {
                assert_eq!(
                    all_pages(store, account, from, to, 3),
                    reference(all, account, from, to),
                    "account {account}, {from}..={to}"
                );
            }
        }
        for number in [1u128, 17, 1_000, 1_499] {
            let expected: Vec<Movement> = all
                .iter()
                .filter(|movement| movement.command.0 == number)
                .cloned()
                .collect();
            assert_eq!(
                store.command_movements(CommandId(number)).unwrap(),
                expected,
                "command {number}"
            );
        }
    }

    #[test]
    fn version_1_segments_are_read_as_they_are_after_an_upgrade() {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(300);
        // What an older build left: 150 batches in version-1 segments,
        // the earliest records without skip addresses, and a checkpoint
        // at 150 that trimmed the log (nothing to rebuild from).
        write_version_1(dir.path(), &batches[..150], 1, 16 * 1024, 40);
        let old_segments = fs::read_dir(dir.path()).unwrap().count();
        assert!(old_segments >= 4, "{old_segments}");
        let old = all_of(&batches[..150]);
        {
            let (store, report) =
                HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 150).unwrap();
            assert!(report.damaged.is_empty(), "{report:?}");
            assert_eq!(report.torn_bytes, 0);
            assert_eq!(report.movements, old.len() as u64);
            assert_eq!(store.watermark(), 150);
            assert_eq!(store.stats().movements, old.len() as u64);
            check_every_account(&store, &old);
            check_ranges_and_commands(&store, &old);
            // This build goes on in a segment of its own version, after
            // the old unfinished one (sealed in its format).
            write(&store, &batches[150..], 151);
            let all = all_of(&batches);
            check_every_account(&store, &all);
            check_ranges_and_commands(&store, &all);
            let paths = store.segment_paths();
            let version = |path: &PathBuf| u32_at(&fs::read(path).unwrap(), 8);
            assert_eq!(version(&paths[old_segments - 1]), 1);
            assert_eq!(version(&paths[old_segments]), SEGMENT_VERSION);
            store.sync().unwrap();
        }
        // A restart reads both (every segment checked, then from the
        // head-index snapshot the seals wrote).
        let all = all_of(&batches);
        for config in [check_all(SEGMENT_BYTES_MIN), config(SEGMENT_BYTES_MIN)] {
            let (store, report) = HistoryStore::open(dir.path(), config, 300).unwrap();
            assert!(report.damaged.is_empty(), "{report:?}");
            assert_eq!(store.watermark(), 300);
            assert_eq!(store.stats().movements, all.len() as u64);
            check_every_account(&store, &all);
            check_ranges_and_commands(&store, &all);
        }
    }

    #[test]
    fn a_damaged_version_1_segment_is_found_and_cut_or_deleted() {
        let batches = movements(150);
        for (log_start, rebuilt) in [(0, true), (150, false)] {
            let dir = tempfile::tempdir().unwrap();
            write_version_1(dir.path(), &batches, 1, 16 * 1024, 0);
            flip(&segment_path(dir.path(), 2), 3_000);
            let (store, report) =
                HistoryStore::open(dir.path(), check_all(SEGMENT_BYTES_MIN), log_start).unwrap();
            assert_eq!(report.damaged.len(), 1, "{report:?}");
            assert_eq!(report.damaged[0].number, 2);
            assert_eq!(report.damaged[0].rebuilt, rebuilt);
            assert!(
                report.damaged[0].reason.ends_with("fails its checksum"),
                "{report:?}"
            );
            let all = all_of(&batches);
            if rebuilt {
                // Cut after segment 1: recovery appends the rest again.
                let watermark = store.watermark();
                assert!(watermark > 0 && watermark < 150, "{watermark}");
                write(&store, &batches[watermark as usize..], watermark + 1);
                check_every_account(&store, &all);
            } else {
                // Segment 2's movements are gone; the others read.
                assert_eq!(store.watermark(), 150);
                let kept: u64 = (1..=ACCOUNTS)
                    .map(|account| all_pages(&store, account, 0, u64::MAX, 50).len() as u64)
                    .sum();
                assert!(kept < all.len() as u64 && kept > 0, "{kept}");
            }
        }
    }

    #[test]
    fn version_3_and_4_segments_are_read_after_an_upgrade_to_version_5() {
        // (format before, its version, the most version 5 takes of its
        // bytes for the same movements, in percent)
        for (old_format, old_version, percent) in
            [(Format::BlockChecksums, 3, 50), (Format::Compact, 4, 75)]
        {
            an_upgrade_reads_older_segments(old_format, old_version, percent);
        }
    }

    fn an_upgrade_reads_older_segments(old_format: Format, old_version: u32, percent: u64) {
        let dir = tempfile::tempdir().unwrap();
        let batches = movements(300);
        // What the build before wrote: segments of its version (the same
        // writer, in that format), the last one unfinished.
        let old_segments = {
            let (store, _) = HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 0).unwrap();
            store.writer().format = old_format;
            write(&store, &batches[..150], 1);
            store.sync().unwrap();
            store.segment_paths().len()
        };
        assert!(old_segments >= 3, "{old_segments}");
        let old = all_of(&batches[..150]);
        {
            let (store, report) =
                HistoryStore::open(dir.path(), config(SEGMENT_BYTES_MIN), 150).unwrap();
            assert!(report.damaged.is_empty(), "{report:?}");
            assert_eq!(store.watermark(), 150);
            check_every_account(&store, &old);
            check_ranges_and_commands(&store, &old);
            write(&store, &batches[150..], 151);
            let all = all_of(&batches);
            check_every_account(&store, &all);
            check_ranges_and_commands(&store, &all);
            let paths = store.segment_paths();
            let version = |path: &PathBuf| u32_at(&fs::read(path).unwrap(), 8);
            assert_eq!(version(&paths[old_segments - 1]), old_version);
            assert_eq!(version(&paths[old_segments]), SEGMENT_VERSION);
            // The current version takes fewer bytes for the same movements.
            let bytes = |paths: &[PathBuf]| -> u64 {
                paths
                    .iter()
                    .map(|path| fs::metadata(path).unwrap().len())
                    .sum()
            };
            let old_bytes = bytes(&paths[..old_segments]);
            let new_bytes = bytes(&paths[old_segments..]);
            assert!(
                new_bytes * 100 < old_bytes * percent,
                "{new_bytes} {old_bytes}"
            );
            store.sync().unwrap();
        }
        let all = all_of(&batches);
        for config in [check_all(SEGMENT_BYTES_MIN), config(SEGMENT_BYTES_MIN)] {
            let (store, report) = HistoryStore::open(dir.path(), config, 300).unwrap();
            assert!(report.damaged.is_empty(), "{report:?}");
            assert_eq!(store.stats().movements, all.len() as u64);
            check_every_account(&store, &all);
            check_ranges_and_commands(&store, &all);
        }
    }

    #[test]
    fn the_command_index_is_sorted_with_the_newest_address_of_each_id() {
        // Random ids (the bucketed sort), ids sharing their top bits, ids
        // as the load test makes them (a run's nonce, then a stream, then a
        // counter: a bucket per stream, each bucketed again), and a list
        // too short for buckets; some ids twice.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let nonce = u128::from(next()) << 64;
        for (count, ids) in [(200_000, 0), (100_000, 1), (100_000, 2), (1_000, 0)] {
            let mut commands: Vec<(u128, u64)> = (0..count)
                .map(|index| {
                    let random = (u128::from(next()) << 64) | u128::from(next());
                    let id = match ids {
                        0 => random,
                        1 => random >> 20,
                        _ => nonce | (random % 24) << 40 | index as u128,
                    };
                    (id, index as u64 + 1)
                })
                .collect();
            for index in (0..count).step_by(97) {
                let again = commands[index].0;
                commands.push((again, (count + index) as u64 + 1));
            }
            let mut want = commands.clone();
            want.sort_unstable();
            want.reverse();
            want.dedup_by_key(|&mut (command, _)| command);
            want.reverse();
            assert_eq!(sorted_commands(&commands), want);
        }
    }

    #[test]
    fn compact_links_round_trip_wherever_they_point() {
        // docs/persistence.md gives these sizes.
        assert_eq!(MOVEMENT_RECORD_BYTES_MAX_COMPACT, 165);
        assert_eq!(RECORD_BYTES_MAX, 165);
        assert_eq!(Format::Compact.watermark_record_bytes(), 22);
        assert_eq!(Format::Compact.seal_record_bytes(), 22);
        let number = 7;
        let offset = 40_000;
        let cases = [
            (0, 0),
            (address_of(7, 39_000), 0),
            (address_of(7, HEADER_BYTES as u32), address_of(3, 1 << 29)),
            (address_of(6, 64), address_of(6, 64)),
            (address_of(1, 5_000), address_of(1, 5_000)),
            (address_of(6, 64), address_of(2, 100)),
        ];
        for (previous, skip) in cases {
            let links = Links { previous, skip };
            let mut bytes = Vec::new();
            encode_links_compact(&mut bytes, number, offset, links);
            assert!(bytes.len() <= LINKS_BYTES_MAX_COMPACT);
            let mut at = 0;
            assert_eq!(
                decode_links_compact(&bytes, &mut at, number, offset),
                Ok(links)
            );
            assert_eq!(at, bytes.len());
        }
        // A link back past the segment's start or to segment 0: damage.
        let mut at = 0;
        let mut bytes = Vec::new();
        history::put_varint(&mut bytes, u64::from(offset + 1) << 1 | 1);
        assert!(decode_links_compact(&bytes, &mut at, number, offset).is_err());
        bytes.clear();
        history::put_varint(&mut bytes, 7 << 1);
        history::put_varint(&mut bytes, 100);
        at = 0;
        assert!(decode_links_compact(&bytes, &mut at, number, offset).is_err());
    }
}
