//! The JS shape of what the engine delivers: the arguments of index.js's
//! `onDelivery(id, jsonArray, events)`, built by the engine's thread-safe
//! function (binding) and by the JS thread's own channel reads (jsread).

use std::os::fd::IntoRawFd;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi_derive::napi;

use crate::error::Error as EngineError;
use crate::primary::reader::{CaughtUp, ReadSide};
use crate::primary::Event;

/// What index.js's `onDelivery(id, jsonArray, events)` is called with: one
/// worker's read of plain JSON messages as `(id, jsonArray)` (the common
/// case, without building event objects), anything else as
/// `(0, undefined, events)`.
pub type DeliveryArgs = (u32, Option<String>, Option<Vec<JsEvent>>);

/// A batch for JS, and the channels whose handed-over reads it completes.
pub struct Delivery {
  pub args: DeliveryArgs,
  pub caught: Vec<Arc<ReadSide>>,
}

impl From<Vec<Event>> for Delivery {
  fn from(mut events: Vec<Event>) -> Self {
    let mut caught = Vec::new();
    events.retain(|ev| match ev {
      Event::CaughtUp(CaughtUp(side)) => {
        caught.push(side.clone());
        false
      }
      _ => true,
    });
    let args = match events.pop() {
      Some(Event::Messages { id, array }) if events.is_empty() => (id, Some(array), None),
      last => {
        events.extend(last);
        let js = events.into_iter().filter_map(JsEvent::from_event).collect();
        (0, None, Some(js))
      }
    };
    Delivery { args, caught }
  }
}

/// `events` as the three arguments of index.js's `onDelivery` (JS thread only).
///
/// # Safety
/// On the JS thread, inside a handle scope, with the module's `env`.
pub(crate) unsafe fn js_args(
  env: napi::sys::napi_env,
  events: Vec<Event>,
) -> Option<[napi::sys::napi_value; 3]> {
  let (id, data, batch) = Delivery::from(events).args;
  Some([
    u32::to_napi_value(env, id).ok()?,
    Option::<String>::to_napi_value(env, data).ok()?,
    Option::<Vec<JsEvent>>::to_napi_value(env, batch).ok()?,
  ])
}

/// An engine failure, shaped like a Node system error (`code`, `errno`, `syscall`).
#[napi(object)]
pub struct NativeError {
  pub code: String,
  pub message: String,
  pub errno: Option<i32>,
  pub syscall: Option<String>,
}

impl From<&EngineError> for NativeError {
  fn from(e: &EngineError) -> Self {
    NativeError {
      code: e.code(),
      message: e.to_string(),
      errno: e.errno(),
      syscall: e.syscall().map(str::to_string),
    }
  }
}

/// One engine event for index.js: in binding.d.ts a union discriminated by
/// `kind`, one member per event.
#[napi(discriminant = "kind", discriminant_case = "camelCase")]
pub enum JsEvent {
  /// The worker announced `online`.
  Online { id: u32 },
  /// A server listens; `data`: the worker's listening message, JSON.
  Listening { id: u32, data: String },
  /// One user message, JSON text the engine could not vouch for.
  Message { id: u32, data: String },
  /// User messages as one JSON array text.
  Messages { id: u32, data: String },
  /// User messages in V8 serialization, each behind its 4-byte length.
  MessagesV8 { id: u32, bytes: Buffer },
  /// A user message with a handle: its envelope as JSON `data` or V8
  /// `bytes`, and the received descriptor, now owned by JS.
  HandleMessage {
    id: u32,
    data: Option<String>,
    bytes: Option<Buffer>,
    fd: i32,
  },
  /// The worker is leaving on purpose.
  ExitedAfterDisconnect { id: u32 },
  /// An internal message JS answers, JSON.
  Internal { id: u32, data: String },
  /// The watchdog sent SIGABRT.
  Unresponsive { id: u32 },
  /// The channel closed.
  Disconnect { id: u32 },
  /// The process ended: an exit code or a signal name.
  Exit {
    id: u32,
    code: Option<i32>,
    signal: Option<String>,
  },
  /// Bad bytes on the channel, a failed read or write.
  Error { id: u32, error: NativeError },
}

impl JsEvent {
  fn from_event(ev: Event) -> Option<Self> {
    Some(match ev {
      Event::Online { id } => JsEvent::Online { id },
      Event::Listening { id, info } => JsEvent::Listening { id, data: info },
      Event::Message { id, json } => JsEvent::Message { id, data: json },
      Event::Messages { id, array } => JsEvent::Messages { id, data: array },
      Event::HandleMessage { id, json, v8, fd } => JsEvent::HandleMessage {
        id,
        data: json,
        bytes: v8.map(Buffer::from),
        fd: fd.0.into_raw_fd(),
      },
      Event::MessagesV8 { id, bytes } => JsEvent::MessagesV8 {
        id,
        bytes: bytes.into(),
      },
      Event::ExitedAfterDisconnect { id } => JsEvent::ExitedAfterDisconnect { id },
      Event::Internal { id, json } => JsEvent::Internal { id, data: json },
      Event::Unresponsive { id } => JsEvent::Unresponsive { id },
      Event::Disconnect { id } => JsEvent::Disconnect { id },
      Event::Exit { id, code, signal } => JsEvent::Exit { id, code, signal },
      Event::Error { id, error } => JsEvent::Error {
        id,
        error: NativeError::from(&error),
      },
      // Not for JS: Delivery takes these out first.
      Event::CaughtUp(_) => return None,
    })
  }
}
