"""The plugin ABI at load time (lua-free-plugins/include/dexcache/plugin.h): `dexcache -t` loads and
instantiates every plugin and exits 1 naming the file on any ABI, load or plugin config error;
plugins built with an older minor load; -v and /health list them; a bad plugin config on SIGHUP
keeps the old instances serving; the example builds out of tree through pkg-config and loads."""
import os
import re
import shutil
import signal
import subprocess

import pytest
import requests

from dexcache import BIN, Dexcache, run_check, wait_for, workdir

PLUGDIR = os.path.join(os.path.dirname(BIN), "tests", "plugins")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
HEADER = os.path.join(ROOT, "lua-free-plugins", "include", "dexcache", "plugin.h")


def abi():
    text = open(HEADER).read()
    major = int(re.search(r"#define DEXCACHE_PLUGIN_ABI_MAJOR (\d+)", text).group(1))
    minor = int(re.search(r"#define DEXCACHE_PLUGIN_ABI_MINOR (\d+)", text).group(1))
    return major, minor


def plug(name):
    return os.path.join(PLUGDIR, name + ".so")


def check_config(plugins_yaml, route_plugins="[t]"):
    return """
listen: ["127.0.0.1:1"]
upstreams:
  jupiter: { url: "http://127.0.0.1:9" }
plugins:
%s
routes:
  - { prefix: /jup, upstream: jupiter, plugins: %s }
""" % (plugins_yaml, route_plugins)


def one(path, config=None):
    entry = "  - name: t\n    path: %s\n" % path
    if config is not None:
        entry += "    config: %s\n" % config
    return check_config(entry)


def pos(text, needle):
    """'LINE:COL' (1-based) of the first occurrence of needle in text."""
    i = text.index(needle)
    return "%d:%d" % (text.count("\n", 0, i) + 1, i - text.rfind("\n", 0, i))


def refused(text, *needles):
    rc, out, path = run_check(text)
    assert rc == 1, out
    assert "configuration file %s test failed" % path in out, out
    for n in needles:
        assert n in out, out
    return out


MAJOR, MINOR = abi()


@pytest.mark.parametrize("name,major,minor,why", [
    ("abi_major_plus", MAJOR + 1, MINOR, "the major version must be equal"),
    ("abi_major_minus", MAJOR - 1, MINOR, "the major version must be equal"),
    ("abi_minor_plus", MAJOR, MINOR + 1, "the minor version must not be above the host's"),
])
def test_version_refused_with_both_versions(name, major, minor, why):
    refused(one(plug(name)), "dexcache: plugin %s: built for plugin ABI %d.%d, this dexcache has ABI %d.%d (%s)\n"
            % (plug(name), major, minor, MAJOR, MINOR, why))


def test_bad_magic_short_size_missing_symbol():
    refused(one(plug("bad_magic")), "plugin %s: bad magic 0x12345678 in dexcache_plugin" % plug("bad_magic"))
    out = refused(one(plug("short_size")), "plugin %s: dexcache_plugin has size " % plug("short_size"))
    size = int(re.search(r"expected (\d+) for ABI", out).group(1))
    assert "has size %d, expected %d for ABI %d.x" % (size - 8, size, MAJOR) in out
    refused(one(plug("no_symbol")), "plugin %s: does not export the symbol dexcache_plugin" % plug("no_symbol"))


def test_not_elf_unreadable_missing():
    d = workdir()
    text = os.path.join(d, "notes.so")
    with open(text, "w") as f:
        f.write("this is not a shared object\n")
    refused(one(text), "plugin %s: not an ELF shared object" % text)
    refused(one(os.path.join(d, "absent.so")), "plugin %s: cannot read: No such file or directory"
            % os.path.join(d, "absent.so"))
    refused(one(d), "plugin %s: cannot read: not a regular file" % d)
    if os.geteuid() != 0:  # root reads anything
        locked = os.path.join(d, "locked.so")
        shutil.copy(plug("testhooks"), locked)
        os.chmod(locked, 0)
        refused(one(locked), "plugin %s: cannot read: Permission denied" % locked)


def test_relative_path_is_from_the_config_folder():
    d = workdir()
    shutil.copy(plug("testhooks"), os.path.join(d, "rel.so"))
    path = os.path.join(d, "c.yaml")
    with open(path, "w") as f:
        f.write(one("rel.so"))
    p = subprocess.run([BIN, "-t", "-c", path], capture_output=True, timeout=30, cwd="/")
    assert p.returncode == 0, p.stderr


def test_duplicate_plugin_name_and_instance_name():
    entries = "  - { name: t, path: %s }\n  - { name: u, path: %s }\n" % (plug("testhooks"), plug("dup_name"))
    refused(check_config(entries), "plugin %s: the plugin name 'testhooks' is already taken by %s"
            % (plug("dup_name"), os.path.realpath(plug("testhooks"))))
    entries = "  - { name: t, path: %s }\n  - { name: t, path: %s }\n" % (plug("testhooks"), plug("testhooks"))
    refused(check_config(entries), "c.yaml:7:13: plugins[1].name: expected a name no other plugin has, found 't' (plugins[0] has it)")
    # the same file behind two instances is fine
    entries = "  - { name: t, path: %s }\n  - { name: u, path: %s }\n" % (plug("testhooks"), plug("testhooks"))
    rc, out, _ = run_check(check_config(entries, "[t, u]"))
    assert rc == 0, out


def test_route_names_unknown_plugin():
    refused(check_config("  - { name: t, path: %s }\n" % plug("testhooks"), "[t, nope]"),
            "routes[0].plugins[1]: expected the name of a plugin under plugins:, found 'nope'")


def test_failing_instance_new_and_options_errors_name_the_yaml_position():
    text = one(plug("testhooks"), "{ deny: { header: x-key, value: s }, fail_new: true }")
    refused(text, "dexcache: plugin t (%s): instance_new failed: " % os.path.realpath(plug("testhooks")),
            "c.yaml:%s: plugins[0].config.fail_new: instance t refused to start" % pos(text, "true"))
    text = one(plug("testhooks"), "{ delay: soon }")
    refused(text, "c.yaml:%s: plugins[0].config.delay: expected a duration (500ms, 2s, 5m), found 'soon' "
            "(resume delay)" % pos(text, "soon"))
    text = one(plug("testhooks"), "{ dealy: 1s }")
    refused(text, "c.yaml:%s: plugins[0].config.dealy: unknown key (expected one of: deny, key_header, deliver, "
            "identity_header, strip_header, suspend, delay, fail_new, crash_header)" % pos(text, "1s"))
    text = one(plug("testhooks"), "{ deny: { header: x-key } }")
    refused(text, "c.yaml:%s: plugins[0].config.deny: expected the key value (a string: the value it must have), "
            "found nothing (the key is required)" % pos(text, "{ header"))
    refused(one(plug("testhooks"), "{ delay: 2m }"),
            "plugins[0].config.delay: expected a duration (500ms, 2s, 5m) from 0 to 60000 ms, found '2m'")


def test_start_with_a_bad_plugin_exits_1_before_binding():
    text = one(plug("abi_minor_plus")).replace("{", "{{").replace("}", "}}")
    d = Dexcache(text.replace('"127.0.0.1:1"', '"127.0.0.1:{port}"'))
    d.start(wait=False)
    assert d.proc.wait(30) == 1
    err = d.stderr()
    assert "plugin %s: built for plugin ABI" % plug("abi_minor_plus") in err
    d.proc = None
    d._stderr.close()
    with __import__("socket").socket() as s:  # the port was never bound: it is free
        s.bind(("127.0.0.1", d.port))


def test_world_writable_plugin_refused():
    """Any local user could replace the code a world-writable plugin file holds."""
    d = workdir()
    so = os.path.join(d, "open.so")
    shutil.copy(plug("testhooks"), so)
    os.chmod(so, 0o666)
    refused(one(so), "plugin %s: writable by every user: refused (chmod o-w)" % so)
    os.chmod(so, 0o644)
    rc, out, _ = run_check(one(so))
    assert rc == 0, out


def test_older_minor_loads_and_is_listed(fake, origin):
    if MINOR == 0:
        pytest.skip("no older minor of this major")
    rc, out, path = run_check(one(plug("testhooks_minor_prev")))
    assert rc == 0, out
    p = subprocess.run([BIN, "-v", "-c", path], capture_output=True, timeout=30)
    lines = p.stdout.decode().splitlines()
    assert lines[0].startswith("dexcache ") and lines[0].endswith("plugin ABI %d.%d)" % (MAJOR, MINOR))
    assert lines[1:] == ["plugin t: testhooks 0.3.1 (%s)" % os.path.realpath(plug("testhooks_minor_prev"))]
    cfg = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: off }}
upstreams:
  jupiter: {{ url: "%s" }}
plugins:
  - {{ name: t, path: %s, config: {{ deliver: {{ name: x-old-minor, value: "1" }} }} }}
routes:
  - {{ prefix: /jup, upstream: jupiter, plugins: [t] }}
""" % (fake.url("jup"), plug("testhooks_minor_prev"))
    with Dexcache(cfg) as d:
        assert d.health()["plugins"] == [{"name": "t", "plugin": "testhooks", "version": "0.3.1"}]
        r = requests.get(d.url + "/jup/echo", timeout=10)
        assert r.status_code == 200 and r.headers["x-old-minor"] == "1"


HELLO = """
listen: ["127.0.0.1:{port}"]
workers: 2
admin: {{ listen: "127.0.0.1:{admin_port}" }}
log: {{ access: off }}
upstreams:
  jupiter: {{ url: "%s" }}
plugins:
  - {{ name: hello, path: %s, config: %s }}
routes:
  - {{ prefix: /jup, upstream: jupiter, plugins: [hello], cache: [{{ path: /echo, ttl: 60s }}] }}
"""


def test_bad_plugin_config_on_sighup_keeps_the_old_one(fake, origin):
    so = plug("hello")
    with Dexcache(HELLO % (fake.url("jup"), so, "{{ header: x-hello, value: one }}")) as d:
        assert requests.get(d.url + "/jup/echo", timeout=10).headers["x-hello"] == "one"
        # an unknown option, then a value the plugin's own instance_new refuses: both rejected
        for bad in ("{{ header: x-hello, value: two, colour: red }}", "{{ header: 'x hello', value: two }}"):
            n = d.metric("dexcache_config_reload_failures_total")
            d.reload(HELLO % (fake.url("jup"), so, bad))
            assert wait_for(lambda: d.metric("dexcache_config_reload_failures_total") == n + 1, timeout=15)
            for _ in range(4):  # both workers, hits and misses
                r = requests.get(d.url + "/jup/echo?x=%d" % _, timeout=10)
                assert r.status_code == 200 and r.headers["x-hello"] == "one"
        err = d.stderr()
        assert "reload rejected, the running config keeps serving: " in err
        assert "plugins[0].config.colour: unknown key (expected one of: header, value)" in err
        assert "plugin hello (%s): instance_new failed: " % os.path.realpath(so) in err
        assert "plugins[0].config.header: no spaces in a header name" in err
        d.reload(HELLO % (fake.url("jup"), so, "{{ header: x-hello, value: two }}"))
        assert wait_for(lambda: d.metric("dexcache_config_reloads_total") == 1, timeout=15)
        assert wait_for(lambda: requests.get(d.url + "/jup/echo", timeout=10).headers.get("x-hello") == "two",
                        timeout=10)


def test_plugin_file_replaced_on_disk_is_reported_at_reload(fake, origin):
    """Plugins are never unloaded: a new file at a loaded path (an upgrade) cannot take effect
    before a restart, and a reload says so instead of looking like it applied it."""
    d0 = workdir()
    so = os.path.join(d0, "hello.so")
    shutil.copy(plug("hello"), so)
    with Dexcache(HELLO % (fake.url("jup"), so, "{{ header: x-hello, value: one }}")) as d:
        assert requests.get(d.url + "/jup/echo", timeout=10).headers["x-hello"] == "one"
        fresh = so + ".new"
        shutil.copy(plug("hello"), fresh)
        os.rename(fresh, so)  # a new inode, as an upgrade installs it
        d.reload(HELLO % (fake.url("jup"), so, "{{ header: x-hello, value: two }}"))
        assert wait_for(lambda: d.metric("dexcache_config_reloads_total") == 1, timeout=15)
        assert wait_for(lambda: "plugin %s changed on disk since it was loaded: the loaded code keeps running "
                        "until dexcache restarts" % so in d.stderr(), timeout=10), d.stderr()[-2000:]


def test_example_builds_out_of_tree_through_pkg_config_and_loads(fake, origin):
    build = os.path.dirname(BIN)
    # under DESTDIR: an install also writes /etc/dexcache, /etc/logrotate.d and /var/log/dexcache
    dest = workdir(prefix="dexcache-prefix-")
    prefix = os.path.join(dest, "opt", "dexcache-pc")
    p = subprocess.run(["cmake", "--install", build, "--prefix", "/opt/dexcache-pc"], capture_output=True,
                       timeout=120, env=dict(os.environ, DESTDIR=dest))
    assert p.returncode == 0, p.stderr
    assert os.path.exists(os.path.join(prefix, "include", "dexcache", "plugin.h"))
    env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(prefix, "lib", "pkgconfig"), PKG_CONFIG_SYSROOT_DIR=dest)
    cflags = subprocess.run(["pkg-config", "--cflags", "dexcache-plugin"], capture_output=True, env=env,
                            timeout=30, check=True).stdout.decode().split()
    assert len(cflags) == 1 and os.path.realpath(cflags[0][2:]) == os.path.realpath(os.path.join(prefix, "include"))
    src = workdir(prefix="dexcache-example-")  # outside the source tree: only hello.c
    shutil.copy(os.path.join(ROOT, "lua-free-plugins", "example", "hello.c"), src)
    assert sum(1 for _ in open(os.path.join(src, "hello.c"))) < 60
    so = os.path.join(src, "hello.so")
    subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror"] + cflags +
                   ["-shared", "-fPIC", "-o", so, os.path.join(src, "hello.c")], check=True, timeout=120, cwd=src)
    with Dexcache(HELLO % (fake.url("jup"), so, "{{ header: x-hello, value: world }}")) as d:
        miss = requests.get(d.url + "/jup/echo", timeout=10)
        hit = requests.get(d.url + "/jup/echo", timeout=10)
        assert miss.headers["x-hello"] == "world" and hit.headers["x-hello"] == "world"
        assert hit.headers["x-cache"] == "HIT"
        assert d.health()["plugins"] == [{"name": "hello", "plugin": "hello", "version": "1.0.0"}]


def test_plugin_overwritten_in_place_keeps_serving_and_reload_warns(fake, origin):
    """`cp other.so loaded.so` rewrites the loaded file in place (same inode): dexcache runs a private
    copy of the plugin (memfd), so requests keep working, with the old code (it crashed with SIGSEGV
    on the next request when dlopen had mapped the file itself); SIGHUP says the file changed."""
    d0 = workdir()
    so = os.path.join(d0, "hello.so")
    shutil.copy(plug("hello"), so)
    with Dexcache(HELLO % (fake.url("jup"), so, "{{ header: x-hello, value: one }}")) as d:
        for i in range(4):
            r = requests.get(d.url + "/jup/echo?before=%d" % i, timeout=10)
            assert r.status_code == 200 and r.headers["x-hello"] == "one"
        ino = os.stat(so).st_ino
        subprocess.run(["cp", plug("testhooks"), so], check=True, timeout=30)  # another build, in place
        assert os.stat(so).st_ino == ino
        with open(so, "rb") as f, open(plug("testhooks"), "rb") as g:
            assert f.read() == g.read()
        for i in range(20):  # both workers, misses and hits
            r = requests.get(d.url + "/jup/echo?after=%d" % (i % 10), timeout=10)
            assert r.status_code == 200 and r.headers["x-hello"] == "one", (r.status_code, r.headers)
        assert d.proc.poll() is None, d.stderr()[-3000:]
        assert "dexcache crash" not in d.stderr()
        d.reload(HELLO % (fake.url("jup"), so, "{{ header: x-hello, value: two }}"))
        assert wait_for(lambda: d.metric("dexcache_config_reloads_total") == 1, timeout=15), d.stderr()[-2000:]
        assert ("plugin %s changed on disk since it was loaded: the loaded code keeps running until dexcache "
                "restarts" % so) in d.stderr(), d.stderr()[-2000:]
        # the loaded hello code builds the new instance: nothing of the file now on disk runs
        assert wait_for(lambda: requests.get(d.url + "/jup/echo?x=1", timeout=10).headers.get("x-hello") == "two",
                        timeout=10)
        assert d.health()["plugins"] == [{"name": "hello", "plugin": "hello", "version": "1.0.0"}]
        # the private copy is sealed: not even root writing through /proc/PID/fd changes it
        fds = "/proc/%d/fd" % d.proc.pid
        copies = [os.path.join(fds, n) for n in os.listdir(fds)
                  if os.readlink(os.path.join(fds, n)).startswith("/memfd:dexcache-plugin")]
        assert len(copies) == 1, copies
        with pytest.raises(PermissionError):
            with open(copies[0], "r+b", buffering=0) as f:
                f.write(b"\0" * 64)
        r = requests.get(d.url + "/jup/echo?x=2", timeout=10)
        assert r.status_code == 200 and r.headers["x-hello"] == "two"
        # messages and -v name the file, never the private copy
        assert "/proc/self/fd" not in d.stderr()
    p = subprocess.run([BIN, "-v", "-c", d.config_path], capture_output=True, text=True, timeout=30)
    assert "/proc/self/fd" not in p.stdout + p.stderr
