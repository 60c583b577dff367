package payrail.client;

/** Spending categories of budgets and the spending query (u8 codes 1..=11). */
public enum Category {
    FOOD_AND_DRINK(1, "food_and_drink"),
    GROCERIES(2, "groceries"),
    TRANSPORT(3, "transport"),
    TRAVEL(4, "travel"),
    SHOPPING(5, "shopping"),
    ENTERTAINMENT(6, "entertainment"),
    UTILITIES_AND_BILLS(7, "utilities_and_bills"),
    HEALTH(8, "health"),
    EDUCATION(9, "education"),
    CASH_AND_TRANSFERS(10, "cash_and_transfers"),
    OTHER(11, "other");

    private final int code;
    private final String wireName;

    Category(int code, String wireName) {
        this.code = code;
        this.wireName = wireName;
    }

    public int code() {
        return code;
    }

    public String wireName() {
        return wireName;
    }

    /** The category with this code, or null. */
    public static Category fromCode(int code) {
        return code >= 1 && code <= values().length ? values()[code - 1] : null;
    }

    @Override
    public String toString() {
        return wireName;
    }
}
