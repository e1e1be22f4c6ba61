//! A [`PrimeStore`] in a directory: one file per safe-prime pair, written
//! atomically (temporary file, fsync, rename), removed when taken.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use keyfold_mpc::primes::PrimeStore;
use keyfold_mpc::MpcError;
use zeroize::Zeroizing;

const EXT: &str = "kfprimes";

/// Safe primes kept as files under one directory.
pub struct DirPrimeStore {
    dir: PathBuf,
}

impl DirPrimeStore {
    /// Opens (and creates) the directory.
    pub fn open(dir: &Path) -> Result<Self, MpcError> {
        fs::create_dir_all(dir).map_err(|e| io(dir, "create", e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    fn entries(&self) -> Result<Vec<PathBuf>, MpcError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| io(&self.dir, "list", e))? {
            let path = entry.map_err(|e| io(&self.dir, "list", e))?.path();
            if path.extension().and_then(|e| e.to_str()) == Some(EXT) {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }
}

fn io(path: &Path, what: &str, e: std::io::Error) -> MpcError {
    MpcError::PrimePool(format!("cannot {what} {}: {e}", path.display()))
}

impl PrimeStore for DirPrimeStore {
    fn put(&self, encoded: Zeroizing<Vec<u8>>) -> Result<(), MpcError> {
        let mut name = [0u8; 8];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut name);
        let name = hex::encode(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let path = self.dir.join(format!("{name}.{EXT}"));
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(|e| io(&tmp, "create", e))?;
        f.write_all(&encoded).map_err(|e| io(&tmp, "write", e))?;
        f.sync_all().map_err(|e| io(&tmp, "sync", e))?;
        fs::rename(&tmp, &path).map_err(|e| io(&path, "rename to", e))?;
        Ok(())
    }

    fn take(&self) -> Result<Option<Zeroizing<Vec<u8>>>, MpcError> {
        let Some(path) = self.entries()?.into_iter().next() else {
            return Ok(None);
        };
        let bytes = Zeroizing::new(fs::read(&path).map_err(|e| io(&path, "read", e))?);
        // Removed before use: a pair of primes serves one party set only.
        fs::remove_file(&path).map_err(|e| io(&path, "remove", e))?;
        Ok(Some(bytes))
    }

    fn len(&self) -> Result<usize, MpcError> {
        Ok(self.entries()?.len())
    }
}
