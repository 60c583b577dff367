//! Command builders shared by the engine's integration tests: CNY customer
//! accounts whose owner id is the account id.
#![allow(dead_code)]

use payrail_engine::{
    AccountId, AccountKind, Command, CommandKind, Currency, OpenAccount, RiskContext,
};

pub fn open(id: u128, account: u64) -> Command {
    Command::new(
        id,
        CommandKind::OpenAccount(OpenAccount {
            account: AccountId(account),
            owner: account,
            kind: AccountKind::Customer,
            currency: Currency::CNY,
            kyc_tier: 1,
            mcc: 0,
        }),
    )
}

pub fn deposit(id: u128, account: u64, amount: u64) -> Command {
    Command::new(
        id,
        CommandKind::Deposit {
            account: AccountId(account),
            amount,
            currency: Currency::CNY,
        },
    )
}

pub fn transfer(id: u128, from: u64, to: u64, amount: u64) -> Command {
    Command::new(
        id,
        CommandKind::Transfer {
            from: AccountId(from),
            to: AccountId(to),
            amount,
            currency: Currency::CNY,
            context: RiskContext::NONE,
        },
    )
}
