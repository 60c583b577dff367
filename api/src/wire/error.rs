//! What can go wrong on the wire: the stable error codes a peer sees in an
//! `Error` frame, and the detailed decode errors behind them.

use std::fmt;

macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $name:ident = $code:literal, $snake:literal, $text:literal; )*) => {
        /// Why a frame or a connection was refused, as sent in an `Error` frame.
        ///
        /// Codes are grouped by who decides them (1-19 framing and decoding,
        /// 20-29 handshake and permissions, 30-39 server bounds, 99 internal) and are never
        /// renumbered or reused. docs/protocol.md lists them all.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $name = $code, )*
        }

        impl ErrorCode {
            /// Every code, in numeric order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$name,)*];

            /// The error code with this wire number.
            pub fn from_code(code: u16) -> Option<ErrorCode> {
                match code {
                    $( $code => Some(ErrorCode::$name), )*
                    _ => None,
                }
            }

            /// Stable snake_case name, for logs and metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $( ErrorCode::$name => $snake, )*
                }
            }

            /// A sentence a person can read.
            pub fn description(self) -> &'static str {
                match self {
                    $( ErrorCode::$name => $text, )*
                }
            }
        }
    };
}

error_codes! {
    /// The frame does not start with "PRL1".
    BadMagic = 1, "bad_magic", "The frame does not start with the magic bytes \"PRL1\".";
    /// The header names a protocol version this build does not speak.
    UnsupportedVersion = 2, "unsupported_version", "The frame uses a protocol version this server does not speak.";
    /// The header's CRC32C does not match its first 28 bytes.
    HeaderChecksum = 3, "header_checksum", "The header checksum does not match the header.";
    /// The body's CRC32C does not match the body.
    BodyChecksum = 4, "body_checksum", "The body checksum does not match the body.";
    /// The frame is longer than the receiver accepts.
    FrameTooLarge = 5, "frame_too_large", "The frame is larger than the receiver accepts.";
    /// The header names a message kind that does not exist.
    UnknownMessageKind = 6, "unknown_message_kind", "The frame's message kind is unknown.";
    /// The body does not decode as the message its kind names.
    MalformedBody = 7, "malformed_body", "The frame's body does not decode as the message its kind names.";
    /// A batch holds more commands, queries or results than allowed.
    BatchTooLarge = 8, "batch_too_large", "The batch holds more entries than the receiver accepts.";
    /// A Submit or Query carries no entries.
    EmptyBatch = 9, "empty_batch", "The batch is empty.";
    /// The reserved header field is not zero.
    ReservedNotZero = 10, "reserved_not_zero", "The reserved header field is not zero.";
    /// A well-formed message that is not expected here (for example a
    /// second Hello, or a Welcome sent by a client).
    UnexpectedMessage = 11, "unexpected_message", "The message is not expected at this point of the conversation.";

    /// No gateway has this name.
    UnknownGateway = 20, "unknown_gateway", "No gateway with this name is configured.";
    /// The HMAC proof in Hello is wrong.
    BadProof = 21, "bad_proof", "The proof in Hello does not match the gateway's secret and the challenge.";
    /// A request arrived before the handshake completed.
    HandshakeRequired = 22, "handshake_required", "The connection must complete the handshake before sending requests.";
    /// The gateway's roles do not allow the request (docs/operations.md,
    /// "Roles"); nothing of it was applied and the connection stays open.
    NotPermitted = 23, "not_permitted", "The gateway is not permitted to make this request.";

    /// The server has as many connections as it may.
    TooManyConnections = 30, "too_many_connections", "The server has as many connections as it accepts.";
    /// The connection has as many requests in flight as it may.
    TooManyInFlight = 31, "too_many_in_flight", "The connection has as many requests in flight as it may.";
    /// A frame took too long to arrive completely.
    ReadTimeout = 32, "read_timeout", "A frame took too long to arrive.";
    /// The connection was idle for too long.
    IdleTimeout = 33, "idle_timeout", "The connection was idle for too long.";
    /// The engine cannot take more work now; retry later.
    Overloaded = 34, "overloaded", "The server is overloaded; retry later.";
    /// The server is shutting down.
    ShuttingDown = 35, "shutting_down", "The server is shutting down.";
    /// The gateway has as many connections open as it may (its
    /// `max_connections`); sent instead of `Welcome`, then the server closes.
    GatewayTooManyConnections = 36, "gateway_too_many_connections", "The gateway has as many connections as it may open.";
    /// The request would take the gateway past the commands it may have in
    /// flight over all its connections (its `max_in_flight_commands`);
    /// nothing of it was applied and the connection stays open.
    GatewayTooManyInFlight = 37, "gateway_too_many_in_flight", "The gateway has as many commands in flight as it may.";

    /// A backup could not be written (the directory exists, the disk is
    /// full, ...); the message says why.
    BackupFailed = 40, "backup_failed", "The backup could not be written.";
    /// History or a backup was asked of a server that keeps no data directory.
    NotAvailable = 41, "not_available", "The server cannot answer this request.";

    /// A bug or an unexpected failure inside the server.
    Internal = 99, "internal", "The server failed internally.";
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        self as u16
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Encodes as its u16 code, like `payrail_engine::Status`.
impl bincode::Encode for ErrorCode {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.code().encode(encoder)
    }
}

/// Refuses codes this build does not know.
impl<Context> bincode::Decode<Context> for ErrorCode {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let code = u16::decode(decoder)?;
        // ok_or_else: the message is only formatted for an unknown code.
        ErrorCode::from_code(code).ok_or_else(|| {
            bincode::error::DecodeError::OtherString(format!("unknown error code {code}"))
        })
    }
}
bincode::impl_borrow_decode!(ErrorCode);

/// Why a frame could not be decoded (or encoded), with the details.
///
/// Each variant maps to one [`ErrorCode`] through [`WireError::code`]; several
/// variants may share a code where the peer needs no finer distinction.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
#[non_exhaustive]
pub enum WireError {
    #[error("bad magic {found:02x?}, expected \"PRL1\"")]
    BadMagic { found: [u8; 4] },
    #[error("unsupported protocol version {found}, this build speaks version {supported}")]
    UnsupportedVersion { found: u16, supported: u16 },
    #[error("header checksum {found:#010x} does not match the computed {computed:#010x}")]
    HeaderChecksum { found: u32, computed: u32 },
    #[error("body checksum {found:#010x} does not match the computed {computed:#010x}")]
    BodyChecksum { found: u32, computed: u32 },
    #[error("frame of {frame_len} bytes is larger than the {max} bytes accepted")]
    FrameTooLarge { frame_len: u64, max: u32 },
    #[error("unknown message kind {kind}")]
    UnknownMessageKind { kind: u16 },
    #[error("malformed {kind_name} body: {reason}")]
    MalformedBody {
        kind_name: &'static str,
        reason: String,
    },
    #[error("{kind_name} body has {trailing} bytes after the message")]
    TrailingBytes {
        kind_name: &'static str,
        trailing: usize,
    },
    #[error("{field} is {len} long, at most {max} allowed")]
    FieldTooLong {
        field: &'static str,
        len: u64,
        max: u64,
    },
    #[error("{kind_name} batch of {count} entries, at most {max} allowed")]
    BatchTooLarge {
        kind_name: &'static str,
        count: u64,
        max: u32,
    },
    #[error("empty {kind_name} batch")]
    EmptyBatch { kind_name: &'static str },
    #[error("reserved header field is {found:#010x}, must be 0")]
    ReservedNotZero { found: u32 },
}

impl WireError {
    /// The code to send to the peer in an `Error` frame.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::BadMagic { .. } => ErrorCode::BadMagic,
            WireError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            WireError::HeaderChecksum { .. } => ErrorCode::HeaderChecksum,
            WireError::BodyChecksum { .. } => ErrorCode::BodyChecksum,
            WireError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::UnknownMessageKind { .. } => ErrorCode::UnknownMessageKind,
            WireError::MalformedBody { .. }
            | WireError::TrailingBytes { .. }
            | WireError::FieldTooLong { .. } => ErrorCode::MalformedBody,
            WireError::BatchTooLarge { .. } => ErrorCode::BatchTooLarge,
            WireError::EmptyBatch { .. } => ErrorCode::EmptyBatch,
            WireError::ReservedNotZero { .. } => ErrorCode::ReservedNotZero,
        }
    }

    /// Whether the error was found in the header, by [`check`](super::check).
    ///
    /// After a header error the frame's bounds cannot be trusted (or the
    /// frame is too large to skip), so the connection cannot go on. After a
    /// body error the header is intact: the frame's length and request id
    /// ([`peek_request_id`](super::peek_request_id)) are known, and the
    /// receiver may answer that request and skip the frame; docs/protocol.md
    /// says which errors the server treats so.
    pub fn is_header_error(&self) -> bool {
        match self {
            WireError::BadMagic { .. }
            | WireError::UnsupportedVersion { .. }
            | WireError::HeaderChecksum { .. }
            | WireError::FrameTooLarge { .. }
            | WireError::UnknownMessageKind { .. }
            | WireError::ReservedNotZero { .. } => true,
            WireError::BodyChecksum { .. }
            | WireError::MalformedBody { .. }
            | WireError::TrailingBytes { .. }
            | WireError::FieldTooLong { .. }
            | WireError::BatchTooLarge { .. }
            | WireError::EmptyBatch { .. } => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for &code in ErrorCode::ALL {
            assert!(seen.insert(code.code()), "{code:?} reuses a number");
            assert_eq!(ErrorCode::from_code(code.code()), Some(code));
            assert!(code.description().ends_with('.'), "{code:?}");
        }
        assert_eq!(ErrorCode::from_code(0), None);
        assert_eq!(ErrorCode::from_code(12), None);
        assert_eq!(ErrorCode::ALL.len(), 26);
    }
}
