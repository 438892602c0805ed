"""Benchmarks of the pipeline (`python -m bench`, `make bench`): six figures, written to docs/BENCHMARKS.md.

Each figure runs in its own Python process (Spark and Airflow both keep process-wide state)
and hands its numbers back as one `BENCH_RESULT {json}` line; see bench/__main__.py.
"""
