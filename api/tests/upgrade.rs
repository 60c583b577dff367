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
