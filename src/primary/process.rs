//! A worker's process: starting it (a stock `node` with the three variables
//! that make it a cluster worker and its end of the IPC socketpair at
//! `NODE_CHANNEL_FD`), its pidfd (signalling it, whether it has exited),
//! and the tables shared with the JS thread: workers' pidfds (for an
//! immediate `kill()` that can never reach a recycled pid) and the write
//! sides of their channels (a user message is written from the thread that
//! sends it).

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use nix::sys::socket::{setsockopt, socketpair, sockopt, AddressFamily, SockFlag, SockType};

use crate::error::{Error, Result};
use crate::ipc::channel::Lane;

/// Bytes either end of a channel may have in flight.
const CHANNEL_SNDBUF: usize = 1 << 20;

/// What one `stdio` index of the child gets.
#[derive(Debug, Clone, PartialEq)]
pub enum StdioSpec {
  Pipe,
  Inherit,
  Ignore,
  /// The IPC channel.
  Ipc,
  /// One of the primary's own fds.
  Fd(i32),
}

/// Everything `fork()` decided in JS, as plain Rust.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
  pub id: u32,
  pub file: String,
  pub args: Vec<String>,
  pub env: Vec<(String, String)>,
  pub cwd: Option<String>,
  pub uid: Option<u32>,
  pub gid: Option<u32>,
  pub stdio: Vec<StdioSpec>,
  /// The channel speaks V8 (`advanced`) serialization rather than JSON.
  pub advanced: bool,
}

/// A started child: its pid, a pidfd to watch it, the primary's end of the
/// channel, and the primary's ends of its `pipe` stdio indexes, one entry per index.
pub struct Child {
  pub pid: i32,
  pub pidfd: OwnedFd,
  pub channel: OwnedFd,
  pub pipes: Vec<Option<OwnedFd>>,
}

pub fn spawn(spec: &SpawnSpec) -> Result<Child> {
  let ipc_index = spec
    .stdio
    .iter()
    .position(|s| *s == StdioSpec::Ipc)
    .unwrap_or(3)
    .max(3) as i32;
  // Both ends close-on-exec; the child's end is dup2'd to `ipc_index` after
  // fork, which clears the flag on the copy only.
  let (ours, theirs) = stream_pair("")?;
  // A larger send buffer on both ends lets a burst of messages go out in the
  // writer's own synchronous writes instead of piling up in its queue.
  // Best effort: the kernel caps it at net.core.wmem_max.
  for end in [&ours, &theirs] {
    let _ = setsockopt(end, sockopt::SndBuf, &CHANNEL_SNDBUF);
  }

  let mut cmd = Command::new(&spec.file);
  cmd
    .args(&spec.args)
    .env_clear()
    .envs(spec.env.iter().cloned());
  cmd.env("NODE_CHANNEL_FD", ipc_index.to_string());
  let mode = if spec.advanced { "advanced" } else { "json" };
  cmd.env("NODE_CHANNEL_SERIALIZATION_MODE", mode);
  if let Some(cwd) = &spec.cwd {
    cmd.current_dir(cwd);
  }
  if let Some(uid) = spec.uid {
    cmd.uid(uid);
  }
  if let Some(gid) = spec.gid {
    cmd.gid(gid);
  }
  // Each stdio index: the child's descriptor and, for a pipe, the primary's
  // end. Slots 0-2 go through Command; from 3 on (the channel among them)
  // they are put in place after fork.
  let stdio = |i: usize| spec.stdio.get(i).cloned().unwrap_or(StdioSpec::Inherit);
  let mut pipes: Vec<Option<OwnedFd>> = Vec::new();
  let mut std_ends: [Option<OwnedFd>; 3] = Default::default();
  let mut placed: Vec<(i32, OwnedFd)> = vec![(ipc_index, theirs)];
  for i in 0..spec.stdio.len().max(3) {
    let target = i as i32;
    let (ours_end, child_end) = match stdio(i) {
      StdioSpec::Ipc | StdioSpec::Ignore => (None, None),
      // As libuv: a pipe is a unix stream socketpair.
      StdioSpec::Pipe => {
        let (mine, child_end) = stream_pair(&format!("stdio {i}"))?;
        (Some(mine), Some(child_end))
      }
      // Node's own stdio fds may be close-on-exec, so "inherit" hands over a
      // dup (put in place after fork, which clears the flag), as libuv does.
      // An index whose descriptor the primary does not have open stays closed (/dev/null for 0-2).
      StdioSpec::Inherit => (None, dup_cloexec(target).ok()),
      StdioSpec::Fd(fd) => (None, Some(dup_cloexec(fd)?)),
    };
    pipes.push(ours_end);
    if let Some(std_end) = std_ends.get_mut(i) {
      *std_end = child_end;
    } else if let Some(fd) = child_end {
      placed.push((target, fd));
    }
  }
  let [stdin, stdout, stderr] = std_ends.map(|end| end.map_or_else(Stdio::null, Stdio::from));
  cmd.stdin(stdin).stdout(stdout).stderr(stderr);

  // Every source above every target index, so that no move in the child can
  // overwrite a source a later move still needs.
  let floor = placed.iter().map(|(index, _)| *index).max().unwrap_or(2) + 1;
  let placed: Vec<(i32, OwnedFd)> = placed
    .into_iter()
    .map(|(index, fd)| Ok((index, dup_at_least(fd.as_raw_fd(), floor)?)))
    .collect::<Result<_>>()?;
  let moves: Vec<(i32, i32)> = placed.iter().map(|(t, fd)| (fd.as_raw_fd(), *t)).collect();
  let parent = nix::unistd::getpid();
  // SAFETY: the closure runs in the forked child before exec and only makes
  // async-signal-safe calls (dup2, fcntl, sigprocmask, signal, prctl, getppid);
  // `moves` was allocated before the fork and is only read.
  unsafe {
    cmd.pre_exec(move || child_setup(&moves, parent.as_raw()));
  }
  let child = cmd
    .spawn()
    .map_err(|e| Error::from_io(&e, "spawn", spec.file.clone()))?;
  drop(placed);
  let pid = child.id() as i32;
  // The std Child is only a pid from here on: we reap through the pidfd, and
  // dropping a Child neither waits nor kills.
  drop(child);
  let pidfd = pidfd_open(pid)?;
  Ok(Child {
    pid,
    pidfd,
    channel: ours,
    pipes,
  })
}

/// A close-on-exec unix stream socketpair (the channel, and `pipe` stdio as libuv makes them).
fn stream_pair(what: &str) -> Result<(OwnedFd, OwnedFd)> {
  socketpair(
    AddressFamily::Unix,
    SockType::Stream,
    None,
    SockFlag::SOCK_CLOEXEC,
  )
  .map_err(|e| Error::sys(e, "socketpair", what.to_string()))
}

/// A close-on-exec duplicate, so the child gets `fd` without the primary
/// giving up its own.
fn dup_cloexec(fd: i32) -> Result<OwnedFd> {
  dup_at_least(fd, 3)
}

/// A close-on-exec duplicate numbered `floor` or above.
fn dup_at_least(fd: i32, floor: i32) -> Result<OwnedFd> {
  // SAFETY: only borrowed for the duration of the fcntl call; a closed
  // number fails with EBADF.
  let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
  crate::ipc::channel::dup_cloexec(borrowed, floor)
    .map_err(|e| Error::sys(e, "dup", format!("stdio fd {fd}")))
}

/// In the child between fork and exec. `moves` are (descriptor, stdio index) pairs.
fn child_setup(moves: &[(i32, i32)], parent: i32) -> std::io::Result<()> {
  use nix::libc;
  // SAFETY: plain syscalls on integers in a single-threaded child.
  unsafe {
    // Every source is numbered above every target index (see spawn), so no move
    // overwrites another's source; dup2 clears close-on-exec on the copy.
    for &(fd, index) in moves {
      if libc::dup2(fd, index) < 0 {
        return Err(std::io::Error::last_os_error());
      }
    }
    // As libuv does for every child: default dispositions, nothing blocked
    // (the primary's threads block signals and a mask survives exec).
    for sig in 1..32 {
      if sig != libc::SIGKILL && sig != libc::SIGSTOP {
        libc::signal(sig, libc::SIG_DFL);
      }
    }
    let mut empty: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut empty);
    libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
    // No worker outlives a SIGKILLed primary. This fires when the spawning
    // thread exits, which is why spawning happens on the engine thread that
    // lives as long as the process.
    if libc::prctl(
      libc::PR_SET_PDEATHSIG,
      libc::SIGKILL as libc::c_ulong,
      0,
      0,
      0,
    ) < 0
    {
      return Err(std::io::Error::last_os_error());
    }
    if libc::getppid() != parent {
      // The primary died before prctl took effect.
      libc::_exit(1);
    }
  }
  Ok(())
}

pub(crate) fn pidfd_open(pid: i32) -> Result<OwnedFd> {
  // SAFETY: pidfd_open takes two integers and returns a new fd or -1.
  let fd = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
  if fd < 0 {
    return Err(Error::sys(
      nix::errno::Errno::last(),
      "pidfd_open",
      pid.to_string(),
    ));
  }
  // SAFETY: a fresh descriptor from the kernel (pidfds are close-on-exec).
  Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `sig` through a pidfd: never hits a recycled pid.
pub fn pidfd_kill(pidfd: &OwnedFd, sig: i32) -> Result<()> {
  // SAFETY: pidfd_send_signal with a valid fd, no siginfo, no flags.
  let rc = unsafe {
    nix::libc::syscall(
      nix::libc::SYS_pidfd_send_signal,
      pidfd.as_raw_fd(),
      sig,
      std::ptr::null::<nix::libc::siginfo_t>(),
      0,
    )
  };
  if rc < 0 {
    return Err(Error::sys(nix::errno::Errno::last(), "kill", ""));
  }
  Ok(())
}

// The tables shared with the JS thread.

/// pidfds of live workers, shared with the JS thread so `kill()` is immediate
/// and can never reach a recycled pid.
pub(crate) type PidFds = Arc<Mutex<HashMap<u32, Arc<OwnedFd>>>>;

/// Signals worker `id` through its pidfd, from either thread. `Ok(false)`
/// when it is already gone.
pub(crate) fn signal_worker(pidfds: &PidFds, id: u32, sig: i32) -> Result<bool> {
  let pidfd = crate::sync::lock(pidfds).get(&id).cloned();
  let Some(pidfd) = pidfd else {
    return Ok(false);
  };
  match pidfd_kill(&pidfd, sig) {
    Ok(()) => Ok(true),
    // ESRCH: exited and reaped between lookup and signal; benign.
    Err(Error::Sys {
      errno: nix::errno::Errno::ESRCH,
      ..
    }) => Ok(false),
    Err(e) => Err(e),
  }
}

/// Whether worker `id`'s process has ended (its pidfd is readable), without
/// waiting or reaping it.
pub(crate) fn has_exited(pidfds: &PidFds, id: u32) -> bool {
  use std::os::fd::AsRawFd;
  let Some(pidfd) = crate::sync::lock(pidfds).get(&id).cloned() else {
    return false;
  };
  let mut poll = nix::libc::pollfd {
    fd: pidfd.as_raw_fd(),
    events: nix::libc::POLLIN,
    revents: 0,
  };
  // SAFETY: one pollfd for a descriptor kept open by `pidfd`, zero timeout.
  unsafe { nix::libc::poll(&mut poll, 1, 0) == 1 }
}

/// Write sides of connected workers' channels, shared with the JS thread so
/// a user message is written from the thread that sends it.
pub(crate) type Lanes = Arc<Mutex<HashMap<u32, Arc<Lane>>>>;

#[cfg(test)]
mod pidfd_tests {
  use super::*;

  #[test]
  fn has_exited_follows_the_process_without_reaping_it() {
    let mut child = std::process::Command::new("sleep")
      .arg("0.3")
      .spawn()
      .unwrap();
    let pidfds: PidFds = Arc::default();
    let pidfd = pidfd_open(child.id() as i32).unwrap();
    crate::sync::lock(&pidfds).insert(1, Arc::new(pidfd));
    assert!(!has_exited(&pidfds, 1), "running");
    assert!(!has_exited(&pidfds, 2), "no such worker");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !has_exited(&pidfds, 1) {
      assert!(std::time::Instant::now() < deadline, "never seen exiting");
      std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Not reaped: its status is still there for the reaper.
    assert!(child.wait().unwrap().success());
  }
}
