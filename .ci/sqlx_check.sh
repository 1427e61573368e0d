#!/usr/bin/env bash
# Fails when the committed query data (`.sqlx/`) is stale: every `sqlx::query!` of the workspace
# is checked again against a database migrated to the current schema, the embedded cluster the
# local gateway starts. (A query changed without its data already fails the offline build.)
#
#   .ci/sqlx_check.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source .ci/gateway.sh
log=$(mktemp)
trap 'stop_gateway || true; rm -f "$log"' EXIT

cargo build -q -p blockchat-local
start_gateway "$log" -- --http 127.0.0.1:0 --ws 127.0.0.1:0
url=$(gateway_line "$log" "Database URL ")
DATABASE_URL="$url" cargo sqlx prepare --workspace --check -- --all-targets --workspace
