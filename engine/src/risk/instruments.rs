//! What the instrument rules remember: per instrument, what was withdrawn to
//! it since its bind and today ([`InstrumentRisk`]); per customer, the times
//! of the newest binds ([`BindRing`]). Both are fixed-size and live with the
//! instruments (`ledger/instruments.rs`, the customer's shard); both change
//! only when a withdrawal hold to the instrument or a bind commits under a
//! policy with at least one rule on, like [`CustomerRiskState`](super::CustomerRiskState).
//!
//! Time is the command's timestamp: "since the bind" compares it with the
//! bind's timestamp, "today" is its UTC day ([`Day`]).

use bincode::{Decode, Encode};

use super::bounds::BINDS_REMEMBERED_MAX;
use super::calendar::Day;

/// Withdrawal holds made to one instrument and committed: their sum since the
/// bind, and their sum on `day`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Encode, Decode)]
pub struct InstrumentRisk {
    /// Minor units since the bind (saturating: `u64::MAX` is above every
    /// limit).
    pub withdrawn_total: u64,
    /// The UTC day of the newest withdrawal recorded.
    pub day: Day,
    /// Minor units withdrawn on `day`.
    pub day_total: u64,
}

impl InstrumentRisk {
    /// Whether nothing was ever recorded.
    pub fn is_empty(&self) -> bool {
        *self == InstrumentRisk::default()
    }

    /// Withdrawn today as of `day` (zero if the newest withdrawal was on
    /// another day).
    #[inline]
    pub fn day_total_on(&self, day: Day) -> u64 {
        if self.day == day {
            self.day_total
        } else {
            0
        }
    }

    /// Remembers a withdrawal hold that committed (timestamps never go back:
    /// the sequencer's guarantee).
    pub fn record(&mut self, amount: u64, timestamp: u64) {
        let day = Day::from_timestamp(timestamp);
        if self.day != day {
            self.day = day;
            self.day_total = 0;
        }
        self.day_total = self.day_total.saturating_add(amount);
        self.withdrawn_total = self.withdrawn_total.saturating_add(amount);
    }

    /// Canonical bytes: withdrawn_total u64, day u32, day_total u64, little-endian.
    pub fn digest_into(&self, hasher: &mut crate::digest::DigestHasher) {
        hasher.update(&self.withdrawn_total.to_le_bytes());
        hasher.update(&self.day.0.to_le_bytes());
        hasher.update(&self.day_total.to_le_bytes());
    }
}

/// What the rules see of the instrument a withdrawal names.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct InstrumentFacts {
    /// The bind's timestamp, ns.
    pub bound_at: u64,
    pub risk: InstrumentRisk,
}

/// The timestamps of a customer's newest binds (a ring of
/// [`BINDS_REMEMBERED_MAX`]).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Encode, Decode)]
pub struct BindRing {
    timestamps: [u64; BINDS_REMEMBERED_MAX],
    len: u8,
    next: u8,
}

impl BindRing {
    /// Binds remembered.
    pub fn len(&self) -> usize {
        usize::from(self.len).min(BINDS_REMEMBERED_MAX)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn record(&mut self, timestamp: u64) {
        let slot = usize::from(self.next) % BINDS_REMEMBERED_MAX;
        self.timestamps[slot] = timestamp;
        self.next = ((slot + 1) % BINDS_REMEMBERED_MAX) as u8;
        self.len = (self.len() + 1).min(BINDS_REMEMBERED_MAX) as u8;
    }

    /// Bind times, newest first.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        let next = usize::from(self.next) % BINDS_REMEMBERED_MAX;
        (0..self.len()).map(move |age| {
            self.timestamps[(next + BINDS_REMEMBERED_MAX - 1 - age) % BINDS_REMEMBERED_MAX]
        })
    }

    /// Binds at `now - t < window_ns` (the same half-open window as the
    /// velocity rule), newest first until one is outside.
    pub fn in_window(&self, now: u64, window_ns: u64) -> usize {
        self.iter()
            .take_while(|&at| now.saturating_sub(at) < window_ns)
            .count()
    }

    /// Canonical bytes: len u8, then each time u64 newest first.
    pub fn digest_into(&self, hasher: &mut crate::digest::DigestHasher) {
        hasher.update(&[self.len() as u8]);
        for at in self.iter() {
            hasher.update(&at.to_le_bytes());
        }
    }
}
