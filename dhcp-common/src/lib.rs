//! Shared between the XDP program (`dhcp-ebpf`, `no_std`, no allocation) and user space.
//!
//! Whatever both sides must agree on bit for bit lives here, once: the hash that assigns a
//! client to a worker, and the layout of the counters the XDP program exports.
#![no_std]

/// Hash of a client's hardware address (the first six bytes of `chaddr`), used to pick the
/// worker that owns the client. The XDP program steers frames with it and the user side shards
/// its lease tables with it, so both must compute exactly this.
///
/// A multiplicative (Fibonacci) hash: two instructions in eBPF, and it spreads sequential MACs
/// (as load generators and some vendors assign them) evenly.
#[inline(always)]
pub fn client_hash(mac: &[u8; 6]) -> u32 {
    let x = (mac[0] as u64) << 40
        | (mac[1] as u64) << 32
        | (mac[2] as u64) << 24
        | (mac[3] as u64) << 16
        | (mac[4] as u64) << 8
        | mac[5] as u64;
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u32
}

/// The worker (0..workers) that owns a client with this hash. `workers` must be non-zero.
#[inline(always)]
pub fn worker_for(hash: u32, workers: u32) -> u32 {
    // Multiply-shift instead of `%`: uniform for any worker count, no division.
    ((hash as u64 * workers as u64) >> 32) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_macs_spread_over_workers() {
        for workers in [2u32, 3, 4, 7, 16] {
            let mut counts = [0u32; 16];
            for i in 0..16_000u32 {
                let b = i.to_be_bytes();
                let mac = [0x02, 0, b[0], b[1], b[2], b[3]];
                counts[worker_for(client_hash(&mac), workers) as usize] += 1;
            }
            let share = 16_000 / workers;
            for &c in &counts[..workers as usize] {
                assert!(c > share * 9 / 10 && c < share * 11 / 10, "{workers}: {counts:?}");
            }
            assert!(counts[workers as usize..].iter().all(|&c| c == 0));
        }
    }
}
