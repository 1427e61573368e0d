# Sourced by the CI scripts that need a running local gateway: `start_gateway LOG ARGS...` runs
# `cargo run -p blockchat-local -- ARGS...` in the background, `gateway_line LOG PREFIX` waits
# (two minutes at most) for the line it prints that starts with PREFIX and answers the rest of
# it, and `stop_gateway` stops it as Ctrl-C would (an EXIT trap should call it).

gateway_pid=

start_gateway() {
    local log=$1
    shift
    cargo run -q -p blockchat-local "$@" >"$log" 2>&1 &
    gateway_pid=$!
}

gateway_line() {
    local log=$1 prefix=$2 value
    for _ in $(seq 1 240); do
        value=$(sed -n "s|^$prefix||p" "$log")
        if [[ -n "$value" ]]; then
            printf '%s\n' "$value"
            return 0
        fi
        if ! kill -0 "$gateway_pid" 2>/dev/null; then
            sed 's/^/  gateway: /' "$log" >&2
            echo "the gateway exited before printing \"$prefix\"" >&2
            return 1
        fi
        sleep 0.5
    done
    sed 's/^/  gateway: /' "$log" >&2
    echo "the gateway did not print \"$prefix\" within two minutes" >&2
    return 1
}

# Answers the gateway's exit status.
stop_gateway() {
    local status=0
    if [[ -n "$gateway_pid" ]] && kill -0 "$gateway_pid" 2>/dev/null; then
        kill -INT "$gateway_pid" 2>/dev/null || true
        wait "$gateway_pid" || status=$?
    fi
    gateway_pid=
    return "$status"
}
