//! The one interface the engine has to a listen key's socket, whatever the
//! strategy, as Node's RoundRobinHandle and SharedHandle share `add`,
//! `remove` and `has`: create it for a `queryServer`, add a worker (and get
//! what to send it), remove a worker, and, for the strategies where the
//! primary hands out connections itself, the queue of those connections.
//! Only this file tells the strategies apart.

use std::cell::{RefCell, RefMut};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::Value;

use super::listen::{self, Target};
use super::owner::Owner;
use super::reuse_port::ReusePortPool;
use super::reuse_port::{Group, Stealer, Watcher};
use super::round_robin_handle::Handout;
use super::round_robin_handle::RrHandle;
use super::shared::SharedHandle;
use super::{Spread, SCHED_NONE, SCHED_REUSEPORT};
use crate::error::Result;

/// The child_process type a TCP or unix listen socket travels as.
const NET_NATIVE: &str = "net.Native";

/// One listen key's socket(s) and the workers holding them.
pub(crate) struct Handle {
  kind: Kind,
  /// The servers' data (`_getServerData`), as Node keeps it per handle.
  data: Value,
}

enum Kind {
  /// SCHED_NONE, and UDP always: one socket, sent to every worker.
  Shared(SharedHandle),
  /// SCHED_RR (and unix paths under SCHED_REUSEPORT): the primary accepts.
  RoundRobin(RrHandle),
  /// SCHED_REUSEPORT: a socket per worker, the stealer watching them.
  ReusePort {
    group: Rc<RefCell<Group>>,
    _watcher: Watcher,
  },
}

/// What to answer the worker that was added.
pub(crate) struct Added {
  /// The listen socket to send it, with its child_process type.
  pub fd: Option<(Arc<OwnedFd>, &'static str)>,
  /// Round-robin: the address the worker reports as its own.
  pub sockname: Option<Value>,
}

impl Handle {
  /// The socket for a first `queryServer` on `key`, by policy and target.
  pub fn create<D: Owner>(
    engine: &D,
    policy: u32,
    spread: Spread,
    key: &str,
    target: Target,
    backlog: i32,
    data: Value,
  ) -> Result<Handle> {
    let kind = if policy == SCHED_REUSEPORT && matches!(target, Target::Tcp { .. }) {
      // Nobody else may be listening there. SO_REUSEPORT would let a second
      // app run by the same user join the group and take a share of the
      // connections; a plain bind first fails as Node's would (EADDRINUSE).
      if matches!(target, Target::Tcp { port, .. } if port != 0) {
        drop(listen::bind_target(&target)?);
      }
      let first = listen::listen_reuse_port(&target, backlog)?;
      // Port 0: every later socket of the pool binds the port the first got.
      let port = listen::sockname(&first.fd)
        .and_then(|n| n["port"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0);
      let mut pool = ReusePortPool::default();
      pool.add_free(first.fd);
      let group = Rc::new(RefCell::new(Group {
        pool,
        target: target.with_port(port),
        stealer: Stealer::new(spread),
      }));
      Kind::ReusePort {
        _watcher: Watcher::start(engine, key, &group),
        group,
      }
    } else {
      let bound = listen::bind_target(&target)?;
      let inherited = matches!(target, Target::Fd(_));
      if let Target::Udp { .. } = target {
        // As Node: UDP is always shared (there is nothing to hand out but datagrams).
        Kind::Shared(SharedHandle::new(bound, "dgram.Native"))
      } else if policy != SCHED_NONE {
        // Unix sockets have no SO_REUSEPORT: under that policy they are round-robin.
        Kind::RoundRobin(RrHandle::new(
          engine, key, bound, backlog, inherited, spread,
        )?)
      } else {
        Kind::Shared(SharedHandle::new(bound, NET_NATIVE))
      }
    };
    Ok(Handle { kind, data })
  }

  pub fn data(&self) -> &Value {
    &self.data
  }

  /// Whether `worker` holds it (a server of that worker listens through it).
  pub fn has(&self, worker: u32) -> bool {
    match &self.kind {
      Kind::Shared(h) => h.has(worker),
      Kind::RoundRobin(h) => h.handout.borrow().has(worker),
      Kind::ReusePort { group, .. } => group.borrow().pool.has(worker),
    }
  }

  /// A worker listens here. SO_REUSEPORT: it takes the socket of the worker
  /// it replaces in a reload (`predecessor`), else a dead worker's (with the
  /// connections queued there), else a new one on the same port.
  pub fn add(&mut self, worker: u32, predecessor: Option<u32>, backlog: i32) -> Result<Added> {
    Ok(match &mut self.kind {
      Kind::Shared(h) => {
        h.add(worker);
        Added {
          fd: Some((h.fd.clone(), h.kind)),
          sockname: None,
        }
      }
      Kind::RoundRobin(h) => {
        h.handout.borrow_mut().add(worker);
        Added {
          fd: None,
          sockname: h.sockname.clone(),
        }
      }
      Kind::ReusePort { group, .. } => {
        let Group {
          pool,
          target,
          stealer,
        } = &mut *group.borrow_mut();
        let holds_one = pool.has(worker)
          || predecessor.is_some_and(|p| pool.share(worker, p).is_some())
          || pool.take_free(worker).is_some();
        if !holds_one {
          pool.add(listen::listen_reuse_port(target, backlog)?.fd, worker);
        }
        stealer.handout.add(worker);
        stealer.steer(pool);
        Added {
          fd: pool.socket_of(worker).map(|s| (s, NET_NATIVE)),
          sockname: None,
        }
      }
    })
  }

  /// True when no worker holds it any more and it should close. `on_purpose`:
  /// the worker closed its server or is leaving, rather than crashed (a
  /// crashed worker's SO_REUSEPORT socket waits for a replacement).
  pub fn remove(&mut self, worker: u32, on_purpose: bool) -> bool {
    match &mut self.kind {
      Kind::Shared(h) => h.remove(worker),
      Kind::RoundRobin(h) => h.handout.borrow_mut().remove(worker),
      Kind::ReusePort { group, .. } => {
        let Group { pool, stealer, .. } = &mut *group.borrow_mut();
        stealer.handout.remove(worker);
        stealer.open.remove(&worker);
        let close = pool.remove(worker, on_purpose);
        stealer.steer(pool);
        close
      }
    }
  }

  /// The worker's process is gone. SO_REUSEPORT: steer new connections off
  /// its sockets now, before 'exit' reaches JS (where a replacement may be
  /// forked), rather than once its channel's end is read. True when the
  /// handle should close.
  pub fn worker_exited(&mut self, worker: u32, on_purpose: bool) -> bool {
    match self.kind {
      Kind::ReusePort { .. } => self.remove(worker, on_purpose),
      _ => false,
    }
  }

  /// The connections the primary hands out itself: round-robin's, or those
  /// stolen from stuck SO_REUSEPORT queues.
  pub fn handout(&self) -> Option<RefMut<'_, Handout<Arc<OwnedFd>>>> {
    Some(match &self.kind {
      Kind::RoundRobin(h) => h.handout.borrow_mut(),
      Kind::ReusePort { group, .. } => RefMut::map(group.borrow_mut(), |g| &mut g.stealer.handout),
      Kind::Shared(_) => return None,
    })
  }

  /// Worker `worker`'s hook reports `open` connections open and `closed`
  /// closed since its last report: round-robin's counts (least-connections)
  /// and SO_REUSEPORT's steering weights follow them.
  pub fn connections(&mut self, worker: u32, open: u32, closed: u32) {
    match &mut self.kind {
      Kind::RoundRobin(h) => h.handout.borrow_mut().closed(worker, closed),
      Kind::ReusePort { group, .. } => {
        let Group { pool, stealer, .. } = &mut *group.borrow_mut();
        if pool.has(worker) {
          stealer.open.insert(worker, open);
          stealer.handout.closed(worker, closed);
          // Re-weigh at once rather than at the stealer's next look.
          stealer.steer(pool);
        }
      }
      Kind::Shared(_) => {}
    }
  }

  /// The worker answered one `newconn` (accepted it or not).
  pub fn settled(&mut self, worker: u32) {
    match &mut self.kind {
      Kind::RoundRobin(h) => h.settled(worker),
      Kind::ReusePort { group, .. } => group.borrow_mut().stealer.handout.settled(worker),
      Kind::Shared(_) => {}
    }
  }
}

#[cfg(test)]
mod tests {
  use std::cell::RefCell;
  use std::net::TcpStream;
  use std::os::fd::AsRawFd;
  use std::rc::Rc;
  use std::time::Duration;

  use serde_json::json;

  use super::*;
  use crate::sched::SCHED_RR;

  /// The engine's side, recorded: what the handle's tasks asked of it.
  #[derive(Clone, Default)]
  struct Recorder(Rc<RefCell<Vec<String>>>);

  impl Owner for Recorder {
    fn pump(&self, key: &str) {
      self.0.borrow_mut().push(format!("pump {key}"));
    }

    fn close(&self, key: &str) {
      self.0.borrow_mut().push(format!("close {key}"));
    }
  }

  /// On a current-thread runtime, as in the engine (the tasks are local).
  fn engine_thread(f: impl std::future::Future<Output = ()>) {
    let rt = tokio::runtime::Builder::new_current_thread()
      .enable_all()
      .build()
      .unwrap();
    tokio::task::LocalSet::new().block_on(&rt, f);
  }

  fn tcp() -> Target {
    Target::from_query(&json!({"address": "127.0.0.1", "port": 0, "addressType": 4})).unwrap()
  }

  fn create(policy: u32, target: Target, rec: &Recorder) -> Handle {
    Handle::create(
      rec,
      policy,
      Spread::default(),
      "k",
      target,
      511,
      json!(null),
    )
    .unwrap()
  }

  fn fd_of(added: &Added) -> (i32, &'static str) {
    let (fd, kind) = added.fd.as_ref().expect("a socket to send");
    (fd.as_raw_fd(), kind)
  }

  #[test]
  fn shared_sends_one_socket_to_every_worker_and_closes_with_the_last() {
    engine_thread(async {
      let rec = Recorder::default();
      let mut h = create(SCHED_NONE, tcp(), &rec);
      let a = h.add(1, None, 511).unwrap();
      let b = h.add(2, None, 511).unwrap();
      assert_eq!(fd_of(&a), fd_of(&b));
      assert_eq!(fd_of(&a).1, NET_NATIVE);
      assert!(h.has(1) && h.has(2) && !h.has(3));
      assert!(h.handout().is_none());
      assert!(!h.remove(1, false));
      assert!(h.remove(2, true));
    });
  }

  #[test]
  fn udp_is_shared_under_every_policy() {
    engine_thread(async {
      let rec = Recorder::default();
      let udp =
        Target::from_query(&json!({"address": "127.0.0.1", "port": 0, "addressType": "udp4"}))
          .unwrap();
      for policy in [SCHED_NONE, SCHED_RR, SCHED_REUSEPORT] {
        let mut h = create(policy, udp.clone(), &rec);
        assert_eq!(fd_of(&h.add(1, None, 511).unwrap()).1, "dgram.Native");
      }
    });
  }

  #[test]
  fn round_robin_accepts_itself_and_queues_for_the_engine() {
    engine_thread(async {
      let rec = Recorder::default();
      let mut h = create(SCHED_RR, tcp(), &rec);
      let added = h.add(7, None, 511).unwrap();
      assert!(added.fd.is_none(), "round-robin sends no listen socket");
      let port = added.sockname.expect("the address the worker reports")["port"]
        .as_u64()
        .unwrap();
      let client = TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
      for _ in 0..200 {
        if !rec.0.borrow().is_empty() {
          break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
      }
      assert_eq!(*rec.0.borrow(), vec!["pump k".to_string()]);
      let mut rr = h.handout().unwrap();
      assert!(matches!(rr.next_assignment(), Some((7, _))));
      drop(rr);
      drop(client);
      assert!(h.remove(7, true));
    });
  }

  #[test]
  fn reuseport_sockets_pass_to_replacements_and_heirs() {
    engine_thread(async {
      let rec = Recorder::default();
      let mut h = create(SCHED_REUSEPORT, tcp(), &rec);
      let one = fd_of(&h.add(1, None, 511).unwrap()).0;
      let two = fd_of(&h.add(2, None, 511).unwrap()).0;
      assert_ne!(one, two, "a socket per worker");
      // Worker 1 crashes: its socket (and queue) waits for a replacement.
      assert!(!h.worker_exited(1, false));
      assert!(!h.has(1));
      assert_eq!(fd_of(&h.add(3, None, 511).unwrap()).0, one);
      // A reload: worker 4 shares the socket of the worker it replaces.
      assert_eq!(fd_of(&h.add(4, Some(2), 511).unwrap()).0, two);
      assert!(!h.remove(2, true));
      assert!(!h.remove(3, true));
      assert!(h.remove(4, true), "the last holder left on purpose");
    });
  }

  #[test]
  fn a_reuseport_key_nobody_holds_is_closed_after_the_grace() {
    engine_thread(async {
      let rec = Recorder::default();
      let mut h = create(SCHED_REUSEPORT, tcp(), &rec);
      h.add(1, None, 511).unwrap();
      assert!(!h.worker_exited(1, false));
      tokio::time::sleep(Duration::from_millis(300)).await;
      assert!(rec.0.borrow().is_empty(), "still within the grace");
      tokio::time::sleep(Duration::from_millis(700)).await;
      assert_eq!(*rec.0.borrow(), vec!["close k".to_string()]);
    });
  }
}
