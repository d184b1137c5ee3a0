//! Node's `advanced` serialization: each message is a 4-byte big-endian
//! length and a V8 ValueSerializer payload (header included). The primary
//! decodes and encodes the plain values internal messages carry (objects,
//! arrays, strings, numbers, booleans, null, undefined); anything else is a
//! user message and goes to JS as bytes for v8's deserializer.

use serde_json::{Map, Number, Value};

use super::json::{is_internal, Frame, MAX_MESSAGE};

/// The ValueSerializer format version Node 20-24 write.
const VERSION: u8 = 15;

/// Splits the byte stream into length-prefixed payloads.
#[derive(Default)]
pub struct Decoder {
  buf: Vec<u8>,
}

impl Decoder {
  pub fn push(&mut self, data: &[u8], out: &mut Vec<Frame>) {
    self.buf.extend_from_slice(data);
    let mut at = 0;
    while self.buf.len() - at >= 4 {
      let len = u32::from_be_bytes([
        self.buf[at],
        self.buf[at + 1],
        self.buf[at + 2],
        self.buf[at + 3],
      ]) as usize;
      if len > MAX_MESSAGE {
        out.push(Frame::Bad(format!(
          "message longer than {MAX_MESSAGE} bytes"
        )));
        self.buf.clear();
        return;
      }
      if self.buf.len() - at - 4 < len {
        break;
      }
      let payload = &self.buf[at + 4..at + 4 + len];
      out.push(classify(payload));
      at += 4 + len;
    }
    self.buf.drain(..at);
  }
}

/// An internal message (decoded), or a user message (its payload bytes).
pub fn classify(payload: &[u8]) -> Frame {
  match decode(payload) {
    Some(value) if is_internal(&value) => Frame::Internal(value),
    Some(_) => Frame::UserBytes(payload.to_vec()),
    // Node writes `{ cmd: 'NODE_HANDLE', type, msg }` with `cmd` first; the
    // user message inside may be anything v8 can carry.
    None if first_cmd(payload).as_deref() == Some("NODE_HANDLE") => {
      Frame::HandleBytes(payload.to_vec())
    }
    None => Frame::UserBytes(payload.to_vec()),
  }
}

/// The value of an object's first property when it is `cmd` and a string.
fn first_cmd(payload: &[u8]) -> Option<String> {
  let mut r = Reader { b: payload, at: 0 };
  if r.byte()? != 0xFF {
    return None;
  }
  r.varint()?;
  if r.tag()? != b'o' {
    return None;
  }
  let t = r.tag()?;
  if !matches!(t, b'"' | b'c' | b'S') || r.string_body(t)? != "cmd" {
    return None;
  }
  let t = r.tag()?;
  if !matches!(t, b'"' | b'c' | b'S') {
    return None;
  }
  r.string_body(t)
}

/// Decodes a payload made only of plain values; None for anything else.
pub fn decode(payload: &[u8]) -> Option<Value> {
  let mut r = Reader { b: payload, at: 0 };
  if r.byte()? != 0xFF {
    return None;
  }
  r.varint()?;
  let v = r.value(0)?;
  Some(v.unwrap_or(Value::Null))
}

struct Reader<'a> {
  b: &'a [u8],
  at: usize,
}

impl Reader<'_> {
  fn byte(&mut self) -> Option<u8> {
    let v = *self.b.get(self.at)?;
    self.at += 1;
    Some(v)
  }

  fn varint(&mut self) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
      let b = self.byte()?;
      v |= u64::from(b & 0x7F) << shift;
      if b & 0x80 == 0 {
        return Some(v);
      }
    }
    None
  }

  fn bytes(&mut self, n: usize) -> Option<&[u8]> {
    let end = self.at.checked_add(n)?;
    let s = self.b.get(self.at..end)?;
    self.at = end;
    Some(s)
  }

  fn tag(&mut self) -> Option<u8> {
    loop {
      let t = self.byte()?;
      if t != 0 {
        return Some(t); // '\0' is padding
      }
    }
  }

  /// A value; Ok(None) stands for `undefined`.
  fn value(&mut self, depth: usize) -> Option<Option<Value>> {
    if depth > 64 {
      return None;
    }
    let t = self.tag()?;
    Some(Some(match t {
      b'_' => return Some(None),
      b'0' => Value::Null,
      b'T' => Value::Bool(true),
      b'F' => Value::Bool(false),
      b'I' => {
        let z = self.varint()?;
        Value::from(((z >> 1) as i64) ^ -((z & 1) as i64))
      }
      b'U' => Value::from(self.varint()?),
      b'N' => {
        let f = f64::from_le_bytes(self.bytes(8)?.try_into().ok()?);
        // A whole number beyond the Smi range (a large seq) stays an integer,
        // as it would be in JSON.
        if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
          Value::from(f as i64)
        } else {
          Number::from_f64(f).map(Value::Number)?
        }
      }
      b'"' | b'c' | b'S' => Value::String(self.string_body(t)?),
      b'o' => {
        let mut map = Map::new();
        loop {
          let t = self.tag()?;
          if t == b'{' {
            self.varint()?;
            break;
          }
          let key = match t {
            b'"' | b'c' | b'S' => self.string_body(t)?,
            b'I' => {
              let z = self.varint()?;
              (((z >> 1) as i64) ^ -((z & 1) as i64)).to_string()
            }
            _ => return None,
          };
          if let Some(v) = self.value(depth + 1)? {
            map.insert(key, v);
          }
        }
        Value::Object(map)
      }
      b'A' => {
        let len = self.varint()? as usize;
        let mut items = Vec::with_capacity(len.min(1024));
        for _ in 0..len {
          items.push(self.value(depth + 1)?.unwrap_or(Value::Null));
        }
        if self.tag()? != b'$' {
          return None; // named properties on an array: not a plain value
        }
        self.varint()?;
        self.varint()?;
        Value::Array(items)
      }
      _ => return None,
    }))
  }

  fn string_body(&mut self, tag: u8) -> Option<String> {
    let n = self.varint()? as usize;
    let raw = self.bytes(n)?;
    match tag {
      b'"' => Some(raw.iter().map(|&b| b as char).collect()),
      b'S' => String::from_utf8(raw.to_vec()).ok(),
      _ => {
        if !n.is_multiple_of(2) {
          return None;
        }
        let units: Vec<u16> = raw
          .chunks_exact(2)
          .map(|c| u16::from_le_bytes([c[0], c[1]]))
          .collect();
        String::from_utf16(&units).ok()
      }
    }
  }
}

/// Encodes a message: 4-byte length, header, value.
pub fn encode(value: &Value) -> Vec<u8> {
  let mut out = vec![0, 0, 0, 0, 0xFF, VERSION];
  write_value(&mut out, value);
  let len = (out.len() - 4) as u32;
  out[..4].copy_from_slice(&len.to_be_bytes());
  out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
  loop {
    let b = (v & 0x7F) as u8;
    v >>= 7;
    if v == 0 {
      out.push(b);
      return;
    }
    out.push(b | 0x80);
  }
}

fn write_string(out: &mut Vec<u8>, s: &str) {
  if s.chars().all(|c| (c as u32) < 0x100) {
    out.push(b'"');
    varint(out, s.chars().count() as u64);
    out.extend(s.chars().map(|c| c as u8));
  } else {
    let units: Vec<u16> = s.encode_utf16().collect();
    out.push(b'c');
    varint(out, (units.len() * 2) as u64);
    for u in units {
      out.extend_from_slice(&u.to_le_bytes());
    }
  }
}

fn write_value(out: &mut Vec<u8>, v: &Value) {
  match v {
    Value::Null => out.push(b'0'),
    Value::Bool(true) => out.push(b'T'),
    Value::Bool(false) => out.push(b'F'),
    Value::Number(n) => match n.as_i64().filter(|&i| i32::try_from(i).is_ok()) {
      Some(i) => {
        out.push(b'I');
        varint(out, ((i << 1) ^ (i >> 63)) as u64);
      }
      None => {
        out.push(b'N');
        out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_le_bytes());
      }
    },
    Value::String(s) => write_string(out, s),
    Value::Array(items) => {
      out.push(b'A');
      varint(out, items.len() as u64);
      for item in items {
        write_value(out, item);
      }
      out.push(b'$');
      varint(out, 0);
      varint(out, items.len() as u64);
    }
    Value::Object(map) => {
      out.push(b'o');
      for (k, v) in map {
        write_string(out, k);
        write_value(out, v);
      }
      out.push(b'{');
      varint(out, map.len() as u64);
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use serde_json::json;

  #[test]
  fn decodes_the_online_message_seen_on_the_wire() {
    // From design.md: what Node 20 and 24 send for `online`.
    let mut wire = vec![0, 0, 0, 0x2c, 0xff, 0x0f, b'o'];
    for (k, v) in [("cmd", "NODE_CLUSTER"), ("act", "online")] {
      wire.push(b'"');
      wire.push(k.len() as u8);
      wire.extend_from_slice(k.as_bytes());
      wire.push(b'"');
      wire.push(v.len() as u8);
      wire.extend_from_slice(v.as_bytes());
    }
    wire.extend_from_slice(&[b'"', 3, b's', b'e', b'q', b'I', 0, b'{', 3]);
    assert_eq!(wire.len(), 4 + 0x2c);
    let mut d = Decoder::default();
    let mut out = Vec::new();
    d.push(&wire[..10], &mut out);
    assert!(out.is_empty());
    d.push(&wire[10..], &mut out);
    assert_eq!(
      out,
      vec![Frame::Internal(
        json!({"cmd":"NODE_CLUSTER","act":"online","seq":0})
      )]
    );
  }

  #[test]
  fn round_trips_what_replies_carry() {
    let v = json!({
      "cmd": "NODE_CLUSTER", "errno": null, "key": "::1:0:6:undefined:0", "ack": 3, "seq": 70000,
      "data": null, "neg": -5, "big": 4_000_000_000u64, "half": 0.5, "ok": true,
      "sockname": {"address": "::", "family": "IPv6", "port": 8080}, "list": [1, "two", false],
      "unicode": "héllo ☃"
    });
    let bytes = encode(&v);
    assert_eq!(&bytes[4..6], &[0xFF, 15]);
    assert_eq!(decode(&bytes[4..]), Some(v));
  }

  #[test]
  fn anything_else_is_a_user_message() {
    // A Date ('D' + double) is not a plain value.
    let mut payload = vec![0xFF, 15, b'D'];
    payload.extend_from_slice(&1.0f64.to_le_bytes());
    assert!(matches!(classify(&payload), Frame::UserBytes(_)));
    // A handle envelope around a Date: only its `cmd` is read here.
    let mut env = vec![0xFF, 15, b'o', b'"', 3, b'c', b'm', b'd', b'"', 11];
    env.extend_from_slice(b"NODE_HANDLE");
    env.extend_from_slice(&[b'"', 3, b'm', b's', b'g', b'D']);
    env.extend_from_slice(&1.0f64.to_le_bytes());
    env.extend_from_slice(&[b'{', 2]);
    assert!(matches!(classify(&env), Frame::HandleBytes(_)));
    // A plain object without a NODE_ cmd is a user message too.
    let user = encode(&json!({"cmd": "hello"}));
    assert!(matches!(classify(&user[4..]), Frame::UserBytes(_)));
    // Truncated input never panics.
    for n in 0..user.len() - 4 {
      let _ = decode(&user[4..4 + n]);
    }
  }
}
