"""README.md's examples, run as written against conf/fake-origin.yaml and the fake origin.

The commands come from README.md's fenced blocks preceded by `<!-- example: fake-origin -->`; the
config is conf/fake-origin.yaml with its addresses moved to free loopback ports. Each command runs
with curl as written (plus -D to read the status, and a time cap); each must exit 0 with a 2xx,
except where README states another result, which is checked here (X-Cache MISS then HIT, STALE
after the ttl, the 404 body, the purge answer, the event stream)."""
import json
import os
import re
import shlex
import subprocess
import sys
import time

import pytest

from dexcache import ROOT, Dexcache, run_check, wait_for

sys.path.insert(0, os.path.dirname(__file__))
from fake import FakeOrigin  # noqa: E402

README = os.path.join(ROOT, "README.md")
CONF = os.path.join(ROOT, "conf", "fake-origin.yaml")
TOKEN = "readme-t0ken"
MARK = "<!-- example: fake-origin -->"


def readme_commands():
    """The commands of the marked blocks, continuation lines joined, as argv lists (comments out)."""
    text = open(README).read()
    cmds = []
    for m in re.finditer(re.escape(MARK) + r"\s*\n```sh\n(.*?)\n```", text, re.S):
        lines = m.group(1).split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            argv = shlex.split(line, comments=True)
            if argv:
                cmds.append(argv)
    return cmds


@pytest.fixture(scope="module")
def stack():
    fo = FakeOrigin(args=["--keys", "k1,k2"], profiles=("jup", "meteora"))
    fo.start()
    cfg = open(CONF).read().replace("{", "{{").replace("}", "}}")
    for old, new in (("http://127.0.0.1:18081", fo.url("jup")), ("http://127.0.0.1:18082", fo.url("meteora")),
                     ('"127.0.0.1:8080", "[::1]:8080"', '"127.0.0.1:{port}"'),
                     ('"127.0.0.1:9090"', '"127.0.0.1:{admin_port}"')):
        assert old in cfg, old
        cfg = cfg.replace(old, new)
    d = Dexcache(cfg, env={"DEXCACHE_ADMIN_TOKEN": TOKEN, "JUP_KEYS": "k1"})
    try:
        d.start()
        yield d, fo
    finally:
        d.stop()
        fo.stop()


def run(d, argv, cap=20):
    """Run one README command against `d`: returns (exit code, status, headers dict, stdout)."""
    hdr = os.path.join(d.workdir, "readme-headers")
    env = dict(os.environ, DEXCACHE_ADMIN_TOKEN=TOKEN)
    args = []
    for a in argv:
        a = a.replace("127.0.0.1:8080", "127.0.0.1:%d" % d.port).replace("127.0.0.1:9090",
                                                                         "127.0.0.1:%d" % d.admin_port)
        args.append(re.sub(r"\$(\w+)", lambda m: env.get(m.group(1), ""), a))  # as the shell would
    assert args[0] == "curl"
    p = subprocess.run(args + ["-D", hdr, "--max-time", str(cap)], capture_output=True,
                       env=env, timeout=cap + 10)
    heads = open(hdr, "rb").read().decode(errors="replace").split("\r\n\r\n")
    lines = [h for h in heads if h.startswith("HTTP/")][-1].split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    return p.returncode, status, headers, p.stdout.decode(errors="replace")


def url_of(argv):
    return next(a for a in argv if "127.0.0.1:" in a)


def test_fake_origin_config_checks():
    rc, out, _ = run_check(open(CONF).read())
    assert rc == 0, out


def test_readme_examples_run_against_fake_origin(stack):
    d, fo = stack
    cmds = readme_commands()
    urls = [url_of(c) for c in cmds]
    # the block covers what README promises: a cached GET, an unbatched rule, an error, purge, a stream, admin
    for want in ("/jup/price/v3", "/jup/swap/v1/quote", "/nowhere", "/purge", "/jup/stream/price", "/health",
                 "/metrics"):
        assert any(want in u for u in urls), (want, urls)
    checked = 0
    for argv in cmds:
        u = url_of(argv)
        if "/jup/price/v3" in u:
            rc, st, h, out = run(d, argv)
            assert (rc, st, h["x-cache"]) == (0, 200, "MISS")
            assert h["cache-status"] == "dexcache; fwd=miss; stored; detail=batch"
            assert "So11111111111111111111111111111111111111112" in json.loads(out.split("\r\n\r\n", 1)[1])
            assert h["cache-tag"] == "jup,So11111111111111111111111111111111111111112"
            assert h["cdn-cache-control"] == "max-age=1, stale-while-revalidate=10"
            assert wait_for(lambda: run(d, argv)[2]["x-cache"] == "HIT", timeout=5)  # the store follows the answer
            rc, st, h, _ = run(d, argv)
            assert (rc, st, h["x-cache"], h["cache-status"]) == (0, 200, "HIT", "dexcache; hit; detail=batch")
            rc, st, h304, _ = run(d, argv + ["-H", "If-None-Match: " + h["etag"]])
            assert (rc, st) == (0, 304)
            time.sleep(2.3)  # past the rule's ttl (2s)
            rc, st, h, _ = run(d, argv)
            assert (rc, st, h["x-cache"]) == (0, 200, "MISS")  # batched: expired ids are fetched, not served stale
        elif "/jup/swap/v1/quote" in u:
            rc, st, h, _ = run(d, argv)
            assert (rc, st, h["x-cache"]) == (0, 200, "MISS")
            assert h["server-timing"].startswith("upstream;dur=")
            assert wait_for(lambda: run(d, argv)[2]["x-cache"] == "HIT", timeout=5)
            rc, st, h, _ = run(d, argv)
            assert h["cache-status"] in ("dexcache; hit; ttl=1", "dexcache; hit; ttl=0")
            time.sleep(1.3)  # past the rule's ttl (1s), inside stale_while_revalidate
            rc, st, h, _ = run(d, argv)
            assert (rc, st, h["x-cache"]) == (0, 200, "STALE")
            assert "etag" in h
        elif u.endswith("/nowhere"):
            rc, st, h, out = run(d, argv)
            assert (rc, st) == (0, 404)
            body = json.loads(out.split("\r\n\r\n", 1)[1])
            assert (body["error"], body["status"]) == ("no route for this path", 404)
        elif u.endswith("/purge"):
            rc, st, h, out = run(d, argv)
            assert (rc, st) == (0, 200)
            body = json.loads(out)
            assert body["purged"] >= 1 and body["fleet"] is False and set(body) == {"purged", "fleet"}, body
            price = next(c for c in cmds if "/jup/price/v3" in url_of(c))
            assert run(d, price)[2]["x-cache"] == "MISS"  # the tag took the price entry
        elif "/jup/stream/" in u:
            rc, st, h, out = run(d, argv, cap=4)
            assert rc in (0, 28), rc  # 28: our time cap ended the stream, as Ctrl-C would
            assert st == 200 and h["content-type"].startswith("text/event-stream")
            assert re.search(r"^id: 1\nevent: update\ndata: \{", out, re.M), out
        else:
            rc, st, h, out = run(d, argv)
            assert rc == 0 and 200 <= st < 300, (argv, rc, st)
            if u.endswith("/health"):
                assert json.loads(out)["status"] == "ok"
            if u.endswith("/metrics"):
                assert "dexcache_cache_hits_total" in out or "dexcache_" in out
            checked -= 1
        checked += 1
    assert checked == 5  # price, quote, 404, purge, stream: each stated result was checked
    # the purge example needs its token: without it, 401
    purge = next(c for c in cmds if url_of(c).endswith("/purge"))
    rc, st, _, _ = run(d, [a.replace("$DEXCACHE_ADMIN_TOKEN", "wrong") for a in purge])
    assert st == 401


def test_readme_paths_exist():
    """Every repository path README names in backticks exists."""
    text = open(README).read()
    paths = set()
    for m in re.finditer(r"`([^`\s]+)`", text):
        p = m.group(1).rstrip(".,")
        if re.match(r"^(conf|tests|proxy|bench|systemd|lua-free-plugins|man)(/|$)", p) and "*" not in p:
            paths.add(p)
    assert len(paths) >= 10, paths
    missing = sorted(p for p in paths if not os.path.exists(os.path.join(ROOT, p)))
    assert missing == []
