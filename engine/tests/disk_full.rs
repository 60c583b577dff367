//! A real disk fault: the data directory on a small tmpfs that fills up.
//! The batch whose write fails gets `storage_failed` (never acknowledged),
//! later ones `unavailable`; after the disk grows, recovery finds exactly the
//! acknowledged batches.
//!
//! Needs root (to mount a tmpfs); elsewhere it says so and passes without
//! checking, which is why the in-memory fault tests in pipeline.rs exist too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command as Process;

use payrail_engine::pipeline::{Engine, EngineConfig};
use payrail_engine::storage::RocksStorage;
use payrail_engine::{
    AccountId, AccountKind, Command, CommandKind, Currency, OpenAccount, Query, QueryReply, Status,
};

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Tmpfs<'a>(&'a Path);

impl Tmpfs<'_> {
    fn mount<'a>(dir: &'a Path, size: &str) -> Option<Tmpfs<'a>> {
        let ok = Process::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|status| status.success());
        ok.then_some(Tmpfs(dir))
    }

    fn resize(&self, size: &str) {
        let status = Process::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.0)
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs<'_> {
    fn drop(&mut self) {
        let _ = Process::new("umount").arg("-l").arg(self.0).status();
    }
}

fn deposit(id: u128, account: u64) -> Command {
    Command::new(
        id,
        CommandKind::Deposit {
            account: AccountId(account),
            amount: 1,
            currency: Currency::CNY,
        },
    )
}

fn balance(engine: &Engine, account: u64) -> i64 {
    match engine
        .handle()
        .query_blocking(vec![Query::Balance {
            account: AccountId(account),
        }])
        .unwrap()[..]
    {
        [QueryReply::Balance(view)] => view.balance,
        ref other => panic!("{other:?}"),
    }
}

#[test]
fn a_full_disk_fails_the_write_and_acknowledges_nothing_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tmpfs) = Tmpfs::mount(dir.path(), "24m") else {
        eprintln!("skipped: cannot mount a tmpfs here (not root?); see pipeline.rs for the in-memory fault tests");
        return;
    };
    let data = dir.path().join("data");
    let engine =
        Engine::start(RocksStorage::open(&data).unwrap(), EngineConfig::default()).unwrap();
    let open = Command::new(
        1,
        CommandKind::OpenAccount(OpenAccount {
            account: AccountId(7),
            owner: 7,
            kind: AccountKind::Customer,
            currency: Currency::CNY,
            kyc_tier: 0,
            mcc: 0,
        }),
    );
    assert_eq!(
        engine.handle().submit_blocking(vec![open]).unwrap()[0].status,
        Status::Ok
    );

    // Fill the disk: batches of 8,190 deposits (about 400 KB logged each).
    // Bounded: 24 MiB fills long before 1,000 batches.
    let mut acknowledged = 0i64;
    let mut failed_at = None;
    let mut next_id = 100u128;
    for batch in 0..1_000 {
        let commands: Vec<Command> = (0..8_190).map(|n| deposit(next_id + n, 7)).collect();
        next_id += 8_190;
        let results = engine.handle().submit_blocking(commands).unwrap();
        match results[0].status {
            Status::Ok => {
                assert!(results.iter().all(|result| result.status == Status::Ok));
                acknowledged += 8_190;
            }
            Status::StorageFailed => {
                assert!(results
                    .iter()
                    .all(|result| result.status == Status::StorageFailed));
                failed_at = Some(batch);
                break;
            }
            other => panic!("batch {batch}: unexpected {other:?}"),
        }
    }
    let failed_at = failed_at.expect("the disk filled up");
    assert!(failed_at > 0, "some batches fit before the disk was full");
    // Writes are refused from now on; reads still work and show only the
    // acknowledged batches.
    let later = engine
        .handle()
        .submit_blocking(vec![deposit(next_id, 7)])
        .unwrap();
    assert_eq!(later[0].status, Status::Unavailable);
    assert_eq!(balance(&engine, 7), acknowledged);
    let stats = engine.handle().stats().snapshot();
    assert!(stats.contains(&("write_failed", 1)));
    drop(engine);

    // The operator frees space; a restart recovers exactly what was acknowledged.
    tmpfs.resize("256m");
    let engine =
        Engine::start(RocksStorage::open(&data).unwrap(), EngineConfig::default()).unwrap();
    assert_eq!(balance(&engine, 7), acknowledged);
    eprintln!(
        "disk full after {failed_at} batches; {acknowledged} deposits acknowledged and recovered"
    );
    engine.shutdown();
    drop(tmpfs);
}
