//! Gateway authentication and permissions.
//!
//! Authentication: the server sends 32 random bytes; the gateway answers
//! with its name and `HMAC-SHA256(secret, nonce || name)`. The secret never
//! crosses the wire.
//!
//! Permissions: each request that changes something needs a [`Role`] the
//! gateway was given in the config ([`not_permitted`]); reads need none.

use hmac::{Hmac, Mac};
use payrail_engine::CommandKind;
use sha2::Sha256;

use crate::config::Role;
use crate::wire::Message;

/// The roles one gateway has, as a set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    pub fn new(roles: &[Role]) -> Roles {
        Roles(roles.iter().fold(0, |set, role| set | Roles::bit(*role)))
    }

    pub fn contains(self, role: Role) -> bool {
        self.0 & Roles::bit(role) != 0
    }

    fn bit(role: Role) -> u8 {
        1 << (role as u8)
    }
}

/// The role a command needs.
pub fn command_role(kind: &CommandKind) -> Role {
    match kind {
        // House accounts are the engine's own: the ledger refuses to open one
        // (`invalid_account_kind`) whoever asks.
        CommandKind::OpenAccount(_)
        | CommandKind::Deposit { .. }
        | CommandKind::Transfer { .. }
        | CommandKind::WithdrawHold { .. }
        | CommandKind::WithdrawPost { .. }
        | CommandKind::WithdrawVoid { .. }
        | CommandKind::PayMerchantQr { .. }
        | CommandKind::IssuePaymentCode { .. }
        | CommandKind::ChargePaymentCode { .. }
        | CommandKind::Refund { .. }
        | CommandKind::SetBudget { .. }
        | CommandKind::FxQuote { .. }
        | CommandKind::FxConvertQuote { .. }
        | CommandKind::FxConvert(_)
        // Binding a card, reporting its check and unbinding it are the
        // payment gateway's work, as are top-ups and withdrawals with it.
        | CommandKind::BindInstrument(_)
        | CommandKind::VerifyInstrument { .. }
        | CommandKind::UnbindInstrument { .. }
        | CommandKind::DepositFrom { .. }
        | CommandKind::WithdrawHoldTo { .. } => Role::Payments,
        CommandKind::Freeze { .. }
        | CommandKind::Unfreeze { .. }
        | CommandKind::Close { .. }
        | CommandKind::SetKycTier { .. }
        | CommandKind::RegisterMerchantKey { .. } => Role::Operator,
        CommandKind::SetFxRate(_) | CommandKind::SetFxFloor { .. } => Role::Treasury,
    }
}

/// A request the gateway may not make: what it asked for and the role that
/// would allow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotPermitted {
    /// The operation: a command kind ("set_fx_rate", ...) or a message
    /// ("set_risk_policy", "backup", "submit_qr").
    pub operation: &'static str,
    pub role: Role,
    /// For a Submit, the place of the first such command in the batch.
    pub index: Option<usize>,
}

impl NotPermitted {
    /// The sentence in the `Error` frame.
    pub fn message(&self, gateway: &str) -> String {
        match self.index {
            Some(index) => format!(
                "gateway '{gateway}' may not {} (command {index} of the batch needs the {} role); nothing in the batch was applied",
                self.operation,
                self.role.name()
            ),
            None => format!(
                "gateway '{gateway}' may not {} (it needs the {} role)",
                self.operation,
                self.role.name()
            ),
        }
    }
}

/// Whether a gateway with `roles` may make the request `message`: `None` if
/// it may, else the first thing it may not do. A batch is allowed whole or
/// refused whole.
pub fn not_permitted(roles: Roles, message: &Message) -> Option<NotPermitted> {
    let needs = |operation: &'static str, role: Role| {
        (!roles.contains(role)).then_some(NotPermitted {
            operation,
            role,
            index: None,
        })
    };
    match message {
        Message::Submit { commands } => commands.iter().enumerate().find_map(|(index, command)| {
            let role = command_role(&command.kind);
            (!roles.contains(role)).then_some(NotPermitted {
                operation: command.kind.name(),
                role,
                index: Some(index),
            })
        }),
        Message::SubmitQr { .. } => needs("submit_qr", Role::Payments),
        Message::SetRiskPolicy { .. } => needs("set_risk_policy", Role::Risk),
        Message::Backup { .. } => needs("backup", Role::Operator),
        // Reads, and what the connection code handles itself.
        _ => None,
    }
}

type HmacSha256 = Hmac<Sha256>;

/// The proof a gateway sends for `nonce`.
pub fn proof(secret: &[u8], nonce: &[u8; 32], gateway: &str) -> [u8; 32] {
    new_mac(secret, nonce, gateway)
        .finalize()
        .into_bytes()
        .into()
}

/// Whether `proof` is right, compared in constant time.
pub fn verify(secret: &[u8], nonce: &[u8; 32], gateway: &str, proof: &[u8; 32]) -> bool {
    new_mac(secret, nonce, gateway).verify_slice(proof).is_ok()
}

fn new_mac(secret: &[u8], nonce: &[u8; 32], gateway: &str) -> HmacSha256 {
    // HMAC takes keys of any length, so this cannot fail; an empty MAC on the
    // impossible error path would only make verification fail.
    let mut mac = match HmacSha256::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => <HmacSha256 as Mac>::new(&Default::default()),
    };
    mac.update(nonce);
    mac.update(gateway.as_bytes());
    mac
}

/// 32 random bytes from the operating system.
pub fn nonce() -> [u8; 32] {
    let mut nonce = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut nonce);
    nonce
}

#[cfg(test)]
mod tests {
    use super::*;
    use payrail_engine::{AccountId, AccountKind, Command, Currency, OpenAccount};

    #[test]
    fn each_role_allows_its_own_requests_only() {
        let open = |kind| {
            Command::new(
                1,
                CommandKind::OpenAccount(OpenAccount {
                    account: AccountId(7),
                    owner: 7,
                    kind,
                    currency: Currency::CNY,
                    kyc_tier: 0,
                    mcc: 0,
                }),
            )
        };
        let freeze = Command::new(
            2,
            CommandKind::Freeze {
                account: AccountId(7),
            },
        );
        let payments = Roles::new(&[Role::Payments]);
        let customer = Message::Submit {
            commands: vec![open(AccountKind::Customer)],
        };
        assert_eq!(not_permitted(payments, &customer), None);
        let mixed = Message::Submit {
            commands: vec![open(AccountKind::Customer), freeze],
        };
        assert_eq!(
            not_permitted(payments, &mixed),
            Some(NotPermitted {
                operation: "freeze",
                role: Role::Operator,
                index: Some(1),
            })
        );
        let backup = Message::Backup { dir: "x".into() };
        assert_eq!(
            not_permitted(payments, &backup).map(|refusal| refusal.operation),
            Some("backup")
        );
        assert_eq!(not_permitted(Roles::new(&[Role::Operator]), &backup), None);
        assert_eq!(not_permitted(Roles::new(&[]), &Message::Status), None);
        let all = Roles::new(&Role::ALL);
        for role in Role::ALL {
            assert!(all.contains(role));
            assert!(!Roles::new(&[]).contains(role));
        }
    }

    #[test]
    fn proof_verifies_only_with_the_same_secret_nonce_and_name() {
        let nonce = [7u8; 32];
        let good = proof(b"0123456789abcdef", &nonce, "gw");
        assert!(verify(b"0123456789abcdef", &nonce, "gw", &good));
        assert!(!verify(b"0123456789abcdeX", &nonce, "gw", &good));
        assert!(!verify(b"0123456789abcdef", &[8u8; 32], "gw", &good));
        assert!(!verify(b"0123456789abcdef", &nonce, "gx", &good));
    }
}
