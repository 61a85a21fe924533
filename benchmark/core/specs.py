"""The plugin contract: what a suite, view, model and dataset declare when they are registered.

Each kind is one frozen dataclass. Its fields are the only place that kind's metadata lives: the
registry, `cxrbench list`, the runner and the result files read them from here. Constructing a spec
validates it, so a bad declaration fails at registration with a RegistryError naming the field.

`target` is the implementation, or a ``"module:attribute"`` string imported on first use, so that a
light module can declare specs whose implementation imports torch (the built-in views do).
This module imports nothing heavy: listing what is registered must stay cheap.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from benchmark.core.errors import RegistryError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")  # no '@' (view parameters), ':' or ',' (CLI lists)
OPTION_TYPES = (bool, int, float, str)


def _fail(kind: str, name: object, field: str, message: str) -> RegistryError:
    return RegistryError(f"{kind} {name!r}: field {field!r} {message}", where="registration")


class _Spec:
    kind: ClassVar[str] = "plugin"
    name: str
    target: Any
    description: str

    def _check_common(self) -> None:
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise _fail(self.kind, self.name, "name", "must be letters, digits, '_', '-' or '.' "
                        "(no '@', ':' or ',')")
        if not (callable(self.target) or (isinstance(self.target, str) and ":" in self.target)):
            raise _fail(self.kind, self.name, "target", f"must be callable or a 'module:attribute' string, "
                        f"got {type(self.target).__name__}")
        if not isinstance(self.description, str) or not self.description.strip() or "\n" in self.description:
            raise _fail(self.kind, self.name, "description", "must be one non-empty line of text")

    def fields(self) -> dict[str, Any]:
        """The declaration as a dict (shallow): what `Registry.meta` returns."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclass(frozen=True)
class SuiteSpec(_Spec):
    """A suite: `target(predictions, manifest, SuiteConfig) -> SuiteResult`, a pure function that never
    calls a model. The runner computes the declared views once for all suites of a run."""

    kind: ClassVar[str] = "suite"
    name: str
    target: Any
    views: tuple[str, ...]
    description: str
    needs_embeddings: bool = False   # clean-image features arrive as SuiteConfig.embeddings
    options: type | None = None      # a dataclass: its fields are the suite's `--option KEY=VALUE` keys
    metrics: tuple[Any, ...] | None = None  # MetricSpec of every metric it emits (its module's METRICS)

    def __post_init__(self) -> None:
        self._check_common()
        views = self.views
        if isinstance(views, str) or not isinstance(views, tuple | list) or not views:
            raise _fail(self.kind, self.name, "views", "must be a non-empty tuple of view names, e.g. ('clean',)")
        if not all(isinstance(v, str) and v and _NAME.fullmatch(v.partition("@")[0]) for v in views):
            raise _fail(self.kind, self.name, "views", f"holds a bad view name: {list(views)!r}")
        object.__setattr__(self, "views", tuple(views))
        if not isinstance(self.needs_embeddings, bool):
            raise _fail(self.kind, self.name, "needs_embeddings", "must be True or False")
        if self.options is not None:
            check_options_type(self.name, self.options)
        if self.metrics is not None:
            object.__setattr__(self, "metrics", check_metrics(self.name, self.metrics))

    @property
    def option_keys(self) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self.options)) if self.options else ()


@dataclass(frozen=True)
class ViewSpec(_Spec):
    """A view: `target(param: str | None) -> benchmark.views.base.View`; named `name` or `name@param`.
    The View maps a batch [B, C, H, W] to one of the same shape and dtype (`apply(batch, ctx)`)."""

    kind: ClassVar[str] = "view"
    name: str
    target: Any
    description: str
    # Declared here so that planning a run (which rows need lung masks, a cache key) imports no view
    # code and no torch; the View's own `needs_masks` must agree (tests/test_conformance.py).
    needs_masks: bool = False

    def __post_init__(self) -> None:
        self._check_common()
        if not isinstance(self.needs_masks, bool):
            raise _fail(self.kind, self.name, "needs_masks", "must be True or False")


@dataclass(frozen=True)
class ModelSpec(_Spec):
    """A model: `target(**kwargs)` returns a checkpoint folder/file (loaded like any submission) or a
    model object with `predict` (benchmark.models.resolve); kwargs: `trust_code`."""

    kind: ClassVar[str] = "model"
    name: str
    target: Any
    description: str

    def __post_init__(self) -> None:
        self._check_common()


@dataclass(frozen=True)
class DatasetSpec(_Spec):
    """A dataset: `target(arg: str | None) -> benchmark.data.dataset.Dataset`; `--data NAME[:ARG]`."""

    kind: ClassVar[str] = "dataset"
    name: str
    target: Any
    description: str

    def __post_init__(self) -> None:
        self._check_common()


def check_options_type(suite: str, options: Any) -> None:
    if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
        raise _fail("suite", suite, "options", "must be a dataclass type (its fields are the option keys)")
    for f in dataclasses.fields(options):
        default = f.default
        if default is dataclasses.MISSING or type(default) not in OPTION_TYPES:
            raise _fail("suite", suite, "options", f"field {f.name!r} needs a default of type bool, int, "
                        f"float or str")


def check_metrics(suite: str, metrics: Any) -> tuple[Any, ...]:
    import sys

    # The class from sys.modules, not an import: metric_spec looks suites up in the registry, and the
    # registry imports this module. Any module that builds a MetricSpec has loaded it already.
    MetricSpec = getattr(sys.modules.get("benchmark.core.metric_spec"), "MetricSpec", ())
    if isinstance(metrics, str) or not isinstance(metrics, tuple | list) or not metrics:
        raise _fail("suite", suite, "metrics", "must be a non-empty tuple of MetricSpec (the module's METRICS)")
    bad = [m for m in metrics if not (MetricSpec and isinstance(m, MetricSpec))]
    if bad:
        raise _fail("suite", suite, "metrics", f"holds {type(bad[0]).__name__}, not MetricSpec")
    names = [m.name for m in metrics]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise _fail("suite", suite, "metrics", f"declares {twice[0]!r} twice")
    return tuple(metrics)


def parse_options(options: type | None, raw: Mapping[str, str], suite: str = "suite") -> Any:
    """The suite's options dataclass filled from `--option KEY=VALUE` strings (keys it does not declare
    are ignored: one run's options serve all its suites; `check_option_keys` refuses strangers)."""
    if options is None:
        return None
    values: dict[str, Any] = {}
    for f in dataclasses.fields(options):
        if f.name not in raw:
            continue
        text, kind = raw[f.name], type(f.default)
        try:
            if kind is bool:
                if text.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(text)
                values[f.name] = text.lower() in ("1", "true", "yes")
            else:
                values[f.name] = kind(text)
        except ValueError:
            from benchmark.core.errors import CxrbenchError

            wanted = {bool: "true or false", int: "an integer", float: "a number"}.get(kind, "text")
            raise CxrbenchError(f"suite {suite!r} takes {wanted}, got {text!r}",
                                where=f"--option {f.name}") from None
    return options(**values)


def check_option_keys(specs: list[SuiteSpec], raw: Mapping[str, str]) -> None:
    """Refuse an `--option` key that none of the run's suites declares (a typo would be ignored)."""
    from benchmark.core.errors import CxrbenchError

    known = {k for s in specs for k in s.option_keys}
    for key in raw:
        if key not in known:
            offered = ", ".join(sorted(known)) or "none"
            raise CxrbenchError(f"no selected suite takes option {key!r} (options of these suites: {offered})",
                                where=f"--option {key}")


def resolve_target(kind: str, name: str, target: Any) -> Callable[..., Any]:
    """Import a ``"module:attribute"`` target; RegistryError naming the plugin when it cannot be."""
    if not isinstance(target, str):
        return target
    import importlib

    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except Exception as exc:  # noqa: BLE001 - any failure of a plugin's import is reported as one line
        raise RegistryError(f"{kind} {name!r} points to {target!r}, which cannot be loaded: "
                            f"{type(exc).__name__}: {exc}", where="registration") from exc
    return obj
