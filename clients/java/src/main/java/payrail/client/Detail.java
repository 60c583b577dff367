package payrail.client;

/** What a command's result says beyond its status (a u32 variant index, then its fields). */
public sealed interface Detail permits Detail.None, Detail.Risk, Detail.BudgetCrossed, Detail.FlaggedOverBudget,
        Detail.FxConversion {
    /** Nothing beyond the status. */
    record None() implements Detail {}

    /** A risk rule refused the payment (risk_declined, step_up_required, risk_frozen) or flagged it (ok). */
    record Risk(RiskDetail risk) implements Detail {}

    /** The payment went through and took a category's spending this month above its budget. */
    record BudgetCrossed(BudgetDetail budget) implements Detail {}

    /** Both: flagged, and over a budget. */
    record FlaggedOverBudget(RiskDetail risk, BudgetDetail budget) implements Detail {}

    /** The amounts of an FX quote or conversion (or a QR payment that paid through FX). */
    record FxConversion(FxAmounts amounts) implements Detail {}

    None NONE = new None();

    /**
     * The deciding rule and its figures.
     *
     * @param limit the rule's limit, @param observed what the payment showed (docs/risk.md)
     */
    record RiskDetail(Verdict verdict, RiskRule rule, long limit, long observed) {
        static RiskDetail decode(BodyReader in) {
            return new RiskDetail(
                    Verdict.decode(in, "risk.verdict"), RiskRule.decode(in, "risk.rule"), in.u64("risk.limit"),
                    in.u64("risk.observed"));
        }
    }

    /** A budget crossed: its category, the budget and this month's spending, this payment included. */
    record BudgetDetail(int category, long budget, long spent) {
        static BudgetDetail decode(BodyReader in) {
            return new BudgetDetail(in.u8("budget.category"), in.u64("budget.budget"), in.u64("budget.spent"));
        }
    }

    /**
     * What a conversion debits ({@code pay}, fee included), keeps ({@code fee}) and credits
     * ({@code receive}); {@code expiresAt} is a quote's expiry (command time, ns), 0 for a
     * conversion done.
     */
    record FxAmounts(long pay, long fee, long receive, int payCurrency, int receiveCurrency, FxMid mid,
            boolean inverse, long expiresAt) {
        static FxAmounts decode(BodyReader in) {
            return new FxAmounts(in.u64("fx.pay"), in.u64("fx.fee"), in.u64("fx.receive"), in.u16("fx.pay_currency"),
                    in.u16("fx.receive_currency"), FxMid.decode(in), in.bool("fx.inverse"), in.u64("fx.expires_at"));
        }
    }

    static Detail decode(BodyReader in) {
        int variant = in.variant("detail");
        switch (variant) {
            case 0:
                return NONE;
            case 1:
                return new Risk(RiskDetail.decode(in));
            case 2:
                return new BudgetCrossed(BudgetDetail.decode(in));
            case 3:
                return new FlaggedOverBudget(RiskDetail.decode(in), BudgetDetail.decode(in));
            case 4:
                return new FxConversion(FxAmounts.decode(in));
            default:
                throw BodyReader.malformed("unknown detail variant " + variant);
        }
    }
}
