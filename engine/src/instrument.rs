//! Funding instruments: the bank cards and bank accounts a customer binds to
//! the wallet, that top-ups come from and withdrawals go to.
//!
//! payrail never sees a card number or a CVV. The gateway tokenizes the card
//! (or bank account) with its acquirer and binds the token together with what
//! a person needs to recognise the instrument: its kind, the issuing bank,
//! the country, the last four digits and the currency. A bind that carries
//! anything that looks like a full card number (13 to 19 digits passing the
//! Luhn check, in any text field, spaces and dashes between digits allowed)
//! is refused with `looks_like_card_number`.
//!
//! An instrument is named by its holder (the customer's owner id, as in
//! `OpenAccount::owner`) and a number the gateway chooses, unique per
//! customer: [`InstrumentId`]. A command of one customer naming another's
//! instrument is therefore refused as `instrument_not_yours` by comparing
//! owners, the same on a lone ledger and on any shard count, and an
//! instrument lives on its customer's shard.
//!
//! The state machine's side (bind, verify, unbind, checks of top-ups and
//! withdrawals) is in `ledger/instruments.rs`; docs/instruments.md tells the
//! whole story.

use crate::command::AccountId;
use crate::currency::Currency;

/// One customer's instrument: the holder's owner id and the gateway's number
/// for it (unique per customer).
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
pub struct InstrumentId {
    /// The customer's owner id (`OpenAccount::owner`).
    pub owner: u64,
    pub number: u32,
}

impl std::fmt::Display for InstrumentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.owner, self.number)
    }
}

impl std::str::FromStr for InstrumentId {
    type Err = String;

    /// `owner/number`, as `Display` writes it.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (owner, number) = text
            .split_once('/')
            .ok_or_else(|| format!("an instrument is owner/number, not {text:?}"))?;
        let owner = owner
            .trim()
            .parse()
            .map_err(|_| format!("bad instrument owner {owner:?}"))?;
        let number = number
            .trim()
            .parse()
            .map_err(|_| format!("bad instrument number {number:?}"))?;
        Ok(InstrumentId { owner, number })
    }
}

/// What kind of instrument it is.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub enum InstrumentKind {
    /// A debit or credit card (verified by a card verification).
    Card,
    /// A bank account (verified by a micro-deposit).
    BankAccount,
}

impl InstrumentKind {
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            InstrumentKind::Card => "card",
            InstrumentKind::BankAccount => "bank_account",
        }
    }
}

/// Where an instrument is in its life.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub enum InstrumentState {
    /// Bound, the gateway's check not reported yet: not usable.
    Unverified,
    /// The gateway's check passed: top-ups and withdrawals may name it.
    Verified,
    /// The gateway's check failed: not usable; the gateway may report a
    /// later check.
    Failed,
    /// Unbound by the customer: remembered (so naming it says
    /// `instrument_unbound`) until a new bind of the customer needs its place.
    Unbound,
}

impl InstrumentState {
    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            InstrumentState::Unverified => "unverified",
            InstrumentState::Verified => "verified",
            InstrumentState::Failed => "failed",
            InstrumentState::Unbound => "unbound",
        }
    }
}

/// What a query shows of one instrument.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct InstrumentView {
    pub instrument: InstrumentId,
    pub kind: InstrumentKind,
    pub token: InstrumentToken,
    pub bank: BankName,
    pub country: [u8; 2],
    pub last_four: [u8; 4],
    pub currency: Currency,
    pub state: InstrumentState,
    pub bound_at: u64,
    pub changed_at: u64,
    /// How many instruments the customer has (bound and remembered).
    pub instruments_total: u8,
}

/// Bytes of the gateway's token for an instrument.
pub const INSTRUMENT_TOKEN_BYTES: usize = 32;
/// Bytes of an issuing bank's name.
pub const INSTRUMENT_BANK_BYTES: usize = 16;

/// Printable ASCII text of up to `N` bytes, zero padded: the gateway's token
/// (`N` = 32) or the issuing bank (`N` = 16).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct InstrumentText<const N: usize>(pub [u8; N]);

/// The gateway's token for the card or bank account (its acquirer's
/// reference, never the number itself).
pub type InstrumentToken = InstrumentText<INSTRUMENT_TOKEN_BYTES>;
/// The issuing bank, as the gateway names it ("ICBC", "MUFG").
pub type BankName = InstrumentText<INSTRUMENT_BANK_BYTES>;

impl<const N: usize> Default for InstrumentText<N> {
    fn default() -> Self {
        InstrumentText([0; N])
    }
}

impl<const N: usize> InstrumentText<N> {
    /// The text: 1 to `N` printable ASCII characters (spaces inside allowed).
    pub fn new(text: &str) -> Option<Self> {
        let bytes = text.as_bytes();
        if bytes.is_empty() || bytes.len() > N {
            return None;
        }
        let mut out = [0u8; N];
        out[..bytes.len()].copy_from_slice(bytes);
        let text = InstrumentText(out);
        text.is_valid().then_some(text)
    }

    fn len(&self) -> usize {
        self.0.iter().position(|&b| b == 0).unwrap_or(N)
    }

    /// Whether the bytes are what `new` makes: printable ASCII (no leading
    /// or trailing space), then zeros.
    pub fn is_valid(&self) -> bool {
        let len = self.len();
        let text = &self.0[..len];
        len > 0
            && text.iter().all(|&b| b == b' ' || b.is_ascii_graphic())
            && text.first() != Some(&b' ')
            && text.last() != Some(&b' ')
            && self.0[len..].iter().all(|&b| b == 0)
    }

    /// The text ("?" for bytes that are not valid text).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0[..self.len()]).unwrap_or("?")
    }

    /// The bytes up to the padding (for the card-number check).
    pub fn bytes(&self) -> &[u8] {
        &self.0[..self.len()]
    }
}

// bincode derives do not reach const-generic arrays of any size: encode the
// array as its N bytes.
impl<const N: usize> bincode::Encode for InstrumentText<N> {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.0.encode(encoder)
    }
}

impl<Context, const N: usize> bincode::Decode<Context> for InstrumentText<N> {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Ok(InstrumentText(<[u8; N]>::decode(decoder)?))
    }
}

impl<'de, Context, const N: usize> bincode::BorrowDecode<'de, Context> for InstrumentText<N> {
    fn borrow_decode<D: bincode::de::BorrowDecoder<'de, Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        Ok(InstrumentText(
            <[u8; N] as bincode::Decode<Context>>::decode(decoder)?,
        ))
    }
}

/// Fields of `BindInstrument`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, bincode::Encode, bincode::Decode)]
pub struct InstrumentBind {
    /// Any customer account of the holder; the instrument belongs to its
    /// owner (`InstrumentId { owner, number }`).
    pub customer: AccountId,
    /// The gateway's number for the instrument, unique per customer.
    pub number: u32,
    pub kind: InstrumentKind,
    pub token: InstrumentToken,
    pub bank: BankName,
    /// ISO 3166 alpha-2 of the issuing bank, upper case.
    pub country: [u8; 2],
    /// The last four digits of the card or account number, ASCII.
    pub last_four: [u8; 4],
    /// The currency the instrument holds: withdrawals go to it only from an
    /// account of this currency.
    pub currency: Currency,
}

impl InstrumentBind {
    /// The checks of a bind that need no state, in order: a card number in
    /// a text field first (`looks_like_card_number`), then the fields'
    /// shapes (`invalid_instrument`), then the currency (`unknown_currency`).
    pub fn check(&self) -> Result<(), crate::status::Status> {
        use crate::status::Status;
        if self.carries_card_number() {
            return Err(Status::LooksLikeCardNumber);
        }
        let country = self.country.iter().all(u8::is_ascii_uppercase);
        let last_four = self.last_four.iter().all(u8::is_ascii_digit);
        if !self.token.is_valid() || !self.bank.is_valid() || !country || !last_four {
            return Err(Status::InvalidInstrument);
        }
        if !self.currency.is_valid() {
            return Err(Status::UnknownCurrency);
        }
        Ok(())
    }

    /// Whether any text field holds something that looks like a full card
    /// number (see [`looks_like_card_number`]).
    pub fn carries_card_number(&self) -> bool {
        looks_like_card_number(&self.token.0) || looks_like_card_number(&self.bank.0)
    }
}

/// Shortest and longest card numbers (ISO/IEC 7812 PANs).
pub const CARD_NUMBER_DIGITS_MIN: usize = 13;
pub const CARD_NUMBER_DIGITS_MAX: usize = 19;

/// Whether `bytes` hold 13 to 19 consecutive digits that pass the Luhn
/// check, digits possibly separated by single spaces or dashes ("4111 1111
/// 1111 1111", "4111-1111-1111-1111"). Every 13 to 19 digits of a longer
/// run are tried, so a card number cannot hide behind extra digits: a
/// gateway's token should not hold long runs of digits (one of 16 random
/// digits is refused more often than not). Errs on the side of refusing:
/// a refused bind costs a retry with another token, a card number in the
/// log would stay there.
pub fn looks_like_card_number(bytes: &[u8]) -> bool {
    // A field is at most 32 bytes: the digits of one run fit in 32.
    let mut digits = [0u8; 64];
    let mut count = 0usize;
    let mut after_separator = false;
    for (position, &byte) in bytes.iter().enumerate() {
        if byte.is_ascii_digit() {
            if count < digits.len() {
                digits[count] = byte - b'0';
                count += 1;
            }
            after_separator = false;
            continue;
        }
        let separator = (byte == b' ' || byte == b'-')
            && count > 0
            && !after_separator
            && bytes.get(position + 1).is_some_and(u8::is_ascii_digit);
        if separator {
            after_separator = true;
            continue;
        }
        if run_holds_card_number(&digits[..count]) {
            return true;
        }
        count = 0;
        after_separator = false;
    }
    run_holds_card_number(&digits[..count])
}

fn run_holds_card_number(run: &[u8]) -> bool {
    if run.len() < CARD_NUMBER_DIGITS_MIN {
        return false;
    }
    (CARD_NUMBER_DIGITS_MIN..=CARD_NUMBER_DIGITS_MAX.min(run.len()))
        .any(|len| run.windows(len).any(passes_luhn))
}

/// The Luhn check: from the rightmost digit, every second digit doubled
/// (minus 9 above 9), the sum a multiple of 10.
pub fn passes_luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(index, &digit)| {
            let digit = u32::from(digit);
            if index % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                digit
            }
        })
        .sum();
    !digits.is_empty() && sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn_accepts_test_card_numbers_and_refuses_a_changed_digit() {
        for number in ["4111111111111111", "5555555555554444", "378282246310005"] {
            let digits: Vec<u8> = number.bytes().map(|b| b - b'0').collect();
            assert!(passes_luhn(&digits), "{number}");
        }
        let digits: Vec<u8> = "4111111111111112".bytes().map(|b| b - b'0').collect();
        assert!(!passes_luhn(&digits));
    }

    #[test]
    fn card_numbers_are_found_in_text() {
        for text in [
            "4111111111111111",
            "tok 4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "pan=378282246310005;",
            // Inside a longer run of digits.
            "99411111111111111199",
            // 13 and 19 digits.
            "4222222222222",
            "6011000990139424000",
        ] {
            assert!(looks_like_card_number(text.as_bytes()), "{text}");
        }
        for text in [
            "tok_9f8e7d6c5b4a",
            // No 13 to 19 of these pass the Luhn check.
            "2026120709081234",
            "1111111111111111",
            // 12 digits passing Luhn are not a card number.
            "411111111113",
            "4111  1111 1111 1111",
            "ICBC",
            "",
        ] {
            assert!(!looks_like_card_number(text.as_bytes()), "{text}");
        }
    }

    #[test]
    fn text_is_printable_ascii_then_zeros() {
        let token = InstrumentToken::new("tok_123").unwrap_or_default();
        assert!(token.is_valid());
        assert_eq!(token.as_str(), "tok_123");
        assert!(InstrumentToken::new("").is_none());
        assert!(InstrumentToken::new(&"x".repeat(33)).is_none());
        assert!(BankName::new("Bank of China").is_some());
        assert!(BankName::new(" ICBC").is_none());
        assert!(BankName::new("caf\u{e9}").is_none());
        let mut holed = [0u8; 16];
        holed[0] = b'A';
        holed[2] = b'B';
        assert!(!InstrumentText(holed).is_valid());
    }

    #[test]
    fn ids_read_as_they_print() {
        let id = InstrumentId {
            owner: 7,
            number: 2,
        };
        assert_eq!(id.to_string(), "7/2");
        assert_eq!("7/2".parse::<InstrumentId>(), Ok(id));
        assert!("7".parse::<InstrumentId>().is_err());
    }
}
