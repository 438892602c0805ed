"""What moto's EMR lacks for fault tests, added to the in-process server: CancelSteps, steps that
end with their cluster, a cluster that dies with a reason (spot capacity lost), and small helpers.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

from moto.core.responses import ActionResult
from moto.emr import models as emr_models
from moto.emr.responses import ElasticMapReduceResponse

from plugins.emr_naming import PROJECT, safe_name
from tests.harness.aws_fakes import FakeAws


def _cancel_steps(self: ElasticMapReduceResponse) -> ActionResult:
    cluster = self.backend.clusters[self._get_param("ClusterId")]
    wanted = self._get_param("StepIds", [])
    infos = []
    for step in cluster.steps:
        if step.id not in wanted:
            continue
        if step.state in ("PENDING", "RUNNING"):
            step.state = "CANCELLED"
            infos.append({"StepId": step.id, "Status": "SUBMITTED"})
        else:
            infos.append({"StepId": step.id, "Status": "FAILED", "Reason": f"step is {step.state}"})
    return ActionResult({"CancelStepsInfoList": infos})


def _terminate(self: Any) -> None:
    # As EMR does: the steps still pending or running on a terminated cluster are cancelled.
    for step in self.steps:
        if step.state in ("PENDING", "RUNNING"):
            step.state = "CANCELLED"
    _original_terminate(self)


def _cluster_status(self: Any) -> dict[str, Any]:
    status = _original_status.fget(self)
    code = getattr(self, "state_change_code", None)
    if code:
        status["StateChangeReason"]["Code"] = code
    return status


_original_terminate = emr_models.Cluster.terminate
_original_status = emr_models.Cluster.status


@contextmanager
def emr_with_faults():
    """Patch moto's EMR (process-wide: the server runs in this process) for the duration."""
    ElasticMapReduceResponse.cancel_steps = _cancel_steps
    emr_models.Cluster.terminate = _terminate
    emr_models.Cluster.status = property(_cluster_status)
    try:
        yield
    finally:
        del ElasticMapReduceResponse.cancel_steps
        emr_models.Cluster.terminate = _original_terminate
        emr_models.Cluster.status = _original_status


def lose_cluster(
    aws: FakeAws, cluster_id: str, code: str, message: str, *, cancel_steps: bool = True
) -> None:
    """The cluster dies under the run (spot capacity reclaimed): TERMINATED_WITH_ERRORS with EMR's reason.

    `cancel_steps=False`: its steps stay as they were (EMR marks them only some time later; moto
    without this folder's patches never does)."""
    cluster = aws.emr_backend().clusters[cluster_id]
    if cancel_steps:
        cluster.terminate()
    cluster.state = "TERMINATED_WITH_ERRORS"
    cluster.state_change_code = code
    cluster.last_state_change_reason = message


def set_step_state(aws: FakeAws, cluster_id: str, step_id: str, state: str) -> None:
    for step in aws.emr_backend().clusters[cluster_id].steps:
        if step.id == step_id:
            step.state = state
            return
    raise KeyError(step_id)


def step_states(aws: FakeAws, cluster_id: str) -> dict[str, str]:
    """step name -> state, oldest first."""
    return {s.name: s.state for s in aws.emr_backend().clusters[cluster_id].steps}


def run_cluster(
    aws: FakeAws, *, dag_id: str = "nightly_dag", run_id: str = "manual__1", name: str = "c"
) -> str:
    """A running cluster tagged like the DAGs tag theirs; returns its id."""
    emr = aws.client("emr")
    response = emr.run_job_flow(
        Name=name,
        ReleaseLabel="emr-7.13.0",
        LogUri="s3://lake-bucket/lake/_emr_logs/",
        Instances={
            "InstanceGroups": [
                {
                    "InstanceRole": "MASTER",
                    "InstanceType": "m5.xlarge",
                    "InstanceCount": 1,
                    "Market": "ON_DEMAND",
                }
            ],
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
        Tags=[
            {"Key": "project", "Value": PROJECT},
            {"Key": "dag_id", "Value": safe_name(dag_id)},
            {"Key": "run_id", "Value": safe_name(run_id)},
        ],
    )
    return response["JobFlowId"]


def step(name: str) -> dict[str, Any]:
    return {
        "Name": name,
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["spark-submit", "job.py"]},
    }


class FakeTI:
    """Enough of a task instance for operators run directly: what they push to XCom."""

    def __init__(self) -> None:
        self.xcom: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcom[key] = value


def context(dag_id: str = "nightly_dag", run_id: str = "manual__1") -> dict[str, Any]:
    class _Dag:
        pass

    dag = _Dag()
    dag.dag_id = dag_id
    return {"ti": FakeTI(), "dag": dag, "run_id": run_id}
