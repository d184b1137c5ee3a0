//! Handing out connections with `newconn`: the round-robin handle's (which
//! the primary accepts) and those the stealer took off stuck SO_REUSEPORT
//! queues; the primary's copy closes only after the worker said `accepted`.
//! Also the engine's side of [`Owner`], through which a handle's own
//! tasks reach the engine.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::state::{Shared, State};
use crate::sched::handle::Handle;
use crate::sched::owner::Owner;

/// The engine, as a listen handle's tasks see it.
#[derive(Clone)]
pub(crate) struct EngineLink(Shared);

impl EngineLink {
  pub fn new(state: &Shared) -> Self {
    EngineLink(state.clone())
  }
}

impl Owner for EngineLink {
  fn pump(&self, key: &str) {
    pump(&mut self.0.borrow_mut(), key);
  }

  fn close(&self, key: &str) {
    // Dropped outside the borrow: its tasks end, its sockets close.
    let handle = self.0.borrow_mut().handles.remove(key);
    drop(handle);
  }
}

/// Hands queued connections to workers with room.
pub(crate) fn pump(st: &mut State, key: &str) {
  loop {
    let Some(mut queue) = st.handles.get(key).and_then(Handle::handout) else {
      return;
    };
    let Some((worker, conn)) = queue.next_assignment() else {
      return;
    };
    drop(queue);
    // A handle holds connected workers only (`on_channel_closed` takes a
    // worker out of every handle as its channel closes).
    let Some(w) = st.workers.get_mut(&worker) else {
      return;
    };
    let mut msg = serde_json::Map::new();
    msg.insert("act".into(), "newconn".into());
    msg.insert("key".into(), key.into());
    let seq = w.send_cluster(msg, Some((conn.clone(), "net.Native")));
    w.newconns.insert(seq, (key.to_string(), conn));
    w.dispatched += 1;
  }
}

/// The worker answered a `newconn`. Accepted: the primary's copy closes.
/// Refused: the connection goes to another worker (it was never read).
pub(crate) fn on_newconn_reply(st: &mut State, id: u32, seq: u64, accepted: bool) {
  let Some(w) = st.workers.get_mut(&id) else {
    return;
  };
  let Some((key, conn)) = w.newconns.remove(&seq) else {
    return;
  };
  if let Some(h) = st.handles.get_mut(&key) {
    h.settled(id);
  }
  if !accepted {
    requeue(st, id, &key, conn);
  } else {
    // Its window has room again: a sticky client queued for it goes now.
    pump(st, &key);
  }
}

/// Puts back a connection `from` did not take, if another worker can have it.
pub(crate) fn requeue(st: &mut State, from: u32, key: &str, conn: Arc<OwnedFd>) {
  let queued = match st.handles.get(key).and_then(Handle::handout) {
    // A lone worker that refused would only refuse again (Node loops here).
    Some(mut queue) if queue.has_other_than(from) => {
      queue.push_front(conn);
      true
    }
    _ => false,
  };
  if queued {
    pump(st, key);
  }
}
