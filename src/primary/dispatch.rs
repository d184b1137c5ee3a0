//! Handing out connections with `newconn`: the round-robin handle's (which
//! the primary accepts) and those the stealer took off stuck SO_REUSEPORT
//! queues; the primary's copy closes only after the worker said `accepted`.
//! Also the engine's side of [`Dispatcher`], through which a handle's own
//! tasks reach the engine.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::state::{Shared, State};
use crate::sched::dispatcher::Dispatcher;
use crate::sched::handle::{Dispatch, Handle};

/// The engine, as a listen handle's tasks see it.
#[derive(Clone)]
pub(crate) struct EngineLink(Shared);

impl EngineLink {
  pub fn new(state: &Shared) -> Self {
    EngineLink(state.clone())
  }
}

impl Dispatcher for EngineLink {
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
    let Some(Dispatch { mut rr, key_json }) = st.handles.get(key).and_then(Handle::dispatch) else {
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
  let queued = match st.handles.get(key).and_then(Handle::dispatch) {
    // A lone worker that refused would only refuse again (Node loops here).
    Some(Dispatch { mut rr, .. }) if rr.has_other_than(from) => {
      rr.push_front(conn);
      true
    }
    _ => false,
  };
  if queued {
    pump(st, key);
  }
}
