"""The report of every pipeline run: rows in, out and quarantined per step, durations, and on EMR
the cluster's normalized instance hours and estimated cost (on EMR Serverless each job run's billed
vCPU, memory and storage hours and cost); written to the lake, logged as a table.

The jobs leave their numbers in `LAKE/_runs/metrics/dt=<ds>/<job>[-<dataset>].json` (spark_jobs/cli.py);
the plan task says where, per step (`include.run_plan`). The DAGs' last task, `run_report`, joins
them with the tasks' states (and on EMR the steps' timings and the instances the cluster ran) into
`LAKE/_runs/reports/dag_id=<dag>/dt=<ds>/report.json`. Beside it, on both targets, `report.html`:
per step its queue, start-up and Spark time and rows, links to the EMR cluster, the Spark History
Server and each step's logs (locally: the Airflow task's log), rows per output and cost per run
over the last 14 runs, and on a local lake charts of the run's outputs; no script, nothing fetched.
The Airflow UI shows it from the run (plugins/run_report_view.py, a "Run report" tab).

On EMR the task also publishes the report's numbers to CloudWatch (`metrics`: PutMetricData, the
names the stack's dashboard and alarms use); locally they stay in the report.

`model` builds the report, `cost` prices the EMR cluster, `serverless_cost` the EMR Serverless job
runs, `render` writes the table and the page (`charts` draws its charts), `metrics` turns the report
into CloudWatch datums (all pure, tested without Airflow); `task` is the Airflow task and its I/O.
"""
