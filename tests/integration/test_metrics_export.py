"""/metrics as Prometheus reads it: `promtool check metrics` clean after hits, misses, a 429 and
upstream errors; the request and upstream duration histograms count exactly the requests made;
process_* and dexcache_build_info; and every metric the Grafana dashboard and the alert rules in
conf/grafana/ name is one dexcache exports (`promtool check rules` clean)."""
import json
import os
import re
import shutil
import subprocess
import time

import pytest
import requests

from dexcache import Dexcache, PREAMBLE, free_port, wait_for
from sse_client import SSEClient

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
DASHBOARD = os.path.join(ROOT, "conf", "grafana", "dexcache.json")
ALERTS = os.path.join(ROOT, "conf", "grafana", "alerts.yaml")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (apt package prometheus)")

MINT = "So11111111111111111111111111111111111111112"

CONFIG = PREAMBLE + """
upstreams:
  jupiter: {{ url: "%(jup)s", retries: 0, rate: [50/1s], queue: {{ max: 10, timeout: 5s }} }}
  dead: {{ url: "http://127.0.0.1:%(dead)d", retries: 0 }}
  paced: {{ url: "%(jup)s", retries: 0, rate: [1/60s], queue: {{ max: 0, timeout: 1s }} }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache:
      - {{ path: /price/v3, ttl: 5m, key_sets: [ids] }}
  - prefix: /lim
    upstream: jupiter
    limit: {{ rate: 1/60s, burst: 1, by: client }}
  - prefix: /dead
    upstream: dead
    cache:
      - {{ path: /, ttl: 5m }}
  - prefix: /paced
    upstream: paced
%(redis)s
streams:
  - {{ path: /jup/stream/price, upstream: jupiter, upstream_path: /price/v3, interval: 1s }}
"""


def start(fake, redis=None):
    extra = 'redis: {{ url: "redis://127.0.0.1:%d/0" }}' % redis.port if redis is not None else ""
    return Dexcache(CONFIG % {"jup": fake.url("jup"), "dead": free_port(), "redis": extra}).start()


def samples(text):
    """{(name, frozenset(labels)): value} of every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        name, _, rest = key.partition("{")
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', rest))
        out[(name, labels)] = float(value)
    return out


def histogram(text, name, **labels):
    """(buckets [(le, cumulative count)], sum, count) of one histogram series."""
    want = set(labels.items())
    s = samples(text)
    buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in s.items()
                      if k[0] == name + "_bucket" and want == set(k[1]) - {("le", dict(k[1])["le"])}))
    key = frozenset(want)
    return buckets, s.get((name + "_sum", key)), s.get((name + "_count", key))


def check_histogram(text, name, count, **labels):
    buckets, total, n = histogram(text, name, **labels)
    assert buckets, (name, labels)
    assert buckets[-1][0] == float("inf") and buckets[-1][1] == n == count, (name, labels, buckets, n)
    assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), buckets  # cumulative
    assert total is not None and total > 0
    return buckets


def promtool_check_metrics(text):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    return p.returncode, (p.stdout + p.stderr).decode()


def test_histograms_exact_and_promtool_clean(fake, origin):
    d = start(fake)
    try:
        price = d.url + "/jup/price/v3?ids=" + MINT
        assert requests.get(price).headers["X-Cache"] == "MISS"
        for _ in range(3):
            assert requests.get(price).headers["X-Cache"] == "HIT"
        r = requests.get(d.url + "/lim/echo")
        assert r.status_code == 200 and r.headers["X-Cache"] == "BYPASS"
        assert requests.get(d.url + "/lim/echo").status_code == 429
        assert requests.get(d.url + "/dead/x").status_code == 502  # cacheable, origin refuses: no stale copy
        assert requests.get(d.url + "/nothing").status_code == 404
        assert requests.get(d.url + "/paced/echo").status_code == 200
        r = requests.get(d.url + "/paced/echo")  # no slot for a minute, no queue: refused by the budget
        assert r.status_code == 503 and r.headers["Retry-After"]

        want = {("/jup", "miss"): 1, ("/jup", "hit"): 3, ("/lim", "bypass"): 1, ("/lim", "none"): 1,
                ("/dead", "none"): 1, ("none", "none"): 1, ("/paced", "bypass"): 2}

        def counts():
            s = samples(d.metrics())
            return {(dict(k[1])["route"], dict(k[1])["cache_status"]): v for k, v in s.items()
                    if k[0] == "dexcache_request_duration_seconds_count"}
        # a request is counted when h2o disposes of it, a moment after its client read the last byte
        assert wait_for(lambda: counts() == want, timeout=10), counts()
        text = d.metrics()
        for (route, cs), n in want.items():
            check_histogram(text, "dexcache_request_duration_seconds", n, route=route, cache_status=cs)
        # upstream: whole exchange and head latency, one observation per fetch; the refused
        # connection has a duration but no head; the budget's refusal never left (no head either)
        check_histogram(text, "dexcache_upstream_duration_seconds", 2, upstream="jupiter")
        check_histogram(text, "dexcache_upstream_latency_seconds", 2, upstream="jupiter")
        check_histogram(text, "dexcache_upstream_duration_seconds", 1, upstream="dead")
        assert histogram(text, "dexcache_upstream_latency_seconds", upstream="dead")[2] == 0
        check_histogram(text, "dexcache_upstream_duration_seconds", 2, upstream="paced")
        assert histogram(text, "dexcache_upstream_latency_seconds", upstream="paced")[2] == 1
        s = samples(text)
        assert s[("dexcache_limited_total", frozenset({("route", "/lim")}))] == 1
        assert s[("dexcache_upstream_budget_rejected_total", frozenset({("upstream", "paced")}))] == 1
        assert s[("dexcache_upstream_budget_queue", frozenset({("upstream", "paced")}))] == 0
        # 1/60s less the pacing slack (2%..10%)
        assert 1 / 60 / 1.1 <= s[("dexcache_upstream_budget_rate", frozenset({("upstream", "paced")}))] <= 1 / 60
        assert ("dexcache_upstream_budget_rate", frozenset({("upstream", "dead")})) not in s  # no rate: no budget
        build = [k for k in s if k[0] == "dexcache_build_info"]
        assert len(build) == 1 and s[build[0]] == 1
        assert {"version", "abi", "h2o", "curl"} <= {k for k, _ in build[0][1]}

        # process_*: this process's figures, as /proc shows them from outside
        pid = d.proc.pid
        with open("/proc/%d/limits" % pid) as f:
            soft = re.search(r"^Max open files\s+(\d+)", f.read(), re.M).group(1)
        assert s[("process_max_fds", frozenset())] == int(soft)
        assert abs(s[("process_open_fds", frozenset())] - len(os.listdir("/proc/%d/fd" % pid))) <= 8
        with open("/proc/%d/statm" % pid) as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        assert 0.5 * rss <= s[("process_resident_memory_bytes", frozenset())] <= 2 * rss
        assert s[("process_virtual_memory_bytes", frozenset())] >= s[("process_resident_memory_bytes", frozenset())]
        assert s[("process_cpu_seconds_total", frozenset())] > 0
        uptime = s[("dexcache_uptime_seconds", frozenset())]
        started = s[("process_start_time_seconds", frozenset())]
        assert time.time() - uptime - 30 <= started <= time.time() - uptime + 2

        if PROMTOOL is None:
            pytest.skip("promtool not installed (apt package prometheus): exposition format not checked")
        rc, out = promtool_check_metrics(text)
        assert rc == 0 and out.strip() == "", out
    finally:
        d.stop()


# PromQL words that are not metric names
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values", "group",
    "rate", "irate", "increase", "delta", "idelta", "deriv", "histogram_quantile", "clamp_min", "clamp_max", "abs",
    "absent", "avg_over_time", "max_over_time", "min_over_time", "sum_over_time", "label_replace", "vector",
    "scalar", "time", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
    "offset", "label_values", "humanizePercentage", "humanizeDuration", "inf", "nan",
}


def metric_names(expr):
    """Metric names an expression selects: strings, label matchers, grouping label lists, ranges,
    Grafana variables and numbers removed; what is left and is not a PromQL word is a metric."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\$\w+", " ", e)
    e = re.sub(r"\b\d+(\.\d+)?(e-?\d+)?\b", " ", e)
    return {t for t in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", e) if t not in PROMQL_WORDS}


def dashboard_exprs():
    with open(DASHBOARD) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"] for v in dash.get("templating", {}).get("list", []) if v.get("type") == "query"]
    return dash, exprs


def alert_exprs():
    # the rules file is YAML; its expressions are the `expr:` values (plain or block scalars)
    exprs, cur = [], None
    with open(ALERTS) as f:
        for line in f:
            m = re.match(r"^(\s*)expr:\s*(\|)?\s*(.*)$", line)
            if m:
                if cur is not None:
                    exprs.append(" ".join(cur))
                cur = None if not m.group(2) else []
                if not m.group(2):
                    exprs.append(m.group(3))
                else:
                    indent = len(m.group(1))
                continue
            if cur is not None:
                if line.strip() == "" or len(line) - len(line.lstrip()) > indent:
                    cur.append(line.strip())
                else:
                    exprs.append(" ".join(cur))
                    cur = None
    if cur is not None:
        exprs.append(" ".join(cur))
    return exprs


def test_metric_names_parser():
    assert metric_names('sum by (le, upstream) (rate(x_bucket{code=~"a|b"}[5m])) / on (job) y > 0.5') == \
        {"x_bucket", "y"}
    assert metric_names("label_values(dexcache_build_info, job)") == {"dexcache_build_info", "job"}


def test_every_dashboard_selector_filters_on_job():
    """The dashboard's $job variable (several dexcache jobs in one Prometheus) applies to every
    panel: each selector of each panel query carries job=~"$job", inside rate() and
    histogram_quantile() too (it was only on the Process panel's)."""
    dash, _ = dashboard_exprs()
    var = [v for v in dash["templating"]["list"] if v["name"] == "job"]
    assert len(var) == 1 and var[0]["multi"] and var[0]["allValue"] == ".*"
    n = 0
    for p in dash["panels"]:
        assert p.get("targets"), p["title"]
        for t in p["targets"]:
            expr = t["expr"]
            names = metric_names(expr)
            assert names, expr
            for name in names:
                sels = re.findall(r'(?<![A-Za-z0-9_:"])%s(?![A-Za-z0-9_:])(\{[^}]*\})?' % re.escape(name), expr)
                assert sels, (name, expr)
                for braces in sels:
                    n += 1
                    assert braces.startswith("{") and 'job=~"$job"' in braces, (p["title"], name, expr)
    assert n >= 40, n  # 44 selectors in 34 queries today


def test_dashboard_and_alerts_name_exported_metrics(fake, origin, redis_server):
    dash, dexprs = dashboard_exprs()
    titles = {p["title"] for p in dash["panels"]}
    assert {"Hit ratio", "Origin requests saved", "Upstream budget use and queue", "429s", "Stale served",
            "Request latency p50 / p99", "Redis state", "SSE subscribers"} <= titles
    aexprs = alert_exprs()
    assert len(aexprs) == 7, aexprs
    names = set()
    for e in dexprs + aexprs:
        names |= metric_names(e)
    names.discard("job")  # label_values(metric, job): a label, not a metric
    assert len(names) >= 25, names
    if PROMTOOL is not None:
        p = subprocess.run([PROMTOOL, "check", "rules", ALERTS], capture_output=True, timeout=30)
        assert p.returncode == 0, (p.stdout + p.stderr).decode()

    d = start(fake, redis_server)
    sub = None
    try:
        # traffic that makes the labelled series exist: a miss, a hit, a 429, an upstream failure,
        # an event-stream subscriber
        price = d.url + "/jup/price/v3?ids=" + MINT
        requests.get(price)
        requests.get(price)
        requests.get(d.url + "/lim/echo")
        assert requests.get(d.url + "/lim/echo").status_code == 429
        assert requests.get(d.url + "/dead/x").status_code == 502
        sub = SSEClient("127.0.0.1", d.port, "/jup/stream/price?ids=" + MINT)
        assert wait_for(lambda: d.metric("dexcache_sse_subscribers") == 1, timeout=10)
        assert wait_for(lambda: d.metric("dexcache_redis_connections_up") == 2, timeout=10)
        text = d.metrics()
        assert d.metric("dexcache_redis_connections") == 2
        families = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        exported = set(families)
        for fam, kind in families.items():
            if kind == "histogram":
                exported |= {fam + "_bucket", fam + "_sum", fam + "_count"}
        missing = sorted(names - exported)
        assert not missing, missing
        # each labelled series a panel or rule groups by exists after this traffic
        present = {k[0] for k in samples(text)}
        assert not sorted(names - present), sorted(names - present)
    finally:
        if sub is not None:
            sub.close()
        d.stop()
