#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the Redis servers and the browser the tests need
# (idempotent), checks formatting and lints, runs every test against real servers (the dashboard
# in headless Chromium included), proves the API contract with Schemathesis against the real
# binary, then renders /docs in Chromium.
#
#   scripts/test.sh            everything
#   scripts/test.sh -- NAME    extra arguments go to `cargo test` (e.g. a test name filter)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-redis.sh
# Chromium + chromedriver from Debian: tests/dashboard drives the dashboard with them.
bash scripts/install-browser.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
if [ "${1:-}" = "--" ]; then shift; fi
cargo test --all-targets --locked "$@"
if [ $# -eq 0 ]; then
    # The OpenAPI contract, checked by Schemathesis in a loopback-only network namespace.
    bash scripts/schemathesis.sh
    # Swagger UI at /docs, rendered by a real headless Chromium (installed from Debian if missing).
    bash scripts/check-docs.sh
fi
