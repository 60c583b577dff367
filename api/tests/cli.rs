//! The `payrail` binary end to end: `payrail serve` as a child process on a
//! free 127.0.0.1 port, and the client subcommands against it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::process::{
    expect_code, free_addr, json, metrics_text, run, stderr, stdout, ServerProcess, BINARY,
};

#[test]
fn accounts_money_and_withdrawals_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);

    let output = server.run(&[
        "account",
        "open",
        "1001",
        "--owner",
        "1",
        "--customer",
        "--currency",
        "CNY",
    ]);
    expect_code(&output, 0);
    assert!(
        stdout(&output).contains("account open 1001"),
        "{}",
        stdout(&output)
    );
    assert!(stdout(&output).contains(": done"), "{}", stdout(&output));
    let output = server.run(&[
        "account",
        "open",
        "2001",
        "--owner",
        "2",
        "--merchant",
        "--mcc",
        "5812",
        "--currency",
        "CNY",
    ]);
    expect_code(&output, 0);

    let output = server.run(&["deposit", "1001", "100.00", "CNY"]);
    expect_code(&output, 0);
    assert!(
        stdout(&output).contains("command id: "),
        "{}",
        stdout(&output)
    );

    let output = server.run(&["transfer", "1001", "2001", "12.50", "CNY", "--id", "77"]);
    expect_code(&output, 0);
    assert!(
        stdout(&output).contains("transfer 1001 -> 2001 of 12.50 CNY: done"),
        "{}",
        stdout(&output)
    );
    // The same id again is a retry: answered, not applied twice.
    let output = server.run(&[
        "transfer", "1001", "2001", "12.50", "CNY", "--id", "77", "--json",
    ]);
    expect_code(&output, 0);
    let value = json(&output);
    assert_eq!(value["ok"], true);
    assert_eq!(value["status"], "ok");
    assert_eq!(value["code"], 0);
    assert_eq!(value["command_id"], format!("{:032x}", 77));

    let output = server.run(&["account", "show", "1001", "--json"]);
    expect_code(&output, 0);
    let view = json(&output);
    assert_eq!(view["account"], 1001);
    assert_eq!(view["kind"], "customer");
    assert_eq!(view["status"], "active");
    assert_eq!(view["currency"], "CNY");
    assert_eq!(view["balance"], 8_750);
    assert_eq!(view["balance_decimal"], "87.50");
    assert_eq!(view["available"], 8_750);
    let output = server.run(&["account", "show", "2001", "--json"]);
    let view = json(&output);
    assert_eq!(view["balance"], 1_250);
    assert_eq!(view["mcc"], 5812);
    let output = server.run(&["account", "show", "2001"]);
    expect_code(&output, 0);
    assert!(stdout(&output).contains("12.50 CNY"), "{}", stdout(&output));

    // Refused by the engine: exit code 1 and the reason as a sentence.
    let output = server.run(&["transfer", "1001", "2001", "1000", "CNY"]);
    expect_code(&output, 1);
    assert!(
        stdout(&output).contains("refused: insufficient funds (insufficient_funds)"),
        "{}",
        stdout(&output)
    );
    let output = server.run(&["transfer", "1001", "2001", "1000", "CNY", "--json"]);
    expect_code(&output, 1);
    let value = json(&output);
    assert_eq!(value["ok"], false);
    assert_eq!(value["status"], "insufficient_funds");
    assert_eq!(value["code"], 43);

    // Refused by the CLI before sending: exit code 2.
    let output = server.run(&["deposit", "1001", "12.345", "CNY"]);
    expect_code(&output, 2);
    assert!(
        stderr(&output).contains("12.345 CNY: CNY has 2 decimal places"),
        "{}",
        stderr(&output)
    );
    let output = server.run(&["deposit", "1001", "-5", "CNY"]);
    expect_code(&output, 2);

    // Two-phase withdrawal.
    let output = server.run(&["withdraw", "hold", "1001", "7.50", "CNY", "--json"]);
    expect_code(&output, 0);
    let hold_id = json(&output)["hold_id"].as_str().unwrap().to_owned();
    let view = json(&server.run(&["account", "show", "1001", "--json"]));
    assert_eq!(view["balance"], 8_750);
    assert_eq!(view["debits_pending"], 750);
    assert_eq!(view["available_decimal"], "80.00");
    let output = server.run(&["withdraw", "post", &hold_id]);
    expect_code(&output, 0);
    assert!(stdout(&output).contains("done"), "{}", stdout(&output));
    let output = server.run(&["withdraw", "void", &hold_id]);
    expect_code(&output, 1);
    assert!(
        stdout(&output).contains("already posted"),
        "{}",
        stdout(&output)
    );
    let view = json(&server.run(&["account", "show", "1001", "--json"]));
    assert_eq!(view["balance"], 8_000);
    assert_eq!(view["debits_pending"], 0);

    // Freeze and unfreeze; an unknown account.
    expect_code(&server.run(&["account", "freeze", "1001"]), 0);
    let view = json(&server.run(&["account", "show", "1001", "--json"]));
    assert_eq!(view["status"], "frozen");
    expect_code(&server.run(&["account", "unfreeze", "1001"]), 0);
    let output = server.run(&["account", "show", "9999"]);
    expect_code(&output, 1);
    assert!(
        stdout(&output).contains("no account has this id"),
        "{}",
        stdout(&output)
    );

    let output = server.run(&["status", "--json"]);
    expect_code(&output, 0);
    let counters = &json(&output)["counters"];
    assert!(counters["server.requests"].as_u64().unwrap() > 10);
    // Per-shard counters, one of each per shard the server runs.
    let shards = counters["engine.shards"].as_u64().unwrap();
    assert!(shards >= 1);
    let steps: u64 = (0..shards)
        .map(|shard| {
            counters[format!("engine.shard_steps.{shard}")]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert!(steps > 0, "{counters}");
    assert!(counters[format!("engine.shard_queue_depth.{}", shards - 1)].is_u64());
    assert!(counters[format!("engine.shard_movements.{shards}")].is_null());
    // The ledger tables' use against their bounds (counted at start: an
    // empty ledger, so only what lives with the idempotency records is
    // budgeted).
    assert_eq!(counters["engine.table_accounts"], 0, "{counters}");
    assert_eq!(
        counters["engine.table_payments_max"], counters["engine.idempotency_records_capacity"],
        "{counters}"
    );
    assert!(counters["engine.tables_budget_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn a_server_that_is_not_running_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    // A local gateway file, so the CLI gets as far as connecting.
    std::fs::write(
        dir.path().join("gateway.toml"),
        "name = \"local\"\nsecret = \"00112233445566778899aabbccddeeff\"\n",
    )
    .unwrap();
    let addr = free_addr().to_string();
    let mut command = Command::new(BINARY);
    command
        .args([
            "deposit",
            "1001",
            "1.00",
            "CNY",
            "--addr",
            &addr,
            "--data-dir",
        ])
        .arg(dir.path());
    let output = run(command);
    expect_code(&output, 2);
    let text = stderr(&output);
    assert!(text.contains(&addr), "{text}");
    assert!(text.contains("payrail serve"), "{text}");

    // No gateway file at all: the message says what to do.
    let empty = tempfile::tempdir().unwrap();
    let mut command = Command::new(BINARY);
    command
        .args(["status", "--addr", &addr, "--data-dir"])
        .arg(empty.path());
    let output = run(command);
    expect_code(&output, 2);
    let text = stderr(&output);
    assert!(text.contains("payrail serve"), "{text}");
    assert!(text.contains("--data-dir"), "{text}");
}

#[test]
fn usage_errors_exit_with_code_2() {
    let mut command = Command::new(BINARY);
    command.args(["account", "open", "1", "--owner", "1", "--currency", "CNY"]);
    expect_code(&run(command), 2);
    let mut command = Command::new(BINARY);
    command.args(["transfer", "1", "2", "1.00", "XYZ"]);
    expect_code(&run(command), 2);
}

#[test]
fn history_tx_show_and_metrics_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(dir.path(), &[]);
    for args in [
        &[
            "account",
            "open",
            "1001",
            "--owner",
            "1",
            "--customer",
            "--currency",
            "CNY",
        ][..],
        &[
            "account",
            "open",
            "2001",
            "--owner",
            "2",
            "--merchant",
            "--mcc",
            "5812",
            "--currency",
            "CNY",
        ],
        &["deposit", "1001", "100.00", "CNY", "--id", "1"],
        &["transfer", "1001", "2001", "12.50", "CNY", "--id", "77"],
        &["transfer", "1001", "2001", "0.50", "CNY", "--id", "78"],
    ] {
        expect_code(&server.run(args), 0);
    }
    // History is written just after the acknowledgement: wait for it (bounded).
    let started = Instant::now();
    let page = loop {
        let output = server.run(&["history", "1001", "--json"]);
        expect_code(&output, 0);
        let page = json(&output);
        if page["entries"].as_array().unwrap().len() == 3 {
            break page;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{page}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let entries = page["entries"].as_array().unwrap();
    assert_eq!(entries[0]["kind"], "transfer");
    assert_eq!(entries[0]["amount_decimal"], "-0.50");
    assert_eq!(entries[0]["balance_decimal"], "87.00");
    assert_eq!(entries[0]["counterparty"], 2001);
    assert_eq!(
        entries[0]["mcc"], 5812,
        "a payment to a merchant carries its category"
    );
    assert_eq!(entries[1]["command_id"], format!("{:032x}", 77));
    assert_eq!(entries[2]["kind"], "deposit");
    assert_eq!(entries[2]["balance"], 10_000);
    assert_eq!(entries[2]["counterparty_label"], "house:settlement:CNY");
    assert_eq!(entries[0]["counterparty_label"], "2001");
    assert!(page["next_cursor"].is_null());
    // The table names the house account of a top-up.
    let output = server.run(&["history", "1001"]);
    expect_code(&output, 0);
    let text = stdout(&output);
    let deposit = text.lines().find(|line| line.contains("deposit"));
    assert!(
        deposit.is_some_and(
            |line| line.contains("+100.00 CNY") && line.contains("house:settlement:CNY")
        ),
        "{text}"
    );

    // Two pages of one, then the rest, through the cursor.
    let output = server.run(&["history", "1001", "--limit", "1", "--json"]);
    let first = json(&output);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let output = server.run(&["history", "1001", "--limit", "1", "--cursor", &cursor]);
    expect_code(&output, 0);
    let text = stdout(&output);
    assert!(
        text.contains("-12.50 CNY") && text.contains("87.50 CNY"),
        "{text}"
    );
    assert!(
        text.contains("more: payrail history 1001 --cursor "),
        "{text}"
    );
    // A time range before anything happened is empty.
    let output = server.run(&["history", "1001", "--to", "2000-01-01"]);
    expect_code(&output, 0);
    assert!(
        stdout(&output).contains("no movements"),
        "{}",
        stdout(&output)
    );

    let output = server.run(&["tx", "show", "77", "--json"]);
    expect_code(&output, 0);
    let tx = json(&output);
    assert_eq!(tx["status"], "ok");
    assert_eq!(tx["source"], "record");
    let legs = tx["legs"].as_array().unwrap();
    assert_eq!(legs.len(), 2);
    assert_eq!(
        (legs[0]["account"].clone(), legs[0]["amount"].clone()),
        (1001.into(), (-1250).into())
    );
    assert_eq!(
        (legs[1]["account"].clone(), legs[1]["amount"].clone()),
        (2001.into(), 1250.into())
    );
    let output = server.run(&["tx", "show", "999"]);
    expect_code(&output, 0);
    assert!(stdout(&output).contains(": unknown"), "{}", stdout(&output));

    let metrics = metrics_text(server.metrics_addr.unwrap());
    assert!(
        metrics.contains("payrail_commands_total{kind=\"transfer\",status=\"ok\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("payrail_log_write_seconds"), "{metrics}");
    for gauge in [
        "payrail_shard_queue_depth{shard=\"0\"}",
        "payrail_sequencer_queue_depth",
        "payrail_history_queue_depth",
        "payrail_table_entries{table=\"holds\"}",
        "payrail_table_budget_bytes{table=\"payments\"}",
    ] {
        assert!(metrics.contains(gauge), "{gauge} in {metrics}");
    }
    let output = server.run(&["status", "--json"]);
    let status = json(&output);
    // The deposit's customer leg (house accounts keep no history) and both
    // legs of each transfer.
    assert_eq!(
        status["counters"]["engine.history_movements"]
            .as_u64()
            .unwrap(),
        5
    );
}
