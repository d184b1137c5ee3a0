//! What the engine tells JS (events, through a `Sink`) and hands back from
//! its calls (a spawned worker, per-worker counters).

use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::pressure::Pressure;
use super::reader::{CaughtUp, ReadSide};
use crate::error::Error;

/// A descriptor handed to JS with an event. Equal when it is the same fd number.
#[derive(Debug)]
pub struct PassedFd(pub OwnedFd);

impl PartialEq for PassedFd {
  fn eq(&self, other: &Self) -> bool {
    use std::os::fd::AsRawFd;
    self.0.as_raw_fd() == other.0.as_raw_fd()
  }
}

/// What the primary tells JS, in the order it happened.
#[derive(Debug, PartialEq)]
pub enum Event {
  /// The worker announced `online`.
  Online { id: u32 },
  /// A worker server is listening; `info` is `{addressType, address, port, fd}` as JSON.
  Listening { id: u32, info: String },
  /// A user message, as the JSON text the worker sent.
  Message { id: u32, json: String },
  /// Several user messages, already checked to be JSON, as one JSON array
  /// text: JS parses a whole read's worth of messages in one `JSON.parse`.
  Messages { id: u32, array: String },
  /// User messages in `advanced` serialization: each a 4-byte big-endian
  /// length and a V8 payload, back to back.
  MessagesV8 { id: u32, bytes: Vec<u8> },
  /// The worker is leaving on purpose (it sent `exitedAfterDisconnect`).
  ExitedAfterDisconnect { id: u32 },
  /// A user message that came with a handle (`process.send(msg, handle)`):
  /// its whole `NODE_HANDLE` envelope (`type`, `msg`, `key`, `dgramType`) as
  /// `json` (json serialization) or `v8` (length-prefixed, advanced); the fd
  /// is JS's to wrap.
  HandleMessage {
    id: u32,
    json: Option<String>,
    v8: Option<Vec<u8>>,
    fd: PassedFd,
  },
  /// The channel closed.
  Disconnect { id: u32 },
  /// The process ended: an exit code or a signal name.
  Exit {
    id: u32,
    code: Option<i32>,
    signal: Option<String>,
  },
  /// An internal message JS answers, as JSON: rcluster's worker hook
  /// (`NODE_RCLUSTER`: heartbeat, ready) and child_process's bookkeeping of
  /// sockets sent between processes (`NODE_SOCKET_*`).
  Internal { id: u32, json: String },
  /// The watchdog found the worker silent past its timeout and sent SIGABRT.
  Unresponsive { id: u32 },
  /// Something about this worker went wrong (bad bytes on its channel, a failed write).
  Error { id: u32, error: Error },
  /// The events of a read the JS thread handed over end here (not for JS).
  CaughtUp(CaughtUp),
}

/// Where events go; the binding delivers them to JS.
pub trait Sink: Send + Sync + 'static {
  fn emit(&self, events: Vec<Event>);

  /// How far behind the consumer is, if it says; readers pause past the mark.
  fn pressure(&self) -> Option<Arc<Pressure>> {
    None
  }
}

/// What the engine counts for one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStats {
  pub id: u32,
  /// Connections handed to it by round-robin, ever.
  pub dispatched: u64,
  /// Handed and not yet acknowledged.
  pub in_flight: u32,
  /// Milliseconds since its last heartbeat, when the watchdog is on.
  pub heartbeat_age_ms: Option<f64>,
}

/// A worker as JS sees it right after `fork()`.
pub struct Spawned {
  pub pid: i32,
  /// The primary's ends of `pipe` stdio slots, one entry per slot.
  pub pipes: Vec<Option<OwnedFd>>,
  /// The number of the primary's end of its channel.
  pub channel_fd: i32,
  /// Its channel's read side, when the JS thread is to read it.
  pub reader: Option<Arc<ReadSide>>,
}
