//! rcluster: Node's `cluster` with a Rust primary. This file only lists the
//! modules and the napi exports; see `binding` for the JS surface.
#![deny(clippy::all)]

pub mod binding;
mod error;
mod ipc;
mod primary;
mod sched;
mod supervise;
mod sync;
