"""Where a run's steps run: one module per target, each the same small interface (`Target`).

`include.wiring` wires every pipeline DAG from it, in one order for every target; a target only
says how its run starts (preflight, setup), how one step runs (one task per step), how the run
ends (teardown) and what those tasks are called. `local` is imported at parse time; `emr` only
for that target, so the local target never loads the AWS SDK.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from include.settings import Settings


class Target(Protocol):
    """One place a run's steps run (the local Spark application, a transient EMR cluster)."""

    settings: Settings

    def preflight(self, plan: Any) -> Any | None:
        """The task that checks, before anything is created, that the run can start (None: none)."""

    def setup(self, plan: Any) -> tuple[list[Any], Any | None]:
        """The run's setup tasks (what its steps run on) and the teardown that undoes them, or
        ([], None) when the steps need none."""

    def step(self, plan: Any, task_id: str, commands: Any) -> Any:
        """One task running one planned step (`commands`: what the plan hands that step)."""

    def steps_done(self) -> Any | None:
        """The join the audit waits on once every step ended (None: the audit waits on the steps)."""

    def batches(self, plan: Any, task_id: str) -> Any:
        """One task running a backfill's steps, every date in order."""

    def teardown(self, teardown: Any | None, after: Sequence[Any], *, step_logs: bool = True) -> None:
        """The teardown after the run's last tasks (and on EMR the completed steps' logs after it)."""


def target_for(settings: Settings) -> Target:
    """The settings' target; the EMR one (and the AWS SDK) is imported only when it is chosen."""
    if settings.is_emr:
        from include.targets.emr import EmrTarget

        return EmrTarget(settings)
    from include.targets.local import LocalTarget

    return LocalTarget(settings)
