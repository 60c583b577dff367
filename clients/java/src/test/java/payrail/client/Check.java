package payrail.client;

import java.util.Arrays;
import java.util.Objects;

/** Assertions for the test runner (no test framework: the JDK alone). */
final class Check {
    private Check() {}

    static void equal(Object expected, Object actual, String what) {
        if (expected instanceof byte[] e && actual instanceof byte[] a) {
            if (!Arrays.equals(e, a)) {
                throw new AssertionError(what + ": expected " + hex(e) + ", got " + hex(a));
            }
            return;
        }
        if (!Objects.equals(expected, actual)) {
            throw new AssertionError(what + ": expected " + expected + ", got " + actual);
        }
    }

    static void isTrue(boolean condition, String what) {
        if (!condition) {
            throw new AssertionError(what);
        }
    }

    interface Action {
        void run() throws Exception;
    }

    /** Runs {@code action}, which must throw a PayrailException of this kind; returns it. */
    static PayrailException fails(PayrailException.Kind kind, Action action, String what) {
        try {
            action.run();
        } catch (PayrailException error) {
            if (error.kind() != kind) {
                throw new AssertionError(what + ": expected " + kind + ", got " + error.kind() + ": " + error.getMessage(), error);
            }
            return error;
        } catch (Exception error) {
            throw new AssertionError(what + ": expected a PayrailException " + kind + ", got " + error, error);
        }
        throw new AssertionError(what + ": expected a PayrailException " + kind + ", nothing was thrown");
    }

    /** Runs {@code action}, which must throw a WireException with this code. */
    static void refused(ErrorCode code, Action action, String what) {
        try {
            action.run();
        } catch (WireException error) {
            if (error.code() != code) {
                throw new AssertionError(what + ": expected " + code + ", got " + error.code() + ": " + error.getMessage(), error);
            }
            return;
        } catch (Exception error) {
            throw new AssertionError(what + ": expected a WireException " + code + ", got " + error, error);
        }
        throw new AssertionError(what + ": expected a WireException " + code + ", nothing was thrown");
    }

    static String hex(byte[] bytes) {
        return java.util.HexFormat.of().formatHex(bytes);
    }
}
