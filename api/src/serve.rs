//! `payrail serve`: open the data directory, recover, start the engine and
//! the server, and stop cleanly on SIGINT/SIGTERM.
//!
//! [`start`] runs the same server inside a caller's tokio runtime (tests, the
//! load test); [`serve_blocking`] is what the binary calls.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use payrail_engine::pipeline::{Engine, EngineError, EngineHandle};
use payrail_engine::risk::bounds::POLICY_TOML_BYTES_MAX;
use payrail_engine::risk::RiskPolicy;
use payrail_engine::storage::{RocksStorage, StorageError};
use payrail_engine::{Query, QueryReply};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{self, ConfigError, GatewayConfig, ServerConfig};
use crate::server::{self, ServerStats, Store};

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot open the data directory: {0}")]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("risk policy {path}: {message}")]
    RiskPolicy { path: PathBuf, message: String },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Command-line overrides of the config file.
#[derive(Clone, Debug, Default)]
pub struct ServeOptions {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub config: Option<PathBuf>,
    /// Shard count (0: the default, cores - 2, at least 1).
    pub shards: Option<u32>,
    /// Risk policy TOML to put in force at start (overrides the config's).
    pub risk_policy: Option<PathBuf>,
    /// Directory under which backups may be written (overrides the config's).
    pub backup_root: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
    pub no_metrics: bool,
    pub prefault: Option<bool>,
}

impl ServeOptions {
    /// The config file (or the defaults) with the flags applied.
    pub fn resolve(&self) -> Result<ServerConfig, ConfigError> {
        let mut config = match &self.config {
            Some(path) => ServerConfig::load(path)?,
            None => ServerConfig::default(),
        };
        if let Some(listen) = self.listen {
            config.listen = listen;
        }
        if let Some(data_dir) = &self.data_dir {
            config.data_dir = data_dir.clone();
        }
        if let Some(shards) = self.shards {
            // The flag's parser keeps it in 1..=SHARDS_MAX.
            config.engine.shards = shards;
        }
        if let Some(risk_policy) = &self.risk_policy {
            config.risk_policy = Some(risk_policy.clone());
        }
        if let Some(backup_root) = &self.backup_root {
            config.backup_root = Some(backup_root.clone());
        }
        if let Some(listen) = self.metrics_listen {
            config.metrics.listen = listen;
            config.metrics.enabled = true;
        }
        if self.no_metrics {
            config.metrics.enabled = false;
        }
        if let Some(prefault) = self.prefault {
            config.engine.prefault = prefault;
        }
        Ok(config)
    }
}

/// A server running in the caller's runtime.
#[derive(Debug)]
pub struct RunningServer {
    /// Where it listens (the real port when the config said port 0).
    pub addr: SocketAddr,
    /// The gateways it accepts (the local one when the config named none).
    pub gateways: Vec<GatewayConfig>,
    pub stats: Arc<ServerStats>,
    /// The data directory's storage (history stats for the metrics).
    pub storage: Option<RocksStorage>,
    engine: EngineHandle,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Engine>>,
}

impl RunningServer {
    pub fn engine(&self) -> &EngineHandle {
        &self.engine
    }

    /// Stops accepting, finishes what is in flight (durable in the log and
    /// answered) and closes the data directory; no final checkpoint: the
    /// next start replays the log after the last one.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            if let Ok(engine) = task.await {
                // Joining the engine's threads blocks: off the async threads.
                let _ = tokio::task::spawn_blocking(move || engine.shutdown()).await;
            }
        }
    }
}

fn stats_of(
    engine: &Engine,
    counter: impl Fn(&payrail_engine::pipeline::EngineStats) -> &std::sync::atomic::AtomicU64,
) -> u64 {
    counter(engine.handle().stats()).load(std::sync::atomic::Ordering::Relaxed)
}

/// The memory budget at start: one line per ledger table (entries now, its
/// bound and bytes at that bound for `accounts` accounts, or the accounts
/// there are if more) and the total with the idempotency record table
/// (docs/operations.md, "Memory budget").
fn log_memory_budget(engine: &Engine, accounts: u64) {
    let tables = engine.handle().stats().tables();
    let accounts = accounts.max(tables[0].entries);
    for table in &tables {
        tracing::info!(
            table = table.name,
            entries = table.entries,
            entries_max = table.entries_max(accounts),
            entry_bytes = table.entry_bytes,
            budget_bytes = table.budget_bytes(accounts),
            "memory budget"
        );
    }
    let idempotency_table_bytes = stats_of(engine, |stats| &stats.idempotency_table_bytes);
    let tables_budget_bytes = tables
        .iter()
        .map(|table| table.budget_bytes(accounts))
        .fold(0, u64::saturating_add);
    // While a checkpoint is made, its forked process holds, with more than
    // one shard, the state merged into one ledger (every table again, and
    // the idempotency records in a lone ledger's table); with one it reads
    // the shard's tables and the router's records where they are.
    // Meanwhile every page the engine writes is copied once: at most the
    // tables again.
    let shards = stats_of(engine, |stats| &stats.shards);
    let checkpoint_copy_bytes = if shards > 1 {
        tables_budget_bytes.saturating_add(
            payrail_engine::pipeline::checkpoint_process_records_bytes(stats_of(engine, |stats| {
                &stats.idempotency_records_capacity
            })),
        )
    } else {
        0
    };
    let checkpoint_written_pages_bytes = tables_budget_bytes;
    tracing::info!(
        accounts,
        idempotency_table_bytes,
        tables_budget_bytes,
        checkpoint_copy_bytes,
        checkpoint_written_pages_bytes,
        total_budget_bytes = idempotency_table_bytes
            .saturating_add(tables_budget_bytes)
            .saturating_add(checkpoint_copy_bytes)
            .saturating_add(checkpoint_written_pages_bytes),
        "memory budget total"
    );
}

/// Opens the data directory, recovers and starts serving. Returns once the
/// server listens.
pub async fn start(config: ServerConfig) -> Result<RunningServer, ServeError> {
    let started = Instant::now();
    // Before the engine's threads allocate: see its documentation.
    payrail_engine::hold_allocator_memory();
    // TLS files are read before anything else starts: a bad one stops here.
    let tls = crate::tls::server_acceptor(&config.tls)?;
    let gateways = if config.gateways.is_empty() {
        vec![config::ensure_local_gateway(&config.data_dir)?]
    } else {
        config.gateways.clone()
    };
    let data_dir = config.data_dir.clone();
    let engine_config = config.engine.engine_config();
    let history_config = config.engine.history_config();
    let (engine, storage) =
        tokio::task::spawn_blocking(move || -> Result<(Engine, RocksStorage), ServeError> {
            let storage = RocksStorage::open_with(&data_dir, history_config)?;
            let report = storage.history_report();
            tracing::info!(
                segments_read = report.segments,
                segments_from_snapshot = report.segments_from_snapshot,
                movements_read = report.movements,
                "history opened"
            );
            for damaged in &report.damaged {
                tracing::error!(
                    segment = damaged.number,
                    reason = %damaged.reason,
                    rebuilt_from_the_log = damaged.rebuilt,
                    "a history segment was damaged"
                );
            }
            Ok((Engine::start(storage.clone(), engine_config)?, storage))
        })
        .await
        .map_err(|error| ServeError::Runtime(std::io::Error::other(error.to_string())))??;
    if let Some(path) = &config.risk_policy {
        let handle = engine.handle();
        let path = path.clone();
        tokio::task::spawn_blocking(move || put_risk_policy_in_force(&handle, &path))
            .await
            .map_err(|error| ServeError::Runtime(std::io::Error::other(error.to_string())))??;
    }
    let recovery = engine.recovery();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %config.data_dir.display(),
        listen = %config.listen,
        gateways = gateways.len(),
        checkpoint_sequence = recovery.checkpoint_sequence,
        records_replayed = recovery.records_replayed,
        commands_replayed = recovery.commands_replayed,
        dropped_tail = ?recovery.dropped_tail,
        recovery_ms = recovery.elapsed.as_millis() as u64,
        recovery_commands_per_second = recovery.commands_per_second(),
        history_watermark = recovery.history_watermark,
        history_rebuilt = recovery.history_rebuilt,
        shards = engine
            .handle()
            .stats()
            .shards
            .load(std::sync::atomic::Ordering::Relaxed),
        history = config.engine.history,
        idempotency_records_max = stats_of(&engine, |stats| &stats.idempotency_records_capacity),
        idempotency_table_mib = stats_of(&engine, |stats| &stats.idempotency_table_bytes) >> 20,
        prefault = config.engine.prefault,
        history_retention_days = config.engine.history_retention_days,
        history_accounts_max = config.engine.history_accounts_max,
        history_head_index_bytes = config.engine.history_config().head_index_bytes(),
        queue_depth = config.engine.queue_depth,
        checkpoint_commands = config.engine.checkpoint_commands,
        checkpoint_interval_s = config.engine.checkpoint_interval_s,
        metrics = %if config.metrics.enabled { config.metrics.listen.to_string() } else { "off".to_owned() },
        startup_ms = started.elapsed().as_millis() as u64,
        frame_bytes_max = config.limits.frame_bytes_max,
        connections_max = config.limits.connections_max,
        inflight_max = config.limits.inflight_max,
        tls = %match (&config.tls.enabled, &config.tls.client_ca) {
            (false, _) => "off",
            (true, None) => "on",
            (true, Some(_)) => "on, client certificates required",
        },
        backup_root = %config.backup_root.as_ref().map_or("none: backups refused".to_owned(), |root| root.display().to_string()),
        "payrail started"
    );
    log_memory_budget(&engine, config.engine.budget_accounts);

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServeError::Listen {
        addr: config.listen,
        source,
    })?;
    let (stop_sender, stop_receiver) = oneshot::channel::<()>();
    let stats = Arc::new(ServerStats::default());
    let handle = engine.handle();
    let store = Store {
        storage: storage.clone(),
        data_dir: config.data_dir.clone(),
        backup_root: config.backup_root.clone(),
    };
    let task = {
        let stats = Arc::clone(&stats);
        let settings = server::Settings {
            limits: config.limits.clone(),
            gateways: gateways.clone(),
            tls,
        };
        tokio::spawn(async move {
            server::run(
                listener,
                engine.handle(),
                Some(store),
                settings,
                stats,
                async {
                    let _ = stop_receiver.await;
                },
            )
            .await;
            engine
        })
    };
    Ok(RunningServer {
        addr,
        gateways,
        stats,
        storage: Some(storage),
        engine: handle,
        stop: Some(stop_sender),
        task: Some(task),
    })
}

/// Reads a risk policy file: at most `POLICY_TOML_BYTES_MAX` bytes, parsed
/// and validated.
pub fn read_risk_policy(path: &Path) -> Result<RiskPolicy, String> {
    let error = |error: std::io::Error| format!("cannot read it: {error}");
    let size = std::fs::metadata(path).map_err(error)?.len();
    if size > POLICY_TOML_BYTES_MAX as u64 {
        return Err(format!(
            "it has {size} bytes; a policy file has at most {POLICY_TOML_BYTES_MAX}"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(error)?;
    RiskPolicy::from_toml(&text).map_err(|error| error.to_string())
}

/// `--risk-policy FILE` at start: if the file's policy is not the one in
/// force (recovered from the log and checkpoint), it is entered through the
/// log, so a replay sees the change where it happened.
fn put_risk_policy_in_force(engine: &EngineHandle, path: &Path) -> Result<(), ServeError> {
    let failed = |message: String| ServeError::RiskPolicy {
        path: path.to_owned(),
        message,
    };
    let policy = read_risk_policy(path).map_err(failed)?;
    let digest = policy.digest();
    let in_force = engine
        .query_blocking(vec![Query::RiskPolicy])
        .map_err(|error| failed(error.to_string()))?;
    if let Some(QueryReply::RiskPolicy {
        digest: current, ..
    }) = in_force.first()
    {
        if *current == digest {
            tracing::info!(digest = %hex::encode(digest), "risk policy already in force");
            return Ok(());
        }
    }
    match engine.set_risk_policy_blocking(policy) {
        Ok(Ok(digest)) => {
            tracing::info!(digest = %hex::encode(digest), path = %path.display(), "risk policy put in force");
            Ok(())
        }
        Ok(Err(status)) => Err(failed(format!("the engine refused it: {status}"))),
        Err(error) => Err(failed(error.to_string())),
    }
}

/// Runs the server until SIGINT or SIGTERM, then stops cleanly.
pub fn serve_blocking(options: &ServeOptions) -> Result<(), ServeError> {
    let config = options.resolve()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    runtime.block_on(async move {
        let metrics = config.metrics.clone();
        // Caught before the port is bound: a SIGTERM as soon as the server
        // accepts connections is a clean stop, never the default action's
        // kill (a supervisor or a test that stopped the server right after
        // it listened could get exit 143). One that comes during the start
        // (recovery included) stops the server as soon as it has started.
        let stop = StopSignal::install();
        let server = start(config).await?;
        let upkeep = if metrics.enabled {
            install_metrics(metrics.listen).then(|| {
                tokio::spawn(publish_stats(
                    server.engine.clone(),
                    Arc::clone(&server.stats),
                    server.storage.clone(),
                ))
            })
        } else {
            None
        };
        tracing::info!(addr = %server.addr, metrics = %if metrics.enabled { metrics.listen.to_string() } else { "off".to_owned() }, "listening");
        stop.wait().await;
        if let Some(upkeep) = upkeep {
            upkeep.abort();
        }
        tracing::info!("shutting down: finishing requests in flight");
        let stopping = Instant::now();
        server.stop().await;
        tracing::info!(
            stop_ms = stopping.elapsed().as_millis() as u64,
            "stopped"
        );
        Ok(())
    })
}

/// Installs the Prometheus exporter (a process-wide recorder) serving
/// `GET /metrics` on `listen`. A failure is logged and the server runs on
/// without metrics: they are not worth refusing payments for.
fn install_metrics(listen: SocketAddr) -> bool {
    let installed = metrics_exporter_prometheus::PrometheusBuilder::new()
        .with_http_listener(listen)
        .install();
    match installed {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(%listen, %error, "cannot serve metrics; running without them");
            false
        }
    }
}

/// Copies the engine's and the server's counters into metrics once a second
/// (so the hot path only bumps its own atomics), and the checkpoint's age.
async fn publish_stats(
    engine: EngineHandle,
    server: Arc<ServerStats>,
    storage: Option<RocksStorage>,
) {
    let mut interval = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        interval.tick().await;
        let stats = engine.stats();
        let get = |counter: &std::sync::atomic::AtomicU64| {
            counter.load(std::sync::atomic::Ordering::Relaxed)
        };
        metrics::counter!("payrail_commands_logged_total").absolute(get(&stats.commands_logged));
        metrics::counter!("payrail_commands_applied_total").absolute(get(&stats.commands_applied));
        metrics::counter!("payrail_log_writes_total").absolute(get(&stats.group_writes));
        metrics::counter!("payrail_log_bytes_total").absolute(get(&stats.log_bytes_written));
        metrics::counter!("payrail_queries_total").absolute(get(&stats.queries));
        metrics::counter!("payrail_checkpoints_total").absolute(get(&stats.checkpoints));
        metrics::gauge!("payrail_last_sequence").set(get(&stats.last_sequence) as f64);
        metrics::gauge!("payrail_checkpoint_sequence").set(get(&stats.checkpoint_sequence) as f64);
        metrics::gauge!("payrail_checkpoint_pause_seconds")
            .set(get(&stats.checkpoint_pause_ns_last) as f64 / 1e9);
        metrics::gauge!("payrail_recovery_seconds").set(get(&stats.recovery_ns) as f64 / 1e9);
        metrics::gauge!("payrail_recovery_commands_per_second")
            .set(get(&stats.recovery_commands_per_second) as f64);
        let checkpoint_at = get(&stats.checkpoint_unix_ns);
        if checkpoint_at > 0 {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_nanos() as u64);
            metrics::gauge!("payrail_checkpoint_age_seconds")
                .set(now.saturating_sub(checkpoint_at) as f64 / 1e9);
        }
        metrics::gauge!("payrail_history_watermark").set(get(&stats.history_watermark) as f64);
        metrics::gauge!("payrail_history_lag_batches")
            .set(get(&stats.last_sequence).saturating_sub(get(&stats.history_watermark)) as f64);
        metrics::counter!("payrail_history_movements_total")
            .absolute(get(&stats.history_movements));
        if let Some(storage) = &storage {
            let history = storage.history_stats();
            metrics::gauge!("payrail_history_segments").set(history.segments as f64);
            metrics::gauge!("payrail_history_bytes").set(history.bytes as f64);
            metrics::gauge!("payrail_history_movements_kept").set(history.movements as f64);
            metrics::gauge!("payrail_history_oldest_timestamp_seconds")
                .set(history.oldest_timestamp as f64 / 1e9);
            metrics::gauge!("payrail_history_retention_seconds")
                .set(history.retention_ns as f64 / 1e9);
            metrics::gauge!("payrail_history_accounts").set(history.accounts as f64);
            metrics::gauge!("payrail_history_accounts_max").set(history.accounts_max as f64);
            metrics::counter!("payrail_history_movements_refused_total")
                .absolute(history.movements_refused);
            metrics::counter!("payrail_history_segments_expired_total")
                .absolute(history.segments_expired);
        }
        metrics::counter!("payrail_pairs_split_total").absolute(get(&stats.pairs_split));
        metrics::counter!("payrail_router_flushes_total").absolute(get(&stats.router_flushes));
        metrics::counter!("payrail_risk_evaluated_total").absolute(get(&stats.risk_evaluated));
        for (rule, verdict, payments) in stats.risk_decisions() {
            metrics::counter!(
                "payrail_risk_decisions_total",
                "rule" => rule.name(),
                "decision" => verdict.name()
            )
            .absolute(payments);
        }
        for (shard, ((steps, movements), depth)) in stats
            .shard_steps
            .iter()
            .zip(&stats.shard_movements)
            .zip(&stats.shard_queue_depths)
            .enumerate()
        {
            let shard = shard.to_string();
            metrics::gauge!("payrail_shard_queue_depth", "shard" => shard.clone())
                .set(get(depth) as f64);
            metrics::counter!("payrail_shard_steps_total", "shard" => shard.clone())
                .absolute(get(steps));
            metrics::counter!("payrail_shard_movements_total", "shard" => shard)
                .absolute(get(movements));
        }
        for table in stats.tables() {
            metrics::gauge!("payrail_table_entries", "table" => table.name)
                .set(table.entries as f64);
            metrics::gauge!("payrail_table_entries_max", "table" => table.name)
                .set(table.entries_max(table.accounts) as f64);
            metrics::gauge!("payrail_table_budget_bytes", "table" => table.name)
                .set(table.budget_bytes(table.accounts) as f64);
        }
        metrics::gauge!("payrail_write_failed").set(f64::from(u8::from(
            stats
                .write_failed
                .load(std::sync::atomic::Ordering::Relaxed),
        )));
        metrics::gauge!("payrail_connections_open").set(get(&server.connections_open) as f64);
        metrics::counter!("payrail_connections_accepted_total")
            .absolute(get(&server.connections_accepted));
        metrics::counter!("payrail_connections_refused_total")
            .absolute(get(&server.connections_refused));
        metrics::counter!("payrail_handshakes_failed_total")
            .absolute(get(&server.handshakes_failed));
        metrics::counter!("payrail_frames_refused_total").absolute(get(&server.frames_refused));
        metrics::counter!("payrail_requests_total").absolute(get(&server.requests));
        metrics::counter!("payrail_requests_refused_total").absolute(get(&server.requests_refused));
    }
}

/// SIGINT or SIGTERM, caught from the moment `install` returns (on Unix;
/// elsewhere Ctrl-C, from the first poll of `wait`).
struct StopSignal {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl StopSignal {
    fn install() -> StopSignal {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signals = signal(SignalKind::interrupt())
                .and_then(|interrupt| Ok((interrupt, signal(SignalKind::terminate())?)));
            if let Err(error) = &signals {
                tracing::warn!(%error, "cannot catch SIGINT and SIGTERM; waiting for Ctrl-C only");
            }
            StopSignal {
                signals: signals.ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignal {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut interrupt, mut terminate)) = self.signals {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
