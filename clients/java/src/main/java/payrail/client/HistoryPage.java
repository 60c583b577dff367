package payrail.client;

import java.util.List;

/** A page of an account's movements, newest first; {@code nextCursor} is zero on the last page. */
public record HistoryPage(List<Movement> entries, CommandId nextCursor) {
    public boolean isLast() {
        return nextCursor.high() == 0 && nextCursor.low() == 0;
    }
}
