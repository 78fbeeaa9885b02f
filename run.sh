#!/usr/bin/env bash
# Sets up what is missing, builds, and starts Airlock in the foreground.
#   AIRLOCK_URLS  (default http://127.0.0.1:3000)   AIRLOCK_DATA (default ./data)
set -euo pipefail
cd "$(dirname "$0")"
source scripts/setup.sh
export AIRLOCK_DATA="${AIRLOCK_DATA:-$PWD/data}"
export AIRLOCK_URLS="${AIRLOCK_URLS:-http://127.0.0.1:3000}"
echo "==> starting Airlock on $AIRLOCK_URLS (data in $AIRLOCK_DATA); the base template is built on first start"
exec dotnet "$SERVER_DLL"
