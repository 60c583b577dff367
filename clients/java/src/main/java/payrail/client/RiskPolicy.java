package payrail.client;

import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.TreeSet;

/**
 * A risk policy (docs/risk.md) as SetRiskPolicy sends it: ten optional rules, null for a rule that
 * is off. Lists are sent sorted and without duplicates, as the server requires.
 */
public record RiskPolicy(BlockedCountries blockedCountries, BlockedMerchants blockedMerchants,
        BlockedMccs blockedMccs, LimitRule singlePayment, LimitRule dailyOutflow, LimitRule monthlyOutflow,
        VelocityRule velocity, NewDeviceRule newDevice, ImpossibleTravelRule impossibleTravel,
        AmountAnomalyRule amountAnomaly) {
    /** Largest encoded policy, bytes. */
    public static final int BYTES_MAX = 32_768;

    /** No rule on. */
    public static final RiskPolicy EMPTY = new RiskPolicy(null, null, null, null, null, null, null, null, null, null);

    /** What a rule does when it fires (u8 codes: decline 1, step_up 2, flag 3). */
    public enum Action {
        DECLINE(1),
        STEP_UP(2),
        FLAG(3);

        private final int code;

        Action(int code) {
            this.code = code;
        }

        public int code() {
            return code;
        }
    }

    /** A rule's response: its action and whether it also freezes the account. */
    public record Response(Action action, boolean freeze) {
        void encode(BodyWriter out) {
            out.u8(action.code()).bool(freeze);
        }
    }

    public record BlockedCountries(Response response, List<String> countries) {}

    public record BlockedMerchants(Response response, List<Long> merchants) {}

    public record BlockedMccs(Response response, List<Integer> mccs) {}

    /** Per currency, the most per KYC tier 0..=3, in minor units. */
    public record TierLimits(int currency, long[] max) {
        public TierLimits {
            if (max.length != 4) {
                throw new IllegalArgumentException("one limit per KYC tier 0..=3");
            }
            max = max.clone();
        }
    }

    public record LimitRule(Response response, List<TierLimits> limits) {}

    public record VelocityRule(Response response, int paymentsMax, long windowNs) {}

    public record NewDeviceRule(Response response, boolean trustFirstDevice) {}

    public record ImpossibleTravelRule(Response response, int speedKmhMax, int distanceMMin) {}

    public record AmountAnomalyRule(Response response, int multiplierMilli, int history, int historyMin) {}

    public RiskPolicy withBlockedCountries(Response response, String... countries) {
        return new RiskPolicy(new BlockedCountries(response, List.of(countries)), blockedMerchants, blockedMccs,
                singlePayment, dailyOutflow, monthlyOutflow, velocity, newDevice, impossibleTravel, amountAnomaly);
    }

    public RiskPolicy withVelocity(Response response, int paymentsMax, long windowNs) {
        return new RiskPolicy(blockedCountries, blockedMerchants, blockedMccs, singlePayment, dailyOutflow,
                monthlyOutflow, new VelocityRule(response, paymentsMax, windowNs), newDevice, impossibleTravel,
                amountAnomaly);
    }

    public RiskPolicy withNewDevice(Response response, boolean trustFirstDevice) {
        return new RiskPolicy(blockedCountries, blockedMerchants, blockedMccs, singlePayment, dailyOutflow,
                monthlyOutflow, velocity, new NewDeviceRule(response, trustFirstDevice), impossibleTravel,
                amountAnomaly);
    }

    public RiskPolicy withSinglePayment(Response response, TierLimits... limits) {
        return new RiskPolicy(blockedCountries, blockedMerchants, blockedMccs,
                new LimitRule(response, List.of(limits)), dailyOutflow, monthlyOutflow, velocity, newDevice,
                impossibleTravel, amountAnomaly);
    }

    /** The canonical encoding (what the server's digest hashes). */
    public byte[] encode() {
        BodyWriter out = new BodyWriter(256);
        if (blockedCountries == null) {
            out.u8(0);
        } else {
            out.u8(1);
            blockedCountries.response().encode(out);
            TreeSet<String> sorted = new TreeSet<>(blockedCountries.countries());
            out.length(sorted.size());
            for (String country : sorted) {
                byte[] bytes = country.getBytes(StandardCharsets.US_ASCII);
                if (bytes.length != 2) {
                    throw new IllegalArgumentException("a country is two letters, not \"" + country + "\"");
                }
                out.raw(bytes);
            }
        }
        if (blockedMerchants == null) {
            out.u8(0);
        } else {
            out.u8(1);
            blockedMerchants.response().encode(out);
            TreeSet<Long> sorted = new TreeSet<>(Long::compareUnsigned);
            sorted.addAll(blockedMerchants.merchants());
            out.length(sorted.size());
            sorted.forEach(out::u64);
        }
        if (blockedMccs == null) {
            out.u8(0);
        } else {
            out.u8(1);
            blockedMccs.response().encode(out);
            TreeSet<Integer> sorted = new TreeSet<>(blockedMccs.mccs());
            out.length(sorted.size());
            sorted.forEach(out::u16);
        }
        for (LimitRule rule : new LimitRule[] {singlePayment, dailyOutflow, monthlyOutflow}) {
            if (rule == null) {
                out.u8(0);
                continue;
            }
            out.u8(1);
            rule.response().encode(out);
            List<TierLimits> sorted = new ArrayList<>(rule.limits());
            sorted.sort(Comparator.comparingInt(TierLimits::currency));
            out.length(sorted.size());
            for (TierLimits limits : sorted) {
                out.u16(limits.currency());
                for (long max : limits.max()) {
                    out.u64(max);
                }
            }
        }
        if (velocity == null) {
            out.u8(0);
        } else {
            out.u8(1);
            velocity.response().encode(out);
            out.u8(velocity.paymentsMax()).u64(velocity.windowNs());
        }
        if (newDevice == null) {
            out.u8(0);
        } else {
            out.u8(1);
            newDevice.response().encode(out);
            out.bool(newDevice.trustFirstDevice());
        }
        if (impossibleTravel == null) {
            out.u8(0);
        } else {
            out.u8(1);
            impossibleTravel.response().encode(out);
            out.u32(impossibleTravel.speedKmhMax()).u32(impossibleTravel.distanceMMin());
        }
        if (amountAnomaly == null) {
            out.u8(0);
        } else {
            out.u8(1);
            amountAnomaly.response().encode(out);
            out.u32(amountAnomaly.multiplierMilli()).u8(amountAnomaly.history()).u8(amountAnomaly.historyMin());
        }
        if (out.size() > BYTES_MAX) {
            throw new PayrailException(PayrailException.Kind.ENCODE,
                    "the risk policy is " + out.size() + " bytes encoded, at most " + BYTES_MAX + " allowed");
        }
        return out.toByteArray();
    }
}
