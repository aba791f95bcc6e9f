//! DHCP options (RFC 2132): iteration over the option areas, a one-pass index of the options
//! the server acts on, option overload (option 52), long options split over several
//! instances (RFC 3396), and the one encoder of options.
//!
//! Reading never copies: values are slices of the received message. Only an option that the
//! client split over several instances needs joining, into a buffer the caller provides.

use super::{Error, Result};
use core::net::Ipv4Addr;

/// Option codes (RFC 2132 unless noted).
pub mod code {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const TIME_OFFSET: u8 = 2;
    pub const ROUTER: u8 = 3;
    pub const DNS_SERVERS: u8 = 6;
    pub const HOST_NAME: u8 = 12;
    pub const DOMAIN_NAME: u8 = 15;
    pub const INTERFACE_MTU: u8 = 26;
    pub const BROADCAST_ADDRESS: u8 = 28;
    pub const NTP_SERVERS: u8 = 42;
    pub const VENDOR_SPECIFIC: u8 = 43;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    pub const MESSAGE: u8 = 56;
    pub const MAX_MESSAGE_SIZE: u8 = 57;
    pub const RENEWAL_TIME: u8 = 58;
    pub const REBINDING_TIME: u8 = 59;
    pub const VENDOR_CLASS_ID: u8 = 60;
    pub const CLIENT_ID: u8 = 61;
    /// RFC 3004.
    pub const USER_CLASS: u8 = 77;
    /// RFC 4388: seconds since the client's last transaction with the server.
    pub const CLIENT_LAST_TRANSACTION_TIME: u8 = 91;
    /// RFC 4388: the addresses bound to the client.
    pub const ASSOCIATED_IP: u8 = 92;
    /// RFC 3925: vendor-identifying vendor-specific information.
    pub const VENDOR_IDENTIFYING_INFO: u8 = 125;
    /// RFC 4039.
    pub const RAPID_COMMIT: u8 = 80;
    /// RFC 3046.
    pub const RELAY_AGENT_INFO: u8 = 82;
    /// RFC 3011.
    pub const SUBNET_SELECTION: u8 = 118;
    pub const END: u8 = 255;
}

/// Sub-options of the relay agent information option (82).
pub mod relay {
    /// RFC 3046.
    pub const CIRCUIT_ID: u8 = 1;
    /// RFC 3046.
    pub const REMOTE_ID: u8 = 2;
    /// RFC 3527: the subnet the client is on, when giaddr is not on it.
    pub const LINK_SELECTION: u8 = 5;
}

/// Option 53, DHCP message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Discover = 1,
    Offer = 2,
    Request = 3,
    Decline = 4,
    Ack = 5,
    Nak = 6,
    Release = 7,
    Inform = 8,
    /// RFC 4388 §6.1: a querier asks about a lease.
    LeaseQuery = 10,
    /// RFC 4388: the address is ours but not leased.
    LeaseUnassigned = 11,
    /// RFC 4388: nothing known of the address or client.
    LeaseUnknown = 12,
    /// RFC 4388: the address is leased; the reply says to whom and until when.
    LeaseActive = 13,
}

impl MessageType {
    pub fn from_u8(v: u8) -> Option<MessageType> {
        Some(match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            10 => MessageType::LeaseQuery,
            11 => MessageType::LeaseUnassigned,
            12 => MessageType::LeaseUnknown,
            13 => MessageType::LeaseActive,
            _ => return None,
        })
    }
}

/// Option 52 values: which header fields carry more options.
pub mod overload {
    pub const FILE: u8 = 1;
    pub const SNAME: u8 = 2;
    pub const BOTH: u8 = 3;
}

/// Bytes option data of `data_len` bytes takes on the wire: split into instances of at most
/// 255 bytes (RFC 3396), each with its code and length; an empty value is one instance.
pub const fn encoded_len(data_len: usize) -> usize {
    if data_len == 0 {
        2
    } else {
        data_len + 2 * data_len.div_ceil(255)
    }
}

/// Writes option `code` with `data` at the start of `out`, split into 255-byte instances when
/// longer (RFC 3396); returns the bytes written, [`encoded_len`]. The one encoder of options:
/// replies use it per message and the option tables of the configuration once at start-up.
///
/// Panics if `out` is shorter than [`encoded_len`] (callers check room first).
#[inline]
pub fn encode(code: u8, data: &[u8], out: &mut [u8]) -> usize {
    if data.is_empty() {
        out[..2].copy_from_slice(&[code, 0]);
        return 2;
    }
    let mut at = 0;
    for part in data.chunks(255) {
        let end = at + 2 + part.len();
        let dst = &mut out[at..end];
        dst[0] = code;
        dst[1] = part.len() as u8;
        super::copy_short(&mut dst[2..], part);
        at = end;
    }
    at
}

/// Iterates `(code, value)` over one option area, skipping PAD and stopping at END.
/// A length that runs past the area yields one `Err` and ends the iteration.
#[derive(Debug, Clone)]
pub struct OptionIter<'a> {
    area: &'a [u8],
    at: usize,
}

impl<'a> OptionIter<'a> {
    pub fn new(area: &'a [u8]) -> OptionIter<'a> {
        OptionIter { area, at: 0 }
    }
}

impl<'a> Iterator for OptionIter<'a> {
    type Item = Result<(u8, &'a [u8])>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let code = *self.area.get(self.at)?;
            match code {
                code::PAD => self.at += 1,
                code::END => {
                    self.at = self.area.len();
                    return None;
                }
                _ => {
                    let Some(&len) = self.area.get(self.at + 1) else {
                        self.at = self.area.len();
                        return Some(Err(Error::OptionOverrun));
                    };
                    let start = self.at + 2;
                    let end = start + len as usize;
                    if end > self.area.len() {
                        self.at = self.area.len();
                        return Some(Err(Error::OptionOverrun));
                    }
                    self.at = end;
                    return Some(Ok((code, &self.area[start..end])));
                }
            }
        }
    }
}

/// Value of a variable-length option: its first instance, and whether more instances follow
/// that must be joined to it (RFC 3396).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Value<'a> {
    pub first: &'a [u8],
    pub split: bool,
}

/// The options of a received message that the server acts on, found in one pass over the
/// options field and, when option 52 says so, `file` then `sname` (RFC 2131 §4.1).
///
/// Fixed-size options of the wrong length make the whole message malformed: a server that
/// guessed would risk handing out the wrong address.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    pub message_type: Option<u8>,
    pub requested_ip: Option<Ipv4Addr>,
    pub server_id: Option<Ipv4Addr>,
    pub lease_time: Option<u32>,
    pub max_message_size: Option<u16>,
    pub subnet_selection: Option<Ipv4Addr>,
    pub rapid_commit: bool,
    pub overload: u8,
    pub client_id: Option<Value<'a>>,
    pub parameter_request_list: Option<Value<'a>>,
    pub relay_agent_info: Option<Value<'a>>,
    /// Vendor class identifier (60), its first instance.
    pub vendor_class: Option<&'a [u8]>,
    /// User class (77), its first instance.
    pub user_class: Option<&'a [u8]>,
    /// Areas holding options, in reading order: options field, then `file`, then `sname`.
    areas: [&'a [u8]; 3],
}

#[inline]
fn ip4(code: u8, v: &[u8]) -> Result<Ipv4Addr> {
    match *v {
        [a, b, c, d] => Ok(Ipv4Addr::new(a, b, c, d)),
        _ => Err(Error::BadOptionLength(code)),
    }
}

#[inline]
fn note<'a>(slot: &mut Option<Value<'a>>, v: &'a [u8]) {
    match slot {
        None => *slot = Some(Value { first: v, split: false }),
        Some(s) => s.split = true,
    }
}

impl<'a> Options<'a> {
    /// Reads the options of a message: `options` is the field after the magic cookie; `file`
    /// and `sname` are read only if option 52 asks for it.
    pub fn parse(options: &'a [u8], file: &'a [u8], sname: &'a [u8]) -> Result<Options<'a>> {
        let mut o = Options::default();
        o.read(options, file, sname)?;
        Ok(o)
    }

    /// [`Options::parse`] into `self`, which must be [`Options::default`]: the engine reads
    /// a message's options in place, in one pass, with no copy of this index.
    #[inline]
    pub fn read(&mut self, options: &'a [u8], file: &'a [u8], sname: &'a [u8]) -> Result<()> {
        self.areas[0] = options;
        self.scan(options, true)?;
        if self.overload & overload::FILE != 0 {
            self.areas[1] = file;
            self.scan(file, false)?;
        }
        if self.overload & overload::SNAME != 0 {
            self.areas[2] = sname;
            self.scan(sname, false)?;
        }
        Ok(())
    }

    #[inline]
    fn scan(&mut self, area: &'a [u8], options_field: bool) -> Result<()> {
        for item in OptionIter::new(area) {
            let (code, v) = item?;
            match code {
                code::MESSAGE_TYPE => {
                    if v.len() != 1 {
                        return Err(Error::BadOptionLength(code));
                    }
                    self.message_type.get_or_insert(v[0]);
                }
                code::REQUESTED_IP => {
                    let ip = ip4(code, v)?;
                    self.requested_ip.get_or_insert(ip);
                }
                code::SERVER_ID => {
                    let ip = ip4(code, v)?;
                    self.server_id.get_or_insert(ip);
                }
                code::SUBNET_SELECTION => {
                    let ip = ip4(code, v)?;
                    self.subnet_selection.get_or_insert(ip);
                }
                code::LEASE_TIME => match *v {
                    [a, b, c, d] => {
                        self.lease_time.get_or_insert(u32::from_be_bytes([a, b, c, d]));
                    }
                    _ => return Err(Error::BadOptionLength(code)),
                },
                code::MAX_MESSAGE_SIZE => match *v {
                    [a, b] => {
                        self.max_message_size.get_or_insert(u16::from_be_bytes([a, b]));
                    }
                    _ => return Err(Error::BadOptionLength(code)),
                },
                // Option 52 counts only in the options field (RFC 2132 §9.3): one in `file` or
                // `sname` must not change which areas are read.
                code::OVERLOAD if !options_field => {}
                // Like every option the server acts on: each instance is checked, the first
                // counts (a later one must not change which areas are read).
                code::OVERLOAD => match *v {
                    [x @ 1..=3] if self.overload == 0 => self.overload = x,
                    [1..=3] => {}
                    [_] => return Err(Error::Malformed("option 52 value outside 1..=3")),
                    _ => return Err(Error::BadOptionLength(code)),
                },
                code::RAPID_COMMIT => self.rapid_commit = true,
                code::CLIENT_ID => note(&mut self.client_id, v),
                code::PARAMETER_REQUEST_LIST => note(&mut self.parameter_request_list, v),
                code::RELAY_AGENT_INFO => note(&mut self.relay_agent_info, v),
                code::VENDOR_CLASS_ID => {
                    self.vendor_class.get_or_insert(v);
                }
                code::USER_CLASS => {
                    self.user_class.get_or_insert(v);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The DHCP message type, if present and known.
    pub fn message_type(&self) -> Option<MessageType> {
        self.message_type.and_then(MessageType::from_u8)
    }

    /// The whole value of `code`: the single instance as is, or all instances joined into
    /// `scratch` (RFC 3396). `None` if absent; `Err(NoRoom)` if `scratch` is too small.
    pub fn value<'s>(&self, code: u8, scratch: &'s mut [u8]) -> Result<Option<&'s [u8]>>
    where
        'a: 's,
    {
        let v = match code {
            code::CLIENT_ID => self.client_id,
            code::PARAMETER_REQUEST_LIST => self.parameter_request_list,
            code::RELAY_AGENT_INFO => self.relay_agent_info,
            _ => return self.concat(code, scratch),
        };
        match v {
            None => Ok(None),
            Some(Value { first, split: false }) => Ok(Some(first)),
            Some(_) => self.concat(code, scratch),
        }
    }

    /// Joins every instance of `code` across the option areas into `scratch`.
    pub fn concat<'s>(&self, code: u8, scratch: &'s mut [u8]) -> Result<Option<&'s [u8]>> {
        let mut len = 0;
        let mut found = false;
        for area in self.areas {
            for item in OptionIter::new(area) {
                let (c, v) = item?;
                if c == code {
                    found = true;
                    let end = len + v.len();
                    scratch.get_mut(len..end).ok_or(Error::NoRoom)?.copy_from_slice(v);
                    len = end;
                }
            }
        }
        Ok(found.then_some(&scratch[..len]))
    }

    /// Every `(code, value)` instance in reading order (for tools and tests; the server uses
    /// the index above).
    pub fn iter(&self) -> impl Iterator<Item = Result<(u8, &'a [u8])>> + '_ {
        self.areas.into_iter().flat_map(OptionIter::new)
    }
}

/// Iterates the sub-options of a relay agent information option (82), RFC 3046 §2.0.
pub fn relay_sub_options(value: &[u8]) -> OptionIter<'_> {
    // Sub-options share the option encoding; RFC 3046 has no PAD/END, but code 0 and 255 are
    // unassigned there, so treating them as pad/end is harmless.
    OptionIter::new(value)
}

/// Sub-option `code` of an option 82 value (RFC 3046: 1 circuit id, 2 remote id), if present.
pub fn relay_sub_option(relay_info: &[u8], code: u8) -> Option<&[u8]> {
    relay_sub_options(relay_info).find_map(|item| match item {
        Ok((c, v)) if c == code => Some(v),
        _ => None,
    })
}

/// The link selection sub-option (RFC 3527) of an option 82 value, if present and valid.
pub fn link_selection(relay_info: &[u8]) -> Option<Ipv4Addr> {
    relay_sub_options(relay_info).find_map(|item| match item {
        Ok((relay::LINK_SELECTION, v)) => ip4(relay::LINK_SELECTION, v).ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_splits_long_values() {
        let mut out = [0u8; 600];
        assert_eq!(encode(80, &[], &mut out), 2);
        assert_eq!(out[..2], [80, 0]);
        let data: Vec<u8> = (0..300).map(|i| i as u8).collect();
        let n = encode(43, &data, &mut out);
        assert_eq!(n, encoded_len(300));
        assert_eq!((out[0], out[1], out[257], out[258]), (43, 255, 43, 45));
        let parts: Vec<u8> = OptionIter::new(&out[..n]).flat_map(|o| o.unwrap().1.to_vec()).collect();
        assert_eq!(parts, data);
    }

    #[test]
    fn pad_and_end_are_respected() {
        let area = [0, 0, 53, 1, 1, 0, 255, 53, 1, 3];
        let o = Options::parse(&area, &[], &[]).unwrap();
        assert_eq!(o.message_type(), Some(MessageType::Discover));
    }

    #[test]
    fn overrun_is_an_error() {
        assert_eq!(Options::parse(&[53, 1, 1, 61, 9, 1], &[], &[]).unwrap_err(), Error::OptionOverrun);
        assert_eq!(Options::parse(&[53], &[], &[]).unwrap_err(), Error::OptionOverrun);
    }

    #[test]
    fn wrong_length_fixed_option_is_malformed() {
        assert_eq!(Options::parse(&[50, 3, 1, 2, 3], &[], &[]).unwrap_err(), Error::BadOptionLength(50));
    }

    #[test]
    fn overload_reads_file_then_sname_and_joins_split_options() {
        let options = [53, 1, 3, 52, 1, 3, 61, 2, 1, 2, 255];
        let mut file = [0u8; 128];
        file[..5].copy_from_slice(&[61, 2, 3, 4, 255]);
        let mut sname = [0u8; 64];
        sname[..8].copy_from_slice(&[54, 4, 100, 64, 0, 1, 61, 1]);
        sname[8..10].copy_from_slice(&[5, 255]);
        let o = Options::parse(&options, &file, &sname).unwrap();
        assert_eq!(o.server_id, Some(Ipv4Addr::new(100, 64, 0, 1)));
        assert!(o.client_id.unwrap().split);
        let mut scratch = [0u8; 16];
        assert_eq!(o.value(code::CLIENT_ID, &mut scratch).unwrap(), Some(&[1, 2, 3, 4, 5][..]));
    }

    #[test]
    fn overload_inside_file_is_ignored() {
        let mut file = [0u8; 128];
        file[..4].copy_from_slice(&[52, 1, 1, 255]);
        let o = Options::parse(&[53, 1, 1, 52, 1, 3, 255], &file, &[54, 4, 100, 64, 0, 1, 255]).unwrap();
        assert_eq!(o.overload, 3);
        assert_eq!(o.server_id, Some(Ipv4Addr::new(100, 64, 0, 1)));
        file[..4].copy_from_slice(&[52, 1, 2, 255]);
        let o = Options::parse(&[53, 1, 1, 52, 1, 1, 255], &file, &[54, 4, 100, 64, 0, 1, 255]).unwrap();
        assert_eq!((o.overload, o.server_id), (1, None));
        assert!(matches!(Options::parse(&[52, 1, 0], &[], &[]), Err(Error::Malformed(_))));
    }

    #[test]
    fn only_the_first_overload_counts() {
        // Before: the last option 52 won, so a second one changed which areas were read.
        let file = [54, 4, 100, 64, 0, 1, 255];
        let sname = [54, 4, 100, 64, 0, 2, 255];
        let o = Options::parse(&[53, 1, 1, 52, 1, 2, 52, 1, 1, 255], &file, &sname).unwrap();
        assert_eq!((o.overload, o.server_id), (2, Some(Ipv4Addr::new(100, 64, 0, 2))));
        // Every instance is still checked, as for the other fixed-size options.
        assert!(matches!(
            Options::parse(&[53, 1, 1, 52, 1, 1, 52, 1, 9, 255], &file, &sname),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn sname_is_not_read_without_overload() {
        let o = Options::parse(&[53, 1, 1, 255], &[], &[54, 4, 1, 2, 3, 4]).unwrap();
        assert_eq!(o.server_id, None);
    }

    #[test]
    fn link_selection_sub_option() {
        let v = [1, 2, b'a', b'b', 5, 4, 100, 64, 1, 0];
        assert_eq!(link_selection(&v), Some(Ipv4Addr::new(100, 64, 1, 0)));
        assert_eq!(link_selection(&[1, 2, b'a', b'b']), None);
    }
}
