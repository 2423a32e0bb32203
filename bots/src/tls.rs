//! `wss://` and `https://` for the bots: the rustls client settings of a run (which certificates are
//! trusted: `--ca-file`, the system's roots, or nothing at all with `--insecure`) and the server name a
//! connection checks. The TLS bytes themselves are driven without blocking in `stream.rs`.
//!
//! The crypto provider is ring, as on the server; TLS 1.3 and 1.2 with rustls's safe defaults, ALPN
//! `http/1.1`. The settings are built once per run and shared by every connection (rustls's in-memory
//! session cache included, so a reconnecting bot may resume its TLS session as a browser would).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_name, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Where the system's trusted roots are looked for without `--ca-file` (after `SSL_CERT_FILE`): Debian
/// and Ubuntu, Fedora and RHEL, openSUSE, Alpine and macOS.
pub const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// What the bots trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The certificates of this PEM file, and nothing else (`--ca-file`). A server showing exactly one of
    /// them is trusted even when that certificate says it is a CA (openssl's self-signed default), for
    /// the names it lists.
    CaFile(PathBuf),
    /// The system's roots: `SSL_CERT_FILE`, else the first of [`SYSTEM_BUNDLES`] that exists.
    System,
    /// Nothing is verified (`--insecure`): any certificate for any name is accepted. The handshake's
    /// signatures are still checked (the server must hold the key of the certificate it shows), but
    /// anyone between the bots and the server can show their own.
    Insecure,
}

/// The client settings for `trust`; the error says which file is wrong and how.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let mut config = match trust {
        Trust::Insecure => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth(),
        Trust::CaFile(path) => {
            let pinned = certificates(path, "--ca-file")?;
            let store = Arc::new(roots(path, "--ca-file", pinned.clone())?);
            let webpki = WebPkiServerVerifier::builder_with_provider(store, provider.clone())
                .build()
                .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CaFileVerifier { webpki, pinned }))
                .with_no_client_auth()
        }
        Trust::System => {
            let path = system_bundle().ok_or_else(|| {
                format!(
                    "wss:// and https:// need certificates to trust: no SSL_CERT_FILE and none of {} \
                     exists; give --ca-file PEM (or --insecure for a local run)",
                    SYSTEM_BUNDLES.join(", ")
                )
            })?;
            let what = "the system's roots";
            builder
                .with_root_certificates(roots(&path, what, certificates(&path, what)?)?)
                .with_no_client_auth()
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The system's bundle of roots: `SSL_CERT_FILE` if set, else the first of [`SYSTEM_BUNDLES`] there.
fn system_bundle() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        return Some(PathBuf::from(path));
    }
    SYSTEM_BUNDLES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// Every certificate of the PEM file at `path`; `what` names it in errors.
fn certificates(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{what} {}: {e}", path.display()))
}

/// `certs` (of the PEM file at `path`) as trusted roots; `what` names the file in errors.
fn roots(
    path: &Path,
    what: &str,
    certs: Vec<CertificateDer<'static>>,
) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "{what} {}: no usable certificate in it (PEM, -----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(store)
}

/// The name a connection to `host` (a URL's host, IPv6 in brackets or not) checks the certificate for:
/// a DNS name, or an IP address (which the certificate must list as an IP SAN).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host:?} is no name a TLS certificate can be checked for: {e}"))
}

/// `--ca-file`: rustls's own verification against the file's certificates, with one exception. A
/// self-signed certificate made with openssl's defaults says `CA:TRUE`, and webpki refuses a CA
/// certificate as a server's own (`CaUsedAsEndEntity`), though the file trusts it. When that is the only
/// objection (webpki checks the validity period before it) and the server shows byte for byte a
/// certificate of the file, it is trusted for the names it lists (checked here). The handshake's
/// signatures are checked as always.
#[derive(Debug)]
struct CaFileVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

/// Whether `e` is webpki's refusal of a CA certificate as a server's own (webpki's error comes through
/// rustls as `CertificateError::Other`, whose text is the variant's name).
fn ca_used_as_end_entity(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(CertificateError::Other(other))
            if other.to_string() == "CaUsedAsEndEntity"
    )
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let refused = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(e) => e,
        };
        let pinned = self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref());
        if !(pinned && ca_used_as_end_entity(&refused)) {
            return Err(refused);
        }
        verify_server_name(&ParsedCertificate::try_from(end_entity)?, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// `--insecure`: accepts any certificate, checks only the handshake's signatures.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_are_dns_names_or_ip_addresses() {
        assert!(matches!(
            server_name("localhost"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("127.0.0.1"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(server_name("not a name").is_err());
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_with_its_name() {
        let dir = std::env::temp_dir().join(format!("bots-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "no PEM in here\n").unwrap();
        let err = client_config(&Trust::CaFile(empty.clone())).unwrap_err();
        assert!(
            err.contains("--ca-file") && err.contains("empty.pem"),
            "{err}"
        );
        let missing = dir.join("missing.pem");
        let err = client_config(&Trust::CaFile(missing)).unwrap_err();
        assert!(err.contains("missing.pem"), "{err}");
        assert!(client_config(&Trust::Insecure).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
