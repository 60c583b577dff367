//! EMVCo Merchant-Presented Mode QR payloads at the api edge: parsing what
//! a customer's app scanned, generating a dynamic code for a merchant, and
//! drawing it for a terminal.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use payrail_api::qr::{self, Decimal, MerchantAccountInfo, MerchantQr};
use payrail_engine::Currency;

/// A typical dynamic code: PayNow (Singapore), UEN proxy, amount, expiry
/// and a bill reference; 155 characters, about what a till shows.
fn dynamic_code() -> MerchantQr {
    let account = MerchantAccountInfo {
        tag: 26,
        gui: "SG.PAYNOW".to_owned(),
        fields: vec![
            (1, "2".to_owned()),
            (2, "201403121W".to_owned()),
            (3, "0".to_owned()),
            (4, "20261231".to_owned()),
        ],
    };
    let mut code = MerchantQr::dynamic_code(
        account,
        5812,
        Currency::SGD,
        "SG",
        "HARBOUR CAFE",
        "SINGAPORE",
        Decimal::new(1_250, 2),
    );
    code.additional.bill_number = Some("INV-2026-000123".to_owned());
    code
}

/// The Bacen "Manual do BR Code" multi-arrangement example: two merchant
/// templates, a card network account, an unreserved template (docs/qr.md).
const BR_CODE_MANUAL: &str = "00020104141234567890123426580014BR.GOV.BCB.PIX0136123e4567-e12b-12d1-a456-42665544000027300012BR.COM.OUTRO011001234567895204000053039865406123.455802BR5917NOME DO RECEBEDOR6008BRASILIA61087007490062190515RP12345678-201980390012BR.COM.OUTRO01190123.ABCD.3456.WXYZ6304AD38";

fn bench_qr(c: &mut Criterion) {
    let code = dynamic_code();
    let dynamic = qr::generate(&code).unwrap();
    assert_eq!(qr::parse(&dynamic).unwrap().amount_minor(), Some(1_250));

    let mut group = c.benchmark_group("qr");
    for (name, payload) in [
        ("parse/paynow_dynamic", dynamic.as_str()),
        ("parse/br_code_manual", BR_CODE_MANUAL),
    ] {
        group.throughput(Throughput::Bytes(payload.len() as u64));
        group.bench_function(name, |b| b.iter(|| qr::parse(black_box(payload)).unwrap()));
    }
    group.throughput(Throughput::Bytes(dynamic.len() as u64));
    group.bench_function("generate/paynow_dynamic", |b| {
        b.iter(|| qr::generate(black_box(&code)).unwrap())
    });
    group.bench_function("render_terminal/paynow_dynamic", |b| {
        b.iter(|| qr::render_terminal(black_box(&dynamic), false).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench_qr);
criterion_main!(benches);
