//! Node's `json` serialization: one UTF-8 JSON text per message, ended by `\n`.
//! Internal messages (an object whose `cmd` starts with `NODE_`) are decoded
//! here; user messages stay raw text for JS to `JSON.parse`.

use serde_json::Value;

/// Longest message a worker may send before its channel reports an error.
/// Node has no limit; this only stops one worker from growing the primary without bound.
pub const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// One decoded frame from a worker.
#[derive(Debug, PartialEq)]
pub enum Frame {
  /// A user message, still JSON text.
  User(String),
  /// An internal `NODE_*` message, parsed.
  Internal(Value),
  /// A user message in `advanced` serialization: the V8 payload, for JS.
  UserBytes(Vec<u8>),
  /// A `NODE_HANDLE` envelope in `advanced` serialization whose user message
  /// only JS can decode: the whole V8 payload.
  HandleBytes(Vec<u8>),
  /// Bytes that are not a message (bad UTF-8, or a message over [`MAX_MESSAGE`]).
  Bad(String),
}

/// Splits a byte stream into frames.
#[derive(Default)]
pub struct Decoder {
  buf: Vec<u8>,
  /// Set while skipping the rest of an over-long message up to its `\n`.
  skipping: bool,
}

impl Decoder {
  /// Feeds bytes read from the channel; complete frames are pushed to `out`.
  pub fn push(&mut self, mut data: &[u8], out: &mut Vec<Frame>) {
    while let Some(nl) = data.iter().position(|&b| b == b'\n') {
      let (line, rest) = (&data[..nl], &data[nl + 1..]);
      data = rest;
      if self.skipping {
        self.skipping = false;
        self.buf.clear();
        continue;
      }
      if self.buf.is_empty() {
        out.push(classify(line));
      } else {
        self.buf.extend_from_slice(line);
        let whole = std::mem::take(&mut self.buf);
        out.push(classify(&whole));
      }
    }
    if self.skipping {
      return;
    }
    self.buf.extend_from_slice(data);
    if self.buf.len() > MAX_MESSAGE {
      self.buf = Vec::new();
      self.skipping = true;
      out.push(Frame::Bad(format!(
        "message longer than {MAX_MESSAGE} bytes"
      )));
    }
  }
}

/// Sorts one line into a user or internal message, as Node's `isInternal` does.
pub fn classify(line: &[u8]) -> Frame {
  let text = match std::str::from_utf8(line) {
    Ok(t) => t,
    Err(e) => return Frame::Bad(format!("invalid UTF-8: {e}")),
  };
  // Only a line that mentions NODE_ can be internal; everything else goes to
  // JS untouched, so user traffic is never parsed twice.
  if text.contains("NODE_") {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
      if is_internal(&value) {
        return Frame::Internal(value);
      }
    }
  }
  Frame::User(text.to_owned())
}

/// Node's rule: an object whose `cmd` is a string starting with `NODE_`.
pub fn is_internal(value: &Value) -> bool {
  value
    .get("cmd")
    .and_then(Value::as_str)
    .is_some_and(|cmd| cmd.starts_with("NODE_"))
}

/// Encodes one message for the wire.
pub fn encode(value: &Value) -> Vec<u8> {
  let mut bytes = serde_json::to_vec(value).unwrap_or_default();
  bytes.push(b'\n');
  bytes
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  fn decode(chunks: &[&[u8]]) -> Vec<Frame> {
    let mut d = Decoder::default();
    let mut out = Vec::new();
    for c in chunks {
      d.push(c, &mut out);
    }
    out
  }

  #[test]
  fn splits_lines_across_reads() {
    let out = decode(&[b"{\"a\":1}\n{\"b\"", b":2}\n\"x\"\n", b"tail"]);
    assert_eq!(
      out,
      vec![
        Frame::User("{\"a\":1}".into()),
        Frame::User("{\"b\":2}".into()),
        Frame::User("\"x\"".into()),
      ]
    );
  }

  #[test]
  fn internal_only_when_top_level_cmd_is_node() {
    let out = decode(&[
      b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":0}\n",
      b"{\"nested\":{\"cmd\":\"NODE_CLUSTER\"}}\n",
      b"{\"cmd\":\"NODE_\"}\n",
      b"\"NODE_CLUSTER\"\n",
    ]);
    assert_eq!(
      out[0],
      Frame::Internal(json!({"cmd":"NODE_CLUSTER","act":"online","seq":0}))
    );
    assert!(matches!(out[1], Frame::User(_)));
    assert!(matches!(out[2], Frame::Internal(_)));
    assert!(matches!(out[3], Frame::User(_)));
  }

  #[test]
  fn bad_utf8_is_reported_and_the_stream_goes_on() {
    let out = decode(&[b"\xff\xfe\n{\"ok\":true}\n"]);
    assert!(matches!(out[0], Frame::Bad(_)));
    assert_eq!(out[1], Frame::User("{\"ok\":true}".into()));
  }

  #[test]
  fn encode_ends_with_newline() {
    assert_eq!(
      encode(&json!({"cmd":"NODE_HANDLE_ACK"})),
      b"{\"cmd\":\"NODE_HANDLE_ACK\"}\n"
    );
  }
}
