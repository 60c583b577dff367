//! QR payments end to end: a real server on 127.0.0.1:0 (tempdir data
//! directory), the client library, and real payloads of five national
//! schemes (copied from api/tests/qr_payloads.rs with their sources).
//!
//! - merchant-presented: open a merchant in the code's currency, register
//!   the keys the code carries, fund a payer, pay with SubmitQr, check the
//!   balances, refund part, refuse an over-refund, refund the rest;
//! - corrupted payloads are refused with precise statuses and move no money;
//! - user-presented payment codes: issued, charged once, refused a second
//!   time, expired after their lifetime (5 s of wall-clock command time);
//! - the per-gateway throttle of guessed payment codes;
//! - the `payrail` binary: `qr decode` and `merchant qr` without a server,
//!   and the server-backed QR subcommands against a server in this process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::process::{cli, expect_code};
use payrail_api::client::{draw_payment_code, Client, ClientConfig, ClientError};
use payrail_api::config::{LimitsConfig, ServerConfig};
use payrail_api::qr;
use payrail_api::qr_pay;
use payrail_api::serve::{self, RunningServer};
use payrail_api::wire::{QrPaymentRequest, QR_BATCH_MAX};
use payrail_engine::{
    AccountId, AccountKind, Command, CommandId, CommandKind, CommandResult, Currency, MerchantKey,
    OpenAccount, Query, QueryReply, Status,
};

/// Every test finishes within this or fails.
const TEST_TIME_MAX: Duration = Duration::from_secs(60);

// --- Real payloads, from api/tests/qr_payloads.rs -------------------------

// PIX (Brazil), examples of the Banco Central do Brasil's "Manual de
// Padrões para Iniciação do Pix" and "Manual do BR Code", as quoted by
// brazilian-utils/javascript src/is-valid-pix-payload/is-valid-pix-payload.test.ts
// (commit 1402462ef9b8b236d405493f769b98b6a236016f).
/// Static code with a key (BACEN_STATIC): the payer types the amount.
const PIX_STATIC: &str = "00020126580014br.gov.bcb.pix0136123e4567-e12b-12d1-a456-4266554400005204000053039865802BR5913Fulano de Tal6008BRASILIA62070503***63041D3D";
/// Dynamic code with a location URL and no amount (BACEN_DYNAMIC).
const PIX_DYNAMIC: &str = "00020101021226700014br.gov.bcb.pix2548pix.example.com/8b3da2f39a4140d1a91abd93113bd4415204000053039865802BR5913Fulano de Tal6008BRASILIA62070503***630464E4";

// PromptPay (Thailand): vocolboy/php-emv-qrcode tests/PromptPayTest.php
// ("generate with amount 100.88"), commit 6878f90c7b9491770c0f567767f4bbcfd9bb413d.
const PROMPTPAY_DYNAMIC: &str =
    "00020101021229370016A000000677010111011300669123456785802TH53037645406100.8863049DA4";

// PayNow (Singapore): tingzhouu/sg-paynow-code src/generatePayNowCode.test.ts.
// Static (01 = 11) with an amount (888.88 SGD) and an expiry date (26-04).
const PAYNOW: &str = "00020101021126500009SG.PAYNOW010100211+6590901234030100408205004155204000053037025406888.885802SG5902NA6009Singapore62320128Payment reference XX1234567863046B73";

// DuitNow (Malaysia): PayNet's own examples, docs.developer.paynet.my
// /docs/duitNow-QR/integration/QR-generation-specification/merchant-presented-mode/example
// (Example 1). Payload format indicator "02"; a static code (01 = 11) that
// carries an amount (10.00 MYR).
const DUITNOW_POS: &str = "00020201021126410014A000000615000101065016640209123456789520499995303458540510.005802MY5909QRCSDNBHD6005BANGI6304343F";

// QRIS (Indonesia): ardfar/parse-qris tests/QrisParserTest.php, commit
// 13108a32d49ac2c98d6c5f3fe5b7a8a0964b8e66: issuer template 26 and national
// template 51, tip prompt (55 = 01), static.
const QRIS_TELKOM: &str = "00020101021126680016ID.CO.TELKOM.WWW011893600898026635207502150001952663520750303UMI51440014ID.CO.QRIS.WWW0215ID10211254059720303UMI5204549953033605502015802ID5906BIOLBE6011KAB. MALANG610565168622005091147938120703A03630404CB";

/// What one scheme's payment looks like.
struct Scheme {
    name: &'static str,
    payload: &'static str,
    currency: &'static str,
    /// The amount the payer types (static codes), minor units.
    payer_amount: Option<u64>,
    /// The tip the payer adds (codes with 55 = 01), minor units.
    tip: Option<u64>,
    /// What leaves the payer in all, minor units.
    total: u64,
}

fn schemes() -> Vec<Scheme> {
    vec![
        Scheme {
            name: "PIX static",
            payload: PIX_STATIC,
            currency: "BRL",
            payer_amount: Some(1_250),
            tip: None,
            total: 1_250,
        },
        Scheme {
            name: "PIX dynamic without an amount",
            payload: PIX_DYNAMIC,
            currency: "BRL",
            payer_amount: Some(4_990),
            tip: None,
            total: 4_990,
        },
        Scheme {
            name: "PromptPay dynamic",
            payload: PROMPTPAY_DYNAMIC,
            currency: "THB",
            payer_amount: None,
            tip: None,
            total: 10_088,
        },
        Scheme {
            name: "PayNow static with an amount",
            payload: PAYNOW,
            currency: "SGD",
            // Static (01 = 11) with 888.88: the payer types the code's
            // amount (see static_code_amount_is_binding).
            payer_amount: Some(88_888),
            tip: None,
            total: 88_888,
        },
        Scheme {
            name: "DuitNow static with an amount",
            payload: DUITNOW_POS,
            currency: "MYR",
            // A static code takes the payer's amount (see
            // static_code_amount_is_binding below); the payer types the
            // code's 10.00.
            payer_amount: Some(1_000),
            tip: None,
            total: 1_000,
        },
        Scheme {
            name: "QRIS static with a tip prompt",
            payload: QRIS_TELKOM,
            currency: "IDR",
            payer_amount: Some(2_500_000),
            tip: Some(200_000),
            total: 2_700_000,
        },
    ]
}

// --- Helpers ----------------------------------------------------------------

async fn start_with(limits: LimitsConfig) -> (RunningServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        limits,
        ..ServerConfig::default()
    };
    (serve::start(config).await.unwrap(), dir)
}

async fn connect(server: &RunningServer, dir: &Path) -> Client {
    let config = ClientConfig::local(server.addr.to_string(), dir).unwrap();
    Client::connect(config).await.unwrap()
}

/// Command ids: distinct across a test.
struct Ids(u128);

impl Ids {
    fn next(&mut self) -> u128 {
        self.0 += 1;
        self.0
    }
}

fn currency(code: &str) -> Currency {
    Currency::from_code(code).unwrap()
}

fn open(id: u128, account: u64, kind: AccountKind, currency: Currency, mcc: u16) -> Command {
    Command::new(
        id,
        CommandKind::OpenAccount(OpenAccount {
            account: AccountId(account),
            owner: account,
            kind,
            currency,
            kyc_tier: if kind == AccountKind::Customer { 3 } else { 0 },
            mcc,
        }),
    )
}

fn deposit(id: u128, account: u64, amount: u64, currency: Currency) -> Command {
    Command::new(
        id,
        CommandKind::Deposit {
            account: AccountId(account),
            amount,
            currency,
        },
    )
}

fn refund(id: u128, payment: u128, amount: u64, currency: Currency) -> Command {
    Command::new(
        id,
        CommandKind::Refund {
            payment: CommandId(payment),
            amount,
            currency,
        },
    )
}

fn issue(id: u128, customer: u64, code: u64, lifetime_ms: u64) -> Command {
    Command::new(
        id,
        CommandKind::IssuePaymentCode {
            customer: AccountId(customer),
            code,
            lifetime_ms,
        },
    )
}

fn charge(id: u128, merchant: u64, code: u64, amount: u64) -> Command {
    Command::new(
        id,
        CommandKind::ChargePaymentCode {
            merchant: AccountId(merchant),
            code,
            amount,
            currency: Currency::CNY,
            context: payrail_engine::RiskContext::NONE,
        },
    )
}

fn payment(id: u128, payer: u64, payload: &str, amount: Option<u64>) -> QrPaymentRequest {
    QrPaymentRequest {
        id: CommandId(id),
        payer: AccountId(payer),
        payload: payload.to_owned(),
        amount,
        tip: None,
        context: payrail_engine::RiskContext::NONE,
    }
}

fn statuses(results: &[CommandResult]) -> Vec<Status> {
    results.iter().map(|result| result.status).collect()
}

async fn submit(client: &Client, commands: Vec<Command>) -> Vec<Status> {
    statuses(&client.submit(commands).await.unwrap())
}

async fn submit_one(client: &Client, command: Command) -> Status {
    let results = submit(client, vec![command]).await;
    assert_eq!(results.len(), 1);
    results[0]
}

async fn pay(client: &Client, request: QrPaymentRequest) -> Status {
    let results = client.submit_qr(vec![request]).await.unwrap();
    assert_eq!(results.len(), 1);
    results[0].status
}

async fn balances(client: &Client, accounts: &[u64]) -> Vec<i64> {
    let queries = accounts
        .iter()
        .map(|&account| Query::Balance {
            account: AccountId(account),
        })
        .collect();
    client
        .query(queries)
        .await
        .unwrap()
        .into_iter()
        .zip(accounts)
        .map(|(reply, account)| match reply {
            QueryReply::Balance(view) => view.balance,
            other => panic!("account {account}: {other:?}"),
        })
        .collect()
}

/// Opens a merchant (in the code's currency, with the code's category) and
/// registers every key the code carries; opens and funds a payer.
async fn onboard(
    client: &Client,
    ids: &mut Ids,
    payload: &str,
    merchant: u64,
    payer: u64,
    funds: u64,
) {
    let code = qr::parse(payload).unwrap();
    let mcc = code.mcc.filter(|&mcc| mcc != 0).unwrap_or(5999);
    let mut commands = vec![
        open(
            ids.next(),
            merchant,
            AccountKind::Merchant,
            code.currency,
            mcc,
        ),
        open(ids.next(), payer, AccountKind::Customer, code.currency, 0),
        deposit(ids.next(), payer, funds, code.currency),
    ];
    let keys = code.merchant_keys();
    assert!(!keys.is_empty());
    for (gui, merchant_id) in &keys {
        commands.push(Command::new(
            ids.next(),
            CommandKind::RegisterMerchantKey {
                merchant: AccountId(merchant),
                key: MerchantKey::new(gui, merchant_id),
            },
        ));
    }
    let results = submit(client, commands).await;
    assert!(
        results.iter().all(|status| *status == Status::Ok),
        "{results:?}"
    );
    // What a payment carries is what was registered.
    let carried = qr_pay::merchant_keys(&code);
    for (gui, merchant_id) in &keys {
        assert!(carried.contains(&MerchantKey::new(gui, merchant_id)));
    }
}

/// One character changed somewhere before the CRC: ASCII for ASCII, so
/// the text stays the same length and valid UTF-8.
fn flip_one(payload: &str, position: usize) -> String {
    let mut bytes = payload.as_bytes().to_vec();
    assert!(position < bytes.len() - 8, "inside the CRC");
    bytes[position] = match bytes[position] {
        b'0' => b'1',
        b'A' => b'B',
        b'a' => b'b',
        _ => b'0',
    };
    String::from_utf8(bytes).unwrap()
}

// --- Merchant-presented codes ---------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn national_schemes_pay_and_refund() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let (server, dir) = start_with(LimitsConfig::default()).await;
        let client = connect(&server, dir.path()).await;
        let mut ids = Ids(0);
        const FUNDS: u64 = 10_000_000;

        for (index, scheme) in schemes().iter().enumerate() {
            let name = scheme.name;
            let merchant = 5_000 + index as u64;
            let payer = 1_000 + index as u64;
            onboard(&client, &mut ids, scheme.payload, merchant, payer, FUNDS).await;
            let code = qr::parse(scheme.payload).unwrap();
            assert_eq!(code.currency, currency(scheme.currency), "{name}");

            // The payment: the payer's amount for a static code, the code's
            // for a dynamic one.
            let id = ids.next();
            let request = QrPaymentRequest {
                tip: scheme.tip,
                ..payment(id, payer, scheme.payload, scheme.payer_amount)
            };
            assert_eq!(pay(&client, request.clone()).await, Status::Ok, "{name}");
            let total = scheme.total as i64;
            let paid = vec![FUNDS as i64 - total, total];
            assert_eq!(balances(&client, &[payer, merchant]).await, paid, "{name}");

            // A retry with the same id is answered with the first result and
            // moves nothing.
            assert_eq!(pay(&client, request).await, Status::Ok, "{name}");
            assert_eq!(balances(&client, &[payer, merchant]).await, paid, "{name}");

            // Refunds: part, then more than what is left is refused, then
            // the rest; nothing beyond the original.
            let half = scheme.total / 2;
            let rest = scheme.total - half;
            let first = ids.next();
            assert_eq!(
                submit_one(&client, refund(first, id, half, code.currency)).await,
                Status::Ok,
                "{name}"
            );
            assert_eq!(
                balances(&client, &[payer, merchant]).await,
                [FUNDS as i64 - total + half as i64, total - half as i64],
                "{name}"
            );
            assert_eq!(
                submit_one(&client, refund(ids.next(), id, rest + 1, code.currency)).await,
                Status::RefundExceedsPayment,
                "{name}"
            );
            // The refund retried by id is not applied twice.
            assert_eq!(
                submit_one(&client, refund(first, id, half, code.currency)).await,
                Status::Ok,
                "{name}"
            );
            assert_eq!(
                balances(&client, &[payer, merchant]).await,
                [FUNDS as i64 - total + half as i64, total - half as i64],
                "{name}"
            );
            assert_eq!(
                submit_one(&client, refund(ids.next(), id, rest, code.currency)).await,
                Status::Ok,
                "{name}"
            );
            assert_eq!(
                submit_one(&client, refund(ids.next(), id, 1, code.currency)).await,
                Status::RefundExceedsPayment,
                "{name}"
            );
            assert_eq!(
                balances(&client, &[payer, merchant]).await,
                [FUNDS as i64, 0],
                "{name}"
            );

            // The amount rules, refused at the edge without moving money.
            // A code with an amount (tag 54) binds it, static or dynamic.
            match code.amount {
                Some(_) => {
                    let mismatch = payment(ids.next(), payer, scheme.payload, Some(1));
                    assert_eq!(
                        pay(&client, mismatch).await,
                        Status::QrAmountMismatch,
                        "{name}"
                    );
                }
                _ => {
                    let missing = payment(ids.next(), payer, scheme.payload, None);
                    assert_eq!(
                        pay(&client, missing).await,
                        Status::QrAmountRequired,
                        "{name}"
                    );
                }
            }
            if scheme.tip.is_none() {
                let tipped = QrPaymentRequest {
                    tip: Some(100),
                    ..payment(ids.next(), payer, scheme.payload, scheme.payer_amount)
                };
                assert_eq!(
                    pay(&client, tipped).await,
                    Status::QrTipNotAllowed,
                    "{name}"
                );
            }
            assert_eq!(
                balances(&client, &[payer, merchant]).await,
                [FUNDS as i64, 0],
                "{name}"
            );
        }

        // A THB code paid from a BRL account goes through FX (docs/fx.md):
        // the edge lets it through and, with no BRL/THB rate set, the
        // ledger refuses it.
        let brl_payer = 1_000; // the PIX static payer
        let mismatch = payment(ids.next(), brl_payer, PROMPTPAY_DYNAMIC, None);
        assert_eq!(pay(&client, mismatch).await, Status::FxRateUnknown);
        // A well-formed code of a merchant payrail does not know.
        let stranger = qr::generate(&qr::MerchantQr::static_code(
            qr::MerchantAccountInfo {
                tag: 26,
                gui: "br.gov.bcb.pix".into(),
                fields: vec![(1, "nobody@example.com".into())],
            },
            5812,
            currency("BRL"),
            "BR",
            "Nobody",
            "Recife",
        ))
        .unwrap();
        let unknown = payment(ids.next(), brl_payer, &stranger, Some(100));
        assert_eq!(pay(&client, unknown).await, Status::UnknownMerchant);
        assert_eq!(balances(&client, &[brl_payer]).await, [FUNDS as i64]);

        server.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_payloads_are_refused_and_move_no_money() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let (server, dir) = start_with(LimitsConfig::default()).await;
        let client = connect(&server, dir.path()).await;
        let mut ids = Ids(0);
        const FUNDS: u64 = 10_000_000;
        let payloads = [
            PIX_STATIC,
            PROMPTPAY_DYNAMIC,
            PAYNOW,
            DUITNOW_POS,
            QRIS_TELKOM,
        ];
        for (index, payload) in payloads.into_iter().enumerate() {
            let merchant = 5_000 + index as u64;
            let payer = 1_000 + index as u64;
            onboard(&client, &mut ids, payload, merchant, payer, FUNDS).await;
            let code = qr::parse(payload).unwrap();
            // Static codes need an amount; give the code's or any.
            let amount = code.amount_minor().or(Some(500));
            let len = payload.len();

            let mut requests = Vec::new();
            let mut expected = Vec::new();
            // One character flipped, at a few places before the CRC (the
            // first data object, the merchant account, the middle, the
            // last character before "6304").
            for position in [1, 10, len / 2, len - 9] {
                requests.push(payment(
                    ids.next(),
                    payer,
                    &flip_one(payload, position),
                    amount,
                ));
                expected.push(Status::QrCrcMismatch);
            }
            // Truncated: inside the CRC, the CRC cut off, half the payload.
            for cut in [len - 1, len - 8, len / 2] {
                requests.push(payment(ids.next(), payer, &payload[..cut], amount));
                expected.push(Status::QrMalformed);
            }
            let results = client.submit_qr(requests).await.unwrap();
            assert_eq!(statuses(&results), expected, "{payload}");
            assert_eq!(
                balances(&client, &[payer, merchant]).await,
                [FUNDS as i64, 0],
                "{payload}"
            );

            // A refused payload in a batch does not hurt its neighbours.
            let refused = ids.next();
            let good = ids.next();
            let results = client
                .submit_qr(vec![
                    payment(refused, payer, &flip_one(payload, len / 3), amount),
                    payment(good, payer, payload, amount),
                    payment(ids.next(), payer, &payload[..len - 3], amount),
                ])
                .await
                .unwrap();
            assert_eq!(
                statuses(&results),
                [Status::QrCrcMismatch, Status::Ok, Status::QrMalformed],
                "{payload}"
            );
            let paid = amount.unwrap() as i64;
            assert_eq!(
                balances(&client, &[payer, merchant]).await,
                [FUNDS as i64 - paid, paid],
                "{payload}"
            );
            // A refused payment is nothing to refund; the good one is.
            assert_eq!(
                submit_one(&client, refund(ids.next(), refused, 1, code.currency)).await,
                Status::PaymentNotFound
            );
            assert_eq!(
                submit_one(&client, refund(ids.next(), good, 1, code.currency)).await,
                Status::Ok
            );
        }
        server.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_qr_batches_and_the_batch_limit() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let (server, dir) = start_with(LimitsConfig::default()).await;
        let client = connect(&server, dir.path()).await;
        let mut ids = Ids(0);
        let (merchant, payer) = (5_000, 1_000);
        let funds = 10_088 * u64::from(QR_BATCH_MAX);
        onboard(&client, &mut ids, PROMPTPAY_DYNAMIC, merchant, payer, funds).await;

        let batch: Vec<QrPaymentRequest> = (0..QR_BATCH_MAX)
            .map(|_| payment(ids.next(), payer, PROMPTPAY_DYNAMIC, None))
            .collect();
        let results = client.submit_qr(batch).await.unwrap();
        assert_eq!(results.len(), QR_BATCH_MAX as usize);
        assert!(results.iter().all(|result| result.status == Status::Ok));
        assert_eq!(
            balances(&client, &[payer, merchant]).await,
            [0, funds as i64]
        );

        // One more than a SubmitQr may hold is refused by the client,
        // before anything is sent.
        let too_many: Vec<QrPaymentRequest> = (0..=QR_BATCH_MAX)
            .map(|_| payment(ids.next(), payer, PROMPTPAY_DYNAMIC, None))
            .collect();
        match client.submit_qr(too_many).await {
            Err(ClientError::BatchTooLarge { count, max }) => {
                assert_eq!((count, max), (QR_BATCH_MAX as usize + 1, QR_BATCH_MAX));
            }
            other => panic!("{other:?}"),
        }
        assert!(client.submit_qr(Vec::new()).await.unwrap().is_empty());
        // The connection is still good.
        assert_eq!(
            balances(&client, &[payer, merchant]).await,
            [0, funds as i64]
        );
        server.stop().await;
    })
    .await
    .unwrap();
}

// --- User-presented payment codes -----------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_codes_are_single_use_and_expire() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        let (server, dir) = start_with(LimitsConfig::default()).await;
        let client = connect(&server, dir.path()).await;
        let mut ids = Ids(0);
        let (customer, merchant) = (1_000, 5_000);
        let results = submit(
            &client,
            vec![
                open(
                    ids.next(),
                    customer,
                    AccountKind::Customer,
                    Currency::CNY,
                    0,
                ),
                open(
                    ids.next(),
                    merchant,
                    AccountKind::Merchant,
                    Currency::CNY,
                    5812,
                ),
                deposit(ids.next(), customer, 100_000, Currency::CNY),
            ],
        )
        .await;
        assert_eq!(results, [Status::Ok; 3]);

        // Issued, charged once.
        let code = draw_payment_code();
        assert_eq!(code.to_string().len(), 18);
        assert_eq!(
            submit_one(&client, issue(ids.next(), customer, code, 60_000)).await,
            Status::Ok
        );
        let charged = ids.next();
        assert_eq!(
            submit_one(&client, charge(charged, merchant, code, 1_250)).await,
            Status::Ok
        );
        assert_eq!(
            balances(&client, &[customer, merchant]).await,
            [98_750, 1_250]
        );
        // A second charge of the same code is refused and moves nothing;
        // the retry of the first (same id) is answered with its result.
        assert_eq!(
            submit_one(&client, charge(ids.next(), merchant, code, 1_250)).await,
            Status::PaymentCodeUsed
        );
        assert_eq!(
            submit_one(&client, charge(charged, merchant, code, 1_250)).await,
            Status::Ok
        );
        assert_eq!(
            balances(&client, &[customer, merchant]).await,
            [98_750, 1_250]
        );
        // The charge is a payment: refundable, partially, never beyond.
        assert_eq!(
            submit_one(&client, refund(ids.next(), charged, 250, Currency::CNY)).await,
            Status::Ok
        );
        assert_eq!(
            submit_one(&client, refund(ids.next(), charged, 1_001, Currency::CNY)).await,
            Status::RefundExceedsPayment
        );
        assert_eq!(
            balances(&client, &[customer, merchant]).await,
            [99_000, 1_000]
        );

        // The ledger's bounds on issuing.
        assert_eq!(
            submit_one(&client, issue(ids.next(), customer, 12_345, 60_000)).await,
            Status::InvalidPaymentCode
        );
        assert_eq!(
            submit_one(
                &client,
                issue(ids.next(), customer, draw_payment_code(), 4_999)
            )
            .await,
            Status::LifetimeOutOfRange
        );
        assert_eq!(
            submit_one(
                &client,
                issue(ids.next(), merchant, draw_payment_code(), 60_000)
            )
            .await,
            Status::NotACustomer
        );
        assert_eq!(
            submit_one(
                &client,
                charge(ids.next(), merchant, draw_payment_code(), 1)
            )
            .await,
            Status::UnknownPaymentCode
        );

        // Expiry: the shortest lifetime is 5 s of command time, and command
        // time is the server's wall clock, so the test waits it out. The
        // code's expiry is at most 5 s after the issue's reply arrived.
        let short = draw_payment_code();
        assert_eq!(
            submit_one(&client, issue(ids.next(), customer, short, 5_000)).await,
            Status::Ok
        );
        let issued = Instant::now();
        tokio::time::sleep(Duration::from_millis(5_300)).await;
        assert!(issued.elapsed() >= Duration::from_millis(5_300));
        assert_eq!(
            submit_one(&client, charge(ids.next(), merchant, short, 100)).await,
            Status::PaymentCodeExpired
        );
        assert_eq!(
            balances(&client, &[customer, merchant]).await,
            [99_000, 1_000]
        );
        server.stop().await;
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_payment_codes_is_throttled_per_gateway() {
    tokio::time::timeout(TEST_TIME_MAX, async {
        const WINDOW_MS: u64 = 3_000;
        let limits = LimitsConfig {
            payment_code_misses_max: 3,
            payment_code_window_ms: WINDOW_MS,
            ..LimitsConfig::default()
        };
        let (server, dir) = start_with(limits).await;
        let client = connect(&server, dir.path()).await;
        let mut ids = Ids(0);
        let (customer, merchant) = (1_000, 5_000);
        let code = draw_payment_code();
        let results = submit(
            &client,
            vec![
                open(
                    ids.next(),
                    customer,
                    AccountKind::Customer,
                    Currency::CNY,
                    0,
                ),
                open(
                    ids.next(),
                    merchant,
                    AccountKind::Merchant,
                    Currency::CNY,
                    5812,
                ),
                deposit(ids.next(), customer, 10_000, Currency::CNY),
                issue(ids.next(), customer, code, 60_000),
            ],
        )
        .await;
        assert_eq!(results, [Status::Ok; 4]);

        // Four guesses, one request each: three are within the limit, the
        // fourth goes over it.
        let started = Instant::now();
        for _ in 0..4 {
            let guess = loop {
                let guess = draw_payment_code();
                if guess != code {
                    break guess;
                }
            };
            assert_eq!(
                submit_one(&client, charge(ids.next(), merchant, guess, 100)).await,
                Status::UnknownPaymentCode
            );
        }
        // The four must fall in one window for the count to hold.
        assert!(started.elapsed() < Duration::from_millis(WINDOW_MS));

        // Now even a valid code is refused at the edge, and nothing moves.
        let refused = ids.next();
        assert_eq!(
            submit_one(&client, charge(refused, merchant, code, 100)).await,
            Status::PaymentCodeThrottled
        );
        assert_eq!(balances(&client, &[customer, merchant]).await, [10_000, 0]);
        // Other commands of the gateway go on.
        assert_eq!(
            submit_one(&client, deposit(ids.next(), customer, 1, Currency::CNY)).await,
            Status::Ok
        );

        // After the window the gateway may charge again, and the code,
        // never charged, still works.
        tokio::time::sleep(Duration::from_millis(WINDOW_MS + 200)).await;
        assert_eq!(
            submit_one(&client, charge(ids.next(), merchant, code, 100)).await,
            Status::Ok
        );
        assert_eq!(balances(&client, &[customer, merchant]).await, [9_901, 100]);
        server.stop().await;
    })
    .await
    .unwrap();
}

// --- Known deviations, reported -------------------------------------------

/// EMVCo MPM defines data object 54 as the transaction amount: when it is
/// present the payer's app shows it and does not ask for one; only without
/// it is the consumer prompted. Real static codes carry amounts (the
/// DuitNow POS example above is 01 = 11 with 54 = 10.00, as are PromptPay
/// codes printed with a price). qr_pay::command instead takes the payer's
/// amount for every static code: without one it refuses the payment, and
/// with a different one it lets the payer pay any amount to a code that
/// names 10.00. The PayNow sample (888.88 SGD, 01 = 11) is the same case.
#[test]
fn static_code_amount_is_binding() {
    let code = qr::parse(DUITNOW_POS).unwrap();
    assert_eq!(code.initiation, qr::Initiation::Static);
    assert_eq!(code.amount_minor(), Some(1_000));
    let amount_of = |request: &QrPaymentRequest| match qr_pay::command(request) {
        Ok(Command {
            kind: CommandKind::PayMerchantQr { amount, .. },
            ..
        }) => Ok(amount),
        Ok(other) => panic!("{other:?}"),
        Err(status) => Err(status),
    };
    assert_eq!(amount_of(&payment(1, 1, DUITNOW_POS, None)), Ok(1_000));
    assert_eq!(
        amount_of(&payment(1, 1, DUITNOW_POS, Some(700))),
        Err(Status::QrAmountMismatch)
    );
}

// --- The CLI -----------------------------------------------------------------

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn qr_decode_without_a_server() {
    // A good payload: fields, merchant key and amount in minor units.
    let output = cli(&["qr", "decode", PAYNOW]);
    expect_code(&output, 0);
    let stdout = text(&output.stdout);
    for needle in [
        "static EMVCo merchant-presented code, format 01, CRC 6B73 checked",
        "SG.PAYNOW / 0:+6590901234",
        "888.88 SGD (88888 minor units)",
        "Singapore",
        "Payment reference XX12345678",
    ] {
        assert!(stdout.contains(needle), "{needle} in {stdout}");
    }

    let output = cli(&["qr", "decode", "--json", QRIS_TELKOM]);
    expect_code(&output, 0);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(json["currency"], "IDR");
    assert_eq!(json["amount_minor"], serde_json::Value::Null);
    assert_eq!(json["qr"]["tip"]["kind"], "prompt");
    assert_eq!(json["merchant_keys"][1]["gui"], "ID.CO.QRIS.WWW");
    assert_eq!(json["merchant_keys"][1]["merchant_id"], "ID1021125405972");
    assert_eq!(
        json["merchant_keys"][1]["key"],
        format!(
            "{:032x}",
            MerchantKey::new("ID.CO.QRIS.WWW", "ID1021125405972").0
        )
    );
    let output = cli(&["qr", "decode", "--json", PROMPTPAY_DYNAMIC]);
    expect_code(&output, 0);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["amount_minor"], 10_088);

    // A flipped character: the parser's reason and the status a payment
    // would get, exit 1.
    let flipped = flip_one(PIX_STATIC, 60);
    let output = cli(&["qr", "decode", &flipped]);
    expect_code(&output, 1);
    let stdout = text(&output.stdout);
    assert!(stdout.contains("the CRC does not match"), "{stdout}");
    assert!(stdout.contains("(crc_mismatch)"), "{stdout}");
    assert!(stdout.contains("qr_crc_mismatch"), "{stdout}");
    let output = cli(&["qr", "decode", "--json", &flipped]);
    expect_code(&output, 1);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["reason"], "crc_mismatch");
    assert_eq!(json["status"], "qr_crc_mismatch");
    assert_eq!(json["code"], 121);

    // Truncated.
    let truncated = &DUITNOW_POS[..DUITNOW_POS.len() - 8];
    let output = cli(&["qr", "decode", "--json", truncated]);
    expect_code(&output, 1);
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["reason"], "missing_crc");
    assert_eq!(json["status"], "qr_malformed");

    // Usage errors exit 2.
    expect_code(&cli(&["qr", "decode"]), 2);
    expect_code(&cli(&["qr", "decode", PIX_STATIC, "--bogus"]), 2);
}

#[test]
fn merchant_qr_payloads_decode_to_what_was_asked() {
    let output = cli(&[
        "merchant",
        "qr",
        "--gui",
        "com.example.wallet",
        "--merchant-id",
        "shop-1",
        "--mcc",
        "5812",
        "--currency",
        "CNY",
        "--country",
        "CN",
        "--name",
        "Noodle Bar",
        "--city",
        "Shanghai",
        "--amount",
        "12.50",
        "--no-draw",
    ]);
    expect_code(&output, 0);
    let payload = text(&output.stdout);
    // --no-draw prints the payload alone.
    assert_eq!(payload.lines().count(), 1, "{payload}");
    let code = qr::parse(payload.trim()).unwrap();
    assert_eq!(code.initiation, qr::Initiation::Dynamic);
    assert_eq!(code.amount_minor(), Some(1_250));
    assert_eq!(code.currency, Currency::CNY);
    assert_eq!(code.mcc, Some(5812));
    assert!(
        qr_pay::merchant_keys(&code).contains(&MerchantKey::new("com.example.wallet", "shop-1"))
    );

    // Drawn: the payload, then the code in half blocks.
    let output = cli(&[
        "merchant",
        "qr",
        "--gui",
        "SG.PAYNOW",
        "--merchant-id",
        "2:201403121W",
        "--mcc",
        "5812",
        "--currency",
        "SGD",
        "--country",
        "SG",
        "--name",
        "Kopi",
        "--city",
        "Singapore",
    ]);
    expect_code(&output, 0);
    let stdout = text(&output.stdout);
    assert!(stdout.contains('\u{2580}') || stdout.contains('\u{2584}'));
    let payload = stdout.lines().next().unwrap();
    let code = qr::parse(payload).unwrap();
    assert_eq!(code.initiation, qr::Initiation::Static);
    assert_eq!(
        code.merchant_keys(),
        [("SG.PAYNOW".to_owned(), "2:201403121W".to_owned())]
    );

    // A name longer than EMVCo allows is a usage error.
    let output = cli(&[
        "merchant",
        "qr",
        "--gui",
        "x",
        "--merchant-id",
        "y",
        "--mcc",
        "5812",
        "--currency",
        "CNY",
        "--country",
        "CN",
        "--name",
        "A merchant name of more than 25 characters",
        "--city",
        "Shanghai",
    ]);
    expect_code(&output, 2);
    assert!(text(&output.stderr).contains("value_too_long"));
}

/// The server-backed QR subcommands, as the binary runs them, against a
/// server in this process.
#[test]
fn qr_payments_through_the_cli() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, dir) = runtime.block_on(start_with(LimitsConfig::default()));
    let addr = server.addr.to_string();
    let data_dir = dir.path().to_str().unwrap().to_owned();
    let started = Instant::now();
    let cli = |args: &[&str]| -> Output {
        assert!(
            started.elapsed() < TEST_TIME_MAX,
            "the CLI test took too long"
        );
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--addr", &addr, "--data-dir", &data_dir]);
        common::process::cli(&all)
    };
    let json_of =
        |output: &Output| -> serde_json::Value { serde_json::from_slice(&output.stdout).unwrap() };

    for args in [
        &[
            "account",
            "open",
            "5001",
            "--owner",
            "5",
            "--merchant",
            "--mcc",
            "5999",
            "--currency",
            "BRL",
        ][..],
        &[
            "account",
            "open",
            "1001",
            "--owner",
            "1",
            "--customer",
            "--currency",
            "BRL",
        ],
        &["deposit", "1001", "100.00", "BRL"],
        &["merchant", "register", "5001", "--from-qr", PIX_STATIC],
    ] {
        expect_code(&cli(args), 0);
    }
    // Registering the same key again is idempotent; a corrupted code is
    // refused before anything is sent.
    expect_code(
        &cli(&[
            "merchant",
            "register",
            "5001",
            "--gui",
            "br.gov.bcb.pix",
            "--merchant-id",
            "123e4567-e12b-12d1-a456-426655440000",
        ]),
        0,
    );
    let output = cli(&[
        "merchant",
        "register",
        "5001",
        "--from-qr",
        &flip_one(PIX_STATIC, 60),
    ]);
    expect_code(&output, 1);
    assert!(text(&output.stdout).contains("qr_crc_mismatch"));

    // Pay 12.50 BRL; the static code needs the amount.
    let output = cli(&["qr", "pay", "1001", PIX_STATIC, "--json"]);
    expect_code(&output, 1);
    let json = json_of(&output);
    assert_eq!(
        (json["status"].as_str(), json["sent"].as_bool()),
        (Some("qr_amount_required"), Some(false))
    );
    let output = cli(&[
        "qr", "pay", "1001", PIX_STATIC, "--amount", "12.50", "--json",
    ]);
    expect_code(&output, 0);
    let json = json_of(&output);
    assert_eq!(json["total"], 1_250);
    let payment_id = json["payment_id"].as_str().unwrap().to_owned();
    let output = cli(&[
        "qr", "pay", "1001", PIX_STATIC, "--amount", "12.50", "--tip", "1.00",
    ]);
    expect_code(&output, 1);
    assert!(text(&output.stdout).contains("qr_tip_not_allowed"));

    // Refund part, then too much.
    expect_code(&cli(&["refund", &payment_id, "2.50", "BRL"]), 0);
    let output = cli(&["refund", &payment_id, "10.01", "BRL", "--json"]);
    expect_code(&output, 1);
    assert_eq!(json_of(&output)["status"], "refund_exceeds_payment");

    // A payment code: issued, charged once.
    let output = cli(&["code", "issue", "1001", "--lifetime", "30s", "--json"]);
    expect_code(&output, 0);
    let code = json_of(&output)["payment_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(code.len(), 18);
    let output = cli(&["code", "charge", "5001", &code, "5.00", "BRL", "--json"]);
    expect_code(&output, 0);
    assert!(json_of(&output)["payment_id"].is_string());
    let output = cli(&["code", "charge", "5001", &code, "5.00", "BRL"]);
    expect_code(&output, 1);
    assert!(text(&output.stdout).contains("payment_code_used"));
    expect_code(&cli(&["code", "charge", "5001", "12345", "5.00", "BRL"]), 2);

    // 100.00 - 12.50 + 2.50 - 5.00.
    let output = cli(&["account", "show", "1001", "--json"]);
    expect_code(&output, 0);
    assert_eq!(json_of(&output)["balance"], 8_500);
    let output = cli(&["account", "show", "5001", "--json"]);
    assert_eq!(json_of(&output)["balance"], 1_500);

    runtime.block_on(server.stop());
}
