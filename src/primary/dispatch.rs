//! SCHED_RR in the engine: accept on the primary's listen socket off the JS
//! thread and hand each connection to a worker with `newconn`, closing the
//! primary's copy only after the worker said `accepted`.

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

use super::state::{Handle, Shared, State};
use crate::error::{Error, Result};
use crate::ipc::channel::watch;
use crate::sched::listen::{self, Bound, BoundPath};
use crate::sched::round_robin::RoundRobin;

/// How long accepting pauses when the process is out of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

pub(crate) struct RrHandle {
  pub rr: RoundRobin<Arc<OwnedFd>>,
  /// The key as a JSON string literal, ready to splice into `newconn`.
  key_json: String,
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
  pub fn new(
    state: &Shared,
    key: &str,
    bound: Bound,
    backlog: i32,
    inherited: bool,
  ) -> Result<RrHandle> {
    let Bound { fd, path } = bound;
    listen::start_listening(&fd, backlog)?;
    let sockname = listen::sockname(&fd);
    let listener = Rc::new(
      watch(fd, Interest::READABLE)
        .map_err(|e| Error::from_io(&e, "epoll_ctl", "listen socket"))?,
    );
    let room = Rc::new(Notify::new());
    let task = spawn_local(accept_loop(
      state.clone(),
      key.to_string(),
      listener.clone(),
      room.clone(),
    ));
    Ok(RrHandle {
      rr: RoundRobin::default(),
      key_json: Value::from(key).to_string(),
      sockname,
      listener,
      room,
      task,
      _path: path,
      inherited,
    })
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

async fn accept_loop(state: Shared, key: String, listener: Rc<AsyncFd<OwnedFd>>, room: Rc<Notify>) {
  loop {
    // Accept only while some worker has room: otherwise connections wait in
    // the kernel's backlog rather than in the primary's memory.
    loop {
      let free = match state.borrow().handles.get(&key) {
        Some(Handle::RoundRobin(h, _)) => h.rr.room(),
        _ => return,
      };
      if free > 0 {
        break;
      }
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
        let mut st = state.borrow_mut();
        if let Some(Handle::RoundRobin(h, _)) = st.handles.get_mut(&key) {
          h.rr.push(conn);
        }
        pump(&mut st, &key);
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

/// The connections a handle hands out itself with `newconn`, and its key as
/// a JSON literal: round-robin's, or those stolen from stuck SO_REUSEPORT
/// queues.
fn dispatcher(handle: Option<&mut Handle>) -> Option<(&mut RoundRobin<Arc<OwnedFd>>, &str)> {
  match handle? {
    Handle::RoundRobin(h, _) => Some((&mut h.rr, &h.key_json)),
    Handle::ReusePort(_, _, _, stealer) => Some((&mut stealer.rr, &stealer.key_json)),
    Handle::Shared(..) => None,
  }
}

/// Hands queued connections to workers with room.
pub(crate) fn pump(st: &mut State, key: &str) {
  loop {
    let Some((rr, key_json)) = dispatcher(st.handles.get_mut(key)) else {
      return;
    };
    let Some((worker, conn)) = rr.next_assignment() else {
      return;
    };
    let slot = st.workers.get_mut(&worker).filter(|s| s.connected);
    let Some(slot) = slot else {
      // Cannot happen while handles drop workers on disconnect; if it did,
      // keep the connection and forget the worker.
      rr.settled(worker);
      rr.push_front(conn);
      rr.remove(worker);
      continue;
    };
    let seq = slot.next_seq();
    let bytes = if slot.advanced {
      slot.encode(&serde_json::json!({
        "cmd": "NODE_HANDLE", "type": "net.Native",
        "msg": {"cmd": "NODE_CLUSTER", "act": "newconn", "key": key, "seq": seq}
      }))
    } else {
      // The hot path: the JSON envelope written directly, key pre-escaped.
      format!(
        "{{\"cmd\":\"NODE_HANDLE\",\"type\":\"net.Native\",\"msg\":{{\"cmd\":\"NODE_CLUSTER\",\"act\":\"newconn\",\"key\":{},\"seq\":{seq}}}}}\n",
        key_json
      )
      .into_bytes()
    };
    slot.newconns.insert(seq, (key.to_string(), conn.clone()));
    slot.dispatched += 1;
    slot.send(bytes.into(), Some(conn));
  }
}

/// The worker answered a `newconn`. Accepted: the primary's copy closes.
/// Refused: the connection goes to another worker (it was never read).
pub(crate) fn on_newconn_reply(st: &mut State, id: u32, seq: u64, accepted: bool) {
  let Some(slot) = st.workers.get_mut(&id) else {
    return;
  };
  let Some((key, conn)) = slot.newconns.remove(&seq) else {
    return;
  };
  match st.handles.get_mut(&key) {
    Some(Handle::RoundRobin(h, _)) => {
      h.rr.settled(id);
      h.room.notify_one();
    }
    Some(Handle::ReusePort(_, _, _, stealer)) => stealer.rr.settled(id),
    _ => {}
  }
  if !accepted {
    requeue(st, id, &key, conn);
  }
}

/// Puts back a connection `from` did not take, if another worker can have it.
pub(crate) fn requeue(st: &mut State, from: u32, key: &str, conn: Arc<OwnedFd>) {
  if let Some((rr, _)) = dispatcher(st.handles.get_mut(key)) {
    // A lone worker that refused would only refuse again (Node loops here).
    if rr.has_other_than(from) {
      rr.push_front(conn);
      pump(st, key);
    }
  }
}
