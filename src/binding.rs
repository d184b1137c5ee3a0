//! The thin binding layer: the only place with `#[napi]`. It turns JS values
//! into plain Rust for the engine and engine events into JS objects.

use std::os::fd::IntoRawFd;
use std::sync::{Arc, OnceLock};

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::error::{Error as EngineError, NativeError};
use crate::primary::pressure::Pressure;
use crate::primary::reader::ReadSide;
use crate::primary::{
  delivery_args, DeliveryArgs, Engine, Event, Sink, SpawnSpec, StdioSpec, WorkerStats,
};
use crate::sched::listen::KeyRule;
use crate::sched::Placement;

/// A batch for JS, and the channel whose handed-over read it completes.
struct Delivery {
  events: Vec<Event>,
  caught: Option<Arc<ReadSide>>,
}

type EventFn = ThreadsafeFunction<Delivery, (), FnArgs<DeliveryArgs>, Status, false, true>;

static ENGINE: OnceLock<Engine> = OnceLock::new();
static EVENTS: OnceLock<Arc<EventFn>> = OnceLock::new();

struct JsSink(Arc<EventFn>, Arc<Pressure>);

impl Sink for JsSink {
  fn emit(&self, events: Vec<Event>, caught: Option<Arc<ReadSide>>) {
    let batch = Delivery { events, caught };
    self.1.sent();
    // NonBlocking on an unbounded queue only fails while Node shuts down,
    // when nobody is left to tell.
    if self.0.call(batch, ThreadsafeFunctionCallMode::NonBlocking) != Status::Ok {
      self.1.delivered();
    }
  }

  fn pressure(&self) -> Option<Arc<Pressure>> {
    Some(self.1.clone())
  }
}

/// Starts the engine once, with the frozen scheduling policy; `onDelivery`
/// (lib/primary.js) receives what workers sent and what became of them (see
/// `DeliveryArgs`). Later calls are no-ops.
#[napi]
pub fn start(
  env: Env,
  on_delivery: Function<FnArgs<DeliveryArgs>, ()>,
  policy: u32,
  sticky: bool,
  least_connections: bool,
) -> Result<()> {
  if ENGINE.get().is_some() {
    return Ok(());
  }
  // SAFETY: a napi call on the JS thread, with its env and argument.
  let js_reads = unsafe { crate::jsread::install(env.raw(), on_delivery.raw()) };
  let pressure = Arc::new(Pressure::default());
  let delivered = pressure.clone();
  let tsfn: EventFn = on_delivery
    .build_threadsafe_function::<Delivery>()
    .callee_handled::<false>()
    .weak::<true>()
    .build_callback(move |ctx| {
      // On the JS thread, as the batch is handed to lib/primary.js.
      delivered.delivered();
      if let Some(side) = &ctx.value.caught {
        crate::jsread::caught_up(side);
      }
      Ok(FnArgs::from(delivery_args(ctx.value.events)))
    })?;
  let tsfn = Arc::new(tsfn);
  let sink = JsSink(tsfn.clone(), pressure);
  // Listen keys follow the Node line this primary runs on.
  let major = env.get_node_version().map(|v| v.major).unwrap_or(20);
  let placement = Placement {
    policy,
    sticky,
    least_connections,
    key_rule: KeyRule::for_node_major(major),
  };
  let engine = Engine::start(Arc::new(sink), placement, js_reads).map_err(js_error)?;
  let _ = EVENTS.set(tsfn);
  let _ = ENGINE.set(engine);
  Ok(())
}

/// Keeps Node's event loop alive (true) while workers exist, as node:cluster's
/// child handles do, or lets it exit (false).
#[napi]
pub fn set_ref(env: Env, on: bool) -> Result<()> {
  let Some(tsfn) = EVENTS.get() else {
    return Ok(());
  };
  // SAFETY: called on the JS thread with that thread's env and a live tsfn.
  let status = unsafe {
    if on {
      napi::sys::napi_ref_threadsafe_function(env.raw(), tsfn.raw())
    } else {
      napi::sys::napi_unref_threadsafe_function(env.raw(), tsfn.raw())
    }
  };
  if status != napi::sys::Status::napi_ok {
    return Err(Error::from_reason(
      "napi_(un)ref_threadsafe_function failed",
    ));
  }
  Ok(())
}

/// What `fork()` resolved from settings.
#[napi(object)]
pub struct SpawnOptions {
  pub id: u32,
  pub file: String,
  pub args: Vec<String>,
  /// `KEY=value` strings.
  pub env: Vec<String>,
  pub cwd: Option<String>,
  pub uid: Option<u32>,
  pub gid: Option<u32>,
  /// What each stdio index gets: `pipe`, `inherit`, `ignore`, `ipc`, or a
  /// descriptor (lib/process.js's stdio words; anything else is refused).
  pub stdio: Vec<Either<StdioWord, i32>>,
  pub serialization: Serialization,
}

/// `serialization` of the worker's channel, as child_process names it.
#[napi(string_enum = "lowercase")]
pub enum Serialization {
  Json,
  Advanced,
}

/// A word for what a stdio index gets, as child_process names them.
#[napi(string_enum = "lowercase")]
pub enum StdioWord {
  Pipe,
  Overlapped,
  Inherit,
  Ignore,
  Ipc,
}

#[napi(object)]
pub struct SpawnResult {
  pub pid: Option<i32>,
  /// The primary's ends of `pipe` stdio indexes (now owned by JS), or null.
  pub fds: Vec<Option<i32>>,
  /// The number of the primary's end of the worker's channel (the engine owns it).
  pub channel_fd: Option<i32>,
  pub error: Option<NativeError>,
}

/// An engine failure the caller cannot act on, as a plain JS Error.
fn js_error(e: EngineError) -> Error {
  Error::from_reason(e.to_string())
}

fn engine() -> Result<&'static Engine> {
  ENGINE
    .get()
    .ok_or_else(|| Error::from_reason("rcluster engine not started"))
}

#[napi]
pub fn spawn(options: SpawnOptions) -> Result<SpawnResult> {
  let stdio = options
    .stdio
    .iter()
    .map(|s| match s {
      Either::A(StdioWord::Pipe | StdioWord::Overlapped) => StdioSpec::Pipe,
      Either::A(StdioWord::Inherit) => StdioSpec::Inherit,
      Either::A(StdioWord::Ignore) => StdioSpec::Ignore,
      Either::A(StdioWord::Ipc) => StdioSpec::Ipc,
      Either::B(fd) => StdioSpec::Fd(*fd),
    })
    .collect();
  let env = options
    .env
    .iter()
    .filter_map(|kv| kv.split_once('='))
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
  let spec = SpawnSpec {
    id: options.id,
    file: options.file,
    args: options.args,
    env,
    cwd: options.cwd,
    uid: options.uid,
    gid: options.gid,
    stdio,
    advanced: matches!(options.serialization, Serialization::Advanced),
  };
  Ok(match engine()?.spawn(spec) {
    Ok(spawned) => {
      if let Some(side) = spawned.reader {
        crate::jsread::watch(side);
      }
      SpawnResult {
        pid: Some(spawned.pid),
        fds: spawned
          .pipes
          .into_iter()
          .map(|p| p.map(IntoRawFd::into_raw_fd))
          .collect(),
        channel_fd: Some(spawned.channel_fd),
        error: None,
      }
    }
    Err(e) => SpawnResult {
      pid: None,
      fds: vec![],
      channel_fd: None,
      error: Some(e.into()),
    },
  })
}

/// Sends one user message (JSON text without the newline); `now` writes it
/// from the JS thread, otherwise the engine writes it with the ones queued
/// around it. False when the channel has already closed.
#[napi]
pub fn send(id: u32, json: String, now: bool) -> Result<bool> {
  let mut bytes = json.into_bytes();
  bytes.push(b'\n');
  Ok(engine()?.send(id, bytes, now).is_ok())
}

#[napi]
pub fn disconnect(id: u32) -> Result<()> {
  engine()?.disconnect(id).map_err(js_error)
}

#[napi]
pub fn close_channel(id: u32) -> Result<()> {
  engine()?.close_channel(id).map_err(js_error)
}

/// Signals a worker: true if delivered, false if it is already gone; a
/// NativeError for anything else (EPERM).
#[napi]
pub fn kill(id: u32, signal: i32) -> Result<Either<bool, NativeError>> {
  Ok(match engine()?.kill(id, signal) {
    Ok(sent) => Either::A(sent),
    Err(e) => Either::B(e.into()),
  })
}

/// Reaps the zombie children of this process that are in no one's care:
/// orphans adopted as PID 1 or as a child subreaper. `keep`: the pids of
/// workers and of the app's own children, never reaped here.
#[napi]
pub fn reap_orphans(keep: Vec<u32>) -> Vec<u32> {
  crate::supervise::orphans::reap(&keep)
}

/// Whether this process is a child subreaper (prctl PR_GET_CHILD_SUBREAPER).
#[napi]
pub fn child_subreaper() -> bool {
  nix::sys::prctl::get_child_subreaper().unwrap_or(false)
}

/// Whether the kernel has SO_REUSEPORT (for `cluster.SCHED_REUSEPORT`).
#[napi]
pub fn reuse_port_supported() -> bool {
  crate::sched::listen::reuse_port_supported()
}

/// Turns on the hung-worker watchdog (SIGABRT after `timeoutMs` without a
/// heartbeat, SIGKILL `graceMs` later).
#[napi]
pub fn watchdog(timeout_ms: f64, grace_ms: f64) -> Result<()> {
  engine()?.watchdog(timeout_ms, grace_ms).map_err(js_error)
}

/// Per-worker counters from the engine.
#[napi]
pub fn worker_stats() -> Result<Vec<WorkerStats>> {
  engine()?.stats().map_err(js_error)
}

/// `cluster.SCHED_NONE`: the kernel picks the worker.
#[napi]
pub const SCHED_NONE: u32 = crate::sched::SCHED_NONE;
/// `cluster.SCHED_RR`: the primary accepts and hands connections out.
#[napi]
pub const SCHED_RR: u32 = crate::sched::SCHED_RR;
/// `cluster.SCHED_REUSEPORT`: one SO_REUSEPORT socket per worker.
#[napi]
pub const SCHED_REUSEPORT: u32 = crate::sched::SCHED_REUSEPORT;

/// The next worker `heir` replaces `from` in a reload (SCHED_REUSEPORT sockets pass on).
#[napi]
pub fn inherit(heir: u32, from: u32) -> Result<()> {
  engine()?.inherit(heir, from).map_err(js_error)
}

/// Sends one user message already serialized for an `advanced` channel
/// (4-byte big-endian length, then the V8 payload). Same `now` as `send`.
#[napi]
pub fn send_bytes(id: u32, message: Buffer, now: bool) -> Result<bool> {
  Ok(engine()?.send(id, message.to_vec(), now).is_ok())
}

/// Sends a user message with a handle: `envelope` is the encoded
/// `NODE_HANDLE` envelope, `fd` the handle's descriptor (the engine keeps its
/// own duplicate until the worker acknowledges it), `now` as for `send`.
/// False if the worker is gone.
#[napi]
pub fn send_handle(id: u32, envelope: Buffer, fd: i32, now: bool) -> Result<bool> {
  // SAFETY: `fd` is a live descriptor of a JS handle, borrowed only for the dup.
  let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
  let dup = crate::ipc::channel::dup_cloexec(borrowed, 3)
    .map_err(|e| js_error(EngineError::sys(e, "dup", "handle")))?;
  Ok(
    engine()?
      .send_handle(id, envelope.to_vec(), dup, now)
      .is_ok(),
  )
}
