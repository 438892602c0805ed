# Two commands matter: `make demo` and `make test`. Everything else is a building block.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
UV_VERSION := 0.13.9
# A Friday: the market was open, so stock_daily has rows.
DEMO_DS ?= 2024-06-28
DEMO_START ?= 2024-05-01
DEMO_SCALE ?= 0.02
DEMO_LAKE ?= $(CURDIR)/lake
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON ?= $(CURDIR)/$(PY)

.PHONY: help venv jars venv-emr7 jars-emr7 demo demo-data test lint format package bench bench-lines lock clean

help:
	@echo "make demo     - install, generate demo data, run the nightly pipeline locally, print outputs"
	@echo "make test     - lint + the whole test suite"
	@echo "make package  - build dist/spark_jobs-<version>.zip + entrypoint for spark-submit"
	@echo "make bench    - benchmarks, written to docs/BENCHMARKS.md"
	@echo "make bench-lines - figures 2, 3 and 6 on Spark 4.1 and on the emr-7.x line's Spark 3.5 in turn, side by side"
	@echo "make airflow  - a real Airflow on localhost (PostgreSQL); make airflow-stop ends it"
	@echo "make venv-emr7 jars-emr7 - a second environment on the emr-7.x line (pyspark 3.5.6, Iceberg 1.10) for test-ops"
	@echo "make test-ops - the slow end-to-end tests (marker ops): real spark-submit, kills, the EMR DAG on the stack, a real Airflow, Chromium screenshots (.ci/run)"
	@echo "make aws-deploy STACK=name REGION=region - the AWS stack (infra/), its TLS certificates, the .env settings"
	@echo "make aws-destroy STACK=name REGION=region - delete the stack (the lake bucket and its key stay)"

# Bytecode: this machine (and CI) sets PYTHONDONTWRITEBYTECODE=1, so every process would compile
# Airflow, boto3, pyspark and this project from source (~3 s more per process start). Compiling
# the whole environment at install (uv's --compile-bytecode) takes ~28 s, mostly for modules no
# run imports; instead each module is compiled once, the first time a process imports it, and
# read back by every later process (Python writes the file atomically: workers may race).
export PYTHONDONTWRITEBYTECODE :=
$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip install --python $(PY) --quiet -r requirements-dev.txt -c constraints.txt
	touch $@

venv: $(VENV)/.installed

# Spark packages of local runs (Iceberg, sqlite-jdbc, hadoop-aws), pinned in jars/pom.xml to the
# EMR release's versions, fetched from Maven Central once into a cache this Makefile owns.
JARS_DIR := .cache/jars
$(JARS_DIR)/.fetched: jars/pom.xml
	rm -rf $(JARS_DIR)
	mvn -q -B -f jars/pom.xml dependency:copy-dependencies \
		-DoutputDirectory=$(CURDIR)/$(JARS_DIR) -Dmaven.repo.local=$(CURDIR)/.cache/m2
	touch $@

jars: $(JARS_DIR)/.fetched

# The emr-7.x line (Spark 3.5.6, Iceberg 1.10, Scala 2.12) in a second environment: the project's
# requirements with jars/emr-7/requirements.txt's pins in place of the default line's, and that
# line's Spark packages. `make test-ops` runs the demo pipeline on it once (still selectable:
# PIPELINE_EMR_RELEASE=emr-7.13.0), so that nothing Spark-4-only slips into spark_jobs/.
VENV_EMR7 := .venv-emr7
JARS_DIR_EMR7 := .cache/jars-emr7
$(VENV_EMR7)/.installed: requirements.txt constraints.txt jars/emr-7/requirements.txt
	test -x $(VENV_EMR7)/bin/python || $(PYTHON) -m venv $(VENV_EMR7)
	$(VENV_EMR7)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
	grep -v -E '^(pyspark|py4j|numpy|pandas|pyarrow)==' constraints.txt > $(VENV_EMR7)/constraints.txt
	$(VENV_EMR7)/bin/uv pip install --python $(VENV_EMR7)/bin/python --quiet --compile-bytecode \
		-r requirements.txt -c $(VENV_EMR7)/constraints.txt --override jars/emr-7/requirements.txt
	touch $@

venv-emr7: $(VENV_EMR7)/.installed

$(JARS_DIR_EMR7)/.fetched: jars/emr-7/pom.xml
	rm -rf $(JARS_DIR_EMR7)
	mvn -q -B -f jars/emr-7/pom.xml dependency:copy-dependencies \
		-DoutputDirectory=$(CURDIR)/$(JARS_DIR_EMR7) -Dmaven.repo.local=$(CURDIR)/.cache/m2
	touch $@

jars-emr7: $(JARS_DIR_EMR7)/.fetched

demo-data: venv jars
	$(PY) -m scripts.generate_demo_data --lake $(DEMO_LAKE) --start $(DEMO_START) --end $(DEMO_DS) --scale $(DEMO_SCALE)

demo: demo-data
	$(PY) -m scripts.run_dag_locally --lake $(DEMO_LAKE) --ds $(DEMO_DS) --history-start $(DEMO_START)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Two workers (pytest-xdist), each test file whole on one, the longest first: see tests/conftest.py
# (the files' times: tests/file_times.json, from a run's report with
# `python -m bench.suite_times .pytest_cache/junit.xml --write-order tests/file_times.json`).
# Then where the time went, per test file (bench/suite_times.py; docs/BENCHMARKS.md has a run's).
PYTEST_WORKERS ?= 2
TEST_REPORT := .pytest_cache/junit.xml
test: lint jars
	$(PY) -m pytest -n $(PYTEST_WORKERS) --no-loadscope-reorder --junitxml=$(TEST_REPORT)
	$(PY) -m bench.suite_times $(TEST_REPORT) --top 12

package: venv
	$(PY) -m scripts.package_spark_jobs --out dist

# Benchmarks (not tests: no timing is asserted anywhere). Data and raw results go to .bench/.
# `make bench BENCH_ARGS="--quick"` for small sizes, `BENCH_ARGS="--only pagerank --repeat 5"`.
BENCH_ARGS ?=
bench: venv jars
	$(PY) -m bench $(BENCH_ARGS)

# Figures 2, 3 and 6 on both Spark lines, one after the other (bench/__main__.py --lines): the
# document's side-by-side section. Figure 3's oracle (networkx, scipy) is not part of the emr-7.x
# environment; it goes beside it into .bench/emr7-site, the environment itself untouched.
BENCH_LINES_ARGS ?= --only features,pagerank,commit
bench-lines: venv jars venv-emr7 jars-emr7
	mkdir -p .bench && test -f .bench/.gitignore || echo '*' > .bench/.gitignore
	$(VENV_EMR7)/bin/uv pip install --python $(VENV_EMR7)/bin/python --quiet --no-deps \
		--target .bench/emr7-site $$(grep -E '^(networkx|scipy)==' constraints.txt)
	$(PY) -m bench --lines spark41,spark35 $(BENCH_LINES_ARGS)

lock: venv
	$(VENV)/bin/uv pip freeze --python $(PY) | grep -v -E '^(uv|pip)==' > constraints.txt

clean:
	rm -rf dist lake .pytest_cache spark-warehouse metastore_db

# ---- a real Airflow (ops) ----------------------------------------------------------------
.PHONY: airflow airflow-stop airflow-status ops-prereqs test-ops
AIRFLOW_PORT ?= 8080

# api-server, scheduler, dag-processor, triggerer on localhost; PostgreSQL from Debian's
# packages as the metadata DB (installed when missing). State and logs: .airflow/server/.
airflow: venv jars
	@test -d $(DEMO_LAKE)/landing || $(MAKE) --no-print-directory demo-data
	$(PY) scripts/airflow_local.py start --port $(AIRFLOW_PORT) --lake $(DEMO_LAKE)

airflow-stop:
	$(PY) scripts/airflow_local.py stop

airflow-status:
	$(PY) scripts/airflow_local.py status

# PostgreSQL, Chromium and chromedriver from Debian's packages (apt-get, as root).
ops-prereqs:
	bash scripts/install_ops_prereqs.sh --browser

# The slow end-to-end tests (marker `ops`): first those beside the code they prove (real
# spark-submit, process kills, whole DAG runs with a failing step or on the AWS stack under
# moto; on two workers), then a real Airflow running the nightly DAG, a backfill, and the UI in
# headless Chromium (screenshots in docs/screenshots/). Not part of `make test` (its budget is
# 15 minutes on 2 cores); .ci/run calls this after `make test`.
test-ops: venv jars venv-emr7 jars-emr7 ops-prereqs
	OPS_TESTS=1 $(PY) -m pytest tests -m ops --ignore=tests/ops -n $(PYTEST_WORKERS) -p no:cacheprovider --durations=10
	OPS_TESTS=1 $(PY) -m pytest tests/ops -v -p no:cacheprovider --durations=0

# ---- AWS (the emr target) ------------------------------------------------------------------
.PHONY: aws-check-target aws-deploy aws-certs aws-preflight aws-destroy aws-template
# Never defaulted: a stack in the wrong account or region is what these refuse to make.
STACK ?=
REGION ?=
# Extra CloudFormation parameters, e.g. AWS_PARAMETERS="CreateNetwork=false ExistingSubnetId=subnet-..."
AWS_PARAMETERS ?=

aws-check-target:
	@test -n "$(STACK)" -a -n "$(REGION)" || { echo "usage: make $(MAKECMDGOALS) STACK=<stack name> REGION=<aws region>" >&2; exit 2; }

# With the deployer's AWS credentials (profile, SSO or environment): the stack (created or
# updated), then the TLS certificates where it says (kept when already there), then the
# settings to paste into .env.
aws-deploy: aws-check-target venv
	$(PY) -m infra.deploy deploy --stack $(STACK) --region $(REGION) $(addprefix --parameter ,$(AWS_PARAMETERS)) > .aws-settings.tmp || { rm -f .aws-settings.tmp; exit 1; }
	$(PY) -m infra.tls_certs --stack $(STACK) --region $(REGION) --if-missing
	@cat .aws-settings.tmp && rm -f .aws-settings.tmp

# New self-signed certificates (e.g. before the year's validity runs out).
aws-certs: aws-check-target venv
	$(PY) -m infra.tls_certs --stack $(STACK) --region $(REGION)

# Preflight with the PIPELINE_* settings exported in this shell: what the target (a cluster, or an
# EMR Serverless application) would find missing.
aws-preflight: venv
	$(PY) -m scripts.check_aws_preflight

aws-destroy: aws-check-target venv
	$(PY) -m infra.deploy destroy --stack $(STACK) --region $(REGION)

# Regenerate infra/customer-analytics.template.json from deployment/iam, infra/documents.py and the
# run report's metrics, and docs/cloudwatch-dashboard.svg (the picture of its dashboard) from it.
aws-template: venv
	$(PY) -m infra.template
	$(PY) -m infra.dashboard_picture
