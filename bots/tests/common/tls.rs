//! TLS for the bots' tests: a self-signed certificate made at test time (rcgen; no key is committed),
//! written as PEM files to a fresh directory, and a TLS server started with it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};

use super::{TestConfig, TestServer, WAIT_MAX};

/// A self-signed certificate for `localhost` and the IP address 127.0.0.1, and its key, as PEM files
/// in a fresh directory (removed when dropped).
pub struct TestCert {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    pub fn new(name: &str) -> TestCert {
        TestCert::made(name, &["localhost", "127.0.0.1"], false)
    }

    /// A self-signed certificate for `names` (a name that parses as an IP address is an IP SAN) that
    /// says it is a CA (`basicConstraints CA:TRUE`) when `ca`, as openssl's `req -x509` makes by default.
    pub fn made(name: &str, names: &[&str], ca: bool) -> TestCert {
        let dir =
            std::env::temp_dir().join(format!("tickcast-bots-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).expect("test certificate names");
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let key_pair = rcgen::KeyPair::generate().expect("a test key");
        let made = params.self_signed(&key_pair).expect("a test certificate");
        std::fs::write(&cert, made.pem()).unwrap();
        std::fs::write(&key, key_pair.serialize_pem()).unwrap();
        TestCert {
            dir,
            cert,
            key,
            der: made.der().clone(),
        }
    }

    /// `--ca-file` and the certificate's path, as bots flags.
    pub fn ca_flag(&self) -> [String; 2] {
        ["--ca-file".to_string(), self.cert.display().to_string()]
    }

    /// Client settings that trust this certificate and nothing else.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }
}

impl Drop for TestCert {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The arena on 127.0.0.1:0 serving TLS with `cert` (every connection: wss://, https://), `adjust`ed.
pub fn tls_server(cert: &TestCert, adjust: impl FnOnce(&mut TestConfig)) -> TestServer {
    let (c, k) = (cert.cert.clone(), cert.key.clone());
    TestServer::start(move |cfg| {
        cfg.tls_cert = Some(c);
        cfg.tls_key = Some(k);
        adjust(cfg);
    })
}

/// `GET path` over TLS to `addr`, checking the certificate for 127.0.0.1 against `config`: the status
/// and the body (read to the server's close). `None` when nothing listens, the handshake fails or no
/// status came back.
pub fn https_get(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> Option<(u16, String)> {
    /// Most bytes of an answer read.
    const RESPONSE_BYTES_MAX: u64 = 1 << 20;
    let sock = TcpStream::connect(addr).ok()?;
    sock.set_read_timeout(Some(WAIT_MAX)).ok()?;
    let name = ServerName::IpAddress(addr.ip().into());
    let conn = rustls::ClientConnection::new(config, name).ok()?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).ok()?;
    let mut answer = Vec::new();
    // The server closes after answering; a close without close_notify ends the read as well.
    let _ = (&mut tls).take(RESPONSE_BYTES_MAX).read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok())?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or(String::new(), |(_, b)| b.to_string());
    Some((status, body))
}
