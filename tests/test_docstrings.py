"""Docstring examples are executable documentation: every one in the package runs here."""
import doctest
import importlib
import pkgutil

import pytest

import glocal.core
import glocal.modalities
import glocal.tasks

MODULES = sorted(m.name for pkg in (glocal.core, glocal.modalities, glocal.tasks)
                 for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, one_thread):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed"


def test_the_api_and_core_blocks_have_examples():
    counted = {name: doctest.DocTestFinder().find(importlib.import_module(name))
               for name in ("glocal.tasks.api", "glocal.core.block")}
    for name, tests in counted.items():
        assert sum(len(t.examples) for t in tests) > 0, name
