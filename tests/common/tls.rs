//! TLS for the tests: a certificate made at test time (rcgen; no key is committed), and rustls client
//! settings that trust it.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, ServerName};

use super::{Client, ClientStream, TestServer, WAIT_MAX};

/// A self-signed certificate for `localhost` and 127.0.0.1, its key, both as PEM files in a fresh
/// directory (removed when dropped).
pub struct TestCert {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

impl TestCert {
    pub fn new(name: &str) -> TestCert {
        let dir = std::env::temp_dir().join(format!("tickcast-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let mut made = TestCert {
            dir,
            cert,
            key,
            der: CertificateDer::from(Vec::new()),
        };
        made.renew();
        made
    }

    /// A new certificate and key in the same files (what an operator's renewal does).
    pub fn renew(&mut self) {
        let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        let made = rcgen::generate_simple_self_signed(names).expect("a test certificate");
        std::fs::write(&self.cert, made.cert.pem()).unwrap();
        std::fs::write(&self.key, made.key_pair.serialize_pem()).unwrap();
        self.der = made.cert.der().clone();
    }

    /// Client settings that trust this certificate (as it is now) and nothing else.
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

/// A TLS stream to `server`, its handshake done (an error if the server's certificate is not trusted).
pub fn tls_stream(
    server: &TestServer,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<ClientStream> {
    tls_over(TcpStream::connect(server.addr)?, config)
}

/// TLS over the connected socket `sock`, its handshake done.
pub fn tls_over(
    sock: TcpStream,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<ClientStream> {
    sock.set_read_timeout(Some(WAIT_MAX))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(ClientStream::Tls(Box::new(tls)))
}

impl Client {
    /// Upgrades at `path` over TLS (`wss://`) and reads `Welcome`.
    pub fn connect_tls(
        server: &TestServer,
        path: &str,
        config: Arc<rustls::ClientConfig>,
    ) -> Client {
        let stream = tls_stream(server, config).expect("a TLS handshake");
        Client::upgrade_tls(server, path, stream)
    }

    /// A spectator over TLS whose socket has a small receive buffer, so that not reading fills it fast.
    pub fn watching_tls_small_rcvbuf(
        server: &TestServer,
        config: Arc<rustls::ClientConfig>,
        rcvbuf: usize,
    ) -> Client {
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(rcvbuf).unwrap();
        sock.connect(&server.addr.into()).unwrap();
        let stream = tls_over(sock.into(), config).expect("a TLS handshake");
        let mut c = Client::upgrade_tls(server, "/ws", stream);
        c.watch();
        c
    }

    fn upgrade_tls(server: &TestServer, path: &str, stream: ClientStream) -> Client {
        let url = format!("wss://localhost:{}{path}", server.addr.port());
        let (ws, _) = tungstenite::client(url, stream).expect("a WebSocket handshake over TLS");
        Client::from_upgraded(ws)
    }
}

/// GET `path` over TLS: (status, body).
pub fn https_get(
    server: &TestServer,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> (u16, String) {
    let s = tls_stream(server, config).expect("a TLS handshake");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
    super::http_exchange_on(s, request.as_bytes())
}

/// The value of an unlabelled metric, read over TLS.
pub fn https_metric(server: &TestServer, config: Arc<rustls::ClientConfig>, name: &str) -> u64 {
    let (_, body) = https_get(server, config, "/metrics");
    super::metric_in(&body, name).unwrap_or_else(|| panic!("metric {name} not in:\n{body}"))
}
