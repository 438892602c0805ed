"""A real Airflow 3 on localhost without Docker: `make airflow` / `make airflow-stop`.

Starts PostgreSQL from Debian's packages as the metadata DB (SQLite only when PostgreSQL cannot
be had), migrates it, then runs api-server, scheduler (LocalExecutor), dag-processor and
triggerer in the background, logging to STATE/logs and recording their pids in STATE/run.
Everything lives under one state directory (default `.airflow/server/`; `.airflow/` itself is
`make demo`'s dag.test home), so a second instance (the ops tests) can run beside a
developer's, on other ports.

    python scripts/airflow_local.py start [--state-dir .airflow/server] [--port 8080] [--lake lake]
    python scripts/airflow_local.py stop|status [--state-dir .airflow/server]
    source .airflow/server/env.sh && airflow dags list      # the CLI against the same instance
"""

# Every command here is a fixed argument list built from our own paths (no shell, no user input).
# ruff: noqa: S603
from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # run as a script (make airflow): the project's packages by path
    sys.path.insert(0, str(PROJECT_ROOT))

from scripts.local_postgres import PG_DB, PG_PASSWORD, PG_USER, free_port, start_postgres, stop_postgres  # noqa: E402

VENV_BIN = Path(sys.executable).parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin"  # noqa: S105 (local development login, printed on start)
# Two more local logins, to see Airflow's permissions at work (a viewer may read the runs, not
# clear or repair them; an editor, the simple auth manager's `user` role, may): name, role, password.
OTHER_USERS = (("viewer", "viewer", "viewer"), ("editor", "user", "editor"))
SIMPLE_AUTH_MANAGER = "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"


@dataclass
class Instance:
    """What `start` chose; saved to STATE/instance.json so stop/status/tests read the same."""

    state_dir: str
    port: int
    backend: str  # postgres | sqlite
    sql_alchemy_conn: str
    pg_port: int | None
    pg_data: str | None
    pg_bin: str | None
    pg_user: str | None
    lake: str
    jwt_secret: str
    fernet_key: str
    worker_log_port: int
    trigger_log_port: int
    cron_schedules: bool = False

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"


# ---- Airflow ----------------------------------------------------------------------------------


def airflow_env(inst: Instance) -> dict[str, str]:
    """The environment every Airflow process of this instance (and its CLI) runs with."""
    state = Path(inst.state_dir)
    return {
        "AIRFLOW_HOME": str(state / "home"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": inst.sql_alchemy_conn,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        # 2 cores: two task slots (each local Spark job takes about one).
        "AIRFLOW__CORE__PARALLELISM": "2",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "false",
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "true",
        # Off by default: the demo lake holds 2024 data, so the nightly cron run for yesterday
        # (created as soon as the DAG is unpaused) could only fail. On, an unpaused maintenance DAG
        # also runs every Sunday on the lake. Triggered runs and backfills run either way.
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": str(inst.cron_schedules),
        # A task's execution-API token is issued when it is queued; on 2 cores a task can wait
        # longer than the 10-minute default for a worker slot and would then fail "Invalid auth
        # token" before it starts. 12 hours = the DAGs' dagrun_timeout. Local instance only.
        "AIRFLOW__EXECUTION_API__JWT_EXPIRATION_TIME": "43200",
        "AIRFLOW__CORE__FERNET_KEY": inst.fernet_key,
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://localhost:{inst.port}/execution/",
        "AIRFLOW__CORE__AUTH_MANAGER": SIMPLE_AUTH_MANAGER,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
            [f"{ADMIN_USER}:admin", *(f"{name}:{role}" for name, role, _ in OTHER_USERS)]
        ),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(state / "passwords.json"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(inst.port),
        "AIRFLOW__API__BASE_URL": inst.url,
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API_AUTH__JWT_SECRET": inst.jwt_secret,
        # New DAG files appear within seconds; one parsing process is plenty on 2 cores.
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "10",
        "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
        # Log servers on free ports, so two instances on one machine do not collide.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(inst.worker_log_port),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(inst.trigger_log_port),
        "PYTHONPATH": str(PROJECT_ROOT),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PIPELINE_TARGET": os.environ.get("PIPELINE_TARGET", "local"),
        "PIPELINE_LAKE": inst.lake,
        "PYSPARK_PYTHON": sys.executable,
        "SPARK_LOCAL_IP": "127.0.0.1",
        **_lineage_env(inst.lake),
    }


def _lineage_env(lake: str) -> dict[str, str]:
    """Airflow's OpenLineage provider: the tasks' events beside the jobs' in the lake (local target)."""
    from include.lineage import airflow_environment
    from include.settings import load_settings

    env = {k: v for k, v in os.environ.items() if k.startswith("PIPELINE_LINEAGE")}
    return airflow_environment(load_settings({**env, "PIPELINE_LAKE": lake}))


def _pid_file(state: Path, name: str) -> Path:
    return state / "run" / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"airflow" in cmdline  # not a recycled pid of something else


def _running(state: Path) -> dict[str, int]:
    out = {}
    for name in COMPONENTS:
        f = _pid_file(state, name)
        if f.exists() and _alive(pid := int(f.read_text())):
            out[name] = pid
    return out


def _load(state: Path) -> Instance | None:
    f = state / "instance.json"
    if not f.exists():
        return None
    saved = json.loads(f.read_text())
    known = {k: v for k, v in saved.items() if k in Instance.__dataclass_fields__}
    return Instance(**known)


def wait_healthy(url: str, timeout: float = 240) -> dict:
    """Until /api/v2/monitor/health reports every component healthy; returns the report."""
    deadline, last = time.monotonic() + timeout, "no answer"
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=5) as r:  # noqa: S310
                report = json.load(r)
            states = {k: v.get("status") for k, v in report.items() if isinstance(v, dict)}
            if states and all(s == "healthy" for s in states.values()):
                return report
            last = json.dumps(states)
        except (urllib.error.URLError, OSError, ValueError) as e:
            last = str(e)
        time.sleep(2)
    raise TimeoutError(f"Airflow at {url} not healthy after {timeout:.0f}s: {last}")


def start(args: argparse.Namespace) -> Instance:
    state = Path(args.state_dir).resolve()
    for sub in ("home", "logs", "run"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    previous = _load(state)
    if running := _running(state):
        if previous is None:
            raise RuntimeError(f"processes {running} run from {state} but instance.json is missing")
        print(f"already running ({', '.join(running)}); `make airflow-stop` first to restart")
        _print_banner(previous)
        return previous

    backend = args.backend
    pg_port = pg_data = pg_bin = pg_user = None
    if backend in ("auto", "postgres"):
        try:
            pg_port, data, binpath, pg_user = start_postgres(
                state, args.pg_port, previous and previous.pg_data, previous and previous.pg_port
            )
            pg_data, pg_bin, backend = str(data), str(binpath), "postgres"
        except (RuntimeError, subprocess.CalledProcessError) as e:
            detail = getattr(e, "stderr", "") or e
            if backend == "postgres":
                raise RuntimeError(f"PostgreSQL: {detail}") from e
            print(f"warning: PostgreSQL unavailable ({detail}); falling back to SQLite", file=sys.stderr)
            backend = "sqlite"
    if backend == "postgres":
        conn = f"postgresql+psycopg2://{PG_USER}:{PG_PASSWORD}@127.0.0.1:{pg_port}/{PG_DB}"
    else:
        conn = f"sqlite:///{state / 'home' / 'airflow.db'}"

    lake = args.lake or os.environ.get("PIPELINE_LAKE") or str(PROJECT_ROOT / "lake")
    if "://" not in lake:
        lake = Path(lake).resolve().as_uri()
    inst = Instance(
        state_dir=str(state),
        port=free_port(args.port),
        backend=backend,
        sql_alchemy_conn=conn,
        pg_port=pg_port,
        pg_data=pg_data,
        pg_bin=pg_bin,
        pg_user=pg_user,
        lake=lake,
        # Secrets persist across restarts: connections encrypted with the Fernet key stay readable.
        # The API signs its tokens with HS512: a key of at least 64 bytes (RFC 7518, 3.2).
        jwt_secret=previous.jwt_secret
        if previous and len(previous.jwt_secret) >= 64
        else secrets.token_urlsafe(64),
        fernet_key=previous.fernet_key if previous else _fernet_key(),
        worker_log_port=free_port(8793),
        trigger_log_port=free_port(8794),
        cron_schedules=args.cron_schedules == "on",
    )
    if inst.port != args.port:
        print(f"note: port {args.port} is taken; using {inst.port}")
    (state / "instance.json").write_text(json.dumps(asdict(inst), indent=2))
    passwords = {ADMIN_USER: ADMIN_PASSWORD, **{name: password for name, _, password in OTHER_USERS}}
    (state / "passwords.json").write_text(json.dumps(passwords))
    env = {**os.environ, **airflow_env(inst)}
    (state / "env.sh").write_text(
        "# source this file to use the airflow CLI against this instance\n"
        + "".join(f"export {k}={_sh_quote(v)}\n" for k, v in airflow_env(inst).items())
    )

    print(f"migrating the metadata DB ({backend})")
    with open(state / "logs" / "db-migrate.log", "w") as log:
        subprocess.run(
            [str(VENV_BIN / "airflow"), "db", "migrate"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )

    for name in COMPONENTS:
        argv = [str(VENV_BIN / "airflow"), name]
        if name == "api-server":
            argv += ["--host", "127.0.0.1", "--port", str(inst.port)]
        with open(state / "logs" / f"{name}.log", "a") as log:
            # Own session: `stop` ends the whole process group (workers, task subprocesses) by pid.
            proc = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=PROJECT_ROOT
            )
        _pid_file(state, name).write_text(str(proc.pid))

    if args.wait:
        try:
            wait_healthy(inst.url, args.wait)
        except TimeoutError:
            for name in COMPONENTS:
                if name not in _running(state):
                    print(f"{name} exited; last lines of {state}/logs/{name}.log:", file=sys.stderr)
                    print(_tail(state / "logs" / f"{name}.log"), file=sys.stderr)
            raise
    _print_banner(inst)
    return inst


def stop(args: argparse.Namespace) -> None:
    state = Path(args.state_dir).resolve()
    running = _running(state)
    for pid in running.values():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    for name, pid in running.items():
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _pid_file(state, name).unlink(missing_ok=True)
        print(f"stopped {name} (pid {pid})")
    if (inst := _load(state)) is not None and inst.backend == "postgres":
        stop_postgres(inst.pg_data, inst.pg_bin, inst.pg_user)


def status(args: argparse.Namespace) -> int:
    state = Path(args.state_dir).resolve()
    inst, running = _load(state), _running(state)
    for name in COMPONENTS:
        print(f"{name:14} {'running, pid ' + str(running[name]) if name in running else 'stopped'}")
    if inst:
        print(f"UI {inst.url}, metadata DB {inst.backend}, lake {inst.lake}")
    return 0 if len(running) == len(COMPONENTS) else 1


def _print_banner(inst: Instance) -> None:
    state = Path(inst.state_dir)
    default = state == PROJECT_ROOT / ".airflow" / "server"
    stop_command = (
        "make airflow-stop" if default else f"python {Path(__file__).name} stop --state-dir {state}"
    )
    print(
        f"\nAirflow is running: {inst.url}   login: {ADMIN_USER} / {ADMIN_PASSWORD}"
        f"   (also {', '.join(f'{n} / {p} ({r})' for n, r, p in OTHER_USERS)})\n"
        f"  metadata DB: {inst.backend}   lake: {inst.lake}   "
        f"cron schedules: {'on' if inst.cron_schedules else 'off (trigger or backfill)'}\n"
        f"  logs: {state}/logs/   CLI: source {state}/env.sh && airflow dags list\n"
        f"  stop: {stop_command}\n"
    )


def _tail(path: Path, n: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def _fernet_key() -> str:
    from cryptography.fernet import Fernet  # an Airflow dependency

    return Fernet.generate_key().decode()


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=("start", "stop", "status"))
    parser.add_argument("--state-dir", default=str(PROJECT_ROOT / ".airflow" / "server"))
    parser.add_argument("--port", type=int, default=8080, help="UI/API port (the next free one if taken)")
    parser.add_argument("--pg-port", type=int, default=5433)
    parser.add_argument("--backend", choices=("auto", "postgres", "sqlite"), default="auto")
    parser.add_argument("--lake", help="lake path or file:// URI (default: $PIPELINE_LAKE, else ./lake)")
    parser.add_argument(
        "--cron-schedules",
        choices=("on", "off"),
        default="off",
        help="let the scheduler create runs from DAG schedules: the nightly run, the weekly maintenance "
        "(off: only triggered runs and backfills)",
    )
    parser.add_argument("--wait", type=float, default=240, help="seconds to wait for health (0: do not wait)")
    args = parser.parse_args(argv)
    if args.command == "start":
        try:
            start(args)
        except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as e:
            print(f"airflow_local: {e}", file=sys.stderr)
            return 1
        return 0
    if args.command == "stop":
        stop(args)
        return 0
    return status(args)


if __name__ == "__main__":
    sys.exit(main())
