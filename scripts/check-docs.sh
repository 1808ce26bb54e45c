#!/usr/bin/env bash
# Renders Swagger UI (/docs) in a real headless Chromium and checks that it shows the API's
# operations, i.e. the vendored assets load and the UI fetched and rendered /openapi.json.
#
#   scripts/check-docs.sh          (installs chromium from Debian's packages if it is missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-browser.sh
browser=$(command -v chromium)

cargo build --quiet --bin ferry
bin="${CARGO_TARGET_DIR:-target}/debug/ferry"
data=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
FERRY_CONFIG=/dev/null FERRY_DATA_DIR="$data" FERRY_LISTEN="127.0.0.1:$port" "$bin" serve >"$data/ferry.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -rf "$data"' EXIT
for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break
    sleep 0.1
done

dom=$("$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --virtual-time-budget=15000 --dump-dom "http://127.0.0.1:$port/docs/" 2>/dev/null)
fail=0
for expected in 'class="swagger-ui' 'opblock' '/v1/migrations/{id}/cutover' '/v1/events' 'Ferry'; do
    if ! grep -qF -- "$expected" <<<"$dom"; then
        echo "check-docs: the rendered /docs lacks '$expected'" >&2
        fail=1
    fi
done
if [ "$fail" = 0 ]; then
    echo "check-docs: Swagger UI rendered $(grep -o 'class="opblock opblock-' <<<"$dom" | wc -l) operations"
fi
exit "$fail"
