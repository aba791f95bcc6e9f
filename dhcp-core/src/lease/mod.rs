//! The lease store.
//!
//! Two halves, split by who touches them:
//! - [`space::AddressSpace`] is shared by every worker: one atomic state word per pool address
//!   and a lock-free free list per pool. It alone decides who holds an address, so one address
//!   can never be offered or leased to two clients, whichever workers they land on.
//! - [`table::ClientTable`] belongs to one worker: the clients that hash to it, their offers and
//!   leases, and a timer wheel that ends offers, leases and declines in O(1) per event.
//!
//! Nothing here does I/O or reads a clock; times are given in seconds by the caller.

mod index;
pub mod key;
pub mod space;
pub mod table;

pub use key::ClientKey;

/// A random seed for hash tables a neighbour must not be able to fill with collisions (the
/// process's randomness, through std's hasher keys).
pub(crate) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0x5eed_u64)
}
pub use space::{AddressSpace, Claim};
pub use table::{ClientTable, Lease, LeaseState, RecordId};
