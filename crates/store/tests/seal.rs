//! Sealing: round trips, refusal of tampered, truncated and moved blobs, key
//! files and passphrases.

use std::io::Write;
use std::path::Path;

use keyfold_store::seal::{SEALED_FORMAT_V1, SEAL_OVERHEAD};
use keyfold_store::{Aad, KdfParams, ObjectType, SealError, Sealer, SoftwareSealer, Zeroizing};

fn aad() -> Aad {
    Aad::new("node-1", ObjectType::EcdsaShare, "key-1", 1)
}

fn sealer() -> SoftwareSealer {
    SoftwareSealer::from_key(&Zeroizing::new([7u8; 32]), "test")
}

#[test]
fn round_trip() {
    let s = sealer();
    for len in [0usize, 1, 31, 32, 1000, 100_000] {
        let plain: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let sealed = s.seal(&aad(), &plain).unwrap();
        assert_eq!(sealed.len(), plain.len() + SEAL_OVERHEAD);
        assert_eq!(sealed[0], SEALED_FORMAT_V1);
        assert_eq!(&s.open(&aad(), &sealed).unwrap()[..], &plain[..]);
    }
}

#[test]
fn nonces_are_random() {
    let s = sealer();
    let a = s.seal(&aad(), b"same").unwrap();
    let b = s.seal(&aad(), b"same").unwrap();
    assert_ne!(a, b);
}

#[test]
fn tampered_blobs_are_refused() {
    let s = sealer();
    let sealed = s.seal(&aad(), b"a secret share").unwrap();
    // Every single-bit flip after the version byte fails authentication.
    for i in 1..sealed.len() {
        let mut t = sealed.clone();
        t[i] ^= 0x01;
        match s.open(&aad(), &t) {
            Err(SealError::Tampered { object, id }) => {
                assert_eq!(object, ObjectType::EcdsaShare);
                assert_eq!(id, "key-1");
            }
            other => panic!("byte {i}: {other:?}"),
        }
    }
    let mut t = sealed.clone();
    t[0] = 2;
    assert!(matches!(
        s.open(&aad(), &t),
        Err(SealError::Malformed { .. })
    ));
}

#[test]
fn truncated_blobs_are_refused() {
    let s = sealer();
    let sealed = s.seal(&aad(), b"a secret share").unwrap();
    for len in 0..sealed.len() {
        let r = s.open(&aad(), &sealed[..len]);
        if len < SEAL_OVERHEAD {
            assert!(
                matches!(r, Err(SealError::Malformed { .. })),
                "len {len}: {r:?}"
            );
        } else {
            assert!(
                matches!(r, Err(SealError::Tampered { .. })),
                "len {len}: {r:?}"
            );
        }
    }
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(s.open(&aad(), &longer).is_err());
}

#[test]
fn blobs_do_not_open_under_another_aad() {
    let s = sealer();
    let sealed = s.seal(&aad(), b"a secret share").unwrap();
    let others = [
        Aad::new("node-2", ObjectType::EcdsaShare, "key-1", 1),
        Aad::new("node-1", ObjectType::EddsaShare, "key-1", 1),
        Aad::new("node-1", ObjectType::Presignature, "key-1", 1),
        Aad::new("node-1", ObjectType::EcdsaShare, "key-2", 1),
        Aad::new("node-1", ObjectType::EcdsaShare, "key-1", 2),
        // Same concatenation, different split: length prefixes tell them apart.
        Aad::new("node-1e", ObjectType::EcdsaShare, "key-1", 1),
    ];
    for other in &others {
        assert!(
            matches!(s.open(other, &sealed), Err(SealError::Tampered { .. })),
            "{other:?}"
        );
    }
    let other_key = SoftwareSealer::from_key(&Zeroizing::new([8u8; 32]), "other");
    assert!(matches!(
        other_key.open(&aad(), &sealed),
        Err(SealError::Tampered { .. })
    ));
}

#[test]
fn garbage_never_panics() {
    let s = sealer();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for len in 0..300 {
        let blob: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        assert!(s.open(&aad(), &blob).is_err());
        let mut versioned = blob.clone();
        if let Some(b) = versioned.first_mut() {
            *b = SEALED_FORMAT_V1;
        }
        assert!(s.open(&aad(), &versioned).is_err());
    }
}

#[test]
fn debug_is_redacted() {
    let key = Zeroizing::new([0xAB; 32]);
    let s = SoftwareSealer::from_key(&key, "test");
    let dbg = format!("{s:?}");
    assert!(dbg.contains("<redacted>"), "{dbg}");
    assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
    assert!(!dbg.contains("171"), "{dbg}");
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(bytes).unwrap();
    set_mode(path, mode);
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) {}

#[test]
fn key_file_raw_and_hex() {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.key");
    write_file(&raw, &[5u8; 32], 0o600);
    let hexf = dir.path().join("hex.key");
    write_file(
        &hexf,
        format!("{}\n", hex::encode([5u8; 32])).as_bytes(),
        0o600,
    );
    let a = SoftwareSealer::from_key_file(&raw).unwrap();
    let b = SoftwareSealer::from_key_file(&hexf).unwrap();
    let sealed = a.seal(&aad(), b"x").unwrap();
    assert_eq!(&b.open(&aad(), &sealed).unwrap()[..], b"x");
    assert!(a.describe().contains("raw.key"));
}

#[test]
fn key_file_of_wrong_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("31", vec![1u8; 31]),
        ("33", vec![1u8; 33]),
        ("63hex", "a".repeat(63).into_bytes()),
        ("65hex", "a".repeat(65).into_bytes()),
        ("64nothex", "z".repeat(64).into_bytes()),
        ("huge", vec![b'a'; 10_000]),
        ("zeros", vec![0u8; 32]),
    ];
    for (name, bytes) in cases {
        let p = dir.path().join(name);
        write_file(&p, &bytes, 0o600);
        match SoftwareSealer::from_key_file(&p) {
            Err(SealError::BadKeyFile { path, reason }) => {
                assert_eq!(path, p);
                assert!(!reason.is_empty());
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    assert!(matches!(
        SoftwareSealer::from_key_file(dir.path().join("missing")),
        Err(SealError::Io { .. })
    ));
    assert!(matches!(
        SoftwareSealer::from_key_file(dir.path()),
        Err(SealError::BadKeyFile { .. }) | Err(SealError::Io { .. })
    ));
}

#[cfg(unix)]
#[test]
fn key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
        let p = dir.path().join(format!("k{mode:o}"));
        write_file(&p, &[5u8; 32], mode);
        match SoftwareSealer::from_key_file(&p) {
            Err(SealError::InsecurePermissions { path, mode: m }) => {
                assert_eq!(path, p);
                assert_eq!(m, mode);
            }
            other => panic!("{mode:o}: {other:?}"),
        }
    }
    let ok = dir.path().join("ok");
    write_file(&ok, &[5u8; 32], 0o400);
    SoftwareSealer::from_key_file(&ok).unwrap();
}

#[test]
fn generated_key_file_is_private_and_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sealing.key");
    let a = SoftwareSealer::generate_key_file(&p).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let before = std::fs::read(&p).unwrap();
    assert_eq!(before.len(), 65);
    assert!(matches!(
        SoftwareSealer::generate_key_file(&p),
        Err(SealError::KeyFileExists { .. })
    ));
    assert_eq!(std::fs::read(&p).unwrap(), before);
    let b = SoftwareSealer::from_key_file(&p).unwrap();
    let sealed = a.seal(&aad(), b"secret").unwrap();
    assert_eq!(&b.open(&aad(), &sealed).unwrap()[..], b"secret");
}

fn pass(s: &str) -> Zeroizing<String> {
    Zeroizing::new(s.to_string())
}

#[test]
fn passphrase_sealer_reopens_and_refuses_another_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let kdf = dir.path().join("kdf");
    let params = KdfParams::insecure_for_tests();
    let a =
        SoftwareSealer::from_passphrase_with_params(&pass("correct horse"), &kdf, params).unwrap();
    let sealed = a.seal(&aad(), b"secret").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&kdf).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    // Parameters come from the file on reopen, whatever the caller passes.
    let b = SoftwareSealer::from_passphrase_with_params(
        &pass("correct horse"),
        &kdf,
        KdfParams::default(),
    )
    .unwrap();
    assert_eq!(&b.open(&aad(), &sealed).unwrap()[..], b"secret");
    match SoftwareSealer::from_passphrase_with_params(&pass("wrong horse"), &kdf, params) {
        Err(SealError::WrongPassphrase { path }) => assert_eq!(path, kdf),
        other => panic!("{other:?}"),
    }
    // No stray temporary files.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn bare_salt_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let salt = dir.path().join("salt");
    std::fs::write(&salt, [9u8; 16]).unwrap();
    let params = KdfParams::insecure_for_tests();
    let a =
        SoftwareSealer::from_passphrase_with_params(&pass("passphrase"), &salt, params).unwrap();
    let sealed = a.seal(&aad(), b"secret").unwrap();
    let b =
        SoftwareSealer::from_passphrase_with_params(&pass("passphrase"), &salt, params).unwrap();
    assert_eq!(&b.open(&aad(), &sealed).unwrap()[..], b"secret");
    // Without a check value, a wrong passphrase shows up when opening.
    let c = SoftwareSealer::from_passphrase_with_params(&pass("otherpass"), &salt, params).unwrap();
    assert!(matches!(
        c.open(&aad(), &sealed),
        Err(SealError::Tampered { .. })
    ));
}

#[test]
fn bad_passphrases_and_kdf_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let params = KdfParams::insecure_for_tests();
    assert!(matches!(
        SoftwareSealer::from_passphrase_with_params(&pass(""), &dir.path().join("a"), params),
        Err(SealError::WeakPassphrase { .. })
    ));
    assert!(matches!(
        SoftwareSealer::from_passphrase_with_params(&pass("short"), &dir.path().join("a"), params),
        Err(SealError::WeakPassphrase { .. })
    ));
    for (name, content) in [
        ("garbage", b"hello world".to_vec()),
        ("big", vec![b'x'; 5000]),
        (
            "huge-m",
            b"keyfold-kdf v1\nalgorithm argon2id\nm_cost_kib 4294967295\nt_cost 1\np_cost 1\nsalt 00000000000000000000000000000000\n".to_vec(),
        ),
        (
            "no-salt",
            b"keyfold-kdf v1\nalgorithm argon2id\nm_cost_kib 64\nt_cost 1\np_cost 1\n".to_vec(),
        ),
    ] {
        let p = dir.path().join(name);
        std::fs::write(&p, content).unwrap();
        assert!(
            matches!(
                SoftwareSealer::from_passphrase_with_params(&pass("passphrase"), &p, params),
                Err(SealError::BadKdfFile { .. })
            ),
            "{name}"
        );
    }
}

#[test]
fn default_passphrase_params_work() {
    // The production parameters (64 MiB, 3 passes): one derivation.
    let dir = tempfile::tempdir().unwrap();
    let kdf = dir.path().join("kdf");
    let s = SoftwareSealer::from_passphrase(&pass("production passphrase"), &kdf).unwrap();
    let sealed = s.seal(&aad(), b"x").unwrap();
    assert_eq!(&s.open(&aad(), &sealed).unwrap()[..], b"x");
    assert!(std::fs::read_to_string(&kdf)
        .unwrap()
        .contains("m_cost_kib 65536"));
}
