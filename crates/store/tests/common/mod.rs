//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use keyfold_store::{Sealer, SoftwareSealer, Zeroizing};

/// A software sealer over a fixed test key.
pub fn sealer() -> Arc<dyn Sealer> {
    Arc::new(SoftwareSealer::from_key(
        &Zeroizing::new([0x42; 32]),
        "test key",
    ))
}

/// All bytes SQLite may hold for `db`: the file, its WAL and shared memory.
pub fn db_bytes(db: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        if let Ok(bytes) = std::fs::read(&p) {
            out.extend(bytes);
        }
    }
    out
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Sets the schema version recorded in a database, behind the store's back.
pub fn set_schema_version(db: &Path, version: i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'schema_version'",
        [version.to_string()],
    )
    .unwrap();
}
