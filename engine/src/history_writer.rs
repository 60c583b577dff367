//! The history writer thread: takes each applied batch's movements from the
//! executor and writes them, with the watermark, to the storage's history.
//!
//! Each shard collects the movements of the commands (or halves) it applies
//! and hands them to the router with the segment's results, one compact
//! [`MovementChunk`] per segment; when every segment of a batch is in, the
//! router (the executor thread) passes those chunks on, untouched, to this
//! thread, which builds each [`Movement`] as it writes. So the watermark
//! the writer records is the lowest sequence every shard has handed over.
//!
//! The executor never waits on the disk for history: it hands the
//! movements over a bounded channel ([`HISTORY_QUEUE_JOBS`] jobs of about
//! [`HISTORY_JOB_MOVEMENTS_MIN`] movements or 50 ms' worth: about 150 MB
//! at most). Gathering batches into jobs means one wake-up of this thread
//! and one sequential `write` to the history store's active segment per
//! job under load, never one per batch (storage::segments). When the
//! writer falls that far behind, the executor's send blocks (backpressure)
//! rather than dropping movements: history stays complete, and the durable
//! command rate is then the history writer's rate (docs/benchmarks.md).
//! Whatever was queued at a crash is rebuilt from the log at recovery, past
//! the watermark (docs/persistence.md).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, TryRecvError};

use crate::history::{Movement, MovementChunk};
use crate::pipeline::EngineStats;
use crate::storage::Storage;

/// Jobs waiting for the history writer before the executor waits.
pub const HISTORY_QUEUE_JOBS: usize = 16;
/// The executor gathers batches into one job until it holds this many
/// movements (or a few milliseconds passed), so that under load the writer
/// appends a few dozen times a second. A job can exceed it by one batch's
/// movements.
pub const HISTORY_JOB_MOVEMENTS_MIN: usize = 65_536;
/// Most movements in one history write (the writer drains what is queued
/// up to this, then writes once).
pub const HISTORY_WRITE_MOVEMENTS_MAX: usize = 131_072;

/// What the executor sends, in log order.
pub(crate) enum HistoryJob {
    /// The movements of the batches up to this sequence number not sent
    /// before (maybe none), as the shards handed them over.
    Batch {
        sequence: u64,
        chunks: Vec<MovementChunk>,
    },
    /// A checkpoint marker: no movements, but the watermark moves past it.
    Mark { sequence: u64 },
}

impl HistoryJob {
    fn sequence(&self) -> u64 {
        match self {
            HistoryJob::Batch { sequence, .. } | HistoryJob::Mark { sequence } => *sequence,
        }
    }
}

pub(crate) struct HistoryWriter<S: Storage> {
    pub storage: S,
    pub jobs: Receiver<HistoryJob>,
    pub stats: Arc<EngineStats>,
}

impl<S: Storage> HistoryWriter<S> {
    pub fn run(mut self) {
        no_wakeup_preemption();
        // The shards' chunks of the jobs drained, as they came, and (with
        // more than one shard) the movements built from them to be sorted.
        let mut parts: Vec<MovementChunk> = Vec::new();
        let mut built: Vec<Movement> = Vec::new();
        while let Ok(first) = self.jobs.recv() {
            let mut watermark = first.sequence();
            let mut movements = 0;
            parts.clear();
            movements += take_parts(first, &mut parts);
            while movements < HISTORY_WRITE_MOVEMENTS_MAX {
                match self.jobs.try_recv() {
                    Ok(job) => {
                        watermark = job.sequence();
                        movements += take_parts(job, &mut parts);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            let started = Instant::now();
            // The log's order (a command's legs together, as the command
            // index wants them), whatever shard each came from. Each
            // shard's chunk is in that order already, so with one shard
            // (or halves only on one) the chunks are appended as they are,
            // each movement built only as it is encoded; otherwise they are
            // built and sorted here.
            let written = if chunks_in_order(&parts) {
                self.storage.write_history_chunks(&parts, watermark)
            } else {
                built.clear();
                built.reserve(movements);
                for part in &parts {
                    built.extend(part.iter());
                }
                built.sort_unstable_by_key(Movement::order_key);
                self.storage.write_history(&built, watermark)
            };
            match written {
                Ok(()) => {
                    self.stats
                        .history_movements
                        .fetch_add(movements as u64, Ordering::Relaxed);
                    self.stats
                        .history_watermark
                        .store(watermark, Ordering::Release);
                    metrics::histogram!("payrail_history_write_seconds")
                        .record(started.elapsed().as_secs_f64());
                }
                Err(error) => {
                    // The watermark stays: checkpoints wait for it, so the
                    // log is kept and the next start rebuilds from it.
                    if !self.stats.history_failed.swap(true, Ordering::Relaxed) {
                        tracing::error!(%error, "history write failed: history stops here until a restart rebuilds it from the log");
                    }
                }
            }
        }
    }
}

/// Makes the calling thread (the writer) `SCHED_BATCH` on Linux (a no-op
/// elsewhere): it keeps its fair share of the CPU, but a wake-up never
/// preempts the running thread. Without it, each job the router hands over
/// woke the writer on the router's own core (the kernel places a wakee
/// near its waker) and took that core from the router for the length of
/// an append (1-3 ms per write under load): 0.3-0.4 ms of the router's
/// time per job (docs/benchmarks.md, "History on vs off: where the rest
/// went"). A failure only costs that: logged, not fatal.
fn no_wakeup_preemption() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // Safety: sched_setscheduler with pid 0 changes only the calling
        // thread's policy (Linux keeps it per thread); it reads `param`,
        // which lives across the call, and writes no memory of ours.
        #[allow(unsafe_code)]
        let result = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
        if result != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "could not make the history writer SCHED_BATCH"
            );
        }
    }
}

/// Whether `chunks` are in log order one after the other: each in order,
/// and each ends before the next begins.
fn chunks_in_order(chunks: &[MovementChunk]) -> bool {
    let mut last = None;
    for chunk in chunks.iter().filter(|chunk| !chunk.is_empty()) {
        let Some((first, end)) = chunk.ordered_range() else {
            return false;
        };
        if last.is_some_and(|last| last >= first) {
            return false;
        }
        last = Some(end);
    }
    true
}

/// Moves a job's non-empty chunks to `parts`; returns their movements.
fn take_parts(job: HistoryJob, parts: &mut Vec<MovementChunk>) -> usize {
    let mut movements = 0;
    if let HistoryJob::Batch { chunks, .. } = job {
        for chunk in chunks.into_iter().filter(|chunk| !chunk.is_empty()) {
            movements += chunk.len();
            parts.push(chunk);
        }
    }
    movements
}

/// Waits until the history writer has covered `sequence`, at most
/// `timeout`. False if it did not (it failed, or is far behind).
pub(crate) fn wait_for_history(stats: &EngineStats, sequence: u64, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if stats.history_watermark.load(Ordering::Acquire) >= sequence {
            return true;
        }
        if stats.history_failed.load(Ordering::Relaxed) || Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
