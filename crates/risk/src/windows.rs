//! Sliding-window counts and sums kept in time buckets, per entity.
//!
//! Each window is a ring of equal buckets: `1m` = 6 × 10 s, `10m` = 10 × 1
//! min, `1h` = 12 × 5 min, `24h` = 24 × 1 h, `7d` = 7 × 1 day. An event at
//! time `t` counts in window `w` at time `now` when its bucket is one of the
//! window's last buckets: `now/g - n < t/g <= now/g` (`g` the bucket length,
//! `n` the bucket count). A window therefore covers between `(n-1)·g` and
//! `n·g` seconds: the price of O(1) updates and bounded memory, and the exact
//! definition the auditor and the tests recompute.
//!
//! Only non-empty buckets are stored, in one small vector per entity: an
//! entity seen once a week costs five buckets, not 59. Counts are over all
//! assets; sums are per asset (amounts of different assets never add up).
//! An entity sums up to [`MAX_ASSETS`] assets exactly at a time; when a new
//! asset arrives while that many have buckets in the last week, the least
//! recently used one's buckets are relabelled "overflow": they keep
//! counting, and from then on every sum of the entity includes them while
//! they are in the window. Sums are thus exact while an entity uses at most
//! [`MAX_ASSETS`] assets in a week, and otherwise over-estimated, never
//! under-estimated, so limits fail safe; count and memory stay bounded
//! whatever the caller sends.

use std::fmt;

/// Assets whose sums each entity keeps exactly at a time.
pub const MAX_ASSETS: usize = 8;

/// Label of buckets whose asset was evicted: counted, and added to every sum.
const OTHER_ASSET: u8 = u8::MAX;

/// A window length, one of a fixed set: the bucket layout is fixed so the
/// state does not depend on the tree in force (trees change, state stays).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Window {
    /// About one minute (6 buckets of 10 s).
    M1,
    /// About ten minutes (10 buckets of 1 min).
    M10,
    /// About one hour (12 buckets of 5 min).
    H1,
    /// About one day (24 buckets of 1 h).
    H24,
    /// About one week (7 buckets of 1 day).
    D7,
}

impl Window {
    /// Every window, shortest first (the order of [`crate::EntityFeatures::windows`]).
    pub const ALL: [Window; 5] = [Window::M1, Window::M10, Window::H1, Window::H24, Window::D7];

    /// The name used in trees: `1m`, `10m`, `1h`, `24h`, `7d`.
    pub fn name(self) -> &'static str {
        match self {
            Window::M1 => "1m",
            Window::M10 => "10m",
            Window::H1 => "1h",
            Window::H24 => "24h",
            Window::D7 => "7d",
        }
    }

    /// The window named `s`, if it is one of the fixed set.
    pub fn parse(s: &str) -> Option<Window> {
        Window::ALL.into_iter().find(|w| w.name() == s)
    }

    /// Length of one bucket, seconds.
    pub fn bucket_secs(self) -> u64 {
        match self {
            Window::M1 => 10,
            Window::M10 => 60,
            Window::H1 => 300,
            Window::H24 => 3600,
            Window::D7 => 86_400,
        }
    }

    /// Number of buckets.
    pub fn buckets(self) -> u64 {
        match self {
            Window::M1 => 6,
            Window::M10 => 10,
            Window::H1 => 12,
            Window::H24 => 24,
            Window::D7 => 7,
        }
    }

    /// Position in [`Window::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// Whether an event at `t` counts in this window at `now` (see the module doc).
    pub fn contains(self, t: u64, now: u64) -> bool {
        self.holds_bucket(t / self.bucket_secs(), now)
    }

    fn holds_bucket(self, bucket: u64, now: u64) -> bool {
        let current = now / self.bucket_secs();
        bucket <= current && bucket + self.buckets() > current
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Count and sum of the events in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowTotal {
    /// Number of events (all assets), saturated at `u64::MAX`.
    pub count: u64,
    /// Sum of the amounts in the asset asked about, saturated at `u128::MAX`.
    pub sum: u128,
}

/// 64-bit FNV-1a: a fixed, portable hash, so two machines replaying the same
/// requests hold the same state (the std hasher is randomly keyed).
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in *p {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator, so ("ab", "c") and ("a", "bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// One non-empty bucket. The sum is two `u64` halves so the slot is 8-byte
/// aligned and 32 bytes (a `u128` field would align it to 16 and pad it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Slot {
    /// Bucket index: time / bucket length (fits in 32 bits up to `MAX_TIME`).
    bucket: u32,
    count: u32,
    /// Window level (index in `Window::ALL`).
    level: u8,
    /// Index into `Activity::assets`, or `OTHER_ASSET`.
    asset: u8,
    sum_hi: u64,
    sum_lo: u64,
}

impl Slot {
    fn sum(&self) -> u128 {
        (u128::from(self.sum_hi) << 64) | u128::from(self.sum_lo)
    }

    fn add(&mut self, count: u32, amount: u128) {
        self.count = self.count.saturating_add(count);
        let s = self.sum().saturating_add(amount);
        self.sum_hi = (s >> 64) as u64;
        self.sum_lo = s as u64;
    }
}

/// The windowed aggregates of one entity.
#[derive(Debug, Clone, Default)]
pub(crate) struct Activity {
    slots: Vec<Slot>,
    /// (asset hash, last time used) for the assets summed; `Slot::asset`
    /// indexes this vector, whose positions never move.
    assets: Vec<(u64, u64)>,
}

impl Activity {
    /// Records one event at `now` (the caller keeps time monotone).
    pub(crate) fn add(&mut self, now: u64, asset: u64, amount: u128) {
        self.expire(now);
        let label = self.asset_label(now, asset);
        for w in Window::ALL {
            let bucket = (now / w.bucket_secs()) as u32;
            let level = w as u8;
            match self
                .slots
                .iter_mut()
                .find(|s| s.level == level && s.bucket == bucket && s.asset == label)
            {
                Some(s) => s.add(1, amount),
                None => {
                    let mut s = Slot {
                        bucket,
                        count: 0,
                        level,
                        asset: label,
                        sum_hi: 0,
                        sum_lo: 0,
                    };
                    s.add(1, amount);
                    self.slots.push(s);
                }
            }
        }
    }

    /// The label for `asset`: its own, a free one (no bucket left in any
    /// window), or the least recently used one's, whose buckets then go to
    /// the overflow label (ties: the lowest label, as on every replica).
    /// `expire(now)` has run.
    fn asset_label(&mut self, now: u64, asset: u64) -> u8 {
        if let Some(i) = self.assets.iter().position(|(h, _)| *h == asset) {
            self.assets[i].1 = now;
            return i as u8;
        }
        if self.assets.len() < MAX_ASSETS {
            self.assets.push((asset, now));
            return (self.assets.len() - 1) as u8;
        }
        let free =
            (0..self.assets.len()).find(|i| self.slots.iter().all(|s| usize::from(s.asset) != *i));
        let victim = match free {
            Some(i) => i,
            None => {
                let mut victim = 0;
                for (i, (_, used)) in self.assets.iter().enumerate() {
                    if *used < self.assets[victim].1 {
                        victim = i;
                    }
                }
                let label = victim as u8;
                for s in &mut self.slots {
                    if s.asset == label {
                        s.asset = OTHER_ASSET;
                    }
                }
                self.merge_duplicates();
                victim
            }
        };
        self.assets[victim] = (asset, now);
        victim as u8
    }

    /// Merges slots with the same (level, bucket, asset): relabelling can
    /// create them, and merging keeps the per-level bound.
    fn merge_duplicates(&mut self) {
        self.slots
            .sort_unstable_by_key(|s| (s.level, s.bucket, s.asset));
        let mut out: Vec<Slot> = Vec::with_capacity(self.slots.len());
        for s in self.slots.drain(..) {
            match out.last_mut() {
                Some(l) if l.level == s.level && l.bucket == s.bucket && l.asset == s.asset => {
                    l.add(s.count, s.sum());
                }
                _ => out.push(s),
            }
        }
        self.slots = out;
    }

    /// Drops buckets that left their window at `now` (they can never count
    /// again: time does not go back).
    pub(crate) fn expire(&mut self, now: u64) {
        self.slots
            .retain(|s| Window::ALL[usize::from(s.level)].holds_bucket(u64::from(s.bucket), now));
    }

    /// Count (all assets) and sum (of `asset`, plus any overflow) in window
    /// `w` at `now`.
    pub(crate) fn total(&self, w: Window, now: u64, asset: u64) -> WindowTotal {
        let label = self
            .assets
            .iter()
            .position(|(h, _)| *h == asset)
            .map(|i| i as u8);
        let mut t = WindowTotal::default();
        for s in &self.slots {
            if usize::from(s.level) != w.index() || !w.holds_bucket(u64::from(s.bucket), now) {
                continue;
            }
            t.count = t.count.saturating_add(u64::from(s.count));
            if Some(s.asset) == label || s.asset == OTHER_ASSET {
                t.sum = t.sum.saturating_add(s.sum());
            }
        }
        t
    }

    /// Gives back spare capacity (after a prune).
    pub(crate) fn shrink(&mut self) {
        self.slots.shrink_to_fit();
    }

    /// Number of buckets held (for the memory-bound test).
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_700_000_000 / 86_400 * 86_400; // midnight, every bucket aligned

    #[test]
    fn slot_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
    }

    #[test]
    fn windows_parse_only_the_fixed_set() {
        for w in Window::ALL {
            assert_eq!(Window::parse(w.name()), Some(w));
        }
        for bad in ["5m", "1d", "1H", "", "60s"] {
            assert_eq!(Window::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn counts_roll_over_as_time_advances() {
        let mut a = Activity::default();
        let asset = fnv1a(&[b"USDC"]);
        a.add(T0, asset, 10);
        a.add(T0 + 5, asset, 20);
        let at = |now| a.total(Window::M1, now, asset);
        assert_eq!(at(T0 + 5), WindowTotal { count: 2, sum: 30 });
        // Still in the 6th bucket after T0's ...
        assert_eq!(at(T0 + 59).count, 2);
        // ... and gone one bucket later.
        assert_eq!(at(T0 + 60).count, 0);
        assert_eq!(a.total(Window::M10, T0 + 60, asset).count, 2);
        assert_eq!(a.total(Window::M10, T0 + 600, asset).count, 0);
        assert_eq!(a.total(Window::D7, T0 + 6 * 86_400, asset).count, 2);
        assert_eq!(a.total(Window::D7, T0 + 7 * 86_400, asset).count, 0);
    }

    #[test]
    fn sums_are_per_asset_and_counts_are_not() {
        let mut a = Activity::default();
        let (usdc, eth) = (fnv1a(&[b"USDC"]), fnv1a(&[b"ETH"]));
        a.add(T0, usdc, 100);
        a.add(T0, eth, 7);
        assert_eq!(
            a.total(Window::H1, T0, usdc),
            WindowTotal { count: 2, sum: 100 }
        );
        assert_eq!(
            a.total(Window::H1, T0, eth),
            WindowTotal { count: 2, sum: 7 }
        );
    }

    #[test]
    fn evicted_asset_still_counts_and_memory_stays_bounded() {
        let mut a = Activity::default();
        for i in 0..100u64 {
            let asset = fnv1a(&[i.to_string().as_bytes()]);
            a.add(T0 + i, asset, 1);
        }
        assert_eq!(a.total(Window::H1, T0 + 99, 0).count, 100);
        // 5 levels, at most MAX_ASSETS + 1 labels per bucket.
        assert!(a.slots() <= 59 * (MAX_ASSETS + 1), "{}", a.slots());
        // Over the bound, sums are over-estimated, never under-estimated.
        for name in [&b"99"[..], b"0", b"never-used"] {
            let sum = a.total(Window::H1, T0 + 99, fnv1a(&[name])).sum;
            assert_eq!(sum, if name == b"99" { 93 } else { 92 }, "{name:?}");
        }
    }

    #[test]
    fn labels_free_up_when_their_buckets_leave_the_week() {
        let mut a = Activity::default();
        for i in 0..MAX_ASSETS as u64 {
            a.add(T0 + i, fnv1a(&[i.to_string().as_bytes()]), 1);
        }
        let later = T0 + 8 * 86_400;
        let new = fnv1a(&[b"new"]);
        a.add(later, new, 5);
        assert_eq!(
            a.total(Window::D7, later, new),
            WindowTotal { count: 1, sum: 5 }
        );
    }

    #[test]
    fn sums_saturate() {
        let mut a = Activity::default();
        a.add(T0, 1, u128::MAX);
        a.add(T0, 1, 5);
        assert_eq!(a.total(Window::M1, T0, 1).sum, u128::MAX);
    }
}
