//! The JS thread's half of channel reading (see `primary::reader`): a libuv
//! poll handle per channel in Node's own event loop, and the direct call into
//! lib/primary.js's `onDelivery`. libuv's functions are looked up in the running
//! node binary, as napi's are; where they cannot be, the engine reads every
//! channel as before.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashMap;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::null_mut;
use std::sync::{Arc, OnceLock};

use napi::sys;

use crate::primary::reader::{ReadSide, Step};
use crate::primary::{delivery_args, js_events, DeliveryArgs, Event};

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
pub unsafe fn install(env: sys::napi_env, on_delivery: sys::napi_value) -> bool {
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
pub fn watch(side: Arc<ReadSide>) {
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
pub fn caught_up(side: &ReadSide) {
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
