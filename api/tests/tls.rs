//! TLS for gateway connections against a real server on 127.0.0.1:0, with
//! certificates made for the test by rcgen: without client certificates
//! (the server's certificate only) and with them (the server asks for one
//! signed by its client CA). The HMAC handshake still runs inside TLS.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{deposit, open_customer};
use payrail_api::client::{Client, ClientConfig, ClientError};
use payrail_api::config::{ServerConfig, TlsSection};
use payrail_api::serve::{self, RunningServer, ServeError};
use payrail_api::tls::ClientTls;
use payrail_engine::{Currency, Status};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TEST_TIME_MAX: Duration = Duration::from_secs(60);

/// A certificate authority that signs test certificates.
struct Authority {
    certificate: Certificate,
    key: KeyPair,
}

impl Authority {
    fn new(name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        Authority { certificate, key }
    }

    /// Writes the CA certificate as `dir/NAME.pem`.
    fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.certificate.pem()).unwrap();
        path
    }

    /// A leaf certificate for `names` with `usage`, written as
    /// `dir/NAME.pem` and `dir/NAME.key`.
    fn issue(
        &self,
        dir: &Path,
        name: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let certificate = params
            .signed_by(&key, &self.certificate, &self.key)
            .unwrap();
        let certificate_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        std::fs::write(&certificate_path, certificate.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (certificate_path, key_path)
    }
}

/// Test certificates: a CA, the server's certificate for 127.0.0.1 and
/// localhost, a client CA and a client certificate, and a stranger CA with
/// a client certificate of its own.
struct Certificates {
    _dir: tempfile::TempDir,
    server_ca: PathBuf,
    server: (PathBuf, PathBuf),
    client_ca: PathBuf,
    client: (PathBuf, PathBuf),
    stranger_ca: PathBuf,
    stranger_client: (PathBuf, PathBuf),
}

fn certificates() -> Certificates {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let server_authority = Authority::new("payrail test server CA");
    let client_authority = Authority::new("payrail test client CA");
    let stranger = Authority::new("someone else's CA");
    Certificates {
        server_ca: server_authority.write(path, "server-ca"),
        server: server_authority.issue(
            path,
            "server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        client_ca: client_authority.write(path, "client-ca"),
        client: client_authority.issue(
            path,
            "gateway-a",
            &["gateway-a.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        stranger_ca: stranger.write(path, "stranger-ca"),
        stranger_client: stranger.issue(
            path,
            "stranger",
            &["stranger.example"],
            ExtendedKeyUsagePurpose::ClientAuth,
        ),
        _dir: dir,
    }
}

async fn start(
    certificates: &Certificates,
    client_ca: Option<&Path>,
) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        tls: TlsSection {
            enabled: true,
            certificate: Some(certificates.server.0.clone()),
            private_key: Some(certificates.server.1.clone()),
            client_ca: client_ca.map(Path::to_owned),
        },
        // A plain-TCP client waits for a Challenge that never comes: the
        // server gives up on its TLS handshake after this.
        limits: payrail_api::config::LimitsConfig {
            handshake_timeout_ms: 1_000,
            ..Default::default()
        },
        ..ServerConfig::default()
    };
    (serve::start(config).await.unwrap(), dir)
}

fn local(server: &RunningServer, dir: &Path) -> ClientConfig {
    ClientConfig {
        connect_attempts: 1,
        connect_timeout: Duration::from_secs(5),
        ..ClientConfig::local(server.addr.to_string(), dir).unwrap()
    }
}

/// A payment round trip: the connection works end to end.
async fn round_trip(client: &Client) {
    let results = client
        .submit(vec![
            open_customer(1, 100, Currency::CNY),
            deposit(2, 100, 250),
        ])
        .await
        .unwrap();
    assert!(results.iter().all(|result| result.status == Status::Ok));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_without_client_certificates() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let certificates = certificates();
        let (server, dir) = start(&certificates, None).await;

        // Trusting the server's CA, by IP address and by name.
        for name in ["127.0.0.1", "localhost"] {
            let tls = ClientTls::new(&certificates.server_ca, name, None).unwrap();
            let client = Client::connect(local(&server, dir.path()).with_tls(tls))
                .await
                .unwrap();
            round_trip(&client).await;
        }

        // The HMAC handshake still decides who the gateway is.
        let tls = ClientTls::new(&certificates.server_ca, "127.0.0.1", None).unwrap();
        let wrong_secret = ClientConfig {
            secret: vec![7; 32],
            ..local(&server, dir.path()).with_tls(tls)
        };
        assert!(matches!(
            Client::connect(wrong_secret).await,
            Err(ClientError::GatewayRefused { .. })
        ));

        // A client that trusts another CA, or checks another name, refuses
        // the server's certificate.
        let tls = ClientTls::new(&certificates.stranger_ca, "127.0.0.1", None).unwrap();
        match Client::connect(local(&server, dir.path()).with_tls(tls)).await {
            Err(ClientError::Connect { reason, .. }) => {
                assert!(reason.contains("TLS handshake failed"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let tls = ClientTls::new(&certificates.server_ca, "payrail.example", None).unwrap();
        assert!(Client::connect(local(&server, dir.path()).with_tls(tls))
            .await
            .is_err());

        // Plain TCP gets no payrail handshake from a TLS server.
        assert!(Client::connect(local(&server, dir.path())).await.is_err());
        // Nor does a raw connection read a Challenge in clear: at most a TLS
        // alert record (type 21), then the server closes.
        let raw = common::RawConnection::open(server.addr).await;
        let (mut stream, _) = raw.into_parts();
        stream
            .write_all(b"PRL1 not a TLS client hello, 32 bytes")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .unwrap()
            .ok();
        assert!(
            answer.is_empty() || answer[0] == 21,
            "not a TLS alert: {answer:02x?}"
        );
        assert!(!answer.windows(4).any(|window| window == b"PRL1"));

        server.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_client_certificates() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let certificates = certificates();
        let (server, dir) = start(&certificates, Some(&certificates.client_ca)).await;

        // With a certificate from the client CA: in.
        let tls = ClientTls::new(
            &certificates.server_ca,
            "127.0.0.1",
            Some((&certificates.client.0, &certificates.client.1)),
        )
        .unwrap();
        let client = Client::connect(local(&server, dir.path()).with_tls(tls))
            .await
            .unwrap();
        round_trip(&client).await;

        // Without a client certificate, or with one from another CA: out,
        // before any payrail frame.
        let without = ClientTls::new(&certificates.server_ca, "127.0.0.1", None).unwrap();
        let stranger = ClientTls::new(
            &certificates.server_ca,
            "127.0.0.1",
            Some((
                &certificates.stranger_client.0,
                &certificates.stranger_client.1,
            )),
        )
        .unwrap();
        for tls in [without, stranger] {
            match Client::connect(local(&server, dir.path()).with_tls(tls)).await {
                Err(ClientError::Connect { .. } | ClientError::ConnectionLost { .. }) => {}
                other => panic!("expected the connection refused, got {other:?}"),
            }
        }
        let handshakes_failed = client
            .status()
            .await
            .unwrap()
            .into_iter()
            .find(|(name, _)| name == "server.handshakes_failed")
            .map(|(_, value)| value)
            .unwrap();
        assert!(handshakes_failed >= 2, "{handshakes_failed}");
        drop(client);
        server.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_settings_stop_the_start() {
    let certificates = certificates();
    let dir = tempfile::tempdir().unwrap();
    let base = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        ..ServerConfig::default()
    };
    // Enabled without files: the config is invalid.
    let text = "[tls]\nenabled = true\n";
    let path = dir.path().join("payrail.toml");
    std::fs::write(&path, text).unwrap();
    let error = ServerConfig::load(&path).unwrap_err().to_string();
    assert!(error.contains("tls.enabled needs"), "{error}");
    // A key that is not a key, a certificate file that does not exist.
    for (certificate, key) in [
        (certificates.server.0.clone(), certificates.server.0.clone()),
        (dir.path().join("absent.pem"), certificates.server.1.clone()),
    ] {
        let config = ServerConfig {
            tls: TlsSection {
                enabled: true,
                certificate: Some(certificate),
                private_key: Some(key),
                client_ca: None,
            },
            ..base.clone()
        };
        assert!(matches!(
            serve::start(config).await,
            Err(ServeError::Tls(_))
        ));
    }
}

#[test]
fn the_cli_connects_over_tls() {
    let certificates = certificates();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("payrail.toml");
    std::fs::write(
        &config,
        format!(
            "[limits]\nhandshake_timeout_ms = 1000\n\n[tls]\nenabled = true\ncertificate = {:?}\nprivate_key = {:?}\nclient_ca = {:?}\n",
            certificates.server.0, certificates.server.1, certificates.client_ca
        ),
    )
    .unwrap();
    let server = common::process::ServerProcess::spawn(
        &dir.path().join("data"),
        common::process::free_addr(),
        &dir.path().join("serve.log"),
        &["--no-metrics", "--config", config.to_str().unwrap()],
    );
    let ca = certificates.server_ca.to_str().unwrap();
    let certificate = certificates.client.0.to_str().unwrap();
    let key = certificates.client.1.to_str().unwrap();
    // CA, client certificate and key; the server name is --addr's host.
    let output = server.run(&[
        "status",
        "--json",
        "--tls-ca",
        ca,
        "--tls-cert",
        certificate,
        "--tls-key",
        key,
    ]);
    common::process::expect_code(&output, 0);
    let output = server.run(&[
        "account",
        "open",
        "500",
        "--owner",
        "500",
        "--customer",
        "--currency",
        "CNY",
        "--tls-ca",
        ca,
        "--tls-server-name",
        "localhost",
        "--tls-cert",
        certificate,
        "--tls-key",
        key,
    ]);
    common::process::expect_code(&output, 0);
    // Without TLS, or without the client certificate: refused.
    assert_ne!(server.run(&["status"]).status.code(), Some(0));
    assert_ne!(
        server.run(&["status", "--tls-ca", ca]).status.code(),
        Some(0)
    );
    assert!(server.log_text().contains("TLS handshake failed"));
}

/// What TLS costs in throughput, measured with the client library (the load
/// test harness has no TLS option): the same pipelined transfer load against
/// a server with TLS off and on, alternately, 3 rounds. Bounded: 5 s per
/// run. Run on a quiet machine, in release:
/// `cargo test -p payrail-api --release --test tls -- --ignored --nocapture tls_cost`.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "a measurement, not a check: run it by hand (see its doc comment)"]
async fn tls_cost() {
    const ACCOUNTS: u64 = 1_000;
    const CONNECTIONS: usize = 2;
    const TASKS_PER_CONNECTION: usize = 8;
    const BATCH: u64 = 512;
    const RUN: Duration = Duration::from_secs(5);
    let certificates = certificates();
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..3 {
        for tls in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let config = ServerConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                data_dir: dir.path().to_owned(),
                tls: TlsSection {
                    enabled: tls,
                    certificate: Some(certificates.server.0.clone()),
                    private_key: Some(certificates.server.1.clone()),
                    client_ca: None,
                },
                ..ServerConfig::default()
            };
            let server = serve::start(config).await.unwrap();
            let client_config = || {
                let config = ClientConfig::local(server.addr.to_string(), dir.path()).unwrap();
                if tls {
                    let client_tls =
                        ClientTls::new(&certificates.server_ca, "127.0.0.1", None).unwrap();
                    config.with_tls(client_tls)
                } else {
                    config
                }
            };
            let setup = Client::connect(client_config()).await.unwrap();
            let mut commands = Vec::new();
            for account in 0..ACCOUNTS {
                commands.push(open_customer(
                    u128::from(account) + 1,
                    1_000 + account,
                    Currency::CNY,
                ));
                commands.push(deposit(
                    u128::from(account) + 1_000_000,
                    1_000 + account,
                    1_000_000_000,
                ));
            }
            for chunk in commands.chunks(4_000) {
                setup.submit(chunk.to_vec()).await.unwrap();
            }
            let started = std::time::Instant::now();
            let mut tasks = Vec::new();
            for connection in 0..CONNECTIONS {
                let client = std::sync::Arc::new(Client::connect(client_config()).await.unwrap());
                for task in 0..TASKS_PER_CONNECTION {
                    let client = std::sync::Arc::clone(&client);
                    let seed = (connection * TASKS_PER_CONNECTION + task) as u64;
                    tasks.push(tokio::spawn(async move {
                        let mut done = 0u64;
                        let mut next = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                        let mut id = (u128::from(seed) + 1) << 64;
                        while started.elapsed() < RUN {
                            let batch = (0..BATCH)
                                .map(|_| {
                                    next ^= next << 13;
                                    next ^= next >> 7;
                                    next ^= next << 17;
                                    let from = 1_000 + next % ACCOUNTS;
                                    let to = 1_000 + (next >> 20) % ACCOUNTS;
                                    id += 1;
                                    common::transfer(id, from, to, 1)
                                })
                                .collect();
                            let results = client.submit(batch).await.unwrap();
                            done += results.len() as u64;
                        }
                        done
                    }));
                }
            }
            let mut done = 0;
            for task in tasks {
                done += task.await.unwrap();
            }
            let rate = done as f64 / started.elapsed().as_secs_f64();
            println!(
                "round {round} tls {}: {rate:.0} commands/s",
                if tls { "on " } else { "off" }
            );
            rates[usize::from(tls)].push(rate);
            drop(setup);
            server.stop().await;
        }
    }
    for rates in &mut rates {
        rates.sort_by(f64::total_cmp);
    }
    let (plain, tls) = (rates[0][1], rates[1][1]);
    println!(
        "median of 3: plain {plain:.0}/s, TLS {tls:.0}/s: TLS at {:.0} % of plain",
        100.0 * tls / plain
    );
}
