//! Per-worker counters, named after Kea's statistics where the meaning is the same, so
//! operators can graph them as they already do.
//!
//! Each counter is declared once, with its name, in the `counters!` table below; the struct,
//! the sum of workers and the named list are generated from it. Counting never allocates.

use super::{DropReason, Outcome, Silence};
use crate::wire::options::MessageType;

/// Declares a counter struct from a table of `field => "name"` lines: the plain `u64` fields
/// in order, `COUNT`, `add` and `named` (also used for [`ClusterStats`](super::ClusterStats)).
macro_rules! counters {
    ($(#[$sdoc:meta])* $struct:ident { $($(#[$doc:meta])* $field:ident => $name:literal,)* }) => {
        $(#[$sdoc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $struct {
            $($(#[$doc])* pub $field: u64,)*
        }

        impl $struct {
            /// How many counters there are.
            pub const COUNT: usize = [$($name),*].len();

            /// Adds another worker's counters.
            pub fn add(&mut self, o: &$struct) {
                $(self.$field += o.$field;)*
            }

            /// `(name, value)` pairs in Kea's naming where one exists, in declaration order.
            pub fn named(&self) -> [(&'static str, u64); $struct::COUNT] {
                [$(($name, self.$field)),*]
            }
        }
    };
}
pub(super) use counters;

counters! {
    /// Counters of one engine. Plain integers: one worker owns them; the I/O layer sums
    /// workers.
    Stats {
    received => "pkt4-received",
    discover_received => "pkt4-discover-received",
    request_received => "pkt4-request-received",
    decline_received => "pkt4-decline-received",
    release_received => "pkt4-release-received",
    inform_received => "pkt4-inform-received",
    offer_sent => "pkt4-offer-sent",
    ack_sent => "pkt4-ack-sent",
    nak_sent => "pkt4-nak-sent",
    /// Malformed messages (bad length, options, cookie).
    parse_failed => "pkt4-parse-failed",
    /// Well-formed messages dropped (wrong op or type, missing required option).
    receive_drop => "pkt4-receive-drop",
    /// REQUESTs naming another server.
    not_for_us => "pkt4-not-for-us",
    /// Offers released at once because the client chose another server.
    offers_released_foreign => "offers-released-foreign",
    offers_expired => "offers-expired",
    leases_expired => "reclaimed-leases",
    probations_ended => "declined-addresses-reclaimed",
    /// DISCOVERs with no free address.
    allocation_fail => "v4-allocation-fail",
    no_subnet => "no-subnet",
    unknown_client => "unknown-client",
    /// Relayed messages from agents that are not trusted.
    relay_untrusted => "pkt4-relay-untrusted",
    /// DISCOVERs refused: the subscriber key's DISCOVER bucket was empty.
    limit_discover_rate => "limit-discover-rate",
    /// Offers and leases refused: the subscriber key holds its maximum.
    limit_holdings => "limit-leases-per-key",
    /// DECLINEs not taken: not from the client the address is bound to, or declines ignored.
    decline_ignored => "pkt4-decline-ignored",
    /// Probations ended before their time to keep a pool's share in probation capped.
    probations_ended_early => "declined-addresses-ended-early",
    /// Leases ended because another client took over their subscriber port's address.
    port_takeovers => "reservation-port-takeovers",
    /// DHCPLEASEQUERY messages (RFC 4388), and the answers by kind.
    leasequery_received => "pkt4-lease-query-received",
    leasequery_active => "pkt4-lease-query-response-active-sent",
    leasequery_unassigned => "pkt4-lease-query-response-unassigned-sent",
    leasequery_unknown => "pkt4-lease-query-response-unknown-sent",
}}

impl Stats {
    pub(super) fn count_type(&mut self, mt: u8) {
        match MessageType::from_u8(mt) {
            Some(MessageType::Discover) => self.discover_received += 1,
            Some(MessageType::Request) => self.request_received += 1,
            Some(MessageType::Decline) => self.decline_received += 1,
            Some(MessageType::Release) => self.release_received += 1,
            Some(MessageType::Inform) => self.inform_received += 1,
            Some(MessageType::LeaseQuery) => self.leasequery_received += 1,
            _ => {}
        }
    }

    pub(super) fn count(&mut self, o: &Outcome) {
        match o {
            Outcome::Reply(r) => match r.kind {
                MessageType::Offer => self.offer_sent += 1,
                MessageType::Nak => self.nak_sent += 1,
                MessageType::LeaseActive => self.leasequery_active += 1,
                MessageType::LeaseUnassigned => self.leasequery_unassigned += 1,
                MessageType::LeaseUnknown => self.leasequery_unknown += 1,
                _ => self.ack_sent += 1,
            },
            Outcome::Silent(Silence::ForeignServer) => self.not_for_us += 1,
            Outcome::Silent(Silence::NoAddress) => self.allocation_fail += 1,
            Outcome::Silent(Silence::NoSubnet) => self.no_subnet += 1,
            Outcome::Silent(Silence::UnknownClient) => self.unknown_client += 1,
            Outcome::Silent(Silence::UntrustedRelay) => self.relay_untrusted += 1,
            Outcome::Silent(_) => {}
            Outcome::Dropped(DropReason::Malformed(_)) => self.parse_failed += 1,
            Outcome::Dropped(_) => self.receive_drop += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Stats;

    #[test]
    fn names_follow_the_fields_and_sums_add_each() {
        let a = Stats { received: 3, offer_sent: 2, unknown_client: 1, ..Stats::default() };
        let mut sum = a;
        sum.add(&Stats { received: 4, leases_expired: 5, ..Stats::default() });
        let named = sum.named();
        assert_eq!(named.len(), 29);
        assert_eq!(named[0], ("pkt4-received", 7));
        assert_eq!(named[6], ("pkt4-offer-sent", 2));
        assert_eq!(named[14], ("reclaimed-leases", 5));
        assert_eq!(named[18], ("unknown-client", 1));
        let mut names: Vec<_> = named.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Stats::COUNT, "names are unique");
    }
}
