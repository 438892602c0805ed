"""Backfill a date range on one cluster (Airflow DAG): one EMR cluster or one local run for the whole range.

Triggered by hand with start_ds and end_ds (at most 93 days). Built from include/pipeline.py:

    plan (validate range) >> create cluster + upload code
    >> ingest every dataset for the range (one step each, side by side)
    >> for each date in order: graph, sales_rolling, stock_daily, clickstream >> features >> segments
    >> register every date's partitions in Glue + Assets
    terminate cluster: teardown, runs whatever happened.

For a few dates with one cluster each, use Airflow's own backfill of the nightly DAG instead:
`airflow backfill create --dag-id customer_analytics_nightly --from-date ... --to-date ...`.
"""

from include.dag_factory import build_backfill_dag
from include.settings import load_settings

dag = build_backfill_dag(load_settings(), doc_md=__doc__)

if __name__ == "__main__":
    from include.run_local import dag_test_from_command_line

    dag_test_from_command_line(dag)
