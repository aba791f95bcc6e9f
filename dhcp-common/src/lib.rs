//! Shared between the XDP program (`dhcp-ebpf`, `no_std`, no allocation) and user space.
//!
//! Whatever both sides must agree on bit for bit lives here, once: the hash that assigns a
//! client to a worker, and the layout of the counters the XDP program exports.
#![no_std]

/// Hash of a client's hardware address (the first six bytes of `chaddr`), used to pick the
/// worker that owns the client. Three places compute it and must agree bit for bit: the XDP
/// program (steering frames to worker sockets), the classic-BPF program that picks a worker's
/// UDP socket among `SO_REUSEPORT` sockets, and user space (sharding recovered leases). Classic
/// BPF has only 32-bit arithmetic, hence this form.
///
/// Multiplicative (Fibonacci) hashing of the last four bytes, which vary between clients of one
/// vendor; the top 16 bits of the product are the well-mixed ones.
#[inline(always)]
pub fn client_hash(mac: &[u8; 6]) -> u32 {
    u32::from_be_bytes([mac[2], mac[3], mac[4], mac[5]]).wrapping_mul(HASH_MULTIPLIER) >> 16
}

/// The multiplier of [`client_hash`] (2^32 / golden ratio, odd).
pub const HASH_MULTIPLIER: u32 = 0x9E37_79B1;

/// The worker (0..workers) that owns a client with this hash. `workers` must be non-zero.
#[inline(always)]
pub fn worker_for(hash: u32, workers: u32) -> u32 {
    hash % workers
}

/// Largest number of AF_XDP sockets the steering program can pick from (all queues).
pub const MAX_SOCKETS: u32 = 256;

/// Slots of the steering program's `CONFIG` array (values set by user space).
pub mod config {
    /// AF_XDP sockets bound to each receive queue; the program picks among them by client
    /// hash. Zero: no workers yet, DHCP goes to the kernel.
    pub const SOCKETS_PER_QUEUE: u32 = 0;
    /// UDP destination port to steer; zero means 67 (a server). A load generator steers the
    /// replies to its clients, port 68.
    pub const PORT: u32 = 1;
    pub const LEN: u32 = 2;
}

/// Slots of the steering program's per-CPU `COUNTERS` array.
pub mod counter {
    /// Every frame the program saw.
    pub const SEEN: u32 = 0;
    /// Not DHCP to port 67 (or headers cut short): left to the kernel.
    pub const PASSED: u32 = 1;
    /// IPv4 fragments: left to the kernel, which reassembles them.
    pub const FRAGMENT: u32 = 2;
    /// UDP to port 67 too short to hold a BOOTP header and magic cookie: dropped.
    pub const DROPPED_SHORT: u32 = 3;
    /// DHCP redirected to a worker's AF_XDP socket.
    pub const REDIRECTED: u32 = 4;
    /// DHCP, but no worker socket in the slot: left to the kernel.
    pub const NO_SOCKET: u32 = 5;
    pub const COUNT: u32 = 6;
    /// Names for logs and statistics, by slot.
    pub const NAMES: [&str; COUNT as usize] =
        ["xdp-seen", "xdp-passed", "xdp-fragment-passed", "xdp-dropped-short", "xdp-redirected", "xdp-no-socket"];
}

/// The socket slot for a frame: sockets of queue `q` occupy `q * per_queue ..`; the client hash
/// picks one of them.
#[inline(always)]
pub fn socket_slot(rx_queue: u32, per_queue: u32, hash: u32) -> u32 {
    rx_queue * per_queue + worker_for(hash, per_queue)
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
