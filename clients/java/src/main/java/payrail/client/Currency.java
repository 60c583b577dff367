package payrail.client;

/** ISO 4217 numeric codes of a few currencies (a currency is a u16 on the wire). */
public final class Currency {
    private Currency() {}

    public static final int CNY = 156;
    public static final int JPY = 392;
    public static final int USD = 840;
    public static final int EUR = 978;
    public static final int HKD = 344;
    public static final int THB = 764;
}
