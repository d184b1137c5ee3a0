//! Sticky placement (`setupPrimary({ sticky: 'ip' })`): the client-address
//! hash has `BUCKETS` buckets, and each bucket has a home — an index: of a
//! SO_REUSEPORT socket of the pool, or of a round-robin worker's place. A
//! worker that replaces another takes its home, so its clients stay
//! together. A new home takes an even share of buckets from the homes
//! holding the most, so only the clients of those buckets move; a home that
//! cannot take connections for now (its worker is gone, or stuck) lends its
//! buckets to the healthy homes until it can again ([`Buckets::place`],
//! for the BPF table and the round-robin hand-out alike).

/// Buckets of the client-address hash for sticky placement: each bucket is
/// one socket's, so a client address always reaches the same socket.
pub const BUCKETS: usize = 64;

/// The bucket (0..BUCKETS) of a client address: its IPv4 address, or the
/// four 32-bit words of its IPv6 address xor-folded, times 2^32/phi, top 6
/// bits. The BPF program computes the same on the SYN. An IPv4-mapped
/// address (`::ffff:a.b.c.d`, how a dual-stack socket reports an IPv4
/// client) is its IPv4 address: the SYN the program sees is IPv4.
pub fn bucket(addr: std::net::IpAddr) -> usize {
  let word = match addr.to_canonical() {
    std::net::IpAddr::V4(a) => u32::from(a),
    std::net::IpAddr::V6(a) => {
      let o = a.octets();
      let w = |i: usize| u32::from_be_bytes([o[i], o[i + 1], o[i + 2], o[i + 3]]);
      w(0) ^ w(4) ^ w(8) ^ w(12)
    }
  };
  (word.wrapping_mul(HASH_MUL) >> 26) as usize
}

/// 2^32 / the golden ratio: Fibonacci hashing spreads nearby addresses.
pub(crate) const HASH_MUL: u32 = 0x9E37_79B1;

/// Which home each bucket belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Buckets {
  home: [u32; BUCKETS],
  homes: usize,
}

impl Default for Buckets {
  /// One home holding every bucket.
  fn default() -> Self {
    Buckets {
      home: [0; BUCKETS],
      homes: 1,
    }
  }
}

impl Buckets {
  /// Makes room for `homes` homes: each new one takes `BUCKETS / n` buckets,
  /// one at a time from whichever home holds the most.
  pub fn grow(&mut self, homes: usize) {
    while self.homes < homes {
      let new = self.homes as u32;
      self.homes += 1;
      for _ in 0..BUCKETS / self.homes {
        let mut counts = vec![0usize; self.homes];
        for &s in &self.home {
          counts[s as usize] += 1;
        }
        let richest = (0..self.homes).max_by_key(|&s| (counts[s], s)).unwrap_or(0) as u32;
        if let Some(b) = self.home.iter().rposition(|&s| s == richest) {
          self.home[b] = new;
        }
      }
    }
  }

  /// Where bucket `b` goes now: its home, or while its home is not
  /// `healthy`, a healthy home lent to it (the same one each time for that
  /// bucket); None when no home is healthy.
  pub fn place(&self, b: usize, healthy: &[bool]) -> Option<u32> {
    let home = self.home(b);
    if healthy.get(home as usize).copied().unwrap_or(false) {
      return Some(home);
    }
    let up = healthy.iter().filter(|&&h| h).count();
    if up == 0 {
      return None;
    }
    let nth = b % up;
    (0..healthy.len() as u32)
      .filter(|&h| healthy[h as usize])
      .nth(nth)
  }

  /// [`Self::place`] for every bucket (a bucket no home can take stays home).
  pub fn table(&self, healthy: &[bool]) -> [u32; BUCKETS] {
    std::array::from_fn(|b| self.place(b, healthy).unwrap_or(self.home[b]))
  }

  /// The home of bucket `b`.
  pub fn home(&self, b: usize) -> u32 {
    self.home[b % BUCKETS]
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  fn counts(b: &Buckets, homes: usize) -> Vec<usize> {
    let mut c = vec![0; homes];
    for i in 0..BUCKETS {
      c[b.home(i) as usize] += 1;
    }
    c
  }

  #[test]
  fn growing_shares_evenly_and_moves_only_what_the_new_home_takes() {
    let mut b = Buckets::default();
    b.grow(2);
    assert_eq!(counts(&b, 2), vec![32, 32]);
    let before = b.clone();
    b.grow(3);
    let c = counts(&b, 3);
    assert_eq!(c.iter().sum::<usize>(), BUCKETS);
    assert!(c.iter().all(|&n| (21..=22).contains(&n)), "{c:?}");
    // Every bucket that moved went to the new home.
    for i in 0..BUCKETS {
      if b.home(i) != before.home(i) {
        assert_eq!(b.home(i), 2);
      }
    }
    b.grow(8);
    assert!(counts(&b, 8).iter().all(|&n| n == 8), "{:?}", counts(&b, 8));
  }

  #[test]
  fn an_unhealthy_home_lends_its_buckets_and_gets_them_back() {
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
    // Lent evenly to the healthy homes.
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
