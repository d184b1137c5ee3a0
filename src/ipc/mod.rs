//! The child_process IPC channel as Node speaks it: framing, message kinds, fd passing.

pub mod channel;
pub mod json;
pub mod v8;
