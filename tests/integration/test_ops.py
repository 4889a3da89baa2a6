"""Operating dexcache like nginx: log rotation signals, -t checks of the access log, safe defaults
at start-up (listen address in use, admin without a token), the long options, YAML tab errors."""
import os
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
