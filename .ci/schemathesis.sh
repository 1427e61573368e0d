#!/usr/bin/env bash
# Fuzzes the API against its own OpenAPI document: starts the local gateway on a fresh
# database, registers and logs in a user, and runs Schemathesis with every check (server errors,
# status codes, content types, response schemas, headers, schema-valid requests accepted,
# schema-invalid ones refused, links between operations, auth) over a bounded number of cases.
# Any failed check fails the step.
#
#   .ci/schemathesis.sh            # SCHEMATHESIS_EXAMPLES=N for more cases per operation
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
source .ci/gateway.sh

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-25}"

# Its own virtual environment, so that its dependencies never meet the SAM CLI's.
venv="${XDG_CACHE_HOME:-$HOME/.cache}/blockchat/schemathesis-$SCHEMATHESIS_VERSION"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
    echo "installing schemathesis $SCHEMATHESIS_VERSION (pip, into $venv)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$venv/bin/schemathesis" --version

work=$(mktemp -d)
# Run as root, the database runs as `postgres`, which must reach its folder.
chmod 755 "$work"
log="$work/gateway.log"
trap 'stop_gateway || true; rm -rf "$work"' EXIT

cargo build -q -p blockchat-local
# A fresh database each run; registrations are not limited per address here, since every
# request comes from this one address.
REGISTRATIONS_PER_ADDRESS=1000000 start_gateway "$log" -- \
    --http 127.0.0.1:0 --ws 127.0.0.1:0 --data-dir "$work/data"
api=$(gateway_line "$log" "Block Chat API on ")
base=${api%/api}

# A user of its own, logged in.
user="fuzz$(date +%s)"
password="fuzzing password $RANDOM$RANDOM"
FUZZ_USER_ID=$(curl -fsS "$base/api/auth/register" -H 'content-type: application/json' \
    -d "{\"username\":\"$user\",\"email\":\"$user@example.com\",\"password\":\"$password\"}" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
export FUZZ_USER_ID
token=$(curl -fsS "$base/api/auth/login" --data-urlencode "username=$user" \
    --data-urlencode "password=$password" |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')

"$venv/bin/schemathesis" --config-file .ci/schemathesis.toml run "$base/api/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --max-examples "$EXAMPLES" \
    --seed 1 \
    --workers 1 \
    --generation-database none \
    --no-color
