//! The sharded benches' workload: 100,000 customers and 1,000 merchants
//! split over two shards by `shard_of_owner`, and a mix of two-party
//! commands of which `CROSS_PERCENT` have their accounts on two shards (when
//! there are two): the payment mix (80% QR payments to merchants picked by a
//! Zipf law, s = 1, 20% P2P transfers) or transfers only.

use payrail_engine::command::{MerchantKey, QR_MERCHANT_KEYS_MAX};
use payrail_engine::shard::shard_of_owner;
use payrail_engine::{
    AccountId, AccountKind, Command, CommandKind, Currency, OpenAccount, RiskContext,
};

pub const CUSTOMERS: u64 = 100_000;
pub const MERCHANTS: u64 = 1_000;
pub const MERCHANT_FIRST: u64 = 10_000_000;
/// Share of commands whose two accounts are on two shards (of two).
pub const CROSS_PERCENT: u64 = 30;

pub fn key(merchant: u64) -> MerchantKey {
    MerchantKey::new("com.example.pay", &format!("M{merchant}"))
}

/// Opening, funding and key registration, in batches.
pub fn setup() -> Vec<Vec<Command>> {
    let mut id = 1u128 << 100;
    let mut next = || {
        id += 1;
        id
    };
    let mut batches = Vec::new();
    let mut batch = Vec::new();
    let flush = |batch: &mut Vec<Command>, batches: &mut Vec<Vec<Command>>| {
        if batch.len() >= 8_000 {
            batches.push(std::mem::take(batch));
        }
    };
    for customer in 0..CUSTOMERS {
        batch.push(Command::new(
            next(),
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(customer),
                owner: customer,
                kind: AccountKind::Customer,
                currency: Currency::CNY,
                kyc_tier: 1,
                mcc: 0,
            }),
        ));
        batch.push(Command::new(
            next(),
            CommandKind::Deposit {
                account: AccountId(customer),
                amount: 1 << 40,
                currency: Currency::CNY,
            },
        ));
        flush(&mut batch, &mut batches);
    }
    for merchant in 0..MERCHANTS {
        let account = AccountId(MERCHANT_FIRST + merchant);
        batch.push(Command::new(
            next(),
            CommandKind::OpenAccount(OpenAccount {
                account,
                owner: MERCHANT_FIRST + merchant,
                kind: AccountKind::Merchant,
                currency: Currency::CNY,
                kyc_tier: 0,
                mcc: 5411,
            }),
        ));
        batch.push(Command::new(
            next(),
            CommandKind::RegisterMerchantKey {
                merchant: account,
                key: key(merchant),
            },
        ));
        flush(&mut batch, &mut batches);
    }
    batches.push(batch);
    batches
}

/// The payment mix (or transfers only). Accounts are picked by the 2-shard partition so that
/// exactly CROSS_PERCENT of the commands cross shards when there are two.
#[derive(Debug)]
pub struct Mix {
    next_id: u128,
    state: u64,
    /// Customers by their shard (of two).
    customers: [Vec<u64>; 2],
    /// Zipf(1) cumulative weights over merchants.
    zipf: Vec<f64>,
    /// Percent of commands that are QR payments (the rest: transfers).
    payments_percent: u64,
}

impl Mix {
    pub fn new() -> Mix {
        Mix::with_payments(true)
    }

    /// The payment mix, or (`payments` false) transfers only.
    pub fn with_payments(payments: bool) -> Mix {
        let mut customers = [Vec::new(), Vec::new()];
        for customer in 0..CUSTOMERS {
            customers[shard_of_owner(customer, 2)].push(customer);
        }
        let mut zipf = Vec::with_capacity(MERCHANTS as usize);
        let mut sum = 0.0;
        for rank in 1..=MERCHANTS {
            sum += 1.0 / rank as f64;
            zipf.push(sum);
        }
        for weight in &mut zipf {
            *weight /= sum;
        }
        Mix {
            next_id: 1,
            state: 0x9E37_79B9_7F4A_7C15,
            customers,
            zipf,
            payments_percent: if payments { 80 } else { 0 },
        }
    }

    fn random(&mut self) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state
    }

    fn customer_on(&mut self, shard: usize) -> u64 {
        let pick = self.random() as usize % self.customers[shard].len();
        self.customers[shard][pick]
    }

    pub fn command(&mut self) -> Command {
        self.next_id += 1;
        let cross = self.random() % 100 < CROSS_PERCENT;
        let kind = if self.random() % 100 < self.payments_percent {
            let u = (self.random() >> 11) as f64 / (1u64 << 53) as f64;
            let merchant = self.zipf.partition_point(|&weight| weight < u) as u64;
            let merchant = merchant.min(MERCHANTS - 1);
            let merchant_shard = shard_of_owner(MERCHANT_FIRST + merchant, 2);
            let payer = self.customer_on(merchant_shard ^ usize::from(cross));
            let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
            keys[0] = key(merchant);
            CommandKind::PayMerchantQr {
                payer: AccountId(payer),
                keys,
                amount: 1 + self.random() % 5_000,
                fee: 0,
                currency: Currency::CNY,
                mcc: 0,
                context: RiskContext::NONE,
            }
        } else {
            let from_shard = (self.random() % 2) as usize;
            let from = self.customer_on(from_shard);
            let mut to = self.customer_on(from_shard ^ usize::from(cross));
            if to == from {
                to = self.customer_on(from_shard ^ usize::from(cross));
            }
            CommandKind::Transfer {
                from: AccountId(from),
                to: AccountId(to),
                amount: 1 + self.random() % 1_000,
                currency: Currency::CNY,
                context: RiskContext::NONE,
            }
        };
        Command::new(self.next_id, kind)
    }

    pub fn batch(&mut self, size: usize) -> Vec<Command> {
        (0..size).map(|_| self.command()).collect()
    }
}

impl Default for Mix {
    fn default() -> Mix {
        Mix::new()
    }
}
