//! `keyfold merchant`: merchants (the API's tenants) and their API keys,
//! managed on the coordinator's store like `keyfold token` (the running
//! coordinator sees the changes at once: it reads the same database). The
//! same operations exist on the API for operators (`/v1/merchants`).

use std::path::PathBuf;

use clap::Subcommand;
use keyfold_coordinator::merchants::{
    key_info, merchant_info, DEFAULT_RATE_BURST, DEFAULT_RATE_PER_SEC,
    DEFAULT_ROTATION_OVERLAP_SECS,
};
use keyfold_store::NewMerchant;

#[derive(Subcommand)]
pub(crate) enum MerchantCmd {
    /// Creates a merchant and its first API key (printed once, as JSON).
    Create {
        /// The coordinator's data directory (its `data_dir`).
        #[arg(long)]
        data_dir: PathBuf,
        /// Merchant id: 1 to 48 of a-z 0-9 _ -, starting with a letter.
        #[arg(long)]
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Scopes of the first key, comma-separated.
        #[arg(
            long,
            default_value = "orders:read,orders:write,payouts:read,webhooks:manage,wallets:read"
        )]
        scopes: String,
        /// Burst of each API key's rate limit (0: unlimited).
        #[arg(long, default_value_t = DEFAULT_RATE_BURST)]
        rate_burst: u32,
        /// Sustained requests per second of each API key (0: unlimited).
        #[arg(long, default_value_t = DEFAULT_RATE_PER_SEC)]
        rate_per_sec: u32,
    },
    /// Lists merchants (JSON).
    List {
        /// The coordinator's data directory.
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Disables a merchant: its keys stop working at once.
    Disable {
        /// The coordinator's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Merchant id.
        #[arg(long)]
        id: String,
    },
    /// Enables a disabled merchant.
    Enable {
        /// The coordinator's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Merchant id.
        #[arg(long)]
        id: String,
    },
    /// Issues another API key (printed once, as JSON).
    IssueKey {
        /// The coordinator's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Merchant id.
        #[arg(long)]
        id: String,
        /// Scopes, comma-separated.
        #[arg(long)]
        scopes: String,
        /// Label.
        #[arg(long, default_value = "")]
        label: String,
        /// A sandbox key (`kfm_test_...`): it acts for the merchant's
        /// sandbox twin (`<id>.sandbox`, made now if needed), on sandbox
        /// chains only, and sees none of the live merchant's objects.
        #[arg(long)]
        sandbox: bool,
    },
    /// Rotates an API key: a new one (printed once), the old one working for
    /// the overlap.
    RotateKey {
        /// The coordinator's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Merchant id.
        #[arg(long)]
        id: String,
        /// The key's id (`mk_...`).
        #[arg(long)]
        key: String,
        /// Seconds the old key keeps working.
        #[arg(long, default_value_t = DEFAULT_ROTATION_OVERLAP_SECS)]
        overlap_secs: u32,
    },
    /// Revokes an API key at once.
    RevokeKey {
        /// The coordinator's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Merchant id.
        #[arg(long)]
        id: String,
        /// The key's id (`mk_...`).
        #[arg(long)]
        key: String,
    },
    /// Lists a merchant's API keys (JSON, never a secret).
    Keys {
        /// The coordinator's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// Merchant id.
        #[arg(long)]
        id: String,
    },
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn scopes(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn print(v: &impl serde::Serialize) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| format!("cannot print: {e}"))?;
    println!("{text}");
    Ok(())
}

fn fail(what: &'static str) -> impl Fn(keyfold_store::StoreError) -> String {
    move |e| format!("cannot {what}: {e}")
}

fn issued(k: keyfold_store::IssuedKey) -> serde_json::Value {
    serde_json::json!({ "key": key_info(&k.meta), "api_key": k.secret.as_str() })
}

/// Runs a `keyfold merchant` command.
pub(crate) fn run(cmd: MerchantCmd) -> Result<(), String> {
    let open = |dir: &PathBuf| crate::open_coordinator_store(dir, false);
    match cmd {
        MerchantCmd::Create {
            data_dir,
            id,
            name,
            scopes: list,
            rate_burst,
            rate_per_sec,
        } => {
            let store = open(&data_dir)?;
            let m = store
                .create_merchant(
                    &NewMerchant {
                        merchant_id: id.clone(),
                        name,
                        rate_burst,
                        rate_per_sec,
                    },
                    now(),
                )
                .map_err(fail("create the merchant"))?;
            let k = store
                .issue_merchant_key(&id, "first", &scopes(&list), now(), None)
                .map_err(fail("issue its API key"))?;
            eprintln!("merchant {id} created; its API key is shown once and stored only as a hash");
            print(&serde_json::json!({ "merchant": merchant_info(&m), "key": issued(k) }))
        }
        MerchantCmd::List { data_dir } => {
            let all = open(&data_dir)?
                .list_merchants()
                .map_err(fail("list merchants"))?;
            print(&all.iter().map(merchant_info).collect::<Vec<_>>())
        }
        MerchantCmd::Disable { data_dir, id } => {
            open(&data_dir)?
                .disable_merchant(&id, now())
                .map_err(fail("disable"))?;
            eprintln!("merchant {id} disabled: its API keys are refused");
            Ok(())
        }
        MerchantCmd::Enable { data_dir, id } => {
            open(&data_dir)?
                .enable_merchant(&id)
                .map_err(fail("enable"))?;
            eprintln!("merchant {id} enabled");
            Ok(())
        }
        MerchantCmd::IssueKey {
            data_dir,
            id,
            scopes: list,
            label,
            sandbox,
        } => {
            let store = open(&data_dir)?;
            let target = if sandbox && !keyfold_store::is_sandbox_merchant(&id) {
                store
                    .sandbox_merchant(&id, now())
                    .map_err(fail("make the sandbox merchant"))?
                    .merchant_id
            } else {
                id
            };
            let k = store
                .issue_merchant_key(&target, &label, &scopes(&list), now(), None)
                .map_err(fail("issue the key"))?;
            if k.meta.is_sandbox() {
                eprintln!(
                    "sandbox key of {target}: sandbox chains only, none of the live merchant's objects"
                );
            }
            print(&issued(k))
        }
        MerchantCmd::RotateKey {
            data_dir,
            id,
            key,
            overlap_secs,
        } => {
            let k = open(&data_dir)?
                .rotate_merchant_key(&id, &key, now(), i64::from(overlap_secs))
                .map_err(fail("rotate the key"))?;
            eprintln!("key {key} keeps working for {overlap_secs} s");
            print(&issued(k))
        }
        MerchantCmd::RevokeKey { data_dir, id, key } => {
            open(&data_dir)?
                .revoke_merchant_key(&id, &key, now())
                .map_err(fail("revoke the key"))?;
            eprintln!("key {key} of merchant {id} revoked");
            Ok(())
        }
        MerchantCmd::Keys { data_dir, id } => {
            let keys = open(&data_dir)?
                .list_merchant_keys(&id)
                .map_err(fail("list keys"))?;
            print(&keys.iter().map(key_info).collect::<Vec<_>>())
        }
    }
}
