"""Roll a table back to its snapshot before a run (Airflow DAG), triggered by hand.

The form names the table and the run whose commits to take away. With "Apply" off (the
default) the task log only lists the commits the rollback would take away; with it on, the
table's main branch goes back to the snapshot before that run's first commit. pyiceberg on the
catalog (local SQLite, or Glue); no Spark, no cluster. The same from a shell:
`python -m scripts.manage_lake_tables rollback curated.<output> --before-run RUN_ID --apply`.
"""

from include.settings import load_settings
from include.upkeep import build_rollback_dag

dag = build_rollback_dag(load_settings(), doc_md=__doc__)
