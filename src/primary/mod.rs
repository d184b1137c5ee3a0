//! The primary's engine: one thread that lives as long as the process, running
//! a single-threaded tokio runtime that spawns, reads, writes, accepts and
//! reaps. JS talks to it through [`Engine`]; it talks back through a [`Sink`].
//!
//! The files, each using only those listed before it (the module-graph
//! test checks this list): `process` (a worker's process: spawn, pidfd, the
//! tables shared with the JS thread), `reader` (who reads a channel;
//! heartbeats noted; JS's backlog), `event` (what JS is told, the events of
//! one read), `protocol` (the engine's state, its
//! workers, Node's cluster protocol and handing out connections with
//! `newconn`), `engine` (the handle JS holds, the command loop, each
//! worker's reader, writer and reaper).

mod engine;
mod event;
mod process;
mod protocol;
pub(crate) mod reader;

pub use engine::Engine;
pub(crate) use event::js_events;
pub(crate) use event::{Event, Sink, WorkerStats};

pub(crate) use process::{SpawnSpec, StdioSpec};
