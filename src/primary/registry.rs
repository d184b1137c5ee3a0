//! The engine's tables shared with the JS thread: workers' pidfds (for an
//! immediate `kill()` that can never reach a recycled pid) and the write
//! sides of their channels (a user message is written from the thread that
//! sends it).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use super::spawn;
use crate::error::{Error, Result};
use crate::ipc::channel::Lane;

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
  match spawn::pidfd_kill(&pidfd, sig) {
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
mod tests {
  use super::*;

  #[test]
  fn has_exited_follows_the_process_without_reaping_it() {
    let mut child = std::process::Command::new("sleep")
      .arg("0.3")
      .spawn()
      .unwrap();
    let pidfds: PidFds = Arc::default();
    let pidfd = spawn::pidfd_open(child.id() as i32).unwrap();
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
