//! Listen handles for `queryServer`, behind one interface (`handle`), one
//! file per strategy as in Node's lib/internal/cluster: a shared listen
//! socket, round-robin (its handle and its hand-out of connections), or a
//! SO_REUSEPORT socket per worker (`reuse_port`: the pool, its BPF steering,
//! the stealer);
//! the listen key and socket creation (`listen`).

pub(crate) mod handle;
pub(crate) mod listen;
pub(crate) mod owner;
mod reuse_port;
mod round_robin_handle;
mod shared;
pub(crate) mod sticky;

/// How listen sockets are placed, frozen when the engine starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
  /// One of `SCHED_NONE`, `SCHED_RR`, `SCHED_REUSEPORT`.
  pub policy: u32,
  /// Sticky by client address (`setupPrimary({ sticky: 'ip' })`).
  pub sticky: bool,
  /// `setupPrimary({ balance: 'least-connections' })`.
  pub least_connections: bool,
  /// How listens are keyed (by the primary's Node line).
  pub key_rule: listen::KeyRule,
}

/// How a handle spreads connections over its workers, beside the policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Spread {
  /// Sticky by client address.
  pub sticky: bool,
  /// Least-connections where the primary hands connections out.
  pub least_connections: bool,
}

/// `cluster.SCHED_NONE`: the kernel picks the worker.
pub const SCHED_NONE: u32 = 1;
/// `cluster.SCHED_RR`: the primary accepts and hands connections out.
pub const SCHED_RR: u32 = 2;
/// `cluster.SCHED_REUSEPORT` (rcluster's own, and its default): one
/// SO_REUSEPORT socket per worker; the kernel picks, steered by the primary.
pub const SCHED_REUSEPORT: u32 = 3;
