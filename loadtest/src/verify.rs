//! End-of-run checks, through the protocol only.
//!
//! 1. **Money is conserved per currency.** The harness knows every account it
//!    opened; it reads their balances and the house settlement, FX liquidity
//!    and FX revenue accounts of each currency before seeding and after the
//!    run. Top-ups and withdrawals move money between the run's accounts and
//!    the settlement account, conversions (and cross-currency payments and
//!    their refunds) between the run's accounts and the FX accounts, and
//!    everything else between the run's accounts, so per currency:
//!    `sum(run balances) + settlement change + FX accounts' change == 0` and
//!    `sum(run debits pending) == settlement credits pending after - before`.
//!    With an embedded server the settlement accounts start empty and this
//!    is the whole ledger. With `--addr` it is the delta this run caused,
//!    which holds as long as nothing else moves money in these currencies
//!    during the run (another client doing top-ups would show up here).
//! 2. **Every acknowledged command is known with its result.** A uniform
//!    sample (all of them when there are at most `--verify-max`) is looked
//!    up with `Query::Command`, batched; each must answer the very status
//!    the harness was given. The server keeps idempotency records for a
//!    bounded number of commands; a sampled command older than that may have
//!    been forgotten, and an `unknown_command` answer for it is counted as
//!    "past retention", not as a failure.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{bail, Context};
use payrail_api::client::Client;
use payrail_engine::{AccountId, CommandId, HouseRole, Query, QueryReply, Status};
use tokio::task::JoinSet;

use crate::population::{Population, CURRENCIES};
use crate::stats::Acknowledged;

/// The house accounts of one currency a run moves money with.
#[derive(Clone, Copy, Debug, Default)]
pub struct House {
    /// The settlement account's balance and pending credits.
    pub settlement: (i64, u64),
    /// FX liquidity plus FX revenue (the house side of conversions).
    pub fx: i64,
}

/// The house accounts of every currency of the run.
pub type Settlement = [House; CURRENCIES.len()];

const HOUSE_ROLES: [HouseRole; 3] = [
    HouseRole::Settlement,
    HouseRole::FxLiquidity,
    HouseRole::FxRevenue,
];

/// Reads the settlement, FX liquidity and FX revenue accounts of every
/// currency (zero for those not opened yet; a balance query of a house
/// account answers the sum of its shard parts).
pub async fn settlement(client: &Client) -> anyhow::Result<Settlement> {
    let queries: Vec<Query> = CURRENCIES
        .iter()
        .flat_map(|spec| {
            HOUSE_ROLES.map(|role| Query::Balance {
                account: AccountId::house(role, spec.currency),
            })
        })
        .collect();
    let replies = client
        .query(queries)
        .await
        .context("reading the house accounts failed")?;
    let mut out = [House::default(); CURRENCIES.len()];
    for (index, reply) in replies.into_iter().enumerate() {
        let house = &mut out[index / HOUSE_ROLES.len()];
        let role = HOUSE_ROLES[index % HOUSE_ROLES.len()];
        match reply {
            QueryReply::Balance(view) => match role {
                HouseRole::Settlement => house.settlement = (view.balance, view.credits_pending),
                _ => house.fx += view.balance,
            },
            QueryReply::Refused(Status::UnknownAccount) => {}
            other => bail!("unexpected reply for a house account: {other:?}"),
        }
    }
    Ok(out)
}

/// Conservation in one currency.
#[derive(Clone, Copy, Debug, Default)]
pub struct CurrencyCheck {
    pub code: &'static str,
    /// Sum of the run's account balances.
    pub accounts_balance: i128,
    pub accounts_debits_pending: u128,
    pub settlement_balance_delta: i128,
    pub settlement_credits_pending_delta: i128,
    /// Change of FX liquidity plus FX revenue.
    pub fx_balance_delta: i128,
}

impl CurrencyCheck {
    pub fn imbalance(&self) -> i128 {
        self.accounts_balance + self.settlement_balance_delta + self.fx_balance_delta
    }

    pub fn ok(&self) -> bool {
        self.imbalance() == 0
            && self.accounts_debits_pending as i128 == self.settlement_credits_pending_delta
    }
}

#[derive(Clone, Debug, Default)]
pub struct Conservation {
    pub currencies: Vec<CurrencyCheck>,
    /// Accounts the server did not know (each is a failure).
    pub accounts_missing: u64,
    pub accounts_read: u64,
}

impl Conservation {
    pub fn ok(&self) -> bool {
        self.accounts_missing == 0 && self.currencies.iter().all(CurrencyCheck::ok)
    }
}

/// Reads every account of the run and the settlement accounts, over all
/// connections, in batches of at most `batch` queries.
pub async fn conservation(
    clients: &[Client],
    population: &Arc<Population>,
    before: &Settlement,
    batch: usize,
) -> anyhow::Result<Conservation> {
    let accounts = population.accounts.len();
    let chunks = accounts.div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for client in clients {
        let client = client.clone();
        let next = Arc::clone(&next);
        let population = Arc::clone(population);
        tasks.spawn(async move {
            let mut balance = [0i128; CURRENCIES.len()];
            let mut pending = [0u128; CURRENCIES.len()];
            let mut missing = 0u64;
            loop {
                let chunk = next.fetch_add(1, Ordering::Relaxed);
                if chunk >= chunks {
                    break;
                }
                let range = chunk * batch..((chunk + 1) * batch).min(accounts);
                let seeds = &population.accounts[range];
                let queries = seeds
                    .iter()
                    .map(|account| Query::Balance {
                        account: account.id,
                    })
                    .collect();
                let replies = client
                    .query(queries)
                    .await
                    .context("reading balances failed")?;
                for (seed, reply) in seeds.iter().zip(replies) {
                    match reply {
                        QueryReply::Balance(view) => {
                            let index = seed.currency_index as usize;
                            if view.currency != CURRENCIES[index].currency {
                                bail!(
                                    "account {} is in {} on the server, {} in the run",
                                    seed.id.0,
                                    view.currency,
                                    CURRENCIES[index].currency
                                );
                            }
                            balance[index] += i128::from(view.balance);
                            pending[index] += u128::from(view.debits_pending);
                        }
                        _ => missing += 1,
                    }
                }
            }
            Ok::<_, anyhow::Error>((balance, pending, missing))
        });
    }
    let mut balance = [0i128; CURRENCIES.len()];
    let mut pending = [0u128; CURRENCIES.len()];
    let mut missing = 0;
    while let Some(outcome) = tasks.join_next().await {
        let (part_balance, part_pending, part_missing) =
            outcome.context("a balance-reading task failed")??;
        for index in 0..CURRENCIES.len() {
            balance[index] += part_balance[index];
            pending[index] += part_pending[index];
        }
        missing += part_missing;
    }
    let Some(first) = clients.first() else {
        bail!("no connection");
    };
    let after = settlement(first).await?;
    let currencies = CURRENCIES
        .iter()
        .enumerate()
        .map(|(index, spec)| CurrencyCheck {
            code: spec.currency.code(),
            accounts_balance: balance[index],
            accounts_debits_pending: pending[index],
            settlement_balance_delta: i128::from(after[index].settlement.0)
                - i128::from(before[index].settlement.0),
            settlement_credits_pending_delta: i128::from(after[index].settlement.1)
                - i128::from(before[index].settlement.1),
            fx_balance_delta: i128::from(after[index].fx) - i128::from(before[index].fx),
        })
        .collect();
    Ok(Conservation {
        currencies,
        accounts_missing: missing,
        accounts_read: accounts as u64,
    })
}

/// What the look-up of acknowledged commands found.
#[derive(Clone, Debug, Default)]
pub struct Acknowledgements {
    /// Commands acknowledged during the load (warm-up and drain included).
    pub acknowledged: u64,
    /// How many of them were looked up.
    pub checked: u64,
    pub found: u64,
    /// Known with a different status than the one acknowledged.
    pub mismatched: u64,
    /// Unknown although recent enough to be remembered.
    pub missing: u64,
    /// Unknown, and old enough that the server may have dropped its record.
    pub past_retention: u64,
    /// The first few problems, as sentences.
    pub problems: Vec<String>,
}

impl Acknowledgements {
    pub fn ok(&self) -> bool {
        self.mismatched == 0 && self.missing == 0
    }

    pub fn sampled(&self) -> bool {
        self.checked < self.acknowledged
    }

    /// Adds another look-up's findings (a generator process's) to these.
    pub fn merge(&mut self, other: &Acknowledgements) {
        self.acknowledged += other.acknowledged;
        self.checked += other.checked;
        self.found += other.found;
        self.mismatched += other.mismatched;
        self.missing += other.missing;
        self.past_retention += other.past_retention;
        for problem in &other.problems {
            if self.problems.len() < PROBLEMS_SHOWN_MAX {
                self.problems.push(problem.clone());
            }
        }
    }
}

const PROBLEMS_SHOWN_MAX: usize = 5;

/// Looks up every sampled command. `retention_safe_after`: an ordinal below
/// it may be past the server's idempotency retention.
pub async fn acknowledgements(
    clients: &[Client],
    sample: Vec<Acknowledged>,
    acknowledged: u64,
    retention_safe_after: u64,
    batch: usize,
) -> anyhow::Result<Acknowledgements> {
    let sample = Arc::new(sample);
    let chunks = sample.len().div_ceil(batch);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for client in clients {
        let client = client.clone();
        let next = Arc::clone(&next);
        let sample = Arc::clone(&sample);
        tasks.spawn(async move {
            let mut part = Acknowledgements::default();
            loop {
                let chunk = next.fetch_add(1, Ordering::Relaxed);
                if chunk >= chunks {
                    break;
                }
                let items = &sample[chunk * batch..((chunk + 1) * batch).min(sample.len())];
                let queries = items
                    .iter()
                    .map(|item| Query::Command {
                        id: CommandId(item.id),
                    })
                    .collect();
                let replies = client
                    .query(queries)
                    .await
                    .context("looking up acknowledged commands failed")?;
                for (item, reply) in items.iter().zip(replies) {
                    part.checked += 1;
                    match reply {
                        QueryReply::Command(status) if status == item.status => part.found += 1,
                        QueryReply::Command(status) => {
                            part.mismatched += 1;
                            if part.problems.len() < PROBLEMS_SHOWN_MAX {
                                part.problems.push(format!(
                                    "command {:#x} was acknowledged as {} but the server now says {}",
                                    item.id,
                                    item.status.name(),
                                    status.name()
                                ));
                            }
                        }
                        QueryReply::Refused(Status::UnknownCommand)
                            if item.ordinal < retention_safe_after =>
                        {
                            part.past_retention += 1
                        }
                        other => {
                            part.missing += 1;
                            if part.problems.len() < PROBLEMS_SHOWN_MAX {
                                part.problems.push(format!(
                                    "command {:#x} was acknowledged as {} but the server answers {:?}",
                                    item.id,
                                    item.status.name(),
                                    other
                                ));
                            }
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>(part)
        });
    }
    let mut total = Acknowledgements {
        acknowledged,
        ..Acknowledgements::default()
    };
    while let Some(outcome) = tasks.join_next().await {
        let part = outcome.context("a look-up task failed")??;
        total.checked += part.checked;
        total.found += part.found;
        total.mismatched += part.mismatched;
        total.missing += part.missing;
        total.past_retention += part.past_retention;
        for problem in part.problems {
            if total.problems.len() < PROBLEMS_SHOWN_MAX {
                total.problems.push(problem);
            }
        }
    }
    Ok(total)
}
