//! The primary's engine: one thread that lives as long as the process, running
//! a single-threaded tokio runtime that spawns, reads, writes, accepts and
//! reaps. JS talks to it through [`Engine`]; it talks back through a [`Sink`].

mod cluster;
mod dispatch;
pub mod pressure;
pub mod reader;
pub mod spawn;
mod state;
mod steal;
mod worker;

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{mpsc as std_mpsc, Arc, Mutex};

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::ipc::lane::{Lane, Outgoing};
pub use cluster::KeyRule;
pub use spawn::{SpawnSpec, StdioSpec};

/// A descriptor handed to JS with an event. Equal when it is the same fd number.
#[derive(Debug)]
pub struct PassedFd(pub OwnedFd);

impl PartialEq for PassedFd {
  fn eq(&self, other: &Self) -> bool {
    use std::os::fd::AsRawFd;
    self.0.as_raw_fd() == other.0.as_raw_fd()
  }
}

/// What the primary tells JS, in the order it happened.
#[derive(Debug, PartialEq)]
pub enum Event {
  /// The worker announced `online`.
  Online { id: u32 },
  /// A worker server is listening; `info` is `{addressType, address, port, fd}` as JSON.
  Listening { id: u32, info: String },
  /// A user message, as the JSON text the worker sent.
  Message { id: u32, json: String },
  /// Several user messages, already checked to be JSON, as one JSON array
  /// text: JS parses a whole read's worth of messages in one `JSON.parse`.
  Messages { id: u32, array: String },
  /// User messages in `advanced` serialization: each a 4-byte big-endian
  /// length and a V8 payload, back to back.
  MessagesV8 { id: u32, bytes: Vec<u8> },
  /// The worker is leaving on purpose (it sent `exitedAfterDisconnect`).
  ExitedAfterDisconnect { id: u32 },
  /// A user message that came with a handle (`process.send(msg, handle)`):
  /// its whole `NODE_HANDLE` envelope (`type`, `msg`, `key`, `dgramType`) as
  /// `json` (json serialization) or `v8` (length-prefixed, advanced); the fd
  /// is JS's to wrap.
  HandleMessage {
    id: u32,
    json: Option<String>,
    v8: Option<Vec<u8>>,
    fd: PassedFd,
  },
  /// The channel closed.
  Disconnect { id: u32 },
  /// The process ended: an exit code or a signal name.
  Exit {
    id: u32,
    code: Option<i32>,
    signal: Option<String>,
  },
  /// An internal message JS answers, as JSON: rcluster's worker hook
  /// (`NODE_RCLUSTER`: heartbeat, ready) and child_process's bookkeeping of
  /// sockets sent between processes (`NODE_SOCKET_*`).
  Internal { id: u32, json: String },
  /// The watchdog found the worker silent past its timeout and sent SIGABRT.
  Unresponsive { id: u32 },
  /// Something about this worker went wrong (bad bytes on its channel, a failed write).
  Error { id: u32, error: Error },
  /// The events of a read the JS thread handed over end here (not for JS).
  CaughtUp(reader::CaughtUp),
}

/// Where events go; the binding delivers them to JS.
pub trait Sink: Send + Sync + 'static {
  fn emit(&self, events: Vec<Event>);

  /// How far behind the consumer is, if it says; readers pause past the mark.
  fn pressure(&self) -> Option<Arc<pressure::Pressure>> {
    None
  }
}

/// What the engine counts for one worker.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStats {
  pub id: u32,
  /// Connections handed to it by round-robin, ever.
  pub dispatched: u64,
  /// Handed and not yet acknowledged.
  pub in_flight: u32,
  /// Milliseconds since its last heartbeat, when the watchdog is on.
  pub heartbeat_age_ms: Option<f64>,
}

/// A worker as JS sees it right after `fork()`.
pub struct Spawned {
  pub pid: i32,
  /// The primary's ends of `pipe` stdio slots, one entry per slot.
  pub pipes: Vec<Option<OwnedFd>>,
  /// The number of the primary's end of its channel.
  pub channel_fd: i32,
  /// Its channel's read side, when the JS thread is to read it.
  pub reader: Option<Arc<reader::ReadSide>>,
}

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
  /// Per-worker dispatch counters.
  Stats(std_mpsc::SyncSender<Vec<WorkerStats>>),
  /// `worker.process.disconnect()`: close our end of the channel.
  CloseChannel {
    id: u32,
  },
}

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
  pub fn start(
    sink: Arc<dyn Sink>,
    policy: u32,
    js_reads: bool,
    key_rule: KeyRule,
  ) -> Result<Engine> {
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
          state::run(
            rx,
            sink,
            policy,
            js_reads,
            key_rule,
            shared_pidfds,
            shared_lanes,
          ),
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
