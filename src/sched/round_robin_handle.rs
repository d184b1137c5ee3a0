//! SCHED_RR's listen handle (Node's RoundRobinHandle): the primary listens,
//! accepts off the JS thread and queues each connection for the engine to
//! hand to a worker with `newconn`; the primary's copy closes only after the
//! worker said `accepted`. Sending is the engine's, reached through
//! [`Owner`].
//!
//! The hand-out ([`Handout`], pure bookkeeping, also the stealer's for the
//! connections it takes off stuck SO_REUSEPORT queues): Node's
//! RoundRobinHandle keeps one un-acked connection per worker and hands the
//! next one to whichever worker acked first. Here each worker has a small
//! window of un-acked connections and the least-loaded worker with room gets
//! the next one (ties rotate), so a worker whose event loop is stuck stops
//! receiving connections while the others take them.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{accept4, shutdown, Shutdown, SockFlag};
use serde_json::Value;
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;
use tokio::task::{spawn_local, JoinHandle};

use super::listen::{self, Bound, BoundPath};
use super::owner::Owner;
use super::sticky::{bucket, Buckets};
use super::Spread;
use crate::error::{Error, Result};
use crate::ipc::channel::watch;

/// How long accepting pauses when the process is out of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) struct RrHandle {
  /// Shared with the accept loop, which queues what it accepts.
  pub handout: Rc<RefCell<Handout<Arc<OwnedFd>>>>,
  pub sockname: Option<Value>,
  listener: Rc<AsyncFd<OwnedFd>>,
  /// Wakes the accept task when a worker acks and the window has room again.
  room: Rc<Notify>,
  task: JoinHandle<()>,
  _path: Option<BoundPath>,
  inherited: bool,
}

impl RrHandle {
  /// `inherited`: the socket is the primary's own (`listen({ fd })`), so it
  /// is closed, not shut down, when the last worker lets go.
  pub fn new<D: Owner>(
    engine: &D,
    key: &str,
    bound: Bound,
    backlog: i32,
    inherited: bool,
    spread: Spread,
  ) -> Result<RrHandle> {
    let sticky = spread.sticky;
    let Bound { fd, path } = bound;
    listen::start_listening(&fd, backlog)?;
    let sockname = listen::sockname(&fd);
    let listener = Rc::new(
      watch(fd, Interest::READABLE)
        .map_err(|e| Error::from_io(&e, "epoll_ctl", "listen socket"))?,
    );
    let room = Rc::new(Notify::new());
    let handout = if sticky {
      Handout::sticky()
    } else {
      Handout::default()
    };
    let handout = Rc::new(RefCell::new(if spread.least_connections {
      handout.least_connections()
    } else {
      handout
    }));
    let task = spawn_local(accept_loop(
      engine.clone(),
      key.to_string(),
      handout.clone(),
      listener.clone(),
      room.clone(),
      sticky,
    ));
    Ok(RrHandle {
      handout,
      sockname,
      listener,
      room,
      task,
      _path: path,
      inherited,
    })
  }

  /// A worker answered one `newconn`: its window has room again.
  pub fn settled(&mut self, worker: u32) {
    self.handout.borrow_mut().settled(worker);
    self.room.notify_one();
  }
}

impl Drop for RrHandle {
  fn drop(&mut self) {
    self.task.abort();
    // The aborted task drops its copy of the listener only later; shut the
    // socket down now so the port is free for a new listen at once and
    // queued clients are reset instead of waiting. Not a socket the primary
    // was given: shutdown would reach every other copy of it.
    if !self.inherited {
      let _ = shutdown(self.listener.get_ref().as_raw_fd(), Shutdown::Both);
    }
  }
}

async fn accept_loop<D: Owner>(
  engine: D,
  key: String,
  handout: Rc<RefCell<Handout<Arc<OwnedFd>>>>,
  listener: Rc<AsyncFd<OwnedFd>>,
  room: Rc<Notify>,
  sticky: bool,
) {
  loop {
    // Accept only while some worker has room: otherwise connections wait in
    // the kernel's backlog rather than in the primary's memory.
    while handout.borrow().room() == 0 {
      room.notified().await;
    }
    let Ok(mut guard) = listener.readable().await else {
      return;
    };
    let res = guard.try_io(|l| {
      accept4(
        l.get_ref().as_raw_fd(),
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
      )
      .map_err(std::io::Error::from)
    });
    match res {
      Ok(Ok(raw)) => {
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        let conn = Arc::new(unsafe { OwnedFd::from_raw_fd(raw) });
        match sticky.then(|| peer_bucket(&conn)).flatten() {
          Some(b) => handout.borrow_mut().push_placed(conn, b),
          None => handout.borrow_mut().push(conn),
        }
        engine.pump(&key);
      }
      Ok(Err(e)) => match Errno::from_raw(e.raw_os_error().unwrap_or(0)) {
        // The client gave up before we accepted, or a signal: try the next one.
        Errno::ECONNABORTED | Errno::EINTR | Errno::EPROTO => {}
        // Out of fds or memory: back off instead of spinning on a ready socket.
        _ => tokio::time::sleep(ACCEPT_BACKOFF).await,
      },
      Err(_would_block) => {}
    }
  }
}

/// The sticky bucket of a connection's client address (none for a unix socket).
fn peer_bucket(conn: &OwnedFd) -> Option<usize> {
  use nix::sys::socket::{getpeername, SockaddrStorage};
  let peer: SockaddrStorage = getpeername(conn.as_raw_fd()).ok()?;
  let ip = match peer.as_sockaddr_in() {
    Some(v4) => std::net::IpAddr::V4(v4.ip()),
    None => std::net::IpAddr::V6(peer.as_sockaddr_in6()?.ip()),
  };
  Some(bucket(ip))
}

// The hand-out.

/// Un-acked connections one worker may hold.
pub const WINDOW: usize = 4;
/// The same under least-connections: wide enough that a burst waits for the
/// emptiest worker's acks rather than spilling to a fuller one (a blocked
/// worker is still skipped once it holds this many).
pub const LEAST_WINDOW: usize = 32;

/// The hand-out state of one listen key, generic over the connection type.
pub struct Handout<C> {
  /// (worker id, connections in flight), in the order workers joined.
  workers: Vec<(u32, usize)>,
  /// Workers that get nothing for now (SO_REUSEPORT: their own queue is stuck).
  paused: Vec<u32>,
  /// Where the next tie-break starts, so equal workers take turns.
  next: usize,
  /// Accepted connections no worker has room for yet, with the bucket of
  /// the client's address when placement is sticky.
  queue: VecDeque<(C, Option<usize>)>,
  /// Sticky placement: the buckets, and the worker at each home (a
  /// replacement takes the home of a worker that left).
  sticky: Option<(Buckets, Vec<Option<u32>>)>,
  /// Open connections per worker: +1 at each hand-off, less the closes
  /// its worker hook reports.
  open: HashMap<u32, u32>,
  /// `balance: 'least-connections'`: the next connection goes to the worker
  /// with the fewest open connections (with room in its window), rather than
  /// the fewest un-acked ones.
  least_connections: bool,
}

impl<C> Default for Handout<C> {
  fn default() -> Self {
    Handout {
      workers: Vec::new(),
      paused: Vec::new(),
      next: 0,
      queue: VecDeque::new(),
      sticky: None,
      open: HashMap::new(),
      least_connections: false,
    }
  }
}

impl<C> Handout<C> {
  /// Sticky placement: a connection queued with [`Self::push_placed`] goes to
  /// the worker at its bucket's home.
  pub fn sticky() -> Self {
    Handout {
      sticky: Some((Buckets::default(), Vec::new())),
      ..Self::default()
    }
  }

  /// Least-connections placement (see the field).
  pub fn least_connections(mut self) -> Self {
    self.least_connections = true;
    self
  }

  /// Un-acked connections one worker may hold.
  fn window(&self) -> usize {
    if self.least_connections {
      LEAST_WINDOW
    } else {
      WINDOW
    }
  }

  /// Worker `worker` reports `closed` of its connections closed since its last report.
  pub fn closed(&mut self, worker: u32, closed: u32) {
    if let Some(n) = self.open.get_mut(&worker) {
      *n = n.saturating_sub(closed);
    }
  }

  /// Connections handed to `worker` and not reported closed.
  pub fn open_of(&self, worker: u32) -> u32 {
    self.open.get(&worker).copied().unwrap_or(0)
  }

  pub fn add(&mut self, worker: u32) {
    if !self.has(worker) {
      self.workers.push((worker, 0));
      if let Some((buckets, homes)) = &mut self.sticky {
        match homes.iter_mut().find(|s| s.is_none()) {
          Some(free) => *free = Some(worker),
          None => {
            homes.push(Some(worker));
            buckets.grow(homes.len());
          }
        }
      }
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
    self.open.remove(&worker);
    self.paused.retain(|&w| w != worker);
    if let Some((_, homes)) = &mut self.sticky {
      for s in homes.iter_mut().filter(|s| **s == Some(worker)) {
        *s = None;
      }
    }
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
    self.queue.push_back((conn, None));
  }

  /// A freshly accepted connection from a client whose address hashes to `bucket`.
  pub fn push_placed(&mut self, conn: C, bucket: usize) {
    self.queue.push_back((conn, Some(bucket)));
  }

  /// A connection a worker refused or never acked: it goes out first (to
  /// whichever worker has room: its own did not take it).
  pub fn push_front(&mut self, conn: C) {
    self.queue.push_front((conn, None));
  }

  /// Connections the workers can still take beyond what is queued.
  pub fn room(&self) -> usize {
    let free: usize = self
      .workers
      .iter()
      .filter(|(w, _)| !self.paused.contains(w))
      .map(|&(_, n)| self.window().saturating_sub(n))
      .sum();
    free.saturating_sub(self.queue.len())
  }

  /// The next (worker, connection) to hand off, counting it as in flight.
  pub fn next_assignment(&mut self) -> Option<(u32, C)> {
    if self.queue.is_empty() || self.workers.is_empty() {
      return None;
    }
    if self.sticky.is_some() {
      return self.next_sticky();
    }
    let i = self.least_loaded()?;
    let (conn, _) = self.queue.pop_front()?;
    Some(self.assign(i, conn))
  }

  /// The index of the least-loaded worker with room (ties rotate): by
  /// un-acked connections, or with least-connections by open ones first.
  fn least_loaded(&self) -> Option<usize> {
    let len = self.workers.len();
    let rank = |i: usize| {
      let (worker, load) = self.workers[i];
      if self.least_connections {
        (self.open_of(worker) as usize, load)
      } else {
        (load, 0)
      }
    };
    let mut best: Option<usize> = None;
    for step in 0..len {
      let i = (self.next + step) % len;
      let (worker, load) = self.workers[i];
      if self.paused.contains(&worker) {
        continue;
      }
      if load < self.window() && best.is_none_or(|b| rank(i) < rank(b)) {
        best = Some(i);
      }
    }
    best
  }

  fn assign(&mut self, i: usize, conn: C) -> (u32, C) {
    self.workers[i].1 += 1;
    *self.open.entry(self.workers[i].0).or_default() += 1;
    self.next = (i + 1) % self.workers.len();
    (self.workers[i].0, conn)
  }

  /// Sticky: the first queued connection whose worker has room goes to it;
  /// a connection whose worker is full waits (the others go by), one whose
  /// worker is gone or paused goes to a healthy worker chosen by its bucket.
  fn next_sticky(&mut self) -> Option<(u32, C)> {
    let (buckets, homes) = self.sticky.as_ref()?;
    let healthy: Vec<bool> = homes
      .iter()
      .map(|w| w.is_some_and(|w| !self.paused.contains(&w)))
      .collect();
    for q in 0..self.queue.len() {
      let target = match self.queue[q].1 {
        // Least-connections: a client whose worker is gone goes to the
        // emptiest one, like any unplaced connection.
        Some(b)
          if self.least_connections
            && !healthy
              .get(buckets.home(b) as usize)
              .copied()
              .unwrap_or(false) =>
        {
          None
        }
        Some(b) => buckets.place(b, &healthy).and_then(|h| homes[h as usize]),
        None => None,
      };
      let i = match target {
        Some(w) => match self.workers.iter().position(|&(x, _)| x == w) {
          Some(i) if self.workers[i].1 < self.window() => i,
          _ => continue,
        },
        None => match self.least_loaded() {
          Some(i) => i,
          None => continue,
        },
      };
      let (conn, _) = self.queue.remove(q)?;
      return Some(self.assign(i, conn));
    }
    None
  }

  /// The worker answered (accepted or not) one connection it held.
  pub fn settled(&mut self, worker: u32) {
    if let Some(entry) = self.workers.iter_mut().find(|(w, _)| *w == worker) {
      entry.1 = entry.1.saturating_sub(1);
    }
  }
}

#[cfg(test)]
mod handout_tests {
  use super::*;
  use crate::sched::sticky::BUCKETS;

  /// Hands out connections 0..n one at a time, each acknowledged at once:
  /// the workers that got them, in order.
  fn serve(rr: &mut Handout<i32>, n: i32) -> Vec<u32> {
    (0..n)
      .map(|c| {
        rr.push(c);
        let (w, conn) = rr.next_assignment().unwrap();
        assert_eq!(conn, c);
        rr.settled(w);
        w
      })
      .collect()
  }

  #[test]
  fn equal_workers_take_turns() {
    let mut rr = Handout::default();
    rr.add(1);
    rr.add(2);
    rr.add(3);
    assert_eq!(serve(&mut rr, 6), vec![1, 2, 3, 1, 2, 3]);
  }

  #[test]
  fn a_stuck_worker_stops_receiving_after_its_window() {
    let mut rr = Handout::default();
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
    let mut rr = Handout::default();
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
    assert_eq!(
      rr.queue.drain(..).map(|(c, _)| c).collect::<Vec<_>>(),
      vec![WINDOW + 1]
    );
  }

  #[test]
  fn a_paused_worker_gets_nothing_until_resumed() {
    let mut rr = Handout::default();
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
    let mut rr = Handout::default();
    rr.add(1);
    rr.push("new");
    rr.push_front("refused");
    assert_eq!(rr.next_assignment(), Some((1, "refused")));
  }

  #[test]
  fn least_connections_fills_the_emptiest_worker_first() {
    let mut rr = Handout::default().least_connections();
    rr.add(1);
    rr.add(2);
    // A burst: workers ack at once, connections stay open: an even split.
    let got = serve(&mut rr, 64);
    let to = |worker| got.iter().filter(|&&w| w == worker).count();
    assert_eq!((to(1), to(2)), (32, 32));
    // Worker 1's clients leave; a newcomer joins empty: both get the next
    // connections until they have caught up with worker 2.
    rr.closed(1, 30);
    rr.add(3);
    let got = serve(&mut rr, 62);
    assert!(
      got[..60].iter().all(|&w| w != 2),
      "worker 2 had the most: {got:?}"
    );
    assert_eq!((rr.open_of(1), rr.open_of(2), rr.open_of(3)), (32, 32, 32));
  }

  #[test]
  fn default_placement_ignores_open_connections() {
    let mut rr = Handout::default();
    rr.add(1);
    rr.add(2);
    rr.closed(2, 5); // nothing handed yet: stays at zero
    assert_eq!(serve(&mut rr, 4), vec![1, 2, 1, 2]);
    assert_eq!((rr.open_of(1), rr.open_of(2)), (2, 2));
  }

  /// A sticky hand-out with workers 1 and 2 (at homes 0 and 1), and a
  /// bucket of each one's home.
  fn sticky_pair<C>() -> (Handout<C>, usize, usize) {
    let mut rr = Handout::sticky();
    rr.add(1);
    rr.add(2);
    let (buckets, _) = rr.sticky.clone().unwrap();
    let of = |home: u32| (0..BUCKETS).find(|&b| buckets.home(b) == home).unwrap();
    (rr, of(0), of(1))
  }

  #[test]
  fn sticky_sends_a_bucket_to_its_homes_worker_and_keeps_it_across_a_restart() {
    let (mut rr, b1, b2) = sticky_pair();
    for n in 0..6 {
      rr.push_placed(n, if n % 2 == 0 { b1 } else { b2 });
    }
    let mut got = Vec::new();
    while let Some((w, c)) = rr.next_assignment() {
      got.push((w, c));
      rr.settled(w);
    }
    assert_eq!(got, vec![(1, 0), (2, 1), (1, 2), (2, 3), (1, 4), (2, 5)]);
    // Worker 1 dies: its clients go to a healthy worker meanwhile...
    rr.remove(1);
    rr.push_placed(10, b1);
    assert_eq!(rr.next_assignment(), Some((2, 10)));
    rr.settled(2);
    // ...and its replacement takes its home, and its clients.
    rr.add(3);
    rr.push_placed(11, b1);
    rr.push_placed(12, b2);
    assert_eq!(rr.next_assignment(), Some((3, 11)));
    assert_eq!(rr.next_assignment(), Some((2, 12)));
  }

  #[test]
  fn sticky_lets_others_pass_a_client_whose_worker_is_full() {
    let (mut rr, b1, b2) = sticky_pair();
    for n in 0..WINDOW + 1 {
      rr.push_placed(n, b1);
    }
    rr.push_placed(100, b2);
    let mut got = Vec::new();
    while let Some((w, c)) = rr.next_assignment() {
      got.push((w, c));
    }
    // Worker 1's window fills; its next client waits, worker 2's goes by.
    assert_eq!(got.len(), WINDOW + 1);
    assert_eq!(got.last(), Some(&(2, 100)));
    rr.settled(1);
    assert_eq!(rr.next_assignment(), Some((1, WINDOW)));
  }
}
