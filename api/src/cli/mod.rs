//! The `payrail` command line: what it accepts (clap) and how each client
//! subcommand runs.
//!
//! # Layout
//! - this file: the arguments, and the output macros every subcommand uses.
//! - [`run`]: connect, send one command or query, print the outcome.
//! - [`qr`]: QR payments: decode, merchant onboarding and codes, paying,
//!   payment codes, refunds.
//! - [`risk`]: `risk` and `budget` subcommands, the payment risk flags,
//!   printing a result's risk decision or budget warning.
//! - [`fx`]: FX rates, floors, quotes and conversions.
//! - [`card`]: bank cards and bank accounts bound to a customer.
//! - [`parse`]: decimal amounts, command ids, durations and payment codes.

/// `println!` that ignores a closed stdout (`payrail status | head`) instead
/// of panicking.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that ignores a closed stderr.
macro_rules! errln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

pub mod card;
pub mod fx;
pub mod ops;
pub mod parse;
pub mod qr;
pub mod risk;
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
    /// Decode a merchant-presented QR payload, or pay one.
    #[command(subcommand)]
    Qr(QrCommand),
    /// Merchant onboarding: register the codes that pay an account, make codes.
    #[command(subcommand)]
    Merchant(MerchantCommand),
    /// User-presented payment codes: issue one for a customer, charge one.
    #[command(subcommand)]
    Code(CodeCommand),
    /// Return part or all of a payment to the account that paid.
    Refund(RefundArgs),
    /// The inline risk rules: set or show the policy, a customer's audit trail.
    #[command(subcommand)]
    Risk(RiskCommand),
    /// Monthly budgets per spending category, and spending by category.
    #[command(subcommand)]
    Budget(BudgetCommand),
    /// FX: set, load and list rates, set liquidity floors, quote and convert.
    #[command(subcommand)]
    Fx(fx::FxCommand),
    /// Bank cards and bank accounts bound to a customer: bind, verify,
    /// unbind, list.
    #[command(subcommand)]
    Card(card::CardCommand),
    /// An account's movements, newest first, a page at a time.
    History(HistoryArgs),
    /// Commands: what became of one.
    #[command(subcommand)]
    Tx(TxCommand),
    /// Ask the running server for a consistent backup of its data directory
    /// (restore: `payrail serve --data-dir DIR`).
    Backup(BackupArgs),
    /// Offline check of a data directory (server stopped): load the
    /// checkpoint, replay the log, check the digest and that money is
    /// conserved; print a summary. Exit 1 if a check fails.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// Account id.
    #[arg(value_name = "ACCOUNT")]
    pub account: u64,
    /// Oldest time shown: a UTC date (2026-11-22, meaning 00:00 UTC), date
    /// and time (2026-11-22T08:30:00Z) or ns since the epoch.
    #[arg(long, value_name = "TIME", value_parser = parse::time_ns)]
    pub from: Option<u64>,
    /// Newest time shown, inclusive (same forms as --from: a date alone is
    /// 00:00 UTC that day, so `--to 2026-11-23` ends with 2026-11-22).
    #[arg(long, value_name = "TIME", value_parser = parse::time_ns)]
    pub to: Option<u64>,
    /// Entries in the page (1 to 1000).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: u32,
    /// Continue after this cursor (printed under the previous page).
    #[arg(long, value_name = "CURSOR", value_parser = parse::cursor)]
    pub cursor: Option<u128>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
pub enum TxCommand {
    /// A command's status and the movements it made.
    Show(TxShowArgs),
}

#[derive(Debug, Args)]
pub struct TxShowArgs {
    /// The command id (32 hex digits or a decimal number).
    #[arg(value_name = "ID", value_parser = parse::command_id)]
    pub id: u128,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// Directory to create on the server's machine (must not exist); a
    /// relative path is taken from this shell's working directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The data directory (of a stopped server, or a backup).
    #[arg(value_name = "DATA_DIR")]
    pub data_dir: PathBuf,
    /// The server's config file: replay needs its idempotency settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Machine output: one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
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
    /// Shards: state-machine threads, each owning a partition of the
    /// accounts [default: cores - 2, at least 1, or the config file's].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub shards: Option<u32>,
    /// Risk policy TOML (docs/risk.md) to put in force at start, through the
    /// log, if it differs from the policy in force [default: the config
    /// file's `risk_policy`, else keep the policy in force].
    #[arg(long, value_name = "FILE")]
    pub risk_policy: Option<PathBuf>,
    /// Existing directory under which `payrail backup` may write backups
    /// [default: the config file's `backup_root`, else backups are refused].
    #[arg(long, value_name = "DIR")]
    pub backup_root: Option<PathBuf>,
    /// Serve Prometheus metrics here [default: 127.0.0.1:9400, or the config file's].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_metrics")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve no metrics.
    #[arg(long)]
    pub no_metrics: bool,
    /// Touch the memory of the tables allocated at start before serving
    /// [default: the config file's `engine.prefault`, true].
    #[arg(long, value_name = "BOOL", env = "PAYRAIL_PREFAULT")]
    pub prefault: Option<bool>,
}

/// What the gateway knows about a payment, for the risk rules.
#[derive(Debug, Args, Clone, Default)]
pub struct RiskArgs {
    /// The customer's device id (a number the gateway assigns; not 0).
    #[arg(long, value_name = "ID")]
    pub device: Option<u64>,
    /// Coarse location, LAT,LON in decimal degrees (kept to 0.01°), like 31.23,121.47.
    #[arg(long, value_name = "LAT,LON", allow_hyphen_values = true)]
    pub location: Option<String>,
    /// Country where the payment is made, ISO 3166 alpha-2, like CN.
    #[arg(long, value_name = "CC")]
    pub country: Option<String>,
    /// The customer passed a second factor: re-submit a payment that got
    /// step_up_required (with a new --id).
    #[arg(long)]
    pub step_up: bool,
    /// Serve Prometheus metrics here [default: 127.0.0.1:9400, or the config file's].
    #[arg(long, value_name = "ADDR", conflicts_with = "no_metrics")]
    pub metrics_listen: Option<SocketAddr>,
    /// Serve no metrics.
    #[arg(long)]
    pub no_metrics: bool,
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
    /// Connect over TLS, trusting the CA certificates in FILE (PEM) for the
    /// server's certificate (a server with `[tls]` on).
    #[arg(long, value_name = "FILE", env = "PAYRAIL_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The name the server's certificate must be valid for [default: the
    /// host part of --addr].
    #[arg(long, value_name = "NAME", requires = "tls_ca")]
    pub tls_server_name: Option<String>,
    /// Client certificate chain (PEM) to present over TLS (needs --tls-key).
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
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
    /// The customer's verified card or bank account the money comes from,
    /// OWNER/NUMBER (required once the customer has bound one).
    #[arg(long, value_name = "INSTRUMENT")]
    pub from: Option<payrail_engine::InstrumentId>,
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
    pub risk: RiskArgs,
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
    /// The customer's verified card or bank account (of the account's
    /// currency) the money goes to, OWNER/NUMBER (required once the
    /// customer has bound one).
    #[arg(long, value_name = "INSTRUMENT")]
    pub to: Option<payrail_engine::InstrumentId>,
    #[command(flatten)]
    pub risk: RiskArgs,
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

// Parsed once per process: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum QrCommand {
    /// Parse a payload and print its fields, merchant keys and amount, or
    /// the precise reason it is refused (exit 1). No server needed.
    Decode(QrDecodeArgs),
    /// Pay a merchant-presented code from a customer account (SubmitQr);
    /// prints the payment id, for refunds.
    Pay(QrPayArgs),
}

#[derive(Debug, Args)]
pub struct QrDecodeArgs {
    /// The payload text (quote it for the shell).
    #[arg(value_name = "PAYLOAD")]
    pub payload: String,
    /// Machine output: one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct QrPayArgs {
    /// The paying customer account.
    #[arg(value_name = "PAYER")]
    pub payer: u64,
    /// The payload the payer's app scanned.
    #[arg(value_name = "PAYLOAD")]
    pub payload: String,
    /// The amount, as a decimal in the code's currency, like 12.50: needed
    /// for a static code; for a dynamic code it must equal the code's.
    #[arg(long, value_name = "AMOUNT")]
    pub amount: Option<String>,
    /// A tip, as a decimal in the code's currency: only for codes that ask
    /// for one (tag 55 = 01).
    #[arg(long, value_name = "AMOUNT")]
    pub tip: Option<String>,
    #[command(flatten)]
    pub risk: RiskArgs,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
pub enum MerchantCommand {
    /// Register merchant keys: QR codes carrying them pay this merchant account.
    Register(MerchantRegisterArgs),
    /// Make a merchant's QR code: print the payload and draw it. No server needed.
    Qr(MerchantQrArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["gui", "from_qr"])))]
pub struct MerchantRegisterArgs {
    /// The merchant account.
    #[arg(value_name = "ACCOUNT")]
    pub account: u64,
    /// Globally unique identifier of the scheme (sub-field 00 of the
    /// merchant account template), like br.gov.bcb.pix or A000000677010111.
    #[arg(long, value_name = "GUI", requires = "merchant_id")]
    pub gui: Option<String>,
    /// The merchant id under that scheme, as `payrail qr decode` shows it.
    #[arg(long, value_name = "ID", requires = "gui")]
    pub merchant_id: Option<String>,
    /// Register every merchant key this payload carries instead.
    #[arg(long, value_name = "PAYLOAD", conflicts_with_all = ["gui", "merchant_id"])]
    pub from_qr: Option<String>,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct MerchantQrArgs {
    /// Globally unique identifier of the scheme, like br.gov.bcb.pix.
    #[arg(long, value_name = "GUI")]
    pub gui: String,
    /// The merchant id under that scheme ("type:proxy" for PayNow,
    /// "acquirer:merchant" for DuitNow).
    #[arg(long, value_name = "ID")]
    pub merchant_id: String,
    /// Merchant category code (ISO 18245), four digits.
    #[arg(long, value_name = "MCC")]
    pub mcc: u16,
    /// ISO 4217 currency (code or number).
    #[arg(long, value_name = "CUR")]
    pub currency: Currency,
    /// ISO 3166-1 alpha-2 country code, like CN.
    #[arg(long, value_name = "CC")]
    pub country: String,
    /// Merchant name (at most 25 characters).
    #[arg(long, value_name = "NAME")]
    pub name: String,
    /// Merchant city (at most 15 characters).
    #[arg(long, value_name = "CITY")]
    pub city: String,
    /// Make a dynamic code for one payment of this amount (a decimal, like
    /// 12.50); without it the code is static and the payer types the amount.
    #[arg(long, value_name = "AMOUNT")]
    pub amount: Option<String>,
    /// Print only the payload, without drawing the code.
    #[arg(long)]
    pub no_draw: bool,
    /// Draw for a terminal with light text on a dark background.
    #[arg(long)]
    pub invert: bool,
    /// Machine output: one JSON object on stdout (the code is not drawn).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum CodeCommand {
    /// Issue a payment code for a customer: 18 random digits, single use,
    /// valid for --lifetime; prints it and draws it as a QR code.
    Issue(CodeIssueArgs),
    /// Charge a customer's payment code to a merchant account; prints the
    /// payment id, for refunds.
    Charge(CodeChargeArgs),
}

#[derive(Debug, Args)]
pub struct CodeIssueArgs {
    /// The customer account the code charges.
    #[arg(value_name = "CUSTOMER")]
    pub customer: u64,
    /// How long the code can be charged (5s to 10m, like 60s or 2m).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse::duration_ms)]
    pub lifetime: u64,
    /// Issue this code instead of drawing one: only to retry an earlier
    /// issue with its --id.
    #[arg(long, value_name = "DIGITS", value_parser = parse::payment_code, requires = "id")]
    pub code: Option<u64>,
    /// Print the code without drawing it as a QR code.
    #[arg(long)]
    pub no_draw: bool,
    /// Draw for a terminal with light text on a dark background.
    #[arg(long)]
    pub invert: bool,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct CodeChargeArgs {
    /// The merchant account to credit.
    #[arg(value_name = "MERCHANT")]
    pub merchant: u64,
    /// The customer's 18-digit payment code.
    #[arg(value_name = "CODE", value_parser = parse::payment_code)]
    pub code: u64,
    /// Amount as a decimal, like 12.50.
    #[arg(value_name = "AMOUNT")]
    pub amount: String,
    /// ISO 4217 currency (code or number).
    #[arg(value_name = "CURRENCY")]
    pub currency: Currency,
    #[command(flatten)]
    pub risk: RiskArgs,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct RefundArgs {
    /// The payment's id (the command id `qr pay` or `code charge` printed).
    #[arg(value_name = "PAYMENT_ID", value_parser = parse::command_id)]
    pub payment: u128,
    /// Amount to return, as a decimal, like 5.00.
    #[arg(value_name = "AMOUNT")]
    pub amount: String,
    /// The payment's currency: it gives the amount's decimals, and the ledger
    /// refuses a refund in another currency.
    #[arg(value_name = "CURRENCY")]
    pub currency: Currency,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
pub enum RiskCommand {
    /// Put a risk policy (TOML, docs/risk.md) in force now, through the log.
    SetPolicy(RiskSetPolicyArgs),
    /// Show the policy in force: its digest and the rules that are on.
    Show(RiskShowArgs),
    /// A customer's risk decisions other than approve, newest first.
    Audit(RiskAuditArgs),
}

#[derive(Debug, Args)]
pub struct RiskSetPolicyArgs {
    /// The policy file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct RiskShowArgs {
    /// Also say whether this policy file is the one in force (exit 1 if not).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct RiskAuditArgs {
    /// Any of the customer's accounts.
    #[arg(value_name = "CUSTOMER_ACCOUNT")]
    pub account: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Set a customer account's monthly budget for a spending category.
    Set(BudgetSetArgs),
    /// Spending by category in a month, with each budget's status.
    Show(BudgetShowArgs),
}

#[derive(Debug, Args)]
pub struct BudgetSetArgs {
    /// The customer account (its currency is the budget's).
    #[arg(value_name = "ACCOUNT")]
    pub account: u64,
    /// The category: food_and_drink, groceries, transport, travel, shopping,
    /// entertainment, utilities_and_bills, health, education,
    /// cash_and_transfers or other.
    #[arg(value_name = "CATEGORY")]
    pub category: String,
    /// The monthly budget as a decimal, like 500.00; `none` removes it.
    #[arg(value_name = "AMOUNT")]
    pub amount: String,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct BudgetShowArgs {
    /// The customer account.
    #[arg(value_name = "ACCOUNT")]
    pub account: u64,
    /// The month, like 2026-11 [default: the current month, UTC].
    #[arg(long, value_name = "YYYY-MM")]
    pub month: Option<String>,
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
