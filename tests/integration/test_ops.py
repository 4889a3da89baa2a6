"""Operating dexcache like nginx: log rotation signals, -t checks of the access log, safe defaults
at start-up (listen address in use, admin without a token), the long options, YAML tab errors."""
import os
import re
import signal
import socket
import subprocess

import pytest
import requests

from dexcache import BIN, Dexcache, free_port, run_check, sanitizer_env, wait_for, workdir

BASE = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: "{access_log}" }}
upstreams:
  jupiter: {{ url: "%(jup)s", timeout: 10s }}
routes:
  - {{ prefix: /jup, upstream: jupiter }}
"""


def cfg(fake):
    return BASE % {"jup": fake.url("jup")}


def lines(path):
    try:
        with open(path) as f:
            return [l.rstrip("\n") for l in f if l.strip()]
    except OSError:
        return []


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGHUP])
def test_signal_reopens_access_log(fake, sig):
    d = Dexcache(cfg(fake)).start()
    try:
        assert requests.get(d.url + "/jup/echo?n=1", timeout=10).status_code == 200
        assert wait_for(lambda: len(d.access_lines()) == 1, timeout=10)
        rotated = d.access_log + ".1"
        os.rename(d.access_log, rotated)
        # before the signal, lines still go to the renamed file (the open descriptor)
        assert requests.get(d.url + "/jup/echo?n=2", timeout=10).status_code == 200
        assert wait_for(lambda: len(lines(rotated)) == 2, timeout=10)
        assert not os.path.exists(d.access_log)
        d.signal(sig)
        assert wait_for(lambda: os.path.exists(d.access_log), timeout=10), d.stderr()
        assert requests.get(d.url + "/jup/echo?n=3", timeout=10).status_code == 200
        assert wait_for(lambda: len(d.access_lines()) == 1, timeout=10)
        assert "path=\"/jup/echo?n=3\"" in d.access_lines()[0]
        assert len(lines(rotated)) == 2  # nothing more in the old file
        assert d.proc.poll() is None  # alive (SIGUSR1 used to kill the process)
        assert "access log %s reopened" % d.access_log in d.stderr()
        assert d.stop() == 0
    finally:
        d.stop()


def check_with_access(fake, access):
    return run_check(cfg(fake).format(port=1234, admin_port=1235, access_log=access))


def test_check_fails_on_access_log_in_missing_directory(fake):
    missing = os.path.join(workdir(prefix="dexcache-ops-"), "no-such-dir", "access.log")
    rc, out, path = check_with_access(fake, missing)
    assert rc == 1, out
    assert "c.yaml:5:16: log.access: expected stdout, stderr, off or a file that can be opened for append, " \
        "found '%s' (directory %s: No such file or directory)" % (missing, os.path.dirname(missing)) in out, out
    assert "test failed" in out and "test is successful" not in out
    assert not os.path.exists(os.path.dirname(missing))  # -t created nothing


def test_check_fails_on_access_log_that_is_a_directory(fake):
    d = workdir(prefix="dexcache-ops-")
    rc, out, path = check_with_access(fake, d)
    assert rc == 1 and d in out and "a directory" in out, out


def test_check_accepts_a_new_access_log_and_creates_nothing(fake):
    log = os.path.join(workdir(prefix="dexcache-ops-"), "access.log")
    rc, out, path = check_with_access(fake, log)
    assert rc == 0 and "test is successful" in out, out
    assert not os.path.exists(log)


@pytest.mark.skipif(os.geteuid() != 0 and not os.access("/usr/bin/setpriv", os.X_OK), reason="needs setpriv")
def test_check_fails_on_access_log_without_permission(fake):
    """A directory the process may not write (checked as an unprivileged user: root writes anywhere)."""
    d = workdir(prefix="dexcache-ops-")
    locked = os.path.join(d, "locked")
    os.mkdir(locked, 0o555)
    os.chmod(d, 0o755)
    conf = os.path.join(d, "c.yaml")
    with open(conf, "w") as f:
        f.write(cfg(fake).format(port=1234, admin_port=1235, access_log=os.path.join(locked, "access.log")))
    os.chmod(conf, 0o644)
    cmd = [BIN, "-t", "-c", conf]
    if os.geteuid() == 0:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, env=sanitizer_env(), timeout=30)
    out = p.stdout + p.stderr
    assert p.returncode == 1, out
    assert "cannot create a file in %s: Permission denied" % locked in out, out


def start_fails(d):
    p = subprocess.run([BIN, "-c", d.config_path], capture_output=True, text=True, env=sanitizer_env(), timeout=30)
    return p.returncode, p.stderr


def test_second_dexcache_on_the_listen_address_fails_startup(fake):
    first = Dexcache(cfg(fake)).start()
    try:
        second = Dexcache(cfg(fake).replace("127.0.0.1:{port}", "127.0.0.1:%d" % first.port))
        rc, err = start_fails(second)
        assert rc == 1, err
        assert ("listen 127.0.0.1:%d: bind: address already in use (another dexcache or another server "
                "listens there)" % first.port) in err, err
        # the first one keeps every request: nothing shares its port
        for i in range(20):
            assert requests.get(first.url + "/jup/echo?i=%d" % i, timeout=10).status_code == 200
        assert wait_for(lambda: len(first.access_lines()) == 20, timeout=10)
        assert first.proc.poll() is None
    finally:
        first.stop()


def test_reuseport_listener_of_another_process_fails_startup(fake):
    """Even a listener that itself set SO_REUSEPORT (as dexcache's own workers do) is no partner."""
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    other.bind(("127.0.0.1", 0))
    other.listen(8)
    port = other.getsockname()[1]
    try:
        d = Dexcache(cfg(fake).replace("127.0.0.1:{port}", "127.0.0.1:%d" % port))
        rc, err = start_fails(d)
        assert rc == 1 and "listen 127.0.0.1:%d: bind: address already in use" % port in err, err
    finally:
        other.close()


def test_reuseport_listener_joining_after_start_gets_no_connection(fake):
    """A socket of another process (same user, SO_REUSEPORT) that binds dexcache's address after
    start-up joins the kernel's reuseport group; dexcache's reuseport BPF program only ever picks its
    own workers' sockets, so the intruder accepts nothing (it took about 1/3 of the connections with
    2 workers before) and dexcache answers every connection."""
    d = Dexcache(cfg(fake)).start()
    intruder = socket.socket()
    clients = []
    try:
        intruder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        intruder.bind(("127.0.0.1", d.port))
        intruder.listen(128)
        intruder.setblocking(False)
        for i in range(40):
            c = socket.create_connection(("127.0.0.1", d.port), timeout=10)
            c.sendall(b"GET /jup/echo?i=%d HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % i)
            clients.append(c)
        # a connection the kernel gave the intruder is complete and waits in its accept queue
        stolen = set()
        while True:
            try:
                s, peer = intruder.accept()
            except BlockingIOError:
                break
            stolen.add(peer[1])
            s.close()
        answers = []
        for c in clients:
            if c.getsockname()[1] in stolen:
                continue
            data = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
            answers.append(data.split(b"\r\n", 1)[0])
        assert len(stolen) == 0, "the intruder accepted %d of 40 connections" % len(stolen)
        assert answers == [b"HTTP/1.1 200 OK"] * 40, answers
        assert wait_for(lambda: len(d.access_lines()) == 40, timeout=10)
        assert d.proc.poll() is None
    finally:
        for c in clients:
            c.close()
        intruder.close()
        d.stop()


def test_restart_on_the_same_address_after_stop(fake):
    """The probe does not trip over the previous run's TIME_WAIT connections."""
    first = Dexcache(cfg(fake)).start()
    try:
        assert requests.get(first.url + "/jup/echo", timeout=10).status_code == 200
    finally:
        assert first.stop() == 0
    again = Dexcache(cfg(fake).replace("127.0.0.1:{port}", "127.0.0.1:%d" % first.port))
    again.start()
    try:
        assert requests.get("http://127.0.0.1:%d/jup/echo" % first.port, timeout=10).status_code == 200
    finally:
        again.stop()


OPEN_ADMIN = """listen: ["127.0.0.1:{port}"]
admin:
  listen: "{admin}"
%(token)supstreams:
  u: {{ url: "http://127.0.0.1:1" }}
routes:
  - {{ prefix: /u, upstream: u }}
"""


@pytest.mark.parametrize("addr", ["0.0.0.0:%d", "[::]:%d", "192.0.2.1:%d"])
def test_admin_off_loopback_without_token_is_refused(addr):
    admin = addr % free_port()
    text = OPEN_ADMIN.format(port=free_port(), admin=admin) % {"token": ""}
    rc, out, path = run_check(text)
    assert rc == 1, out
    assert ("c.yaml:3:11: admin.listen: expected a loopback address (127.0.0.1, ::1) while admin.token is unset, "
            "found '%s' (POST /purge would be open to the network: set admin.token or listen on loopback)" % admin) in out
    assert "test failed" in out
    # an empty token is no token
    rc, out, path = run_check(OPEN_ADMIN.format(port=free_port(), admin=admin) % {"token": '  token: ""\n'})
    assert rc == 1 and "admin.listen: expected a loopback address" in out, out
    # start-up refuses it too, before binding anything
    p = subprocess.run([BIN, "-c", path], capture_output=True, text=True, env=sanitizer_env(), timeout=30)
    assert p.returncode == 1 and "admin.listen: expected a loopback address" in p.stderr, p.stderr


def test_admin_off_loopback_with_token_and_loopback_without_are_accepted():
    rc, out, _ = run_check(OPEN_ADMIN.format(port=free_port(), admin="0.0.0.0:%d" % free_port())
                           % {"token": '  token: "s3cret"\n'})
    assert rc == 0 and "test is successful" in out, out
    for admin in ("127.0.0.1:%d", "127.0.0.2:%d", "[::1]:%d"):
        rc, out, _ = run_check(OPEN_ADMIN.format(port=free_port(), admin=admin % free_port()) % {"token": ""})
        assert rc == 0 and "test is successful" in out, (admin, out)


def test_admin_loopback_without_token_warns_once_at_start(fake):
    d = Dexcache(cfg(fake)).start()
    try:
        d.reload()
        assert wait_for(lambda: "config reloaded" in d.stderr(), timeout=10), d.stderr()
        warning = "admin listener 127.0.0.1:%d has no token: anyone on this host may POST /purge" % d.admin_port
        assert d.stderr().count(warning) == 1, d.stderr()
    finally:
        d.stop()


def test_long_options_work_like_short_ones(fake):
    for short, long_ in (("-h", "--help"), ("-v", "--version")):
        a = subprocess.run([BIN, short], capture_output=True, text=True, env=sanitizer_env(), timeout=30)
        b = subprocess.run([BIN, long_], capture_output=True, text=True, env=sanitizer_env(), timeout=30)
        assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
        assert a.stdout == b.stdout and b.stdout != ""
    help_ = subprocess.run([BIN, "--help"], capture_output=True, text=True, env=sanitizer_env(), timeout=30).stdout
    assert "  -h, --help " in help_ and "  -v, --version " in help_ and "SIGUSR1 reopens" in help_
    assert subprocess.run([BIN, "--version"], capture_output=True, text=True, env=sanitizer_env(),
                          timeout=30).stdout.startswith("dexcache ")
    # --test and --config are the long -t and -c
    rc, out, path = run_check(cfg(fake).format(port=1234, admin_port=1235, access_log="off"))
    p = subprocess.run([BIN, "--test", "--config", path], capture_output=True, text=True, env=sanitizer_env(),
                       timeout=30)
    assert p.returncode == 0 and "test is successful" in p.stdout, p.stderr
    p = subprocess.run([BIN, "--bogus"], capture_output=True, text=True, env=sanitizer_env(), timeout=30)
    assert p.returncode == 1 and "unrecognized option '--bogus'" in p.stderr and p.stdout == ""


TAB_MSG = "YAML syntax error: a tab character where YAML needs spaces (indent with spaces only; libyaml: "


@pytest.mark.parametrize("text,where", [
    ('listen: ["127.0.0.1:1"]\nserver:\n\tdrain_timeout: 1s\n', "c.yaml:3:1: "),
    ('listen: ["127.0.0.1:1"]\nserver:\n  drain_timeout: 1s\n\t  x: 1\n', "c.yaml:4:1: "),
    ('listen: ["127.0.0.1:1"]\nserver:\n    \tdrain_timeout: 1s\n', "c.yaml:3:5: "),
])
def test_yaml_tab_error_says_tab(text, where):
    rc, out, path = run_check(text)
    assert rc == 1, out
    assert where + TAB_MSG in out, out


def test_tabs_yaml_allows_are_no_error():
    """A tab inside a quoted string, between flow items or before a comment is valid YAML."""
    rc, out, path = run_check('listen: ["127.0.0.1:1"]\nnope: "a\tb"\nx: [1,\t2]\n')
    assert rc == 1 and "tab" not in out and "nope: unknown key" in out, out


TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
TS_ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
NUM = r"\d+\.\d{3}"


def format_lines(fake, fmt, requests_):
    d = Dexcache(cfg(fake).replace('log: {{ access: "{access_log}" }}',
                                   'log: {{ access: "{access_log}", format: %s }}' % fmt)).start()
    try:
        for path, headers in requests_:
            assert requests.get(d.url + path, headers=headers, timeout=10).status_code == 200
        assert wait_for(lambda: len(d.access_lines()) == len(requests_), timeout=10)
        return d.access_lines()
    finally:
        assert d.stop() == 0


ASKS = [("/jup/echo?a=1", {"X-Request-Id": "rid-one", "traceparent": TP}),
        ("/jup/echo?a=1", {"X-Request-Id": "rid-two"}),
        ("/jup/echo?a=\"q\"", {"X-Request-Id": "rid-three", "traceparent": "00-bad\"x=1",
                              "User-Agent": 'ua "quoted"\\', "Referer": "http://r.example/x"})]


def test_access_format_kv(fake):
    got = format_lines(fake, "kv", ASKS)
    import re
    base = r'time=%s client=127\.0\.0\.1 method=GET path="%s" status=200 bytes=\d+ dur_ms=%s up_ms=%s attempts=%s cache=%s rid=%s'
    assert re.fullmatch(base % (TS_ISO, r"/jup/echo\?a=1", NUM, NUM, "1", "BYPASS", "rid-one") + " traceparent=" + TP, got[0]), got[0]
    assert re.fullmatch(base % (TS_ISO, r"/jup/echo\?a=1", NUM, NUM, "1", "BYPASS", "rid-two"), got[1]), got[1]
    assert "traceparent" not in got[2] and "rid=rid-three" in got[2]


def test_access_format_json(fake):
    import json
    got = [json.loads(l) for l in format_lines(fake, "json", ASKS)]
    keys = ["time", "client", "method", "path", "status", "bytes", "dur_ms", "up_ms", "attempts", "cache", "rid"]
    assert list(got[0]) == keys + ["traceparent"] and got[0]["traceparent"] == TP
    assert list(got[1]) == keys and list(got[2]) == keys
    assert [(g["method"], g["path"], g["status"], g["cache"], g["rid"], g["attempts"]) for g in got] == [
        ("GET", "/jup/echo?a=1", 200, "BYPASS", "rid-one", 1),
        ("GET", "/jup/echo?a=1", 200, "BYPASS", "rid-two", 1),
        ("GET", '/jup/echo?a=%22q%22', 200, "BYPASS", "rid-three", 1)]
    assert all(g["client"] == "127.0.0.1" and isinstance(g["bytes"], int) and g["bytes"] > 0 for g in got)


def test_access_format_combined(fake):
    import re
    got = format_lines(fake, "combined", ASKS)
    ts = r"\[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d \+0000\]"
    ua = re.escape("python-requests/" + requests.__version__)
    assert re.fullmatch(r'127\.0\.0\.1 - - %s "GET /jup/echo\?a=1 HTTP/1\.1" 200 \d+ "-" "%s" rid=rid-one cache=BYPASS '
                        r'dur_ms=%s traceparent=%s' % (ts, ua, NUM, TP), got[0]), got[0]
    assert re.fullmatch(r'127\.0\.0\.1 - - %s "GET /jup/echo\?a=1 HTTP/1\.1" 200 \d+ "-" "%s" rid=rid-two cache=BYPASS '
                        r'dur_ms=%s' % (ts, ua, NUM), got[1]), got[1]
    assert re.fullmatch(r'127\.0\.0\.1 - - %s "GET /jup/echo\?a=%%22q%%22 HTTP/1\.1" 200 \d+ "http://r\.example/x" '
                        r'"ua \\x22quoted\\x22\\x5C" rid=rid-three cache=BYPASS dur_ms=%s' % (ts, NUM), got[2]), got[2]


def test_access_format_is_checked(fake):
    rc, out, _ = run_check(cfg(fake).format(port=1234, admin_port=1235, access_log="off")
                           .replace('access: "off"', 'access: "off", format: xml'))
    assert rc == 1 and "c.yaml:5:31: log.format: expected one of: kv, json, combined, found 'xml'" in out, out


ENV_CFG = """listen: ["127.0.0.1:{port}"]
admin: {{ listen: "127.0.0.1:{admin_port}", token: "t" }}
log: {{ access: "{access_log}" }}
upstreams:
  jupiter:
    url: "%(jup)s"
    keys:
      - ${{DC_OPS_UNSET_KEYY}}
      - "k-${{DC_OPS_SET}}-${{DC_OPS_UNSET_TWO}}"
      - ${{DC_OPS_UNSET_DEFAULT:-dflt}}
      - $${{DC_OPS_LITERAL}}
routes:
  - {{ prefix: /jup, upstream: jupiter }}
"""
ENV_WARNINGS = ["%s:8:9: warning: ${DC_OPS_UNSET_KEYY} is not set (empty)",
                "%s:9:26: warning: ${DC_OPS_UNSET_TWO} is not set (empty)"]


def unset_env(monkeypatch):
    for name in ("DC_OPS_UNSET_KEYY", "DC_OPS_UNSET_TWO", "DC_OPS_UNSET_DEFAULT", "DC_OPS_LITERAL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DC_OPS_SET", "set")


def test_unset_env_var_without_default_warns_in_check(fake, monkeypatch):
    """A misspelled ${VAR} used to run silently with an empty value: -t names file:line:col and the
    variable (exit 0: it is valid YAML); a default, a set variable and $${ are no warning."""
    unset_env(monkeypatch)
    rc, out, path = run_check((ENV_CFG % {"jup": fake.url("jup")}).format(port=1234, admin_port=1235,
                                                                          access_log="off"))
    assert rc == 0 and "test is successful" in out, out
    for w in ENV_WARNINGS:
        assert out.count("dexcache: " + w % path) == 1, out
    assert out.count("warning") == 2, out
    assert "DC_OPS_SET" not in out and "DC_OPS_UNSET_DEFAULT" not in out and "LITERAL" not in out, out
    # once set, no warning
    monkeypatch.setenv("DC_OPS_UNSET_KEYY", "k")
    monkeypatch.setenv("DC_OPS_UNSET_TWO", "")  # set but empty is set (the shell's ${X} too)
    rc, out, path = run_check((ENV_CFG % {"jup": fake.url("jup")}).format(port=1234, admin_port=1235,
                                                                          access_log="off"))
    assert rc == 0 and "warning" not in out, out


def test_unset_env_var_without_default_warns_at_start_and_reload(fake, monkeypatch):
    unset_env(monkeypatch)
    d = Dexcache(ENV_CFG % {"jup": fake.url("jup")}).start()
    try:
        err = d.stderr()
        for w in ENV_WARNINGS:
            assert err.count(w % d.config_path) == 1, err
        d.reload()
        assert wait_for(lambda: "config reloaded" in d.stderr(), timeout=10), d.stderr()
        for w in ENV_WARNINGS:
            assert d.stderr().count("reload: " + w % d.config_path) == 1, d.stderr()
        assert d.proc.poll() is None
    finally:
        d.stop()


def test_config_default_is_local_conf_else_installed(fake):
    """-c defaults to conf/dexcache.yaml when the working directory has one (a checkout), else to the
    installed /etc/dexcache/dexcache.yaml (DC_SYSCONFDIR); -h says so."""
    help_ = subprocess.run([BIN, "-h"], capture_output=True, text=True, env=sanitizer_env(), timeout=30).stdout
    assert "(default: conf/dexcache.yaml when it exists in the\n" in help_, help_
    assert "working directory, else /etc/dexcache/dexcache.yaml)" in help_, help_
    empty = workdir(prefix="dexcache-ops-")
    p = subprocess.run([BIN, "-t"], capture_output=True, text=True, env=sanitizer_env(), timeout=30, cwd=empty)
    assert "configuration file /etc/dexcache/dexcache.yaml test" in p.stdout + p.stderr, p.stderr
    if not os.path.exists("/etc/dexcache/dexcache.yaml"):
        assert p.returncode == 1 and "/etc/dexcache/dexcache.yaml: cannot read: No such file" in p.stderr, p.stderr
    checkout = workdir(prefix="dexcache-ops-")
    os.mkdir(os.path.join(checkout, "conf"))
    with open(os.path.join(checkout, "conf", "dexcache.yaml"), "w") as f:
        f.write(cfg(fake).format(port=1234, admin_port=1235, access_log="off"))
    p = subprocess.run([BIN, "-t"], capture_output=True, text=True, env=sanitizer_env(), timeout=30, cwd=checkout)
    assert p.returncode == 0 and "configuration file conf/dexcache.yaml test is successful" in p.stdout, p.stderr
    assert "/etc/dexcache" not in p.stdout + p.stderr


# under the prefix; the config, logrotate file (and the plugin folder, compiled in) are absolute
INSTALLED = ["sbin/dexcache", "share/man/man8/dexcache.8", "share/man/man5/dexcache.yaml.5",
             "lib/systemd/system/dexcache.service", "include/dexcache/plugin.h", "lib/pkgconfig/dexcache-plugin.pc"]
INSTALLED_ABS = ["etc/dexcache/dexcache.yaml", "etc/logrotate.d/dexcache"]


def compiled_plugin_dir():
    """The folder of the shipped plugins compiled into the binary (DC_PLUGINDIR), from -h."""
    help_ = subprocess.run([BIN, "-h"], capture_output=True, text=True, env=sanitizer_env(), timeout=30).stdout
    m = re.search(r"plugins: a relative path: not found next to the configuration file is taken from\n  (/\S+)\n",
                  help_)
    assert m, help_
    return m.group(1)


def render_man(page):
    """(tool, exit code, text, warnings) from man -l with every groff warning on (-ww; man's
    --warnings=all would turn them all off) or, without man, groff -man."""
    import shutil
    env = dict(os.environ, MANWIDTH="80", MAN_KEEP_FORMATTING="0", LC_ALL="C.UTF-8")
    if shutil.which("man"):
        p = subprocess.run(["man", "--warnings=w", "-l", page], capture_output=True, text=True, env=env,
                           timeout=60)
        return "man", p.returncode, p.stdout, p.stderr
    if shutil.which("groff"):
        p = subprocess.run(["groff", "-man", "-Tutf8", "-ww", page], capture_output=True, text=True, env=env,
                           timeout=60)
        return "groff", p.returncode, p.stdout, p.stderr
    pytest.skip("neither man nor groff is installed")


@pytest.mark.parametrize("prefix", ["/usr", "/usr/local", "/opt/dexcache-test"])
def test_cmake_install_honours_prefix_and_destdir(prefix):
    """cmake --install with --prefix and DESTDIR installs exactly the operable set: the binary, man
    pages, unit, header and pkg-config file under DESTDIR/PREFIX; whatever the prefix, the config in
    DESTDIR/etc/dexcache (where the binary's -c default and the unit look), logrotate's file in
    DESTDIR/etc/logrotate.d, the log folder DESTDIR/var/log/dexcache, the plugins in the compiled-in
    plugin folder; nothing else. The installed config passes -t; the man pages render without a
    warning; logrotate signals SIGUSR1. (The config went to PREFIX/etc/dexcache, where nothing reads
    it, and -t failed on the missing /var/log/dexcache.)"""
    build = os.path.dirname(BIN)
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        pytest.skip("DEXCACHE_BIN is not in a CMake build directory")
    plugdir = compiled_plugin_dir()
    dest = workdir(prefix="dexcache-install-")
    env = dict(os.environ, DESTDIR=dest)
    p = subprocess.run(["cmake", "--install", build, "--prefix", prefix], capture_output=True, text=True, env=env,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    found = sorted(os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs)
    want = [prefix.lstrip("/") + "/" + f for f in INSTALLED] + INSTALLED_ABS
    want += [os.path.join(plugdir.lstrip("/"), so) for so in ("auth.so", "json_view.so")]
    assert found == sorted(want), found
    assert os.path.isdir(os.path.join(dest, "var/log/dexcache"))
    assert os.listdir(os.path.join(dest, "var/log/dexcache")) == []
    root = os.path.join(dest, prefix.lstrip("/"))
    assert os.access(os.path.join(root, "sbin/dexcache"), os.X_OK)
    with open(os.path.join(dest, "etc/logrotate.d/dexcache")) as f:
        rot = f.read()
    assert "/var/log/dexcache/*.log {" in rot and "--signal=SIGUSR1 dexcache.service" in rot, rot
    assert "\tcopytruncate" not in rot
    conf_path = os.path.join(dest, "etc/dexcache/dexcache.yaml")
    with open(conf_path) as f:
        conf = f.read()
    assert "log: { access: /var/log/dexcache/access.log," in conf, conf
    # the installed config passes -t with its log folder under DESTDIR (make install made it)
    moved = os.path.join(dest, "etc/dexcache/dexcache-destdir.yaml")
    with open(moved, "w") as f:
        f.write(conf.replace("/var/log/dexcache/", os.path.join(dest, "var/log/dexcache") + "/"))
    p = subprocess.run([BIN, "-t", "-c", moved], capture_output=True, text=True, env=sanitizer_env(), timeout=60)
    assert p.returncode == 0 and "configuration file %s test is successful" % moved in p.stdout, p.stdout + p.stderr
    assert os.listdir(os.path.join(dest, "var/log/dexcache")) == []  # -t creates nothing
    # the binary's default, the unit and the install name the same file
    help_ = subprocess.run([BIN, "-h"], capture_output=True, text=True, env=sanitizer_env(), timeout=30).stdout
    assert "working directory, else /etc/dexcache/dexcache.yaml)" in help_, help_
    with open(os.path.join(root, "lib/systemd/system/dexcache.service")) as f:
        unit = f.read()
    # the unit runs the binary where this install put it (the prefix given at install time)
    assert "\nExecStartPre=%s/sbin/dexcache -t -c /etc/dexcache/dexcache.yaml\n" % prefix in unit, unit
    assert "\nExecStart=%s/sbin/dexcache -c /etc/dexcache/dexcache.yaml\n" % prefix in unit, unit
    assert "\nEnvironmentFile=-/etc/dexcache/env\n" in unit, unit
    assert "@" not in unit.replace("@system-service", "").replace("@privileged", "").replace("@resources", ""), unit
    for page, title in (("share/man/man8/dexcache.8", "DEXCACHE(8)"),
                        ("share/man/man5/dexcache.yaml.5", "DEXCACHE.YAML(5)")):
        tool, rc, text, warnings = render_man(os.path.join(root, page))
        assert rc == 0 and warnings == "", (tool, warnings)
        assert text.startswith(title) or text.lstrip().startswith(title), text[:200]
    _, _, text, _ = render_man(os.path.join(root, "share/man/man5/dexcache.yaml.5"))
    text = re.sub(".\b", "", text)  # overstrike bold/underline when not on a terminal
    # every top-level key of the reference is in the page
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "conf", "REFERENCE.md")) as f:
        keys = [l[5:-1] for l in f.read().splitlines() if l.startswith("### `")]
    assert len(keys) > 5
    for k in keys:
        assert "\n   %s\n" % k in text, k


BATCH_STREAM_LOG = """listen: ["127.0.0.1:{port}"]
workers: 1
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: "{access_log}", format: json }}
upstreams:
  jupiter: {{ url: "%s" }}
routes:
  - prefix: /jup
    upstream: jupiter
    cache: [ {{ path: /price/v3, ttl: 30s }} ]
    batch: {{ path: /price/v3, param: ids, max: 50, window: 5ms }}
streams:
  - {{ path: /jup/stream/price, upstream: jupiter, upstream_path: /price/v3, interval: 300ms, heartbeat: 300ms }}
"""
SOL = "So11111111111111111111111111111111111111112"
JUP = "JUPyiwrYJFskUPiHa7hkeR8VUtAeFoSYbKedZNsDvCN"


def test_access_log_upstream_figures_for_batched_and_streamed_requests(fake, origin):
    """A batched miss logs the attempts and upstream time of the batch fetch that answered it (it
    logged 0 and 0.000); a hit logs none; a stream logs the polls made for its channel while it was
    subscribed, and its client address although the client has gone when the line is written."""
    import json
    import subprocess
    with Dexcache(BATCH_STREAM_LOG % fake.url("jup")) as d:
        assert requests.get(d.url + "/jup/price/v3?ids=%s,%s" % (SOL, JUP), timeout=10).status_code == 200
        assert requests.get(d.url + "/jup/price/v3?ids=%s" % SOL, timeout=10).status_code == 200
        polls_before = origin.stats()["jup"]["total"]
        subprocess.run(["curl", "-sN", "-m", "1.6", "-o", "/dev/null", d.url + "/jup/stream/price?ids=" + JUP],
                       timeout=10)
        assert wait_for(lambda: len(d.access_lines()) == 3, timeout=10), d.access_lines()
        miss, hit, stream = [json.loads(l) for l in d.access_lines()]
        assert (miss["cache"], miss["attempts"]) == ("MISS", 1) and miss["up_ms"] > 0, miss
        assert (hit["cache"], hit["attempts"], hit["up_ms"]) == ("HIT", 0, 0), hit
        polls = origin.stats()["jup"]["total"] - polls_before
        assert stream["cache"] == "STREAM" and stream["client"] == "127.0.0.1", stream
        assert 2 <= stream["attempts"] <= polls and stream["up_ms"] > 0, (stream, polls)


def raw_get(d, target):
    """One HTTP/1.1 GET of `target` (bytes, sent as they are); returns the status."""
    from rawhttp import read_response
    with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return read_response(s)[0]


def test_kv_line_cannot_be_forged_by_the_path(fake, origin):
    """A quote in the path used to end the kv line's path field, so the rest of the path read as
    fields of its own (a forged status and request id); now it is escaped as the combined format
    escapes it, and every field appears once."""
    d = Dexcache(cfg(fake)).start()
    try:
        raw_get(d, b'/jup/echo?x="status=299_rid=forged\\')
        assert wait_for(lambda: len(d.access_lines()) == 1, timeout=10)
        line = d.access_lines()[0]
        assert 'path="/jup/echo?x=\\x22status=299_rid=forged\\x5C" status=' in line, line
        assert line.count('"') == 2, line  # the path field's own quotes only
        assert line.count(" status=") == 1 and line.count(" rid=") == 1, line
        assert re.search(r' status=(200|4\d\d) ', line), line
    finally:
        assert d.stop() == 0


def test_json_line_keeps_utf8_and_replaces_bad_bytes(fake, origin):
    """UTF-8 in a path is logged as the characters it spells (it was one \\u00XX per byte: mojibake);
    a byte that is not UTF-8 becomes U+FFFD; the line stays valid JSON."""
    import json
    d = Dexcache(cfg(fake).replace('log: {{ access: "{access_log}" }}',
                                   'log: {{ access: "{access_log}", format: json }}')).start()
    try:
        raw_get(d, b"/jup/echo?w=caf\xc3\xa9&b=\xff\xfe&c=\xe2\x82")
        assert wait_for(lambda: len(d.access_lines()) == 1, timeout=10)
        with open(d.access_log, "rb") as f:
            raw = f.read().strip()
        raw.decode("utf-8")  # valid UTF-8
        entry = json.loads(raw)
        assert entry["path"] == "/jup/echo?w=caf\u00e9&b=\ufffd\ufffd&c=\ufffd\ufffd", entry["path"]
    finally:
        assert d.stop() == 0


TRUSTED = """
listen: ["127.0.0.1:{port}"]
workers: 1
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: "{access_log}", format: json }}
server: {{ trusted_proxies: ["127.0.0.1/32"] }}
upstreams:
  jupiter: {{ url: "%(jup)s" }}
routes:
  - {{ prefix: /jup, upstream: jupiter }}
"""


def test_log_names_the_client_behind_a_trusted_proxy(fake, origin):
    """Behind a trusted proxy (Cloudflare), the log's client is CF-Connecting-IP / X-Forwarded-For,
    the address limits use (it was always the proxy's); from an untrusted peer the headers count
    for nothing."""
    import json
    d = Dexcache(TRUSTED % {"jup": fake.url("jup")}).start()
    try:
        for h in ({"CF-Connecting-IP": "203.0.113.9"}, {"X-Forwarded-For": "198.51.100.7, 127.0.0.1"}, {}):
            assert requests.get(d.url + "/jup/echo", headers=h, timeout=10).status_code == 200
        assert wait_for(lambda: len(d.access_lines()) == 3, timeout=10)
        assert [json.loads(l)["client"] for l in d.access_lines()] == ["203.0.113.9", "198.51.100.7", "127.0.0.1"]
    finally:
        assert d.stop() == 0
    d = Dexcache(cfg(fake).replace('log: {{ access: "{access_log}" }}',
                                   'log: {{ access: "{access_log}", format: json }}')).start()
    try:
        requests.get(d.url + "/jup/echo", headers={"CF-Connecting-IP": "203.0.113.9"}, timeout=10)
        assert wait_for(lambda: len(d.access_lines()) == 1, timeout=10)
        assert json.loads(d.access_lines()[0])["client"] == "127.0.0.1"
    finally:
        assert d.stop() == 0


def test_requests_libh2o_refuses_are_logged_with_their_request_id(fake, origin):
    """A request libh2o answers itself before our handler (an Expect it does not know: 417) gets an
    access line too (it got none), with the request id its JSON error carries. (A request line
    libh2o cannot parse is answered with fixed bytes before any hook: no line, see README.)"""
    from rawhttp import read_response
    d = Dexcache(cfg(fake)).start()
    try:
        with socket.create_connection(("127.0.0.1", d.port), timeout=10) as s:
            s.sendall(b"POST /jup/x HTTP/1.1\r\nHost: x\r\nExpect: foo\r\nContent-Length: 3\r\n\r\n")
            status, headers, body = read_response(s)
        assert status == 417, (status, body)
        rid = headers["x-request-id"]
        assert wait_for(lambda: len(d.access_lines()) == 1, timeout=10), d.access_lines()
        line = d.access_lines()[0]
        assert 'method=POST path="/jup/x" status=417 ' in line and line.endswith(" cache=- rid=" + rid), line
    finally:
        assert d.stop() == 0
