//! What the engine keeps of one worker: its channel's write side, the
//! cluster protocol's `seq`, and what the engine tracks of it.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::Notify;

use super::reader::Heard;
use super::reader::ReadSide;
use crate::ipc::channel::Channel;
use crate::ipc::channel::{Lane, Outgoing};
use crate::supervise::watchdog::Beat;

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
