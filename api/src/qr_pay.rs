//! The edge of QR payments: a gateway's raw merchant-presented payload turns
//! into a ledger command here, in the api, never on the ledger thread.
//!
//! Rules: a code that carries an amount (tag 54, usually a dynamic code)
//! binds it (a payer amount that differs is refused); a code without one
//! takes the payer's amount. Tips follow tags 55-57: "01" the payer's tip, "02" the
//! fixed convenience fee of tag 56, "03" the percentage of tag 57 of the
//! amount, rounded down to the currency's minor unit (the payer never pays
//! more than the stated percentage). The code's currency must be the
//! merchant's (the ledger checks); a payer whose account is in another
//! currency pays through FX at the current rate (docs/fx.md), so the edge
//! never refuses a payer/merchant currency difference. The code's MCC is
//! recorded with the payment.

use payrail_engine::command::QR_MERCHANT_KEYS_MAX;
use payrail_engine::{Command, CommandKind, MerchantKey, Status};
use rust_decimal::Decimal;

use crate::qr::{self, MerchantQr, QrError, Tip};
use crate::wire::QrPaymentRequest;

/// The ledger status for a payload the parser refused.
pub fn status_of(error: &QrError) -> Status {
    match error {
        QrError::CrcMismatch { .. } => Status::QrCrcMismatch,
        QrError::DuplicateTag { .. } | QrError::DuplicateSubTag { .. } => Status::QrDuplicateTag,
        QrError::ValueTooLong { .. } => Status::QrValueTooLong,
        QrError::MissingTag { .. } => Status::QrMissingTag,
        QrError::MissingMerchantAccount => Status::QrNoMerchantAccount,
        QrError::UnknownCurrency(_) => Status::QrUnknownCurrency,
        QrError::BadInitiation
        | QrError::BadMcc
        | QrError::BadCurrency
        | QrError::BadAmount { .. }
        | QrError::TooManyDecimals { .. }
        | QrError::BadTipIndicator
        | QrError::UnexpectedFee { .. }
        | QrError::BadPercentage
        | QrError::BadCountry => Status::QrBadField,
        _ => Status::QrMalformed,
    }
}

/// The merchant keys a code carries, in the order the ledger tries them.
pub fn merchant_keys(code: &MerchantQr) -> [MerchantKey; QR_MERCHANT_KEYS_MAX] {
    let mut keys = [MerchantKey::NONE; QR_MERCHANT_KEYS_MAX];
    for (slot, (gui, merchant_id)) in keys.iter_mut().zip(code.merchant_keys()) {
        *slot = MerchantKey::new(&gui, &merchant_id);
    }
    keys
}

/// Turns a gateway's QR payment into the ledger command, or the status that
/// refuses it.
pub fn command(request: &QrPaymentRequest) -> Result<Command, Status> {
    let code = qr::parse(&request.payload).map_err(|error| status_of(&error))?;
    let keys = merchant_keys(&code);
    if keys[0] == MerchantKey::NONE {
        return Err(Status::QrNoMerchantAccount);
    }
    let code_amount = match code.amount {
        Some(_) => Some(code.amount_minor().ok_or(Status::QrBadField)?),
        None => None,
    };
    // A code that carries an amount (tag 54) binds it, static or dynamic:
    // EMVCo says the app must not prompt for an amount then.
    let amount = match (code_amount, request.amount) {
        (Some(fixed), Some(typed)) if typed != fixed => return Err(Status::QrAmountMismatch),
        (Some(fixed), _) => fixed,
        (None, Some(typed)) => typed,
        (None, None) => return Err(Status::QrAmountRequired),
    };
    let fee = match (code.tip, request.tip) {
        (Some(Tip::Prompt), tip) => tip.unwrap_or(0),
        (_, Some(_)) => return Err(Status::QrTipNotAllowed),
        (Some(Tip::FixedFee(fee)), None) => minor(fee, &code)?,
        (Some(Tip::PercentFee(percent)), None) => percent_fee(amount, percent, &code)?,
        (None, None) => 0,
    };
    Ok(Command {
        id: request.id,
        kind: CommandKind::PayMerchantQr {
            payer: request.payer,
            keys,
            amount,
            fee,
            currency: code.currency,
            mcc: code.mcc.unwrap_or(0),
            context: request.context,
        },
    })
}

fn minor(value: Decimal, code: &MerchantQr) -> Result<u64, Status> {
    let scale = Decimal::from(
        10u64
            .checked_pow(code.currency.minor_units())
            .ok_or(Status::QrBadField)?,
    );
    let minor = value.checked_mul(scale).ok_or(Status::QrBadField)?;
    if minor.is_sign_negative() || !minor.fract().is_zero() {
        return Err(Status::QrBadField);
    }
    u64::try_from(minor).map_err(|_| Status::QrBadField)
}

/// `percent` % of `amount` minor units, rounded down.
fn percent_fee(amount: u64, percent: Decimal, _code: &MerchantQr) -> Result<u64, Status> {
    let fee = Decimal::from(amount)
        .checked_mul(percent)
        .ok_or(Status::AmountTooLarge)?
        / Decimal::from(100);
    u64::try_from(fee.floor()).map_err(|_| Status::QrBadField)
}

#[cfg(test)]
mod tests {
    use super::*;
    use payrail_engine::{AccountId, CommandId, Currency};

    use crate::qr::MerchantAccountInfo;

    fn account() -> MerchantAccountInfo {
        MerchantAccountInfo {
            tag: 26,
            gui: "br.gov.bcb.pix".into(),
            fields: vec![(1, "merchant@example.com".into())],
        }
    }

    fn request(payload: String, amount: Option<u64>, tip: Option<u64>) -> QrPaymentRequest {
        QrPaymentRequest {
            id: CommandId(9),
            payer: AccountId(1),
            payload,
            amount,
            tip,
            context: payrail_engine::RiskContext::NONE,
        }
    }

    fn pay_fields(result: Result<Command, Status>) -> (u64, u64, u16) {
        match result.map(|command| command.kind) {
            Ok(CommandKind::PayMerchantQr {
                amount, fee, mcc, ..
            }) => (amount, fee, mcc),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn amounts_follow_the_code_kind() {
        let fixed = qr::generate(&MerchantQr::dynamic_code(
            account(),
            5812,
            Currency::CNY,
            "CN",
            "Noodles",
            "Shanghai",
            Decimal::new(1250, 2),
        ))
        .unwrap();
        let open = qr::generate(&MerchantQr::static_code(
            account(),
            5812,
            Currency::CNY,
            "CN",
            "Noodles",
            "Shanghai",
        ))
        .unwrap();
        assert_eq!(
            pay_fields(command(&request(fixed.clone(), None, None))),
            (1_250, 0, 5812)
        );
        assert_eq!(
            pay_fields(command(&request(fixed.clone(), Some(1_250), None))),
            (1_250, 0, 5812)
        );
        assert_eq!(
            command(&request(fixed.clone(), Some(1_000), None)),
            Err(Status::QrAmountMismatch)
        );
        assert_eq!(
            command(&request(fixed, None, Some(5))),
            Err(Status::QrTipNotAllowed)
        );
        assert_eq!(
            pay_fields(command(&request(open.clone(), Some(700), None))),
            (700, 0, 5812)
        );
        assert_eq!(
            command(&request(open, None, None)),
            Err(Status::QrAmountRequired)
        );
    }

    #[test]
    fn tips_and_fees_follow_tags_55_to_57() {
        let with_tip = |tip| {
            let mut code = MerchantQr::static_code(
                account(),
                5812,
                Currency::CNY,
                "CN",
                "Noodles",
                "Shanghai",
            );
            code.tip = Some(tip);
            qr::generate(&code).unwrap()
        };
        let prompt = with_tip(Tip::Prompt);
        assert_eq!(
            pay_fields(command(&request(prompt.clone(), Some(1_000), Some(150)))),
            (1_000, 150, 5812)
        );
        assert_eq!(
            pay_fields(command(&request(prompt, Some(1_000), None))),
            (1_000, 0, 5812)
        );
        let fixed = with_tip(Tip::FixedFee(Decimal::new(250, 2)));
        assert_eq!(
            pay_fields(command(&request(fixed, Some(1_000), None))),
            (1_000, 250, 5812)
        );
        // 3.33% of 10.01 = 0.333333: rounded down to 0.33.
        let percent = with_tip(Tip::PercentFee(Decimal::new(333, 2)));
        assert_eq!(
            pay_fields(command(&request(percent.clone(), Some(1_001), None))),
            (1_001, 33, 5812)
        );
        assert_eq!(
            command(&request(percent, Some(1_001), Some(1))),
            Err(Status::QrTipNotAllowed)
        );
    }

    #[test]
    fn refused_payloads_get_precise_statuses() {
        let good = qr::generate(&MerchantQr::static_code(
            account(),
            5812,
            Currency::CNY,
            "CN",
            "Noodles",
            "Shanghai",
        ))
        .unwrap();
        let mut flipped = good.clone().into_bytes();
        let middle = flipped.len() / 2;
        flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(
            command(&request(flipped, Some(1), None)),
            Err(Status::QrCrcMismatch)
        );
        let truncated = good[..good.len() - 10].to_owned();
        assert!(matches!(
            command(&request(truncated, Some(1), None)),
            Err(Status::QrMalformed)
        ));
        assert_eq!(
            command(&request(String::new(), Some(1), None)),
            Err(Status::QrMalformed)
        );
    }
}
