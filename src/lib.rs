//! rcluster: Node's `cluster` with a Rust primary. This file only lists the
//! modules and the napi exports; see `binding` for the JS surface.
#![deny(clippy::all)]

pub mod binding;
pub mod error;
pub mod ipc;
mod jsread;
pub mod primary;
pub mod sched;
pub mod supervise;
mod sync;
