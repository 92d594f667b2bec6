//! Session lifecycle for a Farview host, as plain types driven by events and `now`:
//! creation, readiness, the lease clock, the one device allowed to bind a session (and resume it),
//! stop and expiry — plus the durable record of every session in an embedded SQLite file.
//!
//! No sockets, no timers: the host calls [`Session::poll`] with the current time and acts on what
//! it returns, so tests drive leases with a [`ManualClock`] instead of sleeping.

mod clock;
mod lease;
mod session;
mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use lease::{LeaseError, MIN_LEASE_MS, check_lease, format_lease, parse_lease};
pub use session::{Admission, AdmitError, ExtendError, Session, SessionRecord, Status, StopReason};
pub use store::{RecordStore, StoreError};
