"""The real Airflow the ops tests start (`scripts/airflow_local.py`, what `make airflow` runs): the
instance's handle, the DAGs it runs and the dates of its runs."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "airflow_local.py"
DAG_ID = "customer_analytics_nightly"
MAINTENANCE_DAG_ID = "customer_analytics_maintenance"  # weekly
ROLLBACK_DAG_ID = "customer_analytics_rollback"  # manual
# Demo landing data for HISTORY_START..BACKFILL_DATES[-1]; the triggered run loads the history up
# to RUN_DS, then the backfill runs the three days after it. All weekdays (Mon 3 June to Thu 13
# June 2024): on a weekend the market is closed and stock_daily is rightly empty.
HISTORY_START = "2024-06-03"
RUN_DS = "2024-06-10"
BACKFILL_DATES = ("2024-06-11", "2024-06-12", "2024-06-13")
DEMO_SCALE = 0.002  # ~2,000 sales rows over the 11 days: enough rows in every output
RUN_TIMEOUT = 30 * 60  # one whole pipeline run; 2 shared cores


@dataclass
class Server:
    url: str
    state_dir: Path
    instance: dict

    def cli(self, *args: str, timeout: float = 600) -> str:
        """The airflow CLI against this instance (its env.sh, as the banner tells a user); stdout."""
        done = subprocess.run(
            ["bash", "-c", f'source {self.state_dir / "env.sh"} && exec airflow "$@"', "airflow", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=ROOT,
        )
        assert done.returncode == 0, (
            f"airflow {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}"
        )
        return done.stdout

    def logs_tail(self, lines: int = 40) -> str:
        out = []
        for log in sorted((self.state_dir / "logs").glob("*.log")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"===== {log.name}\n" + "\n".join(text))
        return "\n".join(out)
