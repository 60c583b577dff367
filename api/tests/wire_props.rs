//! Property tests of the wire codec: every message round-trips, and no input
//! (arbitrary bytes, mutated frames) makes decoding panic; whatever decodes
//! re-encodes to the same bytes (the encoding is canonical).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use payrail_api::wire::{
    self, kinds, Check, ErrorCode, Message, QrPaymentRequest, TxSource, WireLimits,
    ERROR_MESSAGE_BYTES_MAX, HEADER_LEN,
};
use payrail_engine::budget::Category;
use payrail_engine::command::QR_MERCHANT_KEYS_MAX;
use payrail_engine::history::Movement;
use payrail_engine::risk::{AuditEntry, RiskPolicy, RuleFigures, RuleId, RuleSet, Verdict};
use payrail_engine::{
    AccountId, AccountKind, AccountStatus, AccountView, BudgetDetail, Command, CommandId,
    CommandKind, CommandResult, Currency, Detail, MerchantKey, OpenAccount, Query, QueryReply,
    RiskContext, RiskDetail, Status,
};
use proptest::prelude::*;

fn account() -> impl Strategy<Value = AccountId> {
    any::<u64>().prop_map(AccountId)
}

// Any u16: the codec carries currencies as they are; the ledger validates.
fn currency() -> impl Strategy<Value = Currency> {
    any::<u16>().prop_map(Currency::from_raw)
}

fn status() -> impl Strategy<Value = Status> {
    proptest::sample::select(Status::ALL)
}

fn account_kind() -> impl Strategy<Value = AccountKind> {
    prop_oneof![
        Just(AccountKind::Customer),
        Just(AccountKind::Merchant),
        Just(AccountKind::House),
    ]
}

/// Any context: the codec carries it as it is; the ledger validates.
fn risk_context() -> impl Strategy<Value = RiskContext> {
    (
        any::<u64>(),
        any::<i16>(),
        any::<i16>(),
        any::<[u8; 2]>(),
        any::<bool>(),
    )
        .prop_map(
            |(device, latitude_centidegrees, longitude_centidegrees, country, step_up_verified)| {
                RiskContext {
                    device,
                    latitude_centidegrees,
                    longitude_centidegrees,
                    country,
                    step_up_verified,
                }
            },
        )
}

fn command_result() -> impl Strategy<Value = CommandResult> {
    let risk = (
        proptest::sample::select(Verdict::ALL),
        proptest::sample::select(RuleId::ALL),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(verdict, rule, limit, observed)| RiskDetail {
            verdict,
            rule,
            limit,
            observed,
        });
    let budget = (
        proptest::sample::select(Category::ALL.to_vec()),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|(category, budget, spent)| BudgetDetail {
            category,
            budget,
            spent,
        });
    let detail = prop_oneof![
        Just(Detail::None),
        risk.clone().prop_map(Detail::Risk),
        budget.clone().prop_map(Detail::BudgetCrossed),
        (risk, budget).prop_map(|(risk, budget)| Detail::FlaggedOverBudget(risk, budget)),
    ];
    (status(), detail).prop_map(|(status, detail)| CommandResult::with_detail(status, detail))
}

/// Every command kind, every field arbitrary.
fn command_kind() -> impl Strategy<Value = CommandKind> {
    prop_oneof![
        (
            account(),
            any::<u64>(),
            account_kind(),
            currency(),
            any::<u8>(),
            any::<u16>()
        )
            .prop_map(|(account, owner, kind, currency, kyc_tier, mcc)| {
                CommandKind::OpenAccount(OpenAccount {
                    account,
                    owner,
                    kind,
                    currency,
                    kyc_tier,
                    mcc,
                })
            }),
        (account(), any::<u8>(), any::<Option<u64>>()).prop_map(|(account, category, budget)| {
            CommandKind::SetBudget {
                account,
                category,
                budget,
            }
        }),
        (account(), any::<u64>(), currency()).prop_map(|(account, amount, currency)| {
            CommandKind::Deposit {
                account,
                amount,
                currency,
            }
        }),
        (
            account(),
            account(),
            any::<u64>(),
            currency(),
            risk_context()
        )
            .prop_map(
                |(from, to, amount, currency, context)| CommandKind::Transfer {
                    from,
                    to,
                    amount,
                    currency,
                    context,
                }
            ),
        (
            account(),
            any::<u64>(),
            currency(),
            any::<u64>(),
            risk_context()
        )
            .prop_map(|(account, amount, currency, timeout_ms, context)| {
                CommandKind::WithdrawHold {
                    account,
                    amount,
                    currency,
                    timeout_ms,
                    context,
                }
            }),
        any::<u128>().prop_map(|hold| CommandKind::WithdrawPost {
            hold: CommandId(hold)
        }),
        any::<u128>().prop_map(|hold| CommandKind::WithdrawVoid {
            hold: CommandId(hold)
        }),
        account().prop_map(|account| CommandKind::Freeze { account }),
        account().prop_map(|account| CommandKind::Unfreeze { account }),
        account().prop_map(|account| CommandKind::Close { account }),
        (account(), any::<u8>())
            .prop_map(|(account, tier)| CommandKind::SetKycTier { account, tier }),
        (account(), any::<u128>()).prop_map(|(merchant, key)| {
            CommandKind::RegisterMerchantKey {
                merchant,
                key: MerchantKey(key),
            }
        }),
        (
            account(),
            any::<[u128; QR_MERCHANT_KEYS_MAX]>(),
            (any::<u64>(), any::<u64>()),
            currency(),
            any::<u16>(),
            risk_context()
        )
            .prop_map(|(payer, keys, (amount, fee), currency, mcc, context)| {
                CommandKind::PayMerchantQr {
                    payer,
                    keys: keys.map(MerchantKey),
                    amount,
                    fee,
                    currency,
                    mcc,
                    context,
                }
            }),
        (account(), any::<u64>(), any::<u64>()).prop_map(|(customer, code, lifetime_ms)| {
            CommandKind::IssuePaymentCode {
                customer,
                code,
                lifetime_ms,
            }
        }),
        (
            account(),
            any::<u64>(),
            any::<u64>(),
            currency(),
            risk_context()
        )
            .prop_map(|(merchant, code, amount, currency, context)| {
                CommandKind::ChargePaymentCode {
                    merchant,
                    code,
                    amount,
                    currency,
                    context,
                }
            }),
        (any::<u128>(), any::<u64>(), currency()).prop_map(|(payment, amount, currency)| {
            CommandKind::Refund {
                payment: CommandId(payment),
                amount,
                currency,
            }
        }),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    (any::<u128>(), command_kind()).prop_map(|(id, kind)| Command::new(id, kind))
}

fn account_view() -> impl Strategy<Value = AccountView> {
    (
        (account(), any::<u64>(), account_kind(), currency()),
        prop_oneof![
            Just(AccountStatus::Active),
            Just(AccountStatus::Frozen),
            Just(AccountStatus::Closed),
        ],
        (any::<u8>(), any::<u16>(), any::<i64>()),
        (any::<u64>(), any::<u64>(), any::<i64>()),
    )
        .prop_map(
            |(
                (account, owner, kind, currency),
                status,
                (kyc_tier, mcc, balance),
                (debits_pending, credits_pending, available),
            )| AccountView {
                account,
                owner,
                kind,
                currency,
                status,
                kyc_tier,
                mcc,
                balance,
                debits_pending,
                credits_pending,
                available,
            },
        )
}

fn query() -> impl Strategy<Value = Query> {
    prop_oneof![
        account().prop_map(|account| Query::Balance { account }),
        any::<u128>().prop_map(|id| Query::Command { id: CommandId(id) }),
        Just(Query::RiskPolicy),
        (account(), any::<u8>()).prop_map(|(account, index)| Query::RiskAudit { account, index }),
        (account(), any::<u32>(), any::<u8>()).prop_map(|(account, month, category)| {
            Query::Spending {
                account,
                month,
                category,
            }
        }),
    ]
}

fn query_reply() -> impl Strategy<Value = QueryReply> {
    prop_oneof![
        account_view().prop_map(QueryReply::Balance),
        status().prop_map(QueryReply::Command),
        status().prop_map(QueryReply::Refused),
        (any::<[u8; 32]>(), any::<u16>()).prop_map(|(digest, rules)| QueryReply::RiskPolicy {
            digest,
            rules: RuleSet(rules),
        }),
        (
            any::<u8>(),
            any::<(u64, u128, u64, u64, u64)>(),
            proptest::sample::select(Verdict::ALL),
            proptest::option::of(proptest::sample::select(RuleId::ALL)),
            any::<(bool, u16, u16, u16)>(),
            currency(),
        )
            .prop_map(
                |(
                    entries,
                    (timestamp, command, amount, limit, observed),
                    verdict,
                    rule,
                    (freeze, fired, flags, stepped_up),
                    currency,
                )| QueryReply::RiskAudit {
                    entries,
                    entry: AuditEntry {
                        timestamp,
                        command: CommandId(command),
                        currency,
                        amount,
                        verdict,
                        rule,
                        figures: RuleFigures { limit, observed },
                        freeze,
                        fired: RuleSet(fired),
                        flags: RuleSet(flags),
                        stepped_up: RuleSet(stepped_up),
                    },
                }
            ),
        (
            any::<u32>(),
            any::<u8>(),
            any::<u64>(),
            any::<Option<u64>>()
        )
            .prop_map(|(month, category, spent, budget)| QueryReply::Spending {
                month,
                category,
                spent,
                budget,
            }),
    ]
}

/// Text of at most `bytes_max` UTF-8 bytes, multi-byte characters included.
fn text(bytes_max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<char>(), 0..=bytes_max / 4 + 2).prop_map(move |chars| {
        let mut text = String::new();
        for c in chars {
            if text.len() + c.len_utf8() > bytes_max {
                break;
            }
            text.push(c);
        }
        text
    })
}

fn qr_payment() -> impl Strategy<Value = QrPaymentRequest> {
    (
        any::<u128>(),
        account(),
        text(300),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        risk_context(),
    )
        .prop_map(
            |(id, payer, payload, amount, tip, context)| QrPaymentRequest {
                id: CommandId(id),
                payer,
                payload,
                amount,
                tip,
                context,
            },
        )
}

fn movement() -> impl Strategy<Value = Movement> {
    (
        (
            account(),
            account(),
            any::<u128>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            any::<u32>(),
            any::<i64>(),
            any::<i64>(),
            currency(),
            any::<u16>(),
        ),
        text(payrail_engine::history::MOVEMENT_KIND_BYTES_MAX),
        proptest::option::of((any::<u32>(), "[A-Z][A-Za-z ]{0,14}[a-z]", "[0-9]{4}")),
    )
        .prop_map(
            |(
                (account, counterparty, command, sequence, timestamp),
                (position, amount, balance, currency, mcc),
                kind,
                instrument,
            )| Movement {
                account,
                counterparty,
                command: CommandId(command),
                sequence,
                timestamp,
                position,
                kind: kind.into(),
                amount,
                balance,
                currency,
                mcc,
                instrument: instrument.map(|(number, bank, digits): (u32, String, String)| {
                    let mut last_four = [0u8; 4];
                    last_four.copy_from_slice(digits.as_bytes());
                    payrail_engine::history::MovementInstrument {
                        number,
                        bank: payrail_engine::instrument::BankName::new(&bank).unwrap(),
                        last_four,
                    }
                }),
            },
        )
}

/// The history, tx and backup messages.
fn operations_message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            account(),
            any::<u64>(),
            any::<u64>(),
            any::<u128>(),
            any::<u32>()
        )
            .prop_map(
                |(account, from_ns, to_ns, cursor, limit)| Message::HistoryQuery {
                    account,
                    from_ns,
                    to_ns,
                    cursor,
                    limit,
                }
            ),
        (proptest::collection::vec(movement(), 0..8), any::<u128>()).prop_map(
            |(entries, next_cursor)| Message::HistoryPage {
                entries,
                next_cursor,
            }
        ),
        any::<u128>().prop_map(|id| Message::TxQuery { id: CommandId(id) }),
        (
            proptest::sample::select(vec![TxSource::Unknown, TxSource::Record, TxSource::History]),
            status(),
            proptest::collection::vec(movement(), 0..4),
        )
            .prop_map(|(source, status, legs)| Message::TxReply {
                source,
                status,
                legs,
            }),
        text(wire::BACKUP_DIR_BYTES_MAX).prop_map(|dir| Message::Backup { dir }),
        any::<u64>().prop_map(|last_sequence| Message::BackupReply { last_sequence }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        operations_message(),
        any::<[u8; 32]>().prop_map(|nonce| Message::Challenge { nonce }),
        (text(wire::GATEWAY_NAME_BYTES_MAX), any::<[u8; 32]>())
            .prop_map(|(gateway, proof)| Message::Hello { gateway, proof }),
        (any::<u32>(), any::<u32>(), any::<u32>()).prop_map(
            |(frame_bytes_max, batch_commands_max, inflight_max)| Message::Welcome {
                frame_bytes_max,
                batch_commands_max,
                inflight_max,
            }
        ),
        proptest::collection::vec(command(), 1..64)
            .prop_map(|commands| Message::Submit { commands }),
        proptest::collection::vec(command_result(), 0..64)
            .prop_map(|results| Message::Results { results }),
        proptest::collection::vec(query(), 1..64).prop_map(|queries| Message::Query { queries }),
        proptest::collection::vec(query_reply(), 0..32)
            .prop_map(|replies| Message::QueryResults { replies }),
        proptest::collection::vec(qr_payment(), 1..8)
            .prop_map(|payments| Message::SubmitQr { payments }),
        Just(Message::Status),
        prop_oneof![Just(RiskPolicy::example()), Just(RiskPolicy::disabled()),].prop_map(
            |policy| Message::SetRiskPolicy {
                policy: Box::new(policy)
            }
        ),
        (status(), any::<[u8; 32]>())
            .prop_map(|(status, digest)| Message::RiskPolicySet { status, digest }),
        proptest::collection::vec(
            (text(wire::STATUS_FIELD_NAME_BYTES_MAX), any::<u64>()),
            0..32
        )
        .prop_map(|fields| Message::StatusReply { fields }),
        (
            proptest::sample::select(ErrorCode::ALL),
            text(ERROR_MESSAGE_BYTES_MAX)
        )
            .prop_map(|(code, message)| Message::Error { code, message }),
    ]
}

/// Recomputes body_len and both checksums, so a mutated body reaches the
/// body decoder instead of stopping at a checksum.
fn reseal(frame: &mut [u8]) {
    let body_len = (frame.len() - HEADER_LEN) as u32;
    frame[16..20].copy_from_slice(&body_len.to_le_bytes());
    let body_checksum = crc32c::crc32c(&frame[HEADER_LEN..]);
    frame[24..28].copy_from_slice(&body_checksum.to_le_bytes());
    let header_checksum = crc32c::crc32c(&frame[..28]);
    frame[28..32].copy_from_slice(&header_checksum.to_le_bytes());
}

/// Decodes `bytes` with check and decode; they must agree, nothing may
/// panic, and whatever decodes must re-encode to exactly the bytes it came
/// from.
fn decode_and_compare(bytes: &[u8]) {
    let limits = WireLimits::default();
    let checked = wire::check(bytes, &limits);
    let decoded = wire::decode(bytes, &limits);
    match (&checked, &decoded) {
        (Ok(Check::Incomplete { needed }), Ok(None)) => assert!(*needed > bytes.len()),
        (Ok(Check::Complete { frame_len }), Ok(Some((frame, used)))) => {
            assert_eq!(frame_len, used);
            let mut again = Vec::new();
            wire::encode(frame.request_id, &frame.message, &mut again).unwrap();
            assert_eq!(&again[..], &bytes[..*used]);
        }
        // A body error: the header was fine.
        (Ok(Check::Complete { .. }), Err(error)) => assert!(!error.is_header_error(), "{error}"),
        // A header error: both say the same.
        (Err(check_error), Err(decode_error)) => {
            assert_eq!(check_error, decode_error);
            assert!(check_error.is_header_error());
        }
        other => panic!("check and decode disagree: {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_message_round_trips(request_id in any::<u64>(), message in message()) {
        let mut frame = vec![0xAA, 0xBB];
        wire::encode(request_id, &message, &mut frame).unwrap();
        let frame = &frame[2..];
        let limits = WireLimits::default();
        prop_assert_eq!(
            wire::check(frame, &limits),
            Ok(Check::Complete { frame_len: frame.len() })
        );
        let (decoded, used) = wire::decode(frame, &limits).unwrap().unwrap();
        prop_assert_eq!(used, frame.len());
        prop_assert_eq!(decoded.request_id, request_id);
        prop_assert_eq!(&decoded.message, &message);
        // Any strict prefix is only incomplete.
        for cut in [0, 1, HEADER_LEN - 1, HEADER_LEN, frame.len() - 1] {
            if cut < frame.len() {
                prop_assert_eq!(wire::decode(&frame[..cut], &limits), Ok(None));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_and_compare(&bytes);
    }

    /// Arbitrary bodies behind a valid header of every kind: this reaches
    /// the body decoder far more often than arbitrary bytes.
    #[test]
    fn arbitrary_bodies_never_panic(
        kind in proptest::sample::select(kinds::ALL),
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut frame = Vec::new();
        wire::encode_raw(1, kind, &body, &mut frame).unwrap();
        decode_and_compare(&frame);
    }

    #[test]
    fn mutated_frames_never_panic(
        message in message(),
        mutations in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..8),
        resealed in any::<bool>(),
    ) {
        let mut frame = Vec::new();
        wire::encode(7, &message, &mut frame).unwrap();
        for (index, byte, how) in mutations {
            let at = index.index(frame.len());
            match how {
                0 => frame[at] = byte,
                1 => frame[at] ^= 1 << (byte % 8),
                2 => frame.insert(at, byte),
                _ => {
                    if frame.len() > HEADER_LEN {
                        frame.remove(at.max(HEADER_LEN).min(frame.len() - 1));
                    }
                }
            }
        }
        if resealed && frame.len() >= HEADER_LEN {
            reseal(&mut frame);
        }
        decode_and_compare(&frame);
    }
}
