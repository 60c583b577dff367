//! Memory hints: cache prefetches for the apply loop (`Ledger::apply` asks
//! for the memory a command will touch a few commands before it runs, so
//! the cache misses of several commands overlap instead of stalling one
//! after another), huge pages for the large tables allocated at start, and
//! freeing a large state off the stopping thread.

/// Asks the CPU to bring the cache lines of `value` (up to `lines` of them,
/// 64 bytes each, from its start) into the cache. A hint only: it reads
/// nothing the program sees and changes nothing.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T, lines: usize) {
    let start = (value as *const T).cast::<u8>();
    let size = std::mem::size_of::<T>();
    for line in 0..lines.min(size.div_ceil(64)) {
        prefetch_line(start.wrapping_add(line * 64));
    }
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn prefetch_line(address: *const u8) {
    // SAFETY: PREFETCHT0 is a hint: it never faults and never reads memory
    // into a register, whatever the address (here always inside or just
    // past a live value, computed with wrapping arithmetic).
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(address.cast::<i8>());
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn prefetch_line(_address: *const u8) {}

/// Leaves the pages of `memory` out of every process forked from now on
/// (Linux `MADV_DONTFORK`; a no-op elsewhere): for a table the checkpoint's
/// process never reads, so that the engine's writes to it while that
/// process runs copy nothing. Only whole pages inside `memory` are left
/// out; the forked process must not touch `memory` at all.
pub(crate) fn keep_from_forks<T>(memory: &mut [T]) {
    // `memory` is borrowed mutably: nothing else uses it while advised.
    #[cfg(target_os = "linux")]
    if !advise_pages_inside(
        memory.as_mut_ptr() as usize,
        std::mem::size_of_val(memory),
        libc::MADV_DONTFORK,
    ) {
        tracing::debug!("a table could not be left out of forks (madvise)");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = memory;
}

/// Asks the kernel to back `memory` with transparent huge pages (2 MiB)
/// where it can: a table of gigabytes read at random costs a TLB miss and a
/// page walk per access on 4 KiB pages, and almost none on huge pages. Call
/// it before the memory is first touched. A hint only: where the kernel
/// declines (or huge pages are off), nothing changes.
pub(crate) fn advise_huge_pages<T>(memory: &mut [T]) {
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = memory.as_mut_ptr() as usize;
        let end = start + std::mem::size_of_val(memory);
        // madvise wants a page-aligned start; the range stays inside `memory`.
        let aligned = start.next_multiple_of(PAGE);
        if end <= aligned + PAGE {
            return;
        }
        // SAFETY: MADV_HUGEPAGE changes how the kernel backs the pages of a
        // mapping we own (the whole range lies inside `memory`, which is
        // borrowed mutably, so nothing else uses it meanwhile); it never
        // changes their contents, and its result is only a hint.
        #[allow(unsafe_code)]
        let result = unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_HUGEPAGE,
            )
        };
        if result != 0 {
            tracing::debug!("huge pages declined for a table (madvise)");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = memory;
}

/// Asks the kernel to map the pages of the `bytes` of memory at `address`
/// for writing, as a first write to each would, without writing them
/// (Linux `MADV_POPULATE_WRITE`, 5.14 and later; a no-op elsewhere): so
/// that the thread that writes them later takes no page fault. Contents
/// stay as they are, and another thread may use the memory meanwhile.
/// Only whole pages inside the range are asked for. A hint: a range that
/// is not (or no longer) mapped, or an older kernel, is refused with an
/// error, which is ignored. Returns whether the kernel did it.
pub(crate) fn populate_for_write(address: usize, bytes: usize) -> bool {
    #[cfg(target_os = "linux")]
    {
        advise_pages_inside(address, bytes, libc::MADV_POPULATE_WRITE)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (address, bytes);
        false
    }
}

/// `madvise(advice)` over the whole 4 KiB pages inside the `bytes` at
/// `address` (none: nothing asked, true). Returns whether the kernel did
/// it. For the advice above only: each changes how the kernel maps the
/// pages (what a fork copies, when they are faulted in), never what they
/// hold, so the caller's memory stays valid whatever the answer.
#[cfg(target_os = "linux")]
fn advise_pages_inside(address: usize, bytes: usize, advice: libc::c_int) -> bool {
    const PAGE: usize = 4096;
    let aligned = address.next_multiple_of(PAGE);
    let end = address.saturating_add(bytes);
    let aligned_end = end - end % PAGE;
    if aligned_end <= aligned {
        return true;
    }
    // SAFETY: the range lies inside memory the caller owns (see above);
    // MADV_DONTFORK and MADV_POPULATE_WRITE leave its contents as they are.
    #[allow(unsafe_code)]
    let result =
        unsafe { libc::madvise(aligned as *mut libc::c_void, aligned_end - aligned, advice) };
    result == 0
}

/// Bytes of a transparent huge page (x86-64 and most Linux targets).
const HUGE_PAGE_BYTES: usize = 2 << 20;
/// 4 KiB pages in a huge page.
const PAGES_PER_HUGE_PAGE: usize = HUGE_PAGE_BYTES / 4096;
/// The fewest 4 KiB pages of a huge page's range that must be in memory
/// for it to be collapsed: a collapse fills the rest, so a sparse range
/// (a table just allocated, a heap's top) is left as it is.
const COLLAPSE_PAGES_PRESENT_MIN: usize = PAGES_PER_HUGE_PAGE * 7 / 8;
/// Time in the kernel's collapsing between two pauses (and looks at
/// `keep_going`): a few huge pages copied.
const COLLAPSE_BUSY_STEP: std::time::Duration = std::time::Duration::from_millis(5);

/// What [`collapse_to_huge_pages`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Collapsed {
    /// Bytes of anonymous memory found in 4 KiB pages.
    pub(crate) small_bytes: u64,
    /// Huge pages asked for (one `madvise` each): the huge-page ranges
    /// with at least [`COLLAPSE_PAGES_PRESENT_MIN`] pages in memory.
    pub(crate) asked: u64,
    /// Of them, the ones the kernel refused (unmapped meanwhile, or no
    /// huge page to be had).
    pub(crate) refused: u64,
    /// Whether it stopped early because `keep_going` said so.
    pub(crate) interrupted: bool,
}

/// Puts the engine's anonymous memory that is mapped in 4 KiB pages on
/// transparent huge pages (Linux `MADV_COLLAPSE`, 6.1 and later; elsewhere,
/// or where the kernel refuses, nothing changes), a huge page at a time,
/// with `pause` after every [`COLLAPSE_BUSY_STEP`] of the kernel's work, as
/// long as `keep_going` says so. Only huge-page ranges that are nearly all in
/// memory already are collapsed, so the resident size grows by at most an
/// eighth of what is collapsed.
///
/// Why: a fork copies the page tables of the engine's memory, one entry
/// per 4 KiB page but one per 2 MiB huge page, and that copy is the shards'
/// whole pause at a checkpoint. The allocator's heaps fault in 4 KiB pages
/// (on huge pages at fault, a table that grows would fault in 2 MiB, zeroed,
/// at each first write: seconds of stalls at a table's growth, measured);
/// and while a checkpoint's process shares the memory, the engine's first
/// write to a huge page copies 4 KiB and leaves the rest of it in 4 KiB
/// pages for good. Collapsing on a thread that holds no shard, between
/// checkpoints, keeps the memory a fork meets on huge pages. Each huge page
/// is a copy of 2 MiB by the kernel, during which a page fault of the
/// engine's in that mapping waits (not the other threads, not the other
/// mappings).
pub(crate) fn collapse_to_huge_pages(
    pause: std::time::Duration,
    keep_going: &dyn Fn() -> bool,
) -> Collapsed {
    let mut collapsed = Collapsed::default();
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::FileExt;
        let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
            return collapsed;
        };
        let Ok(pagemap) = std::fs::File::open("/proc/self/pagemap") else {
            return collapsed;
        };
        let ranges = small_page_ranges(&smaps);
        collapsed.small_bytes = ranges.iter().map(|range| range.small_bytes).sum();
        let mut entries = [0u8; PAGES_PER_HUGE_PAGE * 8];
        let mut busy = std::time::Duration::ZERO;
        for range in ranges {
            let mut page = range.start.next_multiple_of(HUGE_PAGE_BYTES);
            while page + HUGE_PAGE_BYTES <= range.end {
                let address = page;
                page += HUGE_PAGE_BYTES;
                // One 64-bit entry per 4 KiB page; bit 63: in memory.
                let offset = (address / 4096 * 8) as u64;
                if pagemap.read_exact_at(&mut entries, offset).is_err() {
                    continue;
                }
                let present = entries
                    .chunks_exact(8)
                    .filter(|entry| entry[7] & 0x80 != 0)
                    .count();
                if present < COLLAPSE_PAGES_PRESENT_MIN {
                    continue;
                }
                if busy >= COLLAPSE_BUSY_STEP {
                    busy = std::time::Duration::ZERO;
                    std::thread::sleep(pause);
                    if !keep_going() {
                        collapsed.interrupted = true;
                        return collapsed;
                    }
                }
                let asked_at = std::time::Instant::now();
                // SAFETY: MADV_COLLAPSE changes how the kernel maps the
                // pages of the range (one huge page instead of 512 small
                // ones, the contents copied), never what they hold, so any
                // memory of this process stays valid whatever the answer;
                // a range unmapped since smaps was read is refused.
                #[allow(unsafe_code)]
                let result = unsafe {
                    libc::madvise(
                        address as *mut libc::c_void,
                        HUGE_PAGE_BYTES,
                        libc::MADV_COLLAPSE,
                    )
                };
                busy += asked_at.elapsed();
                collapsed.asked += 1;
                if result != 0 {
                    collapsed.refused += 1;
                }
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (pause, keep_going);
    collapsed
}

/// A mapping of anonymous memory with memory in 4 KiB pages, read from
/// `/proc/self/smaps`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct SmallPageRange {
    start: usize,
    end: usize,
    /// Anonymous bytes in memory not in huge pages.
    small_bytes: u64,
}

/// The mappings of `smaps` (the text of `/proc/PID/smaps`) of private,
/// writable, anonymous memory (no file, no name but `[heap]`) with at least
/// a huge page's worth in 4 KiB pages, leaving out those asked never to be
/// on huge pages (`nh`) or left out of forks (`dd`: a fork copies nothing
/// of them).
fn small_page_ranges(smaps: &str) -> Vec<SmallPageRange> {
    #[derive(Default)]
    struct Mapping {
        start: usize,
        end: usize,
        candidate: bool,
        anonymous_kib: u64,
        huge_kib: u64,
    }
    fn finish(mapping: &Mapping, ranges: &mut Vec<SmallPageRange>) {
        let small_bytes = mapping.anonymous_kib.saturating_sub(mapping.huge_kib) * 1024;
        if mapping.candidate && small_bytes >= HUGE_PAGE_BYTES as u64 {
            ranges.push(SmallPageRange {
                start: mapping.start,
                end: mapping.end,
                small_bytes,
            });
        }
    }
    let mut ranges = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-') {
            let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            ) else {
                continue;
            };
            if let Some(mapping) = current.take() {
                finish(&mapping, &mut ranges);
            }
            // perms, offset, device, inode, then a name for files and the
            // named kernel mappings ([stack], [vdso]).
            let permissions = fields.next();
            let inode = fields.nth(2);
            let name = fields.next();
            current = Some(Mapping {
                start,
                end,
                candidate: permissions == Some("rw-p")
                    && inode == Some("0")
                    && matches!(name, None | Some("[heap]")),
                ..Mapping::default()
            });
            continue;
        }
        let Some(mapping) = current.as_mut() else {
            continue;
        };
        match first {
            "Anonymous:" | "AnonHugePages:" => {
                let kib = fields.next().and_then(|value| value.parse::<u64>().ok());
                let kib = kib.unwrap_or(0);
                if first == "Anonymous:" {
                    mapping.anonymous_kib = kib;
                } else {
                    mapping.huge_kib = kib;
                }
            }
            "VmFlags:" if fields.any(|flag| flag == "nh" || flag == "dd") => {
                mapping.candidate = false;
            }
            _ => {}
        }
    }
    if let Some(mapping) = current {
        finish(&mapping, &mut ranges);
    }
    ranges
}

/// The C allocator's thresholds for a server (glibc only; elsewhere
/// nothing changes), set once before the engine starts: blocks up to 32
/// MiB come from the allocator's heaps rather than a mapping of their own,
/// a heap keeps up to 64 MiB free at its top instead of handing it back to
/// the kernel, and a heap is made readable and writable 64 MiB at a time
/// (a thread's heap is at most 64 MiB: it is opened whole when created).
///
/// Why: every batch hands buffers from one thread to another (a segment's
/// steps, its results, its movements) and frees them there. With glibc's
/// defaults, which it adjusts as it goes, a shard's heap gave those pages
/// back after a batch (the free memory at its top passed the trim
/// threshold) and faulted them in, zeroed, for the next one: in a profile
/// of the wallet load test the shard spent about a quarter of its time in
/// page faults and heap growth (`sysmalloc`, `mprotect`, `clear_page`),
/// most of it on the heap top, not on new state (docs/benchmarks.md,
/// "The wallet mix: the shard's and the router's cost per command"). A
/// thread's heap otherwise grows one `mprotect` call per page as new state
/// fills it (a payer's first budget state). The two thresholds are the
/// values glibc's own adjustment reaches at most, fixed from the start;
/// the top pad opens address space only (a page takes memory once it is
/// written). The cost
/// is memory a heap keeps once it held it: at most 64 MiB free per heap
/// (glibc keeps one heap per thread that allocates, up to 8 per core).
pub fn hold_allocator_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD_BYTES: libc::c_int = 64 << 20;
        const TOP_PAD_BYTES: libc::c_int = 64 << 20;
        for (parameter, value) in [
            (libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES),
            (libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
            (libc::M_TOP_PAD, TOP_PAD_BYTES),
        ] {
            // SAFETY: mallopt changes glibc's tuning parameters only (the
            // values are within its documented ranges); every block
            // allocated before or after stays valid. It takes the
            // allocator's own lock, so threads already running are safe.
            #[allow(unsafe_code)]
            let done = unsafe { libc::mallopt(parameter, value) };
            if done != 1 {
                tracing::debug!(
                    parameter,
                    value,
                    "the allocator refused a threshold (mallopt)"
                );
            }
        }
    }
}

/// Drops `value` on a detached thread of its own. Freeing a state of
/// gigabytes (millions of allocations) takes seconds (at 2M accounts, most
/// of a clean stop's 10 s, measured with perf); a stop need not wait for
/// it, and if the process ends first the kernel takes the memory back at
/// once. If no thread can be started, it is dropped here.
pub(crate) fn drop_in_background<T: Send + 'static>(value: T) {
    let _ = std::thread::Builder::new()
        .name("payrail-reclaim".into())
        .spawn(move || drop(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Anonymous memory partly in huge pages, one mapping asked never to
    /// be on huge pages, one left out of forks, one read-only, one of a
    /// file and the stack.
    const SMAPS: &str = "\
7f0000000000-7f0080000000 rw-p 00000000 00:00 0 
Size:            2097152 kB
Rss:             1048576 kB
Anonymous:       1048576 kB
AnonHugePages:    786432 kB
VmFlags: rd wr mr mw me ac hg 
7f0080000000-7f0080400000 rw-p 00000000 00:00 0 
Anonymous:          4096 kB
AnonHugePages:      4096 kB
7f0080400000-7f0090400000 rw-p 00000000 00:00 0 
Anonymous:        262144 kB
AnonHugePages:         0 kB
VmFlags: rd wr mr mw me ac nh 
7f0090400000-7f00a0400000 rw-p 00000000 00:00 0 
Anonymous:        262144 kB
AnonHugePages:         0 kB
VmFlags: rd wr mr mw me dd ac 
7f00a0400000-7f00a0800000 r--p 00000000 00:00 0 
Anonymous:          4096 kB
AnonHugePages:         0 kB
7f00b0000000-7f00b0800000 rw-p 00000000 fd:01 1234   /usr/lib/librocksdb.so.7
Anonymous:          8192 kB
AnonHugePages:         0 kB
7f00c0000000-7f00c1000000 rw-p 00000000 00:00 0 
Anonymous:         16384 kB
AnonHugePages:         0 kB
VmFlags: rd wr mr mw me ac 
7ffd00000000-7ffd00800000 rw-p 00000000 00:00 0      [stack]
Anonymous:          8192 kB
AnonHugePages:         0 kB
";

    #[test]
    fn only_writable_anonymous_memory_in_small_pages_is_collapsed() {
        assert_eq!(
            small_page_ranges(SMAPS),
            vec![
                SmallPageRange {
                    start: 0x7f00_0000_0000,
                    end: 0x7f00_8000_0000,
                    small_bytes: (1_048_576 - 786_432) * 1024,
                },
                SmallPageRange {
                    start: 0x7f00_c000_0000,
                    end: 0x7f00_c100_0000,
                    small_bytes: 16 << 20,
                },
            ]
        );
    }

    /// The `field` (`Anonymous:`, `AnonHugePages:`) of the mapping that
    /// holds `address`, in bytes.
    #[cfg(target_os = "linux")]
    fn mapping_bytes(address: usize, field: &str) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
        let mut inside = false;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((start, end)) = first.split_once('-') {
                if let (Ok(start), Ok(end)) = (
                    usize::from_str_radix(start, 16),
                    usize::from_str_radix(end, 16),
                ) {
                    inside = (start..end).contains(&address);
                    continue;
                }
            }
            if inside && first == field {
                let kib = line.split_whitespace().nth(1).unwrap_or("0");
                return kib.parse::<u64>().unwrap_or(0) * 1024;
            }
        }
        0
    }

    /// `bytes` of zeroed memory (a mapping of its own: the C allocator maps
    /// blocks this large apart) and the offset of its first huge-page
    /// boundary.
    #[cfg(target_os = "linux")]
    fn aligned(bytes: usize) -> (Vec<u8>, usize) {
        let memory = vec![0u8; bytes + HUGE_PAGE_BYTES];
        let offset = memory.as_ptr().align_offset(HUGE_PAGE_BYTES);
        (memory, offset)
    }

    /// 4 KiB pages in memory among the `bytes` at `address`.
    #[cfg(target_os = "linux")]
    fn present_pages(address: usize, bytes: usize) -> usize {
        use std::os::unix::fs::FileExt;
        let pagemap = std::fs::File::open("/proc/self/pagemap").unwrap();
        let mut entries = vec![0u8; bytes / 4096 * 8];
        pagemap
            .read_exact_at(&mut entries, (address / 4096 * 8) as u64)
            .unwrap();
        entries
            .chunks_exact(8)
            .filter(|entry| entry[7] & 0x80 != 0)
            .count()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn memory_in_small_pages_is_collapsed_keeping_its_contents_and_sparse_memory_is_left() {
        const BYTES: usize = 16 << 20;
        // Written whole, in 4 KiB pages as the allocator's heaps are.
        let (mut dense, dense_offset) = aligned(BYTES);
        for (index, byte) in dense[dense_offset..][..BYTES].iter_mut().enumerate() {
            *byte = (index % 251) as u8;
        }
        let dense_address = dense.as_ptr() as usize + dense_offset;
        // One 4 KiB page written in each huge page's range.
        let (mut sparse, sparse_offset) = aligned(BYTES);
        for page in 0..BYTES / HUGE_PAGE_BYTES {
            sparse[sparse_offset + page * HUGE_PAGE_BYTES] = 1;
        }
        let sparse_address = sparse.as_ptr() as usize + sparse_offset;
        assert_eq!(
            present_pages(sparse_address, BYTES),
            BYTES / HUGE_PAGE_BYTES
        );

        let collapsed = collapse_to_huge_pages(std::time::Duration::ZERO, &|| true);

        assert!(
            dense[dense_offset..][..BYTES]
                .iter()
                .enumerate()
                .all(|(index, &byte)| byte == (index % 251) as u8),
            "a collapse changed the memory's contents"
        );
        assert!(
            collapsed.asked >= (BYTES / HUGE_PAGE_BYTES) as u64,
            "{collapsed:?}"
        );
        // Unless the kernel had no huge page to give for any of them.
        if collapsed.refused < collapsed.asked {
            assert!(
                mapping_bytes(dense_address, "AnonHugePages:") > 0,
                "{collapsed:?}"
            );
        }
        assert_eq!(
            present_pages(sparse_address, BYTES),
            BYTES / HUGE_PAGE_BYTES,
            "a sparse range was filled"
        );
        assert!(sparse.iter().all(|&byte| byte <= 1));
    }
}
