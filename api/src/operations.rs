//! Requests the server answers from the data directory rather than through
//! the engine's executor: history pages, `tx show`, and backups. Each runs
//! on a blocking thread of its own (RocksDB reads and the checkpoint copy
//! block), so the executor and other connections never wait for them; a
//! history page whose records are all in the page cache is read on the
//! network thread instead (no read of it waits for the disk).

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
            // Read here, on the network thread, when the page cache holds
            // every record (recent movements: the common page); else on a
            // blocking thread, which may wait for the disk.
            let history = store.storage.history_store();
            let read = match history.page_without_waiting(account, from_ns, to_ns, cursor, limit) {
                Ok(Some(page)) => Ok(page),
                Ok(None) => {
                    blocking(move || {
                        store
                            .storage
                            .history_page(account, from_ns, to_ns, cursor, limit)
                    })
                    .await
                }
                Err(error) => Err(error.to_string()),
            };
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

/// The file written last into a backup directory: the backup is complete
/// if and only if it is there (docs/operations.md).
pub const BACKUP_MANIFEST_FILE: &str = "backup.toml";

/// What `backup.toml` says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupManifest {
    /// The payrail version that wrote the backup.
    pub payrail_version: String,
    /// Every command acknowledged before the backup began is at or before
    /// this log sequence.
    pub last_sequence: u64,
    /// When the backup was finished, milliseconds since the Unix epoch.
    pub finished_unix_ms: u64,
    /// Whether the local gateway's secret (`gateway.toml`) went with it.
    pub local_gateway: bool,
}

/// A consistent RocksDB checkpoint of the data directory in `dir`, and the
/// local gateway secret, so that `payrail serve --data-dir DIR` restores it;
/// then its manifest. Every file is on disk when the reply says so: RocksDB
/// syncs the checkpoint's files and directory, payrail writes its own files
/// crash-safely (crate::durable) and syncs the directory holding `dir`.
async fn backup(engine: &EngineHandle, store: Store, dir: PathBuf) -> Message {
    if dir.as_os_str().is_empty() {
        return error_message(ErrorCode::BackupFailed, "no backup directory given");
    }
    let dir = match backup_target(store.backup_root.as_deref(), &dir) {
        Ok(dir) => dir,
        Err((code, message)) => {
            tracing::warn!(dir = %dir.display(), code = code.name(), error = %message, "backup refused");
            let outcome = if code == ErrorCode::NotPermitted {
                "not_permitted"
            } else {
                "failed"
            };
            metrics::counter!("payrail_backups_total", "outcome" => outcome).increment(1);
            return error_message(code, &message);
        }
    };
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
        let local_gateway = copy_gateway_file(&store.data_dir, &target)?;
        write_manifest(&target, last_sequence, local_gateway)?;
        crate::durable::sync_parent(&target).map_err(|error| {
            format!(
                "cannot sync the directory holding {}: {error}",
                target.display()
            )
        })
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

/// Where a backup asked for at `dir` is written: a new directory under the
/// backup root (`dir` relative to the root, or absolute). Symbolic links
/// and ".." are resolved before the check, so neither leads out of it.
/// Outside the root, or with no root configured: `not_permitted`.
fn backup_target(root: Option<&Path>, dir: &Path) -> Result<PathBuf, (ErrorCode, String)> {
    let Some(root) = root else {
        return Err((
            ErrorCode::NotPermitted,
            "this server takes no backups: no backup_root is configured (docs/operations.md)"
                .to_owned(),
        ));
    };
    let canonical_root = root.canonicalize().map_err(|error| {
        (
            ErrorCode::BackupFailed,
            format!("the backup root {} cannot be used: {error}", root.display()),
        )
    })?;
    let dir = if dir.is_absolute() {
        dir.to_owned()
    } else {
        canonical_root.join(dir)
    };
    let outside = |shown: &Path| {
        (
            ErrorCode::NotPermitted,
            format!(
                "{} is not under the backup root {}",
                shown.display(),
                canonical_root.display()
            ),
        )
    };
    let (Some(parent), Some(std::path::Component::Normal(name))) =
        (dir.parent(), dir.components().next_back())
    else {
        return Err(outside(&dir));
    };
    let parent = match parent.canonicalize() {
        Ok(parent) => parent,
        Err(_) if !dir.starts_with(root) && !dir.starts_with(&canonical_root) => {
            return Err(outside(&dir))
        }
        Err(error) => {
            return Err((
                ErrorCode::BackupFailed,
                format!("cannot use {}: {error}", parent.display()),
            ))
        }
    };
    let target = parent.join(name);
    if !target.starts_with(&canonical_root) || target == canonical_root {
        return Err(outside(&dir));
    }
    Ok(target)
}

/// The local gateway's secret goes with the backup (mode 0600, written
/// crash-safely), so the CLI can talk to a server restored from it. Returns
/// whether there was one.
fn copy_gateway_file(data_dir: &Path, backup: &Path) -> Result<bool, String> {
    let source = data_dir.join(LOCAL_GATEWAY_FILE);
    let contents = match std::fs::read(&source) {
        Ok(contents) => contents,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(error) => return Err(format!("cannot read {}: {error}", source.display())),
    };
    let target = backup.join(LOCAL_GATEWAY_FILE);
    crate::durable::write_atomically(&target, &contents, crate::durable::Access::Private)
        .map_err(|error| format!("cannot write {}: {error}", target.display()))?;
    Ok(true)
}

/// Writes `backup.toml` into a backup whose other files are on disk.
fn write_manifest(backup: &Path, last_sequence: u64, local_gateway: bool) -> Result<(), String> {
    let manifest = BackupManifest {
        payrail_version: env!("CARGO_PKG_VERSION").to_owned(),
        last_sequence,
        finished_unix_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64),
        local_gateway,
    };
    let text = toml::to_string(&manifest).map_err(|error| error.to_string())?;
    let text = format!("# A payrail backup; written last, so the backup is complete.\n{text}");
    let path = backup.join(BACKUP_MANIFEST_FILE);
    crate::durable::write_atomically(&path, text.as_bytes(), crate::durable::Access::Readable)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}
