//! The statistics of one bucket of one metric: sample count, sum, minimum, maximum, and a
//! log-bucketed histogram (a DDSketch) that answers percentiles.
//!
//! Error bound: a percentile is answered with a relative error of at most [`ALPHA`] (1 %) of the
//! sample value at that rank (each sample is kept as the index of the geometric bin it falls in,
//! bins growing by a factor of (1 + α) / (1 − α), and a bin is answered by its centre), clamped
//! to the bucket's exact minimum and maximum. Magnitudes below 1e-9 count as zero. Merging two
//! sketches is exact (bin counts add), so roll-ups lose nothing beyond that bound. A bucket that
//! took a `StatisticValues` set has no distribution: percentiles are then unavailable, as on
//! CloudWatch.

use serde::{Deserialize, Serialize};

/// The relative error of a percentile.
pub const ALPHA: f64 = 0.01;
const MIN_MAGNITUDE: f64 = 1e-9;

fn gamma_ln() -> f64 {
    ((1.0 + ALPHA) / (1.0 - ALPHA)).ln()
}

fn index_of(v: f64) -> i32 {
    (v.ln() / gamma_ln()).ceil() as i32
}

fn value_of(i: i32) -> f64 {
    let gamma = (1.0 + ALPHA) / (1.0 - ALPHA);
    2.0 * (i as f64 * gamma_ln()).exp() / (gamma + 1.0)
}

/// Sparse bins: (index, count), sorted by index.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bins(Vec<(i32, f64)>);

impl Bins {
    fn add(&mut self, i: i32, n: f64) {
        match self.0.binary_search_by_key(&i, |&(k, _)| k) {
            Ok(at) => self.0[at].1 += n,
            Err(at) => self.0.insert(at, (i, n)),
        }
    }

    fn merge(&mut self, other: &Bins) {
        if self.0.is_empty() {
            self.0.clone_from(&other.0);
            return;
        }
        for &(i, n) in &other.0 {
            self.add(i, n);
        }
    }

    fn total(&self) -> f64 {
        self.0.iter().map(|&(_, n)| n).sum()
    }
}

/// The distribution of a bucket's samples.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sketch {
    #[serde(default, rename = "p")]
    pos: Bins,
    #[serde(default, rename = "n")]
    neg: Bins,
    #[serde(default, rename = "z")]
    zero: f64,
}

impl Sketch {
    pub fn add(&mut self, v: f64, count: f64) {
        if v.abs() < MIN_MAGNITUDE {
            self.zero += count;
        } else if v > 0.0 {
            self.pos.add(index_of(v), count);
        } else {
            self.neg.add(index_of(-v), count);
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        self.pos.merge(&other.pos);
        self.neg.merge(&other.neg);
        self.zero += other.zero;
    }

    /// The value at rank `q` (0..=1) of the samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.pos.total() + self.neg.total() + self.zero;
        if total <= 0.0 {
            return None;
        }
        // The rank of the wanted sample, 0-based, as the nearest-rank method counts.
        let rank = (q * total).ceil().max(1.0);
        let mut seen = 0.0;
        for &(i, n) in self.neg.0.iter().rev() {
            seen += n;
            if seen >= rank {
                return Some(-value_of(i));
            }
        }
        seen += self.zero;
        if seen >= rank {
            return Some(0.0);
        }
        for &(i, n) in &self.pos.0 {
            seen += n;
            if seen >= rank {
                return Some(value_of(i));
            }
        }
        self.pos.0.last().map(|&(i, _)| value_of(i))
    }
}

/// One bucket's statistics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    #[serde(rename = "c")]
    pub count: f64,
    #[serde(rename = "s")]
    pub sum: f64,
    #[serde(rename = "lo")]
    pub min: f64,
    #[serde(rename = "hi")]
    pub max: f64,
    /// `None` once a statistic set went in (no distribution is known then).
    #[serde(default, rename = "d", skip_serializing_if = "Option::is_none")]
    pub sketch: Option<Sketch>,
}

impl Stats {
    pub fn empty() -> Stats {
        Stats {
            count: 0.0,
            sum: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            sketch: Some(Sketch::default()),
        }
    }

    /// `count` samples of `v`.
    pub fn add_value(&mut self, v: f64, count: f64) {
        self.count += count;
        self.sum += v * count;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        if let Some(s) = &mut self.sketch {
            s.add(v, count);
        }
    }

    /// A statistic set: what many samples came to, without the samples.
    pub fn add_set(&mut self, count: f64, sum: f64, min: f64, max: f64) {
        self.count += count;
        self.sum += sum;
        self.min = self.min.min(min);
        self.max = self.max.max(max);
        self.sketch = None;
    }

    /// The count, sum, minimum and maximum without the distribution: what every statistic but
    /// a percentile reads, copied without allocating.
    pub fn scalars(&self) -> Stats {
        Stats { count: self.count, sum: self.sum, min: self.min, max: self.max, sketch: None }
    }

    pub fn merge(&mut self, other: &Stats) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        match (&mut self.sketch, &other.sketch) {
            (Some(a), Some(b)) => a.merge(b),
            _ => self.sketch = None,
        }
    }

    pub fn average(&self) -> f64 {
        if self.count > 0.0 { self.sum / self.count } else { 0.0 }
    }

    /// A statistic by CloudWatch's name: `Average`, `Sum`, `Minimum`, `Maximum`, `SampleCount`,
    /// or a percentile `pNN(.NN)`. `None` when it cannot be answered (a percentile of a bucket
    /// with statistic sets).
    pub fn stat(&self, stat: &Stat) -> Option<f64> {
        match stat {
            Stat::Average => Some(self.average()),
            Stat::Sum => Some(self.sum),
            Stat::Minimum => Some(self.min),
            Stat::Maximum => Some(self.max),
            Stat::SampleCount => Some(self.count),
            Stat::Percentile(p) => {
                if *p <= 0.0 {
                    return Some(self.min);
                }
                if *p >= 100.0 {
                    return Some(self.max);
                }
                self.sketch.as_ref()?.quantile(p / 100.0).map(|v| v.clamp(self.min, self.max))
            }
        }
    }
}

/// A statistic a query asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Stat {
    Average,
    Sum,
    Minimum,
    Maximum,
    SampleCount,
    Percentile(f64),
}

impl Stat {
    /// Parses CloudWatch's statistic names (case-sensitive, as CloudWatch is), `pNN` and
    /// `pNN.NN` percentiles included.
    pub fn parse(s: &str) -> Option<Stat> {
        Some(match s {
            "Average" => Stat::Average,
            "Sum" => Stat::Sum,
            "Minimum" => Stat::Minimum,
            "Maximum" => Stat::Maximum,
            "SampleCount" => Stat::SampleCount,
            _ => {
                let rest = s.strip_prefix('p')?;
                if rest.is_empty() || rest.starts_with('.') || rest.ends_with('.') {
                    return None;
                }
                let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
                if !int.bytes().all(|b| b.is_ascii_digit())
                    || !frac.bytes().all(|b| b.is_ascii_digit())
                    || frac.len() > 10
                {
                    return None;
                }
                let p: f64 = rest.parse().ok()?;
                if !(0.0..=100.0).contains(&p) {
                    return None;
                }
                Stat::Percentile(p)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_the_error_bound() {
        let mut s = Stats::empty();
        for i in 1..=10_000 {
            s.add_value(i as f64, 1.0);
        }
        for (p, want) in [(50.0, 5000.0), (90.0, 9000.0), (99.0, 9900.0), (99.9, 9990.0)] {
            let got = s.stat(&Stat::Percentile(p)).unwrap();
            assert!((got - want).abs() <= want * ALPHA, "p{p}: {got} vs {want}");
        }
        assert_eq!(s.stat(&Stat::Percentile(100.0)), Some(10_000.0));
        assert_eq!(s.stat(&Stat::Percentile(0.0)), Some(1.0));
        assert_eq!(s.stat(&Stat::Average), Some(5000.5));
    }

    #[test]
    fn merged_sketches_answer_as_one_and_sets_have_no_percentiles() {
        let (mut a, mut b, mut all) = (Stats::empty(), Stats::empty(), Stats::empty());
        for i in 0..1000 {
            let v = (i as f64 - 300.0) * 0.5;
            if i % 2 == 0 {
                a.add_value(v, 1.0)
            } else {
                b.add_value(v, 1.0)
            }
            all.add_value(v, 1.0);
        }
        a.merge(&b);
        assert_eq!(a.stat(&Stat::Percentile(75.0)), all.stat(&Stat::Percentile(75.0)));
        let p10 = a.stat(&Stat::Percentile(10.0)).unwrap();
        assert!((p10 - -100.0).abs() <= 100.0 * ALPHA, "{p10}");
        a.add_set(10.0, 50.0, 1.0, 9.0);
        assert_eq!(a.stat(&Stat::Percentile(75.0)), None);
        assert_eq!(a.count, 1010.0);
    }

    #[test]
    fn statistic_names() {
        assert_eq!(Stat::parse("p99"), Some(Stat::Percentile(99.0)));
        assert_eq!(Stat::parse("p99.9"), Some(Stat::Percentile(99.9)));
        for bad in ["p", "p100.1", "average", "p9x", "p.5", "p5."] {
            assert_eq!(Stat::parse(bad), None, "{bad}");
        }
    }
}
