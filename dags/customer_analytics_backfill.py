"""Backfill a date range on one cluster (Airflow DAG): one EMR cluster or one local run for the whole range.

Triggered by hand with start_ds and end_ds (at most 93 days). Built from include/pipeline.py:

    plan: validate the range, derive the commands (nothing reaches AWS before it)
    >> preflight (emr) >> setup: create_cluster + upload_code (emr), or start_spark (local)
    >> run_steps, one task for the whole range: ingest every dataset for the range, then for
       each date in order graph, features, segments, sales_rolling, stock_daily, clickstream,
       all on the run's audit branch; then the audit of every date, then publish
    >> register_<output>: each output's asset event
    teardown: terminate_cluster (emr; runs whatever happened), or stop_spark (local)
    >> run_report.

For a few dates with one cluster each, use Airflow's own backfill of the nightly DAG instead:
`airflow backfill create --dag-id customer_analytics_nightly --from-date ... --to-date ...`.
"""

from include.dag_factory import build_backfill_dag
from include.settings import load_settings

dag = build_backfill_dag(load_settings(), doc_md=__doc__)

if __name__ == "__main__":
    from include.run_local import dag_test_from_command_line

    dag_test_from_command_line(dag)
