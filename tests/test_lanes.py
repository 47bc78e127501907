"""The test lanes of tests/conftest.py, run on a sample suite: what asks for a real part is real,
PostgreSQL copies only where marked every_engine, and the fast lane refuses a real part started unmarked."""
from __future__ import annotations

pytest_plugins = ["pytester"]

CONFTEST = '''
import pytest

from tests.conftest import (  # noqa: F401 - the hooks under test
    fast_lane_guard, pytest_addoption, pytest_collection_modifyitems, pytest_configure, pytest_generate_tests,
)


@pytest.fixture
def store():
    return "stands for the real SeaweedFS"
'''

SAMPLE = '''
import pytest

from storage.embedded import EmbeddedStore


def test_pure():
    pass


def test_asks_for_the_store(store):
    pass


def test_has_a_database(engine):
    pass


@pytest.mark.every_engine
def test_where_engines_differ(engine):
    pass


def test_starts_a_store_by_hand(tmp_path):
    EmbeddedStore(tmp_path, "key", "secret", "bucket").start()
'''


def sample_suite(pytester) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_sample=SAMPLE)


def run(pytester, *args: str):
    return pytester.runpytest("-q", "-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=function", *args)


def collected(result) -> set[str]:
    return {line.split("::", 1)[1] for line in result.outlines if "::" in line}


def test_lanes_are_chosen_by_fixtures_and_marks(pytester):
    sample_suite(pytester)
    everything = collected(run(pytester, "--co"))
    assert everything == {
        "test_pure", "test_asks_for_the_store", "test_has_a_database[sqlite]",
        "test_where_engines_differ[sqlite]", "test_where_engines_differ[postgresql]", "test_starts_a_store_by_hand",
    }
    fast = collected(run(pytester, "--co", "--fast"))
    assert fast == {"test_pure", "test_has_a_database[sqlite]", "test_where_engines_differ[sqlite]",
                    "test_starts_a_store_by_hand"}
    on_postgres = collected(run(pytester, "--co", "--engine", "postgresql"))
    assert "test_has_a_database[postgresql]" in on_postgres and "test_has_a_database[sqlite]" not in on_postgres


def test_the_fast_lane_fails_a_test_that_starts_a_real_part_unmarked(pytester):
    sample_suite(pytester)
    result = run(pytester, "--fast", "-k", "by_hand")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*EmbeddedStore.start starts a real part in the fast lane: mark the test real*"])
