//! Test support (feature `test-support`): SoftHSM2 tokens in a private token
//! directory, one directory per test process, one token per test.
//!
//! SoftHSM2 reads `SOFTHSM2_CONF` once, at `C_Initialize`, and does not see
//! tokens that another process (such as `softhsm2-util`) adds to its token
//! directory afterwards. So every token of a test process lives in one
//! configuration and token directory, created on first use:
//!
//! * [`softhsm`] creates `$TMPDIR/keyfold-softhsm-<pid>-<random>/` with a
//!   `softhsm2.conf` whose `directories.tokendir` is its `tokens/`, and sets
//!   `SOFTHSM2_CONF` for the process before the module is initialized
//!   (directories of test processes that are no longer running are removed);
//! * [`TestToken::create`] initializes a fresh token with a unique label in
//!   that directory from inside the process (`C_InitToken`, then
//!   `C_InitPIN` as the security officer: what `softhsm2-util --init-token`
//!   does), with random PINs and the user PIN in a 0600 file.
//!
//! When SoftHSM2 or OpenSC is not installed the helpers fail with an error
//! telling to run `./testnets/ensure-deps.sh`: tests never skip silently.
//!
//! **Tests only**: the PINs are kept in plain `String`s.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

use cryptoki::types::AuthPin;
use rand_core::{OsRng, RngCore};

use crate::config::{HsmConfig, PinSource, MAX_TOKEN_LABEL, SOFTHSM2_MODULE};
use crate::error::HsmError;
use crate::session::{module_context, module_initialized, Hsm};
use crate::slots::init_free_token;

/// What to run when SoftHSM2 or OpenSC is missing.
pub const ENSURE_DEPS: &str = "./testnets/ensure-deps.sh";

/// Errors of the test helpers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TestSupportError {
    /// A tool or the module is not installed.
    #[error("{what} is missing: run {ENSURE_DEPS} (it installs softhsm2 and opensc)")]
    Missing {
        /// The missing program or file.
        what: String,
    },
    /// The module was initialized by this process before [`softhsm`] could
    /// point it at the test token directory.
    #[error("SoftHSM2 was initialized in this process before the test helper set SOFTHSM2_CONF: call keyfold_hsm::testing::softhsm() (or TestToken::create) before opening any token")]
    TooLate,
    /// A file operation failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Setting up the process's token directory failed earlier (the first
    /// error, repeated to every caller).
    #[error("SoftHSM2 test setup failed: {0}")]
    Setup(String),
    /// A PKCS#11 step failed.
    #[error(transparent)]
    Hsm(#[from] HsmError),
    /// Initializing a token failed.
    #[error("initializing test token `{label}`: {reason}")]
    Token {
        /// The token label.
        label: String,
        /// What failed.
        reason: String,
    },
    /// An external command failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line (without PINs).
        command: String,
        /// Exit status and standard error.
        reason: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TestSupportError + '_ {
    move |source| TestSupportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The process's SoftHSM2 configuration and token directory.
#[derive(Debug)]
pub struct SoftHsmDir {
    dir: PathBuf,
    conf: PathBuf,
}

impl SoftHsmDir {
    /// The directory holding `softhsm2.conf`, `tokens/` and `pins/`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `softhsm2.conf` path (what `SOFTHSM2_CONF` is set to).
    pub fn conf(&self) -> &Path {
        &self.conf
    }
}

static SOFTHSM: OnceLock<Result<SoftHsmDir, String>> = OnceLock::new();
static TOKEN_COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Whether `program` is an executable in `PATH`.
pub fn in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

fn random_hex(bytes: usize) -> Result<String, TestSupportError> {
    let mut buf = vec![0u8; bytes];
    OsRng
        .try_fill_bytes(&mut buf)
        .map_err(|e| TestSupportError::Setup(format!("OS RNG: {e}")))?;
    Ok(hex::encode(buf))
}

/// Removes `keyfold-softhsm-<pid>-*` directories of processes that are gone.
fn remove_stale_dirs(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("keyfold-softhsm-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn init_dir() -> Result<SoftHsmDir, TestSupportError> {
    if !Path::new(SOFTHSM2_MODULE).exists() {
        return Err(TestSupportError::Missing {
            what: format!("the SoftHSM2 module {SOFTHSM2_MODULE}"),
        });
    }
    if !in_path("softhsm2-util") {
        return Err(TestSupportError::Missing {
            what: "softhsm2-util".into(),
        });
    }
    if module_initialized(Path::new(SOFTHSM2_MODULE)) {
        return Err(TestSupportError::TooLate);
    }
    let tmp = std::env::temp_dir();
    remove_stale_dirs(&tmp);
    let dir = tmp.join(format!(
        "keyfold-softhsm-{}-{}",
        std::process::id(),
        random_hex(6)?
    ));
    let tokens = dir.join("tokens");
    fs::create_dir_all(&tokens).map_err(io_err(&tokens))?;
    let pins = dir.join("pins");
    fs::create_dir_all(&pins).map_err(io_err(&pins))?;
    let conf = dir.join("softhsm2.conf");
    let text = format!(
        "# Keyfold test token directory of process {}\n\
         directories.tokendir = {}\n\
         objectstore.backend = file\n\
         log.level = ERROR\n\
         slots.removable = false\n",
        std::process::id(),
        tokens.display()
    );
    fs::write(&conf, text).map_err(io_err(&conf))?;
    std::env::set_var("SOFTHSM2_CONF", &conf);
    tracing::info!(conf = %conf.display(), "SoftHSM2 test token directory");
    Ok(SoftHsmDir { dir, conf })
}

/// The process's SoftHSM2 test directory, created (and `SOFTHSM2_CONF` set)
/// on first call.
pub fn softhsm() -> Result<&'static SoftHsmDir, TestSupportError> {
    match SOFTHSM.get_or_init(|| init_dir().map_err(|e| e.to_string())) {
        Ok(dir) => Ok(dir),
        Err(message) => Err(TestSupportError::Setup(message.clone())),
    }
}

/// A fresh SoftHSM2 token for one test.
#[derive(Debug, Clone)]
pub struct TestToken {
    /// The token label (unique in the process, at most 32 bytes).
    pub label: String,
    /// The user PIN.
    pub pin: String,
    /// The security officer PIN.
    pub so_pin: String,
    /// A 0600 file holding the user PIN.
    pub pin_file: PathBuf,
    /// The process's `softhsm2.conf`.
    pub conf: PathBuf,
}

impl TestToken {
    /// Initializes a token labelled `name-N` (N unique in the process; `name`
    /// is shortened to fit the 32-byte label).
    pub fn create(name: &str) -> Result<TestToken, TestSupportError> {
        let dir = softhsm()?;
        let n = TOKEN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let suffix = format!("-{n}");
        let mut prefix: String = name.chars().filter(|c| !c.is_control()).collect();
        while prefix.len() + suffix.len() > MAX_TOKEN_LABEL {
            prefix.pop();
        }
        let label = format!("{prefix}{suffix}");
        let pin = random_hex(8)?;
        let so_pin = random_hex(8)?;
        let fail = |reason: String| TestSupportError::Token {
            label: label.clone(),
            reason,
        };

        let (_, ctx) = module_context(Path::new(SOFTHSM2_MODULE))?;
        // Under the process-wide slot lock, like every discovery.
        init_free_token(
            &ctx,
            &label,
            &AuthPin::from(so_pin.as_str()),
            &AuthPin::from(pin.as_str()),
        )
        .map_err(|f| fail(format!("{}: {}", f.step, f.reason)))?;

        let pin_file = dir.dir().join("pins").join(format!("{label}.pin"));
        write_private(&pin_file, pin.as_bytes())?;
        Ok(TestToken {
            label,
            pin,
            so_pin,
            pin_file,
            conf: dir.conf().to_path_buf(),
        })
    }

    /// A configuration for this token with the PIN read from
    /// [`TestToken::pin_file`].
    pub fn config(&self) -> HsmConfig {
        HsmConfig::softhsm(&self.label, PinSource::File(self.pin_file.clone()))
    }

    /// Opens the token with [`TestToken::config`].
    pub fn open(&self) -> Result<Hsm, HsmError> {
        Hsm::open(&self.config())
    }

    /// Runs `pkcs11-tool --module <softhsm> --token-label <label> --login
    /// --pin <pin> ARGS` with this process's `SOFTHSM2_CONF` and returns its
    /// standard output.
    pub fn pkcs11_tool(&self, args: &[&str]) -> Result<String, TestSupportError> {
        if !in_path("pkcs11-tool") {
            return Err(TestSupportError::Missing {
                what: "pkcs11-tool (package opensc)".into(),
            });
        }
        let shown = format!(
            "pkcs11-tool --module {SOFTHSM2_MODULE} --token-label {} --login --pin <pin> {}",
            self.label,
            args.join(" ")
        );
        let output = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--module", SOFTHSM2_MODULE, "--token-label", &self.label])
            .args(["--login", "--pin", &self.pin])
            .args(args)
            .output()
            .map_err(|e| TestSupportError::Command {
                command: shown.clone(),
                reason: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(TestSupportError::Command {
                command: shown,
                reason: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// Writes a new file with mode 0600.
pub fn write_private(path: &Path, contents: &[u8]) -> Result<(), TestSupportError> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(contents).map_err(io_err(path))
}
