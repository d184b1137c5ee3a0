//! Supervision policies the primary applies on top of Node's cluster:
//! restart with crash-loop protection, and the hung-worker watchdog.

pub mod restart;
pub mod watchdog;
