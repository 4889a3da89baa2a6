import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from fake import FakeOrigin  # noqa: E402


@pytest.fixture(scope="module")
def fake():
    """One fake DEX origin per test module (jup + meteora), counters reset before each test."""
    f = FakeOrigin(args=["--lat", "fixed=0", "--keys", "k1,k2,k3"], profiles=("jup", "meteora"))
    f.start()
    yield f
    f.stop()


@pytest.fixture
def origin(fake):
    fake.reset()
    return fake
