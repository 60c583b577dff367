package payrail.client;

/**
 * A customer's funding instrument (docs/instruments.md): the customer's owner id (as in
 * OpenAccount) and the gateway's number for it, unique per customer. Prints and parses as
 * {@code owner/number}.
 */
public record InstrumentId(long owner, int number) {
    /** Bytes on the wire: owner u64, number u32. */
    static final int WIRE_BYTES = 12;

    @Override
    public String toString() {
        return Long.toUnsignedString(owner) + "/" + Integer.toUnsignedString(number);
    }

    /** {@code owner/number}, as {@link #toString} writes it. */
    public static InstrumentId parse(String text) {
        int slash = text.indexOf('/');
        if (slash < 0) {
            throw new IllegalArgumentException("an instrument is owner/number, not " + text);
        }
        try {
            return new InstrumentId(Long.parseUnsignedLong(text.substring(0, slash).trim()),
                    Integer.parseUnsignedInt(text.substring(slash + 1).trim()));
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("an instrument is owner/number, not " + text, e);
        }
    }

    void encode(BodyWriter out) {
        out.u64(owner).u32(number);
    }

    static InstrumentId decode(BodyReader in) {
        return new InstrumentId(in.u64("instrument.owner"), in.u32("instrument.number"));
    }
}
