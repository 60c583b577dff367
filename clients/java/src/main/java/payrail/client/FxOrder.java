package payrail.client;

/**
 * A conversion between two accounts of one owner.
 *
 * @param receive false: {@code amount} is what {@code from} pays (side Pay); true: what {@code to}
 *     receives (side Receive)
 */
public record FxOrder(long from, long to, long amount, boolean receive) {
    public static FxOrder pay(long from, long to, long amount) {
        return new FxOrder(from, to, amount, false);
    }

    public static FxOrder receive(long from, long to, long amount) {
        return new FxOrder(from, to, amount, true);
    }

    void encode(BodyWriter out) {
        out.u64(from).u64(to).u64(amount).variant(receive ? 1 : 0);
    }
}
