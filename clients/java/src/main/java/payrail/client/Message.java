package payrail.client;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Every message of the protocol (docs/protocol.md, "Messages"). The header's kind says which one a
 * frame holds; the body is its fields in order.
 */
public sealed interface Message {
    int CHALLENGE = 1;
    int HELLO = 2;
    int WELCOME = 3;
    int SUBMIT = 10;
    int RESULTS = 11;
    int QUERY = 12;
    int QUERY_RESULTS = 13;
    int SUBMIT_QR = 14;
    int STATUS = 20;
    int STATUS_REPLY = 21;
    int HISTORY_QUERY = 30;
    int HISTORY_PAGE = 31;
    int TX_QUERY = 32;
    int TX_REPLY = 33;
    int BACKUP = 34;
    int BACKUP_REPLY = 35;
    int SET_RISK_POLICY = 40;
    int RISK_POLICY_SET = 41;
    int ERROR = 255;

    int GATEWAY_NAME_BYTES_MAX = 64;
    int ERROR_MESSAGE_BYTES_MAX = 256;
    int STATUS_FIELDS_MAX = 512;
    int STATUS_FIELD_NAME_BYTES_MAX = 64;
    int BACKUP_DIR_BYTES_MAX = 1_024;
    int HISTORY_ENTRIES_MAX = 1_000;
    int TX_LEGS_MAX = 64;
    int QR_BATCH_MAX = 256;

    /** Whether {@code kind} names a message of this protocol version. */
    static boolean isKnownKind(int kind) {
        switch (kind) {
            case CHALLENGE, HELLO, WELCOME, SUBMIT, RESULTS, QUERY, QUERY_RESULTS, SUBMIT_QR, STATUS, STATUS_REPLY,
                    HISTORY_QUERY, HISTORY_PAGE, TX_QUERY, TX_REPLY, BACKUP, BACKUP_REPLY, SET_RISK_POLICY,
                    RISK_POLICY_SET, ERROR:
                return true;
            default:
                return false;
        }
    }

    /** The message kind in the header. */
    int kind();

    /** Writes the body. */
    void encodeBody(BodyWriter out);

    /** A size hint for the body, in bytes. */
    default int bodySizeHint() {
        return 64;
    }

    record Challenge(byte[] nonce) implements Message {
        public int kind() {
            return CHALLENGE;
        }

        public void encodeBody(BodyWriter out) {
            out.raw(nonce);
        }
    }

    record Hello(String gateway, byte[] proof) implements Message {
        public int kind() {
            return HELLO;
        }

        public void encodeBody(BodyWriter out) {
            out.string(gateway, GATEWAY_NAME_BYTES_MAX, "the gateway name");
            out.raw(proof);
        }
    }

    record Welcome(int frameBytesMax, int batchCommandsMax, int inflightMax) implements Message {
        public int kind() {
            return WELCOME;
        }

        public void encodeBody(BodyWriter out) {
            out.u32(frameBytesMax).u32(batchCommandsMax).u32(inflightMax);
        }
    }

    record Submit(List<Command> commands) implements Message {
        public int kind() {
            return SUBMIT;
        }

        public int bodySizeHint() {
            return 8 + commands.size() * 64;
        }

        public void encodeBody(BodyWriter out) {
            out.length(commands.size());
            for (Command command : commands) {
                command.encode(out);
            }
        }
    }

    record Results(List<CommandResult> results) implements Message {
        public int kind() {
            return RESULTS;
        }

        public void encodeBody(BodyWriter out) {
            throw new UnsupportedOperationException("this client does not send Results");
        }
    }

    record QueryRequest(List<Query> queries) implements Message {
        public int kind() {
            return QUERY;
        }

        public int bodySizeHint() {
            return 8 + queries.size() * 20;
        }

        public void encodeBody(BodyWriter out) {
            out.length(queries.size());
            for (Query query : queries) {
                query.encode(out);
            }
        }
    }

    record QueryResults(List<QueryReply> replies) implements Message {
        public int kind() {
            return QUERY_RESULTS;
        }

        public void encodeBody(BodyWriter out) {
            throw new UnsupportedOperationException("this client does not send QueryResults");
        }
    }

    record SubmitQr(List<QrPayment> payments) implements Message {
        public int kind() {
            return SUBMIT_QR;
        }

        public int bodySizeHint() {
            return 8 + payments.size() * 160;
        }

        public void encodeBody(BodyWriter out) {
            out.length(payments.size());
            for (QrPayment payment : payments) {
                payment.encode(out);
            }
        }
    }

    record StatusRequest() implements Message {
        public int kind() {
            return STATUS;
        }

        public void encodeBody(BodyWriter out) {}
    }

    /** The server's counters, in the order it sent them. */
    record StatusReply(Map<String, Long> fields) implements Message {
        public int kind() {
            return STATUS_REPLY;
        }

        public void encodeBody(BodyWriter out) {
            out.length(fields.size());
            fields.forEach((name, value) -> out.string(name, STATUS_FIELD_NAME_BYTES_MAX, "a field name").u64(value));
        }
    }

    record HistoryQuery(long account, long fromNs, long toNs, CommandId cursor, int limit) implements Message {
        public int kind() {
            return HISTORY_QUERY;
        }

        public void encodeBody(BodyWriter out) {
            out.u64(account).u64(fromNs).u64(toNs).u128(cursor).u32(limit);
        }
    }

    record HistoryPageReply(HistoryPage page) implements Message {
        public int kind() {
            return HISTORY_PAGE;
        }

        public void encodeBody(BodyWriter out) {
            throw new UnsupportedOperationException("this client does not send HistoryPage");
        }
    }

    record TxQuery(CommandId id) implements Message {
        public int kind() {
            return TX_QUERY;
        }

        public void encodeBody(BodyWriter out) {
            out.u128(id);
        }
    }

    record TxReplyMessage(TxReply reply) implements Message {
        public int kind() {
            return TX_REPLY;
        }

        public void encodeBody(BodyWriter out) {
            throw new UnsupportedOperationException("this client does not send TxReply");
        }
    }

    record Backup(String dir) implements Message {
        public int kind() {
            return BACKUP;
        }

        public void encodeBody(BodyWriter out) {
            out.string(dir, BACKUP_DIR_BYTES_MAX, "the backup directory");
        }
    }

    record BackupReply(long lastSequence) implements Message {
        public int kind() {
            return BACKUP_REPLY;
        }

        public void encodeBody(BodyWriter out) {
            out.u64(lastSequence);
        }
    }

    /** The policy's canonical encoding, sent with its length as u64. */
    record SetRiskPolicy(byte[] policy) implements Message {
        public int kind() {
            return SET_RISK_POLICY;
        }

        public void encodeBody(BodyWriter out) {
            out.length(policy.length).raw(policy);
        }
    }

    record RiskPolicySetReply(RiskPolicySet outcome) implements Message {
        public int kind() {
            return RISK_POLICY_SET;
        }

        public void encodeBody(BodyWriter out) {
            out.u16(outcome.status().code()).raw(outcome.digest());
        }
    }

    record ErrorReply(ErrorCode code, String message) implements Message {
        public int kind() {
            return ERROR;
        }

        public void encodeBody(BodyWriter out) {
            out.u16(code.code()).string(message, ERROR_MESSAGE_BYTES_MAX, "an error message");
        }
    }

    /**
     * Decodes a body of the given kind. Batches over {@code batchMax} are batch_too_large; anything
     * that does not decode, or bytes left over, malformed_body.
     */
    static Message decodeBody(int kind, byte[] body, int batchMax) {
        BodyReader in = new BodyReader(body);
        Message message;
        switch (kind) {
            case CHALLENGE:
                message = new Challenge(in.raw(32, "nonce"));
                break;
            case HELLO:
                message = new Hello(in.string("gateway", GATEWAY_NAME_BYTES_MAX), in.raw(32, "proof"));
                break;
            case WELCOME:
                message = new Welcome(in.u32("frame_bytes_max"), in.u32("batch_commands_max"), in.u32("inflight_max"));
                break;
            case RESULTS: {
                int count = batchLength(in, "results", batchMax, CommandResult.WIRE_BYTES_MIN);
                List<CommandResult> results = new ArrayList<>(count);
                for (int i = 0; i < count; i++) {
                    results.add(CommandResult.decode(in));
                }
                message = new Results(results);
                break;
            }
            case QUERY_RESULTS: {
                int count = batchLength(in, "replies", batchMax, QueryReply.WIRE_BYTES_MIN);
                List<QueryReply> replies = new ArrayList<>(count);
                for (int i = 0; i < count; i++) {
                    replies.add(QueryReply.decode(in));
                }
                message = new QueryResults(replies);
                break;
            }
            case STATUS:
                message = new StatusRequest();
                break;
            case STATUS_REPLY: {
                int count = in.length("fields", STATUS_FIELDS_MAX, 16);
                Map<String, Long> fields = new LinkedHashMap<>();
                for (int i = 0; i < count; i++) {
                    fields.put(in.string("field name", STATUS_FIELD_NAME_BYTES_MAX), in.u64("field value"));
                }
                message = new StatusReply(fields);
                break;
            }
            case HISTORY_QUERY:
                message = new HistoryQuery(in.u64("account"), in.u64("from_ns"), in.u64("to_ns"), in.u128("cursor"),
                        in.u32("limit"));
                break;
            case HISTORY_PAGE: {
                List<Movement> entries = movements(in, "entries", HISTORY_ENTRIES_MAX);
                message = new HistoryPageReply(new HistoryPage(entries, in.u128("next_cursor")));
                break;
            }
            case TX_QUERY:
                message = new TxQuery(in.u128("id"));
                break;
            case TX_REPLY: {
                int source = in.u8("source");
                if (source > 2) {
                    throw BodyReader.malformed("unknown tx source " + source);
                }
                Status status = in.status("status");
                List<Movement> legs = movements(in, "legs", TX_LEGS_MAX);
                message = new TxReplyMessage(new TxReply(TxReply.Source.values()[source], status, legs));
                break;
            }
            case BACKUP:
                message = new Backup(in.string("dir", BACKUP_DIR_BYTES_MAX));
                break;
            case BACKUP_REPLY:
                message = new BackupReply(in.u64("last_sequence"));
                break;
            case RISK_POLICY_SET:
                message = new RiskPolicySetReply(new RiskPolicySet(in.status("status"), in.raw(32, "digest")));
                break;
            case ERROR: {
                int code = in.u16("error code");
                ErrorCode errorCode = ErrorCode.fromCode(code);
                if (errorCode == null) {
                    throw BodyReader.malformed("unknown error code " + code);
                }
                message = new ErrorReply(errorCode, in.string("message", ERROR_MESSAGE_BYTES_MAX));
                break;
            }
            default:
                // Requests this client only sends (Submit, Query, SubmitQr, SetRiskPolicy).
                throw new WireException(ErrorCode.UNEXPECTED_MESSAGE, "a client does not decode message kind " + kind);
        }
        in.finish("kind " + kind);
        return message;
    }

    private static int batchLength(BodyReader in, String what, int batchMax, int elementBytesMin) {
        long count = in.u64(what + " length");
        if (Long.compareUnsigned(count, batchMax) > 0) {
            throw new WireException(ErrorCode.BATCH_TOO_LARGE,
                    what + ": " + Long.toUnsignedString(count) + " entries, at most " + batchMax + " allowed");
        }
        if (count * elementBytesMin > in.remaining()) {
            throw BodyReader.malformed(what + ": " + count + " entries do not fit in the bytes left");
        }
        return (int) count;
    }

    private static List<Movement> movements(BodyReader in, String what, int max) {
        int count = in.length(what, max, Movement.WIRE_BYTES_MIN);
        List<Movement> movements = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            movements.add(Movement.decode(in));
        }
        return movements;
    }
}
