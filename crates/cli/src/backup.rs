//! `keyfold backup`: offline recovery of a signer node's key shares.
//!
//! * `keygen` makes the offline recovery key (an age X25519 identity file,
//!   mode 0600) and prints its public recipient (`age1...`);
//! * `export` opens a signer's store with the sealer its configuration names
//!   (key file, passphrase or HSM token) and writes every key share and aux
//!   info, encrypted to the recipient, to a new file (mode 0600);
//! * `inspect` decrypts a backup in memory and lists what it holds, writing
//!   nothing;
//! * `restore` writes a backup into the node's store (creating it, and the
//!   HSM sealing key, on a fresh node) and discards every presignature.
//!
//! The work is done by [`keyfold_hsm::backup`]; see
//! `docs/runbooks/recovery.md` for the drill.

use std::io::Read;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use keyfold_hsm::backup::{self, BackupContents, BackupError, DecryptedBackup, MAX_BACKUP_LEN};
use keyfold_signer::config::Sealing;
use keyfold_signer::SignerConfig;
use keyfold_store::SignerStore;
use zeroize::Zeroizing;

/// `keyfold backup` subcommands.
#[derive(Subcommand)]
pub(crate) enum BackupCmd {
    /// Creates the offline recovery key: an age identity file (mode 0600,
    /// never overwritten) and prints its public recipient (age1...) for
    /// `backup export --recipient`.
    Keygen {
        /// The identity file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Writes a signer's key shares and aux info, encrypted to the recovery
    /// recipient, to a new file (mode 0600). Presignatures are never exported.
    Export {
        /// The signer's TOML configuration (its data_dir and sealing).
        #[arg(long)]
        config: PathBuf,
        /// The recovery recipient (age1...), from `backup keygen`.
        #[arg(long)]
        recipient: String,
        /// The backup file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// Decrypts a backup in memory and lists what it holds, writing nothing.
    Inspect {
        /// The recovery identity file.
        #[arg(long)]
        identity: PathBuf,
        /// The backup file.
        #[arg(long = "in")]
        input: PathBuf,
    },
    /// Restores a backup into the node of this configuration (a fresh node
    /// with a fresh HSM token, or the same node again), then discards every
    /// presignature. Stop the node first.
    Restore {
        /// The signer's TOML configuration (same node_id as the backup).
        #[arg(long)]
        config: PathBuf,
        /// The recovery identity file.
        #[arg(long)]
        identity: PathBuf,
        /// The backup file.
        #[arg(long = "in")]
        input: PathBuf,
    },
}

/// Runs a `keyfold backup` subcommand.
pub(crate) fn run(cmd: BackupCmd) -> Result<(), String> {
    match cmd {
        BackupCmd::Keygen { out } => {
            let recipient = keygen(&out)?;
            println!("{recipient}");
            eprintln!(
                "recovery identity written to {} (mode 0600): move it offline now (printed or \
                 on removable media in a safe) and delete this copy; give the recipient above \
                 to `keyfold backup export --recipient`",
                out.display()
            );
            Ok(())
        }
        BackupCmd::Export {
            config,
            recipient,
            out,
        } => {
            for line in export(&config, &recipient, &out)? {
                println!("{line}");
            }
            Ok(())
        }
        BackupCmd::Inspect { identity, input } => {
            let identity = read_identity(&identity)?;
            let bytes = read_backup(&input)?;
            let contents = backup::inspect(&identity, &bytes)
                .map_err(|e| format!("{}: {e}", input.display()))?;
            for line in describe(&contents) {
                println!("{line}");
            }
            Ok(())
        }
        BackupCmd::Restore {
            config,
            identity,
            input,
        } => {
            for line in restore(&config, &identity, &input)? {
                println!("{line}");
            }
            Ok(())
        }
    }
}

fn keygen(out: &Path) -> Result<String, String> {
    if out.exists() {
        return Err(format!(
            "{} already exists: refusing to overwrite a recovery key",
            out.display()
        ));
    }
    let key = backup::recovery_keygen();
    crate::write_private_new(out, key.identity_file().as_bytes())?;
    Ok(key.recipient().to_string())
}

fn load_config(path: &Path) -> Result<SignerConfig, String> {
    SignerConfig::load(path).map_err(|e| e.to_string())
}

fn export(config: &Path, recipient: &str, out: &Path) -> Result<Vec<String>, String> {
    if out.exists() {
        return Err(format!(
            "{} already exists: refusing to overwrite it (choose a new file name)",
            out.display()
        ));
    }
    let cfg = load_config(config)?;
    let db = cfg.data_dir.join("signer.db");
    if !db.exists() {
        return Err(format!(
            "no signer database at {}: nothing to export (is {} this node's configuration?)",
            db.display(),
            config.display()
        ));
    }
    // Opening the sealer must not create anything: a missing key file would
    // otherwise be generated (and could never open the stored shares).
    if let Sealing::KeyFile { key_file } = &cfg.sealing {
        if !key_file.exists() {
            return Err(format!(
                "sealing key file {} is missing: the shares in {} cannot be unsealed without it",
                key_file.display(),
                db.display()
            ));
        }
    }
    let store = open_store(&cfg)?;
    let bytes = backup::export(&store, recipient).map_err(|e| e.to_string())?;
    let shares = store
        .list_shares()
        .map_err(|e| format!("listing key shares: {e}"))?;
    let groups = store
        .list_aux_groups()
        .map_err(|e| format!("listing aux info: {e}"))?;
    crate::write_private_new(out, &bytes)?;
    let mut lines = vec![format!(
        "node {}: {} key share(s) and {} aux info written to {} ({} bytes), encrypted to {}",
        cfg.node_id,
        shares.len(),
        groups.len(),
        out.display(),
        bytes.len(),
        recipient.trim()
    )];
    for s in &shares {
        lines.push(format!(
            "  key {} {} {}",
            s.key_id,
            s.curve,
            hex::encode(&s.public_key)
        ));
    }
    for g in &groups {
        lines.push(format!("  aux info of group {g}"));
    }
    lines.push(
        "presignatures are not exported; check the file with `keyfold backup inspect` on the \
         offline machine, then keep it offline"
            .into(),
    );
    Ok(lines)
}

fn restore(config: &Path, identity: &Path, input: &Path) -> Result<Vec<String>, String> {
    let cfg = load_config(config)?;
    let identity = read_identity(identity)?;
    let bytes = read_backup(input)?;
    // Decrypt and check before touching the node: a wrong key or file must
    // not create a store or an HSM key.
    let decrypted = DecryptedBackup::open(&identity, &bytes)
        .map_err(|e| format!("{}: {e}", input.display()))?;
    drop(identity);
    if decrypted.node_id() != cfg.node_id {
        return Err(BackupError::WrongNode {
            backup_node: decrypted.node_id().to_string(),
            store_node: cfg.node_id.clone(),
        }
        .to_string());
    }
    std::fs::create_dir_all(&cfg.data_dir)
        .map_err(|e| format!("cannot create {}: {e}", cfg.data_dir.display()))?;
    // On a fresh PKCS#11 node this creates the sealing key on the token
    // (signer.db does not exist yet), so it runs before the store is created.
    let store = open_store(&cfg)?;
    let report = decrypted.restore_into(&store).map_err(|e| e.to_string())?;
    let mut lines = vec![format!(
        "node {}: restored {} key share(s) ({} already present) and {} aux info ({} already \
         present) into {}; discarded {} presignature(s)",
        cfg.node_id,
        report.shares_written,
        report.shares_already_present,
        report.aux_written,
        report.aux_already_present,
        store.path().display(),
        report.presignatures_discarded
    )];
    lines.extend(describe(&report.contents).into_iter().skip(1));
    lines.push(format!(
        "start the node (keyfold signer --config {}) and check it signs under these public keys",
        config.display()
    ));
    Ok(lines)
}

fn open_store(cfg: &SignerConfig) -> Result<SignerStore, String> {
    let sealer = keyfold_signer::open_sealer(cfg).map_err(|e| e.to_string())?;
    let path = cfg.data_dir.join("signer.db");
    SignerStore::open(&path, &cfg.node_id, std::sync::Arc::from(sealer))
        .map_err(|e| format!("signer store {}: {e}", path.display()))
}

/// Lines describing a backup: a header, then one line per key and aux info.
fn describe(c: &BackupContents) -> Vec<String> {
    let mut lines = vec![format!(
        "backup of node {}, made {} by keyfold {} (format {}): {} key share(s), {} aux info",
        c.node_id,
        utc(c.created_at),
        c.keyfold_version,
        c.format_version,
        c.shares.len(),
        c.aux_info.len()
    )];
    for s in &c.shares {
        lines.push(format!(
            "  key {} {} {} (share {} bytes)",
            s.key_id,
            s.curve,
            hex::encode(&s.public_key),
            s.share_len
        ));
    }
    for a in &c.aux_info {
        lines.push(format!(
            "  aux info of group {} ({} bytes)",
            a.group_id, a.aux_len
        ));
    }
    lines
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Reads at most `max` bytes of `path` into a zeroizing buffer.
fn read_bounded(path: &Path, max: usize, what: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    let file = std::fs::File::open(path)
        .map_err(|e| format!("cannot open {what} {}: {e}", path.display()))?;
    let len = file
        .metadata()
        .map(|m| m.len())
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    if len > max as u64 {
        return Err(format!(
            "{what} {} is {len} bytes, more than the {max} accepted",
            path.display()
        ));
    }
    let cap = usize::try_from(len).unwrap_or(max).saturating_add(1);
    let mut buf = Zeroizing::new(Vec::with_capacity(cap));
    file.take(max as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))?;
    if buf.len() > max {
        return Err(format!(
            "{what} {} is more than the {max} bytes accepted",
            path.display()
        ));
    }
    Ok(buf)
}

fn read_identity(path: &Path) -> Result<Zeroizing<String>, String> {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: recovery identity {} has mode {mode:o}: it should be readable by its \
                 owner only (chmod 600)",
                path.display()
            );
        }
    }
    let bytes = read_bounded(path, backup::MAX_IDENTITY_LEN, "recovery identity")?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        format!(
            "recovery identity {} is not text: pass the file written by `keyfold backup keygen`",
            path.display()
        )
    })?;
    Ok(Zeroizing::new(text.to_string()))
}

fn read_backup(path: &Path) -> Result<Zeroizing<Vec<u8>>, String> {
    read_bounded(path, MAX_BACKUP_LEN, "backup")
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_formats_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(utc(-1), "1969-12-31T23:59:59Z");
    }
}
