//! payrail criterion benchmarks live in `benches/`; what several share is here.

pub mod lone;
pub mod payment_mix;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use payrail_engine::pipeline::EngineHandle;
use payrail_engine::Command;

/// Submits the prepared batches to a running engine with at most `window`
/// in flight, and returns the time until the last one's results are back
/// (durable and applied).
pub fn submit_windowed(
    engine: &EngineHandle,
    prepared: Vec<Vec<Command>>,
    window: usize,
) -> Duration {
    submit_windowed_counting(engine, prepared, window, &Arc::new(AtomicU64::new(0)))
}

/// [`submit_windowed`], adding the results that were not `ok` to `refused`.
pub fn submit_windowed_counting(
    engine: &EngineHandle,
    prepared: Vec<Vec<Command>>,
    window: usize,
    refused: &Arc<AtomicU64>,
) -> Duration {
    let inflight = Arc::new((Mutex::new(0usize), Condvar::new()));
    let started = Instant::now();
    for batch in prepared {
        {
            let (count, wake) = &*inflight;
            let mut count = count
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            while *count >= window {
                count = wake
                    .wait(count)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            *count += 1;
        }
        let done = Arc::clone(&inflight);
        let refused = Arc::clone(refused);
        let submitted = engine.submit(
            batch,
            Box::new(move |results| {
                let not_ok = results
                    .iter()
                    .filter(|result| result.status != payrail_engine::Status::Ok)
                    .count();
                refused.fetch_add(not_ok as u64, Ordering::Relaxed);
                let (count, wake) = &*done;
                *count
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) -= 1;
                wake.notify_one();
            }),
        );
        assert!(submitted.is_ok());
    }
    let (count, wake) = &*inflight;
    let mut count = count
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    while *count > 0 {
        count = wake
            .wait(count)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    }
    started.elapsed()
}
