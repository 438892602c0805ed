"""Where a run's steps run: one module per target, each the same small interface (`Target`).

`include.wiring` wires every pipeline DAG from it, in one order for every target; a target only
says how its run starts (preflight, setup), how one step runs (one task per step), how the run
ends (teardown) and what those tasks are called. `local` is imported at parse time; `emr` and
`serverless` only for their target, so the local target never loads the AWS SDK.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from include.run_plan import RunPlan
from include.settings import Settings


class Target(Protocol):
    """One place a run's steps run (the local Spark application, a transient EMR cluster).

    `run_plan` is the plan task's one XCom (`RunPlan.to_xcom()`); each task renders what it runs
    from it when it runs (`FromRunPlan`)."""

    settings: Settings

    def preflight(self) -> Any | None:
        """The task that checks, before anything is created, that the run can start (None: none)."""

    def setup(self, run_plan: Any) -> tuple[list[Any], Any | None]:
        """The run's setup tasks (what its steps run on) and the teardown that undoes them, or
        ([], None) when the steps need none."""

    def step(self, run_plan: Any, task_id: str, step: str) -> Any:
        """One task running one planned step (it skips when no requested output needs the step)."""

    def steps_done(self) -> Any | None:
        """The join the audit waits on once every step ended (None: the audit waits on the steps)."""

    def batches(self, run_plan: Any, task_id: str) -> Any:
        """One task running a backfill's steps, every date in order."""

    def teardown(self, teardown: Any | None, after: Sequence[Any], *, step_logs: bool = True) -> None:
        """The teardown after the run's last tasks (and on EMR the completed steps' logs after it)."""


class FromRunPlan:
    """Mixed into an operator whose arguments come from the run's plan: `run_plan` (a templated
    field: the plan task's XCom) is rendered with the others, then `from_plan` sets the
    operator's own arguments from it, before the task runs (and again when a deferred task resumes)."""

    run_plan: Any

    def from_plan(self, plan: RunPlan) -> dict[str, Any]:
        raise NotImplementedError

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        super().render_template_fields(context, jinja_env)  # type: ignore[misc]
        for field, value in self.from_plan(RunPlan.from_xcom(self.run_plan)).items():
            setattr(self, field, value)


def target_for(settings: Settings) -> Target:
    """The settings' target; an AWS one (and the AWS SDK) is imported only when it is chosen."""
    if settings.is_emr:
        from include.targets.emr import EmrTarget

        return EmrTarget(settings)
    if settings.is_serverless:
        from include.targets.serverless import ServerlessTarget

        return ServerlessTarget(settings)
    from include.targets.local import LocalTarget

    return LocalTarget(settings)
