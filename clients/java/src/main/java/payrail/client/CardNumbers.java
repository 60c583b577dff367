package payrail.client;

/**
 * The check that keeps card numbers off the wire: text holding 13 to 19 consecutive digits (single
 * spaces or dashes between them allowed) that pass the Luhn check, in any window of a run of
 * digits, looks like a card number. The same check as the server's (docs/instruments.md).
 */
public final class CardNumbers {
    private CardNumbers() {}

    public static boolean looksLikeCardNumber(String text) {
        byte[] bytes = text.getBytes(java.nio.charset.StandardCharsets.US_ASCII);
        int[] digits = new int[bytes.length];
        int count = 0;
        boolean afterSeparator = false;
        for (int i = 0; i < bytes.length; i++) {
            byte b = bytes[i];
            if (b >= '0' && b <= '9') {
                digits[count++] = b - '0';
                afterSeparator = false;
                continue;
            }
            boolean nextIsDigit = i + 1 < bytes.length && bytes[i + 1] >= '0' && bytes[i + 1] <= '9';
            if ((b == ' ' || b == '-') && count > 0 && !afterSeparator && nextIsDigit) {
                afterSeparator = true;
                continue;
            }
            if (runHoldsCardNumber(digits, count)) {
                return true;
            }
            count = 0;
            afterSeparator = false;
        }
        return runHoldsCardNumber(digits, count);
    }

    private static boolean runHoldsCardNumber(int[] run, int count) {
        for (int length = 13; length <= Math.min(19, count); length++) {
            for (int start = 0; start + length <= count; start++) {
                if (passesLuhn(run, start, length)) {
                    return true;
                }
            }
        }
        return false;
    }

    private static boolean passesLuhn(int[] digits, int start, int length) {
        int sum = 0;
        for (int i = 0; i < length; i++) {
            int digit = digits[start + length - 1 - i];
            if (i % 2 == 1) {
                digit *= 2;
                if (digit > 9) {
                    digit -= 9;
                }
            }
            sum += digit;
        }
        return sum % 10 == 0;
    }
}
