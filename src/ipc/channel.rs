//! The primary's end of a worker's child_process IPC channel: the socket
//! (driven by tokio when the engine reads it), its bytes sent and received
//! with file descriptors attached (`SCM_RIGHTS`), and its write side.
//!
//! The write side (`Lane`) is shared by the JS thread and the engine thread.
//! A message goes out at once from whichever thread sends it (no thread hop
//! on the hot path); only when the socket is full does it wait in the
//! queue, which the engine drains as the socket becomes writable. One lock
//! orders every write, so messages never interleave.

use std::collections::VecDeque;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use nix::errno::Errno;
use nix::sys::socket::{
  recvmsg, sendmsg, shutdown, ControlMessage, ControlMessageOwned, MsgFlags, Shutdown,
};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;
use tokio::sync::Notify;

use crate::error::{Error, Result};

/// The primary's end of a worker's channel.
pub struct Channel {
  fd: Fd,
}

/// The descriptor, registered with the engine's reactor only when the
/// engine reads it.
enum Fd {
  Watched(AsyncFd<OwnedFd>),
  Plain(OwnedFd),
}

impl Channel {
  /// Takes a connected `AF_UNIX` stream socket; makes it non-blocking.
  ///
  /// `engine_reads`: registered for reading, when the engine thread reads
  /// the channel; otherwise not registered at all (the JS thread reads it,
  /// see `primary::reader`), so the worker's messages never wake the engine.
  /// Never registered for writing: every message the worker reads would
  /// wake the engine thread for nothing (the kernel signals "writable" each
  /// time the peer frees buffer space), which was half the engine's
  /// wake-ups in a ping-pong.
  pub fn new(fd: OwnedFd, engine_reads: bool) -> io::Result<Self> {
    set_nonblocking(&fd)?;
    let fd = if engine_reads {
      Fd::Watched(watch(fd, Interest::READABLE)?)
    } else {
      Fd::Plain(fd)
    };
    Ok(Channel { fd })
  }

  fn raw(&self) -> BorrowedFd<'_> {
    match &self.fd {
      Fd::Watched(afd) => afd.get_ref().as_fd(),
      Fd::Plain(fd) => fd.as_fd(),
    }
  }

  /// The descriptor's number in this process (`worker.process.channel.fd`).
  pub fn fd_number(&self) -> RawFd {
    self.raw().as_raw_fd()
  }

  /// Reads bytes and any attached fds; `Ok(0)` is end of stream. Only for a
  /// channel the engine reads (anything else never becomes readable here).
  pub async fn read(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let Fd::Watched(afd) = &self.fd else {
      return std::future::pending().await;
    };
    loop {
      let mut guard = afd.readable().await?;
      match guard.try_io(|inner| retry_eintr(|| recv_with_fds(inner.get_ref().as_fd(), buf, fds))) {
        Ok(result) => return result,
        Err(_would_block) => continue,
      }
    }
  }

  /// A duplicate of the descriptor (close-on-exec), for a reader of its own.
  pub fn dup(&self) -> io::Result<OwnedFd> {
    Ok(dup_cloexec(self.raw(), 3)?)
  }

  /// One non-blocking `sendmsg` from any thread; `pass` rides with the
  /// first byte, so a message that fits goes out with its fd in one call.
  pub fn try_send(&self, data: &[u8], pass: Option<RawFd>) -> nix::Result<usize> {
    send_with_fd(self.raw(), data, pass)
  }

  /// One non-blocking gathered `sendmsg` (no fds) from any thread.
  pub fn try_send_vectored(&self, iov: &[std::io::IoSlice<'_>]) -> nix::Result<usize> {
    send_vectored(self.raw(), iov)
  }

  /// Waits until the socket has room again after a write would have blocked
  /// (engine thread only). Write interest is registered just for the wait,
  /// on a duplicate of the descriptor: a socket that is already writable
  /// reports so at once, so no wake-up is lost in between.
  pub async fn wait_writable(&self) -> io::Result<()> {
    let dup = self.dup()?;
    let watcher = watch(dup, Interest::WRITABLE)?;
    watcher.writable().await?.retain_ready();
    Ok(())
  }

  /// Closes both directions: the worker sees its channel end, our reader sees EOF.
  pub fn shutdown(&self) {
    // ENOTCONN: the peer is already gone, which is what we wanted.
    let _ = shutdown(self.raw().as_raw_fd(), Shutdown::Both);
  }
}

fn retry_eintr<T>(mut f: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
  loop {
    match f() {
      Err(Errno::EINTR) => continue,
      other => return other.map_err(io::Error::from),
    }
  }
}

pub fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
  use nix::fcntl::{fcntl, FcntlArg, OFlag};
  let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
  fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
  Ok(())
}

/// Registers an owned descriptor with the reactor.
pub fn watch<T: AsRawFd>(fd: T, interest: Interest) -> io::Result<AsyncFd<T>> {
  // SAFETY: `T` owns the descriptor (OwnedFd, or an Arc of one) and nothing
  // replaces or closes it while the AsyncFd holds it.
  unsafe { AsyncFd::register_with_interest(fd, interest).map_err(|e| e.into_parts().1) }
}

// Bytes with file descriptors attached (SCM_RIGHTS).

/// A close-on-exec duplicate of `fd` numbered `floor` or above, owned by the
/// caller: how the primary keeps its own copy of a descriptor it hands on.
pub fn dup_cloexec(fd: BorrowedFd<'_>, floor: RawFd) -> nix::Result<OwnedFd> {
  let dup = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(floor))?;
  // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
  Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Sends `data` in one `sendmsg`, with `pass` attached when given.
/// Returns how many bytes went out (a stream socket may take fewer).
pub fn send_with_fd(sock: BorrowedFd<'_>, data: &[u8], pass: Option<RawFd>) -> nix::Result<usize> {
  let iov = [IoSlice::new(data)];
  let fds;
  let cmsgs: &[ControlMessage] = match pass {
    Some(fd) => {
      fds = [fd];
      &[ControlMessage::ScmRights(&fds)]
    }
    None => &[],
  };
  // MSG_NOSIGNAL: a worker that died must give EPIPE, not kill the primary.
  sendmsg::<()>(
    sock.as_raw_fd(),
    &iov,
    cmsgs,
    MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
    None,
  )
}

/// Sends several whole messages (no fds) in one `sendmsg`; returns the bytes
/// that went out, which may end inside a message.
pub fn send_vectored(sock: BorrowedFd<'_>, iov: &[IoSlice<'_>]) -> nix::Result<usize> {
  sendmsg::<()>(
    sock.as_raw_fd(),
    iov,
    &[],
    MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
    None,
  )
}

/// Reads into `buf`; received fds (close-on-exec) are pushed to `fds`.
/// Returns the byte count (0 at end of stream). A truncated control message
/// (`MSG_CTRUNC`) is an error: a descriptor was lost in the kernel.
pub fn recv_with_fds(
  sock: BorrowedFd<'_>,
  buf: &mut [u8],
  fds: &mut Vec<OwnedFd>,
) -> nix::Result<usize> {
  let mut cmsg = nix::cmsg_space!([RawFd; 8]);
  let mut iov = [IoSliceMut::new(buf)];
  let msg = recvmsg::<()>(
    sock.as_raw_fd(),
    &mut iov,
    Some(&mut cmsg),
    MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
  )?;
  let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
  for c in msg.cmsgs()? {
    if let ControlMessageOwned::ScmRights(received) = c {
      for fd in received {
        // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
        fds.push(unsafe { OwnedFd::from_raw_fd(fd) });
      }
    }
  }
  if truncated {
    return Err(Errno::EMSGSIZE);
  }
  Ok(msg.bytes)
}

// The write side, shared by the JS thread and the engine thread.

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
mod fd_passing_tests {
  use super::*;
  use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
  use std::io::{Read, Write};
  use std::os::fd::AsFd;

  fn pair() -> (OwnedFd, OwnedFd) {
    socketpair(
      AddressFamily::Unix,
      SockType::Stream,
      None,
      SockFlag::SOCK_CLOEXEC,
    )
    .unwrap()
  }

  #[test]
  fn fd_crosses_a_socketpair() {
    let (a, b) = pair();
    let (pa, pb) = std::os::unix::net::UnixStream::pair().unwrap();
    let n = send_with_fd(
      a.as_fd(),
      b"{\"cmd\":\"NODE_HANDLE\"}\n",
      Some(pb.as_raw_fd()),
    )
    .unwrap();
    assert_eq!(n, 22);
    drop(pb);
    let mut buf = [0u8; 64];
    let mut fds = Vec::new();
    let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
    assert_eq!(&buf[..n], b"{\"cmd\":\"NODE_HANDLE\"}\n");
    assert_eq!(fds.len(), 1);
    // The received fd is the other end of `pa`: bytes written there come out of it.
    let mut got = std::os::unix::net::UnixStream::from(fds.pop().unwrap());
    (&pa).write_all(b"hi").unwrap();
    let mut two = [0u8; 2];
    got.read_exact(&mut two).unwrap();
    assert_eq!(&two, b"hi");
    let flags = nix::fcntl::fcntl(got.as_fd(), nix::fcntl::FcntlArg::F_GETFD).unwrap();
    assert_ne!(
      flags & nix::libc::FD_CLOEXEC,
      0,
      "received fds are close-on-exec"
    );
  }

  #[test]
  fn end_of_stream_reads_zero() {
    let (a, b) = pair();
    drop(a);
    let mut buf = [0u8; 8];
    assert_eq!(
      recv_with_fds(b.as_fd(), &mut buf, &mut Vec::new()).unwrap(),
      0
    );
  }
}

#[cfg(test)]
mod write_side_tests {
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
