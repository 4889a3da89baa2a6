"""The Debian package (issue 18, "Install and package"): debian/mkdeb (what `make deb` runs) builds
dexcache_<version>_<arch>.deb and dexcache-dev_<version>_all.deb, lintian finds no error, dpkg -i
creates the system user, installs and enables the unit and the conffiles, the installed binary checks
the installed config and serves /health as that user, and dpkg --purge leaves nothing behind: no
files, no logs, no user.

Needs root (dpkg -i), dpkg-buildpackage, debhelper and lintian (`make test` installs them; CI runs as
root). It refuses to run where a dexcache is already installed (package, make install or user): the
purge at the end would remove it. The package is purged even when the test fails. On a host where
systemd runs, dpkg -i also starts the service on the default config (127.0.0.1:8080/9090); the purge
stops it. The build is release, without tests, with 2 jobs: about a minute on 2 idle cores.
"""
import os
import pwd
import re
import shutil
import signal
import subprocess
import urllib.error
import urllib.request

import pytest

from dexcache import ROOT, free_port, wait_for, workdir

MKDEB = os.path.join(ROOT, "debian", "mkdeb")
UNIT = "/lib/systemd/system/dexcache.service"
WANTS = "/etc/systemd/system/multi-user.target.wants/dexcache.service"
CONF = "/etc/dexcache/dexcache.yaml"
# what the package owns or makes: every one is gone after the purge
PATHS = ["/usr/sbin/dexcache", UNIT, WANTS, CONF, "/etc/dexcache", "/etc/logrotate.d/dexcache",
         "/usr/share/man/man8/dexcache.8.gz", "/usr/share/man/man5/dexcache.yaml.5.gz",
         "/usr/share/doc/dexcache", "/usr/include/dexcache/plugin.h", "/usr/share/pkgconfig/dexcache-plugin.pc",
         "/var/log/dexcache"]


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"^project\(dexcache VERSION ([0-9.]+)", f.read(), re.M)
    assert m, "no project(dexcache VERSION ...) in CMakeLists.txt"
    return m.group(1)


def skip_reason():
    if os.geteuid() != 0:
        return "needs root (dpkg -i / dpkg --purge)"
    for tool, pkg in (("dpkg-buildpackage", "dpkg-dev"), ("dh", "debhelper"), ("lintian", "lintian")):
        if shutil.which(tool) is None:
            return "%s is missing (Debian package %s; make deb / make test install it)" % (tool, pkg)
    if subprocess.run(["dpkg-query", "-W", "dexcache", "dexcache-dev"], capture_output=True).returncode == 0:
        return "a dexcache package is installed here: this test would replace and purge it"
    for p in ("/usr/sbin/dexcache", CONF, UNIT):
        if os.path.lexists(p):
            return "%s exists (an installed dexcache): this test would remove it" % p
    try:
        pwd.getpwnam("dexcache")
        return "a user dexcache exists: this test would delete it"
    except KeyError:
        return None


def run(cmd, timeout=120, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def installed(pkg):
    p = run(["dpkg-query", "-W", "-f=${db:Status-Status}", pkg])
    return p.returncode == 0 and p.stdout not in ("", "not-installed")


def get_status(url, timeout=5):
    """(status, body) of a GET, (None, "") when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def test_deb_builds_lints_installs_runs_and_purges():
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    version = project_version()
    arch = run(["dpkg-architecture", "-qDEB_HOST_ARCH"]).stdout.strip()
    out = workdir(prefix="dexcache-deb-")
    p = run([MKDEB, out], timeout=1500, env=dict(os.environ, DEB_JOBS="2"))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    deb = p.stdout.strip().splitlines()[-1]
    assert deb == os.path.join(out, "dexcache_%s_%s.deb" % (version, arch)), p.stdout
    dev = os.path.join(out, "dexcache-dev_%s_all.deb" % version)
    assert os.path.isfile(deb) and os.path.isfile(dev), os.listdir(out)
    # nothing was built in the source tree
    assert not any(n.startswith("obj-") for n in os.listdir(ROOT))
    assert not os.path.exists(os.path.join(ROOT, "debian", "changelog"))

    lint = run(["lintian", "--tag-display-limit", "0", "-I", deb, dev], timeout=600)
    print("lintian:\n" + lint.stdout + lint.stderr)
    assert lint.returncode in (0, 1), lint.stderr  # 1: tags of the fail-on level (error) were found
    errors = [l for l in lint.stdout.splitlines() if l.startswith("E:")]
    assert errors == [], lint.stdout

    fields = run(["dpkg-deb", "-f", deb, "Package", "Version", "Architecture", "Depends"]).stdout
    assert "Package: dexcache\nVersion: %s\nArchitecture: %s\n" % (version, arch) in fields, fields
    for lib in ("libh2o0.13", "libcurl4", "libhiredis", "libyaml-0-2", "libuv1", "libmbedcrypto", "adduser"):
        assert lib in fields, (lib, fields)  # ${shlibs:Depends}, and adduser for postinst

    proc = None
    try:
        p = run(["dpkg", "-i", deb, dev], timeout=300, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        assert p.returncode == 0, p.stdout + p.stderr
        assert installed("dexcache") and installed("dexcache-dev")

        # the system user and group
        p = run(["id", "dexcache"])
        assert p.returncode == 0, p.stderr
        user = pwd.getpwnam("dexcache")
        assert user.pw_uid < 1000 and user.pw_shell in ("/usr/sbin/nologin", "/bin/false"), user
        assert re.search(r"gid=\d+\(dexcache\)", p.stdout), p.stdout
        st = os.stat("/var/log/dexcache")
        assert st.st_uid == user.pw_uid, st

        # the unit runs the packaged binary on the packaged config as that user; it is enabled
        with open(UNIT) as f:
            unit = f.read()
        assert "\nExecStartPre=/usr/sbin/dexcache -t -c /etc/dexcache/dexcache.yaml\n" in unit, unit
        assert "\nExecStart=/usr/sbin/dexcache -c /etc/dexcache/dexcache.yaml\n" in unit, unit
        assert "\nUser=dexcache\n" in unit and "\nType=notify\n" in unit, unit
        assert os.path.realpath(WANTS) == os.path.realpath(UNIT), "dh_installsystemd did not enable the unit"

        # the config and the logrotate file are conffiles (dpkg keeps local edits on upgrade)
        conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}", "dexcache"]).stdout
        names = sorted(l.split()[0] for l in conffiles.strip().splitlines())
        assert names == ["/etc/dexcache/dexcache.yaml", "/etc/logrotate.d/dexcache"], conffiles

        # the plugin header and its pkg-config file (dexcache-dev)
        p = run(["pkg-config", "--modversion", "dexcache-plugin"])
        assert p.returncode == 0 and p.stdout.strip() == version, p.stdout + p.stderr
        assert os.path.isfile("/usr/include/dexcache/plugin.h")

        # the plugins, in the folder the binary looks in for a relative plugin path not found next
        # to the config file (`path: auth.so` works as the docs write it)
        multiarch = run(["dpkg-architecture", "-qDEB_HOST_MULTIARCH"]).stdout.strip()
        plugdir = "/usr/lib/%s/dexcache/plugins" % multiarch
        files = run(["dpkg-query", "-L", "dexcache"]).stdout.splitlines()
        for so in ("auth.so", "json_view.so"):
            assert os.path.join(plugdir, so) in files, files
        assert plugdir in run(["/usr/sbin/dexcache", "-h"]).stdout
        for ex in ("cloudflare-origin.yaml", "fake-origin.yaml", "dexcache.json", "alerts.yaml"):
            assert os.path.isfile("/usr/share/doc/dexcache/examples/" + ex), ex
        pd = workdir(prefix="dexcache-deb-plug-")
        os.chmod(pd, 0o755)
        pconf = os.path.join(pd, "plugins.yaml")
        with open(pconf, "w") as f:
            f.write('listen: ["127.0.0.1:1"]\nupstreams:\n  u: { url: "http://127.0.0.1:9" }\nplugins:\n'
                    '  - { name: auth, path: auth.so, config: { api_keys: { header: x-api-key, '
                    'keys: ["deb-test-key-0123456789abcdef"] } } }\n'
                    'routes:\n  - { prefix: /u, upstream: u, plugins: [auth] }\n')
        p = run(["/usr/sbin/dexcache", "-t", "-c", pconf], timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        p = run(["/usr/sbin/dexcache", "-v", "-c", pconf], timeout=60)
        assert re.search(r"^plugin auth: auth \S+ \(%s\)$" % re.escape(os.path.join(plugdir, "auth.so")), p.stdout,
                         re.M), p.stdout + p.stderr

        p = run(["/usr/sbin/dexcache", "--version"])
        assert p.returncode == 0 and version in p.stdout + p.stderr, p.stdout + p.stderr
        p = run(["/usr/sbin/dexcache", "-t", "-c", CONF], timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        assert "configuration file %s test is successful" % CONF in p.stdout, p.stdout + p.stderr

        # the installed binary on the installed config, moved to loopback ports, as the system user
        # (directly, not through systemd: CI has no systemd running)
        with open(CONF) as f:
            conf = f.read()
        port, admin_port = free_port(), free_port()
        while admin_port == port:
            admin_port = free_port()
        assert 'listen: ["127.0.0.1:8080"]' in conf and 'listen: "127.0.0.1:9090"' in conf, conf
        conf = conf.replace('listen: ["127.0.0.1:8080"]', 'listen: ["127.0.0.1:%d"]' % port)
        conf = conf.replace('listen: "127.0.0.1:9090"', 'listen: "127.0.0.1:%d"' % admin_port)
        conf = conf.replace("workers: auto", "workers: 1")
        d = workdir(prefix="dexcache-deb-run-")
        os.chmod(d, 0o755)
        path = os.path.join(d, "dexcache.yaml")
        with open(path, "w") as f:
            f.write(conf)
        os.chmod(path, 0o644)
        errlog = open(os.path.join(d, "stderr"), "w+")
        proc = subprocess.Popen(["/usr/sbin/dexcache", "-c", path], stdout=subprocess.DEVNULL, stderr=errlog,
                                user="dexcache", group="dexcache", cwd=d)
        health = "http://127.0.0.1:%d/health" % admin_port
        assert wait_for(lambda: proc.poll() is not None or get_status(health)[0] == 200, timeout=30), \
            open(errlog.name).read()
        status, body = get_status(health)
        assert status == 200 and '"status"' in body, (status, body, open(errlog.name).read())
        assert run(["ps", "-o", "user=", "-p", str(proc.pid)]).stdout.strip() == "dexcache"
        # the proxy listener answers too (no route: 404 from dexcache itself)
        status, _ = get_status("http://127.0.0.1:%d/nope" % port)
        assert status == 404, status
        proc.send_signal(signal.SIGTERM)
        stop_rc = proc.wait(timeout=30)
        assert stop_rc == 0, (stop_rc, open(errlog.name).read())
    finally:
        # never leave the package (or a process of its user) behind, whatever failed above
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        purge = run(["dpkg", "--purge", "dexcache", "dexcache-dev"], timeout=300)
    assert purge.returncode == 0, purge.stdout + purge.stderr
    assert not installed("dexcache") and not installed("dexcache-dev")
    left = [p for p in PATHS if os.path.lexists(p)]
    assert left == [], left
    assert run(["id", "dexcache"]).returncode != 0
    assert run(["getent", "group", "dexcache"]).returncode != 0
