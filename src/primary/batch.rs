//! A read's messages as JS gets them: consecutive JSON user messages joined
//! into one JSON array (one `JSON.parse` in JS), V8 payloads length-prefixed.

use super::event::Event;
use crate::ipc::json::Frame;

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
pub(super) struct Batch {
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
pub(super) fn push_length_prefixed(out: &mut Vec<u8>, payload: &[u8]) {
  out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
  out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
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
