//! The lease board: what leasequery (RFC 4388) answers by address, shared by all workers.
//!
//! A worker's leases live in its own table, but a query by address lands on whichever worker
//! its querier hashes to. So each worker publishes its bound leases here: one record per pool
//! or reserved address, [`LEASE_BOARD_BYTES`] each, of atomic words under a sequence lock
//! (writers: the one worker holding the address; readers retry while a write is under way).
//! Holds the client's hardware address, client id (up to 32 bytes), relay agent information
//! (up to 56 bytes; longer values are not kept), expiry and last transaction time. Allocated
//! once at start, only when leasequery is on. Must never block a writer on a reader, allocate
//! after start, or hand out a torn record.

use crate::config::LEASE_BOARD_BYTES;
use std::sync::atomic::{fence, AtomicU64, Ordering};

const WORDS: usize = LEASE_BOARD_BYTES / 8;
const CID_WORDS: usize = 4;
const RI_WORDS: usize = 7;
/// Largest client id and relay agent information kept.
pub(super) const MAX_CID: usize = CID_WORDS * 8;
pub(super) const MAX_RI: usize = RI_WORDS * 8;
/// Reads that keep meeting writes give up (a reader must not spin for ever).
const READ_TRIES: usize = 64;

/// One address's lease as published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    /// Identity hash of the holder (`Shared::holder_hash`); 0: no lease.
    pub(super) holder: u64,
    pub(super) expires: u32,
    /// When the client last spoke to us.
    pub(super) last: u32,
    pub(super) htype: u8,
    pub(super) hlen: u8,
    pub(super) mac: [u8; 6],
    cid_len: u8,
    ri_len: u8,
    cid: [u8; MAX_CID],
    ri: [u8; MAX_RI],
}

impl Default for Entry {
    fn default() -> Entry {
        Entry {
            holder: 0,
            expires: 0,
            last: 0,
            htype: 0,
            hlen: 0,
            mac: [0; 6],
            cid_len: 0,
            ri_len: 0,
            cid: [0; MAX_CID],
            ri: [0; MAX_RI],
        }
    }
}

impl Entry {
    /// A record of a lease; client id and relay agent information are kept if they fit.
    pub(super) fn new(holder: u64, expires: u32, last: u32, hw: (u8, u8, [u8; 6])) -> Entry {
        let (htype, hlen, mac) = hw;
        Entry { holder, expires, last, htype, hlen: hlen.min(6), mac, ..Entry::default() }
    }

    pub(super) fn with_client_id(mut self, id: Option<&[u8]>) -> Entry {
        if let Some(id) = id.filter(|id| id.len() <= MAX_CID) {
            self.cid[..id.len()].copy_from_slice(id);
            self.cid_len = id.len() as u8;
        }
        self
    }

    pub(super) fn with_relay_info(mut self, ri: Option<&[u8]>) -> Entry {
        if let Some(ri) = ri.filter(|ri| ri.len() <= MAX_RI) {
            self.ri[..ri.len()].copy_from_slice(ri);
            self.ri_len = ri.len() as u8;
        }
        self
    }

    pub(super) fn client_id(&self) -> Option<&[u8]> {
        (self.cid_len > 0).then(|| &self.cid[..self.cid_len as usize])
    }

    pub(super) fn relay_info(&self) -> Option<&[u8]> {
        (self.ri_len > 0).then(|| &self.ri[..self.ri_len as usize])
    }

    fn to_words(self) -> [u64; WORDS - 1] {
        let mut w = [0u64; WORDS - 1];
        w[0] = self.holder;
        w[1] = (self.expires as u64) << 32 | self.last as u64;
        let mut hw = [0u8; 8];
        hw[..6].copy_from_slice(&self.mac);
        hw[6] = self.htype;
        hw[7] = self.hlen;
        w[2] = u64::from_le_bytes(hw);
        w[3] = (self.cid_len as u64) << 8 | self.ri_len as u64;
        for (i, c) in self.cid.chunks(8).enumerate() {
            w[4 + i] = u64::from_le_bytes(c.try_into().unwrap_or_default());
        }
        for (i, c) in self.ri.chunks(8).enumerate() {
            w[4 + CID_WORDS + i] = u64::from_le_bytes(c.try_into().unwrap_or_default());
        }
        w
    }

    fn from_words(w: &[u64; WORDS - 1]) -> Entry {
        let hw = w[2].to_le_bytes();
        let mut e = Entry {
            holder: w[0],
            expires: (w[1] >> 32) as u32,
            last: w[1] as u32,
            mac: [hw[0], hw[1], hw[2], hw[3], hw[4], hw[5]],
            htype: hw[6],
            hlen: hw[7],
            cid_len: ((w[3] >> 8) as u8).min(MAX_CID as u8),
            ri_len: (w[3] as u8).min(MAX_RI as u8),
            ..Entry::default()
        };
        for i in 0..CID_WORDS {
            e.cid[i * 8..i * 8 + 8].copy_from_slice(&w[4 + i].to_le_bytes());
        }
        for i in 0..RI_WORDS {
            e.ri[i * 8..i * 8 + 8].copy_from_slice(&w[4 + CID_WORDS + i].to_le_bytes());
        }
        e
    }
}

/// One record: a sequence word (odd while written) and the entry's words.
#[derive(Debug)]
#[repr(align(64))]
struct Slot {
    seq: AtomicU64,
    words: [AtomicU64; WORDS - 1],
}

/// The board: one slot per address, found by the caller's index.
#[derive(Debug)]
pub(super) struct LeaseBoard {
    slots: Box<[Slot]>,
}

impl LeaseBoard {
    pub(super) fn new(addresses: usize) -> LeaseBoard {
        let slots = (0..addresses)
            .map(|_| Slot { seq: AtomicU64::new(0), words: core::array::from_fn(|_| AtomicU64::new(0)) })
            .collect();
        LeaseBoard { slots }
    }

    pub(super) fn bytes(&self) -> usize {
        self.slots.len() * core::mem::size_of::<Slot>()
    }

    /// Runs `write` with the slot locked for writing (writers of one slot are the address's
    /// successive holders, so this rarely waits, and never for a reader).
    fn write(&self, index: usize, write: impl FnOnce(&Slot)) {
        let Some(slot) = self.slots.get(index) else { return };
        let mut seq = slot.seq.load(Ordering::Relaxed);
        loop {
            if seq & 1 == 1 {
                core::hint::spin_loop();
                seq = slot.seq.load(Ordering::Relaxed);
                continue;
            }
            match slot.seq.compare_exchange_weak(seq, seq + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break,
                Err(s) => seq = s,
            }
        }
        fence(Ordering::Release);
        write(slot);
        slot.seq.store(seq + 2, Ordering::Release);
    }

    /// Publishes the lease on the address at `index`.
    pub(super) fn publish(&self, index: usize, e: &Entry) {
        let words = e.to_words();
        self.write(index, |slot| {
            for (w, v) in slot.words.iter().zip(words) {
                w.store(v, Ordering::Relaxed);
            }
        });
    }

    /// Ends the published lease at `index` if `holder` holds it (0: whoever does).
    pub(super) fn clear(&self, index: usize, holder: u64) {
        self.write(index, |slot| {
            if holder == 0 || slot.words[0].load(Ordering::Relaxed) == holder {
                slot.words[0].store(0, Ordering::Relaxed);
            }
        });
    }

    /// The lease published at `index`, if any (`None` also if writes kept interfering).
    pub(super) fn read(&self, index: usize) -> Option<Entry> {
        let slot = self.slots.get(index)?;
        for _ in 0..READ_TRIES {
            let before = slot.seq.load(Ordering::Acquire);
            if before & 1 == 1 {
                core::hint::spin_loop();
                continue;
            }
            let words: [u64; WORDS - 1] = core::array::from_fn(|i| slot.words[i].load(Ordering::Relaxed));
            fence(Ordering::Acquire);
            if slot.seq.load(Ordering::Relaxed) == before {
                return (words[0] != 0).then(|| Entry::from_words(&words));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_survives_the_board_and_clear_needs_its_holder() {
        let board = LeaseBoard::new(4);
        let e = Entry::new(77, 1000, 900, (1, 6, [2, 0, 0, 0, 0, 9]))
            .with_client_id(Some(&[1, 2, 0, 0, 0, 0, 9]))
            .with_relay_info(Some(&[1, 4, b'e', b't', b'h', b'1']));
        board.publish(2, &e);
        assert_eq!(board.read(2), Some(e));
        assert_eq!(board.read(1), None);
        board.clear(2, 78);
        assert_eq!(board.read(2), Some(e), "another holder cannot end it");
        board.clear(2, 77);
        assert_eq!(board.read(2), None);
        assert_eq!(board.bytes(), 4 * LEASE_BOARD_BYTES);
    }

    #[test]
    fn values_too_long_are_not_kept() {
        let long = [7u8; MAX_RI + 1];
        let e = Entry::new(1, 2, 3, (1, 6, [0; 6])).with_relay_info(Some(&long)).with_client_id(Some(&long));
        assert_eq!((e.relay_info(), e.client_id()), (None, None));
    }

    #[test]
    fn readers_never_see_a_torn_record() {
        // Every field of entry k is derived from k: a mix of two writes would show.
        fn entry(k: u32) -> Entry {
            let b = k as u8;
            Entry::new(k as u64 | 1 << 40, k, k, (1, 6, [b; 6]))
                .with_client_id(Some(&[b; MAX_CID]))
                .with_relay_info(Some(&[b; MAX_RI]))
        }
        fn consistent(e: &Entry) -> bool {
            *e == entry(e.expires)
        }
        let board = std::sync::Arc::new(LeaseBoard::new(1));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (board, stop) = (board.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = 0u32;
                    loop {
                        let done = stop.load(Ordering::Acquire);
                        if let Some(e) = board.read(0) {
                            assert!(consistent(&e), "torn: {e:?}");
                            seen += 1;
                        }
                        if done {
                            return seen;
                        }
                    }
                })
            })
            .collect();
        for k in 1..50_000u32 {
            board.publish(0, &entry(k));
        }
        stop.store(true, Ordering::Release);
        for r in readers {
            assert!(r.join().unwrap() > 0, "each reader read the board");
        }
        assert_eq!(board.read(0), Some(entry(49_999)));
    }
}
