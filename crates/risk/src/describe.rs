//! Plain-words description of a tree (for `keyfold risk check`).

use crate::tree::{ActionSpec, Condition, RiskTree};

fn action(a: ActionSpec) -> String {
    match a {
        ActionSpec::Allow => "allow".into(),
        ActionSpec::StepUp => "step up (ask for TOTP or a device signature)".into(),
        ActionSpec::Review => "hold for review".into(),
        ActionSpec::Freeze { scope } => format!("freeze the {}", scope.name()),
        ActionSpec::Deny => "deny".into(),
    }
}

fn flag(out: &mut Vec<String>, v: Option<bool>, yes: &str, no: &str) {
    match v {
        Some(true) => out.push(yes.to_string()),
        Some(false) => out.push(no.to_string()),
        None => {}
    }
}

fn conditions(c: &Condition) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(a) = &c.assets {
        out.push(format!("asset is one of [{}]", a.join(", ")));
    }
    if let Some(ch) = &c.chains {
        out.push(format!("chain is one of [{}]", ch.join(", ")));
    }
    if let Some(a) = c.amount_above {
        out.push(format!("amount is above {} (base units)", a.0));
    }
    if let Some(n) = &c.count {
        out.push(format!(
            "the {} made more than {} requests in {} (this one included)",
            n.entity.name(),
            n.above,
            n.window
        ));
    }
    if let Some(s) = &c.sum {
        out.push(format!(
            "the {}'s payments in this asset over {} add up to more than {} (this one included)",
            s.entity.name(),
            s.window,
            s.above.0
        ));
    }
    if let Some(r) = &c.rate_spike {
        out.push(format!(
            "the {}'s requests this hour are more than {} deviations above its baseline",
            r.entity.name(),
            r.z_above
        ));
    }
    if let Some(z) = c.amount_z_above {
        out.push(format!(
            "the amount is more than {z} deviations above the customer's usual amounts"
        ));
    }
    if let Some(r) = c.amount_ratio_above {
        out.push(format!(
            "the amount is more than {r} times the customer's mean"
        ));
    }
    flag(
        &mut out,
        c.first_destination,
        "the customer never paid this destination",
        "the customer paid this destination before",
    );
    flag(
        &mut out,
        c.first_device,
        "the device is new for the customer",
        "the device is known for the customer",
    );
    flag(
        &mut out,
        c.country_changed,
        "the country changed since the customer's last request",
        "the country did not change",
    );
    flag(
        &mut out,
        c.impossible_travel,
        "the country changed faster than travel allows",
        "no impossible travel",
    );
    flag(
        &mut out,
        c.listed_country,
        "the country is listed",
        "the country is not listed",
    );
    flag(
        &mut out,
        c.listed_destination,
        "the destination is listed",
        "the destination is not listed",
    );
    flag(
        &mut out,
        c.listed_ip,
        "the IP's /24 (IPv6: /48) overlaps a listed range",
        "the IP's /24 (IPv6: /48) overlaps no listed range",
    );
    if let Some(n) = c.refusals_at_least {
        out.push(format!(
            "at least {n} device signatures were refused in the last hour"
        ));
    }
    if let Some(t) = c.kyc_below {
        out.push(format!("the customer's KYC tier is below {}", t.name()));
    }
    if let Some(m) = c.auth_lacks {
        out.push(format!(
            "the request was not authenticated with {}",
            m.name()
        ));
    }
    if let Some(s) = c.score_above {
        out.push(format!("the earlier rules scored more than {s}"));
    }
    out
}

/// Each rule of the tree in plain words, in evaluation order.
pub fn describe(tree: &RiskTree) -> Vec<String> {
    tree.document()
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut effects = Vec::new();
            if r.score > 0 {
                effects.push(format!("add {} to the score", r.score));
            }
            if let Some(a) = r.action {
                effects.push(format!("at least {}", action(a)));
            }
            if let Some(t) = r.require_kyc {
                effects.push(format!(
                    "deny unless the customer's KYC tier is {} (kyc_required)",
                    t.name()
                ));
            }
            format!(
                "{}. {}: if {}, {}",
                i + 1,
                r.name,
                conditions(&r.when).join(" and "),
                effects.join(", ")
            )
        })
        .collect()
}

/// The thresholds and lists in plain words.
pub fn describe_thresholds(tree: &RiskTree) -> Vec<String> {
    let doc = tree.document();
    let mut t = doc.thresholds.clone();
    t.sort_by_key(|t| t.from);
    let mut out: Vec<String> = t
        .iter()
        .map(|t| format!("score {}..={}: {}", t.from, t.to, action(t.action)))
        .collect();
    out.push("the most severe action wins (allow < step up < review < freeze < deny); a step-up is passed by a request that carries a TOTP or a device signature".into());
    if doc.min_travel_secs > 0 {
        out.push(format!(
            "impossible travel: a change of country within {} s",
            doc.min_travel_secs
        ));
    }
    let l = &doc.lists;
    out.push(format!(
        "lists: {} countries, {} destinations, {} IP ranges (an IP is read as its /24, IPv6 /48)",
        l.countries.len(),
        l.destinations.len(),
        l.ip_ranges.len()
    ));
    out
}
