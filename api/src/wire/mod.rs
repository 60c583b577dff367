//! The gateway wire protocol: frames and their binary codec, without I/O.
//!
//! A frame is a 32-byte header and a body (docs/protocol.md has the byte
//! diagram and hex test vectors):
//!
//! ```text
//!  0..4   magic b"PRL1"        16..20 body_len u32
//!  4..6   version u16 = 1      20..24 reserved u32 = 0
//!  6..8   kind u16             24..28 body_checksum u32 = crc32c(body)
//!  8..16  request_id u64       28..32 header_checksum u32 = crc32c(header[0..28])
//! ```
//!
//! all little-endian. The body is the bincode 2 fixed-int little-endian
//! encoding of the message's fields.
//!
//! Decoding is two steps, as a connection reads into a buffer:
//! 1. [`check`] looks at the header only and never allocates: it says how
//!    many bytes the frame needs, and refuses a bad or oversized header as
//!    soon as its 32 bytes are there, before any of the body arrives.
//! 2. [`decode`] verifies the body and decodes the message, checking every
//!    batch and string length against its limit before allocating.

mod error;
mod message;

pub use error::{ErrorCode, WireError};
pub use message::{
    kinds, Message, QrPaymentRequest, TxSource, BACKUP_DIR_BYTES_MAX, MOVEMENT_WIRE_BYTES_MIN,
    QR_BATCH_MAX, QR_PAYLOAD_BYTES_MAX,
};

use payrail_engine::limits::BATCH_COMMANDS_MAX;

pub const MAGIC: [u8; 4] = *b"PRL1";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 32;

/// Default largest frame, header included.
pub const FRAME_BYTES_MAX_DEFAULT: u32 = 1 << 20;
/// Largest frame accepted whatever [`WireLimits`] says; also the bound
/// bincode enforces while decoding one body. Every valid message fits in
/// [`FRAME_BYTES_MAX_DEFAULT`] already (checked below at compile time), so
/// raising the limit past the default only matters with a larger
/// `batch_commands_max`.
pub const FRAME_BYTES_MAX_CEILING: u32 = 16 << 20;

/// Longest gateway name in `Hello`, in bytes.
pub const GATEWAY_NAME_BYTES_MAX: usize = 64;
/// Longest message in `Error`, in bytes.
pub const ERROR_MESSAGE_BYTES_MAX: usize = 256;
/// Most counters in one `StatusReply`.
pub const STATUS_FIELDS_MAX: usize = 512;
/// Longest counter name in `StatusReply`, in bytes.
pub const STATUS_FIELD_NAME_BYTES_MAX: usize = 64;

const _: () = assert!(FRAME_BYTES_MAX_DEFAULT <= FRAME_BYTES_MAX_CEILING);
const _: () = assert!(
    3 * payrail_engine::limits::SHARDS_MAX + 256 <= STATUS_FIELDS_MAX,
    "a status reply holds three counters per shard and the rest (counted by a test in server.rs)"
);
const _: () = assert!(
    HEADER_LEN + message::BODY_BYTES_VALID_MAX <= FRAME_BYTES_MAX_DEFAULT as usize,
    "a full batch of the largest element fits in a default frame"
);
const _: () = assert!(
    HEADER_LEN + 8 + STATUS_FIELDS_MAX * (8 + STATUS_FIELD_NAME_BYTES_MAX + 8)
        <= FRAME_BYTES_MAX_DEFAULT as usize,
    "a full StatusReply fits in a default frame"
);
const _: () = assert!(
    // id 16, payer 8, amount and tip 1 + 8 each, payload length 8 + bytes.
    HEADER_LEN + 8 + QR_BATCH_MAX as usize * (16 + 8 + 9 + 9 + 8 + QR_PAYLOAD_BYTES_MAX)
        <= FRAME_BYTES_MAX_DEFAULT as usize,
    "a full SubmitQr fits in a default frame"
);
const _: () = assert!(BATCH_COMMANDS_MAX <= u32::MAX as usize);
const _: () = assert!(
    HEADER_LEN
        + 8
        + 16
        + payrail_engine::history::HISTORY_PAGE_MAX as usize
            * (MOVEMENT_WIRE_BYTES_MIN + payrail_engine::history::MOVEMENT_KIND_BYTES_MAX)
        <= FRAME_BYTES_MAX_DEFAULT as usize,
    "a full HistoryPage fits in a default frame"
);

/// The bounds one side enforces on the frames it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WireLimits {
    /// Largest frame, header included (capped at [`FRAME_BYTES_MAX_CEILING`]).
    pub frame_bytes_max: u32,
    /// Most entries in one Submit, Results, Query or QueryResults.
    pub batch_commands_max: u32,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            batch_commands_max: BATCH_COMMANDS_MAX as u32,
        }
    }
}

impl WireLimits {
    /// The frame limit in force: the configured one, capped by the ceiling.
    pub fn frame_bytes_max_effective(&self) -> u32 {
        self.frame_bytes_max.min(FRAME_BYTES_MAX_CEILING)
    }
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Chosen by the client, echoed in the reply; 0 in frames the server
    /// sends on its own (Challenge, and Error before a close).
    pub request_id: u64,
    pub message: Message,
}

/// What [`check`] found at the start of a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Not all of the frame is there yet: `needed` bytes in total are.
    Incomplete { needed: usize },
    /// A whole frame with a valid header is there, `frame_len` bytes long.
    Complete { frame_len: usize },
}

/// The fields of a header whose magic, checksum and version are right.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    kind: u16,
    request_id: u64,
    body_len: u32,
    body_checksum: u32,
}

fn u16_at(header: &[u8; HEADER_LEN], at: usize) -> u16 {
    u16::from_le_bytes([header[at], header[at + 1]])
}

fn u32_at(header: &[u8; HEADER_LEN], at: usize) -> u32 {
    u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
}

fn u64_at(header: &[u8; HEADER_LEN], at: usize) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&header[at..at + 8]);
    u64::from_le_bytes(bytes)
}

/// Checks a header in the order of the protocol: magic, version (before the
/// checksum, so a peer speaking another version hears that rather than a
/// checksum error), header checksum, reserved, length, kind.
fn parse_header(header: &[u8; HEADER_LEN], limits: &WireLimits) -> Result<Header, WireError> {
    let magic = [header[0], header[1], header[2], header[3]];
    if magic != MAGIC {
        return Err(WireError::BadMagic { found: magic });
    }
    let version = u16_at(header, 4);
    if version != VERSION {
        return Err(WireError::UnsupportedVersion {
            found: version,
            supported: VERSION,
        });
    }
    let header_checksum = u32_at(header, 28);
    let computed = crc32c::crc32c(&header[..28]);
    if header_checksum != computed {
        return Err(WireError::HeaderChecksum {
            found: header_checksum,
            computed,
        });
    }
    let reserved = u32_at(header, 20);
    if reserved != 0 {
        return Err(WireError::ReservedNotZero { found: reserved });
    }
    let body_len = u32_at(header, 16);
    let frame_len = HEADER_LEN as u64 + u64::from(body_len);
    let max = limits.frame_bytes_max_effective();
    if frame_len > u64::from(max) {
        return Err(WireError::FrameTooLarge { frame_len, max });
    }
    let kind = u16_at(header, 6);
    if kinds::name(kind).is_none() {
        return Err(WireError::UnknownMessageKind { kind });
    }
    Ok(Header {
        kind,
        request_id: u64_at(header, 8),
        body_len,
        body_checksum: u32_at(header, 24),
    })
}

/// Looks at the header only and never allocates: how long the frame at the
/// start of `buf` is, or how many bytes it needs in total. Refuses a bad
/// magic, version, header checksum, reserved field, a frame over
/// `limits.frame_bytes_max` or an unknown kind as soon as the 32 header
/// bytes are there.
pub fn check(buf: &[u8], limits: &WireLimits) -> Result<Check, WireError> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(Check::Incomplete { needed: HEADER_LEN });
    };
    let header = parse_header(header, limits)?;
    // body_len fits: frame_len <= FRAME_BYTES_MAX_CEILING was checked.
    let frame_len = HEADER_LEN + header.body_len as usize;
    if buf.len() < frame_len {
        Ok(Check::Incomplete { needed: frame_len })
    } else {
        Ok(Check::Complete { frame_len })
    }
}

/// Decodes the frame at the start of `buf`: the frame and the bytes it took,
/// or `Ok(None)` if it is not all there yet. Verifies the body checksum,
/// decodes the body, refuses batches over `limits.batch_commands_max`
/// (BatchTooLarge), an empty Submit or Query (EmptyBatch), and bytes left in
/// the body after the message (MalformedBody).
pub fn decode(buf: &[u8], limits: &WireLimits) -> Result<Option<(Frame, usize)>, WireError> {
    let Some(header_bytes) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = parse_header(header_bytes, limits)?;
    let frame_len = HEADER_LEN + header.body_len as usize;
    let Some(body) = buf.get(HEADER_LEN..frame_len) else {
        return Ok(None);
    };
    let computed = crc32c::crc32c(body);
    if computed != header.body_checksum {
        return Err(WireError::BodyChecksum {
            found: header.body_checksum,
            computed,
        });
    }
    let message = message::decode_body(header.kind, body, limits)?;
    let frame = Frame {
        request_id: header.request_id,
        message,
    };
    Ok(Some((frame, frame_len)))
}

/// The request id of the frame at the start of `buf`, if its header is all
/// there and intact (magic, version and header checksum right): so a reply
/// to a frame whose body was refused can name the request.
pub fn peek_request_id(buf: &[u8]) -> Option<u64> {
    let header = buf.first_chunk::<HEADER_LEN>()?;
    let intact = header[0..4] == MAGIC
        && u16_at(header, 4) == VERSION
        && u32_at(header, 28) == crc32c::crc32c(&header[..28]);
    intact.then(|| u64_at(header, 8))
}

/// Appends one encoded frame to `out`. Fails only if something is larger
/// than the protocol itself allows (a string over its maximum, a frame over
/// [`FRAME_BYTES_MAX_CEILING`]); `out` is then left as it was.
///
/// It checks no receiver's limits: a batch over `batch_commands_max` or an
/// empty batch is encoded, and the receiver refuses it (BatchTooLarge,
/// EmptyBatch). To refuse such a batch before sending, use
/// [`encode_with_limits`] with the limits the server announced in `Welcome`.
pub fn encode(request_id: u64, message: &Message, out: &mut Vec<u8>) -> Result<(), WireError> {
    let unchecked = WireLimits {
        frame_bytes_max: FRAME_BYTES_MAX_CEILING,
        batch_commands_max: u32::MAX,
    };
    encode_with_limits(request_id, message, &unchecked, out)
}

/// [`encode`], also refusing a batch over `limits.batch_commands_max`
/// (BatchTooLarge) and a frame over `limits.frame_bytes_max` (FrameTooLarge):
/// what a receiver with these limits would refuse for its size.
pub fn encode_with_limits(
    request_id: u64,
    message: &Message,
    limits: &WireLimits,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    let result = message::encode_body(message, limits, out).and_then(|()| {
        finish_frame(
            out,
            start,
            request_id,
            message.kind(),
            limits.frame_bytes_max_effective(),
        )
    });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Appends an `Error` frame. The message is cut to
/// [`ERROR_MESSAGE_BYTES_MAX`] bytes on a character boundary.
pub fn encode_error(request_id: u64, code: ErrorCode, message: &str, out: &mut Vec<u8>) {
    let message = error_message(code, message);
    // Cannot fail: the only size that could be too large was cut above.
    let result = encode(request_id, &message, out);
    debug_assert!(result.is_ok(), "{result:?}");
}

/// An `Error` message with `text` cut to [`ERROR_MESSAGE_BYTES_MAX`] bytes
/// on a character boundary, so it always encodes.
pub fn error_message(code: ErrorCode, text: &str) -> Message {
    let mut end = text.len().min(ERROR_MESSAGE_BYTES_MAX);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Message::Error {
        code,
        message: text[..end].to_owned(),
    }
}

/// Appends a frame with any kind and body, for tests and tools that need to
/// send what `encode` would not (an empty or oversized batch, an unknown
/// kind). The header is well-formed; the body is taken as it is.
pub fn encode_raw(
    request_id: u64,
    kind: u16,
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    let start = out.len();
    out.resize(start + HEADER_LEN, 0);
    out.extend_from_slice(body);
    let result = finish_frame(out, start, request_id, kind, u32::MAX);
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Fills in the header of the frame that starts at `out[start]`, whose body
/// is already written after the 32 placeholder bytes.
fn finish_frame(
    out: &mut [u8],
    start: usize,
    request_id: u64,
    kind: u16,
    frame_bytes_max: u32,
) -> Result<(), WireError> {
    let frame_len = (out.len() - start) as u64;
    let body_len = match u32::try_from(frame_len - HEADER_LEN as u64) {
        Ok(body_len) if frame_len <= u64::from(frame_bytes_max) => body_len,
        _ => {
            return Err(WireError::FrameTooLarge {
                frame_len,
                max: frame_bytes_max,
            })
        }
    };
    let (header, body) = out[start..].split_at_mut(HEADER_LEN);
    header[0..4].copy_from_slice(&MAGIC);
    header[4..6].copy_from_slice(&VERSION.to_le_bytes());
    header[6..8].copy_from_slice(&kind.to_le_bytes());
    header[8..16].copy_from_slice(&request_id.to_le_bytes());
    header[16..20].copy_from_slice(&body_len.to_le_bytes());
    header[20..24].copy_from_slice(&0u32.to_le_bytes());
    header[24..28].copy_from_slice(&crc32c::crc32c(body).to_le_bytes());
    let header_checksum = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&header_checksum.to_le_bytes());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_error_cuts_on_a_char_boundary() {
        // 255 ASCII bytes, then a 3-byte character straddling the limit.
        let text = format!("{}€tail", "a".repeat(255));
        let mut out = Vec::new();
        encode_error(5, ErrorCode::Internal, &text, &mut out);
        let decoded = decode(&out, &WireLimits::default());
        let Ok(Some((frame, used))) = decoded else {
            panic!("{decoded:?}");
        };
        assert_eq!(used, out.len());
        assert_eq!(frame.request_id, 5);
        assert_eq!(
            frame.message,
            Message::Error {
                code: ErrorCode::Internal,
                message: "a".repeat(255),
            }
        );
    }

    #[test]
    fn encode_leaves_out_untouched_on_error() {
        let mut out = vec![1, 2, 3];
        let hello = Message::Hello {
            gateway: "g".repeat(GATEWAY_NAME_BYTES_MAX + 1),
            proof: [0; 32],
        };
        assert_eq!(
            encode(1, &hello, &mut out),
            Err(WireError::FieldTooLong {
                field: "hello.gateway",
                len: 65,
                max: 64
            })
        );
        assert_eq!(out, [1, 2, 3]);
    }

    #[test]
    fn peek_request_id_needs_an_intact_header() {
        let mut out = Vec::new();
        assert!(encode(42, &Message::Status, &mut out).is_ok());
        assert_eq!(peek_request_id(&out), Some(42));
        assert_eq!(peek_request_id(&out[..31]), None);
        out[9] ^= 1;
        assert_eq!(peek_request_id(&out), None);
    }
}
