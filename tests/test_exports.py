"""The public surface and the shape of the package.

``__all__`` is pinned: adding or removing a public name is a decision, so it must show
up in this file too.  The layering rules of ARCHITECTURE.md are checked by reading the
imports of every module with ``ast`` (imports under ``if TYPE_CHECKING:`` count too).
A rule about a module that does not exist yet is skipped, not failed.
"""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest

import eventstream
import eventstream.testing

PACKAGE_DIR = Path(eventstream.__file__).parent

PUBLIC_MODULES = {"__init__", "__main__", "testing"}

EXPECTED_ALL = [
    "DEFAULT_MAX_EVENT_SIZE",
    "Backoff",
    "ConnectError",
    "ContentTypeError",
    "Event",
    "EventStream",
    "EventStreamError",
    "HTTPStatusError",
    "Headers",
    "OneShotStream",
    "Parser",
    "ProtocolError",
    "ReadError",
    "ResponseError",
    "ResponseInfo",
    "RetriesExhausted",
    "StreamError",
    "__version__",
    "get",
    "post",
    "request",
]


def test_all_is_pinned() -> None:
    assert eventstream.__all__ == EXPECTED_ALL


def test_all_names_exist() -> None:
    missing = [name for name in eventstream.__all__ if not hasattr(eventstream, name)]
    assert not missing


def _needs_docstring(module: object) -> list[tuple[str, object]]:
    """The public names of ``module`` that should carry a docstring: classes and
    functions, and the public methods and properties their classes define."""
    found: list[tuple[str, object]] = []
    for name in module.__all__:  # type: ignore[attr-defined]
        value = getattr(module, name)
        if inspect.isclass(value):
            found.append((name, value))
            for attr, member in vars(value).items():
                if attr.startswith("_"):
                    continue
                target = member.fget if isinstance(member, property) else member
                target = getattr(target, "__func__", target)  # classmethod, staticmethod
                if inspect.isfunction(target):
                    found.append((f"{name}.{attr}", target))
        elif inspect.isfunction(value):
            found.append((name, value))
    return found


@pytest.mark.parametrize("module", [eventstream, eventstream.testing], ids=lambda m: m.__name__)
def test_every_public_name_has_a_docstring(module: object) -> None:
    missing = [name for name, value in _needs_docstring(module) if not _own_doc(value)]
    assert not missing


def _own_doc(value: object) -> bool:
    # A class must have its own docstring, not one inherited from a base.
    doc = vars(value).get("__doc__") if inspect.isclass(value) else value.__doc__
    return bool(doc and doc.strip())


def test_package_and_public_modules_have_docstrings() -> None:
    assert (eventstream.__doc__ or "").strip()
    assert (eventstream.testing.__doc__ or "").strip()


# --- Module privacy: every module is _private except the few public entry points.


def _py_paths() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def test_modules_are_private_except_entry_points() -> None:
    public = []
    for path in PACKAGE_DIR.iterdir():
        if path.name in {"__pycache__", "py.typed"} or path.name.startswith("_"):
            continue
        if path.stem in PUBLIC_MODULES and (path.suffix == ".py" or path.is_dir()):
            continue  # testing may be a module or a package
        public.append(path.name)
    assert not public


def test_modules_inside_public_packages_are_private() -> None:
    for path in _py_paths():
        relative = path.relative_to(PACKAGE_DIR)
        if len(relative.parts) > 1:
            assert relative.name == "__init__.py" or relative.name.startswith("_"), relative


# --- Layering, from the imports.


def _module_name(path: Path) -> str:
    parts = ["eventstream", *path.relative_to(PACKAGE_DIR).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Absolute names of every module the file at ``path`` imports."""
    source = path.read_text(encoding="utf-8")
    return _resolve_imports(source, _module_name(path), is_package=path.name == "__init__.py")


def _resolve_imports(source: str, module: str, *, is_package: bool) -> set[str]:
    """Absolute names of every module ``source`` imports, relative imports resolved."""
    package = module if is_package else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # "from . import _models" names a module, not an attribute of the package.
            submodules = {f"{target}.{a.name}" for a in node.names if _exists(f"{target}.{a.name}")}
            found |= submodules
            if node.module or len(submodules) < len(node.names):
                found.add(target)
    return found


def _exists(module: str) -> bool:
    if not module.startswith("eventstream."):
        return False
    path = PACKAGE_DIR.joinpath(*module.split(".")[1:])
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _path_of(module: str) -> Path:
    """The file of a private module; skip the test when it is not written yet."""
    for path in _py_paths():
        if _module_name(path) == f"eventstream.{module}":
            return path
    pytest.skip(f"eventstream.{module} does not exist yet")


def _internal(imports: set[str]) -> set[str]:
    return {name for name in imports if name == "eventstream" or name.startswith("eventstream.")}


def _external(imports: set[str]) -> set[str]:
    return {name.split(".")[0] for name in imports - _internal(imports)}


def _non_stdlib(imports: set[str]) -> set[str]:
    if not hasattr(sys, "stdlib_module_names"):  # Python 3.9
        pytest.skip("sys.stdlib_module_names needs Python 3.10")
    return _external(imports) - set(sys.stdlib_module_names)


LEAVES = {"eventstream._models", "eventstream._exceptions"}


@pytest.mark.parametrize("module", ["_models", "_exceptions"])
def test_leaves_import_only_the_standard_library_and_each_other(module: str) -> None:
    imports = _imports(_path_of(module))
    assert _internal(imports) <= LEAVES
    assert not _non_stdlib(imports)


# Sans-I/O: no sockets, threads, clocks or HTTP in the parser.
IO_MODULES = {
    "_thread", "asyncio", "concurrent", "http", "multiprocessing", "select",
    "selectors", "socket", "ssl", "subprocess", "threading", "time", "urllib",
}  # fmt: skip


def test_parser_imports_only_models_and_exceptions() -> None:
    imports = _imports(_path_of("_parser"))
    assert _internal(imports) <= LEAVES
    assert not _non_stdlib(imports)
    assert not _external(imports) & IO_MODULES


def test_only_transport_imports_requests_or_urllib3() -> None:
    offenders = {
        _module_name(path): sorted(_external(_imports(path)) & {"requests", "urllib3"})
        for path in _py_paths()
        if path.name != "_transport.py" or path.parent != PACKAGE_DIR
    }
    assert {name: libs for name, libs in offenders.items() if libs} == {}


def test_testing_imports_nothing_of_the_package_and_only_the_standard_library() -> None:
    paths = [p for p in _py_paths() if _module_name(p).split(".")[:2] == ["eventstream", "testing"]]
    if not paths:
        pytest.skip("eventstream.testing does not exist yet")
    for path in paths:
        imports = _imports(path)
        outside = {
            name
            for name in _internal(imports)
            if name != "eventstream.testing" and not name.startswith("eventstream.testing.")
        }
        assert not outside, path.name
        assert not _non_stdlib(imports), path.name


def test_import_reader_resolves_relative_and_guarded_imports() -> None:
    # The layering tests are only as good as this reader: check it on known input.
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import _models\n"
        "from .. import Event\n"
        "from ._exceptions import ProtocolError\n"
        "import json, urllib.parse\n"
        "if TYPE_CHECKING:\n"
        "    import requests\n"
        "def f():\n"
        "    from .._parser import Parser\n"
    )
    found = _resolve_imports(source, "eventstream.testing._probe", is_package=False)
    assert found == {
        "typing",
        "eventstream.testing",  # there is no eventstream.testing._models module
        "eventstream",
        "eventstream.testing._exceptions",
        "json",
        "urllib.parse",
        "requests",
        "eventstream._parser",
    }
    assert _external(found) == {"typing", "json", "urllib", "requests"}
    in_root = _resolve_imports(
        "from . import _models, _parser\n", "eventstream._x", is_package=False
    )
    assert in_root == {"eventstream._models", "eventstream._parser"}
