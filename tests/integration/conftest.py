import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

from fixtures import fake, origin, redis_server  # noqa: E402,F401
