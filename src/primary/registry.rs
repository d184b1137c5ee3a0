//! The engine's tables shared with the JS thread: workers' pidfds (for an
//! immediate `kill()` that can never reach a recycled pid) and the write
//! sides of their channels (a user message is written from the thread that
//! sends it).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use super::spawn;
use crate::error::{Error, Result};
use crate::ipc::lane::Lane;

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

/// Write sides of connected workers' channels, shared with the JS thread so
/// a user message is written from the thread that sends it.
pub(crate) type Lanes = Arc<Mutex<HashMap<u32, Arc<Lane>>>>;
