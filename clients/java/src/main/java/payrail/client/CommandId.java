package payrail.client;

import java.math.BigInteger;

/**
 * A command id: an unsigned 128-bit integer chosen by the gateway. Re-sending a command with the
 * same id returns the first result instead of applying it again.
 */
public record CommandId(long high, long low) implements Comparable<CommandId> {
    private static final BigInteger U128_MAX = BigInteger.ONE.shiftLeft(128).subtract(BigInteger.ONE);

    /** The id {@code value} (read as unsigned). */
    public static CommandId of(long value) {
        return new CommandId(0, value);
    }

    /** An id from a decimal string of up to 39 digits, as payrail's CLI prints them. */
    public static CommandId parse(String decimal) {
        return of(new BigInteger(decimal));
    }

    public static CommandId of(BigInteger value) {
        if (value.signum() < 0 || value.compareTo(U128_MAX) > 0) {
            throw new IllegalArgumentException("a command id is 0 to 2^128 - 1, not " + value);
        }
        return new CommandId(value.shiftRight(64).longValue(), value.longValue());
    }

    public BigInteger toBigInteger() {
        return new BigInteger(Long.toUnsignedString(high)).shiftLeft(64).or(new BigInteger(Long.toUnsignedString(low)));
    }

    @Override
    public int compareTo(CommandId other) {
        int byHigh = Long.compareUnsigned(high, other.high);
        return byHigh != 0 ? byHigh : Long.compareUnsigned(low, other.low);
    }

    /** The id in decimal. */
    @Override
    public String toString() {
        return high == 0 ? Long.toUnsignedString(low) : toBigInteger().toString();
    }
}
