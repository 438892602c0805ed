"""Every schema of the data contract, declared once.

Readers, validators, writers, the Glue table registration and the tests all use these.
"""

from pyspark.sql.types import (
    ArrayType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

MONEY = DecimalType(12, 2)
# sum() of DECIMAL(12,2) in Spark is DECIMAL(22,2): money stays exact after aggregation.
MONEY_SUM = DecimalType(22, 2)


def _struct(*fields: tuple[str, object]) -> StructType:
    return StructType([StructField(name, dtype, True) for name, dtype in fields])


# ---- landing -> processed ------------------------------------------------------------------
PROCESSED = {
    "customers": _struct(
        ("customer_id", StringType()), ("region", StringType()), ("signup_date", DateType())
    ),
    "sales": _struct(
        ("transaction_id", StringType()),
        ("customer_id", StringType()),
        ("product_id", StringType()),
        ("quantity", IntegerType()),
        ("total_amount", MONEY),
        ("transaction_ts", TimestampType()),
    ),
    "referrals": _struct(
        ("referrer_id", StringType()), ("referred_id", StringType()), ("referral_ts", TimestampType())
    ),
    "stock_ticks": _struct(
        ("ticker", StringType()),
        ("trade_ts", TimestampType()),
        ("close_price", DoubleType()),
        ("volume", LongType()),
    ),
    "clickstream": _struct(
        ("event_id", StringType()),
        ("user_id", StringType()),
        ("page", StringType()),
        ("event_ts", TimestampType()),
    ),
}
DATASETS = tuple(PROCESSED)

# Deduplication keys: rows sharing a key keep one.
KEYS = {
    "customers": ("customer_id",),
    "sales": ("transaction_id",),
    "referrals": ("referrer_id", "referred_id", "referral_ts"),
    "stock_ticks": ("ticker", "trade_ts"),
    "clickstream": ("event_id",),
}

# Landing file format; the landing header must be exactly these columns, in this order.
LANDING_FORMAT = {name: "json" if name == "clickstream" else "csv" for name in DATASETS}
LANDING_COLUMNS = {name: tuple(schema.fieldNames()) for name, schema in PROCESSED.items()}

# A day without data is normal for these (market closed, no traffic): empty partition.
OPTIONAL_DAYS = frozenset({"stock_ticks", "clickstream"})

# Quarantine rows: every landing column as text, plus why it was rejected; raw_record keeps the
# original line when it could not be split into the landing columns (malformed CSV row or JSON
# line), null otherwise.
QUARANTINE = {
    name: _struct(
        *[(c, StringType()) for c in cols], ("reject_reason", StringType()), ("raw_record", StringType())
    )
    for name, cols in LANDING_COLUMNS.items()
}

# ---- curated -------------------------------------------------------------------------------
# Numeric features, in the order of the `features` vector (the SageMaker input).
FEATURE_COLUMNS = (
    "lifetime_value",
    "purchase_frequency",
    "avg_basket_size",
    "spend_volatility",
    "recency_days",
    "pagerank",
)
# The four features KMeans segments on, as named in customer_segments.
SEGMENT_FEATURES = ("total_spent", "num_purchases", "avg_basket_size", "recency_days")
SEGMENT_K = 3
SEGMENT_SEED = 42

CURATED = {
    "referral_graph": _struct(
        ("customer_id", StringType()), ("pagerank", DoubleType()), ("community_id", StringType())
    ),
    "customer_features": _struct(
        ("customer_id", StringType()),
        ("region", StringType()),
        ("lifetime_value", MONEY_SUM),
        ("purchase_frequency", LongType()),
        ("avg_basket_size", DoubleType()),
        ("spend_volatility", DoubleType()),
        ("last_purchase_date", DateType()),
        ("recency_days", IntegerType()),
        ("pagerank", DoubleType()),
        ("community_id", StringType()),
        ("features", ArrayType(DoubleType(), containsNull=False)),
    ),
    "feature_correlation": _struct(
        ("feature_a", StringType()), ("feature_b", StringType()), ("pearson", DoubleType())
    ),
    "sales_rolling_30d": _struct(
        ("region", StringType()),
        ("date", DateType()),
        ("daily_amount", MONEY_SUM),
        ("daily_count", LongType()),
        ("rolling_30d_sum", MONEY_SUM),
        ("rolling_30d_count", LongType()),
        ("rolling_30d_avg", DoubleType()),
    ),
    "customer_segments": _struct(
        ("customer_id", StringType()),
        ("total_spent", MONEY_SUM),
        ("num_purchases", LongType()),
        ("avg_basket_size", DoubleType()),
        ("recency_days", IntegerType()),
        ("segment", IntegerType()),
    ),
    "stock_daily": _struct(
        ("ticker", StringType()),
        ("date", DateType()),
        ("open_price", DoubleType()),
        ("close_price", DoubleType()),
        ("avg_close_price", DoubleType()),
        ("high", DoubleType()),
        ("low", DoubleType()),
        ("total_volume", LongType()),
        ("max_volume", LongType()),
        ("return_1d", DoubleType()),
        ("sma_20", DoubleType()),
        ("volatility_20d", DoubleType()),
    ),
    "clickstream_checkouts": _struct(
        ("user_id", StringType()),
        ("window_start", TimestampType()),
        ("window_end", TimestampType()),
        ("checkout_count", LongType()),
    ),
}
