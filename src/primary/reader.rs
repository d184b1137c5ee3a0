//! Which thread reads a worker's channel: one reader at a time, this one.
//!
//! Under SCHED_RR the engine reads every channel itself (`engine::read_loop`):
//! the newconn replies are on round-robin's hot path. Under the other policies the
//! JS thread reads through a [`ReadSide`] (the binding polls it in Node's own
//! loop), as Node's primary does, so a worker's message reaches JS after one
//! thread wake-up, not two. What JS handles itself (user messages, `online`,
//! `listening`, the worker hook's messages but its connection counts,
//! child_process's socket counts: [`for_js`]) it emits at once. A read with
//! anything the engine answers (queryServer, close, acks, handles and their
//! descriptors, bad bytes, the end of the stream) is handed to the engine
//! instead, and so is every read after it until the engine is done with it
//! (its events reached JS, or it had none): JS sees everything in channel
//! order. The one hand-off besides: the watchdog drains a channel through
//! the same [`ReadSide`] (under its lock) when JS has not read it for a
//! while, since a primary whose JS is busy must not get healthy workers
//! killed. Heartbeats are noted here, by whichever thread reads them.
//!
//! And when readers pause: JS's backlog ([`Pressure`]) counts the event
//! batches handed to JS and not yet delivered; past the high-water mark the
//! readers stop reading, so a worker that floods its channel fills its own
//! socket buffer and queue, not the primary's memory.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use nix::errno::Errno;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use crate::ipc::channel::recv_with_fds;
use crate::ipc::json::Frame;

/// Milliseconds on the engine's clock (monotonic, from the first use).
pub fn now_ms() -> f64 {
  static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);
  EPOCH.elapsed().as_secs_f64() * 1000.0
}

/// When a worker was last heard from (its spawn, then each heartbeat), on
/// [`now_ms`]'s clock. Written by whichever thread reads its channel.
#[derive(Debug)]
pub struct Heard(AtomicU64);

impl Heard {
  pub fn new() -> Self {
    Heard(AtomicU64::new(now_ms().to_bits()))
  }

  pub fn touch(&self) {
    self.0.store(now_ms().to_bits(), Ordering::Release);
  }

  pub fn ms(&self) -> f64 {
    f64::from_bits(self.0.load(Ordering::Acquire))
  }
}

/// Whether a message is the worker hook's heartbeat.
pub fn is_heartbeat(msg: &Value) -> bool {
  msg["cmd"] == "NODE_RCLUSTER" && msg["act"] == "heartbeat"
}

/// Notes a heartbeat among a read's frames.
pub(crate) fn note_heartbeats(frames: &[Frame], heard: &Heard) {
  if frames
    .iter()
    .any(|f| matches!(f, Frame::Internal(msg) if is_heartbeat(msg)))
  {
    heard.touch();
  }
}

/// Reads handed to the engine and not yet done with, past which JS stops
/// polling the channel (the worker then fills its own socket buffer).
pub const MAX_BEHIND: usize = 64;

/// Whether JS handles this message itself, without the engine.
pub(crate) fn for_js(frame: &Frame) -> bool {
  match frame {
    Frame::User(_) | Frame::UserBytes(_) => true,
    Frame::Internal(msg) => js_answers(msg),
    Frame::HandleBytes(_) | Frame::Bad(_) => false,
  }
}

/// The internal messages JS answers: `online`, `listening`, the worker
/// hook's (but its connection counts, which steer placement), and
/// child_process's counts of sockets sent between the processes.
pub(crate) fn js_answers(msg: &Value) -> bool {
  match msg["cmd"].as_str().unwrap_or_default() {
    "NODE_RCLUSTER" => msg["act"] != "connections",
    "NODE_CLUSTER" => {
      msg.get("ack").is_none() && matches!(msg["act"].as_str(), Some("online" | "listening"))
    }
    cmd => cmd.starts_with("NODE_SOCKET_"),
  }
}

/// Whether the engine answers this message without telling JS anything.
pub(crate) fn engine_only(frame: &Frame) -> bool {
  let Frame::Internal(msg) = frame else {
    return false;
  };
  match msg["cmd"].as_str().unwrap_or_default() {
    "NODE_HANDLE_ACK" | "NODE_HANDLE_NACK" => true,
    "NODE_RCLUSTER" => msg["act"] == "connections",
    "NODE_CLUSTER" => {
      msg.get("ack").is_some() || matches!(msg["act"].as_str(), Some("queryServer" | "close"))
    }
    _ => false,
  }
}

/// Frames in the channel's serialization.
pub(crate) enum StreamDecoder {
  Json(crate::ipc::json::Decoder),
  V8(crate::ipc::v8::Decoder),
}

impl StreamDecoder {
  pub fn new(advanced: bool) -> Self {
    if advanced {
      StreamDecoder::V8(Default::default())
    } else {
      StreamDecoder::Json(Default::default())
    }
  }

  pub fn push(&mut self, data: &[u8], out: &mut Vec<Frame>) {
    match self {
      StreamDecoder::Json(d) => d.push(data, out),
      StreamDecoder::V8(d) => d.push(data, out),
    }
  }
}

/// What a read hands the engine, in channel order.
pub(crate) enum Forward {
  Frames {
    frames: Vec<Frame>,
    fds: Vec<OwnedFd>,
  },
  /// End of stream; with the error that ended it, if one did.
  End(Option<io::Error>),
}

/// The read side of a channel the JS thread reads.
pub struct ReadSide {
  id: u32,
  /// A duplicate of the channel's descriptor: JS polls it, so it stays open
  /// until JS has stopped polling, whatever the engine does with its own.
  fd: OwnedFd,
  heard: Arc<Heard>,
  inner: Mutex<Inner>,
  forward: mpsc::UnboundedSender<Forward>,
}

struct Inner {
  decoder: StreamDecoder,
  /// Reads handed to the engine it is not done with yet.
  behind: usize,
  /// JS stopped polling at [`MAX_BEHIND`].
  paused: bool,
  ended: bool,
}

/// What one read did. `more`: the read filled the buffer, so there may be
/// more to read now; otherwise the next read would most likely find nothing
/// (libuv's own stream reads stop there too).
pub enum Step {
  /// Messages JS handles (maybe none, for a partial message), to emit now.
  Emit { frames: Vec<Frame>, more: bool },
  /// Handed to the engine.
  Forwarded { more: bool },
  /// Nothing to read now.
  Idle,
  /// The channel has ended; nothing more will be read.
  Ended,
}

impl ReadSide {
  pub(crate) fn new(
    id: u32,
    fd: OwnedFd,
    advanced: bool,
    heard: Arc<Heard>,
  ) -> (Arc<ReadSide>, mpsc::UnboundedReceiver<Forward>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let side = ReadSide {
      id,
      fd,
      heard,
      inner: Mutex::new(Inner {
        decoder: StreamDecoder::new(advanced),
        behind: 0,
        paused: false,
        ended: false,
      }),
      forward: tx,
    };
    (Arc::new(side), rx)
  }

  pub fn id(&self) -> u32 {
    self.id
  }

  pub fn fd(&self) -> RawFd {
    self.fd.as_raw_fd()
  }

  /// Reads handed to the engine it is not done with.
  #[cfg(test)]
  fn behind(&self) -> usize {
    crate::sync::lock(&self.inner).behind
  }

  /// JS, before a read: true (and paused) when the engine is too far behind.
  pub fn pause_if_behind(&self) -> bool {
    let mut inner = crate::sync::lock(&self.inner);
    inner.paused = inner.behind >= MAX_BEHIND;
    inner.paused
  }

  /// JS received the engine's events for one forwarded read; true when
  /// polling should resume.
  pub fn caught_up(&self) -> bool {
    let mut inner = crate::sync::lock(&self.inner);
    inner.behind = inner.behind.saturating_sub(1);
    let resume = inner.paused && inner.behind < MAX_BEHIND / 2;
    if resume {
      inner.paused = false;
    }
    resume
  }

  /// The engine, done with a forwarded read that had nothing for JS: true
  /// when that is the end of it; false while JS is paused, when only JS can
  /// resume polling (the read's end then goes through JS as an empty batch).
  pub fn settled(&self) -> bool {
    let mut inner = crate::sync::lock(&self.inner);
    if inner.paused {
      return false;
    }
    inner.behind = inner.behind.saturating_sub(1);
    true
  }

  /// One read, from the JS thread.
  pub fn read(&self, buf: &mut [u8]) -> Step {
    let mut inner = crate::sync::lock(&self.inner);
    self.read_locked(&mut inner, buf, true)
  }

  /// From the engine, when JS has not read for a while: up to `reads` reads,
  /// all handed to the engine.
  pub(crate) fn drain(&self, buf: &mut [u8], reads: usize) {
    let mut inner = crate::sync::lock(&self.inner);
    for _ in 0..reads {
      if !matches!(
        self.read_locked(&mut inner, buf, false),
        Step::Forwarded { .. }
      ) {
        return;
      }
    }
  }

  fn read_locked(&self, inner: &mut Inner, buf: &mut [u8], may_emit: bool) -> Step {
    if inner.ended {
      return Step::Ended;
    }
    let mut fds = Vec::new();
    let n = loop {
      match recv_with_fds(self.fd.as_fd(), buf, &mut fds) {
        Ok(0) => return self.end(inner, None),
        Ok(n) => break n,
        Err(Errno::EINTR) => continue,
        Err(Errno::EAGAIN) => return Step::Idle,
        // The worker vanished mid-stream: that is a disconnect, not an error.
        Err(Errno::ECONNRESET) => return self.end(inner, None),
        Err(e) => return self.end(inner, Some(e.into())),
      }
    };
    let more = n == buf.len();
    let mut frames = Vec::new();
    inner.decoder.push(&buf[..n], &mut frames);
    note_heartbeats(&frames, &self.heard);
    let plain = fds.is_empty() && frames.iter().all(for_js);
    if may_emit && plain && inner.behind == 0 {
      return Step::Emit { frames, more };
    }
    inner.behind += 1;
    // The engine is gone only while the process exits.
    let _ = self.forward.send(Forward::Frames { frames, fds });
    Step::Forwarded { more }
  }

  /// JS cannot read this channel after all: it ends with `error`.
  pub fn abandon(&self, error: io::Error) {
    let mut inner = crate::sync::lock(&self.inner);
    if !inner.ended {
      self.end(&mut inner, Some(error));
    }
  }

  fn end(&self, inner: &mut Inner, error: Option<io::Error>) -> Step {
    inner.ended = true;
    let _ = self.forward.send(Forward::End(error));
    Step::Ended
  }
}

// JS's backlog: batches handed to JS and not yet delivered; past the
// high-water mark the readers stop reading.

/// Undelivered batches (each at most one 64 KiB read) before readers pause.
pub const HIGH_WATER: usize = 256;

#[derive(Default)]
pub struct Pressure {
  in_flight: AtomicUsize,
  drained: Notify,
}

impl Pressure {
  /// A batch was handed to JS.
  pub fn sent(&self) {
    self.in_flight.fetch_add(1, Ordering::AcqRel);
  }

  /// JS took a batch (called on the JS thread).
  pub fn delivered(&self) {
    let before = self.in_flight.fetch_sub(1, Ordering::AcqRel);
    if before == HIGH_WATER {
      self.drained.notify_waiters();
    }
  }

  pub fn in_flight(&self) -> usize {
    self.in_flight.load(Ordering::Acquire)
  }

  /// Returns once JS is below the high-water mark.
  pub async fn admit(&self) {
    loop {
      // Created before the check: notify_waiters() reaches it from then on.
      let drained = self.drained.notified();
      if self.in_flight() < HIGH_WATER {
        return;
      }
      drained.await;
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
  use std::io::Write;
  use std::os::unix::net::UnixStream;

  fn pair() -> (Arc<ReadSide>, mpsc::UnboundedReceiver<Forward>, UnixStream) {
    let (ours, theirs) = socketpair(
      AddressFamily::Unix,
      SockType::Stream,
      None,
      SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )
    .unwrap();
    let (side, rx) = ReadSide::new(7, ours, false, Arc::new(Heard::new()));
    (side, rx, UnixStream::from(theirs))
  }

  fn emitted(step: Step) -> Vec<Frame> {
    match step {
      Step::Emit { frames, .. } => frames,
      _ => panic!("expected user messages to emit"),
    }
  }

  #[test]
  fn plain_reads_are_emitted_and_anything_after_a_handover_waits_for_it() {
    let (side, mut rx, mut worker) = pair();
    let mut buf = vec![0u8; 4096];
    assert!(matches!(side.read(&mut buf), Step::Idle));

    worker.write_all(b"\"a\"\n{\"b\":1}\n").unwrap();
    assert_eq!(
      emitted(side.read(&mut buf)),
      vec![Frame::User("\"a\"".into()), Frame::User("{\"b\":1}".into())]
    );

    // Messages JS handles itself stay on the JS thread...
    worker
      .write_all(b"{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\",\"seq\":0}\n")
      .unwrap();
    assert!(matches!(
      &emitted(side.read(&mut buf))[0],
      Frame::Internal(_)
    ));
    // ...one the engine answers goes there, with the user message beside it...
    worker
      .write_all(b"\"c\"\n{\"cmd\":\"NODE_CLUSTER\",\"act\":\"queryServer\"}\n")
      .unwrap();
    assert!(matches!(side.read(&mut buf), Step::Forwarded { .. }));
    assert_eq!(side.behind(), 1);
    // ...and so does a plain read after it, until JS has the engine's events.
    worker.write_all(b"\"d\"\n").unwrap();
    assert!(matches!(side.read(&mut buf), Step::Forwarded { .. }));
    assert!(!side.caught_up());
    assert!(
      side.settled(),
      "the engine settles a read with nothing for JS"
    );
    assert_eq!(side.behind(), 0);
    worker.write_all(b"\"e\"\n").unwrap();
    assert_eq!(emitted(side.read(&mut buf)).len(), 1);

    let mut forwarded = Vec::new();
    while let Ok(Forward::Frames { frames, .. }) = rx.try_recv() {
      forwarded.extend(frames);
    }
    assert!(matches!(&forwarded[0], Frame::User(s) if s == "\"c\""));
    assert!(engine_only(&forwarded[1]));
    assert!(matches!(&forwarded[2], Frame::User(s) if s == "\"d\""));

    // The end of the stream is the engine's too, once.
    drop(worker);
    assert!(matches!(side.read(&mut buf), Step::Ended));
    assert!(matches!(side.read(&mut buf), Step::Ended));
    assert!(matches!(rx.try_recv(), Ok(Forward::End(None))));
    assert!(rx.try_recv().is_err());
  }

  #[test]
  fn the_engine_drains_for_a_busy_js_thread_in_order() {
    let (side, mut rx, mut worker) = pair();
    // Small reads, so the drain takes several and JS finds the rest.
    let mut buf = vec![0u8; 8];
    worker
      .write_all(b"\"one\"\n\"two\"\n\"three\"\n\"four\"\n")
      .unwrap();
    side.drain(&mut buf, 2);
    assert_eq!(side.behind(), 2);
    // JS, meanwhile behind, hands its reads over too.
    assert!(matches!(side.read(&mut buf), Step::Forwarded { .. }));
    let mut users = Vec::new();
    while let Ok(Forward::Frames { frames, .. }) = rx.try_recv() {
      for f in frames {
        if let Frame::User(s) = f {
          users.push(s);
        }
      }
    }
    assert_eq!(users, ["\"one\"", "\"two\"", "\"three\""]);
    assert_eq!(side.behind(), 3);
  }
}

#[cfg(test)]
mod backlog_tests {
  use super::*;
  use std::sync::Arc;

  #[test]
  fn readers_wait_at_the_high_water_mark_and_resume_below_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
      .build()
      .unwrap();
    let p = Arc::new(Pressure::default());
    for _ in 0..HIGH_WATER {
      p.sent();
    }
    rt.block_on(async {
      let waiting = tokio::spawn({
        let p = p.clone();
        async move { p.admit().await }
      });
      tokio::task::yield_now().await;
      assert!(!waiting.is_finished(), "a reader waits while JS is behind");
      // JS delivers from its own thread.
      let js = {
        let p = p.clone();
        std::thread::spawn(move || p.delivered())
      };
      js.join().unwrap();
      waiting.await.unwrap();
      assert_eq!(p.in_flight(), HIGH_WATER - 1);
    });
  }
}
