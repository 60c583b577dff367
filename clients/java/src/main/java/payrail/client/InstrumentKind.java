package payrail.client;

/** What a funding instrument is; its ordinal is its u32 variant index on the wire. */
public enum InstrumentKind {
    CARD,
    BANK_ACCOUNT;

    static InstrumentKind fromVariant(int variant) {
        if (variant < 0 || variant >= values().length) {
            throw BodyReader.malformed("unknown instrument kind " + variant);
        }
        return values()[variant];
    }
}
