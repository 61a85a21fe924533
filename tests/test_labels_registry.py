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
    reg = Registry("widget")  # untyped (like segmenters): a target and free metadata
    reg.register("lazy", "json:dumps", description="d")
    assert reg.entry("lazy").loaded is False
    import json
    assert reg.get("lazy") is json.dumps and reg.entry("lazy").loaded

    @reg.register("deco", version="1")
    def f():
        return 1

    assert reg.get("deco") is f and reg.meta("deco")["version"] == "1"
    with pytest.raises(RegistryError, match="unknown widget 'nope'; available: deco, lazy"):
        reg.get("nope")
    reg.register("broken", "no_such_module_x:thing")
    with pytest.raises(RegistryError, match="cannot be loaded"):
        reg.get("broken")


def test_typed_registry_validates_the_declaration_naming_the_field():
    from benchmark.core.specs import SuiteSpec, ViewSpec

    reg = Registry("suite", None, SuiteSpec)
    with pytest.raises(RegistryError, match="suite 'x': field 'views'"):
        reg.register("x", print, views="clean", description="d", metrics=())
    with pytest.raises(RegistryError, match="suite 'x': field 'description'"):
        reg.register("x", print, views=("clean",), description="")
    with pytest.raises(RegistryError, match="suite 'x@1': field 'name'"):
        reg.register("x@1", print, views=("clean",), description="d")
    with pytest.raises(RegistryError, match="field 'options'"):
        reg.register("x", print, views=("clean",), description="d", options=dict)
    with pytest.raises(RegistryError, match="field 'metrics'"):
        reg.register("x", print, views=("clean",), description="d", metrics=("acc",))
    with pytest.raises(RegistryError, match="view 'v': field 'target'"):
        ViewSpec("v", 3, "d")
    with pytest.raises(RegistryError, match="takes SuiteSpec, got ViewSpec"):
        reg.register(ViewSpec("v", print, "d"))
    assert reg.names() == []  # nothing half-registered


def test_suite_without_metric_specs_is_refused_when_looked_up():
    from benchmark.core.specs import SuiteSpec

    reg = Registry("suite", None, SuiteSpec)
    reg.register("nometrics", json_loads_suite, views=("clean",), description="d")
    with pytest.raises(RegistryError, match="suite 'nometrics': field 'metrics' is missing"):
        reg.spec("nometrics")


def json_loads_suite(predictions, manifest, config):  # a module without METRICS declares none
    return None


def test_same_name_from_two_places_is_a_clash():
    from benchmark.core.specs import ModelSpec

    reg = Registry("model", None, ModelSpec)
    reg.register("m", print, description="one")
    reg.register("m", print, description="one")  # the same object again (a module re-imported): fine
    with pytest.raises(RegistryError, match="'m' is registered twice"):
        reg.register("m", len, description="two")


def test_builtin_listing_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; from benchmark.api import list_registry; rows = list_registry('suites'); "
            "assert any(r[0] == 'subtype' for r in rows), rows; "
            "rows = list_registry('views') + list_registry('models') + list_registry('datasets'); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_builtins_come_from_entry_points_and_say_so():
    from importlib.metadata import entry_points

    from benchmark.api import list_registry

    declared = {ep.name for ep in entry_points(group="cxrbench.suites")}
    rows = list_registry("suites")
    assert {"subtype", "calibration", "cross_site", "shortcut", "robustness"} <= declared
    assert all(origin == "builtin" for name, origin, _ in rows if name in declared)
    models = {ep.name: ep.value for ep in entry_points(group="cxrbench.models")}
    assert models["supervised"] == "baselines.registered:SUPERVISED"  # the baselines, like any plugin


def test_listing_does_not_depend_on_import_order():
    import subprocess
    import sys

    code = ("import suites.subtype, suites.shortcut; from benchmark.api import list_registry; "
            "print(sorted(list_registry('suites')))")
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    code = "from benchmark.api import list_registry; print(sorted(list_registry('suites')))"
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert first == second and "builtin" in first and "in-process" not in first


def test_entry_point_plugins_are_listed_with_their_distribution(monkeypatch):
    from importlib.metadata import EntryPoint

    import benchmark.core.registry as registry_mod
    from benchmark.core.specs import ModelSpec

    class Dist:
        name = "acme-cxr"

    ep = EntryPoint(name="reference", value="benchmark.models.reference:REFERENCE", group="cxrbench.models")
    ep = ep._for(Dist()) if hasattr(ep, "_for") else ep
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [ep] if group == "cxrbench.models" else [])
    reg = Registry("model", "cxrbench.models", ModelSpec)
    assert reg.names() == ["reference"]
    assert reg.entry("reference").origin == "plugin:acme-cxr"
    assert reg.spec("reference").description.startswith("small CNN")
    bad = EntryPoint(name="other", value="benchmark.models.reference:REFERENCE", group="cxrbench.models")
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [bad] if group == "cxrbench.models" else [])
    reg = Registry("model", "cxrbench.models", ModelSpec)
    with pytest.raises(RegistryError, match="entry point 'other' .* declares the name 'reference'"):
        reg.spec("other")


def test_canonical_order():
    assert CLASSES == ("negative", "typical", "indeterminate", "atypical")


def test_missing_or_unknown_fields_are_named():
    from benchmark.core.specs import DatasetSpec

    reg = Registry("dataset", None, DatasetSpec)
    with pytest.raises(RegistryError, match="dataset 'd': field 'description' is required"):
        reg.register("d", print)
    with pytest.raises(RegistryError, match="dataset 'd': DatasetSpec has no field 'views'"):
        reg.register("d", print, description="x", views=("clean",))


def test_missing_distribution_metadata_is_named_in_the_error(monkeypatch):
    import benchmark.core.registry as registry_mod
    from benchmark.core.specs import SuiteSpec

    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [])
    reg = Registry("suite", "cxrbench.suites", SuiteSpec)
    with pytest.raises(RegistryError, match=r"unknown suite 'subtype'; available: none \(no built-in entry "
                                            r"points found: reinstall cxrbench"):
        reg.spec("subtype")
