//! Opening an SQLite database the way both stores need it: WAL journal,
//! `synchronous=FULL` (a committed transaction is on disk), a busy timeout,
//! `secure_delete`, a private file mode, and schema versioning in a `meta`
//! table.
//!
//! The `meta` table (`key TEXT PRIMARY KEY, value TEXT NOT NULL`) holds
//! `kind` (`signer` or `coordinator`), `schema_version` (decimal) and, for a
//! signer, `node_id`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior};

use crate::error::StoreError;

/// How long a connection waits for another one's write lock before failing
/// with [`StoreError::Busy`].
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How durable a committed transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// `synchronous=FULL`: a committed transaction is on disk.
    Full,
    /// `synchronous=NORMAL` (WAL): a committed transaction survives a crash
    /// of the process, not of the machine. For a store whose every fact of
    /// consequence is also in a durable log it can be rebuilt from (the
    /// coordinator's audit log); a group can still ask for `Full`.
    Normal,
}

impl Durability {
    fn pragma(self) -> (&'static str, i64) {
        match self {
            Durability::Full => ("FULL", 2),
            Durability::Normal => ("NORMAL", 1),
        }
    }
}

/// The write connection behind a mutex (so the store is `Sync`), a second
/// connection for reads (WAL lets it read while a write transaction is
/// open, so a read never waits behind a commit), and the path.
pub(crate) struct Db {
    conn: Mutex<Connection>,
    read: Mutex<Connection>,
    pub(crate) path: PathBuf,
    pub(crate) durability: Durability,
}

/// What a store expects of the database it opens.
pub(crate) struct Schema<'a> {
    /// `signer` or `coordinator`.
    pub kind: &'static str,
    /// The newest schema version this build knows.
    pub latest: i64,
    /// `migrations[i]` upgrades version `i` to `i + 1` (version 0 is empty).
    pub migrations: &'a [&'a str],
    /// An identity the database is bound to, e.g. `("node_id", "node-1")`:
    /// recorded on creation, checked on every open.
    pub identity: Option<(&'static str, &'a str)>,
    /// The write connection's durability.
    pub durability: Durability,
}

/// Maps an SQLite error to a [`StoreError`] naming the file and operation.
pub(crate) fn map_err(path: &Path, op: &'static str, e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == ErrorCode::DatabaseBusy || f.code == ErrorCode::DatabaseLocked =>
        {
            StoreError::Busy {
                path: path.to_path_buf(),
                op,
            }
        }
        _ => StoreError::Db {
            path: path.to_path_buf(),
            op,
            source: e,
        },
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Converts an SQLite count to `usize`.
pub(crate) fn count(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

impl Db {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub(crate) fn open(path: &Path, schema: &Schema<'_>) -> Result<Db, StoreError> {
        let open_err = |reason: String| StoreError::Open {
            path: path.to_path_buf(),
            reason,
        };
        create_private_if_missing(path).map_err(|e| open_err(e.to_string()))?;
        warn_if_shared(path);

        let (sync_name, sync_code) = schema.durability.pragma();
        let connect = || -> Result<Connection, StoreError> {
            let conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
            conn.busy_timeout(BUSY_TIMEOUT)
                .map_err(|e| open_err(e.to_string()))?;
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
                .map_err(|e| open_err(format!("setting WAL journal mode: {e}")))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(open_err(format!(
                    "the journal mode is `{mode}`, WAL could not be enabled"
                )));
            }
            for (pragma, value) in [
                ("synchronous", sync_name),
                ("foreign_keys", "ON"),
                ("secure_delete", "ON"),
                ("trusted_schema", "OFF"),
            ] {
                conn.pragma_update(None, pragma, value)
                    .map_err(|e| open_err(format!("setting {pragma}={value}: {e}")))?;
            }
            let sync: i64 = conn
                .pragma_query_value(None, "synchronous", |row| row.get(0))
                .map_err(|e| open_err(e.to_string()))?;
            if sync != sync_code {
                return Err(open_err(format!(
                    "synchronous is {sync}, {sync_name} ({sync_code}) expected"
                )));
            }
            Ok(conn)
        };
        let conn = connect()?;
        let mut db = Db {
            conn: Mutex::new(conn),
            // Opened after the migration, so it sees the final schema.
            read: Mutex::new(Connection::open_in_memory().map_err(|e| open_err(e.to_string()))?),
            path: path.to_path_buf(),
            durability: schema.durability,
        };
        db.migrate(schema)?;
        db.read = Mutex::new(connect()?);
        Ok(db)
    }

    fn migrate(&mut self, schema: &Schema<'_>) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |e| map_err(&path, "migrate schema", e);
        let conn = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT",
            [],
        )
        .map_err(err)?;
        let get = |tx: &Transaction<'_>, key: &str| -> Result<Option<String>, StoreError> {
            tx.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(err)
        };
        let set = |tx: &Transaction<'_>, key: &str, value: &str| -> Result<(), StoreError> {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                [key, value],
            )
            .map_err(err)?;
            Ok(())
        };

        match get(&tx, "kind")? {
            None => {
                // Only an empty database may be claimed.
                let tables: i64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'table' AND name <> 'meta'",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(err)?;
                if tables > 0 {
                    return Err(StoreError::WrongDatabase {
                        path: path.clone(),
                        found: "another application (tables without Keyfold metadata)".into(),
                        expected: format!("a Keyfold {} store", schema.kind),
                    });
                }
                set(&tx, "kind", schema.kind)?;
                if let Some((k, v)) = schema.identity {
                    set(&tx, k, v)?;
                }
            }
            Some(kind) if kind != schema.kind => {
                return Err(StoreError::WrongDatabase {
                    path: path.clone(),
                    found: format!("a Keyfold {kind} store"),
                    expected: format!("a Keyfold {} store", schema.kind),
                });
            }
            Some(_) => {
                if let Some((k, v)) = schema.identity {
                    match get(&tx, k)? {
                        Some(found) if found == v => {}
                        found => {
                            return Err(StoreError::WrongDatabase {
                                path: path.clone(),
                                found: format!("{k} `{}`", found.unwrap_or_default()),
                                expected: format!("{k} `{v}`"),
                            });
                        }
                    }
                }
            }
        }

        let version = match get(&tx, "schema_version")? {
            None => 0,
            Some(v) => v.parse::<i64>().map_err(|_| StoreError::Corrupt {
                path: path.clone(),
                what: "meta",
                id: "schema_version".into(),
                reason: format!("`{v}` is not a number"),
            })?,
        };
        if version > schema.latest {
            return Err(StoreError::SchemaTooNew {
                path: path.clone(),
                found: version,
                supported: schema.latest,
            });
        }
        if version < 0 {
            return Err(StoreError::Corrupt {
                path: path.clone(),
                what: "meta",
                id: "schema_version".into(),
                reason: format!("negative version {version}"),
            });
        }
        for v in version..schema.latest {
            let sql = usize::try_from(v)
                .ok()
                .and_then(|i| schema.migrations.get(i))
                .ok_or_else(|| StoreError::Open {
                    path: path.clone(),
                    reason: format!("no migration from schema version {v}"),
                })?;
            tx.execute_batch(sql).map_err(err)?;
            tracing::info!(path = %path.display(), from = v, to = v + 1, "migrated database schema");
        }
        set(&tx, "schema_version", &schema.latest.to_string())?;
        tx.commit().map_err(err)?;
        Ok(())
    }

    /// Locks the connection. A panic in another thread while it held the lock
    /// cannot leave a transaction open (rusqlite rolls back on drop), so a
    /// poisoned lock is safe to reuse.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Locks the read connection (queries only; it never holds a write
    /// transaction, so it never waits behind a commit).
    pub(crate) fn reader(&self) -> MutexGuard<'_, Connection> {
        self.read.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` in an immediate transaction on the write connection with
    /// `synchronous=FULL` for this commit, whatever the store's default (for
    /// the rare writes that must be on disk when they return).
    pub(crate) fn durably<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let err = self.err(op);
        let mut conn = self.lock();
        let normal = self.durability == Durability::Normal;
        if normal {
            conn.pragma_update(None, "synchronous", "FULL")
                .map_err(&err)?;
        }
        let result = (|| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(&err)?;
            let out = f(&tx)?;
            tx.commit().map_err(&err)?;
            Ok(out)
        })();
        if normal {
            // Back to the store's default even when `f` failed.
            conn.pragma_update(None, "synchronous", "NORMAL")
                .map_err(&err)?;
        }
        result
    }

    /// Runs `f` in an immediate transaction committed with the store's
    /// default durability (for writes whose loss in a machine crash only
    /// repeats work, such as a webhook attempt's record: the attempt is
    /// made again, with the same id).
    pub(crate) fn write<T>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let err = self.err(op);
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&err)?;
        let out = f(&tx)?;
        tx.commit().map_err(&err)?;
        Ok(out)
    }

    /// An error mapper for operation `op`.
    pub(crate) fn err(&self, op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |e| map_err(&self.path, op, e)
    }

    /// A record of this database that does not parse.
    pub(crate) fn corrupt(&self, what: &'static str, id: &str, reason: String) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
            id: id.to_string(),
            reason,
        }
    }

    /// The 16-byte approval nonces in `table` (a table with `nonce` and
    /// `request_id` columns) recorded for requests other than `request_id`.
    pub(crate) fn nonces_except(
        &self,
        op: &'static str,
        table: &'static str,
        request_id: &str,
    ) -> Result<Vec<[u8; 16]>, StoreError> {
        let err = self.err(op);
        let conn = self.reader();
        let mut stmt = conn
            .prepare(&format!("SELECT nonce FROM {table} WHERE request_id != ?1"))
            .map_err(&err)?;
        let rows = stmt
            .query_map([request_id], |r| r.get::<_, Vec<u8>>(0))
            .map_err(&err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(&err)?;
        rows.into_iter()
            .map(|n| {
                <[u8; 16]>::try_from(n.as_slice()).map_err(|_| {
                    self.corrupt("approval nonce", &hex::encode(&n), "not 16 bytes".into())
                })
            })
            .collect()
    }
}

/// Creates an empty database file with mode 0600 so SQLite (which copies the
/// database file's mode to its -wal and -shm files) never creates it
/// world-readable.
fn create_private_if_missing(path: &Path) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "database file is accessible by group or others; chmod 600 it");
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
