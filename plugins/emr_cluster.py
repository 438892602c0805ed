"""The run's transient EMR cluster: created once (a retry takes the one its earlier try started)
and, as the DAG's teardown, its steps cancelled and the cluster terminated whatever happened.

A run's clusters are found by their tags (`plugins/emr_naming.py`); the EMR calls are
`plugins/emr_client.py`'s.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from typing import Any

from airflow.providers.amazon.aws.hooks.emr import EmrHook
from airflow.providers.amazon.aws.operators.base_aws import AwsBaseOperator
from airflow.providers.amazon.aws.operators.emr import EmrCreateJobFlowOperator
from airflow.providers.amazon.aws.utils.mixins import aws_template_fields
from airflow.sdk.exceptions import AirflowException

from plugins.emr_client import cancel_run_steps, cluster_end, tagged_clusters
from plugins.emr_naming import run_tags


# ---- the cluster -----------------------------------------------------------------------------
class EmrRunClusterOperator(EmrCreateJobFlowOperator):
    """Create the run's cluster once; a retry takes the one its earlier try started.

    The run is read from the request's tags (project, dag_id, run_id). RunJobFlow has no client
    token, so a lost response or a retried request can start a cluster nobody knows of: when
    creation fails, every cluster tagged with the run is terminated (best effort) before failing.
    """

    def execute(self, context: Any) -> str | None:
        overrides = self.job_flow_overrides
        if isinstance(overrides, str):
            overrides = self.job_flow_overrides = ast.literal_eval(overrides)
        tags = {t["Key"]: t["Value"] for t in overrides.get("Tags", [])}
        mine = {k: tags[k] for k in ("project", "dag_id", "run_id") if k in tags}
        client = self.hook.conn
        if len(mine) == 3:
            for cluster in tagged_clusters(client, mine, name=overrides.get("Name")):
                self.log.info(
                    "Cluster %s of this run is already %s: using it",
                    cluster["Id"],
                    cluster["Status"]["State"],
                )
                return cluster["Id"]
        try:
            return super().execute(context)
        except Exception as exc:
            if len(mine) == 3:
                for cluster in tagged_clusters(client, mine):
                    self.log.warning("Terminating %s, started by the failed creation", cluster["Id"])
                    client.terminate_job_flows(JobFlowIds=[cluster["Id"]])
            raise AirflowException(f"EMR did not create the cluster: {exc}") from exc


class EmrRunTeardownOperator(AwsBaseOperator[EmrHook]):
    """Cancel the run's pending and running steps, then terminate its cluster(s); says why one ended.

    Runs as the DAG's teardown, whatever happened (also after the run was marked failed from the
    UI). Besides `job_flow_id` (None when creation failed) it terminates every active cluster
    tagged with this run, so a cluster started by a failed or retried creation goes too.

    :return: one line per cluster: what was done
    """

    aws_hook_class = EmrHook
    template_fields: Sequence[str] = aws_template_fields("job_flow_id")
    ui_color = "#f9c915"

    def __init__(self, *, job_flow_id: str | None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.job_flow_id = job_flow_id

    def execute(self, context: Any) -> list[str]:
        client = self.hook.conn
        ids = [self.job_flow_id] if self.job_flow_id and self.job_flow_id != "None" else []
        tags = run_tags(context["dag"].dag_id, context["run_id"])
        ids += [c["Id"] for c in tagged_clusters(client, tags) if c["Id"] not in ids]
        if not ids:
            self.log.info("No cluster of this run to terminate")
        done = []
        for cluster_id in ids:
            cluster = client.describe_cluster(ClusterId=cluster_id)["Cluster"]
            ended = cluster_end(cluster)
            if ended:
                self.log.warning("%s", ended)
                done.append(ended)
                continue
            cancelled = cancel_run_steps(client, cluster_id, None, self.log)
            client.terminate_job_flows(JobFlowIds=[cluster_id])
            done.append(f"cluster {cluster_id}: cancelled {len(cancelled)} steps, terminating")
            self.log.info("%s", done[-1])
        return done
