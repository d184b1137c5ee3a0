//! The hung-worker watchdog: each worker's event loop reports a heartbeat on
//! its own (rcluster's worker hook); one silent past the timeout gets
//! SIGABRT, and SIGKILL if it is still there after the grace period. The
//! loop is here; the engine answers it through [`Watched`].

use std::time::Duration;

/// What the watchdog does to one worker at a given moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
  Fine,
  /// Silent too long: send SIGABRT now (once).
  Abort,
  /// Still alive a grace period after SIGABRT: SIGKILL.
  Kill,
}

/// What the watchdog did to one worker.
#[derive(Debug, Clone, Copy, Default)]
pub struct Beat {
  /// When SIGABRT was sent, if it was.
  pub aborted_at: Option<f64>,
}

impl Beat {
  /// Decides from when the worker was last heard, and records an abort or
  /// kill so each is sent once.
  pub fn check(&mut self, last_ms: f64, now_ms: f64, timeout_ms: f64, grace_ms: f64) -> Verdict {
    match self.aborted_at {
      None if now_ms - last_ms > timeout_ms => {
        self.aborted_at = Some(now_ms);
        Verdict::Abort
      }
      Some(at) if at.is_finite() && now_ms - at > grace_ms => {
        self.aborted_at = Some(f64::INFINITY);
        Verdict::Kill
      }
      _ => Verdict::Fine,
    }
  }
}

/// What the watchdog loop needs of the engine.
pub(crate) trait Watched {
  /// (timeout, grace) in ms while the watchdog is on.
  fn deadlines(&self) -> Option<(f64, f64)>;
  /// Reads the channels of workers not heard from for `quiet_ms` itself (the
  /// primary's JS may be what is stuck); true when it read any.
  fn read_quiet(&self, quiet_ms: f64) -> bool;
  /// Each live worker's verdict now ([`Beat::check`]).
  fn judge(&self, timeout_ms: f64, grace_ms: f64) -> Vec<(u32, Verdict)>;
  /// SIGABRT (and `unresponsive`) or SIGKILL, as judged.
  fn act(&self, verdicts: Vec<(u32, Verdict)>);
}

/// Checks every worker's heartbeat a few times per timeout, for as long as
/// the watchdog is on.
pub(crate) async fn run(engine: impl Watched) {
  while let Some((timeout, grace)) = engine.deadlines() {
    let tick = (timeout / 4.0).clamp(10.0, 250.0);
    tokio::time::sleep(Duration::from_secs_f64(tick / 1000.0)).await;
    if engine.read_quiet(timeout / 2.0) {
      // Let the reads reach the heartbeats before judging anyone.
      tokio::task::yield_now().await;
    }
    engine.act(engine.judge(timeout, grace));
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn silent_worker_is_aborted_then_killed_once_each() {
    let mut b = Beat::default();
    assert_eq!(b.check(0.0, 500.0, 1000.0, 200.0), Verdict::Fine);
    assert_eq!(b.check(900.0, 1800.0, 1000.0, 200.0), Verdict::Fine);
    assert_eq!(b.check(900.0, 1901.0, 1000.0, 200.0), Verdict::Abort);
    assert_eq!(b.check(900.0, 2000.0, 1000.0, 200.0), Verdict::Fine);
    assert_eq!(b.check(900.0, 2200.0, 1000.0, 200.0), Verdict::Kill);
    assert_eq!(b.check(900.0, 9000.0, 1000.0, 200.0), Verdict::Fine);
  }
}
