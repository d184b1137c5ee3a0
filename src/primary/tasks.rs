//! One worker's life in the engine: spawn it, then a reader, a writer and a
//! reaper task until its channel is closed and its process is reaped.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::task::spawn_local;

use super::event::{Event, Spawned};
use super::protocol;
use super::reader::{note_heartbeats, Heard};
use super::reader::{Forward, ReadSide, StreamDecoder};
use super::spawn::{spawn, SpawnSpec};
use super::state::Shared;
use super::worker::Worker;
use crate::error::{Error, Result};
use crate::ipc::channel::{drain, Lane};
use crate::ipc::channel::{watch, Channel};
use crate::supervise::watchdog::Beat;

/// How long the exit of a dead worker waits for its channel to drain, so that
/// messages it sent just before dying are delivered before `exit`.
const DRAIN_BEFORE_EXIT: Duration = Duration::from_secs(1);

/// Descriptors a worker may have in flight to the primary at once.
const MAX_PENDING_FDS: usize = 64;

pub(crate) fn start(state: &Shared, spec: &SpawnSpec) -> Result<Spawned> {
  let child = spawn(spec)?;
  let id = spec.id;
  let advanced = spec.advanced;
  let js_reads = state.borrow().js_reads;
  let channel_error = |e: std::io::Error| Error::from_io(&e, "epoll_ctl", "ipc channel");
  let channel = Arc::new(Channel::new(child.channel, !js_reads).map_err(channel_error)?);
  let heard = Arc::new(Heard::new());
  let reader = if js_reads {
    let dup = channel
      .dup()
      .map_err(|e| Error::from_io(&e, "dup", "ipc channel"))?;
    Some(ReadSide::new(id, dup, advanced, heard.clone()))
  } else {
    None
  };
  let lane = Arc::new(Lane::new(channel.clone()));
  let pidfd = Arc::new(child.pidfd);
  {
    let mut st = state.borrow_mut();
    let mut worker = Worker::new(channel.clone(), lane.clone(), advanced);
    worker.heard = heard.clone();
    worker.reader = reader.as_ref().map(|(side, _)| side.clone());
    if st.watchdog.is_some() {
      worker.beat = Some(Beat::default());
    }
    st.workers.insert(id, worker);
    crate::sync::lock(&st.lanes).insert(id, lane.clone());
    crate::sync::lock(&st.pidfds).insert(id, pidfd.clone());
  }
  let side = match reader {
    Some((side, forwards)) => {
      spawn_local(take_forwards(state.clone(), id, side.clone(), forwards));
      Some(side)
    }
    None => {
      let decoder = StreamDecoder::new(advanced);
      spawn_local(read_loop(
        state.clone(),
        id,
        channel.clone(),
        decoder,
        heard,
      ));
      None
    }
  };
  let channel_fd = channel.fd_number();
  spawn_local(write_loop(state.clone(), id, channel, lane));
  spawn_local(reap(state.clone(), id, child.pid, pidfd));
  Ok(Spawned {
    pid: child.pid,
    pipes: child.pipes,
    channel_fd,
    reader: side,
  })
}

/// A worker's descriptors waiting for the NODE_HANDLE message they came
/// with, which may complete in a later read when it is large (Node's primary
/// loses them then: nodejs/node#13778). A worker cannot make the primary
/// hoard them.
fn hold_fds(held: &mut VecDeque<OwnedFd>, got: impl IntoIterator<Item = OwnedFd>) {
  held.extend(got);
  while held.len() > MAX_PENDING_FDS {
    held.pop_front();
  }
}

/// What the JS thread read and handed over, in order, until the channel ends.
async fn take_forwards(
  state: Shared,
  id: u32,
  side: Arc<ReadSide>,
  mut forwards: mpsc::UnboundedReceiver<Forward>,
) {
  let mut fds = VecDeque::new();
  let mut error = None;
  while let Some(forward) = forwards.recv().await {
    match forward {
      Forward::Frames {
        mut frames,
        fds: got,
      } => {
        hold_fds(&mut fds, got);
        protocol::on_frames(&state, id, &mut frames, &mut fds, Some(&side));
      }
      Forward::End(e) => {
        error = e;
        break;
      }
    }
  }
  channel_ended(&state, id, error);
}

/// The channel's end was read: a read error is first the worker's error.
fn channel_ended(state: &Shared, id: u32, error: Option<std::io::Error>) {
  if let Some(e) = error {
    let error = Error::from_io(&e, "read", "ipc channel");
    let error = error.into();
    state.borrow().emit(vec![Event::Error { id, error }]);
  }
  protocol::on_channel_closed(state, id);
}

async fn read_loop(
  state: Shared,
  id: u32,
  channel: Arc<Channel>,
  mut decoder: StreamDecoder,
  heard: Arc<Heard>,
) {
  let mut buf = vec![0u8; 64 * 1024];
  let mut fds: VecDeque<OwnedFd> = VecDeque::new();
  let mut got: Vec<OwnedFd> = Vec::new();
  let mut frames = Vec::new();
  let pressure = state.borrow().sink.pressure();
  let error = loop {
    if let Some(p) = &pressure {
      p.admit().await;
    }
    match channel.read(&mut buf, &mut got).await {
      Ok(0) => break None,
      Ok(n) => {
        hold_fds(&mut fds, got.drain(..));
        decoder.push(&buf[..n], &mut frames);
        note_heartbeats(&frames, &heard);
        protocol::on_frames(&state, id, &mut frames, &mut fds, None);
      }
      // The worker vanished mid-stream: that is a disconnect, not an error.
      Err(e) if e.raw_os_error() == Some(Errno::ECONNRESET as i32) => break None,
      Err(e) => break Some(e),
    }
  };
  channel_ended(&state, id, error);
}

/// Drains what could not be written at once; a write error other than the
/// worker going away is that worker's error.
async fn write_loop(state: Shared, id: u32, channel: Arc<Channel>, lane: Arc<Lane>) {
  if let Err(e) = drain(lane).await {
    // EPIPE/ECONNRESET: the worker closed its end; the reader reports the disconnect.
    let quiet = matches!(e.raw_os_error(), Some(c) if c == Errno::EPIPE as i32 || c == Errno::ECONNRESET as i32);
    if !quiet {
      let error = Error::from_io(&e, "write", "ipc channel").into();
      state.borrow().emit(vec![Event::Error { id, error }]);
    }
    channel.shutdown();
  }
}

/// Waits for this pid only (never `waitpid(-1)`: libuv reaps its own children
/// by pid and a blanket wait would steal their status).
async fn reap(state: Shared, id: u32, pid: i32, pidfd: Arc<OwnedFd>) {
  let (code, signal) = match wait_exit(pid, pidfd).await {
    Ok(status) => status,
    Err(error) => {
      let error = error.into();
      state.borrow().emit(vec![Event::Error { id, error }]);
      (None, None)
    }
  };
  let closed = {
    let st = state.borrow();
    st.workers
      .get(&id)
      .filter(|w| w.connected)
      .map(|w| w.closed.clone())
  };
  if let Some(closed) = closed {
    let _ = tokio::time::timeout(DRAIN_BEFORE_EXIT, closed.notified()).await;
  }
  protocol::on_exit(&state, id, code, signal);
}

async fn wait_exit(pid: i32, pidfd: Arc<OwnedFd>) -> Result<(Option<i32>, Option<String>)> {
  let afd =
    watch(pidfd, Interest::READABLE).map_err(|e| Error::from_io(&e, "epoll_ctl", "pidfd"))?;
  loop {
    let mut guard = afd
      .readable()
      .await
      .map_err(|e| Error::from_io(&e, "epoll_wait", "pidfd"))?;
    match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
      Ok(WaitStatus::Exited(_, code)) => return Ok((Some(code), None)),
      Ok(WaitStatus::Signaled(_, sig, _)) => return Ok((None, Some(sig.as_str().to_string()))),
      // Not yet, or only stopped/continued: wait for the next readiness.
      Ok(_) => guard.clear_ready(),
      Err(Errno::EINTR) => continue,
      Err(e) => return Err(Error::sys(e, "waitpid", pid.to_string())),
    }
  }
}
