//! Supervision the engine applies on top of Node's cluster: the hung-worker
//! watchdog (it must run off the JS thread), and reaping adopted orphans. The restart policy is JS's
//! (lib/supervise/restart.js), shared with the portable engine.

pub mod orphans;
pub mod watchdog;
