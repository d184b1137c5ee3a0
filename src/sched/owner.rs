//! What a listen handle's own tasks (the round-robin accept loop, the
//! stealer) need of the engine that owns the handle: the narrow way back.
//! They share their handle's queue with it; the engine does the sending.

pub(crate) trait Owner: Clone + 'static {
  /// Connections were queued on `key`'s handle: hand them to workers.
  fn pump(&self, key: &str);
  /// `key`'s handle is done (no worker took its sockets in time): drop it.
  fn close(&self, key: &str);
}
