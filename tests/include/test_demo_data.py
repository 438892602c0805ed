"""The demo data generator: deterministic, on contract, with the shape the analytics expect, and
with exactly the bad rows it says it injected (checked by pandas and by running ingest)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest

from include.demo_data import STAGING, generate, generate_if_empty
from include.demo_rows import GAP_TICKER, SALES_PER_SCALE, TICKERS
from scripts.generate_demo_data import main
from spark_jobs import tables
from spark_jobs.cli import parse_args
from spark_jobs.ingest import run
from spark_jobs.schemas import DATASETS, KEYS, LANDING_COLUMNS
from tests.harness.lake_tables import read_table

START, END = "2024-06-27", "2024-06-30"  # Thursday .. Sunday
SCALE = 0.003
ZONED = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$"


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo") / "lake"
    manifest = generate(root.as_uri(), START, END, SCALE, seed=7)
    return root, manifest


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _day_dir(root: Path, name: str, ds: str) -> Path:
    return root / "landing" / name / f"dt={ds}"


def _read_csv(root: Path, name: str, ds: str) -> pd.DataFrame:
    frames = [
        pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(_day_dir(root, name, ds).iterdir())
    ]
    return pd.concat(frames, ignore_index=True)


def _read_jsonl(root: Path, ds: str) -> list[str]:
    return [
        line
        for p in sorted(_day_dir(root, "clickstream", ds).iterdir())
        for line in p.read_text().splitlines()
    ]


def _utc_day(values: pd.Series) -> pd.Series:
    """The UTC date of ISO-8601 timestamps with a zone; NaN for anything else."""
    zoned = values.where(values.str.match(ZONED))
    return pd.to_datetime(zoned, utc=True, format="ISO8601", errors="coerce").dt.strftime("%Y-%m-%d")


def _bad_rows_by_pandas(root: Path, name: str, ds: str) -> pd.DataFrame:
    """The landing rows of a day a careful reader would reject, found with pandas alone."""
    if name == "clickstream":
        records = []
        for line in _read_jsonl(root, ds):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                records.append({})
        df = pd.DataFrame(records, columns=list(LANDING_COLUMNS[name])).fillna("")
    else:
        df = _read_csv(root, name, ds)
    bad = (df[list(LANDING_COLUMNS[name])].apply(lambda col: col.str.strip()) == "").any(axis=1)
    if name == "customers":
        bad |= pd.to_datetime(df["signup_date"], format="%Y-%m-%d", errors="coerce").isna()
    if name == "sales":
        bad |= ~df["quantity"].str.fullmatch(r"\d+") | (pd.to_numeric(df["quantity"], errors="coerce") <= 0)
        bad |= ~df["total_amount"].str.fullmatch(r"\d+(\.\d{1,2})?")
    if name == "referrals":
        bad |= df["referrer_id"] == df["referred_id"]
    if name == "stock_ticks":
        bad |= pd.to_numeric(df["close_price"], errors="coerce").isna()
        bad |= pd.to_numeric(df["volume"], errors="coerce").isna()
    ts_column = {"sales": "transaction_ts", "referrals": "referral_ts"}.get(name)
    ts_column = ts_column or {"stock_ticks": "trade_ts", "clickstream": "event_ts"}.get(name)
    if ts_column:
        bad |= _utc_day(df[ts_column]) != ds
    return df[bad]


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_data(demo, tmp_path):
    root, _ = demo
    again, other = tmp_path / "again", tmp_path / "other"
    generate(str(again), START, END, SCALE, seed=7)
    generate(str(other), START, END, SCALE, seed=8)

    assert _files(again) == {k: v for k, v in _files(root).items() if k.startswith("landing/")}
    assert _files(other) != _files(again)


def test_every_landing_file_has_the_contract_columns(demo):
    root, _ = demo
    csv_files = list((root / "landing").rglob("*.csv"))
    assert {p.parts[-3] for p in csv_files} == set(DATASETS) - {"clickstream"}
    for path in csv_files:
        assert path.read_text().split("\n", 1)[0] == ",".join(LANDING_COLUMNS[path.parts[-3]]), path
    for ds in pd.date_range(START, END).strftime("%Y-%m-%d"):
        for line in _read_jsonl(root, ds):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the injected malformed line
            assert tuple(record) == LANDING_COLUMNS["clickstream"]


def test_sales_rows_scale_with_scale_and_peak_at_the_weekend(tmp_path):
    counts = {}
    for scale in (0.001, 0.002):
        manifest = generate(str(tmp_path / str(scale)), "2024-06-03", "2024-06-16", scale, seed=7)
        days = manifest["days"]
        good = {
            ds: d["sales"]["rows"] - d["sales"]["duplicates"] - sum(d["sales"]["bad"].values())
            for ds, d in days.items()
        }
        counts[scale] = good
        # independently: distinct well-formed transaction ids in the files
        files = pd.concat(
            pd.read_csv(p, dtype=str) for p in (tmp_path / str(scale)).glob("landing/sales/*/*.csv")
        )
        assert files["transaction_id"].str.fullmatch(r"T\d{8}-\d{7}").sum() - files[
            "transaction_id"
        ].duplicated().sum() == round(SALES_PER_SCALE * scale)

    assert sum(counts[0.001].values()) == 1000
    assert sum(counts[0.002].values()) == 2000
    per_day = pd.Series(counts[0.002])
    weekday = pd.to_datetime(per_day.index).dayofweek
    assert per_day[weekday >= 5].mean() > 1.2 * per_day[weekday < 5].mean()


def test_customers_grow_and_every_sale_is_by_a_customer_of_that_days_snapshot(demo):
    root, _ = demo
    sizes = []
    for ds in pd.date_range(START, END).strftime("%Y-%m-%d"):
        customers = _read_csv(root, "customers", ds)
        valid = customers[(customers["customer_id"] != "") & ~customers["customer_id"].str.startswith("CBAD")]
        sizes.append(valid["customer_id"].nunique())
        assert (pd.to_datetime(valid["signup_date"]) <= pd.Timestamp(ds)).all()
        assert set(valid["region"]) == {"NA", "EU", "APAC", "LATAM"}
        sales = _read_csv(root, "sales", ds)
        assert set(sales["customer_id"]) <= set(valid["customer_id"])
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[-1]


def test_referrals_form_communities_with_dangling_nodes_and_repeated_pairs(demo):
    root, _ = demo
    referrals = pd.concat(
        _read_csv(root, "referrals", ds) for ds in pd.date_range(START, END).strftime("%Y-%m-%d")
    )
    referrals = referrals[referrals["referrer_id"] != referrals["referred_id"]]
    graph = nx.DiGraph()
    graph.add_edges_from(zip(referrals["referrer_id"], referrals["referred_id"], strict=True))

    # clustered: far more modular than a random graph with the same degrees
    undirected = nx.Graph(graph.to_undirected())
    rewired = undirected.copy()
    nx.double_edge_swap(rewired, nswap=2 * rewired.number_of_edges(), max_tries=10**6, seed=1)

    def modularity(g):
        return nx.community.modularity(g, nx.community.louvain_communities(g, seed=1))

    assert modularity(undirected) > modularity(rewired) + 0.15
    dangling = [n for n in graph if graph.out_degree(n) == 0]
    assert len(dangling) > len(graph) / 2
    pairs = referrals.groupby(["referrer_id", "referred_id"])["referral_ts"].nunique()
    assert (pairs > 1).sum() > 0


def test_no_stock_ticks_on_weekends_and_one_ticker_misses_some_trading_days(tmp_path):
    root = tmp_path / "lake"
    manifest = generate(str(root), "2024-06-03", "2024-06-23", 0.0005, seed=7)
    present = sorted(p.name for p in (root / "landing" / "stock_ticks").iterdir())
    trading = [d for d in pd.date_range("2024-06-03", "2024-06-23") if d.dayofweek < 5]
    assert present == [f"dt={d:%Y-%m-%d}" for d in trading]

    missing = []
    for day in trading:
        ticks = _read_csv(root, "stock_ticks", f"{day:%Y-%m-%d}")
        if GAP_TICKER not in set(ticks["ticker"]):
            missing.append(f"{day:%Y-%m-%d}")
        assert set(ticks["ticker"]) <= {t[0] for t in TICKERS}
    assert len(missing) == 3
    assert missing == manifest["stock_gap"]["days"]


def test_clickstream_has_late_events_in_a_later_file_and_duplicate_event_ids(demo):
    root, manifest = demo
    ds = END
    late = pd.read_json(_day_dir(root, "clickstream", ds) / "late-0000.json", lines=True, dtype=str)
    on_time_lines = (_day_dir(root, "clickstream", ds) / "part-0000.json").read_text().splitlines()
    on_time = pd.DataFrame([json.loads(x) for x in on_time_lines if x.endswith("}")])

    late_ts = pd.to_datetime(late["event_ts"], utc=True, format="ISO8601")
    assert len(late) > 0
    assert (late_ts.dt.strftime("%Y-%m-%d") == ds).all()
    assert late_ts.min() < pd.to_datetime(on_time["event_ts"], utc=True, format="ISO8601").max()
    all_ids = pd.concat([on_time["event_id"], late["event_id"]])
    assert all_ids.duplicated().sum() == manifest["days"][ds]["clickstream"]["duplicates"] > 0


def test_the_injected_bad_rows_are_in_the_files(demo):
    root, manifest = demo
    for ds in pd.date_range(START, END).strftime("%Y-%m-%d"):
        sales = _read_csv(root, "sales", ds)
        assert (pd.to_numeric(sales["quantity"], errors="coerce") < 0).sum() == 1
        assert pd.to_numeric(sales["total_amount"], errors="coerce").isna().sum() == 1
        assert (~sales["transaction_ts"].str.match(ZONED)).sum() == 1
        # the small datasets get one kind of bad row a day, taking turns (stay under 1 %)
        referrals = _read_csv(root, "referrals", ds)
        self_referrals = (referrals["referrer_id"] == referrals["referred_id"]).sum()
        assert self_referrals == manifest["days"][ds]["referrals"]["bad"].get("referred_id: self-referral", 0)
        malformed = 0
        for line in _read_jsonl(root, ds):
            try:
                json.loads(line)
            except json.JSONDecodeError:
                malformed += 1
        assert malformed == manifest["days"][ds]["clickstream"]["bad"].get("malformed JSON", 0)
        assert sum(manifest["days"][ds]["referrals"]["bad"].values()) == 1
        for name in manifest["days"][ds]:
            assert len(_bad_rows_by_pandas(root, name, ds)) == sum(manifest["days"][ds][name]["bad"].values())
    # over the range every kind shows
    kinds = {k for day in manifest["days"].values() for k in day["referrals"]["bad"]}
    assert kinds == {"referred_id: self-referral", "referral_ts: timestamp without zone"}


def test_ingest_of_a_generated_day_quarantines_exactly_the_injected_bad_rows(spark, demo):
    root, manifest = demo
    lake, ds = root.as_uri(), "2024-06-28"  # a Friday: every dataset has data
    session = tables.bind(spark, lake)
    for name in DATASETS:
        metrics = run(session, parse_args(["ingest", "--dataset", name, "--ds", ds, "--lake", lake]))

        oracle = _bad_rows_by_pandas(root, name, ds)
        key = KEYS[name][0]
        quarantine = read_table(lake, "quarantine", name, ds)
        assert sorted(quarantine[key].fillna("")) == sorted(oracle[key]), name
        injected = manifest["days"][ds][name]
        assert metrics["rows_quarantined"] == sum(injected["bad"].values()), name
        reasons = sorted(quarantine["reject_reason"])
        assert all(any(r.startswith(kind) for kind in injected["bad"]) for r in reasons), (name, reasons)
        assert metrics["duplicates_dropped"] == injected["duplicates"], name
        assert metrics["rows_in"][name] == injected["rows"], name
        # rows lost: 0, from what the two tables hold and what the generator says it wrote
        processed = read_table(lake, "processed", name, ds)
        assert len(processed) + len(quarantine) + injected["duplicates"] == injected["rows"], name


def test_the_command_line_prints_one_summary_line_per_dataset(tmp_path, capsys):
    assert (
        main(
            [
                "--lake",
                str(tmp_path / "lake"),
                "--start",
                "2024-06-29",
                "--end",
                "2024-06-30",
                "--scale",
                "0.0005",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(":")[0] for line in lines[: len(DATASETS)]] == list(DATASETS)
    partitions = {
        line.split(":")[0]: line.split(" rows in ")[1].split()[0] for line in lines[: len(DATASETS)]
    }
    # 2024-06-29/30 is a weekend: no stock ticks at all
    assert partitions == {name: "0" if name == "stock_ticks" else "2" for name in DATASETS}


# ---- --if-empty: the Compose stack's lake volume, made at its first start ------------------
ONE_DAY = ("2024-06-28", "2024-06-28", 0.001)


def test_if_empty_fills_an_empty_or_missing_lake_with_the_same_bytes_as_generate(tmp_path):
    reference = tmp_path / "reference"
    generate(reference.as_uri(), *ONE_DAY, seed=7)
    empty, missing = tmp_path / "empty", tmp_path / "missing"
    empty.mkdir()
    for lake in (empty, missing):
        manifest = generate_if_empty(lake.as_uri(), *ONE_DAY, seed=7)
        assert manifest is not None
        assert manifest["lake"] == str(lake)
        assert _files(lake) == _files(reference)  # landing/ only: the staging folder is gone
        assert sorted(p.name for p in lake.iterdir()) == ["landing"]


def test_if_empty_leaves_a_lake_holding_anything_as_it_is(tmp_path):
    lake = tmp_path / "lake"
    (lake / "warehouse").mkdir(parents=True)
    (lake / "warehouse" / "table.parquet").write_bytes(b"someone's data")
    before = _files(lake)
    assert generate_if_empty(lake.as_uri(), *ONE_DAY) is None
    assert _files(lake) == before
    (lake / "warehouse" / "table.parquet").unlink()  # an empty folder is something too
    assert generate_if_empty(str(lake), *ONE_DAY) is None
    assert [p.name for p in lake.rglob("*")] == ["warehouse"]


def test_if_empty_starts_over_after_an_interrupted_first_generation(tmp_path):
    lake = tmp_path / "lake"
    half = lake / STAGING / "landing" / "sales" / "dt=2024-06-28"
    half.mkdir(parents=True)
    (half / "part-0.csv").write_text("half a file")
    assert generate_if_empty(lake.as_uri(), *ONE_DAY) is not None
    reference = tmp_path / "reference"
    generate(reference.as_uri(), *ONE_DAY)
    assert _files(lake) == _files(reference)


def test_the_command_line_with_if_empty_says_when_it_wrote_nothing(tmp_path, capsys):
    lake = tmp_path / "lake"
    args = ["--lake", str(lake), "--start", "2024-06-28", "--end", "2024-06-28", "--scale", "0.001"]
    assert main([*args, "--if-empty"]) == 0
    first = capsys.readouterr().out
    assert f"-> {lake}/landing/sales" in first
    assert main([*args, "--if-empty"]) == 0
    assert capsys.readouterr().out == f"{lake} is not empty: no demo data written\n"
