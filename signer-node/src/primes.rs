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
