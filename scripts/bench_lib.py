"""Shared pieces of the end-to-end benchmarks (scripts/bench_e2e.py): a tiny RESP client,
redis-server processes, and the contenders (Ferry's two transfers, native replication).

Only the standard library is used, so the scripts run wherever the test suite does.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request


# --- a tiny RESP client (enough for INFO, CONFIG, SCAN, MIGRATE) ---------------------------------

class Redis:
    def __init__(self, port, host="127.0.0.1"):
        self.sock = socket.create_connection((host, port), timeout=3600)
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
        parts, have = [self.buf], len(self.buf)
        while have < n + 2:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed")
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        self.buf = data[n + 2:]
        return data[:n]

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
    """A private CA and a server certificate for 127.0.0.1, made with the openssl CLI."""
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

    def peak_rss_mib(self):
        """The process' own high-water mark (VmHWM), in MiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
        return float("nan")

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def vm_hwm_mib(pid):
    """A process' resident high-water mark (VmHWM), in MiB; None once it has exited."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


class PeakWatch:
    """Samples a child's VmHWM every 20 ms until it exits. (wait4's ru_maxrss would not do: Linux
    carries the high-water mark across exec, so a child forked from this Python process, which
    may hold hundreds of MB of generated data, would report the parent's size.)"""

    def __init__(self, pid):
        self.pid, self.peak, self.done = pid, 0.0, False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.done:
            hwm = vm_hwm_mib(self.pid)
            if hwm is None:
                return
            self.peak = max(self.peak, hwm)
            time.sleep(0.02)

    def stop(self):
        self.done = True
        self.thread.join()
        return self.peak


def resp(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def pipe_in(server, args, commands):
    """Feeds RESP commands to `redis-cli --pipe` in large writes."""
    cli = subprocess.Popen([args.redis_cli, "-p", str(server.port), "--pipe"],
                           stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    batch, size = [], 0
    for cmd in commands:
        batch.append(cmd)
        size += len(cmd)
        if size >= 1 << 20:
            cli.stdin.write(b"".join(batch))
            batch, size = [], 0
    cli.stdin.write(b"".join(batch))
    cli.stdin.close()
    if cli.wait() != 0:
        raise RuntimeError("redis-cli --pipe failed")


def load_note():
    """The machine's load, printed beside every measurement: other work shares these cores."""
    one, five, _ = os.getloadavg()
    return "load %.1f/%.1f" % (one, five)


# --- contenders ----------------------------------------------------------------------------------

def wait_synced(replica, timeout=3600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            info = replica.conn.info("replication")
        except RuntimeError as e:  # -LOADING while a big RDB loads
            if "LOADING" not in str(e):
                raise
            time.sleep(0.05)
            continue
        if info.get("master_link_status") == "up" and info.get("master_sync_in_progress") == "0":
            return
        time.sleep(0.02)
    raise RuntimeError("replica did not finish its sync")


def run_native(source, args, diskless, tls=False):
    """Native REPLICAOF into a fresh server (over TLS with `tls`: `tls-replication yes` on both);
    returns (seconds, None, replica peak RSS MiB)."""
    source.conn.call("CONFIG", "SET", "repl-diskless-sync", "yes" if diskless else "no")
    extra = ["--repl-diskless-load", "on-empty-db"] if diskless else []
    replica = Server(args.redis_server, *args.server_args, *extra, tls=tls)
    try:
        t = time.time()
        replica.conn.call("REPLICAOF", "127.0.0.1", str(source.tls_port if tls else source.port))
        wait_synced(replica)
        elapsed = time.time() - t
        replica.conn.call("REPLICAOF", "NO", "ONE")
        return elapsed, None, replica.peak_rss_mib()
    finally:
        replica.stop()
        wait_replicas(source, 0)


PHASES = {"relay": [], "restore": []}  # the snapshot phase alone, from ferry's own report


def run_ferry(source, args, transfer, check=None, tls=False):
    """`ferry migrate --transfer <transfer>` into a fresh empty target; returns (seconds,
    ferry's peak RSS MiB, target's peak RSS MiB). `check(source, target)` may compare more.
    With `tls` both links are rediss://. In a --tls run every target has a TLS port beside its
    plain one, so that only the links differ between a TLS and a plain Ferry run."""
    source.conn.call("CONFIG", "SET", "repl-diskless-sync", "yes")
    target = Server(args.redis_server, *args.server_args, tls=getattr(args, "tls", False))
    data = tempfile.mkdtemp(prefix="ferry-bench-data-")
    if tls:
        links = ["--source", source.tls_url(), "--target", target.tls_url(),
                 "--source-ca-file", TLS["ca"], "--target-ca-file", TLS["ca"]]
    else:
        links = ["--source", source.url(), "--target", target.url()]
    try:
        out_path, err_path = os.path.join(data, "stdout"), os.path.join(data, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t = time.time()
            proc = subprocess.Popen(
                [args.ferry, "migrate", *links,
                 "--mode", "snapshot", "--verify", "none", "--no-backup",
                 "--transfer", transfer, "--data-dir", os.path.join(data, "store")],
                stdout=out, stderr=err, env=dict(os.environ, FERRY_CONFIG="/dev/null"))
            watch = PeakWatch(proc.pid)
            # The zombie stays readable until it is reaped: take the last sample first.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            elapsed = time.time() - t
            peak = max(watch.stop(), vm_hwm_mib(proc.pid) or 0.0)
            _, status = os.waitpid(proc.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        report = open(out_path, errors="replace").read()
        if code != 0:
            raise RuntimeError("ferry migrate failed: " + open(err_path, errors="replace").read()[-2000:]
                               + report[-2000:])
        if ("transfer %s:" % transfer) not in report:
            raise RuntimeError("ferry did not use the %s transfer:\n%s" % (transfer, report[-2000:]))
        # The CLI's line: "snapshot completed: N keys written, … (63.4 MB in 2.3 s)".
        m = re.search(r"snapshot completed: .* in ([\d.]+) s\)", report)
        PHASES[transfer].append(float(m.group(1)) if m else float("nan"))
        want, got = source.conn.call("DBSIZE"), target.conn.call("DBSIZE")
        if want != got:
            raise RuntimeError("ferry (%s) copied %d of %d keys" % (transfer, got, want))
        if check:
            check(source, target)
        return elapsed, peak, target.peak_rss_mib()
    finally:
        target.stop()
        shutil.rmtree(data, ignore_errors=True)
        wait_replicas(source, 0)


def wait_replicas(source, count, timeout=60):
    deadline = time.time() + timeout
    while int(source.conn.info("replication").get("connected_slaves", "0")) != count:
        if time.time() > deadline:
            raise RuntimeError("the source still lists replicas that were stopped")
        time.sleep(0.05)


def http(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        raise RuntimeError("%s %s: HTTP %d: %s" % (method, url, e.code, e.read()[:2000])) from None
