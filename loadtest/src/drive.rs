//! Seeding and the load itself: closed loop (each connection keeps
//! `pipeline` requests in flight) or open loop (batches due at planned
//! times, whatever the server does), and the progress line.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context};
use payrail_api::client::{Client, ClientError};
use payrail_engine::{AccountId, AccountKind, Command, CommandResult, QueryReply, Status};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::mix::{command_id, Batch, Generator, Kind, HISTORY_PAGE_ENTRIES};
use crate::options::{MixName, Options, SkewName};
use crate::population::{fx_setup_kinds, Population};
use crate::stats::{Arrivals, Live, Recorder};

/// Stream number of the seeding commands (generators use 1 and up).
const SEED_STREAM: u64 = 0;
/// Longest the whole seeding may take.
const SEEDING_TIME_MAX: Duration = Duration::from_secs(3_600);
/// Extra wait for requests in flight at the end of the run, past the
/// client's own request timeout.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// What seeding did.
#[derive(Clone, Copy, Debug, Default)]
pub struct SeedReport {
    pub accounts_opened: u64,
    pub deposits: u64,
    pub merchant_keys: u64,
    /// Cards bound and verified (wallet mix: one per customer account).
    pub instruments: u64,
    /// FX rates and liquidity floors set (the wallet mix converts).
    pub fx_settings: u64,
    pub elapsed: Duration,
}

impl SeedReport {
    pub fn commands(&self) -> u64 {
        self.accounts_opened
            + self.deposits
            + self.merchant_keys
            + 2 * self.instruments
            + self.fx_settings
    }
}

/// Opens every account, then tops up every customer account and registers
/// every merchant's QR key, through the protocol, in full batches over all
/// connections; with `wallet`, then binds a card to every customer account
/// (in its currency) and verifies it, and sets the FX rates of every pair
/// of the run's currencies and their liquidity floors.
pub async fn seed(
    clients: &[Client],
    population: &Arc<Population>,
    nonce: u64,
    batch: usize,
    wallet: bool,
    live_acknowledged: Arc<std::sync::atomic::AtomicU64>,
) -> anyhow::Result<SeedReport> {
    let started = Instant::now();
    let deadline = started + SEEDING_TIME_MAX;
    let accounts = population.accounts.len();
    // Phase 0: open. Phase 1: top up customers (before they have a card:
    // after, a top-up must name one), register merchants' keys. Wallet
    // mix: phase 2 binds every customer account's card, phase 3 verifies it.
    let phases = if wallet { 4 } else { 2 };
    for phase in 0..phases {
        let chunks = accounts.div_ceil(batch);
        let next = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        // Four requests in flight per connection keep group commit busy.
        for client in clients
            .iter()
            .flat_map(|client| std::iter::repeat_n(client, 4))
        {
            let client = client.clone();
            let next = Arc::clone(&next);
            let population = Arc::clone(population);
            let acknowledged = Arc::clone(&live_acknowledged);
            tasks.spawn(async move {
                loop {
                    let chunk = next.fetch_add(1, Ordering::Relaxed);
                    if chunk >= chunks || Instant::now() > deadline {
                        return Ok::<u64, anyhow::Error>(0);
                    }
                    let range = chunk * batch..((chunk + 1) * batch).min(accounts);
                    let commands: Vec<Command> = population.accounts[range.clone()]
                        .iter()
                        .zip(range.clone())
                        .filter_map(|(account, index)| {
                            let counter = (phase * accounts + index) as u64;
                            let id = command_id(nonce, SEED_STREAM, counter);
                            match (phase, account.kind) {
                                (0, _) => Some(Population::open_command(account, id, index as u64)),
                                (1, AccountKind::Customer) => {
                                    Some(Population::opening_deposit(account, id))
                                }
                                (1, _) => Some(Population::register_key(account, id)),
                                (2, AccountKind::Customer) => {
                                    Some(Population::bind_instrument(account, id))
                                }
                                (3, AccountKind::Customer) => {
                                    Some(Population::verify_instrument(account, id))
                                }
                                _ => None,
                            }
                        })
                        .collect();
                    if commands.is_empty() {
                        continue;
                    }
                    let results = client
                        .submit(commands)
                        .await
                        .context("a seeding request failed")?;
                    acknowledged.fetch_add(results.len() as u64, Ordering::Relaxed);
                    if let Some(bad) = results.iter().find(|result| !result.status.is_ok()) {
                        let what = match phase {
                            0 => "opening",
                            1 => "top-up or merchant key registration",
                            2 => "card binding",
                            _ => "card verification",
                        };
                        bail!(
                            "an account {what} was refused: {} ({}); with --addr, the server may \
                             already hold these account ids: run again",
                            bad.status.description(),
                            bad.status.name()
                        );
                    }
                }
            });
        }
        while let Some(outcome) = tasks.join_next().await {
            outcome.context("a seeding task failed")??;
        }
        if Instant::now() > deadline {
            bail!("seeding took longer than {} s", SEEDING_TIME_MAX.as_secs());
        }
    }
    let mut fx_settings = 0;
    if wallet {
        let Some(client) = clients.first() else {
            bail!("no connection to seed through");
        };
        let commands: Vec<Command> = fx_setup_kinds()
            .into_iter()
            .enumerate()
            .map(|(index, kind)| {
                let counter = (4 * accounts + index) as u64;
                Command::new(command_id(nonce, SEED_STREAM, counter), kind)
            })
            .collect();
        let results = client
            .submit(commands.clone())
            .await
            .context("setting the FX rates failed")?;
        live_acknowledged.fetch_add(results.len() as u64, Ordering::Relaxed);
        for (command, result) in commands.iter().zip(&results) {
            if !result.status.is_ok() {
                bail!(
                    "{} was refused: {} ({})",
                    command.kind.name(),
                    result.status.description(),
                    result.status.name()
                );
            }
        }
        fx_settings = results.len() as u64;
    }
    Ok(SeedReport {
        accounts_opened: accounts as u64,
        deposits: population.customer_accounts(),
        merchant_keys: population.merchants,
        instruments: if wallet {
            population.customer_accounts()
        } else {
            0
        },
        fx_settings,
        elapsed: started.elapsed(),
    })
}

/// What every worker needs.
#[derive(Clone, Debug)]
pub struct LoadSetup {
    pub population: Arc<Population>,
    pub mix: MixName,
    pub skew: SkewName,
    pub zipf_s: f64,
    pub nonce: u64,
    pub seed: u64,
    pub batch: usize,
    pub verify_max: usize,
    /// Stream numbers of this phase's generators start above this.
    pub stream_base: u64,
}

/// Stream numbers each phase of a run may use (a closed loop has at most
/// 256 connections x 64 requests = 16,384 workers).
pub const STREAMS_PER_PHASE: u64 = 16_385;

impl LoadSetup {
    pub fn from_options(
        options: &Options,
        population: Arc<Population>,
        nonce: u64,
        seed: u64,
    ) -> LoadSetup {
        LoadSetup {
            population,
            mix: options.mix,
            skew: options.skew,
            zipf_s: options.zipf_s,
            nonce,
            seed,
            batch: options.batch,
            verify_max: options.verify_max,
            stream_base: 0,
        }
    }

    fn generator(&self, stream: u64) -> Generator {
        Generator::new(
            Arc::clone(&self.population),
            self.mix,
            self.skew,
            self.zipf_s,
            self.nonce,
            self.stream_base + stream,
            self.seed,
        )
    }
}

/// The replies to a batch: its commands, its queries, and each history
/// page (with when its reply came: pages are requests of their own).
#[derive(Debug)]
pub struct Outcome {
    pub commands: (Result<Vec<CommandResult>, ClientError>, Instant),
    pub queries: (Result<Vec<QueryReply>, ClientError>, Instant),
    pub histories: Vec<(Result<(), ClientError>, Instant)>,
}

/// History pages one batch asks for at once (each is a request in flight
/// of its own; the client waits when the connection's limit is reached).
const HISTORY_LANES: usize = 4;

/// Sends a batch's commands and queries as two requests, and its history
/// pages on [`HISTORY_LANES`] lanes, all at once.
pub async fn send(
    client: &Client,
    commands: Vec<Command>,
    queries: Vec<payrail_engine::Query>,
    histories: &[AccountId],
) -> Outcome {
    let submit = async {
        let results = if commands.is_empty() {
            Ok(Vec::new())
        } else {
            client.submit(commands).await
        };
        (results, Instant::now())
    };
    let query = async {
        let replies = if queries.is_empty() {
            Ok(Vec::new())
        } else {
            client.query(queries).await
        };
        (replies, Instant::now())
    };
    let lane = |lane: usize| async move {
        let mut out = Vec::new();
        for account in histories.iter().skip(lane).step_by(HISTORY_LANES) {
            let page = client
                .history(*account, 0, u64::MAX, 0, HISTORY_PAGE_ENTRIES)
                .await
                .map(|_| ());
            out.push((page, Instant::now()));
        }
        out
    };
    let (commands, queries, lane_0, lane_1, lane_2, lane_3) =
        tokio::join!(submit, query, lane(0), lane(1), lane(2), lane(3));
    let mut histories = lane_0;
    histories.extend(lane_1);
    histories.extend(lane_2);
    histories.extend(lane_3);
    Outcome {
        commands,
        queries,
        histories,
    }
}

/// What was sent in one request group, for recording its outcome.
#[derive(Debug)]
pub struct Sent<'a> {
    pub first_id: u128,
    pub kinds: &'a [Kind],
    pub query_kinds: &'a [Kind],
    pub commands: usize,
    pub queries: usize,
    pub arrivals: Arrivals,
}

/// Records a request group's outcome.
pub fn record_outcome(recorder: &mut Recorder, live: &Live, sent: &Sent, outcome: &Outcome) {
    let (commands, done) = &outcome.commands;
    let done = *done;
    match commands {
        Ok(results) => {
            if !results.is_empty() {
                recorder.commands_done(
                    live,
                    sent.first_id,
                    sent.kinds,
                    results,
                    sent.arrivals,
                    done,
                )
            }
        }
        Err(error) => recorder.request_failed(live, error, sent.commands, done),
    }
    let (queries, done) = &outcome.queries;
    let done = *done;
    match queries {
        Ok(replies) => {
            let refused: Vec<Option<Status>> = replies
                .iter()
                .map(|reply| match reply {
                    QueryReply::Refused(status) => Some(*status),
                    _ => None,
                })
                .collect();
            let kinds = &sent.query_kinds[..replies.len().min(sent.query_kinds.len())];
            recorder.queries_done(live, kinds, &refused, sent.arrivals, done);
        }
        Err(error) => recorder.request_failed(live, error, sent.queries, done),
    }
    for (page, page_done) in &outcome.histories {
        match page {
            Ok(()) => recorder.queries_done(
                live,
                &[Kind::HistoryPage],
                &[None],
                sent.arrivals,
                *page_done,
            ),
            Err(error) => recorder.request_failed(live, error, 1, *page_done),
        }
    }
}

/// Closed loop: `pipeline` workers per connection, each sending its next
/// batch when the previous one is answered, until the window ends.
pub async fn closed_loop(
    clients: &[Client],
    setup: &LoadSetup,
    pipeline: usize,
    live: &Arc<Live>,
) -> Vec<Recorder> {
    let workers = clients.len() * pipeline;
    let sample_capacity = setup.verify_max.div_ceil(workers.max(1));
    let mut tasks = JoinSet::new();
    for worker in 0..workers {
        let client = clients[worker % clients.len()].clone();
        let mut generator = setup.generator(1 + worker as u64);
        let mut recorder = Recorder::new(live.window, sample_capacity, setup.seed ^ worker as u64);
        let live = Arc::clone(live);
        let batch_size = setup.batch;
        tasks.spawn(async move {
            let mut batch = Batch::default();
            let end = live.window.end;
            // Bounded in time: no new batch after `end`, and every request is
            // bounded by the client's request timeout.
            loop {
                let sent = Instant::now();
                if sent >= end {
                    break;
                }
                generator.fill(batch_size, &mut batch);
                let commands = std::mem::take(&mut batch.commands);
                let queries = std::mem::take(&mut batch.queries);
                let (commands_sent, queries_sent) = (commands.len(), queries.len());
                recorder.offered(
                    &live,
                    sent,
                    commands_sent,
                    queries_sent + batch.histories.len(),
                );
                let outcome = send(&client, commands, queries, &batch.histories).await;
                live.replied(Instant::now());
                record_outcome(
                    &mut recorder,
                    &live,
                    &Sent {
                        first_id: batch.first_id,
                        kinds: &batch.kinds,
                        query_kinds: &batch.query_kinds,
                        commands: commands_sent,
                        queries: queries_sent,
                        arrivals: Arrivals {
                            start: sent,
                            length: Duration::ZERO,
                        },
                    },
                    &outcome,
                );
                if let Ok(results) = &outcome.commands.0 {
                    generator.batch_acknowledged(&batch.follow_ups, results);
                }
            }
            recorder
        });
    }
    collect(tasks).await
}

async fn collect(mut tasks: JoinSet<Recorder>) -> Vec<Recorder> {
    let mut recorders = Vec::new();
    while let Some(outcome) = tasks.join_next().await {
        match outcome {
            Ok(recorder) => recorders.push(recorder),
            Err(error) => tracing::error!(%error, "a load worker failed"),
        }
    }
    recorders
}

/// Open loop: commands arrive evenly at `rate` per second; every
/// `interval` the ones that arrived are sent (in batches of at most
/// `batch`), round-robin over the connections, without waiting for earlier
/// replies. Latency counts from each command's planned arrival, so a server
/// that stalls shows up in it. Requests in flight are bounded by the
/// connections' in-flight limit; past it the sender waits, and the wait is
/// part of the latency.
pub async fn open_loop(
    clients: &[Client],
    setup: &LoadSetup,
    rate: u64,
    interval: Duration,
    inflight_per_connection: usize,
    live: &Arc<Live>,
) -> Vec<Recorder> {
    let connections = clients.len();
    let sample_capacity = setup.verify_max.div_ceil(connections.max(1));
    let generators: Vec<Arc<Mutex<Generator>>> = (0..connections)
        .map(|index| Arc::new(Mutex::new(setup.generator(1 + index as u64))))
        .collect();
    let recorders: Vec<Arc<Mutex<Recorder>>> = (0..connections)
        .map(|index| {
            Arc::new(Mutex::new(Recorder::new(
                live.window,
                sample_capacity,
                setup.seed ^ index as u64,
            )))
        })
        .collect();
    let permits_total = connections * inflight_per_connection.max(1);
    let outstanding = Arc::new(Semaphore::new(permits_total));
    let window = live.window;
    let interval_ns = interval.as_nanos().max(1);
    let mut offered_total: u128 = 0;
    let mut next_connection = 0usize;
    let mut tick: u128 = 0;
    let mut tasks = JoinSet::new();
    loop {
        let arrivals_start = window.start + Duration::from_nanos((tick * interval_ns) as u64);
        let due_at = arrivals_start + interval;
        if due_at > window.end {
            break;
        }
        tokio::time::sleep_until(due_at).await;
        tick += 1;
        // Commands that arrived by `due_at`, at `rate` per second.
        let arrived = u128::from(rate) * tick * interval_ns / 1_000_000_000;
        let mut due = (arrived - offered_total) as usize;
        offered_total = arrived;
        let chunks = due.div_ceil(setup.batch.max(1)).max(1);
        for _ in 0..chunks {
            if due == 0 {
                break;
            }
            let size = due.min(setup.batch);
            due -= size;
            let Ok(permit) = Arc::clone(&outstanding).acquire_owned().await else {
                break;
            };
            let connection = next_connection;
            next_connection = (next_connection + 1) % connections;
            let mut batch = Batch::default();
            generators[connection]
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .fill(size, &mut batch);
            let commands = std::mem::take(&mut batch.commands);
            let queries = std::mem::take(&mut batch.queries);
            let (commands_sent, queries_sent) = (commands.len(), queries.len());
            recorders[connection]
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .offered(
                    live,
                    arrivals_start,
                    commands_sent,
                    queries_sent + batch.histories.len(),
                );
            let client = clients[connection].clone();
            let recorder = Arc::clone(&recorders[connection]);
            let generator = Arc::clone(&generators[connection]);
            let live = Arc::clone(live);
            tasks.spawn(async move {
                let _permit = permit;
                let outcome = send(&client, commands, queries, &batch.histories).await;
                live.replied(Instant::now());
                record_outcome(
                    &mut recorder.lock().unwrap_or_else(PoisonError::into_inner),
                    &live,
                    &Sent {
                        first_id: batch.first_id,
                        kinds: &batch.kinds,
                        query_kinds: &batch.query_kinds,
                        commands: commands_sent,
                        queries: queries_sent,
                        arrivals: Arrivals {
                            start: arrivals_start,
                            length: interval,
                        },
                    },
                    &outcome,
                );
                if let Ok(results) = &outcome.commands.0 {
                    generator
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .batch_acknowledged(&batch.follow_ups, results);
                }
            });
        }
        // Reap finished sends so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    // Every send is bounded by the client's request timeout.
    let drain = tokio::time::timeout(
        payrail_api::client::REQUEST_TIMEOUT_DEFAULT + DRAIN_GRACE,
        async { while tasks.join_next().await.is_some() {} },
    )
    .await;
    if drain.is_err() {
        tracing::warn!("requests still in flight after the drain timeout; abandoned");
        tasks.abort_all();
    }
    drop(generators);
    recorders
        .into_iter()
        .map(|recorder| match Arc::try_unwrap(recorder) {
            Ok(mutex) => mutex.into_inner().unwrap_or_else(PoisonError::into_inner),
            Err(shared) => {
                let mut guard = shared.lock().unwrap_or_else(PoisonError::into_inner);
                let empty = Recorder::new(guard.window, 0, 0);
                std::mem::replace(&mut *guard, empty)
            }
        })
        .collect()
}

/// Prints one line per second until `end` (plus the drain), from the live
/// counters: the second that just finished, with the resident memory of
/// the server's process `server_pid` if it was found (on the console as it
/// happens, so a run whose server dies still shows its memory up to then).
pub async fn progress(live: Arc<Live>, stop: Arc<tokio::sync::Notify>, server_pid: Option<u32>) {
    let window = live.window;
    let mut second = 1u64;
    loop {
        let at = window.start + Duration::from_secs(second);
        tokio::select! {
            _ = tokio::time::sleep_until(at) => {}
            _ = stop.notified() => return,
        }
        let Some(slot) = live.seconds.get((second - 1) as usize) else {
            return;
        };
        let load = |counter: &std::sync::atomic::AtomicU64| counter.load(Ordering::Relaxed);
        let count = load(&slot.latency_count);
        let mean_ms = if count == 0 {
            0.0
        } else {
            load(&slot.latency_us_sum) as f64 / count as f64 / 1_000.0
        };
        let phase = if at <= window.warm_end {
            " (warm-up)"
        } else if at > window.end {
            " (draining)"
        } else {
            ""
        };
        let resident = server_pid
            .and_then(crate::machine::resident_bytes)
            .map(|bytes| format!("  rss {:>6} MiB", bytes >> 20))
            .unwrap_or_default();
        println!(
            "{:>4} s  committed {:>10}/s  queries {:>9}/s  offered {:>10}/s  rejected {:>8}  errors {:>6}  latency mean {:>8.2} ms  max {:>8.2} ms{resident}{phase}",
            second,
            group_digits(load(&slot.committed)),
            group_digits(load(&slot.queries)),
            group_digits(load(&slot.offered)),
            group_digits(load(&slot.rejected)),
            group_digits(load(&slot.request_errors)),
            mean_ms,
            load(&slot.latency_us_max) as f64 / 1_000.0,
        );
        second += 1;
    }
}

/// 1234567 as "1,234,567".
pub fn group_digits(value: u64) -> String {
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, c) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_are_grouped() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1_000), "1,000");
        assert_eq!(group_digits(1_234_567), "1,234,567");
    }
}
