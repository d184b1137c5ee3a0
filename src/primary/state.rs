//! The engine's state, owned by its one thread: workers, listen handles, and
//! the command loop that JS drives.

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use super::dispatch::RrHandle;
use super::reader::ReadSide;
use super::steal::Stealer;
use super::{cluster, worker, Command, Event, KeyRule, Lanes, PidFds, Sink, WorkerStats};
use crate::ipc::channel::Channel;
use crate::ipc::lane::{Lane, Outgoing};
use crate::sched::listen::Target;
use crate::sched::reuse_port::ReusePortPool;
use crate::sched::shared::SharedHandle;
use crate::supervise::watchdog::{Beat, Verdict};

pub(crate) type Shared = Rc<RefCell<State>>;

/// A listen key's socket, by strategy, with the `data` of the first query (Node's handle.data).
pub(crate) enum Handle {
  Shared(SharedHandle, Value),
  RoundRobin(RrHandle, Value),
  ReusePort(ReusePortPool, Value, Target, Box<Stealer>),
}

impl Handle {
  pub fn data(&self) -> &Value {
    match self {
      Handle::Shared(_, d) | Handle::RoundRobin(_, d) | Handle::ReusePort(_, d, _, _) => d,
    }
  }

  /// Whether `worker` holds it (a server of that worker listens through it).
  pub fn has(&self, worker: u32) -> bool {
    match self {
      Handle::Shared(h, _) => h.has(worker),
      Handle::RoundRobin(h, _) => h.rr.has(worker),
      Handle::ReusePort(pool, _, _, _) => pool.has(worker),
    }
  }

  /// True when no worker holds it any more and it should close. `on_purpose`:
  /// the worker closed its server or is leaving, rather than crashed.
  pub fn remove(&mut self, worker: u32, on_purpose: bool) -> bool {
    match self {
      Handle::Shared(h, _) => h.remove(worker),
      Handle::RoundRobin(h, _) => h.rr.remove(worker),
      Handle::ReusePort(pool, _, _, stealer) => {
        stealer.rr.remove(worker);
        let close = pool.remove(worker, on_purpose);
        stealer.steer(pool);
        close
      }
    }
  }
}

/// The primary's view of one worker.
pub(crate) struct Slot {
  /// The write side, shared with the JS thread.
  pub lane: Arc<Lane>,
  pub channel: Arc<Channel>,
  /// Signalled when the reader sees the channel end.
  pub closed: Rc<Notify>,
  seq: u64,
  pub connected: bool,
  pub exited: bool,
  /// Set by `exitedAfterDisconnect` or `worker.disconnect()`: no new servers.
  pub leaving: bool,
  /// Round-robin connections awaiting the worker's `accepted` reply, by seq.
  pub newconns: HashMap<u64, (String, Arc<OwnedFd>)>,
  /// Round-robin connections handed to it, ever.
  pub dispatched: u64,
  /// Heartbeat state, when the watchdog is on.
  pub beat: Option<Beat>,
  /// The channel speaks `advanced` (V8) serialization rather than `json`.
  pub advanced: bool,
  /// Its read side, when the JS thread reads the channel.
  pub reader: Option<Arc<ReadSide>>,
}

impl Slot {
  pub fn new(channel: Arc<Channel>, lane: Arc<Lane>) -> Self {
    Slot {
      lane,
      channel,
      closed: Rc::new(Notify::new()),
      seq: 0,
      connected: true,
      exited: false,
      leaving: false,
      newconns: HashMap::new(),
      dispatched: 0,
      beat: None,
      advanced: false,
      reader: None,
    }
  }

  /// The next `seq` for a cluster message from the primary.
  pub fn next_seq(&mut self) -> u64 {
    let s = self.seq;
    self.seq += 1;
    s
  }

  /// One message in this channel's serialization.
  pub fn encode(&self, value: &Value) -> Vec<u8> {
    if self.advanced {
      crate::ipc::v8::encode(value)
    } else {
      crate::ipc::json::encode(value)
    }
  }

  /// Sends one whole message (queued if the socket is full).
  pub fn send(&mut self, bytes: Arc<[u8]>, fd: Option<Arc<OwnedFd>>) {
    let msg = Outgoing { bytes, fd };
    // ChannelClosed: the reader reports the close; nothing to do here.
    let _ = self.lane.send(msg, true);
  }

  /// Sends a cluster message: adds `cmd` and `seq` as Node's sendHelper does.
  /// `fd` rides in a NODE_HANDLE envelope of the given child_process type.
  pub fn send_cluster(
    &mut self,
    mut msg: serde_json::Map<String, Value>,
    fd: Option<(Arc<OwnedFd>, &'static str)>,
  ) {
    msg.insert("cmd".into(), "NODE_CLUSTER".into());
    let seq = self.next_seq();
    msg.insert("seq".into(), seq.into());
    let body = Value::Object(msg);
    let (bytes, fd) = match fd {
      // The whole envelope goes out in one sendmsg with the fd attached.
      Some((fd, kind)) => (
        self.encode(&serde_json::json!({
          "cmd": "NODE_HANDLE", "type": kind, "msg": body
        })),
        Some(fd),
      ),
      None => (self.encode(&body), None),
    };
    self.send(bytes.into(), fd);
  }
}

pub(crate) struct State {
  pub policy: u32,
  /// How queryServer keys are built: as the Node line the primary runs on.
  pub key_rule: KeyRule,
  /// The JS thread reads channels (except under SCHED_RR).
  pub js_reads: bool,
  /// (timeout, grace) in ms once the watchdog is on.
  pub watchdog: Option<(f64, f64)>,
  /// The engine's clock, for heartbeats.
  pub epoch: Instant,
  /// Reloads: new worker id -> the worker it replaces (SCHED_REUSEPORT sockets pass on).
  pub heirs: HashMap<u32, u32>,
  pub workers: HashMap<u32, Slot>,
  pub handles: HashMap<String, Handle>,
  pub sink: Arc<dyn Sink>,
  pub pidfds: PidFds,
  pub lanes: Lanes,
}

impl State {
  pub fn emit(&self, events: Vec<Event>) {
    if !events.is_empty() {
      self.sink.emit(events);
    }
  }

  /// Milliseconds on the engine's clock.
  pub fn now_ms(&self) -> f64 {
    self.epoch.elapsed().as_secs_f64() * 1000.0
  }

  /// Removes a worker from every handle, closing handles nobody holds,
  /// as Node's removeHandlesForWorker does.
  pub fn remove_from_handles(&mut self, id: u32, on_purpose: bool) {
    self.handles.retain(|_, h| !h.remove(id, on_purpose));
  }
}

/// The engine thread's main loop.
pub(crate) async fn run(
  mut commands: mpsc::UnboundedReceiver<Command>,
  sink: Arc<dyn Sink>,
  policy: u32,
  js_reads: bool,
  key_rule: KeyRule,
  pidfds: PidFds,
  lanes: Lanes,
) {
  let state: Shared = Rc::new(RefCell::new(State {
    policy,
    key_rule,
    js_reads: js_reads && policy != crate::sched::SCHED_RR,
    watchdog: None,
    epoch: Instant::now(),
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
        let _ = reply.send(worker::start(&state, &spec));
      }
      Command::Disconnect { id } => cluster::disconnect(&state, id),
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
        let now = st.now_ms();
        for slot in st.workers.values_mut() {
          slot.beat.get_or_insert(Beat::new(now));
        }
        drop(st);
        if first {
          tokio::task::spawn_local(watch(state.clone()));
        }
      }
      Command::Stats(reply) => {
        let st = state.borrow();
        let now = st.now_ms();
        let stats = st
          .workers
          .iter()
          .filter(|(_, s)| !s.exited)
          .map(|(&id, s)| WorkerStats {
            id,
            dispatched: s.dispatched,
            in_flight: s.newconns.len() as u32,
            heartbeat_age_ms: s.beat.map(|b| now - b.last_ms),
          })
          .collect();
        let _ = reply.send(stats);
      }
      Command::CloseChannel { id } => {
        if let Some(slot) = state.borrow().workers.get(&id) {
          slot.channel.shutdown();
        }
      }
    }
  }
}

/// The watchdog loop: checks every worker's heartbeat a few times per timeout.
async fn watch(state: Shared) {
  let mut buf = vec![0u8; 64 * 1024];
  loop {
    let (timeout, grace) = match state.borrow().watchdog {
      Some(w) => w,
      None => return,
    };
    let tick = (timeout / 4.0).clamp(10.0, 250.0);
    tokio::time::sleep(Duration::from_secs_f64(tick / 1000.0)).await;
    if drain_quiet(&state, timeout / 2.0, &mut buf) {
      // Let the reads reach the heartbeats before judging anyone.
      tokio::task::yield_now().await;
    }
    let mut st = state.borrow_mut();
    let now = st.now_ms();
    let mut events = Vec::new();
    let mut signals = Vec::new();
    for (&id, slot) in st.workers.iter_mut() {
      let Some(beat) = slot.beat.as_mut() else {
        continue;
      };
      if slot.exited {
        continue;
      }
      match beat.check(now, timeout, grace) {
        Verdict::Fine => {}
        Verdict::Abort => {
          signals.push((id, nix::libc::SIGABRT));
          events.push(Event::Unresponsive { id });
        }
        Verdict::Kill => signals.push((id, nix::libc::SIGKILL)),
      }
    }
    for (id, sig) in signals {
      // Already gone: it died meanwhile, which is what we wanted.
      let _ = super::signal_worker(&st.pidfds, id, sig);
    }
    st.emit(events);
  }
}

/// Channels the JS thread reads, whose worker has not been heard for
/// `quiet_ms`: the engine reads them itself, in case JS is the one that is
/// stuck (a long synchronous job in the primary must not get healthy
/// workers killed). Not while JS is behind on events: then a flood is
/// left in the worker's socket, as the engine's own readers leave it.
/// True when it read any.
fn drain_quiet(state: &Shared, quiet_ms: f64, buf: &mut [u8]) -> bool {
  let st = state.borrow();
  if st
    .sink
    .pressure()
    .is_some_and(|p| p.in_flight() >= super::pressure::HIGH_WATER)
  {
    return false;
  }
  let now = st.now_ms();
  let mut read = false;
  for slot in st.workers.values() {
    let (Some(side), Some(beat)) = (&slot.reader, &slot.beat) else {
      continue;
    };
    if slot.connected && now - beat.last_ms > quiet_ms {
      side.drain(buf, 16);
      read = true;
    }
  }
  read
}
