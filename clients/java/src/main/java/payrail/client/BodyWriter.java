package payrail.client;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * Writes a frame body in the protocol's encoding (bincode 2, fixed-width little-endian integers):
 * strings and vectors carry their length as u64, an option is u8 0 or u8 1 and the value, an enum
 * is its variant index as u32 and then its fields.
 */
public final class BodyWriter {
    private ByteBuffer buffer;

    /** A writer whose buffer starts with room for {@code capacity} bytes and grows as needed. */
    public BodyWriter(int capacity) {
        buffer = ByteBuffer.allocate(Math.max(capacity, 64)).order(ByteOrder.LITTLE_ENDIAN);
    }

    private void room(int bytes) {
        if (buffer.remaining() < bytes) {
            long wanted = Math.max((long) buffer.capacity() * 2, (long) buffer.position() + bytes);
            if (wanted > Integer.MAX_VALUE - 16) {
                throw new PayrailException(PayrailException.Kind.ENCODE, "the request is too large to encode");
            }
            ByteBuffer bigger = ByteBuffer.allocate((int) wanted).order(ByteOrder.LITTLE_ENDIAN);
            buffer.flip();
            bigger.put(buffer);
            buffer = bigger;
        }
    }

    public BodyWriter u8(int value) {
        room(1);
        buffer.put((byte) value);
        return this;
    }

    public BodyWriter bool(boolean value) {
        return u8(value ? 1 : 0);
    }

    public BodyWriter u16(int value) {
        room(2);
        buffer.putShort((short) value);
        return this;
    }

    public BodyWriter u32(int value) {
        room(4);
        buffer.putInt(value);
        return this;
    }

    /** A u64 (the bits of {@code value}, read as unsigned) or an i64. */
    public BodyWriter u64(long value) {
        room(8);
        buffer.putLong(value);
        return this;
    }

    public BodyWriter u128(CommandId id) {
        room(16);
        buffer.putLong(id.low());
        buffer.putLong(id.high());
        return this;
    }

    /** Bytes as they are, no length (fixed-size arrays such as a nonce or a proof). */
    public BodyWriter raw(byte[] bytes) {
        room(bytes.length);
        buffer.put(bytes);
        return this;
    }

    /** A vector's or string's length: u64. */
    public BodyWriter length(int length) {
        return u64(length);
    }

    /** A variant index: u32. */
    public BodyWriter variant(int index) {
        return u32(index);
    }

    /**
     * A string: its UTF-8 length as u64, then the bytes.
     *
     * @throws PayrailException (ENCODE) if it is over {@code maxBytes}
     */
    public BodyWriter string(String value, int maxBytes, String what) {
        byte[] bytes = value.getBytes(StandardCharsets.UTF_8);
        if (bytes.length > maxBytes) {
            throw new PayrailException(
                    PayrailException.Kind.ENCODE,
                    what + " is " + bytes.length + " bytes of UTF-8, at most " + maxBytes + " allowed");
        }
        length(bytes.length);
        return raw(bytes);
    }

    /** {@code Option<u64>}: u8 0 for none, u8 1 then the value. */
    public BodyWriter optionU64(Long value) {
        if (value == null) {
            return u8(0);
        }
        return u8(1).u64(value);
    }

    /** Bytes written so far. */
    public int size() {
        return buffer.position();
    }

    /** A copy of the bytes written. */
    public byte[] toByteArray() {
        return Arrays.copyOf(buffer.array(), buffer.position());
    }

    /** The backing array (valid up to {@link #size()}); no copy. */
    byte[] array() {
        return buffer.array();
    }

    /** Overwrites 4 bytes at {@code position} (a header field filled in after the body). */
    void putU32At(int position, int value) {
        buffer.putInt(position, value);
    }

    void putU64At(int position, long value) {
        buffer.putLong(position, value);
    }
}
