//! The binding layer: everything that touches JS. The napi functions turn
//! JS values into plain Rust for the engine, and the engine's events reach
//! lib/primary.js's `onDelivery` two ways: through a threadsafe function
//! from the engine thread, and by a direct call from the JS thread's own
//! channel reads (see `primary::reader`): a libuv poll handle per channel in
//! Node's own event loop. libuv's functions are looked up in the running
//! node binary, as napi's are; where they cannot be, the engine reads every
//! channel.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::IntoRawFd;
use std::ptr::null_mut;
use std::sync::{Arc, OnceLock};

use napi::bindgen_prelude::*;
use napi::sys;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::error::{Error as EngineError, NativeError};
use crate::primary::js_events;
use crate::primary::reader::{Pressure, ReadSide, Step};
use crate::primary::{Engine, Event, Sink, SpawnSpec, StdioSpec, WorkerStats};
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

/// What `onDelivery(id, jsonArray, events)` is called with: one worker's
/// read of plain JSON messages as `(id, jsonArray)` (the common case,
/// without building event objects), anything else as `(0, undefined, events)`.
type DeliveryArgs = (u32, Option<String>, Option<Vec<Event>>);

fn delivery_args(mut events: Vec<Event>) -> DeliveryArgs {
  match events.pop() {
    Some(Event::Messages { id, data }) if events.is_empty() => (id, Some(data), None),
    last => {
      events.extend(last);
      (0, None, Some(events))
    }
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
  let js_reads = unsafe { install_reads(env.raw(), on_delivery.raw()) };
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
        read_caught_up(side);
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
        poll_channel(side);
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

// The JS thread's own channel reads.

type PollCb = unsafe extern "C" fn(*mut c_void, c_int, c_int);
type CloseCb = unsafe extern "C" fn(*mut c_void);

/// The libuv functions we call, from the node binary.
struct Uv {
  handle_size: unsafe extern "C" fn(c_int) -> usize,
  poll_init: unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int,
  poll_start: unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int,
  poll_stop: unsafe extern "C" fn(*mut c_void) -> c_int,
  close: unsafe extern "C" fn(*mut c_void, CloseCb),
  unref: unsafe extern "C" fn(*mut c_void),
}

/// `UV_POLL` in `uv_handle_type` (checked by name before use).
const UV_POLL: c_int = 8;
const UV_READABLE: c_int = 1;
/// Reads per readiness callback before giving the loop back, as libuv's
/// own stream reads do.
const MAX_READS: usize = 32;

fn uv() -> Option<&'static Uv> {
  static UV: OnceLock<Option<Uv>> = OnceLock::new();
  UV.get_or_init(|| {
    fn sym(name: &CStr) -> Option<*mut c_void> {
      // SAFETY: a NUL-terminated name; RTLD_DEFAULT searches the process.
      let p = unsafe { nix::libc::dlsym(nix::libc::RTLD_DEFAULT, name.as_ptr()) };
      (!p.is_null()).then_some(p)
    }
    // SAFETY: each pointer came from dlsym for that exact name and is
    // given libuv's signature for it, as in uv.h.
    unsafe {
      let type_name: unsafe extern "C" fn(c_int) -> *const c_char =
        std::mem::transmute::<*mut c_void, _>(sym(c"uv_handle_type_name")?);
      let name = type_name(UV_POLL);
      if name.is_null() || CStr::from_ptr(name) != c"poll" {
        return None;
      }
      Some(Uv {
        handle_size: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(c_int) -> usize>(sym(
          c"uv_handle_size",
        )?),
        poll_init: std::mem::transmute::<
          *mut c_void,
          unsafe extern "C" fn(*mut c_void, *mut c_void, c_int) -> c_int,
        >(sym(c"uv_poll_init")?),
        poll_start: std::mem::transmute::<
          *mut c_void,
          unsafe extern "C" fn(*mut c_void, c_int, PollCb) -> c_int,
        >(sym(c"uv_poll_start")?),
        poll_stop: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void) -> c_int>(
          sym(c"uv_poll_stop")?,
        ),
        close: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void, CloseCb)>(sym(
          c"uv_close",
        )?),
        unref: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(*mut c_void)>(sym(
          c"uv_unref",
        )?),
      })
    }
  })
  .as_ref()
}

/// What the JS thread needs to call lib/primary.js from a libuv callback.
struct Ctx {
  env: sys::napi_env,
  on_delivery: sys::napi_ref,
  async_context: sys::napi_async_context,
  uv_loop: *mut c_void,
  uv: &'static Uv,
}

/// One channel the JS thread polls; the poll handle's `data` points here.
struct Reader {
  side: Arc<ReadSide>,
  handle: *mut c_void,
  layout: Layout,
}

thread_local! {
  static CTX: OnceCell<Ctx> = const { OnceCell::new() };
  static READERS: RefCell<HashMap<u32, *mut Reader>> = RefCell::new(HashMap::new());
  static BUF: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

fn ctx<T>(f: impl FnOnce(&Ctx) -> T) -> Option<T> {
  CTX.with(|c| c.get().map(f))
}

macro_rules! check {
  ($call:expr) => {
    if $call != sys::Status::napi_ok {
      return false;
    }
  };
}

/// A reference that keeps `value` alive for the life of the process.
unsafe fn keep(env: sys::napi_env, value: sys::napi_value) -> Option<sys::napi_ref> {
  let mut reference = null_mut();
  let status = sys::napi_create_reference(env, value, 1, &mut reference);
  (status == sys::Status::napi_ok).then_some(reference)
}

/// Sets the JS thread up to read channels, calling lib/primary.js's
/// `on_delivery` (see the binding's `start`) with what it reads. False when
/// it cannot: the engine reads then.
///
/// # Safety
/// On the JS thread, inside a napi call, with that call's `env`.
unsafe fn install_reads(env: sys::napi_env, on_delivery: sys::napi_value) -> bool {
  let Some(uv) = uv() else {
    return false;
  };
  let mut uv_loop = null_mut();
  check!(sys::napi_get_uv_event_loop(env, &mut uv_loop));
  let Some(on_delivery) = keep(env, on_delivery) else {
    return false;
  };
  // The async resource 'message' listeners run under.
  let mut resource = null_mut();
  check!(sys::napi_create_object(env, &mut resource));
  if keep(env, resource).is_none() {
    return false;
  }
  let mut name = null_mut();
  let text = "rcluster:channel";
  check!(sys::napi_create_string_utf8(
    env,
    text.as_ptr().cast(),
    text.len() as isize,
    &mut name
  ));
  let mut async_context = null_mut();
  check!(sys::napi_async_init(
    env,
    resource,
    name,
    &mut async_context
  ));
  CTX.with(|c| {
    c.set(Ctx {
      env,
      on_delivery,
      async_context,
      uv_loop: uv_loop.cast(),
      uv,
    })
    .is_ok()
  })
}

/// Starts reading a worker's channel from the JS thread. Should the poll
/// handle fail, the channel ends with that error (the worker sees its
/// channel close; 'error' and 'disconnect' follow).
fn poll_channel(side: Arc<ReadSide>) {
  let started = ctx(|ctx| {
    // SAFETY: the handle is allocated at libuv's own size for a poll handle
    // and freed only in the close callback; `data` (its first field) holds
    // the Reader, owned by the handle until then.
    unsafe {
      let layout = Layout::from_size_align((ctx.uv.handle_size)(UV_POLL), 16).ok()?;
      let handle = alloc_zeroed(layout).cast::<c_void>();
      if handle.is_null() {
        return None;
      }
      let rc = (ctx.uv.poll_init)(ctx.uv_loop, handle, side.fd());
      if rc != 0 {
        dealloc(handle.cast(), layout);
        return None;
      }
      let reader = Box::into_raw(Box::new(Reader {
        side: side.clone(),
        handle,
        layout,
      }));
      *handle.cast::<*mut Reader>() = reader;
      // Node's liveness follows the workers (set_ref), not these handles.
      (ctx.uv.unref)(handle);
      READERS.with(|r| r.borrow_mut().insert(side.id(), reader));
      if (ctx.uv.poll_start)(handle, UV_READABLE, on_readable) != 0 {
        close(ctx, reader);
        return None;
      }
      Some(())
    }
  })
  .flatten();
  if started.is_none() {
    side.abandon(std::io::Error::other("cannot poll the ipc channel"));
  }
}

/// The engine's events for one read JS handed over have reached JS:
/// polling resumes if it had paused and the engine has caught up enough.
fn read_caught_up(side: &ReadSide) {
  if !side.caught_up() {
    return;
  }
  let Some(reader) = READERS.with(|r| r.borrow().get(&side.id()).copied()) else {
    return;
  };
  ctx(|ctx| {
    // SAFETY: readers in the map are live (removed before their handle closes).
    unsafe {
      if (ctx.uv.poll_start)((*reader).handle, UV_READABLE, on_readable) != 0 {
        close(ctx, reader);
      }
    }
  });
}

unsafe extern "C" fn on_readable(handle: *mut c_void, _status: c_int, _events: c_int) {
  let reader = *handle.cast::<*mut Reader>();
  let side = (*reader).side.clone();
  let mut buf = BUF.with(|b| b.take());
  buf.resize(64 * 1024, 0);
  for _ in 0..MAX_READS {
    if side.pause_if_behind() {
      ctx(|ctx| (ctx.uv.poll_stop)(handle));
      break;
    }
    // An error status shows up as the read's error.
    let more = match side.read(&mut buf) {
      Step::Emit { frames, more } => {
        let events = js_events(side.id(), frames);
        if !events.is_empty() {
          emit(events);
        }
        more
      }
      Step::Forwarded { more } => more,
      Step::Idle => break,
      Step::Ended => {
        ctx(|ctx| close(ctx, reader));
        break;
      }
    };
    if !more {
      break;
    }
  }
  BUF.with(|b| b.set(buf));
}

/// Stops polling and frees the handle once libuv is done with it.
unsafe fn close(ctx: &Ctx, reader: *mut Reader) {
  READERS.with(|r| r.borrow_mut().remove(&(*reader).side.id()));
  (ctx.uv.poll_stop)((*reader).handle);
  (ctx.uv.close)((*reader).handle, on_closed);
}

unsafe extern "C" fn on_closed(handle: *mut c_void) {
  let reader = Box::from_raw(*handle.cast::<*mut Reader>());
  dealloc(handle.cast(), reader.layout);
}

/// Calls lib/primary.js's `onDelivery` with `events`, as a callback from the event
/// loop: process.nextTick callbacks and promises run after it, and a throw
/// is an uncaught exception, as from Node's own channel.
unsafe fn emit(events: Vec<Event>) {
  ctx(|ctx| {
    let env = ctx.env;
    let mut scope = null_mut();
    if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
      return;
    }
    let mut func = null_mut();
    let mut global = null_mut();
    if let Some(args) = js_args(env, delivery_args(events)) {
      if sys::napi_get_reference_value(env, ctx.on_delivery, &mut func) == sys::Status::napi_ok
        && sys::napi_get_global(env, &mut global) == sys::Status::napi_ok
      {
        let mut result = null_mut();
        let (argc, argv) = (args.len(), args.as_ptr());
        let status = sys::napi_make_callback(
          env,
          ctx.async_context,
          global,
          func,
          argc,
          argv,
          &mut result,
        );
        if status == sys::Status::napi_pending_exception {
          let mut error = null_mut();
          sys::napi_get_and_clear_last_exception(env, &mut error);
          sys::napi_fatal_exception(env, error);
        }
      }
    }
    sys::napi_close_handle_scope(env, scope);
  });
}

/// The three arguments of `onDelivery`.
unsafe fn js_args(env: sys::napi_env, args: DeliveryArgs) -> Option<[sys::napi_value; 3]> {
  use napi::bindgen_prelude::ToNapiValue;
  let (id, data, batch) = args;
  Some([
    u32::to_napi_value(env, id).ok()?,
    Option::<String>::to_napi_value(env, data).ok()?,
    Option::<Vec<Event>>::to_napi_value(env, batch).ok()?,
  ])
}
