"""What a job says to whoever runs it, besides its outputs: exit codes, the metrics line, and the
environment variable that carries its lineage settings.

Declared once, for the jobs (`spark_jobs.cli`, `spark_jobs.audit`) and for the operator that runs
them locally (`plugins/spark_job.py`). Pure Python, no Spark: the operator imports it at parse time.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2  # bad arguments or input: the same input gives the same no, so no retry
EXIT_AUDIT_FAILED = 3  # the audit ran and an `error` check failed: nothing is published
METRICS_PREFIX = "SPARK_JOBS_METRICS "  # the start of the job's one machine-readable stdout line
LINEAGE_VAR = "SPARK_JOBS_LINEAGE"  # a job's `spark.openlineage.*` properties (JSON), set by the operator
