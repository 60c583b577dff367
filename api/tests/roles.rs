//! Roles against a real server: each gateway in the config may use only
//! the operations of its roles (`payments`, `treasury`, `risk`,
//! `operator`); anything else gets `not_permitted`, applies nothing, leaves
//! the connection open, and is counted and logged. Backups go only under
//! the configured backup root. The local gateway (no gateways configured)
//! may do everything.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::process::{expect_code, free_addr, stderr, ServerProcess};
use common::{deposit, open_customer, RawConnection};
use payrail_api::client::{Client, ClientConfig, ClientError};
use payrail_api::config::{GatewayConfig, Role, ServerConfig};
use payrail_api::serve::{self, RunningServer};
use payrail_api::wire::{ErrorCode, Message};
use payrail_engine::risk::RiskPolicy;
use payrail_engine::{
    AccountId, Command, CommandKind, CommandResult, Currency, Query, QueryReply, Status,
};

const TEST_TIME_MAX: Duration = Duration::from_secs(60);

fn gateway(name: &str, byte: u8, roles: &[Role]) -> GatewayConfig {
    GatewayConfig::new(name, hex::encode([byte; 32]), roles)
}

fn gateways() -> Vec<GatewayConfig> {
    vec![
        gateway("shop", 1, &[Role::Payments]),
        gateway("desk", 2, &[Role::Treasury]),
        gateway("fraud", 3, &[Role::Risk]),
        gateway("ops", 4, &[Role::Operator]),
        gateway("reader", 5, &[]),
    ]
}

async fn start(dir: &Path) -> RunningServer {
    std::fs::create_dir_all(dir.join("backups")).unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.join("data"),
        backup_root: Some(dir.join("backups")),
        gateways: gateways(),
        ..ServerConfig::default()
    };
    serve::start(config).await.unwrap()
}

async fn client(server: &RunningServer, name: &str) -> Client {
    let gateway = gateways().into_iter().find(|g| g.name == name).unwrap();
    let config = ClientConfig::new(
        server.addr.to_string(),
        name.to_owned(),
        gateway.secret_bytes().unwrap(),
    );
    Client::connect(config).await.unwrap()
}

fn command(id: u128, kind: CommandKind) -> Command {
    Command::new(id, kind)
}

fn freeze(id: u128, account: u64) -> Command {
    command(
        id,
        CommandKind::Freeze {
            account: AccountId(account),
        },
    )
}

fn floor(id: u128) -> Command {
    command(
        id,
        CommandKind::SetFxFloor {
            currency: Currency::CNY,
            limit: 1_000,
        },
    )
}

/// The request was refused with `not_permitted`, naming the role it needs.
fn assert_not_permitted<T: std::fmt::Debug>(outcome: Result<T, ClientError>, role: &str) {
    match outcome {
        Err(ClientError::Server { code, message }) => {
            assert_eq!(code, ErrorCode::NotPermitted, "{message}");
            assert!(message.contains(&format!("the {role} role")), "{message}");
        }
        other => panic!("expected not_permitted, got {other:?}"),
    }
}

fn ok(results: Vec<CommandResult>) {
    assert!(
        results.iter().all(|result| result.status == Status::Ok),
        "{results:?}"
    );
}

async fn balance(client: &Client, account: u64) -> i64 {
    match client
        .query(vec![Query::Balance {
            account: AccountId(account),
        }])
        .await
        .unwrap()
        .remove(0)
    {
        QueryReply::Balance(view) => view.balance,
        other => panic!("{other:?}"),
    }
}

async fn not_permitted_count(client: &Client) -> u64 {
    client
        .status()
        .await
        .unwrap()
        .into_iter()
        .find(|(name, _)| name == "server.requests_not_permitted")
        .map(|(_, value)| value)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_role_is_refused_outside_its_rights() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let shop = client(&server, "shop").await;
        let desk = client(&server, "desk").await;
        let fraud = client(&server, "fraud").await;
        let ops = client(&server, "ops").await;
        let reader = client(&server, "reader").await;
        let mut refusals = 0;

        // payments: customers and money, nothing else.
        ok(shop
            .submit(vec![
                open_customer(1, 100, Currency::CNY),
                deposit(2, 100, 500),
            ])
            .await
            .unwrap());
        for (commands, role) in [
            (vec![floor(3)], "treasury"),
            (vec![freeze(4, 100)], "operator"),
            // A batch is refused whole: the deposit before the freeze is
            // not applied either.
            (vec![deposit(6, 100, 7), freeze(7, 100)], "operator"),
        ] {
            assert_not_permitted(shop.submit(commands).await, role);
            refusals += 1;
        }
        assert_eq!(balance(&shop, 100).await, 500);
        assert_not_permitted(shop.set_risk_policy(RiskPolicy::disabled()).await, "risk");
        assert_not_permitted(shop.backup("b1").await, "operator");
        refusals += 2;
        // The same connection goes on.
        ok(shop.submit(vec![deposit(8, 100, 1)]).await.unwrap());
        assert_eq!(balance(&shop, 100).await, 501);

        // treasury: FX rates and floors only.
        ok(desk.submit(vec![floor(10)]).await.unwrap());
        assert_not_permitted(desk.submit(vec![deposit(11, 100, 1)]).await, "payments");
        assert_not_permitted(desk.set_risk_policy(RiskPolicy::disabled()).await, "risk");
        assert_not_permitted(desk.backup("b2").await, "operator");
        refusals += 3;

        // risk: the policy only.
        assert!(fraud
            .set_risk_policy(RiskPolicy::disabled())
            .await
            .unwrap()
            .is_ok());
        assert_not_permitted(fraud.submit(vec![floor(20)]).await, "treasury");
        assert_not_permitted(fraud.submit(vec![deposit(21, 100, 1)]).await, "payments");
        refusals += 2;

        // operator: backups and account administration.
        ok(ops.submit(vec![freeze(30, 100)]).await.unwrap());
        ok(ops
            .submit(vec![command(
                31,
                CommandKind::Unfreeze {
                    account: AccountId(100),
                },
            )])
            .await
            .unwrap());
        assert_not_permitted(ops.submit(vec![deposit(32, 100, 1)]).await, "payments");
        refusals += 1;
        let backup = dir.path().join("backups").join("first");
        ops.backup(backup.to_str().unwrap()).await.unwrap();
        assert!(backup.join("backup.toml").exists());
        // Relative to the root.
        ops.backup("second").await.unwrap();
        assert!(dir.path().join("backups/second/backup.toml").exists());
        // Outside the root: refused, nothing written.
        for outside in [
            dir.path().join("elsewhere"),
            dir.path().join("backups/../escaped"),
            dir.path().join("backups"),
            Path::new("/").to_owned(),
        ] {
            match ops.backup(outside.to_str().unwrap()).await {
                Err(ClientError::Server { code, message }) => {
                    assert_eq!(code, ErrorCode::NotPermitted, "{message}");
                    assert!(
                        message.contains("is not under the backup root"),
                        "{message}"
                    );
                }
                other => panic!("{}: {other:?}", outside.display()),
            }
        }
        assert!(!dir.path().join("elsewhere").exists());
        assert!(!dir.path().join("escaped").exists());
        // A symbolic link inside the root that points out of it.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path(), dir.path().join("backups/link")).unwrap();
            let through = dir.path().join("backups/link/third");
            assert!(matches!(
                ops.backup(through.to_str().unwrap()).await,
                Err(ClientError::Server {
                    code: ErrorCode::NotPermitted,
                    ..
                })
            ));
            assert!(!dir.path().join("third").exists());
        }

        // No role: reads only.
        assert_eq!(balance(&reader, 100).await, 501);
        assert_not_permitted(reader.submit(vec![deposit(40, 100, 1)]).await, "payments");
        refusals += 1;

        // Counted (and in the Status reply every gateway may read).
        assert_eq!(not_permitted_count(&reader).await, refusals);
        assert_eq!(balance(&reader, 100).await, 501);

        for client in [shop, desk, fraud, ops, reader] {
            drop(client);
        }
        server.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_keeps_the_connection_and_carries_the_request_id() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let dir = tempfile::tempdir().unwrap();
        let server = start(dir.path()).await;
        let shop = gateways().remove(0);
        let mut connection = RawConnection::authenticated(server.addr, &shop).await;
        connection
            .send(
                77,
                &Message::Backup {
                    dir: "x".to_owned(),
                },
            )
            .await;
        let frame = connection.read_frame().await.unwrap();
        assert_eq!(frame.request_id, 77);
        match frame.message {
            Message::Error { code, message } => {
                assert_eq!(code, ErrorCode::NotPermitted);
                assert_eq!(
                    message,
                    "gateway 'shop' may not backup (it needs the operator role)"
                );
            }
            other => panic!("{other:?}"),
        }
        // Still open: a permitted request on the same connection is answered.
        let results = connection
            .submit(78, vec![open_customer(1, 200, Currency::CNY)])
            .await;
        assert_eq!(results[0].status, Status::Ok);
        drop(connection);
        server.stop().await;
    })
    .await
    .unwrap();
}

#[test]
fn the_cli_gets_not_permitted_and_the_server_logs_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("payrail.toml");
    std::fs::write(
        &config,
        "[[gateways]]\nname = \"shop\"\nsecret = \"0101010101010101010101010101010101010101010101010101010101010101\"\n\n\
         [[gateways]]\nname = \"desk\"\nsecret = \"0202020202020202020202020202020202020202020202020202020202020202\"\nroles = [\"treasury\"]\n",
    )
    .unwrap();
    let secret = dir.path().join("shop.secret");
    std::fs::write(&secret, hex::encode([1u8; 32])).unwrap();
    let server = ServerProcess::spawn(
        &dir.path().join("data"),
        free_addr(),
        &dir.path().join("serve.log"),
        &["--no-metrics", "--config", config.to_str().unwrap()],
    );
    let as_shop = [
        "--gateway",
        "shop",
        "--secret-file",
        secret.to_str().unwrap(),
    ];
    // A gateway without `roles` in the config has `payments` only.
    let mut args = vec!["fx", "floor", "CNY", "10"];
    args.extend_from_slice(&as_shop);
    let output = server.run(&args);
    assert_ne!(output.status.code(), Some(0));
    let text = format!("{}{}", stderr(&output), common::process::stdout(&output));
    assert!(text.contains("not_permitted"), "{text}");
    assert!(text.contains("treasury role"), "{text}");
    let mut args = vec!["backup", "/tmp/payrail-roles-test-never"];
    args.extend_from_slice(&as_shop);
    let output = server.run(&args);
    assert_ne!(output.status.code(), Some(0));
    assert!(!Path::new("/tmp/payrail-roles-test-never").exists());
    // Payments work.
    let mut args = vec![
        "account",
        "open",
        "500",
        "--owner",
        "500",
        "--customer",
        "--currency",
        "CNY",
    ];
    args.extend_from_slice(&as_shop);
    expect_code(&server.run(&args), 0);
    let log = server.log_text();
    assert!(log.contains("request not permitted"), "{log}");
    assert!(
        log.contains("operation=\"set_fx_floor\"") || log.contains("operation=set_fx_floor"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_gateway_is_the_operator_but_backups_need_a_root() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("data");
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: data_dir.clone(),
            ..ServerConfig::default()
        };
        let server = serve::start(config).await.unwrap();
        assert_eq!(server.gateways[0].roles, Role::ALL.to_vec());
        let local =
            Client::connect(ClientConfig::local(server.addr.to_string(), &data_dir).unwrap())
                .await
                .unwrap();
        ok(local
            .submit(vec![
                open_customer(1, 100, Currency::CNY),
                freeze(2, 100),
                floor(3),
            ])
            .await
            .unwrap());
        assert!(local
            .set_risk_policy(RiskPolicy::disabled())
            .await
            .unwrap()
            .is_ok());
        // No backup root configured: no backups at all.
        match local.backup(dir.path().join("b").to_str().unwrap()).await {
            Err(ClientError::Server { code, message }) => {
                assert_eq!(code, ErrorCode::NotPermitted);
                assert!(
                    message.contains("no backup_root is configured"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(!dir.path().join("b").exists());
        drop(local);
        server.stop().await;
    })
    .await
    .unwrap();
}
