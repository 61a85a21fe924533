"""One registry mechanism for suites, views, models, datasets and segmenters.

Everything registers the same way a third party does:
- built-ins and the baselines through the entry points in this distribution's pyproject.toml
  (`cxrbench.suites`, `cxrbench.views`, `cxrbench.models`, `cxrbench.datasets`, `cxrbench.plugins`);
- other distributions through their own entry points (listed as `plugin:<distribution>`);
- a module loaded with `--plugin` / `CXRBENCH_PLUGINS`, or any code, by calling `register` or its
  decorator form (listed as `in-process`).
An entry point names a spec object (benchmark.core.specs) or an object a decorator attached one to; it is
imported when first needed. Group `cxrbench.plugins` names callables run once before the first lookup,
for registrations that depend on the machine (the baselines' lung segmenter, only once it is trained);
the modules named by `CXRBENCH_PLUGINS` are imported then too (benchmark.core.plugins).
Unknown names fail with the list of what is available. This module imports no plugin code itself.
"""
from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from importlib.metadata import entry_points
from typing import Any

from benchmark.core.errors import RegistryError
from benchmark.core.specs import DatasetSpec, ModelSpec, SuiteSpec, ViewSpec, _Spec, resolve_target

DISTRIBUTION = "cxrbench"
IN_PROCESS = "in-process"
HOOK_GROUP = "cxrbench.plugins"
# The origin given to registrations made while an entry point's module is being imported.
_ORIGIN: contextvars.ContextVar[str] = contextvars.ContextVar("cxrbench_origin", default=IN_PROCESS)
_hooks_ran = False


def origin_of(ep: Any) -> str:
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) or getattr(dist, "metadata", {}).get("Name") if dist else None
    if not name:
        return "plugin:unknown"
    return "builtin" if name.lower() == DISTRIBUTION else f"plugin:{name}"


@contextmanager
def registering_as(origin: str) -> Iterator[None]:
    token = _ORIGIN.set(origin)
    try:
        yield
    finally:
        _ORIGIN.reset(token)


@dataclass
class Entry:
    name: str
    target: Any                        # the spec/object, or a "module:attribute" string until first use
    origin: str = IN_PROCESS
    spec: _Spec | None = None          # typed registries: the validated declaration, once known
    meta: dict[str, Any] = field(default_factory=dict)  # untyped registries (segmenters) only

    @property
    def loaded(self) -> bool:
        return not isinstance(self.target, str)


class Registry:
    def __init__(self, kind: str, entry_point_group: str | None = None, spec_type: type[_Spec] | None = None):
        self.kind = kind
        self.group = entry_point_group
        self.spec_type = spec_type
        self._entries: dict[str, Entry] = {}
        self._scanned = False

    # --- registering ------------------------------------------------------------------------

    def register(self, name: Any, target: Any = None, **fields: Any) -> Any:
        """Register a spec (`register(SuiteSpec(...))`), or `name` -> `target` with the spec's other
        fields as keywords; without a target, return a decorator that registers the decorated object."""
        if isinstance(name, _Spec):
            self._add_spec(name)
            return name
        if target is None:
            def decorator(obj: Any) -> Any:
                self.register(name, obj, **fields)
                return obj
            return decorator
        if self.spec_type is None:
            self._add(Entry(name, target, _ORIGIN.get(), meta=dict(fields)))
            return target
        spec = self._declare(name, target, fields)
        self._add_spec(spec)
        if not isinstance(target, str):
            try:
                target.__cxrbench_spec__ = spec  # lets an entry point name the object itself
            except (AttributeError, TypeError):
                pass
        return target

    def _declare(self, name: Any, target: Any, fields: dict[str, Any]) -> _Spec:
        import dataclasses

        assert self.spec_type is not None
        declared = {f.name: f for f in dataclasses.fields(self.spec_type)}  # type: ignore[arg-type]
        for key in fields:
            if key not in declared or key in ("name", "target"):
                raise RegistryError(f"{self.kind} {name!r}: {self.spec_type.__name__} has no field {key!r} "
                                    f"(fields: {', '.join(declared)})", where="registration")
        for key, f in declared.items():
            if key not in fields and key not in ("name", "target") and f.default is dataclasses.MISSING:
                raise RegistryError(f"{self.kind} {name!r}: field {key!r} is required", where="registration")
        return self.spec_type(name=name, target=target, **fields)

    def _add_spec(self, spec: _Spec) -> None:
        if self.spec_type is None or not isinstance(spec, self.spec_type):
            raise RegistryError(f"{self.kind} registry takes {self.spec_type and self.spec_type.__name__}, "
                                f"got {type(spec).__name__}", where="registration")
        self._add(Entry(spec.name, spec.target, _ORIGIN.get(), spec=spec))

    def _add(self, new: Entry) -> None:
        self._scan()  # entry points first, so that a built-in imported early keeps its origin
        old = self._entries.get(new.name)
        if old is not None:
            if old.spec is None and isinstance(old.target, str):
                # An entry point's placeholder: only the module it names may fill it in.
                if old.target.partition(":")[0] != _module_of(new.target):
                    raise RegistryError(f"{self.kind} {new.name!r} is registered twice: {old.origin} "
                                        f"({old.target}) and {new.origin} ({_module_of(new.target)})",
                                        where="registration")
            elif not _same_object(old.spec.target if old.spec else old.target, new.target):
                raise RegistryError(f"{self.kind} {new.name!r} is registered twice ({old.origin} and "
                                    f"{new.origin})", where="registration")
            new.origin = old.origin
        self._entries[new.name] = new

    # --- looking up -------------------------------------------------------------------------

    def _scan(self) -> None:
        if self._scanned:
            return
        self._scanned = True
        if self.group:
            for ep in entry_points(group=self.group):
                if ep.name not in self._entries:
                    self._entries[ep.name] = Entry(ep.name, ep.value, origin_of(ep))
        run_hooks()

    def names(self) -> list[str]:
        self._scan()
        return sorted(self._entries)

    def entry(self, name: str) -> Entry:
        self._scan()
        if name not in self._entries:
            available = ", ".join(sorted(self._entries)) or "none"
            hint = ""
            if self.group and not any(e.origin == "builtin" for e in self._entries.values()):
                # The built-ins come from this distribution's entry points: without its metadata
                # (a source tree never installed, or installed before they existed) there are none.
                hint = " (no built-in entry points found: reinstall cxrbench, e.g. `pip install -e .`)"
            raise RegistryError(f"unknown {self.kind} {name!r}; available: {available}{hint}")
        return self._entries[name]

    def __contains__(self, name: str) -> bool:
        self._scan()
        return name in self._entries

    def spec(self, name: str) -> Any:
        """The validated declaration of `name`, importing the module that declares it on first use."""
        entry = self.entry(name)
        if self.spec_type is None:
            raise RegistryError(f"{self.kind} registry has no specs", where="registration")
        if entry.spec is None:
            with registering_as(entry.origin):
                obj = resolve_target(self.kind, name, entry.target)
            entry = self._entries[name]  # the module's own decorator may have registered it meanwhile
            if entry.spec is None:
                spec = obj if isinstance(obj, self.spec_type) else getattr(obj, "__cxrbench_spec__", None)
                if not isinstance(spec, self.spec_type):
                    raise RegistryError(f"{self.kind} {name!r} ({entry.origin}) points to {entry.target!r}, "
                                        f"which is not a {self.spec_type.__name__}", where="registration")
                if spec.name != name:
                    raise RegistryError(f"{self.kind} entry point {name!r} ({entry.origin}) declares the name "
                                        f"{spec.name!r}", where="registration")
                entry.spec = spec
        if isinstance(entry.spec, SuiteSpec) and entry.spec.metrics is None:
            entry.spec = _with_module_metrics(entry.spec)
        return entry.spec

    def get(self, name: str) -> Any:
        """The implementation registered under `name`, importing its module on first use."""
        if self.spec_type is None:
            entry = self.entry(name)
            if isinstance(entry.target, str):
                with registering_as(entry.origin):
                    entry.target = resolve_target(self.kind, name, entry.target)
            return entry.target
        spec = self.spec(name)
        if isinstance(spec.target, str):
            entry = self._entries[name]
            entry.spec = replace(spec, target=resolve_target(self.kind, name, spec.target))
            spec = entry.spec
        return spec.target

    def meta(self, name: str) -> dict[str, Any]:
        if self.spec_type is None:
            return dict(self.entry(name).meta)
        return self.spec(name).fields()

    def describe(self) -> list[tuple[str, str, str]]:
        """(name, origin, description) for `cxrbench list`; a plugin that cannot load says why."""
        rows = []
        for name in self.names():
            origin = self._entries[name].origin
            try:
                desc = self.spec(name).description if self.spec_type else str(self.meta(name).get("description", ""))
            except RegistryError as exc:
                desc = f"(cannot be loaded) {exc}"
            rows.append((name, origin, desc))
        return rows


def _module_of(obj: Any) -> str | None:
    target = getattr(obj, "target", obj)
    return target.partition(":")[0] if isinstance(target, str) else getattr(target, "__module__", None)


def _same_object(a: Any, b: Any) -> bool:
    # Re-importing a module re-runs its registrations with new objects; anything else is a clash.
    if a is b:
        return True
    return (_module_of(a), getattr(a, "__qualname__", a)) == (_module_of(b), getattr(b, "__qualname__", b))


def _with_module_metrics(spec: SuiteSpec) -> SuiteSpec:
    """A suite's metric specs are its module's METRICS unless registered with `metrics=`."""
    import sys

    target = spec.target
    module = sys.modules.get(target.partition(":")[0] if isinstance(target, str) else getattr(target, "__module__", ""))
    if module is None and isinstance(target, str):
        resolve_target("suite", spec.name, target)
        module = sys.modules.get(target.partition(":")[0])
    metrics = getattr(module, "METRICS", None)
    if metrics is None:
        raise RegistryError(f"suite {spec.name!r}: field 'metrics' is missing: register it with metrics=... "
                            f"or give module {getattr(module, '__name__', '?')} a METRICS tuple of MetricSpec",
                            where="registration")
    return replace(spec, metrics=metrics)


def run_hooks() -> None:
    """Run the `cxrbench.plugins` entry points once: callables that register what depends on the machine."""
    global _hooks_ran
    if _hooks_ran:
        return
    _hooks_ran = True
    for ep in entry_points(group=HOOK_GROUP):
        origin = origin_of(ep)
        with registering_as(origin):
            hook = resolve_target("plugin hook", ep.name, ep.value)
            if callable(hook):
                hook()
    from benchmark.core.plugins import load_plugins  # CXRBENCH_PLUGINS, in every process that looks up

    load_plugins()


MODELS = Registry("model", "cxrbench.models", ModelSpec)
DATASETS = Registry("dataset", "cxrbench.datasets", DatasetSpec)
SUITES = Registry("suite", "cxrbench.suites", SuiteSpec)
VIEWS = Registry("view", "cxrbench.views", ViewSpec)
SEGMENTERS = Registry("segmenter", "cxrbench.segmenters")

REGISTRIES: dict[str, Registry] = {
    "models": MODELS,
    "datasets": DATASETS,
    "suites": SUITES,
    "views": VIEWS,
    "segmenters": SEGMENTERS,
}
