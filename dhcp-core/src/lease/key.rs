//! Client identity (RFC 2131 §4.2: the client identifier option if present, else `htype` and
//! `chaddr`), packed into 12 bytes so that millions of leases stay small.

use std::hash::{BuildHasher, Hasher};

/// A client's identity in 12 bytes: a tag byte then up to 11 bytes of identity. Identities of
/// 11 bytes or less (a MAC with its type: 7 bytes, either as `chaddr` or as the usual option 61)
/// are stored whole; longer ones (DUID-based client ids) as an 88-bit hash, whose chance of a
/// collision among 10^7 clients is about 10^-13.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct ClientKey(pub [u8; 12]);

const TAG_CLIENT_ID: u8 = 0x80;
const TAG_HASHED: u8 = 0x40;
const TAG_QUARANTINE: u8 = 0x20;
/// An offer held for a client on another link than its lease (see [`ClientKey::moving`]).
const TAG_MOVING: u8 = 0x10;
const INLINE: usize = 11;

impl ClientKey {
    fn pack(tag: u8, parts: &[&[u8]]) -> ClientKey {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let mut k = [0u8; 12];
        if len <= INLINE {
            k[0] = tag | len as u8;
            let mut at = 1;
            for p in parts {
                crate::wire::copy_short(&mut k[at..at + p.len()], p);
                at += p.len();
            }
        } else {
            k[0] = tag | TAG_HASHED;
            // SipHash-2-4 with fixed keys (the `siphasher` crate, whose output is fixed by the
            // algorithm): journals written by one build are read by the next.
            let mut h = siphasher::sip128::SipHasher24::new_with_keys(0x243f_6a88_85a3_08d3, 0x1319_8a2e_0370_7344);
            for p in parts {
                h.write(p);
            }
            let out = siphasher::sip128::Hasher128::finish128(&h).as_bytes();
            k[1..].copy_from_slice(&out[..INLINE]);
        }
        ClientKey(k)
    }

    /// Identity from a client identifier option (61), whole value including its type byte.
    pub fn from_client_id(id: &[u8]) -> ClientKey {
        ClientKey::pack(TAG_CLIENT_ID, &[id])
    }

    /// Identity from `htype` and the first `hlen` bytes of `chaddr`.
    pub fn from_hardware(htype: u8, chaddr: &[u8]) -> ClientKey {
        ClientKey::pack(0, &[&[htype], chaddr])
    }

    /// Identity of an Ethernet client without a client identifier.
    pub fn from_mac(mac: &[u8; 6]) -> ClientKey {
        ClientKey::from_hardware(1, mac)
    }

    /// The placeholder owner of a declined address during its probation `generation` (see
    /// `AddressSpace::quarantine`).
    pub fn quarantine(ip: u32, generation: u16) -> ClientKey {
        let mut k = [0u8; 12];
        k[0] = TAG_QUARANTINE;
        k[1..5].copy_from_slice(&ip.to_be_bytes());
        k[5..7].copy_from_slice(&generation.to_be_bytes());
        ClientKey(k)
    }

    /// The probation generation of a quarantine key.
    pub fn quarantine_generation(&self) -> u16 {
        u16::from_be_bytes([self.0[5], self.0[6]])
    }

    /// The key of this client's offer on a link other than its lease's: a client that moves
    /// keeps its lease until it is ACKed on the new link (or the lease ends), so that nobody
    /// who knows its MAC can free its address by a DISCOVER from elsewhere.
    pub fn moving(&self) -> ClientKey {
        let mut k = *self;
        k.0[0] |= TAG_MOVING;
        k
    }

    pub fn is_moving(&self) -> bool {
        self.0[0] & TAG_MOVING != 0 && !self.is_quarantine()
    }

    /// The client's own key, from its moving offer's.
    pub fn settled(&self) -> ClientKey {
        let mut k = *self;
        k.0[0] &= !TAG_MOVING;
        k
    }

    pub fn is_client_id(&self) -> bool {
        self.0[0] & TAG_CLIENT_ID != 0
    }

    pub fn is_quarantine(&self) -> bool {
        self.0[0] == TAG_QUARANTINE
    }

    /// The identity bytes when stored whole (`None` for hashed identities).
    pub fn inline_bytes(&self) -> Option<&[u8]> {
        if self.0[0] & (TAG_HASHED | TAG_QUARANTINE) != 0 {
            None
        } else {
            Some(&self.0[1..1 + (self.0[0] & 0x0f) as usize])
        }
    }

    /// Hash for the client table, keyed per table (against crafted collisions).
    #[inline]
    pub fn table_hash(&self, state: &foldhash::fast::FixedState) -> u64 {
        state.hash_one(self.0)
    }
}

impl core::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.inline_bytes() {
            Some(_) if self.is_moving() => write!(f, "moving:{:?}", self.settled()),
            Some(b) => {
                f.write_str(if self.is_client_id() { "id:" } else { "hw:" })?;
                for (i, x) in b.iter().enumerate() {
                    write!(f, "{}{x:02x}", if i == 0 { "" } else { ":" })?;
                }
                Ok(())
            }
            None if self.is_quarantine() => write!(f, "quarantine:{:?}", &self.0[1..5]),
            _ if self.is_moving() => write!(f, "moving:{:?}", self.settled()),
            None => write!(f, "hash:{:02x?}", &self.0[1..]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_and_client_id_forms_differ_and_round_trip() {
        let mac = [2, 0, 0, 0, 0, 1];
        let hw = ClientKey::from_mac(&mac);
        let id = ClientKey::from_client_id(&[1, 2, 0, 0, 0, 0, 1]);
        assert_ne!(hw, id);
        assert_eq!(hw.inline_bytes(), Some(&[1, 2, 0, 0, 0, 0, 1][..]));
        assert_eq!(id.inline_bytes(), Some(&[1, 2, 0, 0, 0, 0, 1][..]));
        assert!(id.is_client_id() && !hw.is_client_id());
    }

    #[test]
    fn long_identities_are_hashed_and_distinct() {
        let a = ClientKey::from_client_id(&[0xff; 19]);
        let mut other = [0xff; 19];
        other[18] = 0xfe;
        let b = ClientKey::from_client_id(&other);
        assert_ne!(a, b);
        assert_eq!(a, ClientKey::from_client_id(&[0xff; 19]));
        assert_eq!(a.inline_bytes(), None);
    }
}
