//! Opening a token: clear errors for a missing module, a missing token, a
//! wrong PIN, an unreadable PIN source; the PIN never shows in Debug.

mod common;

use std::path::PathBuf;

use keyfold_hsm::testing::write_private;
use keyfold_hsm::{Hsm, HsmConfig, HsmError, PinSource, SOFTHSM2_MODULE};

#[test]
fn missing_module_says_what_to_fix() {
    let config = HsmConfig {
        module: PathBuf::from("/x/y.so"),
        token_label: "t".into(),
        pin: PinSource::Env("KEYFOLD_TEST_UNUSED".into()),
    };
    let err = Hsm::open(&config).unwrap_err();
    assert!(matches!(err, HsmError::ModuleMissing { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "PKCS#11 module /x/y.so does not exist: install softhsm2 or fix `module`"
    );
}

#[test]
fn module_that_is_not_pkcs11_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libfake.so");
    std::fs::write(&fake, b"not a library").unwrap();
    let config = HsmConfig {
        module: fake.clone(),
        token_label: "t".into(),
        pin: PinSource::Env("KEYFOLD_TEST_UNUSED".into()),
    };
    let err = Hsm::open(&config).unwrap_err();
    assert!(matches!(err, HsmError::ModuleLoad { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&fake.display().to_string()),
        "{err}"
    );
}

#[test]
fn missing_token_lists_the_labels_found() {
    let t = common::token("cfg-present");
    let mut config = t.config();
    config.token_label = "no-such-token".into();
    let err = Hsm::open(&config).unwrap_err();
    let HsmError::TokenNotFound { found, label, .. } = &err else {
        panic!("expected TokenNotFound, got {err:?}");
    };
    assert_eq!(label, "no-such-token");
    assert!(found.contains(&t.label), "{found:?}");
    let msg = err.to_string();
    assert!(msg.contains("no token labelled `no-such-token`"), "{msg}");
    assert!(msg.contains(&format!("`{}`", t.label)), "{msg}");
    assert!(msg.contains(SOFTHSM2_MODULE), "{msg}");
    assert!(msg.contains("fix `token_label`"), "{msg}");
}

#[test]
fn wrong_pin_from_a_file_names_token_and_file() {
    let t = common::token("cfg-wrongfile");
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    write_private(&pin_file, b"000000\n").unwrap();
    let mut config = t.config();
    config.pin = PinSource::File(pin_file.clone());
    let err = Hsm::open(&config).unwrap_err();
    assert!(matches!(err, HsmError::WrongPin { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "token `{}` refused the PIN from file {}: fix the PIN there",
            t.label,
            pin_file.display()
        )
    );
    // The right PIN still works afterwards.
    t.open().unwrap();
}

#[test]
fn wrong_pin_from_env_names_token_and_variable() {
    let t = common::token("cfg-wrongenv");
    std::env::set_var("KEYFOLD_TEST_WRONG_PIN", "999999");
    let mut config = t.config();
    config.pin = PinSource::Env("KEYFOLD_TEST_WRONG_PIN".into());
    let err = Hsm::open(&config).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "token `{}` refused the PIN from env var KEYFOLD_TEST_WRONG_PIN: fix the PIN there",
            t.label
        )
    );
}

#[test]
fn right_pin_from_env_opens() {
    let t = common::token("cfg-env");
    std::env::set_var("KEYFOLD_TEST_GOOD_PIN", &t.pin);
    let mut config = t.config();
    config.pin = PinSource::Env("KEYFOLD_TEST_GOOD_PIN".into());
    let hsm = Hsm::open(&config).unwrap();
    assert_eq!(hsm.token_label(), t.label);
}

#[test]
fn wrong_pin_is_refused_even_while_the_token_is_logged_in() {
    // Login state is per process: the second handle's C_Login answers
    // CKR_USER_ALREADY_LOGGED_IN whatever PIN it gives. The bridge must
    // still refuse a wrong PIN.
    let t = common::token("cfg-loggedin");
    let _open = t.open().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    write_private(&pin_file, b"123123").unwrap();
    let mut config = t.config();
    config.pin = PinSource::File(pin_file);
    let err = Hsm::open(&config).unwrap_err();
    assert!(matches!(err, HsmError::WrongPin { .. }), "{err:?}");
    // And a right one is accepted.
    t.open().unwrap();
}

#[test]
fn unreadable_pin_sources_are_explained() {
    let t = common::token("cfg-pinsrc");
    let mut config = t.config();
    config.pin = PinSource::Env("KEYFOLD_TEST_PIN_NOT_SET_ANYWHERE".into());
    let err = Hsm::open(&config).unwrap_err();
    assert!(matches!(err, HsmError::PinUnavailable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("env var KEYFOLD_TEST_PIN_NOT_SET_ANYWHERE"),
        "{err}"
    );
    assert!(err.to_string().contains("is not set"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("absent");
    config.pin = PinSource::File(missing);
    let err = Hsm::open(&config).unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");

    let loose = dir.path().join("loose");
    std::fs::write(&loose, &t.pin).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        config.pin = PinSource::File(loose.clone());
        let err = Hsm::open(&config).unwrap_err();
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    let empty = dir.path().join("empty");
    write_private(&empty, b"\n").unwrap();
    config.pin = PinSource::File(empty);
    let err = Hsm::open(&config).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");

    let huge = dir.path().join("huge");
    write_private(&huge, &[b'1'; 4096]).unwrap();
    config.pin = PinSource::File(huge);
    let err = Hsm::open(&config).unwrap_err();
    assert!(err.to_string().contains("larger than"), "{err}");
}

#[test]
fn pin_never_shows_in_debug_or_errors() {
    let t = common::token("cfg-debug");
    let hsm = t.open().unwrap();
    let shown = format!("{hsm:?} {:?} {:?}", t.config(), hsm.clone());
    assert!(!shown.contains(&t.pin), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[test]
fn config_reads_from_toml() {
    let env: HsmConfig = toml::from_str(
        r#"
        module = "/usr/lib/softhsm/libsofthsm2.so"
        token_label = "keyfold-node-1"
        pin = { env = "KEYFOLD_HSM_PIN" }
        "#,
    )
    .unwrap();
    assert_eq!(env.pin, PinSource::Env("KEYFOLD_HSM_PIN".into()));
    let file: HsmConfig = toml::from_str(
        r#"
        module = "/usr/lib/softhsm/libsofthsm2.so"
        token_label = "keyfold-node-1"
        [pin]
        file = "/etc/keyfold/hsm-pin"
        "#,
    )
    .unwrap();
    assert_eq!(file.pin, PinSource::File("/etc/keyfold/hsm-pin".into()));
    // A literal PIN is not a thing.
    assert!(toml::from_str::<HsmConfig>(
        r#"
        module = "/m.so"
        token_label = "t"
        pin = "1234"
        "#
    )
    .is_err());
    assert!(toml::from_str::<HsmConfig>(
        r#"
        module = "/m.so"
        token_label = "t"
        pin = { value = "1234" }
        "#
    )
    .is_err());
    // Round trip.
    let text = toml::to_string(&env).unwrap();
    assert_eq!(toml::from_str::<HsmConfig>(&text).unwrap(), env);
}

#[test]
fn hsm_handles_are_shared_across_threads() {
    let (_t, hsm) = common::open_token("cfg-threads");
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let hsm = hsm.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 32];
                for _ in 0..50 {
                    hsm.generate_random(&mut buf).unwrap();
                }
                buf
            })
        })
        .collect();
    let outs: Vec<[u8; 32]> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_ne!(outs[0], outs[1]);
}
