package payrail.client;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Runs every test: the protocol's hex vectors from docs/protocol.md, then the client against a real
 * {@code payrail serve} (PAYRAIL_BIN, default target/debug/payrail) on 127.0.0.1 with a temporary
 * data directory. Arguments: parts of test names to run only those. Ends with "N passed, M failed";
 * exits 1 on any failure.
 */
public final class TestMain {
    private TestMain() {}

    /** One named test. */
    record Case(String name, Check.Action body) {}

    static Path repoRoot() {
        Path root = Path.of(System.getProperty("payrail.repo", "../..")).toAbsolutePath().normalize();
        if (!Files.isRegularFile(root.resolve("docs/protocol.md"))) {
            throw new IllegalStateException("cannot find docs/protocol.md under " + root
                    + " (run from clients/java, or pass -Dpayrail.repo=DIR)");
        }
        return root;
    }

    public static void main(String[] args) throws Exception {
        Path root = repoRoot();
        List<Case> cases = new ArrayList<>(VectorTests.cases(root));
        List<Case> serverCases = ServerTests.cases(root);
        List<Case> selected = new ArrayList<>();
        for (Case test : cases) {
            if (matches(test.name(), args)) {
                selected.add(test);
            }
        }
        List<Case> selectedServer = new ArrayList<>();
        for (Case test : serverCases) {
            if (matches(test.name(), args)) {
                selectedServer.add(test);
            }
        }
        int passed = 0;
        int failed = 0;
        for (Case test : selected) {
            if (run(test)) {
                passed++;
            } else {
                failed++;
            }
        }
        if (!selectedServer.isEmpty()) {
            try (TestServer server = TestServer.start(root)) {
                ServerTests.server = server;
                for (Case test : selectedServer) {
                    if (run(test)) {
                        passed++;
                    } else {
                        failed++;
                    }
                }
            } catch (Exception error) {
                System.out.println("FAILED to run the server tests: " + error);
                error.printStackTrace(System.out);
                failed += selectedServer.size() - (passed + failed - selected.size());
            }
        }
        if (passed + failed == 0) {
            System.out.println("no test matches " + String.join(" ", args));
            failed = 1;
        }
        System.out.println(passed + " passed, " + failed + " failed");
        System.exit(failed == 0 ? 0 : 1);
    }

    private static boolean matches(String name, String[] args) {
        if (args.length == 0) {
            return true;
        }
        for (String arg : args) {
            if (name.contains(arg)) {
                return true;
            }
        }
        return false;
    }

    private static boolean run(Case test) {
        long started = System.nanoTime();
        try {
            test.body().run();
            System.out.printf("ok      %s (%d ms)%n", test.name(), (System.nanoTime() - started) / 1_000_000);
            return true;
        } catch (Throwable error) {
            System.out.printf("FAILED  %s: %s%n", test.name(), error);
            error.printStackTrace(System.out);
            return false;
        }
    }
}
