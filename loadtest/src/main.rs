//! payrail-loadtest: the load-test harness (docs/loadtest.md).
//!
//! # Layout
//! - [`options`]: the command line.
//! - [`population`]: the accounts a run seeds (customers, merchants, currencies).
//! - [`mix`]: the workload tables and the batch generator.
//! - [`sample`]: fast random numbers and Zipf sampling.
//! - [`drive`]: seeding, closed and open loop, the progress line.
//! - [`stats`]: histograms, counters, the per-second series, the sample of
//!   acknowledged commands.
//! - [`verify`]: conservation of money and the look-up of acknowledged commands.
//! - [`machine`]: CPU, load average, CPU time per thread.
//! - [`report`]: the summary table, report.json and report.html.
//!
//! The run, top to bottom (see [`run`]): start or reach the server, connect,
//! seed, load (warm-up, then the measured window), drain, verify, report.

mod drive;
mod machine;
mod mix;
mod options;
mod population;
mod report;
mod sample;
mod stats;
mod verify;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use payrail_api::client::{Client, ClientConfig};
use payrail_api::config::ServerConfig;
use payrail_api::serve;
use payrail_engine::limits::IDEMPOTENCY_RECORDS_MAX_DEFAULT;
use serde_json::json;
use tokio::time::Instant;

use crate::drive::{group_digits, LoadSetup};
use crate::options::{Loop, Options};
use crate::population::{Population, TAG_MAX};
use crate::report::{SeriesPoint, Summary};
use crate::stats::{Live, Percentiles, Recorder, Window};

/// Longest wait at the end for the runtime's tasks, the embedded server's
/// among them, to stop.
const RUNTIME_SHUTDOWN_TIME_MAX: Duration = Duration::from_secs(60);

fn main() -> ExitCode {
    let options = Options::parse();
    if let Err(message) = options.validate() {
        eprintln!("payrail-loadtest: {message}");
        return ExitCode::from(2);
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("payrail-loadtest: cannot start the async runtime: {error}");
            return ExitCode::from(2);
        }
    };
    let (outcome, data_dir) = runtime.block_on(run(options));
    // Stops the embedded server's engine (dropped with the runtime's tasks)
    // before its data directory goes.
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIME_MAX);
    drop(data_dir);
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("payrail-loadtest: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// Starts or reaches the server and runs. `Ok(false)`: the run completed
/// but verification failed. Returns the embedded server's data directory,
/// to be removed once the runtime (and with it the server) has stopped.
///
/// The embedded server is not stopped with `RunningServer::stop`: that
/// takes a final checkpoint of everything the run wrote (minutes after a
/// long run, on a machine others share), of a data directory deleted right
/// after. Dropping it stops the engine without one, as a crash would.
async fn run(options: Options) -> (anyhow::Result<bool>, Option<tempfile::TempDir>) {
    match &options.addr {
        Some(addr) => {
            let outcome = match ClientConfig::local(addr.clone(), &options.data_dir) {
                Ok(config) => {
                    let target = format!("the server at {addr}");
                    run_against(&options, config, target).await
                }
                Err(error) => {
                    Err(anyhow::Error::new(error).context("cannot use the server's gateway secret"))
                }
            };
            (outcome, None)
        }
        None => {
            let dir = match tempfile::Builder::new()
                .prefix("payrail-loadtest-")
                .tempdir()
            {
                Ok(dir) => dir,
                Err(error) => {
                    return (
                        Err(anyhow::Error::new(error)
                            .context("cannot create a temporary data directory")),
                        None,
                    )
                }
            };
            let outcome = run_embedded(&options, dir.path()).await;
            (outcome, Some(dir))
        }
    }
}

async fn run_embedded(options: &Options, dir: &std::path::Path) -> anyhow::Result<bool> {
    let config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.to_owned(),
        ..ServerConfig::default()
    };
    let server = serve::start(config)
        .await
        .context("cannot start the embedded server")?;
    let Some(gateway) = server.gateways.first() else {
        bail!("the embedded server has no gateway");
    };
    let Some(secret) = gateway.secret_bytes() else {
        bail!("the embedded server's gateway secret is not valid");
    };
    let client_config = ClientConfig::new(server.addr.to_string(), gateway.name.clone(), secret);
    let target = format!(
        "an embedded server (durable: RocksDB log, fsync on) on {}",
        dir.display()
    );
    let outcome = run_against(options, client_config, target).await;
    drop(server);
    outcome
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

async fn run_against(
    options: &Options,
    client_config: ClientConfig,
    target: String,
) -> anyhow::Result<bool> {
    let machine = machine::describe();
    let load_average_before = machine::load_average();
    let seed = options.seed.unwrap_or_else(clock_seed);
    let nonce: u64 = rand::random();
    let tag = 1 + rand::random::<u64>() % TAG_MAX;

    // 1. Connect: one connection per --connections, and one for control
    //    (status counters, settlement reads) so those never queue behind load.
    let mut clients = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        clients.push(
            Client::connect(client_config.clone())
                .await
                .context("cannot connect")?,
        );
    }
    let control = Client::connect(client_config.clone())
        .await
        .context("cannot connect")?;
    let Some(limits) = control.server_limits() else {
        bail!("the server announced no limits");
    };
    let server_batch_max = limits.batch_commands_max as usize;
    if options.batch > server_batch_max {
        bail!(
            "--batch {} is more than the server accepts ({server_batch_max})",
            options.batch
        );
    }
    let inflight_max = limits.inflight_max as usize;
    let run_loop = options.run_loop();
    if let Loop::Closed { pipeline } = run_loop {
        if pipeline > inflight_max {
            bail!(
                "--pipeline {pipeline} is more than the server allows in flight ({inflight_max})"
            );
        }
    }

    // 2. The population and its seeding, timed apart.
    let population = Arc::new(Population::build(
        tag,
        options.customer_count(),
        options.accounts.is_some(),
        options.merchants,
        seed,
    ));
    let title = title(options, &target, run_loop);
    println!("{title}");
    println!("{}", mix::describe(options.mix));
    println!(
        "seeding {} customers ({} accounts) and {} merchants through the protocol ...",
        group_digits(population.customers),
        group_digits(population.customer_accounts()),
        group_digits(population.merchants)
    );
    let settlement_before = verify::settlement(&control).await?;
    let acknowledged = Arc::new(AtomicU64::new(0));
    let seeding = drive::seed(
        &clients,
        &population,
        nonce,
        server_batch_max,
        Arc::clone(&acknowledged),
    )
    .await?;
    println!(
        "seeded in {:.1} s ({} commands/s)",
        seeding.elapsed.as_secs_f64(),
        group_digits((seeding.commands() as f64 / seeding.elapsed.as_secs_f64().max(1e-9)) as u64)
    );

    // 3. The load: warm-up, then the measured window.
    let start = Instant::now();
    let warm_end = start + options.warmup;
    let window = Window {
        start,
        warm_end,
        end: warm_end + options.duration,
    };
    let live = Arc::new(Live::new(window));
    live.acknowledged
        .store(acknowledged.load(Ordering::Relaxed), Ordering::Relaxed);
    let stop_progress = Arc::new(tokio::sync::Notify::new());
    let progress = (!options.quiet).then(|| {
        tokio::spawn(drive::progress(
            Arc::clone(&live),
            Arc::clone(&stop_progress),
        ))
    });
    // Server counters and thread CPU at the edges of the measured window.
    let snapshots = {
        let control = control.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(window.warm_end).await;
            let before = (
                server_counters(&control).await,
                machine::thread_cpu_seconds(),
            );
            tokio::time::sleep_until(window.end).await;
            let after = (
                server_counters(&control).await,
                machine::thread_cpu_seconds(),
            );
            (before, after)
        })
    };
    let setup = LoadSetup::from_options(options, Arc::clone(&population), nonce, seed);
    let recorders = match run_loop {
        Loop::Closed { pipeline } => drive::closed_loop(&clients, &setup, pipeline, &live).await,
        Loop::Open { rate, interval } => {
            drive::open_loop(&clients, &setup, rate, interval, inflight_max, &live).await
        }
    };
    stop_progress.notify_waiters();
    if let Some(progress) = progress {
        progress.abort();
    }
    let ((counters_before, cpu_before), (counters_after, cpu_after)) =
        snapshots.await.context("the counter snapshots failed")?;
    let load_average_after = machine::load_average();
    let mut recorder = Recorder::new(window, 0, 0);
    for other in recorders {
        recorder.merge(other);
    }

    // 4. Verify.
    println!("verifying ...");
    let verify_started = Instant::now();
    let mut verify_clients = clients.clone();
    verify_clients.push(control.clone());
    let conservation = verify::conservation(
        &verify_clients,
        &population,
        &settlement_before,
        server_batch_max,
    )
    .await?;
    let acknowledged_total = live.acknowledged.load(Ordering::Relaxed);
    let acknowledged_in_load =
        acknowledged_total.saturating_sub(acknowledged.load(Ordering::Relaxed));
    // Ordinals this far back may be past the server's idempotency retention
    // (its default bound), allowing for reordering across requests in flight.
    let reorder_margin = (options.connections * inflight_max * server_batch_max) as u64;
    let retained = (IDEMPOTENCY_RECORDS_MAX_DEFAULT as u64).saturating_sub(reorder_margin);
    let retention_safe_after = acknowledged_total.saturating_sub(retained);
    let sample = std::mem::take(&mut recorder.sample.items);
    let acknowledgements = verify::acknowledgements(
        &verify_clients,
        sample,
        acknowledged_in_load,
        retention_safe_after,
        server_batch_max,
    )
    .await?;
    let verify_seconds = verify_started.elapsed().as_secs_f64();

    // 5. Report.
    let series = series(&live, &recorder);
    let server_stats = counter_delta(&counters_before, &counters_after);
    let cpu_seconds = machine::cpu_delta(&cpu_before, &cpu_after);
    let mut notes = vec![
        format!("verification took {verify_seconds:.1} s"),
        "latency of a command is that of its request: every command of a batch shares it".into(),
    ];
    if let Loop::Open { interval, .. } = run_loop {
        notes.push(format!(
            "open loop: commands arrive evenly over each {} ms interval and are sent at its end; \
             latency counts from each command's planned arrival",
            interval.as_secs_f64() * 1e3
        ));
    }
    if options.addr.is_some() {
        notes.push(
            "conservation is checked over the change this run caused (its own accounts plus \
             the settlement accounts' change): other traffic in these currencies during the run \
             would show up as an imbalance"
                .into(),
        );
    } else {
        notes.push(
            "CPU: the embedded server's threads (payrail-*, and the tokio workers it shares with \
             the generator) and the load generator run in this one process"
                .into(),
        );
    }
    let config = json!({
        "mix": options.mix.name(),
        "skew": options.skew.name(),
        "zipf_s": options.zipf_s,
        "loop": match run_loop { Loop::Closed { .. } => "closed", Loop::Open { .. } => "open" },
        "connections": options.connections,
        "pipeline": options.pipeline,
        "batch": options.batch,
        "rate": options.rate,
        "interval_ms": options.interval.as_secs_f64() * 1e3,
        "duration_s": options.duration.as_secs_f64(),
        "warmup_s": options.warmup.as_secs_f64(),
        "customers": population.customers,
        "customer_accounts": population.customer_accounts(),
        "one_account_per_customer": options.accounts.is_some(),
        "merchants": population.merchants,
        "currencies": population::CURRENCIES.iter().map(|spec| spec.currency.code()).collect::<Vec<_>>(),
        "server": if options.addr.is_some() { "external" } else { "embedded" },
        "addr": options.addr,
        "target": target,
        "seed": seed,
        "verify_max": options.verify_max,
        "run_nonce": format!("{nonce:016x}"),
        "account_tag": tag,
        "version": env!("CARGO_PKG_VERSION"),
    });
    let summary = Summary {
        config,
        title,
        machine,
        load_average_before,
        load_average_after,
        mix_description: mix::describe(options.mix),
        seeding,
        warmup_seconds: options.warmup.as_secs_f64(),
        window_seconds: window.duration().as_secs_f64(),
        recorder,
        conservation,
        acknowledgements,
        series,
        server_stats,
        cpu_seconds,
        notes,
    };
    print!("{}", summary.text());
    if !options.no_report {
        let dir = &options.report;
        summary.write(dir)?;
        println!(
            "report: {} and {}",
            dir.join("report.json").display(),
            dir.join("report.html").display()
        );
    }
    Ok(summary.ok())
}

fn title(options: &Options, target: &str, run_loop: Loop) -> String {
    let shape = match run_loop {
        Loop::Closed { pipeline } => format!(
            "closed loop, {} connections x {pipeline} requests in flight, batch {}",
            options.connections, options.batch
        ),
        Loop::Open { rate, interval } => format!(
            "open loop at {} commands/s, batches every {} ms (at most {}), {} connections",
            group_digits(rate),
            interval.as_secs_f64() * 1e3,
            options.batch,
            options.connections
        ),
    };
    let skew = match options.skew {
        options::SkewName::Uniform => "uniform".to_owned(),
        options::SkewName::Zipf => format!("zipf s={}", options.zipf_s),
    };
    format!(
        "payrail-loadtest: {} mix, {skew} accounts, {shape}, {} s (+{} s warm-up), against {target}",
        options.mix.name(),
        options.duration.as_secs_f64(),
        options.warmup.as_secs_f64()
    )
}

/// The server's counters, or none if the request fails (the report then
/// has no server section; the run goes on).
async fn server_counters(client: &Client) -> BTreeMap<String, u64> {
    match tokio::time::timeout(Duration::from_secs(10), client.status()).await {
        Ok(Ok(fields)) => fields.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// Counters that grew, as `after - before`; gauges (last_sequence and the
/// like) as their value after.
fn counter_delta(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    const GAUGES: [&str; 5] = [
        "engine.last_sequence",
        "engine.checkpoint_sequence",
        "engine.checkpoint_pause_ns_last",
        "engine.checkpoint_write_ns_last",
        "engine.write_failed",
    ];
    after
        .iter()
        .map(|(name, value)| {
            let delta = if GAUGES.contains(&name.as_str()) {
                *value
            } else {
                value.saturating_sub(before.get(name).copied().unwrap_or(0))
            };
            (name.clone(), delta)
        })
        .collect()
}

/// The per-second series, up to the last second with any activity.
fn series(live: &Live, recorder: &Recorder) -> Vec<SeriesPoint> {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let mut points: Vec<SeriesPoint> = live
        .seconds
        .iter()
        .enumerate()
        .map(|(second, slot)| {
            let latency = recorder
                .per_second
                .get(second)
                .and_then(Option::as_ref)
                .map(Percentiles::of)
                .unwrap_or_default();
            SeriesPoint {
                second: second as u64,
                committed: load(&slot.committed),
                queries: load(&slot.queries),
                offered: load(&slot.offered),
                rejected: load(&slot.rejected),
                request_errors: load(&slot.request_errors),
                latency_us_p50: latency.p50,
                latency_us_p99: latency.p99,
                latency_us_max: latency.max,
            }
        })
        .collect();
    while points.last().is_some_and(|point| {
        point.committed == 0
            && point.queries == 0
            && point.offered == 0
            && point.request_errors == 0
    }) {
        points.pop();
    }
    points
}
