//! payrail criterion benchmarks live in `benches/`.

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
        let submitted = engine.submit(
            batch,
            Box::new(move |_results| {
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
