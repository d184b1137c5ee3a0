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
  self, sock_filter, sock_fprog, BPF_ABS, BPF_ALU, BPF_B, BPF_JA, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K,
  BPF_LD, BPF_MISC, BPF_MOD, BPF_MUL, BPF_RET, BPF_RSH, BPF_TAX, BPF_W, BPF_X, BPF_XOR, SKF_AD_OFF,
  SKF_AD_RANDOM, SKF_NET_OFF,
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

/// Buckets of the client-address hash for sticky placement: each bucket is
/// one socket's, so a client address always reaches the same socket.
pub const BUCKETS: usize = 64;

/// The bucket (0..BUCKETS) of a client address: its IPv4 address, or the
/// four 32-bit words of its IPv6 address xor-folded, times 2^32/phi, top 6
/// bits. The BPF program computes the same on the SYN. An IPv4-mapped
/// address (`::ffff:a.b.c.d`, how a dual-stack socket reports an IPv4
/// client) is its IPv4 address: the SYN the program sees is IPv4.
pub fn bucket(addr: std::net::IpAddr) -> usize {
  let word = match addr.to_canonical() {
    std::net::IpAddr::V4(a) => u32::from(a),
    std::net::IpAddr::V6(a) => {
      let o = a.octets();
      let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
      w(0) ^ w(4) ^ w(8) ^ w(12)
    }
  };
  (word.wrapping_mul(HASH_MUL) >> 26) as usize
}

/// 2^32 / the golden ratio: Fibonacci hashing spreads nearby addresses.
const HASH_MUL: u32 = 0x9E37_79B1;

/// A program that returns socket `table[bucket(client address)]`, reading
/// the source address from the SYN's IPv4 or IPv6 header.
pub fn sticky_program(table: &[u32; BUCKETS]) -> Vec<sock_filter> {
  let net = |off: i32| (SKF_NET_OFF + off) as u32;
  let ld_w = |off| insn(BPF_LD | BPF_W | BPF_ABS, 0, 0, net(off));
  let xor_x = insn(BPF_ALU | BPF_XOR | BPF_X, 0, 0, 0);
  let tax = insn(BPF_MISC | BPF_TAX, 0, 0, 0);
  let mut prog = vec![
    // A = IP version (the first nibble of the network header)
    insn(BPF_LD | BPF_B | BPF_ABS, 0, 0, net(0)),
    insn(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 4),
    // IPv6: skip the IPv4 load and its jump
    insn(BPF_JMP | BPF_JEQ | BPF_K, 2, 0, 6),
    ld_w(12),
    // to the mixing, past the 10 IPv6 instructions
    insn(BPF_JMP | BPF_JA, 0, 0, 10),
    ld_w(8),
    tax,
    ld_w(12),
    xor_x,
    tax,
    ld_w(16),
    xor_x,
  ];
  // ...the last IPv6 word, then the mixing both paths share.
  prog.push(tax);
  prog.push(ld_w(20));
  prog.push(xor_x);
  prog.push(insn(BPF_ALU | BPF_MUL | BPF_K, 0, 0, HASH_MUL));
  prog.push(insn(BPF_ALU | BPF_RSH | BPF_K, 0, 0, 26));
  for (b, &index) in table.iter().enumerate().take(BUCKETS - 1) {
    prog.push(insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, b as u32));
    prog.push(insn(BPF_RET | BPF_K, 0, 0, index));
  }
  prog.push(insn(BPF_RET | BPF_K, 0, 0, table[BUCKETS - 1]));
  prog
}

/// Attaches `weights`' program to the SO_REUSEPORT group `fd` belongs to,
/// replacing the one before.
pub fn attach(fd: BorrowedFd<'_>, weights: &[u32]) -> io::Result<()> {
  attach_program(fd, program(weights))
}

/// Attaches the sticky program for `table` (see [`sticky_program`]).
pub fn attach_sticky(fd: BorrowedFd<'_>, table: &[u32; BUCKETS]) -> io::Result<()> {
  attach_program(fd, sticky_program(table))
}

fn attach_program(fd: BorrowedFd<'_>, mut prog: Vec<sock_filter>) -> io::Result<()> {
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

  /// Connects from `from` (a loopback address) `n` times; the socket each got.
  fn spread_from(port: u16, socks: &[TcpListener], from: std::net::IpAddr, n: usize) -> Vec<usize> {
    use std::net::SocketAddr;
    let mut got = Vec::new();
    for _ in 0..n {
      let sock = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Inet,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        None,
      )
      .unwrap();
      let local = nix::sys::socket::SockaddrIn::from(match SocketAddr::new(from, 0) {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!(),
      });
      nix::sys::socket::bind(sock.as_raw_fd(), &local).unwrap();
      let client = TcpStream::from(sock);
      let remote = nix::sys::socket::SockaddrIn::new(127, 0, 0, 1, port);
      nix::sys::socket::connect(client.as_raw_fd(), &remote).unwrap();
      let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
      'wait: while std::time::Instant::now() < deadline {
        for (i, s) in socks.iter().enumerate() {
          while let Ok((_, peer)) = s.accept() {
            if peer.ip() == from {
              got.push(i);
              break 'wait;
            }
          }
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
      }
    }
    got
  }

  #[test]
  fn sticky_program_sends_each_client_address_to_its_buckets_socket() {
    let (port, socks) = group();
    for s in &socks {
      s.set_nonblocking(true).unwrap();
    }
    let mut table = [0u32; BUCKETS];
    for (b, t) in table.iter_mut().enumerate() {
      *t = (b * 3 / BUCKETS) as u32;
    }
    attach_sticky(socks[0].as_fd(), &table).unwrap();
    let mut seen = std::collections::HashSet::new();
    for last in 2..14u8 {
      let from = std::net::IpAddr::from([127, 0, 0, last]);
      let want = table[bucket(from)] as usize;
      assert_eq!(
        spread_from(port, &socks, from, 3),
        vec![want; 3],
        "client {from}"
      );
      seen.insert(want);
    }
    assert_eq!(seen.len(), 3, "addresses spread over every socket");
  }

  #[test]
  fn bucket_hashes_ipv4_and_ipv6_alike_in_range() {
    let v4: std::net::IpAddr = "10.1.2.3".parse().unwrap();
    assert!(bucket(v4) < BUCKETS);
    let v6: std::net::IpAddr = "2001:db8::1".parse().unwrap();
    assert!(bucket(v6) < BUCKETS);
    let mapped: std::net::IpAddr = "::ffff:10.1.2.3".parse().unwrap();
    assert_eq!(bucket(mapped), bucket(v4));
    // Neighbouring addresses land in different buckets (Fibonacci hashing).
    let b: std::collections::HashSet<_> = (1..=16u8)
      .map(|i| bucket(std::net::IpAddr::from([127, 0, 0, i])))
      .collect();
    assert!(b.len() >= 12, "{b:?}");
  }

  #[test]
  fn all_zero_leaves_the_pick_to_the_kernel() {
    let (port, socks) = group();
    attach(socks[1].as_fd(), &[0, 0, 0]).unwrap();
    assert_eq!(spread(port, &socks, 30).iter().sum::<usize>(), 30);
  }
}
