#!/usr/bin/env bash
# Installs the Debian packages the ops layer needs: PostgreSQL (metadata DB for `make airflow`)
# and, with --browser, Chromium + chromedriver (the headless UI test). Idempotent; installs only
# what is missing, and only where apt-get can (root). Elsewhere it says what to install.
set -euo pipefail

want_browser=0
[[ "${1:-}" == "--browser" ]] && want_browser=1

missing=()
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
if (( want_browser )); then
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
fi
(( ${#missing[@]} == 0 )) && exit 0

if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "install_ops_prereqs: missing ${missing[*]}; install them (Debian: sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "install_ops_prereqs: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d refusal: the postgresql package must not start a system cluster; we run our own.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
