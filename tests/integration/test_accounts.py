"""Accounts, endpoint groups and path weights (issue 17) with three real dexcache instances sharing
a real redis-server in front of the fake origin. What the origin records (its request ring: time,
path, API key) is what is asserted: in every sliding window, each account's weighted count and each
group's count stay within their rates, and the load used those budgets."""
import threading
import time
import urllib.parse

import requests

from dexcache import Dexcache, PREAMBLE, wait_for, start_fleet

WINDOW_MS = 2000  # the fake origin runs with --keys k1,k2,k3 (fixtures.py)
ACCOUNTS = {"org1": (["k1", "k2"], 20), "org2": (["k3"], 12)}  # keys, limit per 2 s
WALLET = 6   # per account, per 2 s; counts in the account's budget too
EXECUTE = 4  # per account, per 2 s; separate: its own bucket only
HEAVY = 2    # weight of /heavy/*

CONFIG = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "%(prefix)s" }}
upstreams:
  jupiter:
    url: "%(jup)s"
    accounts:
      - {{ name: org1, keys: [k1, k2], rate: 20/2s }}
      - {{ name: org2, keys: [k3], rate: 12/2s }}
    groups:
      - {{ name: wallet, paths: ["/v1/wallet/*"], rate: 6/2s }}
      - {{ name: execute, paths: [/exec], rate: 4/2s, separate: true }}
    weights: {{ "/heavy/*": 2 }}
    queue: {{ max: 400, timeout: 2s }}
    retries: 0
routes:
  - {{ prefix: /jup, upstream: jupiter }}
"""


def fleet(fake, redis_server, prefix, n=3):
    conf = CONFIG % {"jup": fake.url("jup"), "redis": redis_server.url, "prefix": prefix}
    return start_fleet(conf, n, timeout=10)


def worst_window(events, width_ms):
    """Largest sum of weights in any half-open window [t, t + width) (t over the event times).
    events: (t_ms, weight)."""
    ev = sorted(events)
    worst, j, s = 0, 0, 0
    for i, (t, _) in enumerate(ev):
        while j < len(ev) and ev[j][0] < t + width_ms:
            s += ev[j][1]
            j += 1
        worst = max(worst, s)
        s -= ev[i][1]
    return worst


def kind_of(path):
    if path.startswith("/v1/wallet/"):
        return "wallet"
    if path == "/exec":
        return "execute"
    if path.startswith("/heavy/"):
        return "heavy"
    return "plain"


def test_account_and_group_budgets_hold_in_every_window(fake, origin, redis_server):
    ds = fleet(fake, redis_server, "dcacc1:")
    try:
        offered, seconds = 40, 8  # client requests/s round-robin over 3 instances: well above every budget
        mix = ["plain", "heavy", "plain", "wallet", "heavy", "execute", "plain", "wallet"]
        paths = {"plain": "/echo", "heavy": "/heavy/x", "wallet": "/v1/wallet/balance", "execute": "/exec"}
        total = offered * seconds
        out = [None] * total

        def one(i):
            try:
                r = requests.get(ds[i % 3].url + "/jup" + paths[mix[i % len(mix)]] + "?u=%d" % i, timeout=15)
                out[i] = r.status_code
            except requests.RequestException as e:
                out[i] = repr(e)

        threads = []
        t0 = time.monotonic() + 0.2
        for i in range(total):
            delay = t0 + i / offered - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            t = threading.Thread(target=one, args=(i,), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(20)
        assert all(o is not None for o in out), "client threads did not finish"
        statuses = {}
        for o in out:
            statuses[o] = statuses.get(o, 0) + 1
        # the fake answers 404 to the paths it does not know; dexcache refuses with 503 what has no slot
        assert set(statuses) <= {200, 404, 503}, statuses

        recs = origin.requests(0)
        st = origin.stats()["jup"]
        assert len(recs) == st["total"], (len(recs), st["total"])
        assert len(recs) == sum(statuses.get(s, 0) for s in (200, 404)), (len(recs), statuses)
        key_account = {k: a for a, (keys, _) in ACCOUNTS.items() for k in keys}
        acct_ev = {a: [] for a in ACCOUNTS}
        group_ev = {(a, g): [] for a in ACCOUNTS for g in ("wallet", "execute")}
        for r in recs:
            a = key_account.get(r["api_key"])
            assert a is not None, r  # every request carried one of the accounts' keys
            k = kind_of(r["path"])
            if k == "execute":
                group_ev[(a, "execute")].append((r["t_ms"], 1))
                continue  # separate: not in the account's count
            acct_ev[a].append((r["t_ms"], HEAVY if k == "heavy" else 1))
            if k == "wallet":
                group_ev[(a, "wallet")].append((r["t_ms"], 1))

        report = {}
        for a, (_, limit) in ACCOUNTS.items():
            ev = acct_ev[a]
            worst = worst_window(ev, WINDOW_MS)
            span = max(t for t, _ in ev) - min(t for t, _ in ev)
            used = sum(w for _, w in ev)
            report[a] = (worst, used, round(limit * span / WINDOW_MS, 1), span)
        for (a, g), ev in group_ev.items():
            worst = worst_window(ev, WINDOW_MS)
            span = max(t for t, _ in ev) - min(t for t, _ in ev) if ev else 0
            limit = WALLET if g == "wallet" else EXECUTE
            report[(a, g)] = (worst, len(ev), round(limit * span / WINDOW_MS, 1), span)
        # possible: the rate over the span the origin saw traffic in (budgets pace, they do not burst)
        print("statuses %s; (worst window, used, possible, span ms) %s" % (statuses, report))  # on failure

        # never more than the rate in any sliding window, exact, at the origin
        for a, (_, limit) in ACCOUNTS.items():
            assert report[a][0] <= limit, (a, report[a])
            assert report[(a, "wallet")][0] <= WALLET, (a, report[(a, "wallet")])
            assert report[(a, "execute")][0] <= EXECUTE, (a, report[(a, "execute")])
        # the budgets were used, not idle: every account and the separate group at >= 80% of the possible,
        # over a span that covers the load (8 s offered, then up to the 2 s queue)
        for a in ACCOUNTS:
            assert report[a][3] >= 0.9 * seconds * 1000, (a, report[a])
            assert report[a][1] >= 0.8 * report[a][2], (a, report[a])
            assert report[(a, "execute")][1] >= 0.8 * report[(a, "execute")][2], (a, report[(a, "execute")])
            assert report[(a, "wallet")][1] >= 1, (a, report[(a, "wallet")])
        # the weights counted: heavy requests reached the origin, as did plain ones, on both accounts
        for a in ACCOUNTS:
            assert any(w == HEAVY for _, w in acct_ev[a]) and any(w == 1 for _, w in acct_ev[a]), a
        # and the overload was refused, not sent: far more offered than the budgets allow
        assert statuses.get(503, 0) > total // 3, statuses
    finally:
        for d in ds:
            d.stop()


CONFIG_429 = PREAMBLE + """
redis: {{ url: "%(redis)s", prefix: "%(prefix)s" }}
upstreams:
  jupiter:
    url: "%(jup)s"
    accounts:
      - {{ name: org1, keys: [k1], rate: 50/1s }}
    groups:
      - {{ name: wallet, paths: ["/v1/wallet/*"], rate: 20/1s }}
    queue: {{ max: 100, timeout: 1s }}
    retries: 0
routes:
  - {{ prefix: /jup, upstream: jupiter }}
"""


def test_429_on_a_group_pauses_the_group_fleet_wide_not_the_account(fake, origin, redis_server):
    conf = CONFIG_429 % {"jup": fake.url("jup"), "redis": redis_server.url, "prefix": "dcacc2:"}
    ds = []
    try:
        for _ in range(2):
            ds.append(Dexcache(conf).start())
        assert wait_for(lambda: all(d.health()["redis"] == "up" and d.health()["instances"] == 2 for d in ds),
                        timeout=10), [d.health() for d in ds]
        origin.add_rule({"route": "/v1/wallet/*", "burst429": True, "retry_after": 5, "next": 1})
        r = requests.get(ds[0].url + "/jup/v1/wallet/balance?a=1", timeout=10)
        assert r.status_code == 429
        t = time.monotonic()
        # the account is not paused: other paths go at once, from both instances
        for i, d in enumerate(ds):
            r = requests.get(d.url + "/jup/echo?b=%d" % i, timeout=10)
            assert r.status_code == 200, r.status_code
        assert time.monotonic() - t < 2.0
        # the group is, on the other instance too: its 5 s pause is beyond the 1 s queue timeout
        r = requests.get(ds[1].url + "/jup/v1/wallet/balance?a=2", timeout=10)
        assert r.status_code == 503, r.status_code
        assert int(r.headers["retry-after"]) >= 2, r.headers.get("retry-after")
        paths = [rec["path"] for rec in origin.requests(0)]
        assert paths.count("/v1/wallet/balance") == 1, paths  # the refused one never reached the origin
        assert paths.count("/echo") == 2, paths
    finally:
        for d in ds:
            d.stop()
