"""Reliability tests: the fuzz targets count the cases they tried (the ``fuzz_cases`` fixture), and the
run ends with one line that says how many per target."""
import collections

import pytest

FUZZ_CASES = pytest.StashKey[collections.Counter]()


@pytest.fixture(scope="session")
def fuzz_cases(pytestconfig) -> collections.Counter:
    """``fuzz_cases[target] += 1`` in a fuzz test's body counts one case tried on that target."""
    return pytestconfig.stash.setdefault(FUZZ_CASES, collections.Counter())


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    cases = config.stash.get(FUZZ_CASES, None)
    if cases:
        terminalreporter.write_line("fuzz: " + ", ".join(f"{target} {n} cases" for target, n in cases.items()))
