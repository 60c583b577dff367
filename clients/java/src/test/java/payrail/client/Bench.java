package payrail.client;

import java.nio.file.Path;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.CompletableFuture;

/**
 * Throughput with full batches and single-command latency against a running server:
 *
 * <pre>
 * clients/java/build.sh bench --addr 127.0.0.1:7400 --data-dir /tmp/pr [--duration 10] [--accounts 10000]
 *     [--inflight 4] [--batch 8190] [--singles 1000]
 * </pre>
 *
 * Transfers of 1 minor unit between {@code accounts} CNY customers (ids from 10^12, opened and
 * funded first), uniform; the first 2 s are warm-up. Bounded in time and count.
 */
public final class Bench {
    private Bench() {}

    private static final long FIRST_ACCOUNT = 1_000_000_000_000L;

    public static void main(String[] args) throws Exception {
        String addr = "127.0.0.1:7400";
        Path dataDir = Path.of("payrail-data");
        double duration = 10;
        int accounts = 10_000;
        int inflight = 4;
        int batch = 8_190;
        int singles = 1_000;
        for (int i = 0; i + 1 < args.length; i += 2) {
            switch (args[i]) {
                case "--addr" -> addr = args[i + 1];
                case "--data-dir" -> dataDir = Path.of(args[i + 1]);
                case "--duration" -> duration = Double.parseDouble(args[i + 1]);
                case "--accounts" -> accounts = Integer.parseInt(args[i + 1]);
                case "--inflight" -> inflight = Integer.parseInt(args[i + 1]);
                case "--batch" -> batch = Integer.parseInt(args[i + 1]);
                case "--singles" -> singles = Integer.parseInt(args[i + 1]);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        duration = Math.min(duration, 120);
        singles = Math.min(singles, 100_000);
        long idBase = System.nanoTime() << 20; // fresh command ids per run
        long[] nextId = {idBase};
        try (PayrailClient client = PayrailClient.connect(ClientConfig.local(addr, dataDir))) {
            setUp(client, accounts, nextId);
            SplittableRandom random = new SplittableRandom(42);
            clientCost(batch, accounts, random);
            System.out.printf("full batches: %d transfers x %d in flight, %.0f s after 2 s of warm-up%n", batch, inflight,
                    duration);
            ArrayDeque<CompletableFuture<List<CommandResult>>> pending = new ArrayDeque<>();
            long start = System.nanoTime();
            long warm = start + 2_000_000_000L;
            long end = warm + (long) (duration * 1e9);
            // Rate between the first and the last batch completed in the window: the transfers of the
            // batches completed after the first, over the time between the two completions.
            long firstDone = 0;
            long lastDone = 0;
            long counted = 0;
            long failed = 0;
            while (System.nanoTime() < end) {
                while (pending.size() < inflight) {
                    pending.add(client.submitAsync(transfers(batch, accounts, random, nextId)));
                }
                List<CommandResult> results = PayrailClient.await(pending.poll());
                long now = System.nanoTime();
                if (now < warm || now >= end) {
                    continue;
                }
                if (firstDone == 0) {
                    firstDone = now;
                    continue;
                }
                lastDone = now;
                for (CommandResult result : results) {
                    if (result.isOk()) {
                        counted++;
                    } else {
                        failed++;
                    }
                }
            }
            while (!pending.isEmpty()) {
                PayrailClient.await(pending.poll());
            }
            double seconds = (lastDone - firstDone) / 1e9;
            System.out.printf("  %,.0f transfers/s (%,d ok, %,d not ok in %.1f s)%n", counted / seconds, counted, failed,
                    seconds);

            long[] submitLatencies = new long[singles];
            for (int i = 0; i < singles; i++) {
                Command command = transfers(1, accounts, random, nextId).get(0);
                long t0 = System.nanoTime();
                client.submit(List.of(command));
                submitLatencies[i] = System.nanoTime() - t0;
            }
            long[] executeLatencies = new long[singles];
            for (int i = 0; i < singles; i++) {
                Command command = transfers(1, accounts, random, nextId).get(0);
                long t0 = System.nanoTime();
                client.execute(command);
                executeLatencies[i] = System.nanoTime() - t0;
            }
            System.out.printf("single commands, one at a time (%d each, the first tenth left out):%n", singles);
            report("submit([cmd])", submitLatencies);
            report("execute(cmd) ", executeLatencies);
        }
    }

    /** The client's own work per full batch, best of 20 (after 20 rounds of warm-up): build, encode, decode. */
    private static void clientCost(int batch, int accounts, SplittableRandom random) {
        long[] scratch = {1};
        BodyWriter results = new BodyWriter(8 + batch * 6);
        results.length(batch);
        for (int i = 0; i < batch; i++) {
            results.u16(0).variant(0);
        }
        byte[] resultsBody = results.toByteArray();
        Wire.Header header = new Wire.Header(Message.RESULTS, 1, resultsBody.length,
                Wire.crc32c(resultsBody, 0, resultsBody.length));
        long build = Long.MAX_VALUE;
        long encode = Long.MAX_VALUE;
        long decode = Long.MAX_VALUE;
        for (int round = 0; round < 40; round++) {
            long t0 = System.nanoTime();
            List<Command> commands = transfers(batch, accounts, random, scratch);
            long t1 = System.nanoTime();
            java.nio.ByteBuffer frame = Wire.encodeFrame(1, new Message.Submit(commands));
            long t2 = System.nanoTime();
            Message decoded = Wire.decodeBody(header, resultsBody, batch);
            long t3 = System.nanoTime();
            if (frame.remaining() == 0 || ((Message.Results) decoded).results().size() != batch) {
                throw new IllegalStateException("bench self-check");
            }
            if (round >= 20) {
                build = Math.min(build, t1 - t0);
                encode = Math.min(encode, t2 - t1);
                decode = Math.min(decode, t3 - t2);
            }
        }
        System.out.printf("client cost per batch of %d (best of 20): build %.1f ms, encode with CRC32C %.1f ms, "
                + "decode the results (CRC32C included) %.1f ms%n", batch, build / 1e6, encode / 1e6, decode / 1e6);
    }

    private static void setUp(PayrailClient client, int accounts, long[] nextId) {
        List<Command> commands = new ArrayList<>();
        for (int i = 0; i < accounts; i++) {
            commands.add(Command.openCustomer(CommandId.of(nextId[0]++), FIRST_ACCOUNT + i, FIRST_ACCOUNT + i,
                    Currency.CNY, 1));
            commands.add(Command.deposit(CommandId.of(nextId[0]++), FIRST_ACCOUNT + i, 1_000_000_000L, Currency.CNY));
        }
        int batchMax = client.serverLimits().batchCommandsMax();
        List<CompletableFuture<List<CommandResult>>> futures = new ArrayList<>();
        for (int from = 0; from < commands.size(); from += batchMax) {
            futures.add(client.submitAsync(commands.subList(from, Math.min(commands.size(), from + batchMax))));
        }
        for (CompletableFuture<List<CommandResult>> future : futures) {
            for (CommandResult result : PayrailClient.await(future)) {
                if (!result.isOk() && result.status() != Status.ACCOUNT_EXISTS) {
                    throw new IllegalStateException("set-up: " + result);
                }
            }
        }
    }

    private static List<Command> transfers(int count, int accounts, SplittableRandom random, long[] nextId) {
        List<Command> commands = new ArrayList<>(count);
        for (int i = 0; i < count; i++) {
            long from = FIRST_ACCOUNT + random.nextInt(accounts);
            long to = FIRST_ACCOUNT + random.nextInt(accounts - 1);
            if (to >= from) {
                to++;
            }
            commands.add(Command.transfer(CommandId.of(nextId[0]++), from, to, 1, Currency.CNY));
        }
        return commands;
    }

    private static void report(String what, long[] latencies) {
        long[] kept = Arrays.copyOfRange(latencies, latencies.length / 10, latencies.length);
        Arrays.sort(kept);
        System.out.printf("  %s p50 %,d us, p99 %,d us, max %,d us%n", what, kept[kept.length / 2] / 1_000,
                kept[(int) Math.min(kept.length - 1, Math.ceil(kept.length * 0.99) - 1)] / 1_000,
                kept[kept.length - 1] / 1_000);
    }
}
