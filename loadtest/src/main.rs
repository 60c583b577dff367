//! payrail-loadtest: the load-test harness (docs/loadtest.md).
//!
//! # Layout
//! - [`options`]: the command line.
//! - [`population`]: the accounts a run seeds (customers, merchants,
//!   currencies, FX rates).
//! - [`mix`]: the workload tables and the batch generator.
//! - [`sample`]: fast random numbers and Zipf sampling.
//! - [`drive`]: seeding, closed and open loop, the progress line.
//! - [`stats`]: histograms, counters, the per-second series, stalls, the
//!   sample of acknowledged commands.
//! - [`phase`]: one measured phase (warm-up, window, drain) with the
//!   server sampled each second; a run is one phase, a sweep several.
//! - [`processes`]: the generator in several processes (`--processes`).
//! - [`verify`]: conservation of money and the look-up of acknowledged commands.
//! - [`machine`]: CPU, load average, CPU time per thread, resident memory.
//! - [`report`]: the summary table, report.json and report.html.
//!
//! The run, top to bottom (see [`run_against`]): start or reach the server,
//! connect, put the risk policy in force, seed, load (one phase, or a
//! sweep's phases), verify, report.

mod drive;
mod machine;
mod mix;
mod options;
mod phase;
mod population;
mod processes;
mod report;
mod sample;
mod stats;
mod tls;
mod verify;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use payrail_api::client::{Client, ClientConfig};
use payrail_api::config::ServerConfig;
use payrail_api::serve;
use payrail_engine::risk::RiskPolicy;
use serde_json::json;
use tokio::time::Instant;

use crate::drive::group_digits;
use crate::options::{Loop, MixName, Options};
use crate::phase::{Phase, PhaseSpec, RunContext, ServerProbe};
use crate::population::{Population, TAG_MAX};
use crate::report::{Stall, Summary, Sweep, SweepStep};
use crate::stats::{Percentiles, Recorder};

/// Longest wait at the end for the runtime's tasks, the embedded server's
/// among them, to stop.
const RUNTIME_SHUTDOWN_TIME_MAX: Duration = Duration::from_secs(60);

/// The harness's own risk policy (`--risk-policy builtin`).
const BUILTIN_RISK_POLICY: &str = include_str!("../risk-policy.toml");

/// The latency a sweep states the highest rate for (p99 of commands).
const SWEEP_P99_AIM_US: u64 = 10_000;

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
    if options.worker_index.is_some() {
        let outcome = runtime.block_on(processes::worker(options));
        runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIME_MAX);
        return match outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("payrail-loadtest worker: {error:#}");
                ExitCode::from(2)
            }
        };
    }
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

/// The embedded server's data directory and the policy file given to it,
/// removed once the runtime (and with it the server) has stopped.
type Leftovers = Option<(tempfile::TempDir, Option<tempfile::NamedTempFile>)>;

/// Starts or reaches the server and runs. `Ok(false)`: the run completed
/// but verification failed.
///
/// The embedded server is not stopped with `RunningServer::stop`: that
/// takes a final checkpoint of everything the run wrote (minutes after a
/// long run, on a machine others share), of a data directory deleted right
/// after. Dropping it stops the engine without one, as a crash would.
async fn run(options: Options) -> (anyhow::Result<bool>, Leftovers) {
    match &options.addr {
        Some(addr) => {
            let config = ClientConfig::local(addr.clone(), &options.data_dir)
                .map_err(|error| {
                    anyhow::Error::new(error).context("cannot use the server's gateway secret")
                })
                .and_then(|config| tls::client(config, &options, addr));
            let outcome = match config {
                Ok(config) => {
                    let port = addr
                        .rsplit_once(':')
                        .and_then(|(_, port)| port.parse::<u16>().ok());
                    let probe = ServerProbe {
                        addr: addr.clone(),
                        data_dir: options.data_dir.clone(),
                        pid: port.and_then(machine::pid_listening_on),
                        embedded: false,
                    };
                    let target = format!("the server at {addr}");
                    run_against(&options, config, target, probe).await
                }
                Err(error) => Err(error),
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
            let policy_file = match embedded_policy_file(&options) {
                Ok(file) => file,
                Err(error) => return (Err(error), Some((dir, None))),
            };
            let policy_path = policy_file.as_ref().map(|file| file.path().to_owned());
            let outcome = run_embedded(&options, dir.path(), policy_path).await;
            (outcome, Some((dir, policy_file)))
        }
    }
}

/// Which policy `--risk-policy` names: None for none, else its TOML text.
fn risk_policy_text(choice: &str) -> anyhow::Result<Option<(String, String)>> {
    match choice {
        "none" => Ok(None),
        "builtin" => Ok(Some((
            "builtin (loadtest/risk-policy.toml)".to_owned(),
            BUILTIN_RISK_POLICY.to_owned(),
        ))),
        path => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the risk policy {path}"))?;
            Ok(Some((path.to_owned(), text)))
        }
    }
}

/// The policy the embedded server starts with, as a file for its config:
/// `--risk-policy`, else builtin for the wallet mix and none for transfers.
fn embedded_policy_file(options: &Options) -> anyhow::Result<Option<tempfile::NamedTempFile>> {
    let choice = options
        .risk_policy
        .clone()
        .unwrap_or_else(|| match options.mix {
            MixName::Wallet => "builtin".to_owned(),
            MixName::Transfers => "none".to_owned(),
        });
    let Some((_, text)) = risk_policy_text(&choice)? else {
        return Ok(None);
    };
    // Checked here, so a bad file is a usage error rather than a server
    // that does not start.
    RiskPolicy::from_toml(&text).map_err(|error| anyhow::anyhow!("--risk-policy: {error}"))?;
    let mut file = tempfile::Builder::new()
        .prefix("payrail-loadtest-policy-")
        .suffix(".toml")
        .tempfile()
        .context("cannot write the risk policy file")?;
    std::io::Write::write_all(&mut file, text.as_bytes())
        .context("cannot write the risk policy file")?;
    Ok(Some(file))
}

async fn run_embedded(
    options: &Options,
    dir: &std::path::Path,
    risk_policy: Option<PathBuf>,
) -> anyhow::Result<bool> {
    let mut config = ServerConfig {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: dir.to_owned(),
        risk_policy,
        ..ServerConfig::default()
    };
    if let Some(path) = &options.server_config {
        let file = ServerConfig::load(path)
            .with_context(|| format!("--server-config {}", path.display()))?;
        config.engine = file.engine;
        config.limits = file.limits;
    }
    // Other runs on the machine (the smoke tests among them) would fight
    // over the default metrics port; the harness reads the status counters.
    config.metrics.enabled = false;
    if let Some(prefault) = options.prefault {
        config.engine.prefault = prefault;
    }
    let embedded_tls = if options.tls {
        let made = tls::embedded(dir).context("cannot make the embedded server's certificate")?;
        config.tls = made.section.clone();
        Some(made)
    } else {
        None
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
    let mut client_config =
        ClientConfig::new(server.addr.to_string(), gateway.name.clone(), secret);
    if let Some(made) = &embedded_tls {
        let client = payrail_api::tls::ClientTls::new(&made.server_ca, "127.0.0.1", None)
            .context("cannot trust the embedded server's certificate")?;
        client_config = client_config.with_tls(client);
    }
    let target = format!(
        "an embedded server (durable: RocksDB log, fsync on{}) on {}{}",
        if embedded_tls.is_some() { ", TLS" } else { "" },
        dir.display(),
        match &options.server_config {
            Some(path) => format!(", [engine] and [limits] from {}", path.display()),
            None => String::new(),
        }
    );
    let probe = ServerProbe {
        addr: server.addr.to_string(),
        data_dir: dir.to_owned(),
        pid: Some(std::process::id()),
        embedded: true,
    };
    let outcome = run_against(options, client_config, target, probe).await;
    drop(server);
    outcome
}

fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// Puts `--risk-policy` in force on a server the harness did not start,
/// and describes the policy in force either way.
async fn risk_policy_in_force(options: &Options, control: &Client) -> anyhow::Result<String> {
    let mut named = None;
    if let (Some(_), Some(choice)) = (&options.addr, &options.risk_policy) {
        if let Some((name, text)) = risk_policy_text(choice)? {
            let policy = RiskPolicy::from_toml(&text)
                .map_err(|error| anyhow::anyhow!("--risk-policy: {error}"))?;
            match control.set_risk_policy(policy).await? {
                Ok(_) => named = Some(name),
                Err(status) => bail!(
                    "the server refused the risk policy: {} ({})",
                    status.description(),
                    status.name()
                ),
            }
        }
    } else if options.addr.is_none() {
        named = options
            .risk_policy
            .clone()
            .or_else(|| (options.mix == MixName::Wallet).then(|| "builtin".to_owned()))
            .filter(|choice| choice != "none")
            .map(|choice| {
                if choice == "builtin" {
                    "builtin (loadtest/risk-policy.toml)".to_owned()
                } else {
                    choice
                }
            });
    }
    let (digest, rules) = control
        .risk_policy()
        .await
        .context("cannot read the risk policy in force")?;
    let names: Vec<&str> = rules.iter().map(|rule| rule.name()).collect();
    Ok(if names.is_empty() {
        "risk policy: none in force (no rule runs)".to_owned()
    } else {
        format!(
            "risk policy in force: {} ({} rules on: {}; digest {})",
            named.unwrap_or_else(|| "the server's own".to_owned()),
            names.len(),
            names.join(", "),
            digest[..4]
                .iter()
                .map(|byte| format!("{byte:02x}"))
                .collect::<String>()
        )
    })
}

async fn run_against(
    options: &Options,
    client_config: ClientConfig,
    target: String,
    probe: ServerProbe,
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
    if let Loop::Closed { pipeline } = options.run_loop() {
        if pipeline > inflight_max {
            bail!(
                "--pipeline {pipeline} is more than the server allows in flight ({inflight_max})"
            );
        }
    }
    let risk = risk_policy_in_force(options, &control).await?;

    // 2. The population and its seeding, timed apart.
    let population = Arc::new(Population::build(
        tag,
        options.customer_count(),
        options.accounts.is_some(),
        options.merchants,
        seed,
    ));
    let title = title(options, &target);
    println!("{title}");
    println!("{}", mix::describe(options.mix));
    println!("{risk}");
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
        options.mix == MixName::Wallet,
        Arc::clone(&acknowledged),
    )
    .await?;
    let acknowledged_in_seeding = acknowledged.load(Ordering::Relaxed);
    println!(
        "seeded in {:.1} s ({} commands/s)",
        seeding.elapsed.as_secs_f64(),
        group_digits((seeding.commands() as f64 / seeding.elapsed.as_secs_f64().max(1e-9)) as u64)
    );

    // 3. The load: one phase, or a sweep's.
    let context = RunContext {
        options: options.clone(),
        clients: clients.clone(),
        control: control.clone(),
        population: Arc::clone(&population),
        nonce,
        seed,
        tag,
        inflight_max,
        acknowledged: Arc::clone(&acknowledged),
        probe: probe.clone(),
    };
    let (main_phase, sweep_phases) = if options.sweep {
        run_sweep(&context).await?
    } else {
        let spec = PhaseSpec {
            run_loop: options.run_loop(),
            warmup: options.warmup,
            duration: options.measured(),
            index: 0,
            verify_max: options.verify_max,
        };
        let phase = if options.processes > 1 {
            processes::run_phase(&context, &spec).await?
        } else {
            phase::run(&context, &spec).await?
        };
        (phase, Vec::new())
    };

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
    let acknowledged_total = acknowledged.load(Ordering::Relaxed);
    let acknowledged_in_load = acknowledged_total.saturating_sub(acknowledged_in_seeding);
    // Ordinals this far back may be past the server's idempotency retention
    // (the records it keeps), allowing for reordering across requests in
    // flight.
    let reorder_margin =
        (options.connections * options.processes * inflight_max * server_batch_max) as u64;
    let retained = phase::server_records_capacity(&control)
        .await
        .saturating_sub(reorder_margin);
    let retention_safe_after = acknowledged_total.saturating_sub(retained);
    let mut sample = Vec::new();
    let mut main_phase = main_phase;
    let mut sweep_phases = sweep_phases;
    sample.append(&mut main_phase.recorder.sample.items);
    for phase in &mut sweep_phases {
        sample.append(&mut phase.recorder.sample.items);
        main_phase.recorder.not_applied += phase.recorder.not_applied;
    }
    let mut acknowledgements = verify::acknowledgements(
        &verify_clients,
        sample,
        acknowledged_in_load,
        retention_safe_after,
        server_batch_max,
    )
    .await?;
    // Generator processes looked up their own samples.
    for worker in &main_phase.worker_acknowledgements {
        acknowledgements.merge(worker);
    }
    let verify_seconds = verify_started.elapsed().as_secs_f64();

    // 5. Report.
    let load_average_after = machine::load_average();
    let mut notes = vec![
        format!("verification took {verify_seconds:.1} s"),
        "latency of a command is that of its request: every command of a batch shares it; a \
         history page is a request of its own"
            .into(),
    ];
    if let Loop::Open { interval, .. } = main_phase.spec.run_loop {
        notes.push(format!(
            "open loop: commands arrive evenly over each {} ms interval and are sent at its end; \
             latency counts from each command's planned arrival",
            interval.as_secs_f64() * 1e3
        ));
    }
    if options.addr.is_some() {
        notes.push(
            "conservation is checked over the change this run caused (its own accounts plus \
             the house accounts' change): other traffic in these currencies during the run \
             would show up as an imbalance"
                .into(),
        );
    } else if options.processes > 1 {
        notes.push(
            "CPU: this process holds the embedded server (and its control connection); the \
             load generators are separate processes, listed apart"
                .into(),
        );
    } else {
        notes.push(
            "CPU: the embedded server's threads (payrail-*, and the tokio workers it shares with \
             the generator) and the load generator run in this one process; its resident memory \
             includes the generator's (the population's tables)"
                .into(),
        );
    }
    let in_flight = match main_phase.spec.run_loop {
        Loop::Closed { pipeline } => {
            Some((options.processes * options.connections * pipeline * options.batch) as u64)
        }
        Loop::Open { .. } => None,
    };
    let config = json!({
        "mix": options.mix.name(),
        "skew": options.skew.name(),
        "zipf_s": options.zipf_s,
        "loop": match main_phase.spec.run_loop { Loop::Closed { .. } => "closed", Loop::Open { .. } => "open" },
        "connections": options.connections,
        "pipeline": options.pipeline,
        "batch": options.batch,
        "in_flight_commands": in_flight,
        "processes": options.processes,
        "rate": options.rate,
        "interval_ms": options.interval.as_secs_f64() * 1e3,
        "duration_s": main_phase.spec.duration.as_secs_f64(),
        "warmup_s": options.warmup.as_secs_f64(),
        "sweep": options.sweep,
        "sweep_steps": if options.sweep { Some(options.sweep_steps.clone()) } else { None },
        "step_duration_s": options.step_duration.as_secs_f64(),
        "soak": options.soak.is_some(),
        "stall_max_ms": options.stall_max.as_secs_f64() * 1e3,
        "risk_policy": risk,
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
    let sweep = options
        .sweep
        .then(|| sweep_summary(&main_phase, &sweep_phases));
    let (longest, at) = main_phase.stall;
    let stall = Stall {
        longest,
        after: at,
        max: options.soak.map(|_| options.stall_max),
    };
    let summary = Summary {
        config,
        title,
        machine,
        load_average_before,
        load_average_after,
        mix_description: mix::describe(options.mix),
        risk,
        in_flight,
        seeding,
        warmup_seconds: main_phase.spec.warmup.as_secs_f64(),
        window_seconds: main_phase.window_seconds(),
        recorder: std::mem::replace(
            &mut main_phase.recorder,
            Recorder::new(main_phase.window, 0, 0),
        ),
        conservation,
        acknowledgements,
        series: main_phase.series,
        server_stats: main_phase.server_stats,
        cpu_seconds: main_phase.cpu_seconds,
        generator_cpu: main_phase.generator_cpu,
        samples: main_phase.samples,
        probe,
        stall,
        sweep,
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

/// A closed-loop phase at the options' shape finds the peak, then one
/// open-loop phase per step offers its share of the peak's operations.
async fn run_sweep(context: &RunContext) -> anyhow::Result<(Phase, Vec<Phase>)> {
    let options = &context.options;
    let percents = options
        .sweep_percents()
        .map_err(|message| anyhow::anyhow!(message))?;
    let verify_max = options.verify_max / (percents.len() + 1);
    let peak_spec = PhaseSpec {
        run_loop: Loop::Closed {
            pipeline: options.pipeline,
        },
        warmup: options.warmup,
        duration: options.step_duration,
        index: 0,
        verify_max,
    };
    println!("sweep: closed loop for the peak ...");
    let peak = phase::run(context, &peak_spec).await?;
    let peak_rate = peak.operations_per_sec();
    if peak_rate < 1.0 {
        bail!("the closed loop of the sweep committed nothing: no peak to sweep");
    }
    println!(
        "sweep: peak {} operations/s; steps {}",
        group_digits(peak_rate as u64),
        percents
            .iter()
            .map(|percent| format!("{percent}%"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let mut steps = Vec::with_capacity(percents.len());
    for (index, percent) in percents.iter().enumerate() {
        let rate = ((peak_rate * f64::from(*percent) / 100.0) as u64).max(1);
        let spec = PhaseSpec {
            run_loop: Loop::Open {
                rate,
                interval: options.interval,
            },
            warmup: options.warmup,
            duration: options.step_duration,
            index: 1 + index as u64,
            verify_max,
        };
        println!(
            "sweep: step {}/{}: open loop at {} operations/s ({percent}% of the peak)",
            index + 1,
            percents.len(),
            group_digits(rate)
        );
        let mut step = phase::run(context, &spec).await?;
        step.percent = Some(*percent);
        steps.push(step);
    }
    Ok((peak, steps))
}

fn sweep_summary(peak: &Phase, steps: &[Phase]) -> Sweep {
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let offered = step.offered_operations_per_sec();
        let answered = step.operations_per_sec();
        let errors: u64 = step.recorder.request_errors.values().sum();
        out.push(SweepStep {
            percent: step.percent.unwrap_or(0),
            offered_per_sec: offered,
            answered_per_sec: answered,
            committed_per_sec: step.committed_per_sec(),
            latency: Percentiles::of(&step.recorder.commands),
            request_errors: errors,
            keeps_up: report::keeps_up(offered, answered, errors),
            stall: step.stall.0,
        });
    }
    let (first_behind, best_under_aim) = report::judge_sweep(&out, SWEEP_P99_AIM_US);
    Sweep {
        peak_per_sec: peak.operations_per_sec(),
        peak_latency: Percentiles::of(&peak.recorder.commands),
        steps: out,
        first_behind,
        p99_aim_us: SWEEP_P99_AIM_US,
        best_rate_under_aim: best_under_aim,
    }
}

fn title(options: &Options, target: &str) -> String {
    let processes = if options.processes > 1 {
        format!(", {} generator processes", options.processes)
    } else {
        String::new()
    };
    let shape = if options.sweep {
        format!(
            "sweep: closed loop ({} connections x {} requests x {} in flight) for the peak, then open loop at {}% of it, {} s per step",
            options.connections,
            options.pipeline,
            options.batch,
            options.sweep_steps,
            options.step_duration.as_secs_f64()
        )
    } else {
        match options.run_loop() {
            Loop::Closed { pipeline } => format!(
                "closed loop, {} connections x {pipeline} requests x {} slots = {} in flight{processes}",
                options.connections,
                options.batch,
                group_digits((options.processes * options.connections * pipeline * options.batch) as u64)
            ),
            Loop::Open { rate, interval } => format!(
                "open loop at {} operations/s, batches every {} ms (at most {}), {} connections{processes}",
                group_digits(rate),
                interval.as_secs_f64() * 1e3,
                options.batch,
                options.connections
            ),
        }
    };
    let skew = match options.skew {
        options::SkewName::Uniform => "uniform".to_owned(),
        options::SkewName::Zipf => format!("zipf s={}", options.zipf_s),
    };
    let length = if options.sweep {
        String::new()
    } else if let Some(soak) = options.soak {
        format!(
            ", soak of {} s (+{} s warm-up)",
            soak.as_secs_f64(),
            options.warmup.as_secs_f64()
        )
    } else {
        format!(
            ", {} s (+{} s warm-up)",
            options.duration.as_secs_f64(),
            options.warmup.as_secs_f64()
        )
    };
    format!(
        "payrail-loadtest: {} mix, {skew} accounts, {shape}{length}, against {target}",
        options.mix.name(),
    )
}
