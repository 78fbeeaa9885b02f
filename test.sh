#!/usr/bin/env bash
# Sets up what is missing, builds, and runs every test: the native helper's end-to-end test, unit
# tests, and integration tests against real servers with real sandboxes.
set -euo pipefail
cd "$(dirname "$0")"
CONFIGURATION=Debug source scripts/setup.sh
# A local PostgreSQL: the store and API tests run on SQLite and on PostgreSQL.
source scripts/postgres.sh
drop_test_databases() {
  su postgres -c "psql -p $PG_PORT -qtAc \"SELECT datname FROM pg_database WHERE datname LIKE 'airlock\\_%'\"" |
    while read -r db; do [ -n "$db" ] && su postgres -c "psql -p $PG_PORT -qc 'DROP DATABASE IF EXISTS $db WITH (FORCE)'" >/dev/null; done
}
drop_test_databases

export AIRLOCK_TEMPLATES="$PWD/data/templates"
echo "==> base template (built once, cached by the hash of its spec)"
timeout 900 dotnet "$SERVER_DLL" build-template base
echo "==> code-interpreter-v1 template (base plus numpy, pandas, matplotlib, nodejs; ~2 min the first time)"
timeout 900 dotnet "$SERVER_DLL" build-template code-interpreter-v1

passed=0; failed=0
summary() {
  # xunit v3: "Total: N, Errors: E, Failed: F, Skipped: S, ..."
  local line total errors fail skipped
  line=$(grep -E 'Total: [0-9]+, Errors: [0-9]+, Failed: [0-9]+' "$1" | tail -1 || true)
  if [ -z "$line" ]; then failed=$((failed + 1)); return; fi
  total=$(sed -E 's/.*Total: ([0-9]+).*/\1/' <<<"$line")
  errors=$(sed -E 's/.*Errors: ([0-9]+).*/\1/' <<<"$line")
  fail=$(sed -E 's/.*Failed: ([0-9]+).*/\1/' <<<"$line")
  skipped=$(sed -E 's/.*Skipped: ([0-9]+).*/\1/' <<<"$line")
  passed=$((passed + total - fail - skipped)); failed=$((failed + fail + errors))
}

echo "==> native helper"
out=$(mktemp)
if AIRLOCK_INIT="$PWD/src/Airlock.Runtime.Linux/obj/native/Debug/airlock-init" NATIVE_ROOTFS="$(ls -d "$AIRLOCK_TEMPLATES"/base-*/rootfs | head -1)" \
    timeout 300 python3 tests/native/test_init.py >"$out" 2>&1; then :; fi
cat "$out"
line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$out" | tail -1 || true)
if [ -n "$line" ]; then
  passed=$((passed + $(cut -d' ' -f1 <<<"$line"))); failed=$((failed + $(cut -d' ' -f3 <<<"$line")))
else
  failed=$((failed + 1))
fi

for project in tests/Airlock.Core.Tests tests/Airlock.IntegrationTests; do
  name=$(basename "$project")
  echo "==> $name"
  # Each test has its own timeouts; this outer one turns a hang into a failure, not a stuck CI.
  timeout 2400 dotnet "$project/bin/Debug/net10.0/$name.dll" -parallel none -noColor >"$out" 2>&1 || true
  cat "$out"
  summary "$out"
done

echo "==> Airlock.IntegrationTests on PostgreSQL (sandbox, tenancy and E2B API tests; a fresh database per server)"
AIRLOCK_TEST_STORE=postgres timeout 1800 dotnet tests/Airlock.IntegrationTests/bin/Debug/net10.0/Airlock.IntegrationTests.dll \
  -namespace Airlock.IntegrationTests.Sandboxes -namespace Airlock.IntegrationTests.Tenancy -namespace Airlock.IntegrationTests.E2b \
  -parallel none -noColor >"$out" 2>&1 || true
cat "$out"
summary "$out"
drop_test_databases

echo "==> E2B conformance (the official npm SDKs, unmodified)"
(cd tests/e2b && { [ -d node_modules ] || npm ci --no-audit --no-fund >/dev/null; })
if (cd tests/e2b && timeout 1200 npm test) >"$out" 2>&1; then :; fi
cat "$out"
# node's test runner closes with "# pass N" and "# fail N".
np=$(grep -E '^# pass [0-9]+' "$out" | tail -1 | awk '{print $3}')
nf=$(grep -E '^# fail [0-9]+' "$out" | tail -1 | awk '{print $3}')
if [ -n "$np" ] && [ -n "$nf" ]; then passed=$((passed + np)); failed=$((failed + nf)); else failed=$((failed + 1)); fi
rm -f "$out"

echo
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
