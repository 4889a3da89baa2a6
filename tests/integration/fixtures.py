"""Fixtures shared by the integration and adversarial suites (each conftest imports them)."""
import pytest

from dexcache import workdir
from fake import FakeOrigin


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


@pytest.fixture
def redis_server():
    """A real redis-server on a free loopback port, stopped by the test that used it."""
    from redis_proc import RedisServer
    r = RedisServer(workdir(prefix="dexcache-redis-"))
    r.start()
    yield r
    r.stop()
