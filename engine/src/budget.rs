//! Spending categories and monthly budgets.
//!
//! Every committed outgoing payment is put in a [`Category`] by its merchant
//! category code (ISO 18245; payments without a merchant, such as P2P
//! transfers, are [`Category::CashAndTransfers`]) and added to the account's
//! spending of that category in the payment's UTC month. A customer can set a
//! monthly budget per category; the payment that takes a category's spending
//! from at most its budget to above it gets a [`BudgetCrossing`] back, a
//! warning for the reply, never a refusal.
//!
//! A [`BudgetState`] is kept per customer account (one currency: budgets and
//! spending are in that currency's minor units). It is fixed-size: the
//! current month and the [`BUDGET_MONTHS_KEPT`]` - 1` before it, older months
//! are forgotten. Pure and deterministic, like the risk rules: time is the
//! command's timestamp.

use std::fmt;

use bincode::{Decode, Encode};

use crate::limits;
pub use crate::risk::bounds::BUDGET_MONTHS_KEPT;
use crate::risk::calendar::Month;

/// Number of categories.
pub const CATEGORIES: usize = 11;

/// A spending category. Codes are stable (used on the wire and in
/// checkpoints): new categories take the next free code.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
#[repr(u8)]
pub enum Category {
    FoodAndDrink = 1,
    Groceries = 2,
    Transport = 3,
    Travel = 4,
    Shopping = 5,
    Entertainment = 6,
    UtilitiesAndBills = 7,
    Health = 8,
    Education = 9,
    CashAndTransfers = 10,
    Other = 11,
}

impl Category {
    /// Every category, in code order.
    pub const ALL: [Category; CATEGORIES] = [
        Category::FoodAndDrink,
        Category::Groceries,
        Category::Transport,
        Category::Travel,
        Category::Shopping,
        Category::Entertainment,
        Category::UtilitiesAndBills,
        Category::Health,
        Category::Education,
        Category::CashAndTransfers,
        Category::Other,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<Category> {
        Category::ALL
            .get(usize::from(code).checked_sub(1)?)
            .copied()
    }

    /// Index into per-category arrays (code - 1).
    pub fn index(self) -> usize {
        usize::from(self.code()) - 1
    }

    /// Stable snake_case name.
    pub fn name(self) -> &'static str {
        match self {
            Category::FoodAndDrink => "food_and_drink",
            Category::Groceries => "groceries",
            Category::Transport => "transport",
            Category::Travel => "travel",
            Category::Shopping => "shopping",
            Category::Entertainment => "entertainment",
            Category::UtilitiesAndBills => "utilities_and_bills",
            Category::Health => "health",
            Category::Education => "education",
            Category::CashAndTransfers => "cash_and_transfers",
            Category::Other => "other",
        }
    }

    pub fn from_name(name: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The category of a merchant category code (see [`MCC_CATEGORY_RANGES`]);
    /// codes above 9999 are `Other`.
    pub fn from_mcc(mcc: u16) -> Category {
        // The ranges are sorted and contiguous from 0 (a test checks it).
        let index = MCC_CATEGORY_RANGES.partition_point(|&(first, _, _)| first <= mcc);
        match index.checked_sub(1).map(|i| MCC_CATEGORY_RANGES[i]) {
            Some((_, last, category)) if mcc <= last => category,
            _ => Category::Other,
        }
    }

    /// The category of a payment: by the merchant's MCC, or
    /// `CashAndTransfers` for a payment without a merchant (P2P).
    pub fn of_payment(mcc: Option<u16>) -> Category {
        mcc.map_or(Category::CashAndTransfers, Category::from_mcc)
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Encode for Category {
    fn encode<E: bincode::enc::Encoder>(
        &self,
        encoder: &mut E,
    ) -> Result<(), bincode::error::EncodeError> {
        self.code().encode(encoder)
    }
}

impl<Context> Decode<Context> for Category {
    fn decode<D: bincode::de::Decoder<Context = Context>>(
        decoder: &mut D,
    ) -> Result<Self, bincode::error::DecodeError> {
        let code = u8::decode(decoder)?;
        Category::from_code(code).ok_or(bincode::error::DecodeError::OtherString(format!(
            "unknown category code {code}"
        )))
    }
}
bincode::impl_borrow_decode!(Category);

/// MCC ranges (first, last, category), sorted, contiguous, covering
/// 0000..=9999. Built from the ISO 18245 groups (airlines 3000-3299, car
/// rental 3300-3499, lodging 3500-3999, transportation 4000-4799, utilities
/// 4800-4999, retail 5000-5999, financial 6000-6999, services 7000-7999,
/// professional services 8000-8999, government 9000-9999), with the codes
/// inside a group that belong elsewhere split out. docs/risk.md has the
/// same table.
pub const MCC_CATEGORY_RANGES: &[(u16, u16, Category)] = &[
    (0, 2999, Category::Other),        // agricultural and contracted services
    (3000, 3999, Category::Travel),    // airlines, car rental, lodging
    (4000, 4118, Category::Transport), // railways, commuter transport
    (4119, 4119, Category::Health),    // ambulance services
    (4120, 4410, Category::Transport), // taxis, buses, freight
    (4411, 4411, Category::Travel),    // cruise lines
    (4412, 4499, Category::Transport), // boat rentals, marinas
    (4500, 4783, Category::Travel),    // airlines, airports, travel agencies
    (4784, 4799, Category::Transport), // tolls, transportation services
    (4800, 4828, Category::UtilitiesAndBills), // telecommunications
    (4829, 4829, Category::CashAndTransfers), // wire transfers, money orders
    (4830, 4999, Category::UtilitiesAndBills), // cable, utilities
    (5000, 5399, Category::Shopping),  // wholesale, home supply, department stores
    (5400, 5499, Category::Groceries), // supermarkets, bakeries, food stores
    (5500, 5599, Category::Transport), // vehicle dealers, parts, fuel
    (5600, 5810, Category::Shopping),  // clothing, furniture, electronics
    (5811, 5814, Category::FoodAndDrink), // caterers, restaurants, bars, fast food
    (5815, 5818, Category::Entertainment), // digital media, games, apps
    (5819, 5911, Category::Shopping),
    (5912, 5912, Category::Health), // drug stores, pharmacies
    (5913, 5920, Category::Shopping),
    (5921, 5921, Category::Groceries), // beer, wine and liquor stores
    (5922, 5974, Category::Shopping),
    (5975, 5976, Category::Health), // hearing aids, orthopedic goods
    (5977, 5999, Category::Shopping),
    (6000, 6299, Category::CashAndTransfers), // cash, quasi-cash, securities
    (6300, 6399, Category::UtilitiesAndBills), // insurance
    (6400, 6512, Category::Other),
    (6513, 6513, Category::UtilitiesAndBills), // rent, real estate agents
    (6514, 6999, Category::CashAndTransfers),  // stored value, money transfer
    (7000, 7099, Category::Travel),            // hotels, timeshares, campgrounds
    (7100, 7499, Category::Other),             // personal and business services
    (7500, 7511, Category::Transport),         // truck stops
    (7512, 7519, Category::Travel),            // car, truck and motor home rental
    (7520, 7599, Category::Transport),         // parking, car repair and wash
    (7600, 7799, Category::Other),             // repair services
    (7800, 7999, Category::Entertainment),     // amusement, recreation, gambling
    (8000, 8099, Category::Health),            // doctors, dentists, hospitals
    (8100, 8199, Category::Other),             // legal services
    (8200, 8299, Category::Education),         // schools, colleges
    (8300, 8350, Category::Other),
    (8351, 8351, Category::Education),         // child care
    (8352, 8999, Category::Other),             // organisations, professional services
    (9000, 9499, Category::UtilitiesAndBills), // government, taxes, fines, postal
    (9500, 9999, Category::Other),
];

/// Spending of one month, per category, in minor units.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Encode, Decode)]
struct MonthSpending {
    /// Month(0) (year 0) with all zeros: a slot never used.
    month: Month,
    spent: [u64; CATEGORIES],
}

/// A payment took a category's spending above its budget.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Encode, Decode)]
pub struct BudgetCrossing {
    pub category: Category,
    pub month: Month,
    pub budget: u64,
    /// Spending of the category this month, this payment included.
    pub spent: u64,
}

/// One category's budget and spending in a month.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct BudgetLine {
    pub category: Category,
    pub budget: u64,
    pub spent: u64,
    /// Budget minus spending, zero when over.
    pub remaining: u64,
    /// Spending is above the budget (spending exactly the budget is not over).
    pub over: bool,
}

/// A budget was refused.
#[derive(Clone, Copy, PartialEq, Eq, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BudgetError {
    #[error("a budget must not be more than {max} minor units", max = limits::AMOUNT_MAX)]
    AmountTooLarge,
}

/// One account's budgets and recent monthly spending. See the module
/// documentation.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Encode, Decode)]
pub struct BudgetState {
    /// Indexed by `month % BUDGET_MONTHS_KEPT`.
    months: [MonthSpending; BUDGET_MONTHS_KEPT],
    /// Monthly budget per category (by `Category::index`), None: no budget.
    budgets: [Option<u64>; CATEGORIES],
}

impl BudgetState {
    pub fn new() -> BudgetState {
        BudgetState::default()
    }

    /// Sets (Some) or removes (None) the monthly budget of a category, in
    /// minor units. A budget of 0 is allowed: the first payment crosses it.
    pub fn set_budget(
        &mut self,
        category: Category,
        budget: Option<u64>,
    ) -> Result<(), BudgetError> {
        if budget.is_some_and(|amount| amount > limits::AMOUNT_MAX) {
            return Err(BudgetError::AmountTooLarge);
        }
        self.budgets[category.index()] = budget;
        Ok(())
    }

    pub fn budget(&self, category: Category) -> Option<u64> {
        self.budgets[category.index()]
    }

    fn slot(month: Month) -> usize {
        month.0 as usize % BUDGET_MONTHS_KEPT
    }

    /// The slot of `month`, started afresh if it holds an older month. None
    /// if it holds a newer month (timestamps never go back, so only a
    /// programmer error reaches that; the payment is then not counted rather
    /// than wiping newer data).
    fn slot_for_write(&mut self, month: Month) -> Option<&mut MonthSpending> {
        let entry = &mut self.months[Self::slot(month)];
        if entry.month > month {
            return None;
        }
        if entry.month < month {
            *entry = MonthSpending {
                month,
                spent: [0; CATEGORIES],
            };
        }
        Some(entry)
    }

    /// Prefetches the lines a payment in `category` (None: not known yet,
    /// so every category's) in `month` reads: the month's slot and the
    /// category's budget (the whole state is 12 lines).
    #[inline]
    pub(crate) fn warm(&self, category: Option<Category>, month: Month) {
        use crate::prefetch::prefetch;
        let entry = &self.months[Self::slot(month)];
        prefetch(&entry.month, 1);
        match category {
            Some(category) => {
                prefetch(&entry.spent[category.index()], 1);
                prefetch(&self.budgets[category.index()], 1);
            }
            None => {
                prefetch(&entry.spent[CATEGORIES - 1], 1);
                prefetch(&self.budgets, usize::MAX);
                prefetch(&self.budgets[CATEGORIES - 1], 1);
            }
        }
    }

    /// Adds a committed payment to its category's spending in the month of
    /// `timestamp`. Returns the crossing if spending went from at most the
    /// budget to above it with this payment.
    pub fn record_spend(
        &mut self,
        category: Category,
        amount: u64,
        timestamp: u64,
    ) -> Option<BudgetCrossing> {
        let month = Month::from_timestamp(timestamp);
        let budget = self.budgets[category.index()];
        let entry = self.slot_for_write(month)?;
        let before = entry.spent[category.index()];
        // Saturates: u64::MAX is above every budget.
        let after = before.saturating_add(amount);
        entry.spent[category.index()] = after;
        let budget = budget?;
        (before <= budget && after > budget).then_some(BudgetCrossing {
            category,
            month,
            budget,
            spent: after,
        })
    }

    /// Takes a refund off its category's spending in the month of
    /// `timestamp` (the refund's month, not the original payment's), down to
    /// zero at least.
    pub fn record_refund(&mut self, category: Category, amount: u64, timestamp: u64) {
        let month = Month::from_timestamp(timestamp);
        if let Some(entry) = self.slot_for_write(month) {
            let spent = &mut entry.spent[category.index()];
            *spent = spent.saturating_sub(amount);
        }
    }

    /// The newest month with recorded spending.
    pub fn latest_month(&self) -> Option<Month> {
        self.months
            .iter()
            .filter(|entry| entry.month != Month(0))
            .map(|entry| entry.month)
            .max()
    }

    /// Spending per category (by `Category::index`) in `month`: zeros for a
    /// month without spending, None for a month that is forgotten (more than
    /// BUDGET_MONTHS_KEPT - 1 months before the newest month recorded).
    pub fn spending(&self, month: Month) -> Option<[u64; CATEGORIES]> {
        let entry = &self.months[Self::slot(month)];
        if entry.month == month && month != Month(0) {
            return Some(entry.spent);
        }
        match self.latest_month() {
            Some(latest) if month.0 + (BUDGET_MONTHS_KEPT as u32) <= latest.0 => None,
            _ => Some([0; CATEGORIES]),
        }
    }

    /// Spending of one category in `month` (None: forgotten).
    pub fn spent(&self, category: Category, month: Month) -> Option<u64> {
        self.spending(month).map(|spent| spent[category.index()])
    }

    /// Budget status of every category with a budget, in category order, for
    /// `month` (spending counts as zero for a forgotten month).
    pub fn budget_status(&self, month: Month) -> impl Iterator<Item = BudgetLine> + '_ {
        let spending = self.spending(month).unwrap_or([0; CATEGORIES]);
        Category::ALL.into_iter().filter_map(move |category| {
            let budget = self.budgets[category.index()]?;
            let spent = spending[category.index()];
            Some(BudgetLine {
                category,
                budget,
                spent,
                remaining: budget.saturating_sub(spent),
                over: spent > budget,
            })
        })
    }

    /// Canonical bytes, little-endian: per category in code order a flag
    /// byte and the budget u64 (0 when none); then the kept months in month
    /// order, each as month u32 and per category its spending u64.
    pub fn digest_into(&self, hasher: &mut crate::digest::DigestHasher) {
        // Gathered and handed over in one update (`digest::Fields`).
        let mut fields = crate::digest::Fields::<BUDGET_DIGEST_BYTES>::new();
        for budget in &self.budgets {
            fields
                .put(&[u8::from(budget.is_some())])
                .put(&budget.unwrap_or(0).to_le_bytes());
        }
        // The kept months in month order, without copying them to sort.
        let mut order: [(Month, usize); BUDGET_MONTHS_KEPT] =
            std::array::from_fn(|index| (self.months[index].month, index));
        order.sort_unstable_by_key(|(month, _)| *month);
        for (_, index) in order {
            let entry = &self.months[index];
            fields.put(&entry.month.0.to_le_bytes());
            for spent in &entry.spent {
                fields.put(&spent.to_le_bytes());
            }
        }
        fields.hash_into(hasher);
    }
}

/// Bytes [`BudgetState::digest_into`] hashes.
const BUDGET_DIGEST_BYTES: usize = CATEGORIES * 9 + BUDGET_MONTHS_KEPT * (4 + CATEGORIES * 8);

/// Most bytes a [`BudgetState`] takes in a checkpoint (every budget set).
pub(crate) const BUDGET_STATE_BYTES_MAX: usize =
    BUDGET_MONTHS_KEPT * (4 + CATEGORIES * 8) + CATEGORIES * 9;

impl BudgetState {
    /// Appends the state's checkpoint bytes: what bincode with fixed-width
    /// little-endian integers gives (each kept month as month u32 and its
    /// spending u64 per category, then per category an option: 0, or 1 and
    /// the budget u64), written field by field (a test compares the two).
    /// bincode's per-field writes were the largest part of encoding a
    /// checkpoint at 1M accounts.
    pub(crate) fn encode_checkpoint(&self, out: &mut Vec<u8>) {
        let mut bytes = [0u8; BUDGET_STATE_BYTES_MAX];
        let mut at = 0;
        let mut put = |field: &[u8]| {
            bytes[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        };
        for entry in &self.months {
            put(&entry.month.0.to_le_bytes());
            for spent in &entry.spent {
                put(&spent.to_le_bytes());
            }
        }
        for budget in &self.budgets {
            match budget {
                Some(amount) => {
                    put(&[1]);
                    put(&amount.to_le_bytes());
                }
                None => put(&[0]),
            }
        }
        out.extend_from_slice(&bytes[..at]);
    }

    /// Reads what [`BudgetState::encode_checkpoint`] wrote from the front of
    /// `bytes`: the state and the bytes it took. Checks what bincode
    /// checked (an option's tag is 0 or 1); the values are checked where
    /// they are used, as before.
    pub(crate) fn decode_checkpoint(bytes: &[u8]) -> Result<(BudgetState, usize), String> {
        let mut fields = CheckpointFields { bytes, at: 0 };
        let mut state = BudgetState::default();
        for entry in &mut state.months {
            entry.month = Month(u32::from_le_bytes(fields.take()?));
            for spent in &mut entry.spent {
                *spent = u64::from_le_bytes(fields.take()?);
            }
        }
        for budget in &mut state.budgets {
            *budget = match fields.take::<1>()?[0] {
                0 => None,
                1 => Some(u64::from_le_bytes(fields.take()?)),
                tag => return Err(format!("a budget's option tag is {tag}")),
            };
        }
        Ok((state, fields.at))
    }
}

/// A cursor over a budget state's checkpoint bytes.
struct CheckpointFields<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl CheckpointFields<'_> {
    #[inline]
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let field = self
            .bytes
            .get(self.at..self.at + N)
            .ok_or_else(|| "a budget state is cut short".to_owned())?;
        self.at += N;
        let mut value = [0u8; N];
        value.copy_from_slice(field);
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::calendar::Day;

    fn at(year: u32, month: u32, day: u32) -> u64 {
        Day::from_civil(year, month, day).unwrap().start_timestamp()
    }

    fn month(year: u32, month: u32) -> Month {
        Month::new(year, month).unwrap()
    }

    #[test]
    fn budget_mcc_table_is_sorted_contiguous_and_complete() {
        let mut expected_first = 0u16;
        for &(first, last, _) in MCC_CATEGORY_RANGES {
            assert_eq!(first, expected_first, "gap or overlap at {first}");
            assert!(first <= last);
            expected_first = last + 1;
        }
        assert_eq!(expected_first, limits::MCC_MAX + 1);
    }

    #[test]
    fn budget_mcc_categories() {
        use Category::*;
        let table = [
            (0, Other),
            (742, Other),
            (1520, Other),
            (3000, Travel),
            (3357, Travel),
            (3501, Travel),
            (4111, Transport),
            (4119, Health),
            (4121, Transport),
            (4411, Travel),
            (4511, Travel),
            (4722, Travel),
            (4784, Transport),
            (4812, UtilitiesAndBills),
            (4814, UtilitiesAndBills),
            (4829, CashAndTransfers),
            (4900, UtilitiesAndBills),
            (5311, Shopping),
            (5399, Shopping),
            (5411, Groceries),
            (5499, Groceries),
            (5541, Transport),
            (5542, Transport),
            (5651, Shopping),
            (5732, Shopping),
            (5810, Shopping),
            (5811, FoodAndDrink),
            (5812, FoodAndDrink),
            (5813, FoodAndDrink),
            (5814, FoodAndDrink),
            (5815, Entertainment),
            (5818, Entertainment),
            (5819, Shopping),
            (5912, Health),
            (5921, Groceries),
            (5942, Shopping),
            (5975, Health),
            (5999, Shopping),
            (6010, CashAndTransfers),
            (6011, CashAndTransfers),
            (6300, UtilitiesAndBills),
            (6513, UtilitiesAndBills),
            (6540, CashAndTransfers),
            (7011, Travel),
            (7230, Other),
            (7511, Transport),
            (7512, Travel),
            (7523, Transport),
            (7832, Entertainment),
            (7995, Entertainment),
            (8011, Health),
            (8062, Health),
            (8111, Other),
            (8220, Education),
            (8351, Education),
            (8398, Other),
            (9311, UtilitiesAndBills),
            (9402, UtilitiesAndBills),
            (9950, Other),
            (9999, Other),
            (10_000, Other),
            (u16::MAX, Other),
        ];
        for (mcc, category) in table {
            assert_eq!(Category::from_mcc(mcc), category, "mcc {mcc}");
        }
        assert_eq!(Category::of_payment(None), CashAndTransfers);
        assert_eq!(Category::of_payment(Some(5812)), FoodAndDrink);
    }

    #[test]
    fn budget_category_codes_and_names_round_trip() {
        for (index, category) in Category::ALL.into_iter().enumerate() {
            assert_eq!(category.index(), index);
            assert_eq!(Category::from_code(category.code()), Some(category));
            assert_eq!(Category::from_name(category.name()), Some(category));
        }
        assert_eq!(Category::from_code(0), None);
        assert_eq!(Category::from_code(12), None);
        let config = bincode::config::standard();
        assert!(bincode::decode_from_slice::<Category, _>(&[0], config).is_err());
    }

    #[test]
    fn budget_crossing_exactly_at_the_budget_and_one_over() {
        let mut state = BudgetState::new();
        state
            .set_budget(Category::FoodAndDrink, Some(10_000))
            .unwrap();
        let t = at(2026, 11, 3);
        // Up to exactly the budget: no crossing.
        assert_eq!(state.record_spend(Category::FoodAndDrink, 6_000, t), None);
        assert_eq!(state.record_spend(Category::FoodAndDrink, 4_000, t), None);
        let line = state.budget_status(month(2026, 11)).next().unwrap();
        assert_eq!((line.spent, line.remaining, line.over), (10_000, 0, false));
        // One minor unit over: the crossing, once.
        assert_eq!(
            state.record_spend(Category::FoodAndDrink, 1, t),
            Some(BudgetCrossing {
                category: Category::FoodAndDrink,
                month: month(2026, 11),
                budget: 10_000,
                spent: 10_001,
            })
        );
        assert_eq!(state.record_spend(Category::FoodAndDrink, 500, t), None);
        let line = state.budget_status(month(2026, 11)).next().unwrap();
        assert_eq!((line.spent, line.remaining, line.over), (10_501, 0, true));
        // Other categories are not affected; a category without a budget never crosses.
        assert_eq!(state.record_spend(Category::Groceries, u64::MAX, t), None);
        assert_eq!(state.budget_status(month(2026, 11)).count(), 1);
    }

    #[test]
    fn budget_crossing_in_one_payment_and_zero_budget() {
        let mut state = BudgetState::new();
        state.set_budget(Category::Travel, Some(100)).unwrap();
        state.set_budget(Category::Entertainment, Some(0)).unwrap();
        let t = at(2026, 11, 3);
        let crossing = state.record_spend(Category::Travel, 5_000, t).unwrap();
        assert_eq!((crossing.budget, crossing.spent), (100, 5_000));
        let crossing = state.record_spend(Category::Entertainment, 1, t).unwrap();
        assert_eq!((crossing.budget, crossing.spent), (0, 1));
        assert_eq!(
            state.set_budget(Category::Travel, Some(u64::MAX)),
            Err(BudgetError::AmountTooLarge)
        );
        state.set_budget(Category::Travel, None).unwrap();
        assert_eq!(state.budget(Category::Travel), None);
    }

    #[test]
    fn budget_month_rollover_starts_afresh() {
        let mut state = BudgetState::new();
        state.set_budget(Category::Groceries, Some(1_000)).unwrap();
        let last_moment = at(2026, 12, 1) - 1;
        assert_eq!(
            state.record_spend(Category::Groceries, 1_000, last_moment),
            None
        );
        // Midnight UTC on the 1st: a new month, spending starts at zero.
        let first_moment = at(2026, 12, 1);
        assert_eq!(
            state.record_spend(Category::Groceries, 1_000, first_moment),
            None
        );
        assert!(state
            .record_spend(Category::Groceries, 1, first_moment)
            .is_some());
        assert_eq!(
            state.spent(Category::Groceries, month(2026, 11)),
            Some(1_000)
        );
        assert_eq!(
            state.spent(Category::Groceries, month(2026, 12)),
            Some(1_001)
        );
        // Year end too.
        state.record_spend(Category::Groceries, 7, at(2027, 1, 1));
        assert_eq!(state.spent(Category::Groceries, month(2027, 1)), Some(7));
        assert_eq!(state.latest_month(), Some(month(2027, 1)));
    }

    #[test]
    fn budget_months_kept_then_forgotten() {
        let mut state = BudgetState::new();
        // One payment a month for 20 months.
        for index in 0..20u32 {
            let m = Month(month(2025, 1).0 + index);
            let t = Day::from_civil(m.year(), m.month(), 15)
                .unwrap()
                .start_timestamp();
            state.record_spend(Category::Shopping, u64::from(index) + 1, t);
        }
        let latest = Month(month(2025, 1).0 + 19);
        assert_eq!(state.latest_month(), Some(latest));
        for back in 0..BUDGET_MONTHS_KEPT as u32 {
            let m = Month(latest.0 - back);
            assert_eq!(
                state.spent(Category::Shopping, m),
                Some(u64::from(19 - back) + 1),
                "{m}"
            );
        }
        let forgotten = Month(latest.0 - BUDGET_MONTHS_KEPT as u32);
        assert_eq!(state.spending(forgotten), None);
        assert_eq!(state.spending(Month(latest.0 + 1)), Some([0; CATEGORIES]));
        // A new state answers zeros for any month.
        assert_eq!(
            BudgetState::new().spending(month(2026, 1)),
            Some([0; CATEGORIES])
        );
    }

    #[test]
    fn budget_refund_reduces_spending_not_below_zero() {
        let mut state = BudgetState::new();
        let t = at(2026, 11, 3);
        state.record_spend(Category::Shopping, 1_000, t);
        state.record_refund(Category::Shopping, 400, t);
        assert_eq!(state.spent(Category::Shopping, month(2026, 11)), Some(600));
        state.record_refund(Category::Shopping, 4_000, t);
        assert_eq!(state.spent(Category::Shopping, month(2026, 11)), Some(0));
    }

    #[test]
    fn budget_state_encodes_and_digests_deterministically() {
        let build = || {
            let mut state = BudgetState::new();
            state.set_budget(Category::Health, Some(5_000)).unwrap();
            for day in 1..=28 {
                state.record_spend(
                    Category::from_mcc((day * 373 % 10_000) as u16),
                    u64::from(day) * 100,
                    at(2026, 10, day) + 12 * 3_600_000_000_000,
                );
            }
            state
        };
        let (a, b) = (build(), build());
        assert_eq!(a, b);
        let digest = |state: &BudgetState| {
            let mut hasher = crate::digest::DigestHasher::new();
            state.digest_into(&mut hasher);
            hasher.finalize()
        };
        assert_eq!(digest(&a), digest(&b));
        let config = bincode::config::standard();
        let bytes = bincode::encode_to_vec(&a, config).unwrap();
        let (decoded, _): (BudgetState, usize) =
            bincode::decode_from_slice(&bytes, config).unwrap();
        assert_eq!(decoded, a);
        let mut c = build();
        c.record_spend(Category::Other, 1, at(2026, 10, 28));
        assert_ne!(digest(&a), digest(&c));
    }
}
