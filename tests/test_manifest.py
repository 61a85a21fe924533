from __future__ import annotations

import pytest

from benchmark.data.manifest import load_manifest_csv
from benchmark.core.errors import DataError


def write(tmp_path, text):
    p = tmp_path / "manifest.csv"
    p.write_text(text)
    return p


def test_valid_manifest_fills_optional_columns(tmp_path):
    m = load_manifest_csv(write(tmp_path, "path,label,site\na.png,Typical Appearance,h1\nb.png,negative,h2\n"))
    assert list(m.table["label"]) == ["typical", "negative"]
    assert list(m.table["image_id"]) == ["a", "b"]
    assert list(m.table["patient_id"]) == ["a", "b"]  # each image its own patient
    assert not m.has_patients and "site" in m.explicit
    assert len(m.sha256) == 64


def test_hash_changes_with_content_not_with_reading(tmp_path):
    a = load_manifest_csv(write(tmp_path, "path,label\na.png,negative\n"))
    b = load_manifest_csv(write(tmp_path, "path,label\na.png,negative\n"))
    c = load_manifest_csv(write(tmp_path, "path,label\na.png,typical\n"))
    assert a.sha256 == b.sha256 != c.sha256


@pytest.mark.parametrize("text,message", [
    ("path,site\na.png,h1\n", "required column 'label' is missing"),
    ("path,label\n", "the dataset is empty"),
    ("path,label\na.png,negative\nb.png,pneumonitis\n", "unknown label 'pneumonitis' in row 3"),
    ("path,label\na.png,negative\na.png,typical\n", "row 3: image_id 'a' appears twice"),
    ("path,label,boxes\na.png,typical,\"[[1,2,3]]\"\n", "row 2: column 'boxes' is not a JSON list"),
    ("path,label\n,negative\n", "row 2: column 'path' is empty"),
])
def test_bad_manifests_name_row_or_field(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        load_manifest_csv(write(tmp_path, text))


def test_missing_manifest(tmp_path):
    with pytest.raises(DataError, match="manifest file not found"):
        load_manifest_csv(tmp_path / "nope.csv")
