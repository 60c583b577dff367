//! `payrail fx ...` end to end: `payrail serve` as a child process on a
//! free 127.0.0.1 port, and the client subcommands against it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Output;

use common::process::{cli, expect_code, json, stderr, ServerProcess};

fn ok_json(server: &impl Runner, args: &[&str]) -> serde_json::Value {
    let output = server.run(args);
    expect_code(&output, 0);
    json(&output)
}

fn balance(server: &ServerProcess, account: &str) -> i64 {
    ok_json(server, &["account", "show", account, "--json"])["balance"]
        .as_i64()
        .unwrap()
}

#[test]
fn fx_rates_quotes_conversions_and_cross_currency_qr_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    // Owner 7 holds a CNY and a JPY account; owner 8 is a JPY merchant.
    for args in [
        &[
            "account",
            "open",
            "1",
            "--owner",
            "7",
            "--customer",
            "--currency",
            "CNY",
        ][..],
        &[
            "account",
            "open",
            "2",
            "--owner",
            "7",
            "--customer",
            "--currency",
            "JPY",
        ],
        &[
            "account",
            "open",
            "4",
            "--owner",
            "9",
            "--customer",
            "--currency",
            "JPY",
        ],
        &[
            "account",
            "open",
            "3",
            "--owner",
            "8",
            "--merchant",
            "--mcc",
            "5812",
            "--currency",
            "JPY",
        ],
        &["deposit", "1", "1000.00", "CNY"],
    ] {
        expect_code(&server.run(args), 0);
    }

    // Without a rate nothing converts (exit 1, the status says why).
    let output = server.run(&[
        "fx", "convert", "--from", "1", "--to", "2", "--pay", "1.00", "--json",
    ]);
    expect_code(&output, 1);
    assert_eq!(json(&output)["status"], "fx_rate_unknown");

    let set = ok_json(
        &server,
        &[
            "fx",
            "set",
            "CNY/JPY",
            "20.87",
            "--spread-bps",
            "50",
            "--valid-for",
            "10m",
            "--source",
            "TEST",
            "--json",
        ],
    );
    assert_eq!(set["pair"], "CNY/JPY");
    assert_eq!(set["mid"], "20.87");
    // The JPY liquidity may owe up to 100,000 JPY.
    ok_json(&server, &["fx", "floor", "JPY", "100000", "--json"]);

    let list = ok_json(&server, &["fx", "list", "--json"]);
    let rates = list["rates"].as_array().unwrap();
    assert_eq!(rates.len(), 1);
    assert_eq!(rates[0]["pair"], "CNY/JPY");
    assert_eq!(rates[0]["spread_bps"], 50);
    assert_eq!(rates[0]["source"], "TEST");
    assert_eq!(rates[0]["stale"], false);

    // Quote 100.00 CNY: 0.50 CNY spread, 99.50 * 20.87 = 2076.565 -> 2076 JPY.
    let quote = ok_json(
        &server,
        &[
            "fx", "quote", "--from", "1", "--to", "2", "--pay", "100.00", "--json",
        ],
    );
    assert_eq!(quote["pay"], 10_000);
    assert_eq!(quote["fee"], 50);
    assert_eq!(quote["receive"], 2_076);
    assert_eq!(quote["receive_currency"], "JPY");
    let quote_id = quote["quote_id"].as_str().unwrap().to_owned();
    // A quote moves nothing.
    assert_eq!(balance(&server, "1"), 100_000);
    // Someone else's account cannot use it.
    let output = server.run(&[
        "fx", "convert", "--quote", &quote_id, "--from", "4", "--json",
    ]);
    expect_code(&output, 1);
    assert_eq!(json(&output)["status"], "fx_quote_not_yours");
    let done = ok_json(
        &server,
        &[
            "fx", "convert", "--quote", &quote_id, "--from", "1", "--json",
        ],
    );
    assert_eq!(done["receive"], 2_076);
    assert_eq!(balance(&server, "1"), 90_000);
    assert_eq!(balance(&server, "2"), 2_076);
    // Once only.
    let output = server.run(&[
        "fx", "convert", "--quote", &quote_id, "--from", "1", "--json",
    ]);
    expect_code(&output, 1);
    assert_eq!(json(&output)["status"], "fx_quote_used");

    // JPY has no decimals: refused before anything is sent (exit 2).
    let output = server.run(&[
        "fx",
        "convert",
        "--from",
        "1",
        "--to",
        "2",
        "--receive",
        "1.5",
    ]);
    expect_code(&output, 2);
    assert!(
        stderr(&output).contains("JPY has no decimal places"),
        "{}",
        stderr(&output)
    );
    // Receive exactly 1000 JPY: net ceil(1000 / 0.2087) = 4792 fen, pay 48.17 CNY.
    let done = ok_json(
        &server,
        &[
            "fx",
            "convert",
            "--from",
            "1",
            "--to",
            "2",
            "--receive",
            "1000",
            "--json",
        ],
    );
    assert_eq!(
        (done["pay"].as_u64(), done["fee"].as_u64()),
        (Some(4_817), Some(25))
    );
    assert_eq!(balance(&server, "2"), 3_076);
    // Across owners: refused.
    let output = server.run(&[
        "fx", "convert", "--from", "1", "--to", "4", "--pay", "1.00", "--json",
    ]);
    expect_code(&output, 1);
    assert_eq!(json(&output)["status"], "fx_not_same_owner");
    // Beyond the liquidity floor: refused, nothing moved. The JPY liquidity
    // account is at -3076; with a floor of 3,500 it cannot sell 1,000 more.
    ok_json(&server, &["fx", "floor", "JPY", "3500", "--json"]);
    let output = server.run(&[
        "fx",
        "convert",
        "--from",
        "1",
        "--to",
        "2",
        "--receive",
        "1000",
        "--json",
    ]);
    expect_code(&output, 1);
    assert_eq!(json(&output)["status"], "fx_liquidity_floor");
    assert_eq!(balance(&server, "2"), 3_076);

    // A rate table: a wrong line is named and nothing is sent.
    let table = dir.path().join("rates.csv");
    std::fs::write(&table, "pair,mid,spread_bps,valid_for,source\nUSD/JPY,150.25,30,60s,ECB\nCNY/BHD,0.0523,abc,60s,ECB\n").unwrap();
    let output = server.run(&["fx", "load", table.to_str().unwrap()]);
    expect_code(&output, 2);
    assert!(stderr(&output).contains("line 3"), "{}", stderr(&output));
    assert_eq!(
        ok_json(&server, &["fx", "list", "--json"])["rates"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    std::fs::write(
        &table,
        "USD/JPY,150.25,30,60s,ECB\nCNY/BHD,0.0523,20,60s,ECB\n",
    )
    .unwrap();
    let loaded = ok_json(&server, &["fx", "load", table.to_str().unwrap(), "--json"]);
    assert_eq!(loaded["rates"], 2);
    assert_eq!(loaded["refused"], 0);
    assert_eq!(
        ok_json(&server, &["fx", "list", "--json"])["rates"]
            .as_array()
            .unwrap()
            .len(),
        3
    );

    // Cross-currency QR: the CNY wallet pays a JPY code of 500 JPY.
    ok_json(&server, &["fx", "floor", "JPY", "100000", "--json"]);
    let code = ok_json(
        &BareCli,
        &[
            "merchant",
            "qr",
            "--gui",
            "com.example.wallet",
            "--merchant-id",
            "ramen-1",
            "--mcc",
            "5812",
            "--currency",
            "JPY",
            "--country",
            "JP",
            "--name",
            "Ramen",
            "--city",
            "Tokyo",
            "--amount",
            "500",
            "--json",
        ],
    );
    let payload = code["payload"].as_str().unwrap().to_owned();
    ok_json(
        &server,
        &["merchant", "register", "3", "--from-qr", &payload, "--json"],
    );
    let before = balance(&server, "1");
    let paid = ok_json(&server, &["qr", "pay", "1", &payload, "--json"]);
    assert_eq!(paid["fx"]["receive"], 500);
    let payer_paid = paid["fx"]["pay"].as_i64().unwrap();
    assert_eq!(balance(&server, "3"), 500);
    assert_eq!(balance(&server, "1"), before - payer_paid);
    // A refund in full returns exactly what the payer paid.
    let payment = paid["payment_id"].as_str().unwrap().to_owned();
    ok_json(&server, &["refund", &payment, "500", "JPY", "--json"]);
    assert_eq!(balance(&server, "1"), before);
    assert_eq!(balance(&server, "3"), 0);
}

/// Runs subcommands that need no server (`merchant qr`).
struct BareCli;

trait Runner {
    fn run(&self, args: &[&str]) -> Output;
}

impl Runner for ServerProcess {
    fn run(&self, args: &[&str]) -> Output {
        ServerProcess::run(self, args)
    }
}

impl Runner for BareCli {
    fn run(&self, args: &[&str]) -> Output {
        cli(args)
    }
}
