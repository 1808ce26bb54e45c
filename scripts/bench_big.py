"""The big-keys scenario and the scaling curve of scripts/bench_e2e.py (`--big-keys`, `--scale`).

big keys: one 300 MB string of random bytes (incompressible, so the RDB holds it raw and Ferry can
stream it; an LZF-compressed value must be whole, up to [transfer] max_whole_value_bytes), one
2M-element list and one 1M-field hash. Each contender copies them into a fresh target; the copy is
checked with DEBUG DIGEST on both sides, and Ferry's peak RSS (wait4) must stay under 96 MiB.

scale: for each size, a fresh source is loaded with the mixed dataset, then relay, restore and
native diskless replication copy it in turn (one server pair at a time: 10M keys take ~5 GB per
server). Reported: time, time per key, Ferry's peak RSS and the target's (VmHWM). The projection
to 100M keys uses the per-key time and per-key memory measured at the largest size.
"""

import os
import statistics
import time

from bench_lib import Server, load_note, pipe_in, resp, run_ferry, run_native

MiB = 1024 * 1024


def fill_big(server, args):
    t = time.time()
    string = os.urandom(300 * MiB)
    pipe_in(server, args, [resp(b"SET", b"big:string", string)])
    del string

    def batches(head, count, make):
        for start in range(0, count, 10000):
            parts = [head[0], head[1]]
            for i in range(start, min(count, start + 10000)):
                parts += make(i)
            yield resp(*parts)

    pipe_in(server, args, batches((b"RPUSH", b"big:list"), 2_000_000,
                                  lambda i: [b"element-%010d" % i]))
    pipe_in(server, args, batches((b"HSET", b"big:hash"), 1_000_000,
                                  lambda i: [b"field-%09d" % i, b"value-%d" % (i * 7)]))
    info = server.conn.info("memory")
    print("loaded the big keys in %.1fs (used_memory %s): STRLEN %d, LLEN %d, HLEN %d" % (
        time.time() - t, info.get("used_memory_human"),
        server.conn.call("STRLEN", "big:string"), server.conn.call("LLEN", "big:list"),
        server.conn.call("HLEN", "big:hash")), flush=True)


def same_digest(source, target):
    a, b = source.conn.call("DEBUG", "DIGEST"), target.conn.call("DEBUG", "DIGEST")
    if a != b:
        raise RuntimeError("the copy differs: DEBUG DIGEST %s on the source, %s on the target" % (a, b))


def big_keys(args):
    args.server_args = ["--enable-debug-command", "local"]
    source = Server(args.redis_server, *args.server_args)
    results = {"relay": [], "restore": [], "diskless": []}
    try:
        fill_big(source, args)
        for run in range(args.runs):
            order = list(results) if run % 2 == 0 else list(reversed(results))
            for c in order:
                if c == "diskless":
                    t, peak, target_peak = run_native(source, args, diskless=True)
                else:
                    t, peak, target_peak = run_ferry(source, args, c, check=same_digest)
                results[c].append((t, peak, target_peak))
                extra = "  ferry peak RSS %.1f MiB" % peak if peak is not None else ""
                print("big keys run %d %-9s %7.2fs%s  target peak %.0f MiB  (%s)"
                      % (run + 1, c, t, extra, target_peak, load_note()), flush=True)
    finally:
        source.stop()
    print("\nbig keys (300 MB string, 2M-element list, 1M-field hash), median of %d runs" % args.runs)
    print("| contender | median s | Ferry peak RSS MiB (max) | target peak RSS MiB |")
    print("|---|---|---|---|")
    for c, rs in results.items():
        peaks = [r[1] for r in rs if r[1] is not None]
        print("| %s | %.2f | %s | %.0f |" % (
            c, statistics.median(r[0] for r in rs),
            "%.1f" % max(peaks) if peaks else "-", max(r[2] for r in rs)))
    checks = []
    for c in ("relay", "restore"):
        checks.append(("big keys: %s peak RSS MiB <= 96" % c, max(r[1] for r in results[c]), 96.0))
    return checks


def mem_available():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def scale(args, load):
    sizes = [int(x) for x in args.scale.split(",")]
    contenders = ["relay", "restore", "diskless"]
    rows = {}  # (size, contender) -> [(seconds, ferry peak, target peak)]
    used = {}
    for n in sizes:
        # ~520 bytes per key on each of two servers, plus slack for the fork and the RDB.
        need = n * 520 * 2.5
        if need > mem_available():
            print("skipping %d keys: needs ~%.1f GB, %.1f GB available"
                  % (n, need / 1e9, mem_available() / 1e9), flush=True)
            continue
        source = Server(args.redis_server)
        try:
            load(source, args, keys=n)
            used[n] = int(source.conn.info("memory")["used_memory"])
            for run in range(args.runs):
                order = contenders if run % 2 == 0 else list(reversed(contenders))
                for c in order:
                    if c == "diskless":
                        r = run_native(source, args, diskless=True)
                    else:
                        r = run_ferry(source, args, c)
                    rows.setdefault((n, c), []).append(r)
                    print("scale %d keys run %d %-9s %7.2fs  %.2f us/key  ferry %s  target %.0f MiB  (%s)"
                          % (n, run + 1, c, r[0], r[0] / n * 1e6,
                             "%.1f MiB" % r[1] if r[1] is not None else "-", r[2], load_note()),
                          flush=True)
        finally:
            source.stop()
    print("\nscaling curve (mixed dataset), median of %d runs" % args.runs)
    print("| keys | contender | time s | us per key | Ferry peak RSS MiB | target peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    for (n, c), rs in sorted(rows.items()):
        t = statistics.median(r[0] for r in rs)
        peaks = [r[1] for r in rs if r[1] is not None]
        print("| %d | %s | %.2f | %.2f | %s | %.0f |" % (
            n, c, t, t / n * 1e6, "%.1f" % max(peaks) if peaks else "-", max(r[2] for r in rs)))
    checks = []
    measured = sorted(used)
    if measured:
        big = measured[-1]
        per_key_mem = used[big] / big
        print("\nprojection to 100M keys (from the %d-key run):" % big)
        print("  memory: %.0f bytes per key -> %.1f GB per server (source and target each); "
              "this machine has %.1f GB"
              % (per_key_mem, per_key_mem * 1e8 / 1e9, os.sysconf("SC_PAGE_SIZE")
                 * os.sysconf("SC_PHYS_PAGES") / 1e9))
        for c in contenders:
            if (big, c) in rows:
                t = statistics.median(r[0] for r in rows[(big, c)])
                print("  %s: %.2f us per key -> %.0f s (%.1f min) for 100M keys"
                      % (c, t / big * 1e6, t / big * 1e8, t / big * 1e8 / 60))
        small = measured[0]
        for c in ("relay", "restore"):
            if (small, c) in rows and (big, c) in rows and big > small:
                a = statistics.median(r[0] for r in rows[(small, c)]) / small
                b = statistics.median(r[0] for r in rows[(big, c)]) / big
                label = "scale: %s time per key %dk / %dk keys <= 1.15" % (
                    c, big // 1000, small // 1000)
                checks.append((label, b / a, 1.15))
        for c in ("relay", "restore"):
            peaks = [r[1] for (n, cc), rs in rows.items() if cc == c for r in rs]
            if peaks:
                checks.append(("scale: %s peak RSS MiB <= 64 at every size" % c, max(peaks), 64.0))
    return checks
