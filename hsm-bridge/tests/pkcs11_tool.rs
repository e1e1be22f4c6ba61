//! Inspects the token from outside with OpenSC's pkcs11-tool: the sealing
//! key, the cold private keys and the audit key are sensitive and never
//! extractable; pkcs11-tool cannot read their values.

mod common;

use keyfold_hsm::{
    ColdCurve, ColdKeys, HsmAuditSigner, HsmSealer, DEFAULT_AUDIT_KEY_LABEL, DEFAULT_SEAL_KEY_LABEL,
};

/// One object in `pkcs11-tool --list-objects` output.
#[derive(Debug, Default)]
struct Listed {
    header: String,
    label: String,
    usage: Vec<String>,
    access: Vec<String>,
}

fn parse_objects(out: &str) -> Vec<Listed> {
    let mut objects: Vec<Listed> = Vec::new();
    for line in out.lines() {
        if !line.starts_with(char::is_whitespace) && line.contains("Object") {
            objects.push(Listed {
                header: line.trim().to_string(),
                ..Listed::default()
            });
            continue;
        }
        let Some(obj) = objects.last_mut() else {
            continue;
        };
        let line = line.trim();
        if let Some(label) = line.strip_prefix("label:") {
            obj.label = label.trim().to_string();
        } else if let Some(usage) = line.strip_prefix("Usage:") {
            obj.usage = usage.split(',').map(|s| s.trim().to_string()).collect();
        } else if let Some(access) = line.strip_prefix("Access:") {
            obj.access = access.split(',').map(|s| s.trim().to_string()).collect();
        }
    }
    objects
}

fn find<'a>(objects: &'a [Listed], kind: &str, label: &str) -> &'a Listed {
    objects
        .iter()
        .find(|o| o.header.starts_with(kind) && o.label == label)
        .unwrap_or_else(|| panic!("no {kind} `{label}` in {objects:#?}"))
}

fn assert_locked(obj: &Listed) {
    for flag in [
        "sensitive",
        "always sensitive",
        "never extractable",
        "local",
    ] {
        assert!(
            obj.access.iter().any(|a| a == flag),
            "`{}` lacks `{flag}`: {:?}",
            obj.label,
            obj.access
        );
    }
    assert!(
        !obj.access.iter().any(|a| a == "extractable"),
        "`{}` is extractable: {:?}",
        obj.label,
        obj.access
    );
}

#[test]
fn pkcs11_tool_shows_keys_sensitive_and_never_extractable() {
    let (t, hsm) = common::open_token("p11tool");
    HsmSealer::open_or_create(&hsm, DEFAULT_SEAL_KEY_LABEL).unwrap();
    let cold = ColdKeys::new(&hsm);
    cold.generate("cold-k1", ColdCurve::Secp256k1).unwrap();
    cold.generate("cold-ed", ColdCurve::Ed25519).unwrap();
    HsmAuditSigner::open_or_create(&hsm, DEFAULT_AUDIT_KEY_LABEL).unwrap();

    let out = t.pkcs11_tool(&["--list-objects"]).unwrap();
    let objects = parse_objects(&out);
    let seal = find(&objects, "Secret Key Object", DEFAULT_SEAL_KEY_LABEL);
    assert!(seal.header.contains("AES length 32"), "{}", seal.header);
    assert_locked(seal);
    assert_eq!(seal.usage, ["encrypt", "decrypt"]);
    for label in ["cold-k1", "cold-ed", DEFAULT_AUDIT_KEY_LABEL] {
        let private = find(&objects, "Private Key Object", label);
        assert_locked(private);
        assert_eq!(private.usage, ["sign"], "{label}");
        // The public halves are there too, readable.
        find(&objects, "Public Key Object", label);
    }

    // Reading the sealing key's value from outside is refused.
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("value");
    let result = t.pkcs11_tool(&[
        "--read-object",
        "--type",
        "secrkey",
        "--label",
        DEFAULT_SEAL_KEY_LABEL,
        "--output-file",
        out_file.to_str().unwrap(),
    ]);
    let leaked = std::fs::read(&out_file).unwrap_or_default();
    assert!(
        leaked.is_empty(),
        "pkcs11-tool read {} bytes of the sealing key",
        leaked.len()
    );
    let err = result.expect_err("pkcs11-tool read the sealing key's value");
    assert!(err.to_string().contains("CKR_ATTRIBUTE_SENSITIVE"), "{err}");
}
