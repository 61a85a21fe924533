"""Plugin modules loaded without packaging: `--plugin MODULE` (repeatable) and `CXRBENCH_PLUGINS`.

A plugin is a module name on sys.path (`my_pkg.my_suites`) or a path to a `.py` file; importing it runs
its registrations (`@register_suite`, `VIEWS.register(ViewSpec(...))`, ...), listed as `in-process`.
Like lm-eval's `--include_path`: for trying a plugin before packaging it with entry points.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from benchmark.core.errors import CxrbenchError

ENV = "CXRBENCH_PLUGINS"
_loaded: dict[str, ModuleType] = {}
_loading: set[str] = set()


class PluginError(CxrbenchError):
    """A plugin module that cannot be found or fails while it is imported."""


def requested(cli: Iterable[str] = ()) -> list[str]:
    """`CXRBENCH_PLUGINS` (comma-separated) first, then the `--plugin` values, each once."""
    names = [p.strip() for p in os.environ.get(ENV, "").split(",")] + [p.strip() for p in cli]
    return list(dict.fromkeys(n for n in names if n))


def load_plugins(cli: Iterable[str] = ()) -> list[ModuleType]:
    """Import every requested plugin module once per process; PluginError (one line) naming the module.

    The `--plugin` values are added to `CXRBENCH_PLUGINS` (files as absolute paths), so worker
    processes (verification jobs, Ray tasks started here) load the same plugins at their first lookup.
    """
    cli = [_absolute(c.strip()) for c in cli if c.strip()]
    names = requested(cli)
    modules = [m for m in (_load(name) for name in names) if m is not None]
    if cli:
        os.environ[ENV] = ",".join(names)
    return modules


def _absolute(name: str) -> str:
    return str(Path(name).expanduser().resolve()) if _is_path(name) and Path(name).expanduser().is_file() else name


def _is_path(name: str) -> bool:
    return name.endswith(".py") or os.sep in name or "/" in name


def _load(name: str) -> ModuleType | None:
    if name in _loaded:
        return _loaded[name]
    if name in _loading:  # its own registrations reached the registry's first lookup, which loads plugins
        return None
    _loading.add(name)
    try:
        module = _load_new(name)
    finally:
        _loading.discard(name)
    _loaded[name] = module
    return module


def _load_new(name: str) -> ModuleType:
    where = f"--plugin {name}"
    try:
        return _load_file(Path(name), where) if _is_path(name) else _load_module(name, where)
    except CxrbenchError as exc:
        if isinstance(exc, PluginError):
            raise
        raise PluginError(f"registration failed: {exc}", where=where) from exc


def _load_module(name: str, where: str) -> ModuleType:
    try:
        if importlib.util.find_spec(name) is None:
            raise PluginError("no such module on the Python path (give a module name or a .py file)", where=where)
    except (ImportError, ValueError) as exc:
        raise PluginError(f"no such module ({exc})", where=where) from exc
    try:
        return importlib.import_module(name)
    except CxrbenchError:
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin may fail in any way; the user gets one line
        raise PluginError(f"failed while importing: {type(exc).__name__}: {_one_line(exc)}", where=where) from exc


def _load_file(path: Path, where: str) -> ModuleType:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise PluginError("no such file", where=where)
    # A stable, unique module name per file, so that pickling and re-loading find the same module.
    mod_name = f"cxrbench_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise PluginError("not a Python module", where=where)
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except CxrbenchError:
        sys.modules.pop(mod_name, None)
        raise
    except Exception as exc:  # noqa: BLE001 - a plugin may fail in any way; the user gets one line
        sys.modules.pop(mod_name, None)
        raise PluginError(f"failed while importing: {type(exc).__name__}: {_one_line(exc)}", where=where) from exc
    return module


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
