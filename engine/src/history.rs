//! Movement history: every change of an account's balance, for an account's
//! "transaction records" and for `tx show`.
//!
//! The ledger emits a [`Movement`] pair (debit leg and credit leg) from its
//! lowest-level money primitives whenever a balance changes, tagged with the
//! command being applied (id, kind, MCC) — so a new money-moving command gets
//! history without doing anything. Emitting is off unless the pipeline turns
//! it on ([`crate::Ledger::record_history`]); then the movements of a batch
//! collect in a vector that the executor hands to the history writer thread
//! (see `pipeline`), which appends them to the history store
//! ([`crate::storage::HistoryStore`]: segment files, off the hot path).
//! History is not part of the ledger state: it is derived from the log and
//! rebuilt from it at recovery past its watermark (docs/persistence.md).
//!
//! `position` is the movement's place in its batch: the command's index in
//! the batch times [`MOVEMENT_LEGS_MAX`] plus the leg (a debit leg is even,
//! its credit leg the next odd number). It depends on the log alone, not on
//! which shard applied the command, so an account's history is the same
//! whatever the shard count.
//!
//! House accounts are not given a history: a sharded ledger splits each into
//! one part per shard, so the balance after a movement would depend on the
//! shard count. The customer's or merchant's leg names the public house id
//! as its counterparty.

use std::borrow::Cow;

use crate::command::{AccountId, CommandId};
use crate::currency::Currency;
use crate::instrument::BankName;

/// Most entries in one history page.
pub const HISTORY_PAGE_MAX: u32 = 1_000;
/// Longest command kind name stored with a movement, in bytes.
pub const MOVEMENT_KIND_BYTES_MAX: usize = 32;
/// Most legs `command_movements` returns for one command.
pub const COMMAND_LEGS_MAX: usize = 64;
/// Legs one command can number in its batch (`position` = index * this + leg).
pub const MOVEMENT_LEGS_MAX: u32 = 256;

const _: () = assert!(
    (crate::limits::BATCH_COMMANDS_MAX as u64) * (MOVEMENT_LEGS_MAX as u64) <= u32::MAX as u64,
    "a movement's position fits in u32"
);

/// The position of leg `leg` of the command at `index` in its batch (legs
/// past the last number share it: no command makes that many).
pub fn position_of(index: u32, leg: u32) -> u32 {
    index
        .saturating_mul(MOVEMENT_LEGS_MAX)
        .saturating_add(leg.min(MOVEMENT_LEGS_MAX - 1))
}

/// One change of one account's balance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Movement {
    pub account: AccountId,
    /// The other side of the double entry.
    pub counterparty: AccountId,
    pub command: CommandId,
    /// Log sequence number and timestamp (ns since the epoch) of the batch.
    pub sequence: u64,
    pub timestamp: u64,
    /// Place among the movements of its batch, from 0.
    pub position: u32,
    /// The command kind's stable name (`transfer`, `deposit`, ...).
    pub kind: Cow<'static, str>,
    /// Signed, in minor units: negative leaves the account, positive enters.
    pub amount: i64,
    /// The account's balance just after this movement.
    pub balance: i64,
    pub currency: Currency,
    /// Merchant category of a payment (the command's, else the merchant
    /// account's); 0 when no merchant is involved.
    pub mcc: u16,
    /// The funding instrument of a top-up that named one (`DepositFrom`)
    /// or of a posted withdrawal whose hold named one (`WithdrawHoldTo`),
    /// as it was then: kept with the movement, so it shows after an unbind.
    pub instrument: Option<MovementInstrument>,
}

/// What a movement keeps of its funding instrument (docs/instruments.md):
/// enough for a person to recognise it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, bincode::Encode, bincode::Decode)]
pub struct MovementInstrument {
    /// The instrument's number (its holder is the account's owner).
    pub number: u32,
    pub bank: BankName,
    pub last_four: [u8; 4],
}

impl std::fmt::Display for MovementInstrument {
    /// `ICBC ****4242 (instrument 2)`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ****{} (instrument {})",
            self.bank.as_str(),
            String::from_utf8_lossy(&self.last_four),
            self.number
        )
    }
}

/// Bytes a [`MovementInstrument`] takes in an encoded movement: number u32,
/// bank 16, last four 4.
pub const MOVEMENT_INSTRUMENT_BYTES: usize = 4 + crate::instrument::INSTRUMENT_BANK_BYTES + 4;

impl MovementInstrument {
    /// Appends the fixed bytes (layout in [`MOVEMENT_INSTRUMENT_BYTES`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.number.to_le_bytes());
        out.extend_from_slice(&self.bank.0);
        out.extend_from_slice(&self.last_four);
    }

    /// Reads what `encode` wrote (`bytes` is exactly that long); `Err` for
    /// a bank or digits that are not what a bind accepts.
    pub fn decode(bytes: &[u8]) -> Result<MovementInstrument, String> {
        if bytes.len() != MOVEMENT_INSTRUMENT_BYTES {
            return Err(format!("an instrument has {} bytes", bytes.len()));
        }
        let mut number = [0u8; 4];
        number.copy_from_slice(&bytes[..4]);
        let mut bank = [0u8; crate::instrument::INSTRUMENT_BANK_BYTES];
        bank.copy_from_slice(&bytes[4..4 + crate::instrument::INSTRUMENT_BANK_BYTES]);
        let mut last_four = [0u8; 4];
        last_four.copy_from_slice(&bytes[bytes.len() - 4..]);
        let instrument = MovementInstrument {
            number: u32::from_le_bytes(number),
            bank: crate::instrument::InstrumentText(bank),
            last_four,
        };
        if !instrument.bank.is_valid() || !last_four.iter().all(u8::is_ascii_digit) {
            return Err("an instrument's bank or last four digits are malformed".to_owned());
        }
        Ok(instrument)
    }
}

impl Movement {
    /// Log order: batch, then place in the batch (then the account, for
    /// the two legs of one transfer between an account and itself, which
    /// cannot happen, to make the order total).
    pub fn order_key(&self) -> (u64, u32, u64) {
        (self.sequence, self.position, self.account.0)
    }
}

/// A movement without an instrument.
const VALUE_VERSION: u8 = 1;
/// A movement with an instrument: its bytes follow the mcc.
const VALUE_VERSION_INSTRUMENT: u8 = 2;
/// Fixed part of an encoded movement without an instrument (everything but
/// the kind's bytes).
pub const VALUE_FIXED_BYTES: usize = 1 + 8 + 8 + 16 + 8 + 8 + 4 + 8 + 8 + 2 + 2 + 1;
/// Longest encoded movement.
pub const VALUE_BYTES_MAX: usize =
    VALUE_FIXED_BYTES + MOVEMENT_INSTRUMENT_BYTES + MOVEMENT_KIND_BYTES_MAX;

/// Bytes [`encode_movement`] writes for `movement`.
pub fn encoded_movement_len(movement: &Movement) -> usize {
    let instrument = if movement.instrument.is_some() {
        MOVEMENT_INSTRUMENT_BYTES
    } else {
        0
    };
    VALUE_FIXED_BYTES + instrument + movement.kind.len().min(MOVEMENT_KIND_BYTES_MAX)
}

/// Layout (little-endian): version 1, account 8, counterparty 8, command 16,
/// sequence 8, timestamp 8, position 4, amount 8, balance 8, currency
/// (ISO numeric) 2, mcc 2, kind length 1, kind bytes. A movement with an
/// instrument is version 2: the same, with the instrument (number 4, bank
/// 16, last four 4) between the mcc and the kind's length. Movements
/// without one are written in version 1, as before version 2 existed.
pub fn encode_movement(movement: &Movement, out: &mut Vec<u8>) {
    let kind = movement.kind.as_bytes();
    let kind = &kind[..kind.len().min(MOVEMENT_KIND_BYTES_MAX)];
    out.reserve(encoded_movement_len(movement));
    out.push(if movement.instrument.is_some() {
        VALUE_VERSION_INSTRUMENT
    } else {
        VALUE_VERSION
    });
    out.extend_from_slice(&movement.account.0.to_le_bytes());
    out.extend_from_slice(&movement.counterparty.0.to_le_bytes());
    out.extend_from_slice(&movement.command.0.to_le_bytes());
    out.extend_from_slice(&movement.sequence.to_le_bytes());
    out.extend_from_slice(&movement.timestamp.to_le_bytes());
    out.extend_from_slice(&movement.position.to_le_bytes());
    out.extend_from_slice(&movement.amount.to_le_bytes());
    out.extend_from_slice(&movement.balance.to_le_bytes());
    out.extend_from_slice(&movement.currency.numeric().to_le_bytes());
    out.extend_from_slice(&movement.mcc.to_le_bytes());
    if let Some(instrument) = &movement.instrument {
        instrument.encode(out);
    }
    out.push(kind.len() as u8);
    out.extend_from_slice(kind);
}

/// Decodes what [`encode_movement`] wrote; `Err` says why bytes on disk are
/// not a movement.
pub fn decode_movement(bytes: &[u8]) -> Result<Movement, String> {
    if bytes.len() < VALUE_FIXED_BYTES {
        return Err(format!("a movement has {} bytes", bytes.len()));
    }
    let instrument_bytes = match bytes[0] {
        VALUE_VERSION => 0,
        VALUE_VERSION_INSTRUMENT => MOVEMENT_INSTRUMENT_BYTES,
        version => return Err(format!("unknown movement version {version}")),
    };
    if bytes.len() < VALUE_FIXED_BYTES + instrument_bytes {
        return Err(format!("a movement has {} bytes", bytes.len()));
    }
    let mut at = 1;
    let mut take = |n: usize| {
        let slice = &bytes[at..at + n];
        at += n;
        slice
    };
    let u64_of = |slice: &[u8]| {
        let mut buffer = [0u8; 8];
        buffer.copy_from_slice(slice);
        u64::from_le_bytes(buffer)
    };
    let account = AccountId(u64_of(take(8)));
    let counterparty = AccountId(u64_of(take(8)));
    let mut command = [0u8; 16];
    command.copy_from_slice(take(16));
    let sequence = u64_of(take(8));
    let timestamp = u64_of(take(8));
    let mut position = [0u8; 4];
    position.copy_from_slice(take(4));
    let amount = u64_of(take(8)) as i64;
    let balance = u64_of(take(8)) as i64;
    let currency_bytes = take(2);
    let numeric = u16::from_le_bytes([currency_bytes[0], currency_bytes[1]]);
    let mcc_bytes = take(2);
    let mcc = u16::from_le_bytes([mcc_bytes[0], mcc_bytes[1]]);
    let instrument = if instrument_bytes > 0 {
        Some(MovementInstrument::decode(take(instrument_bytes))?)
    } else {
        None
    };
    let kind_len = take(1)[0] as usize;
    let rest = &bytes[VALUE_FIXED_BYTES + instrument_bytes..];
    if rest.len() != kind_len {
        return Err(format!(
            "a movement's kind has {} bytes, not {kind_len}",
            rest.len()
        ));
    }
    let kind = std::str::from_utf8(rest)
        .map_err(|_| "a movement's kind is not UTF-8".to_owned())?
        .to_owned();
    let currency =
        Currency::from_numeric(numeric).ok_or_else(|| format!("unknown currency {numeric}"))?;
    Ok(Movement {
        account,
        counterparty,
        command: CommandId(u128::from_le_bytes(command)),
        sequence,
        timestamp,
        position: u32::from_le_bytes(position),
        kind: Cow::Owned(kind),
        amount,
        balance,
        currency,
        mcc,
        instrument,
    })
}

/// The account, command and timestamp of an encoded movement, read without
/// decoding the rest (for scans that only index movements).
pub fn movement_keys(bytes: &[u8]) -> Result<(AccountId, CommandId, u64), String> {
    if bytes.len() < VALUE_FIXED_BYTES {
        return Err(format!("a movement has {} bytes", bytes.len()));
    }
    // The fields read here are at the same places in both versions.
    if bytes[0] != VALUE_VERSION && bytes[0] != VALUE_VERSION_INSTRUMENT {
        return Err(format!("unknown movement version {}", bytes[0]));
    }
    let mut account = [0u8; 8];
    account.copy_from_slice(&bytes[1..9]);
    let mut command = [0u8; 16];
    command.copy_from_slice(&bytes[17..33]);
    let mut timestamp = [0u8; 8];
    timestamp.copy_from_slice(&bytes[41..49]);
    Ok((
        AccountId(u64::from_le_bytes(account)),
        CommandId(u128::from_le_bytes(command)),
        u64::from_le_bytes(timestamp),
    ))
}

/// What the ledger knows about the command being applied, for the
/// movements it makes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MovementContext {
    pub command: CommandId,
    pub kind: &'static str,
    pub sequence: u64,
    pub timestamp: u64,
    /// The command's own merchant category (a QR payment's, a refunded
    /// payment's), 0 if none.
    pub mcc: u16,
    /// The command's index in its batch.
    pub index: u32,
    /// A sharded half's other party (set before the half is applied).
    pub counterparty: Option<AccountId>,
    /// Legs the command has numbered so far.
    pub legs: u32,
    /// The funding instrument the next movements carry (a top-up from one,
    /// a withdrawal posted to one).
    pub instrument: Option<MovementInstrument>,
}

impl Default for MovementContext {
    fn default() -> Self {
        MovementContext {
            command: CommandId(0),
            kind: "",
            sequence: 0,
            timestamp: 0,
            mcc: 0,
            index: 0,
            counterparty: None,
            legs: 0,
            instrument: None,
        }
    }
}

/// Where the ledger collects movements while history is on.
#[derive(Clone, Debug, Default)]
pub(crate) struct HistorySink {
    pub context: MovementContext,
    pub movements: Vec<Movement>,
}

/// One page of an account's history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryPage {
    pub entries: Vec<Movement>,
    /// Where the next page starts, or 0 if this is the last page.
    pub next_cursor: u128,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn movement() -> Movement {
        Movement {
            account: AccountId(7),
            counterparty: AccountId(9),
            command: CommandId(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            sequence: 42,
            timestamp: 1_700_000_000_000_000_000,
            position: 3,
            kind: Cow::Borrowed("transfer"),
            amount: -1250,
            balance: 8750,
            currency: Currency::CNY,
            mcc: 5812,
            instrument: None,
        }
    }

    #[test]
    fn movements_with_an_instrument_are_version_2() {
        let plain = movement();
        let mut bytes = Vec::new();
        encode_movement(&plain, &mut bytes);
        assert_eq!(bytes[0], 1);
        assert_eq!(bytes.len(), encoded_movement_len(&plain));
        let with = Movement {
            kind: Cow::Borrowed("deposit_from"),
            instrument: Some(MovementInstrument {
                number: 2,
                bank: BankName::new("ICBC").unwrap(),
                last_four: *b"4242",
            }),
            ..movement()
        };
        let mut bytes = Vec::new();
        encode_movement(&with, &mut bytes);
        assert_eq!(bytes[0], 2);
        assert_eq!(bytes.len(), encoded_movement_len(&with));
        assert_eq!(decode_movement(&bytes), Ok(with.clone()));
        assert_eq!(
            movement_keys(&bytes),
            Ok((with.account, with.command, with.timestamp))
        );
        assert_eq!(
            with.instrument.map(|i| i.to_string()).as_deref(),
            Some("ICBC ****4242 (instrument 2)")
        );
        // Digits that are not digits, a bank that is not text: damage.
        let digits_at = VALUE_FIXED_BYTES - 1 + MOVEMENT_INSTRUMENT_BYTES - 4;
        let mut wrong = bytes.clone();
        wrong[digits_at] = b'x';
        assert!(decode_movement(&wrong).is_err());
        assert!(decode_movement(&bytes[..VALUE_FIXED_BYTES + 3]).is_err());
    }

    #[test]
    fn movements_round_trip_and_damage_is_an_error() {
        let mut bytes = Vec::new();
        encode_movement(&movement(), &mut bytes);
        assert_eq!(decode_movement(&bytes), Ok(movement()));
        let full = movement();
        assert_eq!(
            movement_keys(&bytes),
            Ok((full.account, full.command, full.timestamp))
        );
        assert!(decode_movement(&bytes[..bytes.len() - 1]).is_err());
        let mut wrong = bytes.clone();
        wrong[0] = 9;
        assert!(decode_movement(&wrong).is_err());
    }
}
