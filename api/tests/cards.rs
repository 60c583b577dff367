//! Bank cards bound to the wallet, end to end: the README's example through
//! the `payrail` binary against `payrail serve` on 127.0.0.1, and the
//! server keeping card numbers out of the log.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::process::{expect_code, stderr, stdout, ServerProcess};
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
