//! payrail-engine: the ledger behind a QR-code mobile wallet.
//!
//! # Layout
//! - [`limits`]: every bound, in one place.
//! - [`currency`]: ISO 4217 currencies and their minor units.
//! - [`status`]: the flat, stable result-status enum.
//! - [`command`]: commands, queries and their results.
//! - [`ledger`]: the deterministic single-threaded state machine.
//! - [`shard`]: N ledgers on N threads behind a router, deciding as one.
//! - [`fx`]: FX rates, quotes, conversions and cross-currency payments.
//! - [`instrument`]: funding instruments (bank cards, bank accounts) and the card-number check.
//! - [`history`]: per-account movements the ledger emits, and their keys.
//! - [`digest`]: the buffered BLAKE3 hasher behind `Ledger::digest`.
//! - [`pipeline`]: sequencer, log, executor, history writer, checkpoints.
//! - [`storage`]: the durable log, checkpoints, history segment files, recovery.

pub mod budget;
#[cfg(target_os = "linux")]
mod checkpoint_process;
pub mod command;
pub mod currency;
pub mod digest;
pub mod fx;
mod growing_map;
pub mod history;
mod history_writer;
pub mod instrument;
mod intake;
pub mod ledger;
pub mod limits;
pub mod pipeline;
mod prefetch;
mod record_ring;
pub mod risk;
pub mod shard;
pub mod status;
pub mod storage;

pub use command::{
    AccountId, AccountKind, AccountStatus, AccountView, BudgetDetail, Command, CommandId,
    CommandKind, CommandResult, Detail, FxAmounts, FxMid, FxOrder, FxRateSet, FxRateView, FxSide,
    FxSource, HouseRole, InstrumentBind, InstrumentId, MerchantKey, OpenAccount, Query, QueryReply,
    RiskContext, RiskDetail,
};
pub use currency::Currency;
pub use ledger::{Account, Ledger, LedgerConfig};
pub use prefetch::hold_allocator_memory;
pub use status::Status;
