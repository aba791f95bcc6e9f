//! Per-worker counters, named after Kea's statistics where the meaning is the same, so
//! operators can graph them as they already do.

use super::{DropReason, Outcome, Silence};
use crate::wire::options::MessageType;

/// Counters of one engine. Plain integers: one worker owns them; the I/O layer sums workers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub received: u64,
    pub discover_received: u64,
    pub request_received: u64,
    pub decline_received: u64,
    pub release_received: u64,
    pub inform_received: u64,
    pub offer_sent: u64,
    pub ack_sent: u64,
    pub nak_sent: u64,
    /// Malformed messages (bad length, options, cookie).
    pub parse_failed: u64,
    /// Well-formed messages dropped (wrong op or type, missing required option).
    pub receive_drop: u64,
    /// REQUESTs naming another server.
    pub not_for_us: u64,
    /// Offers released at once because the client chose another server.
    pub offers_released_foreign: u64,
    pub offers_expired: u64,
    pub leases_expired: u64,
    pub probations_ended: u64,
    /// DISCOVERs with no free address.
    pub allocation_fail: u64,
    pub no_subnet: u64,
    pub unknown_client: u64,
}

impl Stats {
    pub(super) fn count_type(&mut self, mt: u8) {
        match MessageType::from_u8(mt) {
            Some(MessageType::Discover) => self.discover_received += 1,
            Some(MessageType::Request) => self.request_received += 1,
            Some(MessageType::Decline) => self.decline_received += 1,
            Some(MessageType::Release) => self.release_received += 1,
            Some(MessageType::Inform) => self.inform_received += 1,
            _ => {}
        }
    }

    pub(super) fn count(&mut self, o: &Outcome) {
        match o {
            Outcome::Reply(r) => match r.kind {
                MessageType::Offer => self.offer_sent += 1,
                MessageType::Nak => self.nak_sent += 1,
                _ => self.ack_sent += 1,
            },
            Outcome::Silent(Silence::ForeignServer) => self.not_for_us += 1,
            Outcome::Silent(Silence::NoAddress) => self.allocation_fail += 1,
            Outcome::Silent(Silence::NoSubnet) => self.no_subnet += 1,
            Outcome::Silent(Silence::UnknownClient) => self.unknown_client += 1,
            Outcome::Silent(_) => {}
            Outcome::Dropped(DropReason::Malformed(_)) => self.parse_failed += 1,
            Outcome::Dropped(_) => self.receive_drop += 1,
        }
    }

    /// Adds another worker's counters.
    pub fn add(&mut self, o: &Stats) {
        for (a, b) in self.fields_mut().into_iter().zip(o.fields()) {
            *a += b;
        }
    }

    /// `(name, value)` pairs in Kea's naming where one exists.
    pub fn named(&self) -> [(&'static str, u64); 19] {
        let f = self.fields();
        let names = [
            "pkt4-received",
            "pkt4-discover-received",
            "pkt4-request-received",
            "pkt4-decline-received",
            "pkt4-release-received",
            "pkt4-inform-received",
            "pkt4-offer-sent",
            "pkt4-ack-sent",
            "pkt4-nak-sent",
            "pkt4-parse-failed",
            "pkt4-receive-drop",
            "pkt4-not-for-us",
            "offers-released-foreign",
            "offers-expired",
            "reclaimed-leases",
            "declined-addresses-reclaimed",
            "v4-allocation-fail",
            "no-subnet",
            "unknown-client",
        ];
        core::array::from_fn(|i| (names[i], f[i]))
    }

    fn fields(&self) -> [u64; 19] {
        [
            self.received,
            self.discover_received,
            self.request_received,
            self.decline_received,
            self.release_received,
            self.inform_received,
            self.offer_sent,
            self.ack_sent,
            self.nak_sent,
            self.parse_failed,
            self.receive_drop,
            self.not_for_us,
            self.offers_released_foreign,
            self.offers_expired,
            self.leases_expired,
            self.probations_ended,
            self.allocation_fail,
            self.no_subnet,
            self.unknown_client,
        ]
    }

    fn fields_mut(&mut self) -> [&mut u64; 19] {
        [
            &mut self.received,
            &mut self.discover_received,
            &mut self.request_received,
            &mut self.decline_received,
            &mut self.release_received,
            &mut self.inform_received,
            &mut self.offer_sent,
            &mut self.ack_sent,
            &mut self.nak_sent,
            &mut self.parse_failed,
            &mut self.receive_drop,
            &mut self.not_for_us,
            &mut self.offers_released_foreign,
            &mut self.offers_expired,
            &mut self.leases_expired,
            &mut self.probations_ended,
            &mut self.allocation_fail,
            &mut self.no_subnet,
            &mut self.unknown_client,
        ]
    }
}
