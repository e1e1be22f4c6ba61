//! Each feature, from requests fed through a `RiskState`.
mod common;

use std::net::IpAddr;

use common::*;
use keyfold_risk::*;

fn plain() -> RiskTree {
    tree("min_travel_secs = 7200\n[lists]\ncountries = [\"KP\"]\ndestinations = [\"0xbad\"]\nip_ranges = [\"10.0.0.0/8\", \"2001:db8::/32\"]")
}

#[test]
fn window_counts_roll_over_as_time_advances() {
    let t = plain();
    let mut s = RiskState::new();
    for i in 0..4 {
        observe(&mut s, &request(T0 + i * 20)); // T0 .. T0+60
    }
    // At T0+60: the 1m window (6 x 10 s) holds T0+20 and T0+40 and T0+60's bucket.
    let f = features(&s, &t, &request(T0 + 60));
    assert_eq!(
        f.device.window(Window::M1).count,
        3 + 1,
        "three past ones in the last 6 buckets, plus this one"
    );
    assert_eq!(f.device.window(Window::M10).count, 4 + 1);
    assert_eq!(f.customer.window(Window::M10).sum, 5 * 10_000_000);
    // Ten minutes later the 10m window is empty again, the 1h one is not.
    let f = features(&s, &t, &request(T0 + 660));
    assert_eq!(f.device.window(Window::M10).count, 1);
    assert_eq!(f.device.window(Window::H1).count, 5);
    // A week later only this request counts.
    let f = features(&s, &t, &request(T0 + 7 * 86_400));
    assert_eq!(
        f.wallet.windows.iter().map(|w| w.count).collect::<Vec<_>>(),
        vec![1; 5]
    );
    assert_eq!(
        s.window_total(
            EntityKind::Wallet,
            "hot-1",
            "USDC",
            Window::D7,
            T0 + 6 * 86_400
        ),
        WindowTotal {
            count: 4,
            sum: 40_000_000
        }
    );
}

#[test]
fn entities_absent_from_the_request_have_no_counts() {
    let t = plain();
    let mut s = RiskState::new();
    let mut r = request(T0);
    r.context.device_id = None;
    r.payment.merchant = None;
    observe(&mut s, &r);
    let f = features(&s, &t, &r);
    assert!(!f.device.present && f.device.window(Window::H1).count == 0);
    assert!(!f.merchant.present);
    assert_eq!(f.customer.window(Window::H1).count, 2);
}

#[test]
fn rate_spike_detected_after_a_stable_baseline() {
    let t = plain();
    let mut s = RiskState::new();
    // Two requests an hour for two days.
    for h in 0..48u64 {
        for k in 0..2u64 {
            observe(&mut s, &request(T0 + h * 3600 + k * 1200));
        }
    }
    let calm = features(&s, &t, &request(T0 + 48 * 3600));
    assert!(calm.customer.rate_z < 1.5, "{}", calm.customer.rate_z);
    // Then twenty in ten minutes.
    for k in 0..20u64 {
        observe(&mut s, &request(T0 + 48 * 3600 + k * 30));
    }
    let f = features(&s, &t, &request(T0 + 48 * 3600 + 600));
    assert!(f.customer.rate_z > 10.0, "{}", f.customer.rate_z);
    assert!(f.rate_spike_z >= f.customer.rate_z);
}

#[test]
fn no_rate_spike_without_a_baseline() {
    let t = plain();
    let mut s = RiskState::new();
    for k in 0..50u64 {
        observe(&mut s, &request(T0 + k));
    }
    assert_eq!(features(&s, &t, &request(T0 + 60)).rate_spike_z, 0.0);
}

#[test]
fn first_destination_and_first_device() {
    let t = plain();
    let mut s = RiskState::new();
    let r = request(T0);
    let f = features(&s, &t, &r);
    assert!(f.first_destination && f.first_device, "a new customer");
    observe(&mut s, &r);
    let f = features(&s, &t, &request(T0 + 10));
    assert!(!f.first_destination && !f.first_device);
    let mut other = request(T0 + 20);
    other.payment.destination = "0xother".into();
    other.context.device_id = Some("d-2".into());
    let f = features(&s, &t, &other);
    assert!(f.first_destination && f.first_device);
    // Another customer's history does not count.
    let mut c2 = request(T0 + 30);
    c2.context.customer_id = Some("c-2".into());
    let f = features(&s, &t, &c2);
    assert!(f.first_destination && f.first_device);
}

#[test]
fn least_recent_destination_is_forgotten_after_256_others() {
    let t = plain();
    let mut s = RiskState::new();
    observe(&mut s, &request(T0));
    for i in 0..RECENT_DESTINATIONS as u64 {
        let mut r = request(T0 + 1 + i);
        r.payment.destination = format!("0x{i}");
        observe(&mut s, &r);
    }
    assert!(features(&s, &t, &request(T0 + 1000)).first_destination);
}

#[test]
fn impossible_travel_versus_legit_travel() {
    let t = plain();
    let mut s = RiskState::new();
    let mut fr = request(T0);
    fr.context.country = Some(country("FR"));
    observe(&mut s, &fr);
    let mut jp = request(T0 + 3600);
    jp.context.country = Some(country("JP"));
    let f = features(&s, &t, &jp);
    assert!(
        f.country_changed && f.impossible_travel,
        "FR then JP an hour later"
    );
    // After enough time, the same change is legit travel.
    let mut later = jp.clone();
    later.at = T0 + 7200;
    let f = features(&s, &t, &later);
    assert!(f.country_changed && !f.impossible_travel);
    // Same country: nothing.
    let mut again = fr.clone();
    again.at = T0 + 60;
    let f = features(&s, &t, &again);
    assert!(!f.country_changed && !f.impossible_travel);
    // Unknown country: nothing.
    let f = features(&s, &t, &request(T0 + 60));
    assert!(!f.country_changed && !f.impossible_travel);
}

#[test]
fn listed_ip_range_country_and_destination() {
    let t = plain();
    let s = RiskState::new();
    let with_ip = |ip: &str| {
        let mut r = request(T0);
        r.context.ip = ip.parse::<IpAddr>().ok();
        features(&s, &t, &r).listed_ip
    };
    assert!(with_ip("10.1.2.3"));
    assert!(
        with_ip("::ffff:10.1.2.3"),
        "IPv4-mapped IPv6 is the IPv4 address"
    );
    assert!(with_ip("2001:db8::1"));
    assert!(!with_ip("11.0.0.1"));
    assert!(!with_ip("2001:db9::1"));
    let mut r = request(T0);
    assert!(!features(&s, &t, &r).listed_ip, "no IP");
    r.context.country = Some(country("KP"));
    r.payment.destination = "0xbad".into();
    let f = features(&s, &t, &r);
    assert!(f.listed_country && f.listed_destination);
}

#[test]
fn device_signature_refusals_count_the_last_hour() {
    let t = plain();
    let mut s = RiskState::new();
    for k in 0..3 {
        assert_eq!(s.record_refusal(None, Some("d-1"), T0 + k * 60), Ok(()));
    }
    assert_eq!(s.record_refusal(Some("c-1"), None, T0), Ok(()));
    assert_eq!(
        features(&s, &t, &request(T0 + 180)).device_signature_refusals,
        3
    );
    // Another device of the same customer sees the customer's one.
    let mut r = request(T0 + 180);
    r.context.device_id = Some("d-9".into());
    assert_eq!(features(&s, &t, &r).device_signature_refusals, 1);
    assert_eq!(
        features(&s, &t, &request(T0 + 3600 + 121)).device_signature_refusals,
        0
    );
    assert!(matches!(
        s.record_refusal(Some(&"x".repeat(MAX_ID_BYTES + 1)), None, T0),
        Err(InputError::TooLong {
            field: "customer",
            ..
        })
    ));
}

#[test]
fn amount_history_scores_are_per_asset() {
    let t = plain();
    let mut s = RiskState::new();
    for i in 0..10 {
        observe(&mut s, &request(T0 + i * 100));
    }
    let mut big = request(T0 + 2000);
    big.payment.amount = 1_000_000_000;
    let f = features(&s, &t, &big);
    assert!(
        f.amount_z > 50.0 && f.amount_ratio > 99.0,
        "{} {}",
        f.amount_z,
        f.amount_ratio
    );
    assert_eq!(f.amount_history, 10);
    big.payment.asset = "ETH".into();
    let f = features(&s, &t, &big);
    assert_eq!(
        (f.amount_z, f.amount_ratio, f.amount_history),
        (0.0, 0.0, 0)
    );
}

#[test]
fn time_never_goes_back() {
    let t = plain();
    let mut s = RiskState::new();
    observe(&mut s, &request(T0 + 1000));
    let f = features(&s, &t, &request(T0));
    assert_eq!(f.at, T0 + 1000);
    assert_eq!(f.device.window(Window::M1).count, 2);
}

#[test]
fn bad_input_is_refused_before_anything_changes() {
    let t = plain();
    let mut s = RiskState::new();
    let mut r = request(T0);
    r.payment.wallet = "w".repeat(MAX_ID_BYTES + 1);
    assert!(matches!(
        s.observe(&r),
        Err(InputError::TooLong {
            field: "payment.wallet",
            ..
        })
    ));
    assert!(s.features(&t, &r).is_err());
    assert!(s.is_empty());
    let mut r = request(T0);
    r.context.auth = vec![AuthMethod::Totp; MAX_AUTH_METHODS + 1];
    assert!(matches!(
        s.observe(&r),
        Err(InputError::TooManyAuthMethods { .. })
    ));
}

#[test]
fn prune_drops_idle_entities_only() {
    let mut s = RiskState::with_retention(30 * 86_400);
    observe(&mut s, &request(T0));
    let mut r = request(T0 + 20 * 86_400);
    r.context.customer_id = Some("c-2".into());
    r.context.device_id = Some("d-2".into());
    r.payment.destination = "0xnew".into();
    observe(&mut s, &r);
    s.prune(T0 + 31 * 86_400);
    assert_eq!(s.len(EntityKind::Customer), 1, "c-1 idle 31 days");
    assert_eq!(s.len(EntityKind::Device), 1);
    assert_eq!(
        s.len(EntityKind::Destination),
        0,
        "destinations go after 8 idle days"
    );
    assert_eq!(s.len(EntityKind::Wallet), 1);
    let f = features(&s, &plain(), &request(T0 + 31 * 86_400));
    assert!(f.first_destination && f.first_device, "c-1 was forgotten");
}

#[test]
fn an_evm_destination_is_the_same_whatever_its_letter_case() {
    let tree = RiskTree::from_toml(&format!(
        "version = 1\n[lists]\ndestinations = [\"0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed\"]\n\
         [[rules]]\nname = \"listed\"\nwhen = {{ listed_destination = true }}\nscore = 100\n\
         action = {{ kind = \"deny\" }}\n{THRESHOLDS}"
    ))
    .unwrap();
    let mut state = RiskState::new();
    let mut req = request(1_800_000_000);
    // The checksum spelling of the listed (lower-case) address.
    req.payment.destination = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed".into();
    let f = state.features(&tree, &req).unwrap();
    assert!(f.listed_destination);
    assert!(f.first_destination);
    state.observe(&req).unwrap();
    // The same account in lower case is neither new nor a second entity.
    req.payment.destination = req.payment.destination.to_lowercase();
    req.at += 10;
    let f = state.features(&tree, &req).unwrap();
    assert!(!f.first_destination);
    assert_eq!(f.destination.window(Window::M10).count, 2);
    // Base58 (Solana) stays case-sensitive.
    assert_eq!(
        canonical_destination("9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"),
        "9xQeWvG816bUx9EPjHmaT23yvVM2ZWbrrpZb9PusVFin"
    );
}

fn ip(s: &str) -> IpAddr {
    match s.parse() {
        Ok(ip) => ip,
        Err(e) => panic!("{s}: {e}"),
    }
}

#[test]
fn ip_block_is_the_network_of_the_24_or_48() {
    assert_eq!(ip_block(ip("192.0.2.7")), ip("192.0.2.0"));
    assert_eq!(ip_block(ip("192.0.2.0")), ip("192.0.2.0"));
    assert_eq!(ip_block(ip("255.255.255.255")), ip("255.255.255.0"));
    assert_eq!(ip_block(ip("2001:db8:1:2:3::5")), ip("2001:db8:1::"));
    assert_eq!(
        ip_block(ip("ffff:ffff:ffff:ffff::1")),
        ip("ffff:ffff:ffff::")
    );
    // IPv4-mapped IPv6 is the IPv4 address, and its block an IPv4 block.
    assert_eq!(ip_block(ip("::ffff:10.1.2.3")), ip("10.1.2.0"));
    // Idempotent.
    for s in [
        "203.0.113.99",
        "2001:db8:abcd:1234::1",
        "::ffff:198.51.100.1",
    ] {
        let b = ip_block(ip(s));
        assert_eq!(ip_block(b), b, "{s}");
    }
}

#[test]
fn an_ip_is_listed_when_its_block_overlaps_a_range() {
    // A single /32 and a /25 inside one /24 each, a /64 inside one /48,
    // and a /47 that contains whole /48s.
    let t = tree(
        "[lists]\nip_ranges = [\"192.0.2.7/32\", \"198.51.100.128/25\", \"2001:db8:1:2::/64\", \"2001:db8:10::/47\"]",
    );
    let s = RiskState::new();
    let listed = |a: &str| {
        let mut r = request(T0);
        r.context.ip = Some(ip(a));
        features(&s, &t, &r).listed_ip
    };
    // The trade-off: the /32 flags its whole /24.
    assert!(listed("192.0.2.7"));
    assert!(listed("192.0.2.200"));
    assert!(!listed("192.0.3.7"), "the next /24 is not flagged");
    assert!(listed("198.51.100.1"), "a /25 flags its /24");
    assert!(listed("::ffff:192.0.2.1"));
    assert!(listed("2001:db8:1:ffff::1"), "a /64 flags its /48");
    assert!(!listed("2001:db8:2::1"));
    assert!(listed("2001:db8:11:5::1"), "a /47 contains the /48");
    assert!(!listed("2001:db8:12::1"));
    assert!(t.is_listed_ip(ip("192.0.2.99")));
}

#[test]
fn an_ip_and_its_block_give_the_same_features() {
    let t = tree(
        "min_travel_secs = 7200\n[lists]\nip_ranges = [\"192.0.2.7/32\", \"10.0.0.0/8\", \"2001:db8::/32\", \"2001:db9:1:2::/64\"]",
    );
    let mut s = RiskState::new();
    observe(&mut s, &request(T0));
    for a in [
        "192.0.2.7",
        "192.0.2.250",
        "192.0.3.1",
        "10.200.3.4",
        "::ffff:10.0.0.1",
        "2001:db8:ffff:1::2",
        "2001:db9:1:9::1",
        "2001:db9:2::1",
        "8.8.8.8",
    ] {
        let mut full = request(T0 + 60);
        full.context.ip = Some(ip(a));
        let mut block = full.clone();
        block.context.ip = Some(ip_block(ip(a)));
        assert_eq!(features(&s, &t, &full), features(&s, &t, &block), "{a}");
    }
}
