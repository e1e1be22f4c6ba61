//! PKCS#11 bridge to the HSM, Keyfold's cold tier and root of trust for data
//! at rest: sealing of signer secrets, cold wallet keys that never leave the
//! HSM, and the audit log's checkpoint key.
#![forbid(unsafe_code)]
