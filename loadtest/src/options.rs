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

    /// Connections to the server.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,

    /// Closed loop: requests each connection keeps in flight.
    #[arg(long, default_value_t = 4)]
    pub pipeline: usize,

    /// Commands per batch (closed loop: every batch; open loop: at most).
    #[arg(long, default_value_t = BATCH_COMMANDS_MAX)]
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
        if let Some(addr) = &self.addr {
            if addr.parse::<SocketAddr>().is_err() && !addr.contains(':') {
                return Err(format!("--addr '{addr}' is not HOST:PORT"));
            }
        }
        Ok(())
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
        assert_eq!(options.batch, 8_190);
        assert_eq!(options.run_loop(), Loop::Closed { pipeline: 4 });
        let options = Options::parse_from(["payrail-loadtest", "--batch", "9000"]);
        assert!(options.validate().is_err());
    }
}
