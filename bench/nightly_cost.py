"""`python -m bench.nightly_cost`: what one nightly costs on EMR on EC2 and on EMR Serverless, at the
demo's size (the `dev` profiles) and at production size (the `prod` profiles), from AWS's published
prices (include/instance_prices.json, include/serverless_prices.json) and the nightly's measured
times in docs/BENCHMARKS.md; prints the markdown section docs/BENCHMARKS.md holds (bench/findings.md
keeps it across `make bench`), so the table is computed, not typed.

What is measured (read from docs/BENCHMARKS.md): figure 7's full rerun, a nightly of every step
on the EMR target under moto, kept a cluster for `full rerun: cluster time` seconds, of which
figure 7's scaled cluster start-up (60 s); figure 4's jobs, each a spark-submit of its own
(`PIPELINE_LOCAL_SPARK_SERVER=false`), took the median seconds of its rows. What is assumed is in
ASSUMED, each with why; the section prints them.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from include.cluster_profiles import PROFILES as CLUSTERS
from include.run_report.cost import load_prices
from include.run_report.serverless_cost import load_serverless_prices, rates

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"
REGION = "us-east-1"
SCALED_START_SECONDS = 60  # figure 7's cluster start-up, scaled down from EMR's real one
ASSUMED = {
    "emr_start_seconds": (480, "a real EMR cluster's start-up: 6-10 minutes (figure 7), 8 taken; billed"),
    "serverless_start_seconds": (
        90,
        "the run's application from StartApplication to its pre-initialized workers ready; billed "
        "from the request (an upper bound)",
    ),
    "worker_minimum_seconds": (60, "EMR Serverless bills each worker at least one minute"),
}
_JOB_ROW = re.compile(
    r"^\| a Spark process per step \(`PIPELINE_LOCAL_SPARK_SERVER=false`\): job `([^`]+)` \|"
)


def measured(doc: str) -> dict[str, Any]:
    """From docs/BENCHMARKS.md: figure 7's full rerun cluster seconds and figure 4's per-job median
    seconds (a spark-submit per job)."""
    cluster = re.search(r"^\| full rerun: cluster time \| [\d.,]+ \| ([\d.,]+) \| s \|", doc, re.M)
    jobs = {}
    for line in doc.splitlines():
        if m := _JOB_ROW.match(line):
            jobs[m.group(1)] = float(line.split("|")[3].strip().replace(",", ""))
    if cluster is None or not jobs:
        raise ValueError(f"{DOC.name} has no figure 7 cluster time or no figure 4 job rows to cost")
    return {"cluster_seconds": float(cluster.group(1).replace(",", "")), "job_seconds": jobs}


def cluster_instances(profile: str) -> list[tuple[str, int]]:
    """(instance type, count) of the profile's cluster at its nominal size, a type once."""
    spec = CLUSTERS[profile]
    out: dict[str, int] = {}
    for g in spec.get("InstanceGroups", []):
        out[g["InstanceType"]] = out.get(g["InstanceType"], 0) + g["InstanceCount"]
    for fleet in spec.get("InstanceFleets", []):
        units = fleet.get("TargetOnDemandCapacity", 0) + fleet.get("TargetSpotCapacity", 0)
        kind = fleet["InstanceTypeConfigs"][0]["InstanceType"]
        out[kind] = out.get(kind, 0) + units
    return list(out.items())


def emr_cost(profile: str, cluster_seconds: float) -> dict[str, Any]:
    """The cluster's instances x (EC2 + EMR fee per hour) x the nightly's cluster hours."""
    prices = load_prices()["instances"]
    hourly = sum(n * (prices[t]["ec2"] + prices[t]["emr"]) for t, n in cluster_instances(profile))
    seconds = cluster_seconds - SCALED_START_SECONDS + ASSUMED["emr_start_seconds"][0]
    return {"hourly": hourly, "seconds": seconds, "cost": hourly * seconds / 3600}


def _size(config: Mapping[str, str]) -> tuple[float, float]:
    """(vCPU, GB) of a workerConfiguration {"cpu": "4 vCPU", "memory": "16 GB"}."""
    return float(config["cpu"].split()[0]), float(config["memory"].split()[0])


def serverless_capacity(profile: str) -> tuple[float, float]:
    """(vCPU, GB) of the profile's pre-initialized workers: the driver and the executors."""
    from include.serverless_profiles import PROFILES

    cpu = mem = 0.0
    for worker in PROFILES[profile]["initialCapacity"].values():
        c, m = _size(worker["workerConfiguration"])
        cpu, mem = cpu + worker["workerCount"] * c, mem + worker["workerCount"] * m
    return cpu, mem


def serverless_costs(
    profile: str, cluster_seconds: float, job_seconds: Mapping[str, float]
) -> dict[str, Any]:
    """Two ways to run the profile's nightly: its pre-initialized workers billed while the run's
    application is started (its start, then the nightly's steps for as long as the cluster ran
    them), and on-demand workers only (each job run the same workers for its job time, at least
    a minute each)."""
    from include.serverless_profiles import PROFILES

    rate = rates(load_serverless_prices(), REGION, PROFILES[profile]["architecture"])
    cpu, mem = serverless_capacity(profile)
    hourly = cpu * rate["vcpu_hour"] + mem * rate["memory_gb_hour"]
    app_seconds = ASSUMED["serverless_start_seconds"][0] + cluster_seconds - SCALED_START_SECONDS
    minimum = ASSUMED["worker_minimum_seconds"][0]
    billed = sum(max(s, minimum) for s in job_seconds.values())
    return {
        "architecture": PROFILES[profile]["architecture"],
        "vcpu": cpu,
        "memory_gb": mem,
        "hourly": hourly,
        "preinitialized": {"seconds": app_seconds, "cost": hourly * app_seconds / 3600},
        "on_demand": {"seconds": billed, "cost": hourly * billed / 3600},
    }


def section(doc: str) -> str:
    found = measured(doc)
    cluster, jobs = found["cluster_seconds"], found["job_seconds"]
    rows = []
    for profile, size in (("dev", "demo"), ("prod", "production")):
        emr = emr_cost(profile, cluster)
        kinds = ", ".join(f"{n} x {t}" for t, n in cluster_instances(profile))
        rows.append(
            f"| {size} (`{profile}`) | EMR on EC2: {kinds} | {emr['hourly']:.4f} | {emr['seconds']:.0f} "
            f"| **{emr['cost']:.4f}** |"
        )
        sl = serverless_costs(profile, cluster, jobs)
        workers = f"{sl['vcpu']:.0f} vCPU, {sl['memory_gb']:.0f} GB {sl['architecture']}"
        rows.append(
            f"| {size} (`{profile}`) | EMR Serverless, pre-initialized {workers} | {sl['hourly']:.4f} "
            f"| {sl['preinitialized']['seconds']:.0f} | **{sl['preinitialized']['cost']:.4f}** |"
        )
        rows.append(
            f"| {size} (`{profile}`) | EMR Serverless, on-demand workers only ({workers} per job run) "
            f"| {sl['hourly']:.4f} | {sl['on_demand']['seconds']:.0f} | **{sl['on_demand']['cost']:.4f}** |"
        )
    assumptions = "\n".join(f"- `{k}` = {v} s: {why}." for k, (v, why) in ASSUMED.items())
    prices = load_serverless_prices()
    return "\n".join(
        [
            "## What one nightly costs on each target (#30)",
            "",
            "Computed by `python -m bench.nightly_cost` (tests/bench/test_nightly_cost.py holds this "
            "table to its output) from AWS's on-demand prices in "
            f"{REGION} (include/instance_prices.json; include/serverless_prices.json, "
            f"{prices['source']}, as of {prices['as_of']}) and the times measured above: figure 7's full "
            f"rerun kept its cluster {cluster:.0f} s (with a scaled start-up of {SCALED_START_SECONDS} s), "
            f"and figure 4's {len(jobs)} jobs, each a spark-submit of its own, took "
            f"{sum(jobs.values()):.1f} s "
            "(medians). Production size means the `prod` profiles' capacity for the **same** times: the "
            "demo's data, so these are the prices of the capacity, not a forecast of a production "
            "day, whose jobs run longer on either target. Local runs cost nothing here.",
            "",
            "| size | target and capacity | USD per hour | billed seconds | USD per nightly |",
            "|---|---|---:|---:|---:|",
            *rows,
            "",
            "Assumptions:",
            "- EMR on EC2: the profile's nominal instances (`dev` 1 + 2 m5.xlarge; `prod` the first "
            "type of each fleet at its target units: 1 m7g.2xlarge, 5 r7g.4xlarge, 2 c7g.4xlarge), each "
            "at EC2 on-demand + the EMR fee per hour, for the measured cluster time less the scaled "
            "start-up plus a real one; spot task nodes priced on demand (an upper bound, as the run "
            "report does); no managed scaling above the targets; EBS not counted.",
            "- EMR Serverless: the `dev` and `prod` profiles' pre-initialized workers "
            "(include/serverless_profiles.py: 1 driver + the executors), billed per vCPU-hour and "
            "GB-hour of the profile's architecture; no storage above the free 20 GB per worker; "
            "no executors beyond the pre-initialized ones (dynamic allocation would add some at "
            "production volumes). With pre-initialized capacity the application is billed from its "
            "start for as long as the cluster ran the steps (the same orchestration); with on-demand "
            "workers only each job run holds the same workers for its figure 4 time, at least a "
            "minute, and waits for them to start unbilled (a slower nightly, not a dearer one).",
            *assumptions.splitlines(),
        ]
    )


def main() -> int:
    sys.stdout.write(section(DOC.read_text()) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
