//! What the engine tells JS: the events, which are also their JS shape (a
//! union discriminated by `kind` in binding.d.ts), and how a read's messages
//! become events (consecutive JSON user messages joined into one JSON array,
//! one `JSON.parse` in JS; V8 payloads length-prefixed); the per-worker
//! counters; a spawned worker.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use serde_json::Value;

use super::reader::{Pressure, ReadSide};
use crate::error::NativeError;
use crate::ipc::json::Frame;

/// What the primary tells JS, in the order it happened. Delivered to
/// lib/primary.js's `onDelivery`; the descriptor of a `handleMessage` is
/// JS's from then on.
#[napi(discriminant = "kind", discriminant_case = "camelCase")]
pub enum Event {
  /// The worker announced `online`.
  Online { id: u32 },
  /// A server of the worker listens: Node's `{addressType, address, port, fd}`.
  Listening { id: u32, info: Value },
  /// One user message, JSON text the engine could not vouch for (JS's parse decides).
  Message { id: u32, data: String },
  /// Several user messages, already checked to be JSON, as one JSON array
  /// text: JS parses a whole read's worth of messages in one `JSON.parse`.
  Messages { id: u32, data: String },
  /// User messages in `advanced` serialization: each a 4-byte big-endian
  /// length and a V8 payload, back to back.
  MessagesV8 { id: u32, bytes: Buffer },
  /// A user message that came with a handle (`process.send(msg, handle)`):
  /// its whole `NODE_HANDLE` envelope (`type`, `msg`, `key`, `dgramType`) as
  /// JSON `data` (json serialization) or length-prefixed V8 `bytes`; `fd`, the
  /// received descriptor, is JS's to wrap.
  HandleMessage {
    id: u32,
    data: Option<String>,
    bytes: Option<Buffer>,
    fd: i32,
  },
  /// The worker is leaving on purpose (it sent `exitedAfterDisconnect`).
  ExitedAfterDisconnect { id: u32 },
  /// An internal message JS answers: rcluster's worker hook (`NODE_RCLUSTER`:
  /// heartbeat, ready, appMetrics) and child_process's bookkeeping of sockets
  /// sent between processes (`NODE_SOCKET_*`).
  Internal { id: u32, message: Value },
  /// The watchdog found the worker silent past its timeout and sent SIGABRT.
  Unresponsive { id: u32 },
  /// The channel closed. `gone`: the process has exited too, so this is the
  /// worker's last event (the engine decides; JS forgets it then).
  Disconnect { id: u32, gone: bool },
  /// The process ended: an exit code or a signal name. `gone` as for `disconnect`.
  Exit {
    id: u32,
    code: Option<i32>,
    signal: Option<String>,
    gone: bool,
  },
  /// Something about this worker went wrong (bad bytes on its channel, a failed write).
  Error { id: u32, error: NativeError },
}

impl Event {
  /// A descriptor handed to JS with an event.
  pub fn handle_message(id: u32, data: Option<String>, v8: Option<Vec<u8>>, fd: OwnedFd) -> Event {
    use std::os::fd::IntoRawFd;
    Event::HandleMessage {
      id,
      data,
      bytes: v8.map(Buffer::from),
      fd: fd.into_raw_fd(),
    }
  }

  /// The event for an internal message JS handles (see `reader::for_js`).
  pub fn internal(id: u32, message: Value) -> Event {
    if message["cmd"] == "NODE_CLUSTER" {
      match message["act"].as_str() {
        Some("online") => return Event::Online { id },
        Some("listening") => {
          // Node's four fields, those the worker sent.
          let mut info = serde_json::Map::new();
          for key in ["addressType", "address", "port", "fd"] {
            if let Some(v) = message.get(key) {
              info.insert(key.into(), v.clone());
            }
          }
          return Event::Listening {
            id,
            info: Value::Object(info),
          };
        }
        _ => {}
      }
    }
    Event::Internal { id, message }
  }
}

/// Where events go; the binding delivers them to JS.
pub trait Sink: Send + Sync + 'static {
  /// `caught`: these are the events of a read the JS thread handed over
  /// (see `reader`); it learns they reached JS.
  fn emit(&self, events: Vec<Event>, caught: Option<Arc<ReadSide>>);

  /// How far behind the consumer is, if it says; readers pause past the mark.
  fn pressure(&self) -> Option<Arc<Pressure>> {
    None
  }
}

/// What the engine counts for one worker (`cluster.metrics()` reads it).
#[napi(object)]
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStats {
  pub id: u32,
  /// Connections handed to it by round-robin, ever.
  pub dispatched: f64,
  /// Handed and not yet acknowledged.
  pub in_flight: u32,
  /// Its open connections, as its worker hook last reported them.
  pub connections_open: u32,
  /// Milliseconds since its last heartbeat (watchdog on), else null.
  pub heartbeat_age_ms: Option<f64>,
}

/// A worker as JS sees it right after `fork()`.
pub struct Spawned {
  pub pid: i32,
  /// The primary's ends of `pipe` stdio entries, one per stdio index.
  pub pipes: Vec<Option<OwnedFd>>,
  /// The number of the primary's end of its channel.
  pub channel_fd: i32,
  /// Its channel's read side, when the JS thread is to read it.
  pub reader: Option<Arc<ReadSide>>,
}

/// The events for a read of messages JS handles itself (`reader::for_js`).
pub(crate) fn js_events(id: u32, frames: Vec<Frame>) -> Vec<Event> {
  let mut events = Vec::new();
  let mut batch = Batch::default();
  for frame in frames {
    match frame {
      Frame::User(json) => batch.push(id, json, &mut events),
      Frame::UserBytes(payload) => batch.push_bytes(&payload),
      Frame::Internal(msg) => {
        batch.flush(id, &mut events);
        events.push(Event::internal(id, msg));
      }
      Frame::HandleBytes(_) | Frame::Bad(_) => unreachable!("the engine's (reader::for_js)"),
    }
  }
  batch.flush(id, &mut events);
  events
}

/// Consecutive user messages from one read, joined into one JSON array.
/// Only messages that parse as JSON here join it, so that one bad message
/// cannot spoil the others' `JSON.parse` in JS; any other goes alone and
/// becomes that worker's error there if JS cannot parse it either.
#[derive(Default)]
pub(crate) struct Batch {
  array: String,
  count: usize,
  v8: Vec<u8>,
}

impl Batch {
  pub fn push(&mut self, id: u32, json: String, events: &mut Vec<Event>) {
    if serde_json::from_str::<serde::de::IgnoredAny>(&json).is_err() {
      self.flush(id, events);
      events.push(Event::Message { id, data: json });
      return;
    }
    self.array.push(if self.count == 0 { '[' } else { ',' });
    self.array.push_str(&json);
    self.count += 1;
  }

  /// A user message in `advanced` serialization: kept length-prefixed, so
  /// JS can split the batch and hand each payload to v8's deserializer.
  pub fn push_bytes(&mut self, payload: &[u8]) {
    push_length_prefixed(&mut self.v8, payload);
  }

  pub fn flush(&mut self, id: u32, events: &mut Vec<Event>) {
    if !self.v8.is_empty() {
      events.push(Event::MessagesV8 {
        id,
        bytes: std::mem::take(&mut self.v8).into(),
      });
    }
    if self.count == 0 {
      return;
    }
    let mut array = std::mem::take(&mut self.array);
    array.push(']');
    self.count = 0;
    events.push(Event::Messages { id, data: array });
  }
}

/// V8 payloads go to JS each behind its 4-byte big-endian length.
pub(crate) fn push_length_prefixed(out: &mut Vec<u8>, payload: &[u8]) {
  out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
  out.extend_from_slice(payload);
}

#[cfg(test)]
mod event_tests {
  use super::*;

  #[test]
  fn user_messages_batch_into_one_array_and_bad_ones_go_alone() {
    let mut batch = Batch::default();
    let mut events = Vec::new();
    batch.push(1, "{\"a\":1}".into(), &mut events);
    batch.push(1, "\"two\"".into(), &mut events);
    batch.push(1, "not json".into(), &mut events);
    batch.push(1, "3".into(), &mut events);
    batch.flush(1, &mut events);
    let texts: Vec<(&str, &str)> = events
      .iter()
      .map(|e| match e {
        Event::Messages { data, .. } => ("messages", data.as_str()),
        Event::Message { data, .. } => ("message", data.as_str()),
        _ => panic!("only message events here"),
      })
      .collect();
    assert_eq!(
      texts,
      [
        ("messages", "[{\"a\":1},\"two\"]"),
        ("message", "not json"),
        ("messages", "[3]"),
      ]
    );
  }
}
