//! What a worker's `queryServer` asks for: its key, as the primary's Node
//! line builds it, its backlog, and the socket, created as Node's
//! `net._createServerHandle` does: SO_REUSEADDR, dual-stack `::` when no
//! address was given (falling back to `0.0.0.0`), IPV6_V6ONLY on request,
//! unix paths for `addressType` -1.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::sys::socket::{
  bind, getsockname, listen, setsockopt, socket, sockopt, AddressFamily, Backlog, SockFlag,
  SockType, SockaddrIn, SockaddrIn6, SockaddrStorage, UnixAddr,
};
use serde_json::{json, Value};

use crate::error::{Error, Result};

/// libuv's `UV_TCP_IPV6ONLY`, as the worker sends it in `flags`.
const UV_TCP_IPV6ONLY: u64 = 1;
/// Node's default listen backlog.
pub const DEFAULT_BACKLOG: i32 = 511;

/// What a worker's `queryServer` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
  /// TCP; `address` None means "any" (dual-stack where possible).
  Tcp {
    address: Option<IpAddr>,
    port: u16,
    ipv6_only: bool,
  },
  /// A unix socket path.
  Unix(String),
  /// `listen({ fd })`: a socket the *primary* has open as that fd number,
  /// as in Node (systemd socket activation, for one).
  Fd(i32),
  /// UDP (`addressType` 'udp4'/'udp6'), always shared, as in Node.
  Udp {
    address: IpAddr,
    port: u16,
    reuse_addr: bool,
    ipv6_only: bool,
  },
}

/// libuv's `UV_UDP_IPV6ONLY` and `UV_UDP_REUSEADDR`, as dgram sends them in `flags`.
const UV_UDP_IPV6ONLY: u64 = 1;
const UV_UDP_REUSEADDR: u64 = 4;

impl Target {
  /// The same target on a fixed port (after port 0 was resolved).
  pub fn with_port(&self, port: u16) -> Target {
    match self {
      Target::Tcp {
        address, ipv6_only, ..
      } => Target::Tcp {
        address: *address,
        port,
        ipv6_only: *ipv6_only,
      },
      other => other.clone(),
    }
  }

  /// Reads `address`, `port`, `addressType` and `flags` from a queryServer message.
  pub fn from_query(msg: &Value) -> Result<Target> {
    let address = msg.get("address").and_then(Value::as_str);
    let address_type = &msg["addressType"];
    let einval = |what: &str| Error::sys(nix::errno::Errno::EINVAL, "listen", what.to_string());
    let port = || {
      let port = msg["port"].as_i64().unwrap_or(0);
      u16::try_from(port).map_err(|_| einval(&format!("port {port}")))
    };
    let ip = |a: &str| {
      a.parse::<IpAddr>()
        .map_err(|_| Error::sys(nix::errno::Errno::EINVAL, "bind", a.to_string()))
    };
    let flags = msg["flags"].as_u64().unwrap_or(0);
    if let Some(fd) = msg["fd"].as_i64().filter(|&fd| fd >= 0) {
      let fd = i32::try_from(fd).map_err(|_| einval(&format!("fd {fd}")))?;
      return Ok(Target::Fd(fd));
    }
    if let Some(kind @ ("udp4" | "udp6")) = address_type.as_str() {
      let v6 = kind == "udp6";
      let any: IpAddr = if v6 {
        Ipv6Addr::UNSPECIFIED.into()
      } else {
        Ipv4Addr::UNSPECIFIED.into()
      };
      let address = match address {
        None | Some("") => any,
        Some(a) => ip(a)?,
      };
      return Ok(Target::Udp {
        address,
        port: port()?,
        reuse_addr: flags & UV_UDP_REUSEADDR != 0,
        ipv6_only: flags & UV_UDP_IPV6ONLY != 0,
      });
    }
    if address_type.as_i64() == Some(-1) {
      return address
        .map(|p| Target::Unix(p.to_string()))
        .ok_or_else(|| einval("unix socket without a path"));
    }
    if !matches!(address_type.as_i64(), Some(4) | Some(6)) {
      return Err(einval(&format!("addressType {address_type}")));
    }
    let port = port()?;
    let address = match address {
      None | Some("") => None,
      Some(a) => Some(ip(a)?),
    };
    Ok(Target::Tcp {
      address,
      port,
      ipv6_only: flags & UV_TCP_IPV6ONLY != 0,
    })
  }
}

/// A unix socket path the primary bound; removed when the socket closes,
/// as libuv does when Node closes a pipe server.
#[derive(Debug)]
pub struct BoundPath(String);

impl Drop for BoundPath {
  fn drop(&mut self) {
    // ENOENT: someone removed it already, which is fine.
    let _ = std::fs::remove_file(&self.0);
  }
}

/// A bound socket, and its path for unix sockets.
#[derive(Debug)]
pub struct Bound {
  pub fd: OwnedFd,
  pub path: Option<BoundPath>,
}

/// Creates and binds the socket (not yet listening), close-on-exec.
pub fn bind_target(target: &Target) -> Result<Bound> {
  bind_target_with(target, false)
}

/// Another SO_REUSEPORT socket for a TCP target (the first one fixes the
/// port when the target asked for port 0: pass it in `target`), listening at
/// once: a group's order (what BPF steering counts by) is the order its
/// sockets start listening, which is then the order they were created in,
/// whatever order the workers wrap them in.
pub fn listen_reuse_port(target: &Target, backlog: i32) -> Result<Bound> {
  let bound = bind_target_with(target, true)?;
  start_listening(&bound.fd, backlog)?;
  Ok(bound)
}

/// Whether this kernel has SO_REUSEPORT.
pub fn reuse_port_supported() -> bool {
  new_socket(AddressFamily::Inet)
    .and_then(|fd| {
      setsockopt(&fd, sockopt::ReusePort, &true).map_err(|e| Error::sys(e, "setsockopt", ""))
    })
    .is_ok()
}

fn bind_target_with(target: &Target, reuse_port: bool) -> Result<Bound> {
  match target {
    Target::Fd(fd) => Ok(Bound {
      fd: dup_stream_socket(*fd)?,
      path: None,
    }),
    Target::Udp {
      address,
      port,
      reuse_addr,
      ipv6_only,
    } => Ok(Bound {
      fd: bind_udp(SocketAddr::new(*address, *port), *reuse_addr, *ipv6_only)?,
      path: None,
    }),
    Target::Unix(path) => {
      let fd = new_socket(AddressFamily::Unix)?;
      // As Node's primary: bind the shorter of the path and its form relative
      // to our cwd, so a long absolute path still fits sun_path (108 bytes).
      let cwd = std::env::current_dir().ok();
      let short = cwd
        .as_deref()
        .map(|cwd| shortest_path(cwd, path))
        .unwrap_or_else(|| path.clone());
      let addr = UnixAddr::new(short.as_str()).map_err(|e| Error::sys(e, "bind", path.clone()))?;
      bind(fd.as_raw_fd(), &addr).map_err(|e| {
        // As libuv's uv_pipe_bind, for compatibility with Windows.
        let e = if e == nix::errno::Errno::ENOENT {
          nix::errno::Errno::EACCES
        } else {
          e
        };
        Error::sys(e, "bind", path.clone())
      })?;
      // Removed by absolute path, whatever our cwd is by then.
      let absolute = match &cwd {
        Some(cwd) => cwd.join(&short).to_string_lossy().into_owned(),
        None => short,
      };
      Ok(Bound {
        fd,
        path: Some(BoundPath(absolute)),
      })
    }
    Target::Tcp {
      address: None,
      port,
      ipv6_only,
    } => {
      let any6 = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), *port);
      let any4 = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), *port);
      let fd =
        bind_tcp(any6, *ipv6_only, reuse_port).or_else(|_| bind_tcp(any4, false, reuse_port))?;
      Ok(Bound { fd, path: None })
    }
    Target::Tcp {
      address: Some(ip),
      port,
      ipv6_only,
    } => Ok(Bound {
      fd: bind_tcp(SocketAddr::new(*ip, *port), *ipv6_only, reuse_port)?,
      path: None,
    }),
  }
}

/// A duplicate of the primary's own fd `fd`, checked to be a stream socket
/// first (as listenfd checks inherited fds): a bad number is EINVAL, never a
/// stray descriptor.
fn dup_stream_socket(fd: i32) -> Result<OwnedFd> {
  use std::os::fd::BorrowedFd;
  let einval = || Error::sys(nix::errno::Errno::EINVAL, "listen", format!("fd {fd}"));
  // SAFETY: borrowed only for these calls; on a closed number they fail with
  // EBADF instead of touching anything.
  let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
  let kind = nix::sys::socket::getsockopt(&borrowed, sockopt::SockType).map_err(|_| einval())?;
  if kind != SockType::Stream {
    return Err(einval());
  }
  crate::ipc::channel::dup_cloexec(borrowed, 3)
    .map_err(|e| Error::sys(e, "dup", format!("fd {fd}")))
}

/// Node's `path.relative(process.cwd(), address)`, kept only when shorter.
fn shortest_path(cwd: &Path, address: &str) -> String {
  let target = normalize(&cwd.join(address));
  let base = normalize(cwd);
  let common = base
    .components()
    .zip(target.components())
    .take_while(|(a, b)| a == b)
    .count();
  let mut rel = PathBuf::new();
  for _ in base.components().skip(common) {
    rel.push("..");
  }
  for c in target.components().skip(common) {
    rel.push(c);
  }
  let rel = rel.to_string_lossy().into_owned();
  if address.len() < rel.len() || rel.is_empty() {
    address.to_string()
  } else {
    rel
  }
}

/// Resolves `.` and `..` without touching the file system, as path.resolve does.
fn normalize(p: &Path) -> PathBuf {
  let mut out = PathBuf::new();
  for c in p.components() {
    match c {
      Component::CurDir => {}
      Component::ParentDir => {
        out.pop();
      }
      other => out.push(other),
    }
  }
  out
}

fn new_socket(family: AddressFamily) -> Result<OwnedFd> {
  new_socket_of(family, SockType::Stream)
}

fn new_socket_of(family: AddressFamily, kind: SockType) -> Result<OwnedFd> {
  // Non-blocking, as libuv creates them: a shared socket's file description
  // (and its O_NONBLOCK) is the same in every worker, and a worker that loses
  // an accept race on a blocking socket hangs in accept(2).
  let flags = SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK;
  socket(family, kind, flags, None).map_err(|e| Error::sys(e, "socket", ""))
}

fn bind_tcp(addr: SocketAddr, ipv6_only: bool, reuse_port: bool) -> Result<OwnedFd> {
  // As libuv's uv_tcp_bind: reuse the address so a restarted primary can bind
  // while old connections sit in TIME_WAIT.
  let opts = InetOpts {
    reuse_addr: true,
    reuse_port,
    ipv6_only,
  };
  bind_inet(addr, SockType::Stream, opts)
}

fn bind_udp(addr: SocketAddr, reuse_addr: bool, ipv6_only: bool) -> Result<OwnedFd> {
  let opts = InetOpts {
    reuse_addr,
    reuse_port: false,
    ipv6_only,
  };
  bind_inet(addr, SockType::Datagram, opts)
}

struct InetOpts {
  reuse_addr: bool,
  reuse_port: bool,
  ipv6_only: bool,
}

/// An IPv4/IPv6 socket of `kind`, options set, bound to `addr`.
fn bind_inet(addr: SocketAddr, kind: SockType, opts: InetOpts) -> Result<OwnedFd> {
  let family = match addr {
    SocketAddr::V4(_) => AddressFamily::Inet,
    SocketAddr::V6(_) => AddressFamily::Inet6,
  };
  let fd = new_socket_of(family, kind)?;
  let sockopt_err = |e| Error::sys(e, "setsockopt", "");
  if opts.reuse_addr {
    setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(sockopt_err)?;
  }
  if opts.reuse_port {
    setsockopt(&fd, sockopt::ReusePort, &true).map_err(sockopt_err)?;
  }
  let res = match addr {
    SocketAddr::V4(a) => bind(fd.as_raw_fd(), &SockaddrIn::from(a)),
    SocketAddr::V6(a) => {
      setsockopt(&fd, sockopt::Ipv6V6Only, &opts.ipv6_only).map_err(sockopt_err)?;
      bind(fd.as_raw_fd(), &SockaddrIn6::from(a))
    }
  };
  res.map_err(|e| Error::sys(e, "bind", addr.to_string()))?;
  Ok(fd)
}

/// `listen(2)` with Node's backlog.
pub fn start_listening(fd: &impl AsFd, backlog: i32) -> Result<()> {
  let backlog = Backlog::new(backlog).unwrap_or(Backlog::MAXCONN);
  listen(fd, backlog).map_err(|e| Error::sys(e, "listen", ""))
}

/// The `sockname` Node's round-robin reply carries: `{address, family, port}`;
/// None for unix sockets, which Node answers without one.
pub fn sockname(fd: &impl AsFd) -> Option<Value> {
  let addr: SockaddrStorage = getsockname(fd.as_fd().as_raw_fd()).ok()?;
  if let Some(v4) = addr.as_sockaddr_in() {
    return Some(json!({"address": v4.ip().to_string(), "family": "IPv4", "port": v4.port()}));
  }
  let v6 = addr.as_sockaddr_in6()?;
  Some(json!({"address": v6.ip().to_string(), "family": "IPv6", "port": v6.port()}))
}

/// How the primary keys a worker's listen, which differs by Node line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRule {
  /// Node 20: `${address}:${port}:${addressType}:${fd}:${index}`, so a
  /// worker's n-th listen only ever shares with other workers' n-th.
  WithIndex,
  /// Node 22 and later (nodejs/node#60141): the worker's listen `index` only
  /// for port 0, so any listen on a fixed address shares its socket.
  IndexOnPortZero,
}

impl KeyRule {
  /// The rule of the Node major version the primary runs on.
  pub fn for_node_major(major: u32) -> Self {
    if major >= 22 {
      KeyRule::IndexOnPortZero
    } else {
      KeyRule::WithIndex
    }
  }
}

/// `key` as the primary's Node line builds it (see `KeyRule`).
pub(crate) fn handle_key(msg: &Value, rule: KeyRule) -> String {
  let part = |name: &str| match msg.get(name) {
    None => "undefined".to_string(),
    Some(Value::String(s)) => s.clone(),
    Some(v) => v.to_string(),
  };
  let key = format!(
    "{}:{}:{}:{}",
    part("address"),
    part("port"),
    part("addressType"),
    part("fd"),
  );
  // As Node 22+: `message.port === 0` appends the index (a number 0 only).
  let port_zero = msg.get("port").and_then(Value::as_f64) == Some(0.0);
  if rule == KeyRule::WithIndex || port_zero {
    format!("{key}:{}", part("index"))
  } else {
    key
  }
}

/// The listen backlog a query asks for, as Node's `backlog || 511`: a worker
/// that gave none sends 0, `false` or nothing (listen(0) would queue one).
pub(crate) fn backlog(msg: &Value) -> i32 {
  msg["backlog"]
    .as_i64()
    .and_then(|b| i32::try_from(b).ok())
    .filter(|&b| b > 0)
    .unwrap_or(DEFAULT_BACKLOG)
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn null_address_means_any_dual_stack() {
    let t = Target::from_query(&json!({"address": null, "port": 0, "addressType": 4})).unwrap();
    let fd = bind_target(&t).unwrap().fd;
    let name = sockname(&fd).unwrap();
    assert!(
      name["port"].as_u64().unwrap() > 0,
      "port 0 gets a real port"
    );
    assert!(name["address"] == "::" || name["address"] == "0.0.0.0");
  }

  #[test]
  fn address_in_use_is_reported_as_bind_eaddrinuse() {
    let t =
      Target::from_query(&json!({"address": "127.0.0.1", "port": 0, "addressType": 4})).unwrap();
    let first = bind_target(&t).unwrap().fd;
    start_listening(&first, 16).unwrap();
    let port = sockname(&first).unwrap()["port"].as_u64().unwrap();
    let again =
      Target::from_query(&json!({"address": "127.0.0.1", "port": port, "addressType": 4})).unwrap();
    let err = bind_target(&again).unwrap_err();
    assert_eq!(err.code(), "EADDRINUSE");
    assert_eq!(err.errno(), Some(-98));
  }

  #[test]
  fn sockets_are_nonblocking_and_cloexec() {
    let t =
      Target::from_query(&json!({"address": "127.0.0.1", "port": 0, "addressType": 4})).unwrap();
    let fd = bind_target(&t).unwrap().fd;
    let fl = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).unwrap();
    assert_ne!(fl & nix::libc::O_NONBLOCK, 0);
    let fd_flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFD).unwrap();
    assert_ne!(fd_flags & nix::libc::FD_CLOEXEC, 0);
  }

  #[test]
  fn unix_path_is_removed_when_the_socket_closes() {
    let dir = std::env::temp_dir().join(format!("rcluster-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock").to_string_lossy().into_owned();
    let t = Target::from_query(&json!({"address": path, "addressType": -1})).unwrap();
    let bound = bind_target(&t).unwrap();
    assert!(std::path::Path::new(&path).exists());
    drop(bound);
    assert!(!std::path::Path::new(&path).exists());
    std::fs::remove_dir(&dir).unwrap();
  }

  #[test]
  fn unix_paths_bind_by_the_shorter_form() {
    let cwd = Path::new("/tmp/a/very/deep/dir");
    assert_eq!(shortest_path(cwd, "/tmp/a/very/deep/dir/s.sock"), "s.sock");
    // Three levels up is longer than the absolute path: keep the absolute one.
    assert_eq!(
      shortest_path(cwd, "/tmp/a/other/s.sock"),
      "/tmp/a/other/s.sock"
    );
    assert_eq!(
      shortest_path(cwd, "/tmp/a/very/deep/other/socket.sock"),
      "../other/socket.sock"
    );
    assert_eq!(shortest_path(cwd, "/s"), "/s");
    assert_eq!(shortest_path(cwd, "./x/../s.sock"), "s.sock");
  }

  #[test]
  fn listen_fd_takes_a_dup_of_a_stream_socket_and_refuses_anything_else() {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let t = Target::from_query(
      &json!({"address": null, "port": -1, "addressType": -1, "fd": l.as_raw_fd()}),
    )
    .unwrap();
    let bound = bind_target(&t).unwrap();
    assert_ne!(bound.fd.as_raw_fd(), l.as_raw_fd());
    assert_eq!(sockname(&bound.fd), sockname(&l));
    let file = std::fs::File::open("/dev/null").unwrap();
    for fd in [file.as_raw_fd(), 100_000] {
      let t = Target::Fd(fd);
      assert_eq!(bind_target(&t).unwrap_err().code(), "EINVAL");
    }
  }

  #[test]
  fn bad_input_is_einval_not_a_panic() {
    for msg in [
      json!({"address": "not-an-ip", "port": 1, "addressType": 4}),
      json!({"address": null, "port": 70000, "addressType": 4}),
      json!({"address": null, "port": 1, "addressType": "tcp9"}),
      json!({"addressType": -1}),
    ] {
      let err = Target::from_query(&msg).unwrap_err();
      assert_eq!(err.code(), "EINVAL", "{msg}");
    }
  }

  #[test]
  fn backlog_defaults_like_node() {
    assert_eq!(backlog(&json!({"backlog": 0})), 511);
    assert_eq!(backlog(&json!({"backlog": false})), 511);
    assert_eq!(backlog(&json!({"backlog": -1})), 511);
    assert_eq!(backlog(&json!({})), 511);
    assert_eq!(backlog(&json!({"backlog": 64})), 64);
  }

  #[test]
  fn key_matches_nodes_template() {
    let fixed = json!({"address": null, "port": 3000, "addressType": 4, "index": 1});
    let zero = json!({"address": "::1", "port": 0, "addressType": 6, "fd": -1, "index": 2});
    let pipe = json!({"address": "/tmp/s", "port": -1, "addressType": -1, "fd": -1, "index": 3});
    // Node 20: always with the index.
    let rule = KeyRule::for_node_major(20);
    assert_eq!(handle_key(&fixed, rule), "null:3000:4:undefined:1");
    assert_eq!(handle_key(&zero, rule), "::1:0:6:-1:2");
    assert_eq!(handle_key(&pipe, rule), "/tmp/s:-1:-1:-1:3");
    // Node 22 and later: the index only for port 0.
    for major in [22, 24, 26] {
      let rule = KeyRule::for_node_major(major);
      assert_eq!(handle_key(&fixed, rule), "null:3000:4:undefined");
      assert_eq!(handle_key(&zero, rule), "::1:0:6:-1:2");
      assert_eq!(handle_key(&pipe, rule), "/tmp/s:-1:-1:-1");
    }
  }
}
