//! Sticky placement (`setupPrimary({ sticky: 'ip' })`): the client-address
//! hash has `BUCKETS` buckets, and each bucket has a home slot — a
//! SO_REUSEPORT socket of the pool, or a round-robin worker slot. A worker
//! that replaces another takes its slot, so its clients stay together. A
//! new slot takes an even share of buckets from the slots holding the most,
//! so only the clients of those buckets move; a slot that cannot take
//! connections for now (its worker is gone, or stuck) lends its buckets to
//! the healthy slots until it can again.

pub use super::steer::{bucket, BUCKETS};

/// Which slot each bucket belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
  home: [u32; BUCKETS],
  slots: usize,
}

impl Default for Buckets {
  /// One slot holding every bucket.
  fn default() -> Self {
    Buckets {
      home: [0; BUCKETS],
      slots: 1,
    }
  }
}

impl Buckets {
  /// Makes room for `slots` slots: each new one takes `BUCKETS / n` buckets,
  /// one at a time from whichever slot holds the most.
  pub fn grow(&mut self, slots: usize) {
    while self.slots < slots {
      let new = self.slots as u32;
      self.slots += 1;
      for _ in 0..BUCKETS / self.slots {
        let mut counts = vec![0usize; self.slots];
        for &s in &self.home {
          counts[s as usize] += 1;
        }
        let richest = (0..self.slots).max_by_key(|&s| (counts[s], s)).unwrap_or(0) as u32;
        if let Some(b) = self.home.iter().rposition(|&s| s == richest) {
          self.home[b] = new;
        }
      }
    }
  }

  /// The slot of every bucket now: its home, or while its home is not
  /// `healthy`, a healthy slot (the same one each time for that bucket).
  pub fn table(&self, healthy: &[bool]) -> [u32; BUCKETS] {
    let up: Vec<u32> = (0..healthy.len() as u32)
      .filter(|&s| healthy[s as usize])
      .collect();
    let mut table = self.home;
    for (b, slot) in table.iter_mut().enumerate() {
      let ok = healthy.get(*slot as usize).copied().unwrap_or(false);
      if !ok && !up.is_empty() {
        *slot = up[b % up.len()];
      }
    }
    table
  }

  /// The home slot of bucket `b`.
  pub fn home(&self, b: usize) -> u32 {
    self.home[b % BUCKETS]
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn counts(b: &Buckets, slots: usize) -> Vec<usize> {
    let mut c = vec![0; slots];
    for i in 0..BUCKETS {
      c[b.home(i) as usize] += 1;
    }
    c
  }

  #[test]
  fn growing_shares_evenly_and_moves_only_what_the_new_slot_takes() {
    let mut b = Buckets::default();
    b.grow(2);
    assert_eq!(counts(&b, 2), vec![32, 32]);
    let before = b.clone();
    b.grow(3);
    let c = counts(&b, 3);
    assert_eq!(c.iter().sum::<usize>(), BUCKETS);
    assert!(c.iter().all(|&n| (21..=22).contains(&n)), "{c:?}");
    // Every bucket that moved went to the new slot.
    for i in 0..BUCKETS {
      if b.home(i) != before.home(i) {
        assert_eq!(b.home(i), 2);
      }
    }
    b.grow(8);
    assert!(counts(&b, 8).iter().all(|&n| n == 8), "{:?}", counts(&b, 8));
  }

  #[test]
  fn an_unhealthy_slot_lends_its_buckets_and_gets_them_back() {
    let mut b = Buckets::default();
    b.grow(3);
    let all = b.table(&[true, true, true]);
    let without_1 = b.table(&[true, false, true]);
    for i in 0..BUCKETS {
      if all[i] == 1 {
        assert_ne!(without_1[i], 1, "bucket {i} went elsewhere");
      } else {
        assert_eq!(without_1[i], all[i], "bucket {i} stayed");
      }
    }
    // Lent evenly to the healthy slots.
    let lent: Vec<u32> = (0..BUCKETS)
      .filter(|&i| all[i] == 1)
      .map(|i| without_1[i])
      .collect();
    assert!(lent.contains(&0) && lent.contains(&2), "{lent:?}");
    assert_eq!(b.table(&[true, true, true]), all);
    // Nobody healthy: the homes stay.
    assert_eq!(b.table(&[false, false, false]), all);
  }
}
