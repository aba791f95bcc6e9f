//! The messages a DHCP client (or a relay agent in front of it) sends, written into a caller's
//! buffer. Used by the load generator, the demo, benchmarks and tests; the server never is.

use crate::wire::dhcp::{DhcpWriter, Op};
use crate::wire::options::{code, MessageType};
use crate::wire::Result;
use core::net::Ipv4Addr;

/// Fields of one client message. Options are written in this order: 53, 61, `options`, 55, 82.
#[derive(Debug, Clone, Copy)]
pub struct ClientMsg<'a> {
    pub mac: [u8; 6],
    pub xid: u32,
    pub flags: u16,
    pub ciaddr: Ipv4Addr,
    /// Set when relayed.
    pub giaddr: Ipv4Addr,
    pub client_id: Option<&'a [u8]>,
    /// Parameter request list (55); empty for none.
    pub prl: &'a [u8],
    /// Relay agent information (82), as a relay adds it.
    pub relay_info: Option<&'a [u8]>,
    /// Other options (requested address, server id, ...).
    pub options: &'a [(u8, &'a [u8])],
}

/// The parameter request list of a typical Linux client.
pub const TYPICAL_PRL: &[u8] = &[1, 3, 6, 15, 26, 28, 42];

impl<'a> ClientMsg<'a> {
    /// A directly attached Ethernet client with the typical PRL and no other options.
    pub fn new(mac: [u8; 6], xid: u32) -> ClientMsg<'a> {
        ClientMsg {
            mac,
            xid,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            client_id: None,
            prl: TYPICAL_PRL,
            relay_info: None,
            options: &[],
        }
    }

    /// Writes the message of type `mt`; returns its length (at least 300 bytes).
    pub fn write(&self, mt: MessageType, buf: &mut [u8]) -> Result<usize> {
        let limit = buf.len();
        let mut w = DhcpWriter::new(buf, limit)?;
        {
            let mut h = w.header();
            h.set_op(Op::Request);
            h.set_htype(1);
            h.set_hlen(6);
            h.set_hops(if self.giaddr.is_unspecified() { 0 } else { 1 });
            h.set_xid(self.xid);
            h.set_flags(self.flags);
            h.set_ciaddr(self.ciaddr);
            h.set_giaddr(self.giaddr);
            let mut ch = [0u8; 16];
            ch[..6].copy_from_slice(&self.mac);
            h.set_chaddr(&ch);
        }
        w.option_u8(code::MESSAGE_TYPE, mt as u8)?;
        if let Some(id) = self.client_id {
            w.option(code::CLIENT_ID, id)?;
        }
        for (c, v) in self.options {
            w.option(*c, v)?;
        }
        if !self.prl.is_empty() {
            w.option(code::PARAMETER_REQUEST_LIST, self.prl)?;
        }
        if let Some(ri) = self.relay_info {
            w.option(code::RELAY_AGENT_INFO, ri)?;
        }
        Ok(w.finish())
    }
}

/// A MAC address for emulated client number `n` (locally administered, unicast).
pub fn mac_for(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0x00, b[0], b[1], b[2], b[3]]
}
