//! Exponentially weighted baselines: an entity's requests per hour and a
//! customer's payment amounts, each as a mean and a variance.
//!
//! `f64` is used here for statistics only, never for money: amounts are
//! converted to `f64` to be compared with their own history, and the sums
//! that limits check stay exact `u128`s (see `windows`). Only `+ - × ÷` and
//! `sqrt` are used: IEEE 754 rounds each of them exactly, and Rust never
//! fuses them, so an auditor on another machine recomputes the same bits
//! (`ln`, `exp` and `powf` come from the platform's libm and may differ).

/// Weight of the latest hour in the request-rate baseline.
pub const RATE_ALPHA: f64 = 0.05;
/// Completed hours folded into a rate baseline before its z-score is used.
pub const MIN_BASELINE_HOURS: u32 = 24;
/// Smallest standard deviation of a rate baseline, requests per hour: a
/// perfectly regular entity must not turn one extra request into a spike.
pub const RATE_STD_FLOOR: f64 = 1.0;
/// Idle hours folded at most when an entity comes back (after a week the
/// baseline has decayed to almost nothing anyway; this bounds the work).
const MAX_IDLE_FOLD: u32 = 168;

/// Weight of the latest amount in a customer's amount baseline.
pub const AMOUNT_ALPHA: f64 = 0.1;
/// Amounts a customer must have paid (in one asset) before amount scores are used.
pub const MIN_AMOUNT_HISTORY: u32 = 5;

/// One step of an exponentially weighted mean and variance (West's update).
fn ewma(mean: f64, var: f64, x: f64, alpha: f64) -> (f64, f64) {
    let diff = x - mean;
    let incr = alpha * diff;
    (mean + incr, (1.0 - alpha) * (var + diff * incr))
}

/// Requests per hour of one entity: the current hour's count and a baseline
/// of the completed hours.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct RateBaseline {
    mean: f64,
    var: f64,
    /// Hour index (time / 3600) of `in_hour`.
    hour: u32,
    /// Requests in `hour` so far.
    in_hour: u32,
    /// Completed hours folded into the baseline, saturated.
    folded: u32,
}

impl RateBaseline {
    pub(crate) fn new(hour: u32) -> RateBaseline {
        RateBaseline {
            mean: 0.0,
            var: 0.0,
            hour,
            in_hour: 0,
            folded: 0,
        }
    }

    fn fold(&mut self, x: f64) {
        if self.folded == 0 {
            // The first hour starts the baseline rather than being averaged
            // with a made-up zero.
            self.mean = x;
            self.var = 0.0;
        } else {
            (self.mean, self.var) = ewma(self.mean, self.var, x, RATE_ALPHA);
        }
        self.folded = self.folded.saturating_add(1);
    }

    /// The baseline as it will be at `hour` (completed hours folded in).
    fn advanced(mut self, hour: u32) -> RateBaseline {
        if hour <= self.hour {
            return self;
        }
        self.fold(f64::from(self.in_hour));
        let idle = (hour - self.hour - 1).min(MAX_IDLE_FOLD);
        for _ in 0..idle {
            self.fold(0.0);
        }
        self.hour = hour;
        self.in_hour = 0;
        self
    }

    /// Counts one request in `hour`.
    pub(crate) fn record(&mut self, hour: u32) {
        *self = self.advanced(hour);
        self.in_hour = self.in_hour.saturating_add(1);
    }

    /// z-score of this hour's count including one more request, against the
    /// baseline; 0 until [`MIN_BASELINE_HOURS`] hours were folded.
    pub(crate) fn z(&self, hour: u32) -> f64 {
        let b = self.advanced(hour);
        if b.folded < MIN_BASELINE_HOURS {
            return 0.0;
        }
        let current = f64::from(b.in_hour) + 1.0;
        (current - b.mean) / b.var.sqrt().max(RATE_STD_FLOOR)
    }
}

/// A customer's amounts in one asset.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct AmountStats {
    mean: f64,
    var: f64,
    n: u32,
}

impl AmountStats {
    pub(crate) fn record(&mut self, amount: u128) {
        // `as` rounds to the nearest f64: exact enough for a statistic.
        let x = amount as f64;
        if self.n == 0 {
            self.mean = x;
            self.var = 0.0;
        } else {
            (self.mean, self.var) = ewma(self.mean, self.var, x, AMOUNT_ALPHA);
        }
        self.n = self.n.saturating_add(1);
    }

    /// Amounts recorded.
    pub(crate) fn count(&self) -> u32 {
        self.n
    }

    /// (z-score, ratio to the mean) of `amount`; both 0 until
    /// [`MIN_AMOUNT_HISTORY`] amounts were recorded. The deviation is floored
    /// at a tenth of the mean so a customer who always pays the same amount
    /// is not flagged for paying 1 % more.
    pub(crate) fn score(&self, amount: u128) -> (f64, f64) {
        if self.n < MIN_AMOUNT_HISTORY || self.mean <= 0.0 {
            return (0.0, 0.0);
        }
        let x = amount as f64;
        let sd = self.var.sqrt().max(self.mean / 10.0).max(1.0);
        ((x - self.mean) / sd, x / self.mean)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_spike_after_a_stable_baseline() {
        let mut b = RateBaseline::new(0);
        for hour in 0..48u32 {
            for _ in 0..3 {
                b.record(hour);
            }
        }
        // A fourth request in the last hour is normal ...
        assert!(b.z(47) < 2.0, "{}", b.z(47));
        // ... thirty in the next hour are not.
        for _ in 0..29 {
            b.record(48);
        }
        assert!(b.z(48) > 10.0, "{}", b.z(48));
    }

    #[test]
    fn no_rate_score_without_enough_baseline() {
        let mut b = RateBaseline::new(0);
        for _ in 0..100 {
            b.record(0);
        }
        assert_eq!(b.z(0), 0.0);
        assert_eq!(b.z(MIN_BASELINE_HOURS - 1), 0.0);
    }

    #[test]
    fn long_idle_gap_is_bounded_work_and_decays_the_baseline() {
        let mut b = RateBaseline::new(0);
        for hour in 0..30 {
            for _ in 0..10 {
                b.record(hour);
            }
        }
        let later = b.advanced(u32::MAX);
        assert!(later.mean < 0.01, "{}", later.mean);
    }

    #[test]
    fn amount_far_above_history_scores_high() {
        let mut s = AmountStats::default();
        for a in [100u128, 110, 90, 105, 95, 100] {
            s.record(a);
        }
        let (z, ratio) = s.score(100);
        assert!(z.abs() < 1.0 && (ratio - 1.0).abs() < 0.1, "{z} {ratio}");
        let (z, ratio) = s.score(10_000);
        assert!(z > 50.0 && ratio > 90.0, "{z} {ratio}");
    }

    #[test]
    fn no_amount_score_without_history() {
        let mut s = AmountStats::default();
        for _ in 0..MIN_AMOUNT_HISTORY - 1 {
            s.record(1);
        }
        assert_eq!(s.score(1_000_000), (0.0, 0.0));
    }
}
