package payrail.client;

/**
 * Why a request (or connecting) failed. {@link #outcomeUnknown()} says whether the request may
 * have been applied although no result came back: then retry it with the same command ids, and
 * the server answers with the first result instead of applying it twice.
 */
public final class PayrailException extends RuntimeException {
    private static final long serialVersionUID = 1L;

    /** What went wrong. */
    public enum Kind {
        /** No connection could be made (after every attempt). */
        CONNECT,
        /** The server turned the gateway away in the handshake (unknown_gateway, bad_proof). */
        GATEWAY_REFUSED,
        /** The server refused the connection itself (too_many_connections, shutting_down, ...). */
        CONNECTION_REFUSED,
        /** The server answered the request with an Error frame; see {@link #errorCode()}. */
        SERVER,
        /** The connection dropped while the request was in flight: outcome unknown. */
        CONNECTION_LOST,
        /** No reply came within the request timeout: outcome unknown. */
        TIMEOUT,
        /** The batch is larger than the server accepts; nothing was sent. */
        BATCH_TOO_LARGE,
        /** The request cannot be encoded (a string or frame over its limit); nothing was sent. */
        ENCODE,
        /** The server sent something this client does not understand. */
        PROTOCOL,
        /** The client's configuration is unusable (no secret, ...). */
        CONFIG,
        /** The client was closed. */
        CLOSED
    }

    private final Kind kind;
    private final ErrorCode errorCode;

    public PayrailException(Kind kind, String message) {
        this(kind, message, null);
    }

    public PayrailException(Kind kind, String message, ErrorCode errorCode) {
        super(message);
        this.kind = kind;
        this.errorCode = errorCode;
    }

    public Kind kind() {
        return kind;
    }

    /** The server's error code, for SERVER, GATEWAY_REFUSED and CONNECTION_REFUSED; else null. */
    public ErrorCode errorCode() {
        return errorCode;
    }

    /**
     * Whether the request may or may not have been applied (the connection was lost or no reply
     * came in time): retry with the same command ids to learn the outcome.
     */
    public boolean outcomeUnknown() {
        return kind == Kind.CONNECTION_LOST || kind == Kind.TIMEOUT;
    }
}
