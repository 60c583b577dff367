package payrail.client;

/** Where a funding instrument is in its life; its ordinal is its u32 variant index on the wire. */
public enum InstrumentState {
    UNVERIFIED,
    VERIFIED,
    FAILED,
    UNBOUND;

    static InstrumentState fromVariant(int variant) {
        if (variant < 0 || variant >= values().length) {
            throw BodyReader.malformed("unknown instrument state " + variant);
        }
        return values()[variant];
    }
}
