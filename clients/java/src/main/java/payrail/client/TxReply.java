package payrail.client;

import java.util.List;

/** What became of one command: where the answer comes from, its status and the movements it made. */
public record TxReply(Source source, Status status, List<Movement> legs) {
    /** Where the answer comes from (u8 on the wire). */
    public enum Source {
        /** No idempotency record and no movement: status is unknown_command. */
        UNKNOWN("unknown"),
        /** The command's idempotency record: status is its exact first result. */
        RECORD("record"),
        /** The record expired but the command moved money: status is ok. */
        HISTORY("history");

        private final String wireName;

        Source(String wireName) {
            this.wireName = wireName;
        }

        public String wireName() {
            return wireName;
        }
    }
}
