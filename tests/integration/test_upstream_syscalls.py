"""A kept-alive upstream connection is not re-armed in epoll per request (issue 17, the miss path at
nginx's speed): sequential pass-through GETs over one client connection reuse one upstream
connection, and the worker makes no epoll_ctl call on that connection's socket while they run;
POSTs (not idempotent) each go on a fresh connection. Counted with strace attached to the running
process (every thread)."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import requests

from dexcache import Dexcache, wait_for

CONFIG = """
listen: ["127.0.0.1:{port}"]
workers: 1
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: off, level: info }}
upstreams:
  jupiter: {{ url: "%(jup)s", timeout: 5s, retries: 0 }}
routes:
  - {{ prefix: /jup, upstream: jupiter }}
"""

QUOTE = "/jup/swap/v1/quote?inputMint=So11111111111111111111111111111111111111112" \
        "&outputMint=EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v&amount=%d"
N = 20


@pytest.fixture()
def proxy(fake):
    d = Dexcache(CONFIG % {"jup": fake.url("jup")}, workers=1)
    d.start()
    yield d
    d.stop()


class Strace:
    """strace -f on a running process, writing the given calls to a file; stopped with SIGINT."""

    def __init__(self, pid, calls, out):
        self.out = out
        self.proc = subprocess.Popen([shutil.which("strace"), "-f", "-qq", "-e", "trace=" + calls, "-o", out,
                                      "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # strace writes nothing until a call happens: wait until every thread is attached
        wait_for(lambda: len(os.listdir("/proc/%d/task" % pid)) > 0 and self._attached(pid), timeout=20)

    def _attached(self, pid):
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                tracer = next((line.split()[1] for line in f if line.startswith("TracerPid:")), "0")
            if tracer != str(self.proc.pid):
                return False
        return True

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        with open(self.out) as f:
            return f.read()


def upstream_fds(trace, origin_port):
    """Descriptors the worker sent an upstream request on (sendto/writev of a request line)."""
    return {int(fd) for fd in re.findall(r"(?:sendto|writev|write)\((\d+), \[?\{?(?:iov_base=)?\"(?:GET|POST) /",
                                         trace)}


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed (make deps-test installs it)")
def test_kept_alive_upstream_connection_is_not_rearmed_per_request(proxy, origin, tmp_path):
    s = requests.Session()
    # the first request opens the upstream connection (and the client's)
    r = s.get(proxy.url + QUOTE % 1)
    assert r.status_code == 200 and r.headers["x-cache"] == "BYPASS"
    before = origin.stats()["jup"]["total"]

    st = Strace(proxy.proc.pid, "epoll_ctl,sendto,writev,connect,close", str(tmp_path / "strace.txt"))
    try:
        for i in range(2 * N):
            r = s.get(proxy.url + QUOTE % (i + 2))
            assert r.status_code == 200 and r.headers["x-cache"] == "BYPASS"
    finally:
        trace = st.stop()

    assert origin.stats()["jup"]["total"] - before == 2 * N  # every request went upstream, once
    port = origin.port("jup")
    assert not re.search(r"connect\(\d+, \{sa_family=AF_INET, sin_port=htons\(%d\)" % port, trace), \
        "a new upstream connection was opened: the kept-alive one was not reused"
    fds = upstream_fds(trace, port)
    assert len(fds) == 1, "upstream requests went out on %s" % sorted(fds)
    fd = fds.pop()
    sent = re.findall(r"(?:sendto|writev|write)\(%d, " % fd, trace)
    assert len(sent) >= 2 * N
    rearmed = re.findall(r"^.*epoll_ctl\(\d+, EPOLL_CTL_\w+, %d, .*$" % fd, trace, re.M)
    assert rearmed == [], "%d epoll_ctl calls on the kept-alive upstream socket over %d requests, e.g. %s" % (
        len(rearmed), 2 * N, rearmed[:3])
    assert not re.search(r"close\(%d\)" % fd, trace)

    # a swap (POST: not idempotent) goes on a connection of its own, never on a kept-alive one that
    # libcurl would silently send it again on if it died (test_passthrough has the reset case)
    st = Strace(proxy.proc.pid, "connect", str(tmp_path / "strace-post.txt"))
    try:
        for i in range(N):
            r = s.post(proxy.url + "/jup/swap/v1/swap", json={"quoteResponse": {"inAmount": str(i)},
                                                               "userPublicKey": "x"})
            assert r.status_code == 200
    finally:
        trace = st.stop()
    s.close()
    connects = re.findall(r"connect\(\d+, \{sa_family=AF_INET, sin_port=htons\(%d\)" % port, trace)
    assert len(connects) == N, "%d upstream connects for %d swaps" % (len(connects), N)
