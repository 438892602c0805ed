"""Weekly upkeep of the lake's Iceberg tables (Airflow DAG), Sunday 04:00 UTC.

One `spark_jobs maintain` step (transient EMR cluster, or the local Spark application):
expire snapshots older than the retention (form field, default PIPELINE_SNAPSHOT_RETENTION_DAYS),
compact small data files, remove orphan files, for every table of the lake.

    plan >> [create cluster + upload code >> add step >> wait >> terminate] (emr)
    plan >> start_spark >> run_maintain >> stop_spark (local)
"""

from include.settings import load_settings
from include.upkeep import build_maintenance_dag

dag = build_maintenance_dag(load_settings(), doc_md=__doc__)

if __name__ == "__main__":
    from include.run_local import dag_test_from_command_line

    dag_test_from_command_line(dag)
