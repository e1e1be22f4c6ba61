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
