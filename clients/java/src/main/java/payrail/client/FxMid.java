package payrail.client;

/** An FX mid rate: {@code mantissa / 10^scale} (150.25 is 15025, 2). */
public record FxMid(long mantissa, int scale) {
    void encode(BodyWriter out) {
        out.u64(mantissa).u8(scale);
    }

    static FxMid decode(BodyReader in) {
        return new FxMid(in.u64("mid.mantissa"), in.u8("mid.scale"));
    }

    @Override
    public String toString() {
        return new java.math.BigDecimal(new java.math.BigInteger(Long.toUnsignedString(mantissa)), scale).toPlainString();
    }
}
