"""PostgreSQL from Debian's packages as the local Airflow's metadata database
(scripts/airflow_local.py): installed when missing, initialised once, run as the `postgres` user
when started as root, on 127.0.0.1 only."""

# Every command here is a fixed argument list built from our own paths (no shell, no user input).
# ruff: noqa: S603, S607
from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import socket
import subprocess
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PG_USER = PG_PASSWORD = PG_DB = "airflow"  # noqa: S105 (a DB on 127.0.0.1 only)


def free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError("no free port")


def _run(argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, text=True, capture_output=True, **kwargs)


def _pg_bin() -> Path | None:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("pg_ctl")
    return Path(found).parent if found else None


def _ensure_pg_installed() -> Path | None:
    if (found := _pg_bin()) is not None:
        return found
    # apt-get when we can (root, Debian); the script explains otherwise.
    subprocess.run(["bash", str(PROJECT_ROOT / "scripts/install_ops_prereqs.sh")], check=False)
    return _pg_bin()


def _pg_run_user() -> str | None:
    """PostgreSQL refuses to run as root: as root use the `postgres` system user."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        _run(["useradd", "--system", "--user-group", "--no-create-home", "postgres"])
    return "postgres"


def _as_user(user: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", user, "--", *argv] if user else argv


def _pg_dir(state: Path, user: str | None) -> Path:
    """STATE/pg, unless the pg user cannot reach it (a project under /root): then /var/tmp."""
    pg_dir = state / "pg"
    pg_dir.mkdir(parents=True, exist_ok=True)
    if user is None:
        return pg_dir
    shutil.chown(pg_dir, user, user)
    if subprocess.run(_as_user(user, ["test", "-w", str(pg_dir)]), check=False).returncode == 0:
        return pg_dir
    digest = hashlib.sha256(str(state.resolve()).encode()).hexdigest()[:12]
    pg_dir = Path("/var/tmp/airflow-local-pg") / digest  # noqa: S108
    pg_dir.mkdir(parents=True, exist_ok=True)
    pg_dir.parent.chmod(0o755)
    shutil.chown(pg_dir, user, user)
    print(f"note: {state}/pg is not reachable by user {user}; PostgreSQL data in {pg_dir}")
    return pg_dir


def start_postgres(
    state: Path, preferred_port: int, previous_data: str | None, previous_port: int | None
) -> tuple[int, Path, Path, str | None]:
    """PostgreSQL for Airflow's metadata, initialised once under `state` (or where the last start
    put it) and started on 127.0.0.1: (port, data dir, its bin dir, the user it runs as)."""
    pg_bin = _ensure_pg_installed()
    if pg_bin is None:
        raise RuntimeError("PostgreSQL is not installed and could not be installed")
    user = _pg_run_user()
    pg_dir = Path(previous_data).parent if previous_data else _pg_dir(state, user)
    data, sock = pg_dir / "data", pg_dir / "run"
    if not (data / "PG_VERSION").exists():
        sock.mkdir(exist_ok=True)
        pwfile = pg_dir / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        if user:
            for p in (sock, pwfile):
                shutil.chown(p, user, user)
        initdb = [str(pg_bin / "initdb"), "-D", str(data), "-U", PG_USER, "--pwfile", str(pwfile)]
        initdb += ["-E", "UTF8", "--no-locale", "--auth-local=trust", "--auth-host=scram-sha-256"]
        try:
            _run(_as_user(user, initdb))
        finally:
            pwfile.unlink()
    port = previous_port or free_port(preferred_port)
    status = subprocess.run(
        _as_user(user, [str(pg_bin / "pg_ctl"), "-D", str(data), "status"]), check=False, capture_output=True
    )
    if status.returncode != 0:
        options = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1"
        _run(
            _as_user(
                user,
                [
                    str(pg_bin / "pg_ctl"),
                    "-D",
                    str(data),
                    "-l",
                    str(pg_dir / "postgres.log"),
                    "-o",
                    options,
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
            )
        )
    env = {**os.environ, "PGPASSWORD": PG_PASSWORD}
    psql = [str(pg_bin / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", PG_USER, "-d", "postgres", "-tAc"]
    exists = _run([*psql, "SELECT 1 FROM pg_database WHERE datname = 'airflow'"], env=env).stdout.strip()
    if exists != "1":
        _run([*psql, "CREATE DATABASE airflow"], env=env)
    return port, data, pg_bin, user


def stop_postgres(pg_data: str | None, pg_bin: str | None, pg_user: str | None) -> None:
    """Stop the PostgreSQL `start_postgres` started (nothing when its data is gone)."""
    if not pg_data or not pg_bin or not Path(pg_data).exists():
        return
    pg_ctl = [str(Path(pg_bin) / "pg_ctl"), "-D", pg_data]
    if (
        subprocess.run(_as_user(pg_user, [*pg_ctl, "status"]), check=False, capture_output=True).returncode
        == 0
    ):
        _run(_as_user(pg_user, [*pg_ctl, "-m", "fast", "-w", "stop"]))
        print("stopped PostgreSQL")
