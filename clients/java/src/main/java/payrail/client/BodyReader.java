package payrail.client;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;

/**
 * Reads a frame body. Every length is checked against its limit and against the bytes actually
 * left before anything is allocated; a body that ends early is {@code malformed_body}.
 */
public final class BodyReader {
    private final ByteBuffer buffer;

    public BodyReader(byte[] body) {
        buffer = ByteBuffer.wrap(body).order(ByteOrder.LITTLE_ENDIAN);
    }

    static WireException malformed(String reason) {
        return new WireException(ErrorCode.MALFORMED_BODY, reason);
    }

    private void need(int bytes, String what) {
        if (buffer.remaining() < bytes) {
            throw malformed("the body ends early, in " + what);
        }
    }

    public int remaining() {
        return buffer.remaining();
    }

    public int u8(String what) {
        need(1, what);
        return buffer.get() & 0xff;
    }

    public boolean bool(String what) {
        int value = u8(what);
        if (value > 1) {
            throw malformed(what + ": " + value + " is not a boolean (0 or 1)");
        }
        return value == 1;
    }

    public int u16(String what) {
        need(2, what);
        return buffer.getShort() & 0xffff;
    }

    public short i16(String what) {
        need(2, what);
        return buffer.getShort();
    }

    /** A u32 as a Java int (its bits; read unsigned values with Integer.toUnsignedLong). */
    public int u32(String what) {
        need(4, what);
        return buffer.getInt();
    }

    /** A u64 or i64 as a Java long (its bits). */
    public long u64(String what) {
        need(8, what);
        return buffer.getLong();
    }

    public CommandId u128(String what) {
        need(16, what);
        long low = buffer.getLong();
        long high = buffer.getLong();
        return new CommandId(high, low);
    }

    public byte[] raw(int length, String what) {
        need(length, what);
        byte[] bytes = new byte[length];
        buffer.get(bytes);
        return bytes;
    }

    /**
     * A vector's length, checked against {@code max} and against the bytes left given that each
     * element takes at least {@code elementBytesMin}.
     */
    public int length(String what, long max, int elementBytesMin) {
        long length = u64(what + " length");
        if (length < 0 || length > max) {
            throw malformed(what + ": " + Long.toUnsignedString(length) + " entries, at most " + max + " allowed");
        }
        if (length * (long) elementBytesMin > buffer.remaining()) {
            throw malformed(what + ": " + length + " entries do not fit in the " + buffer.remaining() + " bytes left");
        }
        return (int) length;
    }

    /** A variant index (u32). */
    public int variant(String what) {
        return u32(what + " variant");
    }

    public String string(String what, int maxBytes) {
        long length = u64(what + " length");
        if (length < 0 || length > maxBytes) {
            throw malformed(what + ": " + Long.toUnsignedString(length) + " bytes, at most " + maxBytes + " allowed");
        }
        byte[] bytes = raw((int) length, what);
        try {
            return StandardCharsets.UTF_8
                    .newDecoder()
                    .onMalformedInput(CodingErrorAction.REPORT)
                    .onUnmappableCharacter(CodingErrorAction.REPORT)
                    .decode(ByteBuffer.wrap(bytes))
                    .toString();
        } catch (CharacterCodingException error) {
            throw malformed(what + " is not valid UTF-8");
        }
    }

    public Long optionU64(String what) {
        int tag = u8(what + " option tag");
        switch (tag) {
            case 0:
                return null;
            case 1:
                return u64(what);
            default:
                throw malformed(what + ": option tag " + tag + " (0 or 1)");
        }
    }

    public Status status(String what) {
        int code = u16(what);
        Status status = Status.fromCode(code);
        if (status == null) {
            throw malformed(what + ": unknown status code " + code);
        }
        return status;
    }

    /** Fails unless the body was read to its end. */
    public void finish(String message) {
        if (buffer.hasRemaining()) {
            throw malformed(buffer.remaining() + " bytes left after the " + message + " message");
        }
    }
}
