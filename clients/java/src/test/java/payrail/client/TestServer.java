package payrail.client;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

/**
 * A real {@code payrail serve} on 127.0.0.1 (a port the OS picks) with a temporary data directory,
 * stopped with SIGTERM and removed on close. The binary is PAYRAIL_BIN, else target/debug/payrail.
 */
final class TestServer implements AutoCloseable {
    private static final Pattern LISTENING = Pattern.compile("listening addr=(\\S+)");

    final Path dir;
    final Path dataDir;
    final String addr;
    private final Process process;
    private final Path log;

    private TestServer(Path dir, Path dataDir, String addr, Process process, Path log) {
        this.dir = dir;
        this.dataDir = dataDir;
        this.addr = addr;
        this.process = process;
        this.log = log;
    }

    static Path binary(Path root) {
        String configured = System.getenv("PAYRAIL_BIN");
        Path binary = configured != null && !configured.isEmpty()
                ? Path.of(configured).toAbsolutePath()
                : root.resolve("target/debug/payrail");
        if (!Files.isExecutable(binary)) {
            throw new IllegalStateException("no payrail binary at " + binary
                    + ": build it (cargo build --bin payrail) or set PAYRAIL_BIN");
        }
        return binary;
    }

    static TestServer start(Path root) throws IOException, InterruptedException {
        Path binary = binary(root);
        Path dir = Files.createTempDirectory("payrail-java-test-");
        Path dataDir = dir.resolve("data");
        Path log = dir.resolve("server.log");
        Process process = new ProcessBuilder(binary.toString(), "serve", "--listen", "127.0.0.1:0", "--data-dir",
                dataDir.toString(), "--no-metrics", "--backup-root", dir.toString())
                .redirectErrorStream(true)
                .redirectOutput(log.toFile())
                .start();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (System.nanoTime() < deadline) {
            String text = Files.exists(log) ? Files.readString(log, StandardCharsets.UTF_8) : "";
            Matcher matcher = LISTENING.matcher(text);
            if (matcher.find()) {
                return new TestServer(dir, dataDir, matcher.group(1), process, log);
            }
            if (!process.isAlive()) {
                throw new IllegalStateException("payrail serve exited with " + process.exitValue() + ":\n" + text);
            }
            Thread.sleep(50);
        }
        process.destroyForcibly();
        throw new IllegalStateException("payrail serve did not listen within 60 s:\n" + Files.readString(log));
    }

    /** A config for the server's local gateway (name and secret from its data directory). */
    ClientConfig config() {
        return ClientConfig.local(addr, dataDir);
    }

    String log() throws IOException {
        return Files.readString(log, StandardCharsets.UTF_8);
    }

    @Override
    public void close() throws IOException {
        process.destroy();
        try {
            if (!process.waitFor(60, TimeUnit.SECONDS)) {
                process.destroyForcibly();
                process.waitFor(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException error) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
        try (Stream<Path> paths = Files.walk(dir)) {
            paths.sorted(Comparator.reverseOrder()).forEach(path -> path.toFile().delete());
        }
    }
}
