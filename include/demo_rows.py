"""Seeded demo data's rows: each dataset's landing partition of one day, built with numpy (the
customers' population, daily volumes with weekly seasonality, the stock market's random walk,
the clickstream's sessions), with its duplicates and one kind of bad row a day.

include/demo_data.py writes them into a lake; the same arguments always give the same bytes.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from spark_jobs.schemas import DATASETS, LANDING_COLUMNS

SALES_PER_SCALE = 1_000_000
CLICKS_PER_SCALE = 500_000
CUSTOMERS_AT_SCALE_1 = 30_000  # grows with sqrt(scale): more sales per customer as scale grows
TICKS_PER_TICKER_DAY_AT_SCALE_1 = 1_000  # also sqrt(scale)

REGIONS = np.array(["NA", "EU", "APAC", "LATAM"], dtype=object)
REGION_WEIGHTS = np.array([0.46, 0.29, 0.17, 0.08])
N_PRODUCTS = 250
PAGES = np.array(["home", "product", "cart", "checkout"], dtype=object)
PAGE_WEIGHTS = np.array([0.45, 0.33, 0.14, 0.08])
# ticker, first price, daily volatility; GAP_TICKER misses a few trading days (a trading halt).
TICKERS = (("ACME", 120.0, 0.018), ("GLOBX", 45.0, 0.027), ("HOOLI", 310.0, 0.014))
TICKERS += (("INITECH", 18.0, 0.035), ("UMBRL", 75.0, 0.022))
GAP_TICKER = "UMBRL"
GAP_DAYS = 3
SESSION_OPEN_MS = (13 * 3600 + 30 * 60) * 1000  # 09:30 New York in summer, in UTC
SESSION_MS = int(6.5 * 3600 * 1000)
# Weekly seasonality, Monday..Sunday: shoppers peak at the weekend.
WEEKDAY_WEIGHTS = np.array([1.0, 0.95, 0.95, 1.0, 1.1, 1.45, 1.3])
# Share of the day's sales/clicks by UTC hour: quiet at night, evening peak.
HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 2, 3, 4, 5, 6, 6, 6, 7, 7, 6, 6, 7, 8, 9, 10, 10, 8, 5, 3], float)
HOUR_WEIGHTS /= HOUR_WEIGHTS.sum()
ZONE_OFFSETS_MIN = np.array([-300, 120, 330, 540])  # a few sources send local time with an offset

_STREAM = {"population": 0, "volumes": 1, **{name: 2 + i for i, name in enumerate(DATASETS)}}
_CENTS = np.array([f"{i:02d}" for i in range(100)], dtype=object)


# ---- small vectorized helpers --------------------------------------------------------------
def _rng(seed: int, stream: str, day: dt.date | None = None) -> np.random.Generator:
    """An independent generator per (seed, stream, day): days can be generated one at a time."""
    return np.random.default_rng([seed, _STREAM[stream], day.toordinal() if day else 0])


def _cat(*parts) -> np.ndarray:
    """Element-wise string concatenation of object arrays and scalars."""
    out = np.asarray(parts[0], dtype=object)
    for part in parts[1:]:
        out = out + (part if isinstance(part, str) else np.asarray(part, dtype=object))
    return out


def _as_text(values: np.ndarray) -> np.ndarray:
    return values.astype(str).astype(object)


def _padded(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal strings of 0 <= values < 10**width, without a per-row Python loop:
    write 10**width + v and drop the leading "1" from the fixed-width characters."""
    text = (np.asarray(values, dtype=np.int64) + 10**width).astype(f"U{width + 1}")
    digits = np.ascontiguousarray(text.view("U1").reshape(-1, width + 1)[:, 1:])
    return digits.view(f"U{width}").ravel().astype(object)


def _money(cents: np.ndarray) -> np.ndarray:
    return _cat(_as_text(cents // 100), ".", _CENTS[cents % 100])


def _iso_utc(day: dt.date, offsets: np.ndarray, unit: str, rng: np.random.Generator) -> np.ndarray:
    """ISO-8601 strings for offsets from midnight UTC (in `unit`); about 2% are written in a
    local zone with an explicit offset (the same instant; its local date may be another day)."""
    base = np.datetime64(day.isoformat(), unit) + offsets.astype(f"timedelta64[{unit}]")
    text = np.datetime_as_string(base, unit=unit, timezone="UTC").astype(object)
    local = np.flatnonzero(rng.random(len(offsets)) < 0.02)
    if len(local):
        minutes = ZONE_OFFSETS_MIN[rng.integers(0, len(ZONE_OFFSETS_MIN), len(local))]
        shifted = base[local] + minutes.astype("timedelta64[m]")
        sign = np.where(minutes < 0, "-", "+").astype(object)
        zone = _cat(sign, _padded(np.abs(minutes) // 60, 2), ":", _padded(np.abs(minutes) % 60, 2))
        text[local] = _cat(np.datetime_as_string(shifted, unit=unit).astype(object), zone)
    return text


def _day_seconds(rng: np.random.Generator, n: int) -> np.ndarray:
    """Sorted seconds after midnight UTC, following HOUR_WEIGHTS."""
    hours = rng.choice(24, size=n, p=HOUR_WEIGHTS)
    return np.sort(hours * 3600 + rng.integers(0, 3600, n))


def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers proportional to weights that sum exactly to total (largest remainder)."""
    share = total * weights / weights.sum()
    counts = np.floor(share).astype(np.int64)
    rest = total - int(counts.sum())
    counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
    return counts


def _with_extra_lines(
    rng: np.random.Generator, lines: np.ndarray, duplicates: int, bad: Iterable[str]
) -> tuple[np.ndarray, int]:
    """Lines plus exact copies of `duplicates` random lines (re-sent records) and the bad lines,
    all inserted at random positions. Returns the lines and the number of copies."""
    bad = list(bad)
    duplicates = min(duplicates, len(lines))
    extra = np.concatenate([lines[rng.choice(len(lines), duplicates, replace=False)], np.array(bad, object)])
    where = rng.integers(0, len(lines) + 1, len(extra))
    return np.insert(lines, where, extra), duplicates


# ---- the generated world -------------------------------------------------------------------
@dataclass
class Population:
    """Every customer of the range, in order of arrival; a day's snapshot is a prefix of it."""

    ids: np.ndarray
    snapshot_lines: np.ndarray  # "customer_id,region,signup_date"
    counts: np.ndarray  # customers in the snapshot of each day
    popularity: np.ndarray  # how often a customer buys or clicks
    spend: np.ndarray  # heavy-tailed spend multiplier (a few whales)
    community: np.ndarray
    referrer_weight: np.ndarray  # 0 for customers who never refer (dangling nodes)
    product_price_cents: np.ndarray
    product_weight: np.ndarray


def build_population(dates: list[dt.date], scale: float, seed: int) -> Population:
    rng = _rng(seed, "population")
    n = max(200, round(CUSTOMERS_AT_SCALE_1 * math.sqrt(scale)))
    base = int(n * 0.6)
    days = len(dates)
    counts = base + np.round((n - base) * np.arange(1, days + 1) / days).astype(np.int64)
    # Customers of the first snapshot signed up in the past 3 years; later ones on the day they appear.
    first_day = np.searchsorted(counts, np.arange(n), side="right")
    signup = np.datetime64(dates[0].isoformat()) + first_day.astype("timedelta64[D]")
    signup[:base] -= rng.integers(1, 3 * 365, base).astype("timedelta64[D]")
    ids = _cat("C", _padded(np.arange(1, n + 1), 7))
    regions = REGIONS[rng.choice(len(REGIONS), size=n, p=REGION_WEIGHTS)]
    lines = _cat(ids, ",", regions, ",", np.datetime_as_string(signup, unit="D").astype(object))

    n_communities = max(4, n // 150)
    is_referrer = rng.random(n) < 0.3
    rank = np.arange(1, N_PRODUCTS + 1)
    return Population(
        ids=ids,
        snapshot_lines=lines,
        counts=counts,
        popularity=rng.lognormal(0.0, 1.0, n),
        spend=1.0 + rng.pareto(3.0, n),
        community=rng.integers(0, n_communities, n),
        referrer_weight=np.where(is_referrer, 1.0 + rng.pareto(1.5, n), 0.0),
        product_price_cents=np.round(np.exp(rng.normal(3.0, 0.9, N_PRODUCTS)) * 100).astype(np.int64) + 50,
        product_weight=1.0 / rank**1.1,
    )


def daily_volumes(dates: list[dt.date], total: int, seed: int, stream: str) -> np.ndarray:
    """Rows per day summing to total: weekly seasonality with a little day-to-day noise."""
    noise = np.random.default_rng([seed, _STREAM["volumes"], _STREAM[stream]]).lognormal(0, 0.05, len(dates))
    weights = WEEKDAY_WEIGHTS[[d.weekday() for d in dates]] * noise
    return _allocate(total, weights)


@dataclass
class DayFiles:
    """One landing partition: file name -> lines (header included for CSV), plus its counts."""

    files: dict[str, list[str] | np.ndarray] = field(default_factory=dict)
    rows: int = 0
    duplicates: int = 0
    bad: dict[str, int] = field(default_factory=dict)


def _one_kind_a_day(kinds: dict[str, list[str]], day: dt.date) -> dict[str, list[str]]:
    """One kind of bad row a day, taking turns: every kind shows over two days, and the day's
    quarantine share of the small datasets (referrals, clickstream) stays under the audit's 1 %."""
    name = sorted(kinds)[day.toordinal() % len(kinds)]
    return {name: kinds[name]}


def _csv_day(name: str, lines: np.ndarray, duplicates: int, bad: dict[str, list[str]], rng) -> DayFiles:
    header = ",".join(LANDING_COLUMNS[name])
    body, dups = _with_extra_lines(rng, lines, duplicates, [line for rows in bad.values() for line in rows])
    return DayFiles(
        files={"part-0000.csv": np.concatenate([np.array([header], object), body])},
        rows=len(body),
        duplicates=dups,
        bad={kind: len(rows) for kind, rows in bad.items()},
    )


def customers_day(pop: Population, i: int, day: dt.date, seed: int) -> DayFiles:
    rng = _rng(seed, "customers", day)
    lines = pop.snapshot_lines[: pop.counts[i]]
    bad = {
        "customer_id: required": [f",EU,{day}"],
        "signup_date: not a calendar date": [f"CBAD{day:%Y%m%d},NA,{day.year}-02-30"],
    }
    return _csv_day("customers", lines, 1, bad, rng)


def sales_day(pop: Population, i: int, day: dt.date, n: int, seed: int) -> DayFiles:
    rng = _rng(seed, "sales", day)
    count = pop.counts[i]
    p = pop.popularity[:count] / pop.popularity[:count].sum()
    customer = rng.choice(count, size=n, p=p)
    product = rng.choice(N_PRODUCTS, size=n, p=pop.product_weight / pop.product_weight.sum())
    quantity = np.minimum(rng.geometric(0.45, n), 12)
    jitter = rng.lognormal(0.0, 0.15, n)
    cents = np.maximum(
        1, np.round(pop.product_price_cents[product] * quantity * pop.spend[customer] * jitter)
    )
    cents = cents.astype(np.int64)
    ts = _iso_utc(day, _day_seconds(rng, n), "s", rng)
    ids = _cat(f"T{day:%Y%m%d}-", _padded(np.arange(n), 7))
    products = _cat("P", _padded(product, 3))
    lines = _cat(
        ids, ",", pop.ids[customer], ",", products, ",", _as_text(quantity), ",", _money(cents), ",", ts
    )
    tag = f"T{day:%Y%m%d}-BAD"
    noon = f"{day}T12:00:00"
    bad = {
        "quantity: must be > 0": [f"{tag}1,{pop.ids[0]},P001,-1,10.00,{noon}Z"],
        "total_amount: not a decimal number": [f"{tag}2,{pop.ids[0]},P001,1,N/A,{noon}Z"],
        "transaction_ts: timestamp without zone": [f"{tag}3,{pop.ids[0]},P001,1,10.00,{noon}"],
    }
    return _csv_day("sales", lines, max(1, n // 2000), bad, rng)


def referrals_day(pop: Population, i: int, day: dt.date, n: int, seed: int) -> DayFiles:
    """Referrals inside communities (dense clusters), ~1% bridges between them, referrers from a
    minority of customers (the rest are dangling nodes) and some pairs referred again later."""
    rng = _rng(seed, "referrals", day)
    count = pop.counts[i]
    community = pop.community[:count]
    n_communities = int(pop.community.max()) + 1
    weight = pop.referrer_weight[:count]
    referrer = rng.choice(count, size=n, p=weight / weight.sum())
    target = community[referrer].copy()
    bridge = rng.random(n) < 0.01
    target[bridge] = rng.integers(0, n_communities, int(bridge.sum()))
    # members of each community in id order; the first `available` of them are in today's snapshot
    members = np.argsort(community, kind="stable")
    available = np.bincount(community, minlength=n_communities)
    start = np.concatenate([[0], np.cumsum(available)[:-1]])
    target = np.where(available[target] > 0, target, community[referrer])
    pos = (rng.random(n) * available[target]).astype(np.int64)
    referred = members[start[target] + pos]
    clash = referred == referrer
    referred[clash] = members[start[target[clash]] + (pos[clash] + 1) % available[target[clash]]]
    keep = referred != referrer  # a one-member community cannot refer inside itself
    referrer, referred = referrer[keep], referred[keep]
    # ~5% repeat an earlier pair of the day at another time
    repeat = rng.choice(len(referrer), size=len(referrer) // 20, replace=True)
    referrer = np.concatenate([referrer, referrer[repeat]])
    referred = np.concatenate([referred, referred[repeat]])
    seconds = rng.integers(0, 86_400, len(referrer))
    # a (referrer, referred, second) collision would be an accidental duplicate: drop it
    key = (referrer.astype(np.int64) * count + referred) * 86_400 + seconds
    _, first = np.unique(key, return_index=True)
    first = first[np.argsort(seconds[first], kind="stable")]
    referrer, referred, seconds = referrer[first], referred[first], seconds[first]
    ts = _iso_utc(day, seconds, "s", rng)
    lines = _cat(pop.ids[referrer], ",", pop.ids[referred], ",", ts)
    someone = pop.ids[referrer[0]] if len(referrer) else pop.ids[0]
    kinds = {
        "referred_id: self-referral": [f"{someone},{someone},{day}T10:00:00Z"],
        "referral_ts: timestamp without zone": [f"{pop.ids[0]},{pop.ids[1]},{day}T10:00:00"],
    }
    return _csv_day("referrals", lines, 1, _one_kind_a_day(kinds, day), rng)


class StockMarket:
    """Intraday ticks as a geometric random walk per ticker; prices carry over between days."""

    def __init__(self, dates: list[dt.date], scale: float, seed: int):
        self.seed = seed
        self.ticks = max(30, round(TICKS_PER_TICKER_DAY_AT_SCALE_1 * math.sqrt(scale)))
        self.close = {name: price for name, price, _ in TICKERS}
        trading = [d for d in dates if d.weekday() < 5]
        middle = len(trading) // 2
        self.gap = set(trading[middle : middle + GAP_DAYS]) if len(trading) > 2 * GAP_DAYS else set()

    def day(self, day: dt.date) -> DayFiles | None:
        if day.weekday() >= 5:
            return None  # market closed: no landing partition at all
        rng = _rng(self.seed, "stock_ticks", day)
        lines = []
        for name, _, sigma in TICKERS:
            if name == GAP_TICKER and day in self.gap:
                continue
            n = max(10, int(rng.poisson(self.ticks)))
            offsets = np.sort(rng.choice(SESSION_MS, size=n, replace=False)) + SESSION_OPEN_MS
            steps = rng.normal(0.0, sigma / math.sqrt(n), n)
            steps[0] += rng.normal(0.0, sigma / 2)  # overnight gap
            prices = self.close[name] * np.exp(np.cumsum(steps))
            self.close[name] = float(prices[-1])
            volume = np.maximum(1, np.round(rng.lognormal(5.0, 1.1, n))).astype(np.int64) * 10
            ts = _iso_utc(day, offsets, "ms", rng)
            ten_thousandths = np.round(prices * 10_000).astype(np.int64)
            price_text = _cat(_as_text(ten_thousandths // 10_000), ".", _padded(ten_thousandths % 10_000, 4))
            lines.append(_cat(name, ",", ts, ",", price_text, ",", _as_text(volume)))
        bad = {
            "trade_ts: timestamp without zone": [f"ACME,{day}T15:00:00.000,100.0000,10"],
            "close_price: not a number": [f"GLOBX,{day}T15:00:00.000Z,n/a,10"],
        }
        return _csv_day("stock_ticks", np.concatenate(lines), 1, bad, rng)


def clickstream_day(pop: Population, i: int, day: dt.date, n: int, seed: int) -> DayFiles:
    """JSON lines in part-0000.json, plus late-0000.json: events that arrived late (their
    event_ts is earlier in the same UTC day) and re-sent copies of events (duplicate event_id)."""
    rng = _rng(seed, "clickstream", day)
    count = pop.counts[i]
    user = rng.choice(count, size=n, p=pop.popularity[:count] / pop.popularity[:count].sum())
    page = PAGES[rng.choice(len(PAGES), size=n, p=PAGE_WEIGHTS)]
    millis = _day_seconds(rng, n) * 1000 + rng.integers(0, 1000, n)
    millis.sort()
    ts = _iso_utc(day, millis, "ms", rng)
    ids = _cat(f"E{day:%Y%m%d}-", _padded(np.arange(n), 7))
    lines = _cat('{"event_id":"', ids, '","user_id":"', pop.ids[user], '","page":"', page)
    lines = _cat(lines, '","event_ts":"', ts, '"}')
    late = np.zeros(n, bool)
    late[rng.choice(n, size=max(1, n // 50), replace=False)] = True
    duplicates = max(1, n // 100)
    copies = lines[rng.choice(n, size=duplicates, replace=False)]
    half = duplicates // 2
    kinds = {
        "malformed JSON": [f'{{"event_id":"E{day:%Y%m%d}-BAD1","user_id":"{pop.ids[0]}","page":"ho'],  # cut
        "event_ts: timestamp without zone": [
            f'{{"event_id":"E{day:%Y%m%d}-BAD2","user_id":"{pop.ids[0]}","page":"home",'
            f'"event_ts":"{day}T12:00:00.000"}}'
        ],
    }
    bad = _one_kind_a_day(kinds, day)
    bad_lines = [line for rows in bad.values() for line in rows]
    on_time, _ = _with_extra_lines(rng, lines[~late], 0, [*copies[:half], *bad_lines])
    return DayFiles(
        files={"part-0000.json": on_time, "late-0000.json": np.concatenate([lines[late], copies[half:]])},
        rows=n + duplicates + len(bad_lines),
        duplicates=duplicates,
        bad={kind: len(rows) for kind, rows in bad.items()},
    )
