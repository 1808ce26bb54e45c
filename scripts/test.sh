#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs the Redis servers the tests need (idempotent),
# checks formatting and lints, then runs every test against real servers.
#
#   scripts/test.sh            everything
#   scripts/test.sh -- NAME    extra arguments go to `cargo test` (e.g. a test name filter)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-redis.sh
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
[ "${1:-}" = "--" ] && shift
cargo test --all-targets --locked "$@"
