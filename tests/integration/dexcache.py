"""Start and stop the real dexcache binary for integration tests.

Every process started here is stopped by the test that started it (context manager or fixture
finaliser). Only loopback addresses are used.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("DEXCACHE_BIN", os.path.join(ROOT, "build-asan", "dexcache"))
# ASan keeps up to quarantine_size_mb of freed memory resident: memory bounds in tests add it.
SANITIZER_RSS_MIB = 16 if "asan" in BIN else 0
# ThreadSanitizer multiplies memory use: RSS bounds are only checked without it.
RSS_CHECKS = "tsan" not in BIN


# Work directories made by test helpers, removed by suite_hooks when their test passes (kept, and
# printed, when it fails). Outside pytest nobody removes them: callers that care use remove_workdirs.
_workdirs = []
_kept = []


def workdir(prefix="dexcache-test-"):
    """A fresh temporary directory that the test suite removes when the test that made it passes."""
    d = tempfile.mkdtemp(prefix=prefix)
    _workdirs.append(d)
    return d


def live_workdirs():
    return list(_workdirs)


def keep_workdirs():
    """Keep every live work directory (a test failed): returns their paths."""
    kept = list(_workdirs)
    _kept.extend(kept)
    del _workdirs[:]
    return kept


def remove_workdirs(dirs):
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)
        if d in _workdirs:
            _workdirs.remove(d)


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_for(cond, timeout=10, step=0.02):
    """Poll cond() until it is true or `timeout` seconds pass; returns whether it became true."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


# The first lines of most test configs: the listener, 2 workers, the admin listener, no access log.
# {port} and {admin_port} are filled in by Dexcache (like every config, it goes through str.format).
PREAMBLE = """listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: off }}
"""


def sanitizer_env():
    env = dict(os.environ)
    # Every worker closes what it owns and the main thread frees what they shared before exit, so
    # LeakSanitizer runs on every daemon a test stops (a report fails that test, see stop()).
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1:quarantine_size_mb=16")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


class Dexcache:
    """A dexcache process on free loopback ports, configured from a YAML string.

    `config` is YAML text in which {port}, {admin_port} are substituted (use {{ }} for braces)."""

    def __init__(self, config, workers=2, env=None, extra_ports=()):
        self.port = free_port()
        self.admin_port = free_port()
        self.ports = {name: free_port() for name in extra_ports}
        self.workdir = workdir()
        self.config_path = os.path.join(self.workdir, "dexcache.yaml")
        self.access_log = os.path.join(self.workdir, "access.log")
        self.stderr_path = os.path.join(self.workdir, "stderr.log")
        self.workers = workers
        self.env = sanitizer_env()
        if env:
            self.env.update(env)
        self.proc = None
        self.write_config(config)

    def render(self, config):
        return config.format(port=self.port, admin_port=self.admin_port, workers=self.workers,
                             access_log=self.access_log, **self.ports)

    def write_config(self, config):
        with open(self.config_path, "w") as f:
            f.write(self.render(config))

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    @property
    def admin_url(self):
        return "http://127.0.0.1:%d" % self.admin_port

    def start(self, timeout=20, wait=True):
        # a second start would leave the first process running, unowned (`with Dexcache(...)`
        # already starts it)
        assert self.proc is None, "this Dexcache is already started"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen([BIN, "-c", self.config_path], stdout=subprocess.DEVNULL,
                                     stderr=self._stderr, env=self.env)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dexcache exited with %s:\n%s" % (self.proc.returncode, self.stderr()))
            try:
                with urllib.request.urlopen(self.admin_url + "/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("dexcache not ready in %ss:\n%s" % (timeout, self.stderr()))

    def health(self):
        with urllib.request.urlopen(self.admin_url + "/health", timeout=5) as r:
            return json.loads(r.read())

    def metrics(self):
        with urllib.request.urlopen(self.admin_url + "/metrics", timeout=5) as r:
            return r.read().decode()

    def metric(self, name, **labels):
        """Value of one sample of /metrics (0 when absent)."""
        want = ",".join('%s="%s"' % kv for kv in sorted(labels.items()))
        for line in self.metrics().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if "{" in key:
                n, _, rest = key.partition("{")
                lab = ",".join(sorted(rest.rstrip("}").split(",")))
            else:
                n, lab = key, ""
            if n == name and lab == want:
                return float(value)
        return 0.0

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def access_lines(self):
        try:
            with open(self.access_log) as f:
                return [l.rstrip("\n") for l in f if l.strip()]
        except OSError:
            return []

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self, config=None):
        if config is not None:
            self.write_config(config)
        self.signal(signal.SIGHUP)

    def stop(self, timeout=20):
        """SIGTERM, wait, then SIGKILL. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._stderr.close()
        rc = self.proc.returncode
        self.proc = None
        err = self.stderr()
        # a sanitizer report anywhere fails the test that owned this process
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "WARNING: ThreadSanitizer"):
            assert marker not in err, err
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def run_check(config_text):
    """dexcache -t on a config text; returns (exit code, stderr+stdout)."""
    d = workdir(prefix="dexcache-t-")
    path = os.path.join(d, "c.yaml")
    with open(path, "w") as f:
        f.write(config_text)
    p = subprocess.run([BIN, "-t", "-c", path], capture_output=True, env=sanitizer_env(), timeout=30)
    return p.returncode, (p.stdout + p.stderr).decode(errors="replace"), path


def start_fleet(conf, n=3, timeout=15):
    """n instances of one config sharing a Redis (the config names it), started and waiting until each
    sees Redis up and all n instances; a failure stops those already started."""
    ds = []
    try:
        for _ in range(n):
            ds.append(Dexcache(conf).start())
        assert wait_for(lambda: all(d.health()["redis"] == "up" and d.health()["instances"] == n for d in ds),
                        timeout=timeout), [d.health() for d in ds]
    except BaseException:
        for d in ds:
            d.stop()
        raise
    return ds
