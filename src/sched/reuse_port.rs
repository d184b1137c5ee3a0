//! SCHED_REUSEPORT: one SO_REUSEPORT listen socket per worker, created and
//! kept by the primary (the pool). The kernel spreads connections over the
//! sockets, so the primary is out of the data path; a worker that dies
//! leaves its socket (and the connections queued on it) to the worker that
//! replaces it.
//!
//! Steering. Left alone the kernel hashes each new connection over every
//! socket of the group, including the socket of a worker that is gone or
//! stuck. The primary instead attaches a classic BPF program to the group
//! (SO_ATTACH_REUSEPORT_CBPF) that picks a socket at random by weight, and
//! attaches a new one whenever the weights change: a socket nobody accepts
//! on gets weight 0 and no new connections at all. The program returns an
//! index into the group, which is the order in which the sockets started
//! listening; the primary listens on each socket itself as it creates it,
//! so that order is the pool's.
//!
//! Work stealing. Every tick the stealer looks at each socket's accept
//! queue (TCP_INFO on the copy the primary keeps): a queue that stays
//! non-empty without shrinking for a few ticks belongs to a worker that is
//! stuck (or gone), so the primary accepts those connections itself and the
//! engine hands them to the other workers with `newconn`, as round-robin
//! does. A healthy worker's queue is never touched: the data path stays the
//! kernel's. The stealer also steers the group: a socket no worker holds
//! (its worker left or died) gets no new connections while other workers
//! can take them, and a stuck worker's socket only a trickle, to see whether
//! it accepts again. The decisions (`Stealer::judge`, `Stealer::weights`)
//! are plain functions of the queue lengths, tested below.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::libc::{
  self, sock_filter, sock_fprog, BPF_ABS, BPF_ALU, BPF_B, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K,
  BPF_LD, BPF_MISC, BPF_MOD, BPF_MUL, BPF_RET, BPF_RSH, BPF_TAX, BPF_W, BPF_X, BPF_XOR, SKF_AD_OFF,
  SKF_AD_RANDOM, SKF_NET_OFF,
};
use nix::sys::socket::{accept4, SockFlag};
use tokio::task::{spawn_local, JoinHandle};

use super::listen::Target;
use super::owner::Owner;
use super::round_robin_handle::Handout;
use super::sticky::{Buckets, BUCKETS, HASH_MUL};
use super::Spread;

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

// Steering: the group's BPF programs.

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h; the libc crate has it
/// for Android only).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// An index past the group's end: the kernel falls back to its own hash.
const KERNEL_PICKS: u32 = u32::MAX;

fn insn(code: u32, jt: u8, jf: u8, k: u32) -> sock_filter {
  sock_filter {
    code: code as u16,
    jt,
    jf,
    k,
  }
}

/// A program that returns socket index `i` with probability
/// `weights[i] / sum(weights)`; with every weight 0, the kernel's hash.
pub fn program(weights: &[u32]) -> Vec<sock_filter> {
  let picks: Vec<(u32, u32)> = weights
    .iter()
    .enumerate()
    .filter(|&(_, &w)| w > 0)
    .map(|(i, &w)| (i as u32, w))
    .collect();
  let total: u32 = picks.iter().map(|&(_, w)| w).sum();
  let Some(&(last, _)) = picks.last() else {
    return vec![insn(BPF_RET | BPF_K, 0, 0, KERNEL_PICKS)];
  };
  // A = random % total
  let mut prog = vec![
    insn(
      BPF_LD | BPF_W | BPF_ABS,
      0,
      0,
      (SKF_AD_OFF + SKF_AD_RANDOM) as u32,
    ),
    insn(BPF_ALU | BPF_MOD | BPF_K, 0, 0, total),
  ];
  // Then, for each socket but the last: if A < its upper bound, return it.
  let mut bound = 0;
  for &(index, weight) in &picks[..picks.len() - 1] {
    bound += weight;
    prog.push(insn(BPF_JMP | BPF_JGE | BPF_K, 1, 0, bound));
    prog.push(insn(BPF_RET | BPF_K, 0, 0, index));
  }
  prog.push(insn(BPF_RET | BPF_K, 0, 0, last));
  prog
}

/// A program that returns socket `table[bucket(client address)]`, reading
/// the source address from the SYN's IPv4 or IPv6 header.
pub fn sticky_program(table: &[u32; BUCKETS]) -> Vec<sock_filter> {
  let net = |off: i32| (SKF_NET_OFF + off) as u32;
  let ld_w = |off| insn(BPF_LD | BPF_W | BPF_ABS, 0, 0, net(off));
  let xor_x = insn(BPF_ALU | BPF_XOR | BPF_X, 0, 0, 0);
  let tax = insn(BPF_MISC | BPF_TAX, 0, 0, 0);
  let mut prog = vec![
    // A = IP version (the first nibble of the network header)
    insn(BPF_LD | BPF_B | BPF_ABS, 0, 0, net(0)),
    insn(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 4),
    // IPv6: skip the IPv4 load and its jump
    insn(BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 6),
    ld_w(12),
    // to the mixing, past the 10 IPv6 instructions
    insn(BPF_JMP | BPF_JA, 0, 0, 10),
    ld_w(8),
    tax,
    ld_w(12),
    xor_x,
    tax,
    ld_w(16),
    xor_x,
  ];
  // ...the last IPv6 word, then the mixing both paths share.
  prog.push(tax);
  prog.push(ld_w(20));
  prog.push(xor_x);
  prog.push(insn(BPF_ALU | BPF_MUL | BPF_K, 0, 0, HASH_MUL));
  prog.push(insn(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 26));
  for (b, &index) in table.iter().enumerate().take(BUCKETS - 1) {
    prog.push(insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, b as u32));
    prog.push(insn(BPF_RET | BPF_K, 0, 0, index));
  }
  prog.push(insn(BPF_RET | BPF_K, 0, 0, table[BUCKETS - 1]));
  prog
}

/// Attaches `weights`' program to the SO_REUSEPORT group `fd` belongs to,
/// replacing the one before.
pub fn attach(fd: BorrowedFd<'_>, weights: &[u32]) -> io::Result<()> {
  attach_program(fd, program(weights))
}

/// Attaches the sticky program for `table` (see [`sticky_program`]).
pub fn attach_sticky(fd: BorrowedFd<'_>, table: &[u32; BUCKETS]) -> io::Result<()> {
  attach_program(fd, sticky_program(table))
}

fn attach_program(fd: BorrowedFd<'_>, mut prog: Vec<sock_filter>) -> io::Result<()> {
  let fprog = sock_fprog {
    len: prog.len() as u16,
    filter: prog.as_mut_ptr(),
  };
  // SAFETY: fprog points at `prog`, alive for the call; the kernel copies it.
  let rc = unsafe {
    libc::setsockopt(
      fd.as_raw_fd(),
      libc::SOL_SOCKET,
      SO_ATTACH_REUSEPORT_CBPF,
      (&fprog as *const sock_fprog).cast(),
      std::mem::size_of::<sock_fprog>() as libc::socklen_t,
    )
  };
  if rc == 0 {
    Ok(())
  } else {
    Err(io::Error::last_os_error())
  }
}

// The stealer.

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
          let _ = attach_sticky(first.as_fd(), &table);
          self.attached = table.to_vec();
        }
      }
      None if self.attached != weights => {
        let _ = attach(first.as_fd(), &weights);
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
mod pool_tests {
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

#[cfg(test)]
mod steering_tests {
  use super::*;
  use crate::sched::listen::{self, Target};
  use crate::sched::sticky::bucket;
  use serde_json::json;
  use std::net::{TcpListener, TcpStream};
  use std::os::fd::{AsFd, OwnedFd};

  /// Three listening sockets of one group on a fresh port.
  fn group() -> (u16, Vec<TcpListener>) {
    let target = |port| {
      Target::from_query(&json!({"address": "127.0.0.1", "port": port, "addressType": 4})).unwrap()
    };
    let first = listen::listen_reuse_port(&target(0), 64).unwrap().fd;
    let port = listen::sockname(&first).unwrap()["port"].as_u64().unwrap() as u16;
    let mut socks = vec![first];
    for _ in 0..2 {
      socks.push(listen::listen_reuse_port(&target(port), 64).unwrap().fd);
    }
    let socks = socks
      .into_iter()
      .map(|fd: OwnedFd| TcpListener::from(fd))
      .collect();
    (port, socks)
  }

  /// Connects `n` times; how many connections each socket got.
  fn spread(port: u16, socks: &[TcpListener], n: usize) -> Vec<usize> {
    let clients: Vec<_> = (0..n)
      .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
      .collect();
    // The handshake may finish a moment after connect() returns.
    let mut counts = vec![0; socks.len()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while counts.iter().sum::<usize>() < n && std::time::Instant::now() < deadline {
      for (count, s) in counts.iter_mut().zip(socks) {
        *count += std::iter::from_fn(|| s.accept().ok()).count();
      }
      std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(clients);
    counts
  }

  #[test]
  fn weight_zero_sockets_get_nothing_and_the_rest_share() {
    let (port, socks) = group();
    attach(socks[0].as_fd(), &[0, 1, 1]).unwrap();
    let got = spread(port, &socks, 60);
    assert_eq!(got[0], 0, "{got:?}");
    assert_eq!(got[1] + got[2], 60, "{got:?}");
    assert!(got[1] > 0 && got[2] > 0, "{got:?}");
    // A new program replaces the old one, attached through any member.
    attach(socks[2].as_fd(), &[1, 0, 0]).unwrap();
    assert_eq!(spread(port, &socks, 20), vec![20, 0, 0]);
  }

  /// Connects from `from` (a loopback address) `n` times; the socket each got.
  fn spread_from(port: u16, socks: &[TcpListener], from: std::net::IpAddr, n: usize) -> Vec<usize> {
    use std::net::SocketAddr;
    let mut got = Vec::new();
    for _ in 0..n {
      let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
      )
      .unwrap();
      let local = nix::sys::socket::SockaddrIn::from(match SocketAddr::new(from, 0) {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!(),
      });
      nix::sys::socket::bind(sock.as_raw_fd(), &local).unwrap();
      let client = TcpStream::from(sock);
      let remote = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, port);
      nix::sys::socket::connect(client.as_raw_fd(), &remote).unwrap();
      let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
      'wait: while std::time::Instant::now() < deadline {
        for (i, s) in socks.iter().enumerate() {
          while let Ok((_, peer)) = s.accept() {
            if peer.ip() == from {
              got.push(i);
              break 'wait;
            }
          }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
      }
    }
    got
  }

  #[test]
  fn sticky_program_sends_each_client_address_to_its_buckets_socket() {
    let (port, socks) = group();
    for s in &socks {
      s.set_nonblocking(true).unwrap();
    }
    let mut table = [0u32; BUCKETS];
    for (b, t) in table.iter_mut().enumerate() {
      *t = (b * 3 / BUCKETS) as u32;
    }
    attach_sticky(socks[0].as_fd(), &table).unwrap();
    let mut seen = std::collections::HashSet::new();
    for last in 2..14u8 {
      let from = std::net::IpAddr::from([127, 0, 0, last]);
      let want = table[bucket(from)] as usize;
      assert_eq!(
        spread_from(port, &socks, from, 3),
        vec![want; 3],
        "client {from}"
      );
      seen.insert(want);
    }
    assert_eq!(seen.len(), 3, "addresses spread over every socket");
  }

  #[test]
  fn bucket_hashes_ipv4_and_ipv6_alike_in_range() {
    let v4: std::net::IpAddr = "10.1.2.3".parse().unwrap();
    assert!(bucket(v4) < BUCKETS);
    let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
    assert!(bucket(v6) < BUCKETS);
    let mapped: std::net::IpAddr = "::ffff:10.1.2.3".parse().unwrap();
    assert_eq!(bucket(mapped), bucket(v4));
    // Neighbouring addresses land in different buckets (Fibonacci hashing).
    let b: std::collections::HashSet<_> = (1..=16u8)
      .map(|i| bucket(std::net::IpAddr::from([127, 0, 0, i])))
      .collect();
    assert!(b.len() >= 12, "{b:?}");
  }

  #[test]
  fn all_zero_leaves_the_pick_to_the_kernel() {
    let (port, socks) = group();
    attach(socks[1].as_fd(), &[0, 0, 0]).unwrap();
    assert_eq!(spread(port, &socks, 30).iter().sum::<usize>(), 30);
  }
}

#[cfg(test)]
mod stealer_tests {
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
