package payrail.client;

import java.nio.charset.StandardCharsets;

/**
 * The key a QR code names a merchant by, as payrail derives it from the scheme's globally unique
 * identifier (sub-field 00 of the merchant account template, like {@code br.gov.bcb.pix}) and the
 * merchant id under that scheme: XXH3-128 of the GUI trimmed and in ASCII lower case, a zero byte, and
 * the merchant id trimmed (0 is "no key", so a hash of 0 becomes 1). Register it with
 * {@link Command.RegisterMerchantKey}; a SubmitQr payment of a code carrying that GUI and merchant
 * id then pays this merchant.
 */
public final class MerchantKey {
    private MerchantKey() {}

    public static CommandId of(String gui, String merchantId) {
        byte[] scheme = gui.strip().getBytes(StandardCharsets.UTF_8);
        for (int i = 0; i < scheme.length; i++) {
            if (scheme[i] >= 'A' && scheme[i] <= 'Z') {
                scheme[i] += 'a' - 'A'; // ASCII only, as payrail does
            }
        }
        byte[] id = merchantId.strip().getBytes(StandardCharsets.UTF_8);
        byte[] bytes = new byte[scheme.length + 1 + id.length];
        System.arraycopy(scheme, 0, bytes, 0, scheme.length);
        System.arraycopy(id, 0, bytes, scheme.length + 1, id.length);
        long[] hash = Xxh3.hash128(bytes);
        if (hash[0] == 0 && hash[1] == 0) {
            return CommandId.of(1);
        }
        return new CommandId(hash[0], hash[1]);
    }
}
