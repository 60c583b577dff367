//! One measured phase of a run: warm-up, the measured window, the drain;
//! the server's counters, memory and data directory sampled each second
//! meanwhile. A plain run or a soak is one phase; a sweep is a closed-loop
//! phase and one open-loop phase per step.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use payrail_api::client::Client;
use tokio::time::Instant;

use crate::drive::{self, LoadSetup, STREAMS_PER_PHASE};
use crate::machine;
use crate::options::{Loop, Options};
use crate::population::Population;
use crate::report::SeriesPoint;
use crate::stats::{Live, Percentiles, Recorder, Window};
use crate::verify::Acknowledgements;

/// How the harness watches the server: where it listens, its data
/// directory (for its size), and its process (for its memory) if found.
#[derive(Clone, Debug)]
pub struct ServerProbe {
    pub addr: String,
    pub data_dir: PathBuf,
    pub pid: Option<u32>,
    /// The server runs in this process (its memory includes the generator's).
    pub embedded: bool,
}

/// What every phase of a run shares.
#[derive(Debug)]
pub struct RunContext {
    pub options: Options,
    pub clients: Vec<Client>,
    pub control: Client,
    pub population: Arc<Population>,
    pub nonce: u64,
    pub seed: u64,
    pub tag: u64,
    pub inflight_max: usize,
    /// Commands acknowledged so far (seeding included), across phases.
    pub acknowledged: Arc<AtomicU64>,
    pub probe: ServerProbe,
}

/// What a phase runs.
#[derive(Clone, Debug)]
pub struct PhaseSpec {
    pub run_loop: Loop,
    pub warmup: Duration,
    pub duration: Duration,
    /// Phase number: its generators' streams are apart from other phases'.
    pub index: u64,
    /// Most acknowledged commands this phase keeps to look up.
    pub verify_max: usize,
}

/// The server, sampled once a second.
#[derive(Clone, Copy, Debug, Default)]
pub struct ServerSample {
    /// Seconds from the start of the phase (its warm-up included).
    pub second: f64,
    pub resident_bytes: Option<u64>,
    pub data_dir_bytes: Option<u64>,
    /// `engine.log_bytes_written`: bytes appended to the log since start.
    pub log_bytes_written: Option<u64>,
    /// `engine.checkpoints`: checkpoints taken since start.
    pub checkpoints: Option<u64>,
    /// `engine.checkpoint_pause_ns_last`: how long the last checkpoint held
    /// the executor, ms.
    pub checkpoint_pause_ms_last: Option<f64>,
}

/// What a phase measured.
#[derive(Debug)]
pub struct Phase {
    pub spec: PhaseSpec,
    pub window: Window,
    pub recorder: Recorder,
    pub series: Vec<SeriesPoint>,
    /// Server counters over the measured window.
    pub server_stats: BTreeMap<String, u64>,
    /// CPU seconds of this process's threads over the measured window.
    pub cpu_seconds: BTreeMap<String, f64>,
    /// CPU seconds of each generator process over its window
    /// (`--processes`; empty otherwise).
    pub generator_cpu: Vec<(String, f64)>,
    pub samples: Vec<ServerSample>,
    /// The longest time without a reply, and when it began (from the end
    /// of the warm-up).
    pub stall: (Duration, Duration),
    /// A sweep step's share of the peak.
    pub percent: Option<u32>,
    /// Generator processes' look-ups of their own acknowledged commands.
    pub worker_acknowledgements: Vec<Acknowledgements>,
}

impl Phase {
    pub fn window_seconds(&self) -> f64 {
        self.window.duration().as_secs_f64()
    }

    fn per_second(&self, count: u64) -> f64 {
        let seconds = self.window_seconds();
        if seconds > 0.0 {
            count as f64 / seconds
        } else {
            0.0
        }
    }

    /// Commands committed and queries answered per second.
    pub fn operations_per_sec(&self) -> f64 {
        self.per_second(
            self.recorder
                .counts
                .iter()
                .map(|counts| counts.committed)
                .sum(),
        )
    }

    pub fn committed_per_sec(&self) -> f64 {
        self.per_second(
            crate::mix::Kind::ALL
                .iter()
                .filter(|kind| !kind.is_query())
                .map(|kind| self.recorder.counts[kind.index()].committed)
                .sum(),
        )
    }

    pub fn offered_operations_per_sec(&self) -> f64 {
        self.per_second(self.recorder.offered_commands + self.recorder.offered_queries)
    }
}

/// The window of a phase starting now.
pub fn window_from(start: Instant, spec: &PhaseSpec) -> Window {
    let warm_end = start + spec.warmup;
    Window {
        start,
        warm_end,
        end: warm_end + spec.duration,
    }
}

/// The load setup of a phase.
pub fn setup(context: &RunContext, spec: &PhaseSpec, nonce: u64) -> LoadSetup {
    let mut setup = LoadSetup::from_options(
        &context.options,
        Arc::clone(&context.population),
        nonce,
        context.seed,
    );
    setup.stream_base = spec.index * STREAMS_PER_PHASE;
    setup.verify_max = spec.verify_max;
    setup
}

/// Samples the server once a second from `window.start` until the end of
/// the window (and one more second).
pub fn spawn_sampler(
    control: Client,
    probe: ServerProbe,
    window: Window,
) -> tokio::task::JoinHandle<Vec<ServerSample>> {
    tokio::spawn(async move {
        let mut samples = Vec::new();
        let mut tick = 0u64;
        loop {
            let at = window.start + Duration::from_secs(tick);
            if at > window.end + Duration::from_secs(1) {
                break;
            }
            tokio::time::sleep_until(at).await;
            tick += 1;
            let counters = server_counters(&control, Duration::from_millis(900)).await;
            let data_dir = probe.data_dir.clone();
            let data_dir_bytes =
                tokio::task::spawn_blocking(move || machine::directory_bytes(&data_dir))
                    .await
                    .ok()
                    .flatten();
            samples.push(ServerSample {
                second: at.saturating_duration_since(window.start).as_secs_f64(),
                resident_bytes: probe.pid.and_then(machine::resident_bytes),
                data_dir_bytes,
                log_bytes_written: counters.get("engine.log_bytes_written").copied(),
                checkpoints: counters.get("engine.checkpoints").copied(),
                checkpoint_pause_ms_last: counters
                    .get("engine.checkpoint_pause_ns_last")
                    .map(|ns| *ns as f64 / 1e6),
            });
        }
        samples
    })
}

/// Runs one phase in this process.
pub async fn run(context: &RunContext, spec: &PhaseSpec) -> anyhow::Result<Phase> {
    let options = &context.options;
    let window = window_from(Instant::now(), spec);
    let live = Arc::new(Live::new(window));
    live.acknowledged.store(
        context.acknowledged.load(Ordering::Relaxed),
        Ordering::Relaxed,
    );
    let stop_progress = Arc::new(tokio::sync::Notify::new());
    let progress = (!options.quiet).then(|| {
        tokio::spawn(drive::progress(
            Arc::clone(&live),
            Arc::clone(&stop_progress),
            context.probe.pid,
        ))
    });
    let snapshots = spawn_snapshots(context.control.clone(), window);
    let sampler = spawn_sampler(context.control.clone(), context.probe.clone(), window);
    let setup = setup(context, spec, context.nonce);
    let recorders = match spec.run_loop {
        Loop::Closed { pipeline } => {
            drive::closed_loop(&context.clients, &setup, pipeline, &live).await
        }
        Loop::Open { rate, interval } => {
            drive::open_loop(
                &context.clients,
                &setup,
                rate,
                interval,
                context.inflight_max,
                &live,
            )
            .await
        }
    };
    stop_progress.notify_waiters();
    if let Some(progress) = progress {
        progress.abort();
    }
    let ((counters_before, cpu_before), (counters_after, cpu_after)) =
        snapshots.await.context("the counter snapshots failed")?;
    let samples = sampler.await.context("the server sampler failed")?;
    let mut recorder = Recorder::new(window, 0, 0);
    for other in recorders {
        recorder.merge(other);
    }
    context
        .acknowledged
        .store(live.acknowledged.load(Ordering::Relaxed), Ordering::Relaxed);
    let series = series(&live, &recorder);
    Ok(Phase {
        spec: spec.clone(),
        window,
        series,
        server_stats: counter_delta(&counters_before, &counters_after),
        cpu_seconds: machine::cpu_delta(&cpu_before, &cpu_after),
        generator_cpu: Vec::new(),
        samples,
        stall: live.longest_stall(),
        percent: None,
        worker_acknowledgements: Vec::new(),
        recorder,
    })
}

/// Counters and this process's thread CPU at both edges of the measured
/// window.
type Snapshot = (BTreeMap<String, u64>, BTreeMap<String, f64>);

pub fn spawn_snapshots(
    control: Client,
    window: Window,
) -> tokio::task::JoinHandle<(Snapshot, Snapshot)> {
    tokio::spawn(async move {
        tokio::time::sleep_until(window.warm_end).await;
        let before = (
            server_counters(&control, Duration::from_secs(10)).await,
            machine::thread_cpu_seconds(),
        );
        tokio::time::sleep_until(window.end).await;
        let after = (
            server_counters(&control, Duration::from_secs(10)).await,
            machine::thread_cpu_seconds(),
        );
        (before, after)
    })
}

/// The server's counters, or none if the request fails or takes longer
/// than `timeout` (the report then lacks them; the run goes on).
pub async fn server_counters(client: &Client, timeout: Duration) -> BTreeMap<String, u64> {
    match tokio::time::timeout(timeout, client.status()).await {
        Ok(Ok(fields)) => fields.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// How many idempotency records the server keeps (`payrail status`'s
/// `engine.idempotency_records_capacity`), so that a sampled command older
/// than that counts as past its retention, not as missing; the engine's
/// default if the server does not say.
pub async fn server_records_capacity(client: &Client) -> u64 {
    server_counters(client, Duration::from_secs(10))
        .await
        .get("engine.idempotency_records_capacity")
        .copied()
        .filter(|&capacity| capacity > 0)
        .unwrap_or(payrail_engine::limits::IDEMPOTENCY_RECORDS_MAX_DEFAULT as u64)
}

/// Counters that grew, as `after - before`; gauges (last_sequence and the
/// like) as their value after.
pub fn counter_delta(
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
pub fn series(live: &Live, recorder: &Recorder) -> Vec<SeriesPoint> {
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
