//! Socket strategies for `queryServer`, one file each as in Node's
//! lib/internal/cluster: a shared listen socket, round-robin hand-off, or a
//! SO_REUSEPORT socket per worker (with its BPF steering).

pub mod listen;
pub mod reuse_port;
pub mod round_robin;
pub mod shared;
pub mod steer;

/// `cluster.SCHED_NONE`: the kernel picks the worker.
pub const SCHED_NONE: u32 = 1;
/// `cluster.SCHED_RR`: the primary accepts and hands connections out.
pub const SCHED_RR: u32 = 2;
/// `cluster.SCHED_REUSEPORT` (rcluster's own, and its default): one
/// SO_REUSEPORT socket per worker; the kernel picks, steered by the primary.
pub const SCHED_REUSEPORT: u32 = 3;
