package payrail.client;

import java.util.Set;

/** The answer to one {@link Query}. */
public sealed interface QueryReply permits QueryReply.Balance, QueryReply.CommandStatus, QueryReply.Refused,
        QueryReply.RiskPolicy, QueryReply.RiskAudit, QueryReply.Spending, QueryReply.FxRate, QueryReply.Instrument {
    /** Bytes of the smallest reply on the wire. */
    int WIRE_BYTES_MIN = 6;

    record Balance(AccountView account) implements QueryReply {}

    /** The command was applied with this status (which may be a rejection). */
    record CommandStatus(Status status) implements QueryReply {}

    /** The query was refused; the status says why (for example unknown_account). */
    record Refused(Status status) implements QueryReply {}

    /** The policy in force: BLAKE3 of its canonical encoding, and the rules that are on (bit set). */
    record RiskPolicy(byte[] digest, int rules) implements QueryReply {
        public Set<RiskRule> ruleSet() {
            return RiskRule.ofSet(rules);
        }
    }

    /** One audited decision and how many the customer has ({@code entry} is meaningless past the end). */
    record RiskAudit(int entries, AuditEntry entry) implements QueryReply {}

    /** Spending of one category in one month, and the category's budget (null: none). */
    record Spending(int month, int category, long spent, Long budget) implements QueryReply {}

    record FxRate(FxRateView rate) implements QueryReply {}

    /**
     * An audited risk decision. {@code rule} is null only for a payment whose step-up rules were all
     * passed by a verified step-up; {@code fired}, {@code flags}, {@code steppedUp} are rule sets.
     */
    record AuditEntry(long timestamp, CommandId command, int currency, long amount, Verdict verdict,
            RiskRule rule, long limit, long observed, boolean freeze, int fired, int flags, int steppedUp) {
        static AuditEntry decode(BodyReader in) {
            long timestamp = in.u64("timestamp");
            CommandId command = in.u128("command");
            int currency = in.u16("currency");
            long amount = in.u64("amount");
            Verdict verdict = Verdict.decode(in, "verdict");
            int tag = in.u8("rule option tag");
            RiskRule rule;
            if (tag == 0) {
                rule = null;
            } else if (tag == 1) {
                rule = RiskRule.decode(in, "rule");
            } else {
                throw BodyReader.malformed("rule: option tag " + tag);
            }
            return new AuditEntry(timestamp, command, currency, amount, verdict, rule, in.u64("limit"),
                    in.u64("observed"), in.bool("freeze"), in.u16("fired"), in.u16("flags"), in.u16("stepped_up"));
        }
    }

    /**
     * An FX rate: {@code setAt} and {@code validUntil} in command time (ns), {@code ratesTotal} how
     * many rates the table holds.
     */
    record FxRateView(int base, int quote, FxMid mid, int spreadBps, String source, long setAt, long validUntil,
            int ratesTotal) {
        static FxRateView decode(BodyReader in) {
            int base = in.u16("base");
            int quote = in.u16("quote");
            FxMid mid = FxMid.decode(in);
            int spread = in.u16("spread_bps");
            byte[] source = in.raw(8, "source");
            int length = 0;
            while (length < 8 && source[length] != 0) {
                length++;
            }
            return new FxRateView(base, quote, mid, spread,
                    new String(source, 0, length, java.nio.charset.StandardCharsets.US_ASCII), in.u64("set_at"),
                    in.u64("valid_until"), in.u32("rates_total"));
        }
    }

    /** A customer's funding instrument, as {@code payrail card list} shows it. */
    record Instrument(InstrumentView instrument) implements QueryReply {}

    /**
     * One funding instrument: {@code boundAt} and {@code changedAt} in command time (ns; 0: not changed
     * since the bind), {@code instrumentsTotal} how many the customer has (unbound ones remembered
     * included).
     */
    record InstrumentView(InstrumentId instrument, InstrumentKind kind, String token, String bank, String country,
            String lastFour, int currency, InstrumentState state, long boundAt, long changedAt,
            int instrumentsTotal) {
        static InstrumentView decode(BodyReader in) {
            InstrumentId id = InstrumentId.decode(in);
            InstrumentKind kind = InstrumentKind.fromVariant(in.variant("kind"));
            String token = text(in.raw(32, "token"));
            String bank = text(in.raw(16, "bank"));
            String country = text(in.raw(2, "country"));
            String lastFour = text(in.raw(4, "last_four"));
            int currency = in.u16("currency");
            InstrumentState state = InstrumentState.fromVariant(in.variant("state"));
            return new InstrumentView(id, kind, token, bank, country, lastFour, currency, state, in.u64("bound_at"),
                    in.u64("changed_at"), in.u8("instruments_total"));
        }

        private static String text(byte[] bytes) {
            int length = 0;
            while (length < bytes.length && bytes[length] != 0) {
                length++;
            }
            return new String(bytes, 0, length, java.nio.charset.StandardCharsets.US_ASCII);
        }
    }

    static QueryReply decode(BodyReader in) {
        int variant = in.variant("query reply");
        switch (variant) {
            case 0:
                return new Balance(AccountView.decode(in));
            case 1:
                return new CommandStatus(in.status("command status"));
            case 2:
                return new Refused(in.status("refusal status"));
            case 3:
                return new RiskPolicy(in.raw(32, "digest"), in.u16("rules"));
            case 4:
                return new RiskAudit(in.u8("entries"), AuditEntry.decode(in));
            case 5:
                return new Spending(in.u32("month"), in.u8("category"), in.u64("spent"), in.optionU64("budget"));
            case 6:
                return new FxRate(FxRateView.decode(in));
            case 7:
                return new Instrument(InstrumentView.decode(in));
            default:
                throw BodyReader.malformed("unknown query reply variant " + variant);
        }
    }
}
