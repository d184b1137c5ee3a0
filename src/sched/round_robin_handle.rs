//! SCHED_RR's listen handle (Node's RoundRobinHandle): the primary listens,
//! accepts off the JS thread and queues each connection for the engine to
//! hand to a worker with `newconn`; the primary's copy closes only after the
//! worker said `accepted`. The bookkeeping is `round_robin`; sending is the
//! engine's, reached through [`Owner`].

use std::cell::RefCell;
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

use super::handout::Handout;
use super::listen::{self, Bound, BoundPath};
use super::owner::Owner;
use super::sticky::bucket;
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
