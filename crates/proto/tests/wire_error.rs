//! The wire form of a signer's error: typed culprits, compatible both ways
//! with signers and coordinators that predate them.

use keyfold_mpc::{BlameKind, Culprit, SignerSet, Threshold};
use keyfold_proto::signer::{
    culprits_by_keygen_index, ErrorCode, Response, WireBlameKind, WireCulprit, WireError,
};

fn parse(json: &str) -> WireError {
    match serde_json::from_str::<Response>(json).unwrap() {
        Response::Error(e) => e,
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn an_answer_without_culprits_still_parses() {
    let e = parse(r#"{"type":"error","code":"protocol_failed","message":"party 1 (signer-2)"}"#);
    assert_eq!(e.code, ErrorCode::ProtocolFailed);
    assert!(e.culprits.is_empty());
    // And an error that blames nobody is written without the field, as before.
    let json = serde_json::to_string(&Response::Error(WireError::new(
        ErrorCode::NotFound,
        "no share",
    )))
    .unwrap();
    assert_eq!(
        json,
        r#"{"type":"error","code":"not_found","message":"no share"}"#
    );
}

#[test]
fn culprits_round_trip_and_unknown_kinds_parse() {
    let e = WireError {
        code: ErrorCode::ProtocolFailed,
        message: "transport failed".into(),
        culprits: vec![
            WireCulprit {
                party: 4,
                kind: WireBlameKind::Silent,
            },
            WireCulprit {
                party: 0,
                kind: WireBlameKind::SessionMismatch,
            },
        ],
    };
    let json = serde_json::to_string(&Response::Error(e.clone())).unwrap();
    assert!(
        json.contains(r#""culprits":[{"party":4,"kind":"silent"}"#),
        "{json}"
    );
    assert_eq!(parse(&json), e);
    assert!(e.to_string().contains("keygen party 4 (silent)"), "{e}");

    let newer = parse(
        r#"{"type":"error","code":"protocol_failed","message":"",
            "culprits":[{"party":1,"kind":"equivocated"}]}"#,
    );
    assert_eq!(newer.culprits[0].kind, WireBlameKind::Unknown);
}

#[test]
fn session_indices_become_keygen_indices() {
    let t = Threshold::new(3, 5).unwrap();
    let signers = SignerSet::new(&[4, 1, 3], t).unwrap();
    // Positions in the set, whatever order it was given in.
    let positions = signers.parties().to_vec();
    let culprits = [
        Culprit::new(2, BlameKind::Silent),
        Culprit::new(0, BlameKind::Malformed),
        Culprit::new(2, BlameKind::Silent),
        // Outside the three-party session: names no party of the key.
        Culprit::new(3, BlameKind::UnexpectedSender),
    ];
    let wire = culprits_by_keygen_index(&culprits, &signers);
    assert_eq!(
        wire,
        [
            WireCulprit {
                party: positions[2],
                kind: WireBlameKind::Silent
            },
            WireCulprit {
                party: positions[0],
                kind: WireBlameKind::Malformed
            },
        ]
    );
}
