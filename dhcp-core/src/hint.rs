//! CPU hints for the packet path: they change no state and never fault, so both the sans-I/O
//! core and the I/O layer use them.
//!
//! Must never: be needed for correctness (a hint may be dropped on another architecture).

/// Asks the CPU to start loading the cache line that holds `p`. Any address will do: a
/// prefetch reads nothing architecturally and never faults.
#[inline(always)]
pub fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: SSE is part of x86_64; the prefetch instruction has no architectural effect,
    // whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
