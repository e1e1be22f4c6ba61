//! [`RiskState`]: everything remembered between requests, per entity.
//!
//! Per entity the state is small and bounded: windowed aggregates (see
//! `windows`), an hourly rate baseline and, for customers, amount baselines
//! for their last few assets, the hashes of their last 256 destinations and
//! 32 devices, their last country and their recent signature refusals. Ids
//! of recent destinations and devices are kept as 64-bit FNV-1a hashes (8
//! bytes instead of a string): two of a customer's 256 destinations collide
//! with probability below 2^-48.
//!
//! Time never goes back: a request stamped before the latest time the state
//! has seen is assessed and recorded at that latest time, so windows only
//! slide forward and expired buckets can be dropped for good.

use std::collections::HashMap;

use crate::baseline::{AmountStats, RateBaseline};
use crate::error::InputError;
use crate::features::{EntityFeatures, EntityKind, Features};
use crate::input::{canonical_destination, check_id, check_time, CountryCode, RiskRequest};
use crate::tree::RiskTree;
use crate::windows::{fnv1a, Activity, Window, WindowTotal};

/// Destinations remembered per customer for `first_destination`.
pub const RECENT_DESTINATIONS: usize = 256;
/// Devices remembered per customer for `first_device`.
pub const RECENT_DEVICES: usize = 32;
/// Assets whose amount baseline each customer keeps.
pub const AMOUNT_ASSETS: usize = 4;
/// Refusal times kept per customer and device (enough for any sane
/// `refusals_at_least`; the count saturates here).
pub const MAX_REFUSALS: usize = 16;
/// Window of `device_signature_refusals`, seconds.
pub const REFUSAL_WINDOW_SECS: u64 = 3600;
/// Default time an idle customer, device, wallet or merchant is kept.
pub const DEFAULT_RETENTION_SECS: u64 = 90 * 86_400;
/// Time an idle destination is kept: it only holds windowed aggregates
/// and a rate baseline, and there can be many more of them.
pub const DESTINATION_RETENTION_SECS: u64 = 8 * 86_400;

/// Windowed activity and rate baseline: what every entity has.
#[derive(Debug, Clone)]
struct Entity {
    activity: Activity,
    rate: RateBaseline,
    last_seen: u64,
}

impl Entity {
    fn new(now: u64) -> Entity {
        Entity {
            activity: Activity::default(),
            rate: RateBaseline::new(hour(now)),
            last_seen: now,
        }
    }

    fn record(&mut self, now: u64, asset: u64, amount: u128) {
        self.activity.add(now, asset, amount);
        self.rate.record(hour(now));
        self.last_seen = now;
    }
}

fn hour(now: u64) -> u32 {
    // `now` is at most MAX_TIME, so this fits.
    u32::try_from(now / 3600).unwrap_or(u32::MAX)
}

/// The features of an entity, from its state (or none) plus this request.
fn entity_features(
    e: Option<&Entity>,
    present: bool,
    now: u64,
    asset: u64,
    amount: u128,
) -> EntityFeatures {
    if !present {
        return EntityFeatures::default();
    }
    let mut f = EntityFeatures {
        present: true,
        ..EntityFeatures::default()
    };
    for w in Window::ALL {
        let past = e
            .map(|e| e.activity.total(w, now, asset))
            .unwrap_or_default();
        f.windows[w.index()] = WindowTotal {
            count: past.count.saturating_add(1),
            sum: past.sum.saturating_add(amount),
        };
    }
    f.rate_z = e.map(|e| e.rate.z(hour(now))).unwrap_or(0.0);
    f
}

/// Hashes of recently used ids, least recent first.
#[derive(Debug, Clone, Default)]
struct RecentSet(Vec<u64>);

impl RecentSet {
    fn contains(&self, h: u64) -> bool {
        self.0.contains(&h)
    }

    /// Marks `h` as the most recent, evicting the least recent beyond `cap`.
    fn touch(&mut self, h: u64, cap: usize) {
        if let Some(i) = self.0.iter().position(|x| *x == h) {
            self.0.remove(i);
        } else if self.0.len() >= cap {
            self.0.remove(0);
        }
        self.0.push(h);
    }
}

/// Recent refusal times, oldest first. Boxed: most customers never have
/// one, and an empty `Option<Box<_>>` costs 8 bytes where a `Vec` costs 24.
#[derive(Debug, Clone, Default)]
#[allow(clippy::box_collection)] // the extra allocation is the point: 8 bytes inline
struct Refusals(Option<Box<Vec<u64>>>);

impl Refusals {
    fn record(&mut self, now: u64) {
        let times = self.0.get_or_insert_with(Box::default);
        times.retain(|t| t + REFUSAL_WINDOW_SECS > now);
        if times.len() >= MAX_REFUSALS {
            times.remove(0);
        }
        times.push(now);
    }

    fn count(&self, now: u64) -> u32 {
        let n = self.0.as_ref().map_or(0, |times| {
            times
                .iter()
                .filter(|t| **t <= now && **t + REFUSAL_WINDOW_SECS > now)
                .count()
        });
        u32::try_from(n).unwrap_or(u32::MAX)
    }
}

#[derive(Debug, Clone)]
struct Device {
    entity: Entity,
    refusals: Refusals,
}

#[derive(Debug, Clone)]
struct Customer {
    entity: Entity,
    /// (asset hash, last used, amounts), at most [`AMOUNT_ASSETS`].
    amounts: Vec<(u64, u64, AmountStats)>,
    destinations: RecentSet,
    devices: RecentSet,
    last_country: Option<(CountryCode, u64)>,
    refusals: Refusals,
}

impl Customer {
    fn new(now: u64) -> Customer {
        Customer {
            entity: Entity::new(now),
            amounts: Vec::new(),
            destinations: RecentSet::default(),
            devices: RecentSet::default(),
            last_country: None,
            refusals: Refusals::default(),
        }
    }

    fn amount_stats(&self, asset: u64) -> AmountStats {
        self.amounts
            .iter()
            .find(|(h, _, _)| *h == asset)
            .map(|(_, _, s)| *s)
            .unwrap_or_default()
    }

    fn record_amount(&mut self, now: u64, asset: u64, amount: u128) {
        if let Some(e) = self.amounts.iter_mut().find(|(h, _, _)| *h == asset) {
            e.1 = now;
            e.2.record(amount);
            return;
        }
        if self.amounts.len() >= AMOUNT_ASSETS {
            // Least recently used goes; ties: the first, as on every replica.
            let mut victim = 0;
            for (i, e) in self.amounts.iter().enumerate() {
                if e.1 < self.amounts[victim].1 {
                    victim = i;
                }
            }
            self.amounts.remove(victim);
        }
        let mut s = AmountStats::default();
        s.record(amount);
        self.amounts.push((asset, now, s));
    }
}

/// Everything the risk engine remembers, for every entity.
///
/// Deterministic: replaying the same requests in the same order into a new
/// state gives the same features, on any machine (fixed hashes, no clock,
/// IEEE-exact statistics).
#[derive(Debug, Clone)]
pub struct RiskState {
    customers: HashMap<Box<str>, Customer>,
    devices: HashMap<Box<str>, Device>,
    destinations: HashMap<Box<str>, Entity>,
    wallets: HashMap<Box<str>, Entity>,
    merchants: HashMap<Box<str>, Entity>,
    /// Latest time seen.
    now: u64,
    retention_secs: u64,
}

impl Default for RiskState {
    fn default() -> Self {
        RiskState::new()
    }
}

/// Looks up `key`, inserting `new()` first when it is missing (without
/// allocating the key when present). `None` cannot happen; callers skip the
/// update rather than panic.
fn entry<'m, V>(
    map: &'m mut HashMap<Box<str>, V>,
    key: &str,
    new: impl FnOnce() -> V,
) -> Option<&'m mut V> {
    if !map.contains_key(key) {
        map.insert(key.into(), new());
    }
    map.get_mut(key)
}

impl RiskState {
    /// An empty state keeping idle entities [`DEFAULT_RETENTION_SECS`].
    pub fn new() -> RiskState {
        RiskState::with_retention(DEFAULT_RETENTION_SECS)
    }

    /// An empty state keeping idle customers, devices, wallets and
    /// merchants `retention_secs` (destinations: at most
    /// [`DESTINATION_RETENTION_SECS`]). A pruned customer's next payment
    /// looks like a first one (new destination, new device).
    pub fn with_retention(retention_secs: u64) -> RiskState {
        RiskState {
            customers: HashMap::new(),
            devices: HashMap::new(),
            destinations: HashMap::new(),
            wallets: HashMap::new(),
            merchants: HashMap::new(),
            now: 0,
            retention_secs,
        }
    }

    /// The latest time seen.
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Number of entities of a kind held.
    pub fn len(&self, kind: EntityKind) -> usize {
        match kind {
            EntityKind::Customer => self.customers.len(),
            EntityKind::Device => self.devices.len(),
            EntityKind::Destination => self.destinations.len(),
            EntityKind::Wallet => self.wallets.len(),
            EntityKind::Merchant => self.merchants.len(),
        }
    }

    /// True if no entity is held.
    pub fn is_empty(&self) -> bool {
        EntityKind::ALL.iter().all(|k| self.len(*k) == 0)
    }

    fn entity(&self, kind: EntityKind, key: &str) -> Option<&Entity> {
        match kind {
            EntityKind::Customer => self.customers.get(key).map(|c| &c.entity),
            EntityKind::Device => self.devices.get(key).map(|d| &d.entity),
            EntityKind::Destination => self.destinations.get(key),
            EntityKind::Wallet => self.wallets.get(key),
            EntityKind::Merchant => self.merchants.get(key),
        }
    }

    /// Count and sum (in `asset`) of the requests observed for one entity
    /// in window `w` at `now` (not clamped; past requests only).
    pub fn window_total(
        &self,
        kind: EntityKind,
        key: &str,
        asset: &str,
        w: Window,
        now: u64,
    ) -> WindowTotal {
        self.entity(kind, key)
            .map(|e| e.activity.total(w, now, fnv1a(&[asset.as_bytes()])))
            .unwrap_or_default()
    }

    /// The features of `req` against the state as it is (before `req` is
    /// observed), with the tree's lists and `min_travel_secs`.
    pub fn features(&self, tree: &RiskTree, req: &RiskRequest) -> Result<Features, InputError> {
        req.validate()?;
        let now = req.at.max(self.now);
        let p = &req.payment;
        let c = &req.context;
        let asset = fnv1a(&[p.asset.as_bytes()]);
        let amount = p.amount;
        let ent = |kind, key: Option<&str>| match key {
            Some(k) => entity_features(self.entity(kind, k), true, now, asset, amount),
            None => EntityFeatures::default(),
        };
        let customer = ent(EntityKind::Customer, c.customer_id.as_deref());
        let device = ent(EntityKind::Device, c.device_id.as_deref());
        let dest = canonical_destination(&p.destination);
        let destination = ent(EntityKind::Destination, Some(&dest));
        let wallet = ent(EntityKind::Wallet, Some(&p.wallet));
        let merchant = ent(EntityKind::Merchant, p.merchant.as_deref());
        let rate_spike_z = [&customer, &device, &destination, &wallet, &merchant]
            .iter()
            .map(|e| e.rate_z)
            .fold(0.0_f64, f64::max);

        let cust = c
            .customer_id
            .as_deref()
            .and_then(|id| self.customers.get(id));
        let dest_hash = fnv1a(&[dest.as_bytes()]);
        let device_hash = c.device_id.as_deref().map(|d| fnv1a(&[d.as_bytes()]));
        let stats = cust.map(|k| k.amount_stats(asset)).unwrap_or_default();
        let (amount_z, amount_ratio) = stats.score(amount);
        let (country_changed, impossible_travel) =
            match (c.country, cust.and_then(|k| k.last_country)) {
                (Some(now_c), Some((last_c, last_t))) if now_c != last_c => {
                    let min = tree.document().min_travel_secs;
                    (true, now.saturating_sub(last_t) < min)
                }
                _ => (false, false),
            };
        let refusals_customer = cust.map(|k| k.refusals.count(now)).unwrap_or(0);
        let refusals_device = c
            .device_id
            .as_deref()
            .and_then(|d| self.devices.get(d))
            .map(|d| d.refusals.count(now))
            .unwrap_or(0);
        let mut auth = c.auth.clone();
        auth.sort_unstable();
        auth.dedup();
        Ok(Features {
            at: now,
            chain: p.chain.clone(),
            asset: p.asset.clone(),
            amount,
            customer,
            device,
            destination,
            wallet,
            merchant,
            rate_spike_z,
            amount_z,
            amount_ratio,
            amount_history: stats.count(),
            first_destination: c.customer_id.is_some()
                && !cust.is_some_and(|k| k.destinations.contains(dest_hash)),
            first_device: match device_hash {
                Some(h) => c.customer_id.is_some() && !cust.is_some_and(|k| k.devices.contains(h)),
                None => false,
            },
            country: c.country,
            country_changed,
            impossible_travel,
            listed_country: c.country.is_some_and(|k| tree.is_listed_country(k)),
            listed_destination: tree.is_listed_destination(&p.destination),
            listed_ip: c.ip.is_some_and(|ip| tree.is_listed_ip(ip)),
            device_signature_refusals: refusals_customer.max(refusals_device),
            kyc_tier: c.kyc_tier,
            auth,
        })
    }

    /// Records `req` (after its decision): windows, baselines, recent
    /// destinations and devices, last country. O(1) per entity, bounded
    /// memory per entity.
    pub fn observe(&mut self, req: &RiskRequest) -> Result<(), InputError> {
        req.validate()?;
        let now = req.at.max(self.now);
        self.now = now;
        let p = &req.payment;
        let c = &req.context;
        let asset = fnv1a(&[p.asset.as_bytes()]);
        let amount = p.amount;
        let dest = canonical_destination(&p.destination);
        if let Some(id) = c.customer_id.as_deref() {
            if let Some(k) = entry(&mut self.customers, id, || Customer::new(now)) {
                k.entity.record(now, asset, amount);
                k.record_amount(now, asset, amount);
                k.destinations
                    .touch(fnv1a(&[dest.as_bytes()]), RECENT_DESTINATIONS);
                if let Some(d) = c.device_id.as_deref() {
                    k.devices.touch(fnv1a(&[d.as_bytes()]), RECENT_DEVICES);
                }
                if let Some(country) = c.country {
                    k.last_country = Some((country, now));
                }
            }
        }
        if let Some(id) = c.device_id.as_deref() {
            if let Some(d) = entry(&mut self.devices, id, || Device {
                entity: Entity::new(now),
                refusals: Refusals::default(),
            }) {
                d.entity.record(now, asset, amount);
            }
        }
        if let Some(e) = entry(&mut self.destinations, &dest, || Entity::new(now)) {
            e.record(now, asset, amount);
        }
        if let Some(e) = entry(&mut self.wallets, &p.wallet, || Entity::new(now)) {
            e.record(now, asset, amount);
        }
        if let Some(id) = p.merchant.as_deref() {
            if let Some(e) = entry(&mut self.merchants, id, || Entity::new(now)) {
                e.record(now, asset, amount);
            }
        }
        Ok(())
    }

    /// Records a refused device signature (a request whose device signature
    /// did not verify) for the customer and/or the device.
    pub fn record_refusal(
        &mut self,
        customer: Option<&str>,
        device: Option<&str>,
        at: u64,
    ) -> Result<(), InputError> {
        if let Some(id) = customer {
            check_id("customer", id)?;
        }
        if let Some(id) = device {
            check_id("device", id)?;
        }
        check_time(at)?;
        let now = at.max(self.now);
        self.now = now;
        if let Some(id) = customer {
            if let Some(k) = entry(&mut self.customers, id, || Customer::new(now)) {
                k.refusals.record(now);
                k.entity.last_seen = k.entity.last_seen.max(now);
            }
        }
        if let Some(id) = device {
            if let Some(d) = entry(&mut self.devices, id, || Device {
                entity: Entity::new(now),
                refusals: Refusals::default(),
            }) {
                d.refusals.record(now);
                d.entity.last_seen = d.entity.last_seen.max(now);
            }
        }
        Ok(())
    }

    /// Drops entities idle for longer than their retention at `now`, and the
    /// expired buckets of the others. Cost: one pass over every entity, so
    /// call it periodically, not per request.
    pub fn prune(&mut self, now: u64) {
        let now = now.max(self.now);
        self.now = now;
        let keep = self.retention_secs;
        let keep_dest = keep.min(DESTINATION_RETENTION_SECS);
        fn fresh(e: &mut Entity, now: u64, keep: u64) -> bool {
            if e.last_seen.saturating_add(keep) <= now {
                return false;
            }
            e.activity.expire(now);
            e.activity.shrink();
            true
        }
        self.customers
            .retain(|_, c| fresh(&mut c.entity, now, keep));
        self.devices.retain(|_, d| fresh(&mut d.entity, now, keep));
        self.destinations.retain(|_, e| fresh(e, now, keep_dest));
        self.wallets.retain(|_, e| fresh(e, now, keep));
        self.merchants.retain(|_, e| fresh(e, now, keep));
        self.customers.shrink_to_fit();
        self.devices.shrink_to_fit();
        self.destinations.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_entity_structs_stay_compact() {
        // A million customers must fit in memory: keep the fixed part small
        // (the heap parts grow only with activity and are bounded).
        assert!(
            std::mem::size_of::<Customer>() <= 192,
            "{}",
            std::mem::size_of::<Customer>()
        );
        assert!(
            std::mem::size_of::<Entity>() <= 96,
            "{}",
            std::mem::size_of::<Entity>()
        );
    }

    #[test]
    fn recent_set_evicts_least_recent() {
        let mut s = RecentSet::default();
        for h in 0..3 {
            s.touch(h, 3);
        }
        s.touch(0, 3); // 0 is now the most recent
        s.touch(9, 3); // evicts 1
        assert!(s.contains(0) && s.contains(2) && s.contains(9) && !s.contains(1));
    }

    #[test]
    fn refusals_count_the_last_hour_only() {
        let mut r = Refusals::default();
        r.record(1000);
        r.record(2000);
        assert_eq!(r.count(2000), 2);
        assert_eq!(r.count(1000 + REFUSAL_WINDOW_SECS), 1);
        assert_eq!(r.count(2000 + REFUSAL_WINDOW_SECS), 0);
    }
}
