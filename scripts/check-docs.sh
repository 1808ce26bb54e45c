#!/usr/bin/env bash
# Renders Swagger UI (/docs) in a real headless Chromium and checks that it shows the API's
# operations, i.e. the vendored assets load and the UI fetched and rendered /openapi.json: once
# over plain HTTP and once over HTTPS ([http.tls] with a throwaway certificate made here).
#
#   scripts/check-docs.sh          (installs chromium from Debian's packages if it is missing)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-browser.sh
browser=$(command -v chromium)

cargo build --quiet --bin ferry
bin="${CARGO_TARGET_DIR:-target}/debug/ferry"
work=$(mktemp -d)
pid=
trap 'if [ -n "$pid" ]; then kill $pid 2>/dev/null; fi; rm -rf "$work"' EXIT

# A throwaway CA and server certificate for the HTTPS pass ([http.tls]).
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
(cd "$work" &&
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 1 -subj /CN=ferry-docs-ca &&
    openssl req "${ec[@]}" -keyout server.key -out server.csr -subj /CN=localhost &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >ext.cnf &&
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
        -days 1 -extfile ext.cnf) >/dev/null 2>&1
printf '[http.tls]\ncert_file = "%s"\nkey_file = "%s"\n' "$work/server.pem" "$work/server.key" >"$work/https.toml"

# Serves /docs over `scheme` and checks what Chromium renders there.
check() {
    local scheme=$1 config=$2
    local data port dom fail=0
    data=$(mktemp -d -p "$work")
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    FERRY_CONFIG=$config FERRY_DATA_DIR="$data" FERRY_LISTEN="127.0.0.1:$port" "$bin" serve >"$data/ferry.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 100); do
        curl -sf --cacert "$work/ca.pem" "$scheme://127.0.0.1:$port/healthz" >/dev/null && break
        sleep 0.1
    done
    # The throwaway CA is not in Chromium's store; curl above checked the certificate properly.
    dom=$("$browser" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --ignore-certificate-errors --virtual-time-budget=15000 \
        --dump-dom "$scheme://127.0.0.1:$port/docs/" 2>/dev/null)
    kill $pid 2>/dev/null
    wait $pid 2>/dev/null || true
    pid=
    for expected in 'class="swagger-ui' 'opblock' '/v1/migrations/{id}/cutover' '/v1/events' 'Ferry'; do
        if ! grep -qF -- "$expected" <<<"$dom"; then
            echo "check-docs ($scheme): the rendered /docs lacks '$expected'" >&2
            fail=1
        fi
    done
    if [ "$fail" = 0 ]; then
        echo "check-docs ($scheme): Swagger UI rendered $(grep -o 'class="opblock opblock-' <<<"$dom" | wc -l) operations"
    fi
    return "$fail"
}

status=0
check http /dev/null || status=1
check https "$work/https.toml" || status=1
exit "$status"
