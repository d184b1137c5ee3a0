//! The child_process IPC channel as Node speaks it: framing, message kinds, fd passing.

pub mod channel;
pub mod fdpass;
pub mod json;
pub mod lane;
pub mod v8;
