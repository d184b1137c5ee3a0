//! Backpressure from JS to the channel readers: event batches handed to JS
//! and not yet delivered are counted; past the high-water mark the readers
//! stop reading, so a worker that floods its channel fills its own socket
//! buffer and queue, not the primary's memory.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

/// Undelivered batches (each at most one 64 KiB read) before readers pause.
pub const HIGH_WATER: usize = 256;

#[derive(Default)]
pub struct Pressure {
  in_flight: AtomicUsize,
  drained: Notify,
}

impl Pressure {
  /// A batch was handed to JS.
  pub fn sent(&self) {
    self.in_flight.fetch_add(1, Ordering::AcqRel);
  }

  /// JS took a batch (called on the JS thread).
  pub fn delivered(&self) {
    let before = self.in_flight.fetch_sub(1, Ordering::AcqRel);
    if before == HIGH_WATER {
      self.drained.notify_waiters();
    }
  }

  pub fn in_flight(&self) -> usize {
    self.in_flight.load(Ordering::Acquire)
  }

  /// Returns once JS is below the high-water mark.
  pub async fn admit(&self) {
    loop {
      // Created before the check: notify_waiters() reaches it from then on.
      let drained = self.drained.notified();
      if self.in_flight() < HIGH_WATER {
        return;
      }
      drained.await;
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;
  use std::sync::Arc;

  #[test]
  fn readers_wait_at_the_high_water_mark_and_resume_below_it() {
    let rt = tokio::runtime::Builder::new_current_thread()
      .build()
      .unwrap();
    let p = Arc::new(Pressure::default());
    for _ in 0..HIGH_WATER {
      p.sent();
    }
    rt.block_on(async {
      let waiting = tokio::spawn({
        let p = p.clone();
        async move { p.admit().await }
      });
      tokio::task::yield_now().await;
      assert!(!waiting.is_finished(), "a reader waits while JS is behind");
      // JS delivers from its own thread.
      let js = {
        let p = p.clone();
        std::thread::spawn(move || p.delivered())
      };
      js.join().unwrap();
      waiting.await.unwrap();
      assert_eq!(p.in_flight(), HIGH_WATER - 1);
    });
  }
}
