"""Weekly upkeep of the lake's Iceberg tables (Airflow DAG), Sunday 04:00 UTC.

One `spark_jobs maintain` step (transient EMR cluster, or the local Spark application):
expire snapshots older than the retention (form field, default PIPELINE_SNAPSHOT_RETENTION_DAYS),
drop kept audit branches older than that, compact small data files, remove orphan files, for
every table of the lake. Its EMR step is submitted as the nightly's are (same code, OpenLineage
jar and settings).

    plan >> create_cluster + upload_code >> run_maintain >> terminate_cluster (teardown) >> step_logs (emr)
    plan >> start_spark >> run_maintain >> stop_spark (local)
"""

from include.settings import load_settings
from include.upkeep import build_maintenance_dag

dag = build_maintenance_dag(load_settings(), doc_md=__doc__)

if __name__ == "__main__":
    from include.run_local import dag_test_from_command_line

    dag_test_from_command_line(dag)
