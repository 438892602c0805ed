#!/usr/bin/env bash
# One-shot init for docker-compose.yaml (service airflow-init, runs as root): checks the image
# and the mounted project, migrates the metadata DB, writes the login, makes the demo lake in the
# empty lake volume, hands the named volumes to the Airflow user (never a host path). Every other
# service waits for it to finish successfully.
set -euo pipefail

: "${AIRFLOW_UID:=50000}"
: "${AIRFLOW_ADMIN_USER:=admin}"
: "${AIRFLOW_ADMIN_PASSWORD:=admin}"
project=/opt/airflow/project

echo "== image"
/entrypoint airflow version
java -version 2>&1 | head -1
python -c "import pyspark, airflow.providers.amazon as a; print('pyspark', pyspark.__version__, 'amazon', a.__version__)"

echo "== mounted project"
for d in dags include deployment plugins spark_jobs scripts; do
  if [[ ! -d "$project/$d" ]]; then
    echo "missing $project/$d: run docker compose from the project root" >&2
    exit 1
  fi
done

echo "== metadata database"
/entrypoint airflow db migrate

echo "== login (SimpleAuthManager)"
passwords="${AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE:?}"
mkdir -p "$(dirname "$passwords")"
python - "$passwords" "$AIRFLOW_ADMIN_USER" "$AIRFLOW_ADMIN_PASSWORD" <<'PY'
import json, sys
path, user, password = sys.argv[1:]
with open(path, "w") as f:
    json.dump({user: password}, f)
PY

echo "== DAG import errors (parsed here, before any scheduler sees them)"
# Exit code 1 when any DAG file fails to import; the JSON names the file and the traceback.
if ! /entrypoint airflow dags list-import-errors --local --output json; then
  echo "DAG import errors above: fix them before starting Airflow" >&2
  exit 1
fi

lake=/opt/airflow/lake
echo "== demo lake"
if [[ "${PIPELINE_LAKE:-}" == "file://$lake" ]]; then
  # Only into an empty volume (its first start): a lake holding anything is left as it is.
  python -m scripts.generate_demo_data --lake "$lake" --if-empty \
    --start "${DEMO_START:?}" --end "${DEMO_END:?}" --scale "${DEMO_SCALE:?}"
else
  echo "PIPELINE_LAKE is ${PIPELINE_LAKE:-unset}, not the lake volume: no demo data"
fi

echo "== ownership of the named volumes -> ${AIRFLOW_UID}:0"
mkdir -p /opt/airflow/logs "$lake"
chown -R "${AIRFLOW_UID}:0" /opt/airflow/logs "$(dirname "$passwords")" "$lake"
echo "init done: UI on http://localhost:${AIRFLOW_WEB_PORT:-8080} as ${AIRFLOW_ADMIN_USER}"
