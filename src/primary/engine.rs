//! The engine thread's main loop: the commands JS sends, and the engine's
//! side of the hung-worker watchdog (`supervise::watchdog` runs the loop).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::{mpsc as std_mpsc, Arc};

use tokio::sync::mpsc;

use super::event::{Event, Sink, Spawned, WorkerStats};
use super::reader::now_ms;
use super::registry::{signal_worker, Lanes, PidFds};
use super::spawn::SpawnSpec;
use super::state::{Shared, State};
use super::{protocol, tasks};
use crate::error::Result;
use crate::sched::Placement;
use crate::supervise::watchdog::{self, Beat, Verdict, Watched};

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
        let _ = reply.send(tasks::start(&state, &spec));
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
      .is_some_and(|p| p.in_flight() >= super::pressure::HIGH_WATER)
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
