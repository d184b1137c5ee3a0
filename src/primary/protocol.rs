//! The primary's side of Node's cluster protocol (lib/internal/cluster/
//! primary.js), and the engine state it runs on: the workers (what the
//! engine keeps of each: its channel's write side, the protocol's `seq`,
//! what it tracks of it) and the listen handles.
//!
//! It answers queryServer, close, exitedAfterDisconnect, the child_process
//! NODE_HANDLE_ACK/NACK flow under them, and hands out connections with
//! `newconn`: the round-robin handle's (which the primary accepts) and those
//! the stealer took off stuck SO_REUSEPORT queues; the primary's copy closes
//! only after the worker said `accepted`. (online and listening are JS's:
//! see `reader`.) Also the engine's side of [`Owner`], through which a
//! listen handle's own tasks reach the engine.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::Notify;

use super::event::{push_length_prefixed, Batch, Event, Sink};
use super::process::{has_exited, Lanes, PidFds};
use super::reader::{engine_only, js_answers, Heard, ReadSide};
use crate::error::{Error, Result};
use crate::ipc::channel::{Channel, Lane, Outgoing};
use crate::ipc::json::{is_internal, Frame};
use crate::sched::handle::{Added, Handle};
use crate::sched::listen::{backlog, handle_key, KeyRule, Target};
use crate::sched::owner::Owner;
use crate::sched::Spread;
use crate::supervise::watchdog::Beat;

// The engine's state, owned by its one thread: workers and listen handles.

pub(crate) type Shared = Rc<RefCell<State>>;

pub(crate) struct State {
  pub policy: u32,
  /// Sticky placement by client address (`setupPrimary({ sticky: 'ip' })`).
  pub sticky: bool,
  /// `setupPrimary({ balance: 'least-connections' })`.
  pub least_connections: bool,
  /// How queryServer keys are built: as the Node line the primary runs on.
  pub key_rule: KeyRule,
  /// The JS thread reads channels (except under SCHED_RR).
  pub js_reads: bool,
  /// (timeout, grace) in ms once the watchdog is on.
  pub watchdog: Option<(f64, f64)>,
  /// Reloads: new worker id -> the worker it replaces (SCHED_REUSEPORT sockets pass on).
  pub heirs: HashMap<u32, u32>,
  pub workers: HashMap<u32, Worker>,
  pub handles: HashMap<String, Handle>,
  pub sink: Arc<dyn Sink>,
  pub pidfds: PidFds,
  pub lanes: Lanes,
}

impl State {
  pub fn emit(&self, events: Vec<Event>) {
    if !events.is_empty() {
      self.sink.emit(events, None);
    }
  }

  /// Removes a worker from every handle, closing handles nobody holds,
  /// as Node's removeHandlesForWorker does.
  pub fn remove_from_handles(&mut self, id: u32, on_purpose: bool) {
    self.handles.retain(|_, h| !h.remove(id, on_purpose));
  }
}

// What the engine keeps of one worker.

/// The primary's view of one worker.
pub(crate) struct Worker {
  /// The write side, shared with the JS thread.
  pub lane: Arc<Lane>,
  pub channel: Arc<Channel>,
  /// Signalled when the reader sees the channel end.
  pub closed: Rc<Notify>,
  seq: u64,
  pub connected: bool,
  pub exited: bool,
  /// Set by `exitedAfterDisconnect` or `worker.disconnect()`: no new servers.
  pub leaving: bool,
  /// Its channel closed as its process died: 'disconnect' goes to JS with
  /// 'exit', in one delivery.
  pub disconnect_with_exit: bool,
  /// Round-robin connections awaiting the worker's `accepted` reply, by seq.
  pub newconns: HashMap<u64, (String, Arc<OwnedFd>)>,
  /// Round-robin connections handed to it, ever.
  pub dispatched: u64,
  /// When it was last heard from (shared with its reader).
  pub heard: Arc<Heard>,
  /// What the watchdog did to it, once the watchdog is on.
  pub beat: Option<Beat>,
  /// Its open connections, as its worker hook last reported them.
  pub open: u32,
  /// The channel speaks `advanced` (V8) serialization rather than `json`.
  pub advanced: bool,
  /// Its read side, when the JS thread reads the channel.
  pub reader: Option<Arc<ReadSide>>,
}

impl Worker {
  pub fn new(channel: Arc<Channel>, lane: Arc<Lane>, advanced: bool) -> Self {
    Worker {
      lane,
      channel,
      closed: Rc::new(Notify::new()),
      seq: 0,
      connected: true,
      exited: false,
      leaving: false,
      disconnect_with_exit: false,
      newconns: HashMap::new(),
      dispatched: 0,
      heard: Arc::new(Heard::new()),
      beat: None,
      open: 0,
      advanced,
      reader: None,
    }
  }

  /// The next `seq` for a cluster message from the primary.
  pub fn next_seq(&mut self) -> u64 {
    let s = self.seq;
    self.seq += 1;
    s
  }

  /// One message in this channel's serialization.
  pub fn encode(&self, value: &Value) -> Vec<u8> {
    if self.advanced {
      crate::ipc::v8::encode(value)
    } else {
      crate::ipc::json::encode(value)
    }
  }

  /// Sends one whole message (queued if the socket is full).
  pub fn send(&mut self, bytes: Arc<[u8]>, fd: Option<Arc<OwnedFd>>) {
    let msg = Outgoing { bytes, fd };
    // ChannelClosed: the reader reports the close; nothing to do here.
    let _ = self.lane.send(msg, true);
  }

  /// Sends a cluster message: adds `cmd` and `seq` as Node's sendHelper
  /// does, and returns the `seq`. `fd` rides in a NODE_HANDLE envelope of the
  /// given child_process type.
  pub fn send_cluster(
    &mut self,
    mut msg: serde_json::Map<String, Value>,
    fd: Option<(Arc<OwnedFd>, &'static str)>,
  ) -> u64 {
    msg.insert("cmd".into(), "NODE_CLUSTER".into());
    let seq = self.next_seq();
    msg.insert("seq".into(), seq.into());
    let body = Value::Object(msg);
    let (bytes, fd) = match fd {
      // The whole envelope goes out in one sendmsg with the fd attached.
      Some((fd, kind)) => (self.envelope(kind, &body), Some(fd)),
      None => (self.encode(&body), None),
    };
    self.send(bytes.into(), fd);
    seq
  }

  /// child_process's `NODE_HANDLE` envelope around `msg`, for a descriptor
  /// of type `kind` (`net.Native`, `dgram.Native`) sent with it.
  fn envelope(&self, kind: &str, msg: &Value) -> Vec<u8> {
    if self.advanced {
      return self.encode(&serde_json::json!({ "cmd": "NODE_HANDLE", "type": kind, "msg": msg }));
    }
    // Written directly: this is round-robin's hot path (one per connection).
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(b"{\"cmd\":\"NODE_HANDLE\",\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"msg\":");
    // Serializing a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, msg);
    out.extend_from_slice(b"}\n");
    out
  }
}

// The protocol.

/// Handles everything one read produced; emits the resulting events as one
/// batch. `caught`: JS read it and handed it over (see `reader`); it learns
/// when the engine is done with it: with the batch, or at once when the
/// read has nothing for JS (before answering it, so the worker's next
/// message, after the answer, finds the JS thread free to take it).
pub(crate) fn on_frames(
  state: &Shared,
  id: u32,
  frames: &mut Vec<Frame>,
  fds: &mut VecDeque<OwnedFd>,
  caught: Option<&Arc<ReadSide>>,
) {
  let mut caught = caught.cloned();
  if caught
    .as_ref()
    .is_some_and(|side| frames.iter().all(engine_only) && side.settled())
  {
    caught = None;
  }
  let mut events = Vec::new();
  let mut batch = Batch::default();
  let mut st = state.borrow_mut();
  for frame in frames.drain(..) {
    match frame {
      Frame::User(json) => batch.push(id, json, &mut events),
      Frame::UserBytes(payload) => batch.push_bytes(&payload),
      Frame::HandleBytes(payload) => {
        batch.flush(id, &mut events);
        let mut v8 = Vec::new();
        push_length_prefixed(&mut v8, &payload);
        got_handle(&mut st, id, fds, Some(v8), None, &mut events);
      }
      Frame::Internal(msg) => {
        batch.flush(id, &mut events);
        on_internal(&mut st, state, id, msg, fds, &mut events);
      }
      Frame::Bad(why) => {
        batch.flush(id, &mut events);
        events.push(Event::Error {
          id,
          error: Error::BadMessage(why).into(),
        });
      }
    }
  }
  batch.flush(id, &mut events);
  match caught {
    Some(side) if events.is_empty() && side.settled() => {}
    Some(side) => st.sink.emit(events, Some(side)),
    None => st.emit(events),
  }
}

/// Answers a NODE_HANDLE: ACK, or NACK when its descriptor is missing (the
/// worker then sends it again, as Node's sender does).
fn ack_handle(st: &mut State, id: u32, ok: bool) {
  if let Some(w) = st.workers.get_mut(&id) {
    let cmd = if ok {
      "NODE_HANDLE_ACK"
    } else {
      "NODE_HANDLE_NACK"
    };
    let msg = w.encode(&serde_json::json!({ "cmd": cmd }));
    w.send(msg.into(), None);
  }
}

/// A user message with a handle: ACK it and give JS the descriptor to wrap,
/// with the whole envelope (JSON text, or length-prefixed V8 bytes).
fn got_handle(
  st: &mut State,
  id: u32,
  fds: &mut VecDeque<OwnedFd>,
  v8: Option<Vec<u8>>,
  json: Option<String>,
  events: &mut Vec<Event>,
) {
  let Some(fd) = fds.pop_front() else {
    ack_handle(st, id, false);
    return;
  };
  ack_handle(st, id, true);
  events.push(Event::handle_message(id, json, v8, fd));
}

fn on_internal(
  st: &mut State,
  state: &Shared,
  id: u32,
  msg: Value,
  fds: &mut VecDeque<OwnedFd>,
  events: &mut Vec<Event>,
) {
  if js_answers(&msg) {
    // The engine read it (under SCHED_RR, or after a read it had to answer).
    events.push(Event::internal(id, msg));
    return;
  }
  match msg["cmd"].as_str().unwrap_or_default() {
    "NODE_HANDLE_ACK" => {
      if let Some(w) = st.workers.get(&id) {
        w.lane.handle_acked();
      }
    }
    "NODE_HANDLE_NACK" => {
      // The worker lost the descriptor (MSG_CTRUNC on its side): send it again.
      if let Some(w) = st.workers.get(&id) {
        // ChannelClosed: the reader reports the close.
        let _ = w.lane.handle_nacked();
      }
    }
    "NODE_HANDLE" => {
      let inner = msg.get("msg").cloned().unwrap_or(Value::Null);
      if is_internal(&inner) {
        // Cluster internals never send the primary handles; ack and go on.
        fds.pop_front();
        ack_handle(st, id, true);
        on_internal(st, state, id, inner, fds, events);
      } else {
        got_handle(st, id, fds, None, Some(msg.to_string()), events);
      }
    }
    "NODE_CLUSTER" => on_cluster(st, state, id, msg, events),
    "NODE_RCLUSTER" => {
      // The worker hook's count of its open connections (the only hook
      // message for the engine): placement follows it, metrics read it.
      let count = |k: &str| {
        msg[k]
          .as_u64()
          .map_or(0, |n| n.min(u64::from(u32::MAX)) as u32)
      };
      let (open, closed) = (count("open"), count("closed"));
      if let Some(w) = st.workers.get_mut(&id) {
        w.open = open;
      }
      for handle in st.handles.values_mut() {
        handle.connections(id, open, closed);
      }
    }
    // Other NODE_* messages belong to child_process internals we do not use.
    _ => {}
  }
}

fn on_cluster(st: &mut State, state: &Shared, id: u32, msg: Value, events: &mut Vec<Event>) {
  if let Some(ack) = msg.get("ack").and_then(Value::as_u64) {
    // A reply to one of our requests: only newconn asks for one.
    let accepted = msg["accepted"].as_bool().unwrap_or(false);
    on_newconn_reply(st, id, ack, accepted);
    return;
  }
  match msg["act"].as_str().unwrap_or_default() {
    "queryServer" => query_server(st, state, id, &msg),
    "close" => {
      let key = msg["key"].as_str().unwrap_or_default();
      if st.handles.get_mut(key).is_some_and(|h| h.remove(id, true)) {
        st.handles.remove(key);
      }
    }
    "exitedAfterDisconnect" => {
      events.push(Event::ExitedAfterDisconnect { id });
      if let Some(w) = st.workers.get_mut(&id) {
        w.leaving = true;
        let mut reply = Map::new();
        reply.insert("ack".into(), msg["seq"].clone());
        w.send_cluster(reply, None);
      }
    }
    _ => {}
  }
}

fn query_server(st: &mut State, state: &Shared, id: u32, msg: &Value) {
  let Some(w) = st.workers.get(&id) else {
    return;
  };
  // As Node: stop processing if the worker is already disconnecting.
  if w.leaving {
    return;
  }
  let key = handle_key(msg, st.key_rule);
  let backlog = backlog(msg);
  let added = if st.handles.get(&key).is_some_and(|h| h.has(id)) {
    // Node 22+ keys a fixed address without the listen index, so a worker
    // listening there twice asks for a key it holds. As Node's fix for that
    // (nodejs/node#65020) and as a second bind would: EADDRINUSE, and the
    // key stays with the first server.
    Err(Error::sys(nix::errno::Errno::EADDRINUSE, "listen", ""))
  } else {
    if !st.handles.contains_key(&key) {
      // As Node: a key whose socket cannot be made is not kept, so another
      // worker can try again.
      match Target::from_query(msg).and_then(|target| {
        Handle::create(
          &EngineLink::new(state),
          st.policy,
          Spread {
            sticky: st.sticky,
            least_connections: st.least_connections,
          },
          &key,
          target,
          backlog,
          msg["data"].clone(),
        )
      }) {
        Ok(handle) => {
          st.handles.insert(key.clone(), handle);
        }
        Err(e) => return reply_query(st, id, &key, msg, Err(e)),
      }
    }
    let predecessor = st.heirs.get(&id).copied();
    let handle = st.handles.get_mut(&key).expect("created or found above");
    handle
      .add(id, predecessor, backlog)
      .map(|a| (a, handle.data().clone()))
  };
  reply_query(st, id, &key, msg, added);
  pump(st, &key);
}

/// The `queryServer` reply: the handle's data and its socket, or the errno.
fn reply_query(st: &mut State, id: u32, key: &str, msg: &Value, added: Result<(Added, Value)>) {
  let mut reply = Map::new();
  reply.insert("key".into(), key.into());
  reply.insert("ack".into(), msg["seq"].clone());
  let mut fd = None;
  match added {
    Err(e) => {
      reply.insert("errno".into(), e.errno().unwrap_or(-22).into());
      reply.insert("data".into(), msg["data"].clone());
    }
    Ok((added, data)) => {
      reply.insert("errno".into(), Value::Null);
      reply.insert("data".into(), data);
      if let Some(name) = added.sockname {
        reply.insert("sockname".into(), name);
      }
      fd = added.fd;
    }
  }
  if let Some(w) = st.workers.get_mut(&id) {
    w.send_cluster(reply, fd);
  }
}

/// `worker.disconnect()` in the primary: tell the worker, drop its handles.
pub(crate) fn disconnect(state: &Shared, id: u32) {
  let mut st = state.borrow_mut();
  if let Some(w) = st.workers.get_mut(&id) {
    w.leaving = true;
    let mut msg = Map::new();
    msg.insert("act".into(), "disconnect".into());
    w.send_cluster(msg, None);
  }
  st.remove_from_handles(id, true);
}

pub(crate) fn on_channel_closed(state: &Shared, id: u32) {
  let mut st = state.borrow_mut();
  // A worker that crashed: its process has ended too and its reaper is on
  // its way, so 'disconnect' waits for 'exit' and both cross to JS at once.
  let process_ended = has_exited(&st.pidfds, id);
  crate::sync::lock(&st.lanes).remove(&id);
  let Some(w) = st.workers.get_mut(&id) else {
    return;
  };
  w.connected = false;
  w.lane.close();
  w.closed.notify_one();
  let orphans: Vec<_> = w.newconns.drain().map(|(_, conn)| conn).collect();
  let exited = w.exited;
  let on_purpose = w.leaving;
  let dying = !exited && process_ended;
  w.disconnect_with_exit = dying;
  st.remove_from_handles(id, on_purpose);
  // Connections this worker never acked were never read: give them to another worker.
  for (key, conn) in orphans {
    requeue(&mut st, id, &key, conn);
  }
  if exited {
    st.workers.remove(&id);
  }
  st.heirs.retain(|&heir, &mut from| heir != id && from != id);
  if !dying {
    st.emit(vec![Event::Disconnect { id, gone: exited }]);
  }
}

pub(crate) fn on_exit(state: &Shared, id: u32, code: Option<i32>, signal: Option<String>) {
  let mut st = state.borrow_mut();
  crate::sync::lock(&st.pidfds).remove(&id);
  let mut gone = true;
  let mut events = Vec::new();
  if let Some(w) = st.workers.get_mut(&id) {
    w.exited = true;
    if std::mem::take(&mut w.disconnect_with_exit) {
      events.push(Event::Disconnect { id, gone: false });
    }
    let leaving = w.leaving;
    gone = !w.connected;
    if gone {
      st.workers.remove(&id);
    }
    // A dead worker accepts nothing: steer new connections off its
    // SO_REUSEPORT sockets now, before 'exit' reaches JS (where a replacement
    // may be forked), rather than once its channel's end is read.
    st.handles.retain(|_, h| !h.worker_exited(id, leaving));
  }
  events.push(Event::Exit {
    id,
    code,
    signal,
    gone,
  });
  st.emit(events);
}

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
