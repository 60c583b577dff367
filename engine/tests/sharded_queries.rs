//! A request's queries answered by the sharded ledger in one pass
//! (`ShardedLedger::query_batch`: one message per shard for all the
//! balances) equal what a lone ledger answers query by query: customer and
//! merchant accounts on every shard, unknown ids, house accounts by their
//! public id (the sum of the parts) and by one part, spending, risk audits,
//! instruments and FX rates (asked of the shards behind the batches in
//! flight, without waiting for them), and command statuses mixed in, with
//! batches still in flight when the queries come.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use payrail_engine::budget::Category;
use payrail_engine::shard::ShardedLedger;
use payrail_engine::{
    AccountId, CommandId, Currency, HouseRole, Ledger, LedgerConfig, Query, QueryReply,
};

use common::{deposit, open, transfer};

const SECOND: u64 = 1_000_000_000;

#[test]
fn query_batches_answer_as_the_lone_ledger_does() {
    for shards in [1, 2, 3] {
        let mut lone = Ledger::new(LedgerConfig::default());
        let mut sharded = ShardedLedger::new(LedgerConfig::default(), shards).unwrap();
        let mut batches = Vec::new();
        let mut commands = Vec::new();
        for account in 1..=40u64 {
            commands.push(open(u128::from(account), account));
            commands.push(deposit(1_000 + u128::from(account), account, account * 100));
        }
        batches.push(commands);
        let mut transfers = Vec::new();
        for account in 1..=40u64 {
            let to = account % 40 + 1;
            transfers.push(transfer(2_000 + u128::from(account), account, to, account));
        }
        batches.push(transfers);
        // The last batch stays in flight when the queries come.
        let mut in_flight_results = Vec::new();
        for (index, batch) in batches.iter().enumerate() {
            let sequence = index as u64 + 1;
            let timestamp = sequence * SECOND;
            let results = lone.apply_batch(sequence, timestamp, batch);
            if index + 1 < batches.len() {
                sharded.apply_batch(sequence, timestamp, batch);
            } else {
                sharded.submit(sequence, timestamp, batch);
                in_flight_results = results;
            }
        }

        // Balances only: answered behind the batch in flight, without
        // waiting for it; its results are still all there afterwards.
        let balances: Vec<Query> = (0..=45u64)
            .map(|account| Query::Balance {
                account: AccountId(account),
            })
            .chain([Query::Balance {
                account: AccountId::house(HouseRole::Settlement, Currency::CNY),
            }])
            .collect();
        assert!(ShardedLedger::answered_behind(&balances));
        let expected: Vec<QueryReply> = balances.iter().map(|query| lone.query(query)).collect();
        assert_eq!(sharded.query_batch(&balances), expected, "{shards} shards");
        assert_eq!(
            sharded.complete_wait(),
            Some(in_flight_results),
            "{shards} shards"
        );
        // A third batch in flight for the mixed queries below.
        let moves: Vec<_> = (1..=40u64)
            .map(|account| transfer(3_000 + u128::from(account), account, 41 - account, 3))
            .collect();
        lone.apply_batch(3, 3 * SECOND, &moves);
        sharded.submit(3, 3 * SECOND, &moves);

        // Spending (the transfers in flight count in it), risk audits,
        // instruments, FX rates and the policy: answered behind the batch in
        // flight as well, by the shards that hold the accounts.
        let transfers = Category::CashAndTransfers.code();
        let behind: Vec<Query> = (0..=45u64)
            .flat_map(|account| {
                let account = AccountId(account);
                [
                    Query::Spending {
                        account,
                        month: 0,
                        category: transfers,
                    },
                    Query::RiskAudit { account, index: 0 },
                    Query::Instrument { account, index: 0 },
                ]
            })
            .chain([
                Query::FxRate { index: 0 },
                Query::RiskPolicy,
                Query::Balance {
                    account: AccountId(7),
                },
                Query::Spending {
                    account: AccountId(7),
                    month: 0,
                    category: 0,
                },
            ])
            .collect();
        assert!(ShardedLedger::answered_behind(&behind));
        let expected: Vec<QueryReply> = behind.iter().map(|query| lone.query(query)).collect();
        assert!(
            expected
                .iter()
                .any(|reply| matches!(reply, QueryReply::Spending { spent, .. } if *spent > 0)),
            "the batches count in the spending"
        );
        assert_eq!(sharded.query_batch(&behind), expected, "{shards} shards");
        assert_eq!(
            sharded.in_flight(),
            1,
            "{shards} shards: its results still to take"
        );

        let settlement = AccountId::house(HouseRole::Settlement, Currency::CNY);
        let mut queries: Vec<Query> = (0..=45u64)
            .map(|account| Query::Balance {
                account: AccountId(account),
            })
            .collect();
        queries.push(Query::Balance {
            account: settlement,
        });
        queries.push(Query::Command {
            id: CommandId(2_007),
        });
        queries.push(Query::Command {
            id: CommandId(99_999),
        });
        queries.push(Query::Balance {
            account: AccountId(7),
        });
        for part in 1..4 {
            queries.push(Query::Balance {
                account: settlement.house_part(part),
            });
        }

        let expected: Vec<QueryReply> = queries.iter().map(|query| lone.query(query)).collect();
        let answered = sharded.query_batch(&queries);
        // House parts exist only on a sharded ledger: compare those apart.
        let parts = 4 - 1;
        let whole = queries.len() - parts;
        assert_eq!(answered[..whole], expected[..whole], "{shards} shards");
        for (offset, reply) in answered[whole..].iter().enumerate() {
            let part = offset + 1;
            match reply {
                QueryReply::Balance(_) => assert!(part < shards, "{shards} shards: part {part}"),
                QueryReply::Refused(status) => {
                    assert!(part >= shards, "{shards} shards: part {part}: {status:?}")
                }
                other => panic!("{other:?}"),
            }
        }
        // Part 0 is the public id itself: the sum.
        let part_zero = sharded.query_batch(&[Query::Balance {
            account: settlement.house_part(0),
        }]);
        assert_eq!(part_zero[..], expected[46..47], "{shards} shards");
        // One query at a time gives the same.
        let one_by_one: Vec<QueryReply> =
            queries.iter().map(|query| sharded.query(query)).collect();
        assert_eq!(one_by_one, answered, "{shards} shards");
    }
}

/// Requests' queries sent while batches are in flight and collected later
/// (`query_send`, `take_answered`: what the router does, so it routes on
/// while the shards answer): each request is answered from the state after
/// the batches routed before it and not after, in request order, and the
/// batches' results are unchanged.
#[test]
fn queries_sent_between_batches_in_flight_answer_at_their_place() {
    for shards in [1, 2, 3] {
        let mut lone = Ledger::new(LedgerConfig::default());
        let mut sharded = ShardedLedger::new(LedgerConfig::default(), shards).unwrap();
        let mut commands = Vec::new();
        for account in 1..=40u64 {
            commands.push(open(u128::from(account), account));
            commands.push(deposit(1_000 + u128::from(account), account, account * 100));
        }
        lone.apply_batch(1, SECOND, &commands);
        sharded.apply_batch(1, SECOND, &commands);

        let transfers = Category::CashAndTransfers.code();
        let queries: Vec<Query> = (0..=41u64)
            .flat_map(|account| {
                let account = AccountId(account);
                [
                    Query::Balance { account },
                    Query::Spending {
                        account,
                        month: 0,
                        category: transfers,
                    },
                ]
            })
            .chain([
                Query::Balance {
                    account: AccountId::house(HouseRole::Settlement, Currency::CNY),
                },
                Query::RiskPolicy,
            ])
            .collect();
        assert!(ShardedLedger::answered_behind(&queries));
        let mut expected_answers: Vec<Vec<QueryReply>> = Vec::new();
        let mut expected_results = Vec::new();
        for round in 0..6u64 {
            let sequence = round + 2;
            let timestamp = sequence * SECOND;
            let batch: Vec<_> = (1..=40u64)
                .map(|account| {
                    let to = (account + round) % 40 + 1;
                    let id = 10_000 * (round + 1) + account;
                    transfer(u128::from(id), account, to, account + round)
                })
                .collect();
            expected_results.push(lone.apply_batch(sequence, timestamp, &batch));
            sharded.submit(sequence, timestamp, &batch);
            expected_answers.push(queries.iter().map(|query| lone.query(query)).collect());
            sharded.query_send(&queries);
        }
        assert_ne!(
            expected_answers[0], expected_answers[5],
            "the batches change what the queries see"
        );
        assert_eq!(sharded.queries_in_flight(), 6);
        let mut answers: Vec<Vec<QueryReply>> = Vec::new();
        while answers.len() < 6 {
            match sharded.take_answered() {
                Some(replies) => answers.push(replies),
                None => sharded.wait_answer(),
            }
        }
        assert_eq!(answers, expected_answers, "{shards} shards");
        assert_eq!(sharded.queries_in_flight(), 0);
        for (round, expected) in expected_results.into_iter().enumerate() {
            assert_eq!(
                sharded.complete_wait(),
                Some(expected),
                "{shards} shards, batch {round}"
            );
        }
        assert_eq!(sharded.complete_wait(), None);
    }
}

/// A request's queries sent with as many batches in flight as the shards'
/// queues hold: the router takes answers first to make room for theirs
/// (it never waits for room that only it can make), and everything is
/// answered as the lone ledger answers.
#[test]
fn queries_behind_a_full_window_of_batches_are_answered() {
    for shards in [1, 2] {
        let mut lone = Ledger::new(LedgerConfig::default());
        let mut sharded = ShardedLedger::new(LedgerConfig::default(), shards).unwrap();
        let opens: Vec<_> = (1..=4u64)
            .flat_map(|account| {
                [
                    open(u128::from(account), account),
                    deposit(1_000 + u128::from(account), account, 1_000_000),
                ]
            })
            .collect();
        lone.apply_batch(1, SECOND, &opens);
        sharded.apply_batch(1, SECOND, &opens);
        let batches = payrail_engine::limits::SHARD_QUEUE_DEPTH - 1;
        let mut expected_results = Vec::new();
        for round in 0..batches as u64 {
            let sequence = round + 2;
            let batch = vec![transfer(u128::from(10_000 + round), round % 4 + 1, 1, 1)];
            expected_results.push(lone.apply_batch(sequence, sequence * SECOND, &batch));
            sharded.submit(sequence, sequence * SECOND, &batch);
        }
        let queries: Vec<Query> = (1..=4u64)
            .map(|account| Query::Balance {
                account: AccountId(account),
            })
            .collect();
        let expected: Vec<QueryReply> = queries.iter().map(|query| lone.query(query)).collect();
        assert_eq!(sharded.query_batch(&queries), expected, "{shards} shards");
        for expected in expected_results {
            assert_eq!(sharded.complete_wait(), Some(expected), "{shards} shards");
        }
    }
}
