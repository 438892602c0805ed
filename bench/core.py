"""What every figure shares: repeated timing, machine facts, the result line, the work directory."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.settings import EMR_ENV as TEST_EMR_ENV

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "BENCH_RESULT "


def work_dir(base: Path | None = None) -> Path:
    """`.bench/` (generated data, Airflow homes, raw results); it ignores its own contents for git."""
    root = (base or PROJECT_ROOT / ".bench").resolve()
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")
    return root


# The emr target's settings for parsing and for the moto run: the DAG tests' own
# (tests/harness/settings.py, a module of constants that imports nothing), with a Glue prefix of
# the figures' own. One source: a copy here once missed a setting the tests gained (preflight
# off in an account holding only the lake bucket) and figure 5's every run failed at preflight.
EMR_ENV = {**TEST_EMR_ENV, "PIPELINE_GLUE_DATABASE_PREFIX": "analytics_bench"}


def child_env(bytecode_cache: bool = True) -> dict[str, str]:
    """Environment of the figure processes.

    This machine sets PYTHONDONTWRITEBYTECODE=1 and the venv holds no .pyc files, so every
    process would compile Airflow, boto3 and pyspark from source on import (seconds). A deployed
    Airflow image has compiled bytecode; the figures therefore run with a bytecode cache under
    .bench/pycache (PYTHONPYCACHEPREFIX), filled by a first untimed run, the venv untouched.
    """
    env = dict(os.environ)
    env.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if bytecode_cache:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work_dir() / "pycache")
    else:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.pop("PYTHONPYCACHEPREFIX", None)
    return env


def run_probe(
    module: str, args: list[str], prefix: str, what: str, *, timeout: int = 3600, bytecode_cache: bool = True
) -> dict:
    """Run `python -m module *args` in a fresh process; return the JSON of its `prefix` line."""
    out = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=PROJECT_ROOT,
        env=child_env(bytecode_cache),
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
    for line in out.stdout.splitlines():
        if line.startswith(prefix):
            return json.loads(line[len(prefix) :])
    raise RuntimeError(f"{what} failed:\n{out.stdout[-3000:]}\n{out.stderr[-4000:]}")


@contextmanager
def environ(**values: str) -> Iterator[None]:
    """Environment variables set for the block, as they were after it."""
    before = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def fake_aws(env: Mapping[str, str]) -> tuple[Any, Any]:
    """In a probe's own process: Airflow's throwaway home migrated, a moto server with FakeAws
    installed, `env` set, every resource and request forgotten and the lake bucket made.

    :return: the server (to stop when the probe ends) and the FakeAws"""
    import tests.harness.airflow_home as airflow_setup  # throwaway AIRFLOW_HOME, moto request recorder
    from tests.harness.aws_fakes import FakeAws, start_moto_server

    class Env:
        setenv = staticmethod(os.environ.__setitem__)

    airflow_setup.migrate_db()
    server, url = start_moto_server()
    aws = FakeAws(url)
    aws.install(Env)
    os.environ.update(env)
    aws.reset()
    aws.s3.create_bucket(Bucket="lake-bucket")
    return server, aws


def load_average() -> float:
    """The 1-minute load average: how busy the machine was when a figure started."""
    return round(os.getloadavg()[0], 2)


@dataclass
class Timing:
    """Seconds of every run of one measured thing, in run order."""

    runs: list[float]

    @property
    def min(self) -> float:
        return min(self.runs)

    @property
    def median(self) -> float:
        return statistics.median(self.runs)

    def as_dict(self) -> dict[str, Any]:
        return {
            "runs": [round(r, 4) for r in self.runs],
            "min": round(self.min, 4),
            "median": round(self.median, 4),
        }


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def repeat(fn: Callable[[], Any], n: int) -> tuple[Timing, list[Any]]:
    """Run fn n times; the timings and each run's return value."""
    seconds, values = [], []
    for _ in range(n):
        s, v = timed(fn)
        seconds.append(s)
        values.append(v)
    return Timing(seconds), values


@dataclass
class Row:
    """One line of a figure's table: a measured quantity, its min/median, and the target if it has one."""

    metric: str
    min: float | None
    median: float | None
    unit: str = "s"
    target: str = ""
    met: bool | None = None
    note: str = ""


@dataclass
class FigureResult:
    figure: int
    name: str
    title: str
    summary: str  # the one line printed for the figure
    load_start: float
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    ok: bool | None = None  # every target met (None: no target)
    method: str = ""  # what is measured and how (markdown), printed with the figure
    measured_on: str = ""  # the Spark line and the day (spark_line())

    def emit(self) -> None:
        self.measured_on = self.measured_on or spark_line()
        print(RESULT_PREFIX + json.dumps(asdict(self), default=str), flush=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FigureResult:
        rows = [Row(**r) for r in data.pop("rows", [])]
        return cls(rows=rows, **data)


def spark_line() -> str:
    """pyspark's version, the Iceberg runtime of this process's jars folder, and today's date."""
    import datetime as dt

    today = dt.datetime.now(dt.UTC).date()
    try:
        import pyspark

        from spark_jobs.session import _DEFAULT_JARS_DIR, JARS_DIR_VAR
    except ImportError:
        return f"no pyspark, {today}"
    folder = Path(os.environ.get(JARS_DIR_VAR) or _DEFAULT_JARS_DIR)
    runtime = ", ".join(sorted(p.stem for p in folder.glob("iceberg-spark-runtime-*.jar")))
    return f"pyspark {pyspark.__version__}, {runtime or 'no Iceberg jar'}, {today}"


def method(doc: str | None) -> str:
    """A figure module's docstring without its title paragraph: the figure's method, as markdown."""
    import inspect

    _, _, rest = inspect.cleandoc(doc or "").partition("\n\n")
    return rest.strip()


def check(value: float | None, limit: float) -> bool | None:
    return None if value is None else value <= limit


def java_version() -> str:
    try:
        out = subprocess.run(["java", "-version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (out.stderr or out.stdout).splitlines()
    return lines[0] if lines else "unknown"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def machine() -> dict[str, Any]:
    """Where the numbers come from: hardware, OS and the versions of everything measured."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in (
        "pyspark",
        "apache-airflow",
        "apache-airflow-providers-amazon",
        "duckdb",
        "networkx",
        "scipy",
    ):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "not installed"
    versions["moto"] = version("moto")
    from spark_jobs.session import LOCAL_JVM_OPTIONS

    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "java": java_version(),
        "versions": versions,
        "spark_driver_memory": os.environ.get("SPARK_DRIVER_MEMORY", "2g"),
        "spark_shuffle_partitions": os.environ.get("SPARK_SHUFFLE_PARTITIONS", "8 (get_spark default)"),
        "spark_driver_java_options": os.environ.get(
            "SPARK_DRIVER_JAVA_OPTIONS", f"{LOCAL_JVM_OPTIONS} (local default)"
        ),
    }
