"""What the `plan` task knows of each step of a run, typed, for the tasks that come after it: which
Airflow tasks run the step, the date (or range) it builds, its job call (`JobCall`: its command
line, EMR step and metrics file, rendered, never parsed back), its EMR step name and the outputs
it produces; and what the run's setup needs. The step tasks render what they run from it
(include/targets), the run report reads it and derives none of it.

The plan task hands on this alone, as the XCom `run_plan` (`RunPlan.to_xcom()`: plain JSON); a
reader takes it back with `RunPlan.from_xcom`. Pure: no Airflow, no I/O.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from include import pipeline as P
from plugins.emr_naming import emr_step_name
from spark_jobs import paths

PLAN_XCOM_KEY = "run_plan"  # the plan task's XCom holding `RunPlan.to_xcom()`
BACKFILL_TASK_ID = "run_steps"  # a backfill runs every step of every date in this one task


def step_task_ids(step: str) -> tuple[str, ...]:
    """The tasks of one step of a nightly run, in the order they run; the last one's state is the
    step's: `run_<step>` on both targets (on EMR one deferrable task adds the step and waits)."""
    return (f"run_{step}",)


@dataclass(frozen=True)
class JobCall:
    """One run of a step's job, typed: it renders its command line (`args`), its EMR step
    (`emr_step`) and where the job leaves its metrics (`metrics_uri`, the jobs' own rule in
    `spark_jobs.paths`), so nothing downstream parses a command line back."""

    step: P.Step
    ds: str  # the date it builds; for a range, the range's last date (the job files under it)
    lake: str
    start_ds: str | None = None  # a ranged step's first date (other steps ignore it)
    run_id: str | None = None
    branch: str | None = None  # where the job commits (write-audit-publish), not main
    extra: tuple[str, ...] = ()  # the job's own options after the common ones (--checks-uri, --keep-days)

    @property
    def args(self) -> list[str]:
        """The command line after `python -m spark_jobs` (or after the EMR entrypoint)."""
        common = P.job_args(
            self.step,
            ds=self.ds,
            lake=self.lake,
            start_ds=self.start_ds,
            run_id=self.run_id,
            branch=self.branch,
        )
        return [*common, *self.extra]

    @property
    def dataset(self) -> str | None:
        options = dict(zip(self.step.options[::2], self.step.options[1::2], strict=True))
        return options.get("--dataset")

    @property
    def metrics_uri(self) -> str:
        """Where the job leaves its metrics: one file per job (and dataset) and (last) date."""
        return paths.metrics_uri(self.lake, self.step.job, self.ds, self.dataset)

    def emr_step(self, name: str, **code: Any) -> dict:
        """The EMR step running this call (`code`: `P.emr_step`'s py_files, entrypoint, jars, conf)."""
        return P.emr_step(name, self.args, **code)

    def serverless_job_run(
        self,
        name: str,
        *,
        job: Mapping[str, Any],
        py_files: str,
        entrypoint: str,
        jars: str | None,
        conf: Mapping,
    ) -> dict[str, Any]:
        """The EMR Serverless job run running this call: StartJobRun's arguments but the application
        (`job`: the run's shared `serverless_profiles.job_defaults`; `conf`: the jobs' lineage settings)."""
        spark = {**job["spark"], **conf}
        params = ["--jars", ",".join([*job["jars"], *([jars] if jars else [])]), "--py-files", py_files]
        for key, value in sorted(spark.items()):
            params += ["--conf", f"{key}={value}"]
        return {
            "name": name,  # the EMR step's name: a retried task finds its job run by it
            "executionRoleArn": job["executionRoleArn"],
            "jobDriver": {
                "sparkSubmit": {
                    "entryPoint": entrypoint,
                    "entryPointArguments": self.args,
                    "sparkSubmitParameters": " ".join(params),
                }
            },
            "configurationOverrides": copy.deepcopy(dict(job["configurationOverrides"])),
            "tags": {**job["tags"], "step": self.step.name},
            "executionTimeoutMinutes": job["executionTimeoutMinutes"],
        }

    def to_xcom(self) -> dict[str, Any]:
        return {
            "step": self.step.name,
            "ds": self.ds,
            "lake": self.lake,
            "start_ds": self.start_ds,
            "run_id": self.run_id,
            "branch": self.branch,
            "extra": list(self.extra),
        }

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> JobCall:
        return cls(
            step=_STEPS[value["step"]],
            ds=value["ds"],
            lake=value["lake"],
            start_ds=value["start_ds"],
            run_id=value["run_id"],
            branch=value["branch"],
            extra=tuple(value["extra"]),
        )


_STEPS = {step.name: step for step in (*P.PIPELINE, P.AUDIT, P.PUBLISH, P.MAINTAIN)}


@dataclass(frozen=True)
class PlannedStep:
    """One step for one date (or, for a ranged step of a backfill, one range) of a run."""

    step: str  # the spec's step name
    label: str  # the date, or "start..end" for a ranged step (as in EMR step names)
    task_ids: tuple[str, ...]  # the Airflow tasks that run it; the last one's state is the step's
    selected: bool  # False: no requested output needs it, its task skips itself
    metrics_uri: str | None  # where its job leaves its metrics (None: not selected, nothing runs)
    emr_step_name: str | None  # its EMR step's name (None: the local target)
    outputs: tuple[str, ...]  # the curated outputs it produces
    call: JobCall | None = None  # its job's run (None: not selected; or a plan of an earlier version)
    batch: int = 0  # a backfill's batch it runs in (the batches run one after the other)

    @property
    def task_id(self) -> str:
        """The task whose state is the step's."""
        return self.task_ids[-1]

    def to_xcom(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "label": self.label,
            "task_ids": list(self.task_ids),
            "selected": self.selected,
            "metrics_uri": self.metrics_uri,
            "emr_step_name": self.emr_step_name,
            "outputs": list(self.outputs),
            "call": self.call.to_xcom() if self.call is not None else None,
            "batch": self.batch,
        }

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> PlannedStep:
        return cls(
            step=value["step"],
            label=value["label"],
            task_ids=tuple(value["task_ids"]),
            selected=value["selected"],
            metrics_uri=value["metrics_uri"],
            emr_step_name=value["emr_step_name"],
            outputs=tuple(value["outputs"]),
            # plans pushed before the calls were part of them (the run report reads old runs too)
            call=JobCall.from_xcom(value["call"]) if value.get("call") else None,
            batch=value.get("batch", 0),
        )


@dataclass(frozen=True)
class RunPlan:
    """The steps of one run in the order its report lists them, the date it is reported under
    (a backfill's last date) and the branch its steps write to; and what the run's setup needs:
    the local Spark application's socket, or the code location and the cluster request on EMR.
    The only thing the `plan` task hands on: each task renders what it runs from it."""

    ds: str
    branch: str
    steps: tuple[PlannedStep, ...]
    spark_server: str | None = None  # local: the run's warm Spark application (None: a process a step)
    code: Mapping[str, str] | None = None  # emr: where the code version lives (include.packaging)
    cluster: Mapping[str, Any] | None = None  # emr: the RunJobFlow request of the run's cluster
    checks_uri: str | None = None  # where the plan task writes the checks the audit reads
    # emr-serverless: the run's CreateApplication request ("application") and what its job runs
    # share ("job": include/serverless_profiles.job_defaults)
    serverless: Mapping[str, Any] | None = None

    def to_xcom(self) -> dict[str, Any]:
        return {
            "ds": self.ds,
            "branch": self.branch,
            "steps": [s.to_xcom() for s in self.steps],
            "spark_server": self.spark_server,
            "code": dict(self.code) if self.code is not None else None,
            "cluster": self.cluster,
            "checks_uri": self.checks_uri,
            "serverless": self.serverless,
        }

    @classmethod
    def from_xcom(cls, value: Mapping[str, Any]) -> RunPlan:
        steps = tuple(PlannedStep.from_xcom(s) for s in value["steps"])
        return cls(
            ds=value["ds"],
            branch=value["branch"],
            steps=steps,
            spark_server=value.get("spark_server"),
            code=value.get("code"),
            cluster=value.get("cluster"),
            checks_uri=value.get("checks_uri"),
            serverless=value.get("serverless"),
        )

    def calls(self, step: str | None = None) -> list[tuple[PlannedStep, JobCall]]:
        """The selected steps' job calls (of `step`, or all), in the order they run."""
        chosen = [p for p in self.steps if p.call is not None and step in (None, p.step)]
        if step is None:  # a backfill's batches, one after the other; a stable sort keeps each in order
            chosen.sort(key=lambda p: p.batch)
        return [(p, p.call) for p in chosen if p.call is not None]

    def commands(self, step: str | None = None) -> list[list[str]]:
        """The command lines (after `python -m spark_jobs`) of `step`, or of every step in order;
        [] for a step no requested output needs (its task skips)."""
        return [call.args for _, call in self.calls(step)]

    def emr_steps(self, step: str, conf: Mapping[str, str]) -> list[dict]:
        """The EMR steps of `step` ([] when not selected); `conf`: the jobs' Spark properties."""
        return [call.emr_step(p.emr_step_name, **self._code(conf)) for p, call in self.calls(step)]

    def emr_batches(self, conf: Mapping[str, str]) -> list[list[dict]]:
        """A backfill's EMR steps, batch by batch (each runs side by side, the next once it ended)."""
        batches: dict[int, list[dict]] = {}
        for planned, call in self.calls():
            batches.setdefault(planned.batch, []).append(
                call.emr_step(planned.emr_step_name, **self._code(conf))
            )
        return [batches[n] for n in sorted(batches)]

    def job_runs(self, step: str, conf: Mapping[str, str]) -> list[dict]:
        """The EMR Serverless job runs of `step` ([] when not selected); `conf` as for `emr_steps`."""
        return [self._job_run(p, call, conf) for p, call in self.calls(step)]

    def job_run_batches(self, conf: Mapping[str, str]) -> list[list[dict]]:
        """A backfill's job runs, batch by batch (each side by side, the next once it ended)."""
        batches: dict[int, list[dict]] = {}
        for planned, call in self.calls():
            batches.setdefault(planned.batch, []).append(self._job_run(planned, call, conf))
        return [batches[n] for n in sorted(batches)]

    def _job_run(self, planned: PlannedStep, call: JobCall, conf: Mapping[str, str]) -> dict:
        if self.serverless is None or planned.emr_step_name is None:
            raise ValueError("this run's plan has no Serverless application: it was not planned for it")
        return call.serverless_job_run(planned.emr_step_name, job=self.serverless["job"], **self._code(conf))

    def _code(self, conf: Mapping[str, str]) -> dict[str, Any]:
        if self.code is None:
            raise ValueError("this run's plan has no code location: it was not planned for EMR")
        return {
            "py_files": self.code["py_files"],
            "entrypoint": self.code["entrypoint"],
            "jars": self.code.get("jars"),
            "conf": dict(conf),  # the jobs' lineage settings (none when it is off)
        }


def nightly_plan(
    *,
    dag_id: str,
    run_id: str,
    ds: str,
    branch: str,
    calls: Mapping[str, JobCall],
    emr: bool,
    **setup: Any,
) -> RunPlan:
    """Every pipeline step for `ds`, then the audit and publish of what the run wrote; `calls`
    holds the job call of each step the run's outputs need (the others are not selected);
    `setup`: RunPlan's spark_server, code, cluster and checks_uri."""
    steps = []
    for step in (*P.PIPELINE, P.AUDIT, P.PUBLISH):
        call = calls.get(step.name)
        steps.append(
            PlannedStep(
                step=step.name,
                label=ds,
                task_ids=step_task_ids(step.name),
                selected=call is not None,
                metrics_uri=call.metrics_uri if call is not None else None,
                emr_step_name=emr_step_name(dag_id, run_id, ds, step.name) if emr else None,
                outputs=step.produces,
                call=call,
            )
        )
    return RunPlan(ds=ds, branch=branch, steps=tuple(steps), **setup)


def backfill_plan(
    *,
    dag_id: str,
    run_id: str,
    ds: str,
    branch: str,
    batches: Sequence[Sequence[tuple[str, JobCall]]],
    emr: bool,
    **setup: Any,
) -> RunPlan:
    """A backfill reported under its last date `ds`: the ranged steps once for the range, then each
    date's steps in the spec's order, then the audit of the range and publish. `batches` are the
    run's (label, job call), batch by batch in the order they run; `setup` as for `nightly_plan`."""
    spec_order = {step.name: i for i, step in enumerate(P.PIPELINE)}

    def place(numbered: tuple[int, str, JobCall]) -> tuple[int, str, int]:
        _, label, call = numbered
        step = call.step
        if step.name not in spec_order:
            return (2, "", 0)  # the audit, then publish: a stable sort keeps them in order
        return (0, "", spec_order[step.name]) if step.ranged else (1, label, spec_order[step.name])

    steps = tuple(
        PlannedStep(
            step=call.step.name,
            label=label,
            task_ids=(BACKFILL_TASK_ID,),
            selected=True,
            metrics_uri=call.metrics_uri,
            emr_step_name=emr_step_name(dag_id, run_id, label, call.step.name) if emr else None,
            outputs=call.step.produces,
            call=call,
            batch=batch,
        )
        for batch, label, call in sorted(
            [(n, label, call) for n, calls in enumerate(batches) for label, call in calls], key=place
        )
    )
    return RunPlan(ds=ds, branch=branch, steps=steps, **setup)
