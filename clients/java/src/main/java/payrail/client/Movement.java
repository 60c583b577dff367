package payrail.client;

/**
 * One movement of money on one account: {@code amount} negative leaves the account, positive
 * enters it; {@code balance} is the account's balance just after; {@code kind} the command kind's
 * name ({@code transfer}, {@code deposit}, ...); {@code instrument} the card or bank account a
 * top-up came from or a posted withdrawal went to, as it was then, or null.
 */
public record Movement(long account, long counterparty, CommandId command, long sequence, long timestamp,
        int position, long amount, long balance, int currency, int mcc, String kind,
        MovementInstrument instrument) {
    /** Bytes of a movement on the wire without its kind's bytes and without an instrument. */
    static final int WIRE_BYTES_MIN = 81;

    /** A movement without an instrument. */
    public Movement(long account, long counterparty, CommandId command, long sequence, long timestamp,
            int position, long amount, long balance, int currency, int mcc, String kind) {
        this(account, counterparty, command, sequence, timestamp, position, amount, balance, currency, mcc, kind,
                null);
    }

    static Movement decode(BodyReader in) {
        return new Movement(in.u64("account"), in.u64("counterparty"), in.u128("command"), in.u64("sequence"),
                in.u64("timestamp"), in.u32("position"), in.u64("amount"), in.u64("balance"), in.u16("currency"),
                in.u16("mcc"), in.string("kind", 32), MovementInstrument.decodeOption(in));
    }
}
