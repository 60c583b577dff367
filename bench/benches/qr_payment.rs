//! End-to-end cost of a merchant-presented QR payment against a plain
//! transfer: the client library over loopback TCP to an embedded server
//! (handshake, framing, the RocksDB log with fsync, the ledger).
//!
//! Both sides move the same money between the same accounts: PAYERS
//! customers pay MERCHANTS merchants 1.00 CNY, round robin. The QR side
//! sends batches of 256 `SubmitQr` payments, each with the raw payload of
//! the merchant's static code (the server parses it, looks the merchant key
//! up and applies `PayMerchantQr`); the transfer side sends batches of 256
//! `Transfer` commands in `Submit`. WINDOW requests are in flight at once,
//! as a gateway pipelines them. One iteration is one batch, counted once
//! its results are back (durable and applied).
//!
//! A third case, `edge_parse`, times only what the server adds for a QR
//! payment before the ledger: `qr_pay::command` (parse, CRC, merchant keys,
//! amount rules) over the same 256 requests, in process, one thread.
//!
//! Run: `cargo bench -p payrail-bench --bench qr_payment`; figures in
//! docs/benchmarks.md ("QR payment end to end").

// A benchmark's setup failing is a reason to stop it.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use payrail_api::client::{Client, ClientConfig};
use payrail_api::config::ServerConfig;
use payrail_api::qr::{self, MerchantAccountInfo, MerchantQr};
use payrail_api::qr_pay;
use payrail_api::serve;
use payrail_api::wire::{QrPaymentRequest, QR_BATCH_MAX};
use payrail_engine::{
    AccountId, AccountKind, Command, CommandId, CommandKind, Currency, MerchantKey, OpenAccount,
    Status,
};
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

const PAYERS: u64 = 10_000;
const MERCHANTS: u64 = 64;
const MERCHANT_FIRST: u64 = 1_000_000;
/// Payments (or transfers) in one request: a full SubmitQr.
const BATCH: usize = QR_BATCH_MAX as usize;
/// Requests in flight at once.
const WINDOW: usize = 4;
/// 1.00 CNY.
const AMOUNT: u64 = 100;

/// The static code of merchant `index`: PIX-like key template, CNY,
/// name and city, about 100 characters.
fn merchant_payload(index: u64) -> String {
    let code = MerchantQr::static_code(
        MerchantAccountInfo {
            tag: 26,
            gui: "com.example.wallet".to_owned(),
            fields: vec![(1, format!("merchant-{index:06}"))],
        },
        5812,
        Currency::CNY,
        "CN",
        "NOODLE BAR",
        "SHANGHAI",
    );
    qr::generate(&code).unwrap()
}

async fn setup(client: &Client) -> Vec<String> {
    let mut next_id = 1u128 << 100;
    let mut id = || {
        next_id += 1;
        next_id
    };
    let mut commands = Vec::new();
    let payloads: Vec<String> = (0..MERCHANTS).map(merchant_payload).collect();
    for (index, payload) in payloads.iter().enumerate() {
        let account = AccountId(MERCHANT_FIRST + index as u64);
        commands.push(Command::new(
            id(),
            CommandKind::OpenAccount(OpenAccount {
                account,
                owner: account.0,
                kind: AccountKind::Merchant,
                currency: Currency::CNY,
                kyc_tier: 0,
                mcc: 5812,
            }),
        ));
        let code = qr::parse(payload).unwrap();
        for (gui, merchant_id) in code.merchant_keys() {
            commands.push(Command::new(
                id(),
                CommandKind::RegisterMerchantKey {
                    merchant: account,
                    key: MerchantKey::new(&gui, &merchant_id),
                },
            ));
        }
    }
    for payer in 0..PAYERS {
        commands.push(Command::new(
            id(),
            CommandKind::OpenAccount(OpenAccount {
                account: AccountId(payer),
                owner: payer,
                kind: AccountKind::Customer,
                currency: Currency::CNY,
                kyc_tier: 3,
                mcc: 0,
            }),
        ));
        commands.push(Command::new(
            id(),
            CommandKind::Deposit {
                account: AccountId(payer),
                amount: 1 << 40,
                currency: Currency::CNY,
            },
        ));
    }
    for chunk in commands.chunks(4_096) {
        let results = client.submit(chunk.to_vec()).await.unwrap();
        assert!(results.iter().all(|result| result.status == Status::Ok));
    }
    payloads
}

/// Fresh ids, and the next payer and merchant, round robin.
struct Workload {
    payloads: Arc<Vec<String>>,
    next_id: u128,
    next: u64,
}

impl Workload {
    fn pair(&mut self) -> (u128, u64, u64) {
        self.next_id += 1;
        self.next += 1;
        (self.next_id, self.next % PAYERS, self.next % MERCHANTS)
    }

    fn qr_batch(&mut self) -> Vec<QrPaymentRequest> {
        (0..BATCH)
            .map(|_| {
                let (id, payer, merchant) = self.pair();
                QrPaymentRequest {
                    id: CommandId(id),
                    payer: AccountId(payer),
                    payload: self.payloads[merchant as usize].clone(),
                    amount: Some(AMOUNT),
                    tip: None,
                    context: payrail_engine::RiskContext::NONE,
                }
            })
            .collect()
    }

    fn transfer_batch(&mut self) -> Vec<Command> {
        (0..BATCH)
            .map(|_| {
                let (id, payer, merchant) = self.pair();
                Command::new(
                    id,
                    CommandKind::Transfer {
                        from: AccountId(payer),
                        to: AccountId(MERCHANT_FIRST + merchant),
                        amount: AMOUNT,
                        currency: Currency::CNY,
                        context: payrail_engine::RiskContext::NONE,
                    },
                )
            })
            .collect()
    }
}

enum Batch {
    Qr(Vec<QrPaymentRequest>),
    Transfers(Vec<Command>),
}

/// Sends `batches` (prepared before the clock starts), WINDOW in flight;
/// every result must be Ok. Returns the time from the first send to the
/// last result.
async fn send_all(client: &Client, batches: Vec<Batch>) -> Duration {
    let started = Instant::now();
    let mut inflight = JoinSet::new();
    for batch in batches {
        if inflight.len() >= WINDOW {
            inflight.join_next().await.unwrap().unwrap();
        }
        let client = client.clone();
        inflight.spawn(async move {
            let results = match batch {
                Batch::Qr(payments) => client.submit_qr(payments).await.unwrap(),
                Batch::Transfers(commands) => client.submit(commands).await.unwrap(),
            };
            assert_eq!(results.len(), BATCH);
            assert!(results.iter().all(|result| result.status == Status::Ok));
        });
    }
    while let Some(done) = inflight.join_next().await {
        done.unwrap();
    }
    started.elapsed()
}

fn qr_payment(c: &mut Criterion) {
    let runtime = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        ..ServerConfig::default()
    };
    let (server, client, payloads) = runtime.block_on(async {
        let server = serve::start(config).await.unwrap();
        let client_config = ClientConfig::local(server.addr.to_string(), dir.path()).unwrap();
        let client = Client::connect(client_config).await.unwrap();
        let payloads = setup(&client).await;
        (server, client, payloads)
    });
    let mut workload = Workload {
        payloads: Arc::new(payloads),
        next_id: 1,
        next: 0,
    };

    let mut group = c.benchmark_group("qr_payment_e2e");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_with_input(BenchmarkId::new("submit_qr", BATCH), &BATCH, |b, _| {
        b.iter_custom(|iterations| {
            let batches = (0..iterations)
                .map(|_| Batch::Qr(workload.qr_batch()))
                .collect();
            run(&runtime, &client, batches)
        });
    });
    group.bench_with_input(BenchmarkId::new("transfers", BATCH), &BATCH, |b, _| {
        b.iter_custom(|iterations| {
            let batches = (0..iterations)
                .map(|_| Batch::Transfers(workload.transfer_batch()))
                .collect();
            run(&runtime, &client, batches)
        });
    });
    let edge = workload.qr_batch();
    group.bench_with_input(BenchmarkId::new("edge_parse", BATCH), &BATCH, |b, _| {
        b.iter(|| {
            for request in &edge {
                assert!(qr_pay::command(black_box(request)).is_ok());
            }
        });
    });
    group.finish();
    drop(client);
    runtime.block_on(server.stop());
}

fn run(runtime: &Runtime, client: &Client, batches: Vec<Batch>) -> Duration {
    runtime.block_on(send_all(client, batches))
}

criterion_group!(benches, qr_payment);
criterion_main!(benches);
