#!/usr/bin/env bash
# docker-compose only: per service a database, its owner role (migrations) and its runtime role, as
# `llmops infra up` does natively.
set -euo pipefail
for service in datasets prompts training evaluation deployment monitoring audit; do
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" <<SQL
CREATE ROLE llmops_${service} LOGIN PASSWORD '${LLMOPS_POSTGRES_SERVICE_PASSWORD}';
CREATE ROLE llmops_${service}_app LOGIN PASSWORD '${LLMOPS_POSTGRES_SERVICE_PASSWORD}';
CREATE DATABASE llmops_${service} OWNER llmops_${service};
REVOKE CONNECT, TEMPORARY ON DATABASE llmops_${service} FROM PUBLIC;
GRANT CONNECT ON DATABASE llmops_${service} TO llmops_${service}_app;
SQL
done
