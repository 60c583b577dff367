package payrail.client;

import java.util.EnumSet;
import java.util.Set;

/** A risk rule (docs/risk.md), by its code on the wire (u8); a rule set is a u16 with bit {@code 1 << code}. */
public enum RiskRule {
    BLOCKED_COUNTRY(1, "blocked_country"),
    BLOCKED_MERCHANT(2, "blocked_merchant"),
    BLOCKED_MCC(3, "blocked_mcc"),
    SINGLE_PAYMENT(4, "single_payment"),
    DAILY_OUTFLOW(5, "daily_outflow"),
    MONTHLY_OUTFLOW(6, "monthly_outflow"),
    OUTFLOW_CURRENCIES(7, "outflow_currencies"),
    VELOCITY(8, "velocity"),
    NEW_DEVICE(9, "new_device"),
    IMPOSSIBLE_TRAVEL(10, "impossible_travel"),
    AMOUNT_ANOMALY(11, "amount_anomaly"),
    NEW_INSTRUMENT(12, "new_instrument"),
    INSTRUMENT_DAILY(13, "instrument_daily"),
    INSTRUMENT_BINDS(14, "instrument_binds");

    private final int code;
    private final String wireName;

    RiskRule(int code, String wireName) {
        this.code = code;
        this.wireName = wireName;
    }

    public int code() {
        return code;
    }

    public String wireName() {
        return wireName;
    }

    public static RiskRule fromCode(int code) {
        for (RiskRule rule : values()) {
            if (rule.code == code) {
                return rule;
            }
        }
        return null;
    }

    static RiskRule decode(BodyReader in, String what) {
        int code = in.u8(what);
        RiskRule rule = fromCode(code);
        if (rule == null) {
            throw BodyReader.malformed(what + ": unknown risk rule " + code);
        }
        return rule;
    }

    /** The rules of a rule set (u16, bit {@code 1 << code} per rule). */
    public static Set<RiskRule> ofSet(int bits) {
        EnumSet<RiskRule> rules = EnumSet.noneOf(RiskRule.class);
        for (RiskRule rule : values()) {
            if ((bits & (1 << rule.code)) != 0) {
                rules.add(rule);
            }
        }
        return rules;
    }

    @Override
    public String toString() {
        return wireName;
    }
}
