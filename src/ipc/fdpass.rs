//! Sending and receiving bytes with file descriptors attached (`SCM_RIGHTS`).

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// A close-on-exec duplicate of `fd` numbered `floor` or above, owned by the
/// caller: how the primary keeps its own copy of a descriptor it hands on.
pub fn dup_cloexec(fd: BorrowedFd<'_>, floor: RawFd) -> nix::Result<OwnedFd> {
  let dup = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(floor))?;
  // SAFETY: F_DUPFD_CLOEXEC returned a new descriptor that nothing else owns.
  Ok(unsafe { OwnedFd::from_raw_fd(dup) })
}

/// Sends `data` in one `sendmsg`, with `pass` attached when given.
/// Returns how many bytes went out (a stream socket may take fewer).
pub fn send(sock: BorrowedFd<'_>, data: &[u8], pass: Option<RawFd>) -> nix::Result<usize> {
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
pub fn recv(sock: BorrowedFd<'_>, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> nix::Result<usize> {
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

#[cfg(test)]
mod tests {
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
    let n = send(
      a.as_fd(),
      b"{\"cmd\":\"NODE_HANDLE\"}\n",
      Some(pb.as_raw_fd()),
    )
    .unwrap();
    assert_eq!(n, 22);
    drop(pb);
    let mut buf = [0u8; 64];
    let mut fds = Vec::new();
    let n = recv(b.as_fd(), &mut buf, &mut fds).unwrap();
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
    assert_eq!(recv(b.as_fd(), &mut buf, &mut Vec::new()).unwrap(), 0);
  }
}
