//! What the engine tells JS: the events, which are also their JS shape (a
//! union discriminated by `kind` in binding.d.ts), the per-worker counters,
//! and a spawned worker.

use std::os::fd::OwnedFd;
use std::sync::Arc;

use napi::bindgen_prelude::Buffer;
use napi_derive::napi;
use serde_json::Value;

use super::pressure::Pressure;
use super::reader::ReadSide;
use crate::error::NativeError;

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

/// What `onDelivery(id, jsonArray, events)` is called with: one worker's
/// read of plain JSON messages as `(id, jsonArray)` (the common case,
/// without building event objects), anything else as `(0, undefined, events)`.
pub type DeliveryArgs = (u32, Option<String>, Option<Vec<Event>>);

pub fn delivery_args(mut events: Vec<Event>) -> DeliveryArgs {
  match events.pop() {
    Some(Event::Messages { id, data }) if events.is_empty() => (id, Some(data), None),
    last => {
      events.extend(last);
      (0, None, Some(events))
    }
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
