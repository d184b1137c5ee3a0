//! Node's cluster protocol as the primary answers it (lib/internal/cluster/primary.js):
//! online, queryServer, listening, close, exitedAfterDisconnect, and the
//! child_process NODE_HANDLE_ACK/NACK flow under them.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::dispatch;
use super::reader::{CaughtUp, ReadSide};
use super::state::{Handle, Shared, State};
use super::Event;
use crate::error::Error;
use crate::ipc::json::{is_internal, Frame};
use crate::sched::listen::{self, Target};
use crate::sched::reuse_port::ReusePortPool;
use crate::sched::shared::SharedHandle;
use crate::sched::{SCHED_NONE, SCHED_REUSEPORT};

/// The child_process type a TCP or unix listen socket travels as.
const NET_NATIVE: &str = "net.Native";

/// Handles everything one read produced; emits the resulting events as one
/// batch, ending with `caught`'s marker when JS read it (see `reader`).
pub(crate) fn on_frames(
  state: &Shared,
  id: u32,
  frames: &mut Vec<Frame>,
  fds: &mut VecDeque<OwnedFd>,
  caught: Option<&Arc<ReadSide>>,
) {
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
          error: Error::BadMessage(why),
        });
      }
    }
  }
  batch.flush(id, &mut events);
  if let Some(side) = caught {
    events.push(Event::CaughtUp(CaughtUp(side.clone())));
  }
  st.emit(events);
}

/// The events for a read of plain user messages (JSON text or V8 payloads).
pub(crate) fn user_events(id: u32, frames: Vec<Frame>) -> Vec<Event> {
  let mut events = Vec::new();
  let mut batch = Batch::default();
  for frame in frames {
    match frame {
      Frame::User(json) => batch.push(id, json, &mut events),
      Frame::UserBytes(payload) => batch.push_bytes(&payload),
      _ => unreachable!("only plain user messages come here"),
    }
  }
  batch.flush(id, &mut events);
  events
}

/// Answers a NODE_HANDLE: ACK, or NACK when its descriptor is missing (the
/// worker then sends it again, as Node's sender does).
fn ack_handle(st: &mut State, id: u32, ok: bool) {
  if let Some(slot) = st.workers.get_mut(&id) {
    let cmd = if ok {
      "NODE_HANDLE_ACK"
    } else {
      "NODE_HANDLE_NACK"
    };
    let msg = slot.encode(&serde_json::json!({ "cmd": cmd }));
    slot.send(msg.into(), None);
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
  events.push(Event::HandleMessage {
    id,
    json,
    v8,
    fd: super::PassedFd(fd),
  });
}

/// Consecutive user messages from one read, joined into one JSON array.
/// Only messages that parse as JSON here join it, so that one bad message
/// cannot spoil the others' `JSON.parse` in JS; any other goes alone and
/// becomes that worker's error there if JS cannot parse it either.
#[derive(Default)]
struct Batch {
  array: String,
  count: usize,
  v8: Vec<u8>,
}

impl Batch {
  fn push(&mut self, id: u32, json: String, events: &mut Vec<Event>) {
    if serde_json::from_str::<serde::de::IgnoredAny>(&json).is_err() {
      self.flush(id, events);
      events.push(Event::Message { id, json });
      return;
    }
    self.array.push(if self.count == 0 { '[' } else { ',' });
    self.array.push_str(&json);
    self.count += 1;
  }

  /// A user message in `advanced` serialization: kept length-prefixed, so
  /// JS can split the batch and hand each payload to v8's deserializer.
  fn push_bytes(&mut self, payload: &[u8]) {
    push_length_prefixed(&mut self.v8, payload);
  }

  fn flush(&mut self, id: u32, events: &mut Vec<Event>) {
    if !self.v8.is_empty() {
      events.push(Event::MessagesV8 {
        id,
        bytes: std::mem::take(&mut self.v8),
      });
    }
    if self.count == 0 {
      return;
    }
    let mut array = std::mem::take(&mut self.array);
    array.push(']');
    self.count = 0;
    events.push(Event::Messages { id, array });
  }
}

/// V8 payloads go to JS each behind its 4-byte big-endian length.
fn push_length_prefixed(out: &mut Vec<u8>, payload: &[u8]) {
  out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
  out.extend_from_slice(payload);
}

fn on_internal(
  st: &mut State,
  state: &Shared,
  id: u32,
  msg: Value,
  fds: &mut VecDeque<OwnedFd>,
  events: &mut Vec<Event>,
) {
  match msg["cmd"].as_str().unwrap_or_default() {
    "NODE_HANDLE_ACK" => {
      if let Some(slot) = st.workers.get(&id) {
        slot.lane.handle_acked();
      }
    }
    "NODE_HANDLE_NACK" => {
      // The worker lost the descriptor (MSG_CTRUNC on its side): send it again.
      if let Some(slot) = st.workers.get(&id) {
        // ChannelClosed: the reader reports the close.
        let _ = slot.lane.handle_nacked();
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
    // JS answers these: rcluster's worker hook (heartbeats also feed the
    // watchdog here), and the sockets sent between the processes, whose
    // count JS keeps per server key.
    cmd @ ("NODE_RCLUSTER"
    | "NODE_SOCKET_NOTIFY_CLOSE"
    | "NODE_SOCKET_GET_COUNT"
    | "NODE_SOCKET_ALL_CLOSED"
    | "NODE_SOCKET_COUNT") => {
      if cmd == "NODE_RCLUSTER" && msg["act"] == "heartbeat" {
        let now = st.now_ms();
        if let Some(beat) = st.workers.get_mut(&id).and_then(|s| s.beat.as_mut()) {
          beat.heard(now);
        }
      }
      events.push(Event::Internal {
        id,
        json: msg.to_string(),
      });
    }
    // Other NODE_* messages belong to child_process internals we do not use.
    _ => {}
  }
}

fn on_cluster(st: &mut State, state: &Shared, id: u32, msg: Value, events: &mut Vec<Event>) {
  if let Some(ack) = msg.get("ack").and_then(Value::as_u64) {
    // A reply to one of our requests: only newconn asks for one.
    let accepted = msg["accepted"].as_bool().unwrap_or(false);
    dispatch::on_newconn_reply(st, id, ack, accepted);
    return;
  }
  match msg["act"].as_str().unwrap_or_default() {
    "online" => events.push(Event::Online { id }),
    "queryServer" => query_server(st, state, id, &msg),
    "listening" => {
      // The whole message goes to JS, which picks Node's four fields.
      events.push(Event::Listening {
        id,
        info: msg.to_string(),
      });
    }
    "close" => {
      let key = msg["key"].as_str().unwrap_or_default();
      if st.handles.get_mut(key).is_some_and(|h| h.remove(id, true)) {
        st.handles.remove(key);
      }
    }
    "exitedAfterDisconnect" => {
      events.push(Event::ExitedAfterDisconnect { id });
      if let Some(slot) = st.workers.get_mut(&id) {
        slot.leaving = true;
        let mut reply = Map::new();
        reply.insert("ack".into(), msg["seq"].clone());
        slot.send_cluster(reply, None);
      }
    }
    _ => {}
  }
}

/// How the primary keys a worker's listen, which differs by Node line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRule {
  /// Node 20: `${address}:${port}:${addressType}:${fd}:${index}`, so a
  /// worker's n-th listen only ever shares with other workers' n-th.
  WithIndex,
  /// Node 22 and later (nodejs/node#60141): the worker's listen `index` only
  /// for port 0, so any listen on a fixed address shares its socket.
  IndexOnPortZero,
}

impl KeyRule {
  /// The rule of the Node major version the primary runs on.
  pub fn for_node_major(major: u32) -> Self {
    if major >= 22 {
      KeyRule::IndexOnPortZero
    } else {
      KeyRule::WithIndex
    }
  }
}

/// `key` as the primary's Node line builds it (see `KeyRule`).
fn handle_key(msg: &Value, rule: KeyRule) -> String {
  let part = |name: &str| match msg.get(name) {
    None => "undefined".to_string(),
    Some(Value::String(s)) => s.clone(),
    Some(v) => v.to_string(),
  };
  let key = format!(
    "{}:{}:{}:{}",
    part("address"),
    part("port"),
    part("addressType"),
    part("fd"),
  );
  // As Node 22+: `message.port === 0` appends the index (a number 0 only).
  let port_zero = msg.get("port").and_then(Value::as_f64) == Some(0.0);
  if rule == KeyRule::WithIndex || port_zero {
    format!("{key}:{}", part("index"))
  } else {
    key
  }
}

fn query_server(st: &mut State, state: &Shared, id: u32, msg: &Value) {
  let Some(slot) = st.workers.get(&id) else {
    return;
  };
  // As Node: stop processing if the worker is already disconnecting.
  if slot.leaving {
    return;
  }
  let key = handle_key(msg, st.key_rule);
  let mut created = Ok(());
  if st.handles.get(&key).is_some_and(|h| h.has(id)) {
    // Node 22+ keys a fixed address without the listen index, so a worker
    // listening there twice asks for a key it holds. As Node's fix for that
    // (nodejs/node#65020) and as a second bind would: EADDRINUSE, and the
    // key stays with the first server.
    created = Err(crate::error::Error::sys(
      nix::errno::Errno::EADDRINUSE,
      "listen",
      "",
    ));
  } else if !st.handles.contains_key(&key) {
    created = create_handle(st, state, &key, msg, id);
  } else if let Some(Handle::ReusePort(pool, _, target, _)) = st.handles.get_mut(&key) {
    let predecessor = st.heirs.get(&id).copied();
    created = join_pool(pool, target, id, predecessor, backlog(msg));
  }
  let mut reply = Map::new();
  reply.insert("key".into(), key.clone().into());
  reply.insert("ack".into(), msg["seq"].clone());
  let mut fd = None;
  match created {
    Err(e) => {
      // As Node: forget the key on error so another worker can retry.
      reply.insert("errno".into(), e.errno().unwrap_or(-22).into());
      reply.insert("data".into(), msg["data"].clone());
    }
    Ok(()) => {
      let handle = st.handles.get_mut(&key).expect("created or found above");
      reply.insert("errno".into(), Value::Null);
      reply.insert("data".into(), handle.data().clone());
      match handle {
        Handle::Shared(h, _) => {
          h.add(id);
          fd = Some((h.fd.clone(), h.kind));
        }
        Handle::RoundRobin(h, _) => {
          h.rr.add(id);
          if let Some(name) = &h.sockname {
            reply.insert("sockname".into(), name.clone());
          }
        }
        Handle::ReusePort(pool, _, _, stealer) => {
          fd = pool.socket_of(id).map(|s| (s, NET_NATIVE));
          stealer.rr.add(id);
          stealer.steer(pool);
        }
      }
    }
  }
  if let Some(slot) = st.workers.get_mut(&id) {
    slot.send_cluster(reply, fd);
  }
  dispatch::pump(st, &key);
}

fn create_handle(
  st: &mut State,
  state: &Shared,
  key: &str,
  msg: &Value,
  id: u32,
) -> crate::error::Result<()> {
  let target = Target::from_query(msg)?;
  let data = msg["data"].clone();
  if st.policy == SCHED_REUSEPORT && matches!(target, Target::Tcp { .. }) {
    // Nobody else may be listening there. SO_REUSEPORT would let a second
    // app run by the same user join the group and take a share of the
    // connections; a plain bind first fails as Node's would (EADDRINUSE).
    if matches!(target, Target::Tcp { port, .. } if port != 0) {
      drop(listen::bind_target(&target)?);
    }
    let first = listen::listen_reuse_port(&target, backlog(msg))?;
    // Port 0: every later socket of the pool binds the port the first got.
    let port = listen::sockname(&first.fd)
      .and_then(|n| n["port"].as_u64())
      .and_then(|p| u16::try_from(p).ok())
      .unwrap_or(0);
    let mut pool = ReusePortPool::default();
    pool.add(first, id);
    let stealer = Box::new(super::steal::Stealer::new(state, key));
    let handle = Handle::ReusePort(pool, data, target.with_port(port), stealer);
    st.handles.insert(key.to_string(), handle);
    return Ok(());
  }
  let bound = listen::bind_target(&target)?;
  let inherited = matches!(target, Target::Fd(_));
  // As Node: UDP is always shared (there is nothing to hand out but datagrams).
  let handle = if let Target::Udp { .. } = target {
    Handle::Shared(SharedHandle::new(bound, "dgram.Native"), data)
  // Unix sockets have no SO_REUSEPORT: under that policy they are round-robin.
  } else if st.policy != SCHED_NONE {
    Handle::RoundRobin(
      dispatch::RrHandle::new(state, key, bound, backlog(msg), inherited)?,
      data,
    )
  } else {
    Handle::Shared(SharedHandle::new(bound, NET_NATIVE), data)
  };
  st.handles.insert(key.to_string(), handle);
  Ok(())
}

/// A worker joins a SO_REUSEPORT pool: it inherits a dead worker's socket
/// (with the connections queued on it) or gets a new one on the same port.
fn join_pool(
  pool: &mut ReusePortPool,
  target: &Target,
  id: u32,
  predecessor: Option<u32>,
  backlog: i32,
) -> crate::error::Result<()> {
  if pool.has(id) {
    return Ok(());
  }
  if predecessor.is_some_and(|p| pool.share(id, p).is_some()) {
    return Ok(());
  }
  if pool.take_free(id).is_some() {
    return Ok(());
  }
  pool.add(listen::listen_reuse_port(target, backlog)?, id);
  Ok(())
}

/// The listen backlog a query asks for, as Node's `backlog || 511`: a worker
/// that gave none sends 0, `false` or nothing (listen(0) would queue one).
fn backlog(msg: &Value) -> i32 {
  msg["backlog"]
    .as_i64()
    .and_then(|b| i32::try_from(b).ok())
    .filter(|&b| b > 0)
    .unwrap_or(listen::DEFAULT_BACKLOG)
}

/// `worker.disconnect()` in the primary: tell the worker, drop its handles.
pub(crate) fn disconnect(state: &Shared, id: u32) {
  let mut st = state.borrow_mut();
  if let Some(slot) = st.workers.get_mut(&id) {
    slot.leaving = true;
    let mut msg = Map::new();
    msg.insert("act".into(), "disconnect".into());
    slot.send_cluster(msg, None);
  }
  st.remove_from_handles(id, true);
}

pub(crate) fn on_channel_closed(state: &Shared, id: u32) {
  let mut st = state.borrow_mut();
  let Some(slot) = st.workers.get_mut(&id) else {
    return;
  };
  slot.connected = false;
  slot.lane.close();
  crate::sync::lock(&st.lanes).remove(&id);
  let Some(slot) = st.workers.get_mut(&id) else {
    return;
  };
  slot.closed.notify_one();
  let orphans: Vec<_> = slot.newconns.drain().map(|(_, conn)| conn).collect();
  let exited = slot.exited;
  let on_purpose = slot.leaving;
  st.remove_from_handles(id, on_purpose);
  // Connections this worker never acked were never read: give them to another worker.
  for (key, conn) in orphans {
    dispatch::requeue(&mut st, id, &key, conn);
  }
  if exited {
    st.workers.remove(&id);
  }
  st.heirs.retain(|&heir, &mut from| heir != id && from != id);
  st.emit(vec![Event::Disconnect { id }]);
}

pub(crate) fn on_exit(state: &Shared, id: u32, code: Option<i32>, signal: Option<String>) {
  let mut st = state.borrow_mut();
  crate::sync::lock(&st.pidfds).remove(&id);
  if let Some(slot) = st.workers.get_mut(&id) {
    slot.exited = true;
    let leaving = slot.leaving;
    if !slot.connected {
      st.workers.remove(&id);
    }
    // A dead worker accepts nothing: steer new connections off its
    // SO_REUSEPORT sockets now, before 'exit' reaches JS (where a replacement
    // may be forked), rather than once its channel's end is read.
    st.handles
      .retain(|_, h| !matches!(h, Handle::ReusePort(..)) || !h.remove(id, leaving));
  }
  st.emit(vec![Event::Exit { id, code, signal }]);
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn user_messages_batch_into_one_array_and_bad_ones_go_alone() {
    let mut batch = Batch::default();
    let mut events = Vec::new();
    batch.push(1, "{\"a\":1}".into(), &mut events);
    batch.push(1, "\"two\"".into(), &mut events);
    batch.push(1, "not json".into(), &mut events);
    batch.push(1, "3".into(), &mut events);
    batch.flush(1, &mut events);
    assert_eq!(
      events,
      vec![
        Event::Messages {
          id: 1,
          array: "[{\"a\":1},\"two\"]".into()
        },
        Event::Message {
          id: 1,
          json: "not json".into()
        },
        Event::Messages {
          id: 1,
          array: "[3]".into()
        },
      ]
    );
  }

  #[test]
  fn backlog_defaults_like_node() {
    assert_eq!(backlog(&json!({"backlog": 0})), 511);
    assert_eq!(backlog(&json!({"backlog": false})), 511);
    assert_eq!(backlog(&json!({"backlog": -1})), 511);
    assert_eq!(backlog(&json!({})), 511);
    assert_eq!(backlog(&json!({"backlog": 64})), 64);
  }

  #[test]
  fn key_matches_nodes_template() {
    let fixed = json!({"address": null, "port": 3000, "addressType": 4, "index": 1});
    let zero = json!({"address": "::1", "port": 0, "addressType": 6, "fd": -1, "index": 2});
    let pipe = json!({"address": "/tmp/s", "port": -1, "addressType": -1, "fd": -1, "index": 3});
    // Node 20: always with the index.
    let rule = KeyRule::for_node_major(20);
    assert_eq!(handle_key(&fixed, rule), "null:3000:4:undefined:1");
    assert_eq!(handle_key(&zero, rule), "::1:0:6:-1:2");
    assert_eq!(handle_key(&pipe, rule), "/tmp/s:-1:-1:-1:3");
    // Node 22 and later: the index only for port 0.
    for major in [22, 24, 26] {
      let rule = KeyRule::for_node_major(major);
      assert_eq!(handle_key(&fixed, rule), "null:3000:4:undefined");
      assert_eq!(handle_key(&zero, rule), "::1:0:6:-1:2");
      assert_eq!(handle_key(&pipe, rule), "/tmp/s:-1:-1:-1");
    }
  }
}
