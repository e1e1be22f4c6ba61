//! A private certificate authority (rcgen, ECDSA P-256) that issues node
//! certificates carrying the node's id and role.
//!
//! A node certificate has:
//! * SAN DNS name = the node id, so a client dialing with server name = node id
//!   authenticates the server with plain WebPKI name checking;
//! * SAN URI `keyfold:<role>:<node id>`, from which [`crate::tls::PeerIdentity`]
//!   is read after the chain has been verified;
//! * EKU serverAuth + clientAuth (every node is both server and client).
//!
//! The CA certificate is a CA (basic constraints, path length 0) with the key
//! usages keyCertSign + cRLSign.

use std::fmt;

use rand_core::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::{Duration as TimeDuration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::error::NetError;
use crate::id::{NodeId, Role};
use crate::tls::{self, Identity};

/// Validity of a CA certificate.
pub const CA_VALIDITY_DAYS: i64 = 10 * 365;
/// Validity of a node certificate.
pub const NODE_VALIDITY_DAYS: i64 = 5 * 365;
/// Prefix of the SAN URI that carries a node's identity: `keyfold:<role>:<node id>`.
pub const SAN_URI_PREFIX: &str = "keyfold:";

/// A private CA: its certificate and private key (PEM).
#[derive(Clone)]
pub struct Ca {
    /// The CA certificate (PEM).
    pub cert_pem: String,
    /// The CA private key (PKCS#8 PEM). Secret.
    pub key_pem: Zeroizing<String>,
}

/// A node certificate and its private key (PEM).
#[derive(Clone)]
pub struct NodeCert {
    /// The node certificate (PEM).
    pub cert_pem: String,
    /// The node's private key (PKCS#8 PEM). Secret.
    pub key_pem: Zeroizing<String>,
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCert")
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

fn cert_err(context: &str, e: impl fmt::Display) -> NetError {
    NetError::Certificate {
        context: context.to_string(),
        reason: e.to_string(),
    }
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte to strip
    SerialNumber::from_slice(&bytes)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

impl Ca {
    /// Generates a new CA whose certificate's common name is `name`.
    pub fn generate(name: &str) -> Result<Ca, NetError> {
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(cert_err("CA name", "must be 1 to 64 printable characters"));
        }
        let key = KeyPair::generate().map_err(|e| cert_err("generating the CA key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Keyfold");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now() - TimeDuration::hours(1);
        params.not_after = now() + TimeDuration::days(CA_VALIDITY_DAYS);
        params.serial_number = Some(random_serial());
        let cert = params
            .self_signed(&key)
            .map_err(|e| cert_err("self-signing the CA certificate", e))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// Loads a CA from its certificate and key (PEM); checks that the key
    /// belongs to the certificate and that the certificate is a CA.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, NetError> {
        let ca = Ca {
            cert_pem: cert_pem.to_string(),
            key_pem: Zeroizing::new(key_pem.to_string()),
        };
        // Validates everything issuing needs.
        ca.issuer()?;
        Ok(ca)
    }

    /// Rebuilds the rcgen issuer (subject name, key) from the PEM documents.
    fn issuer(&self) -> Result<Issuer<'static, KeyPair>, NetError> {
        let key = KeyPair::from_pem(&self.key_pem).map_err(|e| cert_err("CA private key", e))?;
        let der = tls::single_cert_der(&self.cert_pem, "CA certificate")?;
        let (_, cert) = x509_parser::parse_x509_certificate(&der)
            .map_err(|e| cert_err("parsing the CA certificate", e))?;
        match cert.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {}
            _ => {
                return Err(cert_err(
                    "CA certificate",
                    "is not a CA (basic constraints)",
                ))
            }
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(cert_err(
                "CA private key",
                "does not belong to the CA certificate",
            ));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = subject_of(&cert)?;
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Ok(Issuer::new(params, key))
    }

    /// Issues a certificate for `node` with `role` (valid
    /// [`NODE_VALIDITY_DAYS`] days, fresh P-256 key).
    pub fn issue(&self, node: &NodeId, role: Role) -> Result<NodeCert, NetError> {
        let issuer = self.issuer()?;
        let key = KeyPair::generate().map_err(|e| cert_err("generating a node key", e))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Keyfold");
        params
            .distinguished_name
            .push(DnType::OrganizationalUnitName, role.as_str());
        params
            .distinguished_name
            .push(DnType::CommonName, node.as_str());
        let dns = node
            .as_str()
            .try_into()
            .map_err(|e| cert_err("SAN DNS name", e))?;
        let uri = format!("{SAN_URI_PREFIX}{role}:{node}")
            .try_into()
            .map_err(|e| cert_err("SAN URI", e))?;
        params.subject_alt_names = vec![SanType::DnsName(dns), SanType::URI(uri)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now() - TimeDuration::hours(1);
        params.not_after = now() + TimeDuration::days(NODE_VALIDITY_DAYS);
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| cert_err("signing a node certificate", e))?;
        Ok(NodeCert {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// Issues a certificate for `node` and returns the complete [`Identity`]
    /// (CA certificate, node certificate, node key) that node runs with.
    pub fn issue_identity(&self, node: &NodeId, role: Role) -> Result<Identity, NetError> {
        let cert = self.issue(node, role)?;
        Identity::from_pem(&self.cert_pem, &cert.cert_pem, &cert.key_pem)
    }
}

/// Rebuilds an rcgen distinguished name from a parsed subject, keeping the
/// attribute order and string types so the issuer name of the certificates we
/// sign matches the CA's subject byte for byte.
fn subject_of(
    cert: &x509_parser::certificate::X509Certificate<'_>,
) -> Result<DistinguishedName, NetError> {
    use x509_parser::der_parser::asn1_rs::Tag;
    let mut dn = DistinguishedName::new();
    for rdn in cert.subject().iter() {
        let mut attrs = rdn.iter();
        let (Some(attr), None) = (attrs.next(), attrs.next()) else {
            return Err(cert_err(
                "CA subject",
                "multi-valued name components are not supported",
            ));
        };
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| cert_err("CA subject", "attribute OID out of range"))?
            .collect();
        let text = attr
            .as_str()
            .map_err(|e| cert_err("CA subject attribute", e))?;
        let value = match attr.attr_value().tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_string()),
            Tag::PrintableString => DnValue::PrintableString(
                text.try_into()
                    .map_err(|e| cert_err("CA subject attribute", e))?,
            ),
            Tag::Ia5String => DnValue::Ia5String(
                text.try_into()
                    .map_err(|e| cert_err("CA subject attribute", e))?,
            ),
            other => {
                return Err(cert_err(
                    "CA subject attribute",
                    format!("unsupported string type {other}"),
                ))
            }
        };
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}
