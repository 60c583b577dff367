package payrail.client;

/** A read-only question for the ledger (a u32 variant index, then its fields). */
public sealed interface Query permits Query.Balance, Query.CommandStatus, Query.RiskPolicy, Query.RiskAudit,
        Query.Spending, Query.FxRate, Query.Instrument {
    int variant();

    void encodeFields(BodyWriter out);

    /** An account's balances: answered by {@link QueryReply.Balance} or Refused(unknown_account). */
    record Balance(long account) implements Query {
        public int variant() {
            return 0;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account);
        }
    }

    /** The first result of a command while its idempotency record is kept (variant {@code Command}). */
    record CommandStatus(CommandId id) implements Query {
        public int variant() {
            return 1;
        }

        public void encodeFields(BodyWriter out) {
            out.u128(id);
        }
    }

    /** The digest of the risk policy in force and the rules that are on. */
    record RiskPolicy() implements Query {
        public int variant() {
            return 2;
        }

        public void encodeFields(BodyWriter out) {}
    }

    /** The {@code index}-th newest audited risk decision (0 = newest) of the customer holding {@code account}. */
    record RiskAudit(long account, int index) implements Query {
        public int variant() {
            return 3;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account).u8(index);
        }
    }

    /**
     * A customer's spending in a category in a month ({@code year * 12 + month - 1}; 0: the month of
     * the last command) and its budget.
     */
    record Spending(long account, int month, int category) implements Query {
        public int variant() {
            return 4;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account).u32(month).u8(category);
        }
    }

    /** The FX rate at this position of the rate table; Refused(fx_rate_unknown) past the end. */
    record FxRate(long index) implements Query {
        public int variant() {
            return 5;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(index);
        }
    }

    /**
     * The {@code index}-th funding instrument (in number order) of the customer holding {@code account}:
     * answered by {@link QueryReply.Instrument}, or Refused(unknown_instrument) past the end.
     */
    record Instrument(long account, int index) implements Query {
        public int variant() {
            return 6;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account).u8(index);
        }
    }

    default void encode(BodyWriter out) {
        out.variant(variant());
        encodeFields(out);
    }
}
