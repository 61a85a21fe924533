"""One registry mechanism for models, datasets, suites, views and segmenters.

Entries are registered three ways, all ending in the same table:
- by decorator inside the package (`@SUITES.register("subtype", views=("clean",))`);
- lazily, as a ``"module:attribute"`` string, so that listing names imports nothing heavy;
- by Python entry points (``cxrbench.models`` ...) from other distributions.
Unknown names fail with the list of what is available.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from benchmark.core.errors import RegistryError


@dataclass
class Entry:
    name: str
    target: Any  # the object, or a "module:attribute" string until first use
    meta: dict[str, Any] = field(default_factory=dict)
    origin: str = "builtin"

    @property
    def loaded(self) -> bool:
        return not isinstance(self.target, str)


class Registry:
    def __init__(self, kind: str, entry_point_group: str | None = None):
        self.kind = kind
        self.group = entry_point_group
        self._entries: dict[str, Entry] = {}
        self._scanned = False

    def register(self, name: str, target: Any = None, **meta: Any) -> Any:
        """Register `target` under `name`; without a target, return a decorator."""
        if target is None:
            def decorator(obj: Any) -> Any:
                self._add(name, obj, meta)
                return obj
            return decorator
        self._add(name, target, meta)
        return target

    def _add(self, name: str, target: Any, meta: dict[str, Any], origin: str = "builtin") -> None:
        old = self._entries.get(name)
        if old is not None and old.loaded and not isinstance(target, str) and old.target is not target:
            # Re-importing a module re-runs its decorators with new objects; anything else is a clash.
            if getattr(old.target, "__module__", None) != getattr(target, "__module__", None):
                raise RegistryError(f"{self.kind} {name!r} is registered twice")
        if old is not None and isinstance(target, str) and old.loaded:
            return  # a lazy placeholder never replaces a loaded object
        merged = {**(old.meta if old else {}), **meta}
        self._entries[name] = Entry(name, target, merged, origin if old is None else old.origin)

    def _scan_entry_points(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        import benchmark.core.builtins  # noqa: F401  (registers the built-ins lazily, once)

        if not self.group:
            return
        for ep in entry_points(group=self.group):
            if ep.name not in self._entries:
                self._entries[ep.name] = Entry(ep.name, ep.value, {}, origin=f"plugin:{ep.value}")

    def names(self) -> list[str]:
        self._scan_entry_points()
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        self._scan_entry_points()
        if name not in self._entries:
            available = ", ".join(sorted(self._entries)) or "none"
            raise RegistryError(f"unknown {self.kind} {name!r}; available: {available}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._scan_entry_points()
        return name in self._entries

    def get(self, name: str) -> Any:
        """The registered object, importing its module on first use."""
        entry = self.entry(name)
        if isinstance(entry.target, str):
            module_name, _, attr = entry.target.partition(":")
            try:
                module = importlib.import_module(module_name)
                obj = getattr(module, attr) if attr else module
            except (ImportError, AttributeError) as exc:
                raise RegistryError(
                    f"{self.kind} {name!r} points to {entry.target!r}, which cannot be loaded: {exc}"
                ) from exc
            current = self._entries[name]
            if isinstance(current.target, str):  # the module's own decorator may have replaced it
                current.target = obj
            entry = current
        return entry.target

    def meta(self, name: str) -> dict[str, Any]:
        return dict(self.entry(name).meta)

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, origin, one-line description) for `cxrbench list`, without importing anything."""
        rows = []
        for name in self.names():
            e = self._entries[name]
            rows.append((name, e.origin, str(e.meta.get("description", ""))))
        return rows


MODELS = Registry("model", "cxrbench.models")
DATASETS = Registry("dataset", "cxrbench.datasets")
SUITES = Registry("suite", "cxrbench.suites")
VIEWS = Registry("view", "cxrbench.views")
SEGMENTERS = Registry("segmenter", "cxrbench.segmenters")

REGISTRIES: dict[str, Registry] = {
    "models": MODELS,
    "datasets": DATASETS,
    "suites": SUITES,
    "views": VIEWS,
    "segmenters": SEGMENTERS,
}


def lazy(registry: Registry, name: str, target: str, **meta: Any) -> None:
    """Register a built-in by its import path, so that listing it imports nothing."""
    registry.register(name, target, **meta)


Factory = Callable[..., Any]
