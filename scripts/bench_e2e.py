#!/usr/bin/env python3
"""End-to-end benchmark: Ferry against Redis' own replication and SCAN+MIGRATE, in the same run.

Absolute times on a shared machine mean little, so every contender runs against the same source
dataset, in alternating order, several times, and we report medians and ratios.

Snapshot scenario (per run, each into a fresh empty target):
  ferry      `ferry migrate --mode snapshot --verify none --no-backup` (a replica link + RESTORE)
  disk       native `REPLICAOF` with a disk-based transfer (source repl-diskless-sync no)
  diskless   native `REPLICAOF`, diskless sync and `repl-diskless-load on-empty-db` on the replica
  migrate    SCAN + `MIGRATE COPY REPLACE KEYS` in batches of 1000 (the classic tool approach)

Live scenario (alternating runs too): redis-benchmark writes to the source while a native replica,
or a Ferry live migration driven through the HTTP API, follows it. When the load ends, a marker key
is written to the source; the time from the start of the load until the marker is readable on the
follower gives the rate the follower applied the writes at (the load's own rate if it kept up).
The lag is sampled from the source's view of its replicas (their ~1 s REPLCONF ACKs; Ferry ACKs its
applied offset the same way).

Targets (issue 9) are checked at the end: ferry/disk <= 1.0, ferry/diskless <= 1.3,
ferry/migrate <= 0.4 (2.5x faster), peak RSS <= 64 MiB, live rate >= 0.8x native.

With --tls (issue 14) the snapshot runs over TLS instead: the source and every target serve TLS
(a private CA made here with the `openssl` CLI), and the contenders are
  ferry-tls  `ferry migrate` from rediss:// to rediss:// (replication link and writer both TLS)
  ferry      the same over plain TCP, to the same servers' plain ports (the cost of TLS)
  disk-tls   native disk-based REPLICAOF with `tls-replication yes`
Targets: ferry-tls / disk-tls <= 1.0 and ferry-tls / ferry <= 1.15.

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
import urllib.error
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


TLS = {}  # with --tls: the certificate files (see make_certs)


def make_certs(directory):
    """A private CA and a server certificate for 127.0.0.1, with the openssl CLI."""
    def run(*cmd):
        subprocess.run(["openssl", *cmd], cwd=directory, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=ferry-bench-ca")
    run("req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    with open(os.path.join(directory, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    TLS.update(ca=os.path.join(directory, "ca.pem"), cert=os.path.join(directory, "server.pem"),
               key=os.path.join(directory, "server.key"))


def tls_args(port):
    """A TLS port beside the plain one (kept for this script's own calls), TLS replication."""
    return ["--tls-port", str(port), "--tls-cert-file", TLS["cert"], "--tls-key-file", TLS["key"],
            "--tls-ca-cert-file", TLS["ca"], "--tls-auth-clients", "no", "--tls-replication", "yes"]


class Server:
    def __init__(self, binary, *args, tls=False):
        self.dir = tempfile.mkdtemp(prefix="ferry-bench-redis-")
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        extra = tls_args(self.tls_port) if tls else []
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--logfile", os.path.join(self.dir, "log"),
             "--repl-diskless-sync-delay", "0", *extra, *args],
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

    def tls_url(self):
        return "rediss://127.0.0.1:%d" % self.tls_port

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


def run_native(source, args, diskless, tls=False):
    source.conn.call("CONFIG", "SET", "repl-diskless-sync", "yes" if diskless else "no")
    extra = ["--repl-diskless-load", "on-empty-db"] if diskless else []
    replica = Server(args.redis_server, *extra, tls=tls)
    try:
        t = time.time()
        replica.conn.call("REPLICAOF", "127.0.0.1", str(source.tls_port if tls else source.port))
        wait_synced(replica)
        elapsed = time.time() - t
        replica.conn.call("REPLICAOF", "NO", "ONE")
        return elapsed, None
    finally:
        replica.stop()


def run_ferry(source, args, tls=False):
    source.conn.call("CONFIG", "SET", "repl-diskless-sync", "yes")
    # The same kind of target either way (a TLS port beside the plain one), so that only the
    # links differ between `ferry` and `ferry-tls` in a --tls run.
    target = Server(args.redis_server, tls=args.tls)
    data = tempfile.mkdtemp(prefix="ferry-bench-data-")
    try:
        out_path, err_path = os.path.join(data, "stdout"), os.path.join(data, "stderr")
        if tls:
            links = ["--source", source.tls_url(), "--target", target.tls_url(),
                     "--source-ca-file", TLS["ca"], "--target-ca-file", TLS["ca"]]
        else:
            links = ["--source", source.url(), "--target", target.url()]
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t = time.time()
            proc = subprocess.Popen(
                [args.ferry, "migrate", *links,
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

LIVE_TESTS = ["set", "incr", "lpush", "hset"]


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise RuntimeError("%s %s: HTTP %d: %s" % (method, url, e.code, e.read()[:2000])) from None


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
    shows a marker written to the source after the load ended. Marker visibility is the same
    for a native replica and for Ferry, and exact, unlike the 1-second ACKs. Returns
    (seconds from load start to marker, total ops, max lag in bytes sampled from the ACKs)."""
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


def wait_replicas(source, count, timeout=60):
    deadline = time.time() + timeout
    while int(source.conn.info("replication").get("connected_slaves", "0")) != count:
        if time.time() > deadline:
            raise RuntimeError("the source still lists replicas that were stopped")
        time.sleep(0.05)


def wait_view(base, mid, done, what, timeout=1800):
    """Polls the migration until `done(view)`; fails fast on a final state."""
    deadline = time.time() + timeout
    while True:
        view = http("GET", "%s/v1/migrations/%s" % (base, mid))
        if done(view):
            return view
        if view.get("state") in ("failed", "cancelled", "completed", "validation_failed"):
            raise RuntimeError("ferry migration ended (%s) while waiting for %s: %s"
                               % (view.get("state"), what, json.dumps(view.get("error"))))
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


def live_ferry(source, args):
    source.conn.call("CONFIG", "SET", "repl-diskless-sync", "yes")
    target = Server(args.redis_server)
    data = tempfile.mkdtemp(prefix="ferry-bench-data-")
    port = free_port()
    env = dict(os.environ, FERRY_LISTEN="127.0.0.1:%d" % port, FERRY_DATA_DIR=data)
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
            "options": {"verify": "none", "backup": False, "on_conflict": "replace"}})
        mid = created["id"]
        http("POST", "%s/v1/migrations/%s/validate" % (base, mid))
        wait_view(base, mid, lambda v: v.get("state") == "validated", "validation", timeout=120)
        http("POST", "%s/v1/migrations/%s/start" % (base, mid))
        wait_view(base, mid, lambda v: v.get("phase") == "streaming", "streaming phase")
        result = follow(source, target.conn, args)
        http("POST", "%s/v1/migrations/%s/cancel" % (base, mid))
        return result
    finally:
        ferry.kill()
        ferry.wait()
        log.close()
        target.stop()
        shutil.rmtree(data, ignore_errors=True)
        wait_replicas(source, 0)


def run_live(source, args):
    """Alternating runs, like the snapshot: {follower: [(seconds, ops, max lag)]}."""
    results = {"native": [], "ferry": []}
    for run in range(args.live_runs):
        order = ["native", "ferry"] if run % 2 == 0 else ["ferry", "native"]
        for name in order:
            r = live_native(source, args) if name == "native" else live_ferry(source, args)
            results[name].append(r)
            print("live run %d %-6s %6.2fs  %8.0f ops/s  max lag %d B"
                  % (run + 1, name, r[0], r[1] / r[0], r[2]), flush=True)
    return results


def run_tls(source, args, only):
    """The --tls scenario: alternating runs of ferry-tls, ferry (plain) and disk-tls."""
    contenders = [c for c in ["ferry-tls", "ferry", "disk-tls"] if c in only]
    times = {c: [] for c in contenders}
    rss = []
    for run in range(args.runs):
        order = contenders if run % 2 == 0 else list(reversed(contenders))
        for c in order:
            if c == "disk-tls":
                t, _ = run_native(source, args, diskless=False, tls=True)
            else:
                t, peak = run_ferry(source, args, tls=(c == "ferry-tls"))
                rss.append(peak)
            times[c].append(t)
            print("run %d %-9s %7.2fs" % (run + 1, c, t), flush=True)
    med = {c: statistics.median(v) for c, v in times.items()}
    per_run = lambda a, b: statistics.median(x / y for x, y in zip(times[a], times[b]))
    print("\nsnapshot over TLS, median of %d runs" % args.runs)
    print("| contender | median s | ferry-tls / contender (medians) | median of per-run ratios |")
    print("|---|---|---|---|")
    for c, m in med.items():
        print("| %s | %.2f | %.2f | %.2f |" % (c, m, med["ferry-tls"] / m, per_run("ferry-tls", c)))
    print("ferry peak RSS: %.1f MiB (max of runs)" % max(rss))
    checks = []
    if "disk-tls" in med:
        checks.append(("ferry-tls / disk-tls <= 1.0 (median of per-run ratios)",
                       per_run("ferry-tls", "disk-tls"), 1.0))
    if "ferry" in med:
        checks.append(("ferry-tls / ferry <= 1.15 (TLS costs Ferry <= 15%)",
                       per_run("ferry-tls", "ferry"), 1.15))
    print("\ntargets")
    for name, value, limit in checks:
        print("  %-58s %7.2f  %s" % (name, value, "met" if value <= limit else "MISSED"))


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
    p.add_argument("--live-ops", type=int, default=2_000_000,
                   help="total redis-benchmark requests per live run, split over its tests")
    p.add_argument("--live-runs", type=int, default=None, help="live runs (default: --runs)")
    p.add_argument("--ferry", default=os.environ.get("FERRY_BENCH_BIN",
                                                     os.path.join(ROOT, "target/release/ferry")))
    p.add_argument("--redis-dir", default=os.environ.get("FERRY_REDIS_DIR", os.path.join(ROOT, "target/redis")))
    p.add_argument("--version", default="7.0", help="Redis version for source and targets")
    p.add_argument("--tls", action="store_true",
                   help="the TLS scenario: ferry-tls vs ferry (plain) vs native disk-tls")
    args = p.parse_args()
    if args.tls and args.only == p.get_default("only"):
        args.only = "ferry,ferry-tls,disk-tls"
    args.redis_server = os.path.join(args.redis_dir, args.version, "redis-server")
    args.redis_cli = os.path.join(args.redis_dir, args.version, "redis-cli")
    args.redis_benchmark = shutil.which("redis-benchmark") or "redis-benchmark"
    only = set(args.only.split(","))
    if args.live_runs is None:
        args.live_runs = args.runs
    for path in (args.ferry, args.redis_server, args.redis_cli):
        if not os.access(path, os.X_OK):
            sys.exit("missing %s: build it (cargo build --release --bin ferry) or install Redis "
                     "(scripts/install-redis.sh), or pass its path" % path)
    if "live" in only and not os.access(args.redis_benchmark, os.X_OK):
        sys.exit("the live scenario needs redis-benchmark (apt-get install redis-tools)")

    print("machine: %d cores, %s; redis %s; %d keys%s" % (
        os.cpu_count(), time.strftime("%Y-%m-%d"), args.version, args.keys,
        "; TLS" if args.tls else ""), flush=True)
    if args.tls:
        if not shutil.which("openssl"):
            sys.exit("--tls makes its certificates with the openssl CLI (apt-get install openssl)")
        make_certs(tempfile.mkdtemp(prefix="ferry-bench-tls-"))
    source = Server(args.redis_server, tls=args.tls)
    try:
        load(source, args)
        if args.tls:
            return run_tls(source, args, only)
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
        # The ratio within each run pairs contenders measured minutes apart at most, so it holds
        # up better than the ratio of medians when the machine's load drifts between runs.
        paired = {c: statistics.median(f / x for f, x in zip(times["ferry"], v))
                  for c, v in times.items() if "ferry" in times}
        print("\nsnapshot, median of %d runs" % args.runs)
        print("| contender | median s | ferry / contender (medians) | median of per-run ratios |")
        print("|---|---|---|---|")
        for c, m in med.items():
            ratio = med["ferry"] / m if "ferry" in med else float("nan")
            print("| %s | %.2f | %.2f | %.2f |" % (c, m, ratio, paired.get(c, float("nan"))))
        if FERRY_PHASE:
            print("ferry snapshot phase alone (no start-up, validation or verification): median %.2fs"
                  % statistics.median(FERRY_PHASE))
        if rss:
            print("ferry peak RSS: %.1f MiB (max of runs)" % max(rss))
        checks = []
        if "ferry" in med:
            for c, limit in (("disk", 1.0), ("diskless", 1.3), ("migrate", 0.4)):
                if c in med:
                    checks.append(("ferry / %s <= %.1f (median of per-run ratios)" % (c, limit),
                                   paired[c], limit))
        if rss:
            checks.append(("ferry peak RSS MiB <= 64", max(rss), 64.0))

        if "live" in only:
            live = run_live(source, args)
            print("\nlive apply under redis-benchmark (%s, %d ops, -c 20 -P 16), median of %d runs"
                  % (",".join(LIVE_TESTS), live["native"][0][1], args.live_runs))
            print("| follower | s from load start to caught up | ops/s applied | max lag bytes (1 s ACKs) |")
            print("|---|---|---|---|")
            rate = {}
            for name, rs in live.items():
                secs = statistics.median(r[0] for r in rs)
                rate[name] = statistics.median(r[1] / r[0] for r in rs)
                print("| %s | %.2f | %.0f | %d |" % (name, secs, rate[name], max(r[2] for r in rs)))
            # Each run pairs a native and a Ferry follower measured back to back.
            paired = statistics.median(n[0] / f[0] for n, f in zip(live["native"], live["ferry"]))
            print("ferry rate / native rate: %.2f (medians), %.2f (median of per-run ratios)"
                  % (rate["ferry"] / rate["native"], paired))
            checks.append(("live: native rate / ferry rate <= 1.25 (ferry >= 0.8x)",
                           1.0 / paired, 1.25))
        if checks:
            print("\ntargets")
            for name, value, limit in checks:
                print("  %-58s %7.2f  %s" % (name, value, "met" if value <= limit else "MISSED"))
    finally:
        source.stop()


if __name__ == "__main__":
    sys.exit(main())
