#!/usr/bin/env bash
# Fails when the committed query data (`.sqlx/`) is stale: every `sqlx::query!` of the workspace
# is checked again against a database migrated to the current schema, the embedded cluster the
# local gateway starts.
#
#   .ci/sqlx_check.sh
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
log=$(mktemp)
gateway_pid=
cleanup() {
    if [[ -n "$gateway_pid" ]] && kill -0 "$gateway_pid" 2>/dev/null; then
        kill -INT "$gateway_pid" 2>/dev/null || true
        wait "$gateway_pid" 2>/dev/null || true
    fi
    rm -f "$log"
}
trap cleanup EXIT

cargo build -q -p blockchat-local
cargo run -q -p blockchat-local -- --http 127.0.0.1:0 --ws 127.0.0.1:0 >"$log" 2>&1 &
gateway_pid=$!
url=
for _ in $(seq 1 240); do
    url=$(sed -n 's/^Database URL //p' "$log")
    [[ -n "$url" ]] && break
    if ! kill -0 "$gateway_pid" 2>/dev/null; then
        cat "$log" >&2
        echo "sqlx check: the gateway exited before its database was ready" >&2
        exit 1
    fi
    sleep 0.5
done
if [[ -z "$url" ]]; then
    cat "$log" >&2
    echo "sqlx check: no database within two minutes" >&2
    exit 1
fi
DATABASE_URL="$url" cargo sqlx prepare --workspace --check -- --all-targets
