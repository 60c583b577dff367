//! Files payrail writes outside RocksDB survive crashes: the local gateway
//! secret written by the first start, and the files that go with a backup.
//!
//! A power cut after the first start wrote `gateway.toml` but before it
//! reached the disk left it empty (seen with LazyFS, when it was written
//! without a directory fsync) or cut short; such a file is what these tests
//! put in place of the real one, after a real first start of the binary,
//! and the next start must serve with a new secret that the CLI can use.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::process::{expect_code, free_addr, stderr, ServerProcess};
use payrail_api::client::{Client, ClientConfig};
use payrail_api::config::{
    ensure_local_gateway, read_local_gateway, ServerConfig, LOCAL_GATEWAY_FILE,
};
use payrail_api::durable::temporary_path;
use payrail_api::operations::{BackupManifest, BACKUP_MANIFEST_FILE};
use payrail_api::serve;

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A first start of the real binary, stopped; returns the whole secret file.
fn first_start(dir: &Path) -> Vec<u8> {
    let data_dir = dir.join("data");
    let mut server = ServerProcess::spawn(
        &data_dir,
        free_addr(),
        &dir.join("serve.log"),
        &["--no-metrics"],
    );
    let gateway_file = data_dir.join(LOCAL_GATEWAY_FILE);
    assert!(!temporary_path(&gateway_file).exists());
    #[cfg(unix)]
    assert_eq!(mode(&gateway_file), 0o600);
    server.kill();
    std::fs::read(gateway_file).unwrap()
}

#[test]
fn a_first_start_cut_short_after_the_secret_leaves_a_server_that_starts() {
    let dir = tempfile::tempdir().unwrap();
    let whole = first_start(dir.path());
    let data_dir = dir.path().join("data");
    let gateway_file = data_dir.join(LOCAL_GATEWAY_FILE);
    let mut secrets = vec![read_local_gateway(&data_dir).unwrap().secret];

    // What a power cut can leave: nothing, a beginning, or a beginning and
    // zeros where the rest never reached the disk.
    let mut zeroed = whole.clone();
    zeroed[90..].fill(0);
    let torn: [&[u8]; 4] = [b"", &whole[..50], &whole[..whole.len() - 3], &zeroed];
    for (index, contents) in torn.into_iter().enumerate() {
        std::fs::write(&gateway_file, contents).unwrap();
        let server = ServerProcess::spawn(
            &data_dir,
            free_addr(),
            &dir.path().join("serve.log"),
            &["--no-metrics"],
        );
        // The CLI reads the new secret and is let in.
        let output = server.run(&["status", "--json"]);
        expect_code(&output, 0);
        let gateway = read_local_gateway(&data_dir).unwrap();
        assert!(!secrets.contains(&gateway.secret), "case {index}");
        secrets.push(gateway.secret);
        #[cfg(unix)]
        assert_eq!(mode(&gateway_file), 0o600, "case {index}");
        assert!(server
            .log_text()
            .contains("left torn by an interrupted first start"));
        drop(server);
    }
}

#[test]
fn a_gateway_file_that_is_not_torn_but_wrong_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir).unwrap();
    let gateway_file = data_dir.join(LOCAL_GATEWAY_FILE);
    // Edited by hand: not payrail's own file cut short.
    std::fs::write(&gateway_file, "name = \"local\"\nsecret = \"00\"\n").unwrap();
    let output = common::process::run({
        let mut command = std::process::Command::new(common::process::BINARY);
        command
            .args(["serve", "--no-metrics", "--listen"])
            .arg(free_addr().to_string())
            .arg("--data-dir")
            .arg(&data_dir);
        command
    });
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("secret must be hex, at least 16 bytes"),
        "{}",
        stderr(&output)
    );
    // The operator's file is left as it was.
    assert_eq!(
        std::fs::read_to_string(&gateway_file).unwrap(),
        "name = \"local\"\nsecret = \"00\"\n"
    );
    // The library says the same.
    assert!(ensure_local_gateway(&data_dir).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_carries_a_private_secret_and_a_manifest_written_last() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.clone(),
        backup_root: Some(dir.path().to_owned()),
        ..ServerConfig::default()
    };
    let server = serve::start(config).await.unwrap();
    let client = Client::connect(ClientConfig::local(server.addr.to_string(), &data_dir).unwrap())
        .await
        .unwrap();
    let backup_dir = dir.path().join("backup");
    let last_sequence = client.backup(backup_dir.to_str().unwrap()).await.unwrap();
    let manifest: BackupManifest =
        toml::from_str(&std::fs::read_to_string(backup_dir.join(BACKUP_MANIFEST_FILE)).unwrap())
            .unwrap();
    assert_eq!(manifest.last_sequence, last_sequence);
    assert!(manifest.local_gateway);
    assert_eq!(manifest.payrail_version, env!("CARGO_PKG_VERSION"));
    let copied = backup_dir.join(LOCAL_GATEWAY_FILE);
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        std::fs::read(data_dir.join(LOCAL_GATEWAY_FILE)).unwrap()
    );
    #[cfg(unix)]
    assert_eq!(mode(&copied), 0o600);
    for name in [LOCAL_GATEWAY_FILE, BACKUP_MANIFEST_FILE] {
        assert!(!temporary_path(&backup_dir.join(name)).exists());
    }
    drop(client);
    server.stop().await;

    // A start on the backup takes its secret as it is.
    let restored = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: backup_dir.clone(),
        ..ServerConfig::default()
    };
    let server = serve::start(restored).await.unwrap();
    assert_eq!(
        server.gateways[0].secret,
        read_local_gateway(&data_dir).unwrap().secret
    );
    let client =
        Client::connect(ClientConfig::local(server.addr.to_string(), &backup_dir).unwrap())
            .await
            .unwrap();
    drop(client);
    server.stop().await;
}
