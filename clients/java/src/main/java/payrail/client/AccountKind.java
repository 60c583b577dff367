package payrail.client;

/** The kind of an account (a u32 variant index on the wire). */
public enum AccountKind {
    CUSTOMER,
    MERCHANT,
    HOUSE;

    static AccountKind decode(BodyReader in) {
        int index = in.variant("account kind");
        if (index < 0 || index >= values().length) {
            throw BodyReader.malformed("unknown account kind " + index);
        }
        return values()[index];
    }
}
