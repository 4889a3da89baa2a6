"""Redis faults under a steady client load, against a fleet of two real dexcache instances and a real
redis-server: frozen (SIGSTOP), killed and restarted, FLUSHALL, SCRIPT FLUSH.

What these add to tests/integration/test_fleet.py (which covers the basic kill / pause / script
flush cases without load): /health must tell the truth for the whole fault (a frozen Redis still
accepts TCP connections, so "connected" proves nothing), clients must not wait on a Redis that does
not answer (latency bound during the freeze), no 5xx ever, limits still enforced by Redis after
each fault, and no pile-up of connections in Redis after a freeze."""
import socket
import threading
import time

import requests

from advlib import scale
from dexcache import Dexcache, PREAMBLE, wait_for

COMMAND_TIMEOUT = 0.5  # proxy/redis default (dc_redis_opts_t.command_timeout_ms)

CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "dcadv:" }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - prefix: /lim
    upstream: jupiter
    limit: {{ rate: 3/60s, burst: 3, by: "header:x-api-key" }}
  - prefix: /jup
    upstream: jupiter
    cache: [ {{ path: /price/v3, ttl: 1s }} ]
    limit: {{ rate: 100000/1s, burst: 100000, by: "header:x-api-key" }}
"""


# ---- a minimal RESP client, for what RedisServer.command (first line only) cannot read ----

def _read_reply(f):
    line = f.readline()
    if not line:
        raise OSError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind in (b"+", b"-"):
        return rest.decode()
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        return data[:-2].decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [_read_reply(f) for _ in range(n)]
    raise OSError("bad RESP line %r" % line)


def resp(redis_server, *args, timeout=2):
    with socket.create_connection(("127.0.0.1", redis_server.port), timeout=timeout) as s:
        s.sendall(b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a.encode()), a.encode())
                                                    for a in args))
        with s.makefile("rb") as f:
            return _read_reply(f)


def redis_clients(redis_server):
    """Connections Redis has, not counting the one asking."""
    return len([l for l in resp(redis_server, "CLIENT", "LIST").splitlines() if l.strip()]) - 1


def eval_calls(redis_server):
    """How many times Redis ran EVAL (the NOSCRIPT fallback sends EVAL; the normal path EVALSHA)."""
    for line in resp(redis_server, "INFO", "commandstats").splitlines():
        if line.startswith("cmdstat_eval:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


# ---- load and health sampling ----

class Load:
    """One thread per instance, each a bounded loop of requests (cached price lookups, which read
    L2 and take fleet locks on a miss, and uncached echoes, which take a Redis GCRA decision each).
    Records (start time, latency, status or exception) for every request."""

    def __init__(self, ds, max_requests=scale(20000, 200000), max_seconds=scale(60, 300)):
        self.ds = ds
        self.stop_evt = threading.Event()
        self.samples = []
        self.lock = threading.Lock()
        self.max_requests = max_requests
        self.max_seconds = max_seconds
        self.threads = [threading.Thread(target=self._run, args=(d, i), daemon=True) for i, d in enumerate(ds)]

    def _run(self, d, n):
        s = requests.Session()
        deadline = time.time() + self.max_seconds
        for i in range(self.max_requests):
            if self.stop_evt.is_set() or time.time() > deadline:
                break
            path = "/jup/price/v3?ids=m%d" % (i % 40) if i % 2 else "/jup/echo?n=%d" % n
            t0 = time.time()
            try:
                r = s.get(d.url + path, headers={"x-api-key": "load"}, timeout=10)
                out = r.status_code
            except requests.RequestException as e:
                out = repr(e)
            with self.lock:
                self.samples.append((t0, time.time() - t0, out))

    def start(self):
        for t in self.threads:
            t.start()
        assert wait_for(lambda: len(self.samples) >= 20, timeout=10)
        return self

    def stop(self):
        self.stop_evt.set()
        for t in self.threads:
            t.join(15)
        assert not any(t.is_alive() for t in self.threads)

    def bad(self):
        """Every client-visible failure: a 5xx, or no answer at all."""
        with self.lock:
            return [(round(t, 2), out) for t, _, out in self.samples if not isinstance(out, int) or out >= 500]

    def latencies(self, t_from, t_to):
        with self.lock:
            return sorted(dt for t, dt, _ in self.samples if t_from <= t < t_to)

    def count(self):
        with self.lock:
            return len(self.samples)


def p99(values):
    return values[min(len(values) - 1, int(len(values) * 0.99))] if values else 0.0


def sample_health(ds, seconds, step=0.1):
    """Poll /health of every instance every `step` s for `seconds`; returns [(t, [status...])]."""
    out = []
    end = time.time() + seconds
    while time.time() < end:
        t = time.time()
        out.append((t, [(h["status"], h["redis"]) for h in (d.health() for d in ds)]))
        time.sleep(max(0.0, step - (time.time() - t)))
    return out


def all_ok(ds):
    return all(h["status"] == "ok" and h["redis"] == "up" for h in (d.health() for d in ds))


def start_fleet(fake, redis_server, n=2):
    conf = CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url}
    ds = []
    try:
        for _ in range(n):
            ds.append(Dexcache(conf).start())
        assert wait_for(lambda: all(d.health()["redis"] == "up" and d.health()["instances"] == n for d in ds),
                        timeout=15), [d.health() for d in ds]
        assert wait_for(lambda: all_ok(ds), timeout=10), [d.health() for d in ds]
    except BaseException:
        for d in ds:
            d.stop()
        raise
    return ds


def limit_enforced(ds, client):
    """3 per minute for `client`, fleet-wide, decided in Redis: round-robin over the instances, the
    4th and 5th requests are refused whichever instance gets them."""
    codes = [requests.get(ds[i % len(ds)].url + "/lim/echo", headers={"x-api-key": client}, timeout=10).status_code
             for i in range(5)]
    return codes


def setup_failures(ds):
    """Log lines of SCRIPT LOADs that failed (timed out) on reconnects, over the instances."""
    return sum(d.stderr().count("SCRIPT LOAD failed") for d in ds)


# ---- tests ----

def test_frozen_redis_reported_down_for_the_whole_freeze(fake, origin, redis_server):
    """SIGSTOP Redis for 5 s under load: /health is not ok for the whole freeze (after the first
    command timeout), ok again within 2 s of SIGCONT; no 5xx; no client waited much longer than
    one command timeout; Redis holds as many dexcache connections afterwards as before."""
    ds = start_fleet(fake, redis_server)
    load = Load(ds)
    frozen = False
    try:
        clients_before = redis_clients(redis_server)
        # per instance: each worker's command and subscriber connections, and the bus's two
        assert clients_before == len(ds) * (2 * 2 + 2)
        load.start()
        # freeze as soon as the load runs: lock commands are then in flight when Redis stops, and a
        # frozen Redis runs them after their senders gave up (locks nobody releases: before fleet
        # locks were leases, a request arriving just after SIGCONT waited for one for over 10 s)
        assert wait_for(lambda: load.count() >= 50, timeout=10)
        served_before = load.count()

        redis_server.pause()
        frozen = True
        t_stop = time.time()
        samples = sample_health(ds, 5.0)
        redis_server.resume()
        frozen = False
        t_cont = time.time()
        assert wait_for(lambda: all_ok(ds), timeout=5, step=0.05), [d.health() for d in ds]
        back_s = time.time() - t_cont
        recovered = load.count()
        assert wait_for(lambda: load.count() >= recovered + 50, timeout=10)  # load goes on, recovered Redis
        load.stop()

        # From the first command timeout on (the first sample not ok), no sample is ok until SIGCONT.
        # That first timeout comes at most one keepalive interval (1 s, checked every 0.25 s) plus
        # one command timeout after the freeze began: a connection with no command to send (the
        # load is served by local limit leases and cache hits most of the time) is probed.
        rel = [(round(t - t_stop, 2), s) for t, s in samples]
        first_down = next((t for t, s in rel if all(st != "ok" for st, _ in s)), None)
        ok_after = [(t, s) for t, s in rel if first_down is not None and t >= first_down
                    and any(st == "ok" or r == "up" for st, r in s)]
        ok_seconds = 0.1 * len([s for t, s in samples if any(st == "ok" for st, _ in s)])
        lat = load.latencies(t_stop, t_cont)
        print("freeze: %d health samples, %.1f s reported ok (first down at %s s); back ok %.2f s after SIGCONT; "
              "%d requests during the freeze, p99 %.3f s, max %.3f s; setup failures logged %d; clients before %d"
              % (len(samples), ok_seconds, first_down, back_s, len(lat), p99(lat), lat[-1] if lat else 0,
                 setup_failures(ds), clients_before))
        assert first_down is not None and first_down <= 1.0 + 0.25 + COMMAND_TIMEOUT + 0.5, rel
        assert ok_after == [], rel
        assert back_s < 2.0
        assert load.bad() == []
        assert load.count() > served_before + 50  # kept serving through the freeze
        assert len(lat) >= 20
        assert p99(lat) < COMMAND_TIMEOUT + 0.5, lat[-20:]
        assert lat[-1] < COMMAND_TIMEOUT + 1.0, lat[-20:]
        # every connection given up during the freeze was closed: nothing piles up in Redis
        assert wait_for(lambda: redis_clients(redis_server) == clients_before, timeout=5), \
            (redis_clients(redis_server), clients_before, resp(redis_server, "CLIENT", "LIST"))
        # and Redis decides the limits again
        assert limit_enforced(ds, "after-freeze") == [200, 200, 200, 429, 429]
    finally:
        load.stop_evt.set()
        if frozen:
            redis_server.resume()
        for d in ds:
            d.stop()


def test_redis_flushed_and_killed_under_load(fake, origin, redis_server):
    """Under load: FLUSHALL (buckets, L2 and locks gone), SCRIPT FLUSH (every EVALSHA gets NOSCRIPT
    and falls back to EVAL), then Redis killed and restarted empty. No 5xx at any point, /health
    not ok while Redis is away and ok within 2 s of its return, and after each fault the limits
    are decided in Redis again (exact fleet-wide counts, no local fallback)."""
    ds = start_fleet(fake, redis_server)
    load = Load(ds)
    try:
        load.start()
        assert limit_enforced(ds, "c0") == [200, 200, 200, 429, 429]

        assert redis_server.command("FLUSHALL") == "+OK"
        flushed = load.count()
        assert wait_for(lambda: load.count() >= flushed + 30, timeout=10)  # served on the emptied Redis
        assert all_ok(ds), [d.health() for d in ds]
        # (c0 stays refused: each instance remembers a refusal until its retry time, without Redis)
        assert limit_enforced(ds, "c0b") == [200, 200, 200, 429, 429]

        evals = eval_calls(redis_server)
        fallbacks = sum(d.metric("dexcache_limit_fallbacks_total") for d in ds)
        assert redis_server.command("SCRIPT", "FLUSH") == "+OK"
        assert limit_enforced(ds, "c1") == [200, 200, 200, 429, 429]
        assert eval_calls(redis_server) > evals  # the NOSCRIPT path ran
        assert sum(d.metric("dexcache_limit_fallbacks_total") for d in ds) == fallbacks
        assert all_ok(ds), [d.health() for d in ds]

        redis_server.kill()
        t_kill = time.time()
        samples = sample_health(ds, 2.0)
        redis_server.start()
        t_back = time.time()
        assert wait_for(lambda: all_ok(ds), timeout=5, step=0.05), [d.health() for d in ds]
        back_s = time.time() - t_back
        # the restarted Redis is empty: scripts are loaded again by each connection's setup
        assert limit_enforced(ds, "c2") == [200, 200, 200, 429, 429]
        restarted = load.count()
        assert wait_for(lambda: load.count() >= restarted + 30, timeout=10)
        load.stop()

        settled = [s for t, s in samples if t >= t_kill + 0.3]
        lat = load.latencies(t_kill, t_back)
        print("kill: back ok %.2f s after restart; %d requests while Redis was away, p99 %.3f s"
              % (back_s, len(lat), p99(lat)))
        assert settled and all(all(st != "ok" and r == "down" for st, r in s) for s in settled), samples
        assert back_s < 2.0
        assert p99(lat) < COMMAND_TIMEOUT  # refused connections: nothing to wait for
        assert load.bad() == []
    finally:
        load.stop_evt.set()
        for d in ds:
            d.stop()
