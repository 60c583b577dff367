//! Runs the harness end to end with tiny settings against its embedded
//! server, and checks the exit code and the report.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The whole run (seeding 200 customers, 2 s of load, verification, final
/// checkpoint) takes a few seconds; this bounds it even on a loaded machine.
const RUN_TIME_MAX: Duration = Duration::from_secs(120);

fn run(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_payrail-loadtest"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let output = child.wait_with_output().unwrap();
            let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stderr));
            return (status, text);
        }
        if started.elapsed() > RUN_TIME_MAX {
            child.kill().unwrap();
            panic!("payrail-loadtest did not finish within {RUN_TIME_MAX:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_tiny_wallet_run_passes_and_writes_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let (status, output) = run(&[
        "--customers",
        "200",
        "--merchants",
        "10",
        "--duration",
        "2s",
        "--warmup",
        "0s",
        "--batch",
        "64",
        "--connections",
        "2",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(status.success(), "exit {status:?}\n{output}");
    assert!(
        output.contains("not supported by this server yet"),
        "{output}"
    );
    assert!(output.contains("verdict: PASS"), "{output}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report.join("report.json")).unwrap())
            .unwrap();
    for key in [
        "committed_per_sec",
        "offered_per_sec",
        "commands",
        "rejected_by_status",
        "latency_us",
        "conservation_ok",
        "config",
    ] {
        assert!(json.get(key).is_some(), "report.json lacks {key}");
    }
    for key in ["p50", "p90", "p99", "p999", "max"] {
        assert!(json["latency_us"][key].is_u64(), "latency_us lacks {key}");
    }
    assert_eq!(json["conservation_ok"], serde_json::Value::Bool(true));
    assert!(json["committed_per_sec"].as_f64().unwrap() > 0.0);
    assert!(json["commands"].as_u64().unwrap() > 0);
    assert_eq!(json["config"]["mix"], "wallet");
    assert_eq!(json["acknowledged"]["ok"], serde_json::Value::Bool(true));

    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("<svg"), "report.html has no chart");
    assert!(
        !html.contains("<script"),
        "report.html must be self-contained"
    );
    assert!(
        !html.contains("http://")
            || html.matches("http://").count()
                == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count()
    );
}

#[test]
fn an_open_loop_transfers_run_passes() {
    let (status, output) = run(&[
        "--mix",
        "transfers",
        "--skew",
        "zipf",
        "--accounts",
        "300",
        "--merchants",
        "0",
        "--rate",
        "20000",
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--quiet",
        "--no-report",
    ]);
    assert!(status.success(), "exit {status:?}\n{output}");
    assert!(output.contains("open loop"), "{output}");
    assert!(
        output.contains("money conserved per currency: yes"),
        "{output}"
    );
    assert!(!output.contains("report: "), "{output}");
}

#[test]
fn bad_options_exit_with_usage_errors() {
    let (status, output) = run(&["--batch", "0"]);
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("--batch"), "{output}");
    let (status, _) = run(&["--duration", "soon"]);
    assert_eq!(status.code(), Some(2));
}
