"""Spark jobs of the customer and market analytics lake.

Importable on its own (no Airflow anywhere): this package is zipped and shipped to EMR
with `spark-submit --py-files`, and runs unchanged with Spark in local mode.
"""

__version__ = "0.1.0"
