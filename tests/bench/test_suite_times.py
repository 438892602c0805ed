"""bench/suite_times.py sums a JUnit report per test file; checked against a report written here
and against one pytest itself writes (the oracle: the times in that report, summed by hand)."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from bench.suite_times import FileTime, file_times, main, render

REPORT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="5">
<testcase classname="tests.dags.test_emr_target" name="test_a" time="30.5"/>
<testcase classname="tests.dags.test_emr_target.TestSteps" name="test_b" time="1.5"/>
<testcase classname="tests.include.test_lake" name="test_c[x]" time="2.0"/>
<testcase classname="tests.include.test_lake" name="test_c[y]" time="4.0"/>
<testcase classname="tests.plugins.test_spark_job" name="test_d" time="2.0"/>
</testsuite></testsuites>
"""


def test_times_are_summed_per_file_longest_first(tmp_path: Path):
    report = tmp_path / "junit.xml"
    report.write_text(REPORT)
    assert file_times(report) == [
        FileTime("tests/dags/test_emr_target.py", 2, 32.0),
        FileTime("tests/include/test_lake.py", 2, 6.0),
        FileTime("tests/plugins/test_spark_job.py", 1, 2.0),
    ]


def test_the_table_lists_the_top_files_then_the_rest_and_the_total(tmp_path: Path):
    report = tmp_path / "junit.xml"
    report.write_text(REPORT)
    table = render(file_times(report), top=1, markdown=True).splitlines()
    assert table[2:] == [
        "| `tests/dags/test_emr_target.py` | 2 | 32.0 | 80.0% |",
        "| 2 other files | 3 | 8.0 | 20.0% |",
        "| all | 5 | 40.0 | 100.0% |",
    ]


def test_the_order_table_holds_each_files_seconds_and_the_suite_hands_out_the_longest_first(
    tmp_path: Path, monkeypatch
):
    import tests.conftest as root

    report, table = tmp_path / "junit.xml", tmp_path / "file_times.json"
    report.write_text(REPORT)
    assert main([str(report), "--write-order", str(table)]) == 0
    assert json.loads(table.read_text()) == {
        "tests/dags/test_emr_target.py": 32.0,
        "tests/include/test_lake.py": 6.0,
        "tests/plugins/test_spark_job.py": 2.0,
    }
    monkeypatch.setattr(root, "FILE_TIMES", table)

    class Item:
        def __init__(self, nodeid: str) -> None:
            self.nodeid = nodeid

    collected = [
        Item("tests/include/test_lake.py::test_c[x]"),
        Item("tests/include/test_new.py::test_e"),  # not in the table: counts as the median (6.0)
        Item("tests/plugins/test_spark_job.py::test_d"),
        Item("tests/dags/test_emr_target.py::test_a"),
        Item("tests/include/test_lake.py::test_c[y]"),
        Item("tests/dags/test_emr_target.py::TestSteps::test_b"),
    ]
    assert [i.nodeid for i in root.longest_files_first(collected)] == [
        "tests/dags/test_emr_target.py::test_a",
        "tests/dags/test_emr_target.py::TestSteps::test_b",
        "tests/include/test_lake.py::test_c[x]",  # ties keep the collection's order
        "tests/include/test_lake.py::test_c[y]",
        "tests/include/test_new.py::test_e",
        "tests/plugins/test_spark_job.py::test_d",
    ]


def test_a_report_pytest_writes_is_read_the_same_way(tmp_path: Path):
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "__init__.py").write_text("")
    (tests / "test_two.py").write_text(
        "import pytest\n\n@pytest.mark.parametrize('n', [1, 2, 3])\ndef test_n(n):\n    assert n\n\n"
        "class TestK:\n    def test_k(self):\n        pass\n"
    )
    report = tmp_path / "junit.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", "tests"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
    )
    cases = ET.parse(report).getroot().iter("testcase")  # noqa: S314 (pytest wrote it, here)
    times = [float(case.get("time")) for case in cases]
    [row] = file_times(report)
    assert (row.path, row.tests) == ("tests/test_two.py", 4)
    assert row.seconds == sum(times)
