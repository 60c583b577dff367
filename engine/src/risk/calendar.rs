//! Calendar days and months in UTC, from command timestamps (ns since the Unix
//! epoch), in integer arithmetic only.
//!
//! Daily and monthly outflow limits and monthly budgets roll over at midnight
//! UTC and at the first of the month UTC. The conversion from days to a civil
//! date is Howard Hinnant's `civil_from_days` (proleptic Gregorian calendar),
//! so no date library is needed and the result cannot depend on the host's
//! time zone.

use std::fmt;

/// Nanoseconds in one day (UTC days have no leap seconds in Unix time).
pub const NS_PER_DAY: u64 = 86_400 * 1_000_000_000;

/// A day in UTC: whole days since 1970-01-01.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    Default,
    bincode::Encode,
    bincode::Decode,
)]
pub struct Day(pub u32);

impl Day {
    /// The UTC day a timestamp falls on. A u64 of ns ends in 2554, far below
    /// u32::MAX days.
    pub fn from_timestamp(timestamp: u64) -> Day {
        Day((timestamp / NS_PER_DAY) as u32)
    }

    /// The month this day is in.
    pub fn month(self) -> Month {
        let (year, month, _) = civil_from_days(self.0);
        Month(year * 12 + (month - 1))
    }

    /// (year, month 1..=12, day of month 1..=31).
    pub fn civil(self) -> (u32, u32, u32) {
        civil_from_days(self.0)
    }

    /// The day of this civil date, if the date exists and is not before 1970.
    pub fn from_civil(year: u32, month: u32, day: u32) -> Option<Day> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        let days = days_from_civil(i64::from(year), month, day);
        u32::try_from(days).ok().map(Day)
    }

    /// Timestamp of this day's midnight UTC.
    pub fn start_timestamp(self) -> u64 {
        u64::from(self.0) * NS_PER_DAY
    }
}

/// A calendar month in UTC, as `year * 12 + (month - 1)`: consecutive months
/// are consecutive numbers.
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Debug,
    Default,
    bincode::Encode,
    bincode::Decode,
)]
pub struct Month(pub u32);

impl Month {
    /// The UTC month a timestamp falls in.
    pub fn from_timestamp(timestamp: u64) -> Month {
        Day::from_timestamp(timestamp).month()
    }

    /// The month `year`-`month` (1..=12), or None for a month out of range.
    pub fn new(year: u32, month: u32) -> Option<Month> {
        if !(1..=12).contains(&month) {
            return None;
        }
        year.checked_mul(12)?.checked_add(month - 1).map(Month)
    }

    pub fn year(self) -> u32 {
        self.0 / 12
    }

    /// 1..=12.
    pub fn month(self) -> u32 {
        self.0 % 12 + 1
    }

    /// The month before, saturating at month 0.
    pub fn previous(self) -> Month {
        Month(self.0.saturating_sub(1))
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year(), self.month())
    }
}

/// Parses "YYYY-MM".
impl std::str::FromStr for Month {
    type Err = String;
    fn from_str(text: &str) -> Result<Month, String> {
        let invalid = || format!("'{text}' is not a month like 2026-11");
        let (year, month) = text.trim().split_once('-').ok_or_else(invalid)?;
        let year: u32 = year.parse().map_err(|_| invalid())?;
        let month: u32 = month.parse().map_err(|_| invalid())?;
        Month::new(year, month).ok_or_else(invalid)
    }
}

fn is_leap(year: u32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
/// Hinnant's algorithm, restricted to non-negative day counts.
fn civil_from_days(days: u32) -> (u32, u32, u32) {
    // Shift the epoch to 0000-03-01 so that leap days end a (March-based) year.
    let z = u64::from(days) + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097; // [0, 146096]
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365; // [0, 399]
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100); // [0, 365]
    let month_from_march = (5 * day_of_year + 2) / 153; // [0, 11]
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1; // [1, 31]
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    // year < 2^32 for any u32 day count.
    (year as u32, month as u32, day as u32)
}

/// Days since 1970-01-01 of a civil date (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month = i64::from(month);
    let month_from_march = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * month_from_march + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_calendar_known_dates() {
        let table = [
            (0u32, (1970, 1, 1)),
            (31, (1970, 2, 1)),
            (59, (1970, 3, 1)),
            (10_957, (2000, 1, 1)),
            (11_016, (2000, 2, 29)),
            (11_017, (2000, 3, 1)),
            (19_782, (2024, 2, 29)),
            (20_454, (2026, 1, 1)),
            (20_818, (2026, 12, 31)),
        ];
        for (days, civil) in table {
            assert_eq!(Day(days).civil(), civil, "day {days}");
            assert_eq!(Day::from_civil(civil.0, civil.1, civil.2), Some(Day(days)));
        }
        assert_eq!(Day::from_civil(2026, 2, 29), None);
        assert_eq!(Day::from_civil(2026, 13, 1), None);
        assert_eq!(Day::from_civil(1969, 12, 31), None);
    }

    #[test]
    fn risk_calendar_round_trips_every_day_for_five_centuries() {
        let mut previous = Day(0).month();
        for days in 0..(500 * 366) {
            let day = Day(days);
            let (year, month, dom) = day.civil();
            assert_eq!(Day::from_civil(year, month, dom), Some(day));
            let this = day.month();
            assert!(this == previous || this.0 == previous.0 + 1);
            assert_eq!(this.month(), month);
            assert_eq!(this.year(), year);
            previous = this;
        }
    }

    #[test]
    fn risk_calendar_midnight_and_month_end() {
        let new_year = Day::from_civil(2027, 1, 1).unwrap().start_timestamp();
        assert_eq!(
            Month::from_timestamp(new_year - 1),
            Month::new(2026, 12).unwrap()
        );
        assert_eq!(
            Month::from_timestamp(new_year),
            Month::new(2027, 1).unwrap()
        );
        assert_eq!(
            Day::from_timestamp(new_year - 1).0 + 1,
            Day::from_timestamp(new_year).0
        );
        assert_eq!(Month::new(2026, 11).unwrap().to_string(), "2026-11");
        assert_eq!(
            "2026-11".parse::<Month>(),
            Ok(Month::new(2026, 11).unwrap())
        );
        assert!("2026-13".parse::<Month>().is_err());
        assert!("november".parse::<Month>().is_err());
        // The last representable timestamp still has a day and a month.
        let last = Day::from_timestamp(u64::MAX);
        assert_eq!(last.civil().0, 2554);
    }
}
