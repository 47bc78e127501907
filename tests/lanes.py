"""Which lane this run is, for what a test module decides when it is imported.

conftest.py's pytest_configure sets ``FAST`` (``--fast``) in every process, xdist workers too, before
any test module is imported.
"""
from __future__ import annotations

FAST = False


def examples(full: int) -> int:
    """Hypothesis examples for a property: all of them in the full suite (``./dev test``, CI), a fifth (at
    least 20) in the fast lane, the minute-long loop of a change, where every property still runs."""
    return max(20, full // 5) if FAST else full
