"""Helper to run tests/fakeorigin/fakeorigin.py from pytest (urllib only).

    from fake import FakeOrigin
    with FakeOrigin(args=["--lat", "fixed=0"], profiles=("jup", "meteora")) as fo:
        base = fo.url("jup")            # "http://127.0.0.1:PORT"
        ...
        fo.stats()["jup"]["by_key"]

Methods: start, stop, url, port, stats, requests(since), reset, version,
config(dict), add_rule(str|dict), rules, gate(route, **kw), release(route),
held, wait_held(n), refuse(profile, ms), seq.
"""

import hashlib
import json
import os
import selectors
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
FAKEORIGIN = os.path.normpath(os.path.join(HERE, "..", "fakeorigin", "fakeorigin.py"))
PYTHON = "/usr/bin/python3"


class FakeOriginError(RuntimeError):
    pass


class FakeOrigin:
    def __init__(self, args=(), profiles=("jup", "meteora"), python=PYTHON, script=FAKEORIGIN,
                 startup_timeout=15.0, host="127.0.0.1"):
        self.args = list(args)
        self.profiles = tuple(profiles)
        self.python = python
        self.script = script
        self.startup_timeout = startup_timeout
        self.host = host
        self.proc = None
        self.ports = {}
        self._stderr = None
        self._drain = None

    # -------------------------------------------------------------- process
    def start(self):
        if self.proc is not None:
            raise FakeOriginError("already started")
        cmd = [self.python, self.script]
        for p in self.profiles:
            cmd += ["--listen", "%s=%s:0" % (p, self.host)]
        cmd += ["--control", "%s:0" % self.host] + self.args
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + self.startup_timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        buf = b""
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise FakeOriginError("fake origin not ready after %.0f s: %s" %
                                          (self.startup_timeout, self._err_text()))
                if not sel.select(timeout=min(left, 0.5)):
                    if self.proc.poll() is not None:
                        raise FakeOriginError("fake origin exited with %s: %s" %
                                              (self.proc.returncode, self._err_text()))
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    self.proc.wait(timeout=5)
                    raise FakeOriginError("fake origin exited with %s: %s" %
                                          (self.proc.returncode, self._err_text()))
                buf += chunk
                if b"\n" in buf:
                    line, _, rest = buf.partition(b"\n")
                    line = line.decode().strip()
                    if line.startswith("READY "):
                        self.ports = json.loads(line[6:])
                        break
                    buf = rest
        except BaseException:
            sel.close()
            self.stop()
            raise
        sel.close()
        # keep draining stdout so the child can never block on a full pipe
        self._drain = threading.Thread(target=self._drain_stdout, daemon=True)
        self._drain.start()
        return self

    def _drain_stdout(self):
        try:
            while self.proc and self.proc.stdout.read(65536):
                pass
        except (OSError, ValueError):
            pass

    def _err_text(self):
        try:
            self._stderr.seek(0)
            return self._stderr.read()[-4000:].decode(errors="replace")
        except (OSError, ValueError, AttributeError):
            return ""

    def stderr_text(self):
        return self._err_text()

    def stop(self):
        p = self.proc
        if p is None:
            return
        try:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
        finally:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            if p.stdout:
                try:
                    p.stdout.close()
                except OSError:
                    pass
            self.proc = None
            if self._stderr is not None:
                try:
                    self._stderr.close()
                except OSError:
                    pass
                self._stderr = None

    @property
    def returncode(self):
        return None if self.proc is None else self.proc.poll()

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # -------------------------------------------------------------- addresses
    def port(self, profile):
        return self.ports[profile]

    def url(self, profile="jup"):
        return "http://%s:%d" % (self.host, self.ports[profile])

    @property
    def control_url(self):
        return "http://%s:%d" % (self.host, self.ports["control"])

    # -------------------------------------------------------------- control API
    def _call(self, method, path, body=None, timeout=30):
        data = None
        headers = {}
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.control_url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            raise FakeOriginError("control %s %s -> %d %s" % (method, path, e.code, e.read()[:500]))

    def stats(self):
        return self._call("GET", "/__fake/stats")

    def seq(self):
        return self.stats()["seq"]

    def requests(self, since=0):
        return self._call("GET", "/__fake/requests?since=%d" % since)

    def reset(self):
        return self._call("POST", "/__fake/reset", {})

    def version(self, set_to=None):
        """bump data_version (or set it) and return the new value"""
        body = {} if set_to is None else {"version": set_to}
        return self._call("POST", "/__fake/version", body)["data_version"]

    def config(self, d=None):
        if d is None:
            return self._call("GET", "/__fake/config")
        return self._call("POST", "/__fake/config", d)

    def add_rule(self, rule):
        """rule: 'route=/price/*,status=503,every=2' or a dict"""
        return self._call("POST", "/__fake/rule", {"rule": rule} if isinstance(rule, str) else rule)

    def rules(self):
        return self._call("GET", "/__fake/rules")

    def clear_rules(self):
        return self.config({"rules": []})

    def gate(self, route, hold=True, **kw):
        body = {"route": route, "hold": hold}
        body.update(kw)
        return self._call("POST", "/__fake/gate", body)

    def release(self, route=None):
        return self._call("POST", "/__fake/release", {} if route is None else {"route": route})

    def held(self):
        return self._call("GET", "/__fake/gate")["held"]

    def wait_held(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            h = self.held()
            if h >= n:
                return h
            if time.monotonic() > deadline:
                raise FakeOriginError("only %d of %d requests held after %.1f s" % (h, n, timeout))
            time.sleep(0.02)

    def refuse(self, profile, ms):
        return self._call("POST", "/__fake/refuse", {"profile": profile, "ms": ms})


def expected_bytes(n, seed=1):
    """The body GET /bytes?n=N returns for --seed SEED."""
    block = b"".join(hashlib.sha256(("%d:%d" % (seed, j)).encode()).digest() for j in range(2048))
    full, rest = divmod(n, len(block))
    return block * full + block[:rest]
