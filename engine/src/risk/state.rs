//! What the risk rules remember about one customer: fixed-size arrays only,
//! so the state's size is the same after one payment or a million.
//!
//! | part | bound | kept for |
//! | --- | --- | --- |
//! | recent payments (timestamp, amount, currency) | [`RECENT_PAYMENTS_MAX`] newest, ring | velocity, amount anomaly |
//! | outflow buckets (currency, day + total, month + total) | [`OUTFLOW_CURRENCIES_MAX`] currencies | daily and monthly limits |
//! | devices | [`DEVICES_MAX`], least recently used forgotten first | new device |
//! | last location and its timestamp | one | impossible travel |
//!
//! The state changes only through [`CustomerRiskState::record`], called when a
//! payment commits; evaluation reads it.

use bincode::{Decode, Encode};

use super::bounds::{DEVICES_MAX, OUTFLOW_CURRENCIES_MAX, RECENT_PAYMENTS_MAX};

const _: () = assert!(
    RECENT_PAYMENTS_MAX.is_power_of_two(),
    "the ring is indexed with a mask"
);
use super::calendar::{Day, Month};
use super::geo::GeoPoint;
use super::PaymentContext;
use crate::currency::Currency;

/// Outflow of one currency today and this month (UTC), as of the last
/// payment recorded in it. A bucket whose day (month) is not the current one
/// counts as zero for the day (month).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Encode, Decode)]
pub struct OutflowBucket {
    /// None: a free slot.
    pub currency: Option<Currency>,
    pub day: Day,
    pub day_total: u64,
    pub month: Month,
    pub month_total: u64,
}

impl OutflowBucket {
    /// Today's outflow as of `day` (zero if the bucket is from another day).
    #[inline]
    pub fn day_total_on(&self, day: Day) -> u64 {
        if self.day == day {
            self.day_total
        } else {
            0
        }
    }

    /// This month's outflow as of `day`, computing the month only when the
    /// day differs (the calendar conversion is the costly part).
    #[inline]
    pub fn month_total_on(&self, day: Day) -> u64 {
        if self.day == day || self.month == day.month() {
            self.month_total
        } else {
            0
        }
    }
}

/// Location of the last committed payment that had one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct LastLocation {
    pub point: GeoPoint,
    pub timestamp: u64,
}

/// A customer's risk state. See the module documentation.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct CustomerRiskState {
    // Ring of recent committed payments, split by field to keep it dense.
    recent_timestamps: [u64; RECENT_PAYMENTS_MAX],
    recent_amounts: [u64; RECENT_PAYMENTS_MAX],
    recent_currencies: [u16; RECENT_PAYMENTS_MAX],
    /// Payments in the ring (saturates at RECENT_PAYMENTS_MAX).
    recent_len: u8,
    /// Slot the next payment goes to.
    recent_next: u8,
    outflow: [OutflowBucket; OUTFLOW_CURRENCIES_MAX],
    /// Most recently used first.
    devices: [u64; DEVICES_MAX],
    devices_len: u8,
    last_location: Option<LastLocation>,
}

impl Default for CustomerRiskState {
    fn default() -> Self {
        CustomerRiskState {
            recent_timestamps: [0; RECENT_PAYMENTS_MAX],
            recent_amounts: [0; RECENT_PAYMENTS_MAX],
            recent_currencies: [0; RECENT_PAYMENTS_MAX],
            recent_len: 0,
            recent_next: 0,
            outflow: [OutflowBucket::default(); OUTFLOW_CURRENCIES_MAX],
            devices: [0; DEVICES_MAX],
            devices_len: 0,
            last_location: None,
        }
    }
}

/// One remembered payment.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RecentPayment {
    pub timestamp: u64,
    pub amount: u64,
    pub currency: Currency,
}

impl CustomerRiskState {
    pub fn new() -> CustomerRiskState {
        CustomerRiskState::default()
    }

    /// Whether nothing was ever recorded.
    pub fn is_empty(&self) -> bool {
        *self == CustomerRiskState::default()
    }

    /// Remembers a payment that committed. Call it exactly once per committed
    /// outflow, after `evaluate` allowed it (Approve or Flag), with
    /// non-decreasing timestamps (the sequencer's guarantee).
    pub fn record(&mut self, payment: &PaymentContext) {
        // 1. The ring of recent payments.
        let slot = usize::from(self.recent_next) % RECENT_PAYMENTS_MAX;
        self.recent_timestamps[slot] = payment.timestamp;
        self.recent_amounts[slot] = payment.amount;
        self.recent_currencies[slot] = payment.currency.numeric();
        self.recent_next = ((slot + 1) % RECENT_PAYMENTS_MAX) as u8;
        self.recent_len = (usize::from(self.recent_len) + 1).min(RECENT_PAYMENTS_MAX) as u8;

        // 2. Outflow of the day and the month.
        let day = Day::from_timestamp(payment.timestamp);
        if let Some(index) = self.outflow_slot_for_record(payment.currency, day) {
            let bucket = &mut self.outflow[index];
            if bucket.currency != Some(payment.currency) {
                *bucket = OutflowBucket {
                    currency: Some(payment.currency),
                    day,
                    day_total: 0,
                    month: day.month(),
                    month_total: 0,
                };
            }
            if bucket.day != day {
                let month = day.month();
                if bucket.month != month {
                    bucket.month = month;
                    bucket.month_total = 0;
                }
                bucket.day = day;
                bucket.day_total = 0;
            }
            // Totals saturate: u64::MAX is above every limit.
            bucket.day_total = bucket.day_total.saturating_add(payment.amount);
            bucket.month_total = bucket.month_total.saturating_add(payment.amount);
        }

        // 3. Devices, most recently used first.
        if let Some(device) = payment.device {
            let len = self.devices_len();
            let position = self.devices[..len].iter().position(|&d| d == device);
            match position {
                Some(index) => self.devices[..=index].rotate_right(1),
                None => {
                    let kept = (len + 1).min(DEVICES_MAX);
                    self.devices[..kept].rotate_right(1);
                    self.devices_len = kept as u8;
                }
            }
            self.devices[0] = device;
        }

        // 4. Last location.
        if let Some(point) = payment.location {
            self.last_location = Some(LastLocation {
                point,
                timestamp: payment.timestamp,
            });
        }
    }

    /// Where `record` puts a payment in `currency`: its bucket, else a free
    /// slot, else the slot with the oldest month if that month is over
    /// (lowest index on ties). None: every slot holds outflow of another
    /// currency this month, and this payment's outflow is not tracked.
    fn outflow_slot_for_record(&self, currency: Currency, day: Day) -> Option<usize> {
        if let Some(index) = self.outflow_index(currency) {
            return Some(index);
        }
        if let Some(index) = self.outflow.iter().position(|b| b.currency.is_none()) {
            return Some(index);
        }
        let month = day.month();
        let (index, oldest) = self
            .outflow
            .iter()
            .enumerate()
            .min_by_key(|(index, bucket)| (bucket.month, *index))?;
        (oldest.month < month).then_some(index)
    }

    #[inline]
    fn outflow_index(&self, currency: Currency) -> Option<usize> {
        self.outflow
            .iter()
            .position(|bucket| bucket.currency == Some(currency))
    }

    /// The outflow bucket of `currency`, if it is tracked.
    #[inline]
    pub fn outflow(&self, currency: Currency) -> Option<&OutflowBucket> {
        self.outflow_index(currency)
            .map(|index| &self.outflow[index])
    }

    /// Whether a payment in an untracked currency on `day` would find a slot.
    pub fn has_outflow_slot(&self, day: Day) -> bool {
        let month = day.month();
        self.outflow
            .iter()
            .any(|bucket| bucket.currency.is_none() || bucket.month < month)
    }

    /// Payments remembered (at most RECENT_PAYMENTS_MAX).
    #[inline]
    pub fn recent_len(&self) -> usize {
        usize::from(self.recent_len).min(RECENT_PAYMENTS_MAX)
    }

    /// Physical slot of the `age`-th newest payment (0 = newest).
    #[inline]
    fn recent_slot(&self, age: usize) -> usize {
        let next = usize::from(self.recent_next) % RECENT_PAYMENTS_MAX;
        (next + RECENT_PAYMENTS_MAX - 1 - age % RECENT_PAYMENTS_MAX) % RECENT_PAYMENTS_MAX
    }

    /// Timestamp of the `age`-th newest payment (0 = newest), if remembered.
    #[inline]
    pub fn recent_timestamp(&self, age: usize) -> Option<u64> {
        (age < self.recent_len()).then(|| self.recent_timestamps[self.recent_slot(age)])
    }

    /// Remembered payments, newest first.
    pub fn recent(&self) -> impl Iterator<Item = RecentPayment> + '_ {
        (0..self.recent_len()).map(move |age| {
            let slot = self.recent_slot(age);
            RecentPayment {
                timestamp: self.recent_timestamps[slot],
                amount: self.recent_amounts[slot],
                currency: Currency::from_raw(self.recent_currencies[slot]),
            }
        })
    }

    /// Sum and count of the newest `count_max` payments in `currency`.
    #[inline]
    pub(crate) fn recent_sum(&self, currency: Currency, count_max: usize) -> (u128, usize) {
        const MASK: usize = RECENT_PAYMENTS_MAX - 1;
        let numeric = currency.numeric();
        let (mut sum, mut count) = (0u128, 0usize);
        let mut slot = usize::from(self.recent_next).wrapping_sub(1) & MASK;
        for _ in 0..self.recent_len() {
            if self.recent_currencies[slot] == numeric {
                sum += u128::from(self.recent_amounts[slot]);
                count += 1;
                if count == count_max {
                    break;
                }
            }
            slot = slot.wrapping_sub(1) & MASK;
        }
        (sum, count)
    }

    #[inline]
    pub fn devices_len(&self) -> usize {
        usize::from(self.devices_len).min(DEVICES_MAX)
    }

    /// Known devices, most recently used first.
    pub fn devices(&self) -> &[u64] {
        &self.devices[..self.devices_len()]
    }

    #[inline]
    pub fn knows_device(&self, device: u64) -> bool {
        self.devices().contains(&device)
    }

    pub fn last_location(&self) -> Option<&LastLocation> {
        self.last_location.as_ref()
    }

    /// Feeds the state to `hasher` in a canonical byte order, independent of
    /// where the rings happen to start:
    ///
    /// ```text
    /// recent_len u8, then per payment newest first: timestamp u64, amount u64, currency u16
    /// bucket count u8, then per used bucket by currency code: currency u16,
    ///     day u32, day_total u64, month u32, month_total u64
    /// devices_len u8, then each device u64, most recently used first
    /// 0u8, or 1u8 + latitude i32 + longitude i32 + timestamp u64
    /// ```
    /// All integers little-endian.
    pub fn digest_into(&self, hasher: &mut crate::digest::DigestHasher) {
        hasher.update(&[self.recent_len() as u8]);
        for payment in self.recent() {
            hasher.update(&payment.timestamp.to_le_bytes());
            hasher.update(&payment.amount.to_le_bytes());
            hasher.update(&payment.currency.numeric().to_le_bytes());
        }
        let mut buckets: [Option<&OutflowBucket>; OUTFLOW_CURRENCIES_MAX] =
            [None; OUTFLOW_CURRENCIES_MAX];
        let mut used = 0;
        for bucket in self.outflow.iter().filter(|b| b.currency.is_some()) {
            buckets[used] = Some(bucket);
            used += 1;
        }
        buckets[..used].sort_unstable_by_key(|bucket| bucket.map(|b| b.currency));
        hasher.update(&[used as u8]);
        for bucket in buckets[..used].iter().flatten() {
            let currency = bucket.currency.map_or(0, Currency::numeric);
            hasher.update(&currency.to_le_bytes());
            hasher.update(&bucket.day.0.to_le_bytes());
            hasher.update(&bucket.day_total.to_le_bytes());
            hasher.update(&bucket.month.0.to_le_bytes());
            hasher.update(&bucket.month_total.to_le_bytes());
        }
        hasher.update(&[self.devices_len() as u8]);
        for device in self.devices() {
            hasher.update(&device.to_le_bytes());
        }
        match &self.last_location {
            None => {
                hasher.update(&[0]);
            }
            Some(last) => {
                hasher.update(&[1]);
                hasher.update(&last.point.latitude_microdegrees.to_le_bytes());
                hasher.update(&last.point.longitude_microdegrees.to_le_bytes());
                hasher.update(&last.timestamp.to_le_bytes());
            }
        }
    }
}
