"""The adversarial suite: attacks on the real binary (misbehaving origins, HTTP/2 abuse, bad
requests, Redis faults, outages). Shares the integration helpers (Dexcache, FakeOrigin, RedisServer).
Test files are named test_adv_*.py (pytest needs basenames unique across both suites).

DEXCACHE_SOAK=1 (make soak) runs every attack at a larger scale for longer and prints figures;
the default short mode is what CI runs."""
import os
import sys

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
sys.path.insert(0, HERE)

from fixtures import fake, origin, redis_server  # noqa: E402,F401
from suite_hooks import (_dc_workdirs, pytest_runtest_makereport, pytest_runtest_teardown,  # noqa: E402,F401
                         pytest_sessionfinish, pytest_terminal_summary)

