//! Wire test vectors and negative cases.
//!
//! The hex vectors are read from docs/protocol.md, so the document cannot
//! drift from the code: each must decode to the message built here and
//! re-encode to the same bytes. Each vector is also built a second time,
//! field by field, from the layout the document describes, independently of
//! the codec. To regenerate the document's vectors and tables:
//!
//! ```text
//! cargo test -p payrail-api --test wire_vectors -- --ignored --nocapture print_
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use payrail_api::wire::{
    self, kinds, Check, ErrorCode, Frame, Message, QrPaymentRequest, TxSource, WireError,
    WireLimits, HEADER_LEN, STATUS_FIELDS_MAX,
};
use payrail_engine::history::Movement;
use payrail_engine::limits::BATCH_COMMANDS_MAX;
use payrail_engine::risk::{RiskPolicy, RuleId, Verdict};
use payrail_engine::{
    AccountId, AccountKind, AccountStatus, AccountView, Command, CommandId, CommandKind,
    CommandResult, Currency, Detail, FxAmounts, FxMid, FxOrder, FxRateSet, FxRateView, FxSide,
    FxSource, Query, QueryReply, RiskContext, RiskDetail, Status,
};

/// The instrument the variant tables' examples name.
const INSTRUMENT: payrail_engine::InstrumentId = payrail_engine::InstrumentId {
    owner: 1,
    number: 1,
};

const PROTOCOL_MD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/protocol.md");

/// A static Thai PromptPay code (EMVCo merchant-presented mode, no amount:
/// the payer types it).
const PROMPTPAY_STATIC: &str =
    "00020101021129370016A000000677010111011300669123456785802TH53037646304F1E3";

/// The secret of the example gateway in the Hello vector.
const EXAMPLE_SECRET: &[u8] = b"example-secret";

/// One vector: the frame, and its body spelled out field by field.
struct Vector {
    name: &'static str,
    request_id: u64,
    message: Message,
    /// (bytes, comment) for each field of the body, as docs/protocol.md
    /// describes the layout.
    body: Vec<(Vec<u8>, String)>,
}

/// Builds a body field by field with comments.
#[derive(Default)]
struct Body(Vec<(Vec<u8>, String)>);

impl Body {
    fn field(mut self, bytes: impl Into<Vec<u8>>, comment: impl Into<String>) -> Self {
        self.0.push((bytes.into(), comment.into()));
        self
    }
    fn u8(self, value: u8, comment: &str) -> Self {
        self.field(vec![value], format!("{comment} = {value}"))
    }
    fn u16(self, value: u16, comment: &str) -> Self {
        self.field(value.to_le_bytes(), format!("{comment} = {value}"))
    }
    fn u32(self, value: u32, comment: &str) -> Self {
        self.field(value.to_le_bytes(), format!("{comment} = {value}"))
    }
    fn u64(self, value: u64, comment: &str) -> Self {
        self.field(value.to_le_bytes(), format!("{comment} = {value}"))
    }
    fn i64(self, value: i64, comment: &str) -> Self {
        self.field(value.to_le_bytes(), format!("{comment} = {value}"))
    }
    fn u128(self, value: u128, comment: &str) -> Self {
        self.field(value.to_le_bytes(), format!("{comment} = {value} (u128)"))
    }
    /// An enum's variant index: u32.
    fn variant(self, index: u32, what: &str, name: &str) -> Self {
        self.field(
            index.to_le_bytes(),
            format!("{what} = {name} (variant {index}, u32)"),
        )
    }
    /// A Vec's or String's length: u64.
    fn len(self, len: usize, what: &str) -> Self {
        self.field(
            (len as u64).to_le_bytes(),
            format!("{what}: length {len} (u64)"),
        )
    }
    fn string(self, value: &str, what: &str) -> Self {
        self.len(value.len(), what)
            .field(value.as_bytes(), format!("{what}: {value:?} (UTF-8)"))
    }
}

fn nonce() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

fn hello_proof(gateway: &str) -> [u8; 32] {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(EXAMPLE_SECRET).unwrap();
    mac.update(&nonce());
    mac.update(gateway.as_bytes());
    mac.finalize().into_bytes().into()
}

fn cny() -> Body {
    Body::default().field(156u16.to_le_bytes(), "currency = 156 (CNY, u16)")
}

fn account_view() -> AccountView {
    AccountView {
        account: AccountId(1001),
        owner: 77,
        kind: AccountKind::Customer,
        currency: Currency::CNY,
        status: AccountStatus::Active,
        kyc_tier: 1,
        mcc: 0,
        balance: 50_000,
        debits_pending: 0,
        credits_pending: 0,
        available: 50_000,
    }
}

/// The debit leg of the transfer in the submit vector.
fn movement() -> Movement {
    Movement {
        account: AccountId(1001),
        counterparty: AccountId(2002),
        command: CommandId(2),
        sequence: 9,
        timestamp: 1_795_336_205_000_000_000,
        position: 0,
        kind: "transfer".into(),
        amount: -1_250,
        balance: 48_750,
        currency: Currency::CNY,
        mcc: 0,
        instrument: None,
    }
}

fn movement_body(at: &str) -> Body {
    let mut body = Body::default()
        .u64(1001, &format!("{at}.account"))
        .u64(2002, "counterparty")
        .u128(2, "command")
        .u64(9, "sequence")
        .u64(1_795_336_205_000_000_000, "timestamp (ns)")
        .u32(0, "position")
        .i64(-1_250, "amount")
        .i64(48_750, "balance");
    body.0.extend(cny().0);
    body.u16(0, "mcc")
        .string("transfer", "kind")
        .u8(0, "instrument: None")
}

/// A withdrawal to a bank card, posted after the transfer: its movement
/// shows the card.
fn withdrawal_movement() -> Movement {
    Movement {
        counterparty: AccountId(0xFF01_0000_0000_009C),
        command: CommandId(3),
        sequence: 10,
        timestamp: 1_795_336_206_000_000_000,
        kind: "withdraw_post".into(),
        amount: -20_000,
        balance: 28_750,
        instrument: Some(payrail_engine::history::MovementInstrument {
            number: 1,
            bank: payrail_engine::instrument::BankName::new("ICBC").unwrap(),
            last_four: *b"4242",
        }),
        ..movement()
    }
}

fn withdrawal_movement_body(at: &str) -> Body {
    let mut bank = [0u8; 16];
    bank[..4].copy_from_slice(b"ICBC");
    let mut body = Body::default()
        .u64(1001, &format!("{at}.account"))
        .u64(
            0xFF01_0000_0000_009C,
            "counterparty (house settlement, CNY)",
        )
        .u128(3, "command")
        .u64(10, "sequence")
        .u64(1_795_336_206_000_000_000, "timestamp (ns)")
        .u32(0, "position")
        .i64(-20_000, "amount")
        .i64(28_750, "balance");
    body.0.extend(cny().0);
    body.u16(0, "mcc")
        .string("withdraw_post", "kind")
        .u8(1, "instrument: Some")
        .u32(1, "instrument.number")
        .field(bank, "instrument.bank: \"ICBC\" (16 bytes, zero padded)")
        .field(*b"4242", "instrument.last_four: \"4242\"")
}

fn vectors() -> Vec<Vector> {
    let gateway = "gw-tokyo-1";
    let proof = hello_proof(gateway);
    let deposit = Command::new(
        1,
        CommandKind::Deposit {
            account: AccountId(1001),
            amount: 50_000,
            currency: Currency::CNY,
        },
    );
    let transfer = Command::new(
        2,
        CommandKind::Transfer {
            from: AccountId(1001),
            to: AccountId(2002),
            amount: 1_250,
            currency: Currency::CNY,
            context: RiskContext {
                device: 42,
                latitude_centidegrees: 3_123,
                longitude_centidegrees: 12_147,
                country: *b"CN",
                step_up_verified: false,
            },
        },
    );
    let policy = RiskPolicy::from_toml(
        "[blocked_countries]\naction = \"decline\"\ncountries = [\"KP\"]\n\
         [velocity]\naction = \"step_up\"\npayments_max = 10\nwindow_seconds = 600",
    )
    .unwrap();
    let policy_digest = policy.digest();
    let error_text = "submit batch of 8191 entries, at most 8190 allowed";
    let mut submit_body = Body::default()
        .len(2, "commands")
        .u128(1, "[0].id")
        .variant(1, "[0].kind", "Deposit")
        .u64(1001, "account")
        .u64(50_000, "amount");
    submit_body.0.extend(cny().0);
    submit_body = submit_body
        .u128(2, "[1].id")
        .variant(2, "[1].kind", "Transfer")
        .u64(1001, "from")
        .u64(2002, "to")
        .u64(1_250, "amount");
    submit_body.0.extend(cny().0);
    submit_body = submit_body
        .u64(42, "context.device")
        .field(
            3_123i16.to_le_bytes(),
            "context.latitude_centidegrees: 31.23 (i16)",
        )
        .field(
            12_147i16.to_le_bytes(),
            "context.longitude_centidegrees: 121.47 (i16)",
        )
        .field(*b"CN", "context.country: \"CN\"")
        .u8(0, "context.step_up_verified: false");

    let mut view_body = Body::default()
        .len(1, "replies")
        .variant(0, "[0]", "Balance")
        .u64(1001, "account")
        .u64(77, "owner")
        .variant(0, "kind", "Customer");
    view_body.0.extend(cny().0);
    view_body = view_body
        .variant(0, "status", "Active")
        .u8(1, "kyc_tier")
        .u16(0, "mcc")
        .i64(50_000, "balance")
        .u64(0, "debits_pending")
        .u64(0, "credits_pending")
        .i64(50_000, "available");

    vec![
        Vector {
            name: "challenge",
            request_id: 0,
            message: Message::Challenge { nonce: nonce() },
            body: Body::default()
                .field(nonce(), "nonce: 32 bytes, no length")
                .0,
        },
        Vector {
            name: "hello",
            request_id: 1,
            message: Message::Hello {
                gateway: gateway.to_owned(),
                proof,
            },
            body: Body::default()
                .string(gateway, "gateway")
                .field(
                    proof,
                    "proof: HMAC-SHA256(\"example-secret\", nonce || \"gw-tokyo-1\")",
                )
                .0,
        },
        Vector {
            name: "welcome",
            request_id: 1,
            message: Message::Welcome {
                frame_bytes_max: 1 << 20,
                batch_commands_max: 8_190,
                inflight_max: 64,
            },
            body: Body::default()
                .u32(1 << 20, "frame_bytes_max")
                .u32(8_190, "batch_commands_max")
                .u32(64, "inflight_max")
                .0,
        },
        Vector {
            name: "submit",
            request_id: 2,
            message: Message::Submit {
                commands: vec![deposit, transfer],
            },
            body: submit_body.0,
        },
        Vector {
            name: "results",
            request_id: 2,
            message: Message::Results {
                results: vec![
                    CommandResult::new(Status::Ok),
                    CommandResult::with_detail(
                        Status::StepUpRequired,
                        Detail::Risk(RiskDetail {
                            verdict: Verdict::StepUp,
                            rule: RuleId::NewDevice,
                            limit: 1,
                            observed: 42,
                        }),
                    ),
                ],
            },
            body: Body::default()
                .len(2, "results")
                .u16(0, "[0].status: Ok")
                .variant(0, "[0].detail", "None")
                .u16(81, "[1].status: StepUpRequired")
                .variant(1, "[1].detail", "Risk")
                .u8(2, "verdict: step_up")
                .u8(9, "rule: new_device")
                .u64(1, "limit: devices on record")
                .u64(42, "observed: the device id")
                .0,
        },
        Vector {
            name: "query",
            request_id: 3,
            message: Message::Query {
                queries: vec![Query::Balance {
                    account: AccountId(1001),
                }],
            },
            body: Body::default()
                .len(1, "queries")
                .variant(0, "[0]", "Balance")
                .u64(1001, "account")
                .0,
        },
        Vector {
            name: "query_results",
            request_id: 3,
            message: Message::QueryResults {
                replies: vec![QueryReply::Balance(account_view())],
            },
            body: view_body.0,
        },
        Vector {
            name: "submit_qr",
            request_id: 6,
            message: Message::SubmitQr {
                payments: vec![QrPaymentRequest {
                    id: payrail_engine::CommandId(3),
                    payer: AccountId(1001),
                    payload: PROMPTPAY_STATIC.to_owned(),
                    amount: Some(12_500),
                    tip: None,
                    context: payrail_engine::RiskContext::NONE,
                }],
            },
            body: Body::default()
                .len(1, "payments")
                .u128(3, "[0].id")
                .u64(1001, "payer")
                .u8(1, "amount: Some")
                .u64(12_500, "amount")
                .u8(0, "tip: None")
                .u64(0, "context.device: none")
                .field(
                    i16::MIN.to_le_bytes(),
                    "context.latitude_centidegrees: none",
                )
                .field(
                    i16::MIN.to_le_bytes(),
                    "context.longitude_centidegrees: none",
                )
                .field([0, 0], "context.country: none")
                .u8(0, "context.step_up_verified: false")
                .string(PROMPTPAY_STATIC, "payload")
                .0,
        },
        Vector {
            name: "status",
            request_id: 4,
            message: Message::Status,
            body: Vec::new(),
        },
        Vector {
            name: "status_reply",
            request_id: 4,
            message: Message::StatusReply {
                fields: vec![
                    ("connections".to_owned(), 3),
                    ("commands_total".to_owned(), 2),
                ],
            },
            body: Body::default()
                .len(2, "fields")
                .string("connections", "[0].name")
                .u64(3, "[0].value")
                .string("commands_total", "[1].name")
                .u64(2, "[1].value")
                .0,
        },
        Vector {
            name: "set_risk_policy",
            request_id: 7,
            message: Message::SetRiskPolicy {
                policy: Box::new(policy),
            },
            body: Body::default()
                .len(33, "policy: 33 bytes")
                .u8(1, "blocked_countries: Some")
                .u8(1, "action: decline")
                .u8(0, "freeze: false")
                .len(1, "countries")
                .field(*b"KP", "\"KP\"")
                .u8(0, "blocked_merchants: None")
                .u8(0, "blocked_mccs: None")
                .u8(0, "single_payment: None")
                .u8(0, "daily_outflow: None")
                .u8(0, "monthly_outflow: None")
                .u8(1, "velocity: Some")
                .u8(2, "action: step_up")
                .u8(0, "freeze: false")
                .u8(10, "payments_max")
                .u64(600_000_000_000, "window_ns: 600 s")
                .u8(0, "new_device: None")
                .u8(0, "impossible_travel: None")
                .u8(0, "amount_anomaly: None")
                .0,
        },
        Vector {
            name: "risk_policy_set",
            request_id: 7,
            message: Message::RiskPolicySet {
                status: Status::Ok,
                digest: policy_digest,
            },
            body: Body::default()
                .u16(0, "status: Ok")
                .field(
                    policy_digest,
                    "digest: RiskPolicy::digest of the policy now in force",
                )
                .0,
        },
        Vector {
            name: "history_query",
            request_id: 6,
            message: Message::HistoryQuery {
                account: AccountId(1001),
                from_ns: 0,
                to_ns: u64::MAX,
                cursor: 0,
                limit: 50,
            },
            body: Body::default()
                .u64(1001, "account")
                .u64(0, "from_ns")
                .u64(u64::MAX, "to_ns")
                .u128(0, "cursor: 0 = from the newest")
                .u32(50, "limit")
                .0,
        },
        Vector {
            name: "history_page",
            request_id: 6,
            message: Message::HistoryPage {
                entries: vec![withdrawal_movement(), movement()],
                next_cursor: 0,
            },
            body: {
                let mut body = Body::default().len(2, "entries");
                body.0.extend(withdrawal_movement_body("[0]").0);
                body.0.extend(movement_body("[1]").0);
                body.u128(0, "next_cursor: 0 = last page").0
            },
        },
        Vector {
            name: "tx_query",
            request_id: 7,
            message: Message::TxQuery { id: CommandId(2) },
            body: Body::default().u128(2, "id").0,
        },
        Vector {
            name: "tx_reply",
            request_id: 7,
            message: Message::TxReply {
                source: TxSource::Record,
                status: Status::Ok,
                legs: vec![movement()],
            },
            body: {
                let mut body = Body::default()
                    .u8(1, "source: Record")
                    .u16(0, "status: Ok")
                    .len(1, "legs");
                body.0.extend(movement_body("[0]").0);
                body.0
            },
        },
        Vector {
            name: "backup",
            request_id: 8,
            message: Message::Backup {
                dir: "/backups/payrail-1".to_owned(),
            },
            body: Body::default().string("/backups/payrail-1", "dir").0,
        },
        Vector {
            name: "backup_reply",
            request_id: 8,
            message: Message::BackupReply { last_sequence: 42 },
            body: Body::default().u64(42, "last_sequence").0,
        },
        Vector {
            name: "error",
            request_id: 5,
            message: Message::Error {
                code: ErrorCode::BatchTooLarge,
                message: error_text.to_owned(),
            },
            body: Body::default()
                .u16(8, "code: BatchTooLarge")
                .string(error_text, "message")
                .0,
        },
    ]
}

fn encode(request_id: u64, message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode(request_id, message, &mut out).unwrap();
    out
}

fn decode(bytes: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
    wire::decode(bytes, &WireLimits::default())
}

fn decode_error(bytes: &[u8]) -> WireError {
    match decode(bytes) {
        Err(error) => error,
        other => panic!("expected an error, got {other:?}"),
    }
}

/// The header of a frame, field by field with comments.
fn header_fields(frame: &[u8], name: &str) -> Vec<(Vec<u8>, String)> {
    let u16_at = |at: usize| u16::from_le_bytes([frame[at], frame[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes(frame[at..at + 4].try_into().unwrap());
    let u64_at = |at: usize| u64::from_le_bytes(frame[at..at + 8].try_into().unwrap());
    let body_len = u32_at(16);
    vec![
        (frame[0..4].to_vec(), "magic \"PRL1\"".to_owned()),
        (frame[4..6].to_vec(), format!("version = {}", u16_at(4))),
        (
            frame[6..8].to_vec(),
            format!("kind = {} ({name})", u16_at(6)),
        ),
        (frame[8..16].to_vec(), format!("request_id = {}", u64_at(8))),
        (frame[16..20].to_vec(), format!("body_len = {body_len}")),
        (frame[20..24].to_vec(), "reserved = 0".to_owned()),
        (
            frame[24..28].to_vec(),
            format!("body_checksum = {:#010x} (crc32c of the body)", u32_at(24)),
        ),
        (
            frame[28..32].to_vec(),
            format!(
                "header_checksum = {:#010x} (crc32c of bytes 0..28)",
                u32_at(28)
            ),
        ),
    ]
}

/// The annotated hex block the document shows for a vector.
fn annotated_hex(vector: &Vector) -> String {
    let frame = encode(vector.request_id, &vector.message);
    let mut lines = header_fields(&frame, vector.name);
    lines.extend(vector.body.iter().cloned());
    let mut text = String::new();
    for (bytes, comment) in lines {
        // 16 bytes a row; the comment on the first.
        for (row, chunk) in bytes.chunks(16).enumerate() {
            let hex = hex::encode(chunk);
            if row == 0 {
                text.push_str(&format!("{hex:<32}  # {comment}\n"));
            } else {
                text.push_str(&format!("{hex}\n"));
            }
        }
        if bytes.is_empty() {
            text.push_str(&format!("{:<32}  # {comment}\n", ""));
        }
    }
    text
}

/// The vectors in docs/protocol.md: a line `#### Vector: <name>`, then a
/// fenced block tagged `hex`. In the block, `#` starts a comment and
/// whitespace is ignored.
fn document_vectors() -> BTreeMap<String, Vec<u8>> {
    let document = std::fs::read_to_string(PROTOCOL_MD).unwrap();
    let mut vectors = BTreeMap::new();
    let mut name: Option<String> = None;
    let mut hex_text: Option<String> = None;
    for line in document.lines() {
        if let Some(text) = hex_text.as_mut() {
            if line.trim() == "```" {
                let name = name.take().expect("a name before the hex block");
                let bytes = hex::decode(text.as_str()).unwrap_or_else(|error| {
                    panic!("vector {name}: bad hex: {error}");
                });
                assert!(
                    vectors.insert(name.clone(), bytes).is_none(),
                    "{name} twice"
                );
                hex_text = None;
            } else {
                let data = line.split('#').next().unwrap_or("");
                text.extend(data.chars().filter(|c| !c.is_whitespace()));
            }
        } else if let Some(rest) = line.strip_prefix("#### Vector: ") {
            name = Some(rest.trim().to_owned());
        } else if line.trim() == "```hex" {
            assert!(
                name.is_some(),
                "a ```hex block without a `#### Vector:` line"
            );
            hex_text = Some(String::new());
        }
    }
    assert!(hex_text.is_none(), "unterminated hex block");
    vectors
}

#[test]
fn document_vectors_decode_and_reencode_identically() {
    let document = document_vectors();
    let expected = vectors();
    let names: Vec<&str> = expected.iter().map(|vector| vector.name).collect();
    let document_names: Vec<&str> = document.keys().map(String::as_str).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(document_names, sorted, "the document's vectors");
    for vector in &expected {
        let bytes = &document[vector.name];
        let (frame, used) = decode(bytes)
            .unwrap_or_else(|error| panic!("{}: {error}", vector.name))
            .unwrap_or_else(|| panic!("{}: incomplete", vector.name));
        assert_eq!(used, bytes.len(), "{}", vector.name);
        assert_eq!(frame.request_id, vector.request_id, "{}", vector.name);
        assert_eq!(frame.message, vector.message, "{}", vector.name);
        assert_eq!(
            &encode(frame.request_id, &frame.message),
            bytes,
            "{}",
            vector.name
        );
    }
}

#[test]
fn every_message_kind_has_a_vector() {
    let mut seen: Vec<u16> = vectors()
        .iter()
        .map(|vector| vector.message.kind())
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        kinds::ALL,
        "every message kind needs a vector: add it to vectors() here, then print the \
         document's vectors (see the top of this file) into docs/protocol.md"
    );
    for vector in vectors() {
        assert_eq!(vector.message.kind_name(), vector.name);
    }
}

/// The layout described in the document, built by hand, equals the codec's.
#[test]
fn documented_layout_matches_the_codec() {
    for vector in vectors() {
        let frame = encode(vector.request_id, &vector.message);
        let body: Vec<u8> = vector
            .body
            .iter()
            .flat_map(|(bytes, _)| bytes.clone())
            .collect();
        assert_eq!(&frame[HEADER_LEN..], &body[..], "{} body", vector.name);
        let kind = vector.message.kind();
        let mut header = Vec::new();
        header.extend_from_slice(b"PRL1");
        header.extend_from_slice(&1u16.to_le_bytes());
        header.extend_from_slice(&kind.to_le_bytes());
        header.extend_from_slice(&vector.request_id.to_le_bytes());
        header.extend_from_slice(&(body.len() as u32).to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
        let header_checksum = crc32c::crc32c(&header);
        header.extend_from_slice(&header_checksum.to_le_bytes());
        assert_eq!(&frame[..HEADER_LEN], &header[..], "{} header", vector.name);
    }
}

#[test]
fn hello_vector_proof_is_the_hmac_of_the_challenge() {
    let gateway = "gw-tokyo-1";
    let vectors = vectors();
    let hello = vectors
        .iter()
        .find(|vector| vector.name == "hello")
        .unwrap();
    let Message::Hello { proof, .. } = &hello.message else {
        panic!("not a hello");
    };
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(EXAMPLE_SECRET).unwrap();
    mac.update(&nonce());
    mac.update(gateway.as_bytes());
    assert!(mac.verify_slice(proof).is_ok());
}

/// Prints the vectors section of docs/protocol.md.
#[test]
#[ignore = "prints the document's vectors"]
fn print_vectors() {
    for vector in vectors() {
        println!("#### Vector: {}\n", vector.name);
        println!("```hex\n{}```\n", annotated_hex(&vector));
    }
}

const TABLE_HEAD: &str = "| code | variant | name | description |\n| ---: | --- | --- | --- |\n";

fn status_table() -> String {
    let mut text = String::from(TABLE_HEAD);
    for status in Status::ALL {
        text.push_str(&format!(
            "| {} | `{status:?}` | `{}` | {} |\n",
            status.code(),
            status.name(),
            status.description()
        ));
    }
    text
}

fn error_code_table() -> String {
    let mut text = String::from(TABLE_HEAD);
    for code in ErrorCode::ALL {
        text.push_str(&format!(
            "| {} | `{code:?}` | `{}` | {} |\n",
            code.code(),
            code.name(),
            code.description()
        ));
    }
    text
}

#[test]
#[ignore = "prints the document's tables"]
fn print_tables() {
    println!("{}\n{}", error_code_table(), status_table());
}

#[test]
fn document_tables_match_the_code() {
    let document = std::fs::read_to_string(PROTOCOL_MD).unwrap();
    assert!(
        document.contains(&status_table()),
        "docs/protocol.md's status table is stale; replace it with:\n{}",
        status_table()
    );
    assert!(
        document.contains(&error_code_table()),
        "docs/protocol.md's error code table is stale:\n{}",
        error_code_table()
    );
}

// ---------------------------------------------------------------------------
// Negative cases: each refused with the right error.

fn submit_frame() -> Vec<u8> {
    let message = vectors()
        .into_iter()
        .find(|vector| vector.name == "submit")
        .unwrap()
        .message;
    encode(9, &message)
}

/// Recomputes body_len and both checksums of a hand-edited frame.
fn reseal(frame: &mut [u8]) {
    let body_len = (frame.len() - HEADER_LEN) as u32;
    frame[16..20].copy_from_slice(&body_len.to_le_bytes());
    let body_checksum = crc32c::crc32c(&frame[HEADER_LEN..]);
    frame[24..28].copy_from_slice(&body_checksum.to_le_bytes());
    let header_checksum = crc32c::crc32c(&frame[..28]);
    frame[28..32].copy_from_slice(&header_checksum.to_le_bytes());
}

fn raw(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode_raw(7, kind, body, &mut out).unwrap();
    out
}

fn bincode_body<T: bincode::Encode>(value: T) -> Vec<u8> {
    let config = bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian();
    bincode::encode_to_vec(value, config).unwrap()
}

#[test]
fn truncated_frames_are_incomplete() {
    let frame = submit_frame();
    let limits = WireLimits::default();
    for len in 0..frame.len() {
        let needed = if len < HEADER_LEN {
            HEADER_LEN
        } else {
            frame.len()
        };
        assert_eq!(
            wire::check(&frame[..len], &limits),
            Ok(Check::Incomplete { needed }),
            "{len}"
        );
        assert_eq!(decode(&frame[..len]), Ok(None), "{len}");
    }
    assert_eq!(
        wire::check(&frame, &limits),
        Ok(Check::Complete {
            frame_len: frame.len()
        })
    );
}

#[test]
fn frames_decode_one_at_a_time_from_a_stream() {
    let mut stream = submit_frame();
    let status = encode(10, &Message::Status);
    stream.extend_from_slice(&status);
    stream.extend_from_slice(&status[..5]);
    let (first, used) = decode(&stream).unwrap().unwrap();
    assert_eq!(first.request_id, 9);
    let (second, used_second) = decode(&stream[used..]).unwrap().unwrap();
    assert_eq!(second.message, Message::Status);
    assert_eq!(decode(&stream[used + used_second..]), Ok(None));
}

#[test]
fn wrong_magic() {
    let mut frame = submit_frame();
    frame[0] = b'X';
    reseal(&mut frame);
    let error = decode_error(&frame);
    assert_eq!(error, WireError::BadMagic { found: *b"XRL1" });
    assert_eq!(error.code(), ErrorCode::BadMagic);
    assert!(error.is_header_error());
    // Refused from the header alone.
    assert_eq!(
        wire::check(&frame[..HEADER_LEN], &WireLimits::default()),
        Err(error)
    );
}

#[test]
fn bad_version() {
    let mut frame = submit_frame();
    frame[4..6].copy_from_slice(&2u16.to_le_bytes());
    // Version is checked before the header checksum: a peer speaking
    // another version hears that, resealed or not.
    let expected = WireError::UnsupportedVersion {
        found: 2,
        supported: 1,
    };
    assert_eq!(decode_error(&frame), expected);
    reseal(&mut frame);
    assert_eq!(decode_error(&frame), expected);
    assert_eq!(expected.code(), ErrorCode::UnsupportedVersion);
}

#[test]
fn bad_header_checksum() {
    let mut frame = submit_frame();
    frame[8] ^= 0x01; // request_id
    let error = decode_error(&frame);
    assert!(matches!(error, WireError::HeaderChecksum { .. }), "{error}");
    assert_eq!(error.code(), ErrorCode::HeaderChecksum);
    assert_eq!(wire::peek_request_id(&frame), None);
}

#[test]
fn bad_body_checksum() {
    let mut frame = submit_frame();
    let last = frame.len() - 1;
    frame[last] ^= 0x01;
    // The header alone is fine.
    assert_eq!(
        wire::check(&frame, &WireLimits::default()),
        Ok(Check::Complete {
            frame_len: frame.len()
        })
    );
    let error = decode_error(&frame);
    assert!(matches!(error, WireError::BodyChecksum { .. }), "{error}");
    assert_eq!(error.code(), ErrorCode::BodyChecksum);
    assert!(!error.is_header_error());
    assert_eq!(wire::peek_request_id(&frame), Some(9));
}

#[test]
fn reserved_not_zero() {
    let mut frame = submit_frame();
    frame[23] = 0x80;
    reseal(&mut frame);
    let error = decode_error(&frame);
    assert_eq!(error, WireError::ReservedNotZero { found: 0x8000_0000 });
    assert_eq!(error.code(), ErrorCode::ReservedNotZero);
}

#[test]
fn oversized_length_is_refused_from_the_header_alone() {
    let limits = WireLimits::default();
    let mut header = submit_frame()[..HEADER_LEN].to_vec();
    // One byte over the default: body_len + 32 = 1 MiB + 1.
    let body_len = (1u32 << 20) - HEADER_LEN as u32 + 1;
    header[16..20].copy_from_slice(&body_len.to_le_bytes());
    let checksum = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&checksum.to_le_bytes());
    let expected = WireError::FrameTooLarge {
        frame_len: (1 << 20) + 1,
        max: 1 << 20,
    };
    assert_eq!(wire::check(&header, &limits), Err(expected.clone()));
    assert_eq!(decode_error(&header), expected);
    assert_eq!(expected.code(), ErrorCode::FrameTooLarge);

    // Exactly at the limit is only incomplete.
    let body_len = (1u32 << 20) - HEADER_LEN as u32;
    header[16..20].copy_from_slice(&body_len.to_le_bytes());
    let checksum = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&checksum.to_le_bytes());
    assert_eq!(
        wire::check(&header, &limits),
        Ok(Check::Incomplete { needed: 1 << 20 })
    );

    // A smaller configured limit applies; the largest u32 length too.
    let small = WireLimits {
        frame_bytes_max: 64,
        ..limits
    };
    let frame = submit_frame();
    assert!(matches!(
        wire::check(&frame[..HEADER_LEN], &small),
        Err(WireError::FrameTooLarge { max: 64, .. })
    ));
    header[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    let checksum = crc32c::crc32c(&header[..28]);
    header[28..32].copy_from_slice(&checksum.to_le_bytes());
    let huge = WireLimits {
        frame_bytes_max: u32::MAX,
        ..limits
    };
    assert_eq!(
        wire::check(&header, &huge),
        Err(WireError::FrameTooLarge {
            frame_len: u64::from(u32::MAX) + 32,
            max: wire::FRAME_BYTES_MAX_CEILING,
        })
    );
}

#[test]
fn unknown_kind() {
    // Every kind number not in use is refused from the header.
    let mut unknown = 0;
    for kind in 0..=u16::MAX {
        if kinds::name(kind).is_some() {
            continue;
        }
        let frame = raw(kind, &[]);
        let expected = WireError::UnknownMessageKind { kind };
        assert_eq!(decode_error(&frame), expected);
        assert_eq!(
            wire::check(&frame[..HEADER_LEN], &WireLimits::default()),
            Err(expected)
        );
        unknown += 1;
    }
    assert_eq!(unknown, 65_536 - kinds::ALL.len());
    assert_eq!(
        WireError::UnknownMessageKind { kind: 0 }.code(),
        ErrorCode::UnknownMessageKind
    );
}

#[test]
fn malformed_bodies() {
    let deposit = CommandKind::Deposit {
        account: AccountId(1),
        amount: 1,
        currency: Currency::CNY,
    };
    let mut unknown_command = bincode_body(vec![Command::new(1, deposit)]);
    unknown_command[8 + 16..8 + 20].copy_from_slice(&99u32.to_le_bytes());

    let mut unknown_status = bincode_body(vec![CommandResult::new(Status::Ok)]);
    unknown_status[8..10].copy_from_slice(&u16::MAX.to_le_bytes());

    let mut not_utf8 = bincode_body(("gw".to_owned(), [0u8; 32]));
    not_utf8[8] = 0xFF;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "submit: unknown command variant",
            raw(kinds::SUBMIT, &unknown_command),
        ),
        (
            "results: unknown status code",
            raw(kinds::RESULTS, &unknown_status),
        ),
        ("challenge: 31 bytes", raw(kinds::CHALLENGE, &[0; 31])),
        ("welcome: empty", raw(kinds::WELCOME, &[])),
        ("hello: not UTF-8", raw(kinds::HELLO, &not_utf8)),
        (
            "error: unknown error code",
            raw(kinds::ERROR, &bincode_body((u16::MAX, String::new()))),
        ),
        (
            "submit: length says 8000, 60 bytes follow",
            raw(kinds::SUBMIT, &bincode_body((8_000u64, [0u8; 60]))),
        ),
        (
            "hello: name length past the end",
            raw(kinds::HELLO, &bincode_body((40u64, [b'a'; 10]))),
        ),
        (
            "query: unknown query variant",
            raw(kinds::QUERY, &bincode_body((1u64, 6u32, 1u64))),
        ),
    ];
    for (name, frame) in cases {
        let error = decode_error(&frame);
        assert!(
            matches!(error, WireError::MalformedBody { .. }),
            "{name}: {error:?}"
        );
        assert_eq!(error.code(), ErrorCode::MalformedBody, "{name}");
        assert!(!error.is_header_error(), "{name}");
    }
}

#[test]
fn fields_over_their_maximum() {
    let long_name = bincode_body(("g".repeat(65), [0u8; 32]));
    assert_eq!(
        decode_error(&raw(kinds::HELLO, &long_name)),
        WireError::FieldTooLong {
            field: "hello.gateway",
            len: 65,
            max: 64
        }
    );
    let long_message = bincode_body((1u16, "m".repeat(257)));
    let error = decode_error(&raw(kinds::ERROR, &long_message));
    assert_eq!(error.code(), ErrorCode::MalformedBody);
    // A lying length is refused before anything is allocated.
    let lying = bincode_body((u64::MAX, [0u8; 32]));
    assert!(matches!(
        decode_error(&raw(kinds::HELLO, &lying)),
        WireError::FieldTooLong { len: u64::MAX, .. }
    ));
    let too_many_fields = bincode_body(vec![(String::new(), 0u64); STATUS_FIELDS_MAX + 1]);
    assert!(matches!(
        decode_error(&raw(kinds::STATUS_REPLY, &too_many_fields)),
        WireError::FieldTooLong {
            field: "status_reply.fields",
            len: 513,
            ..
        }
    ));
    // The encoder refuses them too.
    let mut out = Vec::new();
    let hello = Message::Hello {
        gateway: "g".repeat(65),
        proof: [0; 32],
    };
    assert!(matches!(
        wire::encode(1, &hello, &mut out),
        Err(WireError::FieldTooLong { .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn trailing_bytes() {
    let status = raw(kinds::STATUS, &[0]);
    let error = decode_error(&status);
    assert_eq!(
        error,
        WireError::TrailingBytes {
            kind_name: "status",
            trailing: 1
        }
    );
    assert_eq!(error.code(), ErrorCode::MalformedBody);

    let mut frame = submit_frame();
    frame.extend_from_slice(&[0, 0, 0]);
    reseal(&mut frame);
    assert_eq!(
        decode_error(&frame),
        WireError::TrailingBytes {
            kind_name: "submit",
            trailing: 3
        }
    );
}

fn deposits(count: usize) -> Vec<Command> {
    (0..count)
        .map(|i| {
            Command::new(
                i as u128,
                CommandKind::Deposit {
                    account: AccountId(i as u64),
                    amount: 1,
                    currency: Currency::JPY,
                },
            )
        })
        .collect()
}

#[test]
fn batch_over_the_limit() {
    let full = Message::Submit {
        commands: deposits(BATCH_COMMANDS_MAX),
    };
    let frame = encode(1, &full);
    assert_eq!(decode(&frame).unwrap().unwrap().0.message, full);

    let over = encode(
        1,
        &Message::Submit {
            commands: deposits(8_191),
        },
    );
    let error = decode_error(&over);
    assert_eq!(
        error,
        WireError::BatchTooLarge {
            kind_name: "submit",
            count: 8_191,
            max: 8_190
        }
    );
    assert_eq!(error.code(), ErrorCode::BatchTooLarge);
    assert!(!error.is_header_error());

    // A lying count is refused from the count alone.
    let lying = raw(kinds::SUBMIT, &u64::MAX.to_le_bytes());
    assert!(matches!(
        decode_error(&lying),
        WireError::BatchTooLarge {
            count: u64::MAX,
            ..
        }
    ));
    // Results, Query and QueryResults have the same bound.
    let results = vec![CommandResult::new(Status::Ok); 8_191];
    let error = decode_error(&encode(1, &Message::Results { results }));
    assert_eq!(error.code(), ErrorCode::BatchTooLarge);

    // SubmitQr takes at most QR_BATCH_MAX payments.
    let payment = QrPaymentRequest {
        id: payrail_engine::CommandId(1),
        payer: AccountId(1),
        payload: PROMPTPAY_STATIC.to_owned(),
        amount: Some(1),
        tip: None,
        context: payrail_engine::RiskContext::NONE,
    };
    let full = Message::SubmitQr {
        payments: vec![payment.clone(); wire::QR_BATCH_MAX as usize],
    };
    assert_eq!(decode(&encode(1, &full)).unwrap().unwrap().0.message, full);
    let mut over = encode(1, &full);
    // Raise the count by one and append one more payment.
    let extra = encode(
        1,
        &Message::SubmitQr {
            payments: vec![payment],
        },
    );
    over.extend_from_slice(&extra[HEADER_LEN + 8..]);
    over[HEADER_LEN..HEADER_LEN + 8]
        .copy_from_slice(&(u64::from(wire::QR_BATCH_MAX) + 1).to_le_bytes());
    reseal(&mut over);
    assert!(matches!(
        decode_error(&over),
        WireError::BatchTooLarge {
            kind_name: "submit_qr",
            count: 257,
            max: 256
        }
    ));

    // encode_with_limits refuses what the receiver would.
    let mut out = Vec::new();
    let over = Message::Submit {
        commands: deposits(8_191),
    };
    assert!(matches!(
        wire::encode_with_limits(1, &over, &WireLimits::default(), &mut out),
        Err(WireError::BatchTooLarge { count: 8_191, .. })
    ));
    assert!(out.is_empty());
}

#[test]
fn empty_batch() {
    for message in [
        Message::Submit { commands: vec![] },
        Message::Query { queries: vec![] },
        Message::SubmitQr { payments: vec![] },
    ] {
        let error = decode_error(&encode(1, &message));
        assert_eq!(
            error,
            WireError::EmptyBatch {
                kind_name: message.kind_name()
            }
        );
        assert_eq!(error.code(), ErrorCode::EmptyBatch);
    }
    // Replies may be empty.
    let empty = Message::Results { results: vec![] };
    assert_eq!(
        decode(&encode(1, &empty)).unwrap().unwrap().0.message,
        empty
    );
}

/// The command, query and reply tables in the document: variant index and
/// encoded size.
#[test]
fn document_variant_tables_match_the_encoding() {
    let document = std::fs::read_to_string(PROTOCOL_MD).unwrap();
    let account = AccountId(1);
    let hold = payrail_engine::CommandId(2);
    let currency = Currency::CNY;
    let fx_order = FxOrder {
        from: account,
        to: AccountId(2),
        amount: 1_000,
        side: FxSide::Pay,
    };
    let kinds = [
        CommandKind::OpenAccount(payrail_engine::OpenAccount {
            account,
            owner: 1,
            kind: AccountKind::Merchant,
            currency,
            kyc_tier: 0,
            mcc: 5411,
        }),
        CommandKind::Deposit {
            account,
            amount: 1,
            currency,
        },
        CommandKind::Transfer {
            from: account,
            to: account,
            amount: 1,
            currency,
            context: payrail_engine::RiskContext::NONE,
        },
        CommandKind::WithdrawHold {
            account,
            amount: 1,
            currency,
            timeout_ms: 1,
            context: payrail_engine::RiskContext::NONE,
        },
        CommandKind::WithdrawPost { hold },
        CommandKind::WithdrawVoid { hold },
        CommandKind::Freeze { account },
        CommandKind::Unfreeze { account },
        CommandKind::Close { account },
        CommandKind::SetKycTier { account, tier: 1 },
        CommandKind::RegisterMerchantKey {
            merchant: account,
            key: payrail_engine::MerchantKey(3),
        },
        CommandKind::PayMerchantQr {
            payer: account,
            keys: [payrail_engine::MerchantKey(3); payrail_engine::command::QR_MERCHANT_KEYS_MAX],
            amount: 1,
            fee: 0,
            currency,
            mcc: 5411,
            context: payrail_engine::RiskContext::NONE,
        },
        CommandKind::IssuePaymentCode {
            customer: account,
            code: 123_456_789_012_345_678,
            lifetime_ms: 60_000,
        },
        CommandKind::ChargePaymentCode {
            merchant: account,
            code: 123_456_789_012_345_678,
            amount: 1,
            currency,
            context: payrail_engine::RiskContext::NONE,
        },
        CommandKind::Refund {
            payment: hold,
            amount: 1,
            currency,
        },
        CommandKind::SetBudget {
            account,
            category: 1,
            budget: Some(50_000),
        },
        CommandKind::SetFxRate(FxRateSet {
            base: Currency::USD,
            quote: Currency::JPY,
            mid: FxMid {
                mantissa: 15_025,
                scale: 2,
            },
            spread_bps: 30,
            valid_ms: 60_000,
            source: FxSource::new("ECB").unwrap(),
        }),
        CommandKind::SetFxFloor {
            currency: Currency::JPY,
            limit: 1_000_000,
        },
        CommandKind::FxQuote {
            order: fx_order,
            ttl_ms: 30_000,
        },
        CommandKind::FxConvertQuote {
            quote: hold,
            from: account,
        },
        CommandKind::FxConvert(fx_order),
        CommandKind::BindInstrument(payrail_engine::InstrumentBind {
            customer: account,
            number: 1,
            kind: payrail_engine::instrument::InstrumentKind::Card,
            token: payrail_engine::instrument::InstrumentToken::new("tok_abc").unwrap(),
            bank: payrail_engine::instrument::BankName::new("ICBC").unwrap(),
            country: *b"CN",
            last_four: *b"4242",
            currency,
        }),
        CommandKind::VerifyInstrument {
            instrument: INSTRUMENT,
            passed: true,
        },
        CommandKind::UnbindInstrument {
            instrument: INSTRUMENT,
        },
        CommandKind::DepositFrom {
            account,
            amount: 1,
            currency,
            instrument: INSTRUMENT,
        },
        CommandKind::WithdrawHoldTo {
            account,
            amount: 1,
            currency,
            timeout_ms: 60_000,
            context: payrail_engine::RiskContext::NONE,
            instrument: INSTRUMENT,
        },
    ];
    // Fails to compile when the engine grows a kind: add it above and to
    // the command table in docs/protocol.md.
    for kind in &kinds {
        match kind {
            CommandKind::OpenAccount(_)
            | CommandKind::Deposit { .. }
            | CommandKind::Transfer { .. }
            | CommandKind::WithdrawHold { .. }
            | CommandKind::WithdrawPost { .. }
            | CommandKind::WithdrawVoid { .. }
            | CommandKind::Freeze { .. }
            | CommandKind::Unfreeze { .. }
            | CommandKind::Close { .. }
            | CommandKind::SetKycTier { .. }
            | CommandKind::RegisterMerchantKey { .. }
            | CommandKind::PayMerchantQr { .. }
            | CommandKind::IssuePaymentCode { .. }
            | CommandKind::ChargePaymentCode { .. }
            | CommandKind::Refund { .. }
            | CommandKind::SetBudget { .. }
            | CommandKind::SetFxRate(_)
            | CommandKind::SetFxFloor { .. }
            | CommandKind::FxQuote { .. }
            | CommandKind::FxConvertQuote { .. }
            | CommandKind::FxConvert(_)
            | CommandKind::BindInstrument(_)
            | CommandKind::VerifyInstrument { .. }
            | CommandKind::UnbindInstrument { .. }
            | CommandKind::DepositFrom { .. }
            | CommandKind::WithdrawHoldTo { .. } => {}
        }
    }
    for (index, kind) in kinds.into_iter().enumerate() {
        let bytes = bincode_body(Command::new(1, kind));
        assert_row(
            &document,
            index,
            &format!("{kind:?}"),
            &bytes[16..],
            bytes.len(),
        );
    }
    let queries = [
        Query::Balance { account },
        Query::Command { id: hold },
        Query::RiskPolicy,
        Query::RiskAudit { account, index: 0 },
        Query::Spending {
            account,
            month: 0,
            category: 1,
        },
        Query::FxRate { index: 0 },
        Query::Instrument { account, index: 0 },
    ];
    for (index, query) in queries.into_iter().enumerate() {
        let bytes = bincode_body(query);
        assert_row(&document, index, &format!("{query:?}"), &bytes, bytes.len());
    }
    let replies = [
        QueryReply::Balance(account_view()),
        QueryReply::Command(Status::Ok),
        QueryReply::Refused(Status::UnknownAccount),
        QueryReply::RiskPolicy {
            digest: [0; 32],
            rules: payrail_engine::risk::RuleSet::EMPTY,
        },
        QueryReply::RiskAudit {
            entries: 1,
            entry: payrail_engine::risk::AuditEntry {
                rule: Some(RuleId::Velocity),
                ..payrail_engine::risk::AuditEntry::EMPTY
            },
        },
        QueryReply::Spending {
            month: 24_310,
            category: 1,
            spent: 0,
            budget: Some(1),
        },
        QueryReply::FxRate(FxRateView {
            base: Currency::USD,
            quote: Currency::JPY,
            mid: FxMid {
                mantissa: 15_025,
                scale: 2,
            },
            spread_bps: 30,
            source: FxSource::new("ECB").unwrap(),
            set_at: 1,
            valid_until: 2,
            rates_total: 1,
        }),
        QueryReply::Instrument(payrail_engine::instrument::InstrumentView {
            instrument: INSTRUMENT,
            kind: payrail_engine::instrument::InstrumentKind::Card,
            token: payrail_engine::instrument::InstrumentToken::new("tok_abc").unwrap(),
            bank: payrail_engine::instrument::BankName::new("ICBC").unwrap(),
            country: *b"CN",
            last_four: *b"4242",
            currency,
            state: payrail_engine::instrument::InstrumentState::Verified,
            bound_at: 1,
            changed_at: 2,
            instruments_total: 1,
        }),
    ];
    for (index, reply) in replies.into_iter().enumerate() {
        let bytes = bincode_body(reply);
        assert_row(&document, index, &format!("{reply:?}"), &bytes, bytes.len());
    }
    let risk = RiskDetail {
        verdict: Verdict::Decline,
        rule: RuleId::Velocity,
        limit: 1,
        observed: 2,
    };
    let budget = payrail_engine::BudgetDetail {
        category: payrail_engine::budget::Category::Travel,
        budget: 1,
        spent: 2,
    };
    let details = [
        Detail::None,
        Detail::Risk(risk),
        Detail::BudgetCrossed(budget),
        Detail::FlaggedOverBudget(risk, budget),
        Detail::FxConversion(FxAmounts {
            pay: 1,
            fee: 0,
            receive: 1,
            pay_currency: Currency::CNY,
            receive_currency: Currency::JPY,
            mid: FxMid {
                mantissa: 2_087,
                scale: 2,
            },
            inverse: false,
            expires_at: 0,
        }),
    ];
    for (index, detail) in details.into_iter().enumerate() {
        match detail {
            Detail::None
            | Detail::Risk(_)
            | Detail::BudgetCrossed(_)
            | Detail::FlaggedOverBudget(..)
            | Detail::FxConversion(_) => {}
        }
        let bytes = bincode_body(detail);
        assert_row(
            &document,
            index,
            &format!("{detail:?}"),
            &bytes,
            bytes.len(),
        );
    }
}

/// The document has a table row `| index | `Name` | ... | size | ...` for
/// a value whose encoding starts with the u32 variant index.
fn assert_row(document: &str, index: usize, debug: &str, encoded: &[u8], size: usize) {
    let variant = u32::from_le_bytes(encoded[..4].try_into().unwrap());
    assert_eq!(variant as usize, index, "{debug}");
    let name = debug.split(['(', ' ', '{']).next().unwrap();
    let prefix = format!("| {index} | `{name}` |");
    let size = format!("| {size} |");
    assert!(
        document
            .lines()
            .any(|line| line.starts_with(&prefix) && line.contains(&size)),
        "docs/protocol.md has no row `{prefix} ... {size}`"
    );
}

#[test]
fn crc32c_check_values_in_the_document() {
    assert_eq!(crc32c::crc32c(b""), 0);
    assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
}
