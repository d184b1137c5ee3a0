//! SCHED_NONE (and every UDP socket in Node): one bound socket, sent to every
//! worker that asks; the kernel spreads connections among them.

use std::collections::HashSet;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::listen::{Bound, BoundPath};

/// A socket the primary created once and shares by fd with each worker.
pub struct SharedHandle {
  pub fd: Arc<OwnedFd>,
  /// The child_process handle type the fd travels as: `net.Native` or `dgram.Native`.
  pub kind: &'static str,
  workers: HashSet<u32>,
  _path: Option<BoundPath>,
}

impl SharedHandle {
  pub fn new(bound: Bound, kind: &'static str) -> Self {
    SharedHandle {
      fd: Arc::new(bound.fd),
      kind,
      workers: HashSet::new(),
      _path: bound.path,
    }
  }

  pub fn add(&mut self, worker: u32) {
    self.workers.insert(worker);
  }

  /// Drops a worker; true when none is left and the socket should close,
  /// as Node's SharedHandle.remove does.
  pub fn remove(&mut self, worker: u32) -> bool {
    self.workers.remove(&worker);
    self.workers.is_empty()
  }

  pub fn has(&self, worker: u32) -> bool {
    self.workers.contains(&worker)
  }
}
