"""The runnable examples in the docstrings of every module run, and the public API has them."""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil

import pytest

PACKAGES = ("curate", "sampling", "trainer", "pipelines")


def _modules(packages: tuple[str, ...] = PACKAGES) -> list[str]:
    names = []
    for pkg in packages:
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


@pytest.mark.parametrize("pkg", PACKAGES)
def test_exported_names_are_not_shadowed_by_submodules(pkg):
    # once a submodule is imported, the package attribute of its name is that module:
    # an exported function must not share its module's name
    for name in _modules((pkg,)):
        importlib.import_module(name)
    mod = importlib.import_module(pkg)
    for name in getattr(mod, "__all__", ()):
        obj = getattr(mod, name)
        assert not inspect.ismodule(obj), f"`from {pkg} import {name}` gives the module {obj.__name__}"
