"""Signals (SIGTERM drain, SIGHUP reload), systemd notify messages, start-up failures, CLI."""
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
import requests

from dexcache import BIN, Dexcache, free_port, run_check, sanitizer_env, wait_for, workdir

BASE = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: "{access_log}" }}
server: {{ drain_timeout: %(drain)s }}
upstreams:
  jupiter: {{ url: "%(jup)s", timeout: 10s }}
routes:
  - {{ prefix: %(prefix)s, upstream: jupiter }}
"""


def cfg(fake, prefix="/jup", drain="10s"):
    return BASE % {"jup": fake.url("jup"), "prefix": prefix, "drain": drain}


def wait_held(origin, n, timeout=10):
    origin.wait_held(n, timeout)


def refused(port):
    """Does a connection to the port fail (nothing listening any more)?"""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except OSError:
        return True


def test_sigterm_drains_requests_in_flight(fake, origin):
    d = Dexcache(cfg(fake)).start()
    try:
        origin.gate("/echo")
        results = []

        def one(i):
            try:
                r = requests.get(d.url + "/jup/echo?i=%d" % i, timeout=15)
                results.append(r.status_code)
            except Exception as e:  # noqa: BLE001
                results.append(repr(e))

        threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        wait_held(origin, 20)
        d.signal(signal.SIGTERM)
        # no new connections are accepted while draining: the listeners close first
        assert wait_for(lambda: refused(d.port), timeout=10)
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(d.url + "/jup/echo", timeout=2)
        assert d.proc.poll() is None  # still finishing the 20
        origin.release()
        for t in threads:
            t.join(15)
        assert results == [200] * 20
        assert d.proc.wait(10) == 0
    finally:
        origin.release()
        d.stop()


def test_drain_timeout_forces_exit(fake, origin):
    d = Dexcache(cfg(fake, drain="1s")).start()
    try:
        origin.gate("/echo")
        def doomed():
            try:
                requests.get(d.url + "/jup/echo", timeout=15)
            except requests.exceptions.ConnectionError:
                pass  # expected: the drain timeout closes it

        t = threading.Thread(target=doomed, daemon=True)
        t.start()
        wait_held(origin, 1)
        start = time.time()
        d.signal(signal.SIGTERM)
        assert d.proc.wait(10) == 0
        assert 0.8 < time.time() - start < 5
        assert "drain timeout reached" in d.stderr()
    finally:
        origin.release()
        d.stop()


def test_sighup_reload_under_load_and_bad_reload(fake, origin):
    d = Dexcache(cfg(fake, prefix="/jup")).start()
    stop = threading.Event()
    failures, count = [], [0]

    def load():
        s = requests.Session()
        while not stop.is_set():
            try:
                r = s.get(d.url + "/jup/echo", timeout=5)
                if r.status_code != 200:
                    failures.append(r.status_code)
                count[0] += 1
            except Exception as e:  # noqa: BLE001
                failures.append(repr(e))

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        assert wait_for(lambda: count[0] >= 10, timeout=10)  # the load is running
        for i in range(5):
            # the new config keeps /jup and adds /v<i>
            d.reload(cfg(fake, prefix="/jup").replace("routes:\n", "routes:\n  - {{ prefix: /v%d, upstream: jupiter }}\n" % i))
            assert wait_for(lambda: d.health()["config_generation"] == i + 2, timeout=10)
            assert requests.get(d.url + "/v%d/echo" % i).status_code == 200
        # a bad file is rejected; the last good config keeps serving
        with open(d.config_path, "w") as f:
            f.write("listen: [\"127.0.0.1:%d\"]\nroutes:\n  - { prefix: /x, upstream: nosuch }\nbogus_key: 1\n" % d.port)
        d.signal(signal.SIGHUP)
        assert wait_for(lambda: d.metric("dexcache_config_reload_failures_total") == 1, timeout=10)
        assert requests.get(d.url + "/v4/echo").status_code == 200
        stop.set()
        for t in threads:
            t.join(10)
        assert failures == []
        assert count[0] > 50
        err = d.stderr()
        assert "reload rejected, the running config keeps serving:" in err
        assert "dexcache.yaml:" in err  # file:line:col of the problem
        assert d.metric("dexcache_config_reloads_total") == 5
        assert d.metric("dexcache_config_reload_failures_total") == 1
        assert d.health()["config_generation"] == 6
    finally:
        stop.set()
        d.stop()


def test_requests_in_flight_keep_old_config_across_reload(fake, origin):
    d = Dexcache(cfg(fake, prefix="/jup")).start()
    try:
        origin.gate("/echo")
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("r", requests.get(d.url + "/jup/echo", timeout=15)))
        t.start()
        wait_held(origin, 1)
        d.reload(cfg(fake, prefix="/other"))  # /jup disappears
        assert wait_for(lambda: d.health()["config_generation"] == 2, timeout=10)
        assert requests.get(d.url + "/jup/echo").status_code == 404
        origin.release()
        t.join(10)
        assert out["r"].status_code == 200
    finally:
        origin.release()
        d.stop()


def test_systemd_notify(fake, origin):
    sock_path = os.path.join(workdir(prefix="dexcache-notify-"), "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(sock_path)
    s.settimeout(10)
    d = Dexcache(cfg(fake), env={"NOTIFY_SOCKET": sock_path})
    try:
        d.start()
        msgs = [s.recv(4096).decode()]
        assert "READY=1" in msgs[0].split("\n")
        assert "MAINPID=%d" % d.proc.pid in msgs[0]
        # READY=1 is only sent once listeners are bound: the port answers now
        assert requests.get(d.url + "/jup/echo").status_code == 200
        d.signal(signal.SIGHUP)
        m1 = s.recv(4096).decode()
        m2 = s.recv(4096).decode()
        assert "RELOADING=1" in m1.split("\n") and "MONOTONIC_USEC=" in m1
        assert "READY=1" in m2.split("\n")
        d.signal(signal.SIGTERM)
        m3 = s.recv(4096).decode()
        assert "STOPPING=1" in m3.split("\n")
        assert d.proc.wait(10) == 0
    finally:
        d.stop()
        s.close()


def test_bad_config_exits_before_binding(fake):
    port = free_port()
    text = 'listen: ["127.0.0.1:%d"]\nupstreams:\n  u: { url: "http://127.0.0.1:1", timeout: soon }\nroutes:\n  - { prefix: /u, upstream: u }\n' % port
    d = workdir(prefix="dexcache-bad-")
    path = os.path.join(d, "bad.yaml")
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.Popen([BIN, "-c", path], stderr=subprocess.PIPE, env=sanitizer_env())
    _, err = p.communicate(timeout=20)
    assert p.returncode == 1
    assert "bad.yaml:3:" in err.decode() and "timeout" in err.decode()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_port_in_use_fails_startup(fake):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    port = blocker.getsockname()[1]
    try:
        d = Dexcache(cfg(fake).replace("127.0.0.1:{port}", "127.0.0.1:%d" % port))
        p = subprocess.run([BIN, "-c", d.config_path], capture_output=True, env=sanitizer_env(), timeout=20)
        assert p.returncode == 1
        assert "bind" in p.stderr.decode() and str(port) in p.stderr.decode()
    finally:
        blocker.close()


def test_cli_check_and_version(fake):
    rc, out, path = run_check(cfg(fake).format(port=1234, admin_port=1235, access_log="off"))
    assert rc == 0 and "test is successful" in out
    rc, out, path = run_check("listen: [\"127.0.0.1:1\"]\nroutes: []\nnope: 1\n")
    assert rc == 1
    assert "c.yaml:3:1: nope: unknown key" in out
    p = subprocess.run([BIN, "-v"], capture_output=True, text=True, env=sanitizer_env())
    assert p.returncode == 0 and p.stdout.startswith("dexcache ")
    p = subprocess.run([BIN, "-h"], capture_output=True, text=True, env=sanitizer_env())
    assert p.returncode == 0 and "-t" in p.stdout
    p = subprocess.run([BIN, "-x"], capture_output=True, text=True, env=sanitizer_env())
    assert p.returncode == 1
