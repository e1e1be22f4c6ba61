//! SoftHSM2 tokens for the devnet: when SoftHSM is installed, each signer
//! seals its shares in its own token (the HSM backend of `keyfold-hsm`);
//! otherwise the devnet falls back to software sealing and says so.
//!
//! Tokens are made with `softhsm2-util` (as `testnets/softhsm/setup.sh`
//! does) under a private configuration in the devnet's directory; the
//! signer processes get `SOFTHSM2_CONF` pointing at it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use keyfold_hsm::SOFTHSM2_MODULE;

/// The devnet's SoftHSM set-up.
pub struct SoftHsm {
    /// The `softhsm2.conf` signers must be started with (`SOFTHSM2_CONF`).
    pub conf: PathBuf,
    dir: PathBuf,
}

/// Whether SoftHSM2 (module and `softhsm2-util`) is installed.
pub fn available() -> bool {
    Path::new(SOFTHSM2_MODULE).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
}

fn random_pin() -> String {
    let mut b = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
    hex::encode(b)
}

impl SoftHsm {
    /// Writes the private configuration under `dir` (once).
    pub fn prepare(dir: &Path) -> Result<SoftHsm, String> {
        let tokens = dir.join("tokens");
        fs::create_dir_all(&tokens).map_err(|e| format!("{}: {e}", tokens.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for d in [dir, tokens.as_path()] {
                fs::set_permissions(d, fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("{}: {e}", d.display()))?;
            }
        }
        let conf = dir.join("softhsm2.conf");
        if !conf.exists() {
            let text = format!(
                "# SoftHSM2 configuration of the Keyfold devnet (made by `keyfold devnet`).\n\
                 directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n\
                 slots.removable = false\n",
                tokens.display()
            );
            fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;
        }
        Ok(SoftHsm {
            conf,
            dir: dir.to_path_buf(),
        })
    }

    /// Makes sure a token labelled `label` exists; returns the file holding
    /// its user PIN (mode 0600). A token made by an earlier run is kept.
    pub fn token(&self, label: &str) -> Result<PathBuf, String> {
        let pin_file = self.dir.join(format!("{label}.pin"));
        if pin_file.exists() {
            return Ok(pin_file);
        }
        let pin = random_pin();
        let so_pin = random_pin();
        // softhsm2-util takes the PINs as arguments for the instant it runs:
        // acceptable for a local devnet token, never for a production HSM.
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", &so_pin, "--pin", &pin])
            .output()
            .map_err(|e| format!("cannot run softhsm2-util: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "softhsm2-util could not create token {label}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        crate::write_private_new(&pin_file, pin.as_bytes())?;
        Ok(pin_file)
    }
}
