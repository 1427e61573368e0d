#!/usr/bin/env bash
# The README's run command from a clone under a folder that only its owner may enter, as a clone
# in root's home (0700) is: the gateway must start its PostgreSQL and serve the API with no
# permission changed by hand. (The test command's side of it is a test of the suite itself:
# `postgres::cluster::tests::a_cluster_asked_for_under_a_private_folder_starts_where_it_can_run`.)
#
#   .ci/private_clone.sh
#
# Builds with the repository's target folder (CARGO_TARGET_DIR), so only the clone's own crates
# are compiled again.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo/.ci/gateway.sh"
private=$(mktemp -d) # mode 0700, like /root
chmod 700 "$private"
clone="$private/blockchat"
log="$private/gateway.log"
trap 'stop_gateway || true; rm -rf "$private"' EXIT

fail() {
    printf 'private clone: %s\n' "$*" >&2
    [[ -f "$log" ]] && sed 's/^/  gateway: /' "$log" >&2
    exit 1
}

git clone -q "$repo" "$clone"
cd "$clone"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
cargo build --release -q -p blockchat-local

# The README's command, on free ports.
start_gateway "$log" --release -- --http 127.0.0.1:0 --ws 127.0.0.1:0
api=$(gateway_line "$log" "Block Chat API on ") || fail "the gateway did not serve"
data=$(gateway_line "$log" "PostgreSQL data in ") || fail "the gateway did not say where its data is"
case "$data" in
    "$private"/*) [[ $(id -u) -ne 0 ]] || fail "as root the data stayed under the private folder: $data" ;;
esac

# Register, log in (the form the original clients send) and read the profile back.
python3 - "$api" <<'PY' || fail "the API did not answer as the contract says"
import json, sys, urllib.parse, urllib.request
api = sys.argv[1]
def call(path, data=None, headers={}):
    request = urllib.request.Request(api + path, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, json.load(response)
status, _ = call("/auth/register", json.dumps({"username": "private_clone",
    "email": "private@example.com", "password": "correct horse battery"}).encode(),
    {"content-type": "application/json"})
assert status == 201, status
form = urllib.parse.urlencode({"username": "private_clone", "password": "correct horse battery"})
_, tokens = call("/auth/login", form.encode(), {"content-type": "application/x-www-form-urlencoded"})
_, me = call("/users/me", headers={"authorization": "Bearer " + tokens["access_token"]})
assert me["username"] == "private_clone", me
PY

stop_gateway || fail "the gateway did not stop cleanly on Ctrl-C"
case "$data" in
    /var/lib/blockchat/* | /var/tmp/blockchat/*) rm -rf "$data" "$data.lock" ;;
esac
printf 'a clone under a private folder (%s) serves the API; its data was in %s\n' "$private" "$data"
