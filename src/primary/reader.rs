//! Which thread reads a worker's channel.
//!
//! Under SCHED_RR the engine does: the dispatcher's acks are on its hot path.
//! Under the other policies the JS thread does, as Node's primary does, so a
//! worker's reply reaches a `'message'` listener after one thread wake-up,
//! not two (engine, then JS). The JS thread emits a read's plain user
//! messages itself. A read with anything the engine answers (the cluster
//! protocol, handles and their descriptors, bad bytes, the end of the
//! stream) goes to the engine instead, and so does every read after it
//! until the engine's events for it have reached JS: JS sees everything in
//! channel order. The engine also reads, now and then, when JS has not:
//! the watchdog must hear heartbeats while the primary's JS is busy.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use tokio::sync::mpsc;

use crate::ipc::fdpass;
use crate::ipc::json::Frame;

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
  inner: Mutex<Inner>,
  forward: mpsc::UnboundedSender<Forward>,
}

struct Inner {
  decoder: StreamDecoder,
  /// Reads handed to the engine whose events have not reached JS yet.
  behind: usize,
  ended: bool,
}

/// What one read did. `more`: the read filled the buffer, so there may be
/// more to read now; otherwise the next read would most likely find nothing
/// (libuv's own stream reads stop there too).
pub enum Step {
  /// Plain user messages (maybe none, for a partial message) for JS to emit now.
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
  ) -> (Arc<ReadSide>, mpsc::UnboundedReceiver<Forward>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let side = ReadSide {
      id,
      fd,
      inner: Mutex::new(Inner {
        decoder: StreamDecoder::new(advanced),
        behind: 0,
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

  /// Reads handed to the engine and not yet back in JS.
  pub fn behind(&self) -> usize {
    crate::sync::lock(&self.inner).behind
  }

  /// JS received the engine's events for one forwarded read; returns how
  /// many are still out.
  pub fn caught_up(&self) -> usize {
    let mut inner = crate::sync::lock(&self.inner);
    inner.behind = inner.behind.saturating_sub(1);
    inner.behind
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
      match fdpass::recv(self.fd.as_fd(), buf, &mut fds) {
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
    let plain = fds.is_empty()
      && frames
        .iter()
        .all(|f| matches!(f, Frame::User(_) | Frame::UserBytes(_)));
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

/// Marks the end of the engine's events for one forwarded read; the binding
/// calls [`ReadSide::caught_up`] once the batch carrying it reaches JS.
#[derive(Clone)]
pub struct CaughtUp(pub Arc<ReadSide>);

impl PartialEq for CaughtUp {
  fn eq(&self, other: &Self) -> bool {
    Arc::ptr_eq(&self.0, &other.0)
  }
}

impl std::fmt::Debug for CaughtUp {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    write!(f, "CaughtUp({})", self.0.id)
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
    let (side, rx) = ReadSide::new(7, ours, false);
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

    // A protocol message goes to the engine, with the user message beside it...
    worker
      .write_all(b"\"c\"\n{\"cmd\":\"NODE_CLUSTER\",\"act\":\"online\"}\n")
      .unwrap();
    assert!(matches!(side.read(&mut buf), Step::Forwarded { .. }));
    assert_eq!(side.behind(), 1);
    // ...and so does a plain read after it, until JS has the engine's events.
    worker.write_all(b"\"d\"\n").unwrap();
    assert!(matches!(side.read(&mut buf), Step::Forwarded { .. }));
    assert_eq!(side.caught_up(), 1);
    assert_eq!(side.caught_up(), 0);
    worker.write_all(b"\"e\"\n").unwrap();
    assert_eq!(emitted(side.read(&mut buf)).len(), 1);

    let mut forwarded = Vec::new();
    while let Ok(Forward::Frames { frames, .. }) = rx.try_recv() {
      forwarded.extend(frames);
    }
    assert!(matches!(&forwarded[0], Frame::User(s) if s == "\"c\""));
    assert!(matches!(&forwarded[1], Frame::Internal(_)));
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
