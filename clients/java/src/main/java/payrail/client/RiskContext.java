package payrail.client;

import java.nio.charset.StandardCharsets;

/**
 * What the gateway knows about a customer's payment, for the inline risk rules (15 bytes on the
 * wire). Each field has a "not sent" value: device 0, both coordinates {@link #NO_LOCATION},
 * country null.
 *
 * @param device the gateway's id of the customer's device; 0: not sent
 * @param latitudeCentidegrees hundredths of a degree, -9000..=9000
 * @param longitudeCentidegrees hundredths of a degree, -18000..=18000
 * @param country ISO 3166 alpha-2 in upper case ("CN"), or null: not sent
 * @param stepUpVerified the gateway verified a second factor for this payment
 */
public record RiskContext(
        long device, short latitudeCentidegrees, short longitudeCentidegrees, String country, boolean stepUpVerified) {
    /** Latitude and longitude of "no location". */
    public static final short NO_LOCATION = Short.MIN_VALUE;

    /** Nothing sent. */
    public static final RiskContext NONE = new RiskContext(0, NO_LOCATION, NO_LOCATION, null, false);

    public RiskContext {
        if (country != null && country.getBytes(StandardCharsets.US_ASCII).length != 2) {
            throw new IllegalArgumentException("a country is two ASCII letters, not \"" + country + "\"");
        }
    }

    /** A context with a device and a country and no location. */
    public static RiskContext of(long device, String country) {
        return new RiskContext(device, NO_LOCATION, NO_LOCATION, country, false);
    }

    /** The same context with the step-up flag set (a re-submission after step_up_required). */
    public RiskContext withStepUpVerified() {
        return new RiskContext(device, latitudeCentidegrees, longitudeCentidegrees, country, true);
    }

    void encode(BodyWriter out) {
        out.u64(device).u16(latitudeCentidegrees).u16(longitudeCentidegrees);
        if (country == null) {
            out.u16(0);
        } else {
            out.raw(country.getBytes(StandardCharsets.US_ASCII));
        }
        out.bool(stepUpVerified);
    }

    static RiskContext decode(BodyReader in) {
        long device = in.u64("context.device");
        short latitude = in.i16("context.latitude_centidegrees");
        short longitude = in.i16("context.longitude_centidegrees");
        byte[] country = in.raw(2, "context.country");
        boolean stepUp = in.bool("context.step_up_verified");
        String name = country[0] == 0 && country[1] == 0 ? null : new String(country, StandardCharsets.US_ASCII);
        return new RiskContext(device, latitude, longitude, name, stepUp);
    }
}
