package payrail.client;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Consumer;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The hex vectors of docs/protocol.md, read from the document (as api/tests/wire_vectors.rs does):
 * each frame a client sends must be exactly what this client encodes, each frame a server sends
 * must decode to the message the document describes and re-encode to the same bytes. A vector
 * this file does not know fails, so a change of the wire format breaks these tests.
 */
final class VectorTests {
    private VectorTests() {}

    static final String PROMPTPAY_STATIC =
            "00020101021129370016A000000677010111011300669123456785802TH53037646304F1E3";
    static final byte[] EXAMPLE_SECRET = "example-secret".getBytes(StandardCharsets.UTF_8);

    /** The vectors of the document, by name, in order. */
    static Map<String, byte[]> readVectors(Path root) throws IOException {
        Map<String, byte[]> vectors = new LinkedHashMap<>();
        String name = null;
        StringBuilder hex = null;
        for (String line : Files.readAllLines(root.resolve("docs/protocol.md"), StandardCharsets.UTF_8)) {
            if (hex != null) {
                if (line.trim().equals("```")) {
                    if (name == null) {
                        throw new AssertionError("a ```hex block without a `#### Vector:` line");
                    }
                    vectors.put(name, HexFormat.of().parseHex(hex.toString()));
                    name = null;
                    hex = null;
                } else {
                    int comment = line.indexOf('#');
                    hex.append((comment >= 0 ? line.substring(0, comment) : line).replaceAll("\\s", ""));
                }
            } else if (line.startsWith("#### Vector: ")) {
                name = line.substring("#### Vector: ".length()).trim();
            } else if (line.trim().equals("```hex")) {
                hex = new StringBuilder();
            }
        }
        if (hex != null) {
            throw new AssertionError("unterminated hex block");
        }
        return vectors;
    }

    static byte[] nonce() {
        byte[] nonce = new byte[32];
        for (int i = 0; i < 32; i++) {
            nonce[i] = (byte) i;
        }
        return nonce;
    }

    static Movement movement() {
        return new Movement(1001, 2002, CommandId.of(2), 9, 1_795_336_205_000_000_000L, 0, -1250, 48_750,
                Currency.CNY, 0, "transfer");
    }

    /** A withdrawal to a bank card, posted after the transfer. */
    static Movement withdrawalMovement() {
        return new Movement(1001, 0xFF01_0000_0000_009CL, CommandId.of(3), 10, 1_795_336_206_000_000_000L, 0,
                -20_000, 28_750, Currency.CNY, 0, "withdraw_post", new MovementInstrument(1, "ICBC", "4242"));
    }

    static RiskPolicy examplePolicy() {
        return RiskPolicy.EMPTY
                .withBlockedCountries(new RiskPolicy.Response(RiskPolicy.Action.DECLINE, false), "KP")
                .withVelocity(new RiskPolicy.Response(RiskPolicy.Action.STEP_UP, false), 10, 600_000_000_000L);
    }

    /** What each vector must be: a message this client sends (exact bytes), or a check of what it decodes. */
    static Map<String, Consumer<byte[]>> expectations() {
        Map<String, Consumer<byte[]>> expected = new LinkedHashMap<>();
        expected.put("challenge", bytes -> {
            Message.Challenge challenge = (Message.Challenge) decoded(bytes, 0);
            Check.equal(nonce(), challenge.nonce(), "nonce");
            reencodes(bytes, 0, challenge);
        });
        expected.put("hello", bytes -> sends(bytes, 1,
                new Message.Hello("gw-tokyo-1", PayrailClient.proof(EXAMPLE_SECRET, nonce(), "gw-tokyo-1"))));
        expected.put("welcome", bytes -> {
            Message message = decoded(bytes, 1);
            Check.equal(new Message.Welcome(1_048_576, 8_190, 64), message, "welcome");
            reencodes(bytes, 1, message);
        });
        expected.put("submit", bytes -> sends(bytes, 2, new Message.Submit(List.of(
                Command.deposit(CommandId.of(1), 1001, 50_000, Currency.CNY),
                Command.transfer(CommandId.of(2), 1001, 2002, 1250, Currency.CNY,
                        new RiskContext(42, (short) 3123, (short) 12147, "CN", false))))));
        expected.put("results", bytes -> Check.equal(new Message.Results(List.of(
                new CommandResult(Status.OK, Detail.NONE),
                new CommandResult(Status.STEP_UP_REQUIRED, new Detail.Risk(
                        new Detail.RiskDetail(Verdict.STEP_UP, RiskRule.NEW_DEVICE, 1, 42))))),
                decoded(bytes, 2), "results"));
        expected.put("query", bytes -> sends(bytes, 3, new Message.QueryRequest(List.of(new Query.Balance(1001)))));
        expected.put("query_results", bytes -> Check.equal(new Message.QueryResults(List.of(new QueryReply.Balance(
                new AccountView(1001, 77, AccountKind.CUSTOMER, Currency.CNY, AccountView.AccountStatus.ACTIVE, 1, 0,
                        50_000, 0, 0, 50_000)))),
                decoded(bytes, 3), "query results"));
        expected.put("submit_qr", bytes -> sends(bytes, 6, new Message.SubmitQr(List.of(
                new QrPayment(CommandId.of(3), 1001, 12_500L, null, RiskContext.NONE, PROMPTPAY_STATIC)))));
        expected.put("status", bytes -> sends(bytes, 4, new Message.StatusRequest()));
        expected.put("status_reply", bytes -> {
            Message message = decoded(bytes, 4);
            Map<String, Long> fields = new LinkedHashMap<>();
            fields.put("connections", 3L);
            fields.put("commands_total", 2L);
            Check.equal(new Message.StatusReply(fields), message, "status reply");
            reencodes(bytes, 4, message);
        });
        expected.put("set_risk_policy", bytes -> sends(bytes, 7, new Message.SetRiskPolicy(examplePolicy().encode())));
        expected.put("risk_policy_set", bytes -> {
            Message.RiskPolicySetReply reply = (Message.RiskPolicySetReply) decoded(bytes, 7);
            Check.equal(Status.OK, reply.outcome().status(), "status");
            Check.equal(HexFormat.of().parseHex("2fce7a6453112b41103d265aa31e1ecf4f1d35ab992ac354875f22525fbe44c4"),
                    reply.outcome().digest(), "digest");
            reencodes(bytes, 7, reply);
        });
        expected.put("history_query", bytes -> sends(bytes, 6,
                new Message.HistoryQuery(1001, 0, -1L, CommandId.of(0), 50)));
        expected.put("history_page", bytes -> Check.equal(
                new Message.HistoryPageReply(
                        new HistoryPage(List.of(withdrawalMovement(), movement()), CommandId.of(0))),
                decoded(bytes, 6), "history page"));
        expected.put("tx_query", bytes -> sends(bytes, 7, new Message.TxQuery(CommandId.of(2))));
        expected.put("tx_reply", bytes -> Check.equal(
                new Message.TxReplyMessage(new TxReply(TxReply.Source.RECORD, Status.OK, List.of(movement()))),
                decoded(bytes, 7), "tx reply"));
        expected.put("backup", bytes -> sends(bytes, 8, new Message.Backup("/backups/payrail-1")));
        expected.put("backup_reply", bytes -> {
            Message message = decoded(bytes, 8);
            Check.equal(new Message.BackupReply(42), message, "backup reply");
            reencodes(bytes, 8, message);
        });
        expected.put("error", bytes -> {
            Message message = decoded(bytes, 5);
            Check.equal(new Message.ErrorReply(ErrorCode.BATCH_TOO_LARGE,
                    "submit batch of 8191 entries, at most 8190 allowed"), message, "error");
            reencodes(bytes, 5, message);
        });
        return expected;
    }

    /** A frame this client sends: exactly the vector's bytes. */
    static void sends(byte[] vector, long requestId, Message message) {
        Check.equal(vector, Wire.encode(requestId, message), "the frame this client encodes");
    }

    static Message decoded(byte[] vector, long requestId) {
        Wire.Frame frame = Wire.decode(vector, Wire.FRAME_BYTES_MAX_DEFAULT, Wire.BATCH_COMMANDS_MAX_DEFAULT);
        Check.equal(requestId, frame.requestId(), "request id");
        return frame.message();
    }

    static void reencodes(byte[] vector, long requestId, Message message) {
        Check.equal(vector, Wire.encode(requestId, message), "re-encoded");
    }

    /** A copy of {@code frame} with header fields changed and the header checksum made right again. */
    static byte[] withHeader(byte[] frame, Consumer<ByteBuffer> change) {
        byte[] copy = frame.clone();
        ByteBuffer header = ByteBuffer.wrap(copy).order(ByteOrder.LITTLE_ENDIAN);
        change.accept(header);
        header.putInt(28, Wire.crc32c(copy, 0, 28));
        return copy;
    }

    /** A frame with a new body and both checksums right. */
    static byte[] withBody(byte[] frame, byte[] body) {
        byte[] copy = Arrays.copyOf(frame, Wire.HEADER_LEN + body.length);
        System.arraycopy(body, 0, copy, Wire.HEADER_LEN, body.length);
        return withHeader(copy, header -> {
            header.putInt(16, body.length);
            header.putInt(24, Wire.crc32c(body, 0, body.length));
        });
    }

    static byte[] body(byte[] frame) {
        return Arrays.copyOfRange(frame, Wire.HEADER_LEN, frame.length);
    }

    /** Rows {@code | code | `Variant` | `name` | ...} of the table under a heading. */
    static Map<Integer, String> table(Path root, String heading) throws IOException {
        String doc = Files.readString(root.resolve("docs/protocol.md"), StandardCharsets.UTF_8);
        int start = doc.indexOf(heading);
        Check.isTrue(start >= 0, "docs/protocol.md has a section " + heading);
        Map<Integer, String> rows = new TreeMap<>();
        Pattern row = Pattern.compile("^\\|\\s*(\\d+)\\s*\\|\\s*`\\w+`\\s*\\|\\s*`(\\w+)`\\s*\\|");
        boolean inTable = false;
        for (String line : doc.substring(start).split("\n")) {
            Matcher matcher = row.matcher(line);
            if (matcher.find()) {
                rows.put(Integer.parseInt(matcher.group(1)), matcher.group(2));
                inTable = true;
            } else if (inTable && !line.startsWith("|")) {
                break;
            }
        }
        return rows;
    }

    static List<TestMain.Case> cases(Path root) throws IOException {
        Map<String, byte[]> vectors = readVectors(root);
        List<TestMain.Case> cases = new ArrayList<>();
        Map<String, Consumer<byte[]>> expected = expectations();
        cases.add(new TestMain.Case("vectors: the document has every vector this client checks, and no other", () -> {
            Check.equal(expected.keySet(), vectors.keySet(), "vector names in docs/protocol.md");
        }));
        for (Map.Entry<String, byte[]> vector : vectors.entrySet()) {
            Consumer<byte[]> check = expected.get(vector.getKey());
            if (check != null) {
                cases.add(new TestMain.Case("vector " + vector.getKey(), () -> check.accept(vector.getValue())));
            }
        }
        cases.add(new TestMain.Case("XXH3-128 of merchant keys matches the reference xxHash", () -> {
            // From libxxhash 0.8.1 (XXH3_128bits) over bytes (i * 7 + 3) & 0xff: every length class.
            String[][] hashes = {
                {"0", "99aa06d3014798d86001c324468d497f"}, {"3", "ce31763cbf8245a5a9088dda485b481c"},
                {"8", "e3bc8a5f461715553cd024e3d63a1588"}, {"16", "ce0b9647ab24f88460d75c5e47d40a24"},
                {"100", "2207ed96998d91f20cc97f05750182b2"}, {"200", "32200a52a918beaf380142cdd5843bbd"},
                {"240", "ad46c1021b076bc704e0b5f034bee80b"}, {"1025", "bf447251cfa98d7c806c2072ed713576"},
                {"5000", "c98ae385d09887cc799aaddd7339581d"},
            };
            for (String[] row : hashes) {
                byte[] input = new byte[Integer.parseInt(row[0])];
                for (int i = 0; i < input.length; i++) {
                    input[i] = (byte) (i * 7 + 3);
                }
                long[] hash = Xxh3.hash128(input);
                Check.equal(row[1], String.format("%016x%016x", hash[0], hash[1]), "XXH3-128 of " + row[0] + " bytes");
            }
            // XXH3-128("br.gov.bcb.pix" 0x00 "shop@example.com"); the GUI is trimmed and lower-cased.
            CommandId key = new CommandId(0xd1fbaa87329c7b22L, 0xbfbf46400c9fbfc9L);
            Check.equal(key, MerchantKey.of("br.gov.bcb.pix", "shop@example.com"), "merchant key");
            Check.equal(key, MerchantKey.of(" BR.GOV.BCB.PIX ", " shop@example.com"), "merchant key, trimmed");
        }));
        cases.add(new TestMain.Case("crc32c check values", () -> {
            Check.equal(0, Wire.crc32c(new byte[0], 0, 0), "crc32c of nothing");
            byte[] digits = "123456789".getBytes(StandardCharsets.US_ASCII);
            Check.equal(0xe3069283, Wire.crc32c(digits, 0, digits.length), "crc32c(123456789)");
        }));
        cases.add(new TestMain.Case("status codes and names are the document's table", () -> {
            Map<Integer, String> mine = new TreeMap<>();
            for (Status status : Status.values()) {
                mine.put(status.code(), status.wireName());
            }
            Check.equal(table(root, "## Command statuses"), mine, "statuses");
        }));
        cases.add(new TestMain.Case("error codes and names are the document's table", () -> {
            Map<Integer, String> mine = new TreeMap<>();
            for (ErrorCode code : ErrorCode.values()) {
                mine.put(code.code(), code.wireName());
            }
            Check.equal(table(root, "## Error codes"), mine, "error codes");
        }));
        cases.add(new TestMain.Case("a header is checked in the document's order before its body", () -> {
            byte[] challenge = vectors.get("challenge");
            int max = Wire.FRAME_BYTES_MAX_DEFAULT;
            byte[] badMagic = challenge.clone();
            badMagic[0] = 'X';
            Check.refused(ErrorCode.BAD_MAGIC, () -> Wire.parseHeader(badMagic, max), "magic");
            byte[] version2 = challenge.clone();
            version2[4] = 2; // checksum now wrong too: the version is checked first
            Check.refused(ErrorCode.UNSUPPORTED_VERSION, () -> Wire.parseHeader(version2, max), "version");
            byte[] flipped = challenge.clone();
            flipped[8] ^= 1;
            Check.refused(ErrorCode.HEADER_CHECKSUM, () -> Wire.parseHeader(flipped, max), "header checksum");
            Check.refused(ErrorCode.RESERVED_NOT_ZERO,
                    () -> Wire.parseHeader(withHeader(challenge, h -> h.putInt(20, 1)), max), "reserved");
            Check.refused(ErrorCode.FRAME_TOO_LARGE,
                    () -> Wire.parseHeader(withHeader(challenge, h -> h.putInt(16, max)), max), "frame too large");
            Check.refused(ErrorCode.UNKNOWN_MESSAGE_KIND,
                    () -> Wire.parseHeader(withHeader(challenge, h -> h.putShort(6, (short) 99)), max), "kind");
            byte[] badBody = challenge.clone();
            badBody[Wire.HEADER_LEN] ^= 1;
            Check.refused(ErrorCode.BODY_CHECKSUM, () -> Wire.decode(badBody, max, 8190), "body checksum");
        }));
        cases.add(new TestMain.Case("a body that does not decode is refused", () -> {
            byte[] results = vectors.get("results");
            byte[] body = body(results);
            byte[] longer = Arrays.copyOf(body, body.length + 1);
            Check.refused(ErrorCode.MALFORMED_BODY, () -> Wire.decode(withBody(results, longer), 1 << 20, 8190),
                    "a byte left over");
            byte[] shorter = Arrays.copyOf(body, body.length - 1);
            Check.refused(ErrorCode.MALFORMED_BODY, () -> Wire.decode(withBody(results, shorter), 1 << 20, 8190),
                    "a body that ends early");
            byte[] unknownStatus = body.clone();
            unknownStatus[8] = (byte) 0xe7; // status 999
            unknownStatus[9] = 0x03;
            Check.refused(ErrorCode.MALFORMED_BODY, () -> Wire.decode(withBody(results, unknownStatus), 1 << 20, 8190),
                    "an unknown status code");
            Check.refused(ErrorCode.BATCH_TOO_LARGE, () -> Wire.decode(results, 1 << 20, 1),
                    "two results where one is the most");
            byte[] hugeCount = body.clone();
            ByteBuffer.wrap(hugeCount).order(ByteOrder.LITTLE_ENDIAN).putLong(0, 8190);
            Check.refused(ErrorCode.MALFORMED_BODY, () -> Wire.decode(withBody(results, hugeCount), 1 << 20, 8190),
                    "a count larger than the bytes left");
        }));
        return cases;
    }
}
