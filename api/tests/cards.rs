//! Bank cards bound to the wallet, end to end: the README's example through
//! the `payrail` binary against `payrail serve` on 127.0.0.1, and the
//! server keeping card numbers out of the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::process::{expect_code, metric_value, metrics_text, stderr, stdout, ServerProcess};
use payrail_api::client::{Client, ClientConfig};
use payrail_api::config::ServerConfig;
use payrail_api::serve;
use payrail_engine::instrument::{BankName, InstrumentKind, InstrumentToken};
use payrail_engine::{AccountId, CommandId, Currency, InstrumentBind, Query, QueryReply, Status};

#[test]
fn the_readme_card_example_works_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    let ok = |args: &[&str]| {
        let output = server.run(args);
        expect_code(&output, 0);
        stdout(&output)
    };
    // The README's lines, in order.
    ok(&[
        "account",
        "open",
        "1003",
        "--owner",
        "3",
        "--customer",
        "--currency",
        "CNY",
    ]);
    let text = ok(&[
        "card",
        "bind",
        "1003",
        "--number",
        "1",
        "--token",
        "tok_8f2k1",
        "--bank",
        "ICBC",
        "--country",
        "CN",
        "--last-four",
        "4242",
        "--currency",
        "CNY",
    ]);
    assert!(
        text.contains("card bind 1003 number 1 (card, ICBC ****4242): done"),
        "{text}"
    );
    // Not usable before the gateway's check passed.
    let output = server.run(&["deposit", "1003", "50.00", "CNY", "--from", "3/1"]);
    expect_code(&output, 1);
    assert!(
        stdout(&output)
            .contains("refused: the funding instrument is not verified (instrument_unverified)"),
        "{}",
        stdout(&output)
    );
    ok(&["card", "verify", "3/1"]);
    let text = ok(&["deposit", "1003", "50.00", "CNY", "--from", "3/1"]);
    assert!(
        text.contains("deposit of 50.00 CNY to 1003 from 3/1: done"),
        "{text}"
    );
    let hold = server.json(
        &["withdraw", "hold", "1003", "20.00", "CNY", "--to", "3/1"],
        0,
    );
    assert_eq!(hold["to"], "3/1");
    let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
    ok(&["withdraw", "post", &hold_id]);
    let text = ok(&["card", "list", "1003"]);
    assert!(text.contains("3/1"), "{text}");
    assert!(text.contains("ICBC ****4242"), "{text}");
    assert!(text.contains("verified"), "{text}");

    // What a user notices: the balance, and that the customer must now name
    // an instrument.
    let view = server.json(&["account", "show", "1003"], 0);
    assert_eq!(view["balance"], 3_000);
    let output = server.run(&["deposit", "1003", "5.00", "CNY"]);
    expect_code(&output, 1);
    assert!(
        stdout(&output).contains("(instrument_required)"),
        "{}",
        stdout(&output)
    );
    // Another customer's instrument is refused.
    ok(&[
        "account",
        "open",
        "1004",
        "--owner",
        "4",
        "--customer",
        "--currency",
        "CNY",
    ]);
    let refused = server.json(&["deposit", "1004", "5.00", "CNY", "--from", "3/1"], 1);
    assert_eq!(refused["status"], "instrument_not_yours");
    // A card number never leaves the CLI.
    let output = server.run(&[
        "card",
        "bind",
        "1004",
        "--number",
        "1",
        "--token",
        "4111 1111 1111 1111",
        "--bank",
        "ICBC",
        "--country",
        "CN",
        "--last-four",
        "1111",
        "--currency",
        "CNY",
    ]);
    expect_code(&output, 2);
    assert!(
        stderr(&output).contains("looks like a full card number"),
        "{}",
        stderr(&output)
    );
    // Unbinding: listed as unbound, refused from then on.
    ok(&["card", "unbind", "3/1"]);
    let list = server.json(&["card", "list", "1003"], 0);
    assert_eq!(list["instruments"][0]["state"], "unbound");
    assert_eq!(list["instruments"][0]["last_four"], "4242");
    let refused = server.json(
        &["withdraw", "hold", "1003", "1.00", "CNY", "--to", "3/1"],
        1,
    );
    assert_eq!(refused["status"], "instrument_unbound");
    let output = server.run(&["card", "list", "9999"]);
    expect_code(&output, 1);
    assert!(
        stdout(&output).contains("(unknown_account)"),
        "{}",
        stdout(&output)
    );
}

/// History and `tx show` name the card or bank account of a top-up and of a
/// posted withdrawal, as it was then: after an unbind and a restart too. The
/// instrument rules of the policy decide through the CLI, into the audit
/// and the metrics.
#[test]
fn history_and_tx_show_name_the_instrument_even_after_an_unbind() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(dir.path(), &[]);
    let ok = |server: &ServerProcess, args: &[&str]| {
        let output = server.run(args);
        expect_code(&output, 0);
        stdout(&output)
    };
    let bind = |server: &ServerProcess, number: &str, bank: &str, last_four: &str| {
        ok(
            server,
            &[
                "card",
                "bind",
                "1003",
                "--number",
                number,
                "--token",
                &format!("tok_{number}"),
                "--bank",
                bank,
                "--country",
                "CN",
                "--last-four",
                last_four,
                "--currency",
                "CNY",
            ],
        )
    };
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[instrument_binds]\naction = \"flag\"\nbinds_max = 2\nwindow_seconds = 3600\n\n\
         [new_instrument]\naction = \"decline\"\nhours = 24\n\n\
         [new_instrument.max]\nCNY = [\"30.00\", \"30.00\", \"30.00\", \"30.00\"]\n",
    )
    .unwrap();
    ok(&server, &["risk", "set-policy", policy.to_str().unwrap()]);
    ok(
        &server,
        &[
            "account",
            "open",
            "1003",
            "--owner",
            "3",
            "--customer",
            "--currency",
            "CNY",
        ],
    );
    bind(&server, "1", "ICBC", "4242");
    bind(&server, "2", "Bank of China", "1234");
    // A third card within the hour: bound, and flagged.
    let text = bind(&server, "3", "CMB", "9999");
    assert!(
        text.contains("risk: flag by rule instrument_binds (limit 2, observed 3)"),
        "{text}"
    );
    ok(&server, &["card", "verify", "3/1"]);
    ok(&server, &["card", "verify", "3/2"]);
    ok(
        &server,
        &["deposit", "1003", "50.00", "CNY", "--from", "3/1"],
    );
    // A new card takes at most 30.00 in its first 24 hours.
    let refused = server.json(
        &["withdraw", "hold", "1003", "30.01", "CNY", "--to", "3/2"],
        1,
    );
    assert_eq!(refused["status"], "risk_declined");
    assert_eq!(refused["risk"]["rule"], "new_instrument");
    let hold = server.json(
        &["withdraw", "hold", "1003", "20.00", "CNY", "--to", "3/2"],
        0,
    );
    let hold_id = hold["hold_id"].as_str().unwrap().to_owned();
    // The customer unbinds the card while the money is on its way, and the
    // server restarts before the withdrawal is posted.
    ok(&server, &["card", "unbind", "3/2"]);
    server.terminate();
    let server = ServerProcess::start(dir.path(), &[]);
    let post = server.json(&["withdraw", "post", &hold_id], 0);
    let post_id = post["command_id"].as_str().unwrap().to_owned();

    // History is written just after the acknowledgement: wait for it (bounded).
    let started = Instant::now();
    let page = loop {
        let page = server.json(&["history", "1003"], 0);
        if page["entries"].as_array().unwrap().len() == 2 {
            break page;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries[0]["kind"], "withdraw_post");
    assert_eq!(entries[0]["amount_decimal"], "-20.00");
    assert_eq!(entries[0]["instrument"]["bank"], "Bank of China");
    assert_eq!(entries[0]["instrument"]["last_four"], "1234");
    assert_eq!(entries[0]["instrument"]["number"], 2);
    assert_eq!(entries[1]["kind"], "deposit_from");
    assert_eq!(entries[1]["instrument"]["bank"], "ICBC");
    assert_eq!(entries[1]["instrument"]["last_four"], "4242");
    let text = ok(&server, &["history", "1003"]);
    let line = |kind: &str| {
        text.lines()
            .find(|line| line.contains(kind))
            .unwrap_or_else(|| panic!("no {kind} in {text}"))
            .to_owned()
    };
    assert!(
        line("withdraw_post").contains("Bank of China ****1234 (instrument 2)"),
        "{text}"
    );
    assert!(
        line("deposit_from").contains("ICBC ****4242 (instrument 1)"),
        "{text}"
    );
    let tx = server.json(&["tx", "show", &post_id], 0);
    assert_eq!(tx["legs"][0]["instrument"]["bank"], "Bank of China");
    let text = ok(&server, &["tx", "show", &post_id]);
    assert!(text.contains("Bank of China ****1234"), "{text}");
    // The card is unbound, and still shown as it was.
    let list = server.json(&["card", "list", "1003"], 0);
    assert_eq!(list["instruments"][1]["state"], "unbound");

    // The rules' decisions are audited (they survived the restart: the
    // audit is state) and counted (counters restart with the process, and
    // the replay at start counts again).
    let audit = server.json(&["risk", "audit", "1003"], 0);
    let rules: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["new_instrument", "instrument_binds"]);
    let metrics_addr = server.metrics_addr.unwrap();
    let started = Instant::now();
    loop {
        let text = metrics_text(metrics_addr);
        let decided = |rule: &str, decision: &str| {
            metric_value(
                &text,
                "payrail_risk_decisions_total",
                &[
                    &format!("rule=\"{rule}\""),
                    &format!("decision=\"{decision}\""),
                ],
            )
        };
        if decided("instrument_binds", "flag") == Some(1.0)
            && decided("new_instrument", "decline") == Some(1.0)
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A gateway that sends a card number in a bind gets `looks_like_card_number`
/// from the server itself: the command never reaches the log, so the ledger
/// knows nothing of it afterwards.
#[test]
fn the_server_keeps_card_numbers_out_of_the_log() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            ..ServerConfig::default()
        };
        let server = serve::start(config).await.unwrap();
        let client =
            Client::connect(ClientConfig::local(server.addr.to_string(), dir.path()).unwrap())
                .await
                .unwrap();
        let open = common::open_customer(1, 1001, Currency::CNY);
        assert_eq!(
            client.submit(vec![open]).await.unwrap()[0].status,
            Status::Ok
        );
        let bind = |token: &str| InstrumentBind {
            customer: AccountId(1001),
            number: 1,
            kind: InstrumentKind::Card,
            token: InstrumentToken::new(token).unwrap(),
            bank: BankName::new("ICBC").unwrap(),
            country: *b"CN",
            last_four: *b"1111",
            currency: Currency::CNY,
        };
        let refused = client
            .bind_instrument(7, bind("4111-1111-1111-1111"))
            .await
            .unwrap();
        assert_eq!(refused.status, Status::LooksLikeCardNumber);
        let accepted = client.bind_instrument(8, bind("tok_1001_1")).await.unwrap();
        assert_eq!(accepted.status, Status::Ok);
        // The ledger has a record of the accepted bind only.
        let replies = client
            .query(vec![
                Query::Command { id: CommandId(7) },
                Query::Command { id: CommandId(8) },
            ])
            .await
            .unwrap();
        assert_eq!(
            replies,
            [
                QueryReply::Refused(Status::UnknownCommand),
                QueryReply::Command(Status::Ok)
            ]
        );
        let views = client.instruments(AccountId(1001)).await.unwrap().unwrap();
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].token.as_str(), "tok_1001_1");
        server.stop().await;
    });
}
