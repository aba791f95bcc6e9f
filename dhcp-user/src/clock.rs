//! The wall clock, read in one place: leases outlive the process, so the engine and the journal
//! count in seconds since the UNIX epoch (tests pass their own clock instead).

/// Wall-clock seconds since the UNIX epoch (0 if the clock is before it).
pub fn unix_now() -> u32 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as u32)
}

/// The wall clock in seconds for a loop that already reads the monotonic clock each turn: the
/// wall clock is read again only every [`Coarse::PERIOD`], so a busy turn costs one clock read.
#[derive(Debug, Default)]
pub struct Coarse {
    unix: u32,
    next: Option<std::time::Instant>,
}

impl Coarse {
    /// How stale the seconds may be (the engine counts whole seconds).
    pub const PERIOD: std::time::Duration = std::time::Duration::from_millis(20);

    /// Wall-clock seconds at `at` (a monotonic reading of this turn).
    pub fn unix(&mut self, at: std::time::Instant) -> u32 {
        if self.next.is_none_or(|n| at >= n) {
            self.unix = unix_now();
            self.next = Some(at + Coarse::PERIOD);
        }
        self.unix
    }
}
