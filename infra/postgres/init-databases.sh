#!/usr/bin/env bash
# docker-compose only: one database and one role per service, as `llmops infra up` does natively.
set -euo pipefail
for service in datasets prompts training evaluation deployment monitoring audit; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE llmops_${service} LOGIN PASSWORD '${LLMOPS_POSTGRES_SERVICE_PASSWORD}';
CREATE DATABASE llmops_${service} OWNER llmops_${service};
REVOKE CONNECT ON DATABASE llmops_${service} FROM PUBLIC;
SQL
done
