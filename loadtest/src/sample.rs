//! Cheap random numbers for the generator: a wyrand generator and a Zipf
//! sampler (rejection-inversion, Hörmann and Derflinger 1996, as in the
//! `rand_distr` crate). A few nanoseconds per draw, so the generator is
//! never what limits a run.

/// wyrand: 64-bit state, passes BigCrush, one multiply per number.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x2545_f491_4f6c_dd1d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let product = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((product >> 64) as u64) ^ (product as u64)
    }

    /// A number in `0..n` (n > 0); the bias of the multiply-shift is below
    /// n / 2^64, far under anything a load test can see.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A number in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Zipf distribution over ranks `1..=n` with exponent `s`: rank k has
/// probability proportional to 1 / k^s.
#[derive(Clone, Debug)]
pub struct Zipf {
    n: f64,
    s: f64,
    t: f64,
    q: f64,
}

impl Zipf {
    /// `n >= 1`, `s > 0` (checked by the options).
    pub fn new(n: u64, s: f64) -> Zipf {
        let n = n.max(1) as f64;
        let q = if s == 1.0 { 0.0 } else { 1.0 / (1.0 - s) };
        let t = if s == 1.0 {
            1.0 + n.ln()
        } else {
            (n.powf(1.0 - s) - s) * q
        };
        Zipf { n, s, t, q }
    }

    fn inverse_cdf(&self, p: f64) -> f64 {
        let pt = p * self.t;
        if pt <= 1.0 {
            pt
        } else if self.s == 1.0 {
            (pt - 1.0).exp()
        } else {
            (pt * (1.0 - self.s) + self.s).powf(self.q)
        }
    }

    /// A rank in `0..n` (0 is the most popular). The rejection loop accepts
    /// with probability above 1/2 each round; it is capped in rounds, and the
    /// last candidate is taken then (a bias too small to measure).
    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let mut x = 1.0;
        for _ in 0..64 {
            let inverse_b = self.inverse_cdf(rng.unit());
            x = (inverse_b + 1.0).floor();
            let ratio = if self.s == 1.0 {
                // x^-1 * inverse_b^1, without powf.
                if x > 1.0 {
                    inverse_b / x
                } else {
                    1.0
                }
            } else if x > 1.0 {
                x.powf(-self.s) * inverse_b.powf(self.s)
            } else {
                1.0
            };
            if rng.unit() < ratio {
                break;
            }
        }
        (x.clamp(1.0, self.n) as u64) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_stays_in_range_and_spreads() {
        let mut rng = Rng::new(7);
        let mut seen = [0u32; 10];
        for _ in 0..100_000 {
            let value = rng.below(10);
            seen[value as usize] += 1;
        }
        for count in seen {
            assert!((9_000..11_000).contains(&count), "{seen:?}");
        }
        for _ in 0..1_000 {
            let unit = rng.unit();
            assert!((0.0..1.0).contains(&unit));
        }
    }

    #[test]
    fn zipf_follows_one_over_rank() {
        for s in [1.0, 0.8, 1.3] {
            let n = 1_000u64;
            let zipf = Zipf::new(n, s);
            let mut rng = Rng::new(42);
            let mut counts = vec![0u64; n as usize];
            let draws = 2_000_000;
            for _ in 0..draws {
                let rank = zipf.sample(&mut rng);
                assert!(rank < n);
                counts[rank as usize] += 1;
            }
            let harmonic: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
            for rank in [1u64, 2, 10] {
                let expected = draws as f64 * (rank as f64).powf(-s) / harmonic;
                let got = counts[(rank - 1) as usize] as f64;
                assert!(
                    (got - expected).abs() < expected * 0.05,
                    "s {s} rank {rank}: {got} vs {expected}"
                );
            }
        }
    }
}
