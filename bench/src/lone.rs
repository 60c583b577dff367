//! A lone ledger with 100,000 funded customers and 1,000 merchants with a
//! registered QR key, for the benches that apply batches to it directly
//! (`kinds`, `growth`): one thread, no I/O.

use std::time::{Duration, Instant};

use payrail_engine::command::QR_MERCHANT_KEYS_MAX;
use payrail_engine::{
    limits, AccountId, AccountKind, Command, CommandId, CommandKind, CommandResult, Currency,
    Ledger, LedgerConfig, MerchantKey, OpenAccount, RiskContext, Status,
};

pub const BATCH: usize = limits::BATCH_COMMANDS_MAX;
pub const CUSTOMERS: u64 = 100_000;
pub const MERCHANTS: u64 = 1_000;
pub const MERCHANT_FIRST: u64 = 10_000_000;
pub const CURRENCY: Currency = Currency::CNY;
const T0: u64 = 1_700_000_000_000_000_000;
/// Each customer's deposit: enough for every bench's payments.
const FUNDS: u64 = 1 << 40;

pub fn key(merchant: u64) -> MerchantKey {
    MerchantKey::new("bench.payrail", &merchant.to_string())
}

/// CPU time this thread has run, in ns (`CLOCK_THREAD_CPUTIME_ID`): on a
/// machine shared with other work it leaves out the time the thread waited
/// for a core, which the wall clock counts. 0 if the clock cannot be read.
pub fn thread_cpu_ns() -> u64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // Safety: `time` is a valid, writable timespec for the call's duration.
    #[allow(unsafe_code)]
    let failed = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) } != 0;
    if failed {
        return 0;
    }
    (time.tv_sec as u64) * 1_000_000_000 + time.tv_nsec as u64
}

/// CPU time this thread has run so far, in user mode and in the kernel
/// (`getrusage(RUSAGE_THREAD)`, microseconds): the kernel's share is page
/// faults and, on a machine short of free memory, the reclaim they cause.
/// Zero if it cannot be read.
pub fn thread_user_system() -> (Duration, Duration) {
    // Safety: an all-zero rusage is a valid value of the plain C struct.
    #[allow(unsafe_code)]
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // Safety: `usage` is a valid, writable rusage for the call's duration.
    #[allow(unsafe_code)]
    let failed = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) } != 0;
    if failed {
        return (Duration::ZERO, Duration::ZERO);
    }
    let micros = |time: libc::timeval| {
        Duration::from_micros(time.tv_sec as u64 * 1_000_000 + time.tv_usec as u64)
    };
    (micros(usage.ru_utime), micros(usage.ru_stime))
}

/// What one [`LoneWorld::apply`] did: the commands' ids and the time
/// `Ledger::apply` took, by the wall clock and by this thread's CPU time in
/// user mode and in the kernel.
#[derive(Debug)]
pub struct Applied {
    pub ids: Vec<CommandId>,
    pub wall: Duration,
    pub user: Duration,
    pub system: Duration,
}

/// See the module documentation.
#[derive(Debug)]
pub struct LoneWorld {
    pub ledger: Ledger,
    sequence: u64,
    timestamp: u64,
    next_id: u128,
    state: u64,
    results: Vec<CommandResult>,
}

impl LoneWorld {
    /// A ledger made with `config`, with the customers opened and funded
    /// and the merchants opened with their keys registered.
    pub fn new(config: LedgerConfig) -> LoneWorld {
        let mut world = LoneWorld {
            ledger: Ledger::new(config),
            sequence: 0,
            timestamp: T0,
            next_id: 1,
            state: 0x9E37_79B9_7F4A_7C15,
            results: Vec::with_capacity(BATCH),
        };
        let open = |account: u64, kind, mcc| {
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(account),
                owner: account,
                kind,
                currency: CURRENCY,
                kyc_tier: 0,
                mcc,
            })
        };
        let customers: Vec<u64> = (1..=CUSTOMERS).collect();
        for chunk in customers.chunks(BATCH) {
            world.apply(
                chunk
                    .iter()
                    .map(|&c| open(c, AccountKind::Customer, 0))
                    .collect(),
            );
            world.apply(
                chunk
                    .iter()
                    .map(|&c| CommandKind::Deposit {
                        account: AccountId(c),
                        amount: FUNDS,
                        currency: CURRENCY,
                    })
                    .collect(),
            );
        }
        let merchants: Vec<u64> = (MERCHANT_FIRST..MERCHANT_FIRST + MERCHANTS).collect();
        world.apply(
            merchants
                .iter()
                .map(|&m| open(m, AccountKind::Merchant, 5812))
                .collect(),
        );
        world.apply(
            merchants
                .iter()
                .map(|&m| CommandKind::RegisterMerchantKey {
                    merchant: AccountId(m),
                    key: key(m),
                })
                .collect(),
        );
        world
    }

    pub fn random(&mut self, below: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % below
    }

    pub fn customer(&mut self) -> u64 {
        1 + self.random(CUSTOMERS)
    }

    pub fn merchant(&mut self) -> u64 {
        MERCHANT_FIRST + self.random(MERCHANTS)
    }

    /// A merchant-presented QR payment of a random customer to a random
    /// merchant.
    pub fn pay_merchant_qr(&mut self, mcc: u16) -> CommandKind {
        let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
        keys[0] = key(self.merchant());
        CommandKind::PayMerchantQr {
            payer: AccountId(self.customer()),
            keys,
            amount: 1 + self.random(1_000),
            fee: 0,
            currency: CURRENCY,
            mcc,
            context: RiskContext::NONE,
        }
    }

    /// 8,190 distinct customers (a customer may hold at most 64 holds and 5 codes).
    pub fn distinct_customers(&mut self) -> Vec<u64> {
        let start = self.random(CUSTOMERS);
        (0..BATCH as u64)
            .map(|n| 1 + (start + n * 7) % CUSTOMERS)
            .collect()
    }

    /// Applies one batch with fresh ids, each of which must be `ok`.
    pub fn apply(&mut self, kinds: Vec<CommandKind>) -> Applied {
        let batch: Vec<Command> = kinds
            .into_iter()
            .map(|kind| {
                self.next_id += 1;
                Command::new(self.next_id, kind)
            })
            .collect();
        self.sequence += 1;
        self.timestamp += 1_000_000;
        self.results.clear();
        let (user, system) = thread_user_system();
        let started = Instant::now();
        self.ledger
            .apply(self.sequence, self.timestamp, &batch, &mut self.results);
        let wall = started.elapsed();
        let (user_after, system_after) = thread_user_system();
        for (command, result) in batch.iter().zip(&self.results) {
            assert_eq!(result.status, Status::Ok, "{command:?}");
        }
        Applied {
            ids: batch.iter().map(|command| command.id).collect(),
            wall,
            user: user_after.saturating_sub(user),
            system: system_after.saturating_sub(system),
        }
    }
}
