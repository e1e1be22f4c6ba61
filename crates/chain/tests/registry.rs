//! The chain registry: the built-in file, lookups, merging, and one bad TOML
//! per validation error.

use keyfold_chain::evm::parse_address;
use keyfold_chain::registry::{AssetRef, ChainFamily, ChainRegistry, RegistryError};
use sha3::{Digest, Keccak256};

/// EIP-55 checksum computed independently (sha3 crate), for checking the
/// shipped token addresses without trusting alloy.
fn eip55(addr_lower_hex: &str) -> String {
    let hash = Keccak256::digest(addr_lower_hex.as_bytes());
    let mut out = String::from("0x");
    for (i, c) in addr_lower_hex.chars().enumerate() {
        let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
        if c.is_ascii_alphabetic() && nibble >= 8 {
            out.push(c.to_ascii_uppercase());
        } else {
            out.push(c);
        }
    }
    out
}

#[test]
fn builtin_parses_and_every_token_checksums() {
    let reg = ChainRegistry::builtin();
    let ids: Vec<&str> = reg.entries().iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "ethereum",
            "base",
            "arbitrum",
            "optimism",
            "polygon",
            "sepolia",
            "devnet-l1",
            "devnet-l2",
            "solana-devnet"
        ]
    );
    let mut tokens = 0;
    for chain in reg.entries() {
        for token in &chain.tokens {
            tokens += 1;
            assert_eq!(chain.family, ChainFamily::Evm);
            let lower = token.contract[2..].to_ascii_lowercase();
            assert_eq!(
                token.contract,
                eip55(&lower),
                "{} {}",
                chain.id,
                token.symbol
            );
            let a = parse_address("contract", &token.contract).unwrap();
            assert_eq!(chain.token_address(token).unwrap(), a);
            assert_eq!(token.decimals, 6);
        }
        if chain.family == ChainFamily::Evm && !chain.id.starts_with("devnet") {
            assert!(
                chain.rpc_urls.is_empty(),
                "{} must ship without RPC",
                chain.id
            );
            assert!(chain.max_priority_fee_per_gas <= chain.max_fee_per_gas);
        }
        for url in &chain.rpc_urls {
            assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        }
    }
    assert_eq!(tokens, 7);
    let eth = reg.get("ethereum").unwrap();
    assert_eq!(eth.confirmations, 12);
    assert_eq!(eth.max_fee_per_gas, 300_000_000_000);
    assert_eq!(eth.gas_limit_native, 21_000);
    assert_eq!(eth.gas_limit_token, 100_000);
    assert_eq!(eth.replace_after_secs, 120);
    let polygon = reg.get("137").unwrap();
    assert_eq!(polygon.native_symbol, "POL");
    assert_eq!(polygon.confirmations, 64);
    assert_eq!(reg.get("optimism").unwrap().name, "OP Mainnet");
    let sol = reg.get("solana-devnet").unwrap();
    assert_eq!(sol.family, ChainFamily::Solana);
    assert_eq!(sol.chain_id, None);
    assert_eq!(sol.native_decimals, 9);
    assert_eq!(sol.rpc_urls, ["http://127.0.0.1:8899"]);
    for (id, cid, url) in [
        ("devnet-l1", 31337, "http://127.0.0.1:8545"),
        ("devnet-l2", 31338, "http://127.0.0.1:8546"),
    ] {
        let d = reg.get(id).unwrap();
        assert_eq!(d.chain_id, Some(cid));
        assert_eq!(d.confirmations, 2);
        assert_eq!(d.rpc_urls, [url]);
        assert!(d.tokens.is_empty());
    }
}

#[test]
fn lookup_by_slug_and_chain_id_and_assets() {
    let reg = ChainRegistry::builtin();
    let base = reg.get("base").unwrap();
    assert_eq!(reg.get("8453"), Some(base));
    assert_eq!(base.chain_id, Some(8453));
    assert!(reg.get("Base").is_none());
    assert!(reg.get("999999").is_none());
    assert!(reg.get("").is_none());

    assert_eq!(base.asset("ETH"), Some(AssetRef::Native));
    assert_eq!(base.asset_decimals(AssetRef::Native), 18);
    let usdc = base.asset("usdc").unwrap();
    let AssetRef::Token(token) = usdc else {
        panic!("USDC is a token")
    };
    assert_eq!(token.contract, "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913");
    assert_eq!(base.asset_decimals(usdc), 6);
    assert_eq!(base.asset_symbol(usdc), "USDC");
    assert!(base.asset("USDT").is_none());
    assert!(reg.get("1").unwrap().asset("USDT").is_some());
}

const DEVNET_TOKEN: &str = r#"
[[chains]]
id = "devnet-l1"
name = "Devnet L1"
family = "evm"
chain_id = 31337
native_symbol = "ETH"
native_decimals = 18
confirmations = 1
rpc_urls = ["http://127.0.0.1:9545"]
max_fee_per_gas = "1000000000000000000000000000000" # a decimal string beyond i64
max_priority_fee_per_gas = 1

[[chains.tokens]]
symbol = "KFT"
contract = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
decimals = 18

[[chains]]
id = "extra"
name = "Extra"
family = "evm"
chain_id = 777
native_symbol = "ETH"
native_decimals = 18
confirmations = 1
max_fee_per_gas = 5
"#;

#[test]
fn merge_replaces_and_appends() {
    let mut reg = ChainRegistry::builtin();
    let n = reg.entries().len();
    reg.merge(ChainRegistry::from_toml(DEVNET_TOKEN).unwrap())
        .unwrap();
    assert_eq!(reg.entries().len(), n + 1);
    let d = reg.get("31337").unwrap();
    assert_eq!(d.rpc_urls, ["http://127.0.0.1:9545"]);
    assert_eq!(d.confirmations, 1);
    assert_eq!(
        d.max_fee_per_gas,
        1_000_000_000_000_000_000_000_000_000_000u128
    );
    assert!(matches!(d.asset("KFT"), Some(AssetRef::Token(t)) if t.decimals == 18));
    assert_eq!(reg.entries().last().unwrap().id, "extra");
    // Still in the original position.
    assert_eq!(reg.entries()[6].id, "devnet-l1");

    // A new id reusing an existing chain id is refused, and nothing changes.
    let before = reg.clone();
    let clash = DEVNET_TOKEN.replace("id = \"devnet-l1\"", "id = \"clash\"");
    let err = reg
        .merge(ChainRegistry::from_toml(&clash).unwrap())
        .unwrap_err();
    assert!(
        matches!(
            err,
            RegistryError::DuplicateChainId {
                chain_id: 31337,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(reg, before);
}

fn one(fields: &str, tokens: &str) -> String {
    format!("[[chains]]\n{fields}\n{tokens}")
}

const GOOD: &str = r#"id = "c"
name = "C"
family = "evm"
chain_id = 5
native_symbol = "ETH"
native_decimals = 18
confirmations = 1
max_fee_per_gas = 100
max_priority_fee_per_gas = 10"#;

const TOKEN: &str = r#"[[chains.tokens]]
symbol = "USDC"
contract = "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48"
decimals = 6"#;

fn err(text: &str) -> RegistryError {
    ChainRegistry::from_toml(text).unwrap_err()
}

#[test]
fn good_fixture_parses() {
    let reg = ChainRegistry::from_toml(&one(GOOD, TOKEN)).unwrap();
    assert_eq!(reg.get("5").unwrap().tokens.len(), 1);
}

#[test]
fn each_validation_error_from_bad_toml() {
    let e = err(&one(&GOOD.replace("id = \"c\"", "id = \"\""), ""));
    assert_eq!(e, RegistryError::EmptyId { index: 1 });

    let e = err(&one(&GOOD.replace("id = \"c\"", "id = \"Base\""), ""));
    assert!(matches!(e, RegistryError::BadId { .. }), "{e}");
    let e = err(&one(&GOOD.replace("id = \"c\"", "id = \"8453\""), ""));
    assert!(matches!(e, RegistryError::BadId { .. }), "{e}");

    let two = format!(
        "{}\n{}",
        one(GOOD, ""),
        one(&GOOD.replace("chain_id = 5", "chain_id = 6"), "")
    );
    assert_eq!(err(&two), RegistryError::DuplicateId { id: "c".into() });

    let two = format!(
        "{}\n{}",
        one(GOOD, ""),
        one(&GOOD.replace("id = \"c\"", "id = \"d\""), "")
    );
    assert_eq!(
        err(&two),
        RegistryError::DuplicateChainId {
            chain_id: 5,
            first: "c".into(),
            second: "d".into()
        }
    );

    let e = err(&one(&GOOD.replace("chain_id = 5", ""), ""));
    assert_eq!(e, RegistryError::MissingChainId { chain: "c".into() });

    let e = err(&one(
        &GOOD.replace("family = \"evm\"", "family = \"solana\""),
        "",
    ));
    assert_eq!(e, RegistryError::UnexpectedChainId { chain: "c".into() });

    let e = err(&one(GOOD, &TOKEN.replace("\"USDC\"", "\"eth\"")));
    assert!(
        matches!(e, RegistryError::TokenIsNativeSymbol { ref chain, .. } if chain == "c"),
        "{e}"
    );

    let dup = format!("{TOKEN}\n{}", TOKEN.replace("\"USDC\"", "\"usdc\""));
    let e = err(&one(GOOD, &dup));
    assert!(matches!(e, RegistryError::DuplicateToken { .. }), "{e}");

    // Bad checksum (one letter's case flipped), Solana mint on EVM, short.
    for contract in [
        "0xa0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
        "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB4",
    ] {
        let e = err(&one(
            GOOD,
            &TOKEN.replace("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", contract),
        ));
        assert!(
            matches!(e, RegistryError::BadContract { ref chain, ref symbol, .. } if chain == "c" && symbol == "USDC"),
            "{e}"
        );
        assert!(e.to_string().contains("USDC"));
    }
    // A Solana chain with an EVM address as mint.
    let sol = GOOD
        .replace("family = \"evm\"", "family = \"solana\"")
        .replace("chain_id = 5", "");
    let e = err(&one(&sol, TOKEN));
    assert!(matches!(e, RegistryError::BadContract { .. }), "{e}");
    // ... and with a real mint it is fine.
    ChainRegistry::from_toml(&one(
        &sol,
        &TOKEN.replace(
            "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
            "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v",
        ),
    ))
    .unwrap();

    let e = err(&one(GOOD, &TOKEN.replace("decimals = 6", "decimals = 37")));
    assert!(
        matches!(e, RegistryError::DecimalsTooLarge { decimals: 37, .. }),
        "{e}"
    );
    let e = err(&one(
        &GOOD.replace("native_decimals = 18", "native_decimals = 40"),
        "",
    ));
    assert!(
        matches!(e, RegistryError::DecimalsTooLarge { decimals: 40, .. }),
        "{e}"
    );

    let e = err(&one(
        &GOOD.replace(
            "max_priority_fee_per_gas = 10",
            "max_priority_fee_per_gas = 101",
        ),
        "",
    ));
    assert_eq!(
        e,
        RegistryError::PriorityAboveFeeCap {
            chain: "c".into(),
            priority: 101,
            cap: 100
        }
    );

    let e = err(&one(
        &GOOD
            .replace("max_fee_per_gas = 100", "")
            .replace("max_priority_fee_per_gas = 10", ""),
        "",
    ));
    assert_eq!(e, RegistryError::ZeroFeeCap { chain: "c".into() });

    // Unknown fields, negative fees and garbage fee strings are TOML errors.
    for bad in [
        one(&format!("{GOOD}\nrpc_url = \"x\""), ""),
        one(GOOD, &format!("{TOKEN}\naddress = \"x\"")),
        format!("{}\nextra = 1", one(GOOD, "")).replace("[[chains]]", "top = 1\n[[chains]]"),
        one(
            &GOOD.replace("max_fee_per_gas = 100", "max_fee_per_gas = -1"),
            "",
        ),
        one(
            &GOOD.replace("max_fee_per_gas = 100", "max_fee_per_gas = \"1e9\""),
            "",
        ),
        one(
            &GOOD.replace("max_fee_per_gas = 100", "max_fee_per_gas = 1.5"),
            "",
        ),
        one(
            &GOOD.replace("family = \"evm\"", "family = \"bitcoin\""),
            "",
        ),
    ] {
        assert!(matches!(err(&bad), RegistryError::Toml { .. }), "{bad}");
    }
}

#[test]
fn fee_strings_parse_and_serialize_as_strings() {
    let reg = ChainRegistry::from_toml(&one(
        &GOOD.replace(
            "max_fee_per_gas = 100",
            "max_fee_per_gas = \"340282366920938463463374607431768211455\"",
        ),
        "",
    ))
    .unwrap();
    let c = reg.get("c").unwrap();
    assert_eq!(c.max_fee_per_gas, u128::MAX);
    let json = serde_json::to_value(c).unwrap();
    assert_eq!(
        json["max_fee_per_gas"],
        "340282366920938463463374607431768211455"
    );
    let back: keyfold_chain::registry::ChainEntry = serde_json::from_value(json).unwrap();
    assert_eq!(&back, c);
}

#[test]
fn a_chain_is_live_unless_marked_sandbox() {
    let reg = ChainRegistry::from_toml(&one(GOOD, "")).unwrap();
    assert!(!reg.get("c").unwrap().sandbox);
    let reg = ChainRegistry::from_toml(&one(&format!("{GOOD}\nsandbox = true"), "")).unwrap();
    let c = reg.get("c").unwrap();
    assert!(c.sandbox);
    let json = serde_json::to_value(c).unwrap();
    assert_eq!(json["sandbox"], true);
    let back: keyfold_chain::registry::ChainEntry = serde_json::from_value(json).unwrap();
    assert_eq!(&back, c);
    // No built-in chain is a sandbox: a deployment marks its own.
    assert!(ChainRegistry::builtin()
        .entries()
        .iter()
        .all(|e| !e.sandbox));
    let bad = one(&format!("{GOOD}\nsandbox = \"yes\""), "");
    assert!(matches!(err(&bad), RegistryError::Toml { .. }), "{bad}");
}
