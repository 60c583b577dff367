package payrail.client;

/** A frame this client cannot accept (or build): the protocol error code and why. */
public final class WireException extends RuntimeException {
    private static final long serialVersionUID = 1L;
    private final ErrorCode code;

    public WireException(ErrorCode code, String message) {
        super(message + " (" + code.wireName() + ")");
        this.code = code;
    }

    public ErrorCode code() {
        return code;
    }
}
