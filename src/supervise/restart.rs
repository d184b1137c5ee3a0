//! When a crashed worker is replaced, after what delay, and when to give up.
//!
//! Quick deaths (uptime under `min_uptime`) grow the delay exponentially along
//! one worker's line of replacements; a worker that lived long enough resets
//! it. More than `max_restarts` restarts inside `window` (over the whole
//! cluster) is a crash loop: restarting stops.

use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
  pub max_restarts: u32,
  pub window_ms: f64,
  pub min_uptime_ms: f64,
  pub backoff_initial_ms: f64,
  pub backoff_max_ms: f64,
  pub backoff_factor: f64,
}

impl Default for Policy {
  fn default() -> Self {
    Policy {
      max_restarts: 10,
      window_ms: 60_000.0,
      min_uptime_ms: 1_000.0,
      backoff_initial_ms: 100.0,
      backoff_max_ms: 15_000.0,
      backoff_factor: 2.0,
    }
  }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
  /// Fork a replacement after `delay_ms`; `streak` goes to the replacement.
  Restart { delay_ms: f64, streak: u32 },
  /// Too many restarts inside the window: stop.
  Limit,
}

/// Restarts seen inside the window, for the whole cluster.
#[derive(Debug, Default)]
pub struct Tracker {
  recent: VecDeque<f64>,
}

impl Tracker {
  /// A worker crashed at `now_ms` after `uptime_ms`; `streak` is how many
  /// quick deaths its line had before it.
  pub fn on_crash(
    &mut self,
    policy: &Policy,
    now_ms: f64,
    uptime_ms: f64,
    streak: u32,
  ) -> Decision {
    while self
      .recent
      .front()
      .is_some_and(|&t| now_ms - t >= policy.window_ms)
    {
      self.recent.pop_front();
    }
    if self.recent.len() >= policy.max_restarts as usize {
      return Decision::Limit;
    }
    self.recent.push_back(now_ms);
    if uptime_ms >= policy.min_uptime_ms {
      return Decision::Restart {
        delay_ms: 0.0,
        streak: 0,
      };
    }
    let streak = streak + 1;
    let delay = policy.backoff_initial_ms * policy.backoff_factor.powi(streak as i32 - 1);
    Decision::Restart {
      delay_ms: delay.min(policy.backoff_max_ms),
      streak,
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_long_lived_worker_restarts_at_once() {
    let p = Policy::default();
    let mut t = Tracker::default();
    assert_eq!(
      t.on_crash(&p, 0.0, 5_000.0, 3),
      Decision::Restart {
        delay_ms: 0.0,
        streak: 0
      }
    );
  }

  #[test]
  fn quick_deaths_back_off_exponentially_up_to_the_max() {
    let p = Policy {
      max_restarts: 100,
      ..Policy::default()
    };
    let mut t = Tracker::default();
    let mut streak = 0;
    let mut delays = Vec::new();
    for i in 0..10 {
      match t.on_crash(&p, i as f64, 10.0, streak) {
        Decision::Restart {
          delay_ms,
          streak: s,
        } => {
          delays.push(delay_ms);
          streak = s;
        }
        Decision::Limit => panic!("no limit expected"),
      }
    }
    assert_eq!(&delays[..5], &[100.0, 200.0, 400.0, 800.0, 1600.0]);
    assert_eq!(delays[9], 15_000.0);
  }

  #[test]
  fn more_than_max_restarts_in_the_window_is_a_crash_loop() {
    let p = Policy {
      max_restarts: 3,
      window_ms: 1_000.0,
      ..Policy::default()
    };
    let mut t = Tracker::default();
    for i in 0..3 {
      assert!(matches!(
        t.on_crash(&p, i as f64 * 100.0, 0.0, 0),
        Decision::Restart { .. }
      ));
    }
    assert_eq!(t.on_crash(&p, 300.0, 0.0, 0), Decision::Limit);
    // Once the window has moved on, restarting is allowed again.
    assert!(matches!(
      t.on_crash(&p, 1_150.0, 0.0, 0),
      Decision::Restart { .. }
    ));
  }
}
