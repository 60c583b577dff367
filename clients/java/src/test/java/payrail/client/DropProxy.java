package payrail.client;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * A TCP proxy on 127.0.0.1 in front of the server. For a connection made while it is armed, it
 * lets the handshake through (Challenge and Welcome) and then, as soon as the server's first reply
 * arrives, cuts the connection without passing the reply on ({@link #swallow} false), or keeps the
 * connection open and drops every reply ({@link #swallow} true): the request reached the server
 * and was applied, but the client never learns its result. Otherwise it passes everything through.
 */
final class DropProxy implements AutoCloseable {
    private final ServerSocket listener;
    private final String target;
    final AtomicBoolean armed = new AtomicBoolean();
    final AtomicBoolean swallow = new AtomicBoolean();
    final AtomicInteger drops = new AtomicInteger();
    final AtomicInteger connections = new AtomicInteger();

    DropProxy(String target) throws IOException {
        this.target = target;
        listener = new ServerSocket(0, 50, InetAddress.getLoopbackAddress());
        Thread accept = new Thread(this::acceptLoop, "drop-proxy-accept");
        accept.setDaemon(true);
        accept.start();
    }

    String addr() {
        return "127.0.0.1:" + listener.getLocalPort();
    }

    private void acceptLoop() {
        while (!listener.isClosed()) {
            try {
                Socket client = listener.accept();
                int colon = target.lastIndexOf(':');
                Socket server = new Socket();
                server.connect(new InetSocketAddress(target.substring(0, colon), Integer.parseInt(target.substring(colon + 1))));
                connections.incrementAndGet();
                boolean armedNow = armed.get();
                boolean swallowNow = swallow.get();
                start(() -> pump(client, server, -1, false));
                start(() -> pump(server, client, armedNow ? 2 : -1, swallowNow));
            } catch (IOException error) {
                return;
            }
        }
    }

    private static void start(Runnable body) {
        Thread thread = new Thread(body, "drop-proxy-pump");
        thread.setDaemon(true);
        thread.start();
    }

    /**
     * Copies frames from {@code from} to {@code to}; after {@code framesToPass} frames (-1: no end)
     * it cuts both, or with {@code swallow} reads on and passes nothing more.
     */
    private void pump(Socket from, Socket to, int framesToPass, boolean swallow) {
        try (from; to) {
            InputStream in = from.getInputStream();
            OutputStream out = to.getOutputStream();
            int passed = 0;
            while (true) {
                byte[] header = in.readNBytes(Wire.HEADER_LEN);
                if (header.length < Wire.HEADER_LEN) {
                    out.write(header);
                    return;
                }
                long bodyLen = Integer.toUnsignedLong(java.nio.ByteBuffer.wrap(header, 16, 4)
                        .order(java.nio.ByteOrder.LITTLE_ENDIAN).getInt());
                if (framesToPass >= 0 && passed >= framesToPass) {
                    drops.incrementAndGet();
                    if (!swallow) {
                        return; // closes both sockets: the reply is lost
                    }
                    in.readNBytes((int) bodyLen);
                    continue;
                }
                byte[] body = in.readNBytes((int) bodyLen);
                out.write(header);
                out.write(body);
                out.flush();
                passed++;
            }
        } catch (IOException error) {
            // one side closed: the other is closed by try-with-resources
        }
    }

    @Override
    public void close() throws IOException {
        listener.close();
    }
}
