//! Day-two operations: `history`, `tx show`, `backup` and `verify`.

use std::process::ExitCode;

use payrail_api::client::{snake_case, Client};
use payrail_api::config::ServerConfig;
use payrail_engine::history::Movement;
use payrail_engine::storage::{self, hex32, HistoryConfig, RocksStorage, Storage};
use payrail_engine::{AccountId, CommandId, LedgerConfig};
use serde_json::{json, Value};

use super::parse::{account_label, decimal_minor, format_command_id, format_time, money};
use super::run::{
    block_on, client_config, fail, fail_client, init_tracing, sentence, EXIT_ERROR, EXIT_REFUSED,
};
use super::{BackupArgs, HistoryArgs, TxShowArgs, VerifyArgs};

fn movement_json(movement: &Movement) -> Value {
    json!({
        "account": movement.account.0,
        "command_id": format_command_id(movement.command.0),
        "kind": movement.kind,
        "counterparty": movement.counterparty.0,
        "counterparty_label": account_label(movement.counterparty),
        "amount": movement.amount,
        "amount_decimal": decimal_minor(i128::from(movement.amount), movement.currency),
        "balance": movement.balance,
        "balance_decimal": decimal_minor(i128::from(movement.balance), movement.currency),
        "currency": movement.currency.code(),
        "mcc": movement.mcc,
        "instrument": movement.instrument.map(|instrument| json!({
            "number": instrument.number,
            "bank": instrument.bank.as_str(),
            "last_four": String::from_utf8_lossy(&instrument.last_four),
            "label": instrument.to_string(),
        })),
        "sequence": movement.sequence,
        "timestamp_ns": movement.timestamp,
        "time": format_time(movement.timestamp),
    })
}

/// One table row per movement.
fn print_movements(movements: &[Movement], with_account: bool) {
    let rows: Vec<[String; 7]> = movements
        .iter()
        .map(|movement| {
            let signed = money(i128::from(movement.amount), movement.currency);
            let amount = if movement.amount > 0 {
                format!("+{signed}")
            } else {
                signed
            };
            [
                format_time(movement.timestamp),
                if with_account {
                    account_label(movement.account)
                } else {
                    movement.kind.to_string()
                },
                amount,
                money(i128::from(movement.balance), movement.currency),
                // A top-up's or a withdrawal's other side is the customer's
                // card or bank account (the house account is bookkeeping).
                match &movement.instrument {
                    Some(instrument) => instrument.to_string(),
                    None => account_label(movement.counterparty),
                },
                if movement.mcc == 0 {
                    "-".to_owned()
                } else {
                    format!("{:04}", movement.mcc)
                },
                format_command_id(movement.command.0),
            ]
        })
        .collect();
    let head = [
        "time (UTC)",
        if with_account { "account" } else { "kind" },
        "amount",
        "balance",
        "counterparty",
        "mcc",
        "command id",
    ];
    let mut widths: Vec<usize> = head.iter().map(|name| name.len()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: &[&str]| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index == 2 || index == 3 {
                text.push_str(&format!("{cell:>width$}  "));
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_owned()
    };
    outln!("{}", line(&head));
    for row in &rows {
        let cells: Vec<&str> = row.iter().map(String::as_str).collect();
        outln!("{}", line(&cells));
    }
}

pub fn history(args: &HistoryArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let config = match client_config(connect) {
        Ok(config) => config,
        Err(message) => return fail(connect, &message, None),
    };
    let (account, from, to, cursor, limit) = (
        AccountId(args.account),
        args.from.unwrap_or(0),
        args.to.unwrap_or(u64::MAX),
        args.cursor.unwrap_or(0),
        args.limit,
    );
    let outcome = block_on(async move {
        let client = Client::connect(config).await?;
        client.history(account, from, to, cursor, limit).await
    });
    let page = match outcome {
        Ok(Ok(page)) => page,
        Ok(Err(error)) => return fail_client(connect, &error, None),
        Err(message) => return fail(connect, &message, None),
    };
    let next = (page.next_cursor != 0).then(|| format!("{:032x}", page.next_cursor));
    if connect.json {
        let entries: Vec<Value> = page.entries.iter().map(movement_json).collect();
        outln!(
            "{}",
            json!({ "ok": true, "account": args.account, "entries": entries, "next_cursor": next })
        );
    } else if page.entries.is_empty() {
        outln!("account {}: no movements in this range", args.account);
    } else {
        print_movements(&page.entries, false);
        if let Some(next) = next {
            outln!("more: payrail history {} --cursor {next}", args.account);
        }
    }
    ExitCode::SUCCESS
}

pub fn tx_show(args: &TxShowArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let config = match client_config(connect) {
        Ok(config) => config,
        Err(message) => return fail(connect, &message, None),
    };
    let id = CommandId(args.id);
    let outcome = block_on(async move {
        let client = Client::connect(config).await?;
        client.tx(id).await
    });
    let (source, status, legs) = match outcome {
        Ok(Ok(reply)) => reply,
        Ok(Err(error)) => return fail_client(connect, &error, None),
        Err(message) => return fail(connect, &message, None),
    };
    let id_text = format_command_id(args.id);
    let known = source != payrail_api::wire::TxSource::Unknown;
    if connect.json {
        let legs: Vec<Value> = legs.iter().map(movement_json).collect();
        outln!(
            "{}",
            json!({
                "ok": true,
                "command_id": id_text,
                "known": known,
                "source": source.name(),
                "status": if known { json!(snake_case(status.name())) } else { json!("unknown") },
                "code": if known { json!(status.code()) } else { Value::Null },
                "legs": legs,
            })
        );
    } else {
        match source {
            payrail_api::wire::TxSource::Record => {
                outln!("command {id_text}: {}", sentence(status));
            }
            payrail_api::wire::TxSource::History => outln!(
                "command {id_text}: done (its idempotency record has expired; it moved money, so it was applied)"
            ),
            _ => outln!(
                "command {id_text}: unknown: never applied, or applied without moving money and its idempotency record has expired"
            ),
        }
        if !legs.is_empty() {
            print_movements(&legs, true);
        }
    }
    ExitCode::SUCCESS
}

pub fn backup(args: &BackupArgs) -> ExitCode {
    init_tracing("warn");
    let connect = &args.connect;
    let dir = if args.dir.is_absolute() {
        args.dir.clone()
    } else {
        match std::env::current_dir() {
            Ok(cwd) => cwd.join(&args.dir),
            Err(error) => {
                return fail(
                    connect,
                    &format!("cannot tell the working directory: {error}"),
                    None,
                )
            }
        }
    };
    let Some(dir_text) = dir.to_str().map(str::to_owned) else {
        return fail(connect, "the backup directory must be valid UTF-8", None);
    };
    let config = match client_config(connect) {
        Ok(config) => config,
        Err(message) => return fail(connect, &message, None),
    };
    let request_dir = dir_text.clone();
    let outcome = block_on(async move {
        let client = Client::connect(config).await?;
        client.backup(&request_dir).await
    });
    let last_sequence = match outcome {
        Ok(Ok(sequence)) => sequence,
        Ok(Err(error)) => return fail_client(connect, &error, None),
        Err(message) => return fail(connect, &message, None),
    };
    if connect.json {
        outln!(
            "{}",
            json!({ "ok": true, "dir": dir_text, "last_sequence": last_sequence })
        );
    } else {
        outln!("backup written to {dir_text}: it holds every command up to log sequence {last_sequence}");
        outln!("restore: payrail serve --data-dir {dir_text}   (check it first: payrail verify {dir_text})");
    }
    ExitCode::SUCCESS
}

pub fn verify(args: &VerifyArgs) -> ExitCode {
    init_tracing("warn");
    let refuse = |message: String| {
        errln!("error: {message}");
        if args.json {
            outln!("{}", json!({ "ok": false, "error": message }));
        }
        ExitCode::from(EXIT_ERROR)
    };
    let (ledger_config, history_config) = match &args.config {
        Some(path) => match ServerConfig::load(path) {
            Ok(config) => (
                config.engine.engine_config().ledger,
                config.engine.history_config(),
            ),
            Err(error) => return refuse(error.to_string()),
        },
        None => (LedgerConfig::default(), HistoryConfig::default()),
    };
    // Every history segment read and checked, not only those after the
    // head-index snapshot as a start does.
    let history_config = HistoryConfig {
        check_all_segments: true,
        ..history_config
    };
    if !args.data_dir.join("CURRENT").exists() {
        return refuse(format!(
            "{} is not a data directory (no RocksDB in it)",
            args.data_dir.display()
        ));
    }
    let mut storage = match RocksStorage::open_with(&args.data_dir, history_config) {
        Ok(storage) => storage,
        Err(error) => {
            return refuse(format!(
                "cannot open {} (is a server running on it?): {error}",
                args.data_dir.display()
            ))
        }
    };
    let (ledger, report) = match storage::recover(&mut storage, ledger_config) {
        Ok(recovered) => recovered,
        Err(error) => {
            errln!("verify failed: {error}");
            if args.json {
                outln!("{}", json!({ "ok": false, "error": error.to_string() }));
            }
            return ExitCode::from(EXIT_REFUSED);
        }
    };
    let totals = ledger.totals();
    let conserved = totals.values().all(|total| total.is_conserved());
    let log = storage.log_stats();
    let watermark = storage.history_watermark().unwrap_or(0);
    let history_found = storage.history_report().clone();
    let history = storage.history_stats();
    let damaged: Vec<Value> = history_found
        .damaged
        .iter()
        .map(|damaged| {
            json!({
                "segment": damaged.number,
                "reason": damaged.reason,
                "rebuilt": damaged.rebuilt,
            })
        })
        .collect();
    if args.json {
        let currencies: Vec<Value> = totals
            .iter()
            .map(|(currency, total)| {
                json!({
                    "currency": currency.code(),
                    "balance": total.balance.to_string(),
                    "debits_pending": total.debits_pending.to_string(),
                    "credits_pending": total.credits_pending.to_string(),
                    "conserved": total.is_conserved(),
                })
            })
            .collect();
        outln!(
            "{}",
            json!({
                "ok": conserved,
                "checkpoint_sequence": report.checkpoint_sequence,
                "records_replayed": report.records_replayed,
                "commands_replayed": report.commands_replayed,
                "dropped_tail": report.dropped_tail,
                "last_sequence": report.last_sequence,
                "log_records": log.records,
                "accounts": ledger.accounts().len(),
                "idempotency_records": ledger.records_len(),
                "history_watermark": watermark,
                "history": {
                    "segments_checked": history_found.segments,
                    "movements_checked": history_found.movements,
                    "torn_bytes": history_found.torn_bytes,
                    "command_indexes_rebuilt": history_found.command_indexes_rebuilt,
                    "damaged": damaged,
                    "rebuilt_movements": report.history_rebuilt,
                    "segments": history.segments,
                    "movements": history.movements,
                    "oldest_timestamp_ns": history.oldest_timestamp,
                },
                "digest": hex32(&report.digest),
                "currencies": currencies,
            })
        );
    } else {
        outln!("data directory   {}", args.data_dir.display());
        outln!(
            "checkpoint       sequence {} (digest checked)",
            report.checkpoint_sequence
        );
        outln!(
            "log              {} records replayed ({} commands), last sequence {}",
            report.records_replayed,
            report.commands_replayed,
            report.last_sequence
        );
        if let Some(tail) = report.dropped_tail {
            outln!("torn tail        record {tail} dropped (never acknowledged)");
        }
        outln!("accounts         {}", ledger.accounts().len());
        outln!("idempotency      {} records kept", ledger.records_len());
        outln!(
            "history          {} segments, {} movements checked; complete up to sequence {watermark} ({} movements rebuilt from the log)",
            history_found.segments,
            history_found.movements,
            report.history_rebuilt
        );
        if history_found.torn_bytes > 0 {
            outln!(
                "history tail     {} bytes of an unfinished append dropped (rebuilt from the log)",
                history_found.torn_bytes
            );
        }
        for damaged in &history_found.damaged {
            outln!(
                "history damage   segment {}: {}; {}",
                damaged.number,
                damaged.reason,
                if damaged.rebuilt {
                    "cut there and rebuilt from the log"
                } else {
                    "deleted: the log no longer holds its batches, its movements are lost"
                }
            );
        }
        outln!("digest           {}", hex32(&report.digest));
        for (currency, total) in &totals {
            outln!(
                "{:<16} sum of balances {}, held {}, incoming {}: {}",
                currency.code(),
                total.balance,
                total.debits_pending,
                total.credits_pending,
                if total.is_conserved() {
                    "conserved"
                } else {
                    "NOT CONSERVED"
                }
            );
        }
        outln!(
            "verify: {}",
            if conserved {
                "ok"
            } else {
                "FAILED: money is not conserved"
            }
        );
    }
    if conserved {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_REFUSED)
    }
}
