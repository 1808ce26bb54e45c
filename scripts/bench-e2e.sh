#!/usr/bin/env bash
# End-to-end benchmark: Ferry's relay and restore transfers vs native REPLICAOF (disk, diskless) vs
# SCAN+MIGRATE, in the same run, plus live apply under redis-benchmark load. Parameters pass
# through, e.g.:
#   scripts/bench-e2e.sh --keys 200000 --runs 3 --only relay,restore,diskless
#   scripts/bench-e2e.sh --big-keys --runs 2          # 300 MB string, 2M list, 1M hash
#   scripts/bench-e2e.sh --scale --runs 1             # 1M, 3M, 10M keys
#   scripts/bench-e2e.sh --tls --runs 5               # rediss:// vs plain vs native TLS replication
#   scripts/bench-e2e.sh --cluster --runs 3           # 3-shard cluster -> 3-shard cluster vs native
# See scripts/bench_e2e.py --help for all of them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-redis.sh
cargo build --release --locked --bin ferry
# The binary cargo just built, wherever CARGO_TARGET_DIR puts it (an explicit --ferry still wins).
export FERRY_BENCH_BIN="${CARGO_TARGET_DIR:-target}/release/ferry"
exec python3 scripts/bench_e2e.py "$@"
