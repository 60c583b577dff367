//! The messages a frame can carry, and how each body is laid out.
//!
//! A body is the bincode 2 encoding (fixed-width little-endian integers) of
//! the message's fields in declaration order, without any variant tag: the
//! header's kind says which message it is. Lengths of batches and strings are
//! read here rather than by bincode, so each one is checked against its limit
//! and against the bytes actually left in the body before anything is
//! allocated; bincode decodes the fixed-size elements.

use bincode::de::read::Reader;
use bincode::de::{Decode, Decoder, DecoderImpl};
use bincode::enc::write::Writer;
use bincode::enc::{Encode, Encoder, EncoderImpl};
use bincode::error::{DecodeError, EncodeError};
use payrail_engine::history::{
    Movement, MovementInstrument, COMMAND_LEGS_MAX, HISTORY_PAGE_MAX, MOVEMENT_KIND_BYTES_MAX,
};
use payrail_engine::risk::bounds::POLICY_ENCODED_BYTES_MAX;
use payrail_engine::risk::RiskPolicy;
use payrail_engine::{
    AccountId, Command, CommandId, CommandResult, Detail, Query, QueryReply, RiskContext, Status,
};

use super::error::{ErrorCode, WireError};
use super::{
    WireLimits, ERROR_MESSAGE_BYTES_MAX, FRAME_BYTES_MAX_CEILING, GATEWAY_NAME_BYTES_MAX,
    HEADER_LEN, STATUS_FIELDS_MAX, STATUS_FIELD_NAME_BYTES_MAX,
};

/// Message kind numbers, as found in the header. Never renumbered or reused.
pub mod kinds {
    pub const CHALLENGE: u16 = 1;
    pub const HELLO: u16 = 2;
    pub const WELCOME: u16 = 3;
    pub const SUBMIT: u16 = 10;
    pub const RESULTS: u16 = 11;
    pub const QUERY: u16 = 12;
    pub const QUERY_RESULTS: u16 = 13;
    pub const SUBMIT_QR: u16 = 14;
    pub const STATUS: u16 = 20;
    pub const STATUS_REPLY: u16 = 21;
    pub const HISTORY_QUERY: u16 = 30;
    pub const HISTORY_PAGE: u16 = 31;
    pub const TX_QUERY: u16 = 32;
    pub const TX_REPLY: u16 = 33;
    pub const BACKUP: u16 = 34;
    pub const BACKUP_REPLY: u16 = 35;
    pub const SET_RISK_POLICY: u16 = 40;
    pub const RISK_POLICY_SET: u16 = 41;
    pub const ERROR: u16 = 255;

    /// Every kind, in numeric order.
    pub const ALL: &[u16] = &[
        CHALLENGE,
        HELLO,
        WELCOME,
        SUBMIT,
        RESULTS,
        QUERY,
        QUERY_RESULTS,
        SUBMIT_QR,
        STATUS,
        STATUS_REPLY,
        HISTORY_QUERY,
        HISTORY_PAGE,
        TX_QUERY,
        TX_REPLY,
        BACKUP,
        BACKUP_REPLY,
        SET_RISK_POLICY,
        RISK_POLICY_SET,
        ERROR,
    ];

    /// Stable snake_case name of a kind, or `None` if the kind is unknown.
    pub fn name(kind: u16) -> Option<&'static str> {
        Some(match kind {
            CHALLENGE => "challenge",
            HELLO => "hello",
            WELCOME => "welcome",
            SUBMIT => "submit",
            RESULTS => "results",
            QUERY => "query",
            QUERY_RESULTS => "query_results",
            SUBMIT_QR => "submit_qr",
            STATUS => "status",
            STATUS_REPLY => "status_reply",
            SET_RISK_POLICY => "set_risk_policy",
            RISK_POLICY_SET => "risk_policy_set",
            HISTORY_QUERY => "history_query",
            HISTORY_PAGE => "history_page",
            TX_QUERY => "tx_query",
            TX_REPLY => "tx_reply",
            BACKUP => "backup",
            BACKUP_REPLY => "backup_reply",
            ERROR => "error",
            _ => return None,
        })
    }
}

/// One protocol message: what a frame's body means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Server to client, first thing on connect: 32 random bytes to prove
    /// knowledge of the gateway's secret against.
    Challenge { nonce: [u8; 32] },
    /// Client to server: who the gateway is, and
    /// `HMAC-SHA256(secret, nonce || gateway bytes)`. The name is at most
    /// [`GATEWAY_NAME_BYTES_MAX`] bytes.
    Hello { gateway: String, proof: [u8; 32] },
    /// Server to client: the handshake succeeded; the limits this server
    /// enforces on the connection.
    Welcome {
        frame_bytes_max: u32,
        batch_commands_max: u32,
        inflight_max: u32,
    },
    /// Client to server: a batch of commands, applied in order.
    Submit { commands: Vec<Command> },
    /// Server to client: one result per submitted command, in the same order.
    Results { results: Vec<CommandResult> },
    /// Client to server: a batch of read-only queries.
    Query { queries: Vec<Query> },
    /// Server to client: one reply per query, in the same order.
    QueryResults { replies: Vec<QueryReply> },
    /// Client to server: merchant-presented QR payments with the raw payload
    /// the payer's app scanned; the server parses them and answers with
    /// `Results`, one per payment, in order.
    SubmitQr { payments: Vec<QrPaymentRequest> },
    /// Client to server: ask for the server's counters.
    Status,
    /// Server to client: named counters, at most [`STATUS_FIELDS_MAX`] of
    /// them, names at most [`STATUS_FIELD_NAME_BYTES_MAX`] bytes.
    StatusReply { fields: Vec<(String, u64)> },
    /// Client to server: put this risk policy in force, through the log
    /// (docs/risk.md). The body is the policy's canonical bincode encoding,
    /// length first, at most `POLICY_ENCODED_BYTES_MAX` bytes; decoding
    /// validates it.
    SetRiskPolicy { policy: Box<RiskPolicy> },
    /// Server to client: the answer to `SetRiskPolicy`: `ok` and the digest
    /// of the policy now in force, or why not (`storage_failed`,
    /// `unavailable`; the digest is then zero).
    RiskPolicySet { status: Status, digest: [u8; 32] },
    /// Client to server: a page of an account's movements with timestamps
    /// in `from_ns..=to_ns`, newest first, after `cursor` (0: from the
    /// newest), at most `limit` entries (1 ..= [`HISTORY_PAGE_MAX`]).
    HistoryQuery {
        account: AccountId,
        from_ns: u64,
        to_ns: u64,
        cursor: u128,
        limit: u32,
    },
    /// Server to client: the page, and where the next one starts (0: none).
    HistoryPage {
        entries: Vec<Movement>,
        next_cursor: u128,
    },
    /// Client to server: what became of one command.
    TxQuery { id: CommandId },
    /// Server to client: the command's status, where it was learnt, and the
    /// movements it made (at most [`COMMAND_LEGS_MAX`]).
    TxReply {
        source: TxSource,
        status: Status,
        legs: Vec<Movement>,
    },
    /// Client to server: write a consistent copy of the data directory to
    /// `dir` on the server's machine (which must not exist yet). At most
    /// [`BACKUP_DIR_BYTES_MAX`] bytes.
    Backup { dir: String },
    /// Server to client: the backup is complete; it holds every command
    /// acknowledged up to log sequence `last_sequence` (and maybe more).
    BackupReply { last_sequence: u64 },
    /// Either way: why a request or the connection was refused. The message
    /// is at most [`ERROR_MESSAGE_BYTES_MAX`] bytes.
    Error { code: ErrorCode, message: String },
}

impl Message {
    /// The kind number that goes into the header.
    pub fn kind(&self) -> u16 {
        match self {
            Message::Challenge { .. } => kinds::CHALLENGE,
            Message::Hello { .. } => kinds::HELLO,
            Message::Welcome { .. } => kinds::WELCOME,
            Message::Submit { .. } => kinds::SUBMIT,
            Message::Results { .. } => kinds::RESULTS,
            Message::Query { .. } => kinds::QUERY,
            Message::QueryResults { .. } => kinds::QUERY_RESULTS,
            Message::SubmitQr { .. } => kinds::SUBMIT_QR,
            Message::Status => kinds::STATUS,
            Message::StatusReply { .. } => kinds::STATUS_REPLY,
            Message::SetRiskPolicy { .. } => kinds::SET_RISK_POLICY,
            Message::RiskPolicySet { .. } => kinds::RISK_POLICY_SET,
            Message::HistoryQuery { .. } => kinds::HISTORY_QUERY,
            Message::HistoryPage { .. } => kinds::HISTORY_PAGE,
            Message::TxQuery { .. } => kinds::TX_QUERY,
            Message::TxReply { .. } => kinds::TX_REPLY,
            Message::Backup { .. } => kinds::BACKUP,
            Message::BackupReply { .. } => kinds::BACKUP_REPLY,
            Message::Error { .. } => kinds::ERROR,
        }
    }

    /// Stable snake_case name of the kind, for logs and metrics.
    pub fn kind_name(&self) -> &'static str {
        kind_name(self.kind())
    }
}

/// Name of a kind known to be valid; "unknown" otherwise (never shown for a
/// decoded frame, since `check` refuses unknown kinds first).
fn kind_name(kind: u16) -> &'static str {
    kinds::name(kind).unwrap_or("unknown")
}

/// Longest backup directory path in `Backup`, in bytes.
pub const BACKUP_DIR_BYTES_MAX: usize = 1_024;
/// Bytes of a movement on the wire with an empty kind and no instrument:
/// account 8, counterparty 8, command 16, sequence 8, timestamp 8, position
/// 4, amount 8, balance 8, currency 2, mcc 2, kind length 8, instrument
/// option 1.
pub const MOVEMENT_WIRE_BYTES_MIN: usize = 81;

/// Where the status in a `TxReply` comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TxSource {
    /// Neither the idempotency record (never applied, or expired) nor the
    /// history knows the command: its status is unknown.
    Unknown = 0,
    /// The command's idempotency record: the exact first result.
    Record = 1,
    /// The record expired, but the command moved money, so it was applied
    /// with `ok`.
    History = 2,
}

impl TxSource {
    pub fn name(self) -> &'static str {
        match self {
            TxSource::Unknown => "unknown",
            TxSource::Record => "record",
            TxSource::History => "history",
        }
    }

    fn from_u8(value: u8) -> Option<TxSource> {
        match value {
            0 => Some(TxSource::Unknown),
            1 => Some(TxSource::Record),
            2 => Some(TxSource::History),
            _ => None,
        }
    }
}

/// Most QR payments in one `SubmitQr` (each carries a payload of up to
/// [`QR_PAYLOAD_BYTES_MAX`] bytes, so a full batch still fits a 1 MiB frame).
pub const QR_BATCH_MAX: u32 = 256;
/// Most bytes of one QR payload: EMVCo allows 512 characters; UTF-8 names
/// take up to 4 bytes a character.
pub const QR_PAYLOAD_BYTES_MAX: usize = 2_048;
/// id 16 + payer 8 + two absent options 1 + 1 + context 15 + payload length 8.
const QR_PAYMENT_BYTES_MIN: usize = 49;

/// A merchant-presented QR payment as a gateway submits it: the raw payload
/// the payer's app scanned, the amount the payer typed (static codes) and
/// the tip (codes that prompt for one), in minor units of the code's currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QrPaymentRequest {
    pub id: payrail_engine::CommandId,
    pub payer: payrail_engine::AccountId,
    pub payload: String,
    pub amount: Option<u64>,
    pub tip: Option<u64>,
    /// Device, location, country and step-up proof, for the risk rules.
    pub context: RiskContext,
}

/// The bincode configuration of every body. The limit bounds what bincode
/// itself may claim while decoding one body; batch and string lengths are
/// checked here before bincode sees them (see the module doc).
pub(super) type BodyConfig = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Fixint,
    bincode::config::Limit<BODY_BYTES_LIMIT>,
>;
pub(super) const BODY_BYTES_LIMIT: usize = FRAME_BYTES_MAX_CEILING as usize - HEADER_LEN;
pub(super) const BODY_CONFIG: BodyConfig = bincode::config::standard()
    .with_fixed_int_encoding()
    .with_little_endian()
    .with_limit::<BODY_BYTES_LIMIT>();

/// A batch element, with the fewest bytes any value of it encodes to: a
/// declared batch length is refused unless the bytes left could hold that
/// many elements, so a lying length never sizes an allocation.
pub(super) trait Element: Encode + Decode<()> {
    const WIRE_BYTES_MIN: usize;
    /// The most bytes one element encodes to (for the compile-time check
    /// that a full batch fits in a default frame).
    const WIRE_BYTES_MAX: usize;

    fn decode_element(decoder: &mut BodyDecoder<'_>) -> Result<Self, WireError> {
        decoder.value()
    }
}

// Sizes follow the engine's types (bincode fixed-int: enum tag u32, Status
// and Currency u16, AccountId u64, CommandId u128); the unit tests below
// encode every variant and check them.
impl Element for Command {
    // id 16 + tag 4 + Freeze { account 8 }
    const WIRE_BYTES_MIN: usize = 28;
    // id 16 + tag 4 + PayMerchantQr { payer 8, keys 4 x 16, amount 8, fee 8, currency 2, mcc 2,
    // context 15 }
    const WIRE_BYTES_MAX: usize = 127;

    /// Reads the same bytes as `Command`'s bincode `Decode`, with the
    /// engine's field-by-field reader (`command::codec`, which refuses
    /// what bincode refuses with the same error): a Submit's commands are
    /// most of what the connection tasks decode.
    fn decode_element(decoder: &mut BodyDecoder<'_>) -> Result<Self, WireError> {
        let rest = decoder.decoder.reader().rest;
        match payrail_engine::command::codec::decode_command(rest) {
            Ok((command, used)) => {
                decoder.decoder.reader().rest = rest.get(used..).unwrap_or_default();
                Ok(command)
            }
            Err(error) => Err(decoder.decode_error(error.to_bincode())),
        }
    }
}
impl Element for CommandResult {
    // status 2 + detail tag 4 (Detail::None)
    const WIRE_BYTES_MIN: usize = 6;
    // status 2 + detail tag 4 + FxConversion(FxAmounts { pay 8, fee 8,
    // receive 8, pay_currency 2, receive_currency 2, mid { mantissa 8,
    // scale 1 }, inverse 1, expires_at 8 })
    const WIRE_BYTES_MAX: usize = 52;

    /// Reads the same bytes as `Status`'s bincode `Decode` (its u16 code)
    /// without calling it: that impl formats its error message before
    /// knowing whether the code is valid (`ok_or`, not `ok_or_else`), an
    /// allocation per result that made decoding a full Results about 8
    /// times slower (600 µs against 75 µs for 8,190 results).
    fn decode_element(decoder: &mut BodyDecoder<'_>) -> Result<Self, WireError> {
        let code: u16 = decoder.value()?;
        let status = match Status::from_code(code) {
            Some(status) => status,
            None => return Err(decoder.malformed(format!("unknown status code {code}"))),
        };
        let detail: Detail = decoder.value()?;
        Ok(CommandResult::with_detail(status, detail))
    }
}
impl Element for Query {
    // tag 4 + RiskPolicy (no fields)
    const WIRE_BYTES_MIN: usize = 4;
    // tag 4 + Command { id 16 } (Spending { account 8, month 4, category 1 } is 17)
    const WIRE_BYTES_MAX: usize = 20;
}
impl Element for QueryReply {
    // tag 4 + Refused(status 2)
    // tag 4 + Command(status 2) or Refused(status 2)
    const WIRE_BYTES_MIN: usize = 6;
    // tag 4 + Instrument(InstrumentView { instrument { owner 8, number 4 },
    // kind 4, token 32, bank 16, country 2, last_four 4, currency 2, state 4,
    // bound_at 8, changed_at 8, instruments_total 1 })
    const WIRE_BYTES_MAX: usize = 97;
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// The most bytes any batch element encodes to.
pub(super) const ELEMENT_BYTES_MAX: usize = max(
    max(
        <Command as Element>::WIRE_BYTES_MAX,
        <CommandResult as Element>::WIRE_BYTES_MAX,
    ),
    max(
        <Query as Element>::WIRE_BYTES_MAX,
        <QueryReply as Element>::WIRE_BYTES_MAX,
    ),
);

/// Body bytes of the largest valid batch message: a full batch of the
/// largest element (8-byte length prefix included).
pub(super) const BODY_BYTES_VALID_MAX: usize =
    8 + payrail_engine::limits::BATCH_COMMANDS_MAX * ELEMENT_BYTES_MAX;

/// Appends the body of `message` to `out`. Checks every batch and string
/// against its limit first; on error `out` may hold a partial body (the
/// caller truncates it).
pub(super) fn encode_body(
    message: &Message,
    limits: &WireLimits,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let mut encoder = EncoderImpl::new(VecWriter(out), BODY_CONFIG);
    let kind_name = message.kind_name();
    match message {
        Message::Challenge { nonce } => put(&mut encoder, nonce),
        Message::Hello { gateway, proof } => {
            put_string(
                &mut encoder,
                "hello.gateway",
                gateway,
                GATEWAY_NAME_BYTES_MAX,
            )?;
            put(&mut encoder, proof)
        }
        Message::Welcome {
            frame_bytes_max,
            batch_commands_max,
            inflight_max,
        } => {
            put(&mut encoder, frame_bytes_max)?;
            put(&mut encoder, batch_commands_max)?;
            put(&mut encoder, inflight_max)
        }
        Message::Submit { commands } => put_batch(&mut encoder, kind_name, commands, limits),
        Message::Results { results } => put_batch(&mut encoder, kind_name, results, limits),
        Message::Query { queries } => put_batch(&mut encoder, kind_name, queries, limits),
        Message::QueryResults { replies } => put_batch(&mut encoder, kind_name, replies, limits),
        Message::SubmitQr { payments } => {
            let max = limits.batch_commands_max.min(QR_BATCH_MAX);
            if payments.len() as u64 > u64::from(max) {
                return Err(WireError::BatchTooLarge {
                    kind_name,
                    count: payments.len() as u64,
                    max,
                });
            }
            put(&mut encoder, &(payments.len() as u64))?;
            for payment in payments {
                put(&mut encoder, &payment.id)?;
                put(&mut encoder, &payment.payer)?;
                put(&mut encoder, &payment.amount)?;
                put(&mut encoder, &payment.tip)?;
                put(&mut encoder, &payment.context)?;
                put_string(
                    &mut encoder,
                    "submit_qr.payload",
                    &payment.payload,
                    QR_PAYLOAD_BYTES_MAX,
                )?;
            }
            Ok(())
        }
        Message::Status => Ok(()),
        Message::StatusReply { fields } => {
            if fields.len() > STATUS_FIELDS_MAX {
                return Err(WireError::FieldTooLong {
                    field: "status_reply.fields",
                    len: fields.len() as u64,
                    max: STATUS_FIELDS_MAX as u64,
                });
            }
            put(&mut encoder, &(fields.len() as u64))?;
            for (name, value) in fields {
                put_string(
                    &mut encoder,
                    "status_reply.field_name",
                    name,
                    STATUS_FIELD_NAME_BYTES_MAX,
                )?;
                put(&mut encoder, value)?;
            }
            Ok(())
        }
        Message::SetRiskPolicy { policy } => {
            let bytes = policy.encode_canonical();
            if bytes.len() > POLICY_ENCODED_BYTES_MAX {
                return Err(WireError::FieldTooLong {
                    field: "set_risk_policy.policy",
                    len: bytes.len() as u64,
                    max: POLICY_ENCODED_BYTES_MAX as u64,
                });
            }
            put(&mut encoder, &(bytes.len() as u64))?;
            encoder.writer().0.extend_from_slice(&bytes);
            Ok(())
        }
        Message::RiskPolicySet { status, digest } => {
            put(&mut encoder, status)?;
            put(&mut encoder, digest)
        }
        Message::HistoryQuery {
            account,
            from_ns,
            to_ns,
            cursor,
            limit,
        } => {
            put(&mut encoder, account)?;
            put(&mut encoder, from_ns)?;
            put(&mut encoder, to_ns)?;
            put(&mut encoder, cursor)?;
            put(&mut encoder, limit)
        }
        Message::HistoryPage {
            entries,
            next_cursor,
        } => {
            put_movements(
                &mut encoder,
                "history_page.entries",
                entries,
                HISTORY_PAGE_MAX as usize,
            )?;
            put(&mut encoder, next_cursor)
        }
        Message::TxQuery { id } => put(&mut encoder, id),
        Message::TxReply {
            source,
            status,
            legs,
        } => {
            put(&mut encoder, &(*source as u8))?;
            put(&mut encoder, status)?;
            put_movements(&mut encoder, "tx_reply.legs", legs, COMMAND_LEGS_MAX)
        }
        Message::Backup { dir } => {
            put_string(&mut encoder, "backup.dir", dir, BACKUP_DIR_BYTES_MAX)
        }
        Message::BackupReply { last_sequence } => put(&mut encoder, last_sequence),
        Message::Error { code, message } => {
            put(&mut encoder, code)?;
            put_string(
                &mut encoder,
                "error.message",
                message,
                ERROR_MESSAGE_BYTES_MAX,
            )
        }
    }
}

type BodyEncoder<'a> = EncoderImpl<VecWriter<'a>, BodyConfig>;

/// bincode writer appending to a Vec; it cannot fail.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl Writer for VecWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

fn put<T: Encode + ?Sized>(encoder: &mut BodyEncoder<'_>, value: &T) -> Result<(), WireError> {
    // Writing to a Vec cannot fail and every value here encodes; map
    // anyway rather than assume.
    value
        .encode(encoder)
        .map_err(|error| WireError::MalformedBody {
            kind_name: "unknown",
            reason: format!("cannot encode: {error}"),
        })
}

fn put_string(
    encoder: &mut BodyEncoder<'_>,
    field: &'static str,
    value: &str,
    max: usize,
) -> Result<(), WireError> {
    if value.len() > max {
        return Err(WireError::FieldTooLong {
            field,
            len: value.len() as u64,
            max: max as u64,
        });
    }
    put(encoder, &(value.len() as u64))?;
    encoder.writer().0.extend_from_slice(value.as_bytes());
    Ok(())
}

fn put_movements(
    encoder: &mut BodyEncoder<'_>,
    field: &'static str,
    movements: &[Movement],
    max: usize,
) -> Result<(), WireError> {
    if movements.len() > max {
        return Err(WireError::FieldTooLong {
            field,
            len: movements.len() as u64,
            max: max as u64,
        });
    }
    put(encoder, &(movements.len() as u64))?;
    for movement in movements {
        put(encoder, &movement.account)?;
        put(encoder, &movement.counterparty)?;
        put(encoder, &movement.command)?;
        put(encoder, &movement.sequence)?;
        put(encoder, &movement.timestamp)?;
        put(encoder, &movement.position)?;
        put(encoder, &movement.amount)?;
        put(encoder, &movement.balance)?;
        put(encoder, &movement.currency)?;
        put(encoder, &movement.mcc)?;
        put_string(
            encoder,
            "movement.kind",
            &movement.kind,
            MOVEMENT_KIND_BYTES_MAX,
        )?;
        put(encoder, &movement.instrument)?;
    }
    Ok(())
}

fn put_batch<T: Element>(
    encoder: &mut BodyEncoder<'_>,
    kind_name: &'static str,
    batch: &[T],
    limits: &WireLimits,
) -> Result<(), WireError> {
    if batch.len() as u64 > u64::from(limits.batch_commands_max) {
        return Err(WireError::BatchTooLarge {
            kind_name,
            count: batch.len() as u64,
            max: limits.batch_commands_max,
        });
    }
    encoder
        .writer()
        .0
        .reserve(8 + batch.len() * T::WIRE_BYTES_MAX);
    put(encoder, &(batch.len() as u64))?;
    for element in batch {
        put(encoder, element)?;
    }
    Ok(())
}

/// Decodes the body of a frame of `kind`. The whole body must be used.
pub(super) fn decode_body(
    kind: u16,
    body: &[u8],
    limits: &WireLimits,
) -> Result<Message, WireError> {
    let mut decoder = BodyDecoder {
        decoder: DecoderImpl::new(BodyReader { rest: body }, BODY_CONFIG, ()),
        kind_name: kind_name(kind),
    };
    let message = match kind {
        kinds::CHALLENGE => Message::Challenge {
            nonce: decoder.value()?,
        },
        kinds::HELLO => Message::Hello {
            gateway: decoder.string("hello.gateway", GATEWAY_NAME_BYTES_MAX)?,
            proof: decoder.value()?,
        },
        kinds::WELCOME => Message::Welcome {
            frame_bytes_max: decoder.value()?,
            batch_commands_max: decoder.value()?,
            inflight_max: decoder.value()?,
        },
        kinds::SUBMIT => Message::Submit {
            commands: decoder.batch(limits, true)?,
        },
        kinds::RESULTS => Message::Results {
            results: decoder.batch(limits, false)?,
        },
        kinds::QUERY => Message::Query {
            queries: decoder.batch(limits, true)?,
        },
        kinds::QUERY_RESULTS => Message::QueryResults {
            replies: decoder.batch(limits, false)?,
        },
        kinds::SUBMIT_QR => {
            let count: u64 = decoder.value()?;
            let max = limits.batch_commands_max.min(QR_BATCH_MAX);
            if count > u64::from(max) {
                return Err(WireError::BatchTooLarge {
                    kind_name: decoder.kind_name,
                    count,
                    max,
                });
            }
            if count == 0 {
                return Err(WireError::EmptyBatch {
                    kind_name: decoder.kind_name,
                });
            }
            let count = decoder.fits(count, QR_PAYMENT_BYTES_MIN)?;
            let mut payments = Vec::with_capacity(count);
            for _ in 0..count {
                payments.push(QrPaymentRequest {
                    id: decoder.value()?,
                    payer: decoder.value()?,
                    amount: decoder.value()?,
                    tip: decoder.value()?,
                    context: decoder.value()?,
                    payload: decoder.string("submit_qr.payload", QR_PAYLOAD_BYTES_MAX)?,
                });
            }
            Message::SubmitQr { payments }
        }
        kinds::STATUS => Message::Status,
        kinds::STATUS_REPLY => {
            // name length 8 + name (may be empty) + value 8
            let count = decoder.length("status_reply.fields", STATUS_FIELDS_MAX as u64, 16)?;
            let mut fields = Vec::with_capacity(count);
            for _ in 0..count {
                let name =
                    decoder.string("status_reply.field_name", STATUS_FIELD_NAME_BYTES_MAX)?;
                fields.push((name, decoder.value()?));
            }
            Message::StatusReply { fields }
        }
        kinds::SET_RISK_POLICY => Message::SetRiskPolicy {
            policy: Box::new(decoder.policy()?),
        },
        kinds::RISK_POLICY_SET => Message::RiskPolicySet {
            status: decoder.value()?,
            digest: decoder.value()?,
        },
        kinds::HISTORY_QUERY => Message::HistoryQuery {
            account: decoder.value()?,
            from_ns: decoder.value()?,
            to_ns: decoder.value()?,
            cursor: decoder.value()?,
            limit: decoder.value()?,
        },
        kinds::HISTORY_PAGE => Message::HistoryPage {
            entries: decoder.movements("history_page.entries", HISTORY_PAGE_MAX as usize)?,
            next_cursor: decoder.value()?,
        },
        kinds::TX_QUERY => Message::TxQuery {
            id: decoder.value()?,
        },
        kinds::TX_REPLY => {
            let source: u8 = decoder.value()?;
            let Some(source) = TxSource::from_u8(source) else {
                return Err(decoder.malformed(format!("unknown tx source {source}")));
            };
            Message::TxReply {
                source,
                status: decoder.value()?,
                legs: decoder.movements("tx_reply.legs", COMMAND_LEGS_MAX)?,
            }
        }
        kinds::BACKUP => Message::Backup {
            dir: decoder.string("backup.dir", BACKUP_DIR_BYTES_MAX)?,
        },
        kinds::BACKUP_REPLY => Message::BackupReply {
            last_sequence: decoder.value()?,
        },
        kinds::ERROR => Message::Error {
            code: decoder.value()?,
            message: decoder.string("error.message", ERROR_MESSAGE_BYTES_MAX)?,
        },
        _ => return Err(WireError::UnknownMessageKind { kind }),
    };
    decoder.finish()?;
    Ok(message)
}

/// bincode reader over the body; unlike bincode's `SliceReader` it tells
/// how many bytes are left.
struct BodyReader<'a> {
    rest: &'a [u8],
}

impl<'a> BodyReader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }
}

impl Reader for BodyReader<'_> {
    #[inline]
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), DecodeError> {
        match self.take(bytes.len()) {
            Some(head) => {
                bytes.copy_from_slice(head);
                Ok(())
            }
            None => Err(DecodeError::UnexpectedEnd {
                additional: bytes.len() - self.rest.len(),
            }),
        }
    }

    #[inline]
    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.rest.get(..n)
    }

    #[inline]
    fn consume(&mut self, n: usize) {
        self.rest = self.rest.get(n..).unwrap_or_default();
    }
}

pub(super) struct BodyDecoder<'a> {
    decoder: DecoderImpl<BodyReader<'a>, BodyConfig, ()>,
    kind_name: &'static str,
}

impl BodyDecoder<'_> {
    fn remaining(&mut self) -> usize {
        self.decoder.reader().rest.len()
    }

    fn malformed(&self, reason: String) -> WireError {
        WireError::MalformedBody {
            kind_name: self.kind_name,
            reason,
        }
    }

    fn value<T: Decode<()>>(&mut self) -> Result<T, WireError> {
        T::decode(&mut self.decoder).map_err(|error| self.decode_error(error))
    }

    fn decode_error(&self, error: DecodeError) -> WireError {
        let reason = match error {
            DecodeError::UnexpectedEnd { .. } => "the body ends early".to_owned(),
            DecodeError::UnexpectedVariant {
                type_name, found, ..
            } => format!("unknown variant {found} of {type_name}"),
            DecodeError::OtherString(text) => text,
            DecodeError::LimitExceeded => "the body exceeds the decode limit".to_owned(),
            other => other.to_string(),
        };
        self.malformed(reason)
    }

    /// Reads a length prefix and checks it against `max` and against the
    /// bytes left, given that each entry takes at least `entry_bytes_min`.
    fn length(
        &mut self,
        field: &'static str,
        max: u64,
        entry_bytes_min: usize,
    ) -> Result<usize, WireError> {
        let len: u64 = self.value()?;
        if len > max {
            return Err(WireError::FieldTooLong { field, len, max });
        }
        self.fits(len, entry_bytes_min)
    }

    /// `len` entries of at least `entry_bytes_min` bytes fit in what is left.
    fn fits(&mut self, len: u64, entry_bytes_min: usize) -> Result<usize, WireError> {
        let remaining = self.remaining();
        let needed = len.saturating_mul(entry_bytes_min as u64);
        if needed > remaining as u64 {
            return Err(self.malformed(format!(
                "length {len} needs at least {needed} bytes, {remaining} left"
            )));
        }
        // needed <= remaining <= usize::MAX, and entry_bytes_min >= 1, so len fits.
        usize::try_from(len).map_err(|_| self.malformed(format!("length {len} does not fit")))
    }

    fn string(&mut self, field: &'static str, max: usize) -> Result<String, WireError> {
        let len = self.length(field, max as u64, 1)?;
        let Some(bytes) = self.decoder.reader().take(len) else {
            return Err(self.malformed(format!("{field} ends early")));
        };
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(self.malformed(format!("{field} is not UTF-8"))),
        }
    }

    /// A risk policy: its canonical encoding, length first. Decoding
    /// validates it (sorted lists, ranges) and bounds every list.
    fn policy(&mut self) -> Result<RiskPolicy, WireError> {
        let field = "set_risk_policy.policy";
        let len = self.length(field, POLICY_ENCODED_BYTES_MAX as u64, 1)?;
        let Some(bytes) = self.decoder.reader().take(len) else {
            return Err(self.malformed(format!("{field} ends early")));
        };
        let config = bincode::config::standard()
            .with_fixed_int_encoding()
            .with_little_endian();
        match bincode::decode_from_slice::<RiskPolicy, _>(bytes, config) {
            Ok((policy, used)) if used == len => Ok(policy),
            Ok((_, used)) => {
                Err(self.malformed(format!("{field}: {} bytes follow the policy", len - used)))
            }
            Err(error) => Err(self.malformed(format!("{field}: {error}"))),
        }
    }

    fn movements(&mut self, field: &'static str, max: usize) -> Result<Vec<Movement>, WireError> {
        let count = self.length(field, max as u64, MOVEMENT_WIRE_BYTES_MIN)?;
        let mut movements = Vec::with_capacity(count);
        for _ in 0..count {
            movements.push(Movement {
                account: self.value()?,
                counterparty: self.value()?,
                command: self.value()?,
                sequence: self.value()?,
                timestamp: self.value()?,
                position: self.value()?,
                amount: self.value()?,
                balance: self.value()?,
                currency: self.value()?,
                mcc: self.value()?,
                kind: std::borrow::Cow::Owned(
                    self.string("movement.kind", MOVEMENT_KIND_BYTES_MAX)?,
                ),
                instrument: self.movement_instrument()?,
            });
        }
        Ok(movements)
    }

    /// A movement's instrument: an option, and a valid bank and digits.
    fn movement_instrument(&mut self) -> Result<Option<MovementInstrument>, WireError> {
        let instrument: Option<MovementInstrument> = self.value()?;
        match instrument {
            Some(shown)
                if !shown.bank.is_valid() || !shown.last_four.iter().all(u8::is_ascii_digit) =>
            {
                Err(self
                    .malformed("movement.instrument: bank or last four digits malformed".into()))
            }
            _ => Ok(instrument),
        }
    }

    fn batch<T: Element>(
        &mut self,
        limits: &WireLimits,
        refuse_empty: bool,
    ) -> Result<Vec<T>, WireError> {
        let count: u64 = self.value()?;
        if count > u64::from(limits.batch_commands_max) {
            return Err(WireError::BatchTooLarge {
                kind_name: self.kind_name,
                count,
                max: limits.batch_commands_max,
            });
        }
        if refuse_empty && count == 0 {
            return Err(WireError::EmptyBatch {
                kind_name: self.kind_name,
            });
        }
        let count = self.fits(count, T::WIRE_BYTES_MIN)?;
        let mut batch = Vec::with_capacity(count);
        for _ in 0..count {
            batch.push(T::decode_element(self)?);
        }
        Ok(batch)
    }

    fn finish(mut self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            trailing => Err(WireError::TrailingBytes {
                kind_name: self.kind_name,
                trailing,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use payrail_engine::{
        AccountId, AccountKind, AccountStatus, AccountView, CommandId, CommandKind, Currency,
        FxAmounts, FxMid, FxOrder, FxRateSet, FxRateView, FxSide, FxSource, MerchantKey,
        OpenAccount, Status,
    };

    fn encoded_len<T: Encode>(value: &T) -> usize {
        let mut out = Vec::new();
        let mut encoder = EncoderImpl::new(VecWriter(&mut out), BODY_CONFIG);
        assert!(value.encode(&mut encoder).is_ok());
        out.len()
    }

    /// One command of every kind. The match makes this fail to compile when
    /// the engine grows a kind, so the size bounds get looked at again.
    fn every_command_kind() -> Vec<Command> {
        let account = AccountId(1);
        let hold = CommandId(2);
        let currency = Currency::CNY;
        let kinds = [
            CommandKind::OpenAccount(OpenAccount {
                account,
                owner: 1,
                kind: AccountKind::Customer,
                currency,
                kyc_tier: 0,
                mcc: 0,
            }),
            CommandKind::Deposit {
                account,
                amount: 1,
                currency,
            },
            CommandKind::Transfer {
                from: account,
                to: account,
                amount: 1,
                currency,
                context: payrail_engine::RiskContext::NONE,
            },
            CommandKind::WithdrawHold {
                account,
                amount: 1,
                currency,
                timeout_ms: 1,
                context: payrail_engine::RiskContext::NONE,
            },
            CommandKind::WithdrawPost { hold },
            CommandKind::WithdrawVoid { hold },
            CommandKind::Freeze { account },
            CommandKind::Unfreeze { account },
            CommandKind::Close { account },
            CommandKind::SetKycTier { account, tier: 1 },
            CommandKind::RegisterMerchantKey {
                merchant: account,
                key: MerchantKey(1),
            },
            CommandKind::PayMerchantQr {
                payer: account,
                keys: [MerchantKey(1); payrail_engine::command::QR_MERCHANT_KEYS_MAX],
                amount: 1,
                fee: 0,
                currency,
                mcc: 0,
                context: payrail_engine::RiskContext::NONE,
            },
            CommandKind::IssuePaymentCode {
                customer: account,
                code: 1,
                lifetime_ms: 1,
            },
            CommandKind::ChargePaymentCode {
                merchant: account,
                code: 1,
                amount: 1,
                currency,
                context: payrail_engine::RiskContext::NONE,
            },
            CommandKind::Refund {
                payment: hold,
                amount: 1,
                currency,
            },
            CommandKind::SetBudget {
                account,
                category: 1,
                budget: Some(1),
            },
            CommandKind::SetFxRate(FxRateSet {
                base: currency,
                quote: Currency::JPY,
                mid: FxMid {
                    mantissa: 2087,
                    scale: 2,
                },
                spread_bps: 30,
                valid_ms: 60_000,
                source: FxSource::new("ECB").unwrap_or_default(),
            }),
            CommandKind::SetFxFloor { currency, limit: 1 },
            CommandKind::FxQuote {
                order: fx_order(),
                ttl_ms: 1,
            },
            CommandKind::FxConvertQuote {
                quote: hold,
                from: account,
            },
            CommandKind::FxConvert(fx_order()),
            CommandKind::BindInstrument(payrail_engine::InstrumentBind {
                customer: account,
                number: 1,
                kind: payrail_engine::instrument::InstrumentKind::Card,
                token: payrail_engine::instrument::InstrumentText([b't'; 32]),
                bank: payrail_engine::instrument::InstrumentText([b'b'; 16]),
                country: *b"CN",
                last_four: *b"1234",
                currency,
            }),
            CommandKind::VerifyInstrument {
                instrument: instrument(),
                passed: true,
            },
            CommandKind::UnbindInstrument {
                instrument: instrument(),
            },
            CommandKind::DepositFrom {
                account,
                amount: 1,
                currency,
                instrument: instrument(),
            },
            CommandKind::WithdrawHoldTo {
                account,
                amount: 1,
                currency,
                timeout_ms: 1,
                context: payrail_engine::RiskContext::NONE,
                instrument: instrument(),
            },
        ];
        for kind in &kinds {
            match kind {
                CommandKind::OpenAccount(_)
                | CommandKind::Deposit { .. }
                | CommandKind::Transfer { .. }
                | CommandKind::WithdrawHold { .. }
                | CommandKind::WithdrawPost { .. }
                | CommandKind::WithdrawVoid { .. }
                | CommandKind::Freeze { .. }
                | CommandKind::Unfreeze { .. }
                | CommandKind::Close { .. }
                | CommandKind::SetKycTier { .. }
                | CommandKind::RegisterMerchantKey { .. }
                | CommandKind::PayMerchantQr { .. }
                | CommandKind::IssuePaymentCode { .. }
                | CommandKind::ChargePaymentCode { .. }
                | CommandKind::Refund { .. }
                | CommandKind::SetBudget { .. }
                | CommandKind::SetFxRate(_)
                | CommandKind::SetFxFloor { .. }
                | CommandKind::FxQuote { .. }
                | CommandKind::FxConvertQuote { .. }
                | CommandKind::FxConvert(_)
                | CommandKind::BindInstrument(_)
                | CommandKind::VerifyInstrument { .. }
                | CommandKind::UnbindInstrument { .. }
                | CommandKind::DepositFrom { .. }
                | CommandKind::WithdrawHoldTo { .. } => {}
            }
        }
        kinds
            .into_iter()
            .map(|kind| Command::new(7, kind))
            .collect()
    }

    fn instrument() -> payrail_engine::InstrumentId {
        payrail_engine::InstrumentId {
            owner: 1,
            number: 1,
        }
    }

    fn fx_order() -> FxOrder {
        FxOrder {
            from: AccountId(1),
            to: AccountId(2),
            amount: 1,
            side: FxSide::Receive,
        }
    }

    fn check_bounds<T: Element + std::fmt::Debug>(values: &[T]) {
        let sizes: Vec<usize> = values.iter().map(encoded_len).collect();
        for (value, &size) in values.iter().zip(&sizes) {
            assert!(size >= T::WIRE_BYTES_MIN, "{value:?} encodes to {size}");
            assert!(size <= T::WIRE_BYTES_MAX, "{value:?} encodes to {size}");
        }
        assert_eq!(sizes.iter().min(), Some(&T::WIRE_BYTES_MIN));
        assert_eq!(sizes.iter().max(), Some(&T::WIRE_BYTES_MAX));
    }

    #[test]
    fn element_size_bounds_are_exact() {
        check_bounds(&every_command_kind());
        let risk = payrail_engine::RiskDetail {
            verdict: payrail_engine::risk::Verdict::Decline,
            rule: payrail_engine::risk::RuleId::Velocity,
            limit: 1,
            observed: 2,
        };
        let budget = payrail_engine::BudgetDetail {
            category: payrail_engine::budget::Category::Travel,
            budget: 1,
            spent: 2,
        };
        let results = [
            CommandResult::new(Status::Ok),
            CommandResult::with_detail(Status::RiskDeclined, Detail::Risk(risk)),
            CommandResult::with_detail(Status::Ok, Detail::BudgetCrossed(budget)),
            CommandResult::with_detail(Status::Ok, Detail::FlaggedOverBudget(risk, budget)),
            CommandResult::with_detail(
                Status::Ok,
                Detail::FxConversion(FxAmounts {
                    pay: 1,
                    fee: 0,
                    receive: 1,
                    pay_currency: Currency::CNY,
                    receive_currency: Currency::JPY,
                    mid: FxMid {
                        mantissa: 1,
                        scale: 0,
                    },
                    inverse: false,
                    expires_at: 0,
                }),
            ),
        ];
        for result in &results {
            match result.detail {
                Detail::None
                | Detail::Risk(_)
                | Detail::BudgetCrossed(_)
                | Detail::FlaggedOverBudget(..)
                | Detail::FxConversion(_) => {}
            }
        }
        check_bounds(&results);
        let queries = [
            Query::Balance {
                account: AccountId(1),
            },
            Query::Command { id: CommandId(1) },
            Query::RiskPolicy,
            Query::RiskAudit {
                account: AccountId(1),
                index: 0,
            },
            Query::Spending {
                account: AccountId(1),
                month: 1,
                category: 1,
            },
            Query::FxRate { index: 0 },
            Query::Instrument {
                account: AccountId(1),
                index: 0,
            },
        ];
        for query in &queries {
            match query {
                Query::Balance { .. }
                | Query::Command { .. }
                | Query::RiskPolicy
                | Query::RiskAudit { .. }
                | Query::Spending { .. }
                | Query::FxRate { .. }
                | Query::Instrument { .. } => {}
            }
        }
        check_bounds(&queries);
        check_bounds(&[
            QueryReply::Refused(Status::UnknownAccount),
            QueryReply::Command(Status::Ok),
            QueryReply::Balance(AccountView {
                account: AccountId(1),
                owner: 1,
                kind: AccountKind::Customer,
                currency: Currency::CNY,
                status: AccountStatus::Active,
                kyc_tier: 0,
                mcc: 0,
                balance: 0,
                debits_pending: 0,
                credits_pending: 0,
                available: 0,
            }),
            QueryReply::RiskPolicy {
                digest: [0; 32],
                rules: payrail_engine::risk::RuleSet::EMPTY,
            },
            QueryReply::RiskAudit {
                entries: 0,
                entry: payrail_engine::risk::AuditEntry::EMPTY,
            },
            QueryReply::Spending {
                month: 1,
                category: 1,
                spent: 0,
                budget: Some(1),
            },
            QueryReply::FxRate(FxRateView {
                base: Currency::USD,
                quote: Currency::JPY,
                mid: FxMid {
                    mantissa: 15_025,
                    scale: 2,
                },
                spread_bps: 30,
                source: FxSource::default(),
                set_at: 0,
                valid_until: 0,
                rates_total: 1,
            }),
            QueryReply::Instrument(payrail_engine::instrument::InstrumentView {
                instrument: instrument(),
                kind: payrail_engine::instrument::InstrumentKind::BankAccount,
                token: payrail_engine::instrument::InstrumentText([b't'; 32]),
                bank: payrail_engine::instrument::InstrumentText([b'b'; 16]),
                country: *b"CN",
                last_four: *b"1234",
                currency: Currency::CNY,
                state: payrail_engine::instrument::InstrumentState::Verified,
                bound_at: 1,
                changed_at: 2,
                instruments_total: 1,
            }),
        ]);
    }

    #[test]
    fn body_encoding_is_plain_bincode_of_the_fields() {
        // The hand-written framing of batches and strings must equal what
        // bincode itself writes for a Vec and a String.
        let commands = every_command_kind();
        let mut out = Vec::new();
        let submit = Message::Submit {
            commands: commands.clone(),
        };
        assert!(encode_body(&submit, &WireLimits::default(), &mut out).is_ok());
        assert_eq!(
            bincode::encode_to_vec(&commands, BODY_CONFIG).ok(),
            Some(out)
        );

        let fields = vec![("a".to_owned(), 1u64), ("bcd".to_owned(), u64::MAX)];
        let mut out = Vec::new();
        let reply = Message::StatusReply {
            fields: fields.clone(),
        };
        assert!(encode_body(&reply, &WireLimits::default(), &mut out).is_ok());
        assert_eq!(bincode::encode_to_vec(&fields, BODY_CONFIG).ok(), Some(out));

        let mut out = Vec::new();
        let hello = Message::Hello {
            gateway: "gw-1".to_owned(),
            proof: [9; 32],
        };
        assert!(encode_body(&hello, &WireLimits::default(), &mut out).is_ok());
        let expected = bincode::encode_to_vec(("gw-1".to_owned(), [9u8; 32]), BODY_CONFIG).ok();
        assert_eq!(expected, Some(out));
    }
}
