import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from fixtures import fake, origin, redis_server  # noqa: E402,F401
from suite_hooks import (_dc_workdirs, pytest_runtest_makereport, pytest_runtest_teardown,  # noqa: E402,F401
                         pytest_sessionfinish, pytest_terminal_summary)
