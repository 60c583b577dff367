//! `payrail risk ...`, `payrail budget ...`, the risk flags of the payment
//! subcommands (`--device --location --country --step-up`) and how a
//! result's risk decision or budget warning is printed.

use std::process::ExitCode;
use std::str::FromStr;

use payrail_api::client::snake_case;
use payrail_api::serve::read_risk_policy;
use payrail_engine::budget::Category;
use payrail_engine::risk::{AuditEntry, Day, Month, RuleId};
use payrail_engine::{
    AccountId, AccountKind, BudgetDetail, CommandKind, Currency, Detail, Query, QueryReply,
    RiskContext, RiskDetail, Status,
};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use super::parse::{amount_minor, decimal_minor, format_command_id, money};
use super::run::{exit_for, fail, init_tracing, run_client, sentence, EXIT_REFUSED};
use super::{
    BudgetSetArgs, BudgetShowArgs, ConnectArgs, RiskArgs, RiskAuditArgs, RiskSetPolicyArgs,
    RiskShowArgs,
};

impl RiskArgs {
    /// The context the flags describe, or why they are invalid.
    pub fn context(&self) -> Result<RiskContext, String> {
        let mut context = RiskContext::NONE;
        if let Some(device) = self.device {
            if device == 0 {
                return Err("--device 0 means no device; give the device's id".to_owned());
            }
            context.device = device;
        }
        if let Some(location) = &self.location {
            let (latitude, longitude) = parse_location(location)?;
            context.latitude_centidegrees = latitude;
            context.longitude_centidegrees = longitude;
        }
        if let Some(country) = &self.country {
            let bytes = country.trim().as_bytes();
            match bytes {
                [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                    context.country = [a.to_ascii_uppercase(), b.to_ascii_uppercase()];
                }
                _ => {
                    return Err(format!(
                        "--country '{country}' is not an ISO 3166 alpha-2 code like CN"
                    ))
                }
            }
        }
        context.step_up_verified = self.step_up;
        Ok(context)
    }
}

/// "31.23,121.47" in decimal degrees to hundredths of a degree (the wire's
/// precision, about 1.1 km), rounded to the nearest.
fn parse_location(text: &str) -> Result<(i16, i16), String> {
    let invalid =
        || format!("--location '{text}' is not LAT,LON in decimal degrees, like 31.23,121.47");
    let (latitude, longitude) = text.split_once(',').ok_or_else(invalid)?;
    let centidegrees = |part: &str, max: i64, what: &str| -> Result<i16, String> {
        let degrees = Decimal::from_str(part.trim()).map_err(|_| invalid())?;
        let value = (degrees * Decimal::from(100))
            .round()
            .to_i64()
            .ok_or_else(invalid)?;
        if !(-max..=max).contains(&value) {
            return Err(format!(
                "--location: {what} {} is out of range ±{}",
                part.trim(),
                max / 100
            ));
        }
        i16::try_from(value).map_err(|_| invalid())
    };
    Ok((
        centidegrees(latitude, 9_000, "latitude")?,
        centidegrees(longitude, 18_000, "longitude")?,
    ))
}

/// The currency of a payment command, for amounts in its detail.
pub(super) fn kind_currency(kind: &CommandKind) -> Option<Currency> {
    match kind {
        CommandKind::Transfer { currency, .. }
        | CommandKind::WithdrawHold { currency, .. }
        | CommandKind::WithdrawHoldTo { currency, .. }
        | CommandKind::PayMerchantQr { currency, .. }
        | CommandKind::ChargePaymentCode { currency, .. } => Some(*currency),
        _ => None,
    }
}

/// Whether a rule's figures are amounts in the payment's currency.
fn figures_are_amounts(rule: RuleId) -> bool {
    matches!(
        rule,
        RuleId::SinglePayment
            | RuleId::DailyOutflow
            | RuleId::MonthlyOutflow
            | RuleId::AmountAnomaly
            | RuleId::NewInstrument
            | RuleId::InstrumentDaily
    )
}

fn figure(rule: RuleId, value: u64, currency: Option<Currency>) -> String {
    match (figures_are_amounts(rule), currency) {
        (true, Some(currency)) => money(i128::from(value), currency),
        _ if rule == RuleId::BlockedCountry && value != 0 => {
            let bytes = (value as u16).to_be_bytes();
            String::from_utf8_lossy(&bytes).into_owned()
        }
        _ if rule == RuleId::ImpossibleTravel && value == u64::MAX => "instant".to_owned(),
        _ if rule == RuleId::ImpossibleTravel => format!("{value} km/h"),
        _ => value.to_string(),
    }
}

fn risk_sentence(risk: &RiskDetail, currency: Option<Currency>) -> String {
    format!(
        "risk: {} by rule {} (limit {}, observed {})",
        risk.verdict,
        risk.rule,
        figure(risk.rule, risk.limit, currency),
        figure(risk.rule, risk.observed, currency)
    )
}

fn budget_sentence(budget: &BudgetDetail, currency: Option<Currency>) -> String {
    let amount = |value: u64| match currency {
        Some(currency) => money(i128::from(value), currency),
        None => value.to_string(),
    };
    format!(
        "budget warning: {} spending this month is {}, over its budget of {}",
        budget.category,
        amount(budget.spent),
        amount(budget.budget)
    )
}

/// Lines to print after a result's sentence.
pub(super) fn detail_lines(detail: &Detail, currency: Option<Currency>) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(risk) = detail.risk() {
        lines.push(risk_sentence(risk, currency));
    }
    if let Some(budget) = detail.budget() {
        lines.push(budget_sentence(budget, currency));
    }
    lines
}

/// `risk` and `budget` members for a result's JSON object.
pub(super) fn add_detail_json(object: &mut Map<String, Value>, detail: &Detail) {
    if let Some(risk) = detail.risk() {
        object.insert(
            "risk".into(),
            json!({
                "verdict": risk.verdict.name(),
                "rule": risk.rule.name(),
                "limit": risk.limit,
                "observed": risk.observed,
            }),
        );
    }
    if let Some(budget) = detail.budget() {
        object.insert(
            "budget".into(),
            json!({
                "category": budget.category.name(),
                "budget": budget.budget,
                "spent": budget.spent,
            }),
        );
    }
}

// ---------------------------------------------------------------- risk

/// `payrail risk set-policy FILE`.
pub fn set_policy(args: &RiskSetPolicyArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let policy = match read_risk_policy(&args.file) {
        Ok(policy) => policy,
        Err(message) => {
            return fail(
                connect,
                &format!("risk policy {}: {message}", args.file.display()),
                None,
            )
        }
    };
    let local = policy.digest();
    let outcome = match run_client(connect, None, move |client| async move {
        client.set_risk_policy(policy).await
    }) {
        Ok(outcome) => outcome,
        Err(exit) => return exit,
    };
    let status = match outcome {
        Ok(digest) if digest == local => Status::Ok,
        Ok(digest) => {
            return fail(
                connect,
                &format!(
                    "the server reports policy {} in force, not {}",
                    hex::encode(digest),
                    hex::encode(local)
                ),
                None,
            )
        }
        Err(status) => status,
    };
    if connect.json {
        let object = json!({
            "command": "set_risk_policy",
            "ok": status.is_ok(),
            "status": snake_case(status.name()),
            "code": status.code(),
            "message": status.description(),
            "file": args.file.display().to_string(),
            "digest": hex::encode(local),
        });
        outln!("{object}");
    } else {
        outln!(
            "risk set-policy {}: {}",
            args.file.display(),
            sentence(status)
        );
        if status.is_ok() {
            outln!("policy {} is in force", hex::encode(local));
        }
    }
    exit_for(status)
}

/// `payrail risk show [--file FILE]`.
pub fn show(args: &RiskShowArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let local = match &args.file {
        Some(path) => match read_risk_policy(path) {
            Ok(policy) => Some((path.as_path(), policy.digest())),
            Err(message) => {
                return fail(
                    connect,
                    &format!("risk policy {}: {message}", path.display()),
                    None,
                )
            }
        },
        None => None,
    };
    let (digest, rules) =
        match run_client(
            connect,
            None,
            |client| async move { client.risk_policy().await },
        ) {
            Ok(answer) => answer,
            Err(exit) => return exit,
        };
    let names: Vec<&str> = rules.iter().map(RuleId::name).collect();
    let matches = local.map(|(_, file)| file == digest);
    if connect.json {
        let mut object = Map::new();
        object.insert("ok".into(), json!(true));
        object.insert("digest".into(), json!(hex::encode(digest)));
        object.insert("rules".into(), json!(names));
        if let Some(matches) = matches {
            object.insert("matches_file".into(), json!(matches));
        }
        outln!("{}", Value::Object(object));
    } else {
        outln!("risk policy in force: {}", hex::encode(digest));
        if names.is_empty() {
            outln!("rules on: none (every payment is approved)");
        } else {
            outln!("rules on: {}", names.join(", "));
        }
        if let (Some((path, _)), Some(matches)) = (local, matches) {
            let verb = if matches { "is" } else { "is NOT" };
            outln!("{} {verb} the policy in force", path.display());
        }
    }
    match matches {
        Some(false) => ExitCode::from(EXIT_REFUSED),
        _ => ExitCode::SUCCESS,
    }
}

/// "2026-11-10 12:00:00 UTC" from ns since the epoch.
fn utc(timestamp: u64) -> String {
    let day = Day::from_timestamp(timestamp);
    let (year, month, day_of_month) = day.civil();
    let seconds = (timestamp - day.start_timestamp()) / 1_000_000_000;
    format!(
        "{year:04}-{month:02}-{day_of_month:02} {:02}:{:02}:{:02} UTC",
        seconds / 3_600,
        seconds / 60 % 60,
        seconds % 60
    )
}

fn audit_json(entry: &AuditEntry) -> Value {
    let names = |set: payrail_engine::risk::RuleSet| -> Vec<&str> {
        set.iter().map(RuleId::name).collect()
    };
    json!({
        "timestamp_ns": entry.timestamp,
        "time": utc(entry.timestamp),
        "command_id": format_command_id(entry.command.0),
        "currency": entry.currency.code(),
        "amount": entry.amount,
        "amount_decimal": decimal_minor(i128::from(entry.amount), entry.currency),
        "verdict": entry.verdict.name(),
        "rule": entry.rule.map(RuleId::name),
        "limit": entry.figures.limit,
        "observed": entry.figures.observed,
        "freeze": entry.freeze,
        "fired": names(entry.fired),
        "flags": names(entry.flags),
        "stepped_up": names(entry.stepped_up),
    })
}

/// `payrail risk audit CUSTOMER_ACCOUNT`.
pub fn audit(args: &RiskAuditArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let account = AccountId(args.account);
    let outcome = match run_client(connect, None, |client| async move {
        client.risk_audit(account).await
    }) {
        Ok(outcome) => outcome,
        Err(exit) => return exit,
    };
    let entries = match outcome {
        Ok(entries) => entries,
        Err(status) => return refused(connect, &format!("risk audit {}", args.account), status),
    };
    if connect.json {
        let list: Vec<Value> = entries.iter().map(audit_json).collect();
        outln!(
            "{}",
            json!({ "ok": true, "account": args.account, "entries": list })
        );
        return ExitCode::SUCCESS;
    }
    if entries.is_empty() {
        outln!(
            "risk audit {}: no decision other than approve on record",
            args.account
        );
        return ExitCode::SUCCESS;
    }
    outln!(
        "risk audit {}: {} decisions, newest first",
        args.account,
        entries.len()
    );
    for entry in &entries {
        let currency = Some(entry.currency);
        let rule = match entry.rule {
            Some(rule) => format!(
                "{rule} (limit {}, observed {})",
                figure(rule, entry.figures.limit, currency),
                figure(rule, entry.figures.observed, currency)
            ),
            None => {
                let passed: Vec<&str> = entry.stepped_up.iter().map(RuleId::name).collect();
                format!("step-up passed: {}", passed.join(", "))
            }
        };
        let freeze = if entry.freeze { ", account frozen" } else { "" };
        outln!(
            "  {}  {:<8} {:>16}  {rule}{freeze}  command {}",
            utc(entry.timestamp),
            entry.verdict.name(),
            money(i128::from(entry.amount), entry.currency),
            format_command_id(entry.command.0)
        );
    }
    ExitCode::SUCCESS
}

pub(super) fn refused(connect: &ConnectArgs, what: &str, status: Status) -> ExitCode {
    if connect.json {
        let object = json!({
            "ok": false,
            "status": snake_case(status.name()),
            "code": status.code(),
            "message": status.description(),
        });
        outln!("{object}");
    } else {
        outln!("{what}: {}", sentence(status));
    }
    ExitCode::from(EXIT_REFUSED)
}

// ---------------------------------------------------------------- budget

/// The currency of a customer account, asked of the server; Err: the exit.
fn customer_currency(
    connect: &ConnectArgs,
    account: u64,
    what: &str,
) -> Result<Currency, ExitCode> {
    let replies = run_client(connect, None, |client| async move {
        client
            .query(vec![Query::Balance {
                account: AccountId(account),
            }])
            .await
    })?;
    match replies.first() {
        Some(QueryReply::Balance(view)) if view.kind == AccountKind::Customer => Ok(view.currency),
        Some(QueryReply::Balance(_)) => Err(refused(connect, what, Status::NotACustomer)),
        Some(QueryReply::Refused(status)) => Err(refused(connect, what, *status)),
        other => Err(fail(
            connect,
            &format!("the server answered a balance query with {other:?}"),
            None,
        )),
    }
}

fn category_names() -> String {
    Category::ALL
        .iter()
        .map(|category| category.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `payrail budget set ACCOUNT CATEGORY AMOUNT` (AMOUNT `none` removes it).
pub fn budget_set(args: BudgetSetArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let Some(category) = Category::from_name(&args.category.to_ascii_lowercase()) else {
        return fail(
            connect,
            &format!(
                "'{}' is not a spending category; one of: {}",
                args.category,
                category_names()
            ),
            None,
        );
    };
    let what = format!("budget set {} {category}", args.account);
    let currency = match customer_currency(connect, args.account, &what) {
        Ok(currency) => currency,
        Err(exit) => return exit,
    };
    let budget = if args.amount.eq_ignore_ascii_case("none") {
        None
    } else {
        match amount_minor(&args.amount, currency) {
            Ok(amount) => Some(amount),
            Err(message) => return fail(connect, &message, None),
        }
    };
    let what = match budget {
        Some(amount) => format!("{what} to {} a month", money(i128::from(amount), currency)),
        None => format!("{what} removed"),
    };
    let mut details = Map::new();
    details.insert("account".into(), json!(args.account));
    details.insert("category".into(), json!(category.name()));
    details.insert("budget".into(), json!(budget));
    details.insert("currency".into(), json!(currency.code()));
    let kind = CommandKind::SetBudget {
        account: AccountId(args.account),
        category: category.code(),
        budget,
    };
    super::run::execute(connect, args.id, what, kind, details)
}

/// `payrail budget show ACCOUNT [--month YYYY-MM]`.
pub fn budget_show(args: &BudgetShowArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let month = match &args.month {
        Some(text) => match Month::from_str(text) {
            Ok(month) => month.0,
            Err(message) => return fail(connect, &message, None),
        },
        None => 0,
    };
    let what = format!("budget show {}", args.account);
    let currency = match customer_currency(connect, args.account, &what) {
        Ok(currency) => currency,
        Err(exit) => return exit,
    };
    let account = AccountId(args.account);
    let outcome = match run_client(connect, None, |client| async move {
        client.spending(account, month).await
    }) {
        Ok(outcome) => outcome,
        Err(exit) => return exit,
    };
    let (month, lines) = match outcome {
        Ok(answer) => answer,
        Err(status) => return refused(connect, &what, status),
    };
    let month = Month(month);
    if connect.json {
        let list: Vec<Value> = lines
            .iter()
            .map(|line| {
                json!({
                    "category": line.category.name(),
                    "spent": line.spent,
                    "spent_decimal": decimal_minor(i128::from(line.spent), currency),
                    "budget": line.budget,
                    "over": line.budget.is_some_and(|budget| line.spent > budget),
                })
            })
            .collect();
        outln!(
            "{}",
            json!({
                "ok": true,
                "account": args.account,
                "month": month.to_string(),
                "currency": currency.code(),
                "categories": list,
            })
        );
        return ExitCode::SUCCESS;
    }
    outln!(
        "spending of {} in {month} ({}):",
        args.account,
        currency.code()
    );
    let total: u64 = lines
        .iter()
        .fold(0u64, |sum, line| sum.saturating_add(line.spent));
    for line in &lines {
        if line.spent == 0 && line.budget.is_none() {
            continue;
        }
        let status = match line.budget {
            Some(budget) if line.spent > budget => format!(
                "budget {}  OVER by {}",
                decimal_minor(i128::from(budget), currency),
                decimal_minor(i128::from(line.spent - budget), currency)
            ),
            Some(budget) => format!(
                "budget {}  {} left",
                decimal_minor(i128::from(budget), currency),
                decimal_minor(i128::from(budget - line.spent), currency)
            ),
            None => String::new(),
        };
        outln!(
            "  {:<20} {:>14}  {status}",
            line.category.name(),
            decimal_minor(i128::from(line.spent), currency)
        );
    }
    outln!(
        "  {:<20} {:>14}",
        "total",
        decimal_minor(i128::from(total), currency)
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_locations_round_to_hundredths_and_are_bounded() {
        assert_eq!(parse_location("31.23,121.47"), Ok((3_123, 12_147)));
        assert_eq!(
            parse_location(" -33.8688 , 151.2093 "),
            Ok((-3_387, 15_121))
        );
        assert_eq!(parse_location("90,-180"), Ok((9_000, -18_000)));
        assert!(parse_location("90.01,0").is_err());
        assert!(parse_location("0,180.5").is_err());
        assert!(parse_location("31.23").is_err());
        assert!(parse_location("north,east").is_err());
    }

    #[test]
    fn risk_figures_read_as_people_write_them() {
        let cny = Some(Currency::CNY);
        assert_eq!(figure(RuleId::BlockedCountry, 0x4B50, cny), "KP");
        assert_eq!(figure(RuleId::BlockedCountry, 0, cny), "0");
        assert_eq!(
            figure(RuleId::SinglePayment, 500_001, cny),
            money(500_001, Currency::CNY)
        );
        assert_eq!(figure(RuleId::ImpossibleTravel, 9_100, cny), "9100 km/h");
        assert_eq!(figure(RuleId::Velocity, 11, cny), "11");
        assert_eq!(
            figure(RuleId::NewInstrument, 50_001, cny),
            money(50_001, Currency::CNY)
        );
        assert_eq!(figure(RuleId::InstrumentBinds, 3, cny), "3");
    }
}
