package payrail.client;

/**
 * The code of an {@code Error} frame: a refused frame or request, not a command's outcome
 * (docs/protocol.md, "Error codes"). Never renumbered or reused.
 */
public enum ErrorCode {
    /** The frame does not start with the magic bytes "PRL1". */
    BAD_MAGIC(1, "bad_magic", "The frame does not start with the magic bytes \"PRL1\"."),
    /** The frame uses a protocol version this server does not speak. */
    UNSUPPORTED_VERSION(2, "unsupported_version", "The frame uses a protocol version this server does not speak."),
    /** The header checksum does not match the header. */
    HEADER_CHECKSUM(3, "header_checksum", "The header checksum does not match the header."),
    /** The body checksum does not match the body. */
    BODY_CHECKSUM(4, "body_checksum", "The body checksum does not match the body."),
    /** The frame is larger than the receiver accepts. */
    FRAME_TOO_LARGE(5, "frame_too_large", "The frame is larger than the receiver accepts."),
    /** The frame's message kind is unknown. */
    UNKNOWN_MESSAGE_KIND(6, "unknown_message_kind", "The frame's message kind is unknown."),
    /** The frame's body does not decode as the message its kind names. */
    MALFORMED_BODY(7, "malformed_body", "The frame's body does not decode as the message its kind names."),
    /** The batch holds more entries than the receiver accepts. */
    BATCH_TOO_LARGE(8, "batch_too_large", "The batch holds more entries than the receiver accepts."),
    /** The batch is empty. */
    EMPTY_BATCH(9, "empty_batch", "The batch is empty."),
    /** The reserved header field is not zero. */
    RESERVED_NOT_ZERO(10, "reserved_not_zero", "The reserved header field is not zero."),
    /** The message is not expected at this point of the conversation. */
    UNEXPECTED_MESSAGE(11, "unexpected_message", "The message is not expected at this point of the conversation."),
    /** No gateway with this name is configured. */
    UNKNOWN_GATEWAY(20, "unknown_gateway", "No gateway with this name is configured."),
    /** The proof in Hello does not match the gateway's secret and the challenge. */
    BAD_PROOF(21, "bad_proof", "The proof in Hello does not match the gateway's secret and the challenge."),
    /** The connection must complete the handshake before sending requests. */
    HANDSHAKE_REQUIRED(22, "handshake_required", "The connection must complete the handshake before sending requests."),
    /** The gateway is not permitted to make this request. */
    NOT_PERMITTED(23, "not_permitted", "The gateway is not permitted to make this request."),
    /** The server has as many connections as it accepts. */
    TOO_MANY_CONNECTIONS(30, "too_many_connections", "The server has as many connections as it accepts."),
    /** The connection has as many requests in flight as it may. */
    TOO_MANY_IN_FLIGHT(31, "too_many_in_flight", "The connection has as many requests in flight as it may."),
    /** A frame took too long to arrive. */
    READ_TIMEOUT(32, "read_timeout", "A frame took too long to arrive."),
    /** The connection was idle for too long. */
    IDLE_TIMEOUT(33, "idle_timeout", "The connection was idle for too long."),
    /** The server is overloaded; retry later. */
    OVERLOADED(34, "overloaded", "The server is overloaded; retry later."),
    /** The server is shutting down. */
    SHUTTING_DOWN(35, "shutting_down", "The server is shutting down."),
    /** The gateway has as many connections as it may open. */
    GATEWAY_TOO_MANY_CONNECTIONS(36, "gateway_too_many_connections", "The gateway has as many connections as it may open."),
    /** The gateway has as many commands in flight as it may. */
    GATEWAY_TOO_MANY_IN_FLIGHT(37, "gateway_too_many_in_flight", "The gateway has as many commands in flight as it may."),
    /** The backup could not be written. */
    BACKUP_FAILED(40, "backup_failed", "The backup could not be written."),
    /** The server cannot answer this request. */
    NOT_AVAILABLE(41, "not_available", "The server cannot answer this request."),
    /** The server failed internally. */
    INTERNAL(99, "internal", "The server failed internally.");

    private final int code;
    private final String wireName;
    private final String description;

    ErrorCode(int code, String wireName, String description) {
        this.code = code;
        this.wireName = wireName;
        this.description = description;
    }

    /** The numeric code on the wire (u16). */
    public int code() {
        return code;
    }

    /** The stable name, for example {@code too_many_in_flight}. */
    public String wireName() {
        return wireName;
    }

    /** A short description in English. */
    public String description() {
        return description;
    }

    /** The error code with this number, or null if this client does not know it. */
    public static ErrorCode fromCode(int code) {
        for (ErrorCode error : values()) {
            if (error.code == code) {
                return error;
            }
        }
        return null;
    }

    @Override
    public String toString() {
        return wireName;
    }
}
