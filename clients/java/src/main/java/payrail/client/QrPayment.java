package payrail.client;

/**
 * A merchant-presented QR payment as the payer's app scanned it; the server parses the EMVCo
 * payload itself. {@code amount} (for a static code without one) and {@code tip} may be null.
 */
public record QrPayment(CommandId id, long payer, Long amount, Long tip, RiskContext context, String payload) {
    /** Largest payload, in bytes of UTF-8. */
    public static final int PAYLOAD_BYTES_MAX = 2_048;

    public QrPayment(CommandId id, long payer, Long amount, String payload) {
        this(id, payer, amount, null, RiskContext.NONE, payload);
    }

    void encode(BodyWriter out) {
        out.u128(id).u64(payer).optionU64(amount).optionU64(tip);
        context.encode(out);
        out.string(payload, PAYLOAD_BYTES_MAX, "a QR payload");
    }
}
