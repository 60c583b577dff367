//! The risk rules and budgets end to end: `payrail serve --risk-policy` as a
//! child process on a free 127.0.0.1 port, payments with the risk flags,
//! `payrail risk ...` and `payrail budget ...`, a policy changed live, and
//! a restart that replays the log with the policies that were in force.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::process::{metric_value, metrics_text, ServerProcess};

const POLICY: &str = r#"
[blocked_countries]
action = "decline"
countries = ["KP"]

[new_device]
action = "step_up"
trust_first_device = true

[impossible_travel]
action = "decline"
freeze = true
speed_kmh_max = 1000
distance_km_min = 100
"#;

fn transfer<'a>(amount: &'a str, flags: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["transfer", "1001", "1002", amount, "CNY"];
    args.extend_from_slice(flags);
    args
}

#[test]
fn risk_policy_payments_audit_and_budgets_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    let disabled = dir.path().join("disabled.toml");
    std::fs::write(&disabled, "").unwrap();
    let policy_arg = policy.to_str().unwrap();

    let server = ServerProcess::start(dir.path(), &["--risk-policy", policy_arg]);
    let shown = server.json(&["risk", "show", "--file", policy_arg], 0);
    assert_eq!(shown["matches_file"], true);
    assert_eq!(
        shown["rules"],
        serde_json::json!(["blocked_country", "new_device", "impossible_travel"])
    );

    for (account, owner) in [("1001", "1"), ("1002", "2")] {
        server.json(
            &[
                "account",
                "open",
                account,
                "--owner",
                owner,
                "--customer",
                "--currency",
                "CNY",
            ],
            0,
        );
    }
    server.json(&["deposit", "1001", "1000.00", "CNY"], 0);

    // The first device is trusted; a new one asks for a step-up.
    let first = server.json(
        &transfer("10.00", &["--device", "7", "--location", "31.23,121.47"]),
        0,
    );
    assert_eq!(first["ok"], true);
    assert!(first.get("risk").is_none());
    let stepped = server.json(&transfer("10.00", &["--device", "8"]), 1);
    assert_eq!(stepped["status"], "step_up_required");
    assert_eq!(stepped["code"], 81);
    assert_eq!(stepped["risk"]["rule"], "new_device");
    assert_eq!(stepped["risk"]["observed"], 8);
    // Re-submitted with a second factor: through.
    let passed = server.json(&transfer("10.00", &["--device", "8", "--step-up"]), 0);
    assert_eq!(passed["ok"], true);

    // A blocked country, in words.
    let output = server.run(&transfer("1.00", &["--country", "kp"]));
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains("refused: a risk rule declined the payment (risk_declined)")
            && text.contains("risk: decline by rule blocked_country (limit 0, observed KP)"),
        "{text}"
    );
    // Bad flags are usage errors, nothing sent.
    let output = server.run(&transfer("1.00", &["--location", "91,0"]));
    assert_eq!(output.status.code(), Some(2));

    // The audit trail, newest first.
    let audit = server.json(&["risk", "audit", "1001"], 0);
    let entries = audit["entries"].as_array().unwrap();
    let verdicts: Vec<&str> = entries
        .iter()
        .map(|entry| entry["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, ["decline", "approve", "step_up"]);
    assert_eq!(entries[0]["rule"], "blocked_country");
    assert_eq!(entries[1]["stepped_up"], serde_json::json!(["new_device"]));
    assert_eq!(entries[2]["amount"], 1_000);
    let audit = server.json(&["risk", "audit", "1002"], 0);
    assert!(audit["entries"].as_array().unwrap().is_empty());

    // The same decisions in the Prometheus counters, by rule (bounded wait:
    // the counters are published as batches complete).
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
        let evaluated = metric_value(&text, "payrail_risk_evaluated_total", &[]);
        if decided("blocked_country", "decline") == Some(1.0)
            && decided("new_device", "step_up") == Some(1.0)
            && evaluated.is_some_and(|evaluated| evaluated >= 3.0)
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{text}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Budgets: 20.00 of transfers so far; a 25.00 budget, then 10.00 more.
    server.json(&["budget", "set", "1001", "cash_and_transfers", "25.00"], 0);
    let warned = server.json(&transfer("10.00", &[]), 0);
    assert_eq!(warned["budget"]["category"], "cash_and_transfers");
    assert_eq!(warned["budget"]["budget"], 2_500);
    assert_eq!(warned["budget"]["spent"], 3_000);
    let shown = server.json(&["budget", "show", "1001"], 0);
    let line = shown["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["category"] == "cash_and_transfers")
        .unwrap()
        .clone();
    assert_eq!(line["spent"], 3_000);
    assert_eq!(line["over"], true);
    let output = server.run(&["budget", "show", "1001"]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("OVER by 5.00"));
    let refused = server.json(&["budget", "set", "1001", "snacks", "1"], 2);
    assert!(refused["error"]
        .as_str()
        .unwrap()
        .contains("not a spending category"));

    // Live change: no rule on, Pyongyang goes through.
    let set = server.json(&["risk", "set-policy", disabled.to_str().unwrap()], 0);
    assert_eq!(set["ok"], true);
    let shown = server.json(&["risk", "show"], 0);
    assert_eq!(shown["rules"], serde_json::json!([]));
    server.json(&transfer("1.00", &["--country", "KP"]), 0);
    drop(server);

    // Restart (killed: no final checkpoint, the log is replayed): the policy
    // in force is the disabled one, as the log says.
    let server = ServerProcess::start(dir.path(), &[]);
    let shown = server.json(&["risk", "show", "--file", policy_arg], 1);
    assert_eq!(shown["matches_file"], false);
    server.json(&transfer("1.00", &["--country", "KP"]), 0);
    drop(server);

    // With --risk-policy the file's policy is entered through the log again.
    let server = ServerProcess::start(dir.path(), &["--risk-policy", policy_arg]);
    let shown = server.json(&["risk", "show", "--file", policy_arg], 0);
    assert_eq!(shown["matches_file"], true);
    let declined = server.json(&transfer("1.00", &["--country", "KP"]), 1);
    assert_eq!(declined["status"], "risk_declined");
    // The state survived: device 8 is known, device 9 is not.
    server.json(&transfer("1.00", &["--device", "8"]), 0);
    let stepped = server.json(&transfer("1.00", &["--device", "9"]), 1);
    assert_eq!(stepped["risk"]["rule"], "new_device");

    // Freeze on suspicion: Shanghai, then London a moment later.
    let frozen = server.json(&transfer("1.00", &["--location", "51.51,-0.13"]), 1);
    assert_eq!(frozen["status"], "risk_frozen");
    let shown = server.json(&["account", "show", "1001"], 0);
    assert_eq!(shown["status"], "frozen");
    server.json(&["account", "unfreeze", "1001"], 0);
    let shown = server.json(&["account", "show", "1001"], 0);
    assert_eq!(shown["status"], "active");

    // A policy file that is not valid is refused before anything is sent.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[velocity]\naction = \"decline\"\npayments_max = 99\nwindow_seconds = 1",
    )
    .unwrap();
    let refused = server.json(&["risk", "set-policy", bad.to_str().unwrap()], 2);
    assert!(refused["error"]
        .as_str()
        .unwrap()
        .contains("velocity.payments_max: 99 is out of range"));
}
