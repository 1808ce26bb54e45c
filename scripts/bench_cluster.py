"""The cluster benchmark (`scripts/bench-e2e.sh --cluster`): a 3-master source cluster copied into
a 3-master target cluster by Ferry, against Redis' own replication of each source shard, in the
same run.

Redis has no native cluster-to-cluster copy; what it does natively is replicate each shard. So the
baseline is one fresh standalone replica per source master, all three syncing at once (diskless,
`repl-diskless-load on-empty-db`, the fastest native transfer), and the time of the slowest shard:
a cluster copied that way is done when its slowest shard is. Ferry runs
`ferry migrate --mode snapshot --verify none --no-backup` from the source cluster's seed URL to the
target cluster's, into a fresh empty target cluster per run, and must copy every key.

Target (issue 16): Ferry <= 1.2x the slowest native shard (median of per-run ratios; runs
alternate which contender goes first).
"""

import os
import shutil
import statistics
import subprocess
import tempfile
import time

from bench_lib import Redis, Server, free_port, load_note, wait_synced

SLOTS = 16384


def crc16(data):
    """CRC-16/XMODEM, the key-slot hash of Redis Cluster."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def key_slot(key):
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1:end]
    return crc16(key) % SLOTS


def command_key(command):
    """The key of one RESP command as the dataset generator writes it (`*N $len NAME $len KEY`)."""
    parts = command.split(b"\r\n", 5)
    return parts[4]


def cluster_port():
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port < 55000:
            probe = __import__("socket").socket()
            try:
                probe.bind(("127.0.0.1", port + 10000))
                return port
            except OSError:
                continue
            finally:
                probe.close()


class Cluster:
    """`masters` cluster-enabled servers joined by `redis-cli --cluster create`."""

    def __init__(self, args, masters=3):
        self.nodes = []
        for _ in range(masters):
            port = cluster_port()
            self.nodes.append(_ClusterNode(args.redis_server, port))
        subprocess.run(
            [args.redis_cli, "--cluster", "create",
             *["127.0.0.1:%d" % n.port for n in self.nodes],
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while True:
            infos = [n.conn.call("CLUSTER", "INFO").decode() for n in self.nodes]
            if all("cluster_state:ok" in i and "cluster_known_nodes:%d" % masters in i
                   for i in infos):
                break
            if time.time() > deadline:
                raise RuntimeError("the cluster did not form: %s" % infos)
            time.sleep(0.1)
        self.owner = [None] * SLOTS
        for start, end, master, *_ in self.nodes[0].conn.call("CLUSTER", "SLOTS"):
            port = master[1]
            node = next(n for n in self.nodes if n.port == port)
            for slot in range(start, end + 1):
                self.owner[slot] = node

    def url(self):
        return "redis://127.0.0.1:%d" % self.nodes[0].port

    def dbsize(self):
        return sum(n.conn.call("DBSIZE") for n in self.nodes)

    def stop(self):
        for n in self.nodes:
            n.stop()


class _ClusterNode(Server):
    def __init__(self, binary, port):
        # Server picks its own port: start this one on the port chosen for its free bus port.
        self.dir = tempfile.mkdtemp(prefix="ferry-bench-cluster-")
        self.port = port
        self.tls_port = None
        self.proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--save", "", "--appendonly", "no", "--logfile", os.path.join(self.dir, "log"),
             "--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", "5000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while True:
            try:
                self.conn = Redis(port)
                self.conn.call("PING")
                return
            except (OSError, RuntimeError):
                if time.time() > deadline:
                    raise RuntimeError("redis did not start on %d" % port)
                time.sleep(0.05)


def load_cluster(cluster, args, generate):
    """The mixed dataset of bench_e2e, each command piped to the master of its key's slot."""
    t = time.time()
    pipes = {n.port: subprocess.Popen([args.redis_cli, "-p", str(n.port), "--pipe"],
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
             for n in cluster.nodes}
    batches = {port: [] for port in pipes}
    for command in generate(args.keys, args.value_size, args.big_size, args.ttl_share):
        port = cluster.owner[key_slot(command_key(command))].port
        batch = batches[port]
        batch.append(command)
        if len(batch) >= 4096:
            pipes[port].stdin.write(b"".join(batch))
            batch.clear()
    for port, pipe in pipes.items():
        pipe.stdin.write(b"".join(batches[port]))
        pipe.stdin.close()
        if pipe.wait() != 0:
            raise RuntimeError("redis-cli --pipe failed")
    print("loaded %d keys into 3 shards (%s) in %.1fs" % (
        cluster.dbsize(), ", ".join(str(n.conn.call("DBSIZE")) for n in cluster.nodes),
        time.time() - t), flush=True)


def run_native_shards(source, args):
    """One fresh replica per source master, all syncing at once; returns the slowest shard's
    seconds and every shard's."""
    replicas = [Server(args.redis_server, "--repl-diskless-load", "on-empty-db")
                for _ in source.nodes]
    try:
        times = [None] * len(replicas)
        t = time.time()
        for replica, master in zip(replicas, source.nodes):
            replica.conn.call("REPLICAOF", "127.0.0.1", str(master.port))
        pending = set(range(len(replicas)))
        while pending:
            for i in list(pending):
                info = replicas[i].conn.info("replication") if _answers(replicas[i]) else {}
                if info.get("master_link_status") == "up" and \
                        info.get("master_sync_in_progress") == "0":
                    times[i] = time.time() - t
                    pending.discard(i)
            if time.time() - t > 3600:
                raise RuntimeError("native replication did not finish")
            time.sleep(0.01)
        for replica, master in zip(replicas, source.nodes):
            wait_synced(replica)
            if replica.conn.call("DBSIZE") != master.conn.call("DBSIZE"):
                raise RuntimeError("a native replica holds a different key count")
        return max(times), times
    finally:
        for replica in replicas:
            replica.stop()


def _answers(server):
    try:
        server.conn.call("PING")
        return True
    except RuntimeError as e:  # -LOADING while the RDB loads
        if "LOADING" not in str(e):
            raise
        return False


def run_ferry_cluster(source, args):
    """`ferry migrate` cluster to cluster into a fresh empty 3-master cluster; returns seconds."""
    target = Cluster(args)
    data = tempfile.mkdtemp(prefix="ferry-bench-data-")
    try:
        out_path, err_path = os.path.join(data, "stdout"), os.path.join(data, "stderr")
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            t = time.time()
            code = subprocess.call(
                [args.ferry, "migrate", "--source", source.url(), "--target", target.url(),
                 "--mode", "snapshot", "--verify", "none", "--no-backup",
                 "--transfer", "restore", "--data-dir", os.path.join(data, "store")],
                stdout=out, stderr=err, env=dict(os.environ, FERRY_CONFIG="/dev/null"))
            elapsed = time.time() - t
        if code != 0:
            raise RuntimeError("ferry migrate failed: "
                               + open(err_path, errors="replace").read()[-2000:]
                               + open(out_path, errors="replace").read()[-2000:])
        # Every key but Ferry's own bookkeeping (its lease) must be there.
        want = source.dbsize()
        got = target.dbsize() - _ferry_keys(target)
        if want != got:
            raise RuntimeError("ferry copied %d of %d keys" % (got, want))
        return elapsed
    finally:
        target.stop()
        shutil.rmtree(data, ignore_errors=True)


def _ferry_keys(cluster):
    total = 0
    for node in cluster.nodes:
        cursor = b"0"
        while True:
            cursor, keys = node.conn.call("SCAN", cursor, "MATCH", "ferry:*", "COUNT", "1000")
            total += len(keys)
            if cursor == b"0":
                break
    return total


def cluster_scenario(args, generate):
    source = Cluster(args)
    try:
        load_cluster(source, args, generate)
        native, ferry = [], []
        for run in range(args.runs):
            order = ["native", "ferry"] if run % 2 == 0 else ["ferry", "native"]
            for name in order:
                if name == "native":
                    slowest, shards = run_native_shards(source, args)
                    native.append(slowest)
                    print("run %d native  %7.2fs slowest shard (%s)  (%s)" % (
                        run + 1, slowest, ", ".join("%.2f" % s for s in shards), load_note()),
                        flush=True)
                else:
                    ferry.append(run_ferry_cluster(source, args))
                    print("run %d ferry   %7.2fs  (%s)" % (run + 1, ferry[-1], load_note()),
                          flush=True)
        ratio = statistics.median(f / n for f, n in zip(ferry, native))
        print("\ncluster, %d keys, 3 shards -> 3 shards, median of %d runs" % (args.keys, args.runs))
        print("| contender | median s |")
        print("|---|---|")
        print("| native replication, slowest of 3 shards | %.2f |" % statistics.median(native))
        print("| ferry cluster -> cluster | %.2f |" % statistics.median(ferry))
        return [("cluster: ferry / slowest native shard <= 1.2 (median of per-run ratios)",
                 ratio, 1.2)]
    finally:
        source.stop()
