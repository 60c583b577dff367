//! The accounts a run seeds and uses: customers with one to three currency
//! accounts, merchants with one, in five currencies.
//!
//! Account ids carry a random per-run tag in their high bits, so a run
//! against a server that already holds data (even an earlier run's) opens
//! fresh accounts, and the pool in the next bits:
//! `tag << 40 | pool << 36 | index in pool`, where a pool is the customer
//! accounts (0 to 4) or the merchant accounts (8 to 12) of one currency. The generator computes an id
//! from a pool and an index, with no table to look up: at a million
//! commands a second, a cache miss per account would cost more than the
//! rest of generating.

use payrail_engine::command::{FxMid, FxRateSet, FxSource};
use payrail_engine::instrument::{BankName, InstrumentKind, InstrumentToken};
use payrail_engine::{
    AccountId, AccountKind, Command, CommandKind, Currency, InstrumentBind, InstrumentId,
    MerchantKey, OpenAccount, RiskContext,
};

use crate::sample::Rng;

/// One currency of the run: how often customers hold it, and a typical
/// payment in minor units (amounts are drawn from 1 to twice this).
#[derive(Clone, Copy, Debug)]
pub struct CurrencySpec {
    pub currency: Currency,
    /// Relative share of accounts in this currency.
    pub weight: u64,
    /// A typical payment, in minor units.
    pub typical_minor: u64,
}

/// JPY has no minor units and BHD three, so amounts, rounding and display are
/// exercised across the range.
pub const CURRENCIES: [CurrencySpec; 5] = [
    CurrencySpec {
        currency: Currency::CNY,
        weight: 35,
        typical_minor: 5_000, // 50.00 CNY
    },
    CurrencySpec {
        currency: Currency::THB,
        weight: 20,
        typical_minor: 20_000, // 200.00 THB
    },
    CurrencySpec {
        currency: Currency::JPY,
        weight: 20,
        typical_minor: 1_000, // 1,000 JPY
    },
    CurrencySpec {
        currency: Currency::USD,
        weight: 20,
        typical_minor: 2_000, // 20.00 USD
    },
    CurrencySpec {
        currency: Currency::BHD,
        weight: 5,
        typical_minor: 5_000, // 5.000 BHD
    },
];

/// The FX rates the run sets, one per pair of its currencies (indexes into
/// [`CURRENCIES`]): one `base` is worth `mantissa / 10^scale` `quote`.
/// Round figures of the kind a rate feed gives; only their order of
/// magnitude matters to the load (the rounding is exercised either way).
pub const FX_RATES: [(usize, usize, u64, u8); 10] = [
    (3, 0, 71_234, 4), // USD/CNY 7.1234
    (3, 1, 3_552, 2),  // USD/THB 35.52
    (3, 2, 15_025, 2), // USD/JPY 150.25
    (4, 3, 26_596, 4), // BHD/USD 2.6596
    (0, 1, 49_865, 4), // CNY/THB 4.9865
    (0, 2, 21_093, 3), // CNY/JPY 21.093
    (1, 2, 4_230, 3),  // THB/JPY 4.230
    (4, 0, 18_945, 3), // BHD/CNY 18.945
    (4, 1, 9_447, 2),  // BHD/THB 94.47
    (4, 2, 39_961, 2), // BHD/JPY 399.61
];
/// The house's spread on the run's rates, in basis points.
pub const FX_SPREAD_BPS: u16 = 30;
/// How long the run's rates stay valid: the longest the server allows
/// (7 days), so a soak never meets a stale rate.
pub const FX_RATE_VALID_MS: u64 = 7 * 24 * 3_600 * 1_000;
/// How far each FX liquidity account may go negative: far more than a run
/// converts, so the floor never refuses (the floor check still runs).
pub const FX_FLOOR_MINOR: u64 = 1_000_000_000_000_000;

/// A customer account starts with this many typical payments.
pub const OPENING_BALANCE_PAYMENTS: u64 = 10_000;

/// Merchant category codes merchants are opened with (ISO 18245).
const MERCHANT_MCCS: [u16; 6] = [5411, 5812, 5814, 5999, 4121, 5541];

/// Bits of an account id below the run tag.
const TAG_SHIFT: u32 = 40;
/// Bits of an account id below the pool number.
const POOL_SHIFT: u32 = 36;
/// Pool number of a currency's merchants: this plus the currency index
/// (customer pools are the currency index).
const MERCHANT_POOL_FIRST: u64 = 8;
/// The globally unique identifier of the merchant QR codes the run pays.
const MERCHANT_KEY_GUI: &str = "com.payrail.loadtest";
/// Largest run tag: keeps ids below the house range (0xFF00...).
pub const TAG_MAX: u64 = (1 << 23) - 1;

/// One account to open.
#[derive(Clone, Copy, Debug)]
pub struct SeedAccount {
    pub id: AccountId,
    pub owner: u64,
    pub kind: AccountKind,
    /// Index into [`CURRENCIES`].
    pub currency_index: u8,
}

/// Two accounts of one customer in different currencies, by pool and
/// index in the pool: what an FX conversion moves between.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FxPair {
    pub pool_a: u8,
    pub pool_b: u8,
    pub index_a: u32,
    pub index_b: u32,
}

/// Every account of the run.
#[derive(Debug)]
pub struct Population {
    tag: u64,
    pub accounts: Vec<SeedAccount>,
    /// Number of customer accounts per currency (index into
    /// [`CURRENCIES`]); see [`Population::pool_account`]. Zipf rank 0 is
    /// index 0.
    pub pool_sizes: Vec<u64>,
    /// The QR merchant key of every merchant, per currency; index `i` of
    /// currency `c` is [`Population::merchant_account`]`(c, i)`. Computed
    /// once: a key is a hash, too slow to compute per payment.
    pub merchant_keys: Vec<Vec<MerchantKey>>,
    /// Cumulative pool sizes, to pick a currency in proportion to its accounts.
    pool_cumulative: Vec<u64>,
    /// The owner of every customer account, per currency pool, by index.
    pool_owners: Vec<Vec<u64>>,
    /// The first two accounts of every customer holding more than one
    /// currency (none with one account per customer).
    pub fx_pairs: Vec<FxPair>,
    pub customers: u64,
    pub merchants: u64,
}

impl Population {
    /// Customers hold 1 to 3 currency accounts each, or exactly one with
    /// `one_account_each`.
    pub fn build(
        tag: u64,
        customers: u64,
        one_account_each: bool,
        merchants: u64,
        seed: u64,
    ) -> Population {
        assert!((1..=TAG_MAX).contains(&tag), "tag {tag}");
        let mut rng = Rng::new(seed ^ 0x5eed);
        let weight_total: u64 = CURRENCIES.iter().map(|spec| spec.weight).sum();
        let expected = if one_account_each {
            customers
        } else {
            customers * 2
        };
        let mut accounts = Vec::with_capacity((expected + merchants) as usize);
        let mut pool_sizes = vec![0u64; CURRENCIES.len()];
        let mut pool_owners: Vec<Vec<u64>> = vec![Vec::new(); CURRENCIES.len()];
        let mut fx_pairs = Vec::new();
        for customer in 0..customers {
            let owner = tag << TAG_SHIFT | customer;
            let count = if one_account_each {
                1
            } else {
                1 + rng.below(3) as usize
            };
            let mut held = [false; CURRENCIES.len()];
            let mut first: Option<(u8, u32)> = None;
            let mut paired = false;
            for _ in 0..count {
                // Draw a currency by weight among those not held yet (bounded:
                // at most one pass over the five per draw).
                let free_weight: u64 = CURRENCIES
                    .iter()
                    .zip(held)
                    .filter(|(_, held)| !held)
                    .map(|(spec, _)| spec.weight)
                    .sum();
                let mut pick = rng.below(free_weight.max(1));
                let mut chosen = 0;
                for (index, spec) in CURRENCIES.iter().enumerate() {
                    if held[index] {
                        continue;
                    }
                    if pick < spec.weight {
                        chosen = index;
                        break;
                    }
                    pick -= spec.weight;
                }
                held[chosen] = true;
                // A pool's size fits u32: customers are at most 16 million.
                let index = pool_sizes[chosen] as u32;
                match first {
                    None => first = Some((chosen as u8, index)),
                    Some((pool_a, index_a)) if !paired => {
                        paired = true;
                        fx_pairs.push(FxPair {
                            pool_a,
                            pool_b: chosen as u8,
                            index_a,
                            index_b: index,
                        });
                    }
                    Some(_) => {}
                }
                let account = pool_id(tag, chosen as u64, pool_sizes[chosen]);
                pool_sizes[chosen] += 1;
                pool_owners[chosen].push(owner);
                accounts.push(SeedAccount {
                    id: account,
                    owner,
                    kind: AccountKind::Customer,
                    currency_index: chosen as u8,
                });
            }
        }
        let mut merchant_keys: Vec<Vec<MerchantKey>> = vec![Vec::new(); CURRENCIES.len()];
        for merchant in 0..merchants {
            let mut pick = rng.below(weight_total);
            let mut chosen = 0;
            for (index, spec) in CURRENCIES.iter().enumerate() {
                if pick < spec.weight {
                    chosen = index;
                    break;
                }
                pick -= spec.weight;
            }
            let keys = &mut merchant_keys[chosen];
            let id = pool_id(tag, MERCHANT_POOL_FIRST + chosen as u64, keys.len() as u64);
            keys.push(merchant_key(id));
            accounts.push(SeedAccount {
                id,
                owner: tag << TAG_SHIFT | 1 << (TAG_SHIFT - 1) | merchant,
                kind: AccountKind::Merchant,
                currency_index: chosen as u8,
            });
        }
        let mut pool_cumulative = Vec::with_capacity(pool_sizes.len());
        let mut sum = 0;
        for size in &pool_sizes {
            sum += size;
            pool_cumulative.push(sum);
        }
        Population {
            tag,
            accounts,
            pool_sizes,
            merchant_keys,
            pool_cumulative,
            pool_owners,
            fx_pairs,
            customers,
            merchants,
        }
    }

    /// What a gateway sends with a payment of the customer account at
    /// `index` of pool `pool`: the owner's one phone (a device id of its
    /// own), a fixed coarse location per owner in and around Shanghai, and
    /// country CN; so the risk rules have a device, a place and a country
    /// to judge, and a customer never looks like a new device or a traveller.
    pub fn risk_context(&self, pool: usize, index: u64) -> RiskContext {
        let owner = self
            .pool_owners
            .get(pool)
            .and_then(|owners| owners.get(index as usize))
            .copied()
            .unwrap_or(0);
        RiskContext {
            device: owner.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            latitude_centidegrees: 3_100 + (owner % 64) as i16,
            longitude_centidegrees: 12_120 + (owner / 64 % 64) as i16,
            country: *b"CN",
            step_up_verified: false,
        }
    }

    /// The customer account at `index` of pool `pool` (`index` below the
    /// pool's size).
    pub fn pool_account(&self, pool: usize, index: u64) -> AccountId {
        debug_assert!(index < self.pool_sizes[pool]);
        pool_id(self.tag, pool as u64, index)
    }

    /// The merchant account at `index` of currency `pool`'s merchants.
    pub fn merchant_account(&self, pool: usize, index: u64) -> AccountId {
        debug_assert!(index < self.merchant_keys[pool].len() as u64);
        pool_id(self.tag, MERCHANT_POOL_FIRST + pool as u64, index)
    }

    pub fn customer_accounts(&self) -> u64 {
        self.pool_cumulative.last().copied().unwrap_or(0)
    }

    /// A currency index, in proportion to its customer accounts.
    pub fn pick_pool(&self, rng: &mut Rng) -> usize {
        let pick = rng.below(self.customer_accounts().max(1));
        self.pool_cumulative
            .iter()
            .position(|&end| pick < end)
            .unwrap_or(0)
    }

    /// The commands that open an account.
    pub fn open_command(account: &SeedAccount, command_id: u128, mcc_pick: u64) -> Command {
        let (kyc_tier, mcc) = match account.kind {
            AccountKind::Customer => (1 + (mcc_pick % 2) as u8, 0),
            _ => (
                0,
                MERCHANT_MCCS[(mcc_pick % MERCHANT_MCCS.len() as u64) as usize],
            ),
        };
        Command::new(
            command_id,
            CommandKind::OpenAccount(OpenAccount {
                account: account.id,
                owner: account.owner,
                kind: account.kind,
                currency: CURRENCIES[account.currency_index as usize].currency,
                kyc_tier,
                mcc,
            }),
        )
    }

    /// The registration of a merchant's QR key.
    pub fn register_key(account: &SeedAccount, command_id: u128) -> Command {
        Command::new(
            command_id,
            CommandKind::RegisterMerchantKey {
                merchant: account.id,
                key: merchant_key(account.id),
            },
        )
    }

    /// The funding instrument of a customer account: a card in the
    /// account's currency, number `currency index + 1` of its owner.
    pub fn instrument_of(account: &SeedAccount) -> InstrumentId {
        InstrumentId {
            owner: account.owner,
            number: u32::from(account.currency_index) + 1,
        }
    }

    /// The card of the customer account at `index` of pool `pool`.
    pub fn instrument(&self, pool: usize, index: u64) -> InstrumentId {
        let owner = self
            .pool_owners
            .get(pool)
            .and_then(|owners| owners.get(index as usize))
            .copied()
            .unwrap_or(0);
        InstrumentId {
            owner,
            number: pool as u32 + 1,
        }
    }

    /// Binds a customer account's card (wallet mix seeding). The token
    /// spells the owner in letters, so it holds no run of digits that could
    /// look like a card number.
    pub fn bind_instrument(account: &SeedAccount, command_id: u128) -> Command {
        let spec = CURRENCIES[account.currency_index as usize];
        let letters: String = (0..16)
            .rev()
            .map(|nibble| char::from(b'a' + ((account.owner >> (nibble * 4)) & 0xF) as u8))
            .collect();
        let token = format!("lt{letters}{}", char::from(b'a' + account.currency_index));
        Command::new(
            command_id,
            CommandKind::BindInstrument(InstrumentBind {
                customer: account.id,
                number: Population::instrument_of(account).number,
                kind: InstrumentKind::Card,
                token: InstrumentToken::new(&token).unwrap_or_default(),
                bank: BankName::new("LOADTEST BANK").unwrap_or_default(),
                country: *b"CN",
                last_four: *b"4242",
                currency: spec.currency,
            }),
        )
    }

    /// The gateway's check of a customer account's card: passed.
    pub fn verify_instrument(account: &SeedAccount, command_id: u128) -> Command {
        Command::new(
            command_id,
            CommandKind::VerifyInstrument {
                instrument: Population::instrument_of(account),
                passed: true,
            },
        )
    }

    /// The opening top-up of a customer account.
    pub fn opening_deposit(account: &SeedAccount, command_id: u128) -> Command {
        let spec = CURRENCIES[account.currency_index as usize];
        Command::new(
            command_id,
            CommandKind::Deposit {
                account: account.id,
                amount: spec.typical_minor * OPENING_BALANCE_PAYMENTS,
                currency: spec.currency,
            },
        )
    }
}

/// The commands that set the run's FX rates and liquidity floors (one
/// command per rate, then one per currency).
pub fn fx_setup_kinds() -> Vec<CommandKind> {
    let mut kinds = Vec::with_capacity(FX_RATES.len() + CURRENCIES.len());
    let source = FxSource::new("LOADTEST").unwrap_or_default();
    for (base, quote, mantissa, scale) in FX_RATES {
        kinds.push(CommandKind::SetFxRate(FxRateSet {
            base: CURRENCIES[base].currency,
            quote: CURRENCIES[quote].currency,
            mid: FxMid { mantissa, scale },
            spread_bps: FX_SPREAD_BPS,
            valid_ms: FX_RATE_VALID_MS,
            source,
        }));
    }
    for spec in CURRENCIES {
        kinds.push(CommandKind::SetFxFloor {
            currency: spec.currency,
            limit: FX_FLOOR_MINOR,
        });
    }
    kinds
}

/// The key of the merchant's QR codes: the account id is its merchant id.
fn merchant_key(account: AccountId) -> MerchantKey {
    MerchantKey::new(MERCHANT_KEY_GUI, &format!("{:x}", account.0))
}

fn pool_id(tag: u64, pool: u64, index: u64) -> AccountId {
    debug_assert!(pool < 16 && index < 1 << POOL_SHIFT);
    AccountId(tag << TAG_SHIFT | pool << POOL_SHIFT | index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customers_hold_distinct_currencies() {
        let population = Population::build(5, 1_000, false, 50, 1);
        assert_eq!(
            population.accounts.len() as u64,
            population.customer_accounts() + 50
        );
        assert!(population.customer_accounts() >= 1_000);
        assert!(population.customer_accounts() <= 3_000);
        let mut by_owner = std::collections::HashMap::<u64, Vec<u8>>::new();
        for account in &population.accounts {
            assert!(!account.id.is_house());
            by_owner
                .entry(account.owner)
                .or_default()
                .push(account.currency_index);
        }
        for currencies in by_owner.values() {
            let mut sorted = currencies.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), currencies.len());
        }
        for (pool, &size) in population.pool_sizes.iter().enumerate() {
            assert!(size > 0);
            let last = population.pool_account(pool, size - 1);
            let account = population
                .accounts
                .iter()
                .find(|account| account.id == last);
            assert_eq!(
                account.map(|account| account.currency_index as usize),
                Some(pool)
            );
        }
        let merchants: usize = population.merchant_keys.iter().map(Vec::len).sum();
        assert_eq!(merchants, 50);
        for (pool, keys) in population.merchant_keys.iter().enumerate() {
            for (index, key) in keys.iter().enumerate() {
                let id = population.merchant_account(pool, index as u64);
                let account = population.accounts.iter().find(|account| account.id == id);
                let account = account.unwrap();
                assert_eq!(account.kind, AccountKind::Merchant);
                assert_eq!(account.currency_index as usize, pool);
                assert_eq!(*key, merchant_key(id));
            }
        }
        // FX pairs: two accounts of one owner in two currencies, one pair per
        // customer holding more than one; their rates cover every pair.
        assert!(!population.fx_pairs.is_empty());
        let owners: std::collections::HashSet<u64> = population
            .fx_pairs
            .iter()
            .map(|pair| {
                let a = population.pool_account(pair.pool_a as usize, u64::from(pair.index_a));
                let b = population.pool_account(pair.pool_b as usize, u64::from(pair.index_b));
                let owner = |id| {
                    population
                        .accounts
                        .iter()
                        .find(|account| account.id == id)
                        .map(|account| (account.owner, account.currency_index))
                };
                let (owner_a, currency_a) = owner(a).unwrap();
                let (owner_b, currency_b) = owner(b).unwrap();
                assert_eq!(owner_a, owner_b);
                assert_ne!(currency_a, currency_b);
                let (low, high) = (currency_a.min(currency_b), currency_a.max(currency_b));
                assert!(FX_RATES.iter().any(|(base, quote, _, _)| {
                    (*base).min(*quote) == low as usize && (*base).max(*quote) == high as usize
                }));
                owner_a
            })
            .collect();
        assert_eq!(owners.len(), population.fx_pairs.len());
        let multi = by_owner.values().filter(|held| held.len() > 1).count();
        assert_eq!(population.fx_pairs.len(), multi);
        assert_eq!(fx_setup_kinds().len(), FX_RATES.len() + CURRENCIES.len());
        let ids: std::collections::HashSet<_> = population
            .accounts
            .iter()
            .map(|account| account.id)
            .collect();
        assert_eq!(ids.len(), population.accounts.len());
    }

    #[test]
    fn one_account_each_and_the_largest_tag() {
        let population = Population::build(TAG_MAX, 100, true, 0, 1);
        assert_eq!(population.accounts.len(), 100);
        assert!(population.fx_pairs.is_empty());
        assert!(population.merchant_keys.iter().all(Vec::is_empty));
        assert!(population
            .accounts
            .iter()
            .all(|account| !account.id.is_house()));
    }
}
