"""The examples in the docstrings of every module run, as doctests (public functions often
live in private modules and are re-exported)."""

import doctest
import importlib

import pytest
from test_api_docs import public_modules

# Modules whose examples need an optional dependency, and that dependency.
OPTIONAL = {"sksnn.plotting": "matplotlib"}


@pytest.mark.parametrize("name", public_modules(private=True))
def test_docstring_examples(name, tmp_path, monkeypatch):
    if name in OPTIONAL:
        pytest.importorskip(OPTIONAL[name])
    if name == "sksnn.plotting":
        import matplotlib

        matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    # Globals are the module's own, as with ``pytest --doctest-modules``.
    tests = doctest.DocTestFinder(exclude_empty=True).find(module, name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report: list[str] = []
    for test in tests:
        # Only docstrings written in this module: re-exported objects are tested at home.
        if test.examples and test.filename == module.__file__:
            runner.run(test, out=report.append)
    assert not runner.failures, "".join(report)
