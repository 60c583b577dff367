package payrail.client;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.zip.CRC32C;

/**
 * Frames: a 32-byte header (magic "PRL1", version 1, kind, request id, body length, reserved zero,
 * CRC32C of the body, CRC32C of header bytes 0..28), then the body. All integers little-endian.
 */
public final class Wire {
    private Wire() {}

    public static final int HEADER_LEN = 32;
    public static final int VERSION = 1;
    /** No frame is ever larger, whatever the server announces. */
    public static final int FRAME_BYTES_MAX_CEILING = 16 << 20;
    public static final int FRAME_BYTES_MAX_DEFAULT = 1 << 20;
    public static final int BATCH_COMMANDS_MAX_DEFAULT = 8_190;
    private static final byte[] MAGIC = {'P', 'R', 'L', '1'};

    /** A frame's header, checked. */
    public record Header(int kind, long requestId, int bodyLen, int bodyChecksum) {}

    /** A decoded frame. */
    public record Frame(long requestId, Message message) {}

    public static int crc32c(byte[] bytes, int offset, int length) {
        CRC32C crc = new CRC32C();
        crc.update(bytes, offset, length);
        return (int) crc.getValue();
    }

    /** One whole frame (header and body), ready to write. */
    public static ByteBuffer encodeFrame(long requestId, Message message) {
        BodyWriter out = new BodyWriter(HEADER_LEN + message.bodySizeHint());
        out.raw(new byte[HEADER_LEN]);
        message.encodeBody(out);
        int frameLen = out.size();
        if (frameLen > FRAME_BYTES_MAX_CEILING) {
            throw new PayrailException(PayrailException.Kind.ENCODE,
                    "a frame of " + frameLen + " bytes is over the protocol's ceiling of " + FRAME_BYTES_MAX_CEILING);
        }
        byte[] bytes = out.array();
        ByteBuffer header = ByteBuffer.wrap(bytes, 0, HEADER_LEN).order(ByteOrder.LITTLE_ENDIAN);
        header.put(MAGIC);
        header.putShort((short) VERSION);
        header.putShort((short) message.kind());
        header.putLong(requestId);
        header.putInt(frameLen - HEADER_LEN);
        header.putInt(0);
        header.putInt(crc32c(bytes, HEADER_LEN, frameLen - HEADER_LEN));
        header.putInt(crc32c(bytes, 0, 28));
        return ByteBuffer.wrap(bytes, 0, frameLen);
    }

    /** One whole frame as a byte array. */
    public static byte[] encode(long requestId, Message message) {
        ByteBuffer frame = encodeFrame(requestId, message);
        return Arrays.copyOf(frame.array(), frame.limit());
    }

    /**
     * Checks a header as soon as its 32 bytes are there, in the protocol's order: magic, version,
     * header checksum, reserved, size, known kind.
     */
    public static Header parseHeader(byte[] bytes, int frameBytesMax) {
        if (bytes.length < HEADER_LEN) {
            throw new IllegalArgumentException("a header is 32 bytes");
        }
        ByteBuffer header = ByteBuffer.wrap(bytes, 0, HEADER_LEN).order(ByteOrder.LITTLE_ENDIAN);
        if (bytes[0] != MAGIC[0] || bytes[1] != MAGIC[1] || bytes[2] != MAGIC[2] || bytes[3] != MAGIC[3]) {
            throw new WireException(ErrorCode.BAD_MAGIC, "the frame does not start with PRL1");
        }
        int version = header.getShort(4) & 0xffff;
        if (version != VERSION) {
            throw new WireException(ErrorCode.UNSUPPORTED_VERSION, "protocol version " + version + ", this client speaks 1");
        }
        int headerChecksum = header.getInt(28);
        if (headerChecksum != crc32c(bytes, 0, 28)) {
            throw new WireException(ErrorCode.HEADER_CHECKSUM, "the header checksum does not match");
        }
        if (header.getInt(20) != 0) {
            throw new WireException(ErrorCode.RESERVED_NOT_ZERO, "the reserved header field is not zero");
        }
        long bodyLen = Integer.toUnsignedLong(header.getInt(16));
        if (HEADER_LEN + bodyLen > Math.min(frameBytesMax, FRAME_BYTES_MAX_CEILING)) {
            throw new WireException(ErrorCode.FRAME_TOO_LARGE,
                    "a frame of " + (HEADER_LEN + bodyLen) + " bytes, at most " + frameBytesMax + " accepted");
        }
        int kind = header.getShort(6) & 0xffff;
        if (!Message.isKnownKind(kind)) {
            throw new WireException(ErrorCode.UNKNOWN_MESSAGE_KIND, "unknown message kind " + kind);
        }
        return new Header(kind, header.getLong(8), (int) bodyLen, header.getInt(24));
    }

    /** Checks the body's checksum and decodes it. */
    public static Message decodeBody(Header header, byte[] body, int batchMax) {
        if (crc32c(body, 0, body.length) != header.bodyChecksum()) {
            throw new WireException(ErrorCode.BODY_CHECKSUM, "the body checksum does not match");
        }
        return Message.decodeBody(header.kind(), body, batchMax);
    }

    /** Decodes one whole frame (exactly the bytes of one frame). */
    public static Frame decode(byte[] frame, int frameBytesMax, int batchMax) {
        Header header = parseHeader(frame, frameBytesMax);
        if (frame.length != HEADER_LEN + header.bodyLen()) {
            throw new WireException(ErrorCode.MALFORMED_BODY,
                    "the frame is " + frame.length + " bytes, its header says " + (HEADER_LEN + header.bodyLen()));
        }
        byte[] body = Arrays.copyOfRange(frame, HEADER_LEN, frame.length);
        return new Frame(header.requestId(), decodeBody(header, body, batchMax));
    }
}
