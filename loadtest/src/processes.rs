//! `--processes N`: the load generator in N processes against one server,
//! so the generator's CPU is its own and the server's figure is not bound
//! by one process's.
//!
//! This process seeds, samples the server, and verifies conservation. Each
//! generator process (this binary with the hidden `--worker-*` options)
//! rebuilds the same population from the run's tag and seed, waits for the
//! common start time, drives its share of the load (its own nonce, so its
//! command ids are its own; with `--rate R` it offers R/N), looks up its own
//! acknowledged commands, and writes what it measured as JSON to a file;
//! this process merges the files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use payrail_api::client::{Client, ClientConfig, REQUEST_TIMEOUT_DEFAULT};
use payrail_engine::limits::IDEMPOTENCY_RECORDS_MAX_DEFAULT;
use payrail_engine::Status;
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::drive::{self, LoadSetup, STREAMS_PER_PHASE};
use crate::machine;
use crate::options::{Loop, Options};
use crate::phase::{self, Phase, PhaseSpec, RunContext};
use crate::population::Population;
use crate::report::SeriesPoint;
use crate::stats::{latency_histogram, KindCounts, Live, Recorder, Window};
use crate::verify::{self, Acknowledgements};

/// Longest a generator process may take past the end of its window
/// (drain, look-up of its acknowledged commands, writing its results).
const WORKER_FINISH_TIME_MAX: Duration = Duration::from_secs(600);
/// Time between starting the generator processes and the load's start:
/// enough for each to build the population and connect.
const WORKER_START_DELAY_MIN: Duration = Duration::from_secs(5);

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64)
}

/// Runs one phase with `--processes` generator processes, sampling the
/// server from this one.
pub async fn run_phase(context: &RunContext, spec: &PhaseSpec) -> anyhow::Result<Phase> {
    let options = &context.options;
    let count = options.processes;
    // Building a million customers' population takes about a second per
    // process; start the load once every process had time for it.
    let delay = WORKER_START_DELAY_MIN
        + Duration::from_millis(context.population.accounts.len() as u64 / 1_000);
    let start_unix_ns = unix_ns() + delay.as_nanos() as u64;
    let start = Instant::now() + delay;
    let window = phase::window_from(start, spec);
    let outputs = tempfile::Builder::new()
        .prefix("payrail-loadtest-workers-")
        .tempdir()
        .context("cannot create a directory for the generators' results")?;
    let exe = std::env::current_exe().context("cannot find this program to start generators")?;
    let mut children = Vec::with_capacity(count);
    for index in 0..count {
        let output = outputs.path().join(format!("worker-{index}.json"));
        let child = std::process::Command::new(&exe)
            .args(worker_args(context, spec, index, start_unix_ns, &output))
            .stdin(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start generator process {index}"))?;
        children.push((index, KillOnDrop(child), output));
    }
    println!(
        "{count} generator processes started; the load starts in {:.1} s",
        delay.as_secs_f64()
    );
    let snapshots = phase::spawn_snapshots(context.control.clone(), window);
    let sampler = phase::spawn_sampler(context.control.clone(), context.probe.clone(), window);
    let deadline = window.end + REQUEST_TIMEOUT_DEFAULT + WORKER_FINISH_TIME_MAX;
    let mut recorder = Recorder::new(window, 0, 0);
    let mut seconds: Vec<SeriesPoint> = Vec::new();
    let mut generator_cpu = Vec::new();
    let mut worker_acknowledgements = Vec::new();
    let mut stall = (Duration::ZERO, Duration::ZERO);
    let mut acknowledged = 0u64;
    for (index, mut child, output) in children {
        // Bounded: polled every 50 ms until the deadline.
        let status = loop {
            if let Some(status) = child
                .0
                .try_wait()
                .with_context(|| format!("generator process {index} failed"))?
            {
                break status;
            }
            if Instant::now() > deadline {
                bail!("generator process {index} did not finish in time");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        if !status.success() {
            bail!("generator process {index} failed ({status})");
        }
        let text = std::fs::read_to_string(&output)
            .with_context(|| format!("cannot read generator process {index}'s results"))?;
        let value: Value = serde_json::from_str(&text)
            .with_context(|| format!("generator process {index}'s results are not JSON"))?;
        let part = WorkerResult::from_json(&value, window)
            .with_context(|| format!("generator process {index}'s results are incomplete"))?;
        recorder.merge(part.recorder);
        if seconds.len() < part.series.len() {
            seconds.resize(part.series.len(), SeriesPoint::default());
        }
        for (mine, theirs) in seconds.iter_mut().zip(&part.series) {
            mine.second = theirs.second;
            mine.committed += theirs.committed;
            mine.queries += theirs.queries;
            mine.offered += theirs.offered;
            mine.rejected += theirs.rejected;
            mine.request_errors += theirs.request_errors;
        }
        generator_cpu.push((format!("generator {index}"), part.cpu_seconds));
        acknowledged += part.acknowledgements.acknowledged;
        worker_acknowledgements.push(part.acknowledgements);
        if part.stall.0 > stall.0 {
            stall = part.stall;
        }
    }
    // Latency per second, from the merged histograms.
    for (point, histogram) in seconds.iter_mut().zip(&recorder.per_second) {
        if let Some(histogram) = histogram {
            let latency = crate::stats::Percentiles::of(histogram);
            point.latency_us_p50 = latency.p50;
            point.latency_us_p99 = latency.p99;
            point.latency_us_max = latency.max;
        }
    }
    context
        .acknowledged
        .fetch_add(acknowledged, Ordering::Relaxed);
    let ((counters_before, cpu_before), (counters_after, cpu_after)) =
        snapshots.await.context("the counter snapshots failed")?;
    let samples = sampler.await.context("the server sampler failed")?;
    Ok(Phase {
        spec: spec.clone(),
        window,
        recorder,
        series: seconds,
        server_stats: phase::counter_delta(&counters_before, &counters_after),
        cpu_seconds: machine::cpu_delta(&cpu_before, &cpu_after),
        generator_cpu,
        samples,
        stall,
        percent: None,
        worker_acknowledgements,
    })
}

/// A generator process, killed if this process gives up on it.
#[derive(Debug)]
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn worker_args(
    context: &RunContext,
    spec: &PhaseSpec,
    index: usize,
    start_unix_ns: u64,
    output: &Path,
) -> Vec<String> {
    let options = &context.options;
    let count = options.processes as u64;
    let mut args = vec![
        "--addr".to_owned(),
        context.probe.addr.clone(),
        "--data-dir".to_owned(),
        context.probe.data_dir.display().to_string(),
        "--mix".to_owned(),
        options.mix.name().to_owned(),
        "--skew".to_owned(),
        options.skew.name().to_owned(),
        "--zipf-s".to_owned(),
        options.zipf_s.to_string(),
        "--merchants".to_owned(),
        options.merchants.to_string(),
        "--connections".to_owned(),
        options.connections.to_string(),
        "--pipeline".to_owned(),
        options.pipeline.to_string(),
        "--batch".to_owned(),
        options.batch.to_string(),
        "--interval".to_owned(),
        format!("{}us", options.interval.as_micros()),
        "--warmup".to_owned(),
        format!("{}ms", spec.warmup.as_millis()),
        "--duration".to_owned(),
        format!("{}ms", spec.duration.as_millis()),
        "--seed".to_owned(),
        context.seed.to_string(),
        "--verify-max".to_owned(),
        (spec.verify_max / options.processes).max(1).to_string(),
        "--processes".to_owned(),
        options.processes.to_string(),
        "--quiet".to_owned(),
        "--no-report".to_owned(),
        "--worker-index".to_owned(),
        index.to_string(),
        "--worker-tag".to_owned(),
        context.tag.to_string(),
        "--worker-start-unix-ns".to_owned(),
        start_unix_ns.to_string(),
        "--worker-output".to_owned(),
        output.display().to_string(),
    ];
    match options.accounts {
        Some(accounts) => args.extend(["--accounts".to_owned(), accounts.to_string()]),
        None => args.extend(["--customers".to_owned(), options.customers.to_string()]),
    }
    // The connection as the parent's: TLS with the same files.
    for (flag, value) in [
        ("--tls-ca", &options.tls_ca),
        ("--tls-cert", &options.tls_cert),
        ("--tls-key", &options.tls_key),
    ] {
        if let Some(path) = value {
            args.extend([flag.to_owned(), path.display().to_string()]);
        }
    }
    if let Some(name) = &options.tls_server_name {
        args.extend(["--tls-server-name".to_owned(), name.clone()]);
    }
    if options.tls {
        // The embedded server's CA, written into its data directory.
        let ca = context.probe.data_dir.join(crate::tls::EMBEDDED_CA_FILE);
        args.extend(["--tls-ca".to_owned(), ca.display().to_string()]);
    }
    if let Loop::Open { rate, .. } = spec.run_loop {
        // The remainder goes to the first processes.
        let share = rate / count + u64::from((index as u64) < rate % count);
        args.extend(["--rate".to_owned(), share.max(1).to_string()]);
    }
    args
}

/// A generator process: load only, then its own look-up, then its results.
pub async fn worker(options: Options) -> anyhow::Result<()> {
    let (Some(index), Some(tag), Some(start_unix_ns), Some(output), Some(addr)) = (
        options.worker_index,
        options.worker_tag,
        options.worker_start_unix_ns,
        options.worker_output.clone(),
        options.addr.clone(),
    ) else {
        bail!("a generator process needs --addr and every --worker-* option");
    };
    let Some(seed) = options.seed else {
        bail!("a generator process needs --seed");
    };
    let population = Arc::new(Population::build(
        tag,
        options.customer_count(),
        options.accounts.is_some(),
        options.merchants,
        seed,
    ));
    let config = ClientConfig::local(addr.clone(), &options.data_dir)
        .context("cannot use the server's gateway secret")?;
    let config = crate::tls::client(config, &options, &addr)?;
    let mut clients = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        clients.push(
            Client::connect(config.clone())
                .await
                .context("cannot connect")?,
        );
    }
    let Some(limits) = clients.first().and_then(Client::server_limits) else {
        bail!("the server announced no limits");
    };
    let inflight_max = limits.inflight_max as usize;
    let server_batch_max = limits.batch_commands_max as usize;
    let now_unix = unix_ns();
    let start = Instant::now() + Duration::from_nanos(start_unix_ns.saturating_sub(now_unix));
    let window = Window {
        start,
        warm_end: start + options.warmup,
        end: start + options.warmup + options.duration,
    };
    tokio::time::sleep_until(start).await;
    let live = Arc::new(Live::new(window));
    let nonce: u64 = rand::random();
    let mut setup = LoadSetup::from_options(&options, Arc::clone(&population), nonce, seed);
    // Streams apart from the other processes': a stream's number seeds its
    // random choices, and two processes drawing the same payment codes
    // would refuse each other's (`payment_code_taken`).
    setup.stream_base = index as u64 * STREAMS_PER_PHASE;
    let cpu = tokio::spawn(async move {
        tokio::time::sleep_until(window.warm_end).await;
        let before = machine::process_cpu_seconds();
        tokio::time::sleep_until(window.end).await;
        machine::process_cpu_seconds() - before
    });
    let recorders = match options.run_loop() {
        Loop::Closed { pipeline } => drive::closed_loop(&clients, &setup, pipeline, &live).await,
        Loop::Open { rate, interval } => {
            drive::open_loop(&clients, &setup, rate, interval, inflight_max, &live).await
        }
    };
    let cpu_seconds = cpu.await.unwrap_or(0.0);
    let mut recorder = Recorder::new(window, 0, 0);
    for other in recorders {
        recorder.merge(other);
    }
    // This process's look-up: its sample of the commands acknowledged to it.
    let acknowledged = live.acknowledged.load(Ordering::Relaxed);
    let records_capacity = match clients.first() {
        Some(client) => crate::phase::server_records_capacity(client).await,
        None => IDEMPOTENCY_RECORDS_MAX_DEFAULT as u64,
    };
    let retained = records_capacity
        .saturating_sub((options.connections * inflight_max * server_batch_max) as u64)
        / options.processes.max(1) as u64;
    let sample = std::mem::take(&mut recorder.sample.items);
    let acknowledgements = verify::acknowledgements(
        &clients,
        sample,
        acknowledged,
        acknowledged.saturating_sub(retained),
        server_batch_max,
    )
    .await?;
    let series = phase::series(&live, &recorder);
    let result = WorkerResult {
        recorder,
        series,
        cpu_seconds,
        stall: live.longest_stall(),
        acknowledgements,
    };
    std::fs::write(&output, result.to_json().to_string())
        .with_context(|| format!("cannot write {}", output.display()))?;
    Ok(())
}

/// What a generator process hands back.
#[derive(Debug)]
struct WorkerResult {
    recorder: Recorder,
    series: Vec<SeriesPoint>,
    cpu_seconds: f64,
    stall: (Duration, Duration),
    acknowledgements: Acknowledgements,
}

fn histogram_json(histogram: &Histogram<u64>) -> Value {
    Value::Array(
        histogram
            .iter_recorded()
            .map(|value| json!([value.value_iterated_to(), value.count_at_value()]))
            .collect(),
    )
}

fn histogram_from(value: &Value, significant_digits: u8) -> Option<Histogram<u64>> {
    let mut histogram = latency_histogram(significant_digits);
    for pair in value.as_array()? {
        let micros = pair.get(0)?.as_u64()?;
        let count = pair.get(1)?.as_u64()?;
        histogram
            .record_n(micros.clamp(1, crate::stats::LATENCY_US_MAX), count)
            .ok()?;
    }
    Some(histogram)
}

fn counts_json(map: &BTreeMap<impl AsRef<str>, u64>) -> Value {
    Value::Object(
        map.iter()
            .map(|(name, count)| (name.as_ref().to_owned(), json!(count)))
            .collect(),
    )
}

impl WorkerResult {
    fn to_json(&self) -> Value {
        let recorder = &self.recorder;
        let ack = &self.acknowledgements;
        json!({
            "counts": recorder.counts.iter().map(|counts| json!([counts.committed, counts.ok, counts.rejected])).collect::<Vec<_>>(),
            "offered_commands": recorder.offered_commands,
            "offered_queries": recorder.offered_queries,
            "not_applied": recorder.not_applied,
            "rejected_by_status": counts_json(&recorder.rejected_by_status),
            "request_errors": counts_json(&recorder.request_errors),
            "by_kind": recorder.by_kind.iter().map(histogram_json).collect::<Vec<_>>(),
            "commands": histogram_json(&recorder.commands),
            "per_second": recorder.per_second.iter().map(|histogram| histogram.as_ref().map_or(Value::Null, histogram_json)).collect::<Vec<_>>(),
            "series": self.series.iter().map(|point| json!([point.second, point.committed, point.queries, point.offered, point.rejected, point.request_errors])).collect::<Vec<_>>(),
            "cpu_seconds": self.cpu_seconds,
            "stall_ns": [self.stall.0.as_nanos() as u64, self.stall.1.as_nanos() as u64],
            "acknowledged": [ack.acknowledged, ack.checked, ack.found, ack.mismatched, ack.missing, ack.past_retention],
            "problems": ack.problems,
        })
    }

    fn from_json(value: &Value, window: Window) -> Option<WorkerResult> {
        let mut recorder = Recorder::new(window, 0, 0);
        for (slot, counts) in recorder
            .counts
            .iter_mut()
            .zip(value.get("counts")?.as_array()?)
        {
            *slot = KindCounts {
                committed: counts.get(0)?.as_u64()?,
                ok: counts.get(1)?.as_u64()?,
                rejected: counts.get(2)?.as_u64()?,
            };
        }
        recorder.offered_commands = value.get("offered_commands")?.as_u64()?;
        recorder.offered_queries = value.get("offered_queries")?.as_u64()?;
        recorder.not_applied = value.get("not_applied")?.as_u64()?;
        for (name, count) in value.get("rejected_by_status")?.as_object()? {
            // Status names are the engine's own: map back to its strings.
            let name = Status::ALL
                .iter()
                .map(|status| status.name())
                .find(|known| known == name)
                .unwrap_or("unknown_status");
            *recorder.rejected_by_status.entry(name).or_insert(0) += count.as_u64()?;
        }
        for (name, count) in value.get("request_errors")?.as_object()? {
            recorder
                .request_errors
                .insert(name.clone(), count.as_u64()?);
        }
        for (slot, histogram) in recorder
            .by_kind
            .iter_mut()
            .zip(value.get("by_kind")?.as_array()?)
        {
            *slot = histogram_from(histogram, 3)?;
        }
        recorder.commands = histogram_from(value.get("commands")?, 3)?;
        for histogram in value.get("per_second")?.as_array()? {
            recorder.per_second.push(if histogram.is_null() {
                None
            } else {
                Some(histogram_from(histogram, 2)?)
            });
        }
        let mut series = Vec::new();
        for point in value.get("series")?.as_array()? {
            let field = |index: usize| point.get(index).and_then(Value::as_u64);
            series.push(SeriesPoint {
                second: field(0)?,
                committed: field(1)?,
                queries: field(2)?,
                offered: field(3)?,
                rejected: field(4)?,
                request_errors: field(5)?,
                ..SeriesPoint::default()
            });
        }
        let stall = value.get("stall_ns")?;
        let acknowledged = value.get("acknowledged")?;
        let field = |index: usize| acknowledged.get(index).and_then(Value::as_u64);
        let problems = value
            .get("problems")?
            .as_array()?
            .iter()
            .filter_map(|problem| problem.as_str().map(str::to_owned))
            .collect();
        Some(WorkerResult {
            recorder,
            series,
            cpu_seconds: value.get("cpu_seconds")?.as_f64()?,
            stall: (
                Duration::from_nanos(stall.get(0)?.as_u64()?),
                Duration::from_nanos(stall.get(1)?.as_u64()?),
            ),
            acknowledgements: Acknowledgements {
                acknowledged: field(0)?,
                checked: field(1)?,
                found: field(2)?,
                mismatched: field(3)?,
                missing: field(4)?,
                past_retention: field(5)?,
                problems,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mix::Kind;

    #[test]
    fn a_worker_result_survives_its_json() {
        let start = Instant::now();
        let window = Window {
            start,
            warm_end: start,
            end: start + Duration::from_secs(2),
        };
        let mut recorder = Recorder::new(window, 0, 0);
        recorder.counts[Kind::Transfer.index()] = KindCounts {
            committed: 10,
            ok: 9,
            rejected: 1,
        };
        recorder.offered_commands = 10;
        recorder.not_applied = 2;
        recorder
            .rejected_by_status
            .insert(Status::InsufficientFunds.name(), 1);
        let _ = recorder.commands.record_n(1_500, 10);
        let _ = recorder.by_kind[Kind::Transfer.index()].record_n(1_500, 10);
        let result = WorkerResult {
            recorder,
            series: vec![SeriesPoint {
                second: 0,
                committed: 10,
                ..SeriesPoint::default()
            }],
            cpu_seconds: 0.25,
            stall: (Duration::from_millis(3), Duration::from_millis(1)),
            acknowledgements: Acknowledgements {
                acknowledged: 10,
                checked: 10,
                found: 10,
                ..Acknowledgements::default()
            },
        };
        let back = WorkerResult::from_json(&result.to_json(), window).unwrap();
        assert_eq!(back.recorder.counts[Kind::Transfer.index()].ok, 9);
        assert_eq!(back.recorder.not_applied, 2);
        assert_eq!(
            back.recorder.rejected_by_status.get("insufficient_funds"),
            Some(&1)
        );
        assert_eq!(back.recorder.commands.len(), 10);
        assert!(back.recorder.commands.value_at_quantile(0.5) >= 1_499);
        assert_eq!(back.series[0].committed, 10);
        assert_eq!(back.stall.0, Duration::from_millis(3));
        assert_eq!(back.acknowledgements.found, 10);
        assert!(WorkerResult::from_json(&json!({}), window).is_none());
    }
}
