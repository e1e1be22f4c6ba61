//! Plain-words description of a policy's rules (for `keyfold policy check`).

use crate::document::{Action, Combine, Policy, Rule, Tier};

fn list(v: &[String]) -> String {
    v.join(", ")
}

fn audience(a: Option<crate::rollout::Audience>) -> Option<&'static str> {
    match a? {
        crate::rollout::Audience::Selected => Some("the request is selected by the rollout"),
        crate::rollout::Audience::Others => Some("the request is not selected by the rollout"),
    }
}

fn conditions(rule: &Rule) -> Vec<String> {
    let mut c = Vec::new();
    if let Some(a) = audience(rule.audience) {
        c.push(a.to_string());
    }
    if let Some(o) = &rule.origins {
        let names: Vec<String> = o
            .iter()
            .map(|x| {
                serde_json::to_value(x)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        c.push(format!("the request's origin is one of [{}]", list(&names)));
    }
    if let Some(w) = &rule.wallets {
        c.push(format!("wallet is one of [{}]", list(w)));
    }
    if let Some(t) = rule.tier {
        c.push(match t {
            Tier::Hot => "the wallet is hot".to_string(),
            Tier::Cold => "the wallet is cold".to_string(),
        });
    }
    if let Some(a) = &rule.assets {
        c.push(format!("asset is one of [{}]", list(a)));
    }
    if let Some(chains) = &rule.chains {
        c.push(format!("a chain transaction on one of [{}]", list(chains)));
    }
    if let Some(fee) = rule.max_fee {
        c.push(format!(
            "a chain transaction paying at most {fee} in fees (native smallest units)"
        ));
    }
    if let Some(a) = &rule.amount {
        c.push(match a.max {
            Some(max) => format!("amount is between {} and {max} (smallest units)", a.min),
            None => format!("amount is at least {} (smallest units)", a.min),
        });
    }
    if let Some(d) = &rule.destination {
        let mut opts = Vec::new();
        if d.any_address_book {
            opts.push("any address-book entry past its cool-down".to_string());
        }
        if let Some(n) = &d.address_book {
            opts.push(format!(
                "address-book entry [{}] past its cool-down",
                list(n)
            ));
        }
        if let Some(a) = &d.allow {
            opts.push(format!("address [{}]", list(a)));
        }
        if !opts.is_empty() {
            c.push(format!("destination is {}", opts.join(" or ")));
        }
        if let Some(x) = &d.deny {
            c.push(format!("destination is not [{}]", list(x)));
        }
    }
    if let Some(r) = &rule.risk {
        let mut parts = vec!["the risk engine judged it".to_string()];
        if let Some(a) = r.score_above {
            parts.push(format!("score above {a}"));
        }
        if let Some(m) = r.score_at_most {
            parts.push(format!("score at most {m}"));
        }
        if let Some(l) = &r.actions {
            let names: Vec<String> = l
                .iter()
                .map(|a| {
                    serde_json::to_value(a)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default()
                })
                .collect();
            parts.push(format!("action one of [{}]", list(&names)));
        }
        if let Some(k) = r.kyc_below {
            let name = serde_json::to_value(k)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            parts.push(format!("customer's KYC tier below {name}"));
        }
        c.push(parts.join(", "));
    }
    if let Some(i) = &rule.initiators {
        c.push(format!("initiator is one of [{}]", list(i)));
    }
    if let Some(t) = &rule.time {
        if let Some(days) = &t.days {
            let d: Vec<String> = days.iter().map(|d| format!("{d:?}")).collect();
            c.push(format!("day (UTC) is one of [{}]", d.join(", ")));
        }
        if let (Some(f), Some(to)) = (&t.from, &t.to) {
            c.push(format!("time of day (UTC) is from {f} to {to}"));
        }
    }
    c
}

fn group(policy: &Policy, name: &str) -> String {
    match policy.groups.get(name) {
        Some(g) => format!("{name} ({} of {})", g.quorum, g.members.len()),
        None => name.to_string(),
    }
}

fn action(policy: &Policy, a: &Action) -> String {
    match a {
        Action::Allow => "allow".into(),
        Action::Deny { reason } => match reason {
            Some(r) => format!("deny ({r})"),
            None => "deny".into(),
        },
        Action::RequireApprovals {
            groups,
            combine,
            delay_secs,
        } => {
            let join = match combine {
                Combine::All => " and ",
                Combine::Any => " or ",
            };
            let names: Vec<String> = groups.iter().map(|g| group(policy, g)).collect();
            let mut s = format!("require approvals from {}", names.join(join));
            if *delay_secs > 0 {
                s.push_str(&format!(", then wait {delay_secs} s after the request"));
            }
            s
        }
        Action::TimeLock {
            delay_secs,
            cancel_groups,
        } => {
            let mut s = format!("allow after a time lock of {delay_secs} s");
            if !cancel_groups.is_empty() {
                let names: Vec<String> = cancel_groups.iter().map(|g| group(policy, g)).collect();
                s.push_str(&format!(", cancellable by any member of {}", names.join(", ")));
            }
            s
        }
        Action::Vesting {
            start,
            cliff_secs,
            duration_secs,
            total,
            revoked_at,
        } => format!(
            "allow up to the vested part of {total}: linear from {start} over {duration_secs} s, nothing before a cliff of {cliff_secs} s, minus what was already released{}",
            revoked_at.map_or(String::new(), |r| format!("; revoked at {r}: nothing vests after it"))
        ),
    }
}

/// Each rule of the policy in plain words, in evaluation order.
pub fn describe(policy: &Policy) -> Vec<String> {
    policy
        .document()
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let cond = conditions(r);
            let when = if cond.is_empty() {
                "for every request".to_string()
            } else {
                format!("if {}", cond.join(" and "))
            };
            let raw = if r.allow_raw {
                " (raw-bytes payloads allowed)"
            } else {
                ""
            };
            format!(
                "{}. {}: {when}, {}{raw}",
                i + 1,
                r.name,
                action(policy, &r.action)
            )
        })
        .collect()
}

/// The document's other parts in plain words: approver groups, velocity
/// limits, the admin quorum and the address book.
pub fn describe_limits(policy: &Policy) -> Vec<String> {
    let doc = policy.document();
    let mut out = Vec::new();
    for g in &doc.groups {
        let names: Vec<String> = g
            .members
            .iter()
            .map(|m| {
                m.name
                    .clone()
                    .unwrap_or_else(|| format!("{}…", m.key.get(..8).unwrap_or(&m.key)))
            })
            .collect();
        out.push(format!(
            "group {}: {} of {} approvers ({})",
            g.name,
            g.quorum,
            g.members.len(),
            names.join(", ")
        ));
    }
    for v in &doc.velocity {
        let per = match v.per {
            crate::document::VelocityScope::Wallet => "per wallet (with its HD children)",
            crate::document::VelocityScope::Destination => "per destination",
            crate::document::VelocityScope::Initiator => "per initiator",
        };
        let mut limits = Vec::new();
        if let Some(a) = v.max_amount {
            limits.push(format!("at most {a} {}", v.asset));
        }
        if let Some(c) = v.max_count {
            limits.push(format!("at most {c} transfers"));
        }
        let scope = v
            .wallets
            .as_ref()
            .map(|w| format!(" for wallets [{}]", list(w)))
            .unwrap_or_default();
        let only = audience(v.audience)
            .map(|a| format!(", applied only if {a}"))
            .unwrap_or_default();
        out.push(format!(
            "velocity {}: {} {per} in any {} s{scope}, counted over everything signed{only}",
            v.name,
            limits.join(" and "),
            v.window_secs
        ));
    }
    if let Some(r) = &doc.rollout {
        let mut who = Vec::new();
        if let Some(m) = &r.merchants {
            who.push(format!("merchants [{}]", list(m)));
        }
        if let Some(w) = &r.wallets {
            who.push(format!("wallets [{}]", list(w)));
        }
        if let Some(s) = r.share_bps.filter(|s| *s > 0) {
            who.push(format!(
                "{s} in {} of request ids (by their rollout bucket)",
                crate::rollout::BUCKETS
            ));
        }
        out.push(format!(
            "rollout: the rules marked selected decide for requests of {}; the rules marked not selected for every other request",
            who.join(" or ")
        ));
    }
    if let Some(a) = &doc.admins {
        out.push(format!(
            "admins: policy updates need {} of {} admin signatures",
            a.quorum,
            a.keys.len()
        ));
    } else {
        out.push("admins: none; this policy cannot be changed by signature".into());
    }
    if !doc.address_book.entries.is_empty() {
        out.push(format!(
            "address book: {} entries, usable {} s after they are added",
            doc.address_book.entries.len(),
            doc.address_book.cooldown_secs
        ));
    }
    out
}
