#!/usr/bin/python3
"""bench/fleet_figures.py: fleet figures of dexcache (3 instances sharing one redis-server).

    bench/fleet_figures.py --out fleet.json              # about 65 s + 4 x 5 s
    bench/fleet_figures.py --duration 20 --out f.json     # a shorter overshoot run
    options: --duration S (overshoot run, default 65), --phase-seconds S (each Redis load, default 5),
    --threads N (client threads of the Redis loads, default 6), --origin-limit-factor F (the fake
    origin's own limit as a multiple of the budget, default 1.0)
    environment: DEXCACHE_BIN (default build/dexcache, the release build)

Measures, with 3 real dexcache instances, a real redis-server and the fake origin
(tests/fakeorigin), everything on 127.0.0.1 on free ports:

1. overshoot of the fleet-wide upstream budget `rate: [20/1s, 1100/60s]` under 3x offered load
   (60 req/s of unique uncacheable GETs, round-robin over the instances, fixed schedule), from the
   origin's own request timestamps: the most requests in any sliding 1 s, 10 s and 60 s window
   against the budget of that window; the origin's 429s and the clients' statuses;
2. Redis commands per client request (INFO commandstats and MONITOR deltas) for cache hits on a
   route with a per-client limit (leases), cache hits without a limit, and misses of unique keys
   through an upstream budget. The instances' heartbeats (one EVALSHA per instance per second, the
   only script that runs ZADD) are subtracted.

Prints a markdown table and writes the figures as JSON to --out. Every process started here is
stopped on exit; every load is bounded in time. Not part of CI. See bench/README.md.
"""
import argparse
import collections
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
os.environ.setdefault("DEXCACHE_BIN", os.path.join(ROOT, "build", "dexcache"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.dont_write_bytecode = True

import requests  # noqa: E402

from dexcache import BIN, Dexcache, PREAMBLE, wait_for  # noqa: E402
from fake import FakeOrigin  # noqa: E402
from redis_proc import RedisServer  # noqa: E402

INSTANCES = 3
RATES = [(20, 1.0), (1100, 60.0)]  # the budget of part 1: (limit, window seconds)
OFFERED = 60                       # part 1: client requests per second (3x the 1 s budget)
WINDOWS = (1, 10, 60)              # part 1: sliding windows reported, seconds
SOL = "So11111111111111111111111111111111111111112"

CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "dcbench:" }}
upstreams:
  budget:
    url: "%(jup)s"
    rate: [%(rates)s]
    queue: {{ max: 100, timeout: 2s }}
    retries: 0
  open:
    url: "%(jup)s"
  paced:
    url: "%(jup)s"
    rate: 2000/1s
    queue: {{ max: 1000, timeout: 5s }}
routes:
  - {{ prefix: /budget, upstream: budget }}
  - prefix: /lim
    upstream: open
    cache: [ {{ path: /, ttl: 10m }} ]
    limit: {{ rate: 100000/1s, burst: 100000, by: client }}
  - {{ prefix: /hit, upstream: open, cache: [ {{ path: /, ttl: 10m }} ] }}
  - {{ prefix: /miss, upstream: paced, cache: [ {{ path: /, ttl: 10m }} ] }}
"""


def log(*a):
    print("fleet_figures:", *a, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------- Redis counters

def commandstats(port):
    """{command: calls} from INFO commandstats (redis-cli)."""
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "commandstats"], capture_output=True,
                         text=True, timeout=10, check=True).stdout
    calls = {}
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            name, _, rest = line[len("cmdstat_"):].partition(":")
            for kv in rest.split(","):
                k, _, v = kv.partition("=")
                if k == "calls":
                    calls[name] = int(v)
    return calls


class Monitor:
    """Counts the commands Redis receives (MONITOR): top-level ones (round trips) by name, and the
    ones scripts run ("lua"), on its own connection, until stop()."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.sendall(b"MONITOR\r\n")
        self.lock = threading.Lock()
        self.top = collections.Counter()
        self.lua = collections.Counter()
        self.stopped = False
        self.buf = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.5)
        while not self.stopped:
            try:
                chunk = self.sock.recv(1 << 16)
            except socket.timeout:
                continue
            except OSError:
                break
            if not chunk:
                break
            self.buf += chunk
            lines = self.buf.split(b"\r\n")
            self.buf = lines.pop()
            with self.lock:
                for line in lines:
                    # +1700000000.123456 [0 127.0.0.1:4321] "evalsha" "..."   or   [0 lua] "TIME"
                    lb, rb = line.find(b"["), line.find(b"]")
                    if not line.startswith(b"+") or lb < 0 or rb < 0:
                        continue
                    q = line.find(b'"', rb)
                    name = line[q + 1:line.find(b'"', q + 1)].decode(errors="replace").lower() if q > 0 else "?"
                    (self.lua if line[lb:rb].endswith(b"lua") else self.top)[name] += 1

    def snapshot(self):
        time.sleep(0.2)  # let lines already sent arrive
        with self.lock:
            return {"top": dict(self.top), "lua": dict(self.lua)}

    def stop(self):
        self.stopped = True
        try:
            self.sock.close()
        except OSError:
            pass
        self.thread.join(2)


def redis_delta(before, after):
    """Redis command counts between two snapshots, heartbeats (each: one EVALSHA/EVAL running
    ZADD, ZREMRANGEBYSCORE, ZCARD; the only ZADD) and this script's own commands taken out."""
    def d(a, b, k):
        return b.get(k, 0) - a.get(k, 0)

    cs0, cs1 = before["cs"], after["cs"]
    hb = d(cs0, cs1, "zadd")
    own = {"info", "monitor", "ping", "client|list", "command", "command|docs"}
    all_calls = sum(d(cs0, cs1, k) for k in set(cs0) | set(cs1) if k not in own) - 4 * hb
    scripts = d(cs0, cs1, "evalsha") + d(cs0, cs1, "eval") - hb
    m0, m1 = before["mon"], after["mon"]
    top = sum(d(m0["top"], m1["top"], k) for k in set(m0["top"]) | set(m1["top"]) if k not in own)
    hb_mon = d(m0["lua"], m1["lua"], "zadd")
    by_name = {k: d(m0["top"], m1["top"], k) for k in set(m0["top"]) | set(m1["top"]) if k not in own}
    if "evalsha" in by_name:
        by_name["evalsha"] -= min(hb_mon, by_name["evalsha"])  # the heartbeats' own
    by_name = {k: v for k, v in by_name.items() if v}
    return {"heartbeats": hb, "commands": all_calls, "scripts": scripts, "round_trips": top - hb_mon,
            "top_level_by_name": by_name, "heartbeats_seen_by_monitor": hb_mon}


# ------------------------------------------------------------------------------- part 1

def budget_of(window_s):
    """Most requests the configured windows allow in any window of window_s seconds."""
    return min(limit * math.ceil(window_s / w - 1e-9) for limit, w in RATES)


def worst_window(times_ms, width_ms):
    times = sorted(times_ms)
    worst, j = 0, 0
    for i, t in enumerate(times):
        while j < len(times) and times[j] < t + width_ms:
            j += 1
        worst = max(worst, j - i)
    return worst


def overshoot(ds, origin, duration, factor):
    origin.reset()
    origin.config({"rl": ["%d/%g,profile=jup,scope=/echo" % (max(1, round(limit * factor)), w)
                          for limit, w in RATES]})
    seq0 = origin.seq()
    total = int(OFFERED * duration)
    out = [None] * total
    ring = {}
    stop = threading.Event()

    def poll():
        last = seq0
        while True:
            # re-read the last few hundred: a record's status is filled in when it is answered
            for r in origin.requests(max(seq0, last - 500)):
                ring[r["seq"]] = r
                last = max(last, r["seq"])
            if stop.wait(2.0):
                for r in origin.requests(max(seq0, last - 500)):
                    ring[r["seq"]] = r
                return

    def one(i):
        try:
            r = requests.get(ds[i % INSTANCES].url + "/budget/echo?u=%d" % i, timeout=15)
            out[i] = r.status_code
        except requests.RequestException as e:
            out[i] = type(e).__name__

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    log("part 1: %d requests at %d/s for %g s" % (total, OFFERED, duration))
    threads = []
    t0 = time.monotonic() + 0.2
    for i in range(total):
        delay = t0 + i / OFFERED - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = threading.Thread(target=one, args=(i,), daemon=True)
        t.start()
        threads.append(t)
    late = time.monotonic() - (t0 + (total - 1) / OFFERED)
    for t in threads:
        t.join(20)
    time.sleep(0.3)
    stop.set()
    poller.join(30)
    st = origin.stats()["jup"]
    origin.config({"rl": []})
    recs = [ring[s] for s in sorted(ring) if ring[s]["path"] == "/echo"]
    times = [r["t_ms"] for r in recs]
    rows = []
    for w in WINDOWS:
        seen = worst_window(times, w * 1000)
        b = budget_of(w)
        rows.append({"window_s": w, "budget": b, "max_seen": seen,
                     "overshoot_pct": round(max(0.0, seen / b - 1) * 100, 2)})
    hist = collections.Counter(str(o) for o in out)
    if len(recs) != st["total"]:
        log("warning: the request ring holds %d of the origin's %d requests" % (len(recs), st["total"]))
    return {"duration_s": duration, "offered_rps": OFFERED, "client_requests": total,
            "generator_late_s": round(late, 3), "origin_requests": len(recs),
            "origin_total_counted": st["total"], "origin_429": st["by_status"].get("429", 0),
            "origin_limit": ["%d/%gs" % (max(1, round(limit * factor)), w) for limit, w in RATES],
            "origin_by_status": st["by_status"], "client_statuses": dict(sorted(hist.items())),
            "windows": rows}


# ------------------------------------------------------------------------------- part 2

def redis_snapshot(port, mon):
    return {"cs": commandstats(port), "mon": mon.snapshot()}


def closed_loop(ds, paths, seconds, threads_n):
    """threads_n threads (keep-alive sessions, thread k on instance k % 3) for `seconds`; each
    takes the next path from paths(k, n). Returns (requests, statuses, x-cache counts, elapsed)."""
    stop = threading.Event()
    lock = threading.Lock()
    statuses, xcache = collections.Counter(), collections.Counter()
    count = [0]

    def run(k):
        s = requests.Session()
        d = ds[k % INSTANCES]
        n = 0
        st, xc = collections.Counter(), collections.Counter()
        while not stop.is_set():
            try:
                r = s.get(d.url + paths(k, n), timeout=10)
                st[r.status_code] += 1
                xc[r.headers.get("x-cache", "-")] += 1
            except requests.RequestException as e:
                st[type(e).__name__] += 1
            n += 1
        s.close()
        with lock:
            statuses.update(st)
            xcache.update(xc)
            count[0] += n

    ts = [threading.Thread(target=run, args=(k,), daemon=True) for k in range(threads_n)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in ts:
        t.join(15)
    return count[0], dict(statuses), dict(xcache), time.monotonic() - t0


def round_trips(ds, rs, seconds, threads_n):
    mon = Monitor(rs.port)
    results = []
    try:
        keys = ["%s,%d" % (SOL, i) for i in range(64)]
        # warm every key on every instance (L1), then check they hit
        for prefix in ("/lim", "/hit"):
            for d in ds:
                for k in keys:
                    for _ in range(2):
                        requests.get(d.url + prefix + "/price/v3?ids=" + k, timeout=10)
            for d in ds:
                r = requests.get(d.url + prefix + "/price/v3?ids=" + keys[0], timeout=10)
                assert r.headers.get("x-cache") == "HIT", (prefix, dict(r.headers))
        time.sleep(1.0)
        # idle: only heartbeats, as a check of the subtraction
        b = redis_snapshot(rs.port, mon)
        time.sleep(3.0)
        a = redis_snapshot(rs.port, mon)
        idle = redis_delta(b, a)
        results.append({"load": "idle (3 s, no requests)", "requests": 0, **idle})
        loads = [
            ("cache hits, per-client limit (leases)", lambda k, n: "/lim/price/v3?ids=" + keys[(k * 7 + n) % 64]),
            ("cache hits, no limit", lambda k, n: "/hit/price/v3?ids=" + keys[(k * 7 + n) % 64]),
            ("misses (unique keys), upstream budget", lambda k, n: "/miss/echo?m=%d-%d" % (k, n)),
        ]
        for name, paths in loads:
            log("part 2: %s, %d threads for %g s" % (name, threads_n, seconds))
            b = redis_snapshot(rs.port, mon)
            n, statuses, xcache, elapsed = closed_loop(ds, paths, seconds, threads_n)
            time.sleep(0.5)  # L2 writes and unlocks sent after the answers
            a = redis_snapshot(rs.port, mon)
            dl = redis_delta(b, a)
            per = {k: (round(dl[k] / n, 4) if n else None) for k in ("commands", "scripts", "round_trips")}
            results.append({"load": name, "requests": n, "rps": round(n / elapsed), "statuses": statuses,
                            "x_cache": xcache, **dl,
                            "commands_per_request": per["commands"], "scripts_per_request": per["scripts"],
                            "round_trips_per_request": per["round_trips"]})
    finally:
        mon.stop()
    return results


# ------------------------------------------------------------------------------- report

def markdown(res):
    p1 = res["overshoot"]
    lines = ["## Fleet figures: %d dexcache instances, one redis-server, fake origin" % INSTANCES, "",
             "dexcache `%s`, %s; budget `rate: [%s]`, `queue: {max: 100, timeout: 2s}` per instance." % (
                 res["binary"], res["date"], ", ".join("%d/%gs" % r for r in RATES)), "",
             "### 1. Upstream budget under 3x load (%d req/s for %g s, unique uncacheable GETs, round-robin)"
             % (p1["offered_rps"], p1["duration_s"]), "",
             "| sliding window | budget | max requests seen by the origin | overshoot % |",
             "|---|---|---|---|"]
    for w in p1["windows"]:
        lines.append("| %d s | %d | %d | %.2f |" % (w["window_s"], w["budget"], w["max_seen"], w["overshoot_pct"]))
    lines += ["",
              "Origin: %d requests, %d answered 429 (its own limit: %s). Clients: %s. Load generator %.3f s "
              "behind schedule at the end." % (p1["origin_requests"], p1["origin_429"], ", ".join(p1["origin_limit"]),
                                               ", ".join("%s: %d" % kv for kv in p1["client_statuses"].items()),
                                               p1["generator_late_s"]), "",
              "### 2. Redis commands per client request (heartbeats subtracted)", "",
              "| load | client requests | req/s | round trips / req (MONITOR) | EVALSHA+EVAL / req | "
              "all commands / req (commandstats, incl. inside scripts) | top-level commands |",
              "|---|---|---|---|---|---|---|"]
    for r in res["redis"]:
        if r["requests"] == 0:
            lines.append("| %s | 0 | - | %d (total) | %d (total) | %d (total) | %s |" % (
                r["load"], r["round_trips"], r["scripts"], r["commands"],
                ", ".join("%s %d" % kv for kv in sorted(r["top_level_by_name"].items())) or "-"))
            continue
        lines.append("| %s | %d | %d | %.4f | %.4f | %.4f | %s |" % (
            r["load"], r["requests"], r["rps"], r["round_trips_per_request"], r["scripts_per_request"],
            r["commands_per_request"],
            ", ".join("%s %d" % kv for kv in sorted(r["top_level_by_name"].items())) or "-"))
    lines += ["", "Heartbeats subtracted, per row: %s (each: 1 EVALSHA running 3 commands)."
              % ", ".join(str(r["heartbeats"]) for r in res["redis"]),
              "Client statuses / X-Cache, per load row: " + "; ".join(
                  "%s %s" % (r.get("statuses"), r.get("x_cache")) for r in res["redis"] if r["requests"]) + "."]
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="JSON output path")
    ap.add_argument("--duration", type=float, default=65.0, help="seconds of the overshoot run (default 65)")
    ap.add_argument("--phase-seconds", type=float, default=5.0, help="seconds of each Redis load (default 5)")
    ap.add_argument("--threads", type=int, default=6, help="client threads of the Redis loads (default 6)")
    ap.add_argument("--origin-limit-factor", type=float, default=1.0,
                    help="the fake origin's own limits as a multiple of the budget (default 1.0)")
    args = ap.parse_args()
    if not os.access(BIN, os.X_OK):
        sys.exit("fleet_figures: no dexcache binary at %s (cmake --build build, or set DEXCACHE_BIN)" % BIN)
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        sys.exit("fleet_figures: redis-server and redis-cli are needed (apt-get install redis-server)")

    work = tempfile.mkdtemp(prefix="dexcache-fleet-figures-")
    fo = FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup",))
    rs = RedisServer(work)
    ds = []
    try:
        fo.start()
        rs.start()
        conf = CONFIG % {"jup": fo.url("jup"), "redis": rs.url, "rates": ", ".join("%d/%gs" % r for r in RATES)}
        for _ in range(INSTANCES):
            ds.append(Dexcache(conf).start())
        if not wait_for(lambda: all(d.health()["redis"] == "up" and d.health()["instances"] == INSTANCES
                                    for d in ds), timeout=15):
            raise RuntimeError("fleet not up: %s" % [d.health() for d in ds])
        res = {"binary": os.path.relpath(BIN, ROOT) if BIN.startswith(ROOT) else BIN,
               "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "instances": INSTANCES,
               "budget": ["%d/%gs" % r for r in RATES], "cores": os.cpu_count(),
               "redis_version": subprocess.run(["redis-server", "--version"], capture_output=True,
                                                text=True).stdout.strip()}
        res["overshoot"] = overshoot(ds, fo, args.duration, args.origin_limit_factor)
        res["redis"] = round_trips(ds, rs, args.phase_seconds, args.threads)
        res["limit_fallbacks"] = sum(d.metric("dexcache_limit_fallbacks_total") for d in ds)
    finally:
        for d in ds:
            try:
                d.stop()
            except Exception as e:  # keep stopping the others
                log("stopping dexcache: %r" % e)
            shutil.rmtree(d.workdir, ignore_errors=True)
        rs.stop()
        fo.stop()
        shutil.rmtree(work, ignore_errors=True)
    md = markdown(res)
    res["markdown"] = md
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2, sort_keys=True)
    print(md)


if __name__ == "__main__":
    main()
