//! One end of a child_process IPC socketpair, driven by tokio.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{shutdown, Shutdown};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::fdpass;

/// The primary's end of a worker's channel.
pub struct Channel {
  fd: AsyncFd<OwnedFd>,
}

impl Channel {
  /// Takes a connected `AF_UNIX` stream socket; makes it non-blocking.
  ///
  /// Registered for reading only: with write interest too, every message the
  /// worker reads would wake the engine thread for nothing (the kernel
  /// signals "writable" each time the peer frees buffer space), which was
  /// half the engine's wake-ups in a ping-pong.
  pub fn new(fd: OwnedFd) -> io::Result<Self> {
    set_nonblocking(&fd)?;
    Ok(Channel {
      fd: watch(fd, Interest::READABLE)?,
    })
  }

  /// Reads bytes and any attached fds; `Ok(0)` is end of stream.
  pub async fn read(&self, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    loop {
      let mut guard = self.fd.readable().await?;
      match guard.try_io(|inner| retry_eintr(|| fdpass::recv(inner.get_ref().as_fd(), buf, fds))) {
        Ok(result) => return result,
        Err(_would_block) => continue,
      }
    }
  }

  /// One non-blocking `sendmsg` from any thread; `pass` rides with the
  /// first byte, so a message that fits goes out with its fd in one call.
  pub fn try_send(&self, data: &[u8], pass: Option<RawFd>) -> nix::Result<usize> {
    fdpass::send(self.fd.get_ref().as_fd(), data, pass)
  }

  /// One non-blocking gathered `sendmsg` (no fds) from any thread.
  pub fn try_send_vectored(&self, iov: &[std::io::IoSlice<'_>]) -> nix::Result<usize> {
    fdpass::send_vectored(self.fd.get_ref().as_fd(), iov)
  }

  /// Waits until the socket has room again after a write would have blocked
  /// (engine thread only). Write interest is registered just for the wait,
  /// on a duplicate of the descriptor: a socket that is already writable
  /// reports so at once, so no wake-up is lost in between.
  pub async fn wait_writable(&self) -> io::Result<()> {
    let dup = fdpass::dup_cloexec(self.fd.get_ref().as_fd(), 3)?;
    let watcher = watch(dup, Interest::WRITABLE)?;
    watcher.writable().await?.retain_ready();
    Ok(())
  }

  /// Closes both directions: the worker sees its channel end, our reader sees EOF.
  pub fn shutdown(&self) {
    // ENOTCONN: the peer is already gone, which is what we wanted.
    let _ = shutdown(self.fd.get_ref().as_raw_fd(), Shutdown::Both);
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
