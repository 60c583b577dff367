package payrail.client;

import java.nio.charset.StandardCharsets;

/**
 * What a movement keeps of its funding instrument: the instrument's number (its holder is the
 * account's owner), the issuing bank and the last four digits.
 */
public record MovementInstrument(int number, String bank, String lastFour) {
    private static final int BANK_BYTES = 16;

    @Override
    public String toString() {
        return bank + " ****" + lastFour + " (instrument " + Integer.toUnsignedString(number) + ")";
    }

    /** An {@code Option<MovementInstrument>}: u8 0, or u8 1 then number u32, bank 16, last four 4. */
    static MovementInstrument decodeOption(BodyReader in) {
        int tag = in.u8("movement.instrument");
        if (tag == 0) {
            return null;
        }
        if (tag != 1) {
            throw BodyReader.malformed("movement.instrument: option tag " + tag);
        }
        int number = in.u32("movement.instrument.number");
        byte[] bank = in.raw(BANK_BYTES, "movement.instrument.bank");
        byte[] digits = in.raw(4, "movement.instrument.last_four");
        int length = 0;
        while (length < BANK_BYTES && bank[length] != 0) {
            length++;
        }
        boolean valid = length > 0 && bank[0] != ' ' && bank[length - 1] != ' ';
        for (int i = 0; i < BANK_BYTES; i++) {
            valid &= i < length ? bank[i] >= 0x20 && bank[i] < 0x7f : bank[i] == 0;
        }
        for (byte digit : digits) {
            valid &= digit >= '0' && digit <= '9';
        }
        if (!valid) {
            throw BodyReader.malformed("movement.instrument: bank or last four digits malformed");
        }
        return new MovementInstrument(number, new String(bank, 0, length, StandardCharsets.US_ASCII),
                new String(digits, StandardCharsets.US_ASCII));
    }
}
