//! The webhook retry schedule: when to try a failed delivery again.
//!
//! Pure: the caller passes the number of the attempt that failed and a random
//! `u32` for the jitter, and gets back how long to wait. Attempt 1 is made
//! at once; after each failure the next attempt waits:
//!
//! | failed attempt | next attempt | nominal delay | time since attempt 1 |
//! | -------------- | ------------ | ------------- | -------------------- |
//! | —              | 1            | immediately   | 00:00:00             |
//! | 1              | 2            | 5 seconds     | 00:00:05             |
//! | 2              | 3            | 5 minutes     | 00:05:05             |
//! | 3              | 4            | 30 minutes    | 00:35:05             |
//! | 4              | 5            | 2 hours       | 02:35:05             |
//! | 5              | 6            | 5 hours       | 07:35:05             |
//! | 6              | 7            | 10 hours      | 17:35:05             |
//! | 7              | 8            | 14 hours      | 31:35:05             |
//! | 8              | 9            | 20 hours      | 51:35:05             |
//! | 9              | 10           | 20 hours      | 71:35:05 (≈ 2.98 d)  |
//! | 10             | none         | —             | the delivery failed  |
//!
//! It follows the Standard Webhooks example schedule, except that the last
//! step is 20 h rather than 24 h, so the whole run stays within about three
//! days.
//!
//! Each delay is moved by up to ±[`JITTER_PERMILLE`]‰ (±5 %), so endpoints
//! that failed together (an outage) do not all get retried in the same
//! second. Why 5 % and not 10 %: with ±10 % on every step the whole run
//! could shrink to 2.68 days or grow to 3.28; ±5 % keeps it between 2.83
//! and 3.13 days, whatever the random inputs.

use std::time::Duration;

/// Attempts made in all, the first included.
pub const MAX_ATTEMPTS: u32 = 10;

/// Largest jitter, in thousandths of the nominal delay, either way.
pub const JITTER_PERMILLE: u64 = 50;

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

/// Nominal delay after failed attempt `i + 1`, before attempt `i + 2`.
pub const NOMINAL_DELAYS: [Duration; (MAX_ATTEMPTS - 1) as usize] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(5 * HOUR),
    Duration::from_secs(10 * HOUR),
    Duration::from_secs(14 * HOUR),
    Duration::from_secs(20 * HOUR),
    Duration::from_secs(20 * HOUR),
];

/// Time from attempt 1 to attempt [`MAX_ATTEMPTS`] without jitter:
/// 71 h 35 min 5 s.
pub const NOMINAL_TOTAL: Duration = Duration::from_secs(71 * HOUR + 35 * MINUTE + 5);

/// The delay without jitter after attempt `failed_attempt` failed.
///
/// `0` (nothing tried yet) gives zero, since attempt 1 is immediate;
/// `1..=9` give the table above; [`MAX_ATTEMPTS`] and more give `None`:
/// no attempt is left.
pub fn nominal_delay_after(failed_attempt: u32) -> Option<Duration> {
    match failed_attempt {
        0 => Some(Duration::ZERO),
        n => NOMINAL_DELAYS.get(usize::try_from(n - 1).ok()?).copied(),
    }
}

/// The delay to wait after attempt `failed_attempt` failed, with jitter, or
/// `None` when all [`MAX_ATTEMPTS`] attempts have been made.
///
/// `jitter` is a uniformly random `u32` from the caller; it maps linearly
/// onto −5 % (`0`) … +5 % (`u32::MAX`) of the nominal delay, at millisecond
/// resolution, so the same inputs always give the same delay. The result
/// is never negative (at least 95 % of the nominal delay). `failed_attempt
/// == 0` gives zero: attempt 1 is immediate and not jittered.
pub fn delay_after(failed_attempt: u32, jitter: u32) -> Option<Duration> {
    let nominal = nominal_delay_after(failed_attempt)?;
    // Delays are whole seconds of at most 20 h, so milliseconds fit a u64
    // and the products below fit an i128 with room to spare.
    let nominal_ms = i128::try_from(nominal.as_millis()).ok()?;
    let max = i128::from(u32::MAX);
    // In [-max, +max]: the signed position of `jitter` in its range.
    let position = 2 * i128::from(jitter) - max;
    let offset_ms = nominal_ms * i128::from(JITTER_PERMILLE) * position / (1000 * max);
    let millis = u64::try_from(nominal_ms + offset_ms).ok()?;
    Some(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DAY: f64 = 86_400.0;

    #[test]
    fn nominal_schedule() {
        assert_eq!(nominal_delay_after(0), Some(Duration::ZERO));
        assert_eq!(nominal_delay_after(1), Some(Duration::from_secs(5)));
        assert_eq!(nominal_delay_after(2), Some(Duration::from_secs(300)));
        assert_eq!(nominal_delay_after(9), Some(Duration::from_secs(20 * HOUR)));
        assert_eq!(nominal_delay_after(10), None);
        assert_eq!(nominal_delay_after(u32::MAX), None);
        // Non-decreasing: a later retry never comes sooner.
        assert!(NOMINAL_DELAYS.windows(2).all(|w| w[0] <= w[1]));
        let total: Duration = NOMINAL_DELAYS.iter().sum();
        assert_eq!(total, NOMINAL_TOTAL);
        assert!((71.5..71.7).contains(&(total.as_secs_f64() / 3600.0)));
        // Attempts 1..=10: nine delays between them.
        assert_eq!(NOMINAL_DELAYS.len() as u32 + 1, MAX_ATTEMPTS);
    }

    #[test]
    fn jitter_extremes() {
        assert_eq!(delay_after(1, 0), Some(Duration::from_millis(4750)));
        assert_eq!(delay_after(1, u32::MAX), Some(Duration::from_millis(5250)));
        assert_eq!(delay_after(9, 0), Some(Duration::from_secs(19 * HOUR)));
        assert_eq!(
            delay_after(9, u32::MAX),
            Some(Duration::from_secs(21 * HOUR))
        );
        // The middle of the range is within a millisecond of nominal.
        let mid = delay_after(3, u32::MAX / 2).unwrap();
        assert!(mid.abs_diff(Duration::from_secs(30 * MINUTE)) <= Duration::from_millis(1));
        assert_eq!(delay_after(0, u32::MAX), Some(Duration::ZERO));
        assert_eq!(delay_after(10, 0), None);
        assert_eq!(delay_after(11, u32::MAX), None);
    }

    proptest! {
        #[test]
        fn each_delay_is_within_five_percent(attempt in 1u32..MAX_ATTEMPTS, jitter: u32) {
            let nominal = nominal_delay_after(attempt).unwrap().as_millis();
            let delay = delay_after(attempt, jitter).unwrap().as_millis();
            prop_assert!(delay * 1000 >= nominal * 950, "{delay} < 95% of {nominal}");
            prop_assert!(delay * 1000 <= nominal * 1050, "{delay} > 105% of {nominal}");
            // The 5 s step stays within a second of 5 s.
            if attempt == 1 {
                prop_assert!((4000..=6000).contains(&delay));
            }
        }

        #[test]
        fn no_attempt_after_the_last(attempt in MAX_ATTEMPTS.., jitter: u32) {
            prop_assert_eq!(delay_after(attempt, jitter), None);
        }

        #[test]
        fn whole_run_takes_about_three_days(jitters in any::<[u32; 9]>()) {
            let total: Duration = (1..MAX_ATTEMPTS)
                .zip(jitters)
                .map(|(attempt, jitter)| delay_after(attempt, jitter).unwrap())
                .sum();
            let days = total.as_secs_f64() / DAY;
            prop_assert!((2.8..=3.2).contains(&days), "{days} days");
        }

        #[test]
        fn jitter_is_monotone_in_its_input(attempt in 1u32..MAX_ATTEMPTS, a: u32, b: u32) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(delay_after(attempt, lo) <= delay_after(attempt, hi));
        }
    }

    #[test]
    fn extreme_totals_stay_within_bounds() {
        for jitter in [0, u32::MAX] {
            let total: Duration = (1..MAX_ATTEMPTS)
                .map(|a| delay_after(a, jitter).unwrap())
                .sum();
            let days = total.as_secs_f64() / DAY;
            assert!((2.8..=3.2).contains(&days), "{days}");
        }
    }
}
