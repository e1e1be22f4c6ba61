//! Windowed aggregates of past spends ([`Spending`]), kept incrementally for
//! one policy's velocity limits and vesting rules.
//!
//! [`crate::evaluate`] used to scan every past transfer for every velocity
//! limit and every vesting release, so a decision cost O(history) and a replay
//! of a whole log (the auditor) cost O(history²). A [`Spending`] holds, for
//! each velocity limit, the entries that count for it grouped by the limit's
//! scope value (wallet root, destination or initiator), time-ordered, with a
//! running total; and, for vesting, one running all-time total per
//! (wallet, asset, destination). A decision then reads a few totals: its cost
//! does not grow with the history.
//!
//! The answers are exactly those of the old scan (entries count for a limit
//! when `now - window_secs < time <= now`, sums saturate at `u128::MAX`):
//! sums are kept in 256 bits, so no intermediate value ever saturates, and
//! are saturated once when reported.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use ruint::aliases::U256;
use sha2::{Digest, Sha256};

use crate::document::{Action, Policy, PolicyDocument, VelocityScope};
use crate::error::SpendingError;
use crate::eval::{in_list, wallet_listed, wallet_root};
use crate::request::{History, HistoryEntry};

/// Domain separator of [`Spending::fingerprint`] (and
/// [`Policy::spending_fingerprint`]).
pub const SPENDING_DOMAIN: &[u8] = b"keyfold-policy/spending-shape/v1\0";

/// The amount and number of past transfers counted by one velocity limit in
/// one window (see [`Spending::window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowTotal {
    /// Sum of the amounts, saturated at `u128::MAX`.
    pub amount: u128,
    /// Number of transfers, saturated at `u64::MAX`.
    pub count: u64,
}

/// Hashes the parts of a policy a [`Spending`] depends on: each velocity
/// limit's scope, window, asset and wallet filter (in order), and each vesting
/// rule's `wallets` and `assets` matchers (in order). Limit names and maxima
/// are left out: they are read from the policy at evaluation time.
pub(crate) fn shape_fingerprint(doc: &PolicyDocument) -> [u8; 32] {
    fn put_str(h: &mut Sha256, s: &str) {
        h.update((s.len() as u64).to_be_bytes());
        h.update(s.as_bytes());
    }
    fn put_list(h: &mut Sha256, l: &Option<Vec<String>>) {
        match l {
            None => h.update([0u8]),
            Some(items) => {
                h.update([1u8]);
                h.update((items.len() as u64).to_be_bytes());
                for s in items {
                    put_str(h, s);
                }
            }
        }
    }
    let mut h = Sha256::new();
    h.update(SPENDING_DOMAIN);
    h.update((doc.velocity.len() as u64).to_be_bytes());
    for v in &doc.velocity {
        h.update([match v.per {
            VelocityScope::Wallet => 0u8,
            VelocityScope::Destination => 1,
            VelocityScope::Initiator => 2,
        }]);
        h.update(v.window_secs.to_be_bytes());
        put_str(&mut h, &v.asset);
        put_list(&mut h, &v.wallets);
    }
    let vesting: Vec<_> = vesting_filters(doc).collect();
    h.update((vesting.len() as u64).to_be_bytes());
    for (wallets, assets) in vesting {
        put_list(&mut h, wallets);
        put_list(&mut h, assets);
    }
    h.finalize().into()
}

/// The `wallets` and `assets` matchers of every vesting rule, in order.
fn vesting_filters(
    doc: &PolicyDocument,
) -> impl Iterator<Item = (&Option<Vec<String>>, &Option<Vec<String>>)> {
    doc.rules
        .iter()
        .filter(|r| matches!(r.action, Action::Vesting { .. }))
        .map(|r| (&r.wallets, &r.assets))
}

/// The value a limit with scope `per` groups a transfer by.
pub(crate) fn scope_key<'a>(
    per: VelocityScope,
    wallet: &'a str,
    destination: &'a str,
    initiator: &'a str,
) -> &'a str {
    match per {
        // A wallet's HD children (`key/m/0/1`) count with the key itself:
        // spreading transfers over derivation paths must not multiply a
        // per-wallet limit.
        VelocityScope::Wallet => wallet_root(wallet),
        VelocityScope::Destination => destination,
        VelocityScope::Initiator => initiator,
    }
}

/// `x` widened to 256 bits (infallible, no panicking conversion).
fn wide(x: u128) -> U256 {
    U256::from_limbs([x as u64, (x >> 64) as u64, 0, 0])
}

/// A running sum and count. 256 bits hold 2^128 amounts of up to 2^128 - 1
/// each, more than can ever be added, so the sum never wraps or saturates;
/// the count, in 128 bits, neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Total {
    amount: U256,
    count: u128,
}

impl Total {
    fn add(&mut self, amount: u128, times: u64) {
        self.amount = self
            .amount
            .saturating_add(wide(amount).saturating_mul(wide(u128::from(times))));
        self.count = self.count.saturating_add(u128::from(times));
    }

    /// Takes `times` transfers of `amount` out; `false` (and nothing changed)
    /// if the total does not hold them.
    fn sub(&mut self, amount: u128, times: u64) -> bool {
        let a = wide(amount).saturating_mul(wide(u128::from(times)));
        match (
            self.amount.checked_sub(a),
            self.count.checked_sub(u128::from(times)),
        ) {
            (Some(amount), Some(count)) => {
                self.amount = amount;
                self.count = count;
                true
            }
            _ => false,
        }
    }

    /// Whether one transfer of `amount` could be in this total.
    fn could_hold(&self, amount: u128) -> bool {
        self.count >= 1 && self.amount >= wide(amount)
    }

    fn report(&self) -> WindowTotal {
        WindowTotal {
            amount: self.amount.saturating_to::<u128>(),
            count: u64::try_from(self.count).unwrap_or(u64::MAX),
        }
    }
}

/// One held transfer as a key: ordered by time, then amount. The amount is
/// split into two `u64` so a key is 24 bytes (a `u128` would pad it to 32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Rec {
    time: u64,
    hi: u64,
    lo: u64,
}

impl Rec {
    fn of(e: &HistoryEntry) -> Rec {
        Rec {
            time: e.time,
            hi: (e.amount >> 64) as u64,
            lo: e.amount as u64,
        }
    }

    fn amount(&self) -> u128 {
        (u128::from(self.hi) << 64) | u128::from(self.lo)
    }

    /// The first key after every record at or before `time`.
    fn last_at(time: u64) -> Rec {
        Rec {
            time,
            hi: u64::MAX,
            lo: u64::MAX,
        }
    }
}

/// The transfers of one scope value that count for one limit.
#[derive(Debug, Clone)]
struct Bucket {
    /// The scope value (shared with the limit's `by_oldest` index).
    key: Arc<str>,
    /// (time, amount) -> how many such transfers.
    records: BTreeMap<Rec, u64>,
    /// Everything in `records`.
    total: Total,
}

impl Bucket {
    fn oldest(&self) -> Option<u64> {
        self.records.first_key_value().map(|(r, _)| r.time)
    }
}

/// The aggregates of one velocity limit.
#[derive(Debug, Clone)]
struct LimitAgg {
    per: VelocityScope,
    window_secs: u64,
    asset: String,
    wallets: Option<Vec<String>>,
    buckets: HashMap<Arc<str>, Bucket>,
    /// (oldest record time, scope value) of every non-empty bucket, so a
    /// prune visits only the buckets that have something to drop.
    by_oldest: BTreeSet<(u64, Arc<str>)>,
    /// Records at or before this time were dropped (the highest
    /// `now - window_secs` pruned so far); later adds at or before it are not
    /// held either.
    cut: Option<u64>,
    /// The latest time of a counted transfer that is not held (pruned, or
    /// added after its time was cut): an evaluation whose window reaches it
    /// cannot be answered exactly.
    dropped_max: Option<u64>,
    /// Records held (sum of the multiplicities).
    held: u64,
}

impl LimitAgg {
    /// The scope value under which `e` counts for this limit, if it counts.
    fn scope<'e>(&self, e: &'e HistoryEntry) -> Option<&'e str> {
        (e.asset == self.asset && wallet_listed(&self.wallets, &e.wallet))
            .then(|| scope_key(self.per, &e.wallet, &e.destination, &e.initiator))
    }

    fn note_dropped(&mut self, time: u64) {
        self.dropped_max = Some(self.dropped_max.map_or(time, |d| d.max(time)));
    }

    fn add(&mut self, e: &HistoryEntry) {
        let Some(key) = self.scope(e) else {
            return;
        };
        if self.cut.is_some_and(|c| e.time <= c) {
            // Already outside every window this limit can still be asked
            // about (evaluations do not go back before a prune).
            self.note_dropped(e.time);
            return;
        }
        let rec = Rec::of(e);
        match self.buckets.get_mut(key) {
            Some(b) => {
                let before = b.oldest();
                let m = b.records.entry(rec).or_insert(0);
                *m = m.saturating_add(1);
                b.total.add(e.amount, 1);
                if let Some(t) = before.filter(|t| e.time < *t) {
                    self.by_oldest.remove(&(t, b.key.clone()));
                    self.by_oldest.insert((e.time, b.key.clone()));
                }
            }
            None => {
                let key: Arc<str> = Arc::from(key);
                let mut total = Total::default();
                total.add(e.amount, 1);
                self.by_oldest.insert((e.time, key.clone()));
                self.buckets.insert(
                    key.clone(),
                    Bucket {
                        key,
                        records: BTreeMap::from([(rec, 1)]),
                        total,
                    },
                );
            }
        }
        self.held = self.held.saturating_add(1);
    }

    /// Whether `e` is held: `Ok(false)` if it does not count for this limit
    /// or its time was cut, an error if it should be held and is not.
    fn holds(&self, index: usize, e: &HistoryEntry) -> Result<bool, SpendingError> {
        let Some(key) = self.scope(e) else {
            return Ok(false);
        };
        if self.cut.is_some_and(|c| e.time <= c) {
            return Ok(false);
        }
        let found = self
            .buckets
            .get(key)
            .and_then(|b| b.records.get(&Rec::of(e)))
            .is_some_and(|m| *m >= 1);
        if found {
            Ok(true)
        } else {
            Err(SpendingError::NotHeld {
                time: e.time,
                wallet: e.wallet.clone(),
                limit: Some(index),
            })
        }
    }

    /// Removes one held record of `e` (checked by [`LimitAgg::holds`]).
    fn remove_held(&mut self, e: &HistoryEntry) {
        let Some(key) = self.scope(e) else {
            return;
        };
        let Some(b) = self.buckets.get_mut(key) else {
            return;
        };
        let rec = Rec::of(e);
        let before = b.oldest();
        match b.records.get_mut(&rec) {
            Some(m) if *m > 1 => *m -= 1,
            Some(_) => {
                b.records.remove(&rec);
            }
            None => return,
        }
        b.total.sub(e.amount, 1);
        self.held = self.held.saturating_sub(1);
        let after = b.oldest();
        if before != after {
            let k = b.key.clone();
            if let Some(t) = before {
                self.by_oldest.remove(&(t, k.clone()));
            }
            match after {
                Some(t) => {
                    self.by_oldest.insert((t, k));
                }
                None => {
                    self.buckets.remove(&k);
                }
            }
        }
    }

    fn prune(&mut self, now: u64) {
        let lo = now.saturating_sub(self.window_secs);
        if self.cut.is_some_and(|c| lo <= c) {
            // Time went back (or did not move): nothing more to drop, and
            // the cut never moves back.
            return;
        }
        self.cut = Some(lo);
        while self.by_oldest.first().is_some_and(|(t, _)| *t <= lo) {
            let Some((_, key)) = self.by_oldest.pop_first() else {
                break;
            };
            let Some(b) = self.buckets.get_mut(&key) else {
                continue;
            };
            let mut dropped: Option<u64> = None;
            while let Some(first) = b.records.first_entry() {
                if first.key().time > lo {
                    break;
                }
                let (rec, m) = first.remove_entry();
                b.total.sub(rec.amount(), m);
                self.held = self.held.saturating_sub(m);
                dropped = Some(rec.time);
            }
            let next = b.oldest();
            if let Some(t) = dropped {
                self.note_dropped(t);
            }
            match next {
                Some(t) => {
                    self.by_oldest.insert((t, key));
                }
                None => {
                    self.buckets.remove(&key);
                }
            }
        }
    }

    /// What counts for this limit under scope value `key` at `now`, without
    /// `exclude`.
    fn window(
        &self,
        index: usize,
        key: &str,
        now: u64,
        exclude: Option<&HistoryEntry>,
    ) -> Result<WindowTotal, SpendingError> {
        let lo = now.saturating_sub(self.window_secs);
        if let Some(d) = self.dropped_max.filter(|d| *d > lo) {
            return Err(SpendingError::Pruned {
                limit: index,
                now,
                dropped: d,
            });
        }
        let Some(b) = self.buckets.get(key) else {
            return match exclude.filter(|e| self.counts_in(e, key, lo, now)) {
                Some(e) => Err(SpendingError::ExcludeNotHeld {
                    time: e.time,
                    wallet: e.wallet.clone(),
                }),
                None => Ok(WindowTotal::default()),
            };
        };
        let mut t = b.total;
        // Held records outside (lo, now]: before the window (only when the
        // caller has not pruned up to `now`) and after `now` (transfers
        // recorded later than the evaluation time). With a prune at `now`
        // and no future records, both ranges are empty and this is
        // O(log n).
        for (rec, m) in b.records.range(..=Rec::last_at(lo)) {
            t.sub(rec.amount(), *m);
        }
        if let Some(after) = now.checked_add(1) {
            let from = Rec {
                time: after,
                hi: 0,
                lo: 0,
            };
            for (rec, m) in b.records.range(from..) {
                t.sub(rec.amount(), *m);
            }
        }
        if let Some(e) = exclude.filter(|e| self.counts_in(e, key, lo, now)) {
            let held = b.records.get(&Rec::of(e)).is_some_and(|m| *m >= 1);
            if !held || !t.sub(e.amount, 1) {
                return Err(SpendingError::ExcludeNotHeld {
                    time: e.time,
                    wallet: e.wallet.clone(),
                });
            }
        }
        Ok(t.report())
    }

    /// Whether `e` counts under `key` in the window `(lo, now]`.
    fn counts_in(&self, e: &HistoryEntry, key: &str, lo: u64, now: u64) -> bool {
        self.scope(e) == Some(key) && e.time > lo && e.time <= now
    }
}

/// A vesting rule's `wallets` and `assets` matchers (`None` = any).
type VestingFilter = (Option<Vec<String>>, Option<Vec<String>>);

/// Running all-time totals of what vesting rules ask about: released amounts
/// per (wallet, asset, destination), only for wallets and assets a vesting
/// rule of the policy matches.
#[derive(Debug, Clone, Default)]
struct VestingAgg {
    /// The matchers of each vesting rule.
    filters: Vec<VestingFilter>,
    /// wallet -> asset -> destination -> total.
    totals: HashMap<String, HashMap<String, HashMap<String, Total>>>,
    /// Number of (wallet, asset, destination) totals.
    keys: usize,
}

impl VestingAgg {
    fn tracks(&self, wallet: &str, asset: &str) -> bool {
        self.filters
            .iter()
            .any(|(w, a)| in_list(w, wallet) && in_list(a, asset))
    }

    fn get(&self, wallet: &str, asset: &str, destination: &str) -> Option<&Total> {
        self.totals.get(wallet)?.get(asset)?.get(destination)
    }

    fn add(&mut self, e: &HistoryEntry) {
        if !self.tracks(&e.wallet, &e.asset) {
            return;
        }
        let dests = self
            .totals
            .entry(e.wallet.clone())
            .or_default()
            .entry(e.asset.clone())
            .or_default();
        if !dests.contains_key(&e.destination) {
            self.keys += 1;
        }
        dests
            .entry(e.destination.clone())
            .or_default()
            .add(e.amount, 1);
    }

    /// Whether `e` is held: `Ok(false)` if vesting does not track it, an
    /// error if it should be held and is not.
    fn holds(&self, e: &HistoryEntry) -> Result<bool, SpendingError> {
        if !self.tracks(&e.wallet, &e.asset) {
            return Ok(false);
        }
        match self.get(&e.wallet, &e.asset, &e.destination) {
            Some(t) if t.could_hold(e.amount) => Ok(true),
            _ => Err(SpendingError::NotHeld {
                time: e.time,
                wallet: e.wallet.clone(),
                limit: None,
            }),
        }
    }

    /// Removes `e` (checked by [`VestingAgg::holds`]), dropping empty maps.
    fn remove_held(&mut self, e: &HistoryEntry) {
        let Some(assets) = self.totals.get_mut(&e.wallet) else {
            return;
        };
        let Some(dests) = assets.get_mut(&e.asset) else {
            return;
        };
        let Some(t) = dests.get_mut(&e.destination) else {
            return;
        };
        t.sub(e.amount, 1);
        if t.count == 0 {
            dests.remove(&e.destination);
            self.keys = self.keys.saturating_sub(1);
            if dests.is_empty() {
                assets.remove(&e.asset);
                if assets.is_empty() {
                    self.totals.remove(&e.wallet);
                }
            }
        }
    }
}

/// Windowed aggregates of past spends, shaped for one [`Policy`]: what
/// [`crate::evaluate`] reads for velocity limits and vesting (see the module
/// docs).
///
/// Feed it every transfer that counts ([`Spending::add`]), take back those
/// that no longer count ([`Spending::remove`]: a request that failed or was
/// decided again), and drop what left the velocity windows
/// ([`Spending::prune`]) as time goes on. Vesting totals are all-time and
/// never pruned; they are kept only for the wallets and assets a vesting rule
/// matches, one total per (wallet, asset, destination).
///
/// Costs, for `n` entries held by a limit: `add`, `remove` and a decision are
/// O(log n) per velocity limit (plus O(k) for `k` held entries outside the
/// evaluation window: none when the caller prunes at the evaluation time and
/// records no transfer later than it); `prune` is amortized O(log n) per
/// dropped entry.
#[derive(Clone)]
pub struct Spending {
    policy_version: u64,
    fingerprint: [u8; 32],
    limits: Vec<LimitAgg>,
    vesting: VestingAgg,
}

impl fmt::Debug for Spending {
    // The aggregates can hold millions of entries: show their size only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spending")
            .field("policy_version", &self.policy_version)
            .field("fingerprint", &hex::encode(self.fingerprint))
            .field("window_records", &self.window_records())
            .field("vesting_totals", &self.vesting_totals())
            .finish()
    }
}

impl Spending {
    /// Empty aggregates for `policy`.
    pub fn new(policy: &Policy) -> Spending {
        let doc = policy.document();
        Spending {
            policy_version: policy.version(),
            fingerprint: policy.spending_fingerprint(),
            limits: doc
                .velocity
                .iter()
                .map(|v| LimitAgg {
                    per: v.per,
                    window_secs: v.window_secs,
                    asset: v.asset.clone(),
                    wallets: v.wallets.clone(),
                    buckets: HashMap::new(),
                    by_oldest: BTreeSet::new(),
                    cut: None,
                    dropped_max: None,
                    held: 0,
                })
                .collect(),
            vesting: VestingAgg {
                filters: vesting_filters(doc)
                    .map(|(w, a)| (w.clone(), a.clone()))
                    .collect(),
                ..VestingAgg::default()
            },
        }
    }

    /// Aggregates for `policy` holding `entries` (in any order; nothing is
    /// pruned).
    pub fn from_entries<I>(policy: &Policy, entries: I) -> Spending
    where
        I: IntoIterator<Item = HistoryEntry>,
    {
        let mut s = Spending::new(policy);
        for e in entries {
            s.add(&e);
        }
        s
    }

    /// Aggregates for `policy` holding every entry of `history`.
    pub fn from_history(policy: &Policy, history: &History) -> Spending {
        let mut s = Spending::new(policy);
        for e in &history.entries {
            s.add(e);
        }
        s
    }

    /// Counts `entry` (a transfer that was allowed or signed) from now on.
    ///
    /// An entry whose time a velocity limit has already pruned away is not
    /// held by that limit (it can never count again there).
    pub fn add(&mut self, entry: &HistoryEntry) {
        for l in &mut self.limits {
            l.add(entry);
        }
        self.vesting.add(entry);
    }

    /// Stops counting `entry`, an entry given to [`Spending::add`] earlier
    /// (a request that failed, or is about to be decided again).
    ///
    /// Removal is exact: the same (time, amount) record comes out of every
    /// limit that still holds it, and the amount out of its vesting total.
    /// An entry that cannot be held (never added, or already removed) is
    /// refused with [`SpendingError::NotHeld`] and nothing changes.
    pub fn remove(&mut self, entry: &HistoryEntry) -> Result<(), SpendingError> {
        let mut held = Vec::with_capacity(self.limits.len());
        for (i, l) in self.limits.iter().enumerate() {
            held.push(l.holds(i, entry)?);
        }
        let vested = self.vesting.holds(entry)?;
        for (l, held) in self.limits.iter_mut().zip(held) {
            if held {
                l.remove_held(entry);
            }
        }
        if vested {
            self.vesting.remove_held(entry);
        }
        Ok(())
    }

    /// Drops, for each velocity limit, the entries that left its window at
    /// `now` (`time <= now - window_secs`).
    ///
    /// Precondition: `now` never goes back, and no evaluation is made at a
    /// time earlier than the latest prune. A `now` smaller than an earlier
    /// one drops nothing (the call is ignored). An evaluation whose window
    /// reaches an entry that was dropped is not answered with a smaller
    /// count: [`crate::evaluate`] denies it with an internal reason
    /// ([`SpendingError::Pruned`]). A caller whose clock may step back by up
    /// to `s` seconds prunes at `now - s` to keep that margin.
    pub fn prune(&mut self, now: u64) {
        for l in &mut self.limits {
            l.prune(now);
        }
    }

    /// Version of the policy these aggregates were built for.
    pub fn policy_version(&self) -> u64 {
        self.policy_version
    }

    /// Fingerprint of the policy shape these aggregates were built for (see
    /// [`Policy::spending_fingerprint`]).
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// Whether these aggregates answer for `policy`: its velocity limits
    /// (scope, window, asset, wallets) and vesting matchers are those they
    /// were built for. Another version with the same limits and vesting
    /// matchers fits too; anything else needs a rebuild.
    pub fn fits(&self, policy: &Policy) -> bool {
        self.fingerprint == policy.spending_fingerprint()
    }

    /// Entries held: one window record per velocity limit an entry counts
    /// for, plus one per vesting total.
    pub fn len(&self) -> usize {
        let records = usize::try_from(self.window_records()).unwrap_or(usize::MAX);
        records.saturating_add(self.vesting.keys)
    }

    /// True if nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Window records held, summed over the velocity limits.
    pub fn window_records(&self) -> u64 {
        self.limits
            .iter()
            .fold(0u64, |s, l| s.saturating_add(l.held))
    }

    /// Vesting totals held (distinct wallet, asset and destination).
    pub fn vesting_totals(&self) -> usize {
        self.vesting.keys
    }

    /// What velocity limit number `limit` (its index in the policy's
    /// `velocity` list) counts at `now` under scope value `key` (the wallet
    /// root, destination or initiator): the entries with
    /// `now - window_secs < time <= now`, without `exclude` (a request's own
    /// earlier entry).
    ///
    /// Errors: no such limit; the window reaches entries that were pruned;
    /// `exclude` counts here but is not held.
    pub fn window(
        &self,
        limit: usize,
        key: &str,
        now: u64,
        exclude: Option<&HistoryEntry>,
    ) -> Result<WindowTotal, SpendingError> {
        self.limits
            .get(limit)
            .ok_or(SpendingError::NoSuchLimit { limit })?
            .window(limit, key, now, exclude)
    }

    /// Everything released so far from `wallet` in `asset` to `destination`
    /// (saturated at `u128::MAX`), without `exclude`.
    ///
    /// Errors: no vesting rule of the policy matches `wallet` and `asset`
    /// (nothing is tracked for them); `exclude` counts here but is not held.
    pub fn released(
        &self,
        wallet: &str,
        asset: &str,
        destination: &str,
        exclude: Option<&HistoryEntry>,
    ) -> Result<u128, SpendingError> {
        if !self.vesting.tracks(wallet, asset) {
            return Err(SpendingError::NotTracked {
                wallet: wallet.to_string(),
                asset: asset.to_string(),
            });
        }
        let mut t = self
            .vesting
            .get(wallet, asset, destination)
            .copied()
            .unwrap_or_default();
        if let Some(e) = exclude
            .filter(|e| e.wallet == wallet && e.asset == asset && e.destination == destination)
        {
            if !t.could_hold(e.amount) || !t.sub(e.amount, 1) {
                return Err(SpendingError::ExcludeNotHeld {
                    time: e.time,
                    wallet: e.wallet.clone(),
                });
            }
        }
        Ok(t.report().amount)
    }
}
