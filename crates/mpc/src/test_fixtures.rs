//! TEST-ONLY fixtures: pregenerated safe primes and aux info, so tests and
//! benchmarks that are not about aux-info generation skip minutes of setup.
//!
//! Compiled only with the `test-fixtures` feature, which production builds never
//! enable. The fixture file (`tests/fixtures/ecdsa.json`, made by
//! `examples/gen_fixtures.rs`) holds secret material in the clear; every key
//! made from it is a test key.

use crate::ecdsa::AuxInfo;
use crate::primes::SafePrimes;
use crate::KeyId;

const FIXTURE: &str = include_str!("../tests/fixtures/ecdsa.json");

fn doc() -> serde_json::Value {
    serde_json::from_str(FIXTURE).unwrap_or_else(|e| panic!("fixture file is corrupt: {e}"))
}

fn blob(v: &serde_json::Value) -> Vec<u8> {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("fixture entry is not a string"));
    hex::decode(s).unwrap_or_else(|e| panic!("fixture entry is not hex: {e}"))
}

/// Number of safe-prime pairs in the fixture.
pub const PRIME_PAIRS: usize = 5;

/// The group id the fixture aux info was generated for.
pub fn group_id() -> KeyId {
    KeyId::from_bytes([0xF1; 16])
}

/// Pregenerated safe primes number `i` (`i < PRIME_PAIRS`).
pub fn safe_primes(i: usize) -> SafePrimes {
    SafePrimes::from_bytes(&blob(&doc()["primes"][i]))
        .unwrap_or_else(|e| panic!("fixture primes {i}: {e}"))
}

/// Pregenerated aux info of every party of an `n`-party set (`n` is 3 or 5).
pub fn aux_info(n: u16) -> Vec<AuxInfo> {
    let doc = doc();
    let list = doc["aux"][format!("n{n}")]
        .as_array()
        .unwrap_or_else(|| panic!("no fixture aux info for n = {n}"));
    list.iter()
        .map(|v| AuxInfo::from_bytes(&blob(v)).unwrap_or_else(|e| panic!("fixture aux: {e}")))
        .collect()
}
