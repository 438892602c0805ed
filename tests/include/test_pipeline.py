"""The pipeline spec: its order, what each output needs, and the command lines it produces."""

from __future__ import annotations

import pytest

from include import pipeline as P
from spark_jobs.cli import build_parser
from spark_jobs.schemas import CURATED, DATASETS


def test_the_spec_builds_exactly_the_contracts_curated_outputs():
    assert sorted(P.OUTPUTS) == sorted(CURATED)


def test_every_dataset_is_ingested_by_a_ranged_step():
    ingests = {s.options[1]: s for s in P.PIPELINE if s.job == "ingest"}
    assert sorted(ingests) == sorted(DATASETS)
    assert all(s.ranged and not s.depends_on and not s.produces for s in ingests.values())


def test_dependencies_follow_the_data_contract():
    deps = {s.name: set(s.depends_on) for s in P.PIPELINE}
    assert deps["graph"] == {"ingest_referrals"}
    assert deps["features"] == {"ingest_sales", "ingest_customers", "graph"}
    assert deps["segments"] == {"features"}
    assert deps["sales_rolling"] == {"ingest_sales", "ingest_customers"}
    assert deps["stock_daily"] == {"ingest_stock_ticks"}
    assert deps["clickstream"] == {"ingest_clickstream"}


def test_steps_for_an_output_are_its_producer_and_everything_it_needs_in_spec_order():
    assert [s.name for s in P.steps_for(["customer_segments"])] == [
        "ingest_customers",
        "ingest_sales",
        "ingest_referrals",
        "graph",
        "features",
        "segments",
    ]
    assert [s.name for s in P.steps_for(["stock_daily"])] == ["ingest_stock_ticks", "stock_daily"]
    assert [s.name for s in P.steps_for(["feature_correlation", "sales_rolling_30d"])] == [
        "ingest_customers",
        "ingest_sales",
        "ingest_referrals",
        "graph",
        "features",
        "sales_rolling",
    ]
    assert P.steps_for(P.OUTPUTS) == P.PIPELINE


def test_waves_put_each_step_after_its_dependencies_and_independent_steps_together():
    names = [[s.name for s in wave] for wave in P.waves(P.PIPELINE)]
    assert names == [
        ["ingest_customers", "ingest_sales", "ingest_referrals", "ingest_stock_ticks", "ingest_clickstream"],
        ["graph", "sales_rolling", "stock_daily", "clickstream"],
        ["features"],
        ["segments"],
    ]
    daily = [s for s in P.PIPELINE if not s.ranged]  # deps outside the set are already done
    assert [[s.name for s in w] for w in P.waves(daily)] == [
        ["graph", "sales_rolling", "stock_daily", "clickstream"],
        ["features"],
        ["segments"],
    ]


def test_job_args_are_the_cli_of_the_contract_and_parse_with_the_jobs_own_parser():
    ingest, graph = P.STEPS["ingest_sales"], P.STEPS["graph"]
    lake = "s3://bucket/lake"
    assert P.job_args(graph, ds="2024-06-30", lake=lake) == ["graph", "--ds", "2024-06-30", "--lake", lake]
    assert P.job_args(graph, ds="2024-06-30", lake=lake, start_ds="2024-06-01") == [
        "graph",
        "--ds",
        "2024-06-30",
        "--lake",
        lake,
    ]
    ranged = P.job_args(ingest, ds="2024-06-30", lake=lake, start_ds="2024-06-01")
    assert ranged == [
        "ingest",
        "--dataset",
        "sales",
        "--start-ds",
        "2024-06-01",
        "--end-ds",
        "2024-06-30",
        "--lake",
        lake,
    ]
    single = P.job_args(ingest, ds="2024-06-30", lake=lake, start_ds="2024-06-30")
    assert single == ["ingest", "--dataset", "sales", "--ds", "2024-06-30", "--lake", lake]
    for args in (ranged, single):
        parsed = build_parser().parse_args(args)
        assert (parsed.job, parsed.dataset, parsed.lake) == ("ingest", "sales", lake)


def test_an_emr_step_runs_the_job_with_spark_submit_in_cluster_mode_from_the_versioned_code():
    step = P.emr_step(
        "n", ["graph", "--ds", "2024-06-30"], py_files="s3://c/v1/jobs.zip", entrypoint="s3://c/v1/main.py"
    )
    assert step == {
        "Name": "n",
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {
            "Jar": "command-runner.jar",
            "Args": [
                "spark-submit",
                "--deploy-mode",
                "cluster",
                "--py-files",
                "s3://c/v1/jobs.zip",
                "s3://c/v1/main.py",
                "graph",
                "--ds",
                "2024-06-30",
            ],
        },
    }


@pytest.mark.parametrize(
    "bad", ["2024-6-30", "2024-02-30", "20240630", None, 20240630, "2024-06-30; rm -rf /"]
)
def test_check_ds_rejects_anything_but_a_real_calendar_date(bad):
    with pytest.raises(P.RunParamError):
        P.check_ds(bad, "ds")


def test_check_outputs_accepts_known_outputs_in_spec_order_and_rejects_the_rest():
    assert P.check_outputs(["stock_daily", "referral_graph"]) == ["referral_graph", "stock_daily"]
    for bad in ([], ["nope"], ["stock_daily", "stock_daily"], "stock_daily", None):
        with pytest.raises(P.RunParamError):
            P.check_outputs(bad)


def test_check_range_lists_every_date_and_limits_the_length():
    assert P.check_range("2024-02-28", "2024-03-01", max_days=3, what="r") == [
        "2024-02-28",
        "2024-02-29",
        "2024-03-01",
    ]
    with pytest.raises(P.RunParamError, match="at most 2"):
        P.check_range("2024-02-28", "2024-03-01", max_days=2, what="r")
    with pytest.raises(P.RunParamError, match="after"):
        P.check_range("2024-03-02", "2024-03-01", max_days=10, what="r")
