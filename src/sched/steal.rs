//! SCHED_REUSEPORT work stealing. The kernel spreads connections over the
//! workers' SO_REUSEPORT sockets by a hash, blind to whether a worker is
//! accepting. Every tick the stealer looks at each socket's accept queue
//! (TCP_INFO on the copy the primary keeps): a queue that stays non-empty
//! without shrinking for a few ticks belongs to a worker that is stuck (or
//! gone), so the primary accepts those connections itself and the engine
//! hands them to the other workers with `newconn`, as round-robin does. A
//! healthy worker's queue is never touched: the data path stays the kernel's.
//!
//! The stealer also steers the group (`steer`): a socket no worker holds
//! (its worker left or died) gets no new connections while other workers
//! can take them, and a stuck worker's socket only a trickle, to see whether
//! it accepts again. The decisions (`Stealer::judge`, `Stealer::weights`)
//! are plain functions of the queue lengths, tested below.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::socket::{accept4, SockFlag};
use tokio::task::{spawn_local, JoinHandle};

use super::handout::Handout;
use super::listen::Target;
use super::owner::Owner;
use super::reuse_port::ReusePortPool;
use super::steer;
use super::sticky::Buckets;
use super::Spread;

/// How often the queues are looked at while any holds connections (or a
/// worker is suspect).
const TICK: Duration = Duration::from_millis(10);
/// While every queue is empty the looks thin out, doubling up to this: an
/// idle primary wakes 10 times a second rather than 100, and a worker that
/// blocks after a quiet spell is found at most this much later.
const IDLE_TICK_MAX: Duration = Duration::from_millis(100);
/// Looks in a row a queue must stay non-empty and not shrink to count as
/// stuck (100 ms: a saturated but working worker's queue shrinks now and
/// then; a blocked one's never does).
const STUCK_TICKS: u32 = 10;
/// Once a socket was stuck, new connections on it are taken after this many
/// looks, until its worker shows it accepts again.
const SUSPECT_TICKS: u32 = 2;
/// Looks with an empty queue after which a suspect socket is trusted again.
const TRUST_TICKS: u32 = 10;
/// How long a key's pool stays open while no worker holds any of its
/// sockets before it closes and clients are refused, as under Node once the
/// last worker listening there is gone. Until then the sockets (and the
/// connections queued on them) wait for a replacement that listens on the
/// same address, forked in 'exit' or by `restart`.
const ORPHAN_GRACE: Duration = Duration::from_millis(500);
/// Steering weight of a socket whose worker accepts (and holds as many
/// open connections as the busiest).
const HEALTHY: u32 = 8;
/// A healthy socket's weight grows by DEFICIT_STEP x HEALTHY for each open
/// connection its worker holds fewer than the busiest worker, up to
/// DEFICIT_MAX of them: a worker that is behind (a replacement, a newcomer,
/// one whose clients left) draws most new connections until it has caught
/// up, and workers a connection or two apart even out instead of drifting
/// as independent draws would.
const DEFICIT_STEP: u32 = 4;
const DEFICIT_MAX: u32 = 31;
/// Steering weight of a suspect socket: a probe, taken after SUSPECT_TICKS
/// if its worker still does not accept.
const PROBE: u32 = 1;

/// What the stealer remembers of one socket.
#[derive(Default, Debug)]
struct Watch {
  /// Queue length at the last look.
  last: u32,
  /// Looks in a row without the queue shrinking.
  stalled: u32,
  /// Looks in a row with an empty queue.
  idle: u32,
  /// Was stuck; not yet seen accepting again.
  suspect: bool,
}

/// What one look decided.
#[derive(Debug, Default, PartialEq)]
struct Judgement {
  /// Sockets (by index) to empty now, with how many connections wait there.
  stuck: Vec<(usize, u32)>,
  /// Workers that get no stolen connections for now.
  paused: Vec<u32>,
  /// Something wants quick looks: a queue holds connections, or a socket is suspect.
  active: bool,
}

/// A key's SO_REUSEPORT sockets and their stealer, shared by the handle
/// and the loop that ticks it.
pub(crate) struct Group {
  pub pool: ReusePortPool,
  /// Where the pool's sockets listen (the port the first one got, for port 0).
  pub target: Target,
  pub stealer: Stealer,
}

impl Group {
  fn tick(&mut self) -> Tick {
    self.stealer.tick(&self.pool)
  }
}

/// The loop ticking a group; it stops when this is dropped with the handle.
pub(crate) struct Watcher(JoinHandle<()>);

impl Watcher {
  pub fn start<D: Owner>(engine: &D, key: &str, group: &Rc<RefCell<Group>>) -> Watcher {
    Watcher(spawn_local(steal_loop(
      engine.clone(),
      key.to_string(),
      group.clone(),
    )))
  }
}

impl Drop for Watcher {
  fn drop(&mut self) {
    self.0.abort();
  }
}

/// What one tick did, for the loop.
struct Tick {
  /// Connections were taken: the engine should hand them out.
  pub took: bool,
  /// Quick looks wanted.
  pub active: bool,
  /// No worker took the key's sockets within the grace: close it.
  pub expired: bool,
}

#[derive(Default)]
pub(crate) struct Stealer {
  /// Hands stolen connections to the workers of the pool that are not stuck.
  pub handout: Handout<Arc<OwnedFd>>,
  /// One per socket of the pool, in the pool's order (sockets are only ever added).
  queues: Vec<Watch>,
  /// Sticky placement's buckets, when it is on.
  pub sticky: Option<Buckets>,
  /// What was last attached to the group: the weights, or the sticky
  /// table (empty: nothing yet).
  attached: Vec<u32>,
  /// Since when no worker holds any socket of the pool.
  orphaned: Option<Instant>,
  /// Open connections per worker, as its worker hook last reported them.
  pub open: HashMap<u32, u32>,
}

impl Stealer {
  /// A stealer for a new pool; sticky: place clients by address;
  /// least-connections: stolen connections go to the emptiest worker.
  pub fn new(spread: Spread) -> Self {
    Stealer {
      sticky: spread.sticky.then(Buckets::default),
      handout: if spread.least_connections {
        Handout::default().least_connections()
      } else {
        Handout::default()
      },
      ..Stealer::default()
    }
  }

  /// One tick: the orphan grace, then a look at every queue.
  fn tick(&mut self, pool: &ReusePortPool) -> Tick {
    // Per key: a port only a dead worker listened on (its own admin port,
    // say) closes even while other workers serve other keys.
    let nobody = pool.sockets().all(|(_, holders)| holders.is_empty());
    self.orphaned = nobody.then(|| self.orphaned.unwrap_or_else(Instant::now));
    if self.orphaned.is_some_and(|t| t.elapsed() >= ORPHAN_GRACE) {
      return Tick {
        took: false,
        active: false,
        expired: true,
      };
    }
    let (took, active) = self.look(pool);
    Tick {
      took,
      active,
      expired: false,
    }
  }

  /// One look at every socket of `pool`: pauses the workers whose queue is
  /// stuck and takes as many of their connections as the others have room
  /// for. Returns whether it took any, and whether quick looks are wanted.
  fn look(&mut self, pool: &ReusePortPool) -> (bool, bool) {
    let (fds, holders): (Vec<&Arc<OwnedFd>>, Vec<&[u32]>) = pool.sockets().unzip();
    let queued: Vec<u32> = fds.iter().map(|fd| accept_queue(fd.as_raw_fd())).collect();
    let j = self.judge(&queued, &holders);
    for &w in holders.iter().copied().flatten() {
      self.handout.set_paused(w, j.paused.contains(&w));
    }
    self.steer(pool);
    let mut took = false;
    for (i, queued) in j.stuck {
      for _ in 0..queued {
        if self.handout.room() == 0 {
          return (took, j.active);
        }
        let Ok(raw) = accept4(
          fds[i].as_raw_fd(),
          SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        ) else {
          break;
        };
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        self
          .handout
          .push(Arc::new(unsafe { OwnedFd::from_raw_fd(raw) }));
        took = true;
      }
    }
    (took, j.active)
  }

  /// The decisions of one look, from each socket's queue length and holders.
  fn judge(&mut self, queued: &[u32], holders: &[&[u32]]) -> Judgement {
    let mut j = Judgement::default();
    for (i, (&queued, holders)) in queued.iter().zip(holders).enumerate() {
      if self.queues.len() <= i {
        self.queues.push(Watch::default());
      }
      let w = &mut self.queues[i];
      if queued > 0 && queued >= w.last {
        w.stalled += 1;
      } else {
        // Shrunk by itself: its worker accepts.
        if queued > 0 {
          w.suspect = false;
        }
        w.stalled = 0;
      }
      w.idle = if queued == 0 { w.idle + 1 } else { 0 };
      if w.idle >= TRUST_TICKS {
        w.suspect = false;
      }
      w.last = queued;
      // A socket nobody holds gets nothing new: what waits on it goes soon.
      let limit = if w.suspect || holders.is_empty() {
        SUSPECT_TICKS
      } else {
        STUCK_TICKS
      };
      if w.stalled >= limit {
        j.stuck.push((i, queued));
        // What is taken now is gone from the queue: start counting afresh.
        w.suspect = true;
        w.stalled = 0;
        w.last = 0;
      }
      if w.suspect {
        j.paused.extend_from_slice(holders);
      }
      j.active |= queued > 0 || w.suspect;
    }
    j
  }

  /// The steering weight of each socket: healthy workers share new
  /// connections, more to those with fewer open connections (see
  /// DEFICIT_MAX), a suspect one gets a probe, one nobody holds gets none.
  /// A socket two workers hold (a reload's old and new) counts the one with
  /// fewer.
  fn weights(&self, holders: &[&[u32]]) -> Vec<u32> {
    let open = |h: &[u32]| {
      h.iter()
        .map(|w| self.open.get(w).copied().unwrap_or(0))
        .min()
        .unwrap_or(0)
    };
    let busiest = holders.iter().map(|h| open(h)).max().unwrap_or(0);
    holders
      .iter()
      .enumerate()
      .map(|(i, h)| match self.queues.get(i) {
        _ if h.is_empty() => 0,
        Some(w) if w.suspect => PROBE,
        _ => HEALTHY * (1 + DEFICIT_STEP * (busiest - open(h)).min(DEFICIT_MAX)),
      })
      .collect()
  }

  /// Re-steers the group when who should get new connections changed. With
  /// no worker at all the kernel's own hash decides (sticky: each bucket's
  /// home socket), so connections wait on the sockets for a replacement.
  /// Sticky: each client address goes to its bucket's socket, and the
  /// buckets of a socket that cannot take connections now to healthy ones.
  pub fn steer(&mut self, pool: &ReusePortPool) {
    let holders: Vec<&[u32]> = pool.sockets().map(|(_, h)| h).collect();
    let weights = self.weights(&holders);
    let healthy: Vec<bool> = weights.iter().map(|&w| w >= HEALTHY).collect();
    let Some((first, _)) = pool.sockets().next() else {
      return;
    };
    // Where the kernel refuses (no SO_ATTACH_REUSEPORT_CBPF), its hash picks
    // and stealing alone moves connections off stuck sockets.
    match &mut self.sticky {
      Some(buckets) => {
        buckets.grow(weights.len());
        let table = buckets.table(&healthy);
        if self.attached != table {
          let _ = steer::attach_sticky(first.as_fd(), &table);
          self.attached = table.to_vec();
        }
      }
      None if self.attached != weights => {
        let _ = steer::attach(first.as_fd(), &weights);
        self.attached = weights;
      }
      None => {}
    }
  }
}

async fn steal_loop<D: Owner>(engine: D, key: String, group: Rc<RefCell<Group>>) {
  let mut delay = TICK;
  loop {
    tokio::time::sleep(delay).await;
    let tick = group.borrow_mut().tick();
    if tick.expired {
      // Closes the sockets; dropping the stealer ends this task.
      engine.close(&key);
      return;
    }
    // Quick looks while connections wait anywhere.
    delay = if tick.active {
      TICK
    } else {
      (delay * 2).min(IDLE_TICK_MAX)
    };
    if tick.took {
      engine.pump(&key);
    }
  }
}

/// Connections waiting in a listen socket's accept queue (Linux reports it
/// as `tcpi_unacked` for a listener); 0 when it cannot tell.
fn accept_queue(fd: RawFd) -> u32 {
  // SAFETY: tcp_info is plain data; getsockopt writes at most `len` bytes.
  unsafe {
    let mut info: libc::tcp_info = std::mem::zeroed();
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    let rc = libc::getsockopt(
      fd,
      libc::IPPROTO_TCP,
      libc::TCP_INFO,
      (&mut info as *mut libc::tcp_info).cast(),
      &mut len,
    );
    if rc == 0 {
      info.tcpi_unacked
    } else {
      0
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn stealer() -> Stealer {
    Stealer::default()
  }

  #[test]
  fn weights_favour_workers_with_fewer_open_connections() {
    let mut s = stealer();
    let holders: [&[u32]; 3] = [&[1], &[2], &[3, 4]];
    s.judge(&[0, 0, 0], &holders);
    assert_eq!(s.weights(&holders), vec![HEALTHY; 3]);
    // Worker 1 holds 10, worker 2 holds 7, the third socket's workers (a
    // reload's pair) 10 and 0: its fewer counts.
    s.open.extend([(1, 10), (2, 7), (3, 10), (4, 0)]);
    assert_eq!(
      s.weights(&holders),
      vec![
        HEALTHY,
        (1 + 3 * DEFICIT_STEP) * HEALTHY,
        (1 + 10 * DEFICIT_STEP) * HEALTHY
      ]
    );
    // A far-behind worker's weight is capped.
    s.open.insert(1, 1000);
    assert_eq!(
      s.weights(&holders)[2],
      (1 + DEFICIT_STEP * DEFICIT_MAX) * HEALTHY
    );
  }

  #[test]
  fn a_working_queue_is_never_stolen_from() {
    let mut s = stealer();
    let holders: [&[u32]; 2] = [&[1], &[2]];
    // Saturated but shrinking now and then: a worker that accepts.
    for round in 0..100u32 {
      let q = if round % 5 == 4 { 3 } else { 5 + round % 5 };
      let j = s.judge(&[q, 0], &holders);
      assert!(j.stuck.is_empty(), "round {round}");
      assert!(j.paused.is_empty());
    }
    assert_eq!(s.weights(&holders), vec![HEALTHY, HEALTHY]);
  }

  #[test]
  fn a_stalled_queue_is_stuck_after_stuck_ticks_then_suspect() {
    let mut s = stealer();
    let holders: [&[u32]; 2] = [&[1], &[2]];
    for _ in 0..STUCK_TICKS - 1 {
      assert!(s.judge(&[4, 0], &holders).stuck.is_empty());
    }
    let j = s.judge(&[4, 0], &holders);
    assert_eq!(j.stuck, vec![(0, 4)]);
    assert_eq!(j.paused, vec![1]);
    assert!(j.active);
    assert_eq!(s.weights(&holders), vec![PROBE, HEALTHY]);
    // Suspect: new arrivals are taken after SUSPECT_TICKS, not STUCK_TICKS.
    assert!(s.judge(&[1, 0], &holders).stuck.is_empty());
    assert_eq!(s.judge(&[1, 0], &holders).stuck, vec![(0, 1)]);
  }

  #[test]
  fn a_suspect_queue_is_trusted_again_when_it_shrinks_or_stays_empty() {
    let mut s = stealer();
    let holders: [&[u32]; 1] = [&[1]];
    for _ in 0..STUCK_TICKS {
      s.judge(&[2], &holders);
    }
    assert_eq!(s.weights(&holders), vec![PROBE]);
    // Its worker accepts again: the queue shrinks by itself.
    s.judge(&[3], &holders);
    s.judge(&[1], &holders);
    assert_eq!(s.weights(&holders), vec![HEALTHY]);
    assert!(s.judge(&[0], &holders).paused.is_empty());
    // Or: stuck again, then empty for TRUST_TICKS looks.
    for _ in 0..SUSPECT_TICKS + STUCK_TICKS {
      s.judge(&[2], &holders);
    }
    assert_eq!(s.weights(&holders), vec![PROBE]);
    for _ in 0..TRUST_TICKS {
      s.judge(&[0], &holders);
    }
    assert_eq!(s.weights(&holders), vec![HEALTHY]);
  }

  #[test]
  fn a_socket_nobody_holds_gets_nothing_and_is_emptied_soon() {
    let mut s = stealer();
    let holders: [&[u32]; 2] = [&[], &[2]];
    assert_eq!(s.weights(&holders), vec![0, HEALTHY]);
    assert!(s.judge(&[3, 0], &holders).stuck.is_empty());
    assert_eq!(s.judge(&[3, 0], &holders).stuck, vec![(0, 3)]);
  }
}
