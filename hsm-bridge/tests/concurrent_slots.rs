//! Token discovery and creation from many threads of one process at once.
//!
//! SoftHSM2 refreshes its slot table inside `C_GetSlotList`; two threads
//! doing it at the same time trip an assertion in its slot manager
//! (`SlotManager::insertToken: Assertion 'result.second' failed`) and abort
//! the whole process. Keyfold serializes every call that enumerates or
//! changes slots, so this binary survives threads that open and create
//! tokens all at the same time. Before that lock existed it aborted (see
//! `docs/hsm.md`). A failure here is the process dying with SIGABRT, which
//! the test harness reports as a failed binary.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;

use keyfold_hsm::testing::TestToken;
use keyfold_hsm::{Hsm, HsmError, HsmSealer};

/// Threads racing in each round (creators and openers).
const THREADS: usize = 8;
/// Rounds of the race; each round adds THREADS / 2 tokens.
const ROUNDS: usize = 40;

#[test]
fn opening_and_creating_tokens_from_many_threads_at_once() {
    // Tokens to open while others are being created.
    let seeds: Vec<TestToken> = (0..4)
        .map(|i| common::token(&format!("seed-{i}")))
        .collect();
    let seeds = Arc::new(seeds);
    let mut created = 0usize;
    for round in 0..ROUNDS {
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let barrier = Arc::clone(&barrier);
                let seeds = Arc::clone(&seeds);
                thread::spawn(move || -> Result<Option<TestToken>, String> {
                    barrier.wait();
                    if t % 2 == 0 {
                        // A creator: C_GetSlotList, C_InitToken, C_InitPIN ..
                        let token = TestToken::create(&format!("race-{round}-{t}"))
                            .map_err(|e| e.to_string())?;
                        // .. then opens it at once, as a restore would.
                        let hsm = token.open().map_err(|e| e.to_string())?;
                        HsmSealer::open_or_create(&hsm, "race-seal").map_err(|e| e.to_string())?;
                        Ok(Some(token))
                    } else {
                        // An opener: discovery (C_GetSlotList, C_GetTokenInfo)
                        // of an existing token, twice, as a node opening its
                        // sealer and its audit key at start-up does.
                        let seed = &seeds[t % seeds.len()];
                        let a = seed.open().map_err(|e| e.to_string())?;
                        let b = seed.open().map_err(|e| e.to_string())?;
                        let mut r = [0u8; 16];
                        a.generate_random(&mut r).map_err(|e| e.to_string())?;
                        b.generate_random(&mut r).map_err(|e| e.to_string())?;
                        Ok(None)
                    }
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(Ok(Some(_))) => created += 1,
                Ok(Ok(None)) => {}
                Ok(Err(e)) => panic!("round {round}: {e}"),
                Err(_) => panic!("round {round}: a thread panicked"),
            }
        }
    }
    assert_eq!(created, ROUNDS * THREADS / 2);
}

#[test]
fn a_missing_label_is_reported_while_tokens_are_created() {
    // Discovery that finds nothing must name the label, not fail on a
    // half-made token of another thread.
    keyfold_hsm::testing::softhsm().unwrap_or_else(|e| panic!("{e}"));
    let barrier = Arc::new(Barrier::new(4));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                if t % 2 == 0 {
                    TestToken::create(&format!("miss-{t}"))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                } else {
                    let config = keyfold_hsm::HsmConfig::softhsm(
                        "no-such-token-label",
                        keyfold_hsm::PinSource::Env("KEYFOLD_UNUSED_PIN".into()),
                    );
                    match Hsm::open(&config) {
                        Err(HsmError::TokenNotFound { label, .. }) => {
                            assert_eq!(label, "no-such-token-label");
                            Ok(())
                        }
                        other => Err(format!("expected TokenNotFound, got {other:?}")),
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("thread panicked").expect("thread failed");
    }
}
