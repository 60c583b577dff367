//! `payrail card bind|verify|unbind|list`: the bank cards and bank accounts
//! bound to a customer's wallet (docs/instruments.md). Top-ups and
//! withdrawals name one with `deposit --from` and `withdraw hold --to`.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use payrail_engine::instrument::{
    BankName, InstrumentKind, InstrumentToken, InstrumentView, INSTRUMENT_BANK_BYTES,
    INSTRUMENT_TOKEN_BYTES,
};
use payrail_engine::{AccountId, CommandKind, Currency, InstrumentBind, InstrumentId, Status};
use serde_json::{json, Value};

use super::run::{execute, fail, fields, init_tracing, run_client};
use super::{ConnectArgs, IdArgs};
use payrail_api::client::snake_case;

#[derive(Debug, Subcommand)]
pub enum CardCommand {
    /// Bind a bank card or bank account to a customer (by the gateway's
    /// token: never the card number). It is usable once verified.
    Bind(BindArgs),
    /// Report the gateway's check of an instrument (card verification,
    /// micro-deposit): passed, or --failed.
    Verify(VerifyArgs),
    /// Unbind an instrument: no top-up or withdrawal may name it any more.
    Unbind(UnbindArgs),
    /// List a customer's instruments.
    List(ListArgs),
}

/// What kind of instrument.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KindArg {
    Card,
    BankAccount,
}

#[derive(Debug, Args)]
pub struct BindArgs {
    /// Any customer account of the holder.
    #[arg(value_name = "ACCOUNT")]
    pub account: u64,
    /// The gateway's number for the instrument, unique per customer; the
    /// instrument is then OWNER/NUMBER.
    #[arg(long, value_name = "N")]
    pub number: u32,
    #[arg(long, value_enum, default_value = "card")]
    pub kind: KindArg,
    /// The gateway's token for the card or account (1-32 printable ASCII).
    #[arg(long, value_name = "TOKEN")]
    pub token: String,
    /// The issuing bank (1-16 printable ASCII).
    #[arg(long, value_name = "BANK")]
    pub bank: String,
    /// The issuing bank's country, ISO 3166 alpha-2, like CN.
    #[arg(long, value_name = "CC")]
    pub country: String,
    /// The last four digits of the card or account number.
    #[arg(long, value_name = "DIGITS")]
    pub last_four: String,
    /// The currency the instrument holds (withdrawals go to it from
    /// accounts of this currency).
    #[arg(long, value_name = "CUR")]
    pub currency: Currency,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The instrument, OWNER/NUMBER (as `card list` shows it).
    #[arg(value_name = "INSTRUMENT")]
    pub instrument: InstrumentId,
    /// The check failed (the instrument stays unusable).
    #[arg(long)]
    pub failed: bool,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct UnbindArgs {
    /// The instrument, OWNER/NUMBER.
    #[arg(value_name = "INSTRUMENT")]
    pub instrument: InstrumentId,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Any account of the customer.
    #[arg(value_name = "ACCOUNT")]
    pub account: u64,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `bank ****1234`, as a person recognises a card.
pub(super) fn describe(bank: &str, last_four: &[u8; 4]) -> String {
    format!("{bank} ****{}", String::from_utf8_lossy(last_four))
}

pub fn bind(args: BindArgs) -> ExitCode {
    let connect = &args.connect;
    let Some(token) = InstrumentToken::new(&args.token) else {
        let message =
            format!("--token must be 1 to {INSTRUMENT_TOKEN_BYTES} printable ASCII characters");
        return fail(connect, &message, None);
    };
    let Some(bank) = BankName::new(&args.bank) else {
        let message =
            format!("--bank must be 1 to {INSTRUMENT_BANK_BYTES} printable ASCII characters");
        return fail(connect, &message, None);
    };
    let (Ok(country), Ok(last_four)) = (
        <[u8; 2]>::try_from(args.country.as_bytes()),
        <[u8; 4]>::try_from(args.last_four.as_bytes()),
    ) else {
        return fail(
            connect,
            "--country is two letters (CN) and --last-four four digits",
            None,
        );
    };
    let bind = InstrumentBind {
        customer: AccountId(args.account),
        number: args.number,
        kind: match args.kind {
            KindArg::Card => InstrumentKind::Card,
            KindArg::BankAccount => InstrumentKind::BankAccount,
        },
        token,
        bank,
        country,
        last_four,
        currency: args.currency,
    };
    // Refused here too, so that a card number never leaves this machine.
    if bind.carries_card_number() {
        let status = Status::LooksLikeCardNumber;
        let message = format!("{} ({})", status.description(), snake_case(status.name()));
        return fail(connect, &message, None);
    }
    let what = format!(
        "card bind {} number {} ({}, {})",
        args.account,
        args.number,
        bind.kind.name(),
        describe(bind.bank.as_str(), &bind.last_four)
    );
    let details = fields([
        ("account", json!(args.account)),
        ("number", json!(args.number)),
        ("kind", json!(bind.kind.name())),
        ("bank", json!(bind.bank.as_str())),
        ("country", json!(args.country)),
        ("last_four", json!(args.last_four)),
        ("currency", json!(args.currency.code())),
    ]);
    execute(
        connect,
        args.id,
        what,
        CommandKind::BindInstrument(bind),
        details,
    )
}

pub fn verify(args: VerifyArgs) -> ExitCode {
    let passed = !args.failed;
    let what = format!(
        "card verify {} ({})",
        args.instrument,
        if passed { "passed" } else { "failed" }
    );
    let details = fields([
        ("instrument", json!(args.instrument.to_string())),
        ("passed", json!(passed)),
    ]);
    let kind = CommandKind::VerifyInstrument {
        instrument: args.instrument,
        passed,
    };
    execute(&args.connect, args.id, what, kind, details)
}

pub fn unbind(args: UnbindArgs) -> ExitCode {
    let what = format!("card unbind {}", args.instrument);
    let details = fields([("instrument", json!(args.instrument.to_string()))]);
    let kind = CommandKind::UnbindInstrument {
        instrument: args.instrument,
    };
    execute(&args.connect, args.id, what, kind, details)
}

pub fn list(args: ListArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let account = AccountId(args.account);
    let views = match run_client(connect, None, move |client| async move {
        client.instruments(account).await
    }) {
        Ok(Ok(views)) => views,
        Ok(Err(status)) => {
            return super::risk::refused(connect, &format!("card list {}", args.account), status)
        }
        Err(exit) => return exit,
    };
    if connect.json {
        let rows: Vec<Value> = views.iter().map(view_json).collect();
        outln!("{}", json!({ "ok": true, "instruments": rows }));
    } else if views.is_empty() {
        outln!(
            "no instruments are bound to the customer of account {}",
            args.account
        );
    } else {
        outln!(
            "{:<14} {:<12} {:<24} {:<7} {:<8} state",
            "instrument",
            "kind",
            "bank",
            "country",
            "currency"
        );
        for view in &views {
            outln!(
                "{:<14} {:<12} {:<24} {:<7} {:<8} {}",
                view.instrument.to_string(),
                view.kind.name(),
                describe(view.bank.as_str(), &view.last_four),
                String::from_utf8_lossy(&view.country),
                view.currency.code(),
                view.state.name()
            );
        }
    }
    ExitCode::SUCCESS
}

fn view_json(view: &InstrumentView) -> Value {
    json!({
        "instrument": view.instrument.to_string(),
        "kind": view.kind.name(),
        "token": view.token.as_str(),
        "bank": view.bank.as_str(),
        "country": String::from_utf8_lossy(&view.country),
        "last_four": String::from_utf8_lossy(&view.last_four),
        "currency": view.currency.code(),
        "state": view.state.name(),
        "bound_at_ns": view.bound_at,
        "changed_at_ns": view.changed_at,
    })
}
