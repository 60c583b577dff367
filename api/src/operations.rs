//! Requests the server answers from the data directory rather than through
//! the engine's executor: history pages, `tx show`, and backups. Each runs
//! on a blocking thread of its own (RocksDB reads and the checkpoint copy
//! block), so the executor and other connections never wait for them.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use payrail_engine::history::HistoryPage;
use payrail_engine::pipeline::EngineHandle;
use payrail_engine::storage::StorageError;
use payrail_engine::{CommandId, Query, QueryReply, Status};
use tokio::sync::oneshot;

use crate::config::LOCAL_GATEWAY_FILE;
use crate::server::Store;
use crate::wire::{error_message, ErrorCode, Message, TxSource};

/// Entries in a history page when the request says `limit = 0`.
pub const HISTORY_PAGE_DEFAULT: u32 = 50;

/// The reply to a `HistoryQuery`, `TxQuery` or `Backup`.
pub async fn answer(engine: &EngineHandle, store: Option<&Store>, message: Message) -> Message {
    let Some(store) = store.cloned() else {
        return error_message(
            ErrorCode::NotAvailable,
            "this server keeps no data directory: no history or backups",
        );
    };
    match message {
        Message::HistoryQuery {
            account,
            from_ns,
            to_ns,
            cursor,
            limit,
        } => {
            let limit = if limit == 0 {
                HISTORY_PAGE_DEFAULT
            } else {
                limit
            };
            let started = Instant::now();
            let read = blocking(move || {
                store
                    .storage
                    .history_page(account, from_ns, to_ns, cursor, limit)
            })
            .await;
            metrics::histogram!("payrail_history_query_seconds")
                .record(started.elapsed().as_secs_f64());
            match read {
                Ok(HistoryPage {
                    entries,
                    next_cursor,
                }) => Message::HistoryPage {
                    entries,
                    next_cursor,
                },
                Err(message) => error_message(ErrorCode::Internal, &message),
            }
        }
        Message::TxQuery { id } => tx(engine, store, id).await,
        Message::Backup { dir } => backup(engine, store, PathBuf::from(dir)).await,
        other => error_message(
            ErrorCode::UnexpectedMessage,
            &format!("a gateway cannot send {}", other.kind_name()),
        ),
    }
}

/// Runs a storage read on a blocking thread; the error as a sentence.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StorageError> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(error.to_string()),
        Err(error) => Err(format!("the read failed: {error}")),
    }
}

/// The command's status from its idempotency record (exact), else from the
/// history (it moved money, so it was applied with `ok`), else unknown.
async fn tx(engine: &EngineHandle, store: Store, id: CommandId) -> Message {
    let (sender, receiver) = oneshot::channel();
    if let Err(error) = engine.query(
        vec![Query::Command { id }],
        Box::new(move |replies| drop(sender.send(replies))),
    ) {
        return error_message(ErrorCode::Overloaded, &error.to_string());
    }
    let legs = match blocking(move || store.storage.command_movements(id)).await {
        Ok(legs) => legs,
        Err(message) => return error_message(ErrorCode::Internal, &message),
    };
    let record = match receiver.await {
        Ok(replies) => replies.first().copied(),
        Err(_) => {
            return error_message(
                ErrorCode::ShuttingDown,
                ErrorCode::ShuttingDown.description(),
            )
        }
    };
    let (source, status) = match record {
        Some(QueryReply::Command(status)) => (TxSource::Record, status),
        _ if !legs.is_empty() => (TxSource::History, Status::Ok),
        _ => (TxSource::Unknown, Status::UnknownCommand),
    };
    Message::TxReply {
        source,
        status,
        legs,
    }
}

/// A consistent RocksDB checkpoint of the data directory in `dir`, and the
/// local gateway secret, so that `payrail serve --data-dir DIR` restores it.
async fn backup(engine: &EngineHandle, store: Store, dir: PathBuf) -> Message {
    if dir.as_os_str().is_empty() {
        return error_message(ErrorCode::BackupFailed, "no backup directory given");
    }
    if dir.exists() {
        return error_message(
            ErrorCode::BackupFailed,
            &format!(
                "{} already exists: back up into a new directory",
                dir.display()
            ),
        );
    }
    // Every command acknowledged before this point has a log record at or
    // before this sequence, and the checkpoint below includes it.
    let last_sequence = engine.stats().last_sequence.load(Ordering::Acquire);
    let started = Instant::now();
    let target = dir.clone();
    let written = tokio::task::spawn_blocking(move || -> Result<(), String> {
        store
            .storage
            .backup(&target)
            .map_err(|error| error.to_string())?;
        copy_gateway_file(&store.data_dir, &target)
    })
    .await
    .unwrap_or_else(|error| Err(format!("the backup task failed: {error}")));
    match written {
        Ok(()) => {
            tracing::info!(
                dir = %dir.display(),
                last_sequence,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "backup written"
            );
            metrics::counter!("payrail_backups_total", "outcome" => "ok").increment(1);
            Message::BackupReply { last_sequence }
        }
        Err(message) => {
            tracing::warn!(dir = %dir.display(), error = %message, "backup failed");
            metrics::counter!("payrail_backups_total", "outcome" => "failed").increment(1);
            error_message(ErrorCode::BackupFailed, &message)
        }
    }
}

/// The local gateway's secret goes with the backup (mode 0600), so the CLI
/// can talk to a server restored from it.
fn copy_gateway_file(data_dir: &Path, backup: &Path) -> Result<(), String> {
    let source = data_dir.join(LOCAL_GATEWAY_FILE);
    if !source.exists() {
        return Ok(());
    }
    let target = backup.join(LOCAL_GATEWAY_FILE);
    std::fs::copy(&source, &target)
        .map_err(|error| format!("cannot copy {}: {error}", source.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600))
            .map_err(|error| format!("cannot restrict {}: {error}", target.display()))?;
    }
    Ok(())
}
