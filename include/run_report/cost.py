"""What an EMR cluster cost: normalized instance hours and an estimate from the price table
(`include/instance_prices.json`) for every instance the cluster ran, and each step's queue and run
time, from boto3's DescribeCluster, ListInstances and ListSteps.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).parent.with_name("instance_prices.json")
# EMR's normalization factors by instance size (small = 1); "<n>xlarge" is 8 * n.
_SIZE_FACTORS = {"nano": 0.25, "micro": 0.5, "small": 1, "medium": 2, "large": 4, "xlarge": 8}
_NXLARGE = re.compile(r"^(\d+)xlarge$")


def load_prices(path: Path = PRICES_FILE) -> dict[str, Any]:
    return json.loads(path.read_text())


def normalization_factor(instance_type: str) -> float | None:
    """EMR's normalized-instance-hour factor of an instance type (m5.xlarge -> 8), None if unknown."""
    size = instance_type.partition(".")[2]
    if size in _SIZE_FACTORS:
        return float(_SIZE_FACTORS[size])
    if m := _NXLARGE.match(size):
        return 8.0 * int(m.group(1))
    return None


def _hours(start: dt.datetime, end: dt.datetime) -> float:
    return (end - start).total_seconds() / 3600


def cluster_usage(
    cluster: Mapping[str, Any],
    instances: Sequence[Mapping[str, Any]],
    steps: Sequence[Mapping[str, Any]],
    prices: Mapping[str, Any],
) -> dict[str, Any]:
    """Normalized instance hours and estimated cost of a cluster, from boto3's DescribeCluster
    `Cluster`, ListInstances `Instances` and ListSteps `Steps`.

    Every instance the cluster ran counts, whichever group or fleet launched it: a fleet picks
    its instance types and its spot/on-demand mix when it launches, and managed scaling adds and
    removes task instances during the run. Each instance counts from its creation to its end
    (without one: the cluster's end, or while the cluster is still terminating the end of its
    last step); per instance type and market: normalized hours = instance hours x factor,
    cost = normalized hours x (hourly price / factor), i.e. instance hours x hourly price.
    """
    timeline = cluster.get("Status", {}).get("Timeline", {})
    start, end = timeline.get("CreationDateTime"), timeline.get("EndDateTime")
    source = "cluster end"
    if end is None:
        step_ends = [s["Status"]["Timeline"]["EndDateTime"] for s in steps if _step_end(s)]
        end, source = (
            (max(step_ends), "last step end (cluster still terminating)") if step_ends else (None, "")
        )
    runtime = _hours(start, end) if start is not None and end is not None else None
    table = prices.get("instances", {})
    hours: dict[tuple[str, str], list[float | None]] = {}
    for instance in instances:
        life = instance.get("Status", {}).get("Timeline", {})
        created = life.get("CreationDateTime") or start
        ended = life.get("EndDateTime") or end
        key = (instance["InstanceType"], instance.get("Market") or "ON_DEMAND")
        hours.setdefault(key, []).append(_hours(created, ended) if created and ended else None)
    rows, total_nih, total_cost, unpriced = [], 0.0, 0.0, []
    for (itype, market), spans in sorted(hours.items()):
        known = None if None in spans else sum(h for h in spans if h is not None)
        factor = normalization_factor(itype)
        price = table.get(itype)
        hourly = price["ec2"] + price["emr"] if price else None
        nih = known * factor if known is not None and factor is not None else None
        cost = nih * hourly / factor if nih is not None and hourly is not None and factor else None
        if cost is None:
            unpriced.append(itype)
        total_nih += nih or 0
        total_cost += cost or 0
        rows.append(
            {
                "instance_type": itype,
                "market": market,
                "instances": len(spans),
                "instance_hours": _round(known, 4),
                "normalization_factor": factor,
                "hourly_price": hourly,
                "normalized_instance_hours": _round(nih),
                "estimated_cost": _round(cost, 4),
            }
        )
    return {
        "cluster_id": cluster.get("Id"),
        "log_uri": cluster.get("LogUri"),
        "state": cluster.get("Status", {}).get("State"),
        "runtime_hours": _round(runtime, 4),
        "runtime_source": source,
        "instance_types": rows,
        "normalized_instance_hours": _round(total_nih) if runtime is not None else None,
        # EMR's own figure (whole hours per instance, so usually above ours); reported as is.
        "emr_normalized_instance_hours": cluster.get("NormalizedInstanceHours"),
        "estimated_cost": _round(total_cost, 4) if runtime is not None and not unpriced else None,
        "unpriced_instance_types": sorted(set(unpriced)),
        "currency": prices.get("currency"),
        "price_table": {k: prices.get(k) for k in ("region", "as_of")},
    }


def _step_end(step: Mapping[str, Any]) -> bool:
    return step.get("Status", {}).get("Timeline", {}).get("EndDateTime") is not None


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def emr_step_timings(steps: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """ListSteps `Steps` -> {step name: {"id", "state", "queue_seconds", "seconds"}}: queued from
    its creation to its start (waiting for the cluster or the steps before it), then `seconds`
    from start to end (spark-submit, the JVM and the job)."""
    out = {}
    for s in steps:
        timeline = s.get("Status", {}).get("Timeline", {})
        created, start, end = (timeline.get(k) for k in ("CreationDateTime", "StartDateTime", "EndDateTime"))
        out[s["Name"]] = {
            "id": s.get("Id"),
            "state": s.get("Status", {}).get("State"),
            "queue_seconds": round((start - created).total_seconds(), 3) if created and start else None,
            "seconds": round((end - start).total_seconds(), 3) if start and end else None,
        }
    return out


def run_attempts(
    read: Sequence[tuple[Mapping[str, Any], Sequence[Mapping[str, Any]]]],
) -> dict[str, Any]:
    """Every cluster of a run and what ran on it: `read` holds, per cluster of the run oldest
    first, its `cluster_usage` and its ListSteps `Steps` of this run (as ListSteps lists them, newest
    first). A repaired run has more than
    one: the first ran the run until a step failed (or the cluster was lost), each next one only
    what the repair cleared (the failed steps, their dependants, the audit and the publish).

    Each step gets its try: the how-manieth EMR step of that name in the run (a step cleared and
    run again on the next cluster is try 2). `total` sums every cluster's normalized instance hours
    and cost (None if one of them has none)."""
    from plugins.emr_naming import parse_emr_step_name

    tries: dict[str, int] = {}
    clusters = []
    for n, (usage, steps) in enumerate(read, 1):
        ran = []
        for s in reversed(steps):  # ListSteps lists the newest first
            tries[s["Name"]] = tries.get(s["Name"], 0) + 1
            parsed = parse_emr_step_name(s["Name"]) or {"step": s["Name"], "ds": ""}
            timing = emr_step_timings([s])[s["Name"]]
            ran.append(
                {
                    "step": parsed["step"],
                    "ds": parsed["ds"],
                    "name": s["Name"],
                    "try": tries[s["Name"]],
                    **timing,
                }
            )
        clusters.append({**usage, "attempt": n, "steps": ran})

    def total(key: str, digits: int) -> float | None:
        values = [c.get(key) for c in clusters]
        return None if not values or None in values else round(sum(values), digits)

    return {
        "clusters": clusters,
        "total": {
            "clusters": len(clusters),
            "normalized_instance_hours": total("normalized_instance_hours", 3),
            "estimated_cost": total("estimated_cost", 4),
            "currency": next((c.get("currency") for c in clusters if c.get("currency")), None),
        },
    }


def read_emr(client: Any, cluster_id: str) -> tuple[dict, list[dict], list[dict]]:
    """DescribeCluster, ListInstances (groups' and fleets' alike) and ListSteps of one cluster."""
    cluster = client.describe_cluster(ClusterId=cluster_id)["Cluster"]
    instances = [
        i
        for page in client.get_paginator("list_instances").paginate(ClusterId=cluster_id)
        for i in page["Instances"]
    ]
    steps = [
        s for page in client.get_paginator("list_steps").paginate(ClusterId=cluster_id) for s in page["Steps"]
    ]
    return cluster, instances, steps
