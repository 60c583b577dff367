//! The engine's intake: one bounded queue per gateway (a lane), taken in
//! turn by the sequencer.
//!
//! Fairness is decided here, before anything is logged: the sequencer takes
//! requests from the lanes by deficit round robin on commands, each lane's
//! quantum weighted by its share, and takes more only while the commands it
//! took earlier and that are not answered yet (logged, routed, executing)
//! stay below a budget. So a train of full batches from one gateway waits in
//! its own lane, and another gateway's single payment goes into the next
//! group commit behind at most one budget of work, not behind the whole
//! train.
//!
//! ```text
//! submitter threads ──push──▶ lane 0 ─┐
//!                   ──push──▶ lane 1 ─┼─ Scheduler::take (deficit round robin,
//!                   ──push──▶ lane 2 ─┘    within the room the budget leaves) ──▶ group commit
//! ```
//!
//! The lanes are lock-free bounded queues (crossbeam `ArrayQueue`); a push
//! unparks the sequencer. The budget is one counter: the sequencer adds what
//! it takes, each request's reply releases its commands once sent.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam::queue::ArrayQueue;
use crossbeam::sync::{Parker, Unparker};

use crate::limits::{LANES_MAX, LANE_QUANTUM_COMMANDS, LANE_SHARE_MAX};

/// Why a lane could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LaneError {
    #[error("the engine has as many lanes as it may ({LANES_MAX})")]
    TooManyLanes,
    #[error("a lane's share must be 1 to {LANE_SHARE_MAX}")]
    BadShare,
}

/// One gateway's queue.
pub(crate) struct Lane<T> {
    queue: ArrayQueue<T>,
    share: u32,
}

/// What the submitters and the sequencer share.
pub(crate) struct Intake<T> {
    /// Every lane opened, in opening order; the sequencer copies the new
    /// ones when `lanes_opened` moved.
    lanes: Mutex<Vec<Arc<Lane<T>>>>,
    lanes_opened: AtomicUsize,
    wake: Unparker,
    /// Commands the sequencer took and that are not answered yet.
    in_flight_commands: AtomicU64,
    /// Set while the sequencer waits for `in_flight_commands` to go down.
    waiting_for_room: AtomicBool,
    /// No more requests are taken (the engine is stopping).
    closed: AtomicBool,
    /// 0: running; 1: stop; 2: stop after a final checkpoint.
    stop: AtomicU8,
}

/// How to push into one lane.
pub(crate) struct LaneHandle<T> {
    intake: Arc<Intake<T>>,
    lane: Arc<Lane<T>>,
}

impl<T> Clone for LaneHandle<T> {
    fn clone(&self) -> Self {
        LaneHandle {
            intake: Arc::clone(&self.intake),
            lane: Arc::clone(&self.lane),
        }
    }
}

/// Why a push was refused; the request comes back.
pub(crate) enum PushError<T> {
    Full(T),
    Closed(T),
}

impl<T> Intake<T> {
    /// An intake with no lane yet, and the parker the sequencer waits on.
    pub(crate) fn new() -> (Arc<Intake<T>>, Parker) {
        let parker = Parker::new();
        let intake = Arc::new(Intake {
            lanes: Mutex::new(Vec::new()),
            lanes_opened: AtomicUsize::new(0),
            wake: parker.unparker().clone(),
            in_flight_commands: AtomicU64::new(0),
            waiting_for_room: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            stop: AtomicU8::new(0),
        });
        (intake, parker)
    }

    /// Opens a lane holding up to `requests_max` requests (at least 1),
    /// weighted by `share`.
    pub(crate) fn open_lane(
        self: &Arc<Self>,
        share: u32,
        requests_max: usize,
    ) -> Result<LaneHandle<T>, LaneError> {
        if share == 0 || share > LANE_SHARE_MAX {
            return Err(LaneError::BadShare);
        }
        let mut lanes = self
            .lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if lanes.len() >= LANES_MAX {
            return Err(LaneError::TooManyLanes);
        }
        let lane = Arc::new(Lane {
            queue: ArrayQueue::new(requests_max.max(1)),
            share,
        });
        lanes.push(Arc::clone(&lane));
        self.lanes_opened.store(lanes.len(), Ordering::Release);
        drop(lanes);
        self.wake.unpark();
        Ok(LaneHandle {
            intake: Arc::clone(self),
            lane,
        })
    }

    /// Gives back `commands` of the budget (a reply was sent) and wakes the
    /// sequencer if it waits for room.
    pub(crate) fn release(&self, commands: u64) {
        let before = self
            .in_flight_commands
            .fetch_sub(commands, Ordering::SeqCst);
        debug_assert!(before >= commands, "released more than was taken");
        if self.waiting_for_room.load(Ordering::SeqCst) {
            self.wake.unpark();
        }
    }

    /// Commands taken and not answered yet.
    pub(crate) fn in_flight_commands(&self) -> u64 {
        self.in_flight_commands.load(Ordering::SeqCst)
    }

    /// The sequencer took `commands` more.
    pub(crate) fn take_budget(&self, commands: u64) {
        self.in_flight_commands
            .fetch_add(commands, Ordering::SeqCst);
    }

    /// Refuses new requests and asks the sequencer to stop once it took
    /// every request already queued.
    pub(crate) fn request_stop(&self, checkpoint: bool) {
        self.closed.store(true, Ordering::SeqCst);
        self.stop
            .store(if checkpoint { 2 } else { 1 }, Ordering::SeqCst);
        self.wake.unpark();
    }

    /// `None` while running; `Some(checkpoint)` once asked to stop.
    pub(crate) fn stop_requested(&self) -> Option<bool> {
        match self.stop.load(Ordering::SeqCst) {
            0 => None,
            value => Some(value == 2),
        }
    }

    /// Waits (the sequencer) until a request arrives, room is released while
    /// `waiting_for_room`, or `timeout` passes. `room_now` is checked after
    /// the flag is set, so a release between the caller's check and the
    /// park is not missed.
    pub(crate) fn wait(
        &self,
        parker: &Parker,
        waiting_for_room: bool,
        room_now: impl Fn() -> bool,
        timeout: Duration,
    ) {
        if waiting_for_room {
            self.waiting_for_room.store(true, Ordering::SeqCst);
            if !room_now() {
                parker.park_timeout(timeout);
            }
            self.waiting_for_room.store(false, Ordering::SeqCst);
        } else {
            parker.park_timeout(timeout);
        }
    }
}

impl<T> LaneHandle<T> {
    /// Queues `request` in this lane and wakes the sequencer.
    pub(crate) fn push(&self, request: T) -> Result<(), PushError<T>> {
        if self.intake.closed.load(Ordering::Relaxed) {
            return Err(PushError::Closed(request));
        }
        self.lane.queue.push(request).map_err(PushError::Full)?;
        self.intake.wake.unpark();
        Ok(())
    }

    /// The intake this lane belongs to.
    pub(crate) fn intake(&self) -> &Arc<Intake<T>> {
        &self.intake
    }

    /// Opens another lane on the same intake.
    pub(crate) fn open_lane(
        &self,
        share: u32,
        requests_max: usize,
    ) -> Result<LaneHandle<T>, LaneError> {
        self.intake.open_lane(share, requests_max)
    }
}

/// The sequencer's view of the lanes: whose turn it is and how many
/// commands each lane may still send in its turn.
pub(crate) struct Scheduler<T> {
    lanes: Vec<LaneState<T>>,
    /// The lane whose turn it is.
    cursor: usize,
    /// Whether the lane at `cursor` got its quantum for this turn.
    granted: bool,
}

struct LaneState<T> {
    lane: Arc<Lane<T>>,
    /// A request taken off the queue that did not fit in the lane's deficit
    /// or in the room left: the next to go from this lane.
    head: Option<T>,
    deficit: u64,
    quantum: u64,
}

impl<T> Default for Scheduler<T> {
    fn default() -> Self {
        Scheduler {
            lanes: Vec::new(),
            cursor: 0,
            granted: false,
        }
    }
}

impl<T> Scheduler<T> {
    /// Picks up the lanes opened since the last call.
    pub(crate) fn refresh(&mut self, intake: &Intake<T>) {
        if intake.lanes_opened.load(Ordering::Acquire) == self.lanes.len() {
            return;
        }
        let lanes = intake
            .lanes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for lane in &lanes[self.lanes.len()..] {
            self.lanes.push(LaneState {
                lane: Arc::clone(lane),
                head: None,
                deficit: 0,
                quantum: u64::from(lane.share) * LANE_QUANTUM_COMMANDS,
            });
        }
    }

    /// Requests waiting in every lane.
    pub(crate) fn queued(&self) -> usize {
        self.lanes
            .iter()
            .map(|state| state.lane.queue.len() + usize::from(state.head.is_some()))
            .sum()
    }

    /// Takes requests into `group` in deficit-round-robin order, each
    /// costing `cost` commands, while fewer than `room` commands were taken
    /// (the last one taken may go past it) and fewer than `requests_max`
    /// requests; stops early once every lane is empty. Returns the commands
    /// taken.
    pub(crate) fn take(
        &mut self,
        room: u64,
        requests_max: usize,
        cost: impl Fn(&T) -> u64,
        group: &mut Vec<T>,
    ) -> u64 {
        let lanes = self.lanes.len();
        let mut taken_commands = 0u64;
        let mut taken_requests = 0usize;
        // Lanes found empty in a row: all of them means nothing is queued.
        let mut empty_in_a_row = 0usize;
        while lanes > 0 && taken_commands < room && taken_requests < requests_max {
            debug_assert!(self.cursor < lanes);
            let state = &mut self.lanes[self.cursor];
            if state.head.is_none() {
                state.head = state.lane.queue.pop();
            }
            let Some(head) = &state.head else {
                // An idle lane keeps no credit (deficit round robin).
                state.deficit = 0;
                empty_in_a_row += 1;
                if empty_in_a_row >= lanes {
                    break;
                }
                self.advance();
                continue;
            };
            empty_in_a_row = 0;
            if !self.granted {
                state.deficit = state.deficit.saturating_add(state.quantum);
                self.granted = true;
            }
            let commands = cost(head);
            if commands > state.deficit {
                self.advance();
                continue;
            }
            state.deficit -= commands;
            if let Some(request) = state.head.take() {
                group.push(request);
            }
            taken_commands = taken_commands.saturating_add(commands);
            taken_requests += 1;
        }
        taken_commands
    }

    fn advance(&mut self) {
        self.cursor = (self.cursor + 1) % self.lanes.len();
        self.granted = false;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// A request of `commands` commands from lane `lane`.
    type Item = (usize, u64);

    fn setup(shares: &[u32], depth: usize) -> (Scheduler<Item>, Vec<LaneHandle<Item>>) {
        let (intake, _parker) = Intake::new();
        let handles: Vec<_> = shares
            .iter()
            .map(|&share| intake.open_lane(share, depth).unwrap())
            .collect();
        let mut scheduler = Scheduler::default();
        scheduler.refresh(&intake);
        (scheduler, handles)
    }

    fn push(handle: &LaneHandle<Item>, lane: usize, commands: u64, times: usize) {
        for _ in 0..times {
            assert!(handle.push((lane, commands)).is_ok());
        }
    }

    /// Commands taken per lane.
    fn per_lane(group: &[Item], lanes: usize) -> Vec<u64> {
        let mut sums = vec![0; lanes];
        for &(lane, commands) in group {
            sums[lane] += commands;
        }
        sums
    }

    #[test]
    fn a_single_request_goes_before_a_train_of_full_batches() {
        let (mut scheduler, lanes) = setup(&[1, 1], 1_000);
        push(&lanes[0], 0, 8_190, 500);
        push(&lanes[1], 1, 1, 1);
        let mut group = Vec::new();
        // Room for about two full batches: lane 1's payment is among them.
        scheduler.take(16_000, usize::MAX, |item| item.1, &mut group);
        assert!(group.len() <= 3, "{}", group.len());
        assert!(group.contains(&(1, 1)), "{group:?}");
    }

    #[test]
    fn busy_lanes_share_commands_by_their_shares() {
        let (mut scheduler, lanes) = setup(&[1, 3], 100_000);
        push(&lanes[0], 0, 256, 20_000);
        push(&lanes[1], 1, 100, 50_000);
        let mut group = Vec::new();
        for _ in 0..50 {
            scheduler.take(20_000, usize::MAX, |item| item.1, &mut group);
        }
        let sums = per_lane(&group, 2);
        let ratio = sums[1] as f64 / sums[0] as f64;
        assert!((2.9..3.1).contains(&ratio), "{sums:?}");
    }

    #[test]
    fn an_idle_lane_keeps_no_credit_and_a_lone_lane_takes_everything() {
        let (mut scheduler, lanes) = setup(&[1, 1], 100);
        push(&lanes[0], 0, 10, 50);
        let mut group = Vec::new();
        let taken = scheduler.take(u64::MAX, usize::MAX, |item| item.1, &mut group);
        assert_eq!((taken, group.len()), (500, 50));
        assert_eq!(scheduler.queued(), 0);
        // Nothing queued: returns at once with nothing.
        assert_eq!(
            scheduler.take(u64::MAX, usize::MAX, |item| item.1, &mut group),
            0
        );
    }

    #[test]
    fn room_and_request_count_bound_a_take() {
        let (mut scheduler, lanes) = setup(&[1], 100);
        push(&lanes[0], 0, 100, 100);
        let mut group = Vec::new();
        // Takes while below the room: the last one may go past it.
        assert_eq!(
            scheduler.take(250, usize::MAX, |item| item.1, &mut group),
            300
        );
        group.clear();
        assert_eq!(scheduler.take(u64::MAX, 5, |item| item.1, &mut group), 500);
        assert_eq!(scheduler.take(0, 5, |item| item.1, &mut group), 0);
        assert_eq!(scheduler.queued(), 92);
    }

    #[test]
    fn a_request_larger_than_the_quantum_goes_after_enough_turns() {
        let (mut scheduler, lanes) = setup(&[1, 1], 100);
        push(&lanes[0], 0, 5 * LANE_QUANTUM_COMMANDS, 1);
        push(&lanes[1], 1, 1, 3);
        let mut group = Vec::new();
        scheduler.take(u64::MAX, usize::MAX, |item| item.1, &mut group);
        assert_eq!(per_lane(&group, 2), vec![5 * LANE_QUANTUM_COMMANDS, 3]);
    }

    #[test]
    fn a_full_lane_refuses_and_a_closed_intake_refuses_everything() {
        let (intake, _parker) = Intake::<Item>::new();
        let lane = intake.open_lane(1, 2).unwrap();
        assert!(lane.push((0, 1)).is_ok());
        assert!(lane.push((0, 1)).is_ok());
        assert!(matches!(lane.push((0, 1)), Err(PushError::Full(_))));
        let other = intake.open_lane(1, 2).unwrap();
        intake.request_stop(false);
        assert!(matches!(other.push((1, 1)), Err(PushError::Closed(_))));
        assert_eq!(intake.stop_requested(), Some(false));
        assert!(matches!(intake.open_lane(0, 1), Err(LaneError::BadShare)));
    }

    #[test]
    fn lanes_are_bounded() {
        let (intake, _parker) = Intake::<Item>::new();
        for _ in 0..LANES_MAX {
            intake.open_lane(1, 1).unwrap();
        }
        assert!(matches!(
            intake.open_lane(1, 1),
            Err(LaneError::TooManyLanes)
        ));
    }
}
