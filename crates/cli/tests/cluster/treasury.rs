//! The treasury of the devnet run the fixture made (`keyfold devnet --once
//! --out`, with two officers approving): its JSON shows the cycle on both
//! chains with the ledger equal to the chains at the end, and the running
//! cluster's journal replays offline with its invariants.

use crate::fixture::*;

const ETH: u128 = 1_000_000_000_000_000_000;

fn units(v: &serde_json::Value) -> u128 {
    v.as_str().unwrap().parse().unwrap()
}

fn is_hash(v: &serde_json::Value) -> bool {
    v.as_str()
        .is_some_and(|h| h.len() == 66 && h.starts_with("0x"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_devnet_treasury_kept_hot_within_its_marks_with_the_ledger_equal_to_the_chains() {
    let c = cluster().await;
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(c.dir.join("devnet.json")).unwrap()).unwrap();
    let tiers = doc["treasury"].as_array().expect("a treasury section");
    for chain_id in [31337u64, 31338] {
        for asset in ["ETH", "KFT"] {
            let t = tiers
                .iter()
                .find(|t| t["chain_id"] == chain_id && t["asset"] == asset)
                .unwrap_or_else(|| panic!("tier {chain_id}/{asset} in {doc}"));
            // Read at the end of the run: ledger and chain agree.
            for w in ["hot", "cold"] {
                assert_eq!(t[w]["ledger_balance"], t[w]["chain_balance"], "{w} of {t}");
            }
            let sweeps = t["sweeps"].as_array().unwrap();
            assert!(
                sweeps
                    .iter()
                    .any(|s| s["kind"] == "deposit_to_hot" && is_hash(&s["tx_hash"])),
                "a paid order swept into hot: {t}"
            );
            if asset == "KFT" {
                continue;
            }
            // The cycle: excess to cold, a replenishment two officers
            // approved, hot back within its marks.
            assert!(
                sweeps
                    .iter()
                    .any(|s| s["kind"] == "hot_to_cold" && is_hash(&s["tx_hash"])),
                "{t}"
            );
            let r = &t["replenishments"][0];
            assert_eq!(r["approvals"], 2, "{t}");
            assert!(is_hash(&r["tx_hash"]), "{t}");
            assert!(r["request_id"]
                .as_str()
                .unwrap()
                .starts_with("payout:replenishment-"));
            let hot = units(&t["hot"]["ledger_balance"]);
            assert!(
                (ETH / 2..=2 * ETH).contains(&hot),
                "hot {hot} within its marks: {t}"
            );
            // The merchant was settled from hot, with its report.
            let s = &t["settlements"][0];
            assert_eq!(s["state"], "paid", "{t}");
            assert!(is_hash(&s["tx_hash"]), "{t}");
            assert!(!s["orders"].as_array().unwrap().is_empty(), "{t}");
            let csv = std::fs::read_to_string(s["report_csv"].as_str().unwrap()).unwrap();
            assert!(
                csv.starts_with("run_id,seq,entry_id,kind,from,to,amount_base_units,order_id\n"),
                "{csv}"
            );
            assert!(csv.contains("merchant:devnet-shop:fees"), "{csv}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clusters_journal_replays_offline_with_its_invariants() {
    let c = cluster().await;
    let token = c.dir.join("api-token");
    let out = std::process::Command::new(BIN)
        .args([
            "treasury",
            "ledger",
            "--verify",
            "--api",
            &c.url(""),
            "--token-file",
            token.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("entries replayed") && stderr.contains(", 0 differ"),
        "{stderr}"
    );
    // The policy rules the admins would sign hold each hot wallet.
    let rules = keyfold(&[
        "treasury",
        "policy",
        "--api",
        &c.url(""),
        "--token-file",
        token.to_str().unwrap(),
    ]);
    assert!(
        rules.contains("[[velocity]]") && rules.contains("max_amount"),
        "{rules}"
    );
    // With the officers' group they name and a catch-all, they make a
    // valid document.
    let doc = format!(
        "version = 1\n\n[[groups]]\nname = \"treasury\"\nquorum = 1\nmembers = [{{ name = \"alice\", key = \"{}\" }}]\n{rules}\n[[rules]]\nname = \"deny-all\"\naction = {{ kind = \"deny\" }}\n",
        c.officers[0]
    );
    let path = c.dir.join("treasury-rules.toml");
    std::fs::write(&path, doc).unwrap();
    let check = keyfold(&["policy", "check", path.to_str().unwrap()]);
    assert!(check.contains("valid policy"), "{check}");
}
