//! Key generators: which key the next operation touches.
//!
//! Every generator maps a seeded random source to a key index in
//! `0..keys`; [`key_name`] turns the index into the key string. The same
//! seed gives the same sequence of indexes.
//!
//! - [`LocalInTime`] (default, `--key-dist local`): the assignment asks for
//!   keys whose reads and writes "cluster close together in time". A window
//!   of `hot` consecutive keys starts at key 0 and moves forward by one key
//!   every `step` operations (wrapping at the end of the key space). With
//!   probability `hot_fraction` an operation picks a key uniformly inside the
//!   window, otherwise uniformly in the whole key space. A key therefore
//!   lives in the window for `hot × step` operations and receives about
//!   `step` of them (reads and writes mixed by `--write-ratio`), then goes
//!   cold: writes are followed shortly by reads of the same key, which is
//!   where replication lag shows as stale reads. With the defaults (32 hot
//!   keys, step 8) a key is hot for 256 operations, i.e. 12.8 s at 20 req/s.
//! - [`Uniform`]: every key equally likely; with a large key space most reads
//!   find keys written long ago or never.
//! - [`Zipfian`]: YCSB's `ZipfianGenerator` (Gray et al., "Quickly
//!   generating billion-record synthetic databases", SIGMOD 1994): key `i`
//!   has probability proportional to `1 / (i+1)^theta`, key 0 the hottest.
//!   The constant `zeta(n)` is computed once, in O(n), at construction.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// A source of key indexes.
pub trait KeyGenerator: Send {
    /// The next key index, in `0..keys`.
    fn next_key(&mut self, rng: &mut ChaCha8Rng) -> u64;
}

/// The key string of index `i`: `PREFIX-00000042`.
pub fn key_name(prefix: &str, i: u64) -> String {
    format!("{prefix}-{i:08}")
}

/// Every key equally likely.
#[derive(Debug, Clone)]
pub struct Uniform {
    keys: u64,
}

impl Uniform {
    /// Uniform over `0..keys` (`keys` ≥ 1).
    pub fn new(keys: u64) -> Self {
        Self { keys: keys.max(1) }
    }
}

impl KeyGenerator for Uniform {
    fn next_key(&mut self, rng: &mut ChaCha8Rng) -> u64 {
        rng.random_range(0..self.keys)
    }
}

/// A window of hot keys moving over the key space (see the module docs).
#[derive(Debug, Clone)]
pub struct LocalInTime {
    keys: u64,
    hot: u64,
    step: u64,
    hot_fraction: f64,
    ops: u64,
}

impl LocalInTime {
    /// A window of `hot` keys that moves by one key every `step` operations;
    /// `hot_fraction` of the operations fall inside it. Zero sizes count as 1;
    /// the window is at most the key space.
    pub fn new(keys: u64, hot: u64, step: u64, hot_fraction: f64) -> Self {
        let keys = keys.max(1);
        Self {
            keys,
            hot: hot.clamp(1, keys),
            step: step.max(1),
            hot_fraction: hot_fraction.clamp(0.0, 1.0),
            ops: 0,
        }
    }

    /// The first key of the window after `ops` operations.
    pub fn window_start(&self, ops: u64) -> u64 {
        (ops / self.step) % self.keys
    }
}

impl KeyGenerator for LocalInTime {
    fn next_key(&mut self, rng: &mut ChaCha8Rng) -> u64 {
        let start = self.window_start(self.ops);
        self.ops += 1;
        if rng.random_bool(self.hot_fraction) {
            (start + rng.random_range(0..self.hot)) % self.keys
        } else {
            rng.random_range(0..self.keys)
        }
    }
}

/// Zipf-distributed key popularity, key 0 the hottest (YCSB's algorithm).
#[derive(Debug, Clone)]
pub struct Zipfian {
    keys: u64,
    theta: f64,
    alpha: f64,
    zetan: f64,
    eta: f64,
}

impl Zipfian {
    /// Zipfian over `0..keys` with skew `theta`.
    ///
    /// # Errors
    /// When `theta` is not strictly between 0 and 1.
    pub fn new(keys: u64, theta: f64) -> Result<Self, String> {
        if !(theta > 0.0 && theta < 1.0) {
            return Err(format!(
                "zipf theta must be strictly between 0 and 1, got {theta}"
            ));
        }
        let keys = keys.max(1);
        let zetan = zeta(keys, theta);
        let zeta2 = zeta(2.min(keys), theta);
        let eta = (1.0 - (2.0 / keys as f64).powf(1.0 - theta)) / (1.0 - zeta2 / zetan);
        Ok(Self {
            keys,
            theta,
            alpha: 1.0 / (1.0 - theta),
            zetan,
            eta,
        })
    }

    /// The probability of key 0, `1 / zeta(n)`.
    pub fn p_hottest(&self) -> f64 {
        1.0 / self.zetan
    }
}

/// `sum_{i=1..=n} 1 / i^theta`.
fn zeta(n: u64, theta: f64) -> f64 {
    (1..=n).map(|i| 1.0 / (i as f64).powf(theta)).sum()
}

impl KeyGenerator for Zipfian {
    fn next_key(&mut self, rng: &mut ChaCha8Rng) -> u64 {
        let u: f64 = rng.random();
        let uz = u * self.zetan;
        if uz < 1.0 {
            return 0;
        }
        if uz < 1.0 + 0.5f64.powf(self.theta) {
            return 1.min(self.keys - 1);
        }
        let k = (self.keys as f64 * (self.eta * u - self.eta + 1.0).powf(self.alpha)) as u64;
        k.min(self.keys - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn draw(g: &mut dyn KeyGenerator, seed: u64, n: usize) -> Vec<u64> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| g.next_key(&mut rng)).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_keys() {
        let a = draw(&mut LocalInTime::new(1000, 10, 4, 0.9), 5, 500);
        let b = draw(&mut LocalInTime::new(1000, 10, 4, 0.9), 5, 500);
        let c = draw(&mut LocalInTime::new(1000, 10, 4, 0.9), 6, 500);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(
            draw(&mut Zipfian::new(100, 0.99).unwrap(), 3, 50),
            draw(&mut Zipfian::new(100, 0.99).unwrap(), 3, 50)
        );
    }

    #[test]
    fn local_in_time_keys_stay_in_a_window_that_moves_forward() {
        // hot_fraction 1: every key lies in [start, start + hot).
        let mut g = LocalInTime::new(1000, 10, 4, 1.0);
        let keys = draw(&mut g, 1, 400);
        for (op, k) in keys.iter().enumerate() {
            let start = (op as u64) / 4;
            assert!(
                (start..start + 10).contains(k),
                "op {op}: key {k} outside window at {start}"
            );
        }
        // The window wraps around the key space.
        let g = LocalInTime::new(100, 10, 1, 1.0);
        assert_eq!(g.window_start(250), 50);
    }

    #[test]
    fn local_in_time_cold_fraction_spreads_over_the_key_space() {
        let mut g = LocalInTime::new(100_000, 10, 1_000_000, 0.5);
        let keys = draw(&mut g, 2, 4000);
        let cold = keys.iter().filter(|k| **k >= 10).count();
        // About half the operations are cold; allow a wide margin.
        assert!((1700..2300).contains(&cold), "cold {cold}");
    }

    #[test]
    fn uniform_covers_the_key_space_evenly() {
        let keys = draw(&mut Uniform::new(10), 3, 10_000);
        let mut counts = [0u32; 10];
        keys.iter().for_each(|k| counts[*k as usize] += 1);
        assert!(counts.iter().all(|c| (850..1150).contains(c)), "{counts:?}");
    }

    #[test]
    fn zipfian_hottest_key_has_probability_one_over_zeta() {
        let mut g = Zipfian::new(1000, 0.99).unwrap();
        let expected = g.p_hottest();
        let keys = draw(&mut g, 4, 50_000);
        assert!(keys.iter().all(|k| *k < 1000));
        let share = keys.iter().filter(|k| **k == 0).count() as f64 / keys.len() as f64;
        assert!(
            (share - expected).abs() < 0.01,
            "share {share}, expected {expected}"
        );
        // Popularity falls with rank.
        let top10 = keys.iter().filter(|k| **k < 10).count();
        let next10 = keys.iter().filter(|k| (10..20).contains(*k)).count();
        assert!(top10 > 3 * next10, "{top10} vs {next10}");
        assert!(Zipfian::new(10, 1.0).is_err());
    }

    #[test]
    fn key_names_sort_like_their_indexes() {
        assert_eq!(key_name("lt", 42), "lt-00000042");
        assert!(key_name("lt", 9) < key_name("lt", 10));
    }
}
