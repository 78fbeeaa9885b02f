#!/usr/bin/env bash
# Starts a local PostgreSQL for the tests (Debian's cluster) and exports AIRLOCK_TEST_POSTGRES, an
# admin URL the tests use to create a fresh database per test or per server. Sourced by test.sh;
# idempotent. The role and password are local to this machine's test cluster.
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "==> installing postgresql"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi

PG_VERSION=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$PG_VERSION main$"; then
  pg_createcluster "$PG_VERSION" main >/dev/null
fi
if ! pg_lsclusters -h | awk '$1=="'"$PG_VERSION"'" && $2=="main" {print $4}' | grep -q online; then
  echo "==> starting PostgreSQL $PG_VERSION"
  pg_ctlcluster "$PG_VERSION" main start
fi
PG_PORT=$(pg_lsclusters -h | awk '$1=="'"$PG_VERSION"'" && $2=="main" {print $3}')

for _ in $(seq 1 50); do
  su postgres -c "psql -p $PG_PORT -qtAc 'SELECT 1'" >/dev/null 2>&1 && break
  sleep 0.2
done
su postgres -c "psql -p $PG_PORT -qtAc \"DO \\\$\\\$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'airlock_test') THEN
    CREATE ROLE airlock_test LOGIN CREATEDB PASSWORD 'airlock_test';
  END IF;
END \\\$\\\$;\"" >/dev/null

export AIRLOCK_TEST_POSTGRES="postgres://airlock_test:airlock_test@127.0.0.1:$PG_PORT/postgres"
echo "==> PostgreSQL $PG_VERSION on 127.0.0.1:$PG_PORT (AIRLOCK_TEST_POSTGRES)"
