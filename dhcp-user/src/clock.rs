//! The wall clock, read in one place: leases outlive the process, so the engine and the journal
//! count in seconds since the UNIX epoch (tests pass their own clock instead).

/// Wall-clock seconds since the UNIX epoch (0 if the clock is before it).
pub fn unix_now() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}
