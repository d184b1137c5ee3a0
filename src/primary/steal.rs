//! SCHED_REUSEPORT work stealing. The kernel spreads connections over the
//! workers' SO_REUSEPORT sockets by a hash, blind to whether a worker is
//! accepting. Every tick the engine looks at each socket's accept queue
//! (TCP_INFO on the copy it keeps): a queue that stays non-empty without
//! shrinking for a few ticks belongs to a worker that is stuck (or gone), so
//! the engine accepts those connections itself and hands them to the other
//! workers with `newconn`, as round-robin does. A healthy worker's queue is
//! never touched: the data path stays the kernel's.
//!
//! The stealer also steers the group (`sched::steer`): a socket no worker
//! holds (its worker left or died) gets no new connections while other
//! workers can take them, and a stuck worker's socket only a trickle, to see
//! whether it accepts again.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::socket::{accept4, SockFlag};
use serde_json::Value;
use tokio::task::{spawn_local, JoinHandle};

use super::dispatch;
use super::state::{Handle, Shared};
use crate::sched::reuse_port::ReusePortPool;
use crate::sched::round_robin::RoundRobin;
use crate::sched::steer;

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
/// Steering weight of a socket whose worker accepts.
const HEALTHY: u32 = 8;
/// Steering weight of a suspect socket: a probe, taken after SUSPECT_TICKS
/// if its worker still does not accept.
const PROBE: u32 = 1;

/// What the stealer remembers of one socket.
#[derive(Default)]
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

pub(crate) struct Stealer {
  /// Hands stolen connections to the workers of the pool that are not stuck.
  pub rr: RoundRobin<Arc<OwnedFd>>,
  /// The key as a JSON string literal, ready to splice into `newconn`.
  pub key_json: String,
  /// One per socket of the pool, in the pool's order (sockets are only ever added).
  queues: Vec<Watch>,
  /// The steering weights last attached to the group (empty: none yet).
  weights: Vec<u32>,
  /// Since when no worker at all is there.
  orphaned: Option<Instant>,
  task: JoinHandle<()>,
}

impl Stealer {
  pub fn new(state: &Shared, key: &str) -> Stealer {
    Stealer {
      rr: RoundRobin::default(),
      key_json: Value::from(key).to_string(),
      queues: Vec::new(),
      weights: Vec::new(),
      orphaned: None,
      task: spawn_local(steal_loop(state.clone(), key.to_string())),
    }
  }

  /// One look at every socket of `pool`: pauses the workers whose queue is
  /// stuck and takes as many of their connections as the others have room
  /// for. Returns whether it took any, and whether anything is going on (a
  /// queue holds connections, or a worker is suspect) that wants quick looks.
  fn look(&mut self, pool: &ReusePortPool) -> (bool, bool) {
    let mut stuck = Vec::new();
    let mut paused = Vec::new();
    let mut active = false;
    for (i, (fd, holders)) in pool.slots().enumerate() {
      let queued = accept_queue(fd.as_raw_fd());
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
        stuck.push((fd.clone(), queued));
        // What is taken now is gone from the queue: start counting afresh.
        w.suspect = true;
        w.stalled = 0;
        w.last = 0;
      }
      if w.suspect {
        paused.extend_from_slice(holders);
      }
      active |= queued > 0 || w.suspect;
    }
    for (_, holders) in pool.slots() {
      for &w in holders {
        self.rr.set_paused(w, paused.contains(&w));
      }
    }
    self.steer(pool);
    let mut took = false;
    for (fd, queued) in stuck {
      for _ in 0..queued {
        if self.rr.room() == 0 {
          return (took, active);
        }
        let Ok(raw) = accept4(
          fd.as_raw_fd(),
          SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        ) else {
          break;
        };
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        self.rr.push(Arc::new(unsafe { OwnedFd::from_raw_fd(raw) }));
        took = true;
      }
    }
    (took, active)
  }

  /// Re-steers the group when who should get new connections changed: the
  /// sockets of healthy workers share them, a suspect one gets a probe, one
  /// nobody holds gets none. With no worker at all the kernel's own hash
  /// decides, so connections wait on the sockets for a replacement.
  pub fn steer(&mut self, pool: &ReusePortPool) {
    let weights: Vec<u32> = pool
      .slots()
      .enumerate()
      .map(|(i, (_, holders))| match self.queues.get(i) {
        _ if holders.is_empty() => 0,
        Some(w) if w.suspect => PROBE,
        _ => HEALTHY,
      })
      .collect();
    if weights == self.weights {
      return;
    }
    let Some((first, _)) = pool.slots().next() else {
      return;
    };
    // Where the kernel refuses (no SO_ATTACH_REUSEPORT_CBPF), its hash picks
    // and stealing alone moves connections off stuck sockets.
    let _ = steer::attach(first.as_fd(), &weights);
    self.weights = weights;
  }
}

impl Drop for Stealer {
  fn drop(&mut self) {
    self.task.abort();
  }
}

async fn steal_loop(state: Shared, key: String) {
  let mut delay = TICK;
  loop {
    tokio::time::sleep(delay).await;
    let mut st = state.borrow_mut();
    let st = &mut *st;
    let (took, active) = match st.handles.get_mut(&key) {
      Some(Handle::ReusePort(pool, _, _, stealer)) => {
        // Per key: a port only a dead worker listened on (its own admin
        // port, say) closes even while other workers serve other keys.
        let nobody = pool.slots().all(|(_, holders)| holders.is_empty());
        stealer.orphaned = nobody.then(|| stealer.orphaned.unwrap_or_else(Instant::now));
        if stealer
          .orphaned
          .is_some_and(|t| t.elapsed() >= ORPHAN_GRACE)
        {
          // Closes the sockets; dropping the stealer ends this task.
          st.handles.remove(&key);
          return;
        }
        stealer.look(pool)
      }
      _ => return,
    };
    // Quick looks while connections wait anywhere.
    delay = if active {
      TICK
    } else {
      (delay * 2).min(IDLE_TICK_MAX)
    };
    if took {
      dispatch::pump(st, &key);
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
