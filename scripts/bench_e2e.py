#!/usr/bin/env python3
"""End-to-end benchmark: Ferry's two transfers against Redis' own replication and SCAN+MIGRATE,
in the same run.

Absolute times on a shared machine mean little, so every contender runs against the same source
dataset, in alternating order, several times, and we report medians and ratios (each ratio pairs
contenders measured back to back). The machine's load average is printed beside every run.

Snapshot scenario (per run, each into a fresh empty target):
  relay      `ferry migrate --transfer relay`: the target replicates through Ferry
  restore    `ferry migrate --transfer restore`: a replica link + RESTORE per key
  disk       native `REPLICAOF` with a disk-based transfer (source repl-diskless-sync no)
  diskless   native `REPLICAOF`, diskless sync and `repl-diskless-load on-empty-db` on the replica
  migrate    SCAN + `MIGRATE COPY REPLACE KEYS` in batches of 1000 (the classic tool approach)
(both Ferry runs: `--mode snapshot --verify none --no-backup`)

Live scenario (alternating runs too): redis-benchmark writes to the source while a native replica,
or a Ferry live migration (relay or restore) driven through the HTTP API, follows it. When the load
ends, a marker key is written to the source; the time from the start of the load until the marker
is readable on the follower gives the rate the follower applied the writes at.

--big-keys: a 300 MB string (random bytes: LZF cannot shrink it), a 2M-element list and a 1M-field
hash; relay, restore and native diskless; Ferry's peak RSS must stay under 96 MiB.
--scale: 1M, 3M and 10M keys of the mixed dataset, one server pair at a time; time, time per key
and peak RSS (Ferry's and the target's) for relay, restore and native diskless, and a projection
to 100M keys. See scripts/bench_big.py.

Targets (issue 18) are checked at the end: relay/diskless <= 1.1, restore/disk <= 1.0,
restore/diskless <= 1.3, restore/migrate <= 0.4, peak RSS <= 64 MiB, live relay >= 0.95x
native, live restore >= 0.9x native.

--tls (issue 14): the snapshot over TLS instead. The source and every target serve TLS beside their
plain port (a private CA made with `openssl` per run):
  ferry-tls  `ferry migrate --transfer restore` from rediss:// to rediss:// (both links TLS)
  ferry      the same over the same servers' plain ports (the cost of TLS to Ferry)
  disk-tls   native disk-based REPLICAOF with `tls-replication yes`
(the relay transfer serves its target plain TCP, so a TLS copy is always the restore path).
Targets: ferry-tls / disk-tls <= 1.0 and ferry-tls / ferry <= 1.15.

--cluster (issue 16): 3-shard cluster -> 3-shard cluster against each shard's native replication,
in the same run; see scripts/bench_cluster.py. Target: ferry <= 1.2x the slowest native shard.

Only the standard library is used, so the script runs wherever the test suite does.
"""

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from bench_lib import (PHASES, Redis, Server, free_port, http, load_note, make_certs, pipe_in,
                       resp, run_ferry, run_native, wait_replicas, wait_synced)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- dataset -------------------------------------------------------------------------------------

MIX = [  # (share, kind)
    (0.60, "string"), (0.12, "hash"), (0.10, "list"), (0.06, "set"), (0.06, "zset"),
    (0.02, "stream"), (0.04, "bigstring"),
]


def generate(keys, value_size, big_size, ttl_share, seed=7):
    """Yields RESP commands building the mixed dataset the issues describe."""
    rnd = random.Random(seed)
    val = b"v" * value_size
    big = b"B" * big_size
    bounds, acc = [], 0.0
    for share, kind in MIX:
        acc += share
        bounds.append((acc, kind))
    for i in range(keys):
        x = rnd.random()
        kind = next(k for b, k in bounds if x <= b) if x <= acc else "string"
        key = b"%s:%d" % (kind.encode(), i)
        if kind == "string":
            yield resp(b"SET", key, val)
        elif kind == "bigstring":
            yield resp(b"SET", key, big)
        elif kind == "hash":
            args = [b"HSET", key]
            for f in range(10):
                args += [b"f%d" % f, val[:16]]
            yield resp(*args)
        elif kind == "list":
            yield resp(b"RPUSH", key, *[b"item-%d" % j for j in range(10)])
        elif kind == "set":
            yield resp(b"SADD", key, *[b"member-%d" % j for j in range(10)])
        elif kind == "zset":
            args = [b"ZADD", key]
            for j in range(10):
                args += [repr(rnd.random() * 1000).encode(), b"m%d" % j]
            yield resp(*args)
        elif kind == "stream":
            for j in range(5):
                yield resp(b"XADD", key, b"*", b"field", b"value-%d" % j)
        if rnd.random() < ttl_share:
            yield resp(b"EXPIRE", key, b"36000")


def load(server, args, keys=None):
    t = time.time()
    pipe_in(server, args, generate(keys or args.keys, args.value_size, args.big_size, args.ttl_share))
    info = server.conn.info("memory")
    print("loaded %d keys in %.1fs (used_memory %s)" % (
        server.conn.call("DBSIZE"), time.time() - t, info.get("used_memory_human")), flush=True)


def run_migrate(source, args):
    target = Server(args.redis_server)
    try:
        scan = Redis(source.port)
        mig = Redis(source.port)
        t = time.time()
        cursor = b"0"
        while True:
            cursor, keys = scan.call("SCAN", cursor, "COUNT", "1000")
            if keys:
                mig.call("MIGRATE", "127.0.0.1", str(target.port), "", "0", "60000",
                         "COPY", "REPLACE", "KEYS", *keys)
            if cursor == b"0":
                break
        return time.time() - t, None, None
    finally:
        target.stop()


def run_contender(source, args, name):
    if name in ("relay", "restore"):
        return run_ferry(source, args, name)
    if name == "disk":
        return run_native(source, args, diskless=False)
    if name == "diskless":
        return run_native(source, args, diskless=True)
    return run_migrate(source, args)


# --- live scenario -------------------------------------------------------------------------------

LIVE_TESTS = ["set", "incr", "lpush", "hset"]


def live_load(source, args):
    """redis-benchmark on the source; `-n` is per test, so the total is split over the tests."""
    per_test = max(1, args.live_ops // len(LIVE_TESTS))
    return subprocess.Popen(
        [args.redis_benchmark, "-p", str(source.port), "-t", ",".join(LIVE_TESTS),
         "-n", str(per_test), "-r", "100000", "-c", "20", "-P", "16", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), per_test * len(LIVE_TESTS)


def replica_offsets(source):
    """{port: acked offset} of the source's online replicas (from their REPLCONF ACKs, ~1/s)."""
    out = {}
    for k, v in source.conn.info("replication").items():
        if re.fullmatch(r"slave\d+", k):
            f = dict(kv.split("=", 1) for kv in v.split(","))
            if f.get("state") == "online":
                out[int(f["port"])] = int(f["offset"])
    return out


def follow(source, follower, args, port=None, timeout=1800):
    """Starts the load, then waits until `follower` (a connection to the replica or the target)
    shows a marker written to the source after the load ended. Returns (seconds from load start
    to marker, total ops, max lag in bytes sampled from the ACKs)."""
    token = "%d-%f" % (os.getpid(), time.time())
    load, ops = live_load(source, args)
    t = time.time()
    max_lag = 0
    while load.poll() is None:
        src = int(source.conn.info("replication")["master_repl_offset"])
        acks = replica_offsets(source)
        acked = acks.get(port) if port is not None else (max(acks.values()) if acks else None)
        if acked is not None:
            max_lag = max(max_lag, src - acked)
        if time.time() - t > timeout:
            load.kill()
            raise RuntimeError("redis-benchmark did not finish within %ds" % timeout)
        time.sleep(0.1)
    if load.returncode != 0:
        raise RuntimeError("redis-benchmark failed (exit %d)" % load.returncode)
    source.conn.call("SET", "ferry-bench:live-marker", token)
    while True:
        got = follower.call("GET", "ferry-bench:live-marker")
        if got is not None and got.decode() == token:
            return time.time() - t, ops, max_lag
        if time.time() - t > timeout:
            raise RuntimeError("the follower never caught up with the source")
        time.sleep(0.01)


def wait_view(base, mid, done, what, timeout=1800):
    """Polls the migration until `done(view)`; fails fast on a final state."""
    deadline = time.time() + timeout
    while True:
        view = http("GET", "%s/v1/migrations/%s" % (base, mid))
        if done(view):
            return view
        if view.get("state") in ("failed", "cancelled", "completed", "validation_failed"):
            raise RuntimeError("ferry migration ended (%s) while waiting for %s: %s"
                               % (view.get("state"), what, view.get("error")))
        if time.time() > deadline:
            raise RuntimeError("ferry migration: no %s after %ds" % (what, timeout))
        time.sleep(0.1)


def live_native(source, args):
    replica = Server(args.redis_server)
    try:
        replica.conn.call("REPLICAOF", "127.0.0.1", str(source.port))
        wait_synced(replica)
        return follow(source, replica.conn, args, port=replica.port)
    finally:
        replica.stop()
        wait_replicas(source, 0)


def live_ferry(source, args, transfer):
    source.conn.call("CONFIG", "SET", "repl-diskless-sync", "yes")
    target = Server(args.redis_server)
    data = tempfile.mkdtemp(prefix="ferry-bench-data-")
    port = free_port()
    env = dict(os.environ, FERRY_LISTEN="127.0.0.1:%d" % port, FERRY_DATA_DIR=data,
               FERRY_CONFIG="/dev/null")
    log = open(os.path.join(data, "ferry.log"), "wb")
    ferry = subprocess.Popen([args.ferry, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = "http://127.0.0.1:%d" % port
    try:
        deadline = time.time() + 30
        while True:
            try:
                http("GET", base + "/healthz")
                break
            except (OSError, RuntimeError):
                if ferry.poll() is not None or time.time() > deadline:
                    raise RuntimeError("ferry serve did not come up: "
                                       + open(os.path.join(data, "ferry.log"), errors="replace").read()[-2000:])
                time.sleep(0.1)
        created = http("POST", base + "/v1/migrations", {
            "source": {"url": source.url()}, "target": {"url": target.url()}, "mode": "live",
            "options": {"verify": "none", "backup": False,
                        "on_conflict": "flush" if transfer == "relay" else "replace",
                        "transfer": transfer}})
        mid = created["id"]
        http("POST", "%s/v1/migrations/%s/validate" % (base, mid))
        wait_view(base, mid, lambda v: v.get("state") == "validated", "validation", timeout=120)
        http("POST", "%s/v1/migrations/%s/start" % (base, mid))
        view = wait_view(base, mid, lambda v: v.get("phase") == "streaming", "streaming phase")
        if (view.get("transfer") or {}).get("transfer") != transfer:
            raise RuntimeError("ferry used %s, not %s" % (view.get("transfer"), transfer))
        result = follow(source, target.conn, args)
        http("POST", "%s/v1/migrations/%s/cancel" % (base, mid))
        wait_view(base, mid, lambda v: v.get("state") == "cancelled", "cancel", timeout=60)
        return result
    finally:
        ferry.kill()
        ferry.wait()
        log.close()
        target.stop()
        shutil.rmtree(data, ignore_errors=True)
        wait_replicas(source, 0)


def run_live(source, args, followers):
    """Alternating runs: {follower: [(seconds, ops, max lag)]}."""
    results = {f: [] for f in followers}
    for run in range(args.live_runs):
        order = followers if run % 2 == 0 else list(reversed(followers))
        for name in order:
            r = live_native(source, args) if name == "native" else live_ferry(source, args, name)
            results[name].append(r)
            print("live run %d %-7s %6.2fs  %8.0f ops/s  max lag %d B  (%s)"
                  % (run + 1, name, r[0], r[1] / r[0], r[2], load_note()), flush=True)
    return results


# --- the default scenario ------------------------------------------------------------------------

def snapshot_scenario(source, args, only):
    contenders = [c for c in ["relay", "restore", "disk", "diskless", "migrate"] if c in only]
    times = {c: [] for c in contenders}
    rss = {"relay": [], "restore": []}
    for run in range(args.runs):
        order = contenders if run % 2 == 0 else list(reversed(contenders))
        for c in order:
            t, peak, _ = run_contender(source, args, c)
            if peak is not None:
                rss[c].append(peak)
            times[c].append(t)
            extra = "  peak RSS %.1f MiB" % peak if peak is not None else ""
            print("run %d %-9s %7.2fs%s  (%s)" % (run + 1, c, t, extra, load_note()), flush=True)

    med = {c: statistics.median(v) for c, v in times.items() if v}

    def paired(a, b):
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    print("\nsnapshot, %d keys, median of %d runs" % (args.keys, args.runs))
    print("| contender | median s |")
    print("|---|---|")
    for c, m in med.items():
        print("| %s | %.2f |" % (c, m))
    for t, phases in PHASES.items():
        if phases:
            print("ferry %s: snapshot phase alone (no start-up or validation): median %.2fs"
                  % (t, statistics.median(phases)))
    for t, peaks in rss.items():
        if peaks:
            print("ferry %s peak RSS: %.1f MiB (max of runs)" % (t, max(peaks)))
    checks = []
    for a, b, limit in (("relay", "diskless", 1.1), ("restore", "disk", 1.0),
                        ("restore", "diskless", 1.3), ("restore", "migrate", 0.4)):
        if a in med and b in med:
            checks.append(("%s / %s <= %.1f (median of per-run ratios)" % (a, b, limit),
                           paired(a, b), limit))
    for t, peaks in rss.items():
        if peaks:
            checks.append(("%s peak RSS MiB <= 64" % t, max(peaks), 64.0))
    return checks


def tls_scenario(source, args, only):
    """Alternating runs of ferry-tls, ferry (plain) and disk-tls, each into a fresh target."""
    contenders = [c for c in ["ferry-tls", "ferry", "disk-tls"] if c in only]
    times = {c: [] for c in contenders}
    rss = []
    for run in range(args.runs):
        order = contenders if run % 2 == 0 else list(reversed(contenders))
        for c in order:
            if c == "disk-tls":
                t, _, _ = run_native(source, args, diskless=False, tls=True)
            else:
                t, peak, _ = run_ferry(source, args, "restore", tls=(c == "ferry-tls"))
                rss.append(peak)
            times[c].append(t)
            print("run %d %-9s %7.2fs  (%s)" % (run + 1, c, t, load_note()), flush=True)
    med = {c: statistics.median(v) for c, v in times.items() if v}

    def paired(a, b):
        return statistics.median(x / y for x, y in zip(times[a], times[b]))

    print("\nsnapshot over TLS, %d keys, median of %d runs" % (args.keys, args.runs))
    print("| contender | median s | ferry-tls / contender (median of per-run ratios) |")
    print("|---|---|---|")
    for c, m in med.items():
        ratio = "%.2f" % paired("ferry-tls", c) if "ferry-tls" in med else ""
        print("| %s | %.2f | %s |" % (c, m, ratio))
    checks = []
    if rss:
        print("ferry peak RSS: %.1f MiB (max of runs)" % max(rss))
    if "ferry-tls" in med and "disk-tls" in med:
        checks.append(("ferry-tls / disk-tls <= 1.0 (median of per-run ratios)",
                       paired("ferry-tls", "disk-tls"), 1.0))
    if "ferry-tls" in med and "ferry" in med:
        checks.append(("ferry-tls / ferry <= 1.15 (TLS costs Ferry <= 15%)",
                       paired("ferry-tls", "ferry"), 1.15))
    return checks


def live_scenario(source, args, only):
    followers = ["native"] + [f for f in ["relay", "restore"] if "live-" + f in only or "live" in only]
    live = run_live(source, args, followers)
    print("\nlive apply under redis-benchmark (%s, %d ops, -c 20 -P 16), median of %d runs"
          % (",".join(LIVE_TESTS), live["native"][0][1], args.live_runs))
    print("| follower | s from load start to caught up | ops/s applied | max lag bytes (1 s ACKs) |")
    print("|---|---|---|---|")
    for name, rs in live.items():
        secs = statistics.median(r[0] for r in rs)
        rate = statistics.median(r[1] / r[0] for r in rs)
        print("| %s | %.2f | %.0f | %d |" % (name, secs, rate, max(r[2] for r in rs)))
    checks = []
    for name, floor in (("relay", 0.95), ("restore", 0.9)):
        if name in live:
            # Each run pairs a native and a Ferry follower measured back to back.
            ratio = statistics.median(n[0] / f[0] for n, f in zip(live["native"], live[name]))
            print("%s rate / native rate: %.2f (median of per-run ratios)" % (name, ratio))
            checks.append(("live: %s rate / native rate >= %.2f" % (name, floor), ratio, floor, ">="))
    return checks


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--value-size", type=int, default=64)
    p.add_argument("--big-size", type=int, default=4096)
    p.add_argument("--ttl-share", type=float, default=0.20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", default="relay,restore,disk,diskless,migrate,live",
                   help="comma-separated scenarios: relay, restore, disk, diskless, migrate, live "
                        "(or live-relay / live-restore for one Ferry follower)")
    p.add_argument("--live-ops", type=int, default=2_000_000,
                   help="total redis-benchmark requests per live run, split over its tests")
    p.add_argument("--live-runs", type=int, default=None, help="live runs (default: --runs)")
    p.add_argument("--big-keys", action="store_true",
                   help="the big-keys scenario instead (a 300 MB string, a 2M list, a 1M hash)")
    p.add_argument("--scale", default=None, nargs="?", const="1000000,3000000,10000000",
                   help="the scaling curve instead: comma-separated key counts")
    p.add_argument("--tls", action="store_true",
                   help="the TLS scenario instead: ferry-tls vs ferry (plain) vs native disk-tls")
    p.add_argument("--cluster", action="store_true",
                   help="the cluster scenario instead: 3 shards -> 3 shards vs per-shard native "
                        "replication")
    p.add_argument("--ferry", default=os.environ.get("FERRY_BENCH_BIN",
                                                     os.path.join(ROOT, "target/release/ferry")))
    p.add_argument("--redis-dir", default=os.environ.get("FERRY_REDIS_DIR", os.path.join(ROOT, "target/redis")))
    p.add_argument("--version", default="7.0", help="Redis version for source and targets")
    args = p.parse_args()
    args.redis_server = os.path.join(args.redis_dir, args.version, "redis-server")
    args.redis_cli = os.path.join(args.redis_dir, args.version, "redis-cli")
    args.redis_benchmark = shutil.which("redis-benchmark") or "redis-benchmark"
    args.server_args = []
    if args.tls and args.only == p.get_default("only"):
        args.only = "ferry-tls,ferry,disk-tls"
    only = set(args.only.split(","))
    if args.live_runs is None:
        args.live_runs = args.runs
    for path in (args.ferry, args.redis_server, args.redis_cli):
        if not os.access(path, os.X_OK):
            sys.exit("missing %s: build it (cargo build --release --bin ferry) or install Redis "
                     "(scripts/install-redis.sh), or pass its path" % path)
    live = any(o.startswith("live") for o in only)
    if live and not (args.big_keys or args.scale) and not os.access(args.redis_benchmark, os.X_OK):
        sys.exit("the live scenario needs redis-benchmark (apt-get install redis-tools)")

    print("machine: %d cores, %s; redis %s; %s" % (
        os.cpu_count(), time.strftime("%Y-%m-%d %H:%M"), args.version, load_note()), flush=True)
    if args.cluster:
        import bench_cluster
        checks = bench_cluster.cluster_scenario(args, generate)
    elif args.big_keys or args.scale:
        import bench_big
        checks = bench_big.big_keys(args) if args.big_keys else bench_big.scale(args, load)
    elif args.tls:
        if not shutil.which("openssl"):
            sys.exit("--tls makes its certificates with the openssl CLI (apt-get install openssl)")
        make_certs(tempfile.mkdtemp(prefix="ferry-bench-tls-"))
        source = Server(args.redis_server, tls=True)
        try:
            load(source, args)
            checks = tls_scenario(source, args, only)
        finally:
            source.stop()
    else:
        source = Server(args.redis_server)
        try:
            load(source, args)
            checks = snapshot_scenario(source, args, only)
            if live:
                checks += live_scenario(source, args, only)
        finally:
            source.stop()
    if checks:
        print("\ntargets")
        for check in checks:
            name, value, limit = check[:3]
            at_least = len(check) > 3 and check[3] == ">="
            met = value >= limit if at_least else value <= limit
            print("  %-58s %7.2f  %s" % (name, value, "met" if met else "MISSED"))


if __name__ == "__main__":
    sys.exit(main())
