//! TLS where Herald talks to others: Redis over `rediss://` (the server's
//! certificate checked against `redis.tls_ca_file`) and the control
//! listener with `control.tls_cert_file` / `tls_key_file` — against a real
//! redis-server started with TLS, certificates made for the test.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const T: Duration = Duration::from_secs(30);

/// A certificate authority and a server certificate for 127.0.0.1 /
/// localhost that it signed, as PEM files in `dir`.
struct Certs {
    ca: TempFile,
    cert: TempFile,
    key: TempFile,
}

fn certs() -> Certs {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "herald test CA");
    let ca_cert = ca.self_signed(&ca_key).expect("ca");
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params");
    let cert = params.signed_by(&key, &issuer).expect("cert");
    Certs {
        ca: TempFile::new("ca.pem", &ca_cert.pem()),
        cert: TempFile::new("cert.pem", &cert.pem()),
        key: TempFile::new("key.pem", &key.serialize_pem()),
    }
}

/// A redis-server speaking TLS only, with the append-only file on.
struct TlsRedis {
    port: u16,
    child: Child,
    dir: std::path::PathBuf,
}

impl TlsRedis {
    fn start(c: &Certs) -> TlsRedis {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("herald-tls-redis-{port}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args(["--save", "", "--appendonly", "yes", "--dir"])
            .arg(&dir)
            .args(["--tls-auth-clients", "no", "--tls-cert-file"])
            .arg(&c.cert.path)
            .arg("--tls-key-file")
            .arg(&c.key.path)
            .arg("--tls-ca-cert-file")
            .arg(&c.ca.path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server with TLS did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        TlsRedis { port, child, dir }
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Herald on `rediss://` sends, its control listener speaks TLS, and a
/// client that does not trust the certificate gets nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_over_tls_and_a_tls_control_listener() {
    let c = certs();
    let tls_redis = TlsRedis::start(&c);
    // A plain server only for the harness's config text; Herald is pointed
    // at the TLS one.
    let plain = RedisServer::start();
    let mock = mock(0, 0.0).await;
    let port = free_port();
    let control_port = free_port();
    let token = "tls-admin-token-0123456789";
    let url = format!("rediss://127.0.0.1:{}", tls_redis.port);
    let herald = Herald::start_env(
        &config_text(&plain, &mock.base_url(), port, FAST_DISPATCH),
        vec![
            ("HERALD_REDIS__URL".into(), url.clone()),
            ("HERALD_REDIS__TLS_CA_FILE".into(), c.ca.toml_path()),
            (
                "HERALD_CONTROL__LISTEN".into(),
                format!("127.0.0.1:{control_port}"),
            ),
            ("HERALD_CONTROL__TOKEN".into(), format!("\"{token}\"")),
            ("HERALD_CONTROL__TLS_CERT_FILE".into(), c.cert.toml_path()),
            ("HERALD_CONTROL__TLS_KEY_FILE".into(), c.key.toml_path()),
        ],
    )
    .await;
    // The test's own connection checks the server against the same CA.
    let client = redis::Client::build_with_tls(
        url.as_str(),
        redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(&c.ca.path).expect("ca")),
        },
    )
    .expect("client");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("rediss connection");
    let deadline = Instant::now() + T;
    loop {
        let (s, _) = http_call(port, "GET", "/readyz", &[], "text/plain", "").await;
        if s == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready over TLS");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    xadd_raw(&mut conn, 4, &[msg_json("tls1", &number(1), "over TLS")]).await;
    wait_events(&mut conn, "sent over rediss", T, |ev| {
        count_status(ev, "sent") == 1
    })
    .await;
    assert_eq!(mock.recorded().len(), 1);

    // heraldctl's session over TLS, trusting the test CA.
    let ca = std::fs::read(&c.ca.path).expect("ca");
    let endpoint = format!("https://localhost:{control_port}");
    let mut session =
        herald_control::cli::AdminSession::connect_with_ca(&endpoint, Some(token), Some(&ca))
            .await
            .expect("a TLS session");
    let stats = session.stats().await.expect("stats over TLS");
    assert!(!stats.instance_id.is_empty());
    // Without the CA the certificate is not trusted; plain HTTP/2 is refused.
    assert!(
        herald_control::cli::AdminSession::connect_with_ca(&endpoint, Some(token), None)
            .await
            .is_err()
    );
    let plain_endpoint = format!("http://127.0.0.1:{control_port}");
    let plain_session =
        herald_control::cli::AdminSession::connect_with_ca(&plain_endpoint, Some(token), None)
            .await;
    match plain_session {
        Err(_) => {}
        Ok(mut s) => assert!(s.stats().await.is_err(), "plain HTTP/2 answered"),
    }
    herald.stop().await.expect("clean stop");
}
