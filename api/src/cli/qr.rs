//! QR payment subcommands: `qr decode`, `qr pay`, `merchant register`,
//! `merchant qr`, `code issue`, `code charge` and `refund`.
//!
//! Payloads are parsed here with the same parser and rules the server uses
//! (`payrail_api::qr`, `payrail_api::qr_pay`), so a payload the server
//! would refuse is refused before anything is sent, with the same status.

use std::process::ExitCode;

use payrail_api::client::{draw_payment_code, snake_case};
use payrail_api::qr::{self, Decimal, Initiation, MerchantAccountInfo, MerchantQr, QrError, Tip};
use payrail_api::qr_pay;
use payrail_api::wire::QrPaymentRequest;
use payrail_engine::{
    AccountId, Command as EngineCommand, CommandId, CommandKind, Currency, Detail, FxAmounts,
    MerchantKey, Status,
};
use serde_json::{json, Map, Value};

use super::parse::{amount_minor, decimal_minor, format_command_id, money};
use super::run::{
    add_amount, execute, exit_for, fail, fields, init_tracing, run_client, sentence, Retry,
    EXIT_ERROR, EXIT_REFUSED,
};
use super::{
    CodeChargeArgs, CodeIssueArgs, ConnectArgs, MerchantQrArgs, MerchantRegisterArgs, QrDecodeArgs,
    QrPayArgs, RefundArgs,
};

/// Most codes `code issue` draws when the ledger says a drawn code is taken
/// (a live code has the same 18 digits: about one chance in 10^12 per draw
/// with a million live codes).
const CODE_DRAWS_MAX: u32 = 3;

/// The template tag `merchant qr` puts the merchant account in (the first
/// of the merchant account information templates).
const MERCHANT_TEMPLATE_TAG: u8 = 26;

// ---------------------------------------------------------------------------
// qr decode

/// `payrail qr decode PAYLOAD [--json]`: no server needed.
pub fn decode(args: &QrDecodeArgs) -> ExitCode {
    let code = match qr::parse(&args.payload) {
        Ok(code) => code,
        Err(error) => {
            print_refusal("qr decode", &error, args.json, Map::new());
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    if args.json {
        let mut object = Map::new();
        object.insert("ok".into(), json!(true));
        object.extend(code_summary(&code));
        match serde_json::to_value(&code) {
            Ok(fields) => {
                object.insert("qr".into(), fields);
            }
            Err(error) => {
                errln!("error: cannot write the fields as JSON: {error}");
                return ExitCode::from(EXIT_ERROR);
            }
        }
        outln!("{}", Value::Object(object));
    } else {
        print_code(&code);
    }
    ExitCode::SUCCESS
}

/// A payload refused by the parser: the parser's sentence and code, and
/// the status a payment with it gets from the server.
fn print_refusal(what: &str, error: &QrError, json: bool, details: Map<String, Value>) {
    let status = qr_pay::status_of(error);
    if json {
        let mut object = Map::new();
        object.insert("ok".into(), json!(false));
        object.insert("reason".into(), json!(error.code()));
        object.insert("message".into(), json!(error.to_string()));
        object.insert("status".into(), json!(snake_case(status.name())));
        object.insert("code".into(), json!(status.code()));
        object.extend(details);
        outln!("{}", Value::Object(object));
    } else {
        outln!("{what}: refused: {error} ({})", error.code());
        outln!(
            "a payment with this payload is refused with {} ({})",
            snake_case(status.name()),
            status.code()
        );
    }
}

/// Fields every JSON description of a code carries: the merchant keys and
/// the amount in minor units.
fn code_summary(code: &MerchantQr) -> Map<String, Value> {
    let keys: Vec<Value> = code
        .merchant_keys()
        .into_iter()
        .map(|(gui, merchant_id)| {
            json!({
                "gui": gui,
                "merchant_id": merchant_id,
                "key": key_hex(MerchantKey::new(&gui, &merchant_id)),
            })
        })
        .collect();
    fields([
        ("merchant_keys", Value::Array(keys)),
        ("currency", json!(code.currency.code())),
        ("currency_numeric", json!(code.currency.numeric())),
        ("minor_units", json!(code.currency.minor_units())),
        ("amount_minor", json!(code.amount_minor())),
    ])
}

fn key_hex(key: MerchantKey) -> String {
    format!("{:032x}", key.0)
}

fn print_code(code: &MerchantQr) {
    let currency = code.currency;
    let initiation = match code.initiation {
        Initiation::Static => "static",
        Initiation::Dynamic => "dynamic",
    };
    outln!(
        "{initiation} EMVCo merchant-presented code, format {}, CRC {:04X} checked",
        code.format_indicator,
        code.crc
    );
    let mut rows: Vec<(String, String)> = Vec::new();
    for (tag, value) in &code.network_accounts {
        rows.push((format!("network account {tag:02}"), value.clone()));
    }
    for account in &code.merchant_accounts {
        let gui = if account.gui.is_empty() {
            "(no GUI)".to_owned()
        } else {
            account.gui.clone()
        };
        rows.push((
            format!("merchant account {:02}", account.tag),
            format!("{gui} {}", sub_fields(&account.fields)),
        ));
    }
    let keys = code.merchant_keys();
    if keys.is_empty() {
        rows.push((
            "merchant key".into(),
            "none: no payment can find a merchant".into(),
        ));
    }
    for (gui, merchant_id) in &keys {
        rows.push((
            "merchant key".into(),
            format!(
                "{gui} / {merchant_id} ({})",
                key_hex(MerchantKey::new(gui, merchant_id))
            ),
        ));
    }
    rows.push((
        "category (MCC)".into(),
        code.mcc.map_or("none (the merchant's own)".into(), |mcc| {
            format!("{mcc:04}")
        }),
    ));
    rows.push((
        "currency".into(),
        format!(
            "{} ({:03}, {} decimals)",
            currency.code(),
            currency.numeric(),
            currency.minor_units()
        ),
    ));
    rows.push((
        "amount".into(),
        match (code.amount, code.amount_minor()) {
            (Some(_), Some(minor)) => format!(
                "{} ({minor} minor units)",
                money(i128::from(minor), currency)
            ),
            (Some(amount), None) => format!("{amount} {} (not exact)", currency.code()),
            (None, _) => "none: the payer types it".into(),
        },
    ));
    if let Some(tip) = code.tip {
        let text = match tip {
            Tip::Prompt => "the payer may add a tip".to_owned(),
            Tip::FixedFee(fee) => format!("fixed convenience fee {fee} {}", currency.code()),
            Tip::PercentFee(percent) => format!("convenience fee {percent} % of the amount"),
        };
        rows.push(("tip".into(), text));
    }
    rows.push(("country".into(), code.country.clone()));
    for (label, value) in [
        ("name", &code.name),
        ("city", &code.city),
        ("postal code", &code.postal_code),
    ] {
        if let Some(value) = value {
            rows.push((label.into(), value.clone()));
        }
    }
    let additional = &code.additional;
    for (label, value) in [
        ("bill number", &additional.bill_number),
        ("mobile number", &additional.mobile_number),
        ("store label", &additional.store_label),
        ("loyalty number", &additional.loyalty_number),
        ("reference label", &additional.reference_label),
        ("customer label", &additional.customer_label),
        ("terminal label", &additional.terminal_label),
        ("purpose", &additional.purpose),
        ("consumer data request", &additional.consumer_data_request),
    ] {
        if let Some(value) = value {
            rows.push((label.into(), value.clone()));
        }
    }
    if !code.additional.other.is_empty() {
        rows.push(("additional data".into(), sub_fields(&code.additional.other)));
    }
    if let Some(language) = &code.language {
        let mut parts = Vec::new();
        for (label, value) in [
            ("language", &language.language),
            ("name", &language.name),
            ("city", &language.city),
        ] {
            if let Some(value) = value {
                parts.push(format!("{label} {value}"));
            }
        }
        if !language.other.is_empty() {
            parts.push(sub_fields(&language.other));
        }
        rows.push(("alternate language".into(), parts.join(", ")));
    }
    for (tag, value) in &code.reserved {
        rows.push((format!("reserved {tag:02}"), value.clone()));
    }
    for template in &code.unreserved {
        rows.push((
            format!("template {:02}", template.tag),
            sub_fields(&template.fields),
        ));
    }
    for (tag, value) in &code.unreserved_raw {
        rows.push((format!("template {tag:02} (raw)"), value.clone()));
    }
    let width = rows
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0);
    for (label, value) in rows {
        outln!("  {label:<width$}  {value}");
    }
}

fn sub_fields(fields: &[(u8, String)]) -> String {
    fields
        .iter()
        .map(|(tag, value)| format!("{tag:02}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// merchant register

/// `payrail merchant register ACCOUNT (--gui GUI --merchant-id ID | --from-qr PAYLOAD)`:
/// one `RegisterMerchantKey` per key, in one batch. With `--id`, the k-th
/// key's command id is ID + k, so a retry with the same `--id` is idempotent.
pub fn merchant_register(args: &MerchantRegisterArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let account = args.account;
    let keys: Vec<(String, String)> = match (&args.gui, &args.merchant_id, &args.from_qr) {
        (Some(gui), Some(merchant_id), None) => vec![(gui.clone(), merchant_id.clone())],
        (None, None, Some(payload)) => match qr::parse(payload) {
            Ok(code) => code.merchant_keys(),
            Err(error) => {
                let details = fields([("account", json!(account))]);
                print_refusal(
                    &format!("merchant register {account}"),
                    &error,
                    connect.json,
                    details,
                );
                return ExitCode::from(EXIT_REFUSED);
            }
        },
        // clap's argument group makes any other combination a usage error.
        _ => {
            return fail(
                connect,
                "give either --gui and --merchant-id, or --from-qr",
                None,
            )
        }
    };
    if keys.is_empty() {
        let status = Status::QrNoMerchantAccount;
        if connect.json {
            let object = json!({
                "ok": false,
                "account": account,
                "status": snake_case(status.name()),
                "code": status.code(),
                "message": status.description(),
            });
            outln!("{object}");
        } else {
            outln!("merchant register {account}: refused: {}", sentence(status));
        }
        return ExitCode::from(EXIT_REFUSED);
    }
    let base_id = args.id.id.unwrap_or_else(rand::random::<u128>);
    let commands: Vec<EngineCommand> = keys
        .iter()
        .enumerate()
        .map(|(index, (gui, merchant_id))| {
            EngineCommand::new(
                base_id.wrapping_add(index as u128),
                CommandKind::RegisterMerchantKey {
                    merchant: AccountId(account),
                    key: MerchantKey::new(gui, merchant_id),
                },
            )
        })
        .collect();
    let retry = Retry::with_id(base_id);
    let results = match run_client(connect, Some(&retry), move |client| async move {
        client.submit(commands).await
    }) {
        Ok(results) => results,
        Err(exit) => return exit,
    };
    if results.len() != keys.len() {
        return fail(
            connect,
            &format!(
                "the server sent {} results for {} keys",
                results.len(),
                keys.len()
            ),
            Some(base_id),
        );
    }
    let all_ok = results.iter().all(|result| result.status.is_ok());
    if connect.json {
        let entries: Vec<Value> = keys
            .iter()
            .zip(&results)
            .enumerate()
            .map(|(index, ((gui, merchant_id), result))| {
                let status = result.status;
                json!({
                    "command_id": format_command_id(base_id.wrapping_add(index as u128)),
                    "gui": gui,
                    "merchant_id": merchant_id,
                    "key": key_hex(MerchantKey::new(gui, merchant_id)),
                    "ok": status.is_ok(),
                    "status": snake_case(status.name()),
                    "code": status.code(),
                    "message": status.description(),
                })
            })
            .collect();
        let object = json!({
            "command": "register_merchant_key",
            "command_id": format_command_id(base_id),
            "ok": all_ok,
            "account": account,
            "keys": entries,
        });
        outln!("{object}");
    } else {
        for ((gui, merchant_id), result) in keys.iter().zip(&results) {
            outln!(
                "merchant register {account} key {gui} / {merchant_id}: {}",
                sentence(result.status)
            );
        }
        if keys.len() == 1 {
            outln!("command id: {}", format_command_id(base_id));
        } else {
            outln!(
                "command ids: {} and the next {} (retry with the same --id)",
                format_command_id(base_id),
                keys.len() - 1
            );
        }
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    }
}

// ---------------------------------------------------------------------------
// merchant qr

/// `payrail merchant qr ...`: a static or dynamic code for one merchant
/// account, printed and drawn. No server needed.
pub fn merchant_qr(args: &MerchantQrArgs) -> ExitCode {
    let usage = |message: &str| -> ExitCode {
        errln!("error: {message}");
        if args.json {
            outln!("{}", json!({ "ok": false, "error": message }));
        }
        ExitCode::from(EXIT_ERROR)
    };
    let currency = args.currency;
    let amount = match &args.amount {
        None => None,
        Some(text) => match amount_minor(text, currency) {
            Ok(minor) => Some(minor),
            Err(message) => return usage(&message),
        },
    };
    let account = merchant_template(&args.gui, &args.merchant_id);
    let code = match amount {
        None => MerchantQr::static_code(
            account,
            args.mcc,
            currency,
            &args.country,
            &args.name,
            &args.city,
        ),
        Some(minor) => {
            let Ok(decimal) =
                Decimal::try_from_i128_with_scale(i128::from(minor), currency.minor_units())
            else {
                return usage("the amount is too large");
            };
            MerchantQr::dynamic_code(
                account,
                args.mcc,
                currency,
                &args.country,
                &args.name,
                &args.city,
                decimal,
            )
        }
    };
    let payload = match qr::generate(&code) {
        Ok(payload) => payload,
        Err(error) => return usage(&format!("cannot make the code: {error} ({})", error.code())),
    };
    // What a payment with this code will look up: the key registered by
    // `merchant register --gui GUI --merchant-id ID`.
    let key = MerchantKey::new(&args.gui, &args.merchant_id);
    let carried = qr::parse(&payload).map(|parsed| qr_pay::merchant_keys(&parsed));
    if !matches!(&carried, Ok(keys) if keys.contains(&key)) {
        return usage(&format!(
            "the code made for {} / {} does not carry that merchant key; check --gui and --merchant-id",
            args.gui, args.merchant_id
        ));
    }
    if args.json {
        let mut object = Map::new();
        object.insert("ok".into(), json!(true));
        object.insert("payload".into(), json!(payload));
        object.insert(
            "initiation".into(),
            json!(if amount.is_some() {
                "dynamic"
            } else {
                "static"
            }),
        );
        object.insert(
            "merchant_key".into(),
            json!({
                "gui": args.gui,
                "merchant_id": args.merchant_id,
                "key": key_hex(key),
            }),
        );
        object.insert("currency".into(), json!(currency.code()));
        object.insert("amount_minor".into(), json!(amount));
        outln!("{}", Value::Object(object));
        return ExitCode::SUCCESS;
    }
    outln!("{payload}");
    if args.no_draw {
        return ExitCode::SUCCESS;
    }
    match qr::render_terminal(&payload, args.invert) {
        Ok(picture) => outln!("{picture}"),
        Err(error) => {
            errln!("error: cannot draw the code: {error}");
            return ExitCode::from(EXIT_ERROR);
        }
    }
    match amount {
        Some(minor) => outln!(
            "dynamic code for one payment of {}",
            money(i128::from(minor), currency)
        ),
        None => outln!("static code: the payer types the amount"),
    }
    outln!(
        "payments find the merchant by {} / {}: register it with `payrail merchant register ACCOUNT --gui {} --merchant-id {}`",
        args.gui,
        args.merchant_id,
        args.gui,
        args.merchant_id
    );
    ExitCode::SUCCESS
}

/// The merchant account template for `gui` and `merchant_id`, laid out so
/// that the code's merchant key (`MerchantQr::merchant_keys`) is exactly
/// (gui, merchant_id): the id goes in sub-field 01, except where a scheme
/// reads it elsewhere (QRIS: 02; PayNow and DuitNow: "a:b" in 01 and 02).
fn merchant_template(gui: &str, merchant_id: &str) -> MerchantAccountInfo {
    let fields = match gui.trim().to_ascii_uppercase().as_str() {
        "ID.CO.QRIS.WWW" => vec![(2, merchant_id.to_owned())],
        "SG.PAYNOW" | "A0000006150001" => match merchant_id.split_once(':') {
            Some((first, second)) => vec![(1, first.to_owned()), (2, second.to_owned())],
            None => vec![(1, merchant_id.to_owned())],
        },
        _ => vec![(1, merchant_id.to_owned())],
    };
    MerchantAccountInfo {
        tag: MERCHANT_TEMPLATE_TAG,
        gui: gui.to_owned(),
        fields,
    }
}

// ---------------------------------------------------------------------------
// qr pay

/// `payrail qr pay PAYER PAYLOAD [--amount A] [--tip T]`: one SubmitQr.
pub fn pay(args: &QrPayArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let payer = args.payer;
    let code = match qr::parse(&args.payload) {
        Ok(code) => code,
        Err(error) => {
            let mut details = fields([("payer", json!(payer))]);
            details.insert("sent".into(), json!(false));
            print_refusal(&format!("qr pay {payer}"), &error, connect.json, details);
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let currency = code.currency;
    let decimal = |text: &Option<String>| -> Result<Option<u64>, String> {
        text.as_deref()
            .map(|text| amount_minor(text, currency))
            .transpose()
    };
    let (amount, tip) = match (decimal(&args.amount), decimal(&args.tip)) {
        (Ok(amount), Ok(tip)) => (amount, tip),
        (Err(message), _) | (_, Err(message)) => return fail(connect, &message, None),
    };
    let context = match args.risk.context() {
        Ok(context) => context,
        Err(message) => return fail(connect, &message, None),
    };
    let command_id = args.id.id.unwrap_or_else(rand::random::<u128>);
    let request = QrPaymentRequest {
        id: CommandId(command_id),
        payer: AccountId(payer),
        payload: args.payload.clone(),
        amount,
        tip,
        context,
    };
    let merchant = merchant_label(&code);
    // The server's own rules, applied here first: a payment they refuse is
    // refused with the same status, and nothing is sent.
    let (amount, fee, mcc) = match qr_pay::command(&request) {
        Ok(EngineCommand {
            kind: CommandKind::PayMerchantQr {
                amount, fee, mcc, ..
            },
            ..
        }) => (amount, fee, mcc),
        Ok(other) => {
            return fail(
                connect,
                &format!("a QR payment turned into {}", other.kind.name()),
                None,
            )
        }
        Err(status) => {
            return report_payment(
                connect,
                &PaymentReport {
                    command_id,
                    payer,
                    merchant: &merchant,
                    currency,
                    amount: amount.unwrap_or(0),
                    fee: tip.unwrap_or(0),
                    mcc: code.mcc.unwrap_or(0),
                    status,
                    detail: Detail::None,
                    sent: false,
                    conversion: None,
                },
            )
        }
    };
    let retry = Retry::with_id(command_id);
    let results = match run_client(connect, Some(&retry), move |client| async move {
        client.submit_qr(vec![request]).await
    }) {
        Ok(results) => results,
        Err(exit) => return exit,
    };
    let Some(result) = results.first() else {
        return fail(connect, "the server sent no result", Some(command_id));
    };
    report_payment(
        connect,
        &PaymentReport {
            command_id,
            payer,
            merchant: &merchant,
            currency,
            amount,
            fee,
            mcc,
            status: result.status,
            detail: result.detail,
            sent: true,
            conversion: match result.detail {
                Detail::FxConversion(amounts) => Some(amounts),
                _ => None,
            },
        },
    )
}

/// The merchant as a person reads it: "Fulano de Tal, BRASILIA", or its
/// first merchant key.
fn merchant_label(code: &MerchantQr) -> String {
    match (&code.name, &code.city) {
        (Some(name), Some(city)) => format!("{name}, {city}"),
        (Some(name), None) => name.clone(),
        _ => code
            .merchant_keys()
            .first()
            .map_or("an unnamed merchant".to_owned(), |(gui, id)| {
                format!("{gui} / {id}")
            }),
    }
}

struct PaymentReport<'a> {
    command_id: u128,
    payer: u64,
    merchant: &'a str,
    currency: Currency,
    amount: u64,
    fee: u64,
    mcc: u16,
    status: Status,
    /// The risk decision or budget warning the result carried.
    detail: Detail,
    /// Whether the payment went to the server (false: refused here first).
    sent: bool,
    /// What the payer paid in its own currency, when it paid through FX.
    conversion: Option<FxAmounts>,
}

fn report_payment(connect: &ConnectArgs, report: &PaymentReport<'_>) -> ExitCode {
    let id_text = format_command_id(report.command_id);
    let currency = report.currency;
    let status = report.status;
    let total = report.amount.saturating_add(report.fee);
    if connect.json {
        let mut object = Map::new();
        object.insert("command".into(), json!("pay_merchant_qr"));
        object.insert("command_id".into(), json!(id_text));
        if status.is_ok() {
            object.insert("payment_id".into(), json!(id_text));
        }
        object.insert("ok".into(), json!(status.is_ok()));
        object.insert("status".into(), json!(snake_case(status.name())));
        object.insert("code".into(), json!(status.code()));
        object.insert("message".into(), json!(status.description()));
        object.insert("sent".into(), json!(report.sent));
        object.insert("payer".into(), json!(report.payer));
        object.insert("merchant".into(), json!(report.merchant));
        add_amount(&mut object, report.amount, currency);
        object.insert("fee".into(), json!(report.fee));
        object.insert(
            "fee_decimal".into(),
            json!(decimal_minor(i128::from(report.fee), currency)),
        );
        object.insert("total".into(), json!(total));
        object.insert("mcc".into(), json!(report.mcc));
        super::risk::add_detail_json(&mut object, &report.detail);
        if let Some(amounts) = &report.conversion {
            object.insert("fx".into(), Value::Object(super::fx::amounts_json(amounts)));
        }
        outln!("{}", Value::Object(object));
    } else {
        let mut what = format!("qr pay {} -> {}", report.payer, report.merchant);
        if report.sent {
            what.push_str(&format!(": {}", money(i128::from(total), currency)));
        }
        if report.sent && report.fee > 0 {
            what.push_str(&format!(
                " ({} + tip or fee {})",
                decimal_minor(i128::from(report.amount), currency),
                decimal_minor(i128::from(report.fee), currency)
            ));
        }
        outln!("{what}: {}", sentence(status));
        for line in super::risk::detail_lines(&report.detail, Some(currency)) {
            outln!("{line}");
        }
        if let Some(amounts) = &report.conversion {
            outln!("  through FX: {}", super::fx::amounts_sentence(amounts));
        }
        if status.is_ok() {
            outln!(
                "payment id: {id_text} (refund with `payrail refund {id_text} AMOUNT {}`)",
                currency.code()
            );
        } else if report.sent {
            outln!("command id: {id_text}");
        } else {
            outln!("nothing was sent");
        }
    }
    exit_for(status)
}

// ---------------------------------------------------------------------------
// code issue, code charge

/// `payrail code issue CUSTOMER [--lifetime 60s]`: draws 18 digits, issues
/// them, prints them and draws them as a QR code.
pub fn code_issue(args: &CodeIssueArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let customer = args.customer;
    // A drawn code that happens to be taken is drawn again with a new
    // command id; a code given with --code is a retry, sent once as is.
    let attempts = if args.code.is_some() || args.id.id.is_some() {
        1
    } else {
        CODE_DRAWS_MAX
    };
    let mut attempt = 1;
    let (command_id, code, status) = loop {
        let command_id = args.id.id.unwrap_or_else(rand::random::<u128>);
        let code = args.code.unwrap_or_else(draw_payment_code);
        let command = EngineCommand::new(
            command_id,
            CommandKind::IssuePaymentCode {
                customer: AccountId(customer),
                code,
                lifetime_ms: args.lifetime,
            },
        );
        let retry = Retry {
            command_id,
            args: format!("--id {} --code {code}", format_command_id(command_id)),
        };
        let status = match submit_with_retry(connect, command, &retry) {
            Ok(status) => status,
            Err(exit) => return exit,
        };
        if status == Status::PaymentCodeTaken && attempt < attempts {
            attempt += 1;
            continue;
        }
        break (command_id, code, status);
    };
    let id_text = format_command_id(command_id);
    let code_text = code.to_string();
    if connect.json {
        let object = json!({
            "command": "issue_payment_code",
            "command_id": id_text,
            "ok": status.is_ok(),
            "status": snake_case(status.name()),
            "code": status.code(),
            "message": status.description(),
            "customer": customer,
            // A string: 18 digits are beyond what a JSON reader that uses
            // doubles keeps exactly.
            "payment_code": code_text,
            "lifetime_ms": args.lifetime,
        });
        outln!("{object}");
        return exit_for(status);
    }
    outln!("code issue for {customer}: {}", sentence(status));
    if !status.is_ok() {
        outln!("command id: {id_text}");
        return exit_for(status);
    }
    outln!("payment code: {code_text}");
    outln!(
        "single use, valid for {} of command time; the merchant charges it with `payrail code charge MERCHANT {code_text} AMOUNT CURRENCY`",
        human_ms(args.lifetime)
    );
    if !args.no_draw {
        match qr::render_terminal(&code_text, args.invert) {
            Ok(picture) => outln!("{picture}"),
            Err(error) => errln!("error: cannot draw the code: {error}"),
        }
    }
    outln!("command id: {id_text}");
    ExitCode::SUCCESS
}

/// `submit_one` with a retry hint of its own.
fn submit_with_retry(
    connect: &ConnectArgs,
    command: EngineCommand,
    retry: &Retry,
) -> Result<Status, ExitCode> {
    let results = run_client(connect, Some(retry), move |client| async move {
        client.submit(vec![command]).await
    })?;
    match results.first() {
        Some(result) => Ok(result.status),
        None => Err(fail(
            connect,
            "the server sent no result",
            Some(retry.command_id),
        )),
    }
}

fn human_ms(ms: u64) -> String {
    if ms % 60_000 == 0 && ms >= 60_000 {
        format!("{} min", ms / 60_000)
    } else if ms % 1_000 == 0 {
        format!("{} s", ms / 1_000)
    } else {
        format!("{ms} ms")
    }
}

/// `payrail code charge MERCHANT CODE AMOUNT CURRENCY`.
pub fn code_charge(args: CodeChargeArgs) -> ExitCode {
    let amount = match amount_minor(&args.amount, args.currency) {
        Ok(amount) => amount,
        Err(message) => return fail(&args.connect, &message, None),
    };
    let what = format!(
        "code charge {} by {} of {}",
        args.code,
        args.merchant,
        money(i128::from(amount), args.currency)
    );
    let mut details = fields([
        ("merchant", json!(args.merchant)),
        ("payment_code", json!(args.code.to_string())),
    ]);
    add_amount(&mut details, amount, args.currency);
    let context = match args.risk.context() {
        Ok(context) => context,
        Err(message) => return fail(&args.connect, &message, None),
    };
    let kind = CommandKind::ChargePaymentCode {
        merchant: AccountId(args.merchant),
        code: args.code,
        amount,
        currency: args.currency,
        context,
    };
    execute(&args.connect, args.id, what, kind, details)
}

// ---------------------------------------------------------------------------
// refund

/// `payrail refund PAYMENT_ID AMOUNT CURRENCY`: the currency gives the
/// amount's decimals; the money goes back in the payment's own currency.
pub fn refund(args: RefundArgs) -> ExitCode {
    let amount = match amount_minor(&args.amount, args.currency) {
        Ok(amount) => amount,
        Err(message) => return fail(&args.connect, &message, None),
    };
    let payment = format_command_id(args.payment);
    let what = format!(
        "refund of {} from payment {payment}",
        money(i128::from(amount), args.currency)
    );
    let mut details = fields([("payment_id", json!(payment))]);
    add_amount(&mut details, amount, args.currency);
    let kind = CommandKind::Refund {
        payment: CommandId(args.payment),
        amount,
        currency: args.currency,
    };
    execute(&args.connect, args.id, what, kind, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merchant_qr_templates_carry_the_key_asked_for() {
        let cases = [
            ("br.gov.bcb.pix", "merchant@example.com"),
            ("A000000677010111", "0066912345678"),
            ("SG.PAYNOW", "2:201403121W"),
            ("A0000006150001", "501664:123456789"),
            ("ID.CO.QRIS.WWW", "ID1021125405972"),
            ("com.example.wallet", "shop-1"),
        ];
        for (gui, merchant_id) in cases {
            let code = MerchantQr::static_code(
                merchant_template(gui, merchant_id),
                5812,
                Currency::CNY,
                "CN",
                "Noodles",
                "Shanghai",
            );
            let payload = qr::generate(&code).unwrap();
            let keys = qr_pay::merchant_keys(&qr::parse(&payload).unwrap());
            assert!(
                keys.contains(&MerchantKey::new(gui, merchant_id)),
                "{gui} {merchant_id}"
            );
        }
    }

    #[test]
    fn lifetimes_read_as_people_write_them() {
        assert_eq!(human_ms(60_000), "1 min");
        assert_eq!(human_ms(90_000), "90 s");
        assert_eq!(human_ms(5_000), "5 s");
        assert_eq!(human_ms(1_500), "1500 ms");
    }
}
