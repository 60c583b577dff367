//! The `payrail` command line: what it accepts (clap) and how each client
//! subcommand runs.
//!
//! # Layout
//! - this file: the arguments.
//! - [`run`]: connect, send one command or query, print the outcome.
//! - [`parse`]: decimal amounts, command ids and durations.

pub mod parse;
pub mod run;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};
use payrail_engine::Currency;

/// payrail: the ledger behind a QR-code mobile wallet.
#[derive(Debug, Parser)]
#[command(name = "payrail", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine and serve gateways (stops cleanly on Ctrl-C or SIGTERM).
    Serve(ServeArgs),
    /// Open, inspect, freeze, unfreeze or close accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Top up an account (money enters from a bank or card).
    Deposit(DepositArgs),
    /// Move money from one account to another in the same currency.
    Transfer(TransferArgs),
    /// Withdraw in two phases: hold, then post or void.
    #[command(subcommand)]
    Withdraw(WithdrawCommand),
    /// Show the server's counters.
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:7400, or the config file's].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Data directory [default: ./payrail-data, or the config file's].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML configuration file (every field has a default).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// How a client subcommand finds and authenticates to the server.
#[derive(Debug, Args, Clone)]
pub struct ConnectArgs {
    /// Server address.
    #[arg(
        long,
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:7400",
        env = "PAYRAIL_ADDR"
    )]
    pub addr: String,
    /// The server's data directory, to read the local gateway secret from.
    #[arg(long, value_name = "DIR", default_value = "./payrail-data")]
    pub data_dir: PathBuf,
    /// Connect as this gateway instead of the local one (needs --secret-file).
    #[arg(long, value_name = "NAME", requires = "secret_file")]
    pub gateway: Option<String>,
    /// File holding the gateway's secret: hex, or a gateway.toml (needs --gateway).
    #[arg(long, value_name = "FILE", requires = "gateway")]
    pub secret_file: Option<PathBuf>,
    /// Machine output: one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// The command id, for idempotent retries.
#[derive(Debug, Args, Clone, Copy)]
pub struct IdArgs {
    /// Command id (32 hex digits or a decimal number). Without it a random
    /// one is drawn and printed; run a command again with the same id to
    /// retry it safely.
    #[arg(long, value_name = "ID", value_parser = parse::command_id)]
    pub id: Option<u128>,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Open a customer or merchant account.
    Open(OpenArgs),
    /// Show an account's balances and state.
    Show(AccountArgs),
    /// Freeze an account: no money moves in or out.
    Freeze(AccountCommandArgs),
    /// Unfreeze a frozen account.
    Unfreeze(AccountCommandArgs),
    /// Close an account whose balance is zero.
    Close(AccountCommandArgs),
    /// Set a customer's KYC tier.
    Kyc(KycArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("kind").required(true).args(["customer", "merchant"])))]
pub struct OpenArgs {
    /// Account id.
    #[arg(value_name = "ID")]
    pub account: u64,
    /// The person or business holding the account.
    #[arg(long, value_name = "N")]
    pub owner: u64,
    /// A customer (wallet) account.
    #[arg(long)]
    pub customer: bool,
    /// KYC tier of a customer [default: 0].
    #[arg(long, value_name = "T", conflicts_with = "merchant")]
    pub kyc_tier: Option<u8>,
    /// A merchant account (needs --mcc).
    #[arg(long, requires = "mcc")]
    pub merchant: bool,
    /// Merchant category code (ISO 18245).
    #[arg(long, value_name = "MCC", conflicts_with = "customer")]
    pub mcc: Option<u16>,
    /// ISO 4217 currency (code or number).
    #[arg(long, value_name = "CUR")]
    pub currency: Currency,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct AccountArgs {
    /// Account id.
    #[arg(value_name = "ID")]
    pub account: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct AccountCommandArgs {
    /// Account id.
    #[arg(value_name = "ID")]
    pub account: u64,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct KycArgs {
    /// Account id.
    #[arg(value_name = "ID")]
    pub account: u64,
    /// The new KYC tier.
    #[arg(value_name = "TIER")]
    pub tier: u8,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct DepositArgs {
    /// Account to credit.
    pub account: u64,
    /// Amount as a decimal, like 12.50.
    pub amount: String,
    /// ISO 4217 currency (code or number).
    pub currency: Currency,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct TransferArgs {
    /// Paying account.
    pub from: u64,
    /// Receiving account.
    pub to: u64,
    /// Amount as a decimal, like 12.50.
    pub amount: String,
    /// ISO 4217 currency (code or number).
    pub currency: Currency,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
pub enum WithdrawCommand {
    /// Hold money for a withdrawal; prints the hold id.
    Hold(HoldArgs),
    /// Complete a held withdrawal: the money leaves.
    Post(HoldIdArgs),
    /// Cancel a held withdrawal: the money is available again.
    Void(HoldIdArgs),
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    /// Account to withdraw from.
    pub account: u64,
    /// Amount as a decimal, like 12.50.
    pub amount: String,
    /// ISO 4217 currency (code or number).
    pub currency: Currency,
    /// The hold is released if not posted within this long (like 90s, 15m, 2h, 1d).
    #[arg(long, value_name = "DURATION", default_value = "15m", value_parser = parse::duration_ms)]
    pub timeout: u64,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct HoldIdArgs {
    /// The hold's id (the command id of `withdraw hold`).
    #[arg(value_name = "HOLD_ID", value_parser = parse::command_id)]
    pub hold: u128,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn arguments_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn account_kind_flags() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["payrail", "account", "open", "1"].iter().chain(args))
        };
        assert!(parse(&["--owner", "1", "--customer", "--currency", "CNY"]).is_ok());
        assert!(parse(&[
            "--owner",
            "1",
            "--customer",
            "--kyc-tier",
            "2",
            "--currency",
            "CNY"
        ])
        .is_ok());
        assert!(parse(&[
            "--owner",
            "1",
            "--merchant",
            "--mcc",
            "5812",
            "--currency",
            "CNY"
        ])
        .is_ok());
        assert!(
            parse(&["--owner", "1", "--currency", "CNY"]).is_err(),
            "kind required"
        );
        assert!(
            parse(&["--owner", "1", "--merchant", "--currency", "CNY"]).is_err(),
            "mcc required"
        );
        assert!(parse(&[
            "--owner",
            "1",
            "--customer",
            "--merchant",
            "--mcc",
            "1",
            "--currency",
            "CNY"
        ])
        .is_err());
        assert!(parse(&[
            "--owner",
            "1",
            "--customer",
            "--mcc",
            "1",
            "--currency",
            "CNY"
        ])
        .is_err());
        assert!(parse(&["--owner", "1", "--customer", "--currency", "XYZ"]).is_err());
    }
}
