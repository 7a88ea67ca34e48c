"""Every public name of sksnn has a page in the API reference (docs/api/index.rst).

A public module is one whose dotted name has no part starting with an underscore; its public
names are its ``__all__``. A name counts as documented when ``module.name`` is listed in an
autosummary of docs/api/index.rst, or when the object it names is listed under another module
(a re-export, such as ``sksnn.SpikeTrains`` for ``sksnn.spikes.SpikeTrains``). A name added to
an ``__all__`` later fails here until it is listed.
"""

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import sksnn

INDEX = Path(__file__).resolve().parent.parent / "docs" / "api" / "index.rst"


def public_modules(private: bool = False) -> list[str]:
    """sksnn's modules without a private part in their name (``private``: all of them)."""
    names = ["sksnn"]
    for info in pkgutil.walk_packages(sksnn.__path__, "sksnn."):
        if private or not any(part.startswith("_") for part in info.name.split(".")):
            names.append(info.name)
    return sorted(names)


def documented_names() -> list[str]:
    """Qualified names listed in the autosummary blocks of the API index."""
    names, module, in_summary = [], None, False
    for line in INDEX.read_text(encoding="utf-8").splitlines():
        if match := re.match(r"\.\. currentmodule:: (\S+)", line):
            module = match[1]
        elif line.startswith(".. autosummary::"):
            in_summary = True
        elif in_summary and re.match(r"   [A-Za-z_]\w*$", line):
            names.append(f"{module}.{line.strip()}")
        elif in_summary and line and not line.startswith(" "):
            in_summary = False
    return names


def resolve(qualified: str):
    module, _, name = qualified.rpartition(".")
    return getattr(importlib.import_module(module), name)


def test_index_names_exist():
    names = documented_names()
    assert len(names) > 50
    missing = []
    for qualified in names:
        try:
            resolve(qualified)
        except (ImportError, AttributeError):
            missing.append(qualified)
    assert not missing, f"listed in {INDEX.name} but not found: {missing}"


@pytest.mark.parametrize("module_name", public_modules())
def test_public_names_documented(module_name):
    documented = set(documented_names())
    # Plain values (numbers, strings) are compared by name only: equal constants in two
    # modules are not the same public name.
    objects = [
        resolve(q)
        for q in documented
        if not isinstance(resolve(q), (int, float, str, bytes, bool, type(None)))
    ]
    module = importlib.import_module(module_name)
    undocumented = []
    for name in getattr(module, "__all__", []):
        if name.startswith("__"):  # __version__
            continue
        if f"{module_name}.{name}" in documented:
            continue
        value = getattr(module, name)
        if not isinstance(value, (int, float, str, bytes, bool, type(None))) and any(
            value is obj for obj in objects
        ):
            continue
        undocumented.append(name)
    assert not undocumented, (
        f"{module_name}: add {undocumented} to an autosummary in docs/api/index.rst"
    )
