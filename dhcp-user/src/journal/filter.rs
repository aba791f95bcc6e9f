//! A blocked Bloom filter over the clients and addresses journal records touch: recovery and
//! compaction stream millions of snapshot records past it, and only those it may hold go to
//! the replay in memory (see [`super::replay::merge`]).
//!
//! One 64-bit word per key (four bits in it): one cache line per probe, about 16 bits per key,
//! a few percent of false positives. A false positive only sends an untouched snapshot record
//! through the replay, which gives it back unchanged; there are no false negatives. Must never
//! grow after it is built.

use super::format::Record;
use core::hash::BuildHasher;

#[derive(Debug)]
pub(super) struct Filter {
    words: Box<[u64]>,
    /// 64 minus log2 of the number of words: the top bits of a hash pick the word.
    shift: u32,
    hasher: foldhash::fast::FixedState,
}

impl Filter {
    /// A filter of every client and address `records` touch.
    pub(super) fn of(records: &[Record]) -> Filter {
        // Two keys per record, a word per key (at least one word).
        let words = (2 * records.len()).next_power_of_two().max(1);
        let mut f = Filter {
            words: vec![0u64; words].into_boxed_slice(),
            shift: 64 - words.trailing_zeros(),
            hasher: foldhash::fast::FixedState::with_seed(0x9e37_79b9_7f4a_7c15),
        };
        for r in records {
            f.add(f.client_hash(r));
            f.add(f.ip_hash(r));
        }
        f
    }

    /// False only if no record the filter was built of touches `r`'s client or address.
    #[inline]
    pub(super) fn may_touch(&self, r: &Record) -> bool {
        self.has(self.ip_hash(r)) || self.has(self.client_hash(r))
    }

    fn client_hash(&self, r: &Record) -> u64 {
        self.hasher.hash_one(r.client.0)
    }

    fn ip_hash(&self, r: &Record) -> u64 {
        // Apart from client hashes: an address and a client never share a slot by design.
        self.hasher.hash_one((r.ip, 1u8))
    }

    #[inline]
    fn slot(&self, h: u64) -> (usize, u64) {
        // The word from the top bits; four bit positions from four 6-bit slices of the rest.
        let word = if self.shift >= 64 { 0 } else { (h >> self.shift) as usize };
        let bits = (0..4).fold(0u64, |b, k| b | 1 << ((h >> (6 * k)) & 63));
        (word, bits)
    }

    fn add(&mut self, h: u64) {
        let (w, bits) = self.slot(h);
        self.words[w] |= bits;
    }

    #[inline]
    fn has(&self, h: u64) -> bool {
        let (w, bits) = self.slot(h);
        self.words[w] & bits == bits
    }
}

#[cfg(test)]
mod tests {
    use super::super::format::RecordKind;
    use super::*;
    use crate::lease::ClientKey;

    fn record(client: u32, ip: u32) -> Record {
        let c = client.to_be_bytes();
        let mac = [2, 0, c[0], c[1], c[2], c[3]];
        Record { kind: RecordKind::Bound, client: ClientKey::from_mac(&mac), mac, ip, expires: 1, steer: 0 }
    }

    #[test]
    fn holds_every_client_and_address_and_few_others() {
        let records: Vec<Record> = (0..10_000).map(|i| record(i, 1_000_000 + i)).collect();
        let f = Filter::of(&records);
        // No false negatives: by client alone, by address alone.
        assert!((0..10_000).all(|i| f.may_touch(&record(i, 7)) && f.may_touch(&record(u32::MAX - i, 1_000_000 + i))));
        let false_positives = (20_000..30_000).filter(|&i| f.may_touch(&record(i, 5_000_000 + i))).count();
        assert!(false_positives < 1_000, "{false_positives} false positives in 10,000");
        assert!(!Filter::of(&[]).may_touch(&record(1, 1)), "an empty filter holds nothing");
    }
}
