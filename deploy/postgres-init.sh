#!/bin/bash
# Creates one database per service (POSTGRES_MULTIPLE_DATABASES, comma-separated).
set -euo pipefail
IFS=',' read -ra dbs <<< "${POSTGRES_MULTIPLE_DATABASES:-}"
for db in "${dbs[@]}"; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres -c "CREATE DATABASE \"$db\" OWNER \"$POSTGRES_USER\";"
done
