//! One log record: a batch of commands or a checkpoint marker, with a
//! versioned, checksummed encoding.
//!
//! Layout (all integers little-endian; docs/persistence.md has the diagram):
//!
//! ```text
//! offset size field
//!      0    2 magic       b"pr"
//!      2    1 version     1
//!      3    1 kind        1 = batch, 2 = checkpoint marker, 3 = risk policy
//!      4    8 sequence    u64
//!     12    8 timestamp   u64, ns since the Unix epoch
//!     20    4 body_len    u32, bytes after the header
//!     24    4 crc32c      over bytes 0..24, then the body
//!     28    . body        batch: command_count u32, then each command
//!                         (bincode's bytes: fixed-width integers,
//!                         little-endian; written and read field by field
//!                         by `command::codec`);
//!                         checkpoint marker: empty;
//!                         risk policy: the policy put in force (bincode,
//!                         fixed-width integers, at most 32 KiB)
//! ```
//!
//! A risk policy is a record of its own rather than a command: it is
//! variable-length (block lists of up to 1,024 entries) while commands are
//! small and fixed-size. It is applied in log order between batches, so a
//! replay uses the policy that was in force at each point.
//!
//! Decoding checks everything: magic, version, kind, body length against its
//! bound and against the bytes actually present (truncation and trailing
//! bytes), the checksum, the command count and that the commands fill the
//! body exactly. A single flipped bit anywhere is an error.

use bincode::config::{Configuration, Fixint, LittleEndian, NoLimit};

use crate::command::codec::{decode_command, encode_command, COMMAND_BYTES_MAX};
use crate::command::{AccountId, Command, CommandKind, OpenAccount};
use crate::currency::Currency;
use crate::limits;
use crate::risk::policy::canonical_config;
use crate::risk::RiskPolicy;

/// First two bytes of every record.
pub const RECORD_MAGIC: [u8; 2] = *b"pr";
/// The record format this build writes and reads.
pub const RECORD_VERSION: u8 = 1;
/// Bytes before the body.
pub const RECORD_HEADER_BYTES: usize = 28;
/// Bytes one command may take in a record body, for the body's bound (the
/// largest command takes `COMMAND_BYTES_MAX`, 127; tested).
pub const COMMAND_ENCODED_BYTES_MAX: usize = 128;
/// Most bytes a record body may have: a full batch of the largest commands.
pub const RECORD_BODY_BYTES_MAX: usize = 4 + limits::BATCH_COMMANDS_MAX * COMMAND_ENCODED_BYTES_MAX;
/// Most bytes one encoded record may have.
pub const RECORD_BYTES_MAX: usize = RECORD_HEADER_BYTES + RECORD_BODY_BYTES_MAX;

const _: () = assert!(
    RECORD_BODY_BYTES_MAX <= u32::MAX as usize,
    "body_len is u32"
);
const _: () = assert!(
    limits::BATCH_COMMANDS_MAX <= u32::MAX as usize,
    "count is u32"
);
const _: () = assert!(
    COMMAND_BYTES_MAX <= COMMAND_ENCODED_BYTES_MAX,
    "a full batch of the largest command fits the body's bound"
);

const KIND_BATCH: u8 = 1;
const KIND_CHECKPOINT: u8 = 2;
const KIND_RISK_POLICY: u8 = 3;
const CRC_OFFSET: usize = 24;

/// bincode settings for record bodies and checkpoint state: fixed-width
/// little-endian integers, so sizes are known and stable across platforms.
pub(crate) const BINCODE: Configuration<LittleEndian, Fixint, NoLimit> =
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian();

/// One log record: a batch of commands, or a checkpoint marker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub sequence: u64,
    pub timestamp: u64,
    pub entry: LogEntry,
}

/// What a log record holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogEntry {
    /// Commands applied together with this record's sequence and timestamp.
    Batch(Vec<Command>),
    /// The ledger state before this record is checkpointed.
    Checkpoint,
    /// From this record on, this risk policy is in force.
    RiskPolicy(Box<RiskPolicy>),
}

/// Why bytes are not a valid log record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("the record has {len} bytes, fewer than the {RECORD_HEADER_BYTES}-byte header")]
    TooShort { len: usize },
    #[error("the record does not start with the record magic")]
    BadMagic,
    #[error(
        "record format version {version} is not supported (this build reads {RECORD_VERSION})"
    )]
    UnsupportedVersion { version: u8 },
    #[error("record kind {kind} is unknown")]
    UnknownKind { kind: u8 },
    #[error(
        "the record body claims {body_len} bytes, more than the {RECORD_BODY_BYTES_MAX} allowed"
    )]
    BodyTooLong { body_len: u32 },
    #[error("the record body claims {body_len} bytes but {present} are present (truncated or trailing bytes)")]
    LengthMismatch { body_len: u32, present: usize },
    #[error(
        "the record checksum does not match (stored {stored:#010x}, computed {computed:#010x})"
    )]
    ChecksumMismatch { stored: u32, computed: u32 },
    #[error(
        "the batch claims {count} commands, more than the {} allowed",
        limits::BATCH_COMMANDS_MAX
    )]
    TooManyCommands { count: u32 },
    #[error("command {index} of the batch does not decode: {reason}")]
    BadCommand { index: u32, reason: String },
    #[error("the batch body has {count} bytes left after its last command")]
    TrailingBytes { count: usize },
    #[error("a checkpoint marker has a {body_len}-byte body; it must be empty")]
    CheckpointWithBody { body_len: u32 },
    #[error("the risk policy record does not decode: {reason}")]
    BadRiskPolicy { reason: String },
}

/// A `bincode` writer appending to a vector; it cannot fail.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Appends the fixed-width bincode encoding of `value` to `out`.
pub(crate) fn encode_value<T: bincode::Encode>(value: &T, out: &mut Vec<u8>) {
    let result = bincode::encode_into_writer(value, VecWriter(out), BINCODE);
    // Only a failing writer or a failing `Encode` impl can err: ours cannot,
    // and the types encoded here have derived (infallible) impls.
    assert!(result.is_ok(), "encoding into a vector failed: {result:?}");
}

/// Decodes one `T` from the front of `bytes`; returns it and the bytes used.
pub(crate) fn decode_value<T: bincode::Decode<()>>(bytes: &[u8]) -> Result<(T, usize), String> {
    bincode::decode_from_slice(bytes, BINCODE).map_err(|error| error.to_string())
}

impl LogRecord {
    pub fn batch(sequence: u64, timestamp: u64, commands: Vec<Command>) -> LogRecord {
        LogRecord {
            sequence,
            timestamp,
            entry: LogEntry::Batch(commands),
        }
    }

    pub fn checkpoint(sequence: u64, timestamp: u64) -> LogRecord {
        LogRecord {
            sequence,
            timestamp,
            entry: LogEntry::Checkpoint,
        }
    }

    /// Appends this record's encoding to `out` (layout in the module docs).
    ///
    /// A batch must hold at most `BATCH_COMMANDS_MAX` commands: the api
    /// refuses bigger ones at the edge, so more is a programmer error.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let kind = match &self.entry {
            LogEntry::Batch(_) => KIND_BATCH,
            LogEntry::Checkpoint => KIND_CHECKPOINT,
            LogEntry::RiskPolicy(_) => KIND_RISK_POLICY,
        };
        out.extend_from_slice(&RECORD_MAGIC);
        out.push(RECORD_VERSION);
        out.push(kind);
        out.extend_from_slice(&self.sequence.to_le_bytes());
        out.extend_from_slice(&self.timestamp.to_le_bytes());
        out.extend_from_slice(&[0; 8]); // body_len and crc32c, filled in below
        let body_start = out.len();
        if let LogEntry::Batch(commands) = &self.entry {
            assert!(commands.len() <= limits::BATCH_COMMANDS_MAX);
            out.reserve(4 + commands.len() * COMMAND_ENCODED_BYTES_MAX);
            out.extend_from_slice(&(commands.len() as u32).to_le_bytes());
            for command in commands {
                encode_command(command, out);
            }
        }
        if let LogEntry::RiskPolicy(policy) = &self.entry {
            let bytes = policy.encode_canonical();
            assert!(bytes.len() <= crate::risk::bounds::POLICY_ENCODED_BYTES_MAX);
            out.extend_from_slice(&bytes);
        }
        let body_len = out.len() - body_start;
        assert!(body_len <= RECORD_BODY_BYTES_MAX);
        out[start + 20..start + 24].copy_from_slice(&(body_len as u32).to_le_bytes());
        let crc = checksum(&out[start..start + CRC_OFFSET], &out[body_start..]);
        out[start + 24..start + 28].copy_from_slice(&crc.to_le_bytes());
    }

    /// This record's encoding in a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes one record that fills `bytes` exactly; every field is checked.
    pub fn decode(bytes: &[u8]) -> Result<LogRecord, RecordError> {
        LogRecord::decode_reusing(bytes, Vec::new())
    }

    /// `decode`, with a batch's commands put into `spare` (emptied first)
    /// instead of a new vector: a reader of many records hands back the
    /// vector of the record before, so a replay allocates no vector per
    /// record (a full batch's is about 1 MiB). `spare` is dropped when the
    /// record is not a batch or does not decode.
    pub fn decode_reusing(bytes: &[u8], spare: Vec<Command>) -> Result<LogRecord, RecordError> {
        let header = decode_header(bytes)?;
        let body = &bytes[RECORD_HEADER_BYTES..];
        let entry = match header.kind {
            KIND_BATCH => LogEntry::Batch(decode_batch(body, spare)?),
            KIND_RISK_POLICY => LogEntry::RiskPolicy(Box::new(decode_policy(body)?)),
            _ => {
                debug_assert_eq!(header.kind, KIND_CHECKPOINT);
                if !body.is_empty() {
                    return Err(RecordError::CheckpointWithBody {
                        body_len: header.body_len,
                    });
                }
                LogEntry::Checkpoint
            }
        };
        Ok(LogRecord {
            sequence: header.sequence,
            timestamp: header.timestamp,
            entry,
        })
    }

    /// Number of commands (0 for a checkpoint marker).
    pub fn command_count(&self) -> usize {
        match &self.entry {
            LogEntry::Batch(commands) => commands.len(),
            LogEntry::Checkpoint | LogEntry::RiskPolicy(_) => 0,
        }
    }
}

struct Header {
    kind: u8,
    sequence: u64,
    timestamp: u64,
    body_len: u32,
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    let mut buffer = [0u8; 4];
    buffer.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(buffer)
}

fn u64_at(bytes: &[u8], offset: usize) -> u64 {
    let mut buffer = [0u8; 8];
    buffer.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(buffer)
}

fn checksum(header: &[u8], body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(header), body)
}

/// Checks everything but the body's contents.
fn decode_header(bytes: &[u8]) -> Result<Header, RecordError> {
    if bytes.len() < RECORD_HEADER_BYTES {
        return Err(RecordError::TooShort { len: bytes.len() });
    }
    if bytes[0..2] != RECORD_MAGIC {
        return Err(RecordError::BadMagic);
    }
    if bytes[2] != RECORD_VERSION {
        return Err(RecordError::UnsupportedVersion { version: bytes[2] });
    }
    let kind = bytes[3];
    if kind != KIND_BATCH && kind != KIND_CHECKPOINT && kind != KIND_RISK_POLICY {
        return Err(RecordError::UnknownKind { kind });
    }
    let body_len = u32_at(bytes, 20);
    if body_len as usize > RECORD_BODY_BYTES_MAX {
        return Err(RecordError::BodyTooLong { body_len });
    }
    let present = bytes.len() - RECORD_HEADER_BYTES;
    if body_len as usize != present {
        return Err(RecordError::LengthMismatch { body_len, present });
    }
    let stored = u32_at(bytes, CRC_OFFSET);
    let computed = checksum(&bytes[..CRC_OFFSET], &bytes[RECORD_HEADER_BYTES..]);
    if stored != computed {
        return Err(RecordError::ChecksumMismatch { stored, computed });
    }
    Ok(Header {
        kind,
        sequence: u64_at(bytes, 4),
        timestamp: u64_at(bytes, 12),
        body_len,
    })
}

fn decode_batch(body: &[u8], mut commands: Vec<Command>) -> Result<Vec<Command>, RecordError> {
    if body.len() < 4 {
        return Err(RecordError::BadCommand {
            index: 0,
            reason: "the body has no command count".to_owned(),
        });
    }
    let count = u32_at(body, 0);
    if count as usize > limits::BATCH_COMMANDS_MAX {
        return Err(RecordError::TooManyCommands { count });
    }
    // The count is bounded, so this allocation is too.
    commands.clear();
    commands.reserve(count as usize);
    let mut rest = &body[4..];
    for index in 0..count {
        // The error's text is bincode's for the same bytes.
        let (command, used) = decode_command(rest).map_err(|error| RecordError::BadCommand {
            index,
            reason: error.to_string(),
        })?;
        commands.push(command);
        rest = &rest[used..];
    }
    if !rest.is_empty() {
        return Err(RecordError::TrailingBytes { count: rest.len() });
    }
    Ok(commands)
}

/// A policy record's body: exactly one valid policy (decoding validates it).
fn decode_policy(body: &[u8]) -> Result<RiskPolicy, RecordError> {
    if body.len() > crate::risk::bounds::POLICY_ENCODED_BYTES_MAX {
        return Err(RecordError::BadRiskPolicy {
            reason: format!("{} bytes is more than a policy takes", body.len()),
        });
    }
    let (policy, used) = bincode::decode_from_slice::<RiskPolicy, _>(body, canonical_config())
        .map_err(|error| RecordError::BadRiskPolicy {
            reason: error.to_string(),
        })?;
    if used != body.len() {
        return Err(RecordError::BadRiskPolicy {
            reason: format!("{} bytes follow the policy", body.len() - used),
        });
    }
    Ok(policy)
}

/// The largest command of each kind, for the size bound's test and benches.
pub fn largest_commands() -> Vec<Command> {
    let account = AccountId(u64::MAX);
    let currency = Currency::CNY;
    let kinds = [
        CommandKind::OpenAccount(OpenAccount {
            account,
            owner: u64::MAX,
            kind: crate::command::AccountKind::Merchant,
            currency,
            kyc_tier: u8::MAX,
            mcc: u16::MAX,
        }),
        CommandKind::Deposit {
            account,
            amount: u64::MAX,
            currency,
        },
        CommandKind::Transfer {
            from: account,
            to: account,
            amount: u64::MAX,
            currency,
            context: crate::command::RiskContext::NONE,
        },
        CommandKind::WithdrawHold {
            account,
            amount: u64::MAX,
            currency,
            timeout_ms: u64::MAX,
            context: crate::command::RiskContext::NONE,
        },
        CommandKind::WithdrawPost {
            hold: crate::command::CommandId(u128::MAX),
        },
        CommandKind::WithdrawVoid {
            hold: crate::command::CommandId(u128::MAX),
        },
        CommandKind::Freeze { account },
        CommandKind::Unfreeze { account },
        CommandKind::Close { account },
        CommandKind::SetKycTier {
            account,
            tier: u8::MAX,
        },
        CommandKind::RegisterMerchantKey {
            merchant: account,
            key: crate::command::MerchantKey(u128::MAX),
        },
        CommandKind::PayMerchantQr {
            payer: account,
            keys: [crate::command::MerchantKey(u128::MAX); crate::command::QR_MERCHANT_KEYS_MAX],
            amount: u64::MAX,
            fee: u64::MAX,
            currency,
            mcc: u16::MAX,
            context: crate::command::RiskContext::NONE,
        },
        CommandKind::IssuePaymentCode {
            customer: account,
            code: u64::MAX,
            lifetime_ms: u64::MAX,
        },
        CommandKind::ChargePaymentCode {
            merchant: account,
            code: u64::MAX,
            amount: u64::MAX,
            currency,
            context: crate::command::RiskContext::NONE,
        },
        CommandKind::Refund {
            payment: crate::command::CommandId(u128::MAX),
            amount: u64::MAX,
            currency,
        },
    ];
    kinds
        .into_iter()
        .map(|kind| Command::new(u128::MAX, kind))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn sample_batch() -> LogRecord {
        let mut commands = largest_commands();
        commands.push(Command::new(
            7,
            CommandKind::Transfer {
                from: AccountId(1),
                to: AccountId(2),
                amount: 150,
                currency: Currency::JPY,
                context: crate::command::RiskContext::NONE,
            },
        ));
        LogRecord::batch(42, 1_700_000_000_000_000_000, commands)
    }

    #[test]
    fn round_trips() {
        let records = [
            sample_batch(),
            LogRecord::batch(1, 0, Vec::new()),
            LogRecord::checkpoint(u64::MAX, u64::MAX),
        ];
        for record in records {
            let bytes = record.to_bytes();
            assert_eq!(LogRecord::decode(&bytes), Ok(record.clone()));
            // Encoding appends: a second record after the first decodes too.
            let mut two = bytes.clone();
            record.encode(&mut two);
            assert_eq!(LogRecord::decode(&two[bytes.len()..]), Ok(record));
        }
    }

    /// A record as this module wrote it before the commands were written
    /// field by field: every command through bincode.
    fn written_by_bincode(record: &LogRecord) -> Vec<u8> {
        let LogEntry::Batch(commands) = &record.entry else {
            panic!("a batch");
        };
        let mut out = Vec::new();
        out.extend_from_slice(&RECORD_MAGIC);
        out.push(RECORD_VERSION);
        out.push(KIND_BATCH);
        out.extend_from_slice(&record.sequence.to_le_bytes());
        out.extend_from_slice(&record.timestamp.to_le_bytes());
        out.extend_from_slice(&[0; 8]);
        out.extend_from_slice(&(commands.len() as u32).to_le_bytes());
        for command in commands {
            encode_value(command, &mut out);
        }
        let body_len = (out.len() - RECORD_HEADER_BYTES) as u32;
        out[20..24].copy_from_slice(&body_len.to_le_bytes());
        reseal(&mut out);
        out
    }

    #[test]
    fn a_batch_of_every_kind_has_the_bytes_bincode_gave_it() {
        let commands = crate::command::codec::every_kind_and_variant();
        let record = LogRecord::batch(9, 1_700_000_000_000_000_000, commands);
        let old = written_by_bincode(&record);
        assert_eq!(record.to_bytes(), old);
        // An old log's record reads, into a vector handed back from
        // another record, and writes back to the same bytes.
        let spare = vec![largest_commands()[0]; 3];
        let decoded = LogRecord::decode_reusing(&old, spare).unwrap();
        assert_eq!(decoded, record);
        assert_eq!(decoded.to_bytes(), old);
    }

    #[test]
    fn a_bad_command_is_refused_with_bincodes_reason() {
        let record = LogRecord::batch(1, 1, largest_commands());
        let mut bytes = record.to_bytes();
        // The fourth command's kind tag (each command before it is known).
        let mut at = RECORD_HEADER_BYTES + 4;
        for command in &largest_commands()[..3] {
            let mut out = Vec::new();
            encode_value(command, &mut out);
            at += out.len();
        }
        bytes[at + 16..at + 20].copy_from_slice(&40u32.to_le_bytes());
        reseal(&mut bytes);
        let reason = bincode::decode_from_slice::<Command, _>(&bytes[at..], BINCODE)
            .unwrap_err()
            .to_string();
        assert!(reason.contains("CommandKind"), "{reason}");
        assert_eq!(
            LogRecord::decode(&bytes),
            Err(RecordError::BadCommand { index: 3, reason })
        );
    }

    #[test]
    fn every_command_fits_its_bound() {
        for command in largest_commands() {
            let mut out = Vec::new();
            encode_command(&command, &mut out);
            assert!(out.len() <= COMMAND_ENCODED_BYTES_MAX, "{command:?}");
        }
        let full = LogRecord::batch(
            1,
            1,
            vec![largest_commands()[3]; limits::BATCH_COMMANDS_MAX],
        );
        let bytes = full.to_bytes();
        assert!(bytes.len() <= RECORD_BYTES_MAX);
        assert_eq!(LogRecord::decode(&bytes), Ok(full));
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        for record in [sample_batch(), LogRecord::checkpoint(3, 4)] {
            let bytes = record.to_bytes();
            for index in 0..bytes.len() {
                for bit in 0..8 {
                    let mut flipped = bytes.clone();
                    flipped[index] ^= 1 << bit;
                    assert!(
                        LogRecord::decode(&flipped).is_err(),
                        "byte {index} bit {bit}"
                    );
                }
            }
        }
    }

    #[test]
    fn every_truncation_and_any_trailing_byte_is_detected() {
        let bytes = sample_batch().to_bytes();
        for len in 0..bytes.len() {
            assert!(LogRecord::decode(&bytes[..len]).is_err(), "length {len}");
        }
        assert_eq!(
            LogRecord::decode(&bytes[..10]),
            Err(RecordError::TooShort { len: 10 })
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            LogRecord::decode(&longer),
            Err(RecordError::LengthMismatch { .. })
        ));
    }

    /// Re-seals a tampered record so that only the tampering is wrong.
    fn reseal(bytes: &mut [u8]) {
        let crc = checksum(&bytes[..CRC_OFFSET], &bytes[RECORD_HEADER_BYTES..]);
        bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn each_field_is_checked() {
        let bytes = sample_batch().to_bytes();

        let mut newer = bytes.clone();
        newer[2] = 2;
        reseal(&mut newer);
        assert_eq!(
            LogRecord::decode(&newer),
            Err(RecordError::UnsupportedVersion { version: 2 })
        );

        let mut magic = bytes.clone();
        magic[0] = b'x';
        assert_eq!(LogRecord::decode(&magic), Err(RecordError::BadMagic));

        let mut kind = bytes.clone();
        kind[3] = 9;
        assert_eq!(
            LogRecord::decode(&kind),
            Err(RecordError::UnknownKind { kind: 9 })
        );

        let mut crc = bytes.clone();
        crc[30] ^= 0x10;
        assert!(matches!(
            LogRecord::decode(&crc),
            Err(RecordError::ChecksumMismatch { .. })
        ));

        let mut huge = bytes.clone();
        huge[20..24].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            LogRecord::decode(&huge),
            Err(RecordError::BodyTooLong { body_len: u32::MAX })
        );

        // A sealed body whose count claims too many commands.
        let mut count = bytes.clone();
        count[28..32].copy_from_slice(&(limits::BATCH_COMMANDS_MAX as u32 + 1).to_le_bytes());
        reseal(&mut count);
        assert!(matches!(
            LogRecord::decode(&count),
            Err(RecordError::TooManyCommands { .. })
        ));

        // ... or fewer commands than the body holds.
        let mut fewer = bytes.clone();
        fewer[28..32].copy_from_slice(&1u32.to_le_bytes());
        reseal(&mut fewer);
        assert!(matches!(
            LogRecord::decode(&fewer),
            Err(RecordError::TrailingBytes { .. })
        ));

        // ... or an unknown command kind.
        let mut unknown = bytes.clone();
        unknown[28 + 4 + 16..28 + 4 + 20].copy_from_slice(&999u32.to_le_bytes());
        reseal(&mut unknown);
        assert!(matches!(
            LogRecord::decode(&unknown),
            Err(RecordError::BadCommand { index: 0, .. })
        ));

        // A checkpoint marker with a body.
        let mut marker = LogRecord::checkpoint(1, 1).to_bytes();
        marker.extend_from_slice(&[0; 4]);
        marker[20..24].copy_from_slice(&4u32.to_le_bytes());
        reseal(&mut marker);
        assert_eq!(
            LogRecord::decode(&marker),
            Err(RecordError::CheckpointWithBody { body_len: 4 })
        );
    }

    #[test]
    fn layout_is_stable() {
        let bytes = LogRecord::checkpoint(0x0102, 0x0304).to_bytes();
        assert_eq!(bytes.len(), RECORD_HEADER_BYTES);
        assert_eq!(&bytes[0..4], b"pr\x01\x02");
        assert_eq!(&bytes[4..12], &0x0102u64.to_le_bytes());
        assert_eq!(&bytes[12..20], &0x0304u64.to_le_bytes());
        assert_eq!(&bytes[20..24], &[0, 0, 0, 0]);
        assert_eq!(u32_at(&bytes, 24), crc32c::crc32c(&bytes[..24]));
    }
}
