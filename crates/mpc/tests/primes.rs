//! The safe-prime pool: real generation, persistence format, refill bookkeeping.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use keyfold_mpc::primes::{MemoryPrimeStore, PrimePool, PrimeStore, SafePrimes};
use keyfold_mpc::{test_fixtures, MpcError};

#[test]
fn generated_primes_are_safe_and_round_trip() {
    // Real generation (10-40 s of one core): `from_bytes` re-checks that both
    // numbers and their (p-1)/2 are prime.
    let primes = SafePrimes::generate();
    let bytes = primes.to_bytes().unwrap();
    SafePrimes::from_bytes(&bytes).unwrap();
}

#[test]
fn a_number_that_is_not_a_safe_prime_is_refused() {
    let bytes = test_fixtures::safe_primes(0).to_bytes().unwrap();
    // Re-pack with p + 2 under a valid checksum.
    let body_start = 13;
    let body = &bytes[body_start..bytes.len() - 32];
    let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
    let p = v["p"].as_str().unwrap().to_string();
    let mut digits: Vec<u8> = p.into_bytes();
    let last = digits.len() - 1;
    digits[last] = if digits[last] == b'f' {
        b'1'
    } else {
        digits[last] + 1
    };
    v["p"] = serde_json::Value::String(String::from_utf8(digits).unwrap());
    let repacked =
        keyfold_mpc::codec::encode(keyfold_mpc::codec::ObjectKind::SafePrimes, 1, &v).unwrap();
    let err = SafePrimes::from_bytes(&repacked).unwrap_err();
    assert!(err.to_string().contains("not a safe prime"), "{err}");
}

#[test]
fn pool_refills_to_target_and_never_overshoots() {
    let made = Arc::new(AtomicUsize::new(0));
    let counter = made.clone();
    let pool = PrimePool::with_generator(
        Box::new(MemoryPrimeStore::new()),
        3,
        Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(50));
            test_fixtures::safe_primes(counter.load(Ordering::SeqCst) % 5)
        }),
    );
    assert!(matches!(
        pool.take_wait(Duration::from_millis(10)),
        Err(MpcError::PrimePool(_))
    ));
    pool.refill(4);
    let status = pool.wait_filled(Duration::from_secs(30)).unwrap();
    assert_eq!(status.ready, 3);
    // Workers exit once the target is reached; none generates a fourth pair.
    pool.join_workers();
    assert_eq!(
        made.load(Ordering::SeqCst),
        3,
        "4 workers for 3 slots overshot"
    );
    for _ in 0..3 {
        pool.take_wait(Duration::from_secs(1)).unwrap();
    }
    assert!(pool.take().unwrap().is_none());
    // Top up again.
    pool.refill(1);
    pool.take_wait(Duration::from_secs(30)).unwrap();
}

#[test]
fn pool_reads_what_an_earlier_process_stored() {
    struct Shared(Arc<MemoryPrimeStore>);
    impl PrimeStore for Shared {
        fn put(&self, b: zeroize::Zeroizing<Vec<u8>>) -> Result<(), MpcError> {
            self.0.put(b)
        }
        fn take(&self) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, MpcError> {
            self.0.take()
        }
        fn len(&self) -> Result<usize, MpcError> {
            self.0.len()
        }
    }
    let store = Arc::new(MemoryPrimeStore::new());
    store
        .put(test_fixtures::safe_primes(1).to_bytes().unwrap())
        .unwrap();
    let pool = PrimePool::new(Box::new(Shared(store.clone())), 1);
    assert_eq!(pool.status().unwrap().ready, 1);
    assert!(pool.take().unwrap().is_some());
    // A corrupted entry is reported, not silently used.
    let mut bad = test_fixtures::safe_primes(2).to_bytes().unwrap();
    let mid = bad.len() / 2;
    bad[mid] ^= 1;
    store.put(bad).unwrap();
    assert!(matches!(pool.take(), Err(MpcError::Decode { .. })));
}
