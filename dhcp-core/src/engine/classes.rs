//! Client classes, compiled: which classes a message's client belongs to (one pass over the
//! classes, a 64-bit mask out, no allocation), the options each class gives, and the class
//! masks of pools. Must never allocate on the packet path nor read relay agent information
//! that no trusted relay vouched for (the caller passes `None` then).

use super::reply::OptionTable;
use super::{Ingress, Request, Shared};
use crate::config::{ClientClass, Config, Subnet};
use crate::wire::options::{relay, relay_sub_option};

/// Classes a client belongs to: bit `i` is class `i` of the configuration.
pub(super) type ClassMask = u64;

/// What of a message the classes look at.
pub(super) struct ClassFacts<'a> {
    pub(super) vendor_class: Option<&'a [u8]>,
    pub(super) user_class: Option<&'a [u8]>,
    /// Option 82, only from a trusted relay.
    pub(super) relay_info: Option<&'a [u8]>,
    /// `chaddr` of an Ethernet client (htype 1, hlen 6).
    pub(super) mac: Option<&'a [u8; 6]>,
}

/// The configured classes, in precedence order.
#[derive(Debug, Default)]
pub(super) struct ClassTable {
    classes: Vec<ClientClass>,
    /// Each class's options, encoded once.
    options: Vec<OptionTable>,
}

/// User class (RFC 3004): the whole value, or one of its length-prefixed instances, is `want`.
fn user_class_has(value: &[u8], want: &[u8]) -> bool {
    if value == want {
        return true;
    }
    let mut at = 0;
    while let Some(&len) = value.get(at) {
        let Some(item) = value.get(at + 1..at + 1 + len as usize) else { return false };
        if item == want {
            return true;
        }
        at += 1 + len as usize;
    }
    false
}

fn matches(c: &ClientClass, f: &ClassFacts<'_>) -> bool {
    let sub = |code| f.relay_info.and_then(|ri| relay_sub_option(ri, code));
    let prefix = |want: &Option<Vec<u8>>, got: Option<&[u8]>| match want {
        None => true,
        Some(w) => got.is_some_and(|g| g.starts_with(w)),
    };
    let equal = |want: &Option<Vec<u8>>, got: Option<&[u8]>| match want {
        None => true,
        Some(w) => got == Some(&w[..]),
    };
    prefix(&c.vendor_class, f.vendor_class)
        && c.user_class.as_ref().is_none_or(|w| f.user_class.is_some_and(|u| user_class_has(u, w)))
        && equal(&c.circuit_id, sub(relay::CIRCUIT_ID))
        && equal(&c.remote_id, sub(relay::REMOTE_ID))
        && prefix(&c.chaddr_prefix, f.mac.map(|m| &m[..]))
}

impl ClassTable {
    pub(super) fn new(cfg: &Config) -> ClassTable {
        ClassTable::of(cfg.classes.clone())
    }

    fn of(classes: Vec<ClientClass>) -> ClassTable {
        let options = classes.iter().map(|c| OptionTable::new(c.options.iter().map(|(k, v)| (*k, &v[..])))).collect();
        ClassTable { classes, options }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    /// The classes a message's client belongs to: O(classes), no allocation.
    pub(super) fn classify(&self, f: &ClassFacts<'_>) -> ClassMask {
        let mut mask = 0;
        for (i, c) in self.classes.iter().enumerate() {
            if matches(c, f) {
                mask |= 1 << i;
            }
        }
        mask
    }

    /// The mask of classes named in `names` (validated: every name exists).
    pub(super) fn mask_of(&self, names: &[String]) -> ClassMask {
        names.iter().filter_map(|n| self.classes.iter().position(|c| c.name == *n)).fold(0, |m, i| m | 1 << i)
    }

    /// Each pool's class mask for a subnet, in pool order (0: any client).
    pub(super) fn pool_masks(&self, s: &Subnet) -> Vec<ClassMask> {
        let subnet = self.mask_of(&s.classes);
        let mut masks = vec![subnet; s.pools.len()];
        for (pool, names) in &s.pool_classes {
            if let Some(m) = masks.get_mut(*pool) {
                *m = self.mask_of(names);
            }
        }
        masks
    }

    /// The option `code` of the first class in `mask` that sets it, encoded.
    pub(super) fn option(&self, mask: ClassMask, code: u8) -> Option<&[u8]> {
        self.members(mask).find_map(|t| t.get(code))
    }

    /// Every option of the classes in `mask`, encoded, in precedence order (a code may repeat:
    /// the writer keeps the first).
    pub(super) fn options(&self, mask: ClassMask) -> impl Iterator<Item = (u8, &[u8])> {
        self.members(mask).flat_map(OptionTable::iter)
    }

    /// The option tables of the classes in `mask`.
    fn members(&self, mask: ClassMask) -> impl Iterator<Item = &OptionTable> {
        self.options.iter().enumerate().filter(move |(i, _)| mask & (1 << i) != 0).map(|(_, t)| t)
    }
}

/// The classes of a message's client; option 82 counts only from a relay trusted somewhere.
pub(super) fn classes_of(sh: &Shared, ingress: &Ingress, req: &Request<'_>) -> ClassMask {
    if sh.isp.classes.is_empty() {
        return 0;
    }
    let relay_info = req.relay_info.filter(|_| sh.relay_trusted_anywhere(*ingress.src.ip()));
    let p = &req.pkt;
    let mac = (p.htype() == 1 && p.hlen() == 6).then_some(&req.mac);
    let facts = ClassFacts { vendor_class: req.opts.vendor_class, user_class: req.opts.user_class, relay_info, mac };
    sh.isp.classes.classify(&facts)
}

/// Whether a client of classes `mask` may draw on a pool kept for `pool_mask`.
pub(super) fn pool_allows(pool_mask: ClassMask, mask: ClassMask) -> bool {
    pool_mask == 0 || pool_mask & mask != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_class_matches_whole_value_or_an_instance() {
        assert!(user_class_has(b"iptv", b"iptv"));
        assert!(user_class_has(b"\x03abc\x04iptv", b"iptv"));
        assert!(!user_class_has(b"\x03abc\x09iptv", b"iptv"), "a truncated instance is not read past the end");
        assert!(!user_class_has(b"voice", b"iptv"));
    }

    #[test]
    fn every_given_field_must_match() {
        let c = ClientClass {
            name: "cpe".into(),
            vendor_class: Some(b"docsis".to_vec()),
            chaddr_prefix: Some(vec![0x00, 0x11, 0x22]),
            ..ClientClass::default()
        };
        let table = ClassTable::of(vec![c]);
        let mac = [0x00, 0x11, 0x22, 1, 2, 3];
        let other = [0x02, 0x11, 0x22, 1, 2, 3];
        let facts = |vc: &'static [u8], m| ClassFacts {
            vendor_class: Some(vc),
            user_class: None,
            relay_info: None,
            mac: Some(m),
        };
        assert_eq!(table.classify(&facts(b"docsis3.1", &mac)), 1);
        assert_eq!(table.classify(&facts(b"docsis3.1", &other)), 0);
        assert_eq!(table.classify(&facts(b"pktc", &mac)), 0);
    }
}
