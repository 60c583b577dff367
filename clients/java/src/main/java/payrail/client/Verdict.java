package payrail.client;

/** The outcome of a risk evaluation (u8 on the wire), in increasing severity. */
public enum Verdict {
    APPROVE("approve"),
    FLAG("flag"),
    STEP_UP("step_up"),
    DECLINE("decline");

    private final String wireName;

    Verdict(String wireName) {
        this.wireName = wireName;
    }

    public String wireName() {
        return wireName;
    }

    static Verdict decode(BodyReader in, String what) {
        int code = in.u8(what);
        if (code >= values().length) {
            throw BodyReader.malformed(what + ": unknown verdict " + code);
        }
        return values()[code];
    }

    @Override
    public String toString() {
        return wireName;
    }
}
