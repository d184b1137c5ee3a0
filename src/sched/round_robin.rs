//! SCHED_RR: the primary accepts and hands each connection to a worker.
//!
//! Node's RoundRobinHandle keeps one un-acked connection per worker and hands
//! the next one to whichever worker acked first. Here each worker has a small
//! window of un-acked connections and the least-loaded worker with room gets
//! the next one (ties rotate), so a worker whose event loop is stuck stops
//! receiving connections while the others take them. This file is the pure
//! bookkeeping; accepting is `round_robin_handle`, sending `primary::dispatch`.

use std::collections::VecDeque;

/// Un-acked connections one worker may hold.
pub const WINDOW: usize = 4;

/// Round-robin state for one listen key, generic over the connection type.
pub struct RoundRobin<C> {
  /// (worker id, connections in flight), in the order workers joined.
  workers: Vec<(u32, usize)>,
  /// Workers that get nothing for now (SO_REUSEPORT: their own queue is stuck).
  paused: Vec<u32>,
  /// Where the next tie-break starts, so equal workers take turns.
  next: usize,
  /// Accepted connections no worker has room for yet.
  queue: VecDeque<C>,
}

impl<C> Default for RoundRobin<C> {
  fn default() -> Self {
    RoundRobin {
      workers: Vec::new(),
      paused: Vec::new(),
      next: 0,
      queue: VecDeque::new(),
    }
  }
}

impl<C> RoundRobin<C> {
  pub fn add(&mut self, worker: u32) {
    if !self.has(worker) {
      self.workers.push((worker, 0));
    }
  }

  pub fn has(&self, worker: u32) -> bool {
    self.workers.iter().any(|&(w, _)| w == worker)
  }

  /// Whether any worker but `worker` holds this handle.
  pub fn has_other_than(&self, worker: u32) -> bool {
    self.workers.iter().any(|&(w, _)| w != worker)
  }

  /// Drops a worker; true when none is left (the listener should close).
  pub fn remove(&mut self, worker: u32) -> bool {
    self.workers.retain(|&(w, _)| w != worker);
    self.paused.retain(|&w| w != worker);
    self.workers.is_empty()
  }

  /// Pauses or resumes handing connections to `worker`.
  pub fn set_paused(&mut self, worker: u32, paused: bool) {
    self.paused.retain(|&w| w != worker);
    if paused {
      self.paused.push(worker);
    }
  }

  /// A freshly accepted connection.
  pub fn push(&mut self, conn: C) {
    self.queue.push_back(conn);
  }

  /// A connection a worker refused or never acked: it goes out first.
  pub fn push_front(&mut self, conn: C) {
    self.queue.push_front(conn);
  }

  /// Connections the workers can still take beyond what is queued.
  pub fn room(&self) -> usize {
    let free: usize = self
      .workers
      .iter()
      .filter(|(w, _)| !self.paused.contains(w))
      .map(|&(_, n)| WINDOW.saturating_sub(n))
      .sum();
    free.saturating_sub(self.queue.len())
  }

  /// The next (worker, connection) to hand off, counting it as in flight.
  pub fn next_assignment(&mut self) -> Option<(u32, C)> {
    if self.queue.is_empty() || self.workers.is_empty() {
      return None;
    }
    let len = self.workers.len();
    let mut best: Option<usize> = None;
    for step in 0..len {
      let i = (self.next + step) % len;
      let (worker, load) = self.workers[i];
      if self.paused.contains(&worker) {
        continue;
      }
      if load < WINDOW && best.is_none_or(|b| load < self.workers[b].1) {
        best = Some(i);
      }
    }
    let i = best?;
    let conn = self.queue.pop_front()?;
    self.workers[i].1 += 1;
    self.next = (i + 1) % len;
    Some((self.workers[i].0, conn))
  }

  /// The worker answered (accepted or not) one connection it held.
  pub fn settled(&mut self, worker: u32) {
    if let Some(entry) = self.workers.iter_mut().find(|(w, _)| *w == worker) {
      entry.1 = entry.1.saturating_sub(1);
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn equal_workers_take_turns() {
    let mut rr = RoundRobin::default();
    rr.add(1);
    rr.add(2);
    rr.add(3);
    let mut got = Vec::new();
    for c in 0..6 {
      rr.push(c);
      let (w, conn) = rr.next_assignment().unwrap();
      assert_eq!(conn, c);
      got.push(w);
      rr.settled(w);
    }
    assert_eq!(got, vec![1, 2, 3, 1, 2, 3]);
  }

  #[test]
  fn a_stuck_worker_stops_receiving_after_its_window() {
    let mut rr = RoundRobin::default();
    rr.add(1);
    rr.add(2);
    let mut to_one = 0;
    for c in 0..100 {
      rr.push(c);
      let (w, _) = rr.next_assignment().unwrap();
      if w == 1 {
        to_one += 1; // worker 1 never acks
      } else {
        rr.settled(w);
      }
    }
    // Least-loaded: once it holds one un-acked connection the idle worker wins
    // every pick, and it can never hold more than its window.
    assert!((1..=WINDOW).contains(&to_one), "stuck worker got {to_one}");
  }

  #[test]
  fn queue_waits_when_every_window_is_full() {
    let mut rr = RoundRobin::default();
    rr.add(7);
    for c in 0..WINDOW + 2 {
      rr.push(c);
    }
    assert_eq!(rr.room(), 0);
    let mut handed = 0;
    while rr.next_assignment().is_some() {
      handed += 1;
    }
    assert_eq!(handed, WINDOW);
    rr.settled(7);
    assert_eq!(rr.next_assignment(), Some((7, WINDOW)));
    assert!(!rr.remove(8));
    assert!(rr.remove(7));
    assert_eq!(rr.queue.drain(..).collect::<Vec<_>>(), vec![WINDOW + 1]);
  }

  #[test]
  fn a_paused_worker_gets_nothing_until_resumed() {
    let mut rr = RoundRobin::default();
    rr.add(1);
    rr.add(2);
    rr.set_paused(1, true);
    for c in 0..3 {
      rr.push(c);
      assert_eq!(rr.next_assignment(), Some((2, c)));
      rr.settled(2);
    }
    assert_eq!(rr.room(), WINDOW);
    rr.set_paused(2, true);
    rr.push(9);
    assert_eq!(rr.next_assignment(), None);
    rr.set_paused(1, false);
    assert_eq!(rr.next_assignment(), Some((1, 9)));
  }

  #[test]
  fn refused_connection_goes_first() {
    let mut rr = RoundRobin::default();
    rr.add(1);
    rr.push("new");
    rr.push_front("refused");
    assert_eq!(rr.next_assignment(), Some((1, "refused")));
  }
}
