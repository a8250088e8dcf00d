#!/usr/bin/env bash
# A local PostgreSQL server for the storage tests (marker: postgres), on 127.0.0.1 only.
# Idempotent: installs Debian's server and psycopg2 if missing, starts the cluster, creates
# the role and database, and prints the SQLAlchemy URL for TUNELAB_PG_URL.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq postgresql >/dev/null
fi
python -c "import psycopg2" 2>/dev/null || PIP_ROOT_USER_ACTION=ignore python -m pip install -q psycopg2-binary
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
    pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start 2>/dev/null || true
for _ in $(seq 1 30); do
    pg_isready -q -h 127.0.0.1 && break
    sleep 1
done
runuser -u postgres -- psql -q -h 127.0.0.1 -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='tunelab') THEN CREATE ROLE tunelab LOGIN PASSWORD 'tunelab'; END IF; END\$\$;" 2>/dev/null \
  || runuser -u postgres -- psql -q -c "DO \$\$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname='tunelab') THEN CREATE ROLE tunelab LOGIN PASSWORD 'tunelab'; END IF; END\$\$;"
runuser -u postgres -- psql -q -tc "SELECT 1 FROM pg_database WHERE datname='tunelab'" | grep -q 1 \
  || runuser -u postgres -- createdb -O tunelab tunelab
echo "postgresql+psycopg2://tunelab:tunelab@127.0.0.1:5432/tunelab"
