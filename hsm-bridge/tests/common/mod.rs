//! Shared test helpers: one SoftHSM2 token per test, in the process's
//! private token directory (see `keyfold_hsm::testing`).
#![allow(dead_code)]

use keyfold_hsm::testing::TestToken;
use keyfold_hsm::Hsm;

/// A fresh token for one test. Fails (never skips) when SoftHSM2 is missing,
/// with a message saying to run ./testnets/ensure-deps.sh.
pub fn token(name: &str) -> TestToken {
    TestToken::create(name).unwrap_or_else(|e| panic!("{e}"))
}

/// A fresh token, opened.
pub fn open_token(name: &str) -> (TestToken, Hsm) {
    let t = token(name);
    let hsm = t.open().unwrap_or_else(|e| panic!("{e}"));
    (t, hsm)
}
