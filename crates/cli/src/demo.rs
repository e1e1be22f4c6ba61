//! `keyfold demo`: every protocol of `keyfold-mpc`, all parties in one process.
//!
//! Safe primes and aux info are kept under the data directory, so only the
//! first run pays for them. Keys themselves are made fresh on every run and
//! never written: the demo is a walkthrough, not a wallet.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::executor::block_on;
use keyfold_mpc::ecdsa::{self, aux_threshold, AuxInfo, DerivationPath, HashAlg};
use keyfold_mpc::primes::PrimePool;
use keyfold_mpc::{
    eddsa, local, KeyId, MpcError, ProtocolKind, RequestId, SessionDescriptor, SignerSet, Threshold,
};

use crate::prime_dir::DirPrimeStore;

const N: u16 = 3;
const T: u16 = 2;

/// Why the demo stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A protocol step failed.
    #[error("{step}: {source}")]
    Mpc {
        /// Which step.
        step: &'static str,
        /// The protocol error.
        source: MpcError,
    },
    /// A file under the data directory could not be used.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The JSON summary could not be written.
    #[error("{0}")]
    Output(String),
    /// A signature did not verify: a bug, reported rather than hidden.
    #[error("verification failed: {0}")]
    Verify(String),
}

fn mpc(step: &'static str) -> impl FnOnce(MpcError) -> DemoError {
    move |source| DemoError::Mpc { step, source }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Prints a line every few seconds while a long step runs, so it never looks hung.
struct Ticker {
    done: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(what: String, status: impl Fn() -> String + Send + 'static) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let started = Instant::now();
        let handle = std::thread::spawn(move || {
            let mut next = Duration::from_secs(5);
            while !flag.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                if started.elapsed() >= next {
                    eprintln!(
                        "      ... {what}: {} ({} s)",
                        status(),
                        started.elapsed().as_secs()
                    );
                    next += Duration::from_secs(5);
                }
            }
        });
        Self {
            done,
            handle: Some(handle),
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn request(id: &str) -> Result<RequestId, DemoError> {
    RequestId::new(id).map_err(mpc("request id"))
}

/// Runs the demo.
pub fn run(data_dir: &Path, message: &[u8], out: Option<&Path>) -> Result<(), DemoError> {
    let threshold = Threshold::new(T, N).map_err(mpc("threshold"))?;
    println!("Keyfold demo: {threshold} threshold keys, all parties in this process.");
    println!("No step below ever forms a whole private key.\n");
    fs::create_dir_all(data_dir).map_err(io(data_dir))?;

    let aux = load_or_make_aux(data_dir)?;

    // --- secp256k1 (cggmp21) ---
    let started = Instant::now();
    let key = KeyId::random();
    let session = SessionDescriptor::new(
        ProtocolKind::EcdsaKeygen,
        key,
        request("demo-ecdsa-keygen")?,
        threshold,
        SignerSet::all(N),
    )
    .map_err(mpc("ECDSA keygen"))?;
    let shares = local::all_ok(block_on(local::run(N, |i, d| {
        let session = session.clone();
        let aux = aux[usize::from(i)].clone();
        async move { ecdsa::keygen(&session, i, &aux, d).await }
    })))
    .map_err(mpc("ECDSA keygen"))?;
    let info = shares[0].public_info();
    println!(
        "[3/5] secp256k1 {threshold} key {key}: generated in {:.1} ms",
        ms(started)
    );
    println!("      public key  {}", hex::encode(info.public_key));

    // Presignature by signers {0, 1}, then the one-round online step.
    let signers = SignerSet::new(&[0, 1], threshold).map_err(mpc("signer set"))?;
    let started = Instant::now();
    let session = SessionDescriptor::new(
        ProtocolKind::EcdsaPresign,
        key,
        request("demo-presign")?,
        threshold,
        signers.clone(),
    )
    .map_err(mpc("presignature"))?;
    let presigs = local::all_ok(block_on(local::run(T, |pos, d| {
        let session = session.clone();
        let share = shares[usize::from(signers.parties()[usize::from(pos)])].clone();
        async move { ecdsa::presign(&session, &share, d).await }
    })))
    .map_err(mpc("presignature"))?;
    println!(
        "      presignature by signers {signers}: {:.0} ms (both parties, one core)",
        ms(started)
    );
    let started = Instant::now();
    let partials: Vec<_> = presigs
        .into_iter()
        .map(|p| p.issue_partial(message, HashAlg::Sha256))
        .collect();
    let sig = ecdsa::combine(&info, &partials, message, HashAlg::Sha256).map_err(mpc("combine"))?;
    println!("      online signing + combine: {:.3} ms", ms(started));
    sig.verify(&info.public_key, message, HashAlg::Sha256)
        .map_err(DemoError::Verify)?;
    println!("      signature   {}", hex::encode(sig.to_bytes()));
    println!("      verified with k256 (sha256, low-S): ok");

    // Full signing by another quorum, for an HD child key.
    let path: DerivationPath = "m/0/1".parse().map_err(mpc("derivation path"))?;
    let child = shares[1]
        .derive_public_key(&path)
        .map_err(mpc("derivation"))?;
    let signers = SignerSet::new(&[1, 2], threshold).map_err(mpc("signer set"))?;
    let started = Instant::now();
    let session = SessionDescriptor::new(
        ProtocolKind::EcdsaSign,
        key,
        request("demo-full-sign")?,
        threshold,
        signers.clone(),
    )
    .map_err(mpc("full signing"))?;
    let child_sigs = local::all_ok(block_on(local::run(T, |pos, d| {
        let session = session.clone();
        let share = shares[usize::from(signers.parties()[usize::from(pos)])].clone();
        let path = path.clone();
        async move {
            ecdsa::sign(
                &session,
                &share,
                message,
                HashAlg::Keccak256,
                Some(&path),
                d,
            )
            .await
        }
    })))
    .map_err(mpc("full signing"))?;
    child_sigs[0]
        .verify(&child, message, HashAlg::Keccak256)
        .map_err(DemoError::Verify)?;
    println!(
        "      full signing by signers {signers} with child key {path} ({}): {:.0} ms, verified with k256 (keccak256)",
        hex::encode(child),
        ms(started)
    );

    // --- Ed25519 (FROST) ---
    let started = Instant::now();
    let ed_key = KeyId::random();
    let session = SessionDescriptor::new(
        ProtocolKind::EddsaKeygen,
        ed_key,
        request("demo-eddsa-keygen")?,
        threshold,
        SignerSet::all(N),
    )
    .map_err(mpc("Ed25519 keygen"))?;
    let ed_shares = local::all_ok(block_on(local::run(N, |i, d| {
        let session = session.clone();
        async move { eddsa::keygen(&session, i, d).await }
    })))
    .map_err(mpc("Ed25519 keygen"))?;
    let ed_pk = ed_shares[0].public_key();
    println!(
        "[4/5] Ed25519 {threshold} key {ed_key}: generated in {:.1} ms",
        ms(started)
    );
    println!("      public key  {}", hex::encode(ed_pk));
    let signers = SignerSet::new(&[0, 2], threshold).map_err(mpc("signer set"))?;
    let started = Instant::now();
    let session = SessionDescriptor::new(
        ProtocolKind::EddsaSign,
        ed_key,
        request("demo-eddsa-sign")?,
        threshold,
        signers.clone(),
    )
    .map_err(mpc("Ed25519 signing"))?;
    let ed_sigs = local::all_ok(block_on(local::run(T, |pos, d| {
        let session = session.clone();
        let share = ed_shares[usize::from(signers.parties()[usize::from(pos)])].clone();
        async move { eddsa::sign(&session, &share, message, d).await }
    })))
    .map_err(mpc("Ed25519 signing"))?;
    ed_sigs[0]
        .verify(&ed_pk, message)
        .map_err(DemoError::Verify)?;
    println!("      signing by signers {signers}: {:.1} ms", ms(started));
    println!("      signature   {}", hex::encode(ed_sigs[0].to_bytes()));
    println!("      verified with ed25519-dalek verify_strict: ok");

    if let Some(out) = out {
        let doc = crate::output::Summary {
            ecdsa: crate::output::EcdsaSummary {
                public_key: hex::encode(info.public_key),
                message: hex::encode(message),
                hash: HashAlg::Sha256.to_string(),
                signature: hex::encode(sig.to_bytes()),
            },
            eddsa: crate::output::EddsaSummary {
                public_key: hex::encode(ed_pk),
                message: hex::encode(message),
                signature: hex::encode(ed_sigs[0].to_bytes()),
            },
            payouts: Vec::new(),
            solana: Vec::new(),
            merchant: None,
            orders: Vec::new(),
            webhooks: Vec::new(),
            treasury: Vec::new(),
            risk: None,
        };
        crate::output::write(out, &doc).map_err(DemoError::Output)?;
        println!("[5/5] wrote {}", out.display());
    } else {
        println!("[5/5] done (pass --out FILE to save keys and signatures as JSON)");
    }
    Ok(())
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn aux_path(dir: &Path, i: u16) -> PathBuf {
    dir.join(format!("party-{i}.kfaux"))
}

/// Loads the signer group's aux info from the data directory, or makes it from
/// pooled safe primes (generating the primes first if the pool is short).
fn load_or_make_aux(data_dir: &Path) -> Result<Vec<AuxInfo>, DemoError> {
    let aux_dir = data_dir.join("aux");
    let cached: Option<Vec<AuxInfo>> = (0..N)
        .map(|i| {
            let bytes = fs::read(aux_path(&aux_dir, i)).ok()?;
            match AuxInfo::from_bytes(&bytes) {
                Ok(a) if a.i() == i && a.n() == N => Some(a),
                Ok(_) | Err(_) => {
                    eprintln!(
                        "      ignoring unusable {}",
                        aux_path(&aux_dir, i).display()
                    );
                    None
                }
            }
        })
        .collect();
    if let Some(aux) = cached {
        println!(
            "[1/5] safe primes: not needed (aux info already in {})",
            aux_dir.display()
        );
        println!(
            "[2/5] aux info for the {N}-party signer group: reused (serves every key of the group)"
        );
        return Ok(aux);
    }

    let prime_dir = data_dir.join("primes");
    let store = DirPrimeStore::open(&prime_dir).map_err(mpc("prime store"))?;
    let pool = Arc::new(PrimePool::new(Box::new(store), usize::from(N)));
    let status = pool.status().map_err(mpc("prime pool"))?;
    let started = Instant::now();
    if status.ready < usize::from(N) {
        println!(
            "[1/5] safe primes: {} of {N} pairs ready in {}; generating the rest on {} threads (10-40 s per pair per core)",
            status.ready,
            prime_dir.display(),
            threads()
        );
        pool.refill(threads());
        let ticker_pool = pool.clone();
        let _ticker = Ticker::start("safe primes".into(), move || match ticker_pool.status() {
            Ok(s) => format!(
                "{} of {} ready, {} in progress",
                s.ready, s.target, s.generating
            ),
            Err(e) => e.to_string(),
        });
        pool.wait_filled(Duration::from_secs(3600))
            .map_err(mpc("prime pool"))?;
        println!(
            "      {N} pairs ready after {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        println!(
            "[1/5] safe primes: {N} pairs ready in {}",
            prime_dir.display()
        );
    }
    let mut primes = Vec::new();
    for _ in 0..N {
        primes.push(Some(
            pool.take_wait(Duration::from_secs(3600))
                .map_err(mpc("prime pool"))?,
        ));
    }

    let started = Instant::now();
    println!("[2/5] aux info for the {N}-party signer group: generating (about 10 s per party)");
    let session = SessionDescriptor::new(
        ProtocolKind::EcdsaAuxInfo,
        KeyId::random(),
        request("demo-aux-info")?,
        aux_threshold(N).map_err(mpc("aux info"))?,
        SignerSet::all(N),
    )
    .map_err(mpc("aux info"))?;
    let aux = {
        let _ticker = Ticker::start("aux info".into(), || "running".into());
        local::all_ok(block_on(local::run(N, |i, d| {
            let session = session.clone();
            let p = primes[usize::from(i)].take();
            async move {
                let p = p.ok_or_else(|| MpcError::Internal("primes taken twice".into()))?;
                ecdsa::aux_info_gen(&session, i, p, d).await
            }
        })))
        .map_err(mpc("aux info"))?
    };
    println!(
        "      done in {:.1} s; kept in {} for later runs",
        started.elapsed().as_secs_f64(),
        aux_dir.display()
    );
    fs::create_dir_all(&aux_dir).map_err(io(&aux_dir))?;
    for a in &aux {
        let path = aux_path(&aux_dir, a.i());
        let bytes = a.to_bytes().map_err(mpc("aux info"))?;
        write_private(&path, &bytes)?;
    }
    Ok(aux)
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(usize::from(N))
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DemoError> {
    use std::io::Write;
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}
