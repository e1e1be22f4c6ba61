//! The safe-prime pool's storage in the signer's sealed store.

use std::sync::Arc;

use keyfold_mpc::primes::PrimeStore;
use keyfold_mpc::MpcError;
use keyfold_store::signer::SignerStore;
use zeroize::Zeroizing;

/// Keeps safe primes sealed in the signer's database.
pub struct StorePrimes(pub Arc<SignerStore>);

fn err(e: keyfold_store::StoreError) -> MpcError {
    MpcError::PrimePool(format!("signer store: {e}"))
}

impl PrimeStore for StorePrimes {
    fn put(&self, encoded: Zeroizing<Vec<u8>>) -> Result<(), MpcError> {
        self.0.put_primes(&encoded).map_err(err)
    }

    fn take(&self) -> Result<Option<Zeroizing<Vec<u8>>>, MpcError> {
        self.0.take_primes().map_err(err)
    }

    fn len(&self) -> Result<usize, MpcError> {
        self.0.count_primes().map_err(err)
    }
}

/// Loads a safe-prime pair from `file` (a keyfold-mpc container, as the pool
/// keeps them) into the pool of the node configured by `config`, sealed by
/// its configured backend. Primes made on another machine, or fixtures in
/// tests, spare a new node minutes of generation. The pair is checked
/// (container and primality) before it is stored.
pub fn import_primes(
    config: &crate::SignerConfig,
    file: &std::path::Path,
) -> Result<usize, crate::SignerError> {
    let config_err = |reason: String| crate::SignerError::Config {
        path: file.to_path_buf(),
        reason,
    };
    let bytes = Zeroizing::new(
        std::fs::read(file).map_err(|e| config_err(format!("cannot read primes: {e}")))?,
    );
    keyfold_mpc::primes::SafePrimes::from_bytes(&bytes)
        .map_err(|e| config_err(format!("not a safe-prime pair: {e}")))?;
    std::fs::create_dir_all(&config.data_dir).map_err(|e| crate::SignerError::Config {
        path: config.data_dir.clone(),
        reason: format!("cannot create data directory: {e}"),
    })?;
    let sealer = crate::open_sealer(config)?;
    let store = SignerStore::open(
        config.data_dir.join("signer.db"),
        &config.node_id,
        Arc::from(sealer),
    )?;
    store.put_primes(&bytes)?;
    Ok(store.count_primes()?)
}
