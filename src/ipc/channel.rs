//! One end of a child_process IPC socketpair, driven by tokio.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{shutdown, Shutdown};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::fdpass;

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
      match guard.try_io(|inner| retry_eintr(|| fdpass::recv(inner.get_ref().as_fd(), buf, fds))) {
        Ok(result) => return result,
        Err(_would_block) => continue,
      }
    }
  }

  /// A duplicate of the descriptor (close-on-exec), for a reader of its own.
  pub fn dup(&self) -> io::Result<OwnedFd> {
    Ok(fdpass::dup_cloexec(self.raw(), 3)?)
  }

  /// One non-blocking `sendmsg` from any thread; `pass` rides with the
  /// first byte, so a message that fits goes out with its fd in one call.
  pub fn try_send(&self, data: &[u8], pass: Option<RawFd>) -> nix::Result<usize> {
    fdpass::send(self.raw(), data, pass)
  }

  /// One non-blocking gathered `sendmsg` (no fds) from any thread.
  pub fn try_send_vectored(&self, iov: &[std::io::IoSlice<'_>]) -> nix::Result<usize> {
    fdpass::send_vectored(self.raw(), iov)
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
