//! The write side of a worker's channel, shared by the JS thread and the
//! engine thread. A message goes out at once from whichever thread sends it
//! (no thread hop on the hot path); only when the socket is full does it
//! wait in the queue, which the engine drains as the socket becomes writable.
//! One lock orders every write, so messages never interleave.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use tokio::sync::Notify;

use super::channel::Channel;
use crate::error::{Error, Result};

/// Messages one gathered write may carry.
const MAX_GATHER: usize = 64;

/// One whole message, with the descriptor that rides along with its first byte.
#[derive(Clone)]
pub struct Outgoing {
  pub bytes: Arc<[u8]>,
  pub fd: Option<Arc<OwnedFd>>,
}

struct Inner {
  /// Messages waiting for room in the socket; the front may be partly sent.
  queue: VecDeque<Outgoing>,
  /// Bytes of the front message already written.
  sent: usize,
  /// Handle messages written or queued and not yet acknowledged by the
  /// worker (`NODE_HANDLE_ACK`), in write order: acks come in that order.
  /// Each keeps its descriptor open until then.
  unacked: VecDeque<Outgoing>,
  closed: bool,
}

impl Inner {
  /// No more writes: queued messages and un-acked descriptors are dropped.
  fn shut(&mut self) {
    self.closed = true;
    self.queue.clear();
    self.unacked.clear();
  }
}

pub struct Lane {
  channel: Arc<Channel>,
  inner: Mutex<Inner>,
  /// Wakes the engine's drain task when something was queued.
  queued: Notify,
}

impl Lane {
  pub fn new(channel: Arc<Channel>) -> Self {
    Lane {
      channel,
      inner: Mutex::new(Inner {
        queue: VecDeque::new(),
        sent: 0,
        unacked: VecDeque::new(),
        closed: false,
      }),
      queued: Notify::new(),
    }
  }

  fn lock(&self) -> MutexGuard<'_, Inner> {
    // A panic while holding this lock cannot leave the queue half-updated in
    // a way that matters more than losing the channel; keep going.
    crate::sync::lock(&self.inner)
  }

  /// Sends a message from any thread. `now`: write it from this thread if
  /// nothing is queued ahead (lowest latency); otherwise it is queued and the
  /// engine writes the queue in gathered writes (fewest syscalls for bursts).
  pub fn send(&self, msg: Outgoing, now: bool) -> Result<()> {
    let mut inner = self.lock();
    if inner.closed {
      return Err(Error::ChannelClosed);
    }
    if msg.fd.is_some() {
      inner.unacked.push_back(msg.clone());
    }
    let was_empty = inner.queue.is_empty();
    inner.queue.push_back(msg);
    if was_empty && now {
      match self.flush(&mut inner) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        // EPIPE and friends: the reader will see the channel end and report it.
        Err(_) => {
          inner.shut();
          return Ok(());
        }
      }
    }
    if was_empty && !inner.queue.is_empty() {
      self.queued.notify_one();
    }
    Ok(())
  }

  /// Writes queued messages until the queue is empty or the socket is full.
  fn flush(&self, inner: &mut Inner) -> io::Result<()> {
    while let Some(front) = inner.queue.front() {
      let written = if inner.sent == 0 && front.fd.is_some() {
        // A handle message goes alone, its fd attached to its first byte.
        let fd = front.fd.as_ref().map(|f| f.as_raw_fd());
        self.channel.try_send(&front.bytes, fd)
      } else {
        // Gather the front (maybe partly sent) and the plain messages after it.
        let mut iov = Vec::with_capacity(MAX_GATHER);
        iov.push(IoSlice::new(&front.bytes[inner.sent..]));
        for next in inner.queue.iter().skip(1).take(MAX_GATHER - 1) {
          if next.fd.is_some() {
            break;
          }
          iov.push(IoSlice::new(&next.bytes));
        }
        self.channel.try_send_vectored(&iov)
      };
      let mut n = match written {
        Ok(n) => n,
        Err(Errno::EINTR) => continue,
        Err(e) => return Err(e.into()),
      };
      // Retire whole messages; a partly written one stays at the front.
      while n > 0 {
        let Some(front) = inner.queue.front() else {
          break;
        };
        let left = front.bytes.len() - inner.sent;
        if n >= left {
          n -= left;
          inner.queue.pop_front();
          inner.sent = 0;
        } else {
          inner.sent += n;
          n = 0;
        }
      }
    }
    Ok(())
  }

  /// The worker acknowledged the oldest handle message: its descriptor may close.
  pub fn handle_acked(&self) {
    self.lock().unacked.pop_front();
  }

  /// The worker lost the oldest handle message's descriptor (`NODE_HANDLE_NACK`,
  /// MSG_CTRUNC on its side): send it again, as Node's sender does.
  pub fn handle_nacked(&self) -> Result<()> {
    let again = self.lock().unacked.pop_front();
    match again {
      Some(msg) => self.send(msg, false),
      None => Ok(()),
    }
  }

  /// No more writes; queued messages and un-acked descriptors are dropped.
  pub fn close(&self) {
    self.lock().shut();
    self.queued.notify_one();
  }
}

/// The engine's side: drains the queue whenever the socket has room.
/// Returns when the lane is closed, or with the error that ended writing.
pub async fn drain(lane: Arc<Lane>) -> io::Result<()> {
  loop {
    let pending = {
      let inner = lane.lock();
      if inner.closed {
        return Ok(());
      }
      !inner.queue.is_empty()
    };
    if !pending {
      lane.queued.notified().await;
      continue;
    }
    let res = {
      let mut inner = lane.lock();
      if inner.closed {
        return Ok(());
      }
      lane.flush(&mut inner)
    };
    match res {
      Ok(()) => {}
      Err(e) if e.kind() == io::ErrorKind::WouldBlock => lane.channel.wait_writable().await?,
      Err(e) => {
        lane.close();
        return Err(e);
      }
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};
  use std::io::Read;

  fn msg(text: &str) -> Outgoing {
    Outgoing {
      bytes: text.as_bytes().into(),
      fd: None,
    }
  }

  #[test]
  fn bursts_and_overflow_arrive_whole_and_in_order() {
    let rt = tokio::runtime::Builder::new_current_thread()
      .enable_io()
      .build()
      .unwrap();
    let (ours, theirs) = socketpair(
      AddressFamily::Unix,
      SockType::Stream,
      None,
      SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    // A small buffer, so the burst overflows into the queue.
    setsockopt(&ours, sockopt::SndBuf, &4096).unwrap();
    let expected: String = (0..2000).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    let reader = std::thread::spawn(move || {
      let mut got = String::new();
      std::os::unix::net::UnixStream::from(theirs)
        .read_to_string(&mut got)
        .unwrap();
      got
    });
    rt.block_on(async {
      let channel = Arc::new(Channel::new(ours, true).unwrap());
      let lane = Arc::new(Lane::new(channel.clone()));
      let task = tokio::spawn(drain(lane.clone()));
      for (i, line) in expected.lines().enumerate() {
        // Mix direct writes and queued ones, as JS does within a tick.
        lane.send(msg(&format!("{line}\n")), i % 100 == 0).unwrap();
      }
      while !lane.lock().queue.is_empty() {
        tokio::task::yield_now().await;
      }
      lane.close();
      task.await.unwrap().unwrap();
      channel.shutdown();
    });
    assert_eq!(reader.join().unwrap(), expected);
  }

  #[test]
  fn a_closed_lane_refuses() {
    let rt = tokio::runtime::Builder::new_current_thread()
      .enable_io()
      .build()
      .unwrap();
    rt.block_on(async {
      let (ours, _theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
      )
      .unwrap();
      let lane = Lane::new(Arc::new(Channel::new(ours, true).unwrap()));
      lane.close();
      assert_eq!(lane.send(msg("x\n"), true), Err(Error::ChannelClosed));
    });
  }
}
