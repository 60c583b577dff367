//! What a run measures: latency histograms per kind, counts, statuses, a
//! per-second series, and a uniform sample of acknowledged commands to
//! look up again at the end.
//!
//! Each worker owns a [`Recorder`] (no sharing on the hot path); they are
//! merged at the end. [`Live`] holds the per-second atomics the progress
//! line and the time series read.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use payrail_api::client::{snake_case, ClientError};
use payrail_engine::{CommandResult, Status};
use tokio::time::Instant;

use crate::mix::Kind;
use crate::sample::Rng;

/// Largest latency a histogram holds (larger values are clamped to it).
pub const LATENCY_US_MAX: u64 = 3_600_000_000;
/// Seconds after the end of the run that the series still covers (replies
/// of requests in flight at the end).
pub const DRAIN_SECONDS_MAX: u64 = 60;

/// A histogram of latencies in microseconds.
#[allow(clippy::expect_used)] // Constant bounds: an error is a programmer error.
pub fn latency_histogram(significant_digits: u8) -> Histogram<u64> {
    assert!((1..=3).contains(&significant_digits));
    Histogram::new_with_bounds(1, LATENCY_US_MAX, significant_digits)
        .expect("constant histogram bounds are valid")
}

fn record(histogram: &mut Histogram<u64>, latency: Duration, count: u64) {
    let micros = (latency.as_micros() as u64).clamp(1, LATENCY_US_MAX);
    // Cannot fail: the value is within the bounds.
    let _ = histogram.record_n(micros, count);
}

/// The measured window: warm-up from `start` to `warm_end`, figures from
/// `warm_end` to `end`.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    pub start: Instant,
    pub warm_end: Instant,
    pub end: Instant,
}

impl Window {
    pub fn measured(&self, at: Instant) -> bool {
        at >= self.warm_end && at <= self.end
    }

    pub fn second(&self, at: Instant) -> usize {
        at.saturating_duration_since(self.start).as_secs() as usize
    }

    pub fn duration(&self) -> Duration {
        self.end.saturating_duration_since(self.warm_end)
    }
}

/// Per-second counters, shared by every worker.
#[derive(Debug, Default)]
pub struct SecondSlot {
    pub committed: AtomicU64,
    pub rejected: AtomicU64,
    pub offered: AtomicU64,
    pub queries: AtomicU64,
    pub request_errors: AtomicU64,
    pub latency_us_sum: AtomicU64,
    pub latency_count: AtomicU64,
    pub latency_us_max: AtomicU64,
}

#[derive(Debug)]
pub struct Live {
    pub window: Window,
    pub seconds: Vec<SecondSlot>,
    /// Commands acknowledged so far (seeding included): the ordinal of an
    /// acknowledgement, to tell which sampled commands may be past the
    /// server's idempotency retention.
    pub acknowledged: AtomicU64,
    /// When the last reply came, ns from the window's start.
    last_reply_ns: AtomicU64,
    /// The longest time without any reply in the measured window, ns, and
    /// when it began (ns from the window's start).
    longest_gap_ns: AtomicU64,
    longest_gap_from_ns: AtomicU64,
}

impl Live {
    pub fn new(window: Window) -> Live {
        let seconds =
            window.end.saturating_duration_since(window.start).as_secs() + 1 + DRAIN_SECONDS_MAX;
        let warm_end_ns = window
            .warm_end
            .saturating_duration_since(window.start)
            .as_nanos() as u64;
        Live {
            window,
            seconds: (0..seconds).map(|_| SecondSlot::default()).collect(),
            acknowledged: AtomicU64::new(0),
            last_reply_ns: AtomicU64::new(warm_end_ns),
            longest_gap_ns: AtomicU64::new(0),
            longest_gap_from_ns: AtomicU64::new(0),
        }
    }

    /// A reply came at `at`: the gap since the previous one is a stall if
    /// it is long. Gaps are counted from the end of the warm-up (a gap that
    /// began in it counts from there) to the first reply after the window.
    pub fn replied(&self, at: Instant) {
        let start = self.window.start;
        let now = at.saturating_duration_since(start).as_nanos() as u64;
        let warm_end = self
            .window
            .warm_end
            .saturating_duration_since(start)
            .as_nanos() as u64;
        let end = self.window.end.saturating_duration_since(start).as_nanos() as u64;
        if now < warm_end {
            return;
        }
        let previous = self.last_reply_ns.fetch_max(now, Ordering::Relaxed);
        if previous >= now || previous > end {
            return;
        }
        let gap = now - previous.max(warm_end);
        if gap > self.longest_gap_ns.fetch_max(gap, Ordering::Relaxed) {
            self.longest_gap_from_ns.store(previous, Ordering::Relaxed);
        }
    }

    /// The longest time without a reply in the measured window, and how
    /// long after the end of the warm-up it began.
    pub fn longest_stall(&self) -> (Duration, Duration) {
        let warm_end = self
            .window
            .warm_end
            .saturating_duration_since(self.window.start)
            .as_nanos() as u64;
        (
            Duration::from_nanos(self.longest_gap_ns.load(Ordering::Relaxed)),
            Duration::from_nanos(
                self.longest_gap_from_ns
                    .load(Ordering::Relaxed)
                    .saturating_sub(warm_end),
            ),
        )
    }

    pub fn slot(&self, at: Instant) -> Option<&SecondSlot> {
        self.seconds.get(self.window.second(at))
    }
}

/// One sampled acknowledged command.
#[derive(Clone, Copy, Debug)]
pub struct Acknowledged {
    pub id: u128,
    pub status: Status,
    /// Commands acknowledged before it (see [`Live::acknowledged`]).
    pub ordinal: u64,
}

/// A uniform sample of at most `capacity` items (algorithm R).
#[derive(Debug)]
pub struct Reservoir {
    capacity: usize,
    seen: u64,
    pub items: Vec<Acknowledged>,
    rng: Rng,
}

impl Reservoir {
    pub fn new(capacity: usize, seed: u64) -> Reservoir {
        Reservoir {
            capacity,
            seen: 0,
            items: Vec::new(),
            rng: Rng::new(seed),
        }
    }

    pub fn offer(&mut self, item: Acknowledged) {
        self.seen += 1;
        if self.items.len() < self.capacity {
            self.items.push(item);
        } else if self.capacity > 0 {
            let slot = self.rng.below(self.seen);
            if slot < self.capacity as u64 {
                self.items[slot as usize] = item;
            }
        }
    }

    #[cfg(test)]
    pub fn seen(&self) -> u64 {
        self.seen
    }
}

/// Counts per kind, in the measured window.
#[derive(Clone, Copy, Debug, Default)]
pub struct KindCounts {
    pub committed: u64,
    pub ok: u64,
    pub rejected: u64,
}

/// Everything one worker measured.
#[derive(Debug)]
pub struct Recorder {
    pub window: Window,
    /// Latency per kind (commands, and queries for the query kind).
    pub by_kind: Vec<Histogram<u64>>,
    /// Latency of every command (not queries).
    pub commands: Histogram<u64>,
    pub counts: [KindCounts; Kind::COUNT],
    pub offered_commands: u64,
    pub offered_queries: u64,
    /// Rejections in the measured window, by status.
    pub rejected_by_status: BTreeMap<&'static str, u64>,
    /// Commands and queries whose request failed as a whole, by reason.
    pub request_errors: BTreeMap<String, u64>,
    /// Latency of everything sent in each second (coarser: 2 digits).
    pub per_second: Vec<Option<Histogram<u64>>>,
    pub sample: Reservoir,
    /// Commands the server answered without applying them
    /// (`storage_failed`, `unavailable`: it could not or would not write
    /// them), at any time of the run. They have no record to look up.
    pub not_applied: u64,
}

/// Whether a status says the command was not applied (and has no
/// idempotency record): the server could not or would not log it.
pub fn not_applied(status: Status) -> bool {
    matches!(status, Status::StorageFailed | Status::Unavailable)
}

/// When the items of a request arrived: spread evenly over `length` from
/// `start` (open loop), or all at `start` (closed loop, `length` zero).
#[derive(Clone, Copy, Debug)]
pub struct Arrivals {
    pub start: Instant,
    pub length: Duration,
}

impl Arrivals {
    fn at(&self, index: usize, count: usize) -> Instant {
        if self.length.is_zero() || count == 0 {
            return self.start;
        }
        self.start + self.length.mul_f64((index + 1) as f64 / count as f64)
    }
}

impl Recorder {
    pub fn new(window: Window, sample_capacity: usize, seed: u64) -> Recorder {
        Recorder {
            window,
            by_kind: (0..Kind::COUNT).map(|_| latency_histogram(3)).collect(),
            commands: latency_histogram(3),
            counts: [KindCounts::default(); Kind::COUNT],
            offered_commands: 0,
            offered_queries: 0,
            rejected_by_status: BTreeMap::new(),
            request_errors: BTreeMap::new(),
            per_second: Vec::new(),
            sample: Reservoir::new(sample_capacity, seed),
            not_applied: 0,
        }
    }

    /// A request is sent (closed loop) or due (open loop) at `at`.
    pub fn offered(&mut self, live: &Live, at: Instant, commands: usize, queries: usize) {
        if self.window.measured(at) {
            self.offered_commands += commands as u64;
            self.offered_queries += queries as u64;
        }
        if let Some(slot) = live.slot(at) {
            slot.offered
                .fetch_add((commands + queries) as u64, Ordering::Relaxed);
        }
    }

    fn latency_second(&mut self, arrival: Instant, latency: Duration, count: u64) {
        let second = self.window.second(arrival);
        if second >= self.per_second.len() {
            if second > 24 * 3_600 + DRAIN_SECONDS_MAX as usize {
                return;
            }
            self.per_second.resize_with(second + 1, || None);
        }
        let histogram = self.per_second[second].get_or_insert_with(|| latency_histogram(2));
        record(histogram, latency, count);
    }

    fn live_latency(live: &Live, done: Instant, latency: Duration, count: u64) {
        if let Some(slot) = live.slot(done) {
            let micros = latency.as_micros() as u64;
            slot.latency_us_sum
                .fetch_add(micros.saturating_mul(count), Ordering::Relaxed);
            slot.latency_count.fetch_add(count, Ordering::Relaxed);
            slot.latency_us_max.fetch_max(micros, Ordering::Relaxed);
        }
    }

    /// The results of a batch's commands came back at `done`.
    pub fn commands_done(
        &mut self,
        live: &Live,
        batch_first_id: u128,
        kinds: &[Kind],
        results: &[CommandResult],
        arrivals: Arrivals,
        done: Instant,
    ) {
        let count = results.len().min(kinds.len());
        let ordinal = live.acknowledged.fetch_add(count as u64, Ordering::Relaxed);
        let measured = self.window.measured(done);
        let mut rejected = 0u64;
        for (index, (result, &kind)) in results.iter().zip(kinds).enumerate() {
            let status = result.status;
            let id = batch_first_id + index as u128;
            if not_applied(status) {
                self.not_applied += 1;
            } else {
                self.sample.offer(Acknowledged {
                    id,
                    status,
                    ordinal: ordinal + index as u64,
                });
            }
            if !status.is_ok() {
                rejected += 1;
            }
            if measured {
                let counts = &mut self.counts[kind.index()];
                counts.committed += 1;
                if status.is_ok() {
                    counts.ok += 1;
                } else {
                    counts.rejected += 1;
                    *self.rejected_by_status.entry(status.name()).or_insert(0) += 1;
                }
            }
        }
        if let Some(slot) = live.slot(done) {
            slot.committed.fetch_add(count as u64, Ordering::Relaxed);
            slot.rejected.fetch_add(rejected, Ordering::Relaxed);
        }
        self.latencies(live, kinds.iter().copied(), count, arrivals, done, true);
    }

    /// The replies of a batch's queries (or one history page) came back at
    /// `done`: one kind per query, and the status of each refused one.
    pub fn queries_done(
        &mut self,
        live: &Live,
        kinds: &[Kind],
        refused: &[Option<Status>],
        arrivals: Arrivals,
        done: Instant,
    ) {
        let count = kinds.len();
        if self.window.measured(done) {
            for (&kind, refusal) in kinds.iter().zip(refused) {
                let counts = &mut self.counts[kind.index()];
                counts.committed += 1;
                match refusal {
                    None => counts.ok += 1,
                    Some(status) => {
                        counts.rejected += 1;
                        *self.rejected_by_status.entry(status.name()).or_insert(0) += 1;
                    }
                }
            }
        }
        if let Some(slot) = live.slot(done) {
            slot.queries.fetch_add(count as u64, Ordering::Relaxed);
        }
        self.latencies(live, kinds.iter().copied(), count, arrivals, done, false);
    }

    fn latencies(
        &mut self,
        live: &Live,
        kinds: impl Iterator<Item = Kind>,
        count: usize,
        arrivals: Arrivals,
        done: Instant,
        commands: bool,
    ) {
        if count == 0 {
            return;
        }
        if arrivals.length.is_zero() {
            // Closed loop: one latency for the whole request.
            let latency = done.saturating_duration_since(arrivals.start);
            if arrivals.start >= self.window.warm_end {
                let mut per_kind = [0u64; Kind::COUNT];
                for kind in kinds.take(count) {
                    per_kind[kind.index()] += 1;
                }
                for (index, &n) in per_kind.iter().enumerate() {
                    if n > 0 {
                        record(&mut self.by_kind[index], latency, n);
                    }
                }
                if commands {
                    record(&mut self.commands, latency, count as u64);
                }
            }
            self.latency_second(arrivals.start, latency, count as u64);
            Self::live_latency(live, done, latency, count as u64);
            return;
        }
        // Open loop: each item from its own planned arrival.
        let mut latency_max = Duration::ZERO;
        let mut latency_sum = Duration::ZERO;
        for (index, kind) in kinds.take(count).enumerate() {
            let arrival = arrivals.at(index, count);
            let latency = done.saturating_duration_since(arrival);
            latency_max = latency_max.max(latency);
            latency_sum += latency;
            if arrival >= self.window.warm_end {
                record(&mut self.by_kind[kind.index()], latency, 1);
                if commands {
                    record(&mut self.commands, latency, 1);
                }
            }
            self.latency_second(arrival, latency, 1);
        }
        if let Some(slot) = live.slot(done) {
            slot.latency_us_sum
                .fetch_add(latency_sum.as_micros() as u64, Ordering::Relaxed);
            slot.latency_count
                .fetch_add(count as u64, Ordering::Relaxed);
            slot.latency_us_max
                .fetch_max(latency_max.as_micros() as u64, Ordering::Relaxed);
        }
    }

    /// A whole request failed: its commands or queries have no result.
    pub fn request_failed(&mut self, live: &Live, error: &ClientError, items: usize, at: Instant) {
        *self.request_errors.entry(error_name(error)).or_insert(0) += items as u64;
        if let Some(slot) = live.slot(at) {
            slot.request_errors
                .fetch_add(items as u64, Ordering::Relaxed);
        }
    }

    /// Adds another worker's figures to these.
    pub fn merge(&mut self, other: Recorder) {
        for (mine, theirs) in self.by_kind.iter_mut().zip(&other.by_kind) {
            let _ = mine.add(theirs);
        }
        let _ = self.commands.add(&other.commands);
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts) {
            mine.committed += theirs.committed;
            mine.ok += theirs.ok;
            mine.rejected += theirs.rejected;
        }
        self.offered_commands += other.offered_commands;
        self.offered_queries += other.offered_queries;
        for (name, count) in other.rejected_by_status {
            *self.rejected_by_status.entry(name).or_insert(0) += count;
        }
        for (name, count) in other.request_errors {
            *self.request_errors.entry(name).or_insert(0) += count;
        }
        if other.per_second.len() > self.per_second.len() {
            self.per_second.resize_with(other.per_second.len(), || None);
        }
        for (mine, theirs) in self.per_second.iter_mut().zip(other.per_second) {
            match (mine.as_mut(), theirs) {
                (Some(mine), Some(theirs)) => {
                    let _ = mine.add(&theirs);
                }
                (None, Some(theirs)) => *mine = Some(theirs),
                _ => {}
            }
        }
        self.not_applied += other.not_applied;
        self.sample.seen += other.sample.seen;
        self.sample.items.extend(other.sample.items);
    }
}

/// A stable snake_case name for a failed request.
pub fn error_name(error: &ClientError) -> String {
    match error {
        ClientError::Server { code, .. } => format!("server_{}", snake_case(code.name())),
        ClientError::Timeout { .. } => "timeout".into(),
        ClientError::ConnectionLost { .. } => "connection_lost".into(),
        ClientError::Connect { .. } => "connect_failed".into(),
        ClientError::ConnectionRefused { code, .. } => {
            format!("connection_refused_{}", snake_case(code.name()))
        }
        ClientError::BatchTooLarge { .. } => "batch_too_large".into(),
        ClientError::Protocol { .. } => "protocol".into(),
        _ => "other".into(),
    }
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Percentiles {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

impl Percentiles {
    pub fn of(histogram: &Histogram<u64>) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: histogram.len(),
            p50: histogram.value_at_quantile(0.50),
            p90: histogram.value_at_quantile(0.90),
            p99: histogram.value_at_quantile(0.99),
            p999: histogram.value_at_quantile(0.999),
            max: histogram.max(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservoir_keeps_a_bounded_uniform_sample() {
        let mut reservoir = Reservoir::new(1_000, 3);
        for id in 0..100_000u128 {
            reservoir.offer(Acknowledged {
                id,
                status: Status::Ok,
                ordinal: id as u64,
            });
        }
        assert_eq!(reservoir.items.len(), 1_000);
        assert_eq!(reservoir.seen(), 100_000);
        let late = reservoir
            .items
            .iter()
            .filter(|item| item.id >= 50_000)
            .count();
        assert!((400..600).contains(&late), "{late}");
    }

    #[test]
    fn the_longest_gap_between_replies_in_the_window_is_the_stall() {
        let start = Instant::now();
        let window = Window {
            start,
            warm_end: start + Duration::from_secs(1),
            end: start + Duration::from_secs(10),
        };
        let live = Live::new(window);
        let at = |ms: u64| start + Duration::from_millis(ms);
        // In the warm-up: not counted, and the window's gaps count from its end.
        live.replied(at(500));
        live.replied(at(1_100));
        live.replied(at(1_200));
        live.replied(at(3_700));
        live.replied(at(3_600)); // late, out of order: no gap
        live.replied(at(3_800));
        assert_eq!(
            live.longest_stall(),
            (Duration::from_millis(2_500), Duration::from_millis(200))
        );
    }

    #[test]
    fn commands_not_applied_are_counted_and_not_looked_up() {
        let start = Instant::now();
        let window = Window {
            start,
            warm_end: start,
            end: start + Duration::from_secs(10),
        };
        let live = Live::new(window);
        let mut recorder = Recorder::new(window, 100, 1);
        let results = [
            CommandResult::OK,
            CommandResult::new(Status::StorageFailed),
            CommandResult::new(Status::Unavailable),
            CommandResult::new(Status::InsufficientFunds),
        ];
        recorder.commands_done(
            &live,
            1_000,
            &[Kind::Transfer; 4],
            &results,
            Arrivals {
                start,
                length: Duration::ZERO,
            },
            start + Duration::from_millis(5),
        );
        assert_eq!(recorder.not_applied, 2);
        let sampled: Vec<u128> = recorder.sample.items.iter().map(|item| item.id).collect();
        assert_eq!(sampled, vec![1_000, 1_003]);
        assert_eq!(recorder.counts[Kind::Transfer.index()].rejected, 3);
    }

    #[test]
    fn histograms_clamp_and_report() {
        let mut histogram = latency_histogram(3);
        record(&mut histogram, Duration::from_micros(100), 90);
        record(&mut histogram, Duration::from_millis(5), 10);
        record(&mut histogram, Duration::from_secs(100_000), 1);
        let percentiles = Percentiles::of(&histogram);
        assert_eq!(percentiles.count, 101);
        assert!((99..=101).contains(&percentiles.p50), "{percentiles:?}");
        assert!(
            (4_990..=5_010).contains(&percentiles.p99),
            "{percentiles:?}"
        );
        assert!(percentiles.max >= LATENCY_US_MAX - LATENCY_US_MAX / 1_000);
    }
}
