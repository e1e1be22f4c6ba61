//! The safe-prime pool.
//!
//! Aux-info generation needs two 1536-bit safe primes per party, which take 10 to
//! 40 s of one core to find. The pool finds them ahead of time on background
//! threads and keeps them in a [`PrimeStore`] (persistent in a node; this crate
//! ships an in-memory store and leaves disk to the caller, since it does no I/O),
//! so that creating a party set's aux info never waits for prime generation.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use cggmp21::rug::{integer::IsPrime, Integer};
use zeroize::Zeroizing;

use crate::codec::{self, ObjectKind};
use crate::ecdsa::Level;
use crate::MpcError;

const VERSION: u32 = 1;
/// Miller-Rabin rounds when loading primes from storage (error below 4^-32).
const LOAD_CHECK_ROUNDS: u32 = 32;

/// A pair of safe primes for one party's Paillier key (secret).
pub struct SafePrimes(cggmp21::PregeneratedPrimes<Level>);

#[derive(serde::Serialize, serde::Deserialize)]
struct PrimesBody {
    p: String,
    q: String,
}

impl Drop for PrimesBody {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.p);
        zeroize::Zeroize::zeroize(&mut self.q);
    }
}

impl SafePrimes {
    /// Finds a fresh pair (10 to 40 s of one core on the reference machine).
    pub fn generate() -> Self {
        Self(cggmp21::PregeneratedPrimes::generate(&mut rand_core::OsRng))
    }

    pub(crate) fn into_inner(self) -> cggmp21::PregeneratedPrimes<Level> {
        self.0
    }

    /// Versioned, checksummed encoding (plaintext secret).
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, MpcError> {
        let (p, q) = self.0.clone().split();
        let body = PrimesBody {
            p: p.to_string_radix(16),
            q: q.to_string_radix(16),
        };
        codec::encode(ObjectKind::SafePrimes, VERSION, &body)
    }

    /// Loads an encoding and checks that both numbers are safe primes of the
    /// required size (a corrupted prime would make aux-info generation fail
    /// late and obscurely, so it is refused here).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MpcError> {
        let body: PrimesBody = codec::decode(ObjectKind::SafePrimes, VERSION, bytes)?;
        let bad = |reason: String| MpcError::Decode {
            what: "safe primes",
            reason,
        };
        let parse = |s: &str| {
            Integer::from_str_radix(s, 16).map_err(|e| bad(format!("not a hex integer: {e}")))
        };
        let (p, q) = (parse(&body.p)?, parse(&body.q)?);
        for (name, x) in [("p", &p), ("q", &q)] {
            let half: Integer = Integer::from(x - 1u32) >> 1u32;
            if x.is_probably_prime(LOAD_CHECK_ROUNDS) == IsPrime::No
                || half.is_probably_prime(LOAD_CHECK_ROUNDS) == IsPrime::No
            {
                return Err(bad(format!("{name} is not a safe prime")));
            }
        }
        cggmp21::PregeneratedPrimes::new(p, q)
            .map(Self)
            .ok_or_else(|| bad("primes are too small for 128-bit security".into()))
    }
}

impl fmt::Debug for SafePrimes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SafePrimes(<redacted>)")
    }
}

/// Where the pool keeps its primes. Implementations must be durable if the node
/// is to survive restarts without regenerating (the signer node's store is).
pub trait PrimeStore: Send + Sync {
    /// Adds one encoded pair.
    fn put(&self, encoded: Zeroizing<Vec<u8>>) -> Result<(), MpcError>;
    /// Removes and returns one encoded pair, if any.
    fn take(&self) -> Result<Option<Zeroizing<Vec<u8>>>, MpcError>;
    /// Number of pairs held.
    fn len(&self) -> Result<usize, MpcError>;
    /// Whether the store is empty.
    fn is_empty(&self) -> Result<bool, MpcError> {
        Ok(self.len()? == 0)
    }
}

/// A [`PrimeStore`] in memory.
#[derive(Default)]
pub struct MemoryPrimeStore(Mutex<Vec<Zeroizing<Vec<u8>>>>);

impl MemoryPrimeStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Vec<Zeroizing<Vec<u8>>>>, MpcError> {
        self.0
            .lock()
            .map_err(|_| MpcError::Internal("prime store lock poisoned".into()))
    }
}

impl PrimeStore for MemoryPrimeStore {
    fn put(&self, encoded: Zeroizing<Vec<u8>>) -> Result<(), MpcError> {
        self.lock()?.push(encoded);
        Ok(())
    }
    fn take(&self) -> Result<Option<Zeroizing<Vec<u8>>>, MpcError> {
        Ok(self.lock()?.pop())
    }
    fn len(&self) -> Result<usize, MpcError> {
        Ok(self.lock()?.len())
    }
}

/// How the pool makes a pair. Production uses [`SafePrimes::generate`]; tests of
/// the pool's bookkeeping may inject a fixture.
pub type Generator = Arc<dyn Fn() -> SafePrimes + Send + Sync>;

/// A snapshot of the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Pairs ready in the store.
    pub ready: usize,
    /// Pairs being generated now.
    pub generating: usize,
    /// The level the pool refills to.
    pub target: usize,
}

struct Shared {
    store: Box<dyn PrimeStore>,
    generator: Generator,
    target: usize,
    generating: Mutex<usize>,
    changed: Condvar,
    stop: AtomicBool,
}

/// Keeps `target` pairs of safe primes ready, refilling on background threads.
pub struct PrimePool {
    shared: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl PrimePool {
    /// A pool over `store` that refills to `target` pairs with real generation.
    pub fn new(store: Box<dyn PrimeStore>, target: usize) -> Self {
        Self::with_generator(store, target, Arc::new(SafePrimes::generate))
    }

    /// A pool with a custom generator.
    pub fn with_generator(store: Box<dyn PrimeStore>, target: usize, generator: Generator) -> Self {
        Self {
            shared: Arc::new(Shared {
                store,
                generator,
                target,
                generating: Mutex::new(0),
                changed: Condvar::new(),
                stop: AtomicBool::new(false),
            }),
            workers: Mutex::new(Vec::new()),
        }
    }

    /// Starts `threads` background workers that generate until the store holds
    /// `target` pairs, then exit. Calling it again later tops the pool up.
    pub fn refill(&self, threads: usize) {
        let Ok(mut workers) = self.workers.lock() else {
            return;
        };
        workers.retain(|w| !w.is_finished());
        for _ in 0..threads {
            let shared = self.shared.clone();
            workers.push(std::thread::spawn(move || worker(&shared)));
        }
    }

    fn workers_running(&self) -> bool {
        self.workers
            .lock()
            .map(|w| w.iter().any(|h| !h.is_finished()))
            .unwrap_or(false)
    }

    /// Waits until every background worker has exited (they exit once the
    /// store holds `target` pairs, or after the pair they are on when the pool
    /// is dropped).
    pub fn join_workers(&self) {
        let handles: Vec<_> = match self.workers.lock() {
            Ok(mut w) => w.drain(..).collect(),
            Err(_) => return,
        };
        for h in handles {
            let _ = h.join();
        }
    }

    /// What the pool holds now.
    pub fn status(&self) -> Result<PoolStatus, MpcError> {
        Ok(PoolStatus {
            ready: self.shared.store.len()?,
            generating: *self.shared.lock_generating()?,
            target: self.shared.target,
        })
    }

    /// Takes a ready pair, if any.
    pub fn take(&self) -> Result<Option<SafePrimes>, MpcError> {
        match self.shared.store.take()? {
            Some(bytes) => SafePrimes::from_bytes(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// Takes a pair, waiting up to `timeout` for a background worker to finish
    /// one. Start workers with [`PrimePool::refill`] first.
    pub fn take_wait(&self, timeout: Duration) -> Result<SafePrimes, MpcError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(p) = self.take()? {
                return Ok(p);
            }
            let generating = self.shared.lock_generating()?;
            let now = std::time::Instant::now();
            if now >= deadline {
                return Err(MpcError::PrimePool(format!(
                    "no safe primes ready after {timeout:?} ({} being generated)",
                    *generating
                )));
            }
            if *generating == 0 && !self.workers_running() && self.shared.store.is_empty()? {
                return Err(MpcError::PrimePool(
                    "no safe primes ready and none being generated: call refill first".into(),
                ));
            }
            // Woken when a worker stores a pair; the timeout guards against a lost wake-up.
            let _ = self
                .shared
                .changed
                .wait_timeout(generating, (deadline - now).min(Duration::from_millis(500)))
                .map_err(|_| MpcError::Internal("prime pool lock poisoned".into()))?;
        }
    }

    /// Waits until the store holds `target` pairs or `timeout` passes.
    pub fn wait_filled(&self, timeout: Duration) -> Result<PoolStatus, MpcError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let status = self.status()?;
            let now = std::time::Instant::now();
            if status.ready >= status.target || now >= deadline || !self.workers_running() {
                return Ok(status);
            }
            let generating = self.shared.lock_generating()?;
            let _ = self
                .shared
                .changed
                .wait_timeout(generating, (deadline - now).min(Duration::from_millis(500)))
                .map_err(|_| MpcError::Internal("prime pool lock poisoned".into()))?;
        }
    }
}

impl Drop for PrimePool {
    fn drop(&mut self) {
        // Workers finish the pair they are on (it is stored, not lost) and exit.
        self.shared.stop.store(true, Ordering::SeqCst);
    }
}

impl Shared {
    fn lock_generating(&self) -> Result<std::sync::MutexGuard<'_, usize>, MpcError> {
        self.generating
            .lock()
            .map_err(|_| MpcError::Internal("prime pool lock poisoned".into()))
    }
}

fn worker(shared: &Shared) {
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        // Claim one slot under the lock, so workers never overshoot the target.
        {
            let Ok(mut generating) = shared.lock_generating() else {
                return;
            };
            let ready = match shared.store.len() {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(error = %e, "prime store unreadable; prime worker stops");
                    return;
                }
            };
            if ready + *generating >= shared.target {
                return;
            }
            *generating += 1;
        }
        let started = std::time::Instant::now();
        let primes = (shared.generator)();
        let stored = primes.to_bytes().and_then(|b| shared.store.put(b));
        if let Ok(mut generating) = shared.lock_generating() {
            *generating -= 1;
        }
        shared.changed.notify_all();
        match stored {
            Ok(()) => tracing::info!(
                elapsed_ms = started.elapsed().as_millis() as u64,
                "safe-prime pair ready"
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot store safe primes; prime worker stops");
                return;
            }
        }
    }
}
