package payrail.client;

/**
 * XXH3 128-bit (xxHash 0.8, seed 0, the default secret): the hash payrail derives a QR merchant key
 * with ({@link MerchantKey}). A port of the reference algorithm; checked against libxxhash.
 */
final class Xxh3 {
    private Xxh3() {}

    private static final long PRIME32_1 = 0x9E3779B1L;
    private static final long PRIME32_2 = 0x85EBCA77L;
    private static final long PRIME32_3 = 0xC2B2AE3DL;
    private static final long PRIME64_1 = 0x9E3779B185EBCA87L;
    private static final long PRIME64_2 = 0xC2B2AE3D27D4EB4FL;
    private static final long PRIME64_3 = 0x165667B19E3779F9L;
    private static final long PRIME64_4 = 0x85EBCA77C2B2AE63L;
    private static final long PRIME64_5 = 0x27D4EB2F165667C5L;
    private static final long PRIME_MX1 = 0x165667919E3779F9L;
    private static final long PRIME_MX2 = 0x9FB21C651E98DF25L;

    private static final byte[] SECRET = java.util.HexFormat.of().parseHex(
            "b8fe6c3923a44bbe7c01812cf721ad1cded46de9839097db7240a4a4b7b3671f"
            + "cb79e64eccc0e578825ad07dccff7221b8084674f743248ee03590e6813a264c"
            + "3c2852bb91c300cb88d0658b1b532ea371644897a20df94e3819ef46a9deacd8"
            + "a8fa763fe39c343ff9dcbbc7c70b4f1d8a51e04bcdb45931c89f7ec9d9787364"
            + "eac5ac8334d3ebc3c581a0fffa1363eb170ddd51b7f0da49d316552629d4689e"
            + "2b16be587d47a1fc8ff8b8d17ad031ce45cb3a8f95160428afd7fbcabb4b407e");
    private static final int STRIPE_LEN = 64;
    private static final int SECRET_CONSUME_RATE = 8;
    private static final int ACC_NB = 8;

    /** The 128-bit hash as {high, low}. */
    static long[] hash128(byte[] input) {
        int len = input.length;
        if (len <= 16) {
            return len0to16(input, len);
        }
        if (len <= 128) {
            return len17to128(input, len);
        }
        if (len <= 240) {
            return len129to240(input, len);
        }
        return hashLong(input, len);
    }

    private static long read64(byte[] b, int i) {
        return (b[i] & 0xffL) | (b[i + 1] & 0xffL) << 8 | (b[i + 2] & 0xffL) << 16 | (b[i + 3] & 0xffL) << 24
                | (b[i + 4] & 0xffL) << 32 | (b[i + 5] & 0xffL) << 40 | (b[i + 6] & 0xffL) << 48
                | (b[i + 7] & 0xffL) << 56;
    }

    private static long read32(byte[] b, int i) {
        return (b[i] & 0xffL) | (b[i + 1] & 0xffL) << 8 | (b[i + 2] & 0xffL) << 16 | (b[i + 3] & 0xffL) << 24;
    }

    private static long unsignedMultiplyHigh(long a, long b) {
        return Math.multiplyHigh(a, b) + ((a >> 63) & b) + ((b >> 63) & a);
    }

    private static long mul128Fold64(long a, long b) {
        return (a * b) ^ unsignedMultiplyHigh(a, b);
    }

    private static long xorshift(long v, int shift) {
        return v ^ (v >>> shift);
    }

    private static long avalanche(long h) {
        h = xorshift(h, 37);
        h *= PRIME_MX1;
        return xorshift(h, 32);
    }

    private static long xxh64Avalanche(long h) {
        h ^= h >>> 33;
        h *= PRIME64_2;
        h ^= h >>> 29;
        h *= PRIME64_3;
        return h ^ (h >>> 32);
    }

    private static long[] len0to16(byte[] in, int len) {
        if (len > 8) {
            long bitflipl = read64(SECRET, 32) ^ read64(SECRET, 40);
            long bitfliph = read64(SECRET, 48) ^ read64(SECRET, 56);
            long inputLo = read64(in, 0);
            long inputHi = read64(in, len - 8);
            long a = inputLo ^ inputHi ^ bitflipl;
            long mLow = a * PRIME64_1;
            long mHigh = unsignedMultiplyHigh(a, PRIME64_1);
            mLow += (long) (len - 1) << 54;
            inputHi ^= bitfliph;
            mHigh += inputHi + (inputHi & 0xffffffffL) * (PRIME32_2 - 1);
            mLow ^= Long.reverseBytes(mHigh);
            long hLow = mLow * PRIME64_2;
            long hHigh = unsignedMultiplyHigh(mLow, PRIME64_2);
            hHigh += mHigh * PRIME64_2;
            return new long[] {avalanche(hHigh), avalanche(hLow)};
        }
        if (len >= 4) {
            long inputLo = read32(in, 0);
            long inputHi = read32(in, len - 4);
            long input64 = inputLo + (inputHi << 32);
            long bitflip = read64(SECRET, 16) ^ read64(SECRET, 24);
            long keyed = input64 ^ bitflip;
            long multiplier = PRIME64_1 + ((long) len << 2);
            long mLow = keyed * multiplier;
            long mHigh = unsignedMultiplyHigh(keyed, multiplier);
            mHigh += mLow << 1;
            mLow ^= mHigh >>> 3;
            mLow = xorshift(mLow, 35);
            mLow *= PRIME_MX2;
            mLow = xorshift(mLow, 28);
            return new long[] {avalanche(mHigh), mLow};
        }
        if (len > 0) {
            long c1 = in[0] & 0xffL;
            long c2 = in[len >> 1] & 0xffL;
            long c3 = in[len - 1] & 0xffL;
            int combinedl = (int) ((c1 << 16) | (c2 << 24) | c3 | ((long) len << 8));
            int combinedh = Integer.rotateLeft(Integer.reverseBytes(combinedl), 13);
            long bitflipl = (read32(SECRET, 0) ^ read32(SECRET, 4));
            long bitfliph = (read32(SECRET, 8) ^ read32(SECRET, 12));
            long keyedLo = (combinedl & 0xffffffffL) ^ bitflipl;
            long keyedHi = (combinedh & 0xffffffffL) ^ bitfliph;
            return new long[] {xxh64Avalanche(keyedHi), xxh64Avalanche(keyedLo)};
        }
        long bitflipl = read64(SECRET, 64) ^ read64(SECRET, 72);
        long bitfliph = read64(SECRET, 80) ^ read64(SECRET, 88);
        return new long[] {xxh64Avalanche(bitfliph), xxh64Avalanche(bitflipl)};
    }

    private static long mix16(byte[] in, int i, int s) {
        return mul128Fold64(read64(in, i) ^ read64(SECRET, s), read64(in, i + 8) ^ read64(SECRET, s + 8));
    }

    /** acc = {low, high}. */
    private static void mix32(long[] acc, byte[] in, int i1, int i2, int s) {
        acc[0] += mix16(in, i1, s);
        acc[0] ^= read64(in, i2) + read64(in, i2 + 8);
        acc[1] += mix16(in, i2, s + 16);
        acc[1] ^= read64(in, i1) + read64(in, i1 + 8);
    }

    private static long[] finish(long[] acc, int len) {
        long low = acc[0] + acc[1];
        long high = acc[0] * PRIME64_1 + acc[1] * PRIME64_4 + (long) len * PRIME64_2;
        return new long[] {-avalanche(high), avalanche(low)};
    }

    private static long[] len17to128(byte[] in, int len) {
        long[] acc = {len * PRIME64_1, 0};
        if (len > 32) {
            if (len > 64) {
                if (len > 96) {
                    mix32(acc, in, 48, len - 64, 96);
                }
                mix32(acc, in, 32, len - 48, 64);
            }
            mix32(acc, in, 16, len - 32, 32);
        }
        mix32(acc, in, 0, len - 16, 0);
        return finish(acc, len);
    }

    private static long[] len129to240(byte[] in, int len) {
        int rounds = len / 32;
        long[] acc = {len * PRIME64_1, 0};
        for (int i = 0; i < 4; i++) {
            mix32(acc, in, 32 * i, 32 * i + 16, 32 * i);
        }
        acc[0] = avalanche(acc[0]);
        acc[1] = avalanche(acc[1]);
        for (int i = 4; i < rounds; i++) {
            mix32(acc, in, 32 * i, 32 * i + 16, 3 + 32 * (i - 4));
        }
        // The last bytes, with the secret at 136 - 17 - 16.
        mix32(acc, in, len - 16, len - 32, 136 - 17 - 16);
        return finish(acc, len);
    }

    private static void accumulate512(long[] acc, byte[] in, int i, int s) {
        for (int lane = 0; lane < ACC_NB; lane++) {
            long data = read64(in, i + 8 * lane);
            long key = data ^ read64(SECRET, s + 8 * lane);
            acc[lane ^ 1] += data;
            acc[lane] += (key & 0xffffffffL) * (key >>> 32);
        }
    }

    private static void scramble(long[] acc, int s) {
        for (int lane = 0; lane < ACC_NB; lane++) {
            long a = xorshift(acc[lane], 47);
            a ^= read64(SECRET, s + 8 * lane);
            acc[lane] = a * PRIME32_1;
        }
    }

    private static long mergeAccs(long[] acc, int s, long start) {
        long result = start;
        for (int i = 0; i < 4; i++) {
            result += mul128Fold64(acc[2 * i] ^ read64(SECRET, s + 16 * i), acc[2 * i + 1] ^ read64(SECRET, s + 16 * i + 8));
        }
        return avalanche(result);
    }

    private static long[] hashLong(byte[] in, int len) {
        long[] acc = {PRIME32_3, PRIME64_1, PRIME64_2, PRIME64_3, PRIME64_4, PRIME32_2, PRIME64_5, PRIME32_1};
        int stripesPerBlock = (SECRET.length - STRIPE_LEN) / SECRET_CONSUME_RATE;
        int blockLen = STRIPE_LEN * stripesPerBlock;
        int blocks = (len - 1) / blockLen;
        for (int n = 0; n < blocks; n++) {
            for (int stripe = 0; stripe < stripesPerBlock; stripe++) {
                accumulate512(acc, in, n * blockLen + stripe * STRIPE_LEN, stripe * SECRET_CONSUME_RATE);
            }
            scramble(acc, SECRET.length - STRIPE_LEN);
        }
        int stripes = ((len - 1) - blockLen * blocks) / STRIPE_LEN;
        for (int stripe = 0; stripe < stripes; stripe++) {
            accumulate512(acc, in, blocks * blockLen + stripe * STRIPE_LEN, stripe * SECRET_CONSUME_RATE);
        }
        accumulate512(acc, in, len - STRIPE_LEN, SECRET.length - STRIPE_LEN - 7);
        long low = mergeAccs(acc, 11, len * PRIME64_1);
        long high = mergeAccs(acc, SECRET.length - STRIPE_LEN - 11, ~(len * PRIME64_2));
        return new long[] {high, low};
    }
}
