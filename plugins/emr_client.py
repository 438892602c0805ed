"""The EMR API calls the project's operators and its janitor share: a cluster's and a run's steps
listed, added once and cancelled, a run's clusters found by their tags, and why a cluster ended.

Plain boto3 clients (and, to add steps, the provider's EmrHook), so they are tested with moto
without running a task.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import BotoCoreError, ClientError

from plugins.emr_naming import run_of, run_tags, safe_name

if TYPE_CHECKING:
    from airflow.providers.amazon.aws.hooks.emr import EmrHook

# Every AWS client of the DAGs: throttling (EMR's API limits are low and shared by every sensor
# of the account), 5xx and connection errors are retried with exponential backoff and jitter.
# "standard" rather than "adaptive": each task builds fresh clients, so adaptive's client-side
# rate learning would start from zero every time. Set on the operators, it wins over a
# connection's `config_kwargs` (botocore's precedence), so every deployment gets it.
AWS_RETRY_CONFIG: dict[str, Any] = {"retries": {"mode": "standard", "max_attempts": 10}}

ACTIVE_STEP_STATES = ("PENDING", "CANCEL_PENDING", "RUNNING")
REUSABLE_STEP_STATES = frozenset({"PENDING", "RUNNING", "COMPLETED"})
FAILED_STEP_STATES = frozenset({"CANCELLED", "FAILED", "INTERRUPTED"})
ACTIVE_CLUSTER_STATES = ("STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING")
ENDED_CLUSTER_STATES = frozenset({"TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS"})
ALL_CLUSTER_STATES = (*ACTIVE_CLUSTER_STATES, "TERMINATING", "TERMINATED", "TERMINATED_WITH_ERRORS")


def list_steps(client: Any, cluster_id: str, states: Iterable[str] = ()) -> list[dict[str, Any]]:
    """The cluster's steps (ListSteps summaries, newest first), optionally only those in `states`."""
    kwargs: dict[str, Any] = {"ClusterId": cluster_id}
    if states:
        kwargs["StepStates"] = list(states)
    return [s for page in client.get_paginator("list_steps").paginate(**kwargs) for s in page["Steps"]]


def cluster_end(cluster: Mapping[str, Any]) -> str | None:
    """'cluster j-.. is TERMINATED_WITH_ERRORS: CODE: message' for a cluster that ended or is ending."""
    status = cluster["Status"]
    if status["State"] not in ENDED_CLUSTER_STATES:
        return None
    reason = status.get("StateChangeReason") or {}
    why = ": ".join(str(v) for v in (reason.get("Code"), reason.get("Message")) if v)
    return f"cluster {cluster['Id']} is {status['State']}" + (f": {why}" if why else "")


def cancel_steps(client: Any, cluster_id: str, step_ids: Sequence[str], log: Any) -> list[str]:
    """Ask EMR to cancel `step_ids` (best effort: logged, never raised); returns the ids EMR accepted."""
    if not step_ids:
        return []
    try:
        response = client.cancel_steps(
            ClusterId=cluster_id, StepIds=list(step_ids), StepCancellationOption="SEND_INTERRUPT"
        )
    except (ClientError, BotoCoreError) as exc:
        log.warning("Could not cancel steps %s on %s: %s", list(step_ids), cluster_id, exc)
        return []
    accepted = []
    for info in response.get("CancelStepsInfoList", []):
        if info.get("Status") == "SUBMITTED":
            accepted.append(info["StepId"])
        else:
            log.warning("EMR refused to cancel step %s: %s", info.get("StepId"), info.get("Reason"))
    log.info("Cancelling steps %s on %s", accepted, cluster_id)
    return accepted


def cancel_run_steps(
    client: Any, cluster_id: str, run: tuple[str, str] | None, log: Any, keep: Iterable[str] = ()
) -> list[str]:
    """Cancel the run's steps still pending or running on the cluster (all of them when run is None)."""
    keep = set(keep)
    active = [
        s["Id"]
        for s in list_steps(client, cluster_id, ACTIVE_STEP_STATES)
        if s["Id"] not in keep
        and s["Status"]["State"] != "CANCEL_PENDING"
        and (run is None or run_of(s["Name"]) == run)
    ]
    return cancel_steps(client, cluster_id, active, log)


def tagged_clusters(
    client: Any,
    tags: Mapping[str, str],
    *,
    states: Sequence[str] = ACTIVE_CLUSTER_STATES,
    name: str | None = None,
) -> Iterator[dict[str, Any]]:
    """DescribeCluster of each cluster in `states` carrying all `tags` (ListClusters has no tags)."""
    for page in client.get_paginator("list_clusters").paginate(ClusterStates=list(states)):
        for summary in page["Clusters"]:
            if name is not None and summary["Name"] != name:
                continue
            cluster = client.describe_cluster(ClusterId=summary["Id"])["Cluster"]
            have = {t["Key"]: t["Value"] for t in cluster.get("Tags", [])}
            if all(have.get(k) == v for k, v in tags.items()):
                yield cluster


def completed_run_steps(
    client: Any, dag_id: str, run_id: str, *, exclude: Iterable[str] = ()
) -> dict[str, str]:
    """The run's COMPLETED steps on its clusters (found by their tags, in any state) but `exclude`:
    step name -> the cluster it completed on. A step of a run is known by its name (run + date +
    step), and a completed step's job committed to the run's Iceberg branch (a job that fails
    commits nothing), so these need not run again when the run goes on on another cluster."""
    run, skip = (safe_name(dag_id), safe_name(run_id)), set(exclude)
    done: dict[str, str] = {}
    all_states = (*ACTIVE_CLUSTER_STATES, *sorted(ENDED_CLUSTER_STATES))
    for cluster in tagged_clusters(client, run_tags(dag_id, run_id), states=all_states):
        if cluster["Id"] in skip:
            continue
        for s in list_steps(client, cluster["Id"], ["COMPLETED"]):
            if run_of(s["Name"]) == run:
                done.setdefault(s["Name"], cluster["Id"])
    return done


def add_steps_once(
    hook: EmrHook,
    job_flow_id: str,
    steps: Sequence[dict[str, Any]],
    log: Any,
    added: list[str],
    execution_role_arn: str | None = None,
) -> tuple[list[str], list[str]]:
    """Add the `steps` the cluster does not have yet; returns (step ids in order, their states).

    A step is known by its name (run + date + step): one PENDING, RUNNING or COMPLETED is
    followed instead of added again; a FAILED or CANCELLED one is added anew (the task was
    cleared to run it again). Refuses (AirflowFailException) while another step of the same run
    has failed or the cluster has ended. The ids added are appended to `added` as soon as EMR
    returns them, so a kill right after still knows what to cancel.
    """
    names = [s["Name"] for s in steps]
    if len(set(names)) != len(names):
        raise ValueError(f"step names must be unique (they identify the steps): {names}")
    client = hook.conn
    ended = cluster_end(client.describe_cluster(ClusterId=job_flow_id)["Cluster"])
    if ended:
        raise AirflowFailException(f"not adding {names}: {ended}")

    on_cluster = list_steps(client, job_flow_id)  # newest first
    runs = {run_of(n) for n in names} - {None}
    broken = [
        s
        for s in on_cluster
        if s["Status"]["State"] in FAILED_STEP_STATES and s["Name"] not in names and run_of(s["Name"]) in runs
    ]
    if broken:
        raise AirflowFailException(
            f"not adding {names}: step {broken[0]['Name']} ({broken[0]['Id']}) of this run "
            f"ended {broken[0]['Status']['State']}"
        )
    found: dict[str, dict[str, Any]] = {}
    for s in on_cluster:
        if s["Name"] in names and s["Status"]["State"] in REUSABLE_STEP_STATES:
            found.setdefault(s["Name"], s)
    for name, s in found.items():
        log.info(
            "Step %s is already on %s as %s (%s): following it",
            name,
            job_flow_id,
            s["Id"],
            s["Status"]["State"],
        )
    to_add = [s for s in steps if s["Name"] not in found]
    if to_add:
        added.extend(
            hook.add_job_flow_steps(
                job_flow_id=job_flow_id, steps=to_add, execution_role_arn=execution_role_arn
            )
        )
    new = iter(added[-len(to_add) :] if to_add else [])
    ids, states = [], []
    for name in names:
        if name in found:
            ids.append(found[name]["Id"])
            states.append(found[name]["Status"]["State"])
        else:
            ids.append(next(new))
            states.append("PENDING")
    return ids, states
