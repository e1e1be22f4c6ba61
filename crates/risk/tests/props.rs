//! Property tests: windowed counts and sums equal a naive recomputation over
//! the raw events (sums exactly while an entity uses at most `MAX_ASSETS`
//! assets, never below it otherwise), and the score always stays in 0..=100.
mod common;

use common::*;
use keyfold_risk::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
struct Event {
    gap: u64,
    device: u8,
    asset: u8,
    amount: u128,
}

fn event(assets: u8) -> impl Strategy<Value = Event> {
    (
        prop_oneof![0u64..20, 0u64..700, 0u64..5000, 0u64..100_000],
        0u8..3,
        0u8..assets,
        prop_oneof![0u128..1000, Just(u128::MAX / 3)],
    )
        .prop_map(|(gap, device, asset, amount)| Event {
            gap,
            device,
            asset,
            amount,
        })
}

fn asset_name(a: u8) -> String {
    format!("A{a}")
}

/// Feeds `events` to a state and compares every window at `last + probe`
/// with a recomputation from the raw events: counts exactly, sums exactly
/// or (when `exact` is false) at least.
fn check(events: &[Event], probe: u64, exact: bool) -> Result<(), TestCaseError> {
    let mut s = RiskState::new();
    let mut t = T0;
    let mut log: Vec<(u64, u8, u8, u128)> = Vec::new();
    for e in events {
        t += e.gap;
        let mut r = request(t);
        r.context.device_id = Some(format!("d{}", e.device));
        r.payment.asset = asset_name(e.asset);
        r.payment.amount = e.amount;
        prop_assert!(s.observe(&r).is_ok());
        log.push((t, e.device, e.asset, e.amount));
    }
    let now = t + probe;
    for w in Window::ALL {
        for device in 0..3u8 {
            let key = format!("d{device}");
            let inw: Vec<_> = log
                .iter()
                .filter(|(at, d, _, _)| *d == device && w.contains(*at, now))
                .collect();
            for a in 0..MAX_ASSETS as u8 + 3 {
                let naive = inw
                    .iter()
                    .filter(|e| e.2 == a)
                    .fold(0u128, |acc, e| acc.saturating_add(e.3));
                let got = s.window_total(EntityKind::Device, &key, &asset_name(a), w, now);
                prop_assert_eq!(
                    got.count,
                    inw.len() as u64,
                    "device {} window {}",
                    device,
                    w
                );
                if exact {
                    prop_assert_eq!(got.sum, naive, "device {} window {} asset {}", device, w, a);
                } else {
                    prop_assert!(
                        got.sum >= naive,
                        "device {} window {} asset {}: {} < {}",
                        device,
                        w,
                        a,
                        got.sum,
                        naive
                    );
                }
            }
        }
        // The customer sees every device's events.
        let naive = log
            .iter()
            .filter(|(at, _, _, _)| w.contains(*at, now))
            .count() as u64;
        prop_assert_eq!(
            s.window_total(EntityKind::Customer, "c-1", "A0", w, now)
                .count,
            naive
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn window_totals_equal_naive_recomputation(
        events in prop::collection::vec(event(MAX_ASSETS as u8), 1..120),
        probe in 0u64..800_000,
    ) {
        check(&events, probe, true)?;
    }

    #[test]
    fn window_sums_never_under_count_past_max_assets(
        events in prop::collection::vec(event(MAX_ASSETS as u8 + 3), 1..120),
        probe in 0u64..800_000,
    ) {
        check(&events, probe, false)?;
    }

    #[test]
    fn score_is_always_in_0_to_100(
        scores in prop::collection::vec(0u8..=100, 1..12),
        above in 0u64..10,
        amount in any::<u128>(),
        n in 0usize..12,
    ) {
        let mut body = String::new();
        for (i, sc) in scores.iter().enumerate() {
            let when = match i % 4 {
                0 => format!("{{ count = {{ entity = \"customer\", window = \"10m\", above = {above} }} }}"),
                1 => "{ first_destination = true }".to_string(),
                2 => format!("{{ assets = [\"USDC\"], amount_above = \"{}\" }}", amount / 2),
                _ => "{ score_above = 10 }".to_string(),
            };
            body.push_str(&format!("[[rules]]\nname = \"r{i}\"\nwhen = {when}\nscore = {}\n", (*sc).max(1)));
        }
        let t = tree(&body);
        let mut s = RiskState::new();
        for k in 0..n {
            let mut r = request(T0 + k as u64 * 10);
            r.payment.amount = amount;
            let d = step(&mut s, &t, &r);
            prop_assert!(d.score <= 100);
            let sum: u32 = d.reasons.iter().map(|r| u32::from(r.score)).sum();
            prop_assert_eq!(u32::from(d.score), sum.min(100));
        }
    }

    /// The engine reads an IP at block precision only: any IP and its
    /// block are listed alike, whatever ranges (of any length, around the
    /// IP or not) the tree lists.
    #[test]
    fn an_ip_and_its_block_are_listed_alike(
        v4 in any::<u32>(),
        v6 in any::<u128>(),
        mapped in any::<bool>(),
        near in any::<bool>(),
        p4 in 0u8..=32,
        p6 in 0u8..=128,
        d4 in any::<u32>(),
        d6 in any::<u128>(),
    ) {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let a4 = Ipv4Addr::from(v4);
        let ips = [
            if mapped { IpAddr::V6(a4.to_ipv6_mapped()) } else { IpAddr::V4(a4) },
            IpAddr::V6(Ipv6Addr::from(v6)),
        ];
        // Ranges near the IPs (a few low bits flipped) or anywhere.
        let r4 = if near { v4 ^ (d4 & 0x3ff) } else { d4 };
        let r6 = if near { v6 ^ (d6 & 0xff_ffff_ffff_ffff_ffff) } else { d6 };
        let n4 = ipnet::Ipv4Net::new(Ipv4Addr::from(r4), p4).map(|n| n.trunc());
        let n6 = ipnet::Ipv6Net::new(Ipv6Addr::from(r6), p6).map(|n| n.trunc());
        let (Ok(n4), Ok(n6)) = (n4, n6) else {
            return Err(TestCaseError::fail("prefix in range"));
        };
        let t = tree(&format!("[lists]\nip_ranges = [\"{n4}\", \"{n6}\"]"));
        for ip in ips {
            prop_assert_eq!(t.is_listed_ip(ip), t.is_listed_ip(ip_block(ip)), "{} in {} / {}", ip, n4, n6);
            // A range that holds the IP always flags it.
            let holds = match ip.to_canonical() {
                IpAddr::V4(a) => n4.contains(&a),
                IpAddr::V6(a) => n6.contains(&a),
            };
            if holds {
                prop_assert!(t.is_listed_ip(ip));
            }
        }
    }
}
