//! Movement history: every change of an account's balance, for an account's
//! "transaction records" and for `tx show`.
//!
//! The ledger emits a [`Movement`] pair (debit leg and credit leg) from its
//! lowest-level money primitives whenever a balance changes, tagged with the
//! command being applied (id, kind, MCC) — so a new money-moving command gets
//! history without doing anything. Emitting is off unless the pipeline turns
//! it on ([`crate::Ledger::record_history`]); then the movements of a batch
//! collect in a compact [`MovementChunk`] that the executor hands to the
//! history writer thread (see `pipeline`), which appends them to the
//! history store ([`crate::storage::HistoryStore`]: segment files, off the
//! hot path).
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

/// A movement's place in log order ([`Movement::order_key`]).
pub type OrderKey = (u64, u32, u64);

impl Movement {
    /// Log order: batch, then place in the batch (then the account, for
    /// the two legs of one transfer between an account and itself, which
    /// cannot happen, to make the order total).
    pub fn order_key(&self) -> OrderKey {
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

/// Command kinds a compact movement names by a code (its index here plus
/// one) instead of by its text. Stored on disk: append only, never
/// reorder (docs/persistence.md, "History layout").
pub const MOVEMENT_KINDS: [&str; 26] = [
    "deposit",
    "transfer",
    "withdraw_hold",
    "withdraw_post",
    "withdraw_void",
    "pay_merchant_qr",
    "charge_payment_code",
    "refund",
    "fx_convert",
    "fx_convert_quote",
    "deposit_from",
    "withdraw_hold_to",
    "open_account",
    "freeze",
    "unfreeze",
    "close",
    "set_kyc_tier",
    "register_merchant_key",
    "issue_payment_code",
    "set_budget",
    "set_fx_rate",
    "set_fx_floor",
    "fx_quote",
    "bind_instrument",
    "verify_instrument",
    "unbind_instrument",
];

/// A compact movement's flags (its first byte).
const COMPACT_INSTRUMENT: u8 = 1;
const COMPACT_MCC: u8 = 1 << 1;
const COMPACT_HOUSE_COUNTERPARTY: u8 = 1 << 2;
const COMPACT_KIND_TEXT: u8 = 1 << 3;
const COMPACT_FLAGS: u8 =
    COMPACT_INSTRUMENT | COMPACT_MCC | COMPACT_HOUSE_COUNTERPARTY | COMPACT_KIND_TEXT;
/// Segment version 5: a follow-on movement, written after the record just
/// before it (a full movement of the same command) and relative to it.
const COMPACT_FOLLOWS: u8 = 1 << 4;
/// A follow-on that mirrors its first leg: account and counterparty
/// swapped, the amount negated, the same currency (a transfer's credit
/// leg).
const COMPACT_MIRROR: u8 = 1 << 5;
/// The flags a follow-on may carry.
const FOLLOW_ON_FLAGS: u8 = COMPACT_FOLLOWS | COMPACT_MIRROR | COMPACT_HOUSE_COUNTERPARTY;
/// Longest follow-on movement: flags, back, position delta, account,
/// counterparty, amount, currency 2, balance.
pub const FOLLOW_ON_BYTES_MAX: usize = 1 + 1 + 5 + 4 * VARINT_BYTES_MAX + 2;
/// Longest varint of a u64.
const VARINT_BYTES_MAX: usize = 10;
/// Longest compact movement: flags, account, counterparty, command 16,
/// sequence, timestamp, position (u32), amount, balance, currency 2,
/// mcc 2, instrument, kind length and text.
pub const COMPACT_VALUE_BYTES_MAX: usize = 1
    + 5 * VARINT_BYTES_MAX
    + 16
    + 5
    + VARINT_BYTES_MAX
    + 2
    + 2
    + MOVEMENT_INSTRUMENT_BYTES
    + 1
    + MOVEMENT_KIND_BYTES_MAX;
/// Shortest compact movement: one byte for each varint and the kind code.
pub const COMPACT_VALUE_BYTES_MIN: usize = 1 + 1 + 1 + 16 + 1 + 1 + 1 + 1 + 1 + 2 + 1;

/// Appends `value` as a LEB128 varint (7 bits a byte, low first).
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads a varint at `*at` and moves past it; `Err` if the bytes end
/// first or it does not fit a u64.
pub fn get_varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&byte) = bytes.get(*at) else {
            return Err("a varint is cut off".to_owned());
        };
        *at += 1;
        if shift == 63 && byte > 1 {
            return Err("a varint does not fit 64 bits".to_owned());
        }
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("a varint does not fit 64 bits".to_owned())
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

/// The code of `kind` in [`MOVEMENT_KINDS`] (a match, so a kind is told by
/// its length and a compare or two, not a search of the table; a test
/// checks that the two agree).
fn kind_code(kind: &str) -> Option<u8> {
    let code = match kind {
        "deposit" => 1,
        "transfer" => 2,
        "withdraw_hold" => 3,
        "withdraw_post" => 4,
        "withdraw_void" => 5,
        "pay_merchant_qr" => 6,
        "charge_payment_code" => 7,
        "refund" => 8,
        "fx_convert" => 9,
        "fx_convert_quote" => 10,
        "deposit_from" => 11,
        "withdraw_hold_to" => 12,
        "open_account" => 13,
        "freeze" => 14,
        "unfreeze" => 15,
        "close" => 16,
        "set_kyc_tier" => 17,
        "register_merchant_key" => 18,
        "issue_payment_code" => 19,
        "set_budget" => 20,
        "set_fx_rate" => 21,
        "set_fx_floor" => 22,
        "fx_quote" => 23,
        "bind_instrument" => 24,
        "verify_instrument" => 25,
        "unbind_instrument" => 26,
        _ => return None,
    };
    Some(code)
}

/// Appends `value` as a varint at `buffer[*at..]` (room for
/// [`VARINT_BYTES_MAX`] bytes) and moves past it.
#[inline]
fn put_varint_at(buffer: &mut [u8], at: &mut usize, mut value: u64) {
    while value >= 0x80 {
        buffer[*at] = value as u8 | 0x80;
        *at += 1;
        value >>= 7;
    }
    buffer[*at] = value as u8;
    *at += 1;
}

/// Appends `movement` in the compact layout of segment version 4 (layout
/// in docs/persistence.md): varints for the numbers, the timestamp as its
/// signed difference from `base_timestamp` (the segment's), the
/// counterparty of a house account less [`AccountId::HOUSE_FIRST`], the
/// kind as a code from [`MOVEMENT_KINDS`], mcc and instrument only when
/// present.
pub fn encode_movement_compact(movement: &Movement, base_timestamp: u64, out: &mut Vec<u8>) {
    let code = kind_code(&movement.kind);
    let kind = movement.kind.as_bytes();
    let kind = &kind[..kind.len().min(MOVEMENT_KIND_BYTES_MAX)];
    let mut flags = 0;
    if movement.instrument.is_some() {
        flags |= COMPACT_INSTRUMENT;
    }
    if movement.mcc != 0 {
        flags |= COMPACT_MCC;
    }
    let counterparty = if movement.counterparty.is_house() {
        flags |= COMPACT_HOUSE_COUNTERPARTY;
        movement.counterparty.0 - AccountId::HOUSE_FIRST
    } else {
        movement.counterparty.0
    };
    if code.is_none() {
        flags |= COMPACT_KIND_TEXT;
    }
    // The fixed-size part is built on the stack and copied once: the
    // history writer encodes every movement, so this is its hot loop.
    let mut buffer =
        [0u8; COMPACT_VALUE_BYTES_MAX - MOVEMENT_INSTRUMENT_BYTES - MOVEMENT_KIND_BYTES_MAX];
    let mut at = 0;
    buffer[0] = flags;
    at += 1;
    put_varint_at(&mut buffer, &mut at, movement.account.0);
    put_varint_at(&mut buffer, &mut at, counterparty);
    buffer[at..at + 16].copy_from_slice(&movement.command.0.to_le_bytes());
    at += 16;
    put_varint_at(&mut buffer, &mut at, movement.sequence);
    put_varint_at(
        &mut buffer,
        &mut at,
        zigzag(movement.timestamp.wrapping_sub(base_timestamp) as i64),
    );
    put_varint_at(&mut buffer, &mut at, u64::from(movement.position));
    put_varint_at(&mut buffer, &mut at, zigzag(movement.amount));
    put_varint_at(&mut buffer, &mut at, zigzag(movement.balance));
    buffer[at..at + 2].copy_from_slice(&movement.currency.numeric().to_le_bytes());
    at += 2;
    if movement.mcc != 0 {
        buffer[at..at + 2].copy_from_slice(&movement.mcc.to_le_bytes());
        at += 2;
    }
    match code {
        Some(code) if movement.instrument.is_none() => {
            buffer[at] = code;
            out.extend_from_slice(&buffer[..at + 1]);
        }
        _ => {
            out.extend_from_slice(&buffer[..at]);
            if let Some(instrument) = &movement.instrument {
                instrument.encode(out);
            }
            match code {
                Some(code) => out.push(code),
                None => {
                    out.push(kind.len() as u8);
                    out.extend_from_slice(kind);
                }
            }
        }
    }
}

/// The fields of a compact movement up to its timestamp, and where the
/// rest starts.
struct CompactHead {
    flags: u8,
    account: u64,
    /// As stored (a house account's less [`AccountId::HOUSE_FIRST`]).
    counterparty: u64,
    command: u128,
    sequence: u64,
    timestamp: u64,
    rest_at: usize,
}

fn decode_compact_head(bytes: &[u8], base_timestamp: u64) -> Result<CompactHead, String> {
    let Some(&flags) = bytes.first() else {
        return Err("a movement has no bytes".to_owned());
    };
    if flags & !COMPACT_FLAGS != 0 {
        return Err(format!("a movement has unknown flags {flags:#04x}"));
    }
    let mut at = 1;
    let account = get_varint(bytes, &mut at)?;
    let counterparty = get_varint(bytes, &mut at)?;
    let Some(command) = bytes.get(at..at + 16) else {
        return Err("a movement is cut off".to_owned());
    };
    let mut command_bytes = [0u8; 16];
    command_bytes.copy_from_slice(command);
    at += 16;
    let sequence = get_varint(bytes, &mut at)?;
    let timestamp = base_timestamp.wrapping_add(unzigzag(get_varint(bytes, &mut at)?) as u64);
    Ok(CompactHead {
        flags,
        account,
        counterparty,
        command: u128::from_le_bytes(command_bytes),
        sequence,
        timestamp,
        rest_at: at,
    })
}

/// Decodes what [`encode_movement_compact`] wrote (all of `bytes`).
pub fn decode_movement_compact(bytes: &[u8], base_timestamp: u64) -> Result<Movement, String> {
    let CompactHead {
        flags,
        account,
        counterparty,
        command,
        sequence,
        timestamp,
        rest_at: mut at,
    } = decode_compact_head(bytes, base_timestamp)?;
    let counterparty = if flags & COMPACT_HOUSE_COUNTERPARTY != 0 {
        counterparty
            .checked_add(AccountId::HOUSE_FIRST)
            .ok_or_else(|| "a movement's house counterparty is out of range".to_owned())?
    } else {
        counterparty
    };
    let position = u32::try_from(get_varint(bytes, &mut at)?)
        .map_err(|_| "a movement's position does not fit 32 bits".to_owned())?;
    let amount = unzigzag(get_varint(bytes, &mut at)?);
    let balance = unzigzag(get_varint(bytes, &mut at)?);
    let mut take = |n: usize| {
        let slice = bytes
            .get(at..at + n)
            .ok_or_else(|| "a movement is cut off".to_owned());
        at += n;
        slice
    };
    let numeric = take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))?;
    let mcc = if flags & COMPACT_MCC != 0 {
        take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))?
    } else {
        0
    };
    let instrument = if flags & COMPACT_INSTRUMENT != 0 {
        Some(MovementInstrument::decode(take(
            MOVEMENT_INSTRUMENT_BYTES,
        )?)?)
    } else {
        None
    };
    let first = take(1)?[0];
    let kind: Cow<'static, str> = if flags & COMPACT_KIND_TEXT != 0 {
        let text = take(first as usize)?;
        Cow::Owned(
            std::str::from_utf8(text)
                .map_err(|_| "a movement's kind is not UTF-8".to_owned())?
                .to_owned(),
        )
    } else {
        match MOVEMENT_KINDS.get(usize::from(first).wrapping_sub(1)) {
            Some(&kind) => Cow::Borrowed(kind),
            None => return Err(format!("unknown movement kind code {first}")),
        }
    };
    if at != bytes.len() {
        return Err(format!(
            "a movement has {} bytes, {} more than its fields",
            bytes.len(),
            bytes.len().saturating_sub(at)
        ));
    }
    let currency =
        Currency::from_numeric(numeric).ok_or_else(|| format!("unknown currency {numeric}"))?;
    Ok(Movement {
        account: AccountId(account),
        counterparty: AccountId(counterparty),
        command: CommandId(command),
        sequence,
        timestamp,
        position,
        kind,
        amount,
        balance,
        currency,
        mcc,
        instrument,
    })
}

/// The account, command and timestamp of a compact movement, read without
/// decoding the rest (for scans that only index movements).
pub fn movement_keys_compact(
    bytes: &[u8],
    base_timestamp: u64,
) -> Result<(AccountId, CommandId, u64), String> {
    let head = decode_compact_head(bytes, base_timestamp)?;
    Ok((
        AccountId(head.account),
        CommandId(head.command),
        head.timestamp,
    ))
}

/// Whether `movement` may be written as a follow-on of `previous`, the
/// movement record right before it (segment version 5): the same command,
/// batch, timestamp, kind, merchant category and instrument, and a later
/// place in the batch (a command's next leg).
pub fn can_follow(previous: &Movement, movement: &Movement) -> bool {
    movement.command == previous.command
        && movement.sequence == previous.sequence
        && movement.timestamp == previous.timestamp
        && movement.position > previous.position
        && movement.mcc == previous.mcc
        && movement.instrument == previous.instrument
        && movement.kind == previous.kind
}

/// Whether the follow-on `movement` mirrors `previous`: the other side of
/// the same double entry (a transfer's credit leg after its debit leg).
fn mirrors(previous: &Movement, movement: &Movement) -> bool {
    movement.account == previous.counterparty
        && movement.counterparty == previous.account
        && previous.amount.checked_neg() == Some(movement.amount)
        && movement.currency == previous.currency
        && !movement.account.is_house()
        && !movement.counterparty.is_house()
}

/// Appends `movement` as a follow-on of `previous` (for which
/// [`can_follow`] holds), whose record starts `back` bytes before this
/// one's: flags, `back`, the position's distance from `previous`'s, then
/// account, counterparty, amount and currency unless the flags say it
/// mirrors `previous`, then the balance (layout in docs/persistence.md).
/// The rest is `previous`'s.
pub fn encode_movement_follow_on(
    movement: &Movement,
    previous: &Movement,
    back: u8,
    out: &mut Vec<u8>,
) {
    debug_assert!(can_follow(previous, movement));
    let mirror = mirrors(previous, movement);
    let mut buffer = [0u8; FOLLOW_ON_BYTES_MAX];
    let mut flags = COMPACT_FOLLOWS;
    if mirror {
        flags |= COMPACT_MIRROR;
    }
    buffer[1] = back;
    let mut at = 2;
    put_varint_at(
        &mut buffer,
        &mut at,
        u64::from(movement.position.wrapping_sub(previous.position)),
    );
    if !mirror {
        let counterparty = if movement.counterparty.is_house() {
            flags |= COMPACT_HOUSE_COUNTERPARTY;
            movement.counterparty.0 - AccountId::HOUSE_FIRST
        } else {
            movement.counterparty.0
        };
        put_varint_at(&mut buffer, &mut at, movement.account.0);
        put_varint_at(&mut buffer, &mut at, counterparty);
        put_varint_at(&mut buffer, &mut at, zigzag(movement.amount));
        buffer[at..at + 2].copy_from_slice(&movement.currency.numeric().to_le_bytes());
        at += 2;
    }
    put_varint_at(&mut buffer, &mut at, zigzag(movement.balance));
    buffer[0] = flags;
    out.extend_from_slice(&buffer[..at]);
}

/// Appends a follow-on movement that mirrors the leg before it, at the
/// next position, with `balance` after it, the record of that leg
/// starting `back` bytes before this one: the bytes
/// [`encode_movement_follow_on`] writes for such a leg, without building
/// either movement (the history writer's path for a transfer's credit
/// leg, which a chunk holds in its debit leg's entry).
pub fn encode_movement_mirror(balance: i64, back: u8, out: &mut Vec<u8>) {
    // Byte by byte: a copy of these few bytes from a buffer on the stack
    // was a call to `memmove` (half the history writer's calls to it).
    out.reserve(3 + VARINT_BYTES_MAX);
    out.push(COMPACT_FOLLOWS | COMPACT_MIRROR);
    out.push(back);
    // The position's distance from the leg before's.
    out.push(1);
    put_varint(out, zigzag(balance));
}

/// How far before its own record a follow-on movement's first leg starts,
/// or `None` if `bytes` (a compact movement) is not a follow-on.
pub fn follow_on_back(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [flags, back, ..] if flags & COMPACT_FOLLOWS != 0 => Some(*back),
        _ => None,
    }
}

/// The account of the follow-on movement `bytes` whose first leg's
/// counterparty is `previous_counterparty`, read without decoding the rest
/// (for scans that only index movements).
pub fn follow_on_account(
    bytes: &[u8],
    previous_counterparty: AccountId,
) -> Result<AccountId, String> {
    let head = follow_on_head(bytes)?;
    if head.flags & COMPACT_MIRROR != 0 {
        return Ok(previous_counterparty);
    }
    let mut at = head.rest_at;
    Ok(AccountId(get_varint(bytes, &mut at)?))
}

struct FollowOnHead {
    flags: u8,
    delta: u64,
    rest_at: usize,
}

fn follow_on_head(bytes: &[u8]) -> Result<FollowOnHead, String> {
    let [flags, _back, ..] = bytes else {
        return Err("a follow-on movement is cut off".to_owned());
    };
    let flags = *flags;
    if flags & COMPACT_FOLLOWS == 0 || flags & !FOLLOW_ON_FLAGS != 0 {
        return Err(format!("a follow-on movement has flags {flags:#04x}"));
    }
    if flags & COMPACT_MIRROR != 0 && flags & COMPACT_HOUSE_COUNTERPARTY != 0 {
        return Err("a mirrored follow-on movement names a house counterparty".to_owned());
    }
    let mut at = 2;
    let delta = get_varint(bytes, &mut at)?;
    Ok(FollowOnHead {
        flags,
        delta,
        rest_at: at,
    })
}

/// Decodes what [`encode_movement_follow_on`] wrote (all of `bytes`),
/// given the movement of the record it follows.
pub fn decode_movement_follow_on(bytes: &[u8], previous: &Movement) -> Result<Movement, String> {
    let FollowOnHead {
        flags,
        delta,
        rest_at: mut at,
    } = follow_on_head(bytes)?;
    let position = u32::try_from(delta)
        .ok()
        .filter(|&delta| delta > 0)
        .and_then(|delta| previous.position.checked_add(delta))
        .ok_or_else(|| "a follow-on movement's position is out of range".to_owned())?;
    let (account, counterparty, amount, currency) = if flags & COMPACT_MIRROR != 0 {
        let amount = previous
            .amount
            .checked_neg()
            .ok_or_else(|| "a mirrored movement's amount is out of range".to_owned())?;
        (
            previous.counterparty,
            previous.account,
            amount,
            previous.currency,
        )
    } else {
        let account = AccountId(get_varint(bytes, &mut at)?);
        let counterparty = get_varint(bytes, &mut at)?;
        let counterparty = if flags & COMPACT_HOUSE_COUNTERPARTY != 0 {
            counterparty
                .checked_add(AccountId::HOUSE_FIRST)
                .ok_or_else(|| "a movement's house counterparty is out of range".to_owned())?
        } else {
            counterparty
        };
        let amount = unzigzag(get_varint(bytes, &mut at)?);
        let Some(numeric) = bytes.get(at..at + 2) else {
            return Err("a follow-on movement is cut off".to_owned());
        };
        at += 2;
        let numeric = u16::from_le_bytes([numeric[0], numeric[1]]);
        let currency =
            Currency::from_numeric(numeric).ok_or_else(|| format!("unknown currency {numeric}"))?;
        (account, AccountId(counterparty), amount, currency)
    };
    let balance = unzigzag(get_varint(bytes, &mut at)?);
    if at != bytes.len() {
        return Err(format!(
            "a follow-on movement has {} bytes, {} more than its fields",
            bytes.len(),
            bytes.len().saturating_sub(at)
        ));
    }
    Ok(Movement {
        account,
        counterparty,
        position,
        amount,
        balance,
        currency,
        ..previous.clone()
    })
}

/// The account, its counterparty, the command and the timestamp of a
/// compact movement that is not a follow-on, read without decoding the
/// rest.
pub fn movement_head_compact(
    bytes: &[u8],
    base_timestamp: u64,
) -> Result<(AccountId, AccountId, CommandId, u64), String> {
    let head = decode_compact_head(bytes, base_timestamp)?;
    let counterparty = if head.flags & COMPACT_HOUSE_COUNTERPARTY != 0 {
        head.counterparty
            .checked_add(AccountId::HOUSE_FIRST)
            .ok_or_else(|| "a movement's house counterparty is out of range".to_owned())?
    } else {
        head.counterparty
    };
    Ok((
        AccountId(head.account),
        AccountId(counterparty),
        CommandId(head.command),
        head.timestamp,
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
    /// The chunk's entry for this command (with this instrument), once a
    /// leg made one; `None` until then.
    pub entry: Option<u32>,
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
            entry: None,
        }
    }
}

/// Where the ledger collects movements while history is on.
#[derive(Clone, Debug, Default)]
pub(crate) struct HistorySink {
    pub context: MovementContext,
    pub movements: MovementChunk,
}

/// The batch a [`MovementChunk`]'s commands belong to: its sequence and
/// timestamp, written once per batch (a shard's chunk holds one segment,
/// so one batch), not once per command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkBatch {
    sequence: u64,
    timestamp: u64,
}

/// What one command's legs share in a [`MovementChunk`]: written once per
/// command, not once per leg.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkCommand {
    /// The command id's low and high halves (a `u128` field would align
    /// the entry, and pad it, to 16 bytes).
    command: [u64; 2],
    kind: &'static str,
    /// Its batch in [`MovementChunk::batches`].
    batch: u32,
    /// 0: none; else its instrument's index in
    /// [`MovementChunk::instruments`] plus 1 (rare: a top-up from an
    /// instrument, a withdrawal posted to one).
    instrument: u32,
}

/// One leg as the ledger records it: what only the ledger knows when the
/// money moves. When the command's next leg is its mirror (the other side
/// of the same double entry: account and counterparty swapped, amount
/// negated, same currency and merchant category, the next position; a
/// transfer's credit leg after its debit leg), the entry holds that leg
/// too, as its balance after it: one 56-byte entry for both legs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ChunkLeg {
    account: AccountId,
    counterparty: AccountId,
    amount: i64,
    balance: i64,
    /// The mirror leg's balance after it (if `mirrored`).
    mirror_balance: i64,
    position: u32,
    /// Its command's entry in [`MovementChunk::commands`].
    command: u32,
    currency: Currency,
    mcc: u16,
    /// The entry holds the mirror leg too (at `position + 1`).
    mirrored: bool,
}

const _: () = assert!(
    std::mem::size_of::<ChunkLeg>() == 56 && std::mem::size_of::<ChunkCommand>() == 40,
    "the sizes MovementChunk's documentation gives"
);

/// The movements a ledger (or a shard, for one segment of a batch) made,
/// in the order it made them, as they travel from the ledger to the
/// history writer: the batch's sequence and timestamp once per batch, the
/// command's id, kind and instrument once per command, the rest per leg,
/// and a transfer's two legs in one entry. A transfer takes one command
/// entry (40 bytes) and one leg entry (56) instead of two 128-byte
/// [`Movement`]s, written on the ordered path; the history writer builds
/// each [`Movement`] as it appends it, and writes a mirror leg as its
/// follow-on record straight from the entry. The chunk notes as the legs
/// come whether they are in log order ([`MovementChunk::ordered_range`]),
/// so the writer does not check every leg again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MovementChunk {
    batches: Vec<ChunkBatch>,
    commands: Vec<ChunkCommand>,
    instruments: Vec<MovementInstrument>,
    legs: Vec<ChunkLeg>,
    /// Movements held (a mirrored entry holds two).
    movements: usize,
    /// The order keys ([`Movement::order_key`]) of the first and the last
    /// movement pushed.
    first_key: OrderKey,
    last_key: OrderKey,
    /// A movement was pushed whose order key is not above the one before.
    unordered: bool,
}

impl MovementChunk {
    /// Movements held.
    pub fn len(&self) -> usize {
        self.movements
    }

    pub fn is_empty(&self) -> bool {
        self.movements == 0
    }

    /// Leg entries held (an entry holding a mirror leg holds two
    /// movements).
    #[cfg(test)]
    pub(crate) fn legs_held(&self) -> usize {
        self.legs.len()
    }

    /// Room for `commands` commands' legs without growing: a command entry
    /// each, and a leg entry and a half (a transfer's two legs take one).
    pub fn reserve(&mut self, commands: usize) {
        self.commands.reserve(commands);
        self.legs.reserve(commands.saturating_add(commands / 2));
    }

    pub fn clear(&mut self) {
        self.batches.clear();
        self.commands.clear();
        self.instruments.clear();
        self.legs.clear();
        self.movements = 0;
        self.first_key = OrderKey::default();
        self.last_key = OrderKey::default();
        self.unordered = false;
    }

    /// Every movement, in the order made.
    pub fn iter(&self) -> impl Iterator<Item = Movement> + '_ {
        self.refs().map(|movement| movement.movement().into_owned())
    }

    /// Every movement as its leg entry, command and batch, in the order
    /// made (the history store encodes them without building each
    /// [`Movement`] into memory first).
    pub(crate) fn refs(&self) -> ChunkRefs<'_> {
        ChunkRefs::new(std::slice::from_ref(self))
    }

    /// `leg`'s entry with its command's and batch's.
    #[inline]
    fn leg_ref<'a>(&'a self, leg: &'a ChunkLeg) -> Option<LegRef<'a>> {
        let command = self.commands.get(leg.command as usize)?;
        let batch = self.batches.get(command.batch as usize)?;
        let instrument = match command.instrument {
            0 => None,
            n => Some(self.instruments.get(n as usize - 1)?),
        };
        Some(LegRef {
            command,
            batch,
            instrument,
            leg,
        })
    }

    /// The log order keys ([`Movement::order_key`]) of the first and the
    /// last movement if the chunk is in log order; `None` if it is empty
    /// or not in order. Noted as the legs were pushed: no pass over them.
    pub(crate) fn ordered_range(&self) -> Option<(OrderKey, OrderKey)> {
        (!self.is_empty() && !self.unordered).then_some((self.first_key, self.last_key))
    }

    /// Notes the order key of the movement just pushed.
    #[inline]
    fn note_key(&mut self, key: OrderKey) {
        if self.movements == 0 {
            self.first_key = key;
        } else if key <= self.last_key {
            self.unordered = true;
        }
        self.last_key = key;
        self.movements += 1;
    }

    /// Appends a leg of the command `context` describes: its command entry
    /// first if the context has none yet (the context then names it). A
    /// leg that mirrors the entry pushed right before it is folded into
    /// that entry.
    pub(crate) fn push(
        &mut self,
        context: &mut MovementContext,
        account: &crate::ledger::Account,
        counterparty: AccountId,
        amount: i64,
        mcc: u16,
        leg: u32,
    ) {
        let command = match context.entry {
            Some(entry) => entry,
            None => self.push_command(context),
        };
        let position = position_of(context.index, leg);
        let key = (context.sequence, position, account.id.0);
        if let Some(last) = self.legs.last_mut() {
            if last.command == command
                && !last.mirrored
                && last.position.checked_add(1) == Some(position)
                && last.account == counterparty
                && last.counterparty == account.id
                && last.amount.checked_neg() == Some(amount)
                && last.currency == account.currency
                && last.mcc == mcc
            {
                last.mirrored = true;
                last.mirror_balance = account.balance;
                self.note_key(key);
                return;
            }
        }
        self.legs.push(ChunkLeg {
            account: account.id,
            counterparty,
            amount,
            balance: account.balance,
            mirror_balance: 0,
            position,
            command,
            currency: account.currency,
            mcc,
            mirrored: false,
        });
        self.note_key(key);
    }

    /// A command entry for `context`'s command (and a batch entry, if the
    /// last one is another batch's), which the context then names.
    fn push_command(&mut self, context: &mut MovementContext) -> u32 {
        let batch = ChunkBatch {
            sequence: context.sequence,
            timestamp: context.timestamp,
        };
        if self.batches.last() != Some(&batch) {
            self.batches.push(batch);
        }
        let batch = u32::try_from(self.batches.len() - 1).unwrap_or(u32::MAX);
        let instrument = match context.instrument {
            Some(instrument) => {
                self.instruments.push(instrument);
                u32::try_from(self.instruments.len()).unwrap_or(u32::MAX)
            }
            None => 0,
        };
        let entry = u32::try_from(self.commands.len()).unwrap_or(u32::MAX);
        let id = context.command.0;
        self.commands.push(ChunkCommand {
            command: [id as u64, (id >> 64) as u64],
            kind: context.kind,
            batch,
            instrument,
        });
        context.entry = Some(entry);
        entry
    }
}

/// The movements of chunks one after the other, as [`MovementRef`]s: a
/// small cursor, so the history store's look-aheads (clones of it) cost a
/// copy of a few words.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkRefs<'a> {
    chunks: &'a [MovementChunk],
    chunk: usize,
    leg: usize,
    /// The next is the mirror leg of entry `leg`.
    mirror: bool,
}

impl<'a> ChunkRefs<'a> {
    pub(crate) fn new(chunks: &'a [MovementChunk]) -> ChunkRefs<'a> {
        ChunkRefs {
            chunks,
            chunk: 0,
            leg: 0,
            mirror: false,
        }
    }
}

impl<'a> Iterator for ChunkRefs<'a> {
    type Item = MovementRef<'a>;

    #[inline]
    fn next(&mut self) -> Option<MovementRef<'a>> {
        loop {
            let chunk = self.chunks.get(self.chunk)?;
            let Some(leg) = chunk.legs.get(self.leg) else {
                self.chunk += 1;
                self.leg = 0;
                self.mirror = false;
                continue;
            };
            let mirror = self.mirror;
            if !mirror && leg.mirrored {
                self.mirror = true;
            } else {
                self.leg += 1;
                self.mirror = false;
            }
            // An entry always has its command and batch (pushed with it).
            if let Some(leg) = chunk.leg_ref(leg) {
                return Some(MovementRef::Leg(leg, mirror));
            }
        }
    }
}

/// A chunk's leg entry with what it shares with its command's other legs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LegRef<'a> {
    command: &'a ChunkCommand,
    batch: &'a ChunkBatch,
    instrument: Option<&'a MovementInstrument>,
    leg: &'a ChunkLeg,
}

/// The movement of a chunk's leg entry: its first leg, or (`mirror`) the
/// mirror leg it holds.
#[inline]
fn leg_movement(leg: LegRef<'_>, mirror: bool) -> Movement {
    let entry = leg.leg;
    let (account, counterparty, amount, balance, position) = if mirror {
        (
            entry.counterparty,
            entry.account,
            entry.amount.wrapping_neg(),
            entry.mirror_balance,
            entry.position.saturating_add(1),
        )
    } else {
        (
            entry.account,
            entry.counterparty,
            entry.amount,
            entry.balance,
            entry.position,
        )
    };
    Movement {
        account,
        counterparty,
        command: command_id(leg.command),
        sequence: leg.batch.sequence,
        timestamp: leg.batch.timestamp,
        position,
        kind: Cow::Borrowed(leg.command.kind),
        amount,
        balance,
        currency: entry.currency,
        mcc: entry.mcc,
        instrument: leg.instrument.copied(),
    }
}

fn command_id(command: &ChunkCommand) -> CommandId {
    CommandId(u128::from(command.command[0]) | (u128::from(command.command[1]) << 64))
}

/// A movement on its way to the history store: built, or a chunk's leg
/// entry with its command's (built only as it is encoded): its first leg,
/// or (`true`) the mirror leg it holds.
#[derive(Clone, Copy, Debug)]
pub(crate) enum MovementRef<'a> {
    Built(&'a Movement),
    Leg(LegRef<'a>, bool),
}

impl<'a> MovementRef<'a> {
    pub fn account(self) -> AccountId {
        match self {
            MovementRef::Built(movement) => movement.account,
            MovementRef::Leg(leg, false) => leg.leg.account,
            MovementRef::Leg(leg, true) => leg.leg.counterparty,
        }
    }

    /// The command and its batch's sequence, which tell a command's legs.
    pub fn command(self) -> (CommandId, u64) {
        match self {
            MovementRef::Built(movement) => (movement.command, movement.sequence),
            MovementRef::Leg(leg, _) => (command_id(leg.command), leg.batch.sequence),
        }
    }

    pub fn timestamp(self) -> u64 {
        match self {
            MovementRef::Built(movement) => movement.timestamp,
            MovementRef::Leg(leg, _) => leg.batch.timestamp,
        }
    }

    /// The balance after the movement, if `self` is the mirror leg of
    /// `previous`'s entry (a chunk's entry holding both): the one field of
    /// a mirror follow-on record ([`encode_movement_mirror`]) that
    /// `previous` does not give.
    pub fn mirror_of(self, previous: MovementRef<'_>) -> Option<i64> {
        match (previous, self) {
            (MovementRef::Leg(first, false), MovementRef::Leg(mirror, true))
                if std::ptr::eq(first.leg, mirror.leg) =>
            {
                Some(mirror.leg.mirror_balance)
            }
            _ => None,
        }
    }

    /// The movement: borrowed if built, else built now (on the stack).
    pub fn movement(self) -> Cow<'a, Movement> {
        match self {
            MovementRef::Built(movement) => Cow::Borrowed(movement),
            MovementRef::Leg(leg, mirror) => Cow::Owned(leg_movement(leg, mirror)),
        }
    }
}

/// A chunk's movements, built (for tests and tools; the history writer
/// builds them one at a time).
impl IntoIterator for MovementChunk {
    type Item = Movement;
    type IntoIter = std::vec::IntoIter<Movement>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter().collect::<Vec<_>>().into_iter()
    }
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

    fn account(id: u64, balance: i64, currency: Currency) -> crate::ledger::Account {
        crate::ledger::Account {
            id: AccountId(id),
            owner: id,
            balance,
            debits_pending: 0,
            credits_pending: 0,
            currency,
            kind: crate::command::AccountKind::Customer,
            status: crate::command::AccountStatus::Active,
            kyc_tier: 1,
            mcc: 0,
            holds_pending: 0,
            codes_live: 0,
        }
    }

    #[test]
    fn a_chunk_builds_each_leg_with_its_own_commands_fields() {
        let mut chunk = MovementChunk::default();
        let mut context = MovementContext {
            command: CommandId(11),
            kind: "transfer",
            sequence: 5,
            timestamp: 1_000,
            mcc: 0,
            index: 3,
            ..MovementContext::default()
        };
        let payer = account(1, 900, Currency::CNY);
        let payee = account(2, 100, Currency::CNY);
        chunk.push(&mut context, &payer, payee.id, -100, 0, 0);
        chunk.push(&mut context, &payee, payer.id, 100, 0, 1);
        // A top-up from an instrument, then the same command's next legs
        // with none: each instrument its own command entry.
        let instrument = MovementInstrument {
            number: 2,
            bank: crate::instrument::InstrumentText(*b"ICBC\0\0\0\0\0\0\0\0\0\0\0\0"),
            last_four: *b"4242",
        };
        context = MovementContext {
            command: CommandId(12),
            kind: "deposit_from",
            sequence: 6,
            timestamp: 2_000,
            index: 0,
            instrument: Some(instrument),
            ..MovementContext::default()
        };
        let topped = account(3, 50, Currency::USD);
        chunk.push(
            &mut context,
            &topped,
            AccountId(AccountId::HOUSE_FIRST),
            50,
            5411,
            1,
        );
        context.instrument = None;
        context.entry = None;
        chunk.push(&mut context, &topped, AccountId(1), -7, 0, 2);
        assert_eq!(chunk.len(), 4);
        assert_eq!(
            chunk.commands.len(),
            3,
            "one entry per command and instrument"
        );
        assert_eq!(
            chunk.legs.len(),
            3,
            "the transfer's credit leg is held in its debit leg's entry"
        );
        assert_eq!(chunk.batches.len(), 2, "one entry per batch");

        let leg = |account: u64, counterparty: AccountId, amount, balance, position| Movement {
            account: AccountId(account),
            counterparty,
            command: CommandId(11),
            sequence: 5,
            timestamp: 1_000,
            position,
            kind: Cow::Borrowed("transfer"),
            amount,
            balance,
            currency: Currency::CNY,
            mcc: 0,
            instrument: None,
        };
        let top_up = Movement {
            account: AccountId(3),
            counterparty: AccountId(AccountId::HOUSE_FIRST),
            command: CommandId(12),
            sequence: 6,
            timestamp: 2_000,
            position: 1,
            kind: Cow::Borrowed("deposit_from"),
            amount: 50,
            balance: 50,
            currency: Currency::USD,
            mcc: 5411,
            instrument: Some(instrument),
        };
        let after = Movement {
            counterparty: AccountId(1),
            position: 2,
            amount: -7,
            mcc: 0,
            instrument: None,
            ..top_up.clone()
        };
        let want = vec![
            leg(1, AccountId(2), -100, 900, 3 * MOVEMENT_LEGS_MAX),
            leg(2, AccountId(1), 100, 100, 3 * MOVEMENT_LEGS_MAX + 1),
            top_up,
            after,
        ];
        assert_eq!(chunk.iter().collect::<Vec<_>>(), want);
        assert_eq!(chunk.clone().into_iter().collect::<Vec<_>>(), want);
        assert_eq!(
            chunk.ordered_range(),
            Some((want[0].order_key(), want[3].order_key()))
        );
        chunk.clear();
        assert!(chunk.is_empty());
        assert_eq!(chunk.ordered_range(), None);
    }

    #[test]
    fn a_chunk_folds_only_a_true_mirror_leg_and_notes_its_order() {
        let payer = account(1, 900, Currency::CNY);
        let payee = account(2, 100, Currency::CNY);
        let mut context = MovementContext {
            command: CommandId(21),
            kind: "transfer",
            sequence: 9,
            timestamp: 5,
            index: 1,
            ..MovementContext::default()
        };
        // Not mirrors: another amount, another merchant category, legs
        // not next to each other, the same leg twice.
        let cases: [(i64, u16, u32); 4] = [(99, 0, 1), (100, 5411, 1), (100, 0, 3), (100, 0, 0)];
        for (amount, mcc, leg) in cases {
            let mut chunk = MovementChunk::default();
            context.entry = None;
            chunk.push(&mut context, &payer, payee.id, -100, 0, 0);
            chunk.push(&mut context, &payee, payer.id, amount, mcc, leg);
            assert_eq!(chunk.len(), 2);
            assert_eq!(chunk.legs.len(), 2, "{amount} {mcc} {leg}");
            let built: Vec<Movement> = chunk.iter().collect();
            assert_eq!(built[1].amount, amount);
            assert_eq!(built[1].mcc, mcc);
            assert_eq!(built[1].position, MOVEMENT_LEGS_MAX + leg);
            assert_eq!(
                chunk.ordered_range(),
                Some((built[0].order_key(), built[1].order_key()))
            );
        }
        // A leg before the one pushed before it: out of log order.
        let mut chunk = MovementChunk::default();
        context.entry = None;
        chunk.push(&mut context, &payer, payee.id, -100, 0, 3);
        chunk.push(&mut context, &payee, payer.id, 100, 0, 1);
        assert_eq!(chunk.ordered_range(), None);
        // A mirror leg, then a third leg: it starts an entry of its own.
        let mut chunk = MovementChunk::default();
        context.entry = None;
        chunk.push(&mut context, &payer, payee.id, -100, 0, 0);
        chunk.push(&mut context, &payee, payer.id, 100, 0, 1);
        chunk.push(&mut context, &payer, payee.id, -100, 0, 2);
        assert_eq!((chunk.len(), chunk.legs.len()), (3, 2));
        let refs: Vec<MovementRef<'_>> = chunk.refs().collect();
        assert_eq!(refs[1].mirror_of(refs[0]), Some(100));
        assert_eq!(refs[2].mirror_of(refs[1]), None);
        assert_eq!(refs[1].account(), payee.id);
        // An earlier batch after a later one: out of order.
        context.sequence = 8;
        context.entry = None;
        chunk.push(&mut context, &payer, payee.id, -1, 0, 0);
        assert_eq!(chunk.ordered_range(), None);
    }

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
    fn compact_movements_round_trip_and_are_short() {
        let base = 1_700_000_000_000_000_000;
        let house = AccountId(AccountId::HOUSE_FIRST + 3);
        let cases = [
            movement(),
            Movement {
                mcc: 0,
                ..movement()
            },
            Movement {
                counterparty: house,
                kind: Cow::Borrowed("deposit"),
                amount: i64::MAX,
                balance: i64::MIN,
                ..movement()
            },
            // Before the base (a segment's first movement need not be its
            // oldest), a kind without a code, an instrument.
            Movement {
                timestamp: 5,
                sequence: u64::MAX,
                position: u32::MAX,
                account: AccountId(u64::MAX - 1),
                kind: Cow::Owned("a_kind_of_the_future".to_owned()),
                instrument: Some(MovementInstrument {
                    number: 2,
                    bank: BankName::new("ICBC").unwrap(),
                    last_four: *b"4242",
                }),
                ..movement()
            },
        ];
        for case in cases {
            let mut bytes = Vec::new();
            encode_movement_compact(&case, base, &mut bytes);
            assert!(bytes.len() <= COMPACT_VALUE_BYTES_MAX);
            assert_eq!(decode_movement_compact(&bytes, base), Ok(case.clone()));
            assert_eq!(
                movement_keys_compact(&bytes, base),
                Ok((case.account, case.command, case.timestamp))
            );
            // Cut short or with a byte more: damage, never a wrong movement.
            assert!(decode_movement_compact(&bytes[..bytes.len() - 1], base).is_err());
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(decode_movement_compact(&longer, base).is_err());
        }
        // A transfer leg between ordinary accounts, a few seconds into its
        // segment: 40 bytes, against 82 in value version 1.
        let leg = Movement {
            account: AccountId(1_234),
            counterparty: AccountId(98_765),
            timestamp: base + 3_000_000_000,
            sequence: 120_000,
            position: 40 * 256,
            mcc: 0,
            ..movement()
        };
        let mut bytes = Vec::new();
        encode_movement_compact(&leg, base, &mut bytes);
        assert_eq!(bytes.len(), 40);
        let mut wrong = bytes.clone();
        wrong[0] |= 0x80;
        assert!(decode_movement_compact(&wrong, base).is_err());
        let code_at = bytes.len() - 1;
        wrong = bytes.clone();
        wrong[code_at] = 200;
        assert!(decode_movement_compact(&wrong, base).is_err());
    }

    #[test]
    fn follow_on_legs_round_trip_and_their_bytes_are_the_documented_ones() {
        let debit = Movement {
            account: AccountId(1_234),
            counterparty: AccountId(98_765),
            position: 40 * MOVEMENT_LEGS_MAX,
            mcc: 0,
            ..movement()
        };
        // A transfer's credit leg mirrors its debit leg: five bytes
        // (docs/persistence.md, "History layout": flags 16 | 32, back,
        // the position's delta, the balance 5,000 zigzag-coded).
        let credit = Movement {
            account: debit.counterparty,
            counterparty: debit.account,
            position: debit.position + 1,
            amount: 1_250,
            balance: 5_000,
            ..debit.clone()
        };
        assert!(can_follow(&debit, &credit));
        let mut bytes = Vec::new();
        encode_movement_follow_on(&credit, &debit, 45, &mut bytes);
        assert_eq!(bytes, [0x30, 45, 0x01, 0x90, 0x4e]);
        assert_eq!(follow_on_back(&bytes), Some(45));
        assert_eq!(
            decode_movement_follow_on(&bytes, &debit),
            Ok(credit.clone())
        );
        assert_eq!(
            follow_on_account(&bytes, debit.counterparty),
            Ok(credit.account)
        );
        // A leg that does not mirror (an FX conversion's second leg, in
        // its own currency against a house account) keeps those fields.
        let house = AccountId(AccountId::HOUSE_FIRST + 9);
        let other = Movement {
            account: AccountId(1_234),
            counterparty: house,
            position: debit.position + 3,
            amount: 17,
            balance: -3,
            currency: Currency::USD,
            ..debit.clone()
        };
        bytes.clear();
        encode_movement_follow_on(&other, &debit, 160, &mut bytes);
        assert_eq!(bytes[0], 0x10 | 0x04);
        assert_eq!(decode_movement_follow_on(&bytes, &debit), Ok(other.clone()));
        assert_eq!(
            follow_on_account(&bytes, debit.counterparty),
            Ok(other.account)
        );
        // Not a leg of the same command, batch, timestamp, kind, mcc or
        // instrument, or not a later one: written whole.
        for changed in [
            Movement {
                command: CommandId(5),
                ..credit.clone()
            },
            Movement {
                sequence: 43,
                ..credit.clone()
            },
            Movement {
                timestamp: credit.timestamp + 1,
                ..credit.clone()
            },
            Movement {
                kind: Cow::Borrowed("refund"),
                ..credit.clone()
            },
            Movement {
                mcc: 5812,
                ..credit.clone()
            },
            Movement {
                position: debit.position,
                ..credit.clone()
            },
        ] {
            assert!(!can_follow(&debit, &changed), "{changed:?}");
        }
        // Damage: cut short, a byte more, a full movement's flags, flags
        // that mirror and name a house, a position that does not move on.
        let mut mirrored = Vec::new();
        encode_movement_follow_on(&credit, &debit, 45, &mut mirrored);
        assert!(decode_movement_follow_on(&mirrored[..4], &debit).is_err());
        let mut longer = mirrored.clone();
        longer.push(0);
        assert!(decode_movement_follow_on(&longer, &debit).is_err());
        let mut wrong = mirrored.clone();
        wrong[0] = 0x02;
        assert_eq!(follow_on_back(&wrong), None);
        assert!(decode_movement_follow_on(&wrong, &debit).is_err());
        wrong[0] = 0x34;
        assert!(decode_movement_follow_on(&wrong, &debit).is_err());
        wrong = mirrored.clone();
        wrong[2] = 0;
        assert!(decode_movement_follow_on(&wrong, &debit).is_err());
        // A version-4 reader refuses a follow-on's flags.
        assert!(decode_movement_compact(&mirrored, 0).is_err());
    }

    #[test]
    fn every_command_kind_that_moves_money_has_a_code() {
        for kind in [
            "deposit",
            "transfer",
            "withdraw_post",
            "pay_merchant_qr",
            "charge_payment_code",
            "refund",
            "fx_convert",
            "fx_convert_quote",
            "deposit_from",
        ] {
            assert!(kind_code(kind).is_some(), "{kind}");
        }
        let mut sorted = MOVEMENT_KINDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), MOVEMENT_KINDS.len());
        // The match that encodes agrees with the table that decodes.
        for (index, kind) in MOVEMENT_KINDS.iter().enumerate() {
            assert_eq!(kind_code(kind), Some(index as u8 + 1), "{kind}");
        }
        assert_eq!(kind_code("transfer_"), None);
    }

    #[test]
    fn varints_round_trip_and_overlong_ones_are_refused() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, value);
            let mut at = 0;
            assert_eq!(get_varint(&bytes, &mut at), Ok(value));
            assert_eq!(at, bytes.len());
        }
        let mut at = 0;
        assert!(get_varint(&[0xff; 11], &mut at).is_err());
        let mut at = 0;
        assert!(get_varint(&[0x80, 0x80], &mut at).is_err());
        for value in [0, -1, 1, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(value)), value);
        }
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
