//! Locking shared between the JS thread and the engine thread.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, carrying on past a poisoned lock: the maps and queues behind
/// these mutexes stay consistent at every await-free step, so a panic in
/// another thread loses at most that thread's work, never the primary.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
  m.lock().unwrap_or_else(|p| p.into_inner())
}
