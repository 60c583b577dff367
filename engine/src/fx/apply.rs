//! The FX command handlers, on the ledger's books. Each validates, passes a
//! marked point of no return, then mutates; a conversion's legs are checked
//! together and applied together ([`Deltas`]).

use crate::command::{
    AccountId, CommandId, CommandResult, Detail, FxAmounts, FxOrder, FxRateSet, FxRateView, FxSide,
    HouseRole, QueryReply,
};
use crate::currency::Currency;
use crate::fx::{
    is_liquidity, price_amounts, FxPaymentLegs, FxQuoteRecord, FxQuoteState, FxRate, FxRefund,
    FxState, Price,
};
use crate::ledger::halves::{at, Check};
use crate::ledger::{check_amount, Account, Books, Elsewhere};
use crate::limits;
use crate::status::Status;
use crate::storage::record::encode_value;

/// Balance changes of one conversion, by slot: at most the paying and
/// receiving accounts and three house accounts.
struct Deltas {
    entries: [(u32, i128); 6],
    len: usize,
}

impl Deltas {
    fn new() -> Deltas {
        Deltas {
            entries: [(0, 0); 6],
            len: 0,
        }
    }

    fn add(&mut self, slot: u32, delta: u64, sign: i128) {
        if delta == 0 {
            return;
        }
        let delta = sign * i128::from(delta);
        for entry in &mut self.entries[..self.len] {
            if entry.0 == slot {
                entry.1 += delta;
                return;
            }
        }
        assert!(
            self.len < self.entries.len(),
            "a conversion has at most 6 parties"
        );
        self.entries[self.len] = (slot, delta);
        self.len += 1;
    }

    fn debit(&mut self, slot: u32, amount: u64) {
        self.add(slot, amount, -1);
    }

    fn credit(&mut self, slot: u32, amount: u64) {
        self.add(slot, amount, 1);
    }
}

/// A conversion priced against the current rate.
struct Priced {
    from_slot: u32,
    to_slot: u32,
    amounts: FxAmounts,
    valid_until: u64,
}

fn detail(outcome: Result<FxAmounts, Status>) -> CommandResult {
    match outcome {
        Ok(amounts) => CommandResult::with_detail(Status::Ok, Detail::FxConversion(amounts)),
        Err(status) => CommandResult::new(status),
    }
}

impl FxState {
    /// The rate for converting `from` into `to`: the pair as set, or the
    /// opposite pair (`inverse`).
    fn rate(&self, from: Currency, to: Currency) -> Result<(FxRate, bool), Status> {
        if let Some(rate) = self.rates.get(&(from, to)) {
            return Ok((*rate, false));
        }
        if let Some(rate) = self.rates.get(&(to, from)) {
            return Ok((*rate, true));
        }
        Err(Status::FxRateUnknown)
    }

    /// The rate, refused once its validity is over.
    fn fresh_rate(
        &self,
        from: Currency,
        to: Currency,
        timestamp: u64,
    ) -> Result<(FxRate, bool), Status> {
        let (rate, inverse) = self.rate(from, to)?;
        if timestamp >= rate.valid_until {
            return Err(Status::FxRateStale);
        }
        Ok((rate, inverse))
    }

    /// Answer to `Query::FxRate`.
    pub(crate) fn rate_view(&self, index: u64) -> QueryReply {
        let found = usize::try_from(index)
            .ok()
            .and_then(|index| self.rates.values().nth(index));
        match found {
            Some(rate) => QueryReply::FxRate(FxRateView {
                base: rate.base,
                quote: rate.quote,
                mid: rate.mid,
                spread_bps: rate.spread_bps,
                source: rate.source,
                set_at: rate.set_at,
                valid_until: rate.valid_until,
                // Cannot truncate: at most FX_RATES_MAX rates.
                rates_total: self.rates.len() as u32,
            }),
            None => QueryReply::Refused(Status::FxRateUnknown),
        }
    }

    /// The detail a retried quote command answers with, while the quote is
    /// remembered (idempotency records keep only the status).
    pub(crate) fn retry_detail(&self, id: CommandId) -> Detail {
        match self.quotes.get(&id) {
            Some(quote) => Detail::FxConversion(quote.amounts),
            None => Detail::None,
        }
    }

    fn close_quote(&mut self, id: CommandId, state: FxQuoteState) {
        let Some(quote) = self.quotes.get_mut(&id) else {
            return;
        };
        if quote.state != FxQuoteState::Open {
            return;
        }
        quote.state = state;
        let slot = quote.from_slot;
        if let Some(open) = self.quotes_open.get_mut(&slot) {
            assert!(*open >= 1);
            *open -= 1;
            if *open == 0 {
                self.quotes_open.remove(&slot);
            }
        }
    }

    /// Rebuilds the open-quote counts per paying slot from the quotes.
    pub(crate) fn rebuild_open(&mut self) {
        self.quotes_open.clear();
        for quote in self.quotes.values() {
            if quote.state == FxQuoteState::Open {
                *self.quotes_open.entry(quote.from_slot).or_default() += 1;
            }
        }
    }

    /// Forgets a payment's FX legs together with the payment.
    pub(crate) fn forget_payment(&mut self, id: CommandId) {
        if !self.payments.is_empty() {
            self.payments.remove(&id);
        }
    }
}

impl Books {
    /// The house account of `role` and `currency`, if it was opened.
    fn house_slot(&self, role: HouseRole, currency: Currency) -> Result<u32, Status> {
        // Opened by SetFxRate for both currencies of every pair, so a
        // conversion that found a rate finds its house accounts.
        self.slot(AccountId::house(role, currency).house_part(self.house_part))
            .ok_or(Status::FxRateUnknown)
    }

    /// Checks every delta (account status, funds, overflow and, when
    /// `floors` says so, the liquidity floors), then applies them all.
    /// `floors` is the sum of the other shards' parts of the liquidity
    /// account being drawn (0 for a lone ledger): the floor is checked on
    /// the whole position, whatever the shard count.
    fn apply_deltas(&mut self, deltas: &Deltas, floors: Option<i128>) -> Result<(), Status> {
        let balances = self.check_deltas(deltas, floors)?;
        debug_assert!(self.deltas_conserve(deltas));
        self.write_deltas(deltas, &balances);
        Ok(())
    }

    /// Point of no return: writes balances `check_deltas` computed.
    fn write_deltas(&mut self, deltas: &Deltas, balances: &[i64; 6]) {
        for (index, &(slot, _)) in deltas.entries[..deltas.len].iter().enumerate() {
            self.account_mut(slot).balance = balances[index];
        }
        if self.history.is_some() {
            self.note_deltas(deltas);
        }
    }

    /// The movements of FX legs just written (history on only): one per
    /// customer or merchant account, the paying one leg 0, the receiving
    /// one leg 1 (as a transfer's), whether one shard applied every leg or
    /// each half its own. The counterparty is the other party (a sharded
    /// half's from its context; here the other customer or merchant leg),
    /// else the house account in the same currency that took the other
    /// side.
    fn note_deltas(&mut self, deltas: &Deltas) {
        let Some(sink) = &self.history else {
            return;
        };
        let context = sink.context;
        let entries = &deltas.entries[..deltas.len];
        let user = |&&(slot, delta): &&(u32, i128)| delta != 0 && !self.account(slot).id.is_house();
        let debit_merchant = entries
            .iter()
            .filter(user)
            .find(|(_, delta)| *delta < 0)
            .map_or(0, |(slot, _)| self.account_mcc(*slot));
        let credit_merchant = entries
            .iter()
            .filter(user)
            .find(|(_, delta)| *delta > 0)
            .map_or(0, |(slot, _)| self.account_mcc(*slot));
        let mcc = crate::ledger::movement_mcc(context.mcc, credit_merchant, debit_merchant);
        let mut movements: [Option<(Account, AccountId, i64, u32)>; 2] = [None, None];
        for &(slot, delta) in entries.iter().filter(user) {
            let account = *self.account(slot);
            let paying = delta < 0;
            let counterparty = context.counterparty.or_else(|| {
                // The other customer or merchant, even if its leg rounded
                // to nothing (a tiny refund of an FX payment).
                let other_user = entries
                    .iter()
                    .map(|&(other, _)| self.account(other))
                    .find(|other| !other.id.is_house() && other.id != account.id)
                    .map(|other| other.id);
                other_user.or_else(|| {
                    entries
                        .iter()
                        .map(|&(other, other_delta)| (self.account(other), other_delta))
                        .find(|(other, other_delta)| {
                            other.id.is_house()
                                && other.currency == account.currency
                                && (*other_delta < 0) != paying
                        })
                        .map(|(other, _)| other.id)
                })
            });
            // A sharded half's legs are numbered as the lone ledger's one
            // set of deltas: paying 0, receiving 1.
            let base = if context.counterparty.is_some() {
                0
            } else {
                context.legs
            };
            let leg = if paying { base } else { base + 1 };
            let amount = i64::try_from(delta).unwrap_or(if paying { i64::MIN } else { i64::MAX });
            movements[usize::from(!paying)] =
                Some((account, counterparty.unwrap_or(AccountId(0)), amount, leg));
        }
        for (account, counterparty, amount, leg) in movements.into_iter().flatten() {
            self.push_movement(&account, counterparty, amount, mcc, leg);
        }
        if let Some(sink) = &mut self.history {
            sink.context.legs = context.legs.saturating_add(2);
        }
    }

    /// The new balances of every delta's account, or the first failing check.
    fn check_deltas(&self, deltas: &Deltas, floors: Option<i128>) -> Result<[i64; 6], Status> {
        let mut balances = [0i64; 6];
        for (index, &(slot, delta)) in deltas.entries[..deltas.len].iter().enumerate() {
            let account = self.account(slot);
            if !account.id.is_house() {
                account.check_movable()?;
            }
            let balance = i128::from(account.balance) + delta;
            let balance = i64::try_from(balance).map_err(|_| Status::Overflow)?;
            if delta < 0 {
                if !account.id.is_house()
                    && i128::from(balance) < i128::from(account.debits_pending)
                {
                    return Err(Status::InsufficientFunds);
                }
                if let Some(elsewhere) = floors.filter(|_| is_liquidity(account.id)) {
                    let limit = self.fx.floors.get(&account.currency).copied().unwrap_or(0);
                    if i128::from(balance) + elsewhere < -i128::from(limit) {
                        return Err(Status::FxLiquidityFloor);
                    }
                }
            }
            balances[index] = balance;
        }
        Ok(balances)
    }

    fn deltas_conserve(&self, deltas: &Deltas) -> bool {
        let mut sums: std::collections::BTreeMap<Currency, i128> = Default::default();
        for &(slot, delta) in &deltas.entries[..deltas.len] {
            *sums.entry(self.account(slot).currency).or_default() += delta;
        }
        sums.values().all(|&sum| sum == 0)
    }

    /// The legs of a conversion from `from_slot` (currency A) to `to_slot`
    /// (currency B), applied together.
    fn convert_legs(
        &mut self,
        from_slot: u32,
        to_slot: u32,
        amounts: &FxAmounts,
        liquidity_elsewhere: i128,
    ) -> Result<(), Status> {
        let deltas = self.convert_deltas(from_slot, to_slot, amounts)?;
        self.apply_deltas(&deltas, Some(liquidity_elsewhere))
    }

    /// The legs of a conversion, by slot.
    fn convert_deltas(
        &self,
        from_slot: u32,
        to_slot: u32,
        amounts: &FxAmounts,
    ) -> Result<Deltas, Status> {
        let from_currency = self.account(from_slot).currency;
        let to_currency = self.account(to_slot).currency;
        if from_currency != amounts.pay_currency || to_currency != amounts.receive_currency {
            return Err(Status::CurrencyMismatch);
        }
        let liquidity_from = self.house_slot(HouseRole::FxLiquidity, from_currency)?;
        let revenue_from = self.house_slot(HouseRole::FxRevenue, from_currency)?;
        let liquidity_to = self.house_slot(HouseRole::FxLiquidity, to_currency)?;
        let mut deltas = Deltas::new();
        deltas.debit(from_slot, amounts.pay);
        deltas.credit(liquidity_from, amounts.pay - amounts.fee);
        deltas.credit(revenue_from, amounts.fee);
        deltas.debit(liquidity_to, amounts.receive);
        deltas.credit(to_slot, amounts.receive);
        Ok(deltas)
    }

    /// Prices a conversion from `from_currency` to `to_currency` at the
    /// current rate.
    fn price(
        &self,
        from_currency: Currency,
        to_currency: Currency,
        side: FxSide,
        amount: u64,
        timestamp: u64,
    ) -> Result<(FxAmounts, u64), Status> {
        let (rate, inverse) = self.fx.fresh_rate(from_currency, to_currency, timestamp)?;
        let price = Price::new(rate.mid, inverse, from_currency, to_currency)
            .ok_or(Status::FxRateInvalid)?;
        let (pay, fee, receive) = price_amounts(price, side, amount, rate.spread_bps)?;
        let amounts = FxAmounts {
            pay,
            fee,
            receive,
            pay_currency: from_currency,
            receive_currency: to_currency,
            mid: rate.mid,
            inverse,
            expires_at: 0,
        };
        Ok((amounts, rate.valid_until))
    }

    /// The checks a quote and a direct conversion share, and the price.
    /// `other_owner`: the router found `to` on another shard than `from`,
    /// so it belongs to another owner.
    fn price_order(
        &self,
        order: &FxOrder,
        timestamp: u64,
        other_owner: bool,
    ) -> Result<Priced, Status> {
        check_amount(order.amount)?;
        if order.from == order.to {
            return Err(Status::SameAccount);
        }
        let from_slot = self.user_slot(order.from, Status::UnknownDebitAccount)?;
        if other_owner {
            return Err(Status::FxNotSameOwner);
        }
        let to_slot = self.user_slot(order.to, Status::UnknownCreditAccount)?;
        let from = self.account(from_slot);
        let to = self.account(to_slot);
        if from.owner != to.owner {
            return Err(Status::FxNotSameOwner);
        }
        if from.currency == to.currency {
            return Err(Status::FxSameCurrency);
        }
        from.check_movable()?;
        to.check_movable()?;
        let (amounts, valid_until) = self.price(
            from.currency,
            to.currency,
            order.side,
            order.amount,
            timestamp,
        )?;
        Ok(Priced {
            from_slot,
            to_slot,
            amounts,
            valid_until,
        })
    }

    pub(crate) fn set_fx_rate(&mut self, set: &FxRateSet, timestamp: u64) -> CommandResult {
        CommandResult::new(match self.set_fx_rate_checked(set, timestamp) {
            Ok(()) => Status::Ok,
            Err(status) => status,
        })
    }

    fn set_fx_rate_checked(&mut self, set: &FxRateSet, timestamp: u64) -> Result<(), Status> {
        if !set.base.is_valid() || !set.quote.is_valid() {
            return Err(Status::UnknownCurrency);
        }
        if set.base == set.quote {
            return Err(Status::FxSameCurrency);
        }
        if !set.mid.is_valid() || Price::new(set.mid, false, set.base, set.quote).is_none() {
            return Err(Status::FxRateInvalid);
        }
        if set.spread_bps > limits::FX_SPREAD_BPS_MAX {
            return Err(Status::FxSpreadOutOfRange);
        }
        if !(limits::FX_RATE_VALID_MS_MIN..=limits::FX_RATE_VALID_MS_MAX).contains(&set.valid_ms) {
            return Err(Status::FxValidityOutOfRange);
        }
        if !set.source.is_valid() {
            return Err(Status::FxInvalidSource);
        }
        let replaces = self.fx.rates.contains_key(&(set.base, set.quote))
            || self.fx.rates.contains_key(&(set.quote, set.base));
        if !replaces && self.fx.rates.len() >= limits::FX_RATES_MAX {
            return Err(Status::FxTooManyRates);
        }
        let house = [
            (HouseRole::FxLiquidity, set.base),
            (HouseRole::FxRevenue, set.base),
            (HouseRole::FxLiquidity, set.quote),
            (HouseRole::FxRevenue, set.quote),
        ];
        let missing = house
            .iter()
            .filter(|(role, currency)| {
                let id = AccountId::house(*role, *currency).house_part(self.house_part);
                self.slot(id).is_none()
            })
            .count();
        if self.accounts.len() + missing > limits::ACCOUNTS_MAX {
            return Err(Status::LedgerFull);
        }
        // Timestamps are ns since the epoch and the validity is bounded.
        let valid_until = timestamp.saturating_add(set.valid_ms.saturating_mul(1_000_000));
        // Point of no return. A pair has one entry: setting B/A replaces A/B.
        self.fx.rates.remove(&(set.quote, set.base));
        self.fx.rates.insert(
            (set.base, set.quote),
            FxRate {
                base: set.base,
                quote: set.quote,
                mid: set.mid,
                spread_bps: set.spread_bps,
                source: set.source,
                set_at: timestamp,
                valid_until,
            },
        );
        for (role, currency) in house {
            self.house_account(role, currency);
        }
        Ok(())
    }

    pub(crate) fn set_fx_floor(&mut self, currency: Currency, limit: u64) -> CommandResult {
        if !currency.is_valid() {
            return CommandResult::new(Status::UnknownCurrency);
        }
        if limit > limits::AMOUNT_MAX {
            return CommandResult::new(Status::AmountTooLarge);
        }
        // Point of no return. A lower floor does not move money: a liquidity
        // account already below it only stops conversions that take it lower.
        if limit == 0 {
            self.fx.floors.remove(&currency);
        } else {
            self.fx.floors.insert(currency, limit);
        }
        CommandResult::OK
    }

    pub(crate) fn fx_quote(
        &mut self,
        id: CommandId,
        order: &FxOrder,
        ttl_ms: u64,
        timestamp: u64,
        elsewhere: Elsewhere,
    ) -> CommandResult {
        detail(self.fx_quote_checked(id, order, ttl_ms, timestamp, elsewhere))
    }

    fn fx_quote_checked(
        &mut self,
        id: CommandId,
        order: &FxOrder,
        ttl_ms: u64,
        timestamp: u64,
        elsewhere: Elsewhere,
    ) -> Result<FxAmounts, Status> {
        if !(limits::FX_QUOTE_TTL_MS_MIN..=limits::FX_QUOTE_TTL_MS_MAX).contains(&ttl_ms) {
            return Err(Status::FxQuoteTtlOutOfRange);
        }
        let priced = self.price_order(order, timestamp, elsewhere.fx_other_owner)?;
        let open = self
            .fx
            .quotes_open
            .get(&priced.from_slot)
            .copied()
            .unwrap_or(0);
        if open >= self.caps.fx_quotes_open || self.fx.quotes.len() >= limits::FX_QUOTES_MAX {
            return Err(Status::FxTooManyQuotes);
        }
        if self.fx.quotes.contains_key(&id) || elsewhere.fx_quote_taken {
            // A quote outlived its command's idempotency record and the id came back.
            return Err(Status::IdReusedWithDifferentFields);
        }
        // A quote never outlives the rate it was priced at.
        let expires_at = timestamp
            .saturating_add(ttl_ms.saturating_mul(1_000_000))
            .min(priced.valid_until);
        let amounts = FxAmounts {
            expires_at,
            ..priced.amounts
        };
        // Point of no return.
        self.fx.quotes.insert(
            id,
            FxQuoteRecord {
                id,
                from_slot: priced.from_slot,
                to_slot: priced.to_slot,
                amounts,
                state: FxQuoteState::Open,
            },
        );
        self.fx.quote_expiries.insert((expires_at, id));
        *self.fx.quotes_open.entry(priced.from_slot).or_default() = open + 1;
        Ok(amounts)
    }

    pub(crate) fn fx_convert_quote(
        &mut self,
        quote: CommandId,
        from: AccountId,
        timestamp: u64,
        elsewhere: Elsewhere,
    ) -> CommandResult {
        detail(self.fx_convert_quote_checked(quote, from, timestamp, elsewhere))
    }

    fn fx_convert_quote_checked(
        &mut self,
        id: CommandId,
        from: AccountId,
        timestamp: u64,
        elsewhere: Elsewhere,
    ) -> Result<FxAmounts, Status> {
        let quote = *self.fx.quotes.get(&id).ok_or(Status::FxQuoteNotFound)?;
        if self.account(quote.from_slot).id != from {
            return Err(Status::FxQuoteNotYours);
        }
        match quote.state {
            FxQuoteState::Open => {}
            FxQuoteState::Used => return Err(Status::FxQuoteUsed),
            FxQuoteState::Expired => return Err(Status::FxQuoteExpired),
        }
        // Expiry runs before each batch, so an open quote has not expired yet.
        debug_assert!(quote.amounts.expires_at > timestamp);
        if timestamp >= quote.amounts.expires_at {
            return Err(Status::FxQuoteExpired);
        }
        self.convert_legs(
            quote.from_slot,
            quote.to_slot,
            &quote.amounts,
            elsewhere.fx_liquidity_elsewhere,
        )?;
        // The money moved; the quote is spent.
        self.fx.close_quote(id, FxQuoteState::Used);
        Ok(FxAmounts {
            expires_at: 0,
            ..quote.amounts
        })
    }

    pub(crate) fn fx_convert(
        &mut self,
        order: &FxOrder,
        timestamp: u64,
        elsewhere: Elsewhere,
    ) -> CommandResult {
        let priced = self.price_order(order, timestamp, elsewhere.fx_other_owner);
        detail(priced.and_then(|priced| {
            self.convert_legs(
                priced.from_slot,
                priced.to_slot,
                &priced.amounts,
                elsewhere.fx_liquidity_elsewhere,
            )?;
            Ok(priced.amounts)
        }))
    }

    /// At a quote's expiry it stops being open; `FX_QUOTE_MEMORY_NS` later
    /// it is forgotten.
    pub(crate) fn expire_fx_quotes(&mut self, timestamp: u64) {
        while let Some(&(at, id)) = self.fx.quote_expiries.first() {
            if at > timestamp {
                break;
            }
            self.fx.quote_expiries.pop_first();
            let Some(quote) = self.fx.quotes.get(&id).copied() else {
                continue;
            };
            if at == quote.amounts.expires_at {
                self.fx.close_quote(id, FxQuoteState::Expired);
                self.fx
                    .quote_expiries
                    .insert((at.saturating_add(limits::FX_QUOTE_MEMORY_NS), id));
            } else {
                self.fx.quotes.remove(&id);
            }
        }
    }

    /// Adds the FX state to a digest, in key order.
    pub(crate) fn digest_fx(&self, hasher: &mut crate::digest::DigestHasher) {
        let fx = &self.fx;
        // One buffer for the fixed-width encodings of the items.
        let mut bytes = Vec::with_capacity(128);
        let mut put = |hasher: &mut crate::digest::DigestHasher, value: &dyn Fn(&mut Vec<u8>)| {
            bytes.clear();
            value(&mut bytes);
            hasher.update(&bytes);
        };
        hasher.update(&(fx.rates.len() as u64).to_le_bytes());
        for rate in fx.rates.values() {
            put(hasher, &|out| encode_value(rate, out));
        }
        hasher.update(&(fx.floors.len() as u64).to_le_bytes());
        for (currency, limit) in &fx.floors {
            hasher.update(&currency.numeric().to_le_bytes());
            hasher.update(&limit.to_le_bytes());
        }
        // Quotes name accounts by id: slots differ between a lone ledger and
        // the merge of shards.
        hasher.update(&(fx.quotes.len() as u64).to_le_bytes());
        for quote in fx.quotes.values() {
            let accounts = (
                self.account(quote.from_slot).id,
                self.account(quote.to_slot).id,
            );
            put(hasher, &|out| {
                encode_value(&(quote.id, accounts, quote.amounts, quote.state), out)
            });
        }
        hasher.update(&(fx.quote_expiries.len() as u64).to_le_bytes());
        for (at, id) in &fx.quote_expiries {
            hasher.update(&at.to_le_bytes());
            hasher.update(&id.0.to_le_bytes());
        }
        hasher.update(&(fx.payments.len() as u64).to_le_bytes());
        for (id, legs) in &fx.payments {
            hasher.update(&id.0.to_le_bytes());
            put(hasher, &|out| encode_value(legs, out));
        }
    }
}

/// Halves of cross-currency payments and their refunds (`ledger/halves.rs`;
/// a lone ledger runs them too): the payer's half converts (payer and house
/// legs on its own house parts), the merchant's half credits. Each half
/// reports its first failing [`Check`] (see the tables in
/// `ledger/halves.rs`).
impl Books {
    /// The payer's legs of a cross-currency payment: pay out of the payer,
    /// net and fee to this shard's liquidity and revenue parts of the
    /// payer's currency, the merchant's amount out of this shard's
    /// liquidity part of the merchant's currency.
    fn payer_deltas(&self, payer_slot: u32, amounts: &FxAmounts) -> Result<Deltas, Status> {
        let liquidity_from = self.house_slot(HouseRole::FxLiquidity, amounts.pay_currency)?;
        let revenue_from = self.house_slot(HouseRole::FxRevenue, amounts.pay_currency)?;
        let liquidity_to = self.house_slot(HouseRole::FxLiquidity, amounts.receive_currency)?;
        let mut deltas = Deltas::new();
        deltas.debit(payer_slot, amounts.pay);
        deltas.credit(liquidity_from, amounts.pay - amounts.fee);
        deltas.credit(revenue_from, amounts.fee);
        deltas.debit(liquidity_to, amounts.receive);
        Ok(deltas)
    }

    /// Payer half of a cross-currency QR payment of `total` (merchant's
    /// currency): checks `FxPayerMovable`, `FxPrice`, `FxPayerLegs`.
    pub(crate) fn fx_pay_payer_half(
        &self,
        payer_slot: u32,
        total: u64,
        currency: Currency,
        timestamp: u64,
        liquidity_elsewhere: i128,
    ) -> Result<FxAmounts, (Check, Status)> {
        let payer = self.account(payer_slot);
        at(Check::FxPayerMovable, payer.check_movable())?;
        let (amounts, _) = at(
            Check::FxPrice,
            self.price(payer.currency, currency, FxSide::Receive, total, timestamp),
        )?;
        let deltas = at(Check::FxPrice, self.payer_deltas(payer_slot, &amounts))?;
        at(
            Check::FxPayerLegs,
            self.check_deltas(&deltas, Some(liquidity_elsewhere)),
        )?;
        Ok(amounts)
    }

    /// Merchant half of a cross-currency QR payment: checks
    /// `FxMerchantCurrency`, `FxMerchantMovable`, `FxMerchantOverflow`. The amounts (for the result and
    /// for refunds) are priced here too, from the same rate table.
    pub(crate) fn fx_pay_merchant_half(
        &self,
        merchant_slot: u32,
        payer_currency: Currency,
        total: u64,
        currency: Currency,
        timestamp: u64,
    ) -> Result<Option<FxAmounts>, (Check, Status)> {
        let merchant = self.account(merchant_slot);
        if merchant.currency != currency {
            return Err((Check::FxMerchantCurrency, Status::CurrencyMismatch));
        }
        at(Check::FxMerchantMovable, merchant.check_movable())?;
        if i64::try_from(total)
            .ok()
            .and_then(|total| merchant.balance.checked_add(total))
            .is_none()
        {
            return Err((Check::FxMerchantOverflow, Status::Overflow));
        }
        // A price that fails here fails the payer's half (`FxPrice`) too.
        Ok(self
            .price(payer_currency, currency, FxSide::Receive, total, timestamp)
            .ok()
            .map(|(amounts, _)| amounts))
    }

    /// Applies a half's legs that its checks passed on this same state.
    fn apply_half_deltas(&mut self, deltas: Result<Deltas, Status>) {
        let balances = deltas
            .as_ref()
            .ok()
            .and_then(|deltas| self.check_deltas(deltas, None).ok());
        // Point of no return: the half's checks passed on this state.
        assert!(balances.is_some(), "a checked half applies");
        if let (Ok(deltas), Some(balances)) = (deltas, balances) {
            self.write_deltas(&deltas, &balances);
        }
    }

    /// Applies the payer's legs that `fx_pay_payer_half` said yes to.
    pub(crate) fn fx_pay_payer_apply(
        &mut self,
        id: CommandId,
        payer_slot: u32,
        amounts: &FxAmounts,
    ) {
        let deltas = self.payer_deltas(payer_slot, amounts);
        self.apply_half_deltas(deltas);
        self.fx.payments.insert(id, FxPaymentLegs::of(amounts));
    }

    /// One half of a refund of a cross-currency payment. The merchant's
    /// (`merchant`): the amount out of the merchant into this shard's
    /// liquidity part of its currency; checks `FxRefundRecord`,
    /// `FxRefundMerchantLegs`. The payer's: net and fee back out of this
    /// shard's liquidity and revenue parts of the payer's currency; checks
    /// `FxRefundRecord`, `FxRefundPayerLegs`.
    pub(crate) fn fx_refund_half(
        &self,
        slot: u32,
        amount: u64,
        legs: &FxPaymentLegs,
        merchant: bool,
    ) -> Result<FxRefund, (Check, Status)> {
        let back = at(Check::FxRefundRecord, legs.refund(amount))?;
        let (deltas, check) = if merchant {
            (
                self.refund_merchant_deltas(slot, amount),
                Check::FxRefundMerchantLegs,
            )
        } else {
            (
                self.refund_payer_deltas(slot, &back),
                Check::FxRefundPayerLegs,
            )
        };
        let deltas = at(check, deltas)?;
        at(check, self.check_deltas(&deltas, None))?;
        Ok(back)
    }

    fn refund_merchant_deltas(&self, merchant_slot: u32, amount: u64) -> Result<Deltas, Status> {
        let currency = self.account(merchant_slot).currency;
        let liquidity = self.house_slot(HouseRole::FxLiquidity, currency)?;
        let mut deltas = Deltas::new();
        deltas.debit(merchant_slot, amount);
        deltas.credit(liquidity, amount);
        Ok(deltas)
    }

    fn refund_payer_deltas(&self, payer_slot: u32, back: &FxRefund) -> Result<Deltas, Status> {
        let currency = self.account(payer_slot).currency;
        let liquidity = self.house_slot(HouseRole::FxLiquidity, currency)?;
        let revenue = self.house_slot(HouseRole::FxRevenue, currency)?;
        let mut deltas = Deltas::new();
        deltas.debit(liquidity, back.net_back);
        deltas.debit(revenue, back.fee_back);
        deltas.credit(payer_slot, back.net_back + back.fee_back);
        Ok(deltas)
    }

    /// Applies a refund half that both sides said yes to; `merchant` says
    /// which half this is. `payment` is the refunded payment's id.
    pub(crate) fn fx_refund_apply(
        &mut self,
        payment: CommandId,
        slot: u32,
        amount: u64,
        back: &FxRefund,
        merchant: bool,
    ) {
        let deltas = if merchant {
            self.refund_merchant_deltas(slot, amount)
        } else {
            self.refund_payer_deltas(slot, back)
        };
        self.apply_half_deltas(deltas);
        if let Some(stored) = self.fx.payments.get_mut(&payment) {
            *stored = back.after;
        }
    }
}
