//! A certificate and its key from PEM files: parsed, checked (not expired,
//! the key signs for it) and made into what rustls serves, with the end
//! certificate's expiry for `/metrics` and `/ready`.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

/// A certificate chain and key, ready to serve.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// The end certificate's `notAfter`, in seconds since the epoch.
    pub not_after: i64,
    /// Its subject, for the log.
    pub subject: String,
}

/// Reads `cert` (PEM, the end certificate first, then its chain) and `key`
/// (PEM, PKCS#8, PKCS#1 or SEC1; ECDSA, RSA or Ed25519). The error says
/// which file is wrong and how.
pub fn load(cert: &Path, key: &Path) -> Result<Loaded, String> {
    let chain = read_chain(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        format!(
            "{}: no private key read ({e}); give the key as PEM (BEGIN PRIVATE KEY, BEGIN RSA PRIVATE KEY or BEGIN EC PRIVATE KEY)",
            key.display()
        )
    })?;
    let signer = any_supported_type(&key_der).map_err(|e| {
        format!(
            "{}: the key is not one rustls signs with ({e}); use an ECDSA (P-256, P-384), RSA (2048+) or Ed25519 key",
            key.display()
        )
    })?;
    let (not_after, subject) = validity(&chain[0], cert)?;
    let certified = CertifiedKey::new(chain, signer);
    certified.keys_match().map_err(|_| {
        format!(
            "{}: this key is not the key of the certificate in {}; give the key the certificate was issued for",
            key.display(),
            cert.display()
        )
    })?;
    let now = now_secs();
    if not_after <= now {
        return Err(format!(
            "{}: the certificate ({subject}) expired on {}; renew it (hookwire refuses to serve an expired certificate)",
            cert.display(),
            date(not_after)
        ));
    }
    Ok(Loaded {
        key: Arc::new(certified),
        not_after,
        subject,
    })
}

/// Reads every certificate of a PEM file: at least one.
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let chain = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: not PEM certificates ({e})", path.display()))?;
    if chain.is_empty() {
        return Err(format!(
            "{}: no certificate in it; give PEM (-----BEGIN CERTIFICATE-----), the server's certificate first, then its chain",
            path.display()
        ));
    }
    Ok(chain)
}

/// The end certificate's `notAfter` and subject.
fn validity(cert: &CertificateDer<'_>, path: &Path) -> Result<(i64, String), String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).map_err(|e| {
        format!(
            "{}: the first certificate cannot be read ({e})",
            path.display()
        )
    })?;
    Ok((
        parsed.validity().not_after.timestamp(),
        parsed.subject().to_string(),
    ))
}

pub fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// `secs` since the epoch as an RFC 3339 time (UTC).
pub fn date(secs: i64) -> String {
    let time = UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}
