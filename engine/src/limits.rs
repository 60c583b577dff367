//! Every bound the engine enforces, in one place.
//!
//! Input that exceeds a limit is refused at the edge (api) or with a precise
//! status (ledger); nothing grows without bound. The compile-time checks at
//! the bottom keep the limits consistent with one another.

/// Most commands in one batch (one request frame, one log record).
pub const BATCH_COMMANDS_MAX: usize = 8_190;

/// Most accounts one ledger holds, house accounts included.
pub const ACCOUNTS_MAX: usize = 64 * 1024 * 1024;

/// Most withdrawal holds pending at once on one account.
pub const ACCOUNT_HOLDS_PENDING_MAX: u16 = 64;

/// Shortest and longest hold timeout a withdrawal may ask for.
pub const HOLD_TIMEOUT_MS_MIN: u64 = 1_000;
pub const HOLD_TIMEOUT_MS_MAX: u64 = 30 * 24 * 3_600 * 1_000;

/// Idempotency records are kept for at least this long in command time ...
pub const IDEMPOTENCY_WINDOW_NS_DEFAULT: u64 = 24 * 3_600 * 1_000_000_000;
/// ... unless there are more than this many, when the oldest go first.
pub const IDEMPOTENCY_RECORDS_MAX_DEFAULT: usize = 32 * 1024 * 1024;

/// Live user-presented payment codes per customer.
pub const CUSTOMER_PAYMENT_CODES_LIVE_MAX: u8 = 5;
/// Payment code lifetimes a gateway may ask for (command time).
pub const PAYMENT_CODE_LIFETIME_MS_MIN: u64 = 5_000;
pub const PAYMENT_CODE_LIFETIME_MS_MAX: u64 = 600_000;
pub const PAYMENT_CODE_LIFETIME_MS_DEFAULT: u64 = 60_000;
/// Payment codes are 18 decimal digits.
pub const PAYMENT_CODE_MIN: u64 = 100_000_000_000_000_000;
pub const PAYMENT_CODE_MAX: u64 = 999_999_999_999_999_999;
/// An expired or used code is remembered this long after its expiry, so a
/// late charge gets `payment_code_expired`/`payment_code_used`, not `unknown`.
pub const PAYMENT_CODE_MEMORY_NS: u64 = 600 * 1_000_000_000;

/// Highest KYC tier a customer can have (0 = unverified).
pub const KYC_TIER_MAX: u8 = 3;

/// Merchant category codes (ISO 18245) are four decimal digits.
pub const MCC_MAX: u16 = 9_999;

/// Largest amount in one command, in minor units: balances are `i64`, so one
/// amount must fit in it.
pub const AMOUNT_MAX: u64 = i64::MAX as u64;

/// Most currency pairs in the FX rate table.
pub const FX_RATES_MAX: usize = 256;
/// Most decimal places of an FX mid rate.
pub const FX_RATE_SCALE_MAX: u8 = 18;
/// Highest spread a rate may carry, in basis points (10%).
pub const FX_SPREAD_BPS_MAX: u16 = 1_000;
/// Shortest and longest validity of an FX rate (command time).
pub const FX_RATE_VALID_MS_MIN: u64 = 1_000;
pub const FX_RATE_VALID_MS_MAX: u64 = 7 * 24 * 3_600 * 1_000;
/// Shortest and longest lifetime of an FX quote (command time).
pub const FX_QUOTE_TTL_MS_MIN: u64 = 1_000;
pub const FX_QUOTE_TTL_MS_MAX: u64 = 300_000;
/// Open (unexpired, unconverted) quotes per paying account ...
pub const FX_QUOTES_OPEN_PER_ACCOUNT_MAX: u8 = 8;
/// ... and quotes remembered in all (open, or finished in the last
/// `FX_QUOTE_MEMORY_NS`).
pub const FX_QUOTES_MAX: usize = 1 << 20;
/// A used or expired quote is remembered this long after its expiry, so a
/// late convert gets `fx_quote_expired`/`fx_quote_used`, not `not_found`.
pub const FX_QUOTE_MEMORY_NS: u64 = 600 * 1_000_000_000;

/// Funding instruments one customer may have bound at once (default of
/// `engine.customer_instruments_max`) ...
pub const CUSTOMER_INSTRUMENTS_MAX_DEFAULT: u8 = 8;
/// ... and the most the configuration may allow.
pub const CUSTOMER_INSTRUMENTS_MAX_LIMIT: u8 = 64;
/// Instruments one ledger (one shard) holds at most, unbound ones it still
/// remembers included (default of `engine.instruments_max`).
pub const INSTRUMENTS_MAX_DEFAULT: usize = 1 << 22;

const _: () = assert!(CUSTOMER_INSTRUMENTS_MAX_DEFAULT <= CUSTOMER_INSTRUMENTS_MAX_LIMIT);
const _: () = assert!(FX_SPREAD_BPS_MAX < 10_000, "a spread below 100%");
const _: () = assert!(FX_QUOTE_TTL_MS_MIN <= FX_QUOTE_TTL_MS_MAX);
const _: () = assert!(FX_RATE_VALID_MS_MIN <= FX_RATE_VALID_MS_MAX);
const _: () = assert!(BATCH_COMMANDS_MAX <= u16::MAX as usize);
const _: () = assert!(ACCOUNTS_MAX <= u32::MAX as usize, "slots are u32");
const _: () = assert!(HOLD_TIMEOUT_MS_MIN < HOLD_TIMEOUT_MS_MAX);
const _: () = assert!(
    (HOLD_TIMEOUT_MS_MAX as u128) * 1_000_000 < u64::MAX as u128,
    "a hold's expiry in ns fits in u64 for any timestamp before 2500"
);
const _: () = assert!(IDEMPOTENCY_RECORDS_MAX_DEFAULT >= BATCH_COMMANDS_MAX);

/// Most shards (state-machine threads) one engine runs.
pub const SHARDS_MAX: usize = 64;
/// Threads of the engine's own that need a core beside the shards (the
/// router, the sequencer); the default shard count is the cores left.
pub const ENGINE_THREADS_BESIDE_SHARDS: usize = 2;
/// Segments queued for one shard before the router waits.
pub const SHARD_QUEUE_DEPTH: usize = 64;

const _: () = assert!(SHARDS_MAX <= u16::MAX as usize);

/// Most intake lanes (one per gateway, plus the engine's own) an engine
/// keeps (engine/src/intake.rs).
pub const LANES_MAX: usize = 1_024;
/// Largest share of one lane.
pub const LANE_SHARE_MAX: u32 = 1_000;
/// Commands a lane of share 1 may send per turn of the sequencer's deficit
/// round robin (a larger request goes once the lane saved enough turns).
/// Small, so that another lane's turn comes after at most about this much
/// (or one request) of a busy lane's work.
pub const LANE_QUANTUM_COMMANDS: u64 = 1_024;
