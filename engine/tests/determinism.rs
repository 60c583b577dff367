//! Determinism across shard counts: one seeded command log (opens, top-ups,
//! withdrawals, transfers, QR payments to hot merchants, payment codes,
//! refunds, freezes, FX rates and floors, quotes, conversions, cross-currency
//! QR payments and their refunds, funding instruments (binds, checks,
//! unbinds, top-ups and withdrawals naming them, someone else's among them),
//! retries and reused ids, failures of every kind; risk contexts that trip every rule, budgets, and risk policies
//! changed in the middle of the log) applied by a lone ledger and by 1, 2, 3
//! and 8 shards gives the same result (status and detail) for every command,
//! the same answers to the risk queries and the same final state, and money
//! is conserved; the movement history is the same too, in memory and as
//! pages read back from RocksDB.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payrail_engine::command::{HouseRole, MerchantKey, QR_MERCHANT_KEYS_MAX};
use payrail_engine::history::Movement;
use payrail_engine::instrument::{BankName, InstrumentKind, InstrumentToken};
use payrail_engine::risk::{RiskPolicy, RuleId};
use payrail_engine::shard::ShardedLedger;
use payrail_engine::status::Status;
use payrail_engine::storage::{self, LogEntry, LogRecord, RocksStorage, Storage};
use payrail_engine::{
    AccountId, AccountKind, Command, CommandId, CommandKind, CommandResult, Currency, Detail,
    InstrumentBind, InstrumentId, Ledger, LedgerConfig, OpenAccount, Query, QueryReply,
    RiskContext,
};
use payrail_engine::{FxMid, FxOrder, FxRateSet, FxSide, FxSource};

/// splitmix64: small, seeded, the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    /// Zipf-like: small indices far more likely (u^3 skew).
    fn skewed(&mut self, n: u64) -> u64 {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((u * u * u) * n as f64) as u64 % n.max(1)
    }
}

const CUSTOMERS: u64 = 3_000;
const MERCHANTS: u64 = 120;
const BASE_TIME: u64 = 1_800_000_000_000_000_000;

fn customer(owner: u64) -> AccountId {
    AccountId(1_000_000 + owner * 2)
}
fn customer_usd(owner: u64) -> AccountId {
    AccountId(1_000_000 + owner * 2 + 1)
}
fn merchant(index: u64) -> AccountId {
    AccountId(5_000_000 + index)
}
fn merchant_key(index: u64, which: u64) -> MerchantKey {
    MerchantKey::new("com.example.pay", &format!("M{index}-{which}"))
}

struct Workload {
    rng: Rng,
    /// Draws for the instrument commands, apart so that they leave the
    /// rest of the mix as it was.
    instrument_rng: Rng,
    /// Withdrawal holds made to an instrument, posted or voided later.
    instrument_holds: Vec<CommandId>,
    next_id: u128,
    /// Commands sent so far, for retries and reused ids.
    sent: Vec<Command>,
    holds: Vec<CommandId>,
    codes: Vec<u64>,
    payments: Vec<CommandId>,
    /// FX quotes asked for, with their paying account.
    quotes: Vec<(CommandId, AccountId)>,
    next_owner: u64,
}

impl Workload {
    fn new(seed: u64) -> Workload {
        Workload {
            rng: Rng(seed),
            instrument_rng: Rng(seed ^ 0x1257_0000),
            instrument_holds: Vec::new(),
            next_id: 1,
            sent: Vec::new(),
            holds: Vec::new(),
            codes: Vec::new(),
            payments: Vec::new(),
            quotes: Vec::new(),
            next_owner: CUSTOMERS + MERCHANTS + 10,
        }
    }

    fn id(&mut self) -> u128 {
        self.next_id += 1;
        self.next_id
    }

    fn push(&mut self, batch: &mut Vec<Command>, kind: CommandKind) -> CommandId {
        let command = Command::new(self.id(), kind);
        self.sent.push(command);
        batch.push(command);
        command.id
    }

    fn setup(&mut self) -> Vec<Vec<Command>> {
        let mut batches = Vec::new();
        let mut batch = Vec::new();
        for owner in 0..CUSTOMERS {
            for (account, currency) in [
                (customer(owner), Currency::CNY),
                (customer_usd(owner), Currency::USD),
            ] {
                if currency == Currency::USD && owner % 3 != 0 {
                    continue;
                }
                self.push(
                    &mut batch,
                    CommandKind::OpenAccount(OpenAccount {
                        account,
                        owner,
                        kind: AccountKind::Customer,
                        currency,
                        kyc_tier: (owner % 4) as u8,
                        mcc: 0,
                    }),
                );
            }
        }
        for index in 0..MERCHANTS {
            self.push(
                &mut batch,
                CommandKind::OpenAccount(OpenAccount {
                    account: merchant(index),
                    owner: CUSTOMERS + index,
                    kind: AccountKind::Merchant,
                    currency: if index % 10 == 9 {
                        Currency::USD
                    } else {
                        Currency::CNY
                    },
                    kyc_tier: 0,
                    mcc: 5411 + (index % 7) as u16,
                }),
            );
            // Most merchants register their keys up front; some later.
            if index % 8 != 0 {
                for which in 0..2 {
                    self.push(
                        &mut batch,
                        CommandKind::RegisterMerchantKey {
                            merchant: merchant(index),
                            key: merchant_key(index, which),
                        },
                    );
                }
            }
        }
        batches.push(std::mem::take(&mut batch));
        let rate = self.fx_rate();
        self.push(&mut batch, rate);
        for owner in 0..CUSTOMERS {
            let amount = 50_000 + self.rng.below(500_000);
            self.push(
                &mut batch,
                CommandKind::Deposit {
                    account: customer(owner),
                    amount,
                    currency: Currency::CNY,
                },
            );
            if owner % 3 == 0 {
                self.push(
                    &mut batch,
                    CommandKind::Deposit {
                        account: customer_usd(owner),
                        amount,
                        currency: Currency::USD,
                    },
                );
            }
        }
        batches.push(std::mem::take(&mut batch));
        // One customer in ten binds a verified card; from then on their
        // top-ups and withdrawals must name one.
        for owner in (0..CUSTOMERS).step_by(10) {
            let bind = self.bind(owner, 1, Currency::CNY);
            self.push(&mut batch, bind);
            self.push(
                &mut batch,
                CommandKind::VerifyInstrument {
                    instrument: InstrumentId { owner, number: 1 },
                    passed: true,
                },
            );
        }
        batches.push(batch);
        batches
    }

    /// A bind of card `number` for `owner`'s CNY account.
    fn bind(&mut self, owner: u64, number: u32, currency: Currency) -> CommandKind {
        let token = if self.instrument_rng.chance(3) {
            // A gateway that sends the card number: refused.
            "4111 1111 1111 1111".to_owned()
        } else {
            format!("tok_{owner}_{number}")
        };
        CommandKind::BindInstrument(InstrumentBind {
            customer: customer(owner),
            number,
            kind: if number % 2 == 0 {
                InstrumentKind::BankAccount
            } else {
                InstrumentKind::Card
            },
            token: InstrumentToken::new(&token).unwrap(),
            bank: BankName::new("ICBC").unwrap(),
            country: *b"CN",
            last_four: *b"4242",
            currency,
        })
    }

    /// An instrument command, drawn from its own generator: mostly of the
    /// account's own customer among a few hundred (so that instruments are
    /// met again), some naming another's. Ids come from the shared counter;
    /// nothing else of the mix is drawn here.
    fn instrument_command(&mut self, batch: &mut Vec<Command>) {
        let own = self.instrument_rng.below(300);
        let account = if self.instrument_rng.chance(5) {
            AccountId(9_000_000 + self.instrument_rng.below(100))
        } else if own % 3 == 0 && self.instrument_rng.chance(10) {
            customer_usd(own)
        } else {
            customer(own)
        };
        let owner = if self.instrument_rng.chance(90) {
            own
        } else {
            self.instrument_rng.below(CUSTOMERS)
        };
        let number = 1 + self.instrument_rng.below(2) as u32;
        let instrument = InstrumentId { owner, number };
        let amount = 1 + self.instrument_rng.below(20_000);
        let currency = if account == customer_usd(own) {
            Currency::USD
        } else {
            Currency::CNY
        };
        let kind = match self.instrument_rng.below(100) {
            0..=14 => {
                let currency = if number == 2 && self.instrument_rng.chance(50) {
                    Currency::USD
                } else {
                    Currency::CNY
                };
                self.bind(owner, number, currency)
            }
            15..=29 => CommandKind::VerifyInstrument {
                instrument,
                passed: self.instrument_rng.chance(80),
            },
            30..=34 => CommandKind::UnbindInstrument { instrument },
            35..=59 => CommandKind::DepositFrom {
                account,
                amount,
                currency,
                instrument,
            },
            60..=84 => {
                let id = self.id();
                self.instrument_holds.push(CommandId(id));
                CommandKind::WithdrawHoldTo {
                    account,
                    amount,
                    currency,
                    timeout_ms: 1_000 + self.instrument_rng.below(5_000),
                    context: RiskContext::NONE,
                    instrument,
                }
            }
            _ => {
                let Some(&hold) = self.instrument_holds.get(
                    self.instrument_rng
                        .below(self.instrument_holds.len().max(1) as u64)
                        as usize,
                ) else {
                    return;
                };
                if self.instrument_rng.chance(70) {
                    CommandKind::WithdrawPost { hold }
                } else {
                    CommandKind::WithdrawVoid { hold }
                }
            }
        };
        let id = match kind {
            CommandKind::WithdrawHoldTo { .. } => *self.instrument_holds.last().unwrap(),
            _ => CommandId(self.id()),
        };
        batch.push(Command { id, kind });
    }

    fn some_customer(&mut self) -> AccountId {
        // A few unknown ids too.
        if self.rng.chance(1) {
            return AccountId(9_000_000 + self.rng.below(100));
        }
        let owner = self.rng.below(CUSTOMERS);
        if owner % 3 == 0 && self.rng.chance(20) {
            customer_usd(owner)
        } else {
            customer(owner)
        }
    }

    /// What a gateway says about a payment, so that every rule of the
    /// policies below fires now and then: devices (some new), places far
    /// apart seconds apart, blocked and malformed countries, step-up proofs.
    fn context(&mut self) -> RiskContext {
        let mut context = RiskContext::NONE;
        if self.rng.chance(30) {
            context.device = 1 + self.rng.below(CUSTOMERS) * 64 + self.rng.below(10);
        }
        if self.rng.chance(3) {
            let (latitude, longitude) =
                [(3123, 12147), (3990, 11640), (2232, 11417)][self.rng.below(3) as usize];
            context.latitude_centidegrees = latitude;
            context.longitude_centidegrees = longitude;
        }
        if self.rng.chance(20) {
            context.country = match self.rng.below(100) {
                0..=2 => *b"KP",
                3 => *b"cn",
                _ => *b"CN",
            };
        }
        context.step_up_verified = self.rng.chance(5);
        context
    }

    fn hot_merchant(&mut self) -> u64 {
        self.rng.skewed(MERCHANTS)
    }

    fn amount(&mut self) -> u64 {
        match self.rng.below(100) {
            0 => 0,
            1 => 10_000_000,
            2..=10 => 20_000 + self.rng.below(200_000),
            _ => 1 + self.rng.below(5_000),
        }
    }

    fn currency(&mut self) -> Currency {
        if self.rng.chance(4) {
            Currency::USD
        } else {
            Currency::CNY
        }
    }

    /// A USD/CNY rate (set either way round), valid 1-3 s of command time.
    fn fx_rate(&mut self) -> CommandKind {
        let usd_cny = 70_000 + self.rng.below(3_000);
        let (base, quote, mid) = if self.rng.chance(70) {
            (
                Currency::USD,
                Currency::CNY,
                FxMid {
                    mantissa: usd_cny,
                    scale: 4,
                },
            )
        } else {
            (
                Currency::CNY,
                Currency::USD,
                FxMid {
                    mantissa: 100_000_000 / usd_cny,
                    scale: 6,
                },
            )
        };
        CommandKind::SetFxRate(FxRateSet {
            base,
            quote,
            mid,
            spread_bps: self.rng.below(60) as u16,
            valid_ms: 1_000 + self.rng.below(2_000),
            source: FxSource::new("TEST").unwrap(),
        })
    }

    /// An FX order of one owner (mostly one with a USD and a CNY account;
    /// sometimes two owners, an unknown account or one currency).
    fn fx_order(&mut self) -> FxOrder {
        let owner = self.rng.below(CUSTOMERS / 3) * 3;
        let (mut from, mut to) = if self.rng.chance(50) {
            (customer(owner), customer_usd(owner))
        } else {
            (customer_usd(owner), customer(owner))
        };
        match self.rng.below(100) {
            0..=4 => to = self.some_customer(),
            5..=6 => from = AccountId(9_000_000 + self.rng.below(100)),
            7 => to = from,
            _ => {}
        }
        FxOrder {
            from,
            to,
            amount: match self.rng.below(100) {
                0 => 0,
                1..=3 => 5_000_000,
                4..=20 => 10_000 + self.rng.below(100_000),
                _ => 1 + self.rng.below(8_000),
            },
            side: if self.rng.chance(50) {
                FxSide::Pay
            } else {
                FxSide::Receive
            },
        }
    }

    /// One FX command: rates, floors, quotes, conversions of quotes, direct
    /// conversions (cross-currency QR payments come from the main mix: a
    /// USD payer paying a CNY code).
    fn fx_command(&mut self, batch: &mut Vec<Command>) {
        // Rates are set rarely and live 1-3 s, so they go stale between sets.
        if self.rng.below(1000) < 2 {
            let rate = self.fx_rate();
            self.push(batch, rate);
            return;
        }
        let kind = match self.rng.below(100) {
            0..=7 => CommandKind::FxConvert(self.fx_order()),
            8..=11 => CommandKind::SetFxFloor {
                currency: if self.rng.chance(50) {
                    Currency::USD
                } else {
                    Currency::CNY
                },
                // Often 0 or low: the floor decides, on the whole position.
                limit: [0, 0, 20_000, 200_000, 2_000_000][self.rng.below(5) as usize],
            },
            12..=41 => {
                let order = self.fx_order();
                let ttl_ms = 1_000 + self.rng.below(20_000);
                let id = self.push(batch, CommandKind::FxQuote { order, ttl_ms });
                self.quotes.push((id, order.from));
                return;
            }
            42..=66 if !self.quotes.is_empty() => {
                let back = self.rng.below(self.quotes.len().min(200) as u64) as usize;
                let (quote, from) = self.quotes[self.quotes.len() - 1 - back];
                CommandKind::FxConvertQuote {
                    quote,
                    from: if self.rng.chance(5) {
                        self.some_customer()
                    } else {
                        from
                    },
                }
            }
            _ => CommandKind::FxConvert(self.fx_order()),
        };
        self.push(batch, kind);
    }

    /// One command of the main mix: about two thirds name two owners.
    fn command(&mut self, batch: &mut Vec<Command>) {
        if self.rng.chance(6) {
            self.fx_command(batch);
            return;
        }
        if self.instrument_rng.chance(4) {
            self.instrument_command(batch);
        }
        let roll = self.rng.below(1000);
        // Retries (same id, same fields) and reused ids (different fields).
        if roll < 30 && !self.sent.is_empty() {
            let back = self.rng.below(self.sent.len().min(3_000) as u64) as usize;
            let command = self.sent[self.sent.len() - 1 - back];
            batch.push(command);
            return;
        }
        if roll < 40 && !self.sent.is_empty() {
            let back = self.rng.below(self.sent.len().min(3_000) as u64) as usize;
            let id = self.sent[self.sent.len() - 1 - back].id;
            let kind = CommandKind::Transfer {
                from: self.some_customer(),
                to: self.some_customer(),
                amount: 1 + self.rng.below(100),
                currency: Currency::CNY,
                context: RiskContext::NONE,
            };
            batch.push(Command { id, kind });
            return;
        }
        let kind = match roll {
            40..=449 => CommandKind::Transfer {
                from: self.some_customer(),
                to: self.some_customer(),
                amount: self.amount(),
                currency: self.currency(),
                context: self.context(),
            },
            450..=649 => {
                let index = self.hot_merchant();
                let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
                keys[0] = if self.rng.chance(3) {
                    MerchantKey::new("unknown.gui", "nobody")
                } else {
                    merchant_key(index, self.rng.below(2))
                };
                if self.rng.chance(20) {
                    keys[1] = merchant_key(self.hot_merchant(), 0);
                }
                let id = self.id();
                let command = Command::new(
                    id,
                    CommandKind::PayMerchantQr {
                        payer: self.some_customer(),
                        keys,
                        amount: self.amount(),
                        fee: if self.rng.chance(10) {
                            self.rng.below(300)
                        } else {
                            0
                        },
                        currency: self.currency(),
                        mcc: if self.rng.chance(10) { 5812 } else { 0 },
                        context: self.context(),
                    },
                );
                self.payments.push(command.id);
                self.sent.push(command);
                batch.push(command);
                return;
            }
            650..=699 => {
                if self.codes.is_empty() || self.rng.chance(5) {
                    CommandKind::ChargePaymentCode {
                        merchant: merchant(self.hot_merchant()),
                        code: 100_000_000_000_000_000 + self.rng.below(1_000),
                        amount: self.amount(),
                        currency: Currency::CNY,
                        context: self.context(),
                    }
                } else {
                    let pick = self.codes.len()
                        - 1
                        - self.rng.below(self.codes.len().min(50) as u64) as usize;
                    let code = self.codes[pick];
                    let id = self.id();
                    let command = Command::new(
                        id,
                        CommandKind::ChargePaymentCode {
                            merchant: merchant(self.hot_merchant()),
                            code,
                            amount: self.amount(),
                            currency: Currency::CNY,
                            context: self.context(),
                        },
                    );
                    self.payments.push(command.id);
                    self.sent.push(command);
                    batch.push(command);
                    return;
                }
            }
            700..=739 => {
                let payment = if self.payments.is_empty() || self.rng.chance(5) {
                    CommandId(self.rng.next() as u128)
                } else {
                    let back = self.rng.below(self.payments.len().min(2_000) as u64) as usize;
                    self.payments[self.payments.len() - 1 - back]
                };
                CommandKind::Refund {
                    payment,
                    amount: 1 + self.rng.below(3_000),
                    currency: if self.rng.chance(3) {
                        Currency::USD
                    } else {
                        Currency::CNY
                    },
                }
            }
            740..=769 => {
                // Codes: mostly fresh, some taken (reused numbers).
                let code = if self.rng.chance(10) && !self.codes.is_empty() {
                    self.codes[self.rng.below(self.codes.len() as u64) as usize]
                } else {
                    100_000_000_000_000_000 + self.rng.below(899_999_999_999_999_999)
                };
                self.codes.push(code);
                CommandKind::IssuePaymentCode {
                    customer: self.some_customer(),
                    code,
                    lifetime_ms: 5_000 + self.rng.below(20_000),
                }
            }
            770..=819 => CommandKind::Deposit {
                account: self.some_customer(),
                amount: self.amount(),
                currency: self.currency(),
            },
            820..=869 => {
                let id = self.id();
                let command = Command::new(
                    id,
                    CommandKind::WithdrawHold {
                        account: self.some_customer(),
                        amount: self.amount(),
                        currency: Currency::CNY,
                        timeout_ms: 1_000 + self.rng.below(5_000),
                        context: self.context(),
                    },
                );
                self.holds.push(command.id);
                self.sent.push(command);
                batch.push(command);
                return;
            }
            870..=909 => {
                let hold = if self.holds.is_empty() || self.rng.chance(5) {
                    CommandId(self.rng.next() as u128)
                } else {
                    let back = self.rng.below(self.holds.len().min(3_000) as u64) as usize;
                    self.holds[self.holds.len() - 1 - back]
                };
                if self.rng.chance(60) {
                    CommandKind::WithdrawPost { hold }
                } else {
                    CommandKind::WithdrawVoid { hold }
                }
            }
            910..=914 => CommandKind::Freeze {
                account: self.some_customer(),
            },
            915..=959 => CommandKind::Unfreeze {
                account: self.some_customer(),
            },
            960..=964 => CommandKind::SetKycTier {
                account: self.some_customer(),
                tier: self.rng.below(5) as u8,
            },
            // Budgets (category 0 and 12 are unknown; some cleared).
            965..=969 => CommandKind::SetBudget {
                account: self.some_customer(),
                category: self.rng.below(13) as u8,
                budget: if self.rng.chance(15) {
                    None
                } else {
                    Some(self.rng.below(400_000))
                },
            },
            970..=979 => {
                // A late merchant registering a key (some taken, some fresh).
                let index = self.rng.below(MERCHANTS);
                CommandKind::RegisterMerchantKey {
                    merchant: merchant(if self.rng.chance(80) {
                        index - index % 8
                    } else {
                        index
                    }),
                    key: merchant_key(index - index % 8, self.rng.below(3)),
                }
            }
            980..=989 => {
                let owner = self.next_owner;
                self.next_owner += 1;
                CommandKind::OpenAccount(OpenAccount {
                    account: AccountId(8_000_000 + owner),
                    owner,
                    kind: AccountKind::Customer,
                    currency: Currency::CNY,
                    kyc_tier: 1,
                    mcc: 0,
                })
            }
            990..=994 => CommandKind::Close {
                account: self.some_customer(),
            },
            _ => CommandKind::Transfer {
                from: AccountId::house(HouseRole::Settlement, Currency::CNY),
                to: self.some_customer(),
                amount: 5,
                currency: Currency::CNY,
                context: RiskContext::NONE,
            },
        };
        self.push(batch, kind);
    }
}

/// Every rule on, with limits and windows that the mix trips now and then.
const POLICY_ALL_RULES: &str = r#"
[blocked_countries]
action = "decline"
countries = ["KP"]

[blocked_merchants]
action = "decline"
merchants = [5_000_017]

[blocked_mccs]
action = "decline"
mccs = [5413]

[single_payment]
action = "step_up"

[single_payment.max]
CNY = ["800.00", "1500.00", "2000.00", "unlimited"]
USD = ["800.00", "1500.00", "2000.00", "unlimited"]

[daily_outflow]
action = "step_up"

[daily_outflow.max]
CNY = ["1000.00", "10000.00", "4000.00", "unlimited"]

[monthly_outflow]
action = "decline"

[monthly_outflow.max]
CNY = ["unlimited", "3000.00", "unlimited", "5000.00"]

[velocity]
action = "step_up"
payments_max = 6
window_seconds = 2

[new_device]
action = "step_up"
trust_first_device = true

[impossible_travel]
action = "decline"
freeze = true
speed_kmh_max = 1000
distance_km_min = 100

[amount_anomaly]
action = "flag"
multiplier = "8"
history = 20
history_min = 5

[new_instrument]
action = "step_up"
hours = 24

[new_instrument.max]
CNY = ["150.00", "150.00", "300.00", "unlimited"]
USD = ["150.00", "150.00", "300.00", "unlimited"]

[instrument_daily]
action = "decline"

[instrument_daily.max]
CNY = ["250.00", "250.00", "250.00", "250.00"]

[instrument_binds]
action = "flag"
binds_max = 1
window_seconds = 3
"#;

/// Other rules, other responses: flags, declines, an untrusted first device.
const POLICY_OTHER: &str = r#"
[instrument_binds]
action = "decline"
freeze = true
binds_max = 2
window_seconds = 5

[blocked_mccs]
action = "flag"
mccs = [5413, 5812]

[single_payment]
action = "flag"

[single_payment.max]
CNY = ["500.00", "500.00", "500.00", "500.00"]

[velocity]
action = "decline"
payments_max = 4
window_seconds = 3

[new_device]
action = "decline"
trust_first_device = false
"#;

fn policy_all_rules() -> RiskPolicy {
    RiskPolicy::from_toml(POLICY_ALL_RULES).unwrap()
}

fn policy_other() -> RiskPolicy {
    RiskPolicy::from_toml(POLICY_OTHER).unwrap()
}

/// One entry of the log: a batch, or a risk policy record between batches.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // a test's log
enum Entry {
    Batch(u64, Vec<Command>),
    Policy(u64, RiskPolicy),
}

impl Entry {
    fn batch(&self) -> &[Command] {
        match self {
            Entry::Batch(_, batch) => batch,
            Entry::Policy(..) => &[],
        }
    }

    fn timestamp(&self) -> u64 {
        match self {
            Entry::Batch(timestamp, _) | Entry::Policy(timestamp, _) => *timestamp,
        }
    }

    /// The same entry `shift` later.
    fn shifted(&self, shift: u64) -> Entry {
        match self {
            Entry::Batch(timestamp, batch) => Entry::Batch(timestamp + shift, batch.clone()),
            Entry::Policy(timestamp, policy) => Entry::Policy(timestamp + shift, policy.clone()),
        }
    }
}

/// Policy changes: (commands of the main mix before it, the policy).
type Schedule<'a> = &'a [(usize, fn() -> RiskPolicy)];

/// The main log's policies: none at first, every rule, other rules, none,
/// every rule again.
const MAIN_SCHEDULE: Schedule<'static> = &[
    (2_000, policy_all_rules),
    (35_000, policy_other),
    (60_000, RiskPolicy::disabled),
    (75_000, policy_all_rules),
];

/// The log in order; the first two entries are the setup batches.
fn seeded_log(seed: u64, commands_min: usize, schedule: Schedule<'_>) -> Vec<Entry> {
    let mut workload = Workload::new(seed);
    let mut time = BASE_TIME;
    let mut log = Vec::new();
    for batch in workload.setup() {
        time += 1_000_000;
        log.push(Entry::Batch(time, batch));
    }
    let mut total = 0;
    let mut policies = schedule.iter().peekable();
    while total < commands_min {
        while let Some((_, policy)) = policies.next_if(|(at, _)| total >= *at) {
            log.push(Entry::Policy(time, policy()));
        }
        let size = match workload.rng.below(10) {
            0 => 1,
            1..=6 => 1 + workload.rng.below(64) as usize,
            _ => 64 + workload.rng.below(700) as usize,
        };
        let mut batch = Vec::with_capacity(size);
        for _ in 0..size {
            workload.command(&mut batch);
        }
        total += batch.len();
        // 0-60 ms between batches: holds (1-6 s) and codes (5-25 s) expire
        // along the way, and so do idempotency records (window below).
        time += workload.rng.below(60_000_000);
        log.push(Entry::Batch(time, batch));
    }
    log
}

fn commands(log: &[Entry]) -> impl Iterator<Item = &Command> + '_ {
    log.iter().flat_map(Entry::batch)
}

/// Applies `log` to a lone ledger, the first entry at `first_sequence`.
fn apply_lone(ledger: &mut Ledger, log: &[Entry], first_sequence: u64) -> Vec<CommandResult> {
    let mut results = Vec::new();
    for (offset, entry) in log.iter().enumerate() {
        let sequence = first_sequence + offset as u64;
        match entry {
            Entry::Batch(timestamp, batch) => {
                ledger.apply(sequence, *timestamp, batch, &mut results)
            }
            Entry::Policy(timestamp, policy) => {
                ledger.set_risk_policy(sequence, *timestamp, policy.clone());
            }
        }
    }
    results
}

/// Applies `log` to a sharded ledger pipelined as the engine runs it: up to
/// 6 batches in flight, the router routing the next while the shards apply
/// earlier ones, policy records sent in order between them.
fn apply_sharded(
    sharded: &mut ShardedLedger,
    log: &[Entry],
    first_sequence: u64,
) -> Vec<CommandResult> {
    let mut results = Vec::new();
    for (offset, entry) in log.iter().enumerate() {
        let sequence = first_sequence + offset as u64;
        match entry {
            Entry::Batch(timestamp, batch) => sharded.submit(sequence, *timestamp, batch),
            Entry::Policy(timestamp, policy) => {
                sharded.set_risk_policy(sequence, *timestamp, policy.clone());
            }
        }
        while let Some(done) = sharded.complete_ready() {
            results.extend(done);
        }
        while sharded.in_flight() > 6 {
            results.extend(sharded.complete_wait().unwrap());
        }
    }
    while let Some(done) = sharded.complete_wait() {
        results.extend(done);
    }
    results
}

/// The risk queries a lone ledger and a sharded one must answer alike: the
/// policy, audits and spending of a sample of accounts (customers, unknown,
/// a merchant, a house account).
fn risk_queries() -> Vec<Query> {
    let mut queries = vec![Query::RiskPolicy];
    let mut accounts: Vec<AccountId> = (0..CUSTOMERS).step_by(7).map(customer).collect();
    accounts.extend((0..CUSTOMERS).step_by(21).map(customer_usd));
    accounts.push(AccountId(9_000_001));
    accounts.push(merchant(1));
    accounts.push(AccountId::house(HouseRole::Settlement, Currency::CNY));
    for (index, account) in accounts.into_iter().enumerate() {
        for entry in [0, 1, 5] {
            queries.push(Query::RiskAudit {
                account,
                index: entry,
            });
        }
        queries.push(Query::Spending {
            account,
            month: 0,
            category: 1 + (index % 11) as u8,
        });
        queries.push(Query::Spending {
            account,
            month: 0,
            category: 10,
        });
        for index in [0, 1, 2] {
            queries.push(Query::Instrument { account, index });
        }
    }
    queries
}

fn config() -> LedgerConfig {
    LedgerConfig {
        // Small enough that records go by age and by count during the run.
        idempotency_window_ns: 20_000_000_000,
        idempotency_records_max: 40_000,
        ..LedgerConfig::default()
    }
}

fn assert_same_results(log: &[Entry], got: &[CommandResult], want: &[CommandResult], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let mut flat = commands(log);
    for (index, (got, want)) in got.iter().zip(want).enumerate() {
        let command = flat.next();
        assert_eq!(got, want, "{what}, command {index}: {command:?}");
    }
}

#[test]
fn determinism_across_shard_counts() {
    let log = seeded_log(0x5EED_0001, 100_000, MAIN_SCHEDULE);
    let command_count = commands(&log).count();
    assert!(command_count >= 100_000);

    let mut lone = Ledger::new(config());
    lone.record_history(true);
    let expected = apply_lone(&mut lone, &log, 1);
    assert_eq!(expected.len(), command_count);
    let mut expected_movements: Vec<Movement> = Vec::new();
    lone.take_movements(&mut expected_movements);
    lone.record_history(false);
    assert!(expected_movements.len() > command_count / 2);
    // FX legs are movements too: conversions, cross-currency payments and
    // their refunds.
    for kind in ["fx_convert", "pay_merchant_qr", "refund"] {
        assert!(
            expected_movements
                .iter()
                .any(|movement| movement.kind == kind && movement.currency == Currency::USD),
            "no {kind} movement in USD"
        );
    }
    assert!(lone.is_conserved());
    // The log exercises what it claims to: successes and many kinds of failure.
    let mut statuses = std::collections::BTreeMap::new();
    for result in &expected {
        *statuses.entry(result.status.name()).or_insert(0usize) += 1;
    }
    for status in [
        "ok",
        "id_reused_with_different_fields",
        "insufficient_funds",
        "currency_mismatch",
        "unknown_merchant",
        "payment_code_used",
        "refund_exceeds_payment",
        "payment_not_found",
        "hold_expired",
        "account_frozen",
        "merchant_key_taken",
        "payment_code_taken",
        "risk_declined",
        "step_up_required",
        "risk_frozen",
        "invalid_risk_context",
        "unknown_category",
        "fx_liquidity_floor",
        "fx_rate_stale",
        "fx_not_same_owner",
        "fx_quote_used",
        "fx_quote_not_yours",
        "instrument_required",
        "instrument_not_yours",
        "instrument_unverified",
        "instrument_unbound",
        "instrument_currency_mismatch",
        "instrument_exists",
        "unknown_instrument",
        "looks_like_card_number",
    ] {
        assert!(
            statuses.get(status).copied().unwrap_or(0) > 0,
            "no {status} in {statuses:?}"
        );
    }
    // Every rule decided some payment (refused or flagged), and budgets
    // were crossed. (`outflow_currencies` needs more currencies per
    // customer than the mix has.)
    let mut rules = std::collections::BTreeMap::new();
    let mut crossings = 0;
    for result in &expected {
        if let Some(risk) = result.detail.risk() {
            *rules.entry(risk.rule.name()).or_insert(0usize) += 1;
        }
        if result.detail.budget().is_some() {
            crossings += 1;
        }
    }
    for &rule in RuleId::ALL {
        if rule != RuleId::OutflowCurrencies {
            assert!(
                rules.contains_key(rule.name()),
                "{rule:?} never decided: {rules:?}"
            );
        }
    }
    assert!(crossings > 0, "no budget crossed");
    assert!(
        expected
            .iter()
            .any(|result| matches!(result.detail, Detail::FlaggedOverBudget(..))),
        "no payment both flagged and over budget"
    );
    let queries = risk_queries();
    let lone_answers: Vec<QueryReply> = queries.iter().map(|query| lone.query(query)).collect();
    assert!(
        lone_answers
            .iter()
            .any(|reply| matches!(reply, QueryReply::RiskAudit { entries, .. } if *entries > 0)),
        "no audited decision among the sampled accounts"
    );

    // FX does happen: conversions, quotes and cross-currency QR payments
    // that succeed (their results carry the amounts), and refunds of them.
    let mut flat = commands(&log);
    let mut fx_ok = std::collections::BTreeMap::new();
    let mut fx_payments = std::collections::BTreeSet::new();
    for result in &expected {
        let command = flat.next().unwrap();
        if result.status == Status::Ok {
            if let Detail::FxConversion(_) = result.detail {
                *fx_ok.entry(command.kind.name()).or_insert(0usize) += 1;
                fx_payments.insert(command.id);
            }
            if let CommandKind::Refund { payment, .. } = command.kind {
                if fx_payments.contains(&payment) {
                    *fx_ok.entry("refund").or_insert(0usize) += 1;
                }
            }
        }
    }
    for kind in [
        "fx_quote",
        "fx_convert_quote",
        "fx_convert",
        "pay_merchant_qr",
    ] {
        assert!(
            fx_ok.get(kind).copied().unwrap_or(0) > 20,
            "few {kind} with FX in {fx_ok:?}"
        );
    }

    for shards in [1, 2, 3, 8] {
        let mut sharded = ShardedLedger::new(config(), shards).unwrap();
        sharded.record_history(true).unwrap();
        let results = apply_sharded(&mut sharded, &log, 1);
        assert_same_results(&log, &results, &expected, &format!("{shards} shards"));
        let mut chunks = Vec::new();
        assert!(sharded.take_history(&mut chunks) > 0);
        sharded.record_history(false).unwrap();
        // The same movements (a half's leg made on its own shard, with the
        // counterparty and merchant category of the lone ledger's; FX legs
        // too), once put in log order.
        let mut got_movements: Vec<Movement> = chunks.into_iter().flatten().collect();
        got_movements.sort_by_key(Movement::order_key);
        assert_eq!(
            got_movements.len(),
            expected_movements.len(),
            "{shards} shards"
        );
        for (got, want) in got_movements.iter().zip(&expected_movements) {
            assert_eq!(got, want, "{shards} shards");
        }
        let stats = sharded.stats();
        if shards == 2 {
            // Over the main mix (after the opening and top-up batches).
            let main = commands(&log[2..]).count();
            let pairs_split = stats.pairs_split as f64 / main as f64;
            // About a third (FX conversions, 6% of the mix, are one-shard).
            assert!(pairs_split > 0.3, "cross-shard share {pairs_split}");
            // FX floors were checked both ways: on the exact position asked
            // of the shards, and on the router's bound.
            assert!(stats.liquidity_asks > 100, "{stats:?}");
            assert!(stats.liquidity_bounded > 100, "{stats:?}");
        }
        for (query, want) in queries.iter().zip(&lone_answers) {
            assert_eq!(&sharded.query(query), want, "{shards} shards, {query:?}");
        }

        let merged = sharded.to_ledger().unwrap();
        assert!(merged.is_conserved(), "{shards} shards");
        assert_eq!(merged.totals(), lone.totals(), "{shards} shards");
        for account in lone.accounts() {
            assert_eq!(
                merged.account(account.id).map(|a| a.view()),
                Some(account.view()),
                "{shards} shards"
            );
            let reply = sharded.query(&Query::Balance {
                account: account.id,
            });
            assert_eq!(
                reply,
                QueryReply::Balance(account.view()),
                "{shards} shards"
            );
        }
        assert_eq!(
            merged.risk().counters(),
            lone.risk().counters(),
            "{shards} shards"
        );
        assert_eq!(merged.digest(), lone.digest(), "{shards} shards");

        // A restart with another shard count: split the merged state and
        // carry on with the next part of the log (another policy change in
        // it).
        let mut restarted = ShardedLedger::from_ledger(merged, shards % 3 + 1).unwrap();
        let mut lone_after = lone.clone();
        let last = log.last().map_or(0, Entry::timestamp);
        let tail: Vec<Entry> = seeded_log(
            0x5EED_0002,
            20_000,
            &[(5_000, policy_other), (12_000, policy_all_rules)],
        )
        .iter()
        .skip(2)
        .map(|entry| entry.shifted(last - BASE_TIME))
        .collect();
        let first = log.len() as u64 + 1;
        let want = apply_lone(&mut lone_after, &tail, first);
        let got = apply_sharded(&mut restarted, &tail, first);
        assert_same_results(&tail, &got, &want, &format!("restart from {shards} shards"));
        for (query, want) in queries.iter().map(|query| (query, lone_after.query(query))) {
            assert_eq!(restarted.query(query), want, "restart from {shards} shards");
        }
        assert_eq!(restarted.to_ledger().unwrap().digest(), lone_after.digest());
    }
}

/// A hold id that comes back after its record was evicted: refused while
/// the old hold (pending when its record went) is kept on its shard, even
/// when the new hold's account lives on another shard.
#[test]
fn determinism_of_hold_ids_reused_after_eviction() {
    use payrail_engine::shard::shard_of_owner;
    let owner_on = |shard: usize| {
        (0..)
            .find(|owner| shard_of_owner(*owner, 2) == shard)
            .unwrap()
    };
    let (a, b) = (owner_on(0), owner_on(1));
    let config = LedgerConfig {
        idempotency_window_ns: 1_000_000_000,
        idempotency_records_max: 1_000_000,
        ..LedgerConfig::default()
    };
    let open = |id: u128, owner: u64| {
        Command::new(
            id,
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(owner + 100),
                owner,
                kind: AccountKind::Customer,
                currency: Currency::CNY,
                kyc_tier: 1,
                mcc: 0,
            }),
        )
    };
    let deposit = |id: u128, owner: u64| {
        Command::new(
            id,
            CommandKind::Deposit {
                account: AccountId(owner + 100),
                amount: 1_000,
                currency: Currency::CNY,
            },
        )
    };
    let hold = |id: u128, owner: u64| {
        Command::new(
            id,
            CommandKind::WithdrawHold {
                account: AccountId(owner + 100),
                amount: 10,
                currency: Currency::CNY,
                timeout_ms: 60_000,
                context: RiskContext::NONE,
            },
        )
    };
    let post = |id: u128, hold: u128| {
        Command::new(
            id,
            CommandKind::WithdrawPost {
                hold: CommandId(hold),
            },
        )
    };
    let second = 1_000_000_000u64;
    let log: Vec<(u64, Vec<Command>)> = vec![
        (
            BASE_TIME,
            vec![open(1, a), open(2, b), deposit(3, a), deposit(4, b)],
        ),
        (BASE_TIME + 1, vec![hold(50, a), hold(60, a)]),
        (BASE_TIME + 2, vec![post(5, 60)]),
        // Both records are gone; 50 is still pending (refused), 60 was
        // posted (forgotten with its record: the id is free).
        (BASE_TIME + 5 * second, vec![hold(50, b), hold(60, b)]),
        // The refusal's record is gone too; the old hold 50 is still kept.
        (BASE_TIME + 6 * second, vec![hold(50, b)]),
        (BASE_TIME + 6 * second + 1, vec![post(7, 50)]),
        // The old hold 50 expired and its last record went: the id is free.
        (BASE_TIME + 70 * second, vec![hold(50, b)]),
    ];
    let mut lone = Ledger::new(config);
    let expected: Vec<Vec<CommandResult>> = log
        .iter()
        .enumerate()
        .map(|(sequence, (timestamp, batch))| {
            lone.apply_batch(sequence as u64 + 1, *timestamp, batch)
        })
        .collect();
    let statuses: Vec<&str> = expected.iter().flatten().map(|r| r.status.name()).collect();
    assert_eq!(
        statuses[6..],
        [
            "ok",
            "id_reused_with_different_fields",
            "ok",
            "id_reused_with_different_fields",
            "ok",
            "ok"
        ]
    );
    for shards in [1, 2, 3] {
        let mut sharded = ShardedLedger::new(config, shards).unwrap();
        for (sequence, ((timestamp, batch), want)) in log.iter().zip(&expected).enumerate() {
            let got = sharded.apply_batch(sequence as u64 + 1, *timestamp, batch);
            assert_eq!(&got, want, "{shards} shards, batch {sequence}");
        }
        assert_eq!(sharded.to_ledger().unwrap().digest(), lone.digest());
    }
}

/// Every page of every account's history as the storage returns them.
fn all_pages(storage: &RocksStorage, accounts: &[AccountId]) -> Vec<Vec<Movement>> {
    let mut pages = Vec::new();
    for &account in accounts {
        let mut cursor = 0;
        for _ in 0..10_000 {
            let page = storage
                .history_page(account, 0, u64::MAX, cursor, 37)
                .unwrap();
            pages.push(page.entries);
            cursor = page.next_cursor;
            if cursor == 0 {
                break;
            }
        }
    }
    pages
}

/// The same log through 1 shard and 3 shards (history written as the engine
/// writes it) and rebuilt from the log at recovery: the same pages.
#[test]
fn history_pages_are_the_same_on_any_shard_count() {
    // The batches of a seeded log (its policy records left out, the same
    // for all three).
    let log: Vec<(u64, Vec<Command>)> = seeded_log(0x5EED_0003, 20_000, MAIN_SCHEDULE)
        .into_iter()
        .filter_map(|entry| match entry {
            Entry::Batch(timestamp, batch) => Some((timestamp, batch)),
            Entry::Policy(..) => None,
        })
        .collect();
    let mut stores = Vec::new();
    for shards in [1, 3] {
        let dir = tempfile::tempdir().unwrap();
        let mut store = RocksStorage::open(dir.path()).unwrap();
        let mut sharded = ShardedLedger::new(config(), shards).unwrap();
        sharded.record_history(true).unwrap();
        let mut chunks = Vec::new();
        for (sequence, (timestamp, batch)) in log.iter().enumerate() {
            let sequence = sequence as u64 + 1;
            sharded.apply_batch(sequence, *timestamp, batch);
            assert_eq!(sharded.take_history(&mut chunks), sequence);
            // As the history writer does: one job, put in log order.
            let mut job: Vec<Movement> = chunks.drain(..).flatten().collect();
            job.sort_unstable_by_key(Movement::order_key);
            store.write_history(&job, sequence).unwrap();
        }
        stores.push((dir, store));
    }
    // Rebuilt at recovery from the log alone (no history written yet).
    let dir = tempfile::tempdir().unwrap();
    let mut rebuilt = RocksStorage::open(dir.path()).unwrap();
    let records: Vec<(u64, Vec<u8>)> = log
        .iter()
        .enumerate()
        .map(|(index, (timestamp, batch))| {
            let mut bytes = Vec::new();
            LogRecord {
                sequence: index as u64 + 1,
                timestamp: *timestamp,
                entry: LogEntry::Batch(batch.clone()),
            }
            .encode(&mut bytes);
            (index as u64 + 1, bytes)
        })
        .collect();
    rebuilt.append(&records).unwrap();
    let (ledger, report) = storage::recover(&mut rebuilt, config()).unwrap();
    assert!(report.history_rebuilt > 10_000, "{report:?}");

    let accounts: Vec<AccountId> = ledger
        .accounts()
        .iter()
        .map(|account| account.id)
        .filter(|id| !id.is_house())
        .collect();
    let want = all_pages(&rebuilt, &accounts);
    let entries: usize = want.iter().map(Vec::len).sum();
    assert_eq!(entries as u64, report.history_rebuilt);
    for (shards, (_, store)) in [1, 3].iter().zip(&stores) {
        let got = all_pages(store, &accounts);
        assert_eq!(got.len(), want.len(), "{shards} shards");
        for (got, want) in got.iter().zip(&want) {
            assert_eq!(got, want, "{shards} shards");
        }
    }
    // Each account's history adds up to its balance, newest first.
    for &account in &accounts {
        let entries: Vec<Movement> = all_pages(&rebuilt, &[account]).concat();
        let balance = ledger.account(account).unwrap().balance;
        assert_eq!(entries.first().map_or(0, |entry| entry.balance), balance);
        for pair in entries.windows(2) {
            assert_eq!(pair[1].balance + pair[0].amount, pair[0].balance);
        }
    }
}
