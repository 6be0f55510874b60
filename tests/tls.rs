//! HTTPS on the public port, against the real binary: curl, Python's ssl
//! and openssl s_client over TLS 1.2 and 1.3, certificates made here by a
//! test CA (rcgen), reload, expiry, mutual TLS per source, and bad input
//! (plain HTTP on the TLS port, a stalled handshake, an expired
//! certificate at start).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, temp_dir, Server, Sink, BIN};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use time::OffsetDateTime;

/// A test CA that issues server and client certificates into `dir`.
struct Ca {
    dir: PathBuf,
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate's PEM file (what clients trust).
    pem: PathBuf,
}

/// The key type of a certificate.
#[derive(Clone, Copy)]
enum Alg {
    Ecdsa,
    Rsa,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).unwrap();
        let pem = dir.join(format!("{name}.pem"));
        std::fs::write(&pem, cert.pem()).unwrap();
        Ca {
            dir: dir.to_owned(),
            cert,
            key,
            pem,
        }
    }

    /// A server certificate for localhost and 127.0.0.1, valid from
    /// `from_days` to `to_days` around now: (cert file with the chain,
    /// key file).
    fn server(&self, cn: &str, alg: Alg, from_days: i64, to_days: i64) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(params, cn, alg, from_days, to_days)
    }

    /// A client certificate (mutual TLS).
    fn client(&self, cn: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(params, cn, Alg::Ecdsa, -1, 30)
    }

    fn issue(
        &self,
        mut params: CertificateParams,
        cn: &str,
        alg: Alg,
        from_days: i64,
        to_days: i64,
    ) -> (PathBuf, PathBuf) {
        params.distinguished_name.push(DnType::CommonName, cn);
        let now = OffsetDateTime::now_utc();
        params.not_before = now + time::Duration::days(from_days);
        params.not_after = now + time::Duration::days(to_days);
        let key = match alg {
            Alg::Ecdsa => KeyPair::generate().unwrap(),
            // ring signs with RSA keys but does not make them: openssl does.
            Alg::Rsa => {
                let out = Command::new("openssl")
                    .args([
                        "genpkey",
                        "-algorithm",
                        "RSA",
                        "-pkeyopt",
                        "rsa_keygen_bits:2048",
                    ])
                    .output()
                    .expect("run openssl genpkey");
                assert!(out.status.success(), "openssl genpkey failed");
                let pem = String::from_utf8(out.stdout).unwrap();
                KeyPair::from_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).unwrap()
            }
        };
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_path = self.dir.join(format!("{cn}.crt"));
        let key_path = self.dir.join(format!("{cn}.key"));
        // The chain: the server's certificate, then the CA's.
        std::fs::write(&cert_path, cert.pem() + &self.cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An HTTPS server with `cert` and `key`, pushing to a fresh sink.
fn tls_server(cert: &Path, key: &Path, extra: &[&str]) -> (Server, Sink) {
    let sink = Sink::bind();
    let mut args = vec![
        "--tls-cert",
        s(cert),
        "--tls-key",
        s(key),
        "--push",
        sink.endpoint.as_str(),
    ];
    args.extend_from_slice(extra);
    (Server::start(&args), sink)
}

/// curl over HTTPS: (status, body). `args` go before the URL.
fn curl(addr: SocketAddr, ca: &Path, target: &str, args: &[&str]) -> (u16, String) {
    let port = addr.port();
    let out = Command::new("curl")
        .args(["-sS", "--max-time", "10", "--cacert", s(ca)])
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .args(["-w", "\n%{http_code}"])
        .args(args)
        .arg(format!("https://localhost:{port}{target}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "curl failed: {}{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.trim().parse().unwrap(), body.to_owned())
}

/// The value of the `/metrics` sample whose line starts with `sample`.
fn metric(server: &Server, sample: &str) -> f64 {
    let (status, text) = common::admin_get(server.admin.unwrap(), "/metrics");
    assert_eq!(status, 200);
    let line = text
        .lines()
        .find(|l| l.starts_with(sample))
        .unwrap_or_else(|| panic!("no {sample} in /metrics"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Python's ssl: `requests` POSTs on one keep-alive connection at exactly
/// `version` (TLSv1_2, TLSv1_3). Prints the version, ALPN, the server
/// certificate's CN and each response's status line.
const PY_CLIENT: &str = r#"
import http.client, ssl, sys
port, ca, version, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
ctx = ssl.create_default_context(cafile=ca)
ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
ctx.set_alpn_protocols(["http/1.1"])
conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
statuses = []
for i in range(n):
    conn.request("POST", "/py/order/%d" % i, body=b'{"n": %d}' % i,
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    r.read()
    statuses.append(str(r.status))
s = conn.sock
cn = dict(x[0] for x in s.getpeercert()["subject"])["commonName"]
print(s.version(), s.selected_alpn_protocol(), cn, " ".join(statuses))
"#;

fn python_tls(addr: SocketAddr, ca: &Path, version: &str, n: usize) -> String {
    let port = addr.port().to_string();
    let n = n.to_string();
    common::run_python(PY_CLIENT, &[&port, s(ca), version, &n])
        .trim()
        .to_owned()
}

/// `openssl s_client` at one version: its report of the session.
fn s_client(addr: SocketAddr, ca: &Path, version: &str) -> String {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &addr.to_string()])
        .args(["-servername", "localhost", "-CAfile", s(ca)])
        .args(["-alpn", "http/1.1", version])
        .stdin(Stdio::null())
        .output()
        .expect("run openssl s_client");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn curl_python_and_openssl_over_tls12_and_tls13() {
    let dir = temp_dir("tls-clients");
    let ca = Ca::new(&dir, "clients-ca");
    let (cert, key) = ca.server("hookwire-ecdsa", Alg::Ecdsa, -1, 30);
    let (server, sink) = tls_server(&cert, &key, &[]);
    assert!(server
        .banner
        .iter()
        .any(|l| l.starts_with("listen https://")));

    for version in [
        ["--tlsv1.2", "--tls-max", "1.2"],
        ["--tlsv1.3", "--tls-max", "1.3"],
    ] {
        let mut args = version.to_vec();
        args.extend(["-H", "Content-Type: application/json", "-d", r#"{"a":1}"#]);
        let (status, body) = curl(server.addr, &ca.pem, "/shop/order/7", &args);
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("in.gen.shop.order"), "{body}");
        let envelope = sink.recv();
        assert_eq!(envelope["data"]["a"], 1, "{envelope}");
        assert_eq!(envelope["projectId"], 7, "{envelope}");
    }

    // Python's ssl: three requests on one keep-alive connection each.
    for (version, said) in [("TLSv1_2", "TLSv1.2"), ("TLSv1_3", "TLSv1.3")] {
        let out = python_tls(server.addr, &ca.pem, version, 3);
        assert_eq!(out, format!("{said} http/1.1 hookwire-ecdsa 200 200 200"));
        for _ in 0..3 {
            assert_eq!(sink.recv()["service"], "py");
        }
    }

    for (flag, said) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let report = s_client(server.addr, &ca.pem, flag);
        assert!(
            report.contains(&format!("New, {said}, Cipher is")),
            "{report}"
        );
        assert!(report.contains("ALPN protocol: http/1.1"), "{report}");
        assert!(report.contains("Verify return code: 0 (ok)"), "{report}");
    }
    // TLS 1.1 is refused.
    let report = s_client(server.addr, &ca.pem, "-tls1_1");
    assert!(!report.contains("New, TLSv1.1"), "{report}");
    assert!(report.contains("New, (NONE), Cipher is (NONE)"), "{report}");

    // A body larger than a TLS record (16 KiB) crosses many of them.
    let big = format!(r#"{{"blob":"{}"}}"#, "x".repeat(300_000));
    let file = dir.join("big.json");
    std::fs::write(&file, &big).unwrap();
    let data = format!("@{}", s(&file));
    let args = [
        "-H",
        "Content-Type: application/json",
        "--data-binary",
        &data,
    ];
    let (status, body) = curl(server.addr, &ca.pem, "/shop/big/1", &args);
    assert_eq!(status, 200, "{body}");
    let envelope = sink.recv();
    assert_eq!(envelope["data"]["blob"].as_str().unwrap().len(), 300_000);

    let handshakes = metric(&server, r#"hookwire_tls_handshakes_total{core="all"}"#);
    // 2 curl, 2 Python, 2 s_client, 1 curl; the TLS 1.1 try failed.
    assert_eq!(handshakes, 7.0);
    let failed = metric(
        &server,
        r#"hookwire_tls_handshake_failures_total{core="all",reason="no_common_parameters"}"#,
    );
    assert_eq!(failed, 1.0, "the TLS 1.1 handshake");
}

#[test]
fn an_rsa_certificate_serves_too() {
    let dir = temp_dir("tls-rsa");
    let ca = Ca::new(&dir, "rsa-ca");
    let (cert, key) = ca.server("hookwire-rsa", Alg::Rsa, -1, 30);
    let (server, sink) = tls_server(&cert, &key, &[]);
    for version in ["TLSv1_2", "TLSv1_3"] {
        let out = python_tls(server.addr, &ca.pem, version, 1);
        assert!(out.ends_with("http/1.1 hookwire-rsa 200"), "{out}");
        sink.recv();
    }
}

/// Whether this kernel attaches its TLS layer to a TCP socket (it needs
/// the `tls` module); the server must use it exactly when it can.
fn kernel_has_tls(addr: SocketAddr) -> bool {
    use std::os::fd::AsRawFd;
    let stream = TcpStream::connect(addr).unwrap();
    let name = b"tls";
    // SAFETY: setsockopt on an open socket with a buffer of its length.
    let r = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_ULP,
            name.as_ptr().cast(),
            name.len() as libc::socklen_t,
        )
    };
    r == 0
}

#[test]
fn connections_go_to_kernel_tls_or_fall_back_to_user_space() {
    let dir = temp_dir("tls-ktls");
    let ca = Ca::new(&dir, "ktls-ca");
    let (cert, key) = ca.server("hookwire-ktls", Alg::Ecdsa, -1, 30);
    let (server, sink) = tls_server(&cert, &key, &["--listen-plain", "127.0.0.1:0"]);
    for version in ["TLSv1_2", "TLSv1_3", "TLSv1_3"] {
        let out = python_tls(server.addr, &ca.pem, version, 2);
        assert!(out.ends_with("200 200"), "{out}");
        sink.recv();
        sink.recv();
    }
    let kernel = kernel_has_tls(server.plain.unwrap());
    let ktls = metric(
        &server,
        r#"hookwire_tls_connections_total{core="all",path="ktls"}"#,
    );
    let user = metric(
        &server,
        r#"hookwire_tls_connections_total{core="all",path="user_space"}"#,
    );
    if kernel {
        assert_eq!((ktls, user), (3.0, 0.0));
    } else {
        // This kernel has no tls module (TCP_ULP: ENOENT): every
        // connection was served by rustls in user space, and the log says
        // why once.
        assert_eq!((ktls, user), (0.0, 3.0));
        eventually(Duration::from_secs(5), "the kTLS log line", || {
            server.said("kernel TLS unavailable (setsockopt TCP_ULP \"tls\"")
        });
    }
}

#[test]
fn an_expired_certificate_is_refused_at_start() {
    let dir = temp_dir("tls-expired");
    let ca = Ca::new(&dir, "expired-ca");
    let (cert, key) = ca.server("hookwire-old", Alg::Ecdsa, -60, -1);
    let spool = temp_dir("tls-expired-spool");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "off"])
        .args([
            "--spool-dir",
            s(&spool),
            "--tls-cert",
            s(&cert),
            "--tls-key",
            s(&key),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert"), "{err}");
    assert!(err.contains("expired on"), "{err}");
    assert!(err.contains("renew it"), "{err}");

    // A key that is not the certificate's is refused too, naming the key.
    let (_, other_key) = ca.server("hookwire-other", Alg::Ecdsa, -1, 30);
    let (good, _) = ca.server("hookwire-good", Alg::Ecdsa, -1, 30);
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "off"])
        .args([
            "--spool-dir",
            s(&spool),
            "--tls-cert",
            s(&good),
            "--tls-key",
            s(&other_key),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-key"), "{err}");
    assert!(err.contains("not the key of the certificate"), "{err}");
}

#[test]
fn plain_http_on_the_tls_port_gets_400_and_a_close() {
    let dir = temp_dir("tls-plain");
    let ca = Ca::new(&dir, "plain-ca");
    let (cert, key) = ca.server("hookwire-plain", Alg::Ecdsa, -1, 30);
    let (server, sink) = tls_server(&cert, &key, &["--listen-plain", "127.0.0.1:0"]);
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    stream
        .write_all(&common::post_request("/shop/order/1", "", b"a=1"))
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("closed, not hung");
    assert!(started.elapsed() < Duration::from_secs(3));
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(text.contains("\"error\":\"https_required\""), "{text}");
    sink.assert_quiet(Duration::from_millis(200));
    drop(stream);
    // Counted when the connection ends (after the sender's close).
    eventually(Duration::from_secs(3), "the plain_http count", || {
        let sample = r#"hookwire_tls_handshake_failures_total{core="all",reason="plain_http"}"#;
        metric(&server, sample) == 1.0
    });

    // The plain listener beside it serves plain HTTP.
    let plain = server.plain.unwrap();
    let mut stream = TcpStream::connect(plain).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(&common::post_request(
            "/shop/order/2",
            "Connection: close\r\n",
            b"a=2",
        ))
        .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    assert!(raw.starts_with(b"HTTP/1.1 200 "));
    assert_eq!(sink.recv()["data"]["a"], "2");
}

#[test]
fn a_stalled_handshake_is_closed_at_the_request_timeout() {
    let dir = temp_dir("tls-stall");
    let ca = Ca::new(&dir, "stall-ca");
    let (cert, key) = ca.server("hookwire-stall", Alg::Ecdsa, -1, 30);
    let (server, _sink) = tls_server(&cert, &key, &["--request-timeout", "1s"]);
    // One sends nothing; one the start of a ClientHello record, then stops.
    for first in [&b""[..], &[0x16, 0x03, 0x01, 0x00][..]] {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream.write_all(first).unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let closed = match stream.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => panic!("answered {n} bytes to a stalled handshake"),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        };
        let took = started.elapsed();
        assert!(closed, "still open after {took:?}");
        // 1 s, with room for a loaded machine (the tests run in parallel).
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(12),
            "closed after {took:?}"
        );
    }
    let timeouts = metric(
        &server,
        r#"hookwire_tls_handshake_failures_total{core="all",reason="timeout"}"#,
    );
    assert_eq!(timeouts, 2.0);
    let open = metric(&server, r#"hookwire_connections_open{core="all"}"#);
    assert_eq!(open, 0.0, "accepted = open + closed");
}

/// The CN of the certificate the server hands a new connection.
fn served_cn(server: &Server, ca: &Path) -> String {
    let out = python_tls(server.addr, ca, "TLSv1_3", 1);
    out.split(' ').nth(2).unwrap().to_owned()
}

#[test]
fn certificates_reload_on_file_change_and_sighup() {
    let dir = temp_dir("tls-reload");
    let ca = Ca::new(&dir, "reload-ca");
    let (cert, key) = ca.server("hookwire-one", Alg::Ecdsa, -1, 30);
    let (served_cert, served_key) = (dir.join("served.crt"), dir.join("served.key"));
    std::fs::copy(&cert, &served_cert).unwrap();
    std::fs::copy(&key, &served_key).unwrap();
    let (server, sink) = tls_server(&served_cert, &served_key, &[]);
    assert_eq!(served_cn(&server, &ca.pem), "hookwire-one");
    sink.recv();

    // A new pair, moved into place (key first, then the certificate):
    // new connections get it.
    let (cert, key) = ca.server("hookwire-two", Alg::Rsa, -1, 30);
    std::fs::rename(&key, &served_key).unwrap();
    std::fs::rename(&cert, &served_cert).unwrap();
    eventually(Duration::from_secs(10), "the new certificate", || {
        let cn = served_cn(&server, &ca.pem);
        sink.recv();
        cn == "hookwire-two"
    });
    assert!(server.said("reloaded (the files changed)"));

    // A bad new file is refused with a log line; the old one stays.
    std::fs::write(&served_cert, "not a certificate").unwrap();
    eventually(Duration::from_secs(10), "the refusal", || {
        server.said("not reloaded (the files changed)")
    });
    assert_eq!(served_cn(&server, &ca.pem), "hookwire-two");
    sink.recv();
    // An expired one too.
    let (cert, key) = ca.server("hookwire-expired", Alg::Ecdsa, -30, -1);
    std::fs::copy(&key, &served_key).unwrap();
    std::fs::copy(&cert, &served_cert).unwrap();
    eventually(Duration::from_secs(10), "the expired refusal", || {
        server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("not reloaded") && l.contains("expired on"))
    });
    assert_eq!(served_cn(&server, &ca.pem), "hookwire-two");
    sink.recv();

    // SIGHUP reads the files again and says so (the watcher may have seen
    // the new pair first; either way new connections get it).
    let (cert, key) = ca.server("hookwire-three", Alg::Ecdsa, -1, 30);
    std::fs::copy(&key, &served_key).unwrap();
    std::fs::copy(&cert, &served_cert).unwrap();
    // SAFETY: kill with a valid signal to the child this test started.
    unsafe { libc::kill(server.child.id() as i32, libc::SIGHUP) };
    eventually(Duration::from_secs(10), "the SIGHUP reload", || {
        server.said("reloaded (SIGHUP)")
    });
    assert_eq!(served_cn(&server, &ca.pem), "hookwire-three");
    sink.recv();
}

#[test]
fn ready_turns_503_within_7_days_of_expiry() {
    let dir = temp_dir("tls-ready");
    let ca = Ca::new(&dir, "ready-ca");
    let (cert, key) = ca.server("hookwire-soon", Alg::Ecdsa, -1, 3);
    let (server, _sink) = tls_server(&cert, &key, &[]);
    let days = metric(&server, "hookwire_tls_cert_expiry_days{");
    assert!((2.9..3.1).contains(&days), "{days}");
    let admin = server.admin.unwrap();
    eventually(Duration::from_secs(5), "a consumer on every core", || {
        let (_, body) = common::admin_get(admin, "/ready");
        !body.contains("no_consumer")
    });
    let (status, body) = common::admin_get(admin, "/ready");
    assert_eq!(status, 503, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    let problem = &ready["problems"][0];
    assert_eq!(problem["code"], "tls_cert_expiring", "{body}");
    assert!(
        problem["reason"].as_str().unwrap().contains("renew it"),
        "{body}"
    );

    // A month left: ready.
    let (cert, key) = ca.server("hookwire-fresh", Alg::Ecdsa, -1, 30);
    let (server, _sink) = tls_server(&cert, &key, &[]);
    let admin = server.admin.unwrap();
    eventually(Duration::from_secs(5), "ready", || {
        common::admin_get(admin, "/ready").0 == 200
    });
}

#[test]
fn client_certificates_per_source() {
    let dir = temp_dir("tls-mtls");
    let ca = Ca::new(&dir, "server-ca");
    let clients = Ca::new(&dir, "inhouse-ca");
    let (cert, key) = ca.server("hookwire-mtls", Alg::Ecdsa, -1, 30);
    let (good_cert, good_key) = clients.client("billing");
    // Issued by another CA (the server's): not trusted by the source.
    let (other_cert, other_key) = ca.client("stranger");
    let config = dir.join("hookwire.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\nservice = \"inhouse\"\nclient-ca = \"{}\"\n\n[[source]]\nservice = \"shop\"\n",
            s(&clients.pem)
        ),
    )
    .unwrap();
    let (server, sink) = tls_server(
        &cert,
        &key,
        &["--config", s(&config), "--listen-plain", "127.0.0.1:0"],
    );
    let post = ["-d", "a=1"];
    let (status, body) = curl(server.addr, &ca.pem, "/inhouse/sync/1", &post);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"error\":\"missing_client_cert\""), "{body}");

    let with = |cert: &Path, key: &Path| {
        let args = ["--cert", s(cert), "--key", s(key), "-d", "a=1"];
        curl(server.addr, &ca.pem, "/inhouse/sync/1", &args)
    };
    let (status, body) = with(&other_cert, &other_key);
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("\"error\":\"untrusted_client_cert\""),
        "{body}"
    );
    sink.assert_quiet(Duration::from_millis(200));

    let (status, body) = with(&good_cert, &good_key);
    assert_eq!(status, 200, "{body}");
    assert_eq!(sink.recv()["service"], "inhouse");

    // Other sources do not ask for one.
    let (status, body) = curl(server.addr, &ca.pem, "/shop/order/1", &post);
    assert_eq!(status, 200, "{body}");
    sink.recv();

    // Plain HTTP brings no certificate.
    let mut stream = TcpStream::connect(server.plain.unwrap()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let request = common::post_request("/inhouse/sync/1", "Connection: close\r\n", b"a=1");
    stream.write_all(&request).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 401 "), "{text}");
    assert!(text.contains("missing_client_cert"), "{text}");
    sink.assert_quiet(Duration::from_millis(200));
}

#[test]
fn client_ca_without_tls_is_refused_at_start() {
    let dir = temp_dir("tls-ca-only");
    let clients = Ca::new(&dir, "lonely-ca");
    let config = dir.join("hookwire.toml");
    std::fs::write(
        &config,
        format!(
            "[[source]]\nservice = \"inhouse\"\nclient-ca = \"{}\"\n",
            s(&clients.pem)
        ),
    )
    .unwrap();
    let spool = temp_dir("tls-ca-only-spool");
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "off"])
        .args(["--spool-dir", s(&spool), "--config", s(&config)])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("client-ca"), "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
}
