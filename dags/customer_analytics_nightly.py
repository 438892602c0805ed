"""Nightly customer and market analytics (Airflow DAG), at 02:00 UTC for the day before.

Built from the pipeline spec in include/pipeline.py for PIPELINE_TARGET (local or emr):

    plan (validate params) >> create cluster + upload code
    >> ingest x5 >> graph >> features >> segments, sales_rolling, stock_daily, clickstream
       (each an EMR step waited on by a deferrable sensor, or a local `python -m spark_jobs` run)
    >> register outputs in Glue (Athena) + Assets
    terminate cluster: teardown, runs whatever happened; the run still fails if a step failed.

Form: the date to build (empty: the last complete UTC day; include/run_dates.py has the rule),
cluster profile (dev/prod), which outputs to build, optional landing history start.
Needs the project root on PYTHONPATH (include/, plugins/, spark_jobs/).
"""

from include.dag_factory import build_nightly_dag
from include.settings import load_settings

dag = build_nightly_dag(load_settings(), doc_md=__doc__)

if __name__ == "__main__":
    from include.run_local import dag_test_from_command_line

    dag_test_from_command_line(dag)
