//! `keyfold-risk-stream`: runs a decision tree over a labelled synthetic
//! stream of payments and reports how well it works, not only that it runs.
//!
//! Normal customers pay with a daily rhythm (waking hours in their own time
//! zone, a few regular destinations, amounts around their own typical
//! amount, an occasional new destination, larger payment or trip abroad),
//! and do the legitimate things that look like attacks: one payment in 500
//! is a large purchase (15-40x their usual amount), one customer in 200
//! changes phones (a new device from then on), and one in 50 sometimes pays
//! in a burst (eight payments within ten minutes, splitting a bill).
//! Attacks are injected into the same stream against customers with at
//! least three days of history, one episode at a time per victim:
//! - `stolen_device_burst`: the victim's own device pays a new destination
//!   ten times, 30 s apart;
//! - `geo_jump`: 20 minutes after the victim paid at home, a payment from
//!   another continent, new device, new destination, 5x the usual amount;
//! - `new_device_large`: a newly bound device pays 30x the usual amount to a
//!   new destination;
//! - `slow_drain`: the victim's device pays a new destination every hour for
//!   a day, each payment small enough to pass alone;
//! - `replayed_signature`: four replays of a captured device signature are
//!   refused at the API (counted with `record_refusal`), then the device is
//!   used to pay.
//!
//! The stream is processed in time order the way the coordinator will: a
//! frozen device or customer pays nothing more; otherwise the request's
//! features are read, the tree decides, and the request is observed. A
//! payment counts as stopped when it is held (`review`), frozen, denied, or
//! asked for a step-up it cannot satisfy. Amounts are integer base units
//! (USDC, 6 decimals); the figures of `docs/risk.md` come from the defaults.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Instant;

use clap::Parser;
use keyfold_risk::{
    default_tree, evaluate, Action, AuthMethod, ClientContext, CountryCode, FreezeScope, KycTier,
    Payment, RiskRequest, RiskState, RiskTree,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(
    about = "Detection and false-positive rates of a risk tree on a labelled synthetic stream"
)]
struct Args {
    /// Normal customers.
    #[arg(long, default_value_t = 10_000)]
    customers: usize,
    /// Days simulated.
    #[arg(long, default_value_t = 14)]
    days: u64,
    /// Attack episodes of each kind.
    #[arg(long, default_value_t = 200)]
    attacks: usize,
    /// Random seed (the stream is deterministic for a seed).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// A decision tree TOML (default: the shipped default tree).
    #[arg(long)]
    tree: Option<std::path::PathBuf>,
    /// Hours an officer takes to review and lift a freeze.
    #[arg(long, default_value_t = 24)]
    review_hours: u64,
    /// Write the report as JSON here as well.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

const START: u64 = 1_798_761_600; // 2027-01-01T00:00:00Z
const DAY: u64 = 86_400;
const USDC: u128 = 1_000_000;

/// Countries with their UTC offset in hours and continent (for trips).
const COUNTRIES: [(&str, i64, u8); 10] = [
    ("DE", 1, 0),
    ("FR", 1, 0),
    ("GB", 0, 0),
    ("US", -5, 1),
    ("BR", -3, 2),
    ("IN", 5, 3),
    ("JP", 9, 3),
    ("NG", 1, 4),
    ("SG", 8, 3),
    ("CA", -5, 1),
];

const KINDS: [&str; 5] = [
    "stolen_device_burst",
    "geo_jump",
    "new_device_large",
    "slow_drain",
    "replayed_signature",
];

struct Customer {
    id: String,
    country: usize,
    devices: Vec<String>,
    destinations: Vec<String>,
    typical: u128,
    per_day: f64,
    kyc: KycTier,
}

/// One event of the stream.
#[derive(Clone)]
enum Event {
    Pay {
        customer: usize,
        device: String,
        country: usize,
        destination: String,
        amount: u128,
        /// `None`: a normal payment; else the attack episode's index.
        episode: Option<usize>,
    },
    Refusal {
        customer: usize,
        device: String,
    },
}

#[derive(Default, Serialize)]
struct KindReport {
    episodes: usize,
    detected: usize,
    payments: usize,
    payments_stopped: usize,
    /// Payments of the episode let through before it was first stopped.
    let_through_before_detection: usize,
    /// Base units the attacker got (payments allowed), USDC.
    value_let_through_usdc: String,
    #[serde(skip)]
    value: u128,
}

#[derive(Serialize)]
struct Report {
    customers: usize,
    days: u64,
    seed: u64,
    tree_version: u64,
    normal_payments: usize,
    normal_stopped: usize,
    false_positive_rate: f64,
    /// A victim's own payments in the two days after an attack on them
    /// (not counted as false positives, but not free either).
    victim_payments: usize,
    victim_payments_stopped: usize,
    normal_step_up_required: usize,
    normal_stopped_by_action: BTreeMap<String, usize>,
    normal_stopped_by_rule: BTreeMap<String, usize>,
    attacks: BTreeMap<String, KindReport>,
    detection_rate: f64,
    requests: usize,
    engine_micros_per_request: f64,
}

fn id(prefix: &str, n: usize) -> String {
    format!("{prefix}-{n}")
}

fn destination(rng: &mut StdRng) -> String {
    let b: [u8; 20] = rng.gen();
    format!("0x{}", hex::encode(b))
}

fn customers(rng: &mut StdRng, n: usize) -> Vec<Customer> {
    (0..n)
        .map(|i| {
            let devices = if rng.gen_bool(0.3) { 2 } else { 1 };
            let typical_units: u128 = [5, 20, 50, 120, 400][rng.gen_range(0..5)];
            let kyc = match rng.gen_range(0..10) {
                0 => KycTier::None,
                1 | 2 => KycTier::Full,
                _ => KycTier::Basic,
            };
            Customer {
                id: id("c", i),
                country: rng.gen_range(0..COUNTRIES.len()),
                devices: (0..devices).map(|d| format!("dev-{i}-{d}")).collect(),
                destinations: (0..rng.gen_range(3..7)).map(|_| destination(rng)).collect(),
                typical: typical_units * USDC * u128::from(rng.gen_range(50u32..150)) / 100,
                per_day: rng.gen_range(0.2..2.5),
                kyc,
            }
        })
        .collect()
}

/// A waking-hours time on day `d` in the customer's time zone.
fn waking(rng: &mut StdRng, c: &Customer, d: u64) -> u64 {
    let local = rng.gen_range(8 * 3600..22 * 3600);
    let offset = COUNTRIES[c.country].1 * 3600;
    let t = i64::try_from(START + d * DAY + local).unwrap_or(i64::MAX) - offset;
    u64::try_from(t).unwrap_or(START)
}

fn normal_events(rng: &mut StdRng, cs: &[Customer], days: u64) -> Vec<(u64, Event)> {
    let mut out = Vec::new();
    for (i, c) in cs.iter().enumerate() {
        // One customer in a hundred takes one trip abroad, flying a day.
        let trip = rng.gen_bool(0.01).then(|| {
            (
                rng.gen_range(2..days.max(3)),
                rng.gen_range(0..COUNTRIES.len()),
            )
        });
        // A new phone from this day on.
        let new_phone = rng.gen_bool(0.005).then(|| rng.gen_range(1..days.max(2)));
        let bursty = rng.gen_bool(0.02);
        for d in 0..days {
            // Poisson-like: the integer part, plus one with the fraction.
            let mut k = c.per_day.floor() as u32;
            if rng.gen_bool(c.per_day.fract()) {
                k += 1;
            }
            let country = match trip {
                Some((from, to)) if d >= from && d < from + 5 => to,
                _ => c.country,
            };
            let device_of = |rng: &mut StdRng| match new_phone {
                Some(from) if d >= from => format!("dev-{i}-new"),
                _ => c.devices[rng.gen_range(0..c.devices.len())].clone(),
            };
            if bursty && rng.gen_bool(0.1) {
                let t = waking(rng, c, d);
                let device = device_of(rng);
                for b in 0..8 {
                    out.push((
                        t + 70 * b,
                        Event::Pay {
                            customer: i,
                            device: device.clone(),
                            country,
                            destination: c.destinations[rng.gen_range(0..c.destinations.len())]
                                .clone(),
                            amount: c.typical / 4,
                            episode: None,
                        },
                    ));
                }
            }
            for _ in 0..k {
                let t = waking(rng, c, d);
                let destination = if rng.gen_bool(0.05) {
                    destination(rng)
                } else {
                    c.destinations[rng.gen_range(0..c.destinations.len())].clone()
                };
                let factor = if rng.gen_bool(0.002) {
                    rng.gen_range(1500u128..4000)
                } else if rng.gen_bool(0.03) {
                    rng.gen_range(150u128..300)
                } else {
                    rng.gen_range(60u128..140)
                };
                out.push((
                    t,
                    Event::Pay {
                        customer: i,
                        device: device_of(rng),
                        country,
                        destination,
                        amount: c.typical * factor / 100,
                        episode: None,
                    },
                ));
            }
        }
    }
    out
}

/// An attack episode: its kind, its victim and when it starts.
type Episode = (&'static str, usize, u64);

/// The attack episodes and their events.
fn attack_events(
    rng: &mut StdRng,
    cs: &[Customer],
    days: u64,
    per_kind: usize,
) -> (Vec<Episode>, Vec<(u64, Event)>) {
    let mut episodes = Vec::new();
    let mut out = Vec::new();
    let mut victims = HashSet::new();
    for kind in KINDS {
        for _ in 0..per_kind {
            // A victim not attacked before (one episode per victim).
            let v = loop {
                let v = rng.gen_range(0..cs.len());
                if victims.insert(v) || victims.len() >= cs.len() {
                    break v;
                }
            };
            let c = &cs[v];
            let e = episodes.len();
            let day = rng.gen_range(3..days.max(4));
            let t0 = waking(rng, c, day);
            episodes.push((kind, v, t0));
            let loot = destination(rng);
            let own = c.devices[0].clone();
            let pay = |t: u64, device: &str, country: usize, amount: u128| {
                (
                    t,
                    Event::Pay {
                        customer: v,
                        device: device.to_string(),
                        country,
                        destination: loot.clone(),
                        amount,
                        episode: Some(e),
                    },
                )
            };
            match kind {
                "stolen_device_burst" => {
                    for k in 0..10 {
                        out.push(pay(t0 + 30 * k, &own, c.country, c.typical * 2));
                    }
                }
                "geo_jump" => {
                    // The victim pays at home (a normal payment) ...
                    out.push((
                        t0,
                        Event::Pay {
                            customer: v,
                            device: own.clone(),
                            country: c.country,
                            destination: c.destinations[0].clone(),
                            amount: c.typical,
                            episode: None,
                        },
                    ));
                    // ... and 20 minutes later someone pays from elsewhere.
                    let far = (0..COUNTRIES.len())
                        .find(|&k| COUNTRIES[k].2 != COUNTRIES[c.country].2)
                        .unwrap_or(0);
                    out.push(pay(t0 + 1200, &format!("att-{e}"), far, c.typical * 5));
                }
                "new_device_large" => {
                    out.push(pay(t0, &format!("att-{e}"), c.country, c.typical * 30));
                }
                "slow_drain" => {
                    // Under the burst limits, each small; together a day's
                    // worth of the victim's money.
                    let each = (c.typical * 3).max(600 * USDC);
                    for k in 0..24 {
                        out.push(pay(t0 + 3600 * k, &own, c.country, each));
                    }
                }
                _ => {
                    for k in 0..4 {
                        out.push((
                            t0 + 5 * k,
                            Event::Refusal {
                                customer: v,
                                device: own.clone(),
                            },
                        ));
                    }
                    out.push(pay(t0 + 30, &own, c.country, c.typical * 2));
                }
            }
        }
    }
    (episodes, out)
}

fn request(
    c: &Customer,
    device: &str,
    country: usize,
    dest: &str,
    amount: u128,
    at: u64,
) -> RiskRequest {
    RiskRequest {
        payment: Payment {
            chain: "base".into(),
            asset: "USDC".into(),
            amount,
            destination: dest.to_string(),
            wallet: "hot-base-usdc".into(),
            merchant: Some("shop".into()),
        },
        context: ClientContext {
            customer_id: Some(c.id.clone()),
            device_id: Some(device.to_string()),
            ip: None,
            country: COUNTRIES[country].0.parse::<CountryCode>().ok(),
            kyc_tier: c.kyc,
            // Every payment is signed by its device; nobody in the stream
            // holds the victim's one-time codes.
            auth: vec![AuthMethod::DeviceSignature],
        },
        at,
    }
}

/// Generates the stream of `a` and runs `tree` over it.
fn run(a: &Args, tree: &RiskTree) -> Result<Report, String> {
    let mut rng = StdRng::seed_from_u64(a.seed);
    let cs = customers(&mut rng, a.customers.max(1));
    let mut events = normal_events(&mut rng, &cs, a.days);
    let (episodes, attacks) = attack_events(&mut rng, &cs, a.days, a.attacks);
    events.extend(attacks);
    // Stable order: time, then the order generated (deterministic).
    events.sort_by_key(|(t, _)| *t);

    let mut state = RiskState::new();
    // Frozen until an officer lifts it (`review_hours` later).
    let mut frozen_devices: HashMap<String, u64> = HashMap::new();
    let mut frozen_customers: HashMap<usize, u64> = HashMap::new();
    let review = a.review_hours * 3600;
    let mut attacked: HashMap<usize, u64> = HashMap::new();
    let mut kinds: BTreeMap<String, KindReport> = BTreeMap::new();
    for (kind, victim, t0) in &episodes {
        kinds.entry(kind.to_string()).or_default().episodes += 1;
        attacked.insert(*victim, *t0);
    }
    let (mut victim_payments, mut victim_stopped) = (0usize, 0usize);
    let mut detected = vec![false; episodes.len()];
    let (mut normal, mut normal_stopped, mut step_ups) = (0usize, 0usize, 0usize);
    let mut by_action: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_rule: BTreeMap<String, usize> = BTreeMap::new();
    let mut requests = 0usize;
    let mut engine = std::time::Duration::ZERO;
    for (at, ev) in &events {
        match ev {
            Event::Refusal { customer, device } => {
                state
                    .record_refusal(Some(&cs[*customer].id), Some(device), *at)
                    .map_err(|e| e.to_string())?;
            }
            Event::Pay {
                customer,
                device,
                country,
                destination,
                amount,
                episode,
            } => {
                let c = &cs[*customer];
                let frozen = frozen_devices.get(device).is_some_and(|u| at < u)
                    || frozen_customers.get(customer).is_some_and(|u| at < u);
                let (stopped, action, reasons) = if frozen {
                    (true, "frozen_before".to_string(), Vec::new())
                } else {
                    let req = request(c, device, *country, destination, *amount, *at);
                    let t = Instant::now();
                    let f = state.features(tree, &req).map_err(|e| e.to_string())?;
                    let d = evaluate(tree, &f);
                    state.observe(&req).map_err(|e| e.to_string())?;
                    engine += t.elapsed();
                    requests += 1;
                    if d.action == Action::Freeze {
                        match d.freeze_scope {
                            Some(FreezeScope::Customer) => {
                                frozen_customers.insert(*customer, at + review);
                            }
                            _ => {
                                frozen_devices.insert(device.clone(), at + review);
                            }
                        }
                    }
                    if episode.is_none() && (d.action == Action::StepUp || d.step_up_satisfied) {
                        step_ups += 1;
                    }
                    let stopped = d.action > Action::StepUp
                        || (d.action == Action::StepUp && !d.step_up_satisfied);
                    (
                        stopped,
                        d.action.name().to_string(),
                        d.reasons.into_iter().map(|r| r.rule).collect::<Vec<_>>(),
                    )
                };
                let victim = attacked
                    .get(customer)
                    .is_some_and(|t0| (*t0..t0 + 2 * DAY).contains(at));
                match episode {
                    None if victim => {
                        victim_payments += 1;
                        victim_stopped += usize::from(stopped);
                    }
                    None => {
                        normal += 1;
                        if stopped {
                            normal_stopped += 1;
                            *by_action.entry(action).or_default() += 1;
                            for r in reasons {
                                *by_rule.entry(r).or_default() += 1;
                            }
                        }
                    }
                    Some(e) => {
                        let k = kinds.entry(episodes[*e].0.to_string()).or_default();
                        k.payments += 1;
                        if stopped {
                            k.payments_stopped += 1;
                            if !detected[*e] {
                                detected[*e] = true;
                                k.detected += 1;
                            }
                        } else {
                            k.value += amount;
                            if !detected[*e] {
                                k.let_through_before_detection += 1;
                            }
                        }
                    }
                }
            }
        }
    }
    for k in kinds.values_mut() {
        k.value_let_through_usdc = format!("{}.{:06}", k.value / USDC, k.value % USDC);
    }
    let total_episodes = episodes.len().max(1);
    let report = Report {
        customers: cs.len(),
        days: a.days,
        seed: a.seed,
        tree_version: tree.version(),
        normal_payments: normal,
        normal_stopped,
        false_positive_rate: normal_stopped as f64 / normal.max(1) as f64,
        victim_payments,
        victim_payments_stopped: victim_stopped,
        normal_step_up_required: step_ups,
        normal_stopped_by_action: by_action,
        normal_stopped_by_rule: by_rule,
        detection_rate: detected.iter().filter(|d| **d).count() as f64 / total_episodes as f64,
        attacks: kinds,
        requests,
        engine_micros_per_request: engine.as_secs_f64() * 1e6 / requests.max(1) as f64,
    };
    Ok(report)
}

fn main() -> Result<(), String> {
    let a = Args::parse();
    let tree: RiskTree = match &a.tree {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            RiskTree::from_toml(&text).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => default_tree().map_err(|e| format!("the default tree: {e}"))?,
    };
    let report = run(&a, &tree)?;
    println!(
        "{} customers, {} days, seed {}: {} normal payments, {} stopped ({:.3} %), {} asked to step up",
        report.customers,
        report.days,
        report.seed,
        report.normal_payments,
        report.normal_stopped,
        report.false_positive_rate * 100.0,
        report.normal_step_up_required
    );
    println!(
        "victims' own payments in the 2 days after an attack: {}, stopped {}",
        report.victim_payments, report.victim_payments_stopped
    );
    println!(
        "| attack | episodes | detected | payments let through before | value let through (USDC) |"
    );
    println!("|---|---|---|---|---|");
    for (name, k) in &report.attacks {
        println!(
            "| {name} | {} | {} ({:.1} %) | {} | {} |",
            k.episodes,
            k.detected,
            k.detected as f64 * 100.0 / k.episodes.max(1) as f64,
            k.let_through_before_detection,
            k.value_let_through_usdc
        );
    }
    println!(
        "detection {:.1} %, {} requests, {:.2} us per request (features + decision + observe)",
        report.detection_rate * 100.0,
        report.requests,
        report.engine_micros_per_request
    );
    if let Some(p) = &a.out {
        let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
        std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> Args {
        Args {
            customers: 1000,
            days: 7,
            attacks: 20,
            seed,
            review_hours: 24,
            tree: None,
            out: None,
        }
    }

    /// A regression guard for the default tree on a short stream: it keeps
    /// catching the attacks and leaves normal customers alone.
    #[test]
    fn the_default_tree_catches_attacks_and_spares_normal_customers() {
        let tree = default_tree().unwrap();
        let r = run(&small(7), &tree).unwrap();
        assert!(r.normal_payments > 5_000, "{}", r.normal_payments);
        assert!(r.detection_rate >= 0.9, "detection {}", r.detection_rate);
        assert!(
            r.false_positive_rate <= 0.02,
            "false positives {}",
            r.false_positive_rate
        );
        for kind in [
            "geo_jump",
            "replayed_signature",
            "stolen_device_burst",
            "slow_drain",
        ] {
            assert_eq!(r.attacks[kind].detected, 20, "{kind}");
        }
    }

    #[test]
    fn a_tree_that_allows_everything_detects_nothing() {
        let allow = "version = 1\n[[rules]]\nname = \"noop\"\nwhen = { first_device = true }\n\
                     score = 1\n[[thresholds]]\nfrom = 0\nto = 100\naction = { kind = \"allow\" }\n";
        let tree = RiskTree::from_toml(allow).unwrap();
        let r = run(&small(7), &tree).unwrap();
        assert_eq!(r.detection_rate, 0.0);
        assert_eq!(r.normal_stopped, 0);
    }

    #[test]
    fn the_stream_is_the_same_for_a_seed() {
        let tree = default_tree().unwrap();
        let a = run(&small(3), &tree).unwrap();
        let b = run(&small(3), &tree).unwrap();
        assert_eq!(
            (a.normal_payments, a.normal_stopped, a.detection_rate),
            (b.normal_payments, b.normal_stopped, b.detection_rate)
        );
    }
}
