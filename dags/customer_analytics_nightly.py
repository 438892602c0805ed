"""Nightly customer and market analytics (Airflow DAG), at 02:00 UTC for the day before.

Built from the pipeline spec in include/pipeline.py for PIPELINE_TARGET (local or emr):

    plan: validate the form, derive every step's command (nothing reaches AWS before it)
    >> preflight (emr): read-only checks that everything a cluster needs exists
    >> setup: create_cluster + upload_code (emr), or start_spark, the run's warm Spark application (local)
    >> the steps in the spec's order, one run_<step> task each (an EMR step on the run's cluster,
       deferred while it runs, or a job on the local Spark application):
       ingest x5 >> graph >> features >> segments; sales_rolling; stock_daily; clickstream
       (a step no requested output needs skips itself); every step writes to the run's audit branch
    >> run_audit: the checks of include/checks.py on what the steps wrote (fails: nothing published)
    >> run_publish: each table's main fast-forwarded to the branch (what readers see)
    >> register_<output>: each output's Airflow asset event, with its new snapshot
    teardown: terminate_cluster (emr; runs whatever happened) >> step_logs, or stop_spark (local)
    >> run_report: rows, checks, durations and cost of the run (LAKE/_runs, the Run report view).

Form: the date to build (empty: the last complete UTC day; include/run_dates.py has the rule),
cluster profile (dev/prod), which outputs to build, optional landing history start, whether a
warning of the audit blocks the publish. A failed run and a late one alert (include/alerts.py).
Needs the project root on PYTHONPATH (include/, plugins/, spark_jobs/).
"""

from include.dag_factory import build_nightly_dag
from include.settings import load_settings

dag = build_nightly_dag(load_settings(), doc_md=__doc__)

if __name__ == "__main__":
    from include.run_local import dag_test_from_command_line

    dag_test_from_command_line(dag)
