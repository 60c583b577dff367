package payrail.client;

/**
 * An account as the ledger holds it. {@code balance} is credits minus debits, {@code available}
 * balance minus debits pending, both in minor units.
 */
public record AccountView(long account, long owner, AccountKind kind, int currency, AccountStatus status,
        int kycTier, int mcc, long balance, long debitsPending, long creditsPending, long available) {
    /** Lifecycle of an account (u32 variant index). */
    public enum AccountStatus {
        ACTIVE,
        FROZEN,
        CLOSED
    }

    static AccountView decode(BodyReader in) {
        long account = in.u64("account");
        long owner = in.u64("owner");
        AccountKind kind = AccountKind.decode(in);
        int currency = in.u16("currency");
        int status = in.variant("account status");
        if (status < 0 || status > 2) {
            throw BodyReader.malformed("unknown account status " + status);
        }
        return new AccountView(account, owner, kind, currency, AccountStatus.values()[status], in.u8("kyc_tier"),
                in.u16("mcc"), in.u64("balance"), in.u64("debits_pending"), in.u64("credits_pending"),
                in.u64("available"));
    }
}
