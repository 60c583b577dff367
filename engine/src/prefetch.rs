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
