//! Per-API-key rate limiting with token buckets.
//!
//! Each key has a bucket of [`RateLimit::capacity`] tokens (the burst) that
//! refills at [`RateLimit::refill_per_sec`] tokens per second; a request takes
//! one token or is refused with a [`RetryAfter`] in whole seconds (for the
//! `Retry-After` header). A bucket starts full.
//!
//! This module is pure: the current time is an argument, so the tests drive it
//! with synthetic instants. Tokens are fixed-point integers (milli-tokens), so
//! no float rounding can drift or turn into NaN.
//!
//! - A `capacity` or `refill_per_sec` of 0 means **unlimited**: an operator
//!   switches a merchant's limit off that way (a bucket that never refills
//!   would lock the merchant out for good, which is what revoking the key is
//!   for).
//! - The limit is passed with every check, so a changed limit applies on the
//!   next request; the tokens are clamped to the new capacity.
//! - Memory is bounded: at most [`MAX_TRACKED_KEYS`] buckets. When full, the
//!   buckets that have refilled completely are dropped (a dropped bucket is
//!   re-created full, so nothing is lost); if every bucket is still in use, a
//!   new key is refused with `RetryAfter(1)` rather than growing the map.
//!
//! With whole tokens per second and one token per request, the wait for the
//! next token is at most one second, so `Retry-After` is 1 today; it is still
//! computed from the deficit so that it stays right if costs or rates change.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most buckets kept at once (about 100 bytes each).
pub(crate) const MAX_TRACKED_KEYS: usize = 100_000;

/// Milli-tokens per token: the fixed-point scale.
const MILLI: u64 = 1_000;
/// Nanoseconds per second.
const NANOS_PER_SEC: u128 = 1_000_000_000;
/// Nanoseconds for `rate` tokens per second to add one milli-token, times
/// `rate`: `milli-tokens = nanos * rate / NANOS_PER_MILLI_AT_RATE_1`.
const NANOS_PER_MILLI_AT_RATE_1: u128 = NANOS_PER_SEC / MILLI as u128;

/// A key's limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimit {
    /// Burst: the most requests accepted at once after a pause.
    pub(crate) capacity: u32,
    /// Sustained rate, in requests per second.
    pub(crate) refill_per_sec: u32,
}

impl RateLimit {
    /// A zero in either field switches the limit off.
    fn is_unlimited(self) -> bool {
        self.capacity == 0 || self.refill_per_sec == 0
    }

    /// The capacity in milli-tokens.
    fn capacity_milli(self) -> u64 {
        u64::from(self.capacity) * MILLI
    }
}

/// A refusal: retry after this many whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetryAfter(pub u64);

/// One key's bucket.
#[derive(Debug, Clone, Copy)]
struct State {
    /// Tokens left, in milli-tokens, as of `last`.
    milli_tokens: u64,
    /// The instant up to which refill has been credited.
    last: Instant,
    /// The limit seen at the last check, to tell whether the bucket has
    /// refilled completely when memory runs short.
    limit: RateLimit,
}

impl State {
    /// Credits the refill since `last` under `limit`, clamped to its capacity.
    fn refill(&mut self, limit: RateLimit, now: Instant) {
        let cap = limit.capacity_milli();
        // Instants taken by concurrent requests may reach the lock out of
        // order: an earlier `now` credits nothing and never moves `last` back.
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        let rate = u128::from(limit.refill_per_sec);
        let added = elapsed.saturating_mul(rate) / NANOS_PER_MILLI_AT_RATE_1;
        let tokens = u128::from(self.milli_tokens).saturating_add(added);
        if tokens >= u128::from(cap) {
            self.milli_tokens = cap;
            self.last = self.last.max(now);
        } else {
            // Below capacity `tokens < cap` fits a u64. Only the time actually
            // converted into milli-tokens is consumed: keeping the remainder
            // matters when checks come faster than one milli-token accrues,
            // which would otherwise never refill at all.
            self.milli_tokens = u64::try_from(tokens).unwrap_or(cap);
            let used = added.saturating_mul(NANOS_PER_MILLI_AT_RATE_1) / rate.max(1);
            let used = u64::try_from(used).unwrap_or(u64::MAX);
            self.last = self
                .last
                .checked_add(Duration::from_nanos(used))
                .map_or(now, |t| t.min(now));
        }
    }

    /// Whether the bucket would be full at `now` under its last limit.
    fn is_idle(&self, now: Instant) -> bool {
        let mut probe = *self;
        probe.refill(self.limit, now);
        probe.milli_tokens >= self.limit.capacity_milli()
    }
}

/// Token buckets for every API key, by the key's row id.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<i64, State>>,
    max_keys: usize,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimiter {
    /// An empty limiter bounded by [`MAX_TRACKED_KEYS`].
    pub(crate) fn new() -> Self {
        Self::with_max_keys(MAX_TRACKED_KEYS)
    }

    /// An empty limiter bounded by `max_keys` (small bounds for tests).
    fn with_max_keys(max_keys: usize) -> Self {
        Self {
            buckets: Mutex::new(HashMap::new()),
            max_keys,
        }
    }

    /// The map, even if a thread panicked while holding the lock: every
    /// update leaves a consistent bucket, so a poisoned map is still valid,
    /// and refusing all traffic because of one panic would be worse.
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, State>> {
        self.buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes one token from `key`'s bucket under `limit` at `now`, or says
    /// how long to wait.
    pub(crate) fn check(&self, key: i64, limit: RateLimit, now: Instant) -> Result<(), RetryAfter> {
        let mut buckets = self.lock();
        if limit.is_unlimited() {
            // Nothing to track; forgetting the bucket also means that turning
            // the limit back on starts from a full bucket.
            buckets.remove(&key);
            return Ok(());
        }
        if !buckets.contains_key(&key) && buckets.len() >= self.max_keys {
            buckets.retain(|_, state| !state.is_idle(now));
            if buckets.len() >= self.max_keys {
                return Err(RetryAfter(1));
            }
        }
        let state = buckets.entry(key).or_insert(State {
            milli_tokens: limit.capacity_milli(),
            last: now,
            limit,
        });
        state.refill(limit, now);
        state.limit = limit;
        if state.milli_tokens >= MILLI {
            state.milli_tokens -= MILLI;
            return Ok(());
        }
        // Time for the missing milli-tokens to accrue, rounded up to whole
        // seconds (a client retrying earlier would only be refused again).
        let missing = u128::from(MILLI - state.milli_tokens);
        let rate = u128::from(limit.refill_per_sec);
        let nanos = (missing * NANOS_PER_MILLI_AT_RATE_1).div_ceil(rate);
        let secs = nanos.div_ceil(NANOS_PER_SEC);
        Err(RetryAfter(u64::try_from(secs).unwrap_or(u64::MAX).max(1)))
    }

    /// How many buckets are tracked.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(capacity: u32, refill_per_sec: u32) -> RateLimit {
        RateLimit {
            capacity,
            refill_per_sec,
        }
    }

    /// Checks `n` times at `now` and counts the accepted ones.
    fn accepted(limiter: &RateLimiter, key: i64, l: RateLimit, now: Instant, n: usize) -> usize {
        (0..n)
            .filter(|_| limiter.check(key, l, now).is_ok())
            .count()
    }

    #[test]
    fn burst_then_refusal_with_retry_after() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let l = limit(5, 1);
        assert_eq!(accepted(&limiter, 1, l, t0, 5), 5);
        assert_eq!(limiter.check(1, l, t0), Err(RetryAfter(1)));
        // Refusals take nothing: after the advertised second, one request
        // passes, the next is refused again.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(limiter.check(1, l, t1), Ok(()));
        assert_eq!(limiter.check(1, l, t1), Err(RetryAfter(1)));
    }

    #[test]
    fn retry_after_is_rounded_up_and_at_least_one() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        // 1000 per second: the next token is 1 ms away, still `Retry-After: 1`.
        let fast = limit(3, 1000);
        assert_eq!(accepted(&limiter, 1, fast, t0, 3), 3);
        assert_eq!(limiter.check(1, fast, t0), Err(RetryAfter(1)));
        assert_eq!(
            limiter.check(1, fast, t0 + Duration::from_millis(1)),
            Ok(())
        );
    }

    #[test]
    fn refill_over_time() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let l = limit(10, 2);
        assert_eq!(accepted(&limiter, 7, l, t0, 20), 10);
        // 2 per second: after 1.25 s, 2.5 tokens: two requests pass.
        let t1 = t0 + Duration::from_millis(1250);
        assert_eq!(accepted(&limiter, 7, l, t1, 10), 2);
        // After 0.25 s, the half token left plus half a token: one.
        let t2 = t1 + Duration::from_millis(250);
        assert_eq!(accepted(&limiter, 7, l, t2, 10), 1);
        // A long pause refills to the capacity, never beyond.
        let t3 = t2 + Duration::from_secs(3600);
        assert_eq!(accepted(&limiter, 7, l, t3, 30), 10);
    }

    #[test]
    fn frequent_checks_still_refill() {
        // Checks every 100 µs at 1 token per second: each interval is worth
        // less than one milli-token, yet the sum must still refill.
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let l = limit(1, 1);
        assert_eq!(limiter.check(3, l, t0), Ok(()));
        let mut ok = 0;
        for i in 1..=20_000u64 {
            if limiter
                .check(3, l, t0 + Duration::from_micros(100 * i))
                .is_ok()
            {
                ok += 1;
            }
        }
        // 2 s of checks at 1 per second.
        assert_eq!(ok, 2);
    }

    #[test]
    fn wait_after_refusal_accounts_for_partial_tokens() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        // Capacity 1 at 1 per second, refused at t0 + 0.4 s: 0.6 s left,
        // rounded up to 1 s.
        let l = limit(1, 1);
        assert_eq!(limiter.check(4, l, t0), Ok(()));
        assert_eq!(
            limiter.check(4, l, t0 + Duration::from_millis(400)),
            Err(RetryAfter(1))
        );
        assert_eq!(
            limiter.check(4, l, t0 + Duration::from_millis(999)),
            Err(RetryAfter(1))
        );
        assert_eq!(limiter.check(4, l, t0 + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn two_keys_are_independent() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let l = limit(3, 1);
        assert_eq!(accepted(&limiter, 1, l, t0, 10), 3);
        assert_eq!(accepted(&limiter, 2, l, t0, 10), 3);
        assert_eq!(limiter.check(1, l, t0), Err(RetryAfter(1)));
        assert_eq!(limiter.check(2, l, t0), Err(RetryAfter(1)));
        // Negative and extreme ids are just ids.
        assert_eq!(accepted(&limiter, -1, l, t0, 10), 3);
        assert_eq!(accepted(&limiter, i64::MAX, l, t0, 10), 3);
    }

    #[test]
    fn limit_change_applies_on_next_check() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        // 100 capacity, 20 used: 80 left.
        assert_eq!(accepted(&limiter, 1, limit(100, 1), t0, 20), 20);
        // Lowered to 5: clamped, 5 left.
        assert_eq!(accepted(&limiter, 1, limit(5, 1), t0, 20), 5);
        // Raised to 50: the tokens are not topped up, the refill is faster.
        let raised = limit(50, 10);
        assert_eq!(limiter.check(1, raised, t0), Err(RetryAfter(1)));
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(accepted(&limiter, 1, raised, t1, 100), 20);
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        assert_eq!(accepted(&limiter, 1, limit(2, 1), t0, 5), 2);
        for off in [limit(0, 1), limit(5, 0), limit(0, 0)] {
            assert_eq!(accepted(&limiter, 1, off, t0, 1000), 1000);
        }
        assert_eq!(limiter.tracked(), 0);
        // Switched back on: a full bucket.
        assert_eq!(accepted(&limiter, 1, limit(2, 1), t0, 5), 2);
    }

    #[test]
    fn extreme_limits_do_not_overflow() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let huge = limit(u32::MAX, u32::MAX);
        assert_eq!(accepted(&limiter, 1, huge, t0, 1000), 1000);
        let far = t0 + Duration::from_secs(10 * 365 * 24 * 3600);
        assert_eq!(accepted(&limiter, 1, huge, far, 1000), 1000);
        // An instant before the bucket's last one credits nothing and does
        // not panic.
        let tiny = limit(1, 1);
        assert_eq!(limiter.check(2, tiny, far), Ok(()));
        assert_eq!(limiter.check(2, tiny, t0), Err(RetryAfter(1)));
        assert_eq!(limiter.check(2, tiny, far + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = RateLimiter::with_max_keys(3);
        let t0 = Instant::now();
        let l = limit(2, 1);
        for key in 0..3 {
            assert_eq!(limiter.check(key, l, t0), Ok(()));
        }
        // Full, and every bucket has just been used: a new key is refused
        // rather than tracked, while known keys go on as before.
        assert_eq!(limiter.check(3, l, t0), Err(RetryAfter(1)));
        assert_eq!(limiter.tracked(), 3);
        assert_eq!(limiter.check(0, l, t0), Ok(()));

        // One second later keys 1 and 2 are full again (one token used, one
        // refilled) and can be dropped; key 0 (two used) cannot.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(limiter.check(3, l, t1), Ok(()));
        assert_eq!(limiter.tracked(), 2);
        // Key 0 kept its state: one token left after the refill.
        assert_eq!(accepted(&limiter, 0, l, t1, 5), 1);
        // A dropped key starts full again.
        assert_eq!(accepted(&limiter, 1, l, t1, 5), 2);
        assert_eq!(limiter.tracked(), 3);
    }

    #[test]
    fn the_real_bound_holds() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let l = limit(1, 1);
        let max = i64::try_from(MAX_TRACKED_KEYS).expect("fits");
        for key in 0..max {
            assert_eq!(limiter.check(key, l, t0), Ok(()));
        }
        assert_eq!(limiter.check(max, l, t0), Err(RetryAfter(1)));
        assert_eq!(limiter.tracked(), MAX_TRACKED_KEYS);
        assert_eq!(limiter.check(max, l, t0 + Duration::from_secs(1)), Ok(()));
        assert_eq!(limiter.tracked(), 1);
    }

    #[test]
    fn poisoned_lock_is_recovered() {
        let limiter = RateLimiter::new();
        let t0 = Instant::now();
        let l = limit(2, 1);
        assert_eq!(limiter.check(1, l, t0), Ok(()));
        std::thread::scope(|scope| {
            let handle = scope.spawn(|| {
                let _guard = limiter.buckets.lock();
                panic!("poison the lock on purpose");
            });
            assert!(handle.join().is_err());
        });
        assert!(limiter.buckets.is_poisoned());
        // The state survives: one token left for key 1.
        assert_eq!(limiter.check(1, l, t0), Ok(()));
        assert_eq!(limiter.check(1, l, t0), Err(RetryAfter(1)));
    }
}
