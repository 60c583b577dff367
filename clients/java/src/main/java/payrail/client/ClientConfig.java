package payrail.client;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HexFormat;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Where the server is, who this client is, and how it batches and waits. Immutable; the
 * {@code with...} methods return a changed copy.
 */
public final class ClientConfig {
    /** The file in a data directory with the local gateway's name and secret. */
    public static final String LOCAL_GATEWAY_FILE = "gateway.toml";

    private final String host;
    private final int port;
    private final String gateway;
    private final byte[] secret;
    private int autoBatchMax = Wire.BATCH_COMMANDS_MAX_DEFAULT;
    private Duration autoBatchDelay = Duration.ofNanos(200_000);
    private Duration connectTimeout = Duration.ofSeconds(5);
    private Duration requestTimeout = Duration.ofSeconds(30);
    private int connectAttempts = 3;

    /**
     * @param addr {@code host:port} of the server
     * @param gateway the gateway's configured name
     * @param secret the gateway's shared secret (the bytes, not their hex); never sent
     */
    public ClientConfig(String addr, String gateway, byte[] secret) {
        int colon = addr.lastIndexOf(':');
        if (colon <= 0) {
            throw new PayrailException(PayrailException.Kind.CONFIG, "the address is host:port, not \"" + addr + "\"");
        }
        try {
            this.port = Integer.parseInt(addr.substring(colon + 1));
        } catch (NumberFormatException error) {
            throw new PayrailException(PayrailException.Kind.CONFIG, "the address is host:port, not \"" + addr + "\"");
        }
        this.host = addr.substring(0, colon).replace("[", "").replace("]", "");
        this.gateway = gateway;
        this.secret = secret.clone();
    }

    private ClientConfig(ClientConfig other) {
        host = other.host;
        port = other.port;
        gateway = other.gateway;
        secret = other.secret;
        autoBatchMax = other.autoBatchMax;
        autoBatchDelay = other.autoBatchDelay;
        connectTimeout = other.connectTimeout;
        requestTimeout = other.requestTimeout;
        connectAttempts = other.connectAttempts;
    }

    /**
     * The local gateway of a data directory: the name and secret {@code payrail serve} wrote to
     * {@code DATA_DIR/gateway.toml} on its first start (readable by its owner only).
     */
    public static ClientConfig local(String addr, Path dataDir) {
        Path path = dataDir.resolve(LOCAL_GATEWAY_FILE);
        String text;
        try {
            text = Files.readString(path, StandardCharsets.UTF_8);
        } catch (NoSuchFileException error) {
            throw new PayrailException(PayrailException.Kind.CONFIG,
                    "no gateway secret in " + path + ": start the server once with `payrail serve`");
        } catch (AccessDeniedException error) {
            throw new PayrailException(PayrailException.Kind.CONFIG, "cannot read the gateway secret in " + path
                    + ": permission denied (only the user who runs `payrail serve` can read it)");
        } catch (IOException error) {
            throw new PayrailException(PayrailException.Kind.CONFIG,
                    "cannot read the gateway secret in " + path + ": " + error.getMessage());
        }
        String name = tomlString(text, "name", path);
        String secretHex = tomlString(text, "secret", path).trim();
        byte[] secret;
        try {
            secret = HexFormat.of().parseHex(secretHex);
        } catch (IllegalArgumentException error) {
            secret = new byte[0];
        }
        if (secret.length < 16) {
            throw new PayrailException(PayrailException.Kind.CONFIG,
                    path + " holds no valid secret (hex, at least 16 bytes)");
        }
        return new ClientConfig(addr, name, secret);
    }

    private static String tomlString(String text, String key, Path path) {
        Matcher matcher = Pattern.compile("(?m)^\\s*" + key + "\\s*=\\s*[\"']([^\"']*)[\"']\\s*$").matcher(text);
        if (!matcher.find()) {
            throw new PayrailException(PayrailException.Kind.CONFIG, path + " has no " + key);
        }
        return matcher.group(1);
    }

    /** Most commands {@link PayrailClient#executeAsync} gathers into one Submit (capped by the server's limit). */
    public ClientConfig withAutoBatchMax(int max) {
        if (max < 1) {
            throw new IllegalArgumentException("auto_batch_max is at least 1");
        }
        ClientConfig copy = new ClientConfig(this);
        copy.autoBatchMax = max;
        return copy;
    }

    /** How long a single command waits for others to join its batch. */
    public ClientConfig withAutoBatchDelay(Duration delay) {
        ClientConfig copy = new ClientConfig(this);
        copy.autoBatchDelay = delay;
        return copy;
    }

    public ClientConfig withConnectTimeout(Duration timeout) {
        ClientConfig copy = new ClientConfig(this);
        copy.connectTimeout = timeout;
        return copy;
    }

    /** How long a request waits for its reply before it fails with TIMEOUT (outcome unknown). */
    public ClientConfig withRequestTimeout(Duration timeout) {
        ClientConfig copy = new ClientConfig(this);
        copy.requestTimeout = timeout;
        return copy;
    }

    /** Attempts to connect (with doubling backoff from 50 ms) before CONNECT fails. */
    public ClientConfig withConnectAttempts(int attempts) {
        ClientConfig copy = new ClientConfig(this);
        copy.connectAttempts = Math.max(1, attempts);
        return copy;
    }

    public String host() {
        return host;
    }

    public int port() {
        return port;
    }

    public String addr() {
        return host.contains(":") ? "[" + host + "]:" + port : host + ":" + port;
    }

    public String gateway() {
        return gateway;
    }

    byte[] secret() {
        return secret;
    }

    public int autoBatchMax() {
        return autoBatchMax;
    }

    public Duration autoBatchDelay() {
        return autoBatchDelay;
    }

    public Duration connectTimeout() {
        return connectTimeout;
    }

    public Duration requestTimeout() {
        return requestTimeout;
    }

    public int connectAttempts() {
        return connectAttempts;
    }

    @Override
    public String toString() {
        return "ClientConfig[addr=" + addr() + ", gateway=" + gateway + ", secret=<redacted>]";
    }
}
