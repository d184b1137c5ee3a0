//! SCHED_REUSEPORT: one SO_REUSEPORT listen socket per worker, created
//! and kept by the primary. The kernel spreads connections over the sockets,
//! so the primary is out of the data path; a worker that dies leaves its
//! socket (and the connections queued on it) to the worker that replaces it.

use std::os::fd::OwnedFd;
use std::sync::Arc;

/// The sockets of one listen key and the workers holding each.
#[derive(Default)]
pub struct ReusePortPool {
  /// (socket, the workers holding it: one, or an old worker and the one
  /// replacing it during a reload).
  sockets: Vec<(Arc<OwnedFd>, Vec<u32>)>,
}

impl ReusePortPool {
  /// A socket no live worker holds (a dead worker's), to hand to `worker`.
  pub fn take_free(&mut self, worker: u32) -> Option<Arc<OwnedFd>> {
    let (fd, holders) = self.sockets.iter_mut().find(|(_, h)| h.is_empty())?;
    holders.push(worker);
    Some(fd.clone())
  }

  /// `worker` shares the socket `predecessor` holds (a reload: the old worker
  /// leaves soon and its queue stays with the new one).
  pub fn share(&mut self, worker: u32, predecessor: u32) -> Option<Arc<OwnedFd>> {
    let (fd, holders) = self
      .sockets
      .iter_mut()
      .find(|(_, h)| h.contains(&predecessor))?;
    holders.push(worker);
    Some(fd.clone())
  }

  /// Adds a new socket (TCP: no path to unlink), held by `worker`.
  pub fn add(&mut self, fd: OwnedFd, worker: u32) {
    self.sockets.push((Arc::new(fd), vec![worker]));
  }

  /// Adds a new socket no worker holds yet (the first of a key's pool; the
  /// worker that asked takes it next).
  pub fn add_free(&mut self, fd: OwnedFd) {
    self.sockets.push((Arc::new(fd), Vec::new()));
  }

  /// Every socket with the workers holding it.
  pub fn sockets(&self) -> impl Iterator<Item = (&Arc<OwnedFd>, &[u32])> {
    self.sockets.iter().map(|(fd, h)| (fd, h.as_slice()))
  }

  /// The socket `worker` holds.
  pub fn socket_of(&self, worker: u32) -> Option<Arc<OwnedFd>> {
    self
      .sockets
      .iter()
      .find(|(_, h)| h.contains(&worker))
      .map(|(fd, _)| fd.clone())
  }

  pub fn has(&self, worker: u32) -> bool {
    self.socket_of(worker).is_some()
  }

  /// The worker lets go of its socket. Returns true when the pool should
  /// close: nobody holds a socket and the worker left on purpose. After a
  /// crash the sockets stay open (and listening) for a replacement.
  pub fn remove(&mut self, worker: u32, on_purpose: bool) -> bool {
    for (_, holders) in &mut self.sockets {
      holders.retain(|&w| w != worker);
    }
    on_purpose && self.sockets.iter().all(|(_, h)| h.is_empty())
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn fd() -> OwnedFd {
    std::os::unix::net::UnixDatagram::unbound().unwrap().into()
  }

  #[test]
  fn a_replacement_inherits_the_dead_workers_socket() {
    let mut pool = ReusePortPool::default();
    pool.add(fd(), 1);
    pool.add(fd(), 2);
    let a = pool.socket_of(1).unwrap();
    assert!(pool.take_free(3).is_none());
    assert!(!pool.remove(1, false), "a crash keeps the pool");
    let c = pool.take_free(3).unwrap();
    assert!(Arc::ptr_eq(&a, &c));
    assert!(pool.has(3) && !pool.has(1));
  }

  #[test]
  fn a_reloaded_worker_shares_then_keeps_its_predecessors_socket() {
    let mut pool = ReusePortPool::default();
    pool.add(fd(), 1);
    let old = pool.socket_of(1).unwrap();
    let shared = pool.share(2, 1).unwrap();
    assert!(Arc::ptr_eq(&old, &shared));
    assert!(!pool.remove(1, true), "the new worker still holds it");
    assert!(Arc::ptr_eq(&pool.socket_of(2).unwrap(), &old));
    assert!(pool.take_free(3).is_none());
  }

  #[test]
  fn closes_when_the_last_holder_leaves_on_purpose() {
    let mut pool = ReusePortPool::default();
    pool.add(fd(), 1);
    pool.add(fd(), 2);
    assert!(!pool.remove(1, true));
    assert!(pool.remove(2, true));
  }
}
