//! The end of a run: the summary table on stdout, `report.json` (stable
//! keys for scripts) and `report.html` (self-contained: tables and charts
//! drawn here as inline SVG, no script, no external file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::{json, Value};

use crate::drive::{group_digits, SeedReport};
use crate::machine::Machine;
use crate::mix::Kind;
use crate::phase::{ServerProbe, ServerSample};
use crate::stats::{Percentiles, Recorder};
use crate::verify::{Acknowledgements, Conservation};

/// The longest time without any reply in the measured window.
#[derive(Clone, Copy, Debug)]
pub struct Stall {
    pub longest: std::time::Duration,
    /// When it began, from the end of the warm-up.
    pub after: std::time::Duration,
    /// The longest a soak accepts (None: not part of the verdict).
    pub max: Option<std::time::Duration>,
}

impl Stall {
    pub fn ok(&self) -> bool {
        self.max.is_none_or(|max| self.longest <= max)
    }
}

/// One open-loop step of a sweep.
#[derive(Clone, Copy, Debug)]
pub struct SweepStep {
    pub percent: u32,
    /// Commands and queries offered (due) per second.
    pub offered_per_sec: f64,
    /// Commands committed and queries answered per second.
    pub answered_per_sec: f64,
    pub committed_per_sec: f64,
    /// Latency of commands, from their planned arrival.
    pub latency: Percentiles,
    pub request_errors: u64,
    /// Answered at least 95 % of what was offered, without failed requests.
    pub keeps_up: bool,
    pub stall: std::time::Duration,
}

/// A sweep step keeps up when it answers at least this share of what it
/// was offered, with no failed request.
pub const KEEPS_UP_SHARE: f64 = 0.95;

pub fn keeps_up(offered_per_sec: f64, answered_per_sec: f64, request_errors: u64) -> bool {
    answered_per_sec >= offered_per_sec * KEEPS_UP_SHARE && request_errors == 0
}

/// The first step that did not keep up, and the highest offered rate
/// before it whose commands' p99 was under `p99_aim_us`.
pub fn judge_sweep(steps: &[SweepStep], p99_aim_us: u64) -> (Option<usize>, Option<f64>) {
    let first_behind = steps.iter().position(|step| !step.keeps_up);
    let best = steps
        .iter()
        .take(first_behind.unwrap_or(steps.len()))
        .filter(|step| step.latency.count > 0 && step.latency.p99 < p99_aim_us)
        .map(|step| step.offered_per_sec)
        .fold(None, |best: Option<f64>, rate| {
            Some(best.map_or(rate, |best| best.max(rate)))
        });
    (first_behind, best)
}

/// Latency against offered rate.
#[derive(Clone, Debug)]
pub struct Sweep {
    /// Operations per second of the closed-loop phase.
    pub peak_per_sec: f64,
    pub peak_latency: Percentiles,
    pub steps: Vec<SweepStep>,
    /// The first step that did not keep up.
    pub first_behind: Option<usize>,
    pub p99_aim_us: u64,
    /// The highest offered rate, below the first step that fell behind,
    /// whose command p99 was under the aim.
    pub best_rate_under_aim: Option<f64>,
}

/// One second of the run.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeriesPoint {
    pub second: u64,
    pub committed: u64,
    pub queries: u64,
    pub offered: u64,
    pub rejected: u64,
    pub request_errors: u64,
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
    pub latency_us_max: u64,
}

/// Everything a run found.
#[derive(Debug)]
pub struct Summary {
    pub config: Value,
    pub title: String,
    pub machine: Machine,
    pub load_average_before: Option<f64>,
    pub load_average_after: Option<f64>,
    pub mix_description: String,
    /// The risk policy in force, as a sentence.
    pub risk: String,
    /// Closed loop: commands kept in flight (all processes).
    pub in_flight: Option<u64>,
    pub seeding: SeedReport,
    pub warmup_seconds: f64,
    pub window_seconds: f64,
    pub recorder: Recorder,
    pub conservation: Conservation,
    pub acknowledgements: Acknowledgements,
    pub series: Vec<SeriesPoint>,
    /// Server counters over the measured window (`engine.*`, `server.*`).
    pub server_stats: BTreeMap<String, u64>,
    /// CPU seconds of this process's threads over the measured window.
    pub cpu_seconds: BTreeMap<String, f64>,
    /// CPU seconds of each generator process over the window (`--processes`).
    pub generator_cpu: Vec<(String, f64)>,
    /// The server sampled each second.
    pub samples: Vec<ServerSample>,
    pub probe: ServerProbe,
    pub stall: Stall,
    pub sweep: Option<Sweep>,
    pub notes: Vec<String>,
}

impl Summary {
    pub fn committed(&self) -> u64 {
        Kind::ALL
            .iter()
            .filter(|kind| !kind.is_query())
            .map(|kind| self.recorder.counts[kind.index()].committed)
            .sum()
    }

    fn queries(&self) -> u64 {
        Kind::ALL
            .iter()
            .filter(|kind| kind.is_query())
            .map(|kind| self.recorder.counts[kind.index()].committed)
            .sum()
    }

    fn per_second(&self, count: u64) -> f64 {
        if self.window_seconds > 0.0 {
            count as f64 / self.window_seconds
        } else {
            0.0
        }
    }

    pub fn committed_per_sec(&self) -> f64 {
        self.per_second(self.committed())
    }

    pub fn offered_per_sec(&self) -> f64 {
        self.per_second(self.recorder.offered_commands)
    }

    pub fn ok(&self) -> bool {
        self.conservation.ok()
            && self.acknowledgements.ok()
            && self.stall.ok()
            && self.recorder.not_applied == 0
    }

    fn latency(&self) -> Percentiles {
        Percentiles::of(&self.recorder.commands)
    }

    fn server_derived(&self) -> Vec<(String, String)> {
        let get = |name: &str| self.server_stats.get(name).copied().unwrap_or(0);
        let mut out = Vec::new();
        let writes = get("engine.group_writes");
        let logged = get("engine.commands_logged");
        if let Some(per_write) = logged.checked_div(writes) {
            out.push((
                "commands per group commit (fsync)".into(),
                group_digits(per_write),
            ));
            out.push((
                "group commits per second".into(),
                format!("{:.0}", self.per_second(writes)),
            ));
            let write_ns = get("engine.log_write_ns_total");
            out.push((
                "mean log write + fsync".into(),
                format!("{:.2} ms", write_ns as f64 / writes as f64 / 1e6),
            ));
            if self.window_seconds > 0.0 {
                out.push((
                    "time the log writer was busy".into(),
                    format!(
                        "{:.0}%",
                        write_ns as f64 / 1e9 / self.window_seconds * 100.0
                    ),
                ));
            }
        }
        if logged > 0 {
            out.push((
                "log bytes per command".into(),
                format!(
                    "{:.1}",
                    get("engine.log_bytes_written") as f64 / logged as f64
                ),
            ));
        }
        let checkpoints = get("engine.checkpoints");
        if checkpoints > 0 {
            out.push((
                "checkpoints during the window".into(),
                checkpoints.to_string(),
            ));
        }
        out
    }

    /// The summary table and verdict, as printed at the end of a run.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n{}", self.title);
        let _ = writeln!(
            out,
            "machine: {} x {} ({:.0} GiB), server and load generator share these CPUs; load average {} before, {} after",
            self.machine.cpus,
            self.machine.cpu_model,
            self.machine.memory_gib,
            load_text(self.load_average_before),
            load_text(self.load_average_after),
        );
        let _ = writeln!(out, "{}", self.mix_description);
        let _ = writeln!(out, "{}", self.risk);
        if let Some(in_flight) = self.in_flight {
            let _ = writeln!(
                out,
                "closed loop: {} commands in flight (connections x requests per connection x batch{})",
                group_digits(in_flight),
                if self.generator_cpu.len() > 1 { " x processes" } else { "" }
            );
        }
        let seeding_rate =
            self.seeding.commands() as f64 / self.seeding.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(
            out,
            "seeding (not in the figures): {} accounts opened, {} top-ups, {} merchant QR keys registered, {} cards bound and verified and {} FX rates and floors set in {:.1} s ({} commands/s)",
            group_digits(self.seeding.accounts_opened),
            group_digits(self.seeding.deposits),
            group_digits(self.seeding.merchant_keys),
            group_digits(self.seeding.instruments),
            self.seeding.fx_settings,
            self.seeding.elapsed.as_secs_f64(),
            group_digits(seeding_rate as u64),
        );
        let _ = writeln!(
            out,
            "measured {:.1} s after {:.1} s of warm-up\n",
            self.window_seconds, self.warmup_seconds
        );
        let _ = writeln!(
            out,
            "{:<22} {:>13} {:>7} {:>10} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "kind",
            "per second",
            "share",
            "rejected",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
        let total: u64 = self
            .recorder
            .counts
            .iter()
            .map(|counts| counts.committed)
            .sum();
        for kind in Kind::ALL {
            let counts = self.recorder.counts[kind.index()];
            if counts.committed == 0 {
                continue;
            }
            let latency = Percentiles::of(&self.recorder.by_kind[kind.index()]);
            let _ = writeln!(
                out,
                "{:<22} {:>13} {:>6.1}% {:>10} {}",
                kind.name(),
                group_digits(self.per_second(counts.committed) as u64),
                counts.committed as f64 * 100.0 / total.max(1) as f64,
                group_digits(counts.rejected),
                latency_columns(&latency)
            );
        }
        let latency = self.latency();
        let _ = writeln!(
            out,
            "{:<22} {:>13} {:>7} {:>10} {}",
            "all commands",
            group_digits(self.committed_per_sec() as u64),
            "",
            group_digits(self.committed() - self.ok_commands()),
            latency_columns(&latency)
        );
        let _ = writeln!(
            out,
            "\ncommitted {}/s (durable, acknowledged; rejections included), offered {}/s, queries answered {}/s",
            group_digits(self.committed_per_sec() as u64),
            group_digits(self.offered_per_sec() as u64),
            group_digits(self.per_second(self.queries()) as u64),
        );
        if self.recorder.rejected_by_status.is_empty() {
            let _ = writeln!(out, "rejected by status: none");
        } else {
            let list: Vec<String> = self
                .recorder
                .rejected_by_status
                .iter()
                .map(|(name, count)| format!("{name} {}", group_digits(*count)))
                .collect();
            let _ = writeln!(out, "rejected by status: {}", list.join(", "));
        }
        if !self.recorder.request_errors.is_empty() {
            let list: Vec<String> = self
                .recorder
                .request_errors
                .iter()
                .map(|(name, count)| format!("{name} {}", group_digits(*count)))
                .collect();
            let _ = writeln!(
                out,
                "requests that failed as a whole (commands and queries without a result): {}",
                list.join(", ")
            );
        }
        let derived = self.server_derived();
        if !derived.is_empty() {
            let list: Vec<String> = derived
                .iter()
                .map(|(name, value)| format!("{name} {value}"))
                .collect();
            let _ = writeln!(out, "server: {}", list.join("; "));
        }
        if !self.cpu_seconds.is_empty() && self.window_seconds > 0.0 {
            let mut threads: Vec<(&String, &f64)> = self.cpu_seconds.iter().collect();
            threads.sort_by(|a, b| b.1.total_cmp(a.1));
            let list: Vec<String> = threads
                .iter()
                .take(8)
                .map(|(name, seconds)| {
                    format!("{name} {:.0}%", *seconds / self.window_seconds * 100.0)
                })
                .collect();
            let _ = writeln!(
                out,
                "CPU of this process by thread (100% = one core): {}",
                list.join(", ")
            );
        }
        if !self.generator_cpu.is_empty() && self.window_seconds > 0.0 {
            let list: Vec<String> = self
                .generator_cpu
                .iter()
                .map(|(name, seconds)| {
                    format!("{name} {:.0}%", seconds / self.window_seconds * 100.0)
                })
                .collect();
            let _ = writeln!(
                out,
                "CPU of the generator processes (100% = one core): {}",
                list.join(", ")
            );
        }
        let missing = self.kinds_missing();
        if !missing.is_empty() {
            let _ = writeln!(
                out,
                "kinds of the mix without an answer in the window (too short a run?): {}",
                missing.join(", ")
            );
        }
        if let Some(line) = self.samples_text() {
            let _ = writeln!(out, "{line}");
        }
        if let Some(sweep) = &self.sweep {
            out.push_str(&sweep_text(sweep));
        }
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        let _ = writeln!(out);
        let conservation = &self.conservation;
        let currencies: Vec<String> = conservation
            .currencies
            .iter()
            .map(|check| {
                if check.ok() {
                    format!("{} ok", check.code)
                } else {
                    format!(
                        "{} OFF BY {} (pending {} vs {})",
                        check.code,
                        check.imbalance(),
                        check.accounts_debits_pending,
                        check.settlement_credits_pending_delta
                    )
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "money conserved per currency: {} ({}; {} accounts read, {} unknown)",
            if conservation.ok() { "yes" } else { "NO" },
            currencies.join(", "),
            group_digits(conservation.accounts_read),
            conservation.accounts_missing
        );
        let ack = &self.acknowledgements;
        let scope = if ack.sampled() {
            format!(
                "a uniform sample of {} of the {} acknowledged",
                group_digits(ack.checked),
                group_digits(ack.acknowledged)
            )
        } else {
            format!("all {} acknowledged", group_digits(ack.checked))
        };
        let _ = writeln!(
            out,
            "acknowledged commands found with their result: {} ({scope}: {} found, {} missing, {} with another status, {} past the server's retention)",
            if ack.ok() { "yes" } else { "NO" },
            group_digits(ack.found),
            ack.missing,
            ack.mismatched,
            ack.past_retention
        );
        for problem in &ack.problems {
            let _ = writeln!(out, "  {problem}");
        }
        let _ = writeln!(
            out,
            "every command applied: {}",
            if self.recorder.not_applied == 0 {
                "yes".to_owned()
            } else {
                format!(
                    "NO ({} answered storage_failed or unavailable: the server could not or would not write them; see its log)",
                    group_digits(self.recorder.not_applied)
                )
            }
        );
        let stall = &self.stall;
        let _ = writeln!(
            out,
            "longest time without a reply: {:.0} ms, {:.1} s into the window{}",
            stall.longest.as_secs_f64() * 1e3,
            stall.after.as_secs_f64(),
            match stall.max {
                Some(max) if stall.ok() =>
                    format!(" (at most {:.0} ms: yes)", max.as_secs_f64() * 1e3),
                Some(max) => format!(" (at most {:.0} ms: NO, a stall)", max.as_secs_f64() * 1e3),
                None => String::new(),
            }
        );
        let _ = writeln!(out, "verdict: {}", if self.ok() { "PASS" } else { "FAIL" });
        out
    }

    /// The server's memory, data directory and checkpoints over the run,
    /// in one line.
    fn samples_text(&self) -> Option<String> {
        let first = self.samples.first()?;
        let last = self.samples.last()?;
        let mut parts = Vec::new();
        let max_rss = self
            .samples
            .iter()
            .filter_map(|sample| sample.resident_bytes)
            .max();
        if let (Some(start), Some(end), Some(max)) =
            (first.resident_bytes, last.resident_bytes, max_rss)
        {
            parts.push(format!(
                "resident memory {} -> {} MiB (max {}){}",
                start / (1 << 20),
                end / (1 << 20),
                max / (1 << 20),
                match (self.probe.embedded, self.generator_cpu.is_empty()) {
                    (true, true) => ", generator included",
                    (true, false) => ", the population's tables included",
                    (false, _) => "",
                }
            ));
        }
        if let (Some(start), Some(end)) = (first.data_dir_bytes, last.data_dir_bytes) {
            parts.push(format!(
                "data directory {} -> {} MiB",
                start / (1 << 20),
                end / (1 << 20)
            ));
        }
        if let (Some(start), Some(end)) = (first.log_bytes_written, last.log_bytes_written) {
            parts.push(format!(
                "log written {} MiB",
                end.saturating_sub(start) / (1 << 20)
            ));
        }
        let pauses = checkpoint_pauses(&self.samples);
        if let (Some(start), Some(end)) = (first.checkpoints, last.checkpoints) {
            let longest = pauses.iter().map(|(_, pause)| *pause).fold(0.0, f64::max);
            parts.push(format!(
                "checkpoints written {}, pauses seen {}{}",
                end.saturating_sub(start),
                pauses.len(),
                if pauses.is_empty() {
                    String::new()
                } else {
                    format!(" (longest held the executor {longest:.1} ms)")
                }
            ));
        }
        (!parts.is_empty()).then(|| {
            format!(
                "server over the run (sampled each second): {}",
                parts.join("; ")
            )
        })
    }

    /// Kinds the mix generates that were not answered in the window.
    pub fn kinds_missing(&self) -> Vec<&'static str> {
        let mix = if self.config["mix"] == "transfers" {
            crate::options::MixName::Transfers
        } else {
            crate::options::MixName::Wallet
        };
        Kind::of_mix(mix)
            .into_iter()
            .filter(|kind| self.recorder.counts[kind.index()].committed == 0)
            .map(Kind::name)
            .collect()
    }

    fn ok_commands(&self) -> u64 {
        Kind::ALL
            .iter()
            .filter(|kind| !kind.is_query())
            .map(|kind| self.recorder.counts[kind.index()].ok)
            .sum()
    }

    pub fn json(&self) -> Value {
        let latency = self.latency();
        let mut by_kind = serde_json::Map::new();
        let mut commands_by_kind = serde_json::Map::new();
        for kind in Kind::ALL {
            let counts = self.recorder.counts[kind.index()];
            if counts.committed == 0 {
                continue;
            }
            by_kind.insert(
                kind.name().into(),
                percentiles_json(&Percentiles::of(&self.recorder.by_kind[kind.index()])),
            );
            commands_by_kind.insert(
                kind.name().into(),
                json!({
                    "count": counts.committed,
                    "ok": counts.ok,
                    "rejected": counts.rejected,
                    "per_sec": self.per_second(counts.committed),
                }),
            );
        }
        let series: Vec<Value> = self
            .series
            .iter()
            .map(|point| {
                json!({
                    "second": point.second,
                    "committed": point.committed,
                    "queries": point.queries,
                    "offered": point.offered,
                    "rejected": point.rejected,
                    "request_errors": point.request_errors,
                    "latency_us_p50": point.latency_us_p50,
                    "latency_us_p99": point.latency_us_p99,
                    "latency_us_max": point.latency_us_max,
                })
            })
            .collect();
        let conservation: Vec<Value> = self
            .conservation
            .currencies
            .iter()
            .map(|check| {
                json!({
                    "currency": check.code,
                    "ok": check.ok(),
                    "accounts_balance": check.accounts_balance.to_string(),
                    "accounts_debits_pending": check.accounts_debits_pending.to_string(),
                    "settlement_balance_delta": check.settlement_balance_delta.to_string(),
                    "settlement_credits_pending_delta": check.settlement_credits_pending_delta.to_string(),
                })
            })
            .collect();
        let ack = &self.acknowledgements;
        let mut value = json!({
            "committed_per_sec": self.committed_per_sec(),
            "offered_per_sec": self.offered_per_sec(),
            "commands": self.committed(),
            "rejected_by_status": self.recorder.rejected_by_status,
            "latency_us": percentiles_json(&latency),
            "conservation_ok": self.conservation.ok(),
            "config": self.config,
            "ok": self.ok(),
            "queries_per_sec": self.per_second(self.queries()),
            "operations_per_sec": self.per_second(self.committed() + self.queries()),
            "ok_per_sec": self.per_second(self.ok_commands()),
            "offered_queries_per_sec": self.per_second(self.recorder.offered_queries),
            "request_errors": self.recorder.request_errors,
            "window_seconds": self.window_seconds,
            "warmup_seconds": self.warmup_seconds,
            "mix": self.mix_description,
            "commands_by_kind": commands_by_kind,
            "latency_us_by_kind": by_kind,
            "seeding": {
                "accounts_opened": self.seeding.accounts_opened,
                "deposits": self.seeding.deposits,
                "merchant_keys": self.seeding.merchant_keys,
                "seconds": self.seeding.elapsed.as_secs_f64(),
            },
            "conservation": {
                "accounts_read": self.conservation.accounts_read,
                "accounts_missing": self.conservation.accounts_missing,
                "currencies": conservation,
            },
            "acknowledged": {
                "ok": ack.ok(),
                "acknowledged": ack.acknowledged,
                "checked": ack.checked,
                "sampled": ack.sampled(),
                "found": ack.found,
                "missing": ack.missing,
                "mismatched": ack.mismatched,
                "past_retention": ack.past_retention,
                "problems": ack.problems,
            },
            "server_stats": self.server_stats,
            "cpu_seconds_by_thread": self.cpu_seconds,
            "machine": {
                "cpu_model": self.machine.cpu_model,
                "cpus": self.machine.cpus,
                "memory_gib": self.machine.memory_gib,
                "kernel": self.machine.kernel,
                "load_average_before": self.load_average_before,
                "load_average_after": self.load_average_after,
                "shared_by_server_and_generator": true,
            },
            "notes": self.notes,
            "time_series": series,
        });
        let samples: Vec<Value> = self
            .samples
            .iter()
            .map(|sample| {
                json!({
                    "second": sample.second,
                    "resident_bytes": sample.resident_bytes,
                    "data_dir_bytes": sample.data_dir_bytes,
                    "log_bytes_written": sample.log_bytes_written,
                    "checkpoints": sample.checkpoints,
                    "checkpoint_pause_ms_last": sample.checkpoint_pause_ms_last,
                })
            })
            .collect();
        let mix_table: Vec<Value> = crate::mix::table(if self.config["mix"] == "transfers" {
            crate::options::MixName::Transfers
        } else {
            crate::options::MixName::Wallet
        })
        .iter()
        .map(|entry| json!({"label": entry.label, "per_mille": entry.per_mille, "why": entry.why}))
        .collect();
        let extra = json!({
            "not_applied": self.recorder.not_applied,
            "kinds_missing": self.kinds_missing(),
            "mix_table": mix_table,
            "risk_policy": self.risk,
            "in_flight_commands": self.in_flight,
            "generator_cpu_seconds": self.generator_cpu.iter().map(|(name, seconds)| json!({"process": name, "cpu_seconds": seconds})).collect::<Vec<_>>(),
            "longest_stall_ms": self.stall.longest.as_secs_f64() * 1e3,
            "longest_stall_after_s": self.stall.after.as_secs_f64(),
            "stall_max_ms": self.stall.max.map(|max| max.as_secs_f64() * 1e3),
            "stall_ok": self.stall.ok(),
            "sweep": self.sweep.as_ref().map(sweep_json),
            "server_samples": samples,
        });
        if let (Some(map), Value::Object(extra)) = (value.as_object_mut(), extra) {
            map.extend(extra);
        }
        value
    }

    pub fn html(&self) -> String {
        let mut page = String::new();
        let _ = write!(
            page,
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>payrail load test</title>\n<style>\n\
             body{{font-family:system-ui,sans-serif;margin:2em;max-width:1100px;color:#222}}\n\
             table{{border-collapse:collapse;margin:1em 0}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\n\
             th{{background:#f3f3f3}}td:first-child,th:first-child{{text-align:left}}\n\
             .pass{{color:#070;font-weight:bold}}.fail{{color:#b00;font-weight:bold}}\n\
             pre{{background:#f7f7f7;padding:1em;overflow:auto}}svg{{display:block;margin:1em 0}}\n\
             </style></head><body>\n<h1>payrail load test</h1>\n<p>{}</p>\n",
            escape(&self.title)
        );
        let verdict = if self.ok() {
            "<span class=\"pass\">PASS</span>"
        } else {
            "<span class=\"fail\">FAIL</span>"
        };
        let _ = writeln!(
            page,
            "<p>Verdict: {verdict}. Committed <b>{}</b> commands/s (durable, acknowledged), offered {}/s; \
             latency p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms.</p>",
            group_digits(self.committed_per_sec() as u64),
            group_digits(self.offered_per_sec() as u64),
            ms(self.latency().p50),
            ms(self.latency().p99),
            ms(self.latency().p999),
            ms(self.latency().max),
        );
        let _ = write!(
            page,
            "<p>Machine: {} × {} ({:.0} GiB), shared by the server and the load generator; \
             load average {} before the run, {} after.</p>\n<p>{}</p>\n",
            self.machine.cpus,
            escape(&self.machine.cpu_model),
            self.machine.memory_gib,
            load_text(self.load_average_before),
            load_text(self.load_average_after),
            escape(&self.mix_description)
        );

        let _ = writeln!(
            page,
            "<p>{}{}. Longest time without a reply: {:.0} ms{}.</p>",
            escape(&self.risk),
            self.in_flight.map_or_else(String::new, |in_flight| format!(
                "; closed loop with {} commands in flight",
                group_digits(in_flight)
            )),
            self.stall.longest.as_secs_f64() * 1e3,
            match self.stall.max {
                Some(max) if self.stall.ok() =>
                    format!(" (a soak accepts {:.0} ms: ok)", max.as_secs_f64() * 1e3),
                Some(max) => format!(
                    " (a soak accepts {:.0} ms: <span class=\"fail\">a stall</span>)",
                    max.as_secs_f64() * 1e3
                ),
                None => String::new(),
            }
        );
        if let Some(sweep) = &self.sweep {
            page.push_str(&sweep_html(sweep));
        }

        // Throughput over time.
        let warm = self.warmup_seconds;
        let line = |pick: fn(&SeriesPoint) -> u64| -> Vec<(f64, f64)> {
            self.series
                .iter()
                .map(|point| (point.second as f64 + 1.0, pick(point) as f64))
                .collect()
        };
        page.push_str("<h2>Throughput over time</h2>\n<p>Commands committed, queries and history pages answered, and everything offered (commands, queries and pages: sent in a closed loop, due in an open loop), per second.</p>\n");
        page.push_str(&line_chart(
            "per second",
            &[
                ("committed", "#1f77b4", line(|point| point.committed)),
                ("offered (all)", "#aaaaaa", line(|point| point.offered)),
                ("queries", "#2ca02c", line(|point| point.queries)),
                ("rejected", "#d62728", line(|point| point.rejected)),
            ],
            false,
            Some(warm),
        ));
        page.push_str("<h2>Latency over time</h2>\n<p>Per second of sending (closed loop) or of planned arrival (open loop), in ms, log scale.</p>\n");
        let latency_line = |pick: fn(&SeriesPoint) -> u64| -> Vec<(f64, f64)> {
            self.series
                .iter()
                .filter(|point| pick(point) > 0)
                .map(|point| (point.second as f64 + 1.0, pick(point) as f64 / 1_000.0))
                .collect()
        };
        page.push_str(&line_chart(
            "ms",
            &[
                ("p50", "#1f77b4", latency_line(|point| point.latency_us_p50)),
                ("p99", "#ff7f0e", latency_line(|point| point.latency_us_p99)),
                ("max", "#d62728", latency_line(|point| point.latency_us_max)),
            ],
            true,
            Some(warm),
        ));

        page.push_str(&self.server_html());

        // Latency percentiles per kind.
        page.push_str("<h2>Latency percentiles</h2>\n<table><tr><th>kind</th><th>per second</th><th>rejected</th><th>p50 ms</th><th>p90 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>\n");
        let mut groups: Vec<(String, Percentiles)> = Vec::new();
        let mut mix_bars: Vec<(String, f64)> = Vec::new();
        let total: u64 = self
            .recorder
            .counts
            .iter()
            .map(|counts| counts.committed)
            .sum();
        for kind in Kind::ALL {
            let counts = self.recorder.counts[kind.index()];
            if counts.committed == 0 {
                continue;
            }
            let latency = Percentiles::of(&self.recorder.by_kind[kind.index()]);
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                kind.name(),
                group_digits(self.per_second(counts.committed) as u64),
                group_digits(counts.rejected),
                ms(latency.p50),
                ms(latency.p90),
                ms(latency.p99),
                ms(latency.p999),
                ms(latency.max)
            );
            groups.push((kind.name().to_owned(), latency));
            mix_bars.push((
                kind.name().to_owned(),
                counts.committed as f64 * 100.0 / total.max(1) as f64,
            ));
        }
        let latency = self.latency();
        let _ = writeln!(
            page,
            "<tr><th>all commands</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></table>",
            group_digits(self.committed_per_sec() as u64),
            group_digits(self.committed() - self.ok_commands()),
            ms(latency.p50),
            ms(latency.p90),
            ms(latency.p99),
            ms(latency.p999),
            ms(latency.max)
        );
        groups.push(("all commands".into(), latency));
        page.push_str(&percentile_chart(&groups));

        page.push_str("<h2>Mix</h2>\n<p>Measured share of commands and queries, percent.</p>\n");
        page.push_str(&bar_chart(&mix_bars));
        page.push_str("<p>What the mix asks for (per 1,000 slots; each slot of a two-step row, such as a hold then its post, is one of its steps), and why:</p>\n<table><tr><th>row</th><th>share</th><th>why</th></tr>\n");
        let mix = if self.config["mix"] == "transfers" {
            crate::options::MixName::Transfers
        } else {
            crate::options::MixName::Wallet
        };
        for entry in crate::mix::table(mix) {
            let _ = writeln!(
                page,
                "<tr><td>{}</td><td>{:.1}%</td><td style=\"text-align:left\">{}</td></tr>",
                escape(entry.label),
                f64::from(entry.per_mille) / 10.0,
                escape(entry.why)
            );
        }
        page.push_str("</table>\n");

        page.push_str(
            "<h2>Rejections and errors</h2>\n<table><tr><th>status</th><th>count</th></tr>\n",
        );
        for (name, count) in &self.recorder.rejected_by_status {
            let _ = writeln!(
                page,
                "<tr><td>{name}</td><td>{}</td></tr>",
                group_digits(*count)
            );
        }
        for (name, count) in &self.recorder.request_errors {
            let _ = writeln!(
                page,
                "<tr><td>request failed: {}</td><td>{}</td></tr>",
                escape(name),
                group_digits(*count)
            );
        }
        page.push_str("</table>\n");

        let text = self.text();
        let _ = write!(
            page,
            "<h2>Summary as printed</h2>\n<pre>{}</pre>\n<h2>Configuration</h2>\n<pre>{}</pre>\n",
            escape(&text),
            escape(&serde_json::to_string_pretty(&self.config).unwrap_or_default())
        );
        page.push_str("</body></html>\n");
        page
    }

    /// The server's memory, data directory and checkpoint pauses over time.
    fn server_html(&self) -> String {
        let mut page = String::new();
        if self.samples.is_empty() {
            return page;
        }
        let mib = |pick: fn(&ServerSample) -> Option<u64>| -> Vec<(f64, f64)> {
            self.samples
                .iter()
                .filter_map(|sample| {
                    Some((sample.second, pick(sample)? as f64 / f64::from(1 << 20)))
                })
                .collect()
        };
        let log_start = self
            .samples
            .iter()
            .find_map(|sample| sample.log_bytes_written)
            .unwrap_or(0);
        let log: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|sample| {
                Some((
                    sample.second,
                    sample.log_bytes_written?.saturating_sub(log_start) as f64 / f64::from(1 << 20),
                ))
            })
            .collect();
        let _ = writeln!(
            page,
            "<h2>Server over time</h2>\n<p>Sampled each second: resident memory of the server's process{}, size of its data directory (log, checkpoints, history), and log bytes written since the start of the phase, in MiB.</p>",
            if self.probe.embedded {
                " (the embedded server shares this process with the generator: its tables are included)"
            } else if self.probe.pid.is_none() {
                " (not found: the server is not a process of this machine and user)"
            } else {
                ""
            }
        );
        page.push_str(&line_chart(
            "MiB",
            &[
                (
                    "memory (RSS)",
                    "#1f77b4",
                    mib(|sample| sample.resident_bytes),
                ),
                ("data dir", "#2ca02c", mib(|sample| sample.data_dir_bytes)),
                ("log written", "#ff7f0e", log),
            ],
            false,
            Some(self.warmup_seconds),
        ));
        let pauses = checkpoint_pauses(&self.samples);
        let _ = writeln!(
            page,
            "<h3>Checkpoints</h3>\n<p>{} checkpoint pauses seen during the phase; each dot is one, at the second its pause was first reported, with how long it held the executor (engine.checkpoint_pause_ns_last), ms.</p>",
            pauses.len()
        );
        if !pauses.is_empty() {
            let last = self.samples.last().map_or(1.0, |sample| sample.second);
            page.push_str(&plot(
                &Plot {
                    x_label: "seconds",
                    y_label: "pause ms",
                    shade: Some(self.warmup_seconds),
                    x_extent: Some(last),
                    dots: true,
                    ..Plot::default()
                },
                &[("checkpoint pause", "#d62728", pauses)],
            ));
        }
        page
    }

    /// Writes report.json and report.html into `dir` (created if needed).
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the report directory {}", dir.display()))?;
        let json = serde_json::to_string_pretty(&self.json()).context("encoding report.json")?;
        let path = dir.join("report.json");
        std::fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))?;
        let path = dir.join("report.html");
        std::fs::write(&path, self.html())
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

/// The checkpoints seen during the samples: when each was seen (seconds)
/// and how long it held the executor (ms). A checkpoint is seen when the
/// last pause (`engine.checkpoint_pause_ns_last`) changes: the pause is
/// known when the executor resumes, before the checkpoint is written and
/// counted in `engine.checkpoints`.
pub fn checkpoint_pauses(samples: &[ServerSample]) -> Vec<(f64, f64)> {
    samples
        .windows(2)
        .filter_map(|pair| {
            let pause = pair[1].checkpoint_pause_ms_last?;
            (pause > 0.0 && pair[0].checkpoint_pause_ms_last != Some(pause))
                .then_some((pair[1].second, pause))
        })
        .collect()
}

fn sweep_text(sweep: &Sweep) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nsweep: closed-loop peak {} operations/s (commands p99 {} ms); open loop at rising rates (latency of commands, from planned arrival):",
        group_digits(sweep.peak_per_sec as u64),
        ms(sweep.peak_latency.p99)
    );
    let _ = writeln!(
        out,
        "{:>6} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8}",
        "step",
        "offered/s",
        "answered/s",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "stall ms",
        "keeps up"
    );
    for (index, step) in sweep.steps.iter().enumerate() {
        let _ = writeln!(
            out,
            "{:>5}% {:>12} {:>12} {:>9} {:>9} {:>9} {:>9} {:>10.0} {:>8}{}",
            step.percent,
            group_digits(step.offered_per_sec as u64),
            group_digits(step.answered_per_sec as u64),
            ms(step.latency.p50),
            ms(step.latency.p99),
            ms(step.latency.p999),
            ms(step.latency.max),
            step.stall.as_secs_f64() * 1e3,
            if step.keeps_up { "yes" } else { "NO" },
            if sweep.first_behind == Some(index) {
                "  <- stops keeping up"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(
        out,
        "highest offered rate with commands p99 under {} ms: {}",
        sweep.p99_aim_us / 1_000,
        sweep.best_rate_under_aim.map_or_else(
            || "none of the steps".to_owned(),
            |rate| format!("{} operations/s", group_digits(rate as u64))
        )
    );
    out
}

fn sweep_html(sweep: &Sweep) -> String {
    let mut page = String::new();
    let _ = writeln!(
        page,
        "<h2>Latency against offered rate</h2>\n<p>Closed-loop peak: <b>{}</b> operations/s (commands and queries). Then open loop at rising shares of it; latency of commands from their planned arrival, ms, log scale. Highest offered rate with commands p99 under {} ms: <b>{}</b>.{}</p>",
        group_digits(sweep.peak_per_sec as u64),
        sweep.p99_aim_us / 1_000,
        sweep.best_rate_under_aim.map_or_else(
            || "none of the steps".to_owned(),
            |rate| format!("{} operations/s", group_digits(rate as u64))
        ),
        sweep.first_behind.map_or_else(
            || " The server kept up at every step.".to_owned(),
            |index| format!(
                " The server stops keeping up at {}% of the peak (answered less than 95 % of what was offered, or requests failed): the dashed line.",
                sweep.steps[index].percent
            )
        )
    );
    let line = |pick: fn(&Percentiles) -> u64| -> Vec<(f64, f64)> {
        sweep
            .steps
            .iter()
            .filter(|step| step.latency.count > 0)
            .map(|step| {
                (
                    step.offered_per_sec,
                    (pick(&step.latency) as f64 / 1_000.0).max(0.001),
                )
            })
            .collect()
    };
    let marker = sweep
        .first_behind
        .map(|index| (sweep.steps[index].offered_per_sec, "stops keeping up"));
    page.push_str(&plot(
        &Plot {
            x_label: "offered operations per second",
            y_label: "ms",
            log_y: true,
            x_marker: marker,
            y_marker: Some((sweep.p99_aim_us as f64 / 1_000.0, "10 ms")),
            dots: true,
            ..Plot::default()
        },
        &[
            ("p50", "#1f77b4", line(|latency| latency.p50)),
            ("p99", "#ff7f0e", line(|latency| latency.p99)),
            ("p99.9", "#9467bd", line(|latency| latency.p999)),
        ],
    ));
    page.push_str("<table><tr><th>step</th><th>offered/s</th><th>answered/s</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th><th>longest stall ms</th><th>keeps up</th></tr>\n");
    for step in &sweep.steps {
        let _ = writeln!(
            page,
            "<tr><td>{}%</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td><td>{}</td></tr>",
            step.percent,
            group_digits(step.offered_per_sec as u64),
            group_digits(step.answered_per_sec as u64),
            ms(step.latency.p50),
            ms(step.latency.p99),
            ms(step.latency.p999),
            ms(step.latency.max),
            step.stall.as_secs_f64() * 1e3,
            if step.keeps_up { "yes" } else { "<span class=\"fail\">no</span>" }
        );
    }
    page.push_str(
        "</table>\n<p>The rest of this report is the closed-loop phase that found the peak.</p>\n",
    );
    page
}

fn sweep_json(sweep: &Sweep) -> Value {
    json!({
        "peak_per_sec": sweep.peak_per_sec,
        "peak_latency_us": percentiles_json(&sweep.peak_latency),
        "p99_aim_us": sweep.p99_aim_us,
        "best_rate_under_aim": sweep.best_rate_under_aim,
        "first_behind_percent": sweep.first_behind.map(|index| sweep.steps[index].percent),
        "steps": sweep.steps.iter().map(|step| json!({
            "percent": step.percent,
            "offered_per_sec": step.offered_per_sec,
            "answered_per_sec": step.answered_per_sec,
            "committed_per_sec": step.committed_per_sec,
            "latency_us": percentiles_json(&step.latency),
            "request_errors": step.request_errors,
            "keeps_up": step.keeps_up,
            "longest_stall_ms": step.stall.as_secs_f64() * 1e3,
        })).collect::<Vec<_>>(),
    })
}

fn load_text(load: Option<f64>) -> String {
    load.map_or_else(|| "unknown".to_owned(), |load| format!("{load:.2}"))
}

fn ms(micros: u64) -> String {
    let value = micros as f64 / 1_000.0;
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.2}")
    }
}

fn latency_columns(latency: &Percentiles) -> String {
    format!(
        "{:>9} {:>9} {:>9} {:>9} {:>9}",
        ms(latency.p50),
        ms(latency.p90),
        ms(latency.p99),
        ms(latency.p999),
        ms(latency.max)
    )
}

fn percentiles_json(latency: &Percentiles) -> Value {
    json!({
        "p50": latency.p50,
        "p90": latency.p90,
        "p99": latency.p99,
        "p999": latency.p999,
        "max": latency.max,
        "count": latency.count,
    })
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const CHART_WIDTH: f64 = 900.0;
const CHART_HEIGHT: f64 = 300.0;
const MARGIN_LEFT: f64 = 80.0;
const MARGIN_RIGHT: f64 = 120.0;
const MARGIN_TOP: f64 = 20.0;
const MARGIN_BOTTOM: f64 = 40.0;

/// "1.2M", "350k", "12".
fn short_number(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{:.1}M", value / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.0}k", value / 1e3)
    } else if magnitude >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else if magnitude >= 10.0 || magnitude == 0.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// A named, coloured line of (x, y) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// Most points a line is drawn with: longer series (a long soak's seconds)
/// are thinned to this many, keeping each bucket's largest value so that
/// spikes stay visible.
const LINE_POINTS_MAX: usize = 1_200;

/// What a chart draws besides its lines.
#[derive(Clone, Copy, Debug, Default)]
struct Plot<'a> {
    x_label: &'a str,
    y_label: &'a str,
    log_y: bool,
    /// Shade x from 0 to this (the warm-up).
    shade: Option<f64>,
    /// A vertical marker line at x, labelled.
    x_marker: Option<(f64, &'a str)>,
    /// A horizontal marker line at y, labelled.
    y_marker: Option<(f64, &'a str)>,
    /// Draw each point as a dot too.
    dots: bool,
    /// The x axis reaches at least this far.
    x_extent: Option<f64>,
}

fn thin(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    if points.len() <= LINE_POINTS_MAX {
        return points.to_vec();
    }
    let bucket = points.len().div_ceil(LINE_POINTS_MAX);
    points
        .chunks(bucket)
        .filter_map(|chunk| chunk.iter().copied().max_by(|a, b| a.1.total_cmp(&b.1)))
        .collect()
}

/// A line chart of seconds against values; `log_y` for latencies; the
/// warm-up (x up to `shade`) is shaded.
fn line_chart(y_label: &str, series: &[Series], log_y: bool, shade: Option<f64>) -> String {
    plot(
        &Plot {
            x_label: "seconds",
            y_label,
            log_y,
            shade,
            ..Plot::default()
        },
        series,
    )
}

fn plot(spec: &Plot, series: &[Series]) -> String {
    let series: Vec<Series> = series
        .iter()
        .map(|(name, color, points)| (*name, *color, thin(points)))
        .collect();
    let log_y = spec.log_y;
    let points = series.iter().flat_map(|(_, _, points)| points.iter());
    let x_max = points
        .clone()
        .map(|point| point.0)
        .chain(spec.x_marker.map(|marker| marker.0))
        .chain(spec.x_extent)
        .fold(1.0, f64::max);
    let y_values = points
        .map(|point| point.1)
        .chain(spec.y_marker.map(|marker| marker.0))
        .filter(|y| !log_y || *y > 0.0);
    let (mut y_min, mut y_max) = y_values.fold((f64::MAX, 0.0f64), |(low, high), y| {
        (low.min(y), high.max(y))
    });
    if y_min == f64::MAX {
        y_min = 0.0;
    }
    if log_y {
        y_min = 10f64.powf(y_min.max(1e-3).log10().floor());
        y_max = 10f64.powf(y_max.max(y_min * 10.0).log10().ceil());
    } else {
        y_min = 0.0;
        y_max = if y_max <= 0.0 { 1.0 } else { y_max * 1.1 };
    }
    let plot_width = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_height = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let x_of = |x: f64| MARGIN_LEFT + x / x_max * plot_width;
    let y_of = |y: f64| {
        let fraction = if log_y {
            (y.max(y_min).log10() - y_min.log10()) / (y_max.log10() - y_min.log10())
        } else {
            (y - y_min) / (y_max - y_min)
        };
        MARGIN_TOP + plot_height * (1.0 - fraction.clamp(0.0, 1.0))
    };
    let mut svg = String::new();
    let _ = write!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" font-size=\"12\">"
    );
    if let Some(shade) = spec.shade.filter(|shade| *shade > 0.0) {
        let _ = write!(
            svg,
            "<rect x=\"{:.1}\" y=\"{MARGIN_TOP}\" width=\"{:.1}\" height=\"{plot_height}\" fill=\"#eee\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" fill=\"#888\">warm-up</text>",
            x_of(0.0),
            x_of(shade.min(x_max)) - x_of(0.0),
            x_of(0.0) + 4.0,
            MARGIN_TOP + 14.0
        );
    }
    // Axes and grid.
    let ticks: Vec<f64> = if log_y {
        let mut ticks = Vec::new();
        let mut tick = y_min;
        while tick <= y_max * 1.0001 && ticks.len() < 12 {
            ticks.push(tick);
            tick *= 10.0;
        }
        ticks
    } else {
        (0..=5).map(|step| y_max * step as f64 / 5.0).collect()
    };
    for tick in ticks {
        let y = y_of(tick);
        let _ = write!(
            svg,
            "<line x1=\"{MARGIN_LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            MARGIN_LEFT + plot_width,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            short_number(tick)
        );
    }
    let x_step = nice_step(x_max / 10.0);
    let mut x = 0.0;
    while x <= x_max * 1.0001 {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x_of(x),
            CHART_HEIGHT - MARGIN_BOTTOM + 16.0,
            short_number(x)
        );
        x += x_step;
    }
    let _ = write!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>\
         <text x=\"14\" y=\"{:.1}\" transform=\"rotate(-90 14 {:.1})\" text-anchor=\"middle\">{}</text>\
         <rect x=\"{MARGIN_LEFT}\" y=\"{MARGIN_TOP}\" width=\"{plot_width}\" height=\"{plot_height}\" fill=\"none\" stroke=\"#888\"/>",
        MARGIN_LEFT + plot_width / 2.0,
        CHART_HEIGHT - 6.0,
        escape(spec.x_label),
        MARGIN_TOP + plot_height / 2.0,
        MARGIN_TOP + plot_height / 2.0,
        escape(spec.y_label)
    );
    if let Some((x, label)) = spec.x_marker {
        let _ = write!(
            svg,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{MARGIN_TOP}\" y2=\"{1:.1}\" stroke=\"#b00\" stroke-dasharray=\"6 4\"/>\
             <text x=\"{2:.1}\" y=\"{3:.1}\" fill=\"#b00\" text-anchor=\"end\">{4}</text>",
            x_of(x),
            MARGIN_TOP + plot_height,
            x_of(x) - 4.0,
            MARGIN_TOP + 28.0,
            escape(label)
        );
    }
    if let Some((y, label)) = spec.y_marker {
        let _ = write!(
            svg,
            "<line x1=\"{MARGIN_LEFT}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{1:.1}\" stroke=\"#555\" stroke-dasharray=\"2 3\"/>\
             <text x=\"{2:.1}\" y=\"{3:.1}\" fill=\"#555\">{4}</text>",
            MARGIN_LEFT + plot_width,
            y_of(y),
            MARGIN_LEFT + 4.0,
            y_of(y) - 4.0,
            escape(label)
        );
    }
    for (index, (name, color, points)) in series.iter().enumerate() {
        if !points.is_empty() {
            let path: Vec<String> = points
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", x_of(*x), y_of(*y)))
                .collect();
            let _ = write!(
                svg,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>",
                path.join(" ")
            );
            if spec.dots {
                for (x, y) in points {
                    let _ = write!(
                        svg,
                        "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{color}\"/>",
                        x_of(*x),
                        y_of(*y)
                    );
                }
            }
        }
        let legend_y = MARGIN_TOP + 14.0 + index as f64 * 18.0;
        let legend_x = MARGIN_LEFT + plot_width + 10.0;
        let _ = write!(
            svg,
            "<rect x=\"{legend_x:.1}\" y=\"{:.1}\" width=\"12\" height=\"4\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{legend_y:.1}\">{}</text>",
            legend_y - 6.0,
            legend_x + 16.0,
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// 1, 2 or 5 times a power of ten, at least `rough`.
fn nice_step(rough: f64) -> f64 {
    if !(rough.is_finite() && rough > 0.0) {
        return 1.0;
    }
    let power = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|factor| factor * power)
        .find(|step| *step >= rough)
        .unwrap_or(10.0 * power)
        .max(1.0)
}

/// Grouped bars: p50, p90, p99, p99.9 and max per kind, ms, log scale.
fn percentile_chart(groups: &[(String, Percentiles)]) -> String {
    const COLORS: [&str; 5] = ["#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#d62728"];
    const NAMES: [&str; 5] = ["p50", "p90", "p99", "p99.9", "max"];
    let values = |latency: &Percentiles| {
        [
            latency.p50,
            latency.p90,
            latency.p99,
            latency.p999,
            latency.max,
        ]
        .map(|micros| (micros as f64 / 1_000.0).max(0.001))
    };
    let all: Vec<f64> = groups
        .iter()
        .flat_map(|(_, latency)| values(latency))
        .collect();
    let low = 10f64.powf(all.iter().copied().fold(f64::MAX, f64::min).log10().floor());
    let high = 10f64.powf(all.iter().copied().fold(0.0, f64::max).log10().ceil());
    let high = if high <= low { low * 10.0 } else { high };
    let plot_width = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT;
    let plot_height = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM;
    let y_of = |value: f64| {
        let fraction = (value.log10() - low.log10()) / (high.log10() - low.log10());
        MARGIN_TOP + plot_height * (1.0 - fraction.clamp(0.0, 1.0))
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{CHART_HEIGHT}\" font-size=\"12\">"
    );
    let mut tick = low;
    while tick <= high * 1.0001 {
        let y = y_of(tick);
        let _ = write!(
            svg,
            "<line x1=\"{MARGIN_LEFT}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{} ms</text>",
            MARGIN_LEFT + plot_width,
            MARGIN_LEFT - 6.0,
            y + 4.0,
            short_number(tick)
        );
        tick *= 10.0;
    }
    let group_width = plot_width / groups.len().max(1) as f64;
    let bar_width = group_width * 0.8 / 5.0;
    for (group, (name, latency)) in groups.iter().enumerate() {
        let x0 = MARGIN_LEFT + group as f64 * group_width + group_width * 0.1;
        for (index, value) in values(latency).iter().enumerate() {
            let y = y_of(*value);
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{y:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {:.3} ms</title></rect>",
                x0 + index as f64 * bar_width,
                bar_width - 1.0,
                (MARGIN_TOP + plot_height - y).max(0.0),
                COLORS[index],
                escape(name),
                NAMES[index],
                value
            );
        }
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            x0 + group_width * 0.4,
            CHART_HEIGHT - MARGIN_BOTTOM + 16.0,
            escape(name)
        );
    }
    for (index, name) in NAMES.iter().enumerate() {
        let legend_y = MARGIN_TOP + 14.0 + index as f64 * 18.0;
        let legend_x = MARGIN_LEFT + plot_width + 10.0;
        let _ = write!(
            svg,
            "<rect x=\"{legend_x:.1}\" y=\"{:.1}\" width=\"12\" height=\"10\" fill=\"{}\"/>\
             <text x=\"{:.1}\" y=\"{legend_y:.1}\">{name}</text>",
            legend_y - 9.0,
            COLORS[index],
            legend_x + 16.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// Horizontal bars of percentages, the largest spanning the plot.
fn bar_chart(bars: &[(String, f64)]) -> String {
    let row = 26.0;
    let height = MARGIN_TOP * 2.0 + row * bars.len() as f64;
    let label_width = 140.0;
    let plot_width = CHART_WIDTH - label_width - MARGIN_RIGHT;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{height}\" font-size=\"12\">"
    );
    let largest = bars
        .iter()
        .map(|(_, percent)| *percent)
        .fold(1.0, f64::max)
        .min(100.0);
    for (index, (name, percent)) in bars.iter().enumerate() {
        let y = MARGIN_TOP + index as f64 * row;
        let width = plot_width * percent.clamp(0.0, 100.0) / largest;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_width}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{:.1}\" fill=\"#1f77b4\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{percent:.1}%</text>",
            label_width - 8.0,
            y + row * 0.6,
            escape(name),
            row * 0.7,
            label_width + width + 6.0,
            y + row * 0.6
        );
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_without_external_references() {
        let chart = line_chart(
            "per second",
            &[("a", "#000", vec![(1.0, 10.0), (2.0, 20.0)])],
            false,
            Some(1.0),
        );
        assert!(chart.starts_with("<svg"));
        assert!(chart.contains("polyline"));
        let chart = line_chart(
            "ms",
            &[("a", "#000", vec![(1.0, 0.5), (2.0, 80.0)])],
            true,
            None,
        );
        assert!(chart.contains("100"));
        let chart = percentile_chart(&[(
            "transfer".into(),
            Percentiles {
                count: 1,
                p50: 1_000,
                p90: 2_000,
                p99: 3_000,
                p999: 4_000,
                max: 9_000,
            },
        )]);
        assert!(chart.contains("transfer"));
        assert!(!chart.contains("NaN"));
        let chart = plot(
            &Plot {
                x_label: "offered operations per second",
                y_label: "ms",
                log_y: true,
                x_marker: Some((2_000.0, "stops keeping up")),
                y_marker: Some((10.0, "10 ms")),
                dots: true,
                ..Plot::default()
            },
            &[("p99", "#000", vec![(1_000.0, 2.0), (2_000.0, 900.0)])],
        );
        assert!(chart.contains("stops keeping up") && chart.contains("<circle"));
        assert!(!chart.contains("NaN"));
        let chart = bar_chart(&[("transfer".into(), 55.0)]);
        assert!(chart.contains("55.0%"));
        assert_eq!(escape("<a&b>"), "&lt;a&amp;b&gt;");
        assert_eq!(short_number(1_500_000.0), "1.5M");
        assert_eq!(nice_step(0.7), 1.0);
        assert_eq!(nice_step(13.0), 20.0);
        assert_eq!(nice_step(4_100.0), 5_000.0);
        // A long series is thinned to the most points, its peak kept.
        let long: Vec<(f64, f64)> = (0..10_000)
            .map(|x| (f64::from(x), if x == 7_777 { 99.0 } else { 1.0 }))
            .collect();
        let thinned = thin(&long);
        assert!(thinned.len() <= LINE_POINTS_MAX);
        assert!(thinned.iter().any(|point| point.1 == 99.0));
    }

    fn step(percent: u32, offered: f64, answered: f64, p99_us: u64) -> SweepStep {
        SweepStep {
            percent,
            offered_per_sec: offered,
            answered_per_sec: answered,
            committed_per_sec: answered,
            latency: Percentiles {
                count: 100,
                p50: p99_us / 2,
                p90: p99_us,
                p99: p99_us,
                p999: p99_us,
                max: p99_us,
            },
            request_errors: 0,
            keeps_up: keeps_up(offered, answered, 0),
            stall: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn a_sweep_is_judged_by_keeping_up_and_by_p99() {
        let steps = [
            step(10, 1_000.0, 1_000.0, 2_000),
            step(20, 2_000.0, 1_990.0, 8_000),
            step(30, 3_000.0, 2_990.0, 15_000),
            step(40, 4_000.0, 3_000.0, 900_000),
            // Back under the aim after falling behind: not counted.
            step(50, 5_000.0, 4_990.0, 1_000),
        ];
        assert!(!steps[3].keeps_up);
        assert!(!keeps_up(1_000.0, 1_000.0, 1));
        assert_eq!(judge_sweep(&steps, 10_000), (Some(3), Some(2_000.0)));
        assert_eq!(judge_sweep(&steps[..1], 1_000), (None, None));
    }

    #[test]
    fn checkpoints_are_found_where_the_counter_rises() {
        let sample = |second: f64, checkpoints: u64, pause: f64| ServerSample {
            second,
            checkpoints: Some(checkpoints),
            checkpoint_pause_ms_last: Some(pause),
            ..ServerSample::default()
        };
        let samples = [
            sample(0.0, 0, 0.0),
            sample(1.0, 0, 0.0),
            // The pause is known before the checkpoint is counted.
            sample(2.0, 0, 350.0),
            sample(3.0, 1, 350.0),
            sample(4.0, 3, 12.0),
        ];
        assert_eq!(checkpoint_pauses(&samples), vec![(2.0, 350.0), (4.0, 12.0)]);
    }
}
