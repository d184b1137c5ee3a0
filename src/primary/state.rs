//! The engine's state, owned by its one thread: workers and listen handles.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use super::event::{Event, Sink};
use super::registry::{Lanes, PidFds};
use super::worker::Worker;
use crate::sched::handle::Handle;
use crate::sched::listen::KeyRule;

pub(crate) type Shared = Rc<RefCell<State>>;

pub(crate) struct State {
  pub policy: u32,
  /// Sticky placement by client address (`setupPrimary({ sticky: 'ip' })`).
  pub sticky: bool,
  /// `setupPrimary({ balance: 'least-connections' })`.
  pub least_connections: bool,
  /// How queryServer keys are built: as the Node line the primary runs on.
  pub key_rule: KeyRule,
  /// The JS thread reads channels (except under SCHED_RR).
  pub js_reads: bool,
  /// (timeout, grace) in ms once the watchdog is on.
  pub watchdog: Option<(f64, f64)>,
  /// Reloads: new worker id -> the worker it replaces (SCHED_REUSEPORT sockets pass on).
  pub heirs: HashMap<u32, u32>,
  pub workers: HashMap<u32, Worker>,
  pub handles: HashMap<String, Handle>,
  pub sink: Arc<dyn Sink>,
  pub pidfds: PidFds,
  pub lanes: Lanes,
}

impl State {
  pub fn emit(&self, events: Vec<Event>) {
    if !events.is_empty() {
      self.sink.emit(events, None);
    }
  }

  /// Removes a worker from every handle, closing handles nobody holds,
  /// as Node's removeHandlesForWorker does.
  pub fn remove_from_handles(&mut self, id: u32, on_purpose: bool) {
    self.handles.retain(|_, h| !h.remove(id, on_purpose));
  }
}
