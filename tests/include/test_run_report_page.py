"""The run report's page: per step queue, start-up and Spark time, links to the EMR console, the
Spark History Server and each step's logs (locally the Airflow task logs), rows per output and cost
per run over the last 14 runs; on EMR the page is written to S3 beside the JSON (moto).

The page is read back with the standard library's HTML parser (cells, links, charts), not by
searching its text."""

from __future__ import annotations

import datetime as dt
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import boto3
from moto import mock_aws

from include import lake_files
from include.run_report import cost, model, render, task
from include.settings import Settings
from plugins.emr_naming import emr_step_name
from tests.harness.plans import nightly_run_plan

DAG = "customer_analytics_nightly"
DS = "2024-06-10"
RUN = "manual__2024-06-10T02:00:00+00:00"
UTC = dt.UTC
BASE = "http://localhost:8080"
RUN_Q = "manual__2024-06-10T02%3A00%3A00%2B00%3A00"  # the run id in a URL path


class _Page(HTMLParser):
    """Tables (rows of cell texts, with each cell's links), links, and SVG marks of a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.cell_links: list[list[list[list[tuple[str, str]]]]] = []
        self.links: list[tuple[str, str, str | None]] = []  # (text, href, target)
        self.marks: dict[str, int] = {}
        self.texts: list[str] = []
        self._cell: list[str] | None = None
        self._link: dict | None = None
        self._in_title = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append([])
            self.cell_links.append([])
        elif tag == "tr":
            self.tables[-1].append([])
            self.cell_links[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []
            self.cell_links[-1][-1].append([])
        elif tag == "a":
            self._link = {"href": a.get("href"), "target": a.get("target"), "text": []}
        elif tag == "title":
            self._in_title += 1
        if a.get("class"):
            key = f"{tag}.{a['class']}"
            self.marks[key] = self.marks.get(key, 0) + 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "a" and self._link is not None:
            text = "".join(self._link["text"]).strip()
            self.links.append((text, self._link["href"], self._link["target"]))
            if self._cell is not None:
                self.cell_links[-1][-1][-1].append((text, self._link["href"]))
            self._link = None
        elif tag == "title":
            self._in_title -= 1

    def handle_data(self, data):
        if self._in_title:
            return
        self.texts.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._link is not None:
            self._link["text"].append(data)

    def table(self, first_header: str) -> list[list[str]]:
        return next(t for t in self.tables if t and t[0] and t[0][0] == first_header)


def _metrics(rows_out, spark, startup, queue=None, total=None):
    timings = {"startup_seconds": startup, "spark_seconds": spark}
    if queue is not None:
        timings["queue_seconds"] = queue
    return {"rows_in": {"x": 10}, "rows_out": rows_out, "rows_quarantined": 1,
            "duration_seconds": total if total is not None else startup + spark + 0.5,
            "timings": timings}  # fmt: skip


def _local_report(ds=DS, run_id=RUN, sales=1000, segments=300, graph_state="success"):
    plan = nightly_run_plan(ds, ["ingest_sales", "graph", "segments"], emr=False, dag_id=DAG, run_id=run_id)
    states = {"run_ingest_sales": "success", "run_graph": graph_state, "run_segments": "success"}
    metrics = {
        ("ingest_sales", ds): _metrics({"sales": sales}, 12.25, 0.75, queue=3.5, total=17.0),
        ("graph", ds): _metrics({"referral_graph": 40}, 8.0, 0.5),
        ("segments", ds): _metrics({"customer_segments": segments}, 5.0, 0.5, queue=0.0),
    }
    return model.build_report(dag_id=DAG, run_id=run_id, target="local", plan=plan,
                          task_states=states, metrics=metrics)  # fmt: skip


# ---- queue, start-up and Spark time per step -----------------------------------------------
def test_emr_step_timings_split_the_queue_from_the_run():
    t0 = dt.datetime(2024, 6, 11, 2, 0, tzinfo=UTC)
    steps = [
        {"Id": "s-1", "Name": "a", "Status": {"State": "COMPLETED", "Timeline": {
            "CreationDateTime": t0, "StartDateTime": t0 + dt.timedelta(seconds=210),
            "EndDateTime": t0 + dt.timedelta(seconds=600.5)}}},
        {"Id": "s-2", "Name": "b", "Status": {"State": "PENDING", "Timeline": {"CreationDateTime": t0}}},
    ]  # fmt: skip
    assert cost.emr_step_timings(steps) == {
        "a": {"id": "s-1", "state": "COMPLETED", "queue_seconds": 210.0, "seconds": 390.5},
        "b": {"id": "s-2", "state": "PENDING", "queue_seconds": None, "seconds": None},
    }


def test_a_steps_row_has_its_queue_start_up_and_spark_time_from_the_job_or_from_emr():
    rows = {s["step"]: s for s in _local_report()["steps"]}
    keys = ("queue_seconds", "startup_seconds", "spark_seconds")
    assert {k: rows["ingest_sales"].get(k) for k in keys} == {
        "queue_seconds": 3.5, "startup_seconds": 0.75, "spark_seconds": 12.25,
    }  # fmt: skip
    assert "queue_seconds" not in rows["graph"]  # a job in a process of its own waited for nothing
    assert rows["segments"]["queue_seconds"] == 0.0

    # on EMR the queue is the step's (created -> started), the start-up and Spark time the job's
    plan = nightly_run_plan(DS, ["graph"], emr=True, dag_id=DAG, run_id=RUN)
    name = emr_step_name(DAG, RUN, DS, "graph")
    report = model.build_report(
        dag_id=DAG, run_id=RUN, target="emr", plan=plan, task_states={"run_graph": "success"},
        metrics={("graph", DS): _metrics({"referral_graph": 40}, 8.0, 2.5)},
        emr_steps={name: {"id": "s-9", "state": "COMPLETED", "queue_seconds": 95.0, "seconds": 31.0}},
    )  # fmt: skip
    graph = next(s for s in report["steps"] if s["step"] == "graph")
    assert (graph["queue_seconds"], graph["startup_seconds"], graph["spark_seconds"]) == (95.0, 2.5, 8.0)


# ---- links ----------------------------------------------------------------------------------
def _emr_report():
    plan = nightly_run_plan(DS, ["graph"], emr=True, dag_id=DAG, run_id=RUN)
    name = emr_step_name(DAG, RUN, DS, "graph")
    cluster = {"cluster_id": "j-2AB3CD", "log_uri": "s3n://logs-bucket/emr/", "region": "eu-west-1",
               "estimated_cost": 1.08, "currency": "USD"}  # fmt: skip
    return model.build_report(
        dag_id=DAG, run_id=RUN, target="emr", plan=plan,
        task_states={"run_graph": "success", "run_audit": "success", "run_publish": "success"},
        metrics={("graph", DS): _metrics({"referral_graph": 40}, 8.0, 2.5)},
        emr_steps={name: {"id": "s-9XYZ", "state": "COMPLETED", "queue_seconds": 95.0, "seconds": 31.0}},
        cluster=cluster,
    )  # fmt: skip


def test_emr_links_go_to_the_cluster_its_spark_history_server_and_each_steps_log_folder():
    report = model.add_links(_emr_report(), airflow_base=BASE, region="eu-west-1")
    console = "https://eu-west-1.console.aws.amazon.com/emr/home?region=eu-west-1#/clusterDetails/j-2AB3CD"
    assert report["links"] == {
        "airflow_run": f"{BASE}/dags/{DAG}/runs/{RUN_Q}",
        "emr_cluster": console,
        "spark_history_server": console,  # its Applications tab: EMR's persistent Spark History Server
    }
    graph = next(s for s in report["steps"] if s["step"] == "graph")
    assert graph["step_log_url"] == (
        "https://s3.console.aws.amazon.com/s3/buckets/logs-bucket?region=eu-west-1&prefix=emr%2Fj-2AB3CD%2Fsteps%2Fs-9XYZ%2F"
    )
    assert (
        graph["task_log_url"]
        == f"{BASE}/dags/{DAG}/runs/manual__2024-06-10T02%3A00%3A00%2B00%3A00/tasks/run_graph"
    )
    skipped = next(s for s in report["steps"] if s["step"] == "segments")
    assert "task_log_url" not in skipped  # a skipped step ran nothing: no log


def test_local_links_are_the_airflow_task_logs_and_nothing_of_aws():
    report = model.add_links(_local_report(), airflow_base=BASE + "/", region=None)
    assert report["links"] == {
        "airflow_run": f"{BASE}/dags/{DAG}/runs/manual__2024-06-10T02%3A00%3A00%2B00%3A00"
    }
    sales = next(s for s in report["steps"] if s["step"] == "ingest_sales")
    assert sales["task_log_url"].endswith(
        "/runs/manual__2024-06-10T02%3A00%3A00%2B00%3A00/tasks/run_ingest_sales"
    )
    assert not any("step_log_url" in s for s in report["steps"])


# ---- trends ---------------------------------------------------------------------------------
def _days(n: int, last: str = DS) -> list[str]:
    end = dt.date.fromisoformat(last)
    return [(end - dt.timedelta(days=n - 1 - i)).isoformat() for i in range(n)]


def test_trends_hold_rows_per_output_and_cost_of_the_last_14_runs():
    days = _days(16)
    reports = [_local_report(ds=d, run_id=f"scheduled__{d}", sales=1000 + i, segments=300 - i)
               for i, d in enumerate(days)]  # fmt: skip
    # a run whose graph failed wrote no referral_graph rows
    reports[-2] = _local_report(ds=days[-2], run_id="x", sales=1014, segments=286, graph_state="failed")
    emr = _emr_report()
    emr["ds"] = days[-1]
    reports[-1] = emr
    trend = model.trends(list(reversed(reports)))  # in any order: by date
    assert [r["ds"] for r in trend["runs"]] == days[2:]
    assert list(trend["rows"]) == ["curated.customer_segments", "curated.referral_graph", "processed.sales"]
    assert trend["rows"]["processed.sales"] == {d: 1000 + i for i, d in enumerate(days) if 2 <= i < 15}
    assert trend["rows"]["curated.referral_graph"] == dict.fromkeys(days[2:14], 40) | {days[15]: 40}
    assert trend["cost"] == dict.fromkeys(days[2:15]) | {days[15]: 1.08}
    assert trend["currency"] == "USD"


# ---- the page -------------------------------------------------------------------------------
def test_the_page_shows_each_steps_times_rows_and_links_and_the_trends():
    reports = [_local_report(ds=d, run_id=f"scheduled__{d}", sales=1000 + i, segments=300 - i)
               for i, d in enumerate(_days(3))]  # fmt: skip
    report = model.add_links(reports[-1], airflow_base=BASE, region=None)
    page = _Page(render.html_page(report, {}, model.trends(reports)))

    steps = page.table("step")
    assert steps[0] == ["step", "ds", "state", "queued s", "start-up s", "Spark s", "total s", "rows in",
                        "rows out", "quarantined", "logs"]  # fmt: skip
    by_step = {row[0]: row for row in steps[1:]}
    assert by_step["ingest_sales"] == [
        "ingest_sales", DS, "success", "3.5", "0.8", "12.2", "17.0", "10", "1,002", "1", "task log"
    ]  # fmt: skip
    assert by_step["graph"][3:7] == ["-", "0.5", "8.0", "9.0"]
    assert by_step["clickstream"][2:] == ["skipped", "-", "-", "-", "-", "-", "-", "-", ""]
    run_url = f"{BASE}/dags/{DAG}/runs/scheduled__2024-06-10"
    assert ("the run in Airflow", run_url, None) in page.links
    assert ("task log", f"{run_url}/tasks/run_ingest_sales", None) in page.links

    trend = page.table("output")
    assert trend[0] == ["output", "06-08", "06-09", "06-10", "trend"]
    assert trend[1:] == [
        ["curated.customer_segments", "300", "299", "298", ""],
        ["curated.referral_graph", "40", "40", "40", ""],
        ["processed.sales", "1,000", "1,001", "1,002", ""],
    ]
    assert page.marks["polyline.trend"] == 3
    assert "no cost: these runs ran on local Spark (or their instances have no price)" in page.texts
    assert "<script" not in render.html_page(report, {}, model.trends(reports))


def test_an_emr_page_charts_the_cost_per_run_and_opens_the_consoles_in_a_tab_of_their_own():
    earlier = _emr_report()
    earlier["ds"], earlier["emr_cluster"] = "2024-06-09", dict(earlier["emr_cluster"], estimated_cost=2.5)
    local = _local_report(ds="2024-06-08")
    report = model.add_links(_emr_report(), airflow_base=BASE, region="eu-west-1")
    page = _Page(render.html_page(report, {}, model.trends([local, earlier, report])))
    assert page.marks["rect.bar"] == 2  # the two priced runs
    assert "no cost: 2024-06-08" in page.texts
    bars = [t for t in page.texts if re.fullmatch(r"[\d.]+ USD", t)]
    assert bars == ["2.5 USD", "1.08 USD"]
    consoles = [(text, target) for text, href, target in page.links if href.startswith("https://")]
    assert consoles == [
        ("EMR cluster j-2AB3CD", "_blank"),
        ("Spark History Server (the cluster's Applications tab)", "_blank"),
        ("step logs", "_blank"),
    ]
    graph = next(row for row in page.table("step") if row[0] == "graph")
    assert graph[3:7] == [
        "95.0",
        "2.5",
        "8.0",
        "31.0",
    ]  # queued on EMR, the job's start-up and work, the step


# ---- where the page goes ---------------------------------------------------------------------
def test_earlier_reports_are_the_13_latest_dates_before_this_one_from_the_lake(tmp_path, caplog):
    lake = tmp_path.as_uri()
    days = _days(16)
    for d in days:
        path = Path(lake_files.report_uri(lake, DAG, d).removeprefix("file://"))
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"ds": d}) if d != days[3] else "not json")
    (tmp_path / "_runs" / "reports" / f"dag_id={DAG}" / "dt=2024-07-01").mkdir()  # no report in it
    dates = lake_files.report_dates(lake, DAG, None, None)
    assert dates == days
    read, _ = lake_files.lake_io(None, None)
    earlier = task.earlier_reports(read, lake, DAG, days[-1], dates)
    assert [r["ds"] for r in earlier] == [d for d in days[2:-1] if d != days[3]]  # 13 dates, one unreadable
    assert "not a report" in caplog.text


@mock_aws
def test_on_emr_the_page_is_written_to_s3_beside_the_json_with_the_earlier_runs_trends():
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="lake-bucket")
    lake = "s3://lake-bucket/lake"
    read, write = lake_files.lake_io(None, "us-east-1")
    earlier = _emr_report()
    earlier["ds"] = "2024-06-09"
    write(lake_files.report_uri(lake, DAG, "2024-06-09"), json.dumps(earlier))
    report = model.add_links(_emr_report(), airflow_base=BASE, region="eu-west-1")
    write(lake_files.report_uri(lake, DAG, DS), json.dumps(report))  # as run_report does, first the JSON

    settings = Settings(target="emr", lake=lake, aws_conn_id=None, region="us-east-1")
    page_uri = task._write_page(settings, DAG, DS, report, read, write)

    assert page_uri == f"{lake}/_runs/reports/dag_id={DAG}/dt={DS}/report.html"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="lake-bucket")["Contents"]}
    folder = f"lake/_runs/reports/dag_id={DAG}/dt={DS}/"
    assert {k for k in keys if k.startswith(folder)} == {folder + "report.json", folder + "report.html"}
    body = s3.get_object(Bucket="lake-bucket", Key=folder + "report.html")["Body"].read().decode()
    page = _Page(body)
    assert page.table("output")[0] == ["output", "06-09", "06-10", "trend"]
    assert page.table("output")[1] == ["curated.referral_graph", "40", "40", ""]
    assert page.marks["rect.bar"] == 2  # cost of both runs


# ---- a repaired run: every cluster it ran --------------------------------------------------
def _emr_step(step: str, sid: str, state: str, created: dt.datetime, seconds: float) -> dict:
    timeline = {"CreationDateTime": created, "StartDateTime": created + dt.timedelta(seconds=10),
                "EndDateTime": created + dt.timedelta(seconds=10 + seconds)}  # fmt: skip
    return {
        "Id": sid,
        "Name": emr_step_name(DAG, RUN, DS, step),
        "Status": {"State": state, "Timeline": timeline},
    }


def _repaired_cluster(cid: str, hours: float, steps: list[dict]) -> tuple[dict, list[dict]]:
    t0 = dt.datetime(2024, 6, 11, 2, 0, tzinfo=UTC)
    life = {"CreationDateTime": t0, "EndDateTime": t0 + dt.timedelta(hours=hours)}
    cluster = {"Id": cid, "LogUri": "s3n://logs-bucket/emr/", "NormalizedInstanceHours": 24,
               "Status": {"State": "TERMINATED", "Timeline": life}}  # fmt: skip
    instances = [{"Id": f"ci-{cid}-{i}", "InstanceType": "m5.xlarge", "Market": "ON_DEMAND",
                  "Status": {"State": "TERMINATED", "Timeline": {}}} for i in range(3)]  # fmt: skip
    usage = cost.cluster_usage(cluster, instances, steps, cost.load_prices())
    return usage, list(reversed(steps))  # ListSteps lists the newest first


def test_a_repaired_runs_report_shows_each_cluster_its_steps_and_tries_and_the_cost_of_all():
    t0 = dt.datetime(2024, 6, 11, 2, 0, tzinfo=UTC)
    first = _repaired_cluster("j-FIRST", 0.5, [
        _emr_step("graph", "s-1", "COMPLETED", t0, 60),
        _emr_step("segments", "s-2", "FAILED", t0, 30)])  # fmt: skip
    second = _repaired_cluster("j-SECOND", 0.25, [
        _emr_step("segments", "s-3", "COMPLETED", t0, 40), _emr_step("audit", "s-4", "COMPLETED", t0, 20),
        _emr_step("publish", "s-5", "COMPLETED", t0, 5)])  # fmt: skip
    attempts = cost.run_attempts([first, second])
    plan = nightly_run_plan(DS, ["graph", "segments"], emr=True, dag_id=DAG, run_id=RUN)
    report = model.build_report(
        dag_id=DAG, run_id=RUN, target="emr", plan=plan, metrics={}, attempts=attempts,
        task_states={"run_graph": "success", "run_segments": "success", "run_audit": "success",
                     "run_publish": "success"},
        cluster=second[0],
    )  # fmt: skip
    model.add_links(report, airflow_base=BASE, region="us-east-1")
    # 3 m5.xlarge at 0.24 USD an hour: 0.5 h and 0.25 h
    assert [(c["attempt"], c["cluster_id"], c["estimated_cost"]) for c in attempts["clusters"]] == [
        (1, "j-FIRST", 0.36), (2, "j-SECOND", 0.18)]  # fmt: skip
    assert attempts["total"] == {"clusters": 2, "normalized_instance_hours": 18.0, "estimated_cost": 0.54,
                                 "currency": "USD"}  # fmt: skip
    assert [[(s["step"], s["state"], s["try"]) for s in c["steps"]] for c in attempts["clusters"]] == [
        [("graph", "COMPLETED", 1), ("segments", "FAILED", 1)],
        [("segments", "COMPLETED", 2), ("audit", "COMPLETED", 1), ("publish", "COMPLETED", 1)],
    ]  # fmt: skip
    rows = {s["step"]: s for s in report["steps"]}
    assert [(t["cluster_id"], t["try"], t["state"], t["seconds"]) for t in rows["segments"]["emr_tries"]] == [
        ("j-FIRST", 1, "FAILED", 30.0), ("j-SECOND", 2, "COMPLETED", 40.0)]  # fmt: skip
    assert (rows["segments"]["emr_step"]["id"], rows["graph"]["emr_step"]["id"]) == ("s-3", "s-1")
    # each step's log folder is on the cluster its last try ran on
    assert rows["graph"]["step_log_url"].endswith("prefix=emr%2Fj-FIRST%2Fsteps%2Fs-1%2F")
    assert rows["publish"]["step_log_url"].endswith("prefix=emr%2Fj-SECOND%2Fsteps%2Fs-5%2F")
    assert model.trends([report])["cost"] == {DS: 0.54}  # the run's cost is every cluster's

    text = render.format_table(report).splitlines()
    assert [line.split(":")[0] for line in text if line.startswith("EMR ")] == [
        "EMR cluster 1 of 2 j-FIRST (TERMINATED)",
        "EMR cluster 2 of 2 j-SECOND (TERMINATED)",
        "EMR total"]  # fmt: skip
    assert f"  steps: graph {DS} COMPLETED, segments {DS} FAILED" in text
    assert f"  steps: segments {DS} COMPLETED (try 2), audit {DS} COMPLETED, publish {DS} COMPLETED" in text
    assert "EMR total: 2 clusters; normalized instance hours 18.0; estimated cost 0.54 USD" in text

    page = _Page(render.html_page(report, {}))
    assert page.table("cluster") == [
        ["cluster", "id", "state", "steps", "normalized instance hours", "estimated cost USD"],
        ["1", "j-FIRST", "TERMINATED", f"graph {DS} COMPLETED, segments {DS} FAILED", "12.0", "0.36"],
        ["2", "j-SECOND", "TERMINATED",
         f"segments {DS} COMPLETED (try 2), audit {DS} COMPLETED, publish {DS} COMPLETED", "6.0", "0.18"],
        ["total", "2 clusters", "", "", "18.0", "0.54"],
    ]  # fmt: skip
    console = "https://us-east-1.console.aws.amazon.com/emr/home?region=us-east-1#/clusterDetails/j-FIRST"
    assert ("j-FIRST", console, "_blank") in page.links
    assert "estimated cost 0.54 USD on 2 clusters" in page.texts


def test_a_run_on_one_cluster_says_its_cluster_once_without_numbering_it():
    t0 = dt.datetime(2024, 6, 11, 2, 0, tzinfo=UTC)
    one = _repaired_cluster("j-ONLY", 0.5, [_emr_step("graph", "s-1", "COMPLETED", t0, 60)])
    plan = nightly_run_plan(DS, ["graph"], emr=True, dag_id=DAG, run_id=RUN)
    report = model.build_report(
        dag_id=DAG, run_id=RUN, target="emr", plan=plan, metrics={}, attempts=cost.run_attempts([one]),
        task_states={"run_graph": "success"}, cluster=one[0],
    )  # fmt: skip
    lines = [line for line in render.format_table(report).splitlines() if line.startswith(("EMR", "  steps"))]
    assert [line.split(":")[0] for line in lines] == ["EMR cluster j-ONLY (TERMINATED)"]
    assert "EMR clusters of this run" not in render.html_page(report, {})
    assert model.run_cost(report) == (0.36, "USD")
