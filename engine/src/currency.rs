//! ISO 4217 currencies, by numeric code, with their minor units.
//!
//! The table comes from the `iso_currency` crate. Only currencies with a
//! defined number of minor units (not gold, SDRs, "no currency" ...) can hold
//! money in payrail.

use std::fmt;
use std::str::FromStr;

/// An ISO 4217 currency, stored as its numeric code (CNY = 156).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, bincode::Encode, bincode::Decode)]
pub struct Currency(u16);

impl Currency {
    pub const CNY: Currency = Currency(156);
    pub const JPY: Currency = Currency(392);
    pub const BHD: Currency = Currency(48);
    pub const USD: Currency = Currency(840);
    pub const EUR: Currency = Currency(978);
    pub const SGD: Currency = Currency(702);
    pub const THB: Currency = Currency(764);

    /// The currency with this ISO 4217 numeric code, if it can hold money.
    pub fn from_numeric(numeric: u16) -> Option<Currency> {
        let iso = iso_currency::Currency::from_numeric(numeric)?;
        iso.exponent()?;
        Some(Currency(numeric))
    }

    /// The currency with this three-letter code (case-insensitive).
    pub fn from_code(code: &str) -> Option<Currency> {
        let iso = iso_currency::Currency::from_code(&code.to_ascii_uppercase())?;
        iso.exponent()?;
        Some(Currency(iso.numeric()))
    }

    pub fn numeric(self) -> u16 {
        self.0
    }

    /// Three-letter code, or "???" for a numeric code that is not a currency
    /// (only reachable through `from_raw`).
    pub fn code(self) -> &'static str {
        iso_currency::Currency::from_numeric(self.0).map_or("???", |c| c.code())
    }

    /// Digits after the decimal point: JPY 0, CNY 2, BHD 3.
    pub fn minor_units(self) -> u32 {
        iso_currency::Currency::from_numeric(self.0)
            .and_then(|c| c.exponent())
            .map_or(0, u32::from)
    }

    /// Whether this numeric code names a currency that can hold money.
    pub fn is_valid(self) -> bool {
        Currency::from_numeric(self.0).is_some()
    }

    /// A currency value straight from a wire or log field; check it with
    /// `is_valid` before trusting it.
    pub const fn from_raw(numeric: u16) -> Currency {
        Currency(numeric)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.code(), self.0)
    }
}

/// The text was not a currency payrail can hold money in.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not an ISO 4217 currency with minor units")]
pub struct UnknownCurrency(pub String);

impl FromStr for Currency {
    type Err = UnknownCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(numeric) = s.parse::<u16>() {
            return Currency::from_numeric(numeric).ok_or_else(|| UnknownCurrency(s.to_owned()));
        }
        Currency::from_code(s).ok_or_else(|| UnknownCurrency(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minor_units_follow_iso_4217() {
        let table = [("JPY", 0), ("CNY", 2), ("USD", 2), ("BHD", 3), ("KWD", 3)];
        for (code, units) in table {
            let currency: Currency = code.parse().unwrap();
            assert_eq!(currency.minor_units(), units, "{code}");
            assert_eq!(currency.code(), code);
        }
    }

    #[test]
    fn currencies_without_minor_units_are_refused() {
        for code in ["XAU", "XXX", "XDR", "ABC", "", "CN"] {
            assert!(code.parse::<Currency>().is_err(), "{code}");
        }
        assert_eq!(Currency::from_numeric(999), None);
        assert_eq!(Currency::from_numeric(156), Some(Currency::CNY));
        assert_eq!("cny".parse::<Currency>(), Ok(Currency::CNY));
        assert_eq!("392".parse::<Currency>(), Ok(Currency::JPY));
    }
}
