//! Small enums with stable one-byte codes and snake_case names: rule ids,
//! actions and verdicts. Their codes go into the log, checkpoints, replies
//! and audit records, so they are never renumbered; new values take the next
//! free code.

use std::fmt;

macro_rules! coded_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[doc = $doc:literal])* $variant:ident = $code:literal, $snake:literal; )*
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        #[repr(u8)]
        pub enum $name {
            $( $(#[doc = $doc])* $variant = $code, )*
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn code(self) -> u8 {
                self as u8
            }

            pub fn from_code(code: u8) -> Option<$name> {
                match code {
                    $( $code => Some($name::$variant), )*
                    _ => None,
                }
            }

            /// Stable snake_case name, as used in TOML, JSON and metrics.
            pub fn name(self) -> &'static str {
                match self {
                    $( $name::$variant => $snake, )*
                }
            }

            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $( $snake => Some($name::$variant), )*
                    _ => None,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl bincode::Encode for $name {
            fn encode<E: bincode::enc::Encoder>(
                &self,
                encoder: &mut E,
            ) -> Result<(), bincode::error::EncodeError> {
                self.code().encode(encoder)
            }
        }

        impl<Context> bincode::Decode<Context> for $name {
            fn decode<D: bincode::de::Decoder<Context = Context>>(
                decoder: &mut D,
            ) -> Result<Self, bincode::error::DecodeError> {
                let code = u8::decode(decoder)?;
                $name::from_code(code).ok_or(bincode::error::DecodeError::OtherString(format!(
                    concat!("unknown ", stringify!($name), " code {}"),
                    code
                )))
            }
        }
        bincode::impl_borrow_decode!($name);
    };
}

coded_enum! {
    /// A risk rule. The order of the codes is the order rules are evaluated
    /// and the tie-break when several rules of the same severity fire.
    pub enum RuleId {
        /// The payment's country is on the blocked list.
        BlockedCountry = 1, "blocked_country";
        /// The merchant account is on the blocked list.
        BlockedMerchant = 2, "blocked_merchant";
        /// The merchant category code is on the blocked list.
        BlockedMcc = 3, "blocked_mcc";
        /// The amount is above the single-payment limit of the KYC tier.
        SinglePayment = 4, "single_payment";
        /// Today's outflow (UTC) would go above the daily limit.
        DailyOutflow = 5, "daily_outflow";
        /// This month's outflow (UTC) would go above the monthly limit.
        MonthlyOutflow = 6, "monthly_outflow";
        /// The customer already has outflow in as many currencies this month
        /// as the state can track, and this currency has a daily or monthly
        /// limit: refused rather than left untracked.
        OutflowCurrencies = 7, "outflow_currencies";
        /// Too many payments in the velocity window.
        Velocity = 8, "velocity";
        /// The device is not among the customer's recent devices.
        NewDevice = 9, "new_device";
        /// The location is too far from the last one for the time between.
        ImpossibleTravel = 10, "impossible_travel";
        /// The amount is far above the customer's recent average.
        AmountAnomaly = 11, "amount_anomaly";
        /// A withdrawal to an instrument still in its first hours after the
        /// bind would take more than the limit since the bind.
        NewInstrument = 12, "new_instrument";
        /// Withdrawals to one instrument today (UTC) would go above the limit.
        InstrumentDaily = 13, "instrument_daily";
        /// A bind: the customer bound too many instruments in the window.
        InstrumentBinds = 14, "instrument_binds";
    }
}

coded_enum! {
    /// What a rule does when it fires.
    pub enum Action {
        /// Refuse the payment.
        Decline = 1, "decline";
        /// Refuse unless the gateway re-submits with proof of a second factor.
        StepUp = 2, "step_up";
        /// Let the payment through and record the rule for audit.
        Flag = 3, "flag";
    }
}

coded_enum! {
    /// Outcome of a risk evaluation, in increasing severity.
    pub enum Verdict {
        /// No rule fired.
        Approve = 0, "approve";
        /// Only flagging rules fired: the payment goes through, recorded for audit.
        Flag = 1, "flag";
        /// A step-up rule fired: the gateway must re-submit with a second factor.
        StepUp = 2, "step_up";
        /// A decline rule fired.
        Decline = 3, "decline";
    }
}

impl Action {
    /// The verdict this action asks for.
    pub fn verdict(self) -> Verdict {
        match self {
            Action::Decline => Verdict::Decline,
            Action::StepUp => Verdict::StepUp,
            Action::Flag => Verdict::Flag,
        }
    }
}

impl Verdict {
    /// Whether the payment may commit (`Approve` or `Flag`).
    pub fn allows_payment(self) -> bool {
        matches!(self, Verdict::Approve | Verdict::Flag)
    }
}

/// A set of rules, as a bit per rule code: fixed size, `Copy`, iterated in
/// code order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, bincode::Encode, bincode::Decode)]
pub struct RuleSet(pub u16);

const _: () = assert!(RuleId::InstrumentBinds as u8 <= 15, "RuleSet has 16 bits");

impl RuleSet {
    pub const EMPTY: RuleSet = RuleSet(0);

    pub fn insert(&mut self, rule: RuleId) {
        self.0 |= 1 << rule.code();
    }

    pub fn contains(self, rule: RuleId) -> bool {
        self.0 & (1 << rule.code()) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn len(self) -> usize {
        self.iter().count()
    }

    /// The rules in the set, in code order (unknown bits are skipped).
    pub fn iter(self) -> impl Iterator<Item = RuleId> {
        RuleId::ALL
            .iter()
            .copied()
            .filter(move |rule| self.contains(*rule))
    }
}

impl fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set()
            .entries(self.iter().map(RuleId::name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risk_codes_are_stable_and_round_trip() {
        let rules: Vec<(u8, &str)> = RuleId::ALL.iter().map(|r| (r.code(), r.name())).collect();
        assert_eq!(
            rules,
            [
                (1, "blocked_country"),
                (2, "blocked_merchant"),
                (3, "blocked_mcc"),
                (4, "single_payment"),
                (5, "daily_outflow"),
                (6, "monthly_outflow"),
                (7, "outflow_currencies"),
                (8, "velocity"),
                (9, "new_device"),
                (10, "impossible_travel"),
                (11, "amount_anomaly"),
                (12, "new_instrument"),
                (13, "instrument_daily"),
                (14, "instrument_binds"),
            ]
        );
        for &rule in RuleId::ALL {
            assert_eq!(RuleId::from_code(rule.code()), Some(rule));
            assert_eq!(RuleId::from_name(rule.name()), Some(rule));
        }
        assert_eq!(RuleId::from_code(0), None);
        assert_eq!(RuleId::from_code(15), None);
        assert!(Verdict::Decline > Verdict::StepUp);
        assert!(Verdict::StepUp > Verdict::Flag);
        assert!(Verdict::Flag > Verdict::Approve);
        assert_eq!(Action::from_name("step_up"), Some(Action::StepUp));
        let config = bincode::config::standard();
        let bytes = bincode::encode_to_vec(RuleId::Velocity, config).unwrap();
        assert_eq!(bytes, [8]);
        let bad = bincode::decode_from_slice::<RuleId, _>(&[99], config);
        assert!(bad.is_err());
    }

    #[test]
    fn risk_rule_set_iterates_in_code_order() {
        let mut set = RuleSet::EMPTY;
        set.insert(RuleId::AmountAnomaly);
        set.insert(RuleId::BlockedCountry);
        set.insert(RuleId::AmountAnomaly);
        assert_eq!(set.len(), 2);
        let rules: Vec<RuleId> = set.iter().collect();
        assert_eq!(rules, [RuleId::BlockedCountry, RuleId::AmountAnomaly]);
        assert_eq!(
            format!("{set:?}"),
            "{\"blocked_country\", \"amount_anomaly\"}"
        );
        // Unknown bits (from a corrupted or newer record) are ignored.
        assert_eq!(RuleSet(1 << 15).iter().count(), 0);
    }
}
