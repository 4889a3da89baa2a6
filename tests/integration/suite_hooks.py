"""pytest hooks shared by the integration and adversarial suites (both conftests import them).

Work directories. Every directory a test helper creates (dexcache.workdir(): Dexcache's config and
logs, `dexcache -t` configs, redis-server's dir, test certificates) is removed when the test that
created it passes. When a test fails, every work directory alive at that moment is kept (the
daemon's stderr.log and config are there) and its path is printed in the summary. Directories made
by module-scoped fixtures are removed once the module's last test is torn down (its fixtures are
finalised then), unless a test failed while they were alive.

Fixed sleeps. time.sleep is metered: every call made directly from a test file (test_*.py) is
counted, with its argument, per file. The summary prints the total; DEXCACHE_SLEEP_REPORT=FILE also
writes it as JSON. Sleeps inside helpers (wait_for's poll step, FakeOrigin.wait_held) are waits on a
condition and are not counted.
"""
import json
import os
import sys
import threading
import time

import pytest

import dexcache

_real_sleep = getattr(time.sleep, "_dc_real", time.sleep)
_sleeps = {}  # test file basename -> [calls, seconds]
_sleeps_lock = threading.Lock()
_state = {"summary_done": False, "failed_kept": []}


def _metered_sleep(seconds):
    f = sys._getframe(1)
    base = os.path.basename(f.f_code.co_filename)
    if base.startswith("test_"):
        with _sleeps_lock:
            c = _sleeps.setdefault("%s:%d" % (base, f.f_lineno), [0, 0.0])
            c[0] += 1
            c[1] += float(seconds)
    return _real_sleep(seconds)


if not hasattr(time.sleep, "_dc_real"):
    _metered_sleep._dc_real = _real_sleep
    time.sleep = _metered_sleep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "_dc_rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def _dc_workdirs(request):
    """Notes the work directories this test makes (removed after its teardown when it passed)."""
    before = set(dexcache.live_workdirs())
    yield
    request.node._dc_new_workdirs = [d for d in dexcache.live_workdirs() if d not in before]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    outcome = yield
    # every fixture of the test (and, at a module's end, of the module) is finalised now: a
    # sanitizer report found when a daemon stops fails the teardown, and keeps the directories too
    failed = outcome.excinfo is not None or any(
        getattr(item, "_dc_rep_" + w, None) is not None and getattr(item, "_dc_rep_" + w).failed
        for w in ("setup", "call"))
    if failed:
        kept = dexcache.keep_workdirs()
        if kept:
            _state["failed_kept"].append((item.nodeid, kept))
        return
    dexcache.remove_workdirs(getattr(item, "_dc_new_workdirs", []))
    if nextitem is None or nextitem.module is not item.module:
        # the module's fixtures are finalised: what is left was theirs
        dexcache.remove_workdirs(dexcache.live_workdirs())


def pytest_sessionfinish(session, exitstatus):
    dexcache.remove_workdirs(dexcache.live_workdirs())


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _state["summary_done"]:
        return
    _state["summary_done"] = True
    tr = terminalreporter
    with _sleeps_lock:
        per_site = {k: (v[0], round(v[1], 3)) for k, v in sorted(_sleeps.items())}
    per_file = {}
    for site, (n, sec) in per_site.items():
        c = per_file.setdefault(site.rpartition(":")[0], [0, 0.0])
        c[0] += n
        c[1] += sec
    total = sum(v[1] for v in per_file.values())
    calls = sum(v[0] for v in per_file.values())
    tr.write_line("fixed sleeps in test files: %d calls, %.2f s total" % (calls, total))
    for name, (n, s) in per_file.items():
        tr.write_line("  %-32s %4d calls %8.2f s" % (name, n, s))
    for nodeid, kept in _state["failed_kept"]:
        for d in kept:
            tr.write_line("kept for the failed test %s: %s" % (nodeid, d))
    path = os.environ.get("DEXCACHE_SLEEP_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump({"calls": calls, "seconds": round(total, 3), "per_file": per_file, "per_site": per_site}, f,
                      indent=1)
