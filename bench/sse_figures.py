#!/usr/bin/python3
"""bench/sse_figures.py: Server-Sent Event fan-out figures of one dexcache.

    bench/sse_figures.py                                   # points 1000 and 10000, 20 s each: about 1 min
    bench/sse_figures.py --points 10000 --duration 60      # one point, a longer window
    options: --points N,N,... (subscribers, default 1000,10000), --duration S (measured window,
    default 20), --clients K (client processes, default 4), --origin-lat SPEC (the fake origin's
    --lat, default fixed=0; "default" keeps its lognormal profiles, price 30:150 ms),
    --out FILE (default bench/results/sse-<date>.json)
    environment: DEXCACHE_BIN (default build/dexcache, the release build)

Starts the fake origin (tests/fakeorigin, jup profile) and one dexcache (2 workers, access log
off) with one stream polled every 100 ms without on_change (10 events/s), then for each point
connects N subscribers to that one channel from K client processes (each an epoll loop over N/K
raw HTTP/1.1 sockets, 127.0.0.1 only) and, once dexcache_sse_subscribers == N, measures for
--duration seconds:

- events delivered per second in total, from dexcache_sse_events_total and from the clients'
  own counts ("\\nid: N\\n" lines), and per subscriber (min / median / max);
- ids missing per subscriber (gaps), events arriving twice or out of order, `event: dropped`,
  dexcache_sse_drops_total, connections closed by the server;
- the channel's own rate (highest id seen) and the upstream polls per second (the fake origin's
  /price/v3 requests in the window, and dexcache_sse_polls_total);
- fan-out spread: for each event, the time from the first subscriber receiving it to the last;
- dexcache CPU (utime + stime from /proc/<pid>/stat, % of one core; 200 % = both cores) and per
  thread, the client processes' CPU, dexcache RSS (VmRSS) before connecting, with N connected,
  peak during the point (sampled every 100 ms), at the end of the window and after everyone left.

Prints a markdown table and writes every figure as JSON to --out. Every process started here is
stopped on exit (normal end, error, Ctrl-C or SIGTERM); every wait is bounded in time. Not part of
CI. See bench/README.md.
"""
import argparse
import json
import multiprocessing
import os
import re
import resource
import select
import shutil
import signal
import socket
import sys
import threading
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
os.environ.setdefault("DEXCACHE_BIN", os.path.join(ROOT, "build", "dexcache"))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
sys.dont_write_bytecode = True

from dexcache import BIN, Dexcache, PREAMBLE, wait_for  # noqa: E402
from fake import FakeOrigin  # noqa: E402

SOL = "So11111111111111111111111111111111111111112"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"
STREAM_PATH = "/jup/stream/price?ids=%s,%s" % (SOL, JUP)
INTERVAL_MS = 100

CONFIG = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /price/v3, ttl: 50ms, key_sets: [ids] }}
streams:
  - {{ path: /jup/stream/price, upstream: jupiter, upstream_path: /price/v3, interval: %(interval)dms,
      on_change: false }}
"""

CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print("sse_figures:", *a, file=sys.stderr, flush=True)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


# ------------------------------------------------------------------------------- client processes

ID_RE = re.compile(rb"\nid: (\d+)\n")


def client_worker(conn, wid, host, port, path, n):
    """One client process: n subscribers on raw sockets, one epoll loop. Commands on `conn`:
    "stats" (answers a dict of counters and per-subscriber arrays) and "stop" (closes everything,
    answers, exits). Exits by itself when the parent goes away."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    raise_nofile()
    ep = select.epoll()
    ctrl = conn.fileno()
    ep.register(ctrl, select.EPOLLIN)
    req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nAccept: text/event-stream\r\n\r\n" % (path, host, port)).encode()
    socks = [None] * n
    index = {}                    # fd -> subscriber
    tails = [b""] * n             # unparsed end of the last read
    status = [0] * n              # 0 = no response head yet, 200 = OK, other = failed
    last = [0] * n                # last id seen
    count = [0] * n               # update events (ids) received
    gaps = [0] * n                # ids missing (id > last + 1)
    dups = [0] * n                # ids at or below the last one
    first_id = [0] * n
    seen = {}                     # id -> [first receive time, last receive time] (CLOCK_MONOTONIC)
    totals = {"bytes": 0, "reads": 0, "dropped_events": 0, "closed": 0, "errors": 0, "connect_errors": 0,
              "bad_status": 0}
    # one preallocated buffer: recv(1 << 18) would malloc (mmap) and shrink 256 KiB per call
    rbuf = bytearray(1 << 18)
    rview = memoryview(rbuf)

    def close(i):
        s = socks[i]
        if s is None:
            return
        try:
            ep.unregister(s.fileno())
        except OSError:
            pass
        index.pop(s.fileno(), None)
        s.close()
        socks[i] = None

    def read(i):
        s = socks[i]
        try:
            got = s.recv_into(rbuf)
        except BlockingIOError:
            return
        except OSError:
            totals["errors"] += 1
            close(i)
            return
        if not got:
            totals["closed"] += 1
            close(i)
            return
        now = time.monotonic()
        data = rview[:got].tobytes()
        totals["bytes"] += got
        totals["reads"] += 1
        if tails[i]:
            data = tails[i] + data
        if status[i] == 0:
            h = data.find(b"\r\n\r\n")
            if h < 0:
                tails[i] = data
                return
            try:
                status[i] = int(data[:h].split(None, 2)[1])
            except (IndexError, ValueError):
                status[i] = -1
            if status[i] != 200:
                totals["bad_status"] += 1
                close(i)
                return
            data = data[h + 2:]  # keep the "\r\n" so the first "\nid: " matches
        ids = ID_RE.findall(data)
        if b"event: dropped" in data:
            totals["dropped_events"] += data.count(b"event: dropped")
        nl = data.rfind(b"\n")
        tails[i] = data[nl:] if nl >= 0 else data
        if not ids:
            return
        lst = last[i]
        for b in ids:
            v = int(b)
            if lst == 0:
                first_id[i] = v
            elif v > lst + 1:
                gaps[i] += v - lst - 1
            elif v <= lst:
                dups[i] += 1
                continue
            lst = v
            t = seen.get(v)
            if t is None:
                seen[v] = [now, now]
            else:
                t[1] = now
        last[i] = lst
        count[i] += len(ids)

    def handle(evs):
        for fd, _ in evs:
            if fd == ctrl:
                return command()
            i = index.get(fd)
            if i is not None:
                read(i)
        return True

    def stats(full):
        ru = resource.getrusage(resource.RUSAGE_SELF)
        out = dict(totals)
        out.update({"wid": wid, "subscribers": n, "ok": sum(1 for x in status if x == 200),
                    "open": sum(1 for s in socks if s is not None), "events": sum(count),
                    "gaps": sum(gaps), "dups": sum(dups), "max_id": max(last) if n else 0,
                    "cpu_s": ru.ru_utime + ru.ru_stime, "t": time.monotonic()})
        if full:
            out.update({"count": list(count), "gaps_each": list(gaps), "dups_each": list(dups),
                        "last": list(last), "first_id": list(first_id), "seen": dict(seen)})
        return out

    def command():
        try:
            cmd = conn.recv()
        except (EOFError, OSError):
            return False
        if cmd == "stats":
            conn.send(stats(False))
        elif cmd == "full":
            conn.send(stats(True))
        elif cmd == "forget":  # drop the receive times gathered so far (before the window)
            seen.clear()
            conn.send(True)
        elif cmd == "stop":
            return False
        return True

    # connect in small batches, reading what has arrived in between
    running = True
    for start in range(0, n, 64):
        for i in range(start, min(n, start + 64)):
            try:
                s = socket.create_connection((host, port), timeout=10)
                s.sendall(req)
                s.setblocking(False)
            except OSError:
                totals["connect_errors"] += 1
                continue
            socks[i] = s
            index[s.fileno()] = i
            ep.register(s.fileno(), select.EPOLLIN)
        running = handle(ep.poll(0))
        if not running:
            break
    try:
        conn.send(("connected", n - totals["connect_errors"]))
    except OSError:
        running = False
    while running:
        running = handle(ep.poll(0.05))
    for i in range(n):
        close(i)
    try:
        conn.send(("stopped", stats(False)))
    except OSError:
        pass


class Clients:
    """K client processes holding n subscribers in total."""

    def __init__(self, host, port, path, n, k):
        ctx = multiprocessing.get_context("spawn")
        self.procs, self.conns = [], []
        shares = [n // k + (1 if i < n % k else 0) for i in range(k)]
        for wid, share in enumerate(shares):
            if share == 0:
                continue
            a, b = ctx.Pipe()
            p = ctx.Process(target=client_worker, args=(b, wid, host, port, path, share), daemon=True)
            p.start()
            b.close()
            self.procs.append(p)
            self.conns.append(a)

    def wait_connected(self, timeout):
        got = 0
        deadline = time.monotonic() + timeout
        for c in self.conns:
            if not c.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError("client process not connected in %.0f s" % timeout)
            msg = c.recv()
            got += msg[1]
        return got

    def ask(self, cmd, timeout=30):
        for c in self.conns:
            c.send(cmd)
        out = []
        for c in self.conns:
            if not c.poll(timeout):
                raise RuntimeError("client process did not answer %r in %d s" % (cmd, timeout))
            out.append(c.recv())
        return out

    def stop(self, timeout=15):
        for c in self.conns:
            try:
                c.send("stop")
            except OSError:
                pass
        for c in self.conns:
            try:
                if c.poll(timeout):
                    c.recv()
            except (OSError, EOFError):
                pass
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(3)
            if p.is_alive():
                p.kill()
                p.join(3)
        for c in self.conns:
            c.close()
        self.procs, self.conns = [], []


# ------------------------------------------------------------------------------- dexcache process

def parse_metrics(text):
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def metrics(d):
    m = parse_metrics(d.metrics())
    names = ("channels", "subscribers", "events_total", "drops_total", "polls_total")
    return {n: m.get("dexcache_sse_" + n, 0.0) for n in names}


def proc_cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def thread_cpu_s(pid):
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out["%s/%s" % (name, tid)] = (int(rest[11]) + int(rest[12])) / CLK_TCK
    return out


def thread_wait_s(pid):
    """{comm/tid: seconds spent runnable but waiting for a CPU} (/proc/<pid>/task/<tid>/schedstat)."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/comm" % (pid, tid)) as f:
                name = f.read().strip()
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
                out["%s/%s" % (name, tid)] = int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
    return out


def machine_cpu_s():
    """(busy, total) CPU seconds of the whole machine, all cores (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    total = sum(v[:8])
    return (total - v[3] - v[4]) / CLK_TCK, total / CLK_TCK


def proc_status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class RssSampler:
    """VmRSS of pid every `step` seconds; peak() since the last reset()."""

    def __init__(self, pid, step=0.1):
        self.pid, self.step = pid, step
        self.lock = threading.Lock()
        self.max = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set():
            try:
                v = proc_status_kib(self.pid, "VmRSS")
            except OSError:
                return
            with self.lock:
                self.max = max(self.max, v)
            self.stopped.wait(self.step)

    def reset(self):
        with self.lock:
            self.max = 0

    def peak(self):
        with self.lock:
            return self.max

    def stop(self):
        self.stopped.set()
        self.thread.join(2)


class LatencyProbe:
    """A plain request (GET /nowhere: dexcache answers 404 itself, no upstream) on a new connection
    every `step` seconds, so the kernel spreads them over both workers: how long a worker's loop
    makes an ordinary request wait while it fans events out."""

    def __init__(self, port, step=0.1):
        self.port, self.step = port, step
        self.times, self.errors = [], 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        req = b"GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        while not self.stopped.is_set():
            t = time.monotonic()
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                    s.sendall(req)
                    buf = b""
                    while b"\r\n\r\n" not in buf:
                        chunk = s.recv(4096)
                        if not chunk:
                            raise OSError("closed")
                        buf += chunk
                self.times.append((time.monotonic() - t) * 1000)
            except OSError:
                self.errors += 1
            self.stopped.wait(max(0.0, self.step - (time.monotonic() - t)))

    def stop(self):
        self.stopped.set()
        self.thread.join(6)
        return self.times, self.errors


# ------------------------------------------------------------------------------- one point

def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    return sorted_vals[min(len(sorted_vals) - 1, int(round(p / 100.0 * (len(sorted_vals) - 1))))]


def origin_polls(fo, seq0):
    """(arrival time ms, time to answer ms) of the fake origin's /price/v3 requests since seq0."""
    return [(r["t_ms"], r.get("dur_ms") or 0.0) for r in fo.requests(seq0) if r["path"] == "/price/v3"]


def summary(vals, nd=1):
    vals = sorted(vals)
    if not vals:
        return None
    return {"n": len(vals), "min": round(vals[0], nd), "p50": round(pct(vals, 50), nd),
            "p99": round(pct(vals, 99), nd), "max": round(vals[-1], nd)}


def measure_point(d, fo, n, args, sampler):
    pid = d.proc.pid
    res = {"subscribers": n}
    if not wait_for(lambda: metrics(d)["channels"] == 0, timeout=10):
        log("warning: a channel is still open before the point")
    res["rss_before_kib"] = proc_status_kib(pid, "VmRSS")
    m_conn0 = metrics(d)
    sampler.reset()
    log("%d subscribers: connecting from %d client processes" % (n, args.clients))
    t_conn = time.monotonic()
    clients = Clients("127.0.0.1", d.port, STREAM_PATH, n, args.clients)
    try:
        connected = clients.wait_connected(timeout=60 + n / 50)
        ok = wait_for(lambda: metrics(d)["subscribers"] >= n, timeout=60, step=0.25)
        res["connect_s"] = round(time.monotonic() - t_conn, 2)
        res["connected_sockets"] = connected
        m = metrics(d)
        if not ok:
            raise RuntimeError("dexcache_sse_subscribers %d of %d after connecting (clients: %s)" %
                               (m["subscribers"], n, clients.ask("stats")))
        log("%d subscribers: all held after %.1f s (channels %d); settling 2 s"
            % (n, res["connect_s"], m["channels"]))
        time.sleep(2.0)
        clients.ask("forget")
        # ---- window
        seq0 = fo.seq()
        m0 = metrics(d)
        c0 = clients.ask("full")
        cpu0, th0, wait0 = proc_cpu_s(pid), thread_cpu_s(pid), thread_wait_s(pid)
        mach0, fo_cpu0, own0 = machine_cpu_s(), proc_cpu_s(fo.proc.pid), proc_cpu_s(os.getpid())
        load0 = os.getloadavg()[0]
        t0, t0_ms = time.monotonic(), time.time() * 1000
        res["rss_connected_kib"] = proc_status_kib(pid, "VmRSS")
        mid_rss = []
        probe = LatencyProbe(d.port)
        end = t0 + args.duration
        while time.monotonic() < end:
            time.sleep(min(1.0, max(0.0, end - time.monotonic())))
            mid_rss.append(proc_status_kib(pid, "VmRSS"))
        cpu1, th1, wait1 = proc_cpu_s(pid), thread_cpu_s(pid), thread_wait_s(pid)
        lat, lat_err = probe.stop()
        res["plain_request_ms"] = summary(lat)
        res["plain_request_errors"] = lat_err
        mach1, fo_cpu1, own1 = machine_cpu_s(), proc_cpu_s(fo.proc.pid), proc_cpu_s(os.getpid())
        t1, t1_ms = time.monotonic(), time.time() * 1000
        m1 = metrics(d)
        c1 = clients.ask("full")
        el = t1 - t0
        res["window_s"] = round(el, 3)
        res["rss_end_kib"] = proc_status_kib(pid, "VmRSS")
        res["rss_window_samples_kib"] = mid_rss
        res["subscribers_metric"] = m1["subscribers"]
        res["channels_metric"] = m1["channels"]
        # ---- dexcache's counters
        res["events_per_s_metric"] = round((m1["events_total"] - m0["events_total"]) / el, 1)
        res["drops_window"] = int(m1["drops_total"] - m0["drops_total"])
        res["polls_per_s_metric"] = round((m1["polls_total"] - m0["polls_total"]) / el, 2)
        res["cpu_pct"] = round((cpu1 - cpu0) / el * 100, 1)
        res["cpu_pct_threads"] = {k: round((th1.get(k, 0) - v) / el * 100, 1) for k, v in th0.items()
                                  if th1.get(k, 0) - v > 0.005 * el}
        res["run_queue_wait_pct_threads"] = {k: round((wait1.get(k, 0) - v) / el * 100, 1) for k, v in wait0.items()
                                             if k in res["cpu_pct_threads"]}
        res["machine_busy_pct"] = round((mach1[0] - mach0[0]) / (mach1[1] - mach0[1]) * 100 * (os.cpu_count() or 1), 1)
        res["origin_cpu_pct"] = round((fo_cpu1 - fo_cpu0) / el * 100, 1)
        res["harness_cpu_pct"] = round((own1 - own0) / el * 100, 1)
        res["loadavg_1m"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        # ---- the clients' counts
        ev = sum(c["events"] for c in c1) - sum(c["events"] for c in c0)
        res["events_per_s_clients"] = round(ev / el, 1)
        per_sub, gaps_w, dups_w, gapped = [], 0, 0, 0
        gaps_all = 0
        for a, b in zip(c0, c1):
            for i in range(len(b["count"])):
                per_sub.append((b["count"][i] - a["count"][i]) / el)
                g = b["gaps_each"][i] - a["gaps_each"][i]
                gaps_w += g
                gapped += g > 0
                dups_w += b["dups_each"][i] - a["dups_each"][i]
            gaps_all += b["gaps"]
        per_sub.sort()
        res["per_subscriber_events_per_s"] = {"min": round(per_sub[0], 2), "p50": round(pct(per_sub, 50), 2),
                                              "max": round(per_sub[-1], 2)} if per_sub else None
        res["gaps_window"] = gaps_w
        res["subscribers_with_gaps_window"] = gapped
        res["gaps_since_connect"] = gaps_all
        res["dups_window"] = dups_w
        res["gaps_per_subscriber_window"] = round(gaps_w / n, 4)
        maxid0, maxid1 = max(c["max_id"] for c in c0), max(c["max_id"] for c in c1)
        res["channel_events_per_s"] = round((maxid1 - maxid0) / el, 2)
        polls = origin_polls(fo, seq0)
        res["polls_per_s_origin"] = round(sum(1 for t, _ in polls if t0_ms <= t < t1_ms) / el, 2)
        res["client_cpu_pct"] = round(sum(b["cpu_s"] - a["cpu_s"] for a, b in zip(c0, c1)) / el * 100, 1)
        # what else ran on the machine (other tenants): busy CPU minus dexcache, clients, origin, harness
        res["other_cpu_pct"] = round(res["machine_busy_pct"] - res["cpu_pct"] - res["client_cpu_pct"] -
                                     res["origin_cpu_pct"] - res["harness_cpu_pct"], 1)
        res["client_reads_per_event"] = round(
            (sum(c["reads"] for c in c1) - sum(c["reads"] for c in c0)) / ev, 3) if ev else None
        res["client_bytes_per_s"] = round((sum(c["bytes"] for c in c1) - sum(c["bytes"] for c in c0)) / el)
        for k in ("closed", "errors", "dropped_events", "bad_status", "connect_errors"):
            res["client_" + k] = sum(c[k] for c in c1)
        res["client_open_end"] = sum(c["open"] for c in c1)
        # fan-out spread of each event delivered entirely in the window: first to last subscriber
        firsts, lasts = {}, {}
        for c in c1:
            for i, (f, l) in c["seen"].items():
                firsts[i] = min(firsts.get(i, f), f)
                lasts[i] = max(lasts.get(i, l), l)
        # only events nobody had when the window opened (receive times were forgotten just before),
        # and not the last two, which may still be arriving when it closed
        ids = [i for i in sorted(firsts) if i > maxid0][:-2]
        spread = sorted((lasts[i] - firsts[i]) * 1000 for i in ids)
        res["fanout_spread_ms"] = {"events": len(spread), "p50": round(pct(spread, 50), 1),
                                   "p99": round(pct(spread, 99), 1), "max": round(spread[-1], 1)} if spread else None
        intervals = sorted((firsts[b] - firsts[a]) * 1000 for a, b in zip(ids, ids[1:]))
        res["event_interval_ms"] = {"p50": round(pct(intervals, 50), 1), "min": round(intervals[0], 1),
                                    "max": round(intervals[-1], 1)} if intervals else None
        # where the time of one period goes: poll arrival at the origin -> first subscriber has the
        # event -> next poll arrival (origin times are wall clock, the clients' are CLOCK_MONOTONIC)
        off_ms = (time.time() - time.monotonic()) * 1000
        arrivals = sorted(t for t, _ in polls)
        res["origin_answer_ms"] = summary([dur for _, dur in polls])
        res["poll_period_ms"] = summary([b - a for a, b in zip(arrivals, arrivals[1:])])
        to_first, to_next = [], []
        for i in ids:
            f = firsts[i] * 1000 + off_ms
            before = [a for a in arrivals if a <= f]
            after = [a for a in arrivals if a > f]
            if before and after:
                to_first.append(f - before[-1])
                to_next.append(after[0] - f)
        res["poll_to_first_delivery_ms"] = summary(to_first)
        res["first_delivery_to_next_poll_ms"] = summary(to_next)
        res["rss_peak_kib"] = sampler.peak()
    finally:
        log("%d subscribers: disconnecting" % n)
        clients.stop()
    wait_for(lambda: metrics(d)["subscribers"] == 0, timeout=30, step=0.25)
    wait_for(lambda: metrics(d)["channels"] == 0, timeout=10, step=0.25)
    m_end = metrics(d)
    res["drops_point"] = int(m_end["drops_total"] - m_conn0["drops_total"])
    res["subscribers_after"] = m_end["subscribers"]
    res["channels_after"] = m_end["channels"]
    time.sleep(1.0)
    res["rss_after_kib"] = proc_status_kib(pid, "VmRSS")
    res["rss_peak_kib"] = max(res.get("rss_peak_kib", 0), sampler.peak())
    return res


# ------------------------------------------------------------------------------- report

def mib(kib):
    return "%.1f" % (kib / 1024.0)


def markdown(res):
    lines = ["## SSE fan-out: one channel, 10 events/s (interval 100 ms, on_change: false)", "",
             "dexcache `%s` (2 workers, access log off), %s, %d cores; fake origin `--lat %s`; "
             "%d client processes (epoll, Python), all on 127.0.0.1; window %g s per point." % (
                 res["binary"], res["date"], res["cores"], res["origin_lat"], res["clients"], res["duration_s"]),
             "",
             "| subscribers | held | events/s delivered (dexcache / clients) | per subscriber events/s "
             "min / p50 / max | channel events/s | upstream polls/s | gaps (missing ids) | drops | "
             "fan-out spread p50 / p99 ms | dexcache CPU % of one core | client CPU % | RSS MiB before / held / "
             "peak / after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in res["points"]:
        if "error" in p:
            lines.append("| %d | error: %s |  |  |  |  |  |  |  |  |  |  |" % (p["subscribers"], p["error"]))
            continue
        ps = p["per_subscriber_events_per_s"] or {}
        fs = p["fanout_spread_ms"] or {}
        lines.append(
            "| %d | %d | %s / %s | %s / %s / %s | %s | %s | %d in window (%d subscribers), %d since connect | %d | "
            "%s / %s | %s | %s | %s / %s / %s / %s |" % (
                p["subscribers"], p["subscribers_metric"], p["events_per_s_metric"], p["events_per_s_clients"],
                ps.get("min"), ps.get("p50"), ps.get("max"), p["channel_events_per_s"], p["polls_per_s_origin"],
                p["gaps_window"], p["subscribers_with_gaps_window"], p["gaps_since_connect"], p["drops_point"],
                fs.get("p50"), fs.get("p99"), p["cpu_pct"], p["client_cpu_pct"], mib(p["rss_before_kib"]),
                mib(p["rss_connected_kib"]), mib(p["rss_peak_kib"]), mib(p["rss_after_kib"])))
    lines.append("")
    for p in res["points"]:
        if "error" in p:
            continue
        lines.append("- %d subscribers: connected in %.1f s; dexcache threads %s; RSS end of window %s MiB; "
                     "polls/s (dexcache) %s; events between firsts p50 %s ms; client reads per event %s, "
                     "%.1f MB/s; server closes %d, `event: dropped` %d, duplicates %d." % (
                         p["subscribers"], p["connect_s"],
                         ", ".join("%s %s%%" % kv for kv in sorted(p["cpu_pct_threads"].items())),
                         mib(p["rss_end_kib"]), p["polls_per_s_metric"],
                         (p["event_interval_ms"] or {}).get("p50"), p["client_reads_per_event"],
                         p["client_bytes_per_s"] / 1e6, p["client_closed"], p["client_dropped_events"],
                         p["dups_window"]))
        lines.append("  Machine busy %s%% of %d%% (dexcache %s, clients %s, origin %s, harness %s, other processes %s); "
                     "dexcache threads waiting for a CPU: %s; load average %s." % (
                         p["machine_busy_pct"], 100 * res["cores"], p["cpu_pct"], p["client_cpu_pct"],
                         p["origin_cpu_pct"], p["harness_cpu_pct"], p["other_cpu_pct"],
                         ", ".join("%s %s%%" % kv for kv in sorted(p["run_queue_wait_pct_threads"].items())),
                         " -> ".join(str(x) for x in p["loadavg_1m"])))
        lines.append("  A plain request (404 from dexcache itself, new connection, 10/s) meanwhile: p50 %s ms, "
                     "p99 %s ms, max %s ms." % tuple((p["plain_request_ms"] or {}).get(k) for k in ("p50", "p99", "max")))
        lines.append("  Poll period p50 / max %s / %s ms = origin arrival to first subscriber p50 %s ms (origin "
                     "answers in p50 %s ms) + first subscriber to next poll p50 %s ms." % (
                         (p["poll_period_ms"] or {}).get("p50"), (p["poll_period_ms"] or {}).get("max"),
                         (p["poll_to_first_delivery_ms"] or {}).get("p50"), (p["origin_answer_ms"] or {}).get("p50"),
                         (p["first_delivery_to_next_poll_ms"] or {}).get("p50")))
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", default="1000,10000", help="subscriber counts, comma-separated (default 1000,10000)")
    ap.add_argument("--subscribers", type=int, default=None, help="the largest point (default 10000)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds measured per point (default 20)")
    ap.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    ap.add_argument("--origin-lat", default="fixed=0",
                    help="the fake origin's --lat (default fixed=0; 'default' = its own profiles)")
    ap.add_argument("--out", default=None, help="JSON output (default bench/results/sse-<date>.json)")
    args = ap.parse_args()
    points = [int(x) for x in args.points.split(",") if x.strip()]
    if args.subscribers is not None:
        points = sorted({p for p in points if p < args.subscribers} | {args.subscribers})
    out = args.out or os.path.join(BENCH, "results", "sse-%s.json" % time.strftime("%Y-%m-%d"))
    if not os.access(BIN, os.X_OK):
        sys.exit("sse_figures: no dexcache binary at %s (make build, or set DEXCACHE_BIN)" % BIN)
    nofile = raise_nofile()
    if nofile[0] < max(points) // max(1, args.clients) + 100:
        sys.exit("sse_figures: open-files limit %d too low for %d subscribers per client process" %
                 (nofile[0], max(points) // args.clients))

    def on_term(signum, frame):
        raise SystemExit("sse_figures: signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)

    fo_args = [] if args.origin_lat == "default" else ["--lat", args.origin_lat]
    fo = FakeOrigin(args=fo_args, profiles=("jup",))
    d = None
    sampler = None
    res = {"binary": os.path.relpath(BIN, ROOT) if BIN.startswith(ROOT) else BIN,
           "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cores": os.cpu_count(), "clients": args.clients,
           "duration_s": args.duration, "origin_lat": args.origin_lat, "interval_ms": INTERVAL_MS,
           "stream_path": STREAM_PATH, "nofile": list(nofile), "points": []}
    try:
        fo.start()
        d = Dexcache(CONFIG % {"jup": fo.url("jup"), "interval": INTERVAL_MS}).start()
        with open("/proc/%d/limits" % d.proc.pid) as f:
            res["dexcache_nofile"] = [l.split()[3:5] for l in f if l.startswith("Max open files")][0]
        sampler = RssSampler(d.proc.pid)
        res["rss_start_kib"] = proc_status_kib(d.proc.pid, "VmRSS")
        for n in points:
            try:
                res["points"].append(measure_point(d, fo, n, args, sampler))
            except (RuntimeError, OSError) as e:
                log("%d subscribers: %s" % (n, e))
                res["points"].append({"subscribers": n, "error": str(e)[:300]})
            if d.proc.poll() is not None:
                raise RuntimeError("dexcache exited with %s:\n%s" % (d.proc.returncode, d.stderr()[-3000:]))
        res["rss_hwm_kib"] = proc_status_kib(d.proc.pid, "VmHWM")
    finally:
        if sampler is not None:
            sampler.stop()
        if d is not None:
            try:
                rc = d.stop()
                res["dexcache_exit"] = rc
                err = d.stderr()
                res["dexcache_stderr_tail"] = err[-2000:]
            except Exception as e:  # keep stopping the origin
                log("stopping dexcache: %r" % e)
            shutil.rmtree(d.workdir, ignore_errors=True)
        fo.stop()
    md = markdown(res)
    res["markdown"] = md
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=2, sort_keys=True)
    print(md)
    log("JSON written to %s" % out)
    return 1 if any("error" in p for p in res["points"]) else 0


if __name__ == "__main__":
    sys.exit(main())
