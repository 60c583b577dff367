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
        // The embedded server's idempotency table is allocated at its full
        // default size; touching all of it first (as `payrail serve` does)
        // would cost these tiny runs seconds and gigabytes each.
        .env("PAYRAIL_PREFAULT", "false")
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

/// Every kind the wallet mix generates, by its report name: each must be
/// acknowledged (commands) or answered (queries) in the smoke run.
const WALLET_KINDS: [&str; 16] = [
    "pay_merchant_qr",
    "pay_merchant_qr_fx",
    "issue_payment_code",
    "charge_payment_code",
    "transfer",
    "deposit_from",
    "withdraw_hold_to",
    "withdraw_post",
    "refund",
    "refund_fx",
    "fx_convert",
    "fx_quote",
    "fx_convert_quote",
    "balance_query",
    "spending_query",
    "history_page",
];

fn report_json(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap()
}

#[test]
fn a_tiny_wallet_run_acknowledges_every_kind_and_writes_its_report() {
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
        "--pipeline",
        "2",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(status.success(), "exit {status:?}\n{output}");
    assert!(output.contains("verdict: PASS"), "{output}");
    assert!(output.contains("risk policy in force: builtin"), "{output}");
    assert!(output.contains("256 commands in flight"), "{output}");

    let json = report_json(&report);
    // Every kind of the wallet mix was sent and answered by the server; the
    // commands among them are among the acknowledged commands looked up.
    for kind in WALLET_KINDS {
        let count = json["commands_by_kind"][kind]["count"].as_u64();
        assert!(
            count.is_some_and(|count| count > 0),
            "{kind} was not answered\n{output}"
        );
    }
    assert_eq!(json["kinds_missing"], serde_json::json!([]));
    // Top-ups from and withdrawals to the customers' own cards, bound and
    // verified at seeding, go through.
    for kind in ["deposit_from", "withdraw_hold_to", "withdraw_post"] {
        let ok = json["commands_by_kind"][kind]["ok"].as_u64();
        assert!(
            ok.is_some_and(|ok| ok > 0),
            "no {kind} went through\n{output}"
        );
    }
    assert!(output.contains("cards bound and verified"), "{output}");
    // FX moved money, and conservation held with the FX house accounts.
    assert!(
        json["commands_by_kind"]["fx_convert"]["ok"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(
        json["commands_by_kind"]["pay_merchant_qr_fx"]["ok"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(json["in_flight_commands"], 256);
    assert!(json["server_samples"].as_array().unwrap().len() >= 2);
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

/// `--tls`: the embedded server serves only TLS (a plain connection would
/// get no Challenge), so a passing run, its generator processes included,
/// spoke TLS throughout.
#[test]
fn a_transfers_run_over_tls_in_two_processes_passes() {
    let (status, output) = run(&[
        "--mix",
        "transfers",
        "--accounts",
        "300",
        "--merchants",
        "0",
        "--processes",
        "2",
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--quiet",
        "--no-report",
        "--tls",
    ]);
    assert!(status.success(), "exit {status:?}\n{output}");
    assert!(output.contains("fsync on, TLS)"), "{output}");
    assert!(
        output.contains("money conserved per currency: yes"),
        "{output}"
    );
}

#[test]
fn a_tiny_sweep_draws_latency_against_rate() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let (status, output) = run(&[
        "--mix",
        "transfers",
        "--accounts",
        "300",
        "--merchants",
        "0",
        "--sweep",
        "--sweep-steps",
        "20,60",
        "--step-duration",
        "1s",
        "--warmup",
        "0s",
        "--quiet",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(status.success(), "exit {status:?}\n{output}");
    assert!(
        output.contains("highest offered rate with commands p99 under 10 ms"),
        "{output}"
    );
    let json = report_json(&report);
    let steps = json["sweep"]["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[0]["percent"], 20);
    assert_eq!(steps[1]["percent"], 60);
    let peak = json["sweep"]["peak_per_sec"].as_f64().unwrap();
    assert!(peak > 0.0);
    // Each step offered its share of the peak.
    let offered = steps[1]["offered_per_sec"].as_f64().unwrap();
    assert!((offered / peak - 0.6).abs() < 0.1, "{offered} of {peak}");
    let html = std::fs::read_to_string(report.join("report.html")).unwrap();
    assert!(html.contains("Latency against offered rate"));
}

#[test]
fn a_tiny_soak_in_two_generator_processes_samples_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let (status, output) = run(&[
        "--customers",
        "200",
        "--merchants",
        "10",
        "--risk-policy",
        "none",
        "--batch",
        "64",
        "--soak",
        "3s",
        "--warmup",
        "0s",
        "--processes",
        "2",
        "--stall-max",
        "30s",
        "--quiet",
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(status.success(), "exit {status:?}\n{output}");
    assert!(output.contains("2 generator processes"), "{output}");
    assert!(output.contains("at most 30000 ms: yes"), "{output}");
    let json = report_json(&report);
    let generators = json["generator_cpu_seconds"].as_array().unwrap();
    assert_eq!(generators.len(), 2);
    assert!(json["commands"].as_u64().unwrap() > 0);
    assert_eq!(json["acknowledged"]["ok"], true);
    assert!(json["acknowledged"]["checked"].as_u64().unwrap() > 0);
    // The processes draw apart: no payment code of one is refused as
    // already taken by the other's.
    assert!(
        json["rejected_by_status"]
            .get("payment_code_taken")
            .is_none(),
        "{output}"
    );
    assert!(
        json["commands_by_kind"]["charge_payment_code"]["ok"]
            .as_u64()
            .unwrap()
            > 0
    );
    let samples = json["server_samples"].as_array().unwrap();
    assert!(samples.len() >= 3, "{samples:?}");
    assert!(samples
        .iter()
        .all(|sample| sample["resident_bytes"].as_u64().is_some()));
    assert!(
        samples.last().unwrap()["log_bytes_written"]
            .as_u64()
            .unwrap()
            > 0
    );
}

/// `--server-config`: the embedded server keeps only the idempotency
/// records its file allows (8,190, the least there is), so most commands of
/// the run are forgotten by the end. The harness asks the server how many
/// it keeps: the sampled commands older than those count as past the
/// server's retention, not as missing, and the run passes.
#[test]
fn a_server_keeping_fewer_records_passes_with_commands_past_its_retention() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("payrail.toml");
    std::fs::write(&config, "[engine]\nidempotency_records_max = 8190\n").unwrap();
    let (status, output) = run(&[
        "--mix",
        "transfers",
        "--accounts",
        "300",
        "--merchants",
        "0",
        "--duration",
        "2s",
        "--warmup",
        "1s",
        "--quiet",
        "--no-report",
        "--server-config",
        config.to_str().unwrap(),
    ]);
    assert!(status.success(), "exit {status:?}\n{output}");
    assert!(
        output.contains("[engine] and [limits] from"),
        "the summary names the file: {output}"
    );
    // "... (a uniform sample of S of the A acknowledged: F found, 0 missing,
    // 0 with another status, P past the server's retention)"
    let line = output
        .lines()
        .find(|line| line.starts_with("acknowledged commands found with their result: yes"))
        .unwrap_or_else(|| panic!("no verification line: {output}"));
    let counts = &line[line
        .find("acknowledged: ")
        .unwrap_or_else(|| panic!("{line}"))..];
    let number_before = |label: &str| -> u64 {
        let before = &counts[..counts
            .find(label)
            .unwrap_or_else(|| panic!("{label}: {line}"))];
        let word = before.trim_end().rsplit(' ').next().unwrap();
        word.replace(',', "").parse().unwrap()
    };
    assert_eq!(number_before(" missing"), 0, "{line}");
    let found = number_before(" found");
    let past = number_before(" past the server's retention");
    assert!(found <= 8_190, "{line}");
    assert!(past > 0, "more commands than the server keeps: {line}");
}

#[test]
fn bad_options_exit_with_usage_errors() {
    let (status, output) = run(&["--batch", "0"]);
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("--batch"), "{output}");
    let (status, _) = run(&["--duration", "soon"]);
    assert_eq!(status.code(), Some(2));
    let (status, output) = run(&["--addr", "127.0.0.1:1", "--server-config", "payrail.toml"]);
    assert_eq!(status.code(), Some(2), "{output}");
    assert!(output.contains("--server-config"), "{output}");
}
