"""The runnable examples in the docstrings of curate, trainer and pipelines run.

(sampling's are run in test_sampling_store.py.)
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("curate", "trainer", "pipelines")


def _modules() -> list[str]:
    names = []
    for pkg in PACKAGES:
        mod = importlib.import_module(pkg)
        names.append(pkg)
        names += [m.name for m in pkgutil.walk_packages(mod.__path__, prefix=pkg + ".")]
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_public_stages_have_examples():
    # the stages a curation spec can name are the public API users read first
    from pipelines.spec import STAGES

    for module, func in STAGES.values():
        doc = getattr(importlib.import_module(module), func).__doc__ or ""
        assert ">>>" in doc, f"{module}.{func} has no runnable example"
