"""bench/nightly_cost.py: the cost of one nightly on each target, against the same arithmetic done
by hand from the price tables' rows, and docs/BENCHMARKS.md holding exactly what it computes."""

from __future__ import annotations

import pytest

from bench import nightly_cost as N

DOC = N.DOC.read_text()


def test_the_measured_times_are_read_from_figures_4_and_7():
    found = N.measured(DOC)
    assert found["cluster_seconds"] == 316.0  # figure 7: full rerun, cluster time (median)
    assert len(found["job_seconds"]) == 13
    assert found["job_seconds"]["audit --ds 2024-06-28"] == 23.55
    assert found["job_seconds"]["ingest --dataset customers"] == 20.71
    with pytest.raises(ValueError, match="no figure 7 cluster time"):
        N.measured("# nothing measured")


def test_emr_on_ec2_is_the_profiles_instances_at_ec2_plus_the_emr_fee_for_the_cluster_time():
    seconds = 316 - 60 + 480  # measured cluster time - the scaled start-up + a real one
    dev = N.emr_cost("dev", 316.0)
    assert dev["seconds"] == seconds
    assert dev["hourly"] == pytest.approx(3 * (0.192 + 0.048))
    assert dev["cost"] == pytest.approx(0.72 * 736 / 3600)
    prod = N.emr_cost("prod", 316.0)
    # 1 m7g.2xlarge + 5 r7g.4xlarge + 2 c7g.4xlarge (spot units priced on demand)
    hourly = (0.3264 + 0.0816) + 5 * (0.8568 + 0.2142) + 2 * (0.58 + 0.145)
    assert prod["hourly"] == pytest.approx(hourly)
    assert prod["cost"] == pytest.approx(7.213 * 736 / 3600)


def test_serverless_is_the_profiles_workers_at_the_vcpu_and_gb_hour_prices():
    jobs = N.measured(DOC)["job_seconds"]
    dev = N.serverless_costs("dev", 316.0, jobs)
    # 1 driver (2 vCPU, 8 GB) + 2 executors (4 vCPU, 16 GB), x86 in us-east-1
    assert (dev["vcpu"], dev["memory_gb"]) == (10.0, 40.0)
    assert dev["hourly"] == pytest.approx(10 * 0.052624 + 40 * 0.0057785)
    assert dev["preinitialized"]["seconds"] == 90 + 316 - 60
    assert dev["preinitialized"]["cost"] == pytest.approx(0.75738 * 346 / 3600)
    # every demo job is under a minute: 13 job runs billed a minute each
    assert dev["on_demand"]["seconds"] == 13 * 60
    assert dev["on_demand"]["cost"] == pytest.approx(0.75738 * 780 / 3600)
    prod = N.serverless_costs("prod", 316.0, jobs)
    # 1 driver (4 vCPU, 16 GB) + 10 executors (8 vCPU, 60 GB), Graviton
    assert (prod["vcpu"], prod["memory_gb"]) == (84.0, 616.0)
    assert prod["hourly"] == pytest.approx(84 * 0.042094 + 616 * 0.004628)
    assert prod["preinitialized"]["cost"] == pytest.approx(6.386744 * 346 / 3600)
    longer = {"a": 120.0, "b": 30.0}
    assert N.serverless_costs("dev", 316.0, longer)["on_demand"]["seconds"] == 180.0


def test_benchmarks_md_holds_the_table_the_script_computes():
    text = N.section(DOC)
    assert text in DOC
    assert "| demo (`dev`) | EMR on EC2: 3 x m5.xlarge | 0.7200 | 736 | **0.1472** |" in text
