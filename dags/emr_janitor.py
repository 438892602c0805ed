"""EMR janitor (Airflow DAG), hourly: terminates this project's clusters whose DAG run is over, or
that are older than the maximum age (default 14 h), and reports each cluster it judged.

Clusters are found by their tags (project, dag_id, run_id, set by the pipeline DAGs). Only with
PIPELINE_TARGET=emr; the local target has no clusters, so there is no DAG then.
"""

from include.settings import load_settings

_settings = load_settings()
if _settings.is_emr:
    from include.janitor import build_janitor_dag  # the AWS SDK only when the target needs it

    dag = build_janitor_dag(_settings)
