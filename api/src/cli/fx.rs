//! `payrail fx ...`: set and list rates, load a rate table, set liquidity
//! floors, quote and convert. docs/fx.md has the rules.

use std::process::ExitCode;

use clap::{ArgGroup, Args, Subcommand};
use payrail_api::client::snake_case;
use payrail_engine::limits::FX_RATES_MAX;
use payrail_engine::{
    AccountId, Command as EngineCommand, CommandId, CommandKind, CommandResult, Currency, Detail,
    FxAmounts, FxMid, FxOrder, FxRateSet, FxRateView, FxSide, FxSource, Query, QueryReply, Status,
};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::parse::{self, amount_minor, decimal_minor, format_command_id, money};
use super::run::{exit_for, fail, fields, init_tracing, run_client, sentence, Retry, EXIT_REFUSED};
use super::{ConnectArgs, IdArgs};

#[derive(Debug, Subcommand)]
pub enum FxCommand {
    /// Set the rate of a currency pair: one BASE is worth MID QUOTE.
    Set(FxSetArgs),
    /// Set many rates from a CSV file, in one batch (nothing is sent if a
    /// line is wrong). Lines: `pair,mid,spread_bps,valid_for,source`, like
    /// `USD/JPY,150.25,30,60s,ECB`; `#` comments, blank lines and a
    /// `pair,...` header are skipped.
    Load(FxLoadArgs),
    /// Show the rate table.
    List(FxListArgs),
    /// Price a conversion between two accounts of one owner and lock it;
    /// prints the quote id, for `payrail fx convert --quote`.
    Quote(FxQuoteArgs),
    /// Convert: a quote at its amounts, or at the current rate.
    Convert(FxConvertArgs),
    /// Let the house FX liquidity account of a currency go down to -AMOUNT.
    Floor(FxFloorArgs),
}

#[derive(Debug, Args)]
pub struct FxSetArgs {
    /// The pair, like USD/JPY (BASE/QUOTE).
    #[arg(value_name = "PAIR", value_parser = pair)]
    pub pair: (Currency, Currency),
    /// Units of QUOTE one unit of BASE is worth, like 150.25.
    #[arg(value_name = "MID", value_parser = mid)]
    pub mid: FxMid,
    /// The house's spread in basis points (0 to 1000).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub spread_bps: u16,
    /// How long conversions may use the rate (like 60s, 15m, 1h).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = parse::duration_ms)]
    pub valid_for: u64,
    /// Where the rate came from: 1 to 8 ASCII characters.
    #[arg(long, value_name = "S", default_value = "manual", value_parser = source)]
    pub source: FxSource,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct FxLoadArgs {
    /// The CSV file.
    #[arg(value_name = "FILE")]
    pub file: std::path::PathBuf,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct FxListArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// The two accounts and the amount of a conversion.
#[derive(Debug, Args, Clone)]
#[command(group(ArgGroup::new("amount").args(["pay", "receive"])))]
pub struct FxOrderArgs {
    /// The paying account.
    #[arg(long, value_name = "ACCOUNT")]
    pub from: Option<u64>,
    /// The receiving account (same owner, another currency).
    #[arg(long, value_name = "ACCOUNT")]
    pub to: Option<u64>,
    /// Pay this much, as a decimal in the paying account's currency.
    #[arg(long, value_name = "AMOUNT")]
    pub pay: Option<String>,
    /// Receive this much, as a decimal in the receiving account's currency.
    #[arg(long, value_name = "AMOUNT")]
    pub receive: Option<String>,
}

#[derive(Debug, Args)]
pub struct FxQuoteArgs {
    #[command(flatten)]
    pub order: FxOrderArgs,
    /// How long the quote can be converted (1s to 5m; never past the rate's validity).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse::duration_ms)]
    pub ttl: u64,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct FxConvertArgs {
    /// Convert this quote (with --from, its paying account) at its amounts.
    #[arg(long, value_name = "QUOTE_ID", value_parser = parse::command_id,
          conflicts_with_all = ["to", "pay", "receive"])]
    pub quote: Option<u128>,
    #[command(flatten)]
    pub order: FxOrderArgs,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

#[derive(Debug, Args)]
pub struct FxFloorArgs {
    /// ISO 4217 currency (code or number).
    #[arg(value_name = "CUR")]
    pub currency: Currency,
    /// How far below zero the liquidity account may go, as a decimal (0: not at all).
    #[arg(value_name = "AMOUNT")]
    pub amount: String,
    #[command(flatten)]
    pub id: IdArgs,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// "USD/JPY", "usd-jpy" or "USDJPY".
pub fn pair(text: &str) -> Result<(Currency, Currency), String> {
    let text = text.trim();
    let (base, quote) = match text.split_once(['/', '-', ':']) {
        Some(parts) => parts,
        None if text.len() == 6 && text.is_ascii() => text.split_at(3),
        None => {
            return Err(format!(
                "'{text}' is not a currency pair: write it like USD/JPY"
            ))
        }
    };
    let base: Currency = base.parse().map_err(|error| format!("{error}"))?;
    let quote: Currency = quote.parse().map_err(|error| format!("{error}"))?;
    if base == quote {
        return Err(format!("'{text}': a pair needs two different currencies"));
    }
    Ok((base, quote))
}

/// A positive decimal rate with at most 18 places.
pub fn mid(text: &str) -> Result<FxMid, String> {
    let text = text.trim();
    let decimal = Decimal::from_str_exact(text).map_err(|_| {
        format!("'{text}' is not a rate: write it as a decimal number, like 150.25")
    })?;
    FxMid::from_decimal(decimal).ok_or_else(|| {
        format!("'{text}' is not a rate: it must be above zero, with at most 18 decimal places")
    })
}

/// 1 to 8 printable ASCII characters.
pub fn source(text: &str) -> Result<FxSource, String> {
    FxSource::new(text.trim()).ok_or_else(|| {
        format!("'{text}' is not a rate source: use 1 to 8 ASCII letters, digits or signs")
    })
}

fn mid_text(mid: FxMid) -> String {
    mid.to_decimal().map_or("?".to_owned(), |d| d.to_string())
}

/// One line of a rate file, or why it is wrong.
fn rate_line(line: &str) -> Result<FxRateSet, String> {
    let columns: Vec<&str> = line.split(',').map(str::trim).collect();
    if columns.len() != 5 {
        return Err(format!(
            "expected 5 columns (pair,mid,spread_bps,valid_for,source), found {}",
            columns.len()
        ));
    }
    let (base, quote) = pair(columns[0])?;
    let spread_bps: u16 = columns[2]
        .parse()
        .map_err(|_| format!("'{}' is not a spread in basis points", columns[2]))?;
    Ok(FxRateSet {
        base,
        quote,
        mid: mid(columns[1])?,
        spread_bps,
        valid_ms: parse::duration_ms(columns[3])?,
        source: source(columns[4])?,
    })
}

/// Every rate of a file, or the first wrong line ("line 3: ...").
pub fn rate_table(text: &str) -> Result<Vec<(usize, FxRateSet)>, String> {
    let mut rates = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if rates.is_empty() && line.to_ascii_lowercase().starts_with("pair") {
            continue;
        }
        if rates.len() == FX_RATES_MAX {
            return Err(format!(
                "line {number}: more than {FX_RATES_MAX} rates (the table's limit)"
            ));
        }
        let rate = rate_line(line).map_err(|reason| format!("line {number}: {reason}"))?;
        rates.push((number, rate));
    }
    if rates.is_empty() {
        return Err("the file holds no rates".to_owned());
    }
    Ok(rates)
}

fn rate_set_details(set: &FxRateSet) -> Map<String, Value> {
    fields([
        ("pair", json!(format!("{}/{}", set.base, set.quote))),
        ("mid", json!(mid_text(set.mid))),
        ("spread_bps", json!(set.spread_bps)),
        ("valid_ms", json!(set.valid_ms)),
        ("source", json!(set.source.as_str())),
    ])
}

/// Sends commands and returns their results (with details).
fn submit(
    connect: &ConnectArgs,
    commands: Vec<EngineCommand>,
) -> Result<Vec<CommandResult>, ExitCode> {
    let first = commands.first().map_or(0, |command| command.id.0);
    let count = commands.len();
    let retry = Retry::with_id(first);
    let results = run_client(connect, Some(&retry), move |client| async move {
        client.submit(commands).await
    })?;
    if results.len() != count {
        return Err(fail(
            connect,
            "the server sent too few results",
            Some(first),
        ));
    }
    Ok(results)
}

fn status_fields(object: &mut Map<String, Value>, status: Status) {
    object.insert("ok".into(), json!(status.is_ok()));
    object.insert("status".into(), json!(snake_case(status.name())));
    object.insert("code".into(), json!(status.code()));
    object.insert("message".into(), json!(status.description()));
}

/// The amounts of a conversion as JSON fields.
pub(super) fn amounts_json(amounts: &FxAmounts) -> Map<String, Value> {
    let (pay, receive) = (amounts.pay_currency, amounts.receive_currency);
    let mut object = fields([
        ("pay", json!(amounts.pay)),
        (
            "pay_decimal",
            json!(decimal_minor(i128::from(amounts.pay), pay)),
        ),
        ("pay_currency", json!(pay.code())),
        ("fee", json!(amounts.fee)),
        (
            "fee_decimal",
            json!(decimal_minor(i128::from(amounts.fee), pay)),
        ),
        ("receive", json!(amounts.receive)),
        (
            "receive_decimal",
            json!(decimal_minor(i128::from(amounts.receive), receive)),
        ),
        ("receive_currency", json!(receive.code())),
        ("mid", json!(mid_text(amounts.mid))),
    ]);
    let pair = if amounts.inverse {
        format!("{}/{}", receive, pay)
    } else {
        format!("{}/{}", pay, receive)
    };
    object.insert("pair".into(), json!(pair));
    if amounts.expires_at != 0 {
        object.insert("expires_at_ns".into(), json!(amounts.expires_at));
    }
    object
}

/// "pay 48.17 CNY (fee 0.25 CNY), receive 1000 JPY at CNY/JPY 20.87".
pub(super) fn amounts_sentence(amounts: &FxAmounts) -> String {
    let (pay, receive) = (amounts.pay_currency, amounts.receive_currency);
    let pair = if amounts.inverse {
        format!("{receive}/{pay}")
    } else {
        format!("{pay}/{receive}")
    };
    format!(
        "pay {} (fee {}), receive {} at {pair} {}",
        money(i128::from(amounts.pay), pay),
        money(i128::from(amounts.fee), pay),
        money(i128::from(amounts.receive), receive),
        mid_text(amounts.mid)
    )
}

pub fn set(args: FxSetArgs) -> ExitCode {
    init_tracing("warn");
    let (base, quote) = args.pair;
    let set = FxRateSet {
        base,
        quote,
        mid: args.mid,
        spread_bps: args.spread_bps,
        valid_ms: args.valid_for,
        source: args.source,
    };
    let id = args.id.id.unwrap_or_else(rand::random::<u128>);
    let results = match submit(
        &args.connect,
        vec![EngineCommand::new(id, CommandKind::SetFxRate(set))],
    ) {
        Ok(results) => results,
        Err(exit) => return exit,
    };
    let status = results[0].status;
    if args.connect.json {
        let mut object = fields([
            ("command", json!("set_fx_rate")),
            ("command_id", json!(format_command_id(id))),
        ]);
        status_fields(&mut object, status);
        object.extend(rate_set_details(&set));
        outln!("{}", Value::Object(object));
    } else {
        outln!(
            "fx set {base}/{quote} {} (spread {} bps, valid {} ms, source {}): {}",
            mid_text(set.mid),
            set.spread_bps,
            set.valid_ms,
            set.source.as_str(),
            sentence(status)
        );
        outln!("command id: {}", format_command_id(id));
    }
    exit_for(status)
}

pub fn load(args: FxLoadArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let name = args.file.display().to_string();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(error) => return fail(connect, &format!("cannot read {name}: {error}"), None),
    };
    let rates = match rate_table(&text) {
        Ok(rates) => rates,
        Err(reason) => return fail(connect, &format!("{name} {reason}; nothing was sent"), None),
    };
    let first = rand::random::<u128>();
    let commands: Vec<EngineCommand> = rates
        .iter()
        .enumerate()
        .map(|(index, (_, set))| {
            EngineCommand::new(
                first.wrapping_add(index as u128),
                CommandKind::SetFxRate(*set),
            )
        })
        .collect();
    let results = match submit(connect, commands.clone()) {
        Ok(results) => results,
        Err(exit) => return exit,
    };
    let refused = results
        .iter()
        .filter(|result| !result.status.is_ok())
        .count();
    if connect.json {
        let lines: Vec<Value> = rates
            .iter()
            .zip(&results)
            .zip(&commands)
            .map(|(((line, set), result), command)| {
                let mut object = fields([
                    ("line", json!(line)),
                    ("command_id", json!(format_command_id(command.id.0))),
                ]);
                status_fields(&mut object, result.status);
                object.extend(rate_set_details(set));
                Value::Object(object)
            })
            .collect();
        outln!(
            "{}",
            json!({ "ok": refused == 0, "rates": lines.len(), "refused": refused, "lines": lines })
        );
    } else {
        for ((line, set), result) in rates.iter().zip(&results) {
            outln!(
                "line {line}: {}/{} {}: {}",
                set.base,
                set.quote,
                mid_text(set.mid),
                sentence(result.status)
            );
        }
        outln!("{} rates set, {refused} refused", rates.len() - refused);
    }
    if refused == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    }
}

pub fn list(args: FxListArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let queries: Vec<Query> = (0..FX_RATES_MAX as u64)
        .map(|index| Query::FxRate { index })
        .collect();
    let replies = match run_client(connect, None, move |client| async move {
        client.query(queries).await
    }) {
        Ok(replies) => replies,
        Err(exit) => return exit,
    };
    let rates: Vec<FxRateView> = replies
        .iter()
        .filter_map(|reply| match reply {
            QueryReply::FxRate(view) => Some(*view),
            _ => None,
        })
        .collect();
    // Display only: how far the sequencer's time is from this machine's.
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
        });
    if connect.json {
        let rows: Vec<Value> = rates
            .iter()
            .map(|rate| {
                json!({
                    "pair": format!("{}/{}", rate.base, rate.quote),
                    "mid": mid_text(rate.mid),
                    "spread_bps": rate.spread_bps,
                    "source": rate.source.as_str(),
                    "set_at_ns": rate.set_at,
                    "valid_until_ns": rate.valid_until,
                    "stale": now_ns >= rate.valid_until,
                })
            })
            .collect();
        outln!("{}", json!({ "ok": true, "rates": rows }));
    } else if rates.is_empty() {
        outln!("no FX rates are set");
    } else {
        outln!(
            "{:<9} {:>24} {:>7} {:<8} validity",
            "pair",
            "mid",
            "spread",
            "source"
        );
        for rate in &rates {
            let validity = if now_ns >= rate.valid_until {
                format!(
                    "stale for {} s",
                    (now_ns - rate.valid_until) / 1_000_000_000
                )
            } else {
                format!("{} s left", (rate.valid_until - now_ns) / 1_000_000_000)
            };
            outln!(
                "{:<9} {:>24} {:>7} {:<8} {validity}",
                format!("{}/{}", rate.base, rate.quote),
                mid_text(rate.mid),
                format!("{} bps", rate.spread_bps),
                rate.source.as_str()
            );
        }
    }
    ExitCode::SUCCESS
}

/// Looks up the two accounts' currencies and reads the amount in the right one.
fn order(connect: &ConnectArgs, args: &FxOrderArgs) -> Result<FxOrder, ExitCode> {
    let (Some(from), Some(to)) = (args.from, args.to) else {
        return Err(fail(
            connect,
            "give --from and --to (or --quote and --from)",
            None,
        ));
    };
    let (side, text) = match (&args.pay, &args.receive) {
        (Some(pay), None) => (FxSide::Pay, pay.clone()),
        (None, Some(receive)) => (FxSide::Receive, receive.clone()),
        _ => return Err(fail(connect, "give one of --pay and --receive", None)),
    };
    let queries = vec![
        Query::Balance {
            account: AccountId(from),
        },
        Query::Balance {
            account: AccountId(to),
        },
    ];
    let replies = run_client(connect, None, move |client| async move {
        client.query(queries).await
    })?;
    let mut currencies = Vec::with_capacity(2);
    for (account, reply) in [from, to].into_iter().zip(&replies) {
        match reply {
            QueryReply::Balance(view) => currencies.push(view.currency),
            QueryReply::Refused(status) => {
                let message = format!("account {account}: {}", status.description());
                return Err(fail(connect, &message, None));
            }
            other => {
                let message = format!("the server answered a balance query with {other:?}");
                return Err(fail(connect, &message, None));
            }
        }
    }
    let (Some(&from_currency), Some(&to_currency)) = (currencies.first(), currencies.get(1)) else {
        return Err(fail(connect, "the server sent too few replies", None));
    };
    let currency = match side {
        FxSide::Pay => from_currency,
        FxSide::Receive => to_currency,
    };
    let amount = amount_minor(&text, currency).map_err(|message| fail(connect, &message, None))?;
    Ok(FxOrder {
        from: AccountId(from),
        to: AccountId(to),
        amount,
        side,
    })
}

/// Prints the outcome of a command answered with FX amounts.
fn report(
    connect: &ConnectArgs,
    what: &str,
    command: &EngineCommand,
    result: &CommandResult,
) -> ExitCode {
    let id_text = format_command_id(command.id.0);
    let status = result.status;
    let amounts = match result.detail {
        Detail::FxConversion(amounts) => Some(amounts),
        _ => None,
    };
    let is_quote = matches!(command.kind, CommandKind::FxQuote { .. });
    if connect.json {
        let mut object = fields([
            ("command", json!(command.kind.name())),
            ("command_id", json!(id_text)),
        ]);
        status_fields(&mut object, status);
        if is_quote && status.is_ok() {
            object.insert("quote_id".into(), json!(id_text));
        }
        if let Some(amounts) = amounts {
            object.extend(amounts_json(&amounts));
        }
        outln!("{}", Value::Object(object));
    } else {
        outln!("{what}: {}", sentence(status));
        if let Some(amounts) = amounts {
            outln!("  {}", amounts_sentence(&amounts));
        }
        if is_quote && status.is_ok() {
            let from = match command.kind {
                CommandKind::FxQuote { order, .. } => order.from.0,
                _ => 0,
            };
            // Display only: the sequencer's clock against this machine's.
            let now_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| {
                    u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX)
                });
            let ttl_note = amounts.map_or(String::new(), |amounts| {
                let left_ms = amounts.expires_at.saturating_sub(now_ns) / 1_000_000;
                format!(" (expires in about {} s)", left_ms.div_ceil(1_000))
            });
            outln!("quote id: {id_text}{ttl_note}; convert with `payrail fx convert --quote {id_text} --from {from}`");
        } else {
            outln!("command id: {id_text}");
        }
    }
    exit_for(status)
}

pub fn quote(args: FxQuoteArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let order = match order(connect, &args.order) {
        Ok(order) => order,
        Err(exit) => return exit,
    };
    let id = args.id.id.unwrap_or_else(rand::random::<u128>);
    let command = EngineCommand::new(
        id,
        CommandKind::FxQuote {
            order,
            ttl_ms: args.ttl,
        },
    );
    let results = match submit(connect, vec![command]) {
        Ok(results) => results,
        Err(exit) => return exit,
    };
    let what = format!("fx quote {} -> {}", order.from.0, order.to.0);
    report(connect, &what, &command, &results[0])
}

pub fn convert(args: FxConvertArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let id = args.id.id.unwrap_or_else(rand::random::<u128>);
    let (kind, what) = match args.quote {
        Some(quote) => {
            let Some(from) = args.order.from else {
                return fail(
                    connect,
                    "--quote needs --from, the quote's paying account",
                    None,
                );
            };
            (
                CommandKind::FxConvertQuote {
                    quote: CommandId(quote),
                    from: AccountId(from),
                },
                format!("fx convert quote {}", format_command_id(quote)),
            )
        }
        None => match order(connect, &args.order) {
            Ok(order) => (
                CommandKind::FxConvert(order),
                format!("fx convert {} -> {}", order.from.0, order.to.0),
            ),
            Err(exit) => return exit,
        },
    };
    let command = EngineCommand::new(id, kind);
    let results = match submit(connect, vec![command]) {
        Ok(results) => results,
        Err(exit) => return exit,
    };
    report(connect, &what, &command, &results[0])
}

pub fn floor(args: FxFloorArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let limit = match args.amount.trim() {
        "0" => 0,
        text => match amount_minor(text, args.currency) {
            Ok(limit) => limit,
            Err(message) => return fail(connect, &message, None),
        },
    };
    let id = args.id.id.unwrap_or_else(rand::random::<u128>);
    let command = EngineCommand::new(
        id,
        CommandKind::SetFxFloor {
            currency: args.currency,
            limit,
        },
    );
    let results = match submit(connect, vec![command]) {
        Ok(results) => results,
        Err(exit) => return exit,
    };
    let status = results[0].status;
    if connect.json {
        let mut object = fields([
            ("command", json!("set_fx_floor")),
            ("command_id", json!(format_command_id(id))),
            ("currency", json!(args.currency.code())),
            ("limit", json!(limit)),
            (
                "limit_decimal",
                json!(decimal_minor(i128::from(limit), args.currency)),
            ),
        ]);
        status_fields(&mut object, status);
        outln!("{}", Value::Object(object));
    } else {
        outln!(
            "fx floor {}: the liquidity account may go down to -{}: {}",
            args.currency,
            money(i128::from(limit), args.currency),
            sentence(status)
        );
        outln!("command id: {}", format_command_id(id));
    }
    exit_for(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_rates_and_sources_read_as_people_write_them() {
        assert_eq!(pair("USD/JPY"), Ok((Currency::USD, Currency::JPY)));
        assert_eq!(pair("usdjpy"), Ok((Currency::USD, Currency::JPY)));
        assert_eq!(pair("CNY-BHD"), Ok((Currency::CNY, Currency::BHD)));
        assert!(pair("USD/USD").is_err());
        assert!(pair("USD/XYZ").is_err());
        assert!(pair("USD").is_err());
        assert_eq!(
            mid("150.25"),
            Ok(FxMid {
                mantissa: 15_025,
                scale: 2
            })
        );
        assert!(mid("0").is_err());
        assert!(mid("-1.5").is_err());
        assert!(mid("1e3").is_err());
        assert!(source("ECB").is_ok());
        assert!(source("TOO-LONG-9").is_err());
        assert!(source("a b").is_err());
    }

    #[test]
    fn a_rate_file_names_its_wrong_line() {
        let good = "pair,mid,spread_bps,valid_for,source\n# comment\nUSD/JPY,150.25,30,60s,ECB\n\nCNY/JPY, 20.87, 50, 5m, PBOC\n";
        let rates = rate_table(good).unwrap();
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[0].0, 3);
        assert_eq!(rates[1].0, 5);
        assert_eq!(rates[1].1.valid_ms, 300_000);
        let bad = "USD/JPY,150.25,30,60s,ECB\nCNY/JPY,abc,50,5m,PBOC\n";
        let error = rate_table(bad).unwrap_err();
        assert!(error.starts_with("line 2: 'abc' is not a rate"), "{error}");
        let short = "USD/JPY,150.25,30\n";
        assert!(rate_table(short)
            .unwrap_err()
            .starts_with("line 1: expected 5 columns"));
        assert!(rate_table("# nothing\n").is_err());
    }
}
