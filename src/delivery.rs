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
        let js = events.into_iter().map(JsEvent::from).collect();
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

/// One engine event for index.js.
#[napi(object)]
pub struct JsEvent {
  /// online | listening | message | messages | exitedAfterDisconnect | disconnect | exit | error
  pub kind: String,
  pub id: u32,
  /// JSON text: the user message, an array of user messages, or the listening message.
  pub data: Option<String>,
  pub code: Option<i32>,
  pub signal: Option<String>,
  pub error: Option<NativeError>,
  /// `messagesV8`: length-prefixed V8 payloads; `handleMessage`: the V8 envelope.
  pub bytes: Option<Buffer>,
  /// `handleMessage`: the received descriptor, now owned by JS.
  pub fd: Option<i32>,
}

impl From<Event> for JsEvent {
  fn from(ev: Event) -> Self {
    let mut js = JsEvent {
      kind: String::new(),
      id: 0,
      data: None,
      code: None,
      signal: None,
      error: None,
      bytes: None,
      fd: None,
    };
    let (kind, id) = match ev {
      Event::Online { id } => ("online", id),
      Event::Listening { id, info } => {
        js.data = Some(info);
        ("listening", id)
      }
      Event::Message { id, json } => {
        js.data = Some(json);
        ("message", id)
      }
      Event::Messages { id, array } => {
        js.data = Some(array);
        ("messages", id)
      }
      Event::HandleMessage { id, json, v8, fd } => {
        js.data = json;
        js.bytes = v8.map(Buffer::from);
        js.fd = Some(fd.0.into_raw_fd());
        ("handleMessage", id)
      }
      Event::MessagesV8 { id, bytes } => {
        js.bytes = Some(bytes.into());
        ("messagesV8", id)
      }
      Event::ExitedAfterDisconnect { id } => ("exitedAfterDisconnect", id),
      Event::Internal { id, json } => {
        js.data = Some(json);
        ("internal", id)
      }
      Event::Unresponsive { id } => ("unresponsive", id),
      Event::Disconnect { id } => ("disconnect", id),
      Event::Exit { id, code, signal } => {
        js.code = code;
        js.signal = signal;
        ("exit", id)
      }
      Event::Error { id, error } => {
        js.error = Some(NativeError::from(&error));
        ("error", id)
      }
      // Delivery takes these out before conversion.
      Event::CaughtUp(CaughtUp(side)) => ("", side.id()),
    };
    js.kind = kind.to_string();
    js.id = id;
    js
  }
}
