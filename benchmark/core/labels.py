"""The canonical label space, its aliases, and the coarse groupings.

A model's classes are matched to the dataset's by name, never by position: every name goes through
`canonical_class` first.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from benchmark.core.errors import CardError, DataError

CLASSES: tuple[str, ...] = ("negative", "typical", "indeterminate", "atypical")
K = len(CLASSES)
PROB_COLUMNS: tuple[str, ...] = tuple(f"prob_{c}" for c in CLASSES)

# Lower-cased, punctuation-folded spellings -> canonical class.
_ALIASES: dict[str, str] = {
    "negative": "negative",
    "negative for pneumonia": "negative",
    "negative for pneumonia appearance": "negative",
    "no pneumonia": "negative",
    "normal": "negative",
    "typical": "typical",
    "typical appearance": "typical",
    "typical covid": "typical",
    "indeterminate": "indeterminate",
    "indeterminate appearance": "indeterminate",
    "atypical": "atypical",
    "atypical appearance": "atypical",
}

# Coarse tasks: name -> (positive group, negative group), each a tuple of canonical classes.
COARSE_TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pneumonia": (("typical", "indeterminate", "atypical"), ("negative",)),
    "covid_typical": (("typical",), ("negative", "indeterminate", "atypical")),
}


def _fold(name: str) -> str:
    return re.sub(r"[\s_\-]+", " ", str(name).strip().lower())


def aliases() -> dict[str, str]:
    """Every accepted spelling (folded) and the class it names."""
    return dict(_ALIASES)


def canonical_class(name: object) -> str | None:
    """The canonical class a name or alias stands for, or None when it names none."""
    if name is None:
        return None
    return _ALIASES.get(_fold(str(name)))


def class_index(name: str) -> int:
    return CLASSES.index(name)


def canonicalize_labels(values: Iterable[object], *, where: str = "manifest") -> list[str]:
    """Canonical names for a column of labels; the first unknown one is an error naming its row."""
    out = []
    for row, value in enumerate(values):
        canon = canonical_class(value)
        if canon is None:
            raise DataError(
                f"unknown label {value!r} in row {row + 2} (expected one of {', '.join(CLASSES)} "
                "or an alias such as 'Typical Appearance')",
                where=where,
            )
        out.append(canon)
    return out


def map_model_classes(classes: Sequence[object], *, where: str = "card.json") -> list[int]:
    """For each model output, the index of the canonical class it predicts.

    Refuses names that match nothing and two outputs that name the same class.
    """
    if not classes:
        raise CardError("field 'classes' is empty", where=where)
    mapped: list[int] = []
    for pos, name in enumerate(classes):
        canon = canonical_class(name)
        if canon is None:
            raise CardError(
                f"field 'classes'[{pos}] = {name!r} names no class of {', '.join(CLASSES)} "
                "(aliases such as 'Negative for Pneumonia' are accepted)",
                where=where,
            )
        idx = CLASSES.index(canon)
        if idx in mapped:
            raise CardError(f"field 'classes' names {canon!r} twice", where=where)
        mapped.append(idx)
    return mapped
