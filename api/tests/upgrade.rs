//! A data directory written by an older build starts on this one with its
//! money and its idempotency records intact.
//!
//! `fixtures/state-v3` was written by the build of 2026-12-07 (commit
//! 2b500f5, state format 3: before funding instruments), on its own: two
//! customer accounts opened (ids 1 and 2), 100.00 CNY deposited into 1001
//! (id 3) and 25.00 CNY transferred to 1002 (id 4), then a clean stop,
//! which took a checkpoint and trimmed the log. The checkpoint's stored
//! digest is that build's, which had no instruments section: recovery must
//! accept it, and only because the state holds no instruments.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use common::process::ServerProcess;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn a_state_format_3_data_directory_starts_with_its_balances_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v3");
    copy_dir(&fixture, &dir.path().join("data"));
    let mut server = ServerProcess::start(dir.path(), &[]);

    let payer = server.json(&["account", "show", "1001"], 0);
    assert_eq!(payer["balance"], 7_500);
    let payee = server.json(&["account", "show", "1002"], 0);
    assert_eq!(payee["balance"], 2_500);
    // The transfer's record came through the checkpoint: it is answered
    // from the record, and a retry moves nothing.
    let record = server.json(&["tx", "show", "4"], 0);
    assert_eq!(
        (record["status"].as_str(), record["source"].as_str()),
        (Some("ok"), Some("record"))
    );
    let retry = server.run(&["transfer", "1001", "1002", "25.00", "CNY", "--id", "4"]);
    assert!(retry.status.success(), "{retry:?}");
    assert_eq!(
        server.json(&["account", "show", "1002"], 0)["balance"],
        2_500
    );
    // New work goes on, and the next start reads what this build wrote.
    let deposit = server.run(&["deposit", "1002", "1.00", "CNY", "--id", "5"]);
    assert!(deposit.status.success(), "{deposit:?}");
    server.terminate();
    let server = ServerProcess::start(dir.path(), &[]);
    assert_eq!(
        server.json(&["account", "show", "1002"], 0)["balance"],
        2_600
    );
    assert_eq!(
        server.json(&["account", "show", "1001"], 0)["balance"],
        7_500
    );
}

/// `(kind, amount_decimal, balance)` of each entry of `account`'s history,
/// newest first, once it holds `entries` entries (history is written just
/// after the acknowledgement: waited for, bounded).
fn history_of(server: &ServerProcess, account: &str, entries: usize) -> Vec<(String, String, i64)> {
    let started = std::time::Instant::now();
    loop {
        let page = server.json(&["history", account], 0);
        let list = page["entries"].as_array().unwrap();
        if list.len() == entries {
            return list
                .iter()
                .map(|entry| {
                    (
                        entry["kind"].as_str().unwrap().to_owned(),
                        entry["amount_decimal"].as_str().unwrap().to_owned(),
                        entry["balance"].as_i64().unwrap(),
                    )
                })
                .collect();
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{account}: {page}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

fn entry(kind: &str, amount: &str, balance: i64) -> (String, String, i64) {
    (kind.to_owned(), amount.to_owned(), balance)
}

/// The fixture's history is a version-1 segment (every record with its own
/// checksum), written before segment version 2; the log behind its
/// checkpoint is trimmed, so nothing could rebuild it. The upgraded server
/// reads it as it is, goes on in a segment of its own version, and a
/// restart and `payrail verify` read both.
#[test]
fn a_state_format_3_data_directory_keeps_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/state-v3");
    let data = dir.path().join("data");
    copy_dir(&fixture, &data);
    let mut server = ServerProcess::start(dir.path(), &[]);
    assert!(
        !server.log_text().contains("damaged"),
        "{}",
        server.log_text()
    );
    let payer = [
        entry("transfer", "-25.00", 7_500),
        entry("deposit", "100.00", 10_000),
    ];
    assert_eq!(history_of(&server, "1001", 2), payer);
    assert_eq!(
        history_of(&server, "1002", 1),
        [entry("transfer", "25.00", 2_500)]
    );
    let legs = server.json(&["tx", "show", "4"], 0);
    assert_eq!(legs["legs"].as_array().map(Vec::len), Some(2), "{legs}");

    let deposit = server.run(&["deposit", "1002", "1.00", "CNY", "--id", "5"]);
    assert!(deposit.status.success(), "{deposit:?}");
    let payee = [
        entry("deposit", "1.00", 2_600),
        entry("transfer", "25.00", 2_500),
    ];
    assert_eq!(history_of(&server, "1002", 2), payee);
    server.terminate();

    let mut server = ServerProcess::start(dir.path(), &[]);
    assert_eq!(history_of(&server, "1001", 2), payer);
    assert_eq!(history_of(&server, "1002", 2), payee);
    server.terminate();

    let verify = common::process::cli(&["verify", data.to_str().unwrap(), "--json"]);
    common::process::expect_code(&verify, 0);
    let report = common::process::json(&verify);
    assert_eq!(
        report["history"]["damaged"],
        serde_json::json!([]),
        "{report}"
    );
    assert_eq!(report["history"]["movements"], 4, "{report}");
}
