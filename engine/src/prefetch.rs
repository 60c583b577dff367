//! Cache prefetch hints for the apply loop: `Ledger::apply` asks for the
//! memory a command will touch a few commands before it runs, so the cache
//! misses of several commands overlap instead of stalling one after another.

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
