//! HTTPS on the public port: the rustls server config, the certificate it
//! serves (swapped on reload, new connections get the new one), the
//! `[[source]] client-ca` checks, and the kernel TLS install ([`ktls`]).
//!
//! A connection is handshaken by rustls (`conn::tls`); then kernel TLS is
//! tried, and where the kernel lacks it the connection is served through
//! rustls in user space. Built once at start by [`crate::config`]; the
//! watcher ([`watch`]) reloads the files on SIGHUP and when they change.

pub mod certs;
pub mod ktls;
pub mod watch;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig};

use certs::Loaded;

/// `/ready` turns 503 this close to the certificate's expiry.
pub const EXPIRY_WARNING_SECS: i64 = 7 * 86_400;

/// The protocol offered by ALPN: HTTP/1.1 only.
const ALPN: &[u8] = b"http/1.1";

/// The TLS side of the server, shared by every core and the watcher.
#[derive(Debug)]
pub struct Tls {
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
    /// The rustls config every handshake uses; its certificate resolver
    /// reads `current`.
    pub config: Arc<ServerConfig>,
    current: Arc<Current>,
    /// Per `[[source]]`, in the config's order: the verifier of its
    /// `client-ca`, if it has one.
    pub client_cas: Vec<Option<Arc<dyn ClientCertVerifier>>>,
}

/// The certificate served now. Read once per handshake (not per request).
#[derive(Debug)]
struct Current(RwLock<Loaded>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().ok()?.key.clone())
    }
}

impl Tls {
    /// Loads the certificate and key and builds the rustls config: TLS 1.2
    /// and 1.3, ALPN `http/1.1`, session tickets and a session cache; a
    /// client certificate is asked for when any source has a `client-ca`
    /// (`client_cas`, per source: the CA file).
    pub fn new(cert: &Path, key: &Path, client_cas: &[Option<PathBuf>]) -> Result<Tls, String> {
        let loaded = certs::load(cert, key)?;
        let current = Arc::new(Current(RwLock::new(loaded)));
        let mut verifiers = Vec::with_capacity(client_cas.len());
        let mut all_roots = RootCertStore::empty();
        for ca in client_cas {
            let Some(path) = ca else {
                verifiers.push(None);
                continue;
            };
            let roots = roots(path)?;
            for root in roots.roots.iter() {
                all_roots.roots.push(root.clone());
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| format!("client-ca {}: {e}", path.display()))?;
            verifiers.push(Some(verifier));
        }
        // ring: the provider already built for the benches, no C/cmake
        // build of aws-lc (its post-quantum key exchange is what ring lacks).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS versions: {e}"))?;
        let builder = if all_roots.is_empty() {
            builder.with_no_client_auth()
        } else {
            let inner = WebPkiClientVerifier::builder(Arc::new(all_roots))
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("client-ca: {e}"))?;
            builder.with_client_cert_verifier(Arc::new(AnyClientCert { inner }))
        };
        let mut config = builder.with_cert_resolver(current.clone());
        config.alpn_protocols = vec![ALPN.to_vec()];
        config.ticketer =
            rustls::crypto::ring::Ticketer::new().map_err(|e| format!("session tickets: {e}"))?;
        config.session_storage = rustls::server::ServerSessionMemoryCache::new(4096);
        // For the kernel TLS install after the handshake.
        config.enable_secret_extraction = true;
        Ok(Tls {
            cert_path: cert.to_owned(),
            key_path: key.to_owned(),
            config: Arc::new(config),
            current,
            client_cas: verifiers,
        })
    }

    /// Reads the files again: the new certificate serves new connections,
    /// open ones keep theirs. On error the certificate served stays.
    pub fn reload(&self) -> Result<Loaded, String> {
        let loaded = certs::load(&self.cert_path, &self.key_path)?;
        let mut current = self.current.0.write().map_err(|_| "poisoned lock")?;
        *current = loaded.clone();
        Ok(loaded)
    }

    /// The served certificate's `notAfter`, in seconds since the epoch.
    pub fn not_after(&self) -> i64 {
        self.current.0.read().map_or(0, |c| c.not_after)
    }

    /// Whether any source asks for a client certificate.
    pub fn mutual(&self) -> bool {
        self.client_cas.iter().any(Option::is_some)
    }

    /// What the client's certificate proves, per source: bit `i` is set
    /// when it chains to source `i`'s `client-ca`.
    pub fn client_cert(&self, chain: Option<&[CertificateDer<'_>]>) -> ClientCert {
        let Some((end, intermediates)) = chain.and_then(|c| c.split_first()) else {
            return ClientCert::NONE;
        };
        let now = UnixTime::now();
        let mut trusted = 0u64;
        for (i, verifier) in self.client_cas.iter().enumerate().take(64) {
            if let Some(v) = verifier {
                if v.verify_client_cert(end, intermediates, now).is_ok() {
                    trusted |= 1 << i;
                }
            }
        }
        ClientCert {
            presented: true,
            trusted,
        }
    }
}

/// A connection's client certificate, as the sources see it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientCert {
    /// The client sent a certificate (and proved it holds its key).
    pub presented: bool,
    /// Bit `i`: it chains to source `i`'s `client-ca` (sources past the
    /// 64th cannot have one; the config refuses it).
    pub trusted: u64,
}

impl ClientCert {
    pub const NONE: ClientCert = ClientCert {
        presented: false,
        trusted: 0,
    };

    pub fn trusted_by(self, source: usize) -> bool {
        source < 64 && self.trusted & (1 << source) != 0
    }
}

/// Reads a `client-ca` file into a root store.
fn roots(path: &Path) -> Result<RootCertStore, String> {
    let chain = certs::read_chain(path).map_err(|e| format!("client-ca {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in chain {
        roots
            .add(cert)
            .map_err(|e| format!("client-ca {}: not a CA certificate ({e})", path.display()))?;
    }
    Ok(roots)
}

/// The handshake's client-certificate check: a certificate is asked for
/// (naming every source's CA) but not required, and any chain is let in
/// once the client proves it holds the key. Which source it is good for is
/// decided per source after the handshake ([`Tls::client_cert`]), so a
/// request to the wrong source gets a 403 that says why, not a TLS alert.
#[derive(Debug)]
struct AnyClientCert {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Why a handshake failed, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Plain HTTP sent to the TLS port (answered 400 in plain text).
    PlainHttp,
    /// Not done within `--request-timeout`.
    Timeout,
    /// The client closed (or reset) the connection mid-handshake.
    Closed,
    /// No TLS version, cipher suite or signature scheme in common.
    NoCommonParameters,
    /// The client refused the server's certificate (an alert).
    CertificateRejected,
    /// Bytes that are not TLS, or a TLS message out of order.
    BadMessage,
    /// The client's certificate proof failed.
    BadClientCertificate,
    Other,
}

impl Failure {
    pub const ALL: [Failure; 8] = [
        Failure::PlainHttp,
        Failure::Timeout,
        Failure::Closed,
        Failure::NoCommonParameters,
        Failure::CertificateRejected,
        Failure::BadMessage,
        Failure::BadClientCertificate,
        Failure::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Failure::PlainHttp => "plain_http",
            Failure::Timeout => "timeout",
            Failure::Closed => "closed",
            Failure::NoCommonParameters => "no_common_parameters",
            Failure::CertificateRejected => "certificate_rejected",
            Failure::BadMessage => "bad_message",
            Failure::BadClientCertificate => "bad_client_certificate",
            Failure::Other => "other",
        }
    }

    /// The reason of a failed handshake's error.
    pub fn of(e: &std::io::Error) -> Failure {
        use rustls::{AlertDescription as A, Error as E};
        let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<E>()) else {
            return Failure::Closed;
        };
        match tls {
            E::PeerIncompatible(_) => Failure::NoCommonParameters,
            E::AlertReceived(
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA,
            ) => Failure::CertificateRejected,
            E::AlertReceived(
                A::ProtocolVersion | A::HandshakeFailure | A::InsufficientSecurity,
            ) => Failure::NoCommonParameters,
            E::InvalidMessage(_)
            | E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::PeerMisbehaved(_) => Failure::BadMessage,
            E::InvalidCertificate(_) | E::NoCertificatesPresented => Failure::BadClientCertificate,
            _ => Failure::Other,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

/// Per-core TLS counters.
#[derive(Debug, Clone, Default)]
pub struct TlsCounts {
    /// Handshakes completed.
    pub handshakes: u64,
    /// Handshakes failed, by [`Failure`].
    pub failures: [u64; Failure::ALL.len()],
    /// Connections whose records the kernel handles after the handshake.
    pub ktls: u64,
    /// Connections served through rustls in user space.
    pub user_space: u64,
}
