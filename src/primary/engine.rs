//! The engine: one thread that lives as long as the process, running a
//! single-threaded tokio runtime that spawns, reads, writes, accepts and
//! reaps. JS holds an [`Engine`] and sends it commands; the engine thread's
//! main loop answers them and runs the engine's side of the hung-worker
//! watchdog (`supervise::watchdog` runs the loop). Each worker's life in the
//! engine: spawn it, then a reader, a writer and a reaper task until its
//! channel is closed and its process is reaped.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tokio::task::spawn_local;

use super::event::{Event, Sink, Spawned, WorkerStats};
use super::process::{signal_worker, spawn, Lanes, PidFds, SpawnSpec};
use super::protocol;
use super::protocol::{Shared, State, Worker};
use super::reader::{note_heartbeats, now_ms, Forward, Heard, ReadSide, StreamDecoder};
use crate::error::{Error, Result};
use crate::ipc::channel::{drain, watch, Channel, Lane, Outgoing};
use crate::sched::Placement;
use crate::supervise::watchdog::{self, Beat, Verdict, Watched};

// The handle JS holds.

/// Handle to the engine thread.
pub struct Engine {
  commands: mpsc::UnboundedSender<Command>,
  pidfds: PidFds,
  lanes: Lanes,
}

impl Engine {
  /// Starts the engine thread with the frozen scheduling policy. `js_reads`:
  /// the JS thread can read channels (see [`reader`]); it then does, except
  /// under SCHED_RR.
  pub fn start(sink: Arc<dyn Sink>, placement: Placement, js_reads: bool) -> Result<Engine> {
    let (tx, rx) = mpsc::unbounded_channel();
    let pidfds: PidFds = Arc::default();
    let lanes: Lanes = Arc::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
      .enable_io()
      .enable_time()
      .build()
      .map_err(|e| Error::from_io(&e, "epoll_create", "rcluster engine"))?;
    let (shared_pidfds, shared_lanes) = (pidfds.clone(), lanes.clone());
    std::thread::Builder::new()
      .name("rcluster-primary".into())
      .spawn(move || {
        let local = tokio::task::LocalSet::new();
        local.block_on(
          &runtime,
          run(rx, sink, placement, js_reads, shared_pidfds, shared_lanes),
        );
      })
      .map_err(|e| Error::from_io(&e, "pthread_create", "rcluster engine"))?;
    Ok(Engine {
      commands: tx,
      pidfds,
      lanes,
    })
  }

  /// Starts a worker process; returns once it exists (or failed to).
  pub fn spawn(&self, spec: SpawnSpec) -> Result<Spawned> {
    let (tx, rx) = std_mpsc::sync_channel(1);
    self.command(Command::Spawn(Box::new(spec), tx))?;
    rx.recv().map_err(|_| Error::EngineGone)?
  }

  /// Sends a user message, already encoded for the channel (JSON ending in
  /// `\n`, or a length-prefixed V8 payload): written from the calling thread
  /// when `now`, else queued for the engine's gathered writes.
  pub fn send(&self, id: u32, bytes: Vec<u8>, now: bool) -> Result<()> {
    self.lane(id)?.send(
      Outgoing {
        bytes: bytes.into(),
        fd: None,
      },
      now,
    )
  }

  /// Sends a user message with a handle (a `NODE_HANDLE` envelope already
  /// encoded for the channel), in order with the plain messages around it;
  /// the fd stays open until the worker acknowledges it.
  pub fn send_handle(&self, id: u32, bytes: Vec<u8>, fd: OwnedFd, now: bool) -> Result<()> {
    self.lane(id)?.send(
      Outgoing {
        bytes: bytes.into(),
        fd: Some(Arc::new(fd)),
      },
      now,
    )
  }

  fn lane(&self, id: u32) -> Result<Arc<Lane>> {
    let map = crate::sync::lock(&self.lanes);
    map.get(&id).cloned().ok_or(Error::ChannelClosed)
  }

  /// Turns on the watchdog: SIGABRT after `timeout_ms` without a heartbeat,
  /// SIGKILL `grace_ms` later.
  pub fn watchdog(&self, timeout_ms: f64, grace_ms: f64) -> Result<()> {
    self.command(Command::Watchdog {
      timeout_ms,
      grace_ms,
    })
  }

  /// Declares that the next worker `heir` replaces `from` (a reload), so it
  /// takes over `from`'s SO_REUSEPORT sockets and their queues.
  pub fn inherit(&self, heir: u32, from: u32) -> Result<()> {
    self.command(Command::Inherit { heir, from })
  }

  /// Per-worker counters, from the engine thread.
  pub fn stats(&self) -> Result<Vec<WorkerStats>> {
    let (tx, rx) = std_mpsc::sync_channel(1);
    self.command(Command::Stats(tx))?;
    rx.recv().map_err(|_| Error::EngineGone)
  }

  pub fn disconnect(&self, id: u32) -> Result<()> {
    self.command(Command::Disconnect { id })
  }

  pub fn close_channel(&self, id: u32) -> Result<()> {
    self.command(Command::CloseChannel { id })
  }

  /// Signals a worker. `Ok(false)` when it is already gone (Node's ESRCH case).
  pub fn kill(&self, id: u32, sig: i32) -> Result<bool> {
    signal_worker(&self.pidfds, id, sig)
  }

  fn command(&self, cmd: Command) -> Result<()> {
    self.commands.send(cmd).map_err(|_| Error::EngineGone)
  }
}

// The engine thread: its commands and main loop.

pub(crate) enum Command {
  Spawn(Box<SpawnSpec>, std_mpsc::SyncSender<Result<Spawned>>),
  /// `worker.disconnect()`: ask the worker to close its servers and leave.
  Disconnect {
    id: u32,
  },
  /// Worker `heir` (about to be forked) replaces `from` in a reload.
  Inherit {
    heir: u32,
    from: u32,
  },
  /// Turn the hung-worker watchdog on.
  Watchdog {
    timeout_ms: f64,
    grace_ms: f64,
  },
  /// Per-worker counters (`cluster.metrics()`).
  Stats(std_mpsc::SyncSender<Vec<WorkerStats>>),
  /// `worker.process.disconnect()`: close our end of the channel.
  CloseChannel {
    id: u32,
  },
}

/// The engine thread's main loop.
pub(crate) async fn run(
  mut commands: mpsc::UnboundedReceiver<Command>,
  sink: Arc<dyn Sink>,
  placement: Placement,
  js_reads: bool,
  pidfds: PidFds,
  lanes: Lanes,
) {
  let Placement {
    policy,
    sticky,
    least_connections,
    key_rule,
  } = placement;
  let state: Shared = Rc::new(RefCell::new(State {
    policy,
    sticky,
    least_connections,
    key_rule,
    js_reads: js_reads && policy != crate::sched::SCHED_RR,
    watchdog: None,
    heirs: HashMap::new(),
    workers: HashMap::new(),
    handles: HashMap::new(),
    sink,
    pidfds,
    lanes,
  }));
  while let Some(cmd) = commands.recv().await {
    match cmd {
      Command::Spawn(spec, reply) => {
        // The JS thread is blocked on this reply; it cannot be gone.
        let _ = reply.send(start(&state, &spec));
      }
      Command::Disconnect { id } => protocol::disconnect(&state, id),
      Command::Inherit { heir, from } => {
        state.borrow_mut().heirs.insert(heir, from);
      }
      Command::Watchdog {
        timeout_ms,
        grace_ms,
      } => {
        let first = state.borrow().watchdog.is_none();
        let mut st = state.borrow_mut();
        st.watchdog = Some((timeout_ms, grace_ms));
        for w in st.workers.values_mut() {
          if w.beat.is_none() {
            // Watched from now on: its timeout starts now.
            w.heard.touch();
            w.beat = Some(Beat::default());
          }
        }
        drop(st);
        if first {
          tokio::task::spawn_local(watchdog::run(EngineWatch {
            state: state.clone(),
            buf: Rc::new(RefCell::new(vec![0u8; 64 * 1024])),
          }));
        }
      }
      Command::Stats(reply) => {
        let st = state.borrow();
        let now = now_ms();
        let stats = st
          .workers
          .iter()
          .filter(|(_, w)| !w.exited)
          .map(|(&id, w)| WorkerStats {
            id,
            dispatched: w.dispatched as f64,
            in_flight: w.newconns.len() as u32,
            connections_open: w.open,
            heartbeat_age_ms: w.beat.map(|_| now - w.heard.ms()),
          })
          .collect();
        let _ = reply.send(stats);
      }
      Command::CloseChannel { id } => {
        if let Some(w) = state.borrow().workers.get(&id) {
          w.channel.shutdown();
        }
      }
    }
  }
}

/// The engine as the watchdog sees it.
#[derive(Clone)]
struct EngineWatch {
  state: Shared,
  buf: Rc<RefCell<Vec<u8>>>,
}

impl Watched for EngineWatch {
  fn deadlines(&self) -> Option<(f64, f64)> {
    self.state.borrow().watchdog
  }

  /// Channels the JS thread reads, whose worker has not been heard for
  /// `quiet_ms`: the engine reads them itself, in case JS is the one that is
  /// stuck (a long synchronous job in the primary must not get healthy
  /// workers killed). Not while JS is behind on events: then a flood is
  /// left in the worker's socket, as the engine's own readers leave it.
  fn read_quiet(&self, quiet_ms: f64) -> bool {
    let st = self.state.borrow();
    if st
      .sink
      .pressure()
      .is_some_and(|p| p.in_flight() >= super::reader::HIGH_WATER)
    {
      return false;
    }
    let now = now_ms();
    let mut buf = self.buf.borrow_mut();
    let mut read = false;
    for w in st.workers.values() {
      let (Some(side), Some(_)) = (&w.reader, &w.beat) else {
        continue;
      };
      if w.connected && now - w.heard.ms() > quiet_ms {
        side.drain(&mut buf, 16);
        read = true;
      }
    }
    read
  }

  fn judge(&self, timeout_ms: f64, grace_ms: f64) -> Vec<(u32, Verdict)> {
    let mut st = self.state.borrow_mut();
    let now = now_ms();
    let mut verdicts = Vec::new();
    for (&id, w) in st.workers.iter_mut() {
      if w.exited {
        continue;
      }
      let last = w.heard.ms();
      if let Some(beat) = w.beat.as_mut() {
        verdicts.push((id, beat.check(last, now, timeout_ms, grace_ms)));
      }
    }
    verdicts
  }

  fn act(&self, verdicts: Vec<(u32, Verdict)>) {
    let st = self.state.borrow();
    let mut events = Vec::new();
    for (id, verdict) in verdicts {
      let sig = match verdict {
        Verdict::Fine => continue,
        Verdict::Abort => {
          events.push(Event::Unresponsive { id });
          nix::libc::SIGABRT
        }
        Verdict::Kill => nix::libc::SIGKILL,
      };
      // Already gone: it died meanwhile, which is what we wanted.
      let _ = signal_worker(&st.pidfds, id, sig);
    }
    st.emit(events);
  }
}

// One worker's life: spawned, then its reader, writer and reaper tasks.

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
