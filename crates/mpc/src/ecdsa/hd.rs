//! Non-hardened BIP32/SLIP-10 derivation paths.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::MpcError;

/// A path of non-hardened child indices (each below 2^31), at most 255 deep.
///
/// Threshold keys only support non-hardened derivation: a hardened child needs
/// the whole private key, which never exists.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DerivationPath(Vec<u32>);

impl DerivationPath {
    /// Deepest path accepted (BIP32 stores the depth in one byte).
    pub const MAX_DEPTH: usize = 255;
    const HARDENED: u32 = 1 << 31;

    /// Validates a list of child indices.
    pub fn new(indices: Vec<u32>) -> Result<Self, MpcError> {
        if indices.len() > Self::MAX_DEPTH {
            return Err(MpcError::InvalidDerivationPath(format!(
                "{} levels, at most {} allowed",
                indices.len(),
                Self::MAX_DEPTH
            )));
        }
        if let Some(i) = indices.iter().find(|&&i| i >= Self::HARDENED) {
            return Err(MpcError::InvalidDerivationPath(format!(
                "index {i} is hardened; threshold keys derive non-hardened children only"
            )));
        }
        Ok(Self(indices))
    }

    /// The child indices.
    pub fn indices(&self) -> &[u32] {
        &self.0
    }

    /// Whether this is the root (`m`).
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::str::FromStr for DerivationPath {
    type Err = MpcError;
    /// Parses `m/0/1/2` (also accepts `m` alone, the root). One spelling per
    /// path: indices are decimal digits without a sign or leading zeros, so
    /// `m/01` or `m/+1` are refused rather than read as `m/1`. Hardened
    /// markers are refused.
    fn from_str(s: &str) -> Result<Self, MpcError> {
        let mut parts = s.split('/');
        if parts.next() != Some("m") {
            return Err(MpcError::InvalidDerivationPath(format!(
                "{s:?} must start with \"m\""
            )));
        }
        let indices = parts
            .map(|p| {
                if p.ends_with('\'') || p.ends_with('h') || p.ends_with('H') {
                    return Err(MpcError::InvalidDerivationPath(format!(
                        "{p:?} is hardened; threshold keys derive non-hardened children only"
                    )));
                }
                let canonical = !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0'));
                if !canonical {
                    return Err(MpcError::InvalidDerivationPath(format!(
                        "{p:?} is not a child index (decimal digits, no sign, no leading zero)"
                    )));
                }
                p.parse::<u32>().map_err(|_| {
                    MpcError::InvalidDerivationPath(format!("{p:?} is not a child index"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(indices)
    }
}

impl TryFrom<String> for DerivationPath {
    type Error = MpcError;
    fn try_from(s: String) -> Result<Self, MpcError> {
        s.parse()
    }
}

impl From<DerivationPath> for String {
    fn from(p: DerivationPath) -> String {
        p.to_string()
    }
}

impl fmt::Display for DerivationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("m")?;
        for i in &self.0 {
            write!(f, "/{i}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for DerivationPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DerivationPath({self})")
    }
}

/// Compressed SEC1 public key of the child at `path` of the extended public key
/// (`public_key`, `chain_code`), by SLIP-10 (BIP32-compatible) non-hardened
/// derivation. Lets a coordinator that holds no share derive what a child
/// signature must verify under.
pub fn derive_public_key(
    public_key: &[u8; 33],
    chain_code: &[u8; 32],
    path: &DerivationPath,
) -> Result<[u8; 33], MpcError> {
    use cggmp21::hd_wallet::{ExtendedPublicKey, HdWallet, NonHardenedIndex, Slip10};
    let point =
        cggmp21::generic_ec::Point::<super::Curve>::from_bytes(public_key).map_err(|_| {
            MpcError::InvalidDerivationPath("public key is not a secp256k1 point".into())
        })?;
    let parent = ExtendedPublicKey {
        public_key: point,
        chain_code: *chain_code,
    };
    let indices = path.indices().iter().map(|&i| {
        NonHardenedIndex::try_from(i).map_err(|e| MpcError::InvalidDerivationPath(e.to_string()))
    });
    let child = Slip10::try_derive_child_public_key_with_path(&parent, indices)?;
    super::sec1(&child.public_key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_print() {
        let p: DerivationPath = "m/0/1/42".parse().unwrap();
        assert_eq!(p.indices(), &[0, 1, 42]);
        assert_eq!(p.to_string(), "m/0/1/42");
        assert!("m".parse::<DerivationPath>().unwrap().is_root());
    }

    #[test]
    fn refuses_hardened_and_garbage() {
        for bad in [
            "m/0'",
            "m/1h",
            "0/1",
            "m/x",
            "m//1",
            "m/2147483648",
            "",
            "m/01",
            "m/+1",
            "m/ 1",
            "m/1/",
            "M/1",
            "m/00",
        ] {
            assert!(bad.parse::<DerivationPath>().is_err(), "{bad} accepted");
        }
        assert!(DerivationPath::new(vec![0; 256]).is_err());
    }
}
