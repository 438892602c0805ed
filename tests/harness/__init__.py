"""What the tests are built from: Airflow's test home, moto as AWS, DAG runs, test lakes.

Imported the normal way (`from tests.harness.aws_fakes import FakeAws`); the fixtures made from
these live in conftest.py files (`fixtures.py` holds the ones every Airflow test folder shares).
"""
