//! Steering a SO_REUSEPORT group. Left alone the kernel hashes each new
//! connection over every socket of the group, including the socket of a
//! worker that is gone or stuck. The primary instead attaches a classic BPF
//! program to the group (SO_ATTACH_REUSEPORT_CBPF) that picks a socket at
//! random by weight, and attaches a new one whenever the weights change: a
//! socket nobody accepts on gets weight 0 and no new connections at all.
//!
//! The program returns an index into the group, which is the order in which
//! the sockets started listening; the primary listens on each socket itself
//! as it creates it, so that order is the pool's.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::libc::{
  self, sock_filter, sock_fprog, BPF_ABS, BPF_ALU, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_MOD,
  BPF_RET, BPF_W, SKF_AD_OFF, SKF_AD_RANDOM,
};

/// `SO_ATTACH_REUSEPORT_CBPF` (asm-generic/socket.h; the libc crate has it
/// for Android only).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// An index past the group's end: the kernel falls back to its own hash.
const KERNEL_PICKS: u32 = u32::MAX;

fn insn(code: u32, jt: u8, jf: u8, k: u32) -> sock_filter {
  sock_filter {
    code: code as u16,
    jt,
    jf,
    k,
  }
}

/// A program that returns socket index `i` with probability
/// `weights[i] / sum(weights)`; with every weight 0, the kernel's hash.
pub fn program(weights: &[u32]) -> Vec<sock_filter> {
  let picks: Vec<(u32, u32)> = weights
    .iter()
    .enumerate()
    .filter(|&(_, &w)| w > 0)
    .map(|(i, &w)| (i as u32, w))
    .collect();
  let total: u32 = picks.iter().map(|&(_, w)| w).sum();
  let Some(&(last, _)) = picks.last() else {
    return vec![insn(BPF_RET | BPF_K, 0, 0, KERNEL_PICKS)];
  };
  // A = random % total
  let mut prog = vec![
    insn(
      BPF_LD | BPF_W | BPF_ABS,
      0,
      0,
      (SKF_AD_OFF + SKF_AD_RANDOM) as u32,
    ),
    insn(BPF_ALU | BPF_MOD | BPF_K, 0, 0, total),
  ];
  // Then, for each socket but the last: if A < its upper bound, return it.
  let mut bound = 0;
  for &(index, weight) in &picks[..picks.len() - 1] {
    bound += weight;
    prog.push(insn(BPF_JMP | BPF_JGE | BPF_K, 1, 0, bound));
    prog.push(insn(BPF_RET | BPF_K, 0, 0, index));
  }
  prog.push(insn(BPF_RET | BPF_K, 0, 0, last));
  prog
}

/// Attaches `weights`' program to the SO_REUSEPORT group `fd` belongs to,
/// replacing the one before.
pub fn attach(fd: BorrowedFd<'_>, weights: &[u32]) -> io::Result<()> {
  let mut prog = program(weights);
  let fprog = sock_fprog {
    len: prog.len() as u16,
    filter: prog.as_mut_ptr(),
  };
  // SAFETY: fprog points at `prog`, alive for the call; the kernel copies it.
  let rc = unsafe {
    libc::setsockopt(
      fd.as_raw_fd(),
      libc::SOL_SOCKET,
      SO_ATTACH_REUSEPORT_CBPF,
      (&fprog as *const sock_fprog).cast(),
      std::mem::size_of::<sock_fprog>() as libc::socklen_t,
    )
  };
  if rc == 0 {
    Ok(())
  } else {
    Err(io::Error::last_os_error())
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use crate::sched::listen::{self, Target};
  use serde_json::json;
  use std::net::{TcpListener, TcpStream};
  use std::os::fd::{AsFd, OwnedFd};

  /// Three listening sockets of one group on a fresh port.
  fn group() -> (u16, Vec<TcpListener>) {
    let target = |port| {
      Target::from_query(&json!({"address": "127.0.0.1", "port": port, "addressType": 4})).unwrap()
    };
    let first = listen::listen_reuse_port(&target(0), 64).unwrap().fd;
    let port = listen::sockname(&first).unwrap()["port"].as_u64().unwrap() as u16;
    let mut socks = vec![first];
    for _ in 0..2 {
      socks.push(listen::listen_reuse_port(&target(port), 64).unwrap().fd);
    }
    let socks = socks
      .into_iter()
      .map(|fd: OwnedFd| TcpListener::from(fd))
      .collect();
    (port, socks)
  }

  /// Connects `n` times; how many connections each socket got.
  fn spread(port: u16, socks: &[TcpListener], n: usize) -> Vec<usize> {
    let clients: Vec<_> = (0..n)
      .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
      .collect();
    // The handshake may finish a moment after connect() returns.
    let mut counts = vec![0; socks.len()];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while counts.iter().sum::<usize>() < n && std::time::Instant::now() < deadline {
      for (count, s) in counts.iter_mut().zip(socks) {
        *count += std::iter::from_fn(|| s.accept().ok()).count();
      }
      std::thread::sleep(std::time::Duration::from_millis(1));
    }
    drop(clients);
    counts
  }

  #[test]
  fn weight_zero_sockets_get_nothing_and_the_rest_share() {
    let (port, socks) = group();
    attach(socks[0].as_fd(), &[0, 1, 1]).unwrap();
    let got = spread(port, &socks, 60);
    assert_eq!(got[0], 0, "{got:?}");
    assert_eq!(got[1] + got[2], 60, "{got:?}");
    assert!(got[1] > 0 && got[2] > 0, "{got:?}");
    // A new program replaces the old one, attached through any member.
    attach(socks[2].as_fd(), &[1, 0, 0]).unwrap();
    assert_eq!(spread(port, &socks, 20), vec![20, 0, 0]);
  }

  #[test]
  fn all_zero_leaves_the_pick_to_the_kernel() {
    let (port, socks) = group();
    attach(socks[1].as_fd(), &[0, 0, 0]).unwrap();
    assert_eq!(spread(port, &socks, 30).iter().sum::<usize>(), 30);
  }
}
