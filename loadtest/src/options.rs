//! Command-line options, with their defaults and checks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use payrail_engine::limits::BATCH_COMMANDS_MAX;

/// Most connections the harness opens (the server's default bound is 1,024).
pub const CONNECTIONS_MAX: usize = 256;
/// Most requests one connection keeps in flight (the server's default bound).
pub const PIPELINE_MAX: usize = 64;
/// Most customers (each has up to 3 accounts; the ledger holds 64 Mi accounts).
pub const CUSTOMERS_MAX: u64 = 16_000_000;
/// Most merchants.
pub const MERCHANTS_MAX: u64 = 1_000_000;
/// Longest measured run plus warm-up: the per-second series is sized by it.
pub const RUN_SECONDS_MAX: u64 = 24 * 3_600;
/// Most acknowledged commands looked up again at the end.
pub const VERIFY_MAX_CEILING: usize = 16_000_000;
/// Most steps of a sweep.
pub const SWEEP_STEPS_MAX: usize = 20;
/// Most generator processes.
pub const PROCESSES_MAX: usize = 16;
/// Closed-loop defaults: 4 connections x 2 requests x 256 commands = 2,048
/// commands in flight, a few milliseconds of work for the server, so the
/// latency measured is the service time plus one group commit, not a queue
/// the harness built (docs/loadtest.md, "Closed loop").
pub const CONNECTIONS_DEFAULT: usize = 4;
pub const PIPELINE_DEFAULT: usize = 2;
pub const BATCH_DEFAULT: usize = 256;

/// Which commands the load consists of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MixName {
    /// P2P transfers only, between accounts of one currency: comparable with
    /// other ledgers' transfer benchmarks.
    Transfers,
    /// The wallet mix: every kind the server supports, in realistic shares.
    Wallet,
}

impl MixName {
    pub fn name(self) -> &'static str {
        match self {
            MixName::Transfers => "transfers",
            MixName::Wallet => "wallet",
        }
    }
}

/// How accounts are picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SkewName {
    /// Every account equally likely.
    Uniform,
    /// Zipf over each currency's accounts: a few hot accounts, a long tail.
    Zipf,
}

impl SkewName {
    pub fn name(self) -> &'static str {
        match self {
            SkewName::Uniform => "uniform",
            SkewName::Zipf => "zipf",
        }
    }
}

/// payrail load test: seeds accounts through the protocol, drives a command
/// mix closed- or open-loop, prints a summary, writes a report and verifies
/// that money was conserved and every acknowledged command is known.
///
/// Without --addr it runs an embedded payrail server (durable, fsync on) on a
/// temporary data directory and stops it at the end.
#[derive(Clone, Debug, Parser)]
#[command(name = "payrail-loadtest", version)]
pub struct Options {
    /// Drive a running server at HOST:PORT instead of an embedded one.
    #[arg(long)]
    pub addr: Option<String>,

    /// Data directory of the running server (--addr): its local gateway
    /// secret is read from DIR/gateway.toml.
    #[arg(long, value_name = "DIR", default_value = "./payrail-data")]
    pub data_dir: PathBuf,

    /// Command mix.
    #[arg(long, value_enum, default_value = "wallet")]
    pub mix: MixName,

    /// How accounts are picked.
    #[arg(long, value_enum, default_value = "uniform")]
    pub skew: SkewName,

    /// Zipf exponent (with --skew zipf).
    #[arg(long, default_value_t = 1.0)]
    pub zipf_s: f64,

    /// Customers to seed; each gets 1 to 3 currency accounts.
    #[arg(long, default_value_t = 1_000_000)]
    pub customers: u64,

    /// Seed exactly N customer accounts, one per customer, instead of
    /// --customers' 1 to 3 each (for comparisons by account count).
    #[arg(long, value_name = "N")]
    pub accounts: Option<u64>,

    /// Merchants to seed (one account each).
    #[arg(long, default_value_t = 10_000)]
    pub merchants: u64,

    /// Connections to the server (per generator process).
    #[arg(long, default_value_t = CONNECTIONS_DEFAULT)]
    pub connections: usize,

    /// Closed loop: requests each connection keeps in flight.
    #[arg(long, default_value_t = PIPELINE_DEFAULT)]
    pub pipeline: usize,

    /// Slots per batch (closed loop: every batch; open loop: at most).
    #[arg(long, default_value_t = BATCH_DEFAULT)]
    pub batch: usize,

    /// Open loop: offer R commands per second, whatever the server does.
    #[arg(long, value_name = "R")]
    pub rate: Option<u64>,

    /// Open loop: send what arrived every INTERVAL (e.g. 1ms, 500us).
    #[arg(long, value_parser = parse_duration, default_value = "1ms")]
    pub interval: Duration,

    /// How long to measure (e.g. 30s, 2m).
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub duration: Duration,

    /// Load before measuring, excluded from every figure.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    pub warmup: Duration,

    /// Write report.json and report.html into DIR (created if needed;
    /// earlier reports there are replaced).
    #[arg(long, value_name = "DIR", default_value = "target/loadtest")]
    pub report: PathBuf,

    /// Write no report files.
    #[arg(long)]
    pub no_report: bool,

    /// Seed of the workload's random choices (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,

    /// Most acknowledged commands looked up again at the end (a uniform
    /// sample when there are more).
    #[arg(long, default_value_t = 2_000_000)]
    pub verify_max: usize,

    /// No progress line each second.
    #[arg(long)]
    pub quiet: bool,

    /// Risk policy put in force before the load: `builtin` (the harness's
    /// policy, loadtest/risk-policy.toml), `none`, or a TOML file. Default:
    /// builtin for the wallet mix on the embedded server, none for the
    /// transfers mix; with --addr the server's policy is left alone unless
    /// this is given.
    #[arg(long, value_name = "builtin|none|FILE")]
    pub risk_policy: Option<String>,

    /// Embedded server: take its `[engine]` and `[limits]` settings from
    /// this payrail.toml, read and checked as `payrail serve --config`
    /// reads it (for example a smaller `engine.idempotency_records_max`).
    /// The harness still chooses the rest: 127.0.0.1 on a free port, a
    /// temporary data directory and its local gateway, no metrics endpoint,
    /// the policy of --risk-policy and the TLS of --tls; --prefault, when
    /// given, overrides the file's `engine.prefault`.
    #[arg(long, value_name = "FILE")]
    pub server_config: Option<PathBuf>,

    /// Embedded server: touch the memory of the tables allocated at start
    /// before serving, as `payrail serve` does [default: true].
    #[arg(long, value_name = "BOOL", env = "PAYRAIL_PREFAULT")]
    pub prefault: Option<bool>,

    /// Latency against throughput: a closed-loop run finds the peak, then
    /// open-loop steps offer rising shares of it (--sweep-steps), each for
    /// --step-duration after --warmup.
    #[arg(long)]
    pub sweep: bool,

    /// Sweep steps, percent of the closed-loop peak, rising.
    #[arg(
        long,
        value_name = "P,P,...",
        default_value = "10,20,30,40,50,60,70,80,90,100"
    )]
    pub sweep_steps: String,

    /// Measured time of each sweep step (and of the sweep's closed-loop peak).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    pub step_duration: Duration,

    /// A long run (instead of --duration) with the server's memory,
    /// checkpoint pauses and log size sampled each second; the verdict
    /// fails on a stall longer than --stall-max.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub soak: Option<Duration>,

    /// Longest time without any reply a soak accepts.
    #[arg(long, value_parser = parse_duration, default_value = "1s")]
    pub stall_max: Duration,

    /// Run the load generator in N processes against the one server (this
    /// process seeds, samples the server and verifies; with --rate each
    /// process offers R/N).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,

    /// Speak TLS to the embedded server (rustls, as the server), which
    /// serves it with a certificate made for the run. With --addr, give
    /// --tls-ca instead.
    #[arg(long, conflicts_with = "addr")]
    pub tls: bool,

    /// With --addr: speak TLS, trusting the CA certificates (PEM) in FILE
    /// for the server's certificate.
    #[arg(long, value_name = "FILE", requires = "addr")]
    pub tls_ca: Option<PathBuf>,

    /// The server's name in its certificate [default: the host of --addr].
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,

    /// A client certificate (PEM) and its key, for a server that asks for
    /// one (`tls.client_ca`).
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Internal (--processes): run as generator process I, load only.
    #[arg(long, hide = true, value_name = "I")]
    pub worker_index: Option<usize>,

    /// Internal (--processes): the run's account tag.
    #[arg(long, hide = true)]
    pub worker_tag: Option<u64>,

    /// Internal (--processes): when the load starts, ns since the epoch.
    #[arg(long, hide = true)]
    pub worker_start_unix_ns: Option<u64>,

    /// Internal (--processes): where to write this process's results.
    #[arg(long, hide = true)]
    pub worker_output: Option<PathBuf>,
}

/// The run's shape once the options are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loop {
    Closed { pipeline: usize },
    Open { rate: u64, interval: Duration },
}

impl Options {
    /// Checks every bound; the message says what to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.connections == 0 || self.connections > CONNECTIONS_MAX {
            return Err(format!("--connections must be 1 to {CONNECTIONS_MAX}"));
        }
        if self.pipeline == 0 || self.pipeline > PIPELINE_MAX {
            return Err(format!("--pipeline must be 1 to {PIPELINE_MAX}"));
        }
        if self.batch == 0 || self.batch > BATCH_COMMANDS_MAX {
            return Err(format!("--batch must be 1 to {BATCH_COMMANDS_MAX}"));
        }
        if self.customers > CUSTOMERS_MAX {
            return Err(format!("--customers must be at most {CUSTOMERS_MAX}"));
        }
        if let Some(accounts) = self.accounts {
            if accounts > CUSTOMERS_MAX {
                return Err(format!("--accounts must be at most {CUSTOMERS_MAX}"));
            }
        }
        if self.customer_count() < 2 {
            return Err("at least 2 customers are needed (--customers or --accounts)".into());
        }
        if self.merchants > MERCHANTS_MAX {
            return Err(format!("--merchants must be at most {MERCHANTS_MAX}"));
        }
        if !(self.zipf_s.is_finite() && self.zipf_s > 0.0 && self.zipf_s <= 10.0) {
            return Err("--zipf-s must be above 0 and at most 10".into());
        }
        if self.duration.is_zero() {
            return Err("--duration must be more than 0s".into());
        }
        if self.duration.as_secs() + self.warmup.as_secs() > RUN_SECONDS_MAX {
            return Err(format!(
                "--duration plus --warmup must be at most {RUN_SECONDS_MAX} s"
            ));
        }
        if let Some(rate) = self.rate {
            if rate == 0 {
                return Err("--rate must be at least 1 command/s".into());
            }
            if self.interval < Duration::from_micros(100) || self.interval > Duration::from_secs(1)
            {
                return Err("--interval must be 100us to 1s".into());
            }
        }
        if self.verify_max > VERIFY_MAX_CEILING {
            return Err(format!("--verify-max must be at most {VERIFY_MAX_CEILING}"));
        }
        if self.addr.is_some() && self.server_config.is_some() {
            return Err(
                "--server-config is for the embedded server: with --addr, give the server its own --config"
                    .into(),
            );
        }
        if let Some(addr) = &self.addr {
            if addr.parse::<SocketAddr>().is_err() && !addr.contains(':') {
                return Err(format!("--addr '{addr}' is not HOST:PORT"));
            }
        }
        if self.sweep {
            self.sweep_percents()?;
            if self.rate.is_some() || self.soak.is_some() {
                return Err("--sweep chooses its own rates: no --rate or --soak with it".into());
            }
            if self.processes > 1 {
                return Err("--sweep runs in one process: no --processes with it".into());
            }
            if self.step_duration.is_zero() || self.step_duration.as_secs() > 3_600 {
                return Err("--step-duration must be more than 0s and at most 1h".into());
            }
        }
        if let Some(soak) = self.soak {
            if soak.is_zero() || soak.as_secs() + self.warmup.as_secs() > RUN_SECONDS_MAX {
                return Err(format!(
                    "--soak plus --warmup must be more than 0s and at most {RUN_SECONDS_MAX} s"
                ));
            }
        }
        if self.stall_max.is_zero() {
            return Err("--stall-max must be more than 0s".into());
        }
        if self.processes == 0 || self.processes > PROCESSES_MAX {
            return Err(format!("--processes must be 1 to {PROCESSES_MAX}"));
        }
        if let Some(rate) = self.rate {
            if rate < self.processes as u64 {
                return Err("--rate must be at least one command/s per process".into());
            }
        }
        if let Some(policy) = &self.risk_policy {
            if policy.is_empty() {
                return Err("--risk-policy must be builtin, none or a file".into());
            }
        }
        Ok(())
    }

    /// The sweep's steps, percent of the peak, checked.
    pub fn sweep_percents(&self) -> Result<Vec<u32>, String> {
        let mut percents = Vec::new();
        for part in self.sweep_steps.split(',') {
            let percent: u32 = part
                .trim()
                .parse()
                .map_err(|_| format!("--sweep-steps: '{part}' is not a whole percent"))?;
            if percent == 0 || percent > 1_000 {
                return Err("--sweep-steps: each step is 1 to 1000 percent".into());
            }
            if percents.last().is_some_and(|last| *last >= percent) {
                return Err("--sweep-steps must rise".into());
            }
            percents.push(percent);
        }
        if percents.is_empty() || percents.len() > SWEEP_STEPS_MAX {
            return Err(format!("--sweep-steps takes 1 to {SWEEP_STEPS_MAX} steps"));
        }
        Ok(percents)
    }

    /// How long the measured window of a plain run or a soak is.
    pub fn measured(&self) -> Duration {
        self.soak.unwrap_or(self.duration)
    }

    /// Customers to seed.
    pub fn customer_count(&self) -> u64 {
        self.accounts.unwrap_or(self.customers)
    }

    pub fn run_loop(&self) -> Loop {
        match self.rate {
            Some(rate) => Loop::Open {
                rate,
                interval: self.interval,
            },
            None => Loop::Closed {
                pipeline: self.pipeline,
            },
        }
    }
}

/// "30s", "2m", "500ms", "250us", "1h", "1m30s" or plain seconds ("30").
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("'{text}' lacks a unit (s, ms, us, m, h)"))?;
        if digits == 0 {
            return Err(format!("'{text}' is not a duration such as 30s or 2m"));
        }
        let number: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("'{text}' is not a duration such as 30s or 2m"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds_per_unit = match unit {
            "h" => 3_600.0,
            "m" | "min" => 60.0,
            "s" | "sec" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => {
                return Err(format!(
                    "unknown unit '{unit}' in '{text}' (h, m, s, ms, us)"
                ))
            }
        };
        let seconds = number * seconds_per_unit;
        if !seconds.is_finite() || seconds > 1e9 {
            return Err(format!("'{text}' is too long"));
        }
        total += Duration::from_secs_f64(seconds);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("2m", Duration::from_secs(120)),
            ("1m30s", Duration::from_secs(90)),
            ("500ms", Duration::from_millis(500)),
            ("250us", Duration::from_micros(250)),
            ("0s", Duration::ZERO),
            ("45", Duration::from_secs(45)),
            ("1h", Duration::from_secs(3_600)),
            ("1.5s", Duration::from_millis(1_500)),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
        for bad in ["", "s", "10x", "abc", "1e99h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        let options = Options::parse_from(["payrail-loadtest"]);
        assert_eq!(options.validate(), Ok(()));
        assert_eq!(options.batch, 256);
        assert_eq!(options.run_loop(), Loop::Closed { pipeline: 2 });
        assert_eq!(
            options.sweep_percents(),
            Ok(vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
        );
        for bad in [
            &["--batch", "9000"][..],
            &["--sweep", "--sweep-steps", "50,40"],
            &["--sweep", "--sweep-steps", "0"],
            &["--sweep", "--rate", "1000"],
            &["--processes", "0"],
            &["--soak", "0s"],
        ] {
            let options =
                Options::parse_from(std::iter::once("payrail-loadtest").chain(bad.iter().copied()));
            assert!(options.validate().is_err(), "{bad:?}");
        }
    }
}
