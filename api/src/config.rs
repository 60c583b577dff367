//! Server configuration: a TOML file whose every field has a default, and the
//! gateway secrets.
//!
//! With no gateway in the config, the server uses a local gateway whose
//! secret it creates in the data directory on first start
//! (`gateway.toml`, mode 0600); the CLI and the load test on the same machine
//! read it from there.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use payrail_engine::limits::{BATCH_COMMANDS_MAX, LANES_MAX, LANE_SHARE_MAX, SHARDS_MAX};
use payrail_engine::pipeline::EngineConfig;
use payrail_engine::storage::HistoryConfig;
use payrail_engine::LedgerConfig;
use serde::{Deserialize, Serialize};

use crate::wire::{WireLimits, FRAME_BYTES_MAX_DEFAULT};

/// The name of the gateway file in a data directory.
pub const LOCAL_GATEWAY_FILE: &str = "gateway.toml";
/// The name the local gateway uses.
pub const LOCAL_GATEWAY_NAME: &str = "local";
/// Longest gateway name.
pub const GATEWAY_NAME_BYTES_MAX: usize = 64;

/// Errors reading or writing configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// What a gateway may do besides reading (docs/operations.md, "Roles").
/// Queries, history, `tx show` and `Status` need no role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Accounts and money movements: open accounts, deposit, transfer,
    /// withdraw, pay and charge codes, refund, budgets, FX quotes and
    /// conversions, QR payments.
    Payments,
    /// FX rates and liquidity floors.
    Treasury,
    /// The risk policy.
    Risk,
    /// Backups and account administration: freeze, unfreeze, close, KYC
    /// tiers, merchant keys.
    Operator,
}

impl Role {
    /// Every role: what the local gateway has.
    pub const ALL: [Role; 4] = [Role::Payments, Role::Treasury, Role::Risk, Role::Operator];

    /// The name used in the config, logs and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Role::Payments => "payments",
            Role::Treasury => "treasury",
            Role::Risk => "risk",
            Role::Operator => "operator",
        }
    }
}

/// The roles of a gateway that names none in the config.
fn default_roles() -> Vec<Role> {
    vec![Role::Payments]
}

/// A gateway's share of the engine when gateways compete (`share = N`).
pub const GATEWAY_SHARE_DEFAULT: u32 = 1;
/// Connections one gateway may have open at once, by default.
pub const GATEWAY_CONNECTIONS_MAX_DEFAULT: u32 = 256;
/// Commands (and queries) one gateway may have in flight over all its
/// connections, by default: 64 full batches.
pub const GATEWAY_IN_FLIGHT_COMMANDS_MAX_DEFAULT: u64 = 64 * BATCH_COMMANDS_MAX as u64;

fn default_share() -> u32 {
    GATEWAY_SHARE_DEFAULT
}

fn default_max_connections() -> u32 {
    GATEWAY_CONNECTIONS_MAX_DEFAULT
}

fn default_max_in_flight_commands() -> u64 {
    GATEWAY_IN_FLIGHT_COMMANDS_MAX_DEFAULT
}

/// A gateway allowed to connect, its shared secret and what it may do.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    pub name: String,
    /// 32 bytes or more, hex-encoded.
    pub secret: String,
    /// What it may do besides reading; `["payments"]` when not given. The
    /// local gateway has every role, whatever its file says.
    #[serde(default = "default_roles")]
    pub roles: Vec<Role>,
    /// Its weight when gateways compete for the engine (1 to 1,000): the
    /// sequencer takes from each busy gateway's queue in turn, `share` times
    /// 1,024 commands per turn (docs/operations.md, "Gateways under load").
    #[serde(default = "default_share")]
    pub share: u32,
    /// Connections it may have open at once; one more is refused with
    /// `gateway_too_many_connections` after the handshake.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Commands and queries it may have in flight over all its connections
    /// (at least `limits.batch_commands_max`); a request that would go past
    /// it is refused with `gateway_too_many_in_flight` and the connection
    /// stays open.
    #[serde(default = "default_max_in_flight_commands")]
    pub max_in_flight_commands: u64,
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Secrets never appear in logs.
        f.debug_struct("GatewayConfig")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .field("roles", &self.roles)
            .field("share", &self.share)
            .field("max_connections", &self.max_connections)
            .field("max_in_flight_commands", &self.max_in_flight_commands)
            .finish()
    }
}

impl GatewayConfig {
    /// A gateway with these roles and the default share and bounds.
    pub fn new(name: impl Into<String>, secret: impl Into<String>, roles: &[Role]) -> Self {
        GatewayConfig {
            name: name.into(),
            secret: secret.into(),
            roles: roles.to_vec(),
            share: GATEWAY_SHARE_DEFAULT,
            max_connections: GATEWAY_CONNECTIONS_MAX_DEFAULT,
            max_in_flight_commands: GATEWAY_IN_FLIGHT_COMMANDS_MAX_DEFAULT,
        }
    }

    /// Requests its engine lane holds at most: no more than it can have in
    /// flight (each request has at least one command; each connection at
    /// most `inflight_max` requests).
    pub fn lane_requests_max(&self, limits: &LimitsConfig) -> usize {
        let by_connections = u64::from(self.max_connections) * u64::from(limits.inflight_max);
        let requests = by_connections.min(self.max_in_flight_commands);
        usize::try_from(requests).unwrap_or(usize::MAX)
    }

    /// The secret's bytes, if it is valid hex of at least 16 bytes.
    pub fn secret_bytes(&self) -> Option<Vec<u8>> {
        let bytes = hex::decode(self.secret.trim()).ok()?;
        (bytes.len() >= 16).then_some(bytes)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        if self.name.is_empty() || self.name.len() > GATEWAY_NAME_BYTES_MAX {
            return Err(invalid(format!(
                "gateway name must be 1 to {GATEWAY_NAME_BYTES_MAX} bytes"
            )));
        }
        if self.secret_bytes().is_none() {
            return Err(invalid(format!(
                "gateway '{}': secret must be hex, at least 16 bytes",
                self.name
            )));
        }
        if self.share == 0 || self.share > LANE_SHARE_MAX {
            return Err(invalid(format!(
                "gateway '{}': share must be 1 to {LANE_SHARE_MAX}",
                self.name
            )));
        }
        if self.max_connections == 0 {
            return Err(invalid(format!(
                "gateway '{}': max_connections must be at least 1",
                self.name
            )));
        }
        if self.max_in_flight_commands < BATCH_COMMANDS_MAX as u64 {
            return Err(invalid(format!(
                "gateway '{}': max_in_flight_commands must be at least {BATCH_COMMANDS_MAX} (one full batch)",
                self.name
            )));
        }
        Ok(())
    }
}

/// Bounds the server enforces on every connection.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest frame, header included.
    pub frame_bytes_max: u32,
    /// Most commands (or queries) in one request.
    pub batch_commands_max: u32,
    /// Most connections at once; one more gets `TooManyConnections`.
    pub connections_max: u32,
    /// Most requests in flight on one connection; one more gets `TooManyInFlight`.
    pub inflight_max: u32,
    /// A connection with no request for this long is closed.
    pub idle_timeout_ms: u64,
    /// A frame that started arriving must be complete within this long; a
    /// gateway that reads none of its replies for this long is disconnected.
    pub read_timeout_ms: u64,
    /// The handshake must be done within this long.
    pub handshake_timeout_ms: u64,
    /// A gateway charging more unknown payment codes than this within
    /// `payment_code_window_ms` gets its charges refused for one window.
    pub payment_code_misses_max: u32,
    pub payment_code_window_ms: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            frame_bytes_max: FRAME_BYTES_MAX_DEFAULT,
            batch_commands_max: BATCH_COMMANDS_MAX as u32,
            connections_max: 1_024,
            inflight_max: 64,
            idle_timeout_ms: 300_000,
            read_timeout_ms: 10_000,
            handshake_timeout_ms: 5_000,
            payment_code_misses_max: 20,
            payment_code_window_ms: 60_000,
        }
    }
}

impl LimitsConfig {
    pub fn wire(&self) -> WireLimits {
        WireLimits {
            frame_bytes_max: self.frame_bytes_max,
            batch_commands_max: self.batch_commands_max,
        }
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    pub fn read_timeout(&self) -> Duration {
        Duration::from_millis(self.read_timeout_ms)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        if self.batch_commands_max == 0 || self.batch_commands_max as usize > BATCH_COMMANDS_MAX {
            return Err(invalid("limits.batch_commands_max must be 1 to 8190"));
        }
        if self.frame_bytes_max < 1_024 || self.frame_bytes_max > 64 << 20 {
            return Err(invalid("limits.frame_bytes_max must be 1 KiB to 64 MiB"));
        }
        if self.connections_max == 0 || self.inflight_max == 0 {
            return Err(invalid(
                "limits.connections_max and limits.inflight_max must be at least 1",
            ));
        }
        if self.idle_timeout_ms == 0 || self.read_timeout_ms == 0 || self.handshake_timeout_ms == 0
        {
            return Err(invalid("timeouts must be at least 1 ms"));
        }
        Ok(())
    }
}

/// Pipeline and ledger tuning.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    pub queue_depth: u32,
    /// Commands taken from the gateways' queues and not answered yet, at
    /// most (docs/operations.md, "Gateways under load").
    pub in_flight_commands_max: u32,
    pub group_commands_max: u32,
    pub checkpoint_commands: u64,
    pub checkpoint_interval_s: u64,
    pub idempotency_window_s: u64,
    pub idempotency_records_max: u64,
    /// Pending withdrawal holds one account may have.
    pub account_holds_pending_max: u16,
    /// Live payment codes one customer may have.
    pub customer_payment_codes_live_max: u8,
    /// Open FX quotes one paying account may have.
    pub account_fx_quotes_open_max: u8,
    /// Funding instruments one customer may have bound at once (1..=64).
    pub customer_instruments_max: u8,
    /// Funding instruments one shard holds at most, unbound ones it still
    /// remembers included.
    pub instruments_max: u64,
    /// Accounts the memory budget printed at start is worked out for (or
    /// the accounts there are, if more). Decides nothing.
    pub budget_accounts: u64,
    /// Shards (state-machine threads); 0: cores - 2, at least 1.
    pub shards: u32,
    pub history: bool,
    /// Touch the memory of the tables allocated at start before serving,
    /// so traffic never pays the page faults (`--prefault`).
    pub prefault: bool,
    /// History older than this (log time) is deleted a segment at a time;
    /// 0 keeps everything.
    pub history_retention_days: u64,
    /// Accounts the history's head index holds (allocated at start).
    pub history_accounts_max: u64,
    /// Bytes per history segment file.
    pub history_segment_bytes: u32,
}

impl Default for EngineSection {
    fn default() -> Self {
        let engine = EngineConfig::default();
        EngineSection {
            queue_depth: engine.queue_depth as u32,
            in_flight_commands_max: engine.in_flight_commands_max as u32,
            group_commands_max: engine.group_commands_max as u32,
            checkpoint_commands: engine.checkpoint_commands,
            checkpoint_interval_s: engine.checkpoint_interval.as_secs(),
            idempotency_window_s: engine.ledger.idempotency_window_ns / 1_000_000_000,
            idempotency_records_max: engine.ledger.idempotency_records_max as u64,
            account_holds_pending_max: engine.ledger.account_holds_pending_max,
            customer_payment_codes_live_max: engine.ledger.customer_payment_codes_live_max,
            account_fx_quotes_open_max: engine.ledger.account_fx_quotes_open_max,
            customer_instruments_max: engine.ledger.customer_instruments_max,
            instruments_max: engine.ledger.instruments_max as u64,
            budget_accounts: 1 << 20,
            shards: engine.shards as u32,
            history: engine.history,
            prefault: true,
            history_retention_days: 0,
            history_accounts_max: HistoryConfig::default().accounts_max as u64,
            history_segment_bytes: HistoryConfig::default().segment_bytes,
        }
    }
}

impl EngineSection {
    /// The history store's shape (retention, head index, segment size).
    pub fn history_config(&self) -> HistoryConfig {
        HistoryConfig {
            segment_bytes: self.history_segment_bytes,
            accounts_max: usize::try_from(self.history_accounts_max).unwrap_or(usize::MAX),
            retention_ns: self
                .history_retention_days
                .saturating_mul(86_400)
                .saturating_mul(1_000_000_000),
            check_all_segments: false,
        }
    }

    pub fn engine_config(&self) -> EngineConfig {
        EngineConfig {
            ledger: LedgerConfig {
                idempotency_window_ns: self.idempotency_window_s.saturating_mul(1_000_000_000),
                idempotency_records_max: usize::try_from(self.idempotency_records_max)
                    .unwrap_or(usize::MAX),
                account_holds_pending_max: self.account_holds_pending_max,
                customer_payment_codes_live_max: self.customer_payment_codes_live_max,
                account_fx_quotes_open_max: self.account_fx_quotes_open_max,
                customer_instruments_max: self.customer_instruments_max,
                instruments_max: usize::try_from(self.instruments_max).unwrap_or(usize::MAX),
            },
            queue_depth: self.queue_depth as usize,
            in_flight_commands_max: self.in_flight_commands_max as usize,
            group_commands_max: self.group_commands_max as usize,
            checkpoint_commands: self.checkpoint_commands,
            checkpoint_interval: Duration::from_secs(self.checkpoint_interval_s),
            shards: self.shards as usize,
            history: self.history,
            prefault: self.prefault,
        }
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |message: &str| ConfigError::Invalid {
            path: path.to_owned(),
            message: message.to_owned(),
        };
        if self.queue_depth == 0 || self.group_commands_max == 0 {
            return Err(invalid(
                "engine.queue_depth and engine.group_commands_max must be at least 1",
            ));
        }
        if self.in_flight_commands_max == 0 {
            return Err(invalid("engine.in_flight_commands_max must be at least 1"));
        }
        if self.checkpoint_commands == 0 || self.checkpoint_interval_s == 0 {
            return Err(invalid(
                "engine.checkpoint_commands and engine.checkpoint_interval_s must be at least 1",
            ));
        }
        if (self.idempotency_records_max as usize) < BATCH_COMMANDS_MAX {
            return Err(invalid(
                "engine.idempotency_records_max must be at least 8190",
            ));
        }
        if self.account_holds_pending_max == 0
            || self.customer_payment_codes_live_max == 0
            || self.account_fx_quotes_open_max == 0
        {
            return Err(invalid(
                "engine.account_holds_pending_max, engine.customer_payment_codes_live_max and engine.account_fx_quotes_open_max must be at least 1",
            ));
        }
        if self.customer_instruments_max == 0
            || self.customer_instruments_max
                > payrail_engine::limits::CUSTOMER_INSTRUMENTS_MAX_LIMIT
            || self.instruments_max == 0
        {
            return Err(invalid(
                "engine.customer_instruments_max must be 1 to 64 and engine.instruments_max at least 1",
            ));
        }
        if self.shards as usize > SHARDS_MAX {
            return Err(invalid(
                "engine.shards must be 0 (cores - 2, at least 1) to 64",
            ));
        }
        if self.history_retention_days > 36_500 {
            return Err(invalid(
                "engine.history_retention_days must be 0 (keep everything) to 36500",
            ));
        }
        self.history_config().validate().map_err(|message| {
            invalid(&format!(
                "engine.{}",
                message
                    .replace("history segment_bytes", "history_segment_bytes")
                    .replace("history accounts_max", "history_accounts_max")
            ))
        })?;
        Ok(())
    }
}

/// The whole server configuration (`payrail serve --config FILE`).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Risk policy TOML (docs/risk.md) put in force at start if it differs
    /// from the policy in force. None: keep the policy in force (the
    /// disabled policy on a new data directory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub risk_policy: Option<PathBuf>,
    /// The directory under which `Backup` requests may write (an existing
    /// directory). None: backups are refused with `not_permitted`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_root: Option<PathBuf>,
    pub limits: LimitsConfig,
    pub engine: EngineSection,
    /// Gateways allowed to connect. Empty: the local gateway of the data directory.
    pub gateways: Vec<GatewayConfig>,
    pub metrics: MetricsConfig,
    pub tls: TlsSection,
}

/// TLS for gateway connections (off by default; the HMAC handshake runs
/// inside it either way).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// Accept only TLS connections on `listen`.
    pub enabled: bool,
    /// The server's certificate chain, PEM, its own certificate first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate: Option<PathBuf>,
    /// The certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<PathBuf>,
    /// CA certificates, PEM: when set, a gateway must present a client
    /// certificate signed by one of them. Unset: none is asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ca: Option<PathBuf>,
}

/// The Prometheus endpoint.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve metrics at all.
    pub enabled: bool,
    /// Where `GET /metrics` is served (plain HTTP: keep it on loopback or a
    /// private network).
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9400)),
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7400)),
            data_dir: PathBuf::from("./payrail-data"),
            risk_policy: None,
            backup_root: None,
            limits: LimitsConfig::default(),
            engine: EngineSection::default(),
            gateways: Vec::new(),
            metrics: MetricsConfig::default(),
            tls: TlsSection::default(),
        }
    }
}

impl ServerConfig {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: ServerConfig = toml::from_str(&text).map_err(|error| ConfigError::Invalid {
            path: path.to_owned(),
            message: error.to_string(),
        })?;
        config.validate(path)?;
        Ok(config)
    }

    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        self.limits.validate(path)?;
        self.engine.validate(path)?;
        for gateway in &self.gateways {
            gateway.validate(path)?;
        }
        // One engine lane per gateway, beside the engine's own.
        if self.gateways.len() >= LANES_MAX {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("at most {} gateways", LANES_MAX - 1),
            });
        }
        if self.tls.enabled && (self.tls.certificate.is_none() || self.tls.private_key.is_none()) {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: "tls.enabled needs tls.certificate and tls.private_key".to_owned(),
            });
        }
        Ok(())
    }
}

/// Reads the local gateway of a data directory.
pub fn read_local_gateway(data_dir: &Path) -> Result<GatewayConfig, ConfigError> {
    let path = data_dir.join(LOCAL_GATEWAY_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    let gateway: GatewayConfig = toml::from_str(&text).map_err(|error| ConfigError::Invalid {
        path: path.clone(),
        message: error.to_string(),
    })?;
    gateway.validate(&path)?;
    Ok(GatewayConfig {
        roles: Role::ALL.to_vec(),
        ..gateway
    })
}

/// The first lines of the local gateway file, before the TOML of the gateway.
const LOCAL_GATEWAY_HEADER: &str =
    "# The local gateway: the payrail CLI and load test on this machine use it.\n\
     # Keep this file secret (mode 0600).\n";

/// The local gateway of a data directory, created with a fresh random secret
/// (readable by its owner only) if there is none.
///
/// The file is written crash-safely (crate::durable). A file that an
/// interrupted first start left empty or cut short (written by a version
/// that did not write it crash-safely, on a file system that lost the
/// unsynced part at a power cut) cannot hold a secret anyone was given, so
/// it is replaced by a new one, with a warning; any other invalid file is
/// refused as before.
pub fn ensure_local_gateway(data_dir: &Path) -> Result<GatewayConfig, ConfigError> {
    let path = data_dir.join(LOCAL_GATEWAY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match read_local_gateway(data_dir) {
            Ok(gateway) => return Ok(gateway),
            Err(error) if is_torn_local_gateway(&bytes) => {
                tracing::warn!(
                    path = %path.display(),
                    bytes = bytes.len(),
                    %error,
                    "the local gateway file was left torn by an interrupted first start; writing a new secret"
                );
            }
            Err(error) => return Err(error),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.clone(),
                source,
            })
        }
    }
    std::fs::create_dir_all(data_dir).map_err(|source| ConfigError::Write {
        path: data_dir.to_owned(),
        source,
    })?;
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let gateway = GatewayConfig::new(LOCAL_GATEWAY_NAME, hex::encode(secret), &Role::ALL);
    // The roles are not written: the local gateway has them all.
    let text = format!(
        "{LOCAL_GATEWAY_HEADER}name = \"{}\"\nsecret = \"{}\"\n",
        gateway.name, gateway.secret
    );
    crate::durable::write_atomically(&path, text.as_bytes(), crate::durable::Access::Private)
        .map_err(|source| ConfigError::Write {
            path: path.clone(),
            source,
        })?;
    Ok(gateway)
}

/// Whether `bytes` are a cut-short local gateway file as payrail writes it:
/// empty, or a beginning of it, possibly followed by zero bytes (what some
/// file systems show of data that never reached the disk).
fn is_torn_local_gateway(bytes: &[u8]) -> bool {
    let kept = bytes
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(bytes.len());
    if bytes[kept..].iter().any(|&byte| byte != 0) {
        return false;
    }
    let kept = &bytes[..kept];
    // The shape of a whole file: the header, the name, then 64 hex digits.
    let head = format!("{LOCAL_GATEWAY_HEADER}name = \"{LOCAL_GATEWAY_NAME}\"\nsecret = \"");
    let head = head.as_bytes();
    let secret_hex_chars = 64;
    let whole = head.len() + secret_hex_chars + 2;
    if kept.len() >= whole {
        return false;
    }
    kept.iter().enumerate().all(|(index, &byte)| {
        if index < head.len() {
            byte == head[index]
        } else if index < head.len() + secret_hex_chars {
            byte.is_ascii_hexdigit()
        } else {
            byte == b'"'
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_defaults() {
        let config: ServerConfig = toml::from_str("").unwrap();
        assert_eq!(config, ServerConfig::default());
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<ServerConfig>("listne = \"127.0.0.1:1\"").is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let gateway = GatewayConfig::new("g", "00112233445566778899aabbccddeeff", &default_roles());
        assert!(!format!("{gateway:?}").contains("0011"));
    }

    #[test]
    fn only_a_cut_short_local_gateway_file_counts_as_torn() {
        let dir = tempfile::tempdir().unwrap();
        ensure_local_gateway(dir.path()).unwrap();
        let whole = std::fs::read(dir.path().join(LOCAL_GATEWAY_FILE)).unwrap();
        assert!(!is_torn_local_gateway(&whole));
        for cut in [0, 1, 40, whole.len() / 2, whole.len() - 2] {
            assert!(is_torn_local_gateway(&whole[..cut]), "cut at {cut}");
            let mut zeroed = whole.clone();
            zeroed[cut..].fill(0);
            assert!(is_torn_local_gateway(&zeroed), "zeroed from {cut}");
        }
        // What an operator might write by hand is not torn: it is refused.
        assert!(!is_torn_local_gateway(b"name = \"local\"\n"));
        assert!(!is_torn_local_gateway(b"# mine\n"));
        let mut holed = whole.clone();
        holed[10] = 0;
        assert!(!is_torn_local_gateway(&holed));
    }

    #[test]
    fn local_gateway_is_created_once_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_local_gateway(dir.path()).unwrap();
        let second = ensure_local_gateway(dir.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.secret_bytes().unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(LOCAL_GATEWAY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}

#[cfg(test)]
mod documented_defaults {
    use super::*;

    /// docs/payrail.example.toml shows every setting with its default; this
    /// keeps it true.
    #[test]
    fn the_documented_example_config_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/payrail.example.toml");
        let config = ServerConfig::load(&path).unwrap();
        assert_eq!(
            config,
            ServerConfig::default(),
            "docs/payrail.example.toml drifted from the defaults"
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let generated = toml::to_string(&ServerConfig::default()).unwrap();
        for line in generated.lines().filter(|line| line.contains(" = ")) {
            assert!(
                text.contains(line),
                "docs/payrail.example.toml lacks `{line}`"
            );
        }
    }
}
