#!/usr/bin/env bash
# The API contract, proven by a tool no one here wrote: Schemathesis generates requests from the
# served OpenAPI document and checks every answer against it (status codes, content types,
# schemas, 405s, rejected invalid data, accepted valid data, auth).
#
# It runs the real `ferry serve` (the debug build `cargo test` made, or builds it) on a temp data
# dir, with a bearer token, inside a network namespace that has only loopback (`unshare -n`, as
# root): Schemathesis creates migrations and backups pointing at whatever hosts it invents and
# calls validate/start on them, and there they fail fast instead of reaching another machine.
#
#   scripts/schemathesis.sh          about 300 cases, a few minutes on 2 cores
#   ST_EXAMPLES=50 scripts/...       more cases per operation
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ST_VERSION=4.32.5
if ! st --version 2>/dev/null | grep -q "$ST_VERSION"; then
    python3 -m pip install --quiet --disable-pip-version-check "schemathesis==$ST_VERSION"
fi
cargo build --locked --bin ferry --quiet
bin="$PWD/target/debug/ferry"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
cat > "$work/ferry.toml" <<CONFIG
listen = "127.0.0.1:8080"
data_dir = "$work/data"
[log]
format = "json"
filter = "warn"
[[auth.tokens]]
name = "schemathesis"
token_env = "FERRY_ST_TOKEN"
role = "admin"
CONFIG

export ST_CONFIG="$PWD/scripts/schemathesis.toml" FERRY_ST_TOKEN="$token" FERRY_BIN="$bin" FERRY_WORK="$work" ST_EXAMPLES="${ST_EXAMPLES:-15}"
# A fresh network namespace: only loopback, so port 8080 is free and nothing leaves this machine.
unshare -n bash -euo pipefail -c '
    ip link set lo up
    "$FERRY_BIN" serve --config "$FERRY_WORK/ferry.toml" > "$FERRY_WORK/ferry.log" 2>&1 &
    ferry=$!
    trap "kill $ferry 2>/dev/null || true" EXIT
    for _ in $(seq 1 200); do
        curl -fsS http://127.0.0.1:8080/readyz > /dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS http://127.0.0.1:8080/readyz > /dev/null || { cat "$FERRY_WORK/ferry.log"; exit 1; }
    status=0
    cd "$FERRY_WORK"   # whatever Schemathesis caches goes with the temp dir
    st --config-file "$ST_CONFIG" run http://127.0.0.1:8080/openapi.json \
        --max-examples "$ST_EXAMPLES" \
        --seed 1 \
        --generation-database none \
        --request-timeout 20 \
        --header "Authorization: Bearer $FERRY_ST_TOKEN" \
        --no-color || status=$?
    if [ "$status" -ne 0 ]; then echo "--- ferry log (tail) ---"; tail -n 40 "$FERRY_WORK/ferry.log"; fi
    exit "$status"
'
