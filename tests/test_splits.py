"""`cxrbench splits --leave-out-site`: patient-disjoint, stratified, loadable manifests."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from benchmark.data.manifest import load_manifest_csv, resolve_path
from benchmark.core.errors import DataError
from benchmark.data.splits import leave_one_site_out
from tests.helpers import cli


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from benchmark import api

    out = tmp_path_factory.mktemp("synth")
    api.synth(out, n_patients=60, n_sites=3, image_size=64, seed=2)
    return out


def table(rows: list[tuple[str, str, str, str]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["image_id", "patient_id", "site", "label"]).assign(path=lambda t: t.image_id)


def test_cli_writes_loadable_patient_disjoint_manifests(capsys, tmp_path, synth_dir):
    out = tmp_path / "loso"
    code, stdout, err = cli(capsys, "splits", "--leave-out-site", "site_b", "--data", str(synth_dir), "--out", str(out))
    assert code == 0, err
    assert "train:" in stdout and "test:" in stdout
    source = load_manifest_csv(synth_dir / "manifest.csv").table
    parts = {name: load_manifest_csv(out / f"{name}.csv") for name in ("train", "val", "test")}
    tables = {name: m.table for name, m in parts.items()}
    assert set(tables["test"]["site"]) == {"site_b"}
    assert "site_b" not in set(tables["train"]["site"]) | set(tables["val"]["site"])
    patients = {name: set(t["patient_id"]) for name, t in tables.items()}
    assert not patients["train"] & patients["val"] and not patients["test"] & (patients["train"] | patients["val"])
    assert sorted(pd.concat(tables.values())["image_id"]) == sorted(source["image_id"])
    for name, t in tables.items():
        assert set(t["split"]) == {name}
        # Paths were rewritten relative to the new folder and still point at the same files.
        assert resolve_path(parts[name], t["path"].iloc[0]).resolve() == \
            (synth_dir / source.set_index("image_id").loc[t["image_id"].iloc[0], "path"]).resolve()
    summary = json.loads((out / "splits.json").read_text())
    assert summary["left_out_site"] == "site_b" and summary["counts"]["test"]["images"] == len(tables["test"])


def test_val_is_a_seeded_stratified_share_of_each_training_site(synth_dir):
    t = load_manifest_csv(synth_dir / "manifest.csv").table
    a = leave_one_site_out(t, "site_a", val_fraction=0.3, seed=1)
    b = leave_one_site_out(t, "site_a", val_fraction=0.3, seed=1)
    c = leave_one_site_out(t, "site_a", val_fraction=0.3, seed=2)
    assert a.tables["val"]["image_id"].tolist() == b.tables["val"]["image_id"].tolist()
    assert a.tables["val"]["image_id"].tolist() != c.tables["val"]["image_id"].tolist()
    train_val = pd.concat([a.tables["train"], a.tables["val"]])
    for site, group in train_val.groupby("site"):
        share = group[group["split"] == "val"]["patient_id"].nunique() / group["patient_id"].nunique()
        assert 0.15 < share < 0.45, site


def test_patient_seen_at_the_left_out_site_never_trains():
    t = table([("a1", "p1", "A", "negative"), ("b1", "p1", "B", "typical"), ("b2", "p2", "B", "typical"),
               ("b3", "p3", "B", "negative"), ("c1", "p4", None, "negative")])
    split = leave_one_site_out(t, "A", val_fraction=0.0)
    assert split.tables["test"]["image_id"].tolist() == ["a1"]
    assert sorted(split.tables["train"]["image_id"]) == ["b2", "b3"]
    assert split.dropped == 2  # b1 (patient p1 is in test) and c1 (no site)


def test_unknown_site_names_the_sites_and_virtual_data_is_refused(capsys, tmp_path, synth_dir):
    with pytest.raises(DataError, match="sites in the data: A, B"):
        leave_one_site_out(table([("a", "p", "A", "negative"), ("b", "q", "B", "negative")]), "C")
    code, _, err = cli(capsys, "splits", "--leave-out-site", "nowhere", "--data", str(synth_dir),
                       "--out", str(tmp_path))
    assert code == 2 and "site_a, site_b, site_c" in err
    code, _, err = cli(capsys, "splits", "--leave-out-site", "site_a", "--data", "synth", "--out", str(tmp_path))
    assert code == 2 and "cxrbench synth --out" in err
