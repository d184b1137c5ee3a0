//! The primary's engine: one thread that lives as long as the process, running
//! a single-threaded tokio runtime that spawns, reads, writes, accepts and
//! reaps. JS talks to it through [`Engine`]; it talks back through a [`Sink`].
//!
//! The files, each using only those listed before it (the module-graph
//! test checks this list): `spawn` (a process and its channel), `reader`
//! (who reads a channel; heartbeats noted), `pressure` (JS's backlog), `event` (what JS is
//! told, and the events of one read), `registry` (tables shared with the JS
//! thread), `worker` (what the engine keeps of one worker), `state`
//! (the engine's state), `protocol` (Node's cluster protocol, and handing
//! out connections with `newconn`), `tasks` (one worker's reader, writer
//! and reaper), `engine` (the command loop and the watchdog's view of it).

mod engine;
mod event;
pub(crate) mod pressure;
mod protocol;
pub(crate) mod reader;
mod registry;
pub(crate) mod spawn;
mod state;
mod tasks;
mod worker;

use std::os::fd::OwnedFd;
use std::sync::{mpsc as std_mpsc, Arc};

use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::ipc::channel::{Lane, Outgoing};
use crate::sched::Placement;
use engine::Command;
pub(crate) use event::js_events;
pub(crate) use event::{delivery_args, DeliveryArgs, Event, Sink, Spawned, WorkerStats};
use registry::{signal_worker, Lanes, PidFds};
pub(crate) use spawn::{SpawnSpec, StdioSpec};

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
          engine::run(rx, sink, placement, js_reads, shared_pidfds, shared_lanes),
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
