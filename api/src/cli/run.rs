//! Runs one subcommand: `serve`, or connect, send one command or query and
//! print the outcome (a sentence, or one JSON object with `--json`).
//!
//! Exit codes: 0 done, 1 the engine refused the command (the status says
//! why), 2 usage, configuration or connection errors.

use std::path::Path;
use std::process::ExitCode;

use payrail_api::client::{snake_case, Client, ClientConfig, ClientError};
use payrail_api::config::GatewayConfig;
use payrail_api::serve::{self, ServeOptions};
use payrail_engine::{
    AccountId, AccountKind, AccountStatus, AccountView, Command as EngineCommand, CommandId,
    CommandKind, CommandResult, Currency, OpenAccount, Query, QueryReply, Status,
};
use serde_json::{json, Map, Value};

use super::fx::{self, FxCommand};
use super::ops;
use super::parse::{amount_minor, decimal_minor, format_command_id, money};
use super::qr;
use super::risk;
use super::{
    AccountCommand, BudgetCommand, Cli, CodeCommand, Command, ConnectArgs, IdArgs, MerchantCommand,
    QrCommand, RiskCommand, ServeArgs, StatusArgs, TxCommand, WithdrawCommand,
};

pub(super) const EXIT_REFUSED: u8 = 1;
pub(super) const EXIT_ERROR: u8 = 2;

/// Runs the parsed command line.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Account(AccountCommand::Open(args)) => {
            let kind = if args.merchant {
                AccountKind::Merchant
            } else {
                AccountKind::Customer
            };
            let open = OpenAccount {
                account: AccountId(args.account),
                owner: args.owner,
                kind,
                currency: args.currency,
                kyc_tier: args.kyc_tier.unwrap_or(0),
                mcc: args.mcc.unwrap_or(0),
            };
            let described = match kind {
                AccountKind::Merchant => format!("merchant, MCC {:04}", open.mcc),
                _ => format!("customer, KYC tier {}", open.kyc_tier),
            };
            let what = format!(
                "account open {} ({described}, owner {}, {})",
                args.account, args.owner, args.currency
            );
            let details = fields([
                ("account", json!(args.account)),
                ("owner", json!(args.owner)),
                ("kind", json!(kind_name(kind))),
                ("currency", json!(args.currency.code())),
                ("kyc_tier", json!(open.kyc_tier)),
                ("mcc", json!(open.mcc)),
            ]);
            execute(
                &args.connect,
                args.id,
                what,
                CommandKind::OpenAccount(open),
                details,
            )
        }
        Command::Account(AccountCommand::Show(args)) => show(&args.connect, args.account),
        Command::Account(AccountCommand::Freeze(args)) => {
            let account = AccountId(args.account);
            let what = format!("account freeze {}", args.account);
            let details = fields([("account", json!(args.account))]);
            execute(
                &args.connect,
                args.id,
                what,
                CommandKind::Freeze { account },
                details,
            )
        }
        Command::Account(AccountCommand::Unfreeze(args)) => {
            let account = AccountId(args.account);
            let what = format!("account unfreeze {}", args.account);
            let details = fields([("account", json!(args.account))]);
            execute(
                &args.connect,
                args.id,
                what,
                CommandKind::Unfreeze { account },
                details,
            )
        }
        Command::Account(AccountCommand::Close(args)) => {
            let account = AccountId(args.account);
            let what = format!("account close {}", args.account);
            let details = fields([("account", json!(args.account))]);
            execute(
                &args.connect,
                args.id,
                what,
                CommandKind::Close { account },
                details,
            )
        }
        Command::Account(AccountCommand::Kyc(args)) => {
            let account = AccountId(args.account);
            let what = format!("account kyc {} tier {}", args.account, args.tier);
            let details = fields([
                ("account", json!(args.account)),
                ("kyc_tier", json!(args.tier)),
            ]);
            let kind = CommandKind::SetKycTier {
                account,
                tier: args.tier,
            };
            execute(&args.connect, args.id, what, kind, details)
        }
        Command::Deposit(args) => {
            let amount = match amount_minor(&args.amount, args.currency) {
                Ok(amount) => amount,
                Err(message) => return fail(&args.connect, &message, None),
            };
            let what = format!(
                "deposit of {} to {}",
                money(i128::from(amount), args.currency),
                args.account
            );
            let mut details = fields([("account", json!(args.account))]);
            add_amount(&mut details, amount, args.currency);
            let kind = match args.from {
                None => CommandKind::Deposit {
                    account: AccountId(args.account),
                    amount,
                    currency: args.currency,
                },
                Some(instrument) => {
                    details.insert("from".into(), json!(instrument.to_string()));
                    CommandKind::DepositFrom {
                        account: AccountId(args.account),
                        amount,
                        currency: args.currency,
                        instrument,
                    }
                }
            };
            let what = match args.from {
                Some(instrument) => format!("{what} from {instrument}"),
                None => what,
            };
            execute(&args.connect, args.id, what, kind, details)
        }
        Command::Transfer(args) => {
            let amount = match amount_minor(&args.amount, args.currency) {
                Ok(amount) => amount,
                Err(message) => return fail(&args.connect, &message, None),
            };
            let what = format!(
                "transfer {} -> {} of {}",
                args.from,
                args.to,
                money(i128::from(amount), args.currency)
            );
            let context = match args.risk.context() {
                Ok(context) => context,
                Err(message) => return fail(&args.connect, &message, None),
            };
            let mut details = fields([("from", json!(args.from)), ("to", json!(args.to))]);
            add_amount(&mut details, amount, args.currency);
            let kind = CommandKind::Transfer {
                from: AccountId(args.from),
                to: AccountId(args.to),
                amount,
                currency: args.currency,
                context,
            };
            execute(&args.connect, args.id, what, kind, details)
        }
        Command::Withdraw(WithdrawCommand::Hold(args)) => {
            let amount = match amount_minor(&args.amount, args.currency) {
                Ok(amount) => amount,
                Err(message) => return fail(&args.connect, &message, None),
            };
            let what = format!(
                "withdrawal hold of {} on {}",
                money(i128::from(amount), args.currency),
                args.account
            );
            let mut details = fields([("account", json!(args.account))]);
            add_amount(&mut details, amount, args.currency);
            details.insert("timeout_ms".into(), json!(args.timeout));
            let context = match args.risk.context() {
                Ok(context) => context,
                Err(message) => return fail(&args.connect, &message, None),
            };
            let kind = match args.to {
                None => CommandKind::WithdrawHold {
                    account: AccountId(args.account),
                    amount,
                    currency: args.currency,
                    timeout_ms: args.timeout,
                    context,
                },
                Some(instrument) => {
                    details.insert("to".into(), json!(instrument.to_string()));
                    CommandKind::WithdrawHoldTo {
                        account: AccountId(args.account),
                        amount,
                        currency: args.currency,
                        timeout_ms: args.timeout,
                        context,
                        instrument,
                    }
                }
            };
            let what = match args.to {
                Some(instrument) => format!("{what} to {instrument}"),
                None => what,
            };
            execute(&args.connect, args.id, what, kind, details)
        }
        Command::Withdraw(WithdrawCommand::Post(args)) => {
            let hold = format_command_id(args.hold);
            let what = format!("withdrawal post of hold {hold}");
            let details = fields([("hold_id", json!(hold))]);
            let kind = CommandKind::WithdrawPost {
                hold: CommandId(args.hold),
            };
            execute(&args.connect, args.id, what, kind, details)
        }
        Command::Withdraw(WithdrawCommand::Void(args)) => {
            let hold = format_command_id(args.hold);
            let what = format!("withdrawal void of hold {hold}");
            let details = fields([("hold_id", json!(hold))]);
            let kind = CommandKind::WithdrawVoid {
                hold: CommandId(args.hold),
            };
            execute(&args.connect, args.id, what, kind, details)
        }
        Command::Status(args) => status(&args),
        Command::Qr(QrCommand::Decode(args)) => qr::decode(&args),
        Command::Qr(QrCommand::Pay(args)) => qr::pay(&args),
        Command::Merchant(MerchantCommand::Register(args)) => qr::merchant_register(&args),
        Command::Merchant(MerchantCommand::Qr(args)) => qr::merchant_qr(&args),
        Command::Code(CodeCommand::Issue(args)) => qr::code_issue(&args),
        Command::Code(CodeCommand::Charge(args)) => qr::code_charge(args),
        Command::Refund(args) => qr::refund(args),
        Command::Risk(RiskCommand::SetPolicy(args)) => risk::set_policy(&args),
        Command::Risk(RiskCommand::Show(args)) => risk::show(&args),
        Command::Risk(RiskCommand::Audit(args)) => risk::audit(&args),
        Command::Budget(BudgetCommand::Set(args)) => risk::budget_set(args),
        Command::Budget(BudgetCommand::Show(args)) => risk::budget_show(&args),
        Command::Fx(command) => match command {
            FxCommand::Set(args) => fx::set(args),
            FxCommand::Load(args) => fx::load(args),
            FxCommand::List(args) => fx::list(args),
            FxCommand::Quote(args) => fx::quote(args),
            FxCommand::Convert(args) => fx::convert(args),
            FxCommand::Floor(args) => fx::floor(args),
        },
        Command::Card(command) => match command {
            super::card::CardCommand::Bind(args) => super::card::bind(args),
            super::card::CardCommand::Verify(args) => super::card::verify(args),
            super::card::CardCommand::Unbind(args) => super::card::unbind(args),
            super::card::CardCommand::List(args) => super::card::list(args),
        },
        Command::History(args) => ops::history(&args),
        Command::Tx(TxCommand::Show(args)) => ops::tx_show(&args),
        Command::Backup(args) => ops::backup(&args),
        Command::Verify(args) => ops::verify(&args),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    init_tracing("info");
    let options = ServeOptions {
        listen: args.listen,
        data_dir: args.data_dir,
        config: args.config,
        shards: args.shards,
        risk_policy: args.risk_policy,
        backup_root: args.backup_root,
        metrics_listen: args.metrics_listen,
        no_metrics: args.no_metrics,
        prefault: args.prefault,
    };
    match serve::serve_blocking(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            errln!("error: {error}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

pub(super) fn init_tracing(default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    // Colours only on a terminal: logs redirected to a file stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

pub(super) fn fields<const N: usize>(entries: [(&str, Value); N]) -> Map<String, Value> {
    entries
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
}

pub(super) fn add_amount(details: &mut Map<String, Value>, amount: u64, currency: Currency) {
    details.insert("amount".into(), json!(amount));
    details.insert(
        "amount_decimal".into(),
        json!(decimal_minor(i128::from(amount), currency)),
    );
    details.insert("currency".into(), json!(currency.code()));
}

/// Sends one command and prints its outcome.
pub(super) fn execute(
    connect: &ConnectArgs,
    id: IdArgs,
    what: String,
    kind: CommandKind,
    details: Map<String, Value>,
) -> ExitCode {
    init_tracing("warn");
    let command_id = id.id.unwrap_or_else(rand::random::<u128>);
    let result = match submit_one(connect, EngineCommand::new(command_id, kind)) {
        Ok(result) => result,
        Err(exit) => return exit,
    };
    let status = result.status;
    let id_text = format_command_id(command_id);
    let is_hold = matches!(
        kind,
        CommandKind::WithdrawHold { .. } | CommandKind::WithdrawHoldTo { .. }
    );
    let is_payment = matches!(kind, CommandKind::ChargePaymentCode { .. });
    if connect.json {
        let mut object = Map::new();
        object.insert("command".into(), json!(kind.name()));
        object.insert("command_id".into(), json!(id_text));
        object.insert("ok".into(), json!(status.is_ok()));
        object.insert("status".into(), json!(snake_case(status.name())));
        object.insert("code".into(), json!(status.code()));
        object.insert("message".into(), json!(status.description()));
        if is_hold && status.is_ok() {
            object.insert("hold_id".into(), json!(id_text));
        }
        if is_payment && status.is_ok() {
            object.insert("payment_id".into(), json!(id_text));
        }
        object.extend(details);
        risk::add_detail_json(&mut object, &result.detail);
        outln!("{}", Value::Object(object));
    } else {
        outln!("{what}: {}", sentence(status));
        for line in risk::detail_lines(&result.detail, risk::kind_currency(&kind)) {
            outln!("{line}");
        }
        if is_hold && status.is_ok() {
            outln!("hold id: {id_text} (then `payrail withdraw post {id_text}` or `payrail withdraw void {id_text}`)");
        } else if let (CommandKind::ChargePaymentCode { currency, .. }, true) =
            (kind, status.is_ok())
        {
            outln!(
                "payment id: {id_text} (refund with `payrail refund {id_text} AMOUNT {}`)",
                currency.code()
            );
        } else {
            outln!("command id: {id_text}");
        }
    }
    exit_for(status)
}

/// Exit code 0 for a command done, 1 for one refused.
pub(super) fn exit_for(status: Status) -> ExitCode {
    if status.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    }
}

/// How to retry a request whose outcome is unknown: its command id, and
/// the arguments that repeat it (`--id ...`, and more where a retry needs it).
#[derive(Debug, Clone)]
pub(super) struct Retry {
    pub command_id: u128,
    pub args: String,
}

impl Retry {
    pub fn with_id(command_id: u128) -> Retry {
        Retry {
            command_id,
            args: format!("--id {}", format_command_id(command_id)),
        }
    }
}

/// Connects and sends one command. On failure the error is printed and the
/// exit code returned.
fn submit_one(connect: &ConnectArgs, command: EngineCommand) -> Result<CommandResult, ExitCode> {
    let command_id = command.id.0;
    let retry = Retry::with_id(command_id);
    let results = run_client(connect, Some(&retry), move |client| async move {
        client.submit(vec![command]).await
    })?;
    match results.first() {
        Some(result) => Ok(*result),
        None => Err(fail(connect, "the server sent no result", Some(command_id))),
    }
}

/// Connects with `connect`'s settings and runs `request` on a runtime of
/// its own. On failure the error is printed (with how to retry, when the
/// outcome is unknown) and the exit code returned.
pub(super) fn run_client<T, F, Fut>(
    connect: &ConnectArgs,
    retry: Option<&Retry>,
    request: F,
) -> Result<T, ExitCode>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let config = client_config(connect).map_err(|message| fail(connect, &message, None))?;
    let outcome = block_on(async move {
        let client = Client::connect(config).await?;
        request(client).await
    });
    let command_id = retry.map(|retry| retry.command_id);
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(fail_client(connect, &error, retry)),
        Err(message) => Err(fail(connect, &message, command_id)),
    }
}

/// "done", or "refused: insufficient funds (insufficient_funds)".
pub(super) fn sentence(status: Status) -> String {
    if status.is_ok() {
        status.description().to_owned()
    } else {
        format!(
            "refused: {} ({})",
            status.description(),
            snake_case(status.name())
        )
    }
}

fn show(connect: &ConnectArgs, account: u64) -> ExitCode {
    init_tracing("warn");
    let config = match client_config(connect) {
        Ok(config) => config,
        Err(message) => return fail(connect, &message, None),
    };
    let outcome = block_on(async move {
        let client = Client::connect(config).await?;
        client
            .query(vec![Query::Balance {
                account: AccountId(account),
            }])
            .await
    });
    let reply = match outcome {
        Ok(Ok(replies)) => match replies.first() {
            Some(reply) => *reply,
            None => return fail(connect, "the server sent no reply", None),
        },
        Ok(Err(error)) => return fail_client(connect, &error, None),
        Err(message) => return fail(connect, &message, None),
    };
    match reply {
        QueryReply::Balance(view) => {
            if connect.json {
                outln!("{}", view_json(&view));
            } else {
                print_view(&view);
            }
            ExitCode::SUCCESS
        }
        QueryReply::Refused(status) => {
            if connect.json {
                let object = json!({
                    "account": account,
                    "ok": false,
                    "status": snake_case(status.name()),
                    "code": status.code(),
                    "message": status.description(),
                });
                outln!("{object}");
            } else {
                outln!("account show {account}: {}", sentence(status));
            }
            ExitCode::from(EXIT_REFUSED)
        }
        other => fail(
            connect,
            &format!("the server answered a balance query with {other:?}"),
            None,
        ),
    }
}

fn kind_name(kind: AccountKind) -> &'static str {
    match kind {
        AccountKind::Customer => "customer",
        AccountKind::Merchant => "merchant",
        AccountKind::House => "house",
    }
}

fn status_name(status: AccountStatus) -> &'static str {
    match status {
        AccountStatus::Active => "active",
        AccountStatus::Frozen => "frozen",
        AccountStatus::Closed => "closed",
    }
}

fn view_json(view: &AccountView) -> Value {
    let currency = view.currency;
    let decimal = |minor: i128| decimal_minor(minor, currency);
    json!({
        "ok": true,
        "account": view.account.0,
        "owner": view.owner,
        "kind": kind_name(view.kind),
        "currency": currency.code(),
        "status": status_name(view.status),
        "kyc_tier": view.kyc_tier,
        "mcc": view.mcc,
        "balance": view.balance,
        "balance_decimal": decimal(i128::from(view.balance)),
        "available": view.available,
        "available_decimal": decimal(i128::from(view.available)),
        "debits_pending": view.debits_pending,
        "debits_pending_decimal": decimal(i128::from(view.debits_pending)),
        "credits_pending": view.credits_pending,
        "credits_pending_decimal": decimal(i128::from(view.credits_pending)),
    })
}

fn print_view(view: &AccountView) {
    let currency = view.currency;
    let kind = match view.kind {
        AccountKind::Customer => format!("customer, KYC tier {}", view.kyc_tier),
        AccountKind::Merchant => format!("merchant, MCC {:04}", view.mcc),
        AccountKind::House => "house".to_owned(),
    };
    outln!(
        "account {}: {kind}, {}, owner {}, {}",
        view.account.0,
        status_name(view.status),
        view.owner,
        currency.code()
    );
    let rows = [
        ("balance", i128::from(view.balance)),
        ("available", i128::from(view.available)),
        ("held", i128::from(view.debits_pending)),
    ];
    let amounts: Vec<String> = rows
        .iter()
        .map(|(_, minor)| money(*minor, currency))
        .collect();
    let width = amounts.iter().map(String::len).max().unwrap_or(0);
    for ((name, _), amount) in rows.iter().zip(&amounts) {
        outln!("  {name:<10} {amount:>width$}");
    }
    if view.credits_pending != 0 {
        outln!(
            "  {:<10} {:>width$}",
            "incoming",
            money(i128::from(view.credits_pending), currency)
        );
    }
}

fn status(args: &StatusArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let config = match client_config(connect) {
        Ok(config) => config,
        Err(message) => return fail(connect, &message, None),
    };
    let outcome = block_on(async move {
        let client = Client::connect(config).await?;
        client.status().await
    });
    let counters = match outcome {
        Ok(Ok(counters)) => counters,
        Ok(Err(error)) => return fail_client(connect, &error, None),
        Err(message) => return fail(connect, &message, None),
    };
    if connect.json {
        let counters: Map<String, Value> = counters
            .into_iter()
            .map(|(name, value)| (name, json!(value)))
            .collect();
        outln!("{}", json!({ "ok": true, "counters": counters }));
    } else {
        let width = counters
            .iter()
            .map(|(name, _)| name.len())
            .max()
            .unwrap_or(0);
        for (name, value) in &counters {
            outln!("{name:<width$}  {value}");
        }
    }
    ExitCode::SUCCESS
}

/// The client configuration: `--gateway` with `--secret-file`, or the local
/// gateway of `--data-dir`.
pub(super) fn client_config(connect: &ConnectArgs) -> Result<ClientConfig, String> {
    let config = match (&connect.gateway, &connect.secret_file) {
        (Some(gateway), Some(path)) => {
            let secret = read_secret_file(path)?;
            ClientConfig::new(connect.addr.clone(), gateway.clone(), secret)
        }
        _ => ClientConfig::local(connect.addr.clone(), &connect.data_dir)
            .map_err(|error| error.to_string())?,
    };
    let Some(ca) = &connect.tls_ca else {
        return Ok(config);
    };
    // "host:port", "[v6]:port": the host part, without brackets.
    let host = connect
        .addr
        .rsplit_once(':')
        .map_or(connect.addr.as_str(), |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let server_name = connect.tls_server_name.as_deref().unwrap_or(host);
    let client = match (&connect.tls_cert, &connect.tls_key) {
        (Some(certificate), Some(key)) => Some((certificate.as_path(), key.as_path())),
        _ => None,
    };
    let tls = payrail_api::tls::ClientTls::new(ca, server_name, client)
        .map_err(|error| error.to_string())?;
    Ok(config.with_tls(tls))
}

/// A secret file holds the secret as hex, or is a gateway.toml.
fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        let reason = match error.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => error.to_string(),
        };
        format!("cannot read the secret file {}: {reason}", path.display())
    })?;
    if let Ok(gateway) = toml::from_str::<GatewayConfig>(&text) {
        if let Some(secret) = gateway.secret_bytes() {
            return Ok(secret);
        }
    }
    match hex::decode(text.trim()) {
        Ok(secret) if secret.len() >= 16 => Ok(secret),
        _ => Err(format!(
            "{} holds no usable secret: write it as hex (at least 16 bytes), or pass a gateway.toml",
            path.display()
        )),
    }
}

/// Runs a future on a small runtime of its own; `Err` if none can be made.
pub(super) fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the async runtime: {error}"))?;
    Ok(runtime.block_on(future))
}

pub(super) fn fail_client(
    connect: &ConnectArgs,
    error: &ClientError,
    retry: Option<&Retry>,
) -> ExitCode {
    let mut message = error.to_string();
    if let (true, Some(retry)) = (error.outcome_unknown(), retry) {
        message.push_str(&format!(
            " (run the same command again with {} to learn its outcome)",
            retry.args
        ));
    }
    fail(connect, &message, retry.map(|retry| retry.command_id))
}

/// Prints an error sentence (stderr; and one JSON object on stdout with
/// `--json`) and returns exit code 2.
pub(super) fn fail(connect: &ConnectArgs, message: &str, command_id: Option<u128>) -> ExitCode {
    errln!("error: {message}");
    if connect.json {
        let mut object = Map::new();
        object.insert("ok".into(), json!(false));
        object.insert("error".into(), json!(message));
        if let Some(id) = command_id {
            object.insert("command_id".into(), json!(format_command_id(id)));
        }
        outln!("{}", Value::Object(object));
    }
    ExitCode::from(EXIT_ERROR)
}
