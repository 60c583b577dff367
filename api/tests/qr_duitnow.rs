//! QR codes as banks print them: DuitNow (Malaysia) merchant codes carry a
//! signature in an unreserved template (82) that is not ID-length-value
//! data. payrail keeps it raw (`MerchantQr::unreserved_raw`), shows it in
//! `qr decode` and ignores it for payment; what is really broken is still
//! refused. The codes are built here from PayNet's published Example 1 with
//! a signature template added and the CRC computed again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::process::{cli, expect_code};
use payrail_api::client::{Client, ClientConfig};
use payrail_api::config::ServerConfig;
use payrail_api::qr::{self, crc16, QrError, Template};
use payrail_api::serve;
use payrail_api::wire::QrPaymentRequest;
use payrail_engine::{
    AccountId, AccountKind, Command, CommandId, CommandKind, Currency, MerchantKey, OpenAccount,
    Query, QueryReply, RiskContext, Status,
};

const TEST_TIME_MAX: Duration = Duration::from_secs(60);

/// PayNet's DuitNow Example 1 (retail, format indicator "02", static with
/// 10.00 MYR), without its CRC (see api/tests/qr_payloads.rs for the source).
const DUITNOW_BODY: &str = "00020201021126410014A000000615000101065016640209123456789520499995303458540510.005802MY5909QRCSDNBHD6005BANGI";

/// A signature as base64 text (an ECDSA signature's DER encoding): its
/// first two characters are not digits.
const SIGNATURE_BASE64: &str =
    "MEUCIQDx3Tn0bI7yQk2t5cXH1p8vZ0Lr9aWm3sK6uJ4eYhB2fAIgV7nQ1oR8cT5dL0wE9zX3yP6kU2jH4gF1aS7bN0mC8qI=";

/// A signature as hex digits: "3044..." frames as a sub-field 30 of length
/// 44, and what follows it does not frame: not sub-fields either.
const SIGNATURE_HEX: &str =
    "304402201f8e2a9c4b7d6e5f30a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f6070220";

/// `body` plus one data object `tag` with `value`, then a correct CRC.
fn with_template(body: &str, tag: u8, value: &str) -> String {
    sealed(&format!(
        "{body}{tag:02}{:02}{value}",
        value.chars().count()
    ))
}

/// `body` with a correct CRC appended.
fn sealed(body: &str) -> String {
    let text = format!("{body}6304");
    let crc = crc16(text.as_bytes());
    format!("{text}{crc:04X}")
}

#[test]
fn signature_templates_are_kept_raw_and_change_nothing_else() {
    let plain = qr::parse(&sealed(DUITNOW_BODY)).unwrap();
    for signature in [SIGNATURE_BASE64, SIGNATURE_HEX] {
        let payload = with_template(DUITNOW_BODY, 82, signature);
        let code = qr::parse(&payload).unwrap();
        assert_eq!(code.unreserved_raw, vec![(82, signature.to_owned())]);
        assert!(code.unreserved.is_empty());
        // What pays is what the same code without the signature says.
        assert_eq!(code.merchant_keys(), plain.merchant_keys());
        assert_eq!(
            code.merchant_keys(),
            vec![("A0000006150001".to_owned(), "501664:123456789".to_owned())]
        );
        assert_eq!(code.amount_minor(), Some(1_000));
        assert_eq!(code.currency, Currency::from_code("MYR").unwrap());
        // Generated again, the raw value is written back as read.
        let again = qr::generate(&code).unwrap();
        assert!(again.contains(&format!("82{:02}{signature}", signature.len())));
        let reparsed = qr::parse(&again).unwrap();
        assert_eq!(reparsed.unreserved_raw, code.unreserved_raw);
        assert_eq!(reparsed.merchant_keys(), code.merchant_keys());
    }

    // An unreserved template that is sub-fields is still read as such.
    let payload = with_template(DUITNOW_BODY, 82, "0003abc0102xy");
    let code = qr::parse(&payload).unwrap();
    assert!(code.unreserved_raw.is_empty());
    assert_eq!(
        code.unreserved,
        vec![Template {
            tag: 82,
            fields: vec![(0, "abc".to_owned()), (1, "xy".to_owned())],
        }]
    );
    // A raw template and a sub-field template side by side, out of order.
    let body = format!("{DUITNOW_BODY}8276{SIGNATURE_HEX}");
    let payload = with_template(&body, 81, "0002ok");
    let code = qr::parse(&payload).unwrap();
    assert_eq!(code.unreserved.len(), 1);
    assert_eq!(code.unreserved[0].tag, 81);
    assert_eq!(code.unreserved_raw, vec![(82, SIGNATURE_HEX.to_owned())]);
}

#[test]
fn what_is_really_broken_is_still_refused() {
    let good = with_template(DUITNOW_BODY, 82, SIGNATURE_BASE64);
    // One character of the signature changed: the CRC says so.
    let at = good.find("MEUC").unwrap() + 1;
    let mut damaged = good.clone().into_bytes();
    damaged[at] = b'F';
    let damaged = String::from_utf8(damaged).unwrap();
    assert!(matches!(
        qr::parse(&damaged),
        Err(QrError::CrcMismatch { .. })
    ));
    // A top-level object that is not ID-length-value data.
    let at = DUITNOW_BODY.len();
    assert_eq!(
        qr::parse(&sealed(&format!("{DUITNOW_BODY}XY04abcd"))),
        Err(QrError::NonDigitId { at })
    );
    // An unreserved template whose length runs past the end of the payload.
    assert_eq!(
        qr::parse(&sealed(&format!("{DUITNOW_BODY}8299{SIGNATURE_HEX}"))),
        Err(QrError::Truncated { at })
    );
    // A length that is not two digits, and an empty template.
    assert_eq!(
        qr::parse(&sealed(&format!("{DUITNOW_BODY}82x4abcd"))),
        Err(QrError::BadLength { tag: 82, at })
    );
    assert_eq!(
        qr::parse(&sealed(&format!("{DUITNOW_BODY}8200"))),
        Err(QrError::BadLength { tag: 82, at })
    );
    // Two templates 82.
    let twice = format!("{DUITNOW_BODY}8204abcd8204efgh");
    assert_eq!(
        qr::parse(&sealed(&twice)),
        Err(QrError::DuplicateTag { tag: 82 })
    );
    // A merchant account template (26) must still be sub-fields: that is
    // where the payee comes from.
    let body = DUITNOW_BODY.replace(
        "26410014A000000615000101065016640209123456789",
        "2641MEUCIQDx3Tn0bI7yQk2t5cXH1p8vZ0Lr9aWm3sK6u",
    );
    assert_eq!(
        qr::parse(&sealed(&body)),
        Err(QrError::NonDigitId { at: 16 })
    );
}

#[test]
fn qr_decode_shows_the_raw_template() {
    let payload = with_template(DUITNOW_BODY, 82, SIGNATURE_BASE64);
    let output = cli(&["qr", "decode", &payload]);
    expect_code(&output, 0);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    for needle in [
        "A0000006150001 / 501664:123456789",
        "10.00 MYR (1000 minor units)",
        "template 82 (raw)",
        SIGNATURE_BASE64,
    ] {
        assert!(stdout.contains(needle), "{needle} in {stdout}");
    }
    let output = cli(&["qr", "decode", "--json", &payload]);
    expect_code(&output, 0);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["qr"]["unreserved_raw"][0][0], 82);
    assert_eq!(json["qr"]["unreserved_raw"][0][1], SIGNATURE_BASE64);
}

fn command(id: u128, kind: CommandKind) -> Command {
    Command::new(id, kind)
}

fn open(id: u128, account: u64, kind: AccountKind, mcc: u16) -> Command {
    command(
        id,
        CommandKind::OpenAccount(OpenAccount {
            account: AccountId(account),
            owner: account,
            kind,
            currency: Currency::from_code("MYR").unwrap(),
            kyc_tier: if kind == AccountKind::Customer { 3 } else { 0 },
            mcc,
        }),
    )
}

async fn balances(client: &Client, accounts: [u64; 2]) -> [i64; 2] {
    let queries = accounts
        .iter()
        .map(|&account| Query::Balance {
            account: AccountId(account),
        })
        .collect();
    let replies = client.query(queries).await.unwrap();
    let balance = |reply: &QueryReply| match reply {
        QueryReply::Balance(view) => view.balance,
        other => panic!("{other:?}"),
    };
    [balance(&replies[0]), balance(&replies[1])]
}

async fn pay(client: &Client, id: u128, payer: u64, payload: &str, amount: Option<u64>) -> Status {
    let request = QrPaymentRequest {
        id: CommandId(id),
        payer: AccountId(payer),
        payload: payload.to_owned(),
        amount,
        tip: None,
        context: RiskContext::NONE,
    };
    let results = client.submit_qr(vec![request]).await.unwrap();
    assert_eq!(results.len(), 1);
    results[0].status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duitnow_codes_with_a_signature_are_paid() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            ..ServerConfig::default()
        };
        let server = serve::start(config).await.unwrap();
        let client =
            Client::connect(ClientConfig::local(server.addr.to_string(), dir.path()).unwrap())
                .await
                .unwrap();

        const MERCHANT: u64 = 7_001;
        const PAYER: u64 = 1_001;
        const FUNDS: u64 = 100_000;
        let myr = Currency::from_code("MYR").unwrap();
        let static_code = with_template(DUITNOW_BODY, 82, SIGNATURE_BASE64);
        let dynamic_code =
            with_template(&DUITNOW_BODY.replace("010211", "010212"), 82, SIGNATURE_HEX);
        // Onboarding registers the keys the signed code carries.
        let keys = qr::parse(&static_code).unwrap().merchant_keys();
        let mut commands = vec![
            open(1, MERCHANT, AccountKind::Merchant, 9999),
            open(2, PAYER, AccountKind::Customer, 0),
            command(
                3,
                CommandKind::Deposit {
                    account: AccountId(PAYER),
                    amount: FUNDS,
                    currency: myr,
                },
            ),
        ];
        for (index, (gui, merchant_id)) in keys.iter().enumerate() {
            commands.push(command(
                10 + index as u128,
                CommandKind::RegisterMerchantKey {
                    merchant: AccountId(MERCHANT),
                    key: MerchantKey::new(gui, merchant_id),
                },
            ));
        }
        let results = client.submit(commands).await.unwrap();
        assert!(results.iter().all(|result| result.status == Status::Ok));

        // Static: the payer types the code's 10.00.
        assert_eq!(
            pay(&client, 100, PAYER, &static_code, Some(1_000)).await,
            Status::Ok
        );
        let expected = [FUNDS as i64 - 1_000, 1_000];
        assert_eq!(balances(&client, [PAYER, MERCHANT]).await, expected);
        // Dynamic: the code's amount.
        assert_eq!(
            pay(&client, 101, PAYER, &dynamic_code, None).await,
            Status::Ok
        );
        let expected = [FUNDS as i64 - 2_000, 2_000];
        assert_eq!(balances(&client, [PAYER, MERCHANT]).await, expected);
        // The amount still binds.
        assert_eq!(
            pay(&client, 102, PAYER, &dynamic_code, Some(999)).await,
            Status::QrAmountMismatch
        );
        // A damaged signed code moves nothing.
        let mut damaged = static_code.clone().into_bytes();
        let at = static_code.find("MEUC").unwrap() + 1;
        damaged[at] = b'F';
        let damaged = String::from_utf8(damaged).unwrap();
        assert_eq!(
            pay(&client, 103, PAYER, &damaged, Some(1_000)).await,
            Status::QrCrcMismatch
        );
        let broken = sealed(&format!("{DUITNOW_BODY}8299{SIGNATURE_HEX}"));
        assert_eq!(
            pay(&client, 104, PAYER, &broken, Some(1_000)).await,
            Status::QrMalformed
        );
        assert_eq!(balances(&client, [PAYER, MERCHANT]).await, expected);

        drop(client);
        server.stop().await;
    })
    .await
    .unwrap();
}
