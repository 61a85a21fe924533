from __future__ import annotations

import pytest

from benchmark.core.errors import CardError, DataError, RegistryError
from benchmark.core.labels import CLASSES, canonical_class, canonicalize_labels, map_model_classes
from benchmark.core.registry import Registry


@pytest.mark.parametrize("name,expected", [
    ("Negative for Pneumonia", "negative"), ("Typical Appearance", "typical"),
    ("indeterminate_appearance", "indeterminate"), ("ATYPICAL", "atypical"), (" typical ", "typical"),
    ("pneumonia", None), ("", None),
])
def test_aliases(name, expected):
    assert canonical_class(name) == expected


def test_model_classes_matched_by_name_not_position():
    assert map_model_classes(["Atypical Appearance", "Negative for Pneumonia", "typical", "Indeterminate"]) == [3, 0, 1, 2]


def test_unmappable_and_duplicate_classes_are_card_errors():
    with pytest.raises(CardError, match=r"'classes'\[1\] = 'covid'"):
        map_model_classes(["negative", "covid"])
    with pytest.raises(CardError, match="twice"):
        map_model_classes(["negative", "Negative for Pneumonia"])


def test_unknown_label_names_its_row():
    with pytest.raises(DataError, match=r"m.csv: unknown label 'flu' in row 3"):
        canonicalize_labels(["negative", "flu"], where="m.csv")


def test_registry_lazy_decorator_and_unknown_name():
    reg = Registry("widget")
    reg.register("lazy", "json:dumps", description="d")
    assert reg.entry("lazy").loaded is False
    import json
    assert reg.get("lazy") is json.dumps and reg.entry("lazy").loaded

    @reg.register("deco", views=("clean",))
    def f():
        return 1

    assert reg.get("deco") is f and reg.meta("deco")["views"] == ("clean",)
    with pytest.raises(RegistryError, match="unknown widget 'nope'; available: deco, lazy"):
        reg.get("nope")
    reg.register("broken", "no_such_module_x:thing")
    with pytest.raises(RegistryError, match="cannot be loaded"):
        reg.get("broken")


def test_builtin_listing_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from benchmark.api import list_registry; rows = list_registry('suites'); "
            "assert any(r[0] == 'subtype' for r in rows), rows; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_entry_point_plugins_are_listed(monkeypatch):
    from importlib.metadata import EntryPoint

    import benchmark.core.registry as registry_mod

    eps = [EntryPoint(name="my_suite", value="json:loads", group="cxrbench.suites")]
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [e for e in eps if e.group == group])
    reg = Registry("suite", "cxrbench.suites")
    assert "my_suite" in reg.names()
    import json
    assert reg.get("my_suite") is json.loads
    assert reg.entry("my_suite").origin == "plugin:json:loads"


def test_canonical_order():
    assert CLASSES == ("negative", "typical", "indeterminate", "atypical")
