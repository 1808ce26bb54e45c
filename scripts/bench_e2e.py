#!/usr/bin/env python3
"""End-to-end benchmark: Ferry against Redis' own replication and SCAN+MIGRATE, in the same run.

Absolute times on a shared machine mean little, so every contender runs against the same source
dataset, in alternating order, several times, and we report medians and ratios.

Snapshot scenario (per run, each into a fresh empty target):
  ferry      `ferry migrate --mode snapshot --verify none --no-backup` (a replica link + RESTORE)
  disk       native `REPLICAOF` with a disk-based transfer (source repl-diskless-sync no)
  diskless   native `REPLICAOF`, diskless sync and `repl-diskless-load on-empty-db` on the replica
  migrate    SCAN + `MIGRATE COPY REPLACE KEYS` in batches of 1000 (the classic tool approach)

Live scenario: redis-benchmark writes to the source while a Ferry live migration (through the HTTP
API) and a native replica each follow it; we report how fast each applies the writes and the lag.

Only the standard library is used, so the script runs wherever the test suite does.
"""

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

FERRY_PHASE = []  # seconds of the snapshot phase itself, from ferry's own report
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --- a tiny RESP client (enough for INFO, CONFIG, SCAN, MIGRATE) ---------------------------------

class Redis:
    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=600)
        self.buf = b""

    def call(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))
        return self._read()

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _read(self):
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest.decode()
        if t == b"-":
            raise RuntimeError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise RuntimeError("unexpected reply %r" % line)

    def info(self, section):
        text = self.call("INFO", section).decode()
        return dict(l.split(":", 1) for l in text.splitlines() if ":" in l)


# --- servers -------------------------------------------------------------------------------------

def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, binary, *args):
        self.dir = tempfile.mkdtemp(prefix="ferry-bench-redis-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--logfile", os.path.join(self.dir, "log"),
             "--repl-diskless-sync-delay", "0", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while True:
            try:
                self.conn = Redis(self.port)
                self.conn.call("PING")
                return
            except (OSError, RuntimeError):
                if time.time() > deadline:
                    raise RuntimeError("redis did not start on %d" % self.port)
                time.sleep(0.05)

    def url(self):
        return "redis://127.0.0.1:%d" % self.port

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


# --- dataset -------------------------------------------------------------------------------------

MIX = [  # (share, kind)
    (0.60, "string"), (0.12, "hash"), (0.10, "list"), (0.06, "set"), (0.06, "zset"),
    (0.02, "stream"), (0.04, "bigstring"),
]


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


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


def load(server, args):
    t = time.time()
    cli = subprocess.Popen([args.redis_cli, "-p", str(server.port), "--pipe"],
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    batch = []
    for cmd in generate(args.keys, args.value_size, args.big_size, args.ttl_share):
        batch.append(cmd)
        if len(batch) >= 10000:
            cli.stdin.write(b"".join(batch))
            batch = []
    cli.stdin.write(b"".join(batch))
    cli.stdin.close()
    cli.wait()
    info = server.conn.info("memory")
    print("loaded %d keys in %.1fs (used_memory %s)" % (
        server.conn.call("DBSIZE"), time.time() - t, info.get("used_memory_human")), flush=True)


# --- contenders ----------------------------------------------------------------------------------

def wait_synced(replica, timeout=1800):
    deadline = time.time() + timeout
    while time.time() < deadline:
        info = replica.conn.info("replication")
        if info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == "0":
            return
        time.sleep(0.02)
    raise RuntimeError("replica did not finish its sync")


def run_native(source, args, diskless):
    source.conn.call("CONFIG", "SET", "repl-diskless-sync", "yes" if diskless else "no")
    extra = ["--repl-diskless-load", "on-empty-db"] if diskless else []
    replica = Server(args.redis_server, *extra)
    try:
        t = time.time()
        replica.conn.call("REPLICAOF", "127.0.0.1", str(source.port))
        wait_synced(replica)
        elapsed = time.time() - t
        replica.conn.call("REPLICAOF", "NO", "ONE")
        return elapsed, None
    finally:
        replica.stop()


def run_ferry(source, args):
    source.conn.call("CONFIG", "SET", "repl-diskless-sync", "yes")
    target = Server(args.redis_server)
    data = tempfile.mkdtemp(prefix="ferry-bench-data-")
    try:
        out_path, err_path = os.path.join(data, "stdout"), os.path.join(data, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t = time.time()
            proc = subprocess.Popen(
                [args.ferry, "migrate", "--source", source.url(), "--target", target.url(),
                 "--mode", "snapshot", "--verify", "none", "--no-backup",
                 "--data-dir", os.path.join(data, "store")],
                stdout=out, stderr=err)
            # wait4 gives this child's own peak RSS, not that of the redis servers we also started
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.time() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        report = open(out_path, errors="replace").read()
        if proc.returncode != 0:
            raise RuntimeError("ferry migrate failed: " + open(err_path, errors="replace").read()[-2000:]
                               + report[-2000:])
        m = re.search(r"snapshot completed: .* in (\d+) ms", report)
        FERRY_PHASE.append(int(m.group(1)) / 1000.0 if m else float("nan"))
        want, got = source.conn.call("DBSIZE"), target.conn.call("DBSIZE")
        if want != got:
            raise RuntimeError("ferry copied %d of %d keys" % (got, want))
        return elapsed, usage.ru_maxrss / 1024.0  # KiB -> MiB
    finally:
        target.stop()
        shutil.rmtree(data, ignore_errors=True)


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
        elapsed = time.time() - t
        return elapsed, None
    finally:
        target.stop()


# --- live scenario -------------------------------------------------------------------------------

def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read() or b"null")


def live_load(source, args):
    return subprocess.Popen(
        [args.redis_benchmark, "-p", str(source.port), "-t", "set,incr,lpush,hset",
         "-n", str(args.live_ops), "-r", "100000", "-c", "20", "-P", "16", "-q"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def follow(source, offset_of, load):
    """Runs until the load ends and the follower has caught up; returns (seconds, max lag)."""
    t = time.time()
    max_lag = 0
    while True:
        src = int(source.conn.info("replication")["master_repl_offset"])
        applied = offset_of()
        if applied is not None:
            max_lag = max(max_lag, src - applied)
        if load.poll() is not None and applied is not None and applied >= src:
            return time.time() - t, max_lag
        if time.time() - t > 1800:
            raise RuntimeError("follower never caught up")
        time.sleep(0.05)


def run_live(source, args):
    results = {}
    # native replica
    replica = Server(args.redis_server)
    try:
        replica.conn.call("REPLICAOF", "127.0.0.1", str(source.port))
        wait_synced(replica)
        load = live_load(source, args)
        results["native"] = follow(
            source, lambda: int(replica.conn.info("replication")["slave_repl_offset"]), load)
    finally:
        replica.stop()
    # ferry, through its HTTP API
    target = Server(args.redis_server)
    data = tempfile.mkdtemp(prefix="ferry-bench-data-")
    port = free_port()
    env = dict(os.environ, FERRY_LISTEN="127.0.0.1:%d" % port, FERRY_DATA_DIR=data)
    ferry = subprocess.Popen([args.ferry, "serve"], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = "http://127.0.0.1:%d" % port
    try:
        deadline = time.time() + 30
        while True:
            try:
                http("GET", base + "/healthz")
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
        created = http("POST", base + "/v1/migrations", {
            "source": {"url": source.url()}, "target": {"url": target.url()}, "mode": "live",
            "options": {"verify": "none", "backup": False, "on_conflict": "replace"}})
        mid = created["id"]
        http("POST", "%s/v1/migrations/%s/validate" % (base, mid))
        http("POST", "%s/v1/migrations/%s/start" % (base, mid))
        while http("GET", "%s/v1/migrations/%s" % (base, mid)).get("phase") != "streaming":
            time.sleep(0.1)

        def applied():
            view = http("GET", "%s/v1/migrations/%s" % (base, mid))
            lag = (view.get("progress") or {}).get("lag_bytes")
            if lag is None:
                return None
            src = int(source.conn.info("replication")["master_repl_offset"])
            return src - lag

        load = live_load(source, args)
        results["ferry"] = follow(source, applied, load)
        http("POST", "%s/v1/migrations/%s/cancel" % (base, mid))
    finally:
        ferry.kill()
        ferry.wait()
        target.stop()
        shutil.rmtree(data, ignore_errors=True)
    return results


# --- main ----------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--value-size", type=int, default=64)
    p.add_argument("--big-size", type=int, default=4096)
    p.add_argument("--ttl-share", type=float, default=0.20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--only", default="ferry,disk,diskless,migrate,live",
                   help="comma-separated scenarios to run")
    p.add_argument("--live-ops", type=int, default=2_000_000)
    p.add_argument("--ferry", default=os.path.join(ROOT, "target/release/ferry"))
    p.add_argument("--redis-dir", default=os.environ.get("FERRY_REDIS_DIR", os.path.join(ROOT, "target/redis")))
    p.add_argument("--version", default="7.0", help="Redis version for source and targets")
    args = p.parse_args()
    args.redis_server = os.path.join(args.redis_dir, args.version, "redis-server")
    args.redis_cli = os.path.join(args.redis_dir, args.version, "redis-cli")
    args.redis_benchmark = shutil.which("redis-benchmark") or "redis-benchmark"
    only = set(args.only.split(","))

    print("machine: %d cores, %s; redis %s; %d keys" % (
        os.cpu_count(), time.strftime("%Y-%m-%d"), args.version, args.keys), flush=True)
    source = Server(args.redis_server)
    try:
        load(source, args)
        contenders = [c for c in ["ferry", "disk", "diskless", "migrate"] if c in only]
        times = {c: [] for c in contenders}
        rss = []
        for run in range(args.runs):
            order = contenders if run % 2 == 0 else list(reversed(contenders))
            for c in order:
                if c == "ferry":
                    t, peak = run_ferry(source, args)
                    rss.append(peak)
                elif c == "disk":
                    t, _ = run_native(source, args, diskless=False)
                elif c == "diskless":
                    t, _ = run_native(source, args, diskless=True)
                else:
                    t, _ = run_migrate(source, args)
                times[c].append(t)
                print("run %d %-9s %7.2fs" % (run + 1, c, t), flush=True)

        med = {c: statistics.median(v) for c, v in times.items() if v}
        print("\nsnapshot, median of %d runs" % args.runs)
        print("| contender | median s | ferry / contender |")
        print("|---|---|---|")
        for c, m in med.items():
            ratio = med["ferry"] / m if "ferry" in med else float("nan")
            print("| %s | %.2f | %.2f |" % (c, m, ratio))
        if FERRY_PHASE:
            print("ferry snapshot phase alone (no start-up, validation or verification): median %.2fs"
                  % statistics.median(FERRY_PHASE))
        if rss:
            print("ferry peak RSS: %.1f MiB (max of runs)" % max(rss))

        if "live" in only:
            live = run_live(source, args)
            print("\nlive apply under redis-benchmark (%d ops)" % args.live_ops)
            print("| follower | seconds to catch up | ops/s applied | max lag bytes |")
            print("|---|---|---|---|")
            for name, (secs, lag) in live.items():
                print("| %s | %.2f | %.0f | %d |" % (name, secs, args.live_ops / secs, lag))
            if "native" in live and "ferry" in live:
                print("ferry rate / native rate: %.2f" % (live["native"][0] / live["ferry"][0]))
    finally:
        source.stop()


if __name__ == "__main__":
    sys.exit(main())
