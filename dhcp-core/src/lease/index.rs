//! The client table's index: slab indices by key hash, in open addressing with linear probing.
//! Each entry keeps 32 bits of the hash beside its slab index, so a probe compares keys only on
//! a tag match, and the entries a lookup will read are known from the hash alone: a worker
//! prefetches them for a whole batch before it handles the batch ([`Index::prefetch`],
//! [`Index::prefetch_matches`]), and the cache misses overlap instead of adding up. hashbrown's
//! table, used before, offers no way to do that.
//!
//! Deletion shifts the entries after a hole back (no tombstones), so probe lengths do not grow
//! with churn. At most three quarters full: the table doubles beyond that.
//!
//! Must never: hold a slab index twice, lose an entry when it grows or deletes, or probe
//! without end (there is always an empty entry).

/// One entry: the low 32 bits of the key's hash, and the slab index plus one (0: empty).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(C)]
struct Entry {
    tag: u32,
    slot: u32,
}

#[derive(Debug)]
pub(super) struct Index {
    entries: Box<[Entry]>,
    mask: usize,
    len: usize,
}

const MIN_ENTRIES: usize = 16;

impl Index {
    /// An index with room for `n` slab indices before it grows.
    pub(super) fn with_capacity(n: usize) -> Index {
        let entries = (n.saturating_mul(4) / 3 + 1).next_power_of_two().max(MIN_ENTRIES);
        Index { entries: vec![Entry::default(); entries].into_boxed_slice(), mask: entries - 1, len: 0 }
    }

    /// Entries allocated (for memory accounting: eight bytes each).
    pub(super) fn entries(&self) -> usize {
        self.entries.len()
    }

    #[inline]
    fn home(&self, tag: u32) -> usize {
        tag as usize & self.mask
    }

    /// Where the probe for `hash` meets an entry with its tag for which `eq` holds (`None`: an
    /// empty entry first). The one probe loop: lookups, removals and warming all walk it.
    #[inline]
    fn position(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<usize> {
        let tag = hash as u32;
        let mut i = self.home(tag);
        loop {
            let e = self.entries[i];
            if e.slot == 0 {
                return None;
            }
            if e.tag == tag && eq(e.slot - 1) {
                return Some(i);
            }
            i = (i + 1) & self.mask;
        }
    }

    /// The slab index whose entry carries `hash` and for which `eq` holds.
    #[inline]
    pub(super) fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.position(hash, eq).map(|i| self.entries[i].slot - 1)
    }

    /// Adds `slot` under `hash` (the caller knows its key is not present).
    pub(super) fn insert(&mut self, hash: u64, slot: u32) {
        if (self.len + 1) * 4 > self.entries.len() * 3 {
            self.grow();
        }
        self.place(Entry { tag: hash as u32, slot: slot + 1 });
        self.len += 1;
    }

    fn place(&mut self, e: Entry) {
        let mut i = self.home(e.tag);
        while self.entries[i].slot != 0 {
            i = (i + 1) & self.mask;
        }
        self.entries[i] = e;
    }

    fn grow(&mut self) {
        let bigger = vec![Entry::default(); self.entries.len() * 2].into_boxed_slice();
        let old = std::mem::replace(&mut self.entries, bigger);
        self.mask = self.entries.len() - 1;
        for e in old.iter().filter(|e| e.slot != 0) {
            self.place(*e);
        }
    }

    /// Removes `slot`'s entry (filed under `hash`); `false` if it has none.
    pub(super) fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let Some(i) = self.position(hash, |s| s == slot) else { return false };
        // Backward shift: an entry after the hole moves into it unless its home lies after
        // the hole (it would then be found before its home).
        let (mut hole, mut j) = (i, (i + 1) & self.mask);
        loop {
            let e = self.entries[j];
            if e.slot == 0 {
                break;
            }
            let from_home = j.wrapping_sub(self.home(e.tag)) & self.mask;
            if from_home >= (j.wrapping_sub(hole) & self.mask) {
                self.entries[hole] = e;
                hole = j;
            }
            j = (j + 1) & self.mask;
        }
        self.entries[hole] = Entry::default();
        self.len -= 1;
        true
    }

    /// First stage of a warmed lookup: the cache line where `hash`'s probe starts.
    #[inline]
    pub(super) fn prefetch(&self, hash: u64) {
        crate::hint::prefetch(&self.entries[self.home(hash as u32)]);
    }

    /// Second stage: calls `f` with each slab index whose tag matches `hash`'s (usually the
    /// one record the lookup will compare), without comparing keys.
    #[inline]
    pub(super) fn prefetch_matches(&self, hash: u64, mut f: impl FnMut(u32)) {
        self.position(hash, |slot| {
            f(slot);
            false
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts and removals against a map, with hashes crowded into few homes so that
    /// probes run long, wrap around and shift back.
    #[test]
    fn agrees_with_a_map_under_churn() {
        let mut ix = Index::with_capacity(4);
        let mut map: HashMap<u32, u64> = HashMap::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..200_000u32 {
            let r = next();
            let slot = (r >> 40) as u32 % 500;
            // Few distinct tags, many equal: the find's `eq` must tell them apart.
            let hash = (r % 127) | ((slot as u64 % 7) << 32);
            match map.get(&slot) {
                Some(&h) if r & 1 == 0 => {
                    assert!(ix.remove(h, slot));
                    map.remove(&slot);
                }
                Some(_) => {}
                None => {
                    ix.insert(hash, slot);
                    map.insert(slot, hash);
                }
            }
            if round % 997 == 0 {
                for (&s, &h) in &map {
                    assert_eq!(ix.find(h, |j| j == s), Some(s));
                }
                assert_eq!(ix.len, map.len());
                assert!(ix.len * 4 <= ix.entries.len() * 3);
            }
        }
        for (&s, &h) in &map {
            assert!(ix.remove(h, s));
            assert!(!ix.remove(h, s));
        }
        assert!(ix.entries.iter().all(|e| e.slot == 0));
    }

    #[test]
    fn prefetch_matches_reports_tag_matches_only() {
        let mut ix = Index::with_capacity(8);
        ix.insert(5, 1);
        ix.insert(5 + 16, 2);
        ix.insert(5, 3);
        let mut seen = Vec::new();
        ix.prefetch_matches(5, |s| seen.push(s));
        assert_eq!(seen, vec![1, 3]);
        ix.prefetch(5);
    }
}
