"""Shared by the adversarial tests: the run's scale (short in CI, larger under make soak)."""
import os

SOAK = os.environ.get("DEXCACHE_SOAK") == "1"


def scale(short, soak):
    """A size for the current mode: `short` in CI, `soak` under make soak (DEXCACHE_SOAK=1)."""
    return soak if SOAK else short
