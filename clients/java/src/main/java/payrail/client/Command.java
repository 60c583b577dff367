package payrail.client;

import java.nio.charset.StandardCharsets;
import java.util.Arrays;

/**
 * One command for the ledger: a gateway-chosen id (idempotency: re-sending an id returns the first
 * result) and what to do. Account ids, amounts and other u64 fields are Java longs read as
 * unsigned; amounts are in the currency's minor units.
 */
public record Command(CommandId id, Kind kind) {
    public Command {
        if (id == null || kind == null) {
            throw new IllegalArgumentException("a command needs an id and a kind");
        }
    }

    /** Bytes of the largest command on the wire (PayMerchantQr). */
    static final int WIRE_BYTES_MAX = 127;

    /** What a command does; each kind is a variant index on the wire, then its fields. */
    public sealed interface Kind
            permits OpenAccount, Deposit, Transfer, WithdrawHold, WithdrawPost, WithdrawVoid, Freeze, Unfreeze,
                    Close, SetKycTier, RegisterMerchantKey, PayMerchantQr, IssuePaymentCode, ChargePaymentCode,
                    Refund, SetBudget, SetFxRate, SetFxFloor, FxQuote, FxConvertQuote, FxConvert, BindInstrument,
                    VerifyInstrument, UnbindInstrument, DepositFrom, WithdrawHoldTo {
        /** The variant index on the wire. */
        int variant();

        void encodeFields(BodyWriter out);
    }

    public record OpenAccount(long account, long owner, AccountKind accountKind, int currency, int kycTier, int mcc)
            implements Kind {
        public int variant() {
            return 0;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account).u64(owner).variant(accountKind.ordinal()).u16(currency).u8(kycTier).u16(mcc);
        }
    }

    public record Deposit(long account, long amount, int currency) implements Kind {
        public int variant() {
            return 1;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account).u64(amount).u16(currency);
        }
    }

    public record Transfer(long from, long to, long amount, int currency, RiskContext context) implements Kind {
        public int variant() {
            return 2;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(from).u64(to).u64(amount).u16(currency);
            context.encode(out);
        }
    }

    public record WithdrawHold(long account, long amount, int currency, long timeoutMs, RiskContext context)
            implements Kind {
        public int variant() {
            return 3;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account).u64(amount).u16(currency).u64(timeoutMs);
            context.encode(out);
        }
    }

    /** Posts a hold: {@code hold} is the id of the WithdrawHold command. */
    public record WithdrawPost(CommandId hold) implements Kind {
        public int variant() {
            return 4;
        }

        public void encodeFields(BodyWriter out) {
            out.u128(hold);
        }
    }

    public record WithdrawVoid(CommandId hold) implements Kind {
        public int variant() {
            return 5;
        }

        public void encodeFields(BodyWriter out) {
            out.u128(hold);
        }
    }

    public record Freeze(long account) implements Kind {
        public int variant() {
            return 6;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account);
        }
    }

    public record Unfreeze(long account) implements Kind {
        public int variant() {
            return 7;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account);
        }
    }

    public record Close(long account) implements Kind {
        public int variant() {
            return 8;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account);
        }
    }

    public record SetKycTier(long account, int tier) implements Kind {
        public int variant() {
            return 9;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account).u8(tier);
        }
    }

    /** Registers a merchant key (a u128 the server derives from the merchant's QR identity). */
    public record RegisterMerchantKey(long merchant, CommandId key) implements Kind {
        public int variant() {
            return 10;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(merchant).u128(key);
        }
    }

    /** A QR payment with the merchant keys already derived (exactly 4; unused ones are zero). */
    public record PayMerchantQr(
            long payer, CommandId[] keys, long amount, long fee, int currency, int mcc, RiskContext context)
            implements Kind {
        public PayMerchantQr {
            if (keys.length != 4) {
                throw new IllegalArgumentException("PayMerchantQr takes 4 merchant keys, not " + keys.length);
            }
            keys = keys.clone();
        }

        public int variant() {
            return 11;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(payer);
            for (CommandId key : keys) {
                out.u128(key);
            }
            out.u64(amount).u64(fee).u16(currency).u16(mcc);
            context.encode(out);
        }

        @Override
        public boolean equals(Object other) {
            return other instanceof PayMerchantQr that
                    && payer == that.payer
                    && Arrays.equals(keys, that.keys)
                    && amount == that.amount
                    && fee == that.fee
                    && currency == that.currency
                    && mcc == that.mcc
                    && context.equals(that.context);
        }

        @Override
        public int hashCode() {
            return Long.hashCode(payer) * 31 + Arrays.hashCode(keys);
        }

        @Override
        public String toString() {
            return "PayMerchantQr[payer=" + payer + ", keys=" + Arrays.toString(keys) + ", amount=" + amount
                    + ", fee=" + fee + ", currency=" + currency + ", mcc=" + mcc + ", context=" + context + "]";
        }
    }

    /** A user-presented payment code (18 decimal digits) for a customer. */
    public record IssuePaymentCode(long customer, long code, long lifetimeMs) implements Kind {
        public int variant() {
            return 12;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(customer).u64(code).u64(lifetimeMs);
        }
    }

    public record ChargePaymentCode(long merchant, long code, long amount, int currency, RiskContext context)
            implements Kind {
        public int variant() {
            return 13;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(merchant).u64(code).u64(amount).u16(currency);
            context.encode(out);
        }
    }

    /** Refunds part or all of a payment ({@code payment}: the paying command's id). */
    public record Refund(CommandId payment, long amount, int currency) implements Kind {
        public int variant() {
            return 14;
        }

        public void encodeFields(BodyWriter out) {
            out.u128(payment).u64(amount).u16(currency);
        }
    }

    /** Sets (or with {@code budget} null removes) a customer's monthly budget in a category (1..=11). */
    public record SetBudget(long account, int category, Long budget) implements Kind {
        public int variant() {
            return 15;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account).u8(category).optionU64(budget);
        }
    }

    /** Sets an FX rate; {@code source} is 1 to 8 printable ASCII characters. */
    public record SetFxRate(int base, int quote, FxMid mid, int spreadBps, long validMs, String source)
            implements Kind {
        public SetFxRate {
            if (source.getBytes(StandardCharsets.US_ASCII).length > 8) {
                throw new IllegalArgumentException("an FX source is at most 8 ASCII characters");
            }
        }

        public int variant() {
            return 16;
        }

        public void encodeFields(BodyWriter out) {
            out.u16(base).u16(quote);
            mid.encode(out);
            out.u16(spreadBps).u64(validMs).raw(Arrays.copyOf(source.getBytes(StandardCharsets.US_ASCII), 8));
        }
    }

    public record SetFxFloor(int currency, long limit) implements Kind {
        public int variant() {
            return 17;
        }

        public void encodeFields(BodyWriter out) {
            out.u16(currency).u64(limit);
        }
    }

    /** Locks a rate for {@code ttlMs}; the quote's id is this command's id. */
    public record FxQuote(FxOrder order, long ttlMs) implements Kind {
        public int variant() {
            return 18;
        }

        public void encodeFields(BodyWriter out) {
            order.encode(out);
            out.u64(ttlMs);
        }
    }

    public record FxConvertQuote(CommandId quote, long from) implements Kind {
        public int variant() {
            return 19;
        }

        public void encodeFields(BodyWriter out) {
            out.u128(quote).u64(from);
        }
    }

    public record FxConvert(FxOrder order) implements Kind {
        public int variant() {
            return 20;
        }

        public void encodeFields(BodyWriter out) {
            order.encode(out);
        }
    }

    /**
     * Binds a bank card or bank account to the customer holding {@code customer} (any of their
     * accounts), unverified until {@link VerifyInstrument}. Never a card number: {@code token} is the
     * gateway's token (1 to 32 printable ASCII characters), {@code bank} the issuing bank (1 to 16),
     * {@code country} ISO 3166 alpha-2 in capitals, {@code lastFour} four digits. A token or bank that
     * looks like a card number is refused here ({@link CardNumbers}), before anything is sent.
     */
    public record BindInstrument(long customer, int number, InstrumentKind instrumentKind, String token, String bank,
            String country, String lastFour, int currency) implements Kind {
        public BindInstrument {
            text(token, "token", 32);
            text(bank, "bank", 16);
            if (!country.matches("[A-Z]{2}")) {
                throw new IllegalArgumentException("an instrument's country is two capital letters, not " + country);
            }
            if (!lastFour.matches("[0-9]{4}")) {
                throw new IllegalArgumentException("last four digits, not " + lastFour);
            }
        }

        private static void text(String text, String field, int max) {
            boolean printable = !text.isEmpty() && text.length() <= max && text.equals(text.strip())
                    && text.chars().allMatch(c -> c >= 0x20 && c < 0x7f);
            if (!printable) {
                throw new IllegalArgumentException(
                        "an instrument's " + field + " is 1 to " + max + " printable ASCII characters");
            }
            if (CardNumbers.looksLikeCardNumber(text)) {
                throw new IllegalArgumentException(
                        "an instrument's " + field + " looks like a full card number: send the gateway's token");
            }
        }

        public int variant() {
            return 21;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(customer).u32(number).variant(instrumentKind.ordinal())
                    .raw(Arrays.copyOf(token.getBytes(StandardCharsets.US_ASCII), 32))
                    .raw(Arrays.copyOf(bank.getBytes(StandardCharsets.US_ASCII), 16))
                    .raw(country.getBytes(StandardCharsets.US_ASCII)).raw(lastFour.getBytes(StandardCharsets.US_ASCII))
                    .u16(currency);
        }
    }

    /** The outcome of the gateway's check of an instrument (card verification, micro-deposit). */
    public record VerifyInstrument(InstrumentId instrument, boolean passed) implements Kind {
        public int variant() {
            return 22;
        }

        public void encodeFields(BodyWriter out) {
            instrument.encode(out);
            out.u8(passed ? 1 : 0);
        }
    }

    public record UnbindInstrument(InstrumentId instrument) implements Kind {
        public int variant() {
            return 23;
        }

        public void encodeFields(BodyWriter out) {
            instrument.encode(out);
        }
    }

    /** A top-up from a verified instrument of the account's customer. */
    public record DepositFrom(long account, long amount, int currency, InstrumentId instrument) implements Kind {
        public int variant() {
            return 24;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account).u64(amount).u16(currency);
            instrument.encode(out);
        }
    }

    /**
     * A withdrawal hold to a verified instrument of the account's customer in the account's currency;
     * posted or voided like {@link WithdrawHold}.
     */
    public record WithdrawHoldTo(long account, long amount, int currency, long timeoutMs, RiskContext context,
            InstrumentId instrument) implements Kind {
        public int variant() {
            return 25;
        }

        public void encodeFields(BodyWriter out) {
            out.u64(account).u64(amount).u16(currency).u64(timeoutMs);
            context.encode(out);
            instrument.encode(out);
        }
    }

    void encode(BodyWriter out) {
        out.u128(id).variant(kind.variant());
        kind.encodeFields(out);
    }

    // Shorthands for the common commands.

    public static Command openCustomer(CommandId id, long account, long owner, int currency, int kycTier) {
        return new Command(id, new OpenAccount(account, owner, AccountKind.CUSTOMER, currency, kycTier, 0));
    }

    public static Command openMerchant(CommandId id, long account, long owner, int currency, int mcc) {
        return new Command(id, new OpenAccount(account, owner, AccountKind.MERCHANT, currency, 0, mcc));
    }

    public static Command deposit(CommandId id, long account, long amount, int currency) {
        return new Command(id, new Deposit(account, amount, currency));
    }

    public static Command transfer(CommandId id, long from, long to, long amount, int currency) {
        return new Command(id, new Transfer(from, to, amount, currency, RiskContext.NONE));
    }

    public static Command transfer(CommandId id, long from, long to, long amount, int currency, RiskContext context) {
        return new Command(id, new Transfer(from, to, amount, currency, context));
    }
}
